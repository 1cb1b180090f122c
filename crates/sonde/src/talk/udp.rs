//! Talking and listening over datagrams, as nc does, on UDP or a Unix
//! datagram socket (`-uU`): each input line (newline kept) is one
//! datagram, and every datagram received is written out as it arrives.
//! Datagrams have no end-of-stream, so the talker stops after a spell of
//! silence once its input has ended.

use std::collections::VecDeque;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use super::pump::{Activity, Filters, HexSink};
use super::relay::Input;
use super::transform::Direction;
use crate::error::{Error, Result};
use crate::net::unix::UnixPath;

/// The largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;
/// Lines kept for a listener before any peer has spoken; past this the
/// input waits, so nothing typed is lost.
const HELD_LINES: usize = 1024;

/// How a UDP talker or listener behaves.
#[derive(Clone, Default)]
pub struct UdpOptions {
    /// After the input ends, stop once nothing has arrived for this long
    /// (for a listener: only when set).
    pub quit_after: Option<Duration>,
    /// Send line feeds as CRLF.
    pub crlf: bool,
    /// Dump traffic in hex to this sink.
    pub hex: Option<HexSink>,
    /// Copy traffic, both ways as it is, to this sink (ncat's `-o`).
    pub session: Option<HexSink>,
}

impl UdpOptions {
    fn filters(&self, direction: Direction) -> Filters {
        Filters::for_direction(direction, self.crlf, self.hex.as_ref())
            .with_session(self.session.as_ref())
    }
}

/// A datagram socket nc's way of talking runs on: UDP, or a Unix
/// datagram socket.
pub trait Datagrams: Send + Sync + Sized + 'static {
    /// A sender's address, to answer it.
    type Addr: Clone + PartialEq + Send + fmt::Display + 'static;
    /// Receives one datagram and who sent it (`None`: a sender that
    /// cannot be answered, an unbound Unix socket).
    fn recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, Option<Self::Addr>)>;
    /// Sends one datagram to `to`.
    fn send_to(&self, buf: &[u8], to: &Self::Addr) -> std::io::Result<usize>;
    /// Sends one datagram to the connected peer.
    fn send(&self, buf: &[u8]) -> std::io::Result<usize>;
    /// The connected peer.
    fn peer(&self) -> std::io::Result<Self::Addr>;
    /// A second handle on the same socket.
    fn try_clone(&self) -> std::io::Result<Self>;
}

impl Datagrams for UdpSocket {
    type Addr = SocketAddr;
    fn recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, Option<SocketAddr>)> {
        UdpSocket::recv_from(self, buf).map(|(n, from)| (n, Some(from)))
    }
    fn send_to(&self, buf: &[u8], to: &SocketAddr) -> std::io::Result<usize> {
        UdpSocket::send_to(self, buf, to)
    }
    fn send(&self, buf: &[u8]) -> std::io::Result<usize> {
        UdpSocket::send(self, buf)
    }
    fn peer(&self) -> std::io::Result<SocketAddr> {
        self.peer_addr()
    }
    fn try_clone(&self) -> std::io::Result<Self> {
        UdpSocket::try_clone(self)
    }
}

impl Datagrams for UnixDatagram {
    type Addr = UnixPath;
    fn recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, Option<UnixPath>)> {
        UnixDatagram::recv_from(self, buf).map(|(n, from)| (n, UnixPath::of(&from)))
    }
    fn send_to(&self, buf: &[u8], to: &UnixPath) -> std::io::Result<usize> {
        self.send_to_addr(buf, &to.addr()?)
    }
    fn send(&self, buf: &[u8]) -> std::io::Result<usize> {
        UnixDatagram::send(self, buf)
    }
    fn peer(&self) -> std::io::Result<UnixPath> {
        let addr = self.peer_addr()?;
        UnixPath::of(&addr).ok_or_else(|| std::io::ErrorKind::NotConnected.into())
    }
    fn try_clone(&self) -> std::io::Result<Self> {
        UnixDatagram::try_clone(self)
    }
}

/// Datagrams moved by a finished exchange.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams received.
    pub received: u64,
}

enum Event {
    InputDone(Result<u64>),
    Received(Result<u64>),
}

/// Splits the input into datagrams: one per line, or the whole message.
fn for_each_datagram(input: Input, mut send: impl FnMut(&[u8]) -> Result<()>) -> Result<u64> {
    let mut count = 0;
    match input {
        Input::Nothing => {}
        Input::Bytes(bytes) => {
            for part in bytes.chunks(MAX_DATAGRAM) {
                send(part)?;
                count += 1;
            }
        }
        Input::Fd(fd) => {
            let mut reader = BufReader::new(std::fs::File::from(fd));
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = (&mut reader)
                    .take(MAX_DATAGRAM as u64)
                    .read_until(b'\n', &mut line)
                    .map_err(|e| Error::io("reading the input", e))?;
                if n == 0 {
                    break;
                }
                send(&line)?;
                count += 1;
            }
        }
    }
    Ok(count)
}

/// Sends each datagram to the connected peer and prints replies, until the
/// input has ended and `quit_after` (default 1 s) has passed in silence.
///
/// # Errors
/// [`Error::Io`] when sending fails or the peer's port is closed (ICMP
/// port unreachable arrives as "connection refused").
pub fn talk<S: Datagrams>(
    sock: S,
    input: Input,
    output: OwnedFd,
    opts: UdpOptions,
) -> Result<UdpStats> {
    let peer = sock
        .peer()
        .map_err(|e| Error::io("reading the peer's address", e))?;
    let activity = Activity::new();
    let (tx, rx) = mpsc::channel();
    spawn_receiver(&sock, output, &opts, &activity, tx.clone(), None)?;
    let sender = clone(&sock)?;
    spawn_sender(input, &opts, tx, move |bytes| {
        sender
            .send(&bytes)
            .map(drop)
            .map_err(|e| Error::io(format!("sending to {peer}"), e))
    })?;
    let quiet = opts.quit_after.unwrap_or(Duration::from_secs(1));
    wait(&rx, &activity, Some(quiet))
}

/// Waits for the input to end, then for `quiet` without a datagram.
fn wait(
    rx: &mpsc::Receiver<Event>,
    activity: &Activity,
    quiet: Option<Duration>,
) -> Result<UdpStats> {
    let mut stats = UdpStats::default();
    let mut input_done_at: Option<Instant> = None;
    loop {
        let deadline = input_done_at
            .zip(quiet)
            .map(|(at, q)| at.max(activity.last()) + q);
        let event = match deadline {
            Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match event {
            Ok(Event::InputDone(result)) => {
                stats.sent = result?;
                input_done_at = Some(Instant::now());
            }
            Ok(Event::Received(result)) => {
                stats.received = result?;
                return Ok(stats);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if deadline.is_some_and(|at| Instant::now() >= at) {
                    return Ok(stats);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(stats),
        }
    }
}

/// A datagram as it goes out: CRLF-expanded when asked, and dumped.
fn outgoing(filters: &mut Filters, datagram: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    match filters.crlf.as_mut() {
        Some(crlf) => crlf.convert(datagram, &mut bytes),
        None => bytes.extend_from_slice(datagram),
    }
    filters.dump(&bytes);
    bytes
}

fn clone<S: Datagrams>(sock: &S) -> Result<S> {
    sock.try_clone()
        .map_err(|e| Error::io("duplicating the socket", e))
}

/// Who a listener replies to, and the lines waiting for someone to speak.
struct Peer<A> {
    last: Option<A>,
    held: VecDeque<Vec<u8>>,
}

impl<A> Default for Peer<A> {
    fn default() -> Self {
        Self {
            last: None,
            held: VecDeque::new(),
        }
    }
}

type SharedPeer<A> = Arc<(Mutex<Peer<A>>, Condvar)>;
/// Reports a new peer to the caller.
type OnPeer<A> = Box<dyn Fn(&A) + Send>;
/// A listener's half of the receiver: who it answers, and the caller's
/// hook for a new sender.
type Listener<A> = (SharedPeer<A>, OnPeer<A>);

fn spawn_receiver<S: Datagrams>(
    sock: &S,
    output: OwnedFd,
    opts: &UdpOptions,
    activity: &Activity,
    tx: mpsc::Sender<Event>,
    listener: Option<Listener<S::Addr>>,
) -> Result<()> {
    let sock = clone(sock)?;
    let mut filters = opts.filters(Direction::Received);
    let activity = activity.clone();
    thread::Builder::new()
        .name("sonde-udp-recv".into())
        .spawn(move || {
            let mut buf = vec![0u8; 65_536];
            let mut count = 0u64;
            let result = loop {
                let (n, from) = match sock.recv_from(&mut buf) {
                    Ok(pair) => pair,
                    Err(e) => break Err(Error::io("receiving a datagram", e)),
                };
                activity.touch();
                count += 1;
                if let (Some((peer, on_peer)), Some(from)) = (listener.as_ref(), from) {
                    note_peer(&sock, peer, from, on_peer.as_ref());
                }
                if filters.write(output.as_fd(), &buf[..n]).is_err() {
                    break Ok(count);
                }
            };
            let _ = tx.send(Event::Received(result));
        })
        .map_err(|e| Error::io("starting the receiving thread", e))?;
    Ok(())
}

/// Remembers the latest sender and hands it any held lines.
fn note_peer<S: Datagrams>(
    sock: &S,
    peer: &SharedPeer<S::Addr>,
    from: S::Addr,
    on_peer: &dyn Fn(&S::Addr),
) {
    let (lock, ready) = &**peer;
    let Ok(mut state) = lock.lock() else { return };
    if state.last.as_ref() != Some(&from) {
        on_peer(&from);
        state.last = Some(from.clone());
    }
    while let Some(line) = state.held.pop_front() {
        let _ = sock.send_to(&line, &from);
    }
    ready.notify_all();
}

/// Prints every datagram received on `sock`; input lines go to the last peer
/// that sent one (lines typed before any peer has spoken wait for one).
/// Runs until the process ends, or, with `quit_after`, until the input has
/// ended and that long has passed in silence.
///
/// # Errors
/// [`Error::Io`] when receiving fails.
pub fn listen<S: Datagrams>(
    sock: S,
    input: Input,
    output: OwnedFd,
    opts: UdpOptions,
    on_peer: impl Fn(&S::Addr) + Send + 'static,
) -> Result<UdpStats> {
    let activity = Activity::new();
    let (tx, rx) = mpsc::channel();
    let peer: SharedPeer<S::Addr> = Arc::default();
    let listener = (Arc::clone(&peer), Box::new(on_peer) as OnPeer<S::Addr>);
    spawn_receiver(&sock, output, &opts, &activity, tx.clone(), Some(listener))?;
    spawn_sender(input, &opts, tx, move |bytes| {
        send_or_hold(&sock, &peer, bytes)
    })?;
    wait(&rx, &activity, opts.quit_after)
}

/// Sends each input line as a datagram (expanded and dumped) with `send`,
/// on a thread of its own, and reports the end of the input.
fn spawn_sender(
    input: Input,
    opts: &UdpOptions,
    tx: mpsc::Sender<Event>,
    mut send: impl FnMut(Vec<u8>) -> Result<()> + Send + 'static,
) -> Result<()> {
    let mut filters = opts.filters(Direction::Sent);
    thread::Builder::new()
        .name("sonde-udp-send".into())
        .spawn(move || {
            let result =
                for_each_datagram(input, |datagram| send(outgoing(&mut filters, datagram)));
            let _ = tx.send(Event::InputDone(result));
        })
        .map(drop)
        .map_err(|e| Error::io("starting the sending thread", e))
}

fn send_or_hold<S: Datagrams>(sock: &S, peer: &SharedPeer<S::Addr>, bytes: Vec<u8>) -> Result<()> {
    let (lock, ready) = &**peer;
    let mut state = lock
        .lock()
        .map_err(|_| Error::Invalid("peer state poisoned".into()))?;
    while state.last.is_none() && state.held.len() >= HELD_LINES {
        state = ready
            .wait(state)
            .map_err(|_| Error::Invalid("peer state poisoned".into()))?;
    }
    match &state.last {
        Some(to) => sock
            .send_to(&bytes, to)
            .map(drop)
            .map_err(|e| Error::io(format!("sending to {to}"), e)),
        None => {
            state.held.push_back(bytes);
            Ok(())
        }
    }
}
