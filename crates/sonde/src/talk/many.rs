//! `listen -k`: many clients at once, on the front door. Each client is a
//! small task: it passes what the client sends to the output a whole read
//! at a time (so chunks never interleave mid-write), and writes the input
//! to the client from a bounded queue. The input goes to every client's
//! queue and moves on at the pace of the clients that read: a client whose
//! queue stays full for [`STALL`] (it stopped reading) is dropped with a
//! notice, so it holds the input up that long once, and never the accept
//! loop.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::pump::{Activity, Filters};
use super::relay::{Input, RelayOptions};
use super::transform::Direction;
use crate::door::{Accepted, Door, DoorConfig};
use crate::error::{Error, Result};

/// Chunks of input (a read of up to 64 KiB each) queued for one client
/// before it counts as not reading.
pub const QUEUE: usize = 64;

/// How long the input waits for room in a full queue before its client
/// counts as not reading.
pub const STALL: Duration = Duration::from_secs(1);

/// ncat's default for `--max-conns`.
pub const DEFAULT_MAX_CLIENTS: usize = 100;

/// Who a client is: a TCP peer's address, or (a Unix socket's peers have
/// none) the order it came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// A TCP client.
    Tcp(SocketAddr),
    /// The Nth client of a Unix socket.
    Unix(u64),
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(n) => write!(f, "unix client {n}"),
        }
    }
}

/// Something that happened to one client, for the caller to report.
#[derive(Debug)]
pub enum ClientEvent {
    /// A client connected.
    Connected(Client),
    /// A client finished sending and was closed.
    Closed(Client),
    /// A client stopped reading and its queue filled: it was dropped.
    Dropped(Client),
    /// A client's connection failed; others go on.
    Failed(Client, Error),
}

type Notify = Arc<dyn Fn(ClientEvent) + Send + Sync>;

/// One connected client, as the input sees it.
struct Member {
    queue: mpsc::Sender<Arc<[u8]>>,
    /// Cancelled when the client is dropped.
    kick: CancellationToken,
}

type Members = Arc<Mutex<HashMap<u64, Member>>>;

/// The input's chunks, as they are read.
type Chunks = mpsc::Receiver<Arc<[u8]>>;

/// What goes to the output thread, in order.
enum Out {
    /// A client's read.
    Chunk(Vec<u8>),
    /// Answered once everything before it is written.
    Flushed(tokio::sync::oneshot::Sender<()>),
}

/// What every client task shares.
struct Shared {
    members: Members,
    output: mpsc::Sender<Out>,
    opts: RelayOptions,
    notify: Notify,
    /// Each client speaks TLS.
    tls: Option<crate::tls::ServerTls>,
}

/// Serves clients of `listener` through a door configured by `door` (its
/// cap and access rules; others are closed at once), until the process
/// ends.
///
/// # Errors
/// When a thread or the runtime cannot be started.
pub fn serve_many(
    listener: TcpListener,
    input: Input,
    output: OwnedFd,
    opts: RelayOptions,
    door: DoorConfig,
    tls: Option<crate::tls::ServerTls>,
    on_event: impl Fn(ClientEvent) + Send + Sync + 'static,
) -> Result<()> {
    let (shared, in_rx) = setup(input, output, opts, tls, Arc::new(on_event))?;
    let door = Door::new(door);
    let runtime = crate::door::runtime().map_err(|e| Error::io("starting the runtime", e))?;
    runtime.block_on(async {
        let listener = crate::door::to_tokio(listener)
            .map_err(|e| Error::io("registering the listener", e))?;
        tokio::spawn(broadcast(in_rx, Arc::clone(&shared.members)));
        let mut next_id = 0u64;
        door.serve(listener, |accepted| {
            next_id += 1;
            join(accepted, next_id, &shared);
        })
        .await;
        Ok(())
    })
}

/// As [`serve_many`], on a Unix stream socket (no TLS: a Unix socket
/// does not leave the machine).
///
/// # Errors
/// When a thread or the runtime cannot be started.
pub fn serve_many_unix(
    listener: std::os::unix::net::UnixListener,
    input: Input,
    output: OwnedFd,
    opts: RelayOptions,
    door: DoorConfig,
    on_event: impl Fn(ClientEvent) + Send + Sync + 'static,
) -> Result<()> {
    let (shared, in_rx) = setup(input, output, opts, None, Arc::new(on_event))?;
    let door = Door::new(door);
    let runtime = crate::door::runtime().map_err(|e| Error::io("starting the runtime", e))?;
    runtime.block_on(async {
        let registering = |e| Error::io("registering the listener", e);
        listener.set_nonblocking(true).map_err(registering)?;
        let listener = tokio::net::UnixListener::from_std(listener).map_err(registering)?;
        tokio::spawn(broadcast(in_rx, Arc::clone(&shared.members)));
        let mut next_id = 0u64;
        door.serve_unix(listener, |conn| {
            next_id += 1;
            let (id, peer) = (next_id, Client::Unix(next_id));
            let (rx, kick) = enlist(id, peer, &shared);
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let activity = Activity::new();
                let (reader, writer) = conn.stream.into_split();
                let read = read_client(reader, (peer, id), &shared, &activity, &kick);
                let write = write_client(writer, rx, &shared.opts, &activity, &kick);
                let read = tokio::join!(read, write).0;
                leave(read, peer, id, &shared).await;
                drop(conn.permit);
            });
        })
        .await;
        Ok(())
    })
}

/// The output and input threads and what every client task shares.
fn setup(
    input: Input,
    output: OwnedFd,
    opts: RelayOptions,
    tls: Option<crate::tls::ServerTls>,
    notify: Notify,
) -> Result<(Arc<Shared>, Chunks)> {
    let (out_tx, out_rx) = mpsc::channel(QUEUE);
    spawn_output(output, out_rx)?;
    let (in_tx, in_rx) = mpsc::channel(4);
    spawn_input(input, in_tx, &opts)?;
    let shared = Arc::new(Shared {
        members: Arc::default(),
        output: out_tx,
        opts,
        notify,
        tls,
    });
    Ok((shared, in_rx))
}

/// Lists a new client (before it is reported, so input typed after the
/// report reaches it); its queue and its kick.
fn enlist(
    id: u64,
    peer: Client,
    shared: &Shared,
) -> (mpsc::Receiver<Arc<[u8]>>, CancellationToken) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let kick = CancellationToken::new();
    if let Ok(mut members) = shared.members.lock() {
        let member = Member {
            queue: tx,
            kick: kick.clone(),
        };
        members.insert(id, member);
    }
    (shared.notify)(ClientEvent::Connected(peer));
    (rx, kick)
}

/// A client's end: what it sent is out before it is reported gone.
async fn leave(read: Result<()>, peer: Client, id: u64, shared: &Shared) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if shared.output.send(Out::Flushed(tx)).await.is_ok() {
        let _ = rx.await;
    }
    let dropped = shared
        .members
        .lock()
        .ok()
        .and_then(|mut m| m.remove(&id))
        .is_none();
    let event = match read {
        _ if dropped => ClientEvent::Dropped(peer),
        Ok(()) => ClientEvent::Closed(peer),
        Err(e) => ClientEvent::Failed(peer, e),
    };
    (shared.notify)(event);
}

/// Lists a new TCP client and starts its task.
fn join(accepted: Accepted, id: u64, shared: &Arc<Shared>) {
    let Accepted {
        stream,
        peer,
        permit,
    } = accepted;
    let peer = Client::Tcp(peer);
    let (rx, kick) = enlist(id, peer, shared);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let activity = Activity::new();
        let read = match shared.tls.clone() {
            None => {
                let (reader, writer) = stream.into_split();
                let read = read_client(reader, (peer, id), &shared, &activity, &kick);
                let write = write_client(writer, rx, &shared.opts, &activity, &kick);
                tokio::join!(read, write).0
            }
            Some(tls) => over_tls(stream, (peer, id), tls, rx, &shared, &activity, &kick).await,
        };
        leave(read, peer, id, &shared).await;
        drop(permit);
    });
}

/// A client over TLS: the handshake on a blocking thread (it has its own
/// deadline), then the same reading and writing on the bridge's
/// plaintext end; a session that broke is the client's failure.
async fn over_tls(
    stream: tokio::net::TcpStream,
    (peer, id): (Client, u64),
    tls: crate::tls::ServerTls,
    rx: mpsc::Receiver<Arc<[u8]>>,
    shared: &Shared,
    activity: &Activity,
    kick: &CancellationToken,
) -> Result<()> {
    let tls_failed = |e: crate::tls::TlsError| {
        Error::io(
            format!("the TLS session with {peer}"),
            std::io::Error::other(e.to_string()),
        )
    };
    let stream = stream
        .into_std()
        .and_then(|s| s.set_nonblocking(false).map(|()| s))
        .map_err(|e| Error::io(format!("taking the connection of {peer}"), e))?;
    let name = peer.to_string();
    let (plain, bridge) =
        tokio::task::spawn_blocking(move || crate::tls::accept(stream, &tls, &name))
            .await
            .map_err(|e| Error::io("the TLS handshake", std::io::Error::other(e.to_string())))?
            .map_err(|e| {
                Error::io(
                    "accepting a TLS client",
                    std::io::Error::other(e.to_string()),
                )
            })?;
    let plain = plain
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(plain))
        .map_err(|e| Error::io(format!("registering the TLS session of {peer}"), e))?;
    let (reader, writer) = plain.into_split();
    let read = read_client(reader, (peer, id), shared, activity, kick);
    let write = write_client(writer, rx, &shared.opts, activity, kick);
    let read = tokio::join!(read, write).0;
    let ended = tokio::task::spawn_blocking(move || bridge.finish()).await;
    match ended {
        Ok(Err(e)) => Err(tls_failed(e)),
        _ => read,
    }
}

/// Passes what the client sends to the output until it ends, fails, is
/// dropped, or (with an idle timeout) nothing moves either way for long.
async fn read_client(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    (peer, id): (Client, u64),
    shared: &Shared,
    activity: &Activity,
    kick: &CancellationToken,
) -> Result<()> {
    // Whatever way the client ends, its writer stops too.
    let _stop_writer = kick.clone().drop_guard();
    let mut dump = shared.opts.filters(Direction::Received);
    let idle = shared.opts.idle_timeout.unwrap_or(Duration::MAX);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::select! {
            () = kick.cancelled() => return Ok(()),
            read = tokio::time::timeout(idle, reader.read(&mut buf)) => read,
        };
        let n = match read {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(Error::io(format!("receiving from {peer}"), e)),
            Err(_) if activity.last().elapsed() < idle => continue,
            Err(_) => {
                return Err(Error::IdleTimeout {
                    what: format!("the connection with {peer}"),
                    after: idle,
                });
            }
        };
        activity.touch();
        dump.dump(&buf[..n]);
        if shared.opts.broker {
            deliver(&shared.members, &Arc::from(&buf[..n]), Some(id)).await;
        }
        if shared
            .output
            .send(Out::Chunk(buf[..n].to_vec()))
            .await
            .is_err()
        {
            return Err(Error::io(
                "writing the output",
                std::io::ErrorKind::BrokenPipe.into(),
            ));
        }
    }
}

/// Writes the greeting, then the input chunks queued for the client.
async fn write_client(
    mut writer: impl WriteHalf,
    mut queue: mpsc::Receiver<Arc<[u8]>>,
    opts: &RelayOptions,
    activity: &Activity,
    kick: &CancellationToken,
) {
    if let Some(greeting) = &opts.greeting {
        // The greeting is sent as given: --crlf is for what is typed.
        let mut dump = Filters {
            crlf: None,
            ..opts.filters(Direction::Sent)
        };
        dump.dump(greeting);
        if writer.write_all(greeting).await.is_err() {
            return kick.cancel();
        }
    }
    loop {
        let chunk = tokio::select! {
            () = kick.cancelled() => break,
            chunk = queue.recv() => chunk,
        };
        let Some(chunk) = chunk else { break };
        let written = tokio::select! {
            () = kick.cancelled() => break,
            written = writer.write_all(&chunk) => written,
        };
        if written.is_err() {
            return kick.cancel();
        }
        activity.touch();
    }
    writer.shut_both();
}

/// The writing half of a client's stream: TCP, or the plaintext end of a
/// TLS bridge.
trait WriteHalf: tokio::io::AsyncWrite + Unpin + Send {
    /// Ends the connection both ways (the reader stops too).
    fn shut_both(&self);
}

impl WriteHalf for OwnedWriteHalf {
    fn shut_both(&self) {
        let _ = socket2::SockRef::from(self.as_ref()).shutdown(Shutdown::Both);
    }
}

impl WriteHalf for tokio::net::unix::OwnedWriteHalf {
    fn shut_both(&self) {
        let _ = socket2::SockRef::from(self.as_ref()).shutdown(Shutdown::Both);
    }
}

/// Writes what clients send to the output, one whole read at a time.
fn spawn_output(output: OwnedFd, mut chunks: mpsc::Receiver<Out>) -> Result<()> {
    let mut output = std::fs::File::from(output);
    std::thread::Builder::new()
        .name("sonde-output".into())
        .spawn(move || {
            while let Some(out) = chunks.blocking_recv() {
                match out {
                    Out::Chunk(chunk) => {
                        if output.write_all(&chunk).is_err() {
                            return;
                        }
                    }
                    Out::Flushed(done) => {
                        let _ = done.send(());
                    }
                }
            }
        })
        .map(drop)
        .map_err(|e| Error::io("starting the output thread", e))
}

/// Reads the input, expanded and dumped once, a chunk at a time.
fn spawn_input(input: Input, chunks: mpsc::Sender<Arc<[u8]>>, opts: &RelayOptions) -> Result<()> {
    let mut filters = opts.filters(Direction::Sent);
    std::thread::Builder::new()
        .name("sonde-input".into())
        .spawn(move || {
            let mut reader: Box<dyn Read> = match input {
                Input::Fd(fd) => Box::new(std::fs::File::from(fd)),
                Input::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes)),
                Input::Nothing => return,
            };
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                let chunk: Arc<[u8]> = Arc::from(filters.apply(&buf[..n]).as_ref());
                if chunks.blocking_send(chunk).is_err() {
                    return;
                }
            }
        })
        .map(drop)
        .map_err(|e| Error::io("starting the input thread", e))
}

/// Queues each input chunk for every client.
async fn broadcast(mut chunks: mpsc::Receiver<Arc<[u8]>>, members: Members) {
    while let Some(chunk) = chunks.recv().await {
        deliver(&members, &chunk, None).await;
    }
}

/// Queues `chunk` for every client but `except`. A full queue is waited
/// on for at most [`STALL`]; then its client is unlisted and kicked (its
/// task, finding itself unlisted, reports it dropped).
async fn deliver(members: &Members, chunk: &Arc<[u8]>, except: Option<u64>) {
    let listed: Vec<(u64, mpsc::Sender<Arc<[u8]>>)> = match members.lock() {
        Ok(m) => m
            .iter()
            .filter(|(id, _)| Some(**id) != except)
            .map(|(id, m)| (*id, m.queue.clone()))
            .collect(),
        Err(_) => return,
    };
    for (id, queue) in listed {
        let full = match queue.try_send(Arc::clone(chunk)) {
            Err(mpsc::error::TrySendError::Full(chunk)) => chunk,
            // Sent, or its task is ending and unlists it itself.
            _ => continue,
        };
        let sent = queue.send_timeout(full, STALL).await;
        if let Err(mpsc::error::SendTimeoutError::Timeout(_)) = sent
            && let Some(member) = members.lock().ok().and_then(|mut m| m.remove(&id))
        {
            member.kick.cancel();
        }
    }
}
