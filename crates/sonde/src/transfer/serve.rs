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

use tokio::io::AsyncReadExt;

use super::claims::Claims;
use super::receive::receive_greeted;
use super::wire::{self, HELLO_LEN, Message};
use super::{Progress, ReceiveOptions, Report, TransferError};
use crate::door::{self, Accepted, Door, DoorConfig, Refusal, Unidentified};

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
}

type Notify = Arc<dyn Fn(ReceiveEvent) + Send + Sync>;

struct Shared {
    options: ServeOptions,
    notify: Notify,
    sessions: AtomicUsize,
    claims: Claims,
    door: Door,
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
    let door = Door::new(config);
    let shared = Arc::new(Shared {
        options,
        notify: Arc::new(notify),
        sessions: AtomicUsize::new(0),
        claims: Claims::default(),
        door: door.clone(),
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
    Ok(())
}

fn poisoned() -> TransferError {
    TransferError::Source("a transfer thread failed".into())
}

impl Shared {
    /// Counts a session's end and wakes [`serve`]'s wait.
    fn session_ended(&self) {
        let _guard = self.ended.0.lock();
        self.sessions.fetch_sub(1, Ordering::AcqRel);
        self.ended.1.notify_all();
    }
}

/// Our hello and a refusal: what a sender past the limits hears.
fn busy_reply() -> Vec<u8> {
    refuse_reply("the receiver is busy with other transfers; try again later")
}

/// The hello and a refusal, as a sender reads them.
fn refuse_reply(reason: &str) -> Vec<u8> {
    let mut reply = wire::hello().to_vec();
    reply.extend(wire::encode(&Message::Refuse {
        reason: reason.into(),
    }));
    reply
}

/// Reads the sender's hello in a task, then starts its session's thread.
async fn greet(conn: Accepted, waiting: Unidentified, shared: Arc<Shared>) {
    let Accepted {
        mut stream,
        peer,
        permit,
    } = conn;
    let mut hello = [0u8; HELLO_LEN];
    let read = tokio::time::timeout(
        shared.options.identify_timeout,
        stream.read_exact(&mut hello),
    );
    let got = tokio::select! {
        () = waiting.evicted() => return,
        got = read => matches!(got, Ok(Ok(_))),
    };
    drop(waiting);
    // A connection that never says hello is no sender: dropped quietly.
    if !got {
        return;
    }
    let Ok(stream) = door::to_blocking(stream) else {
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
        let _ = std::io::Write::write_all(&mut &stream, &busy_reply());
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
                receive_greeted(stream, peer, options, &progress, &session.claims)
            }
            Err(source) => Err(refuse_hello(&stream, peer, source)),
        };
        (session.notify)(ReceiveEvent::Finished { peer, result });
        session.session_ended();
    };
    if permit.spawn_thread("sonde-receive", work).is_err() {
        shared.session_ended();
    }
}

/// Answers a bad hello with ours and the reason, as a refusal.
fn refuse_hello(
    stream: &std::net::TcpStream,
    peer: SocketAddr,
    source: wire::WireError,
) -> TransferError {
    let reason = source.to_string();
    let mut reply = wire::hello().to_vec();
    reply.extend(wire::encode(&Message::Refuse {
        reason: reason.clone(),
    }));
    let _ = std::io::Write::write_all(&mut &*stream, &reply);
    TransferError::Refusing {
        what: format!("what {peer} sent"),
        reason,
    }
}
