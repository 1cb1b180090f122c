//! `sonde serve smtp`: a mail sink for testing the programs that send
//! mail. It speaks SMTP (RFC 5321, with PIPELINING, SIZE, 8BITMIME,
//! SMTPUTF8, ENHANCEDSTATUSCODES and CHUNKING), accepts every message,
//! delivers none, and keeps each in a Maildir (or memory) before it
//! answers 250. The session's decisions are [`session`]'s, parsing is
//! smtp-proto's; this file only reads, times and writes.

pub mod auth;
pub mod chaos;
pub mod mailpit;
pub mod session;
pub mod store;
pub mod summary;
pub mod watch;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use smtp_proto::Error as ParseError;
use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver, RequestReceiver};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use self::session::{Limits, Next, Policy, Session};
use self::store::{Store, Stored};
use super::Ctx;

/// What a message's arrival tells the caller (a line on stderr).
pub type OnMessage = Arc<dyn Fn(&Stored) + Send + Sync>;

/// How the sink behaves.
#[derive(Clone)]
pub struct SmtpConfig {
    /// The name it greets with.
    pub host: String,
    /// Message size and recipients.
    pub limits: Limits,
    /// Where messages go.
    pub store: Arc<Store>,
    /// Told of each message stored.
    pub on_message: Option<OnMessage>,
    /// STARTTLS, AUTH and what they require.
    pub policy: Policy,
    /// The certificate STARTTLS starts TLS with.
    pub starttls: Option<crate::tls::ServerTls>,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("limits", &self.limits)
            .field("store", &self.store.dir())
            .finish_non_exhaustive()
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            limits: Limits {
                max_size: 50_000_000,
                max_recipients: 100,
            },
            store: Arc::new(Store::memory(500)),
            on_message: None,
            policy: Policy::default(),
            starttls: None,
        }
    }
}

/// How long a client may take over anything (a command, a piece of a
/// message) when the service has no idle limit of its own.
const PATIENCE: Duration = Duration::from_secs(300);
/// A message's bytes earn more time in pieces this large: a client must
/// bring each within the patience, so one that drips is cut off.
const PIECE: usize = 64 * 1024;
/// Refused commands before the sink gives up on a client.
const MAX_ERRORS: u32 = 20;
/// Past the size limit the rest is read and dropped, up to this much
/// more; a client sending without end is cut off.
const SLACK: usize = 16 << 20;

/// How a session ended well.
enum Ended {
    /// The client quit (or was sent away).
    Quit,
    /// The client asked for TLS, and was told to go ahead.
    StartTls,
}

/// An AUTH answer's longest line (RFC 4954's 12,288 octets).
const MAX_AUTH_LINE: usize = 12_288;

/// Why a session ended early.
enum Gone {
    /// The client closed, or its connection failed.
    Closed,
    /// It said nothing for the idle limit, or the server is stopping.
    Quiet,
}

/// One client's connection: reads with deadlines, replies in batches (so
/// a pipelining client's commands are answered together).
struct Conn<'a, S> {
    stream: S,
    input: Vec<u8>,
    out: Vec<u8>,
    ctx: &'a Ctx,
    patience: Duration,
    /// When what is being read (a command, a line, a piece of a
    /// message) must be in by: set at its first read.
    due: Option<tokio::time::Instant>,
    /// Bytes read since `due` was set.
    got: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<'_, S> {
    /// Sends what is waiting, then reads more input, by the deadline of
    /// what is being read (a deadline, not a silence: dripping bytes
    /// does not hold a connection).
    async fn fill(&mut self) -> Result<(), Gone> {
        self.flush().await?;
        let patience = self.patience;
        let due = *self
            .due
            .get_or_insert_with(|| tokio::time::Instant::now() + patience);
        let mut buf = [0u8; 16 * 1024];
        let read = tokio::select! {
            () = self.ctx.shutdown.cancelled() => return Err(Gone::Quiet),
            read = tokio::time::timeout_at(due, self.stream.read(&mut buf)) => read,
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => Err(Gone::Closed),
            Ok(Ok(n)) => {
                self.input.extend_from_slice(&buf[..n]);
                self.got += n;
                Ok(())
            }
            Err(_) => Err(Gone::Quiet),
        }
    }

    /// What was being read is in: the next thing has its own deadline.
    fn done(&mut self) {
        self.due = None;
        self.got = 0;
    }

    /// Within a message: a whole [`PIECE`] in earns a new deadline.
    fn progress(&mut self) {
        if self.got >= PIECE {
            self.done();
        }
    }

    async fn flush(&mut self) -> Result<(), Gone> {
        if self.out.is_empty() {
            return Ok(());
        }
        let sent = tokio::time::timeout(self.patience, self.stream.write_all(&self.out)).await;
        self.out.clear();
        match sent {
            Ok(Ok(())) => Ok(()),
            _ => Err(Gone::Closed),
        }
    }

    fn say(&mut self, reply: &str) {
        self.out.extend_from_slice(reply.as_bytes());
    }

    /// A DATA message to its dot: kept while within `max`, then dropped
    /// (and cut off past [`SLACK`] more). Its stored size, or `None` when
    /// it was over.
    async fn data(&mut self, max: usize) -> Result<Option<Vec<u8>>, Gone> {
        let mut receiver = DataReceiver::new();
        let mut body = Vec::new();
        let mut dropping: Option<(DummyDataReceiver, usize)> = None;
        loop {
            if self.input.is_empty() {
                self.fill().await?;
                self.progress();
            }
            let mut bytes = self.input.iter();
            let done = match &mut dropping {
                None => receiver.ingest(&mut bytes, &mut body),
                Some((dummy, _)) => dummy.ingest(&mut bytes),
            };
            let used = self.input.len() - bytes.as_slice().len();
            self.input.drain(..used);
            if let Some((_, seen)) = &mut dropping {
                *seen += used;
                if *seen > SLACK {
                    return Err(Gone::Closed);
                }
            } else if body.len() > max {
                body = Vec::new();
                dropping = Some((DummyDataReceiver::new_data(&receiver), 0));
            }
            if done {
                self.done();
                return Ok(dropping.is_none().then_some(body));
            }
        }
    }

    /// One line (an AUTH answer), at most [`MAX_AUTH_LINE`].
    async fn line(&mut self) -> Result<Vec<u8>, Gone> {
        loop {
            if let Some(end) = memchr::memchr(b'\n', &self.input) {
                self.done();
                return Ok(self.input.drain(..=end).collect());
            }
            if self.input.len() > MAX_AUTH_LINE {
                return Err(Gone::Closed);
            }
            self.fill().await?;
        }
    }

    /// A BDAT chunk of `size` bytes, appended to `body` when `keep`.
    async fn chunk(&mut self, size: usize, keep: bool, body: &mut Vec<u8>) -> Result<(), Gone> {
        let mut left = size;
        while left > 0 {
            if self.input.is_empty() {
                self.fill().await?;
                self.progress();
            }
            let n = left.min(self.input.len());
            if keep {
                body.extend_from_slice(&self.input[..n]);
            }
            self.input.drain(..n);
            left -= n;
        }
        self.done();
        Ok(())
    }
}

/// Serves one SMTP client on a plain connection until it quits, goes
/// quiet for the idle limit, or the server stops; after STARTTLS, a new
/// session over TLS on the same connection.
pub(crate) async fn serve(stream: tokio::net::TcpStream, ctx: Arc<Ctx>) {
    let Some(tcp) = session(stream, &ctx, (false, true)).await else {
        return;
    };
    let Some(tls) = &ctx.smtp.starttls else {
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.config));
    let limit = crate::tls::HANDSHAKE_TIMEOUT;
    if let Ok(Ok(tls)) = tokio::time::timeout(limit, acceptor.accept(tcp)).await {
        let _ = session(tls, &ctx, (true, false)).await;
    }
}

/// Serves one SMTP client inside TLS from the first byte (`--tls`).
pub(crate) async fn serve_secure<S: AsyncRead + AsyncWrite + Unpin>(stream: S, ctx: Arc<Ctx>) {
    let _ = session(stream, &ctx, (true, true)).await;
}

/// One session on `stream` (greeted with 220 unless it follows
/// STARTTLS, where the client speaks first); the stream back when the
/// client asked for STARTTLS and was told to go ahead.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    ctx: &Ctx,
    (secure, greet): (bool, bool),
) -> Option<S> {
    let config = Arc::clone(&ctx.smtp);
    let mut policy = config.policy.clone();
    let mut seed = [0u8; 8];
    let _ = rustix::rand::getrandom(&mut seed, rustix::rand::GetRandomFlags::empty());
    policy.seed = u64::from_le_bytes(seed);
    let mut session = Session::new(&config.host, config.limits.clone(), policy, secure);
    let mut conn = Conn {
        stream,
        input: Vec::new(),
        out: Vec::new(),
        ctx,
        patience: ctx.idle.unwrap_or(PATIENCE),
        due: None,
        got: 0,
    };
    if greet {
        conn.say(&session.greeting());
    }
    match converse(&mut conn, &mut session, &config).await {
        Ok(Ended::StartTls) => {
            // Nothing the client sent before TLS may count after it
            // (the STARTTLS command injection of CVE-2011-0411).
            conn.input.clear();
            let _ = conn.flush().await;
            return Some(conn.stream);
        }
        Err(Gone::Quiet) => {
            conn.say("421 4.4.2 Closing: idle too long, or the server is stopping\r\n");
        }
        Ok(Ended::Quit) | Err(Gone::Closed) => {}
    }
    let _ = conn.flush().await;
    let _ = conn.stream.shutdown().await;
    None
}

/// Commands until the client quits or asks for TLS (Ok), or goes (Err).
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<'_, S>,
    session: &mut Session,
    config: &SmtpConfig,
) -> Result<Ended, Gone> {
    let mut receiver = RequestReceiver::default();
    let mut errors = 0u32;
    let mut chunks: Vec<u8> = Vec::new();
    loop {
        if conn.input.is_empty() {
            conn.fill().await?;
        }
        let mut bytes = conn.input.iter();
        let next = match receiver.ingest(&mut bytes) {
            Ok(request) => Some(Ok(session.command(request))),
            Err(ParseError::NeedsMoreData { .. }) => None,
            Err(e) => Some(Err(session.refused(&e))),
        };
        let used = conn.input.len() - bytes.as_slice().len();
        conn.input.drain(..used);
        if next.is_some() {
            // A command in: the next one has a deadline of its own.
            conn.done();
        }
        let next = match next {
            None => {
                // The receiver keeps the part line; more is needed.
                conn.fill().await?;
                continue;
            }
            Some(Err(refusal)) => {
                conn.say(&refusal);
                errors += 1;
                if errors > MAX_ERRORS {
                    conn.say("421 4.7.0 Too many errors, closing\r\n");
                    return Ok(Ended::Quit);
                }
                continue;
            }
            Some(Ok(next)) => next,
        };
        // AUTH's challenges (PLAIN one, LOGIN two), each answered by a line.
        let mut next = next;
        while let Next::Challenge(challenge) = next {
            conn.say(&challenge);
            let line = conn.line().await?;
            next = session.auth_answer(&line);
        }
        match next {
            Next::Reply(reply) => conn.say(&reply),
            Next::Close(reply) => {
                conn.say(&reply);
                return Ok(Ended::Quit);
            }
            Next::StartTls(reply) => {
                conn.say(&reply);
                return Ok(Ended::StartTls);
            }
            // Answered in the loop above.
            Next::Challenge(_) => {}
            Next::Data(reply) => {
                conn.say(&reply);
                conn.flush().await?;
                if session.drop_mid_data() {
                    // Some of the message, then the line goes dead.
                    conn.fill().await?;
                    return Err(Gone::Closed);
                }
                let body = conn.data(session.limits().max_size).await?;
                let size = body.as_ref().map_or(usize::MAX, Vec::len);
                let reply = finish(session.message_done(size), body, config).await;
                conn.say(&reply);
            }
            Next::Chunk { size, last } => {
                let keep = session.chunk_wanted();
                if !keep && size > SLACK {
                    // Dropping that much would take as long as the client likes.
                    conn.say("552 5.3.4 Chunk too big, closing\r\n");
                    return Ok(Ended::Quit);
                }
                conn.chunk(size, keep, &mut chunks).await?;
                if !keep {
                    chunks = Vec::new();
                }
                if !last {
                    conn.say(&session.chunk_taken(size));
                    continue;
                }
                let body = std::mem::take(&mut chunks);
                let total = session.chunked();
                let reply = finish(session.message_done(total), Some(body), config).await;
                conn.say(&reply);
            }
        }
    }
}

/// Stores an accepted message before saying 250; a refusal as it is.
async fn finish(
    done: Result<session::Envelope, String>,
    body: Option<Vec<u8>>,
    config: &SmtpConfig,
) -> String {
    let (envelope, body) = match (done, body) {
        (Ok(envelope), Some(body)) => (envelope, body),
        (Err(refusal), _) => return refusal,
        (Ok(_), None) => return "552 5.3.4 Message too big\r\n".into(),
    };
    let store = Arc::clone(&config.store);
    let put = tokio::task::spawn_blocking(move || store.put(envelope, body)).await;
    match put {
        Ok(Ok(stored)) => {
            if let Some(tell) = &config.on_message {
                tell(&stored);
            }
            Session::stored(&stored.id)
        }
        Ok(Err(e)) => format!("451 4.3.0 Could not store the message: {e}\r\n"),
        Err(_) => "451 4.3.0 Could not store the message\r\n".into(),
    }
}
