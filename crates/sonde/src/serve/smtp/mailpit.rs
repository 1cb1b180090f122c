//! What the web side says about a message, in the JSON shapes of
//! Mailpit's `/api/v1` (so tools and test helpers written for Mailpit
//! work unchanged): a message's summary, the whole message with its
//! parts, its headers, one part's bytes, and the search query. Pure: the
//! MIME is mail-parser's, the bytes come from the store.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use serde_json::{Value, json};

use super::store::Stored;
pub use super::summary::{Person, Summary, summarize};

fn parse(raw: &[u8]) -> Option<Message<'_>> {
    MessageParser::default().parse(raw)
}

fn person(p: &Person) -> Value {
    json!({"Name": p.name, "Address": p.address})
}

fn persons(list: &[Person]) -> Value {
    list.iter().map(person).collect()
}

/// A time as Mailpit writes it: RFC 3339 in UTC, milliseconds.
pub fn timestamp(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let nanos = i128::try_from(since.as_nanos()).unwrap_or(0);
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).unwrap_or_default()
}

/// One entry of `GET /api/v1/messages`.
pub fn summary_json(m: &Stored) -> Value {
    let s = &m.summary;
    json!({
        "ID": m.id,
        "MessageID": s.message_id,
        "Read": m.read,
        "From": person(&s.from),
        "To": persons(&s.to),
        "Cc": persons(&s.cc),
        "Bcc": persons(&s.bcc),
        "ReplyTo": persons(&s.reply_to),
        "Subject": s.subject,
        "Created": timestamp(m.received),
        "Username": "",
        "Tags": [],
        "Size": m.size,
        "Attachments": s.attachments,
        "Snippet": s.snippet,
    })
}

/// A page of a list (`messages` newest first, `total` of them in the
/// store, `unread` of those unread), as `GET /api/v1/messages` and
/// `/search` answer.
pub fn list_json(page: &[Stored], matched: usize, store: (usize, usize), start: usize) -> Value {
    let (total, unread) = store;
    json!({
        "total": total,
        "unread": unread,
        "count": page.len(),
        "messages_count": matched,
        "messages_unread": page.iter().filter(|m| !m.read).count(),
        "start": start,
        "tags": [],
        "messages": page.iter().map(summary_json).collect::<Vec<_>>(),
    })
}

/// Each part's PartID, by its index in mail-parser's list: the numbers
/// of its place in the multipart tree ("1", "2", "2.1"), as Mailpit's.
fn part_ids(m: &Message<'_>) -> HashMap<u32, String> {
    let mut ids = HashMap::new();
    let mut todo: Vec<(u32, String)> = vec![(0, String::new())];
    while let Some((index, id)) = todo.pop() {
        let Some(part) = m.part(index) else { continue };
        match &part.body {
            PartType::Multipart(children) => {
                for (n, child) in children.iter().enumerate() {
                    let child_id = if id.is_empty() {
                        (n + 1).to_string()
                    } else {
                        format!("{id}.{}", n + 1)
                    };
                    todo.push((*child, child_id));
                }
            }
            _ => {
                ids.insert(index, if id.is_empty() { "1".into() } else { id });
            }
        }
    }
    ids
}

/// A part's content type as `type/subtype`.
fn content_type(part: &mail_parser::MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match &ct.c_subtype {
            Some(sub) => format!("{}/{sub}", ct.c_type).to_ascii_lowercase(),
            None => ct.c_type.to_ascii_lowercase(),
        },
        None if part.is_message() => "message/rfc822".into(),
        None => "text/plain".into(),
    }
}

/// Whether an attachment is shown inside the message (an image the HTML
/// refers to by its Content-ID) rather than offered for download.
fn is_inline(part: &mail_parser::MessagePart<'_>) -> bool {
    let disposition = part
        .content_disposition()
        .map(|d| d.c_type.to_ascii_lowercase());
    match disposition.as_deref() {
        Some("attachment") => false,
        Some("inline") => true,
        _ => part.content_id().is_some(),
    }
}

/// The attachments of a message, (inline, attached), as Mailpit's
/// `Inline` and `Attachments` lists.
fn attachments(m: &Message<'_>) -> (Vec<Value>, Vec<Value>) {
    let ids = part_ids(m);
    let (mut inline, mut attached) = (Vec::new(), Vec::new());
    for &index in &m.attachments {
        let Some(part) = m.part(index) else { continue };
        let bytes = part.contents();
        let entry = json!({
            "PartID": ids.get(&index).cloned().unwrap_or_default(),
            "FileName": part.attachment_name().unwrap_or_default(),
            "ContentType": content_type(part),
            "ContentID": part.content_id().unwrap_or_default(),
            "Size": bytes.len(),
        });
        if is_inline(part) {
            inline.push(entry);
        } else {
            attached.push(entry);
        }
    }
    (inline, attached)
}

/// The HTML body, when the message has one of its own (mail-parser would
/// make one from the text; Mailpit leaves it empty).
pub fn html(raw: &[u8]) -> Option<String> {
    let m = parse(raw)?;
    let part = m.html_body.first().and_then(|&i| m.part(i))?;
    match &part.body {
        PartType::Html(text) => Some(text.to_string()),
        _ => None,
    }
}

/// `GET /api/v1/message/{ID}`: the whole message.
pub fn message_json(m: &Stored, raw: &[u8]) -> Value {
    let s = &m.summary;
    let parsed = parse(raw);
    let (text, date, return_path) = parsed.as_ref().map_or_else(Default::default, |p| {
        (
            p.body_text(0).map(|t| t.to_string()).unwrap_or_default(),
            p.date().map(|d| d.to_rfc3339()).unwrap_or_default(),
            p.return_address().unwrap_or_default().to_string(),
        )
    });
    let (inline, attached) = parsed.as_ref().map(attachments).unwrap_or_default();
    json!({
        "ID": m.id,
        "MessageID": s.message_id,
        "From": person(&s.from),
        "To": persons(&s.to),
        "Cc": persons(&s.cc),
        "Bcc": persons(&s.bcc),
        "ReplyTo": persons(&s.reply_to),
        "ReturnPath": if return_path.is_empty() { m.envelope.from.clone() } else { return_path },
        "Subject": s.subject,
        "ListUnsubscribe": {"Header": "", "Links": [], "Errors": "", "HeaderPost": ""},
        "Date": if date.is_empty() { timestamp(m.received) } else { date },
        "Tags": [],
        "Username": "",
        "Text": text,
        "HTML": html(raw).unwrap_or_default(),
        "Size": m.size,
        "Inline": inline,
        "Attachments": attached,
    })
}

/// `GET /api/v1/message/{ID}/headers`: each header's values, in order,
/// unfolded and as they came.
pub fn headers_json(raw: &[u8]) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(m) = parse(raw) {
        for (name, value) in m.headers_raw() {
            let value = value.replace("\r\n", "").replace('\n', "");
            let list = out.entry(name.to_string()).or_insert_with(|| json!([]));
            if let Value::Array(values) = list {
                values.push(Value::String(value.trim().to_string()));
            }
        }
    }
    Value::Object(out)
}

/// A part, for download: its bytes (decoded), content type and file name.
#[derive(Debug, PartialEq, Eq)]
pub struct Part {
    /// `type/subtype`.
    pub content_type: String,
    /// Its file name, if it has one.
    pub file_name: Option<String>,
    /// Its contents, transfer encoding undone.
    pub bytes: Vec<u8>,
}

/// `GET /api/v1/message/{ID}/part/{PartID}`.
pub fn part(raw: &[u8], part_id: &str) -> Option<Part> {
    let m = parse(raw)?;
    let (&index, _) = part_ids(&m).iter().find(|(_, id)| id.as_str() == part_id)?;
    let part = m.part(index)?;
    Some(Part {
        content_type: content_type(part),
        file_name: part.attachment_name().map(str::to_string),
        bytes: part.contents().to_vec(),
    })
}

/// Rewrites `cid:` references in HTML to the part they name, so inline
/// images show from this server and nothing else.
pub fn link_inline(html: &str, raw: &[u8], id: &str) -> String {
    let Some(m) = parse(raw) else {
        return html.to_string();
    };
    let ids = part_ids(&m);
    let mut out = html.to_string();
    for &index in &m.attachments {
        let Some(part) = m.part(index) else { continue };
        let (Some(cid), Some(part_id)) = (part.content_id(), ids.get(&index)) else {
            continue;
        };
        let url = format!("/api/v1/message/{id}/part/{part_id}");
        out = out.replace(&format!("cid:{cid}"), &url);
    }
    out
}

/// A search, Mailpit's way: words that must all match (in the from, to,
/// cc, subject or snippet), each `from:`, `to:` or `subject:` to match
/// that field only, `is:read`/`is:unread`, and `-` before any to exclude.
#[derive(Debug, Default)]
pub struct Query {
    terms: Vec<(bool, Field, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Any,
    From,
    To,
    Subject,
    Read,
    Unread,
}

impl Query {
    /// Reads a query; quotes keep words together (`subject:"a b"`).
    pub fn parse(text: &str) -> Self {
        let mut terms = Vec::new();
        for word in words(text) {
            let (negate, word) = match word.strip_prefix('-') {
                Some(rest) if !rest.is_empty() => (true, rest.to_string()),
                _ => (false, word),
            };
            let lower = word.to_lowercase();
            let (field, value) = match lower.split_once(':') {
                Some(("from", v)) => (Field::From, v),
                Some(("to", v)) => (Field::To, v),
                Some(("subject", v)) => (Field::Subject, v),
                Some(("is", "read")) => (Field::Read, ""),
                Some(("is", "unread")) => (Field::Unread, ""),
                _ => (Field::Any, lower.as_str()),
            };
            terms.push((negate, field, value.to_string()));
        }
        Self { terms }
    }

    /// Whether `m` matches every term.
    pub fn matches(&self, m: &Stored) -> bool {
        self.terms
            .iter()
            .all(|(negate, field, value)| field.matches(m, value) != *negate)
    }
}

impl Field {
    fn matches(self, m: &Stored, value: &str) -> bool {
        let s = &m.summary;
        let has = |text: &str| text.to_lowercase().contains(value);
        let in_people = |list: &[Person]| list.iter().any(|p| has(&p.name) || has(&p.address));
        let from = || has(&s.from.name) || has(&s.from.address) || has(&m.envelope.from);
        let to = || in_people(&s.to) || in_people(&s.cc) || m.envelope.to.iter().any(|t| has(t));
        match self {
            Self::From => from(),
            Self::To => to(),
            Self::Subject => has(&s.subject),
            Self::Read => m.read,
            Self::Unread => !m.read,
            Self::Any => from() || to() || has(&s.subject) || has(&s.snippet),
        }
    }
}

/// Splits on spaces outside double quotes, dropping the quotes.
fn words(text: &str) -> Vec<String> {
    let (mut out, mut word, mut quoted) = (Vec::new(), String::new(), false);
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: &[u8] = b"From: Ann <ann@example.com>\r\n\
To: bob@example.com, \"Cy D\" <cy@example.com>\r\n\
Subject: =?UTF-8?Q?caf=C3=A9?= report\r\n\
Message-ID: <m1@example.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: multipart/alternative; boundary=\"b2\"\r\n\
\r\n\
--b2\r\n\
Content-Type: text/plain\r\n\
\r\n\
Hello   there,\r\n  friend.\r\n\
--b2\r\n\
Content-Type: text/html\r\n\
\r\n\
<p>Hello <img src=\"cid:logo@x\"></p>\r\n\
--b2--\r\n\
--b1\r\n\
Content-Type: image/png\r\n\
Content-ID: <logo@x>\r\n\
Content-Disposition: inline\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
iVBORw0K\r\n\
--b1\r\n\
Content-Type: text/csv; name=\"data.csv\"\r\n\
Content-Disposition: attachment; filename=\"data.csv\"\r\n\
\r\n\
a,b\r\n1,2\r\n\
--b1--\r\n";

    fn stored(raw: &[u8]) -> Stored {
        Stored {
            id: "1.M1P1Q0.h".into(),
            envelope: Default::default(),
            size: raw.len(),
            received: UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123),
            summary: std::sync::Arc::new(summarize(raw)),
            read: false,
        }
    }

    #[test]
    fn a_summary_in_mailpits_shape() {
        let v = summary_json(&stored(MIXED));
        assert_eq!(v["Subject"], "café report");
        assert_eq!(v["MessageID"], "m1@example.com");
        assert_eq!(
            v["From"],
            json!({"Name": "Ann", "Address": "ann@example.com"})
        );
        assert_eq!(
            v["To"][1],
            json!({"Name": "Cy D", "Address": "cy@example.com"})
        );
        assert_eq!(v["Snippet"], "Hello there, friend.");
        assert_eq!(v["Attachments"], 2);
        assert_eq!(v["Created"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["Tags"], json!([]));
    }

    #[test]
    fn parts_numbered_as_mailpit_does() {
        let v = message_json(&stored(MIXED), MIXED);
        assert_eq!(v["Inline"][0]["PartID"], "2");
        assert_eq!(v["Inline"][0]["ContentID"], "logo@x");
        assert_eq!(v["Attachments"][0]["PartID"], "3");
        assert_eq!(v["Attachments"][0]["FileName"], "data.csv");
        assert_eq!(v["Attachments"][0]["ContentType"], "text/csv");
        assert!(v["HTML"].as_str().is_some_and(|h| h.contains("<p>Hello")));
        let csv = part(MIXED, "3").expect("part 3");
        assert_eq!(csv.bytes, b"a,b\r\n1,2");
        assert_eq!(part(MIXED, "2").expect("part 2").bytes, b"\x89PNG\r\n");
        assert_eq!(part(MIXED, "1.1").expect("text").content_type, "text/plain");
        assert!(part(MIXED, "9").is_none());
    }

    #[test]
    fn inline_images_point_here() {
        let html = html(MIXED).expect("html");
        let linked = link_inline(&html, MIXED, "ID");
        assert!(
            linked.contains("src=\"/api/v1/message/ID/part/2\""),
            "{linked}"
        );
    }

    #[test]
    fn a_text_message_has_no_html() {
        let raw = b"Subject: x\r\n\r\nplain\r\n";
        assert_eq!(html(raw), None);
        assert_eq!(message_json(&stored(raw), raw)["Text"], "plain\r\n");
    }

    #[test]
    fn headers_in_order_and_unfolded() {
        let raw = b"Received: a\r\n b\r\nReceived: c\r\nSubject: s\r\n\r\nbody";
        let v = headers_json(raw);
        assert_eq!(v["Received"], json!(["a b", "c"]));
        assert_eq!(v["Subject"], json!(["s"]));
    }

    #[test]
    fn searches() {
        let m = stored(MIXED);
        for (query, hit) in [
            ("from:ann", true),
            ("to:cy@example.com", true),
            ("subject:\"café report\"", true),
            ("friend", true),
            ("-friend", false),
            ("from:bob", false),
            ("is:unread report", true),
            ("is:read", false),
            ("", true),
        ] {
            assert_eq!(Query::parse(query).matches(&m), hit, "{query}");
        }
    }

    #[test]
    fn anything_parses_without_a_panic() {
        for raw in [
            &b""[..],
            b"\r\n\r\n",
            b"Content-Type: multipart/mixed\r\n\r\n--",
        ] {
            let m = stored(raw);
            let _ = message_json(&m, raw);
            let _ = headers_json(raw);
            let _ = part(raw, "1");
        }
    }
}
