//! What a list shows of a message (from, to, subject, a snippet, how many
//! attachments), read once from its bytes when it arrives, so a list or
//! a search never parses a message again. Pure; MIME is mail-parser's.

use mail_parser::{Address, MessageParser};

/// The longest snippet, as Mailpit's.
const SNIPPET: usize = 250;

/// A name and an address, as a header gave them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Person {
    /// The display name (may be empty).
    pub name: String,
    /// The address (may be empty).
    pub address: String,
}

/// What a list shows of a message, read once when it arrives.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Its Message-ID header, without the angle brackets.
    pub message_id: String,
    /// From (the first).
    pub from: Person,
    /// To.
    pub to: Vec<Person>,
    /// Cc.
    pub cc: Vec<Person>,
    /// Bcc (a sender's own copy may carry one).
    pub bcc: Vec<Person>,
    /// Reply-To.
    pub reply_to: Vec<Person>,
    /// The subject, decoded.
    pub subject: String,
    /// The start of its text, whitespace squeezed.
    pub snippet: String,
    /// How many attachments (inline parts included, as Mailpit counts).
    pub attachments: usize,
}

fn people(address: Option<&Address<'_>>) -> Vec<Person> {
    address.map_or_else(Vec::new, |a| {
        a.iter()
            .map(|p| Person {
                name: p.name().unwrap_or_default().to_string(),
                address: p.address().unwrap_or_default().to_string(),
            })
            .collect()
    })
}

/// Reads a message's summary from its bytes; a message mail-parser
/// cannot read at all has an empty one.
pub fn summarize(raw: &[u8]) -> Summary {
    let Some(m) = MessageParser::default().parse(raw) else {
        return Summary::default();
    };
    let snippet = m.body_text(0).map(|t| squeeze(&t)).unwrap_or_default();
    Summary {
        message_id: m.message_id().unwrap_or_default().to_string(),
        from: people(m.from()).into_iter().next().unwrap_or_default(),
        to: people(m.to()),
        cc: people(m.cc()),
        bcc: people(m.bcc()),
        reply_to: people(m.reply_to()),
        subject: m.subject().unwrap_or_default().to_string(),
        snippet,
        attachments: m.attachment_count(),
    }
}

/// Whitespace runs made one space, cut at [`SNIPPET`] characters.
fn squeeze(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(SNIPPET)
        .collect()
}
