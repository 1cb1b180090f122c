//! `sonde receive` (one transfer) and `receive --keep-open` (one after
//! another, several at once) on the front door. A connection reads its
//! sender's hello in a small task, with a short deadline, and only then
//! gets a thread for its session; a sender that goes silent later times
//! out on its own and never holds up the others. Two sessions never write
//! the same file: the second is refused with the reason.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::carrier::Carrier;
use super::claims::Claims;
use super::pake;
use super::receive::receive_greeted;
use super::secure::{self, Layer, ReceiveSecurity};
use super::wire::{self, HELLO_LEN, Message};
use super::{Progress, ReceiveOptions, Report, TransferError};
use crate::door::{self, Accepted, Door, DoorConfig, Refusal, Unidentified};
use crate::tls::ServerTls;

/// How a receiving server behaves.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// How each transfer is received.
    pub receive: ReceiveOptions,
    /// Take one transfer after another (else: return after the first).
    pub keep_open: bool,
    /// Transfers at once (with `keep_open`; otherwise one).
    pub max_transfers: usize,
    /// Connections open at once, transfers and those still to say hello.
    pub max_connections: usize,
    /// How long a new connection has to send its hello.
    pub identify_timeout: Duration,
    /// Who may connect.
    pub rules: door::access::Rules,
    /// How connections are protected.
    pub security: ReceiveSecurity,
    /// With a code: senders with a wrong one, at most, before the
    /// receiver gives up (each is a guess an attacker gets).
    pub code_attempts: usize,
    /// Where the door counts connections (for a metrics endpoint).
    pub counters: Arc<door::Counters>,
}

impl ServeOptions {
    /// One transfer (or, with `keep_open`, up to 8 at once) into `receive`'s
    /// directory.
    pub fn new(receive: ReceiveOptions, keep_open: bool) -> Self {
        Self {
            receive,
            keep_open,
            max_transfers: 8,
            max_connections: 256,
            identify_timeout: door::IDENTIFY_TIMEOUT,
            rules: door::access::Rules::default(),
            security: ReceiveSecurity::Plain,
            code_attempts: 3,
            counters: Arc::default(),
        }
    }
}

/// What happened, for the caller to report.
#[derive(Debug)]
pub enum ReceiveEvent {
    /// A sender said hello; its transfer begins.
    Started {
        /// The sender.
        peer: SocketAddr,
        /// The transfer's live counters.
        progress: Arc<Progress>,
    },
    /// A transfer ended.
    Finished {
        /// The sender.
        peer: SocketAddr,
        /// Its account, or why it failed.
        result: Result<Report, TransferError>,
    },
    /// A sender was turned away: the receiver was busy.
    Busy(SocketAddr),
    /// A sender's code did not match.
    WrongCode {
        /// The sender.
        peer: SocketAddr,
        /// Wrong codes so far, this one included...
        attempt: usize,
        /// ...of the most the receiver takes.
        limit: usize,
    },
}

type Notify = Arc<dyn Fn(ReceiveEvent) + Send + Sync>;

struct Shared {
    options: ServeOptions,
    notify: Notify,
    sessions: AtomicUsize,
    claims: Claims,
    door: Door,
    /// Senders whose code did not match.
    wrong_codes: AtomicUsize,
    /// Signalled when a session ends.
    ended: (Mutex<()>, Condvar),
}

/// Serves senders on `listener` until the first transfer ends (or, with
/// `keep_open`, until the process ends).
///
/// # Errors
/// When the listener cannot be served.
pub fn serve(
    listener: TcpListener,
    options: ServeOptions,
    notify: impl Fn(ReceiveEvent) + Send + Sync + 'static,
) -> Result<(), TransferError> {
    let mut config = DoorConfig::new("receive", options.max_connections);
    config.refusal = Refusal::Send(Arc::from(busy_reply()));
    config.denial = Some(Refusal::Send(Arc::from(refuse_reply(
        "the receiver does not take connections from this address now (its access rules)",
    ))));
    config.drain = Duration::ZERO;
    config.rules = options.rules.clone();
    config.counters = Arc::clone(&options.counters);
    let door = Door::new(config);
    let shared = Arc::new(Shared {
        options,
        notify: Arc::new(notify),
        sessions: AtomicUsize::new(0),
        claims: Claims::default(),
        door: door.clone(),
        wrong_codes: AtomicUsize::new(0),
        ended: (Mutex::new(()), Condvar::new()),
    });
    let fail = |e| TransferError::io("serving senders", e);
    door.serve_blocking(listener, |conn| {
        // Marked before its task first runs, so the accept loop can make
        // room even while it is ahead of the tasks.
        let waiting = conn.permit.unidentified();
        tokio::spawn(greet(conn, waiting, Arc::clone(&shared)));
    })
    .map_err(fail)?;
    // Without --keep-open the first transfer shut the door as it began:
    // wait for it to end and report.
    let mut ended = shared.ended.0.lock().map_err(|_| poisoned())?;
    while shared.sessions.load(Ordering::Acquire) > 0 {
        ended = shared.ended.1.wait(ended).map_err(|_| poisoned())?;
    }
    let limit = shared.options.code_attempts.max(1);
    if shared.wrong_codes.load(Ordering::Acquire) >= limit {
        return Err(TransferError::Code(format!(
            "the code did not match {limit} times: the receiver gave up (run it again for a new code)"
        )));
    }
    Ok(())
}

fn poisoned() -> TransferError {
    TransferError::Source("a transfer thread failed".into())
}

impl Shared {
    /// Counts a sender's wrong code; at the limit, nobody else is let in.
    fn wrong_code(&self, peer: SocketAddr) {
        let limit = self.options.code_attempts.max(1);
        let attempt = self.wrong_codes.fetch_add(1, Ordering::AcqRel) + 1;
        (self.notify)(ReceiveEvent::WrongCode {
            peer,
            attempt,
            limit,
        });
        if attempt >= limit {
            self.door.shutdown();
        }
    }

    /// Counts a session's end and wakes [`serve`]'s wait.
    fn session_ended(&self) {
        let _guard = self.ended.0.lock();
        self.sessions.fetch_sub(1, Ordering::AcqRel);
        self.ended.1.notify_all();
    }
}

/// What a plain sender hears from a receiver that takes a code.
const PLAIN_TO_CODE: &str =
    "this receiver takes a code: send with --code CODE (the code it printed)";

/// What a plain sender hears from a receiver that takes TLS only.
const PLAIN_TO_TLS: &str =
    "this receiver takes TLS only: send with --tls (and --pin the fingerprint it printed, or --ca)";

/// Why a sender past the limits is turned away.
const BUSY: &str = "the receiver is busy with other transfers; try again later";

/// Our hello and a refusal: what a sender past the limits hears.
fn busy_reply() -> Vec<u8> {
    refuse_reply(BUSY)
}

/// The refusal alone, for a sender that has had our hello.
fn busy_frame() -> Vec<u8> {
    wire::encode(&Message::Refuse {
        reason: BUSY.into(),
    })
}

/// The hello and a refusal, as a sender reads them.
fn refuse_reply(reason: &str) -> Vec<u8> {
    let mut reply = wire::hello().to_vec();
    reply.extend(wire::encode(&Message::Refuse {
        reason: reason.into(),
    }));
    reply
}

/// A connection that said hello, on the stream its transfer runs on.
struct Greeted {
    carrier: Carrier,
    layer: Layer,
    hello: [u8; HELLO_LEN],
    /// Plain TCP: the hello answered and the offer frame read, in the task.
    early: Option<Vec<u8>>,
}

/// Reads the sender's hello in a task (after the TLS handshake, when
/// asked), then starts its session's thread.
async fn greet(conn: Accepted, waiting: Unidentified, shared: Arc<Shared>) {
    let Accepted {
        stream,
        peer,
        permit,
    } = conn;
    let greeted = tokio::select! {
        () = waiting.evicted() => return,
        greeted = identify(stream, peer, &shared) => greeted,
    };
    drop(waiting);
    // A connection that never says hello is no sender: dropped quietly.
    let Some(Greeted {
        carrier,
        layer,
        hello,
        early,
    }) = greeted
    else {
        return;
    };
    let most = if shared.options.keep_open {
        shared.options.max_transfers.max(1)
    } else {
        1
    };
    let running = shared.sessions.fetch_add(1, Ordering::AcqRel);
    if running >= most || (!shared.options.keep_open && shared.door.is_shut()) {
        shared.sessions.fetch_sub(1, Ordering::AcqRel);
        // A plain sender whose offer was read early has had our hello
        // already: a second would be read as a frame's length.
        let reply = match early {
            Some(_) => busy_frame(),
            None => busy_reply(),
        };
        tokio::task::spawn_blocking(move || {
            let _ = std::io::Write::write_all(&mut &carrier, &reply);
            drop(carrier);
            let _ = layer.close();
        });
        return (shared.notify)(ReceiveEvent::Busy(peer));
    }
    if !shared.options.keep_open {
        // The one transfer: nobody else is let in.
        shared.door.shutdown();
    }
    let session = Arc::clone(&shared);
    let work = move || {
        let progress = Arc::new(Progress::default());
        (session.notify)(ReceiveEvent::Started {
            peer,
            progress: Arc::clone(&progress),
        });
        let result = match wire::check_hello(&hello) {
            Ok(()) => {
                let options = &session.options.receive;
                receive_greeted(carrier, peer, options, &progress, (&session.claims, early))
            }
            Err(source) => Err(refuse_hello(carrier, peer, source)),
        };
        let result = secure::settle(result, layer);
        (session.notify)(ReceiveEvent::Finished { peer, result });
        session.session_ended();
    };
    if permit.spawn_thread("sonde-receive", work).is_err() {
        shared.session_ended();
    }
}

/// Answers a good hello and reads the sender's first frame (its offer),
/// whole, within `limit`; `None` when it does not come in time.
async fn offer_frame(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncWriteExt;
    let exchange = async {
        stream.write_all(&wire::hello()).await?;
        let mut frame = vec![0u8; 4];
        stream.read_exact(&mut frame).await?;
        let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        // An oversized frame is the session's to refuse, with its reason.
        if len <= wire::MAX_FRAME {
            frame.resize(4 + len, 0);
            stream.read_exact(&mut frame[4..]).await?;
        }
        Ok::<_, std::io::Error>(frame)
    };
    tokio::time::timeout(limit, exchange).await.ok()?.ok()
}

/// The hello of a new connection, read within the identify timeout (the
/// TLS handshake first, on a blocking thread, within its own).
async fn identify(
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> Option<Greeted> {
    let limit = shared.options.identify_timeout;
    match &shared.options.security {
        ReceiveSecurity::Plain => {
            let mut hello = [0u8; HELLO_LEN];
            let read = tokio::time::timeout(limit, stream.read_exact(&mut hello));
            if !matches!(read.await, Ok(Ok(_))) {
                return None;
            }
            // A sonde sender's offer too, before it takes a transfer's
            // place: one that says hello and then nothing holds none.
            let early = match wire::check_hello(&hello) {
                Ok(()) => Some(offer_frame(&mut stream, limit).await?),
                Err(_) => None,
            };
            let stream = door::to_blocking(stream).ok()?;
            Some(Greeted {
                carrier: Carrier::Tcp(stream),
                layer: Layer::default(),
                hello,
                early,
            })
        }
        ReceiveSecurity::Tls(config) => identify_tls(stream, peer, config, limit).await,
        ReceiveSecurity::Code(code) => identify_code(stream, peer, code, shared).await,
    }
}

/// The TLS handshake, then the hello over it.
async fn identify_tls(
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    config: &ServerTls,
    limit: Duration,
) -> Option<Greeted> {
    let mut hello = [0u8; HELLO_LEN];
    // A plain sender speaks first, its hello: answer it in its own
    // words rather than fail a handshake it cannot read.
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(limit, stream.peek(&mut first)).await;
    if !matches!(peeked, Ok(Ok(1))) {
        return None;
    }
    if first[0] == wire::hello()[0] {
        let _ = stream.write_all(&refuse_reply(PLAIN_TO_TLS)).await;
        return None;
    }
    let stream = door::to_blocking(stream).ok()?;
    let config = config.clone();
    let handshake = move || {
        let (carrier, layer) = secure::server(stream, peer, &config).ok()?;
        carrier.set_read_timeout(Some(limit)).ok()?;
        std::io::Read::read_exact(&mut &carrier, &mut hello).ok()?;
        Some(Greeted {
            carrier,
            layer,
            hello,
            early: None,
        })
    };
    tokio::task::spawn_blocking(handshake).await.ok().flatten()
}

/// The code handshake (a plain sender is told to use one), then the hello
/// over the sealed channel; a sender with the wrong code spends a guess.
async fn identify_code(
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    code: &str,
    shared: &Shared,
) -> Option<Greeted> {
    let limit = shared.options.identify_timeout;
    let mut opening = [0u8; pake::OPENING_LEN];
    let (head, rest) = opening.split_at_mut(HELLO_LEN);
    let read = tokio::time::timeout(limit, stream.read_exact(head)).await;
    if !matches!(read, Ok(Ok(_))) {
        return None;
    }
    if head[..wire::MAGIC.len()] == wire::MAGIC {
        let _ = stream.write_all(&refuse_reply(PLAIN_TO_CODE)).await;
        return None;
    }
    let read = tokio::time::timeout(limit, stream.read_exact(rest)).await;
    if !matches!(read, Ok(Ok(_))) {
        return None;
    }
    let stream = door::to_blocking(stream).ok()?;
    let code = code.to_string();
    let handshake = move || {
        let (carrier, layer) = secure::code_server(stream, peer, &code, &opening, limit)?;
        let mut hello = [0u8; HELLO_LEN];
        let read = carrier
            .set_read_timeout(Some(limit))
            .and_then(|()| std::io::Read::read_exact(&mut &carrier, &mut hello));
        match read {
            Ok(()) => Ok(Greeted {
                carrier,
                layer,
                hello,
                early: None,
            }),
            Err(e) => Err((false, TransferError::io("reading the hello", e))),
        }
    };
    match tokio::task::spawn_blocking(handshake).await {
        Ok(Ok(greeted)) => Some(greeted),
        Ok(Err((true, _))) => {
            shared.wrong_code(peer);
            None
        }
        _ => None,
    }
}

/// Answers a bad hello with ours and the reason, as a refusal.
fn refuse_hello(stream: Carrier, peer: SocketAddr, source: wire::WireError) -> TransferError {
    let reason = source.to_string();
    let mut reply = wire::hello().to_vec();
    reply.extend(wire::encode(&Message::Refuse {
        reason: reason.clone(),
    }));
    let _ = std::io::Write::write_all(&mut &stream, &reply);
    TransferError::Refusing {
        what: format!("what {peer} sent"),
        reason,
    }
}
