//! An SMTP session's decisions (RFC 5321), pure: a parsed command in,
//! the reply and what the connection must do next out. Parsing is
//! smtp-proto's; reading, timing and storing are the connection's.

use std::borrow::Cow;

use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, Error as ParseError, MAIL_SMTPUTF8, Request};

use super::auth::{self, Answer, AuthPolicy, Step};
use super::chaos::{Chaos, Dice};

/// What a session allows.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The largest message, in bytes (SIZE).
    pub max_size: usize,
    /// Recipients per message.
    pub max_recipients: usize,
}

/// What a session offers and requires beyond plain SMTP.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// STARTTLS is offered (a certificate is there).
    pub starttls: bool,
    /// No MAIL before STARTTLS (`--require-starttls`).
    pub require_tls: bool,
    /// AUTH is offered, and with users (or `accept_any`) required.
    pub auth: Option<AuthPolicy>,
    /// Faults on purpose, and the seed of their dice.
    pub chaos: Chaos,
    /// The dice's seed (a new one for each connection).
    pub seed: u64,
}

/// A message's envelope, once its data is in.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Envelope {
    /// What the client said in HELO or EHLO.
    pub helo: String,
    /// MAIL FROM (empty for a bounce's `<>`).
    pub from: String,
    /// RCPT TO, in order.
    pub to: Vec<String>,
    /// The client asked for SMTPUTF8.
    pub smtputf8: bool,
}

/// What the connection does after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Send this reply and read the next command.
    Reply(String),
    /// Send this reply (354) and read the message's data to its dot.
    Data(String),
    /// Read a BDAT chunk of this many bytes (the last with `last`); the
    /// reply comes when it is in.
    Chunk {
        /// Its size.
        size: usize,
        /// The message ends with it.
        last: bool,
    },
    /// Send this reply and close.
    Close(String),
    /// Send this reply (334) and hand the client's next line to
    /// [`Session::auth_answer`].
    Challenge(String),
    /// Send this reply (220), drop anything the client sent after the
    /// command, and start TLS; then a new session, over it.
    StartTls(String),
}

/// One client's session.
#[derive(Debug)]
pub struct Session {
    host: String,
    limits: Limits,
    policy: Policy,
    /// Inside TLS (implicit, or after STARTTLS).
    secure: bool,
    /// Who authenticated.
    user: Option<String>,
    /// An AUTH exchange under way.
    step: Option<Step>,
    dice: Dice,
    helo: Option<String>,
    from: Option<String>,
    to: Vec<String>,
    smtputf8: bool,
    /// BDAT chunks so far, bytes.
    chunked: Option<usize>,
}

fn reply(text: &str) -> String {
    format!("{text}\r\n")
}

impl Session {
    /// A session of the server named `host`, inside TLS when `secure`.
    pub fn new(host: &str, limits: Limits, policy: Policy, secure: bool) -> Self {
        let seed = policy.seed;
        Self {
            host: host.into(),
            limits,
            policy,
            secure,
            user: None,
            step: None,
            dice: Dice::new(seed),
            helo: None,
            from: None,
            to: Vec::new(),
            smtputf8: false,
            chunked: None,
        }
    }

    /// The greeting (220).
    pub fn greeting(&self) -> String {
        reply(&format!("220 {} ESMTP sonde mail sink", self.host))
    }

    /// The limits the session runs with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The reply to a command line, and what comes next.
    pub fn command(&mut self, request: Request<Cow<'_, str>>) -> Next {
        match request {
            Request::Ehlo { host } => Next::Reply(self.hello(&host, true)),
            Request::Helo { host } => Next::Reply(self.hello(&host, false)),
            Request::Lhlo { .. } => Next::Reply(reply("500 5.5.1 LHLO is LMTP's, not SMTP's")),
            Request::Mail { from } => Next::Reply(self.mail(&from.address, from.size, from.flags)),
            Request::Rcpt { to } => Next::Reply(self.rcpt(&to.address)),
            Request::Data => self.data(),
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size, is_last),
            Request::Rset => {
                self.reset();
                Next::Reply(reply("250 2.0.0 Ok"))
            }
            Request::Noop { .. } => Next::Reply(reply("250 2.0.0 Ok")),
            Request::Vrfy { .. } => Next::Reply(reply(
                "252 2.1.5 Cannot verify, but will accept the message",
            )),
            Request::Quit => Next::Close(reply("221 2.0.0 Bye")),
            Request::Help { .. } => Next::Reply(reply(
                "214 2.0.0 sonde's mail sink: everything is accepted, nothing delivered",
            )),
            Request::StartTls => self.starttls(),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, &initial_response),
            other => Next::Reply(reply(&format!(
                "502 5.5.1 {} is not implemented",
                other.name()
            ))),
        }
    }

    /// The reply to a line the parser refused.
    pub fn refused(&self, error: &ParseError) -> String {
        reply(match error {
            ParseError::UnknownCommand => "500 5.5.2 Unknown command",
            ParseError::InvalidSenderAddress => "501 5.1.7 Bad sender address syntax",
            ParseError::InvalidRecipientAddress => "501 5.1.3 Bad recipient address syntax",
            ParseError::SyntaxError { .. } | ParseError::InvalidParameter { .. } => {
                "501 5.5.4 Syntax error in parameters or arguments"
            }
            ParseError::UnsupportedParameter { .. } => "555 5.5.4 Unsupported parameter",
            ParseError::ResponseTooLong => "500 5.5.6 Line too long",
            ParseError::NeedsMoreData { .. } | ParseError::InvalidResponse { .. } => {
                "500 5.5.2 Syntax error"
            }
        })
    }

    fn hello(&mut self, host: &str, extended: bool) -> String {
        self.reset();
        self.helo = Some(host.to_string());
        if !extended {
            return reply(&format!("250 {} greets {host}", self.host));
        }
        let mut lines = vec![
            format!("{} greets {host}", self.host),
            "PIPELINING".into(),
            format!("SIZE {}", self.limits.max_size),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
        ];
        if self.policy.starttls && !self.secure {
            lines.push("STARTTLS".into());
        }
        if self.auth_allowed() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        let last = lines.len() - 1;
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }))
            .collect()
    }

    fn mail(&mut self, from: &str, size: usize, flags: u64) -> String {
        if self.helo.is_none() {
            return reply("503 5.5.1 Say EHLO or HELO first");
        }
        if self.from.is_some() {
            return reply("503 5.5.1 Sender already given (RSET to start again)");
        }
        if self.policy.require_tls && !self.secure {
            return reply("530 5.7.0 Must issue a STARTTLS command first");
        }
        let required = self
            .policy
            .auth
            .as_ref()
            .is_some_and(|a| a.accept_any || !a.users.is_empty());
        if required && self.user.is_none() {
            return reply("530 5.7.0 Authentication required");
        }
        if size > self.limits.max_size {
            return reply(&format!(
                "552 5.3.4 A message of {size} bytes is over the limit of {}",
                self.limits.max_size
            ));
        }
        if self.dice.hit(self.policy.chaos.sender) {
            return reply("451 4.3.0 Sender refused for now (--chaos-sender)");
        }
        self.from = Some(from.to_string());
        self.smtputf8 = flags & MAIL_SMTPUTF8 != 0;
        reply("250 2.1.0 Ok")
    }

    fn rcpt(&mut self, to: &str) -> String {
        if self.from.is_none() {
            return reply("503 5.5.1 MAIL FROM first");
        }
        if self.to.len() >= self.limits.max_recipients {
            return reply(&format!(
                "452 4.5.3 Too many recipients (at most {})",
                self.limits.max_recipients
            ));
        }
        if self.dice.hit(self.policy.chaos.recipient) {
            return reply("451 4.3.0 Recipient refused for now (--chaos-recipient)");
        }
        self.to.push(to.to_string());
        reply("250 2.1.5 Ok")
    }

    fn ready_for_data(&self) -> Option<String> {
        if self.from.is_none() {
            return Some(reply("503 5.5.1 MAIL FROM first"));
        }
        if self.to.is_empty() {
            return Some(reply("554 5.5.1 No valid recipients"));
        }
        None
    }

    fn data(&mut self) -> Next {
        if self.chunked.is_some() {
            return Next::Reply(reply("503 5.5.1 DATA after BDAT (RSET to start again)"));
        }
        match self.ready_for_data() {
            Some(refusal) => Next::Reply(refusal),
            None => Next::Data(reply("354 End data with <CR><LF>.<CR><LF>")),
        }
    }

    fn bdat(&mut self, size: usize, last: bool) -> Next {
        // The chunk is read (and dropped) even when refused: its bytes
        // follow the command whatever the answer.
        if self.ready_for_data().is_some() {
            return Next::Chunk { size, last };
        }
        let so_far = self.chunked.get_or_insert(0);
        *so_far = so_far.saturating_add(size);
        Next::Chunk { size, last }
    }

    /// AUTH may be offered now: configured, and inside TLS unless
    /// plaintext is allowed.
    fn auth_allowed(&self) -> bool {
        self.policy
            .auth
            .as_ref()
            .is_some_and(|a| self.secure || a.allow_insecure)
    }

    fn starttls(&mut self) -> Next {
        if self.secure {
            return Next::Reply(reply("503 5.5.1 TLS is already on"));
        }
        if !self.policy.starttls {
            return Next::Reply(reply("502 5.5.1 STARTTLS is not offered here"));
        }
        Next::StartTls(reply("220 2.0.0 Ready to start TLS"))
    }

    fn auth(&mut self, mechanism: u64, initial: &str) -> Next {
        if self.policy.auth.is_none() {
            return Next::Reply(reply("502 5.5.1 AUTH is not offered here"));
        }
        if !self.auth_allowed() {
            return Next::Reply(reply(
                "538 5.7.11 Encryption required for requested authentication mechanism",
            ));
        }
        if self.user.is_some() {
            return Next::Reply(reply("503 5.5.1 Already authenticated"));
        }
        if self.from.is_some() {
            return Next::Reply(reply("503 5.5.1 AUTH within a transaction"));
        }
        let plain = match mechanism {
            AUTH_PLAIN => true,
            AUTH_LOGIN => false,
            _ => return Next::Reply(reply("504 5.5.4 Unrecognized authentication type")),
        };
        self.judge(auth::start(plain, initial))
    }

    /// The client's line during an AUTH exchange.
    pub fn auth_answer(&mut self, line: &[u8]) -> Next {
        match self.step.take() {
            Some(step) => self.judge(auth::answer(&step, line)),
            None => Next::Reply(reply("503 5.5.1 No AUTH under way")),
        }
    }

    fn judge(&mut self, answer: Answer) -> Next {
        match answer {
            Answer::Again(challenge, step) => {
                self.step = Some(step);
                Next::Challenge(challenge)
            }
            Answer::Refused(why) => Next::Reply(why),
            Answer::Credentials(user, pass) => {
                let admitted = self
                    .policy
                    .auth
                    .as_ref()
                    .is_some_and(|a| a.admits(&user, &pass));
                if admitted {
                    self.user = Some(user);
                    Next::Reply(reply("235 2.7.0 Authentication successful"))
                } else {
                    Next::Reply(reply("535 5.7.8 Authentication credentials invalid"))
                }
            }
        }
    }

    /// Whether BDAT chunks may be kept: a transaction is open and the
    /// chunks so far are within the size limit.
    pub fn chunk_wanted(&self) -> bool {
        self.ready_for_data().is_none() && self.chunked.is_some_and(|n| n <= self.limits.max_size)
    }

    /// The bytes of this message's BDAT chunks so far.
    pub fn chunked(&self) -> usize {
        self.chunked.unwrap_or(0)
    }

    /// The reply to a BDAT chunk that is not the last.
    pub fn chunk_taken(&self, size: usize) -> String {
        match self.ready_for_data() {
            Some(refusal) => refusal,
            None if !self.chunk_wanted() => self.too_big(),
            None => reply(&format!("250 2.0.0 {size} bytes received")),
        }
    }

    fn too_big(&self) -> String {
        reply(&format!(
            "552 5.3.4 Message over the limit of {} bytes",
            self.limits.max_size
        ))
    }

    /// The message's data is in (`size` bytes, or over the limit): the
    /// envelope to store, or the refusal to send. The transaction ends
    /// either way.
    pub fn message_done(&mut self, size: usize) -> Result<Envelope, String> {
        let refusal = self
            .ready_for_data()
            .or_else(|| (size > self.limits.max_size).then(|| self.too_big()));
        let envelope = Envelope {
            helo: self.helo.clone().unwrap_or_default(),
            from: self.from.take().unwrap_or_default(),
            to: std::mem::take(&mut self.to),
            smtputf8: self.smtputf8,
        };
        self.reset();
        match refusal {
            Some(refusal) => Err(refusal),
            None => Ok(envelope),
        }
    }

    /// Whether to drop this message's connection halfway through its data
    /// (`--chaos-disconnect`): a roll at each DATA.
    pub fn drop_mid_data(&mut self) -> bool {
        self.dice.hit(self.policy.chaos.disconnect)
    }

    /// The reply once a message is stored under `id`.
    pub fn stored(id: &str) -> String {
        reply(&format!("250 2.0.0 Ok: queued as {id}"))
    }

    fn reset(&mut self) {
        self.from = None;
        self.to.clear();
        self.smtputf8 = false;
        self.chunked = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Request<Cow<'_, str>> {
        Request::parse(&mut line.as_bytes().iter()).expect("a command")
    }

    fn limits() -> Limits {
        Limits {
            max_size: 100,
            max_recipients: 2,
        }
    }

    fn session() -> Session {
        Session::new("sink.test", limits(), Policy::default(), false)
    }

    fn said(next: Next) -> String {
        match next {
            Next::Reply(r)
            | Next::Data(r)
            | Next::Close(r)
            | Next::Challenge(r)
            | Next::StartTls(r) => r,
            Next::Chunk { .. } => String::new(),
        }
    }

    #[test]
    fn a_whole_transaction() {
        let mut s = session();
        assert!(s.greeting().starts_with("220 sink.test "));
        let ehlo = said(s.command(parse("EHLO client\r\n")));
        assert!(
            ehlo.contains("250-PIPELINING\r\n") && ehlo.ends_with("250 CHUNKING\r\n"),
            "{ehlo}"
        );
        assert!(ehlo.contains("250-SIZE 100\r\n"));
        assert!(said(s.command(parse("MAIL FROM:<a@x> SMTPUTF8\r\n"))).starts_with("250"));
        assert!(said(s.command(parse("RCPT TO:<b@y>\r\n"))).starts_with("250"));
        assert_eq!(
            s.command(parse("DATA\r\n")),
            Next::Data("354 End data with <CR><LF>.<CR><LF>\r\n".into())
        );
        let envelope = s.message_done(10).expect("stored");
        assert_eq!(envelope.from, "a@x");
        assert_eq!(envelope.to, ["b@y"]);
        assert!(envelope.smtputf8);
        assert!(said(s.command(parse("QUIT\r\n"))).starts_with("221"));
    }

    #[test]
    fn out_of_order_and_over_the_limits() {
        let mut s = session();
        assert!(said(s.command(parse("MAIL FROM:<a@x>\r\n"))).starts_with("503"));
        s.command(parse("HELO c\r\n"));
        assert!(said(s.command(parse("RCPT TO:<b@y>\r\n"))).starts_with("503"));
        assert!(said(s.command(parse("DATA\r\n"))).starts_with("503"));
        assert!(said(s.command(parse("MAIL FROM:<a@x> SIZE=1000\r\n"))).starts_with("552"));
        s.command(parse("MAIL FROM:<a@x>\r\n"));
        assert!(said(s.command(parse("MAIL FROM:<a@x>\r\n"))).starts_with("503"));
        assert!(said(s.command(parse("DATA\r\n"))).starts_with("554"));
        s.command(parse("RCPT TO:<1@y>\r\n"));
        s.command(parse("RCPT TO:<2@y>\r\n"));
        assert!(said(s.command(parse("RCPT TO:<3@y>\r\n"))).starts_with("452"));
        s.command(parse("DATA\r\n"));
        assert!(s.message_done(101).expect_err("too big").starts_with("552"));
        assert!(said(s.command(parse("VRFY x\r\n"))).starts_with("252"));
        assert!(s.refused(&ParseError::UnknownCommand).starts_with("500"));
    }

    #[test]
    fn chunks_add_up_against_the_limit() {
        let mut s = session();
        s.command(parse("EHLO c\r\n"));
        s.command(parse("MAIL FROM:<a@x>\r\n"));
        s.command(parse("RCPT TO:<b@y>\r\n"));
        assert_eq!(
            s.command(parse("BDAT 60\r\n")),
            Next::Chunk {
                size: 60,
                last: false
            }
        );
        assert!(s.chunk_wanted());
        assert!(s.chunk_taken(60).starts_with("250"));
        assert!(said(s.command(parse("DATA\r\n"))).starts_with("503"));
        s.command(parse("BDAT 60 LAST\r\n"));
        assert!(!s.chunk_wanted());
        assert!(s.message_done(120).expect_err("too big").starts_with("552"));
    }

    #[test]
    fn starttls_and_auth_as_the_policy_says() {
        let mut users = std::collections::HashMap::new();
        users.insert("ann".to_string(), "pw".to_string());
        let policy = Policy {
            starttls: true,
            require_tls: true,
            auth: Some(AuthPolicy {
                users,
                accept_any: false,
                allow_insecure: false,
            }),
            ..Policy::default()
        };
        let mut plain = Session::new("s", limits(), policy.clone(), false);
        let ehlo = said(plain.command(parse("EHLO c\r\n")));
        assert!(
            ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
            "{ehlo}"
        );
        assert!(said(plain.command(parse("MAIL FROM:<a@x>\r\n"))).starts_with("530"));
        assert!(said(plain.command(parse("AUTH PLAIN AGFubgBwdw==\r\n"))).starts_with("538"));
        assert!(matches!(
            plain.command(parse("STARTTLS\r\n")),
            Next::StartTls(_)
        ));
        let mut tls = Session::new("s", limits(), policy, true);
        let ehlo = said(tls.command(parse("EHLO c\r\n")));
        assert!(
            !ehlo.contains("STARTTLS") && ehlo.contains("AUTH PLAIN LOGIN"),
            "{ehlo}"
        );
        assert!(
            said(tls.command(parse("MAIL FROM:<a@x>\r\n"))).starts_with("530 5.7.0 Authentication")
        );
        assert!(said(tls.command(parse("AUTH PLAIN AGFubgBndWVzcw==\r\n"))).starts_with("535"));
        assert!(matches!(
            tls.command(parse("AUTH LOGIN\r\n")),
            Next::Challenge(_)
        ));
        assert!(matches!(tls.auth_answer(b"YW5u\r\n"), Next::Challenge(_)));
        assert!(said(tls.auth_answer(b"cHc=\r\n")).starts_with("235"));
        assert!(said(tls.command(parse("MAIL FROM:<a@x>\r\n"))).starts_with("250"));
    }

    #[test]
    fn chaos_refuses_for_now() {
        let policy = Policy {
            chaos: Chaos {
                sender: 1.0,
                recipient: 0.0,
                auth: 0.0,
                disconnect: 1.0,
            },
            ..Policy::default()
        };
        let mut s = Session::new("s", limits(), policy, false);
        s.command(parse("HELO c\r\n"));
        assert!(said(s.command(parse("MAIL FROM:<a@x>\r\n"))).starts_with("451 4.3.0"));
        assert!(s.drop_mid_data());
    }
}
