//! The thread reflector: echo (`serve echo --blocking`, `--busy-poll`,
//! the echo embedded in `sonde rtt`) and sockperf's ping-pong (`serve
//! sockperf`) on a thread per client and plain sockets, so nothing but
//! the kernel sits on the measured path (a blocking `recv` where a runtime
//! pays an `epoll_wait` per request), and it can spin instead of sleeping.
//!
//! Clients come through the front door like any other: a client that has
//! not sent anything yet waits in a small task, and gets its thread only
//! with its first bytes, so idle connections never cost a thread.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, poll};

use tokio::net::TcpListener;

use super::{ServiceKind, Stats, datagram};
use crate::door::{self, Accepted, Door, DoorConfig};
use crate::error::{Error, Result};
use crate::wire::sockperf;

/// What the reflector answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reflect {
    /// Every byte back.
    Echo,
    /// sockperf's pong requests back, as `serve sockperf`.
    Sockperf,
}

/// How a client's thread waits for data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Sleeps in a blocking `recv`.
    Blocking,
    /// Spins on a non-blocking socket (a CPU per client).
    BusyPoll,
}

impl Mode {
    /// Spinning with `busy_poll`, else blocking.
    pub fn spinning(busy_poll: bool) -> Self {
        if busy_poll {
            Self::BusyPoll
        } else {
            Self::Blocking
        }
    }
}

/// How a reflector behaves.
#[derive(Clone, Copy, Debug)]
pub struct ReflectConfig {
    /// What it answers.
    pub reflect: Reflect,
    /// How it waits.
    pub mode: Mode,
    /// Close a client that moves nothing for this long.
    pub idle: Option<Duration>,
}

/// Bytes a client's thread asks of each read. Measured pinned to one CPU
/// with 16 KiB messages: a 256 KiB read settles after about half a second
/// at ~32 us round trips where 64 or 128 KiB stay at ~23 us (so does
/// sockperf's server, 65,507).
const REFLECT_READ: usize = 64 * 1024;

/// How often a blocked client thread looks at shutdown and its idle time.
const TICK: Duration = Duration::from_millis(250);

/// How long a busy-polling client spins without data before it sleeps
/// until data comes: round trips back to back never leave a gap that long,
/// and an idle or slow client stops burning a CPU.
const SPIN_HOT: Duration = Duration::from_millis(5);

/// The places to spin in (`--busy-poll`): one CPU left free for the rest,
/// so spinning clients can never take the whole machine; a client without
/// a place sleeps in `poll` as a blocking one does.
#[derive(Debug)]
pub(crate) struct Spinners {
    held: AtomicUsize,
    max: usize,
}

impl Spinners {
    fn new() -> Arc<Self> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Arc::new(Self {
            held: AtomicUsize::new(0),
            max: cpus.saturating_sub(1).max(1),
        })
    }

    fn try_take(&self) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    fn give(&self) {
        self.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `config` on `listener` through `door` until the door shuts,
/// then waits for the clients' threads, at most the drain time.
pub async fn serve(listener: TcpListener, config: ReflectConfig, door: Door, stats: Arc<Stats>) {
    let spinners = Spinners::new();
    door.serve(listener, |accepted| {
        tokio::spawn(hand_over(
            accepted,
            config,
            (door.clone(), Arc::clone(&spinners)),
            Arc::clone(&stats),
        ));
    })
    .await;
    door.drained().await;
}

/// Waits, in a task, for the client's first bytes, then gives it a thread.
async fn hand_over(
    accepted: Accepted,
    config: ReflectConfig,
    (door, spinners): (Door, Arc<Spinners>),
    stats: Arc<Stats>,
) {
    let Accepted {
        stream,
        peer,
        permit,
    } = accepted;
    let closing = door.closing();
    let idle = config.idle.unwrap_or(Duration::MAX);
    // A peek, not `readable()`, which may wake before there is data.
    let mut first = [0u8; 1];
    let ready = tokio::select! {
        () = closing.cancelled() => false,
        ready = tokio::time::timeout(idle, stream.peek(&mut first)) => matches!(ready, Ok(Ok(1..))),
    };
    if !ready {
        return;
    }
    let Ok(conn) = door::to_blocking(stream) else {
        return;
    };
    let _ = conn.set_nodelay(true);
    let setup = match config.mode {
        Mode::BusyPoll => conn.set_nonblocking(true),
        Mode::Blocking => conn
            .set_read_timeout(Some(TICK))
            .and_then(|()| conn.set_write_timeout(Some(TICK))),
    };
    if setup.is_ok() {
        give_thread(conn, permit, config, (door, spinners), stats, &peer);
    }
}

/// Runs a client ready for its thread on one of its own.
fn give_thread<C: Conn>(
    conn: C,
    permit: door::Permit,
    config: ReflectConfig,
    (door, spinners): (Door, Arc<Spinners>),
    stats: Arc<Stats>,
    peer: &dyn std::fmt::Display,
) {
    let work = move || Client::new(conn, config, &door, spinners).run(&stats);
    if let Err(err) = permit.spawn_thread("sonde-reflect", work) {
        tracing::warn!("reflector: starting a thread for {peer}: {err}");
    }
}

/// [`serve`] on a Unix stream socket: the same threads and modes, no
/// kernel network stack between the ends.
pub async fn serve_unix(
    listener: tokio::net::UnixListener,
    config: ReflectConfig,
    door: Door,
    stats: Arc<Stats>,
) {
    let spinners = Spinners::new();
    door.serve_unix(listener, |accepted| {
        let door::UnixAccepted { stream, permit } = accepted;
        let ends = (door.clone(), Arc::clone(&spinners));
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            let closing = ends.0.closing();
            let idle = config.idle.unwrap_or(Duration::MAX);
            // Unix clients are this machine's: waiting for readiness (not
            // a peek, which tokio's Unix stream lacks) is enough to keep
            // idle ones off threads.
            let ready = tokio::select! {
                () = closing.cancelled() => false,
                ready = tokio::time::timeout(idle, stream.readable()) => matches!(ready, Ok(Ok(()))),
            };
            let Some(conn) = ready.then(|| stream.into_std().ok()).flatten() else {
                return;
            };
            let setup = match config.mode {
                Mode::BusyPoll => Ok(()),
                Mode::Blocking => conn
                    .set_nonblocking(false)
                    .and_then(|()| conn.set_read_timeout(Some(TICK)))
                    .and_then(|()| conn.set_write_timeout(Some(TICK))),
            };
            if setup.is_ok() {
                give_thread(conn, permit, config, ends, stats, &"a Unix client");
            }
        });
    })
    .await;
    door.drained().await;
}

/// A connection the reflector answers on: TCP, or a Unix stream socket.
pub(crate) trait Conn: Read + Write + std::os::fd::AsFd + Send + 'static {}
impl Conn for TcpStream {}
impl Conn for std::os::unix::net::UnixStream {}

/// One client's thread.
struct Client<'a, C: Conn> {
    conn: C,
    config: ReflectConfig,
    door: &'a Door,
    last: Instant,
    /// Counts idle spins between looks at the clock.
    spins: u32,
    /// sockperf: the start of a message still arriving.
    pending: Vec<u8>,
    /// sockperf: the replies to one read's messages.
    replies: Vec<u8>,
    spinners: Arc<Spinners>,
    /// Busy-polling: whether this client holds a place to spin in.
    spinning: bool,
}

impl<C: Conn> Drop for Client<'_, C> {
    fn drop(&mut self) {
        if self.spinning {
            self.spinners.give();
        }
    }
}

impl<'a, C: Conn> Client<'a, C> {
    fn new(conn: C, config: ReflectConfig, door: &'a Door, spinners: Arc<Spinners>) -> Self {
        let spinning = config.mode == Mode::BusyPoll && spinners.try_take();
        Self {
            conn,
            config,
            door,
            last: Instant::now(),
            spins: 0,
            pending: Vec::new(),
            replies: Vec::new(),
            spinners,
            spinning,
        }
    }

    fn run(mut self, stats: &Stats) {
        let mut buf = vec![0u8; REFLECT_READ];
        loop {
            let n = match crate::sys::retry_io(|| self.conn.read(&mut buf)) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if crate::sys::timed_out(&e) => {
                    if self.gave_up(PollFlags::IN) {
                        return;
                    }
                    continue;
                }
                Err(_) => return,
            };
            self.last = Instant::now();
            stats.add_in(n);
            let sent = match self.config.reflect {
                Reflect::Echo => self.write_all(&buf[..n]).map(|()| n),
                Reflect::Sockperf => self.answer(&mut buf[..n]),
            };
            match sent {
                Some(sent) => stats.add_out(sent),
                None => return,
            }
        }
    }

    /// Answers the sockperf messages that `data` completes; `None` when
    /// the stream is malformed or the write failed.
    fn answer(&mut self, data: &mut [u8]) -> Option<usize> {
        let mut replies = std::mem::take(&mut self.replies);
        replies.clear();
        if self.pending.is_empty() {
            let used = sockperf::answer_stream(data, &mut replies)?;
            self.pending.extend_from_slice(&data[used..]);
        } else {
            self.pending.extend_from_slice(data);
            let used = sockperf::answer_stream(&mut self.pending, &mut replies)?;
            self.pending.drain(..used);
        }
        let sent = self.write_all(&replies).map(|()| replies.len());
        self.replies = replies;
        sent
    }

    /// Whether to stop: shutdown began or the client was idle too long.
    /// Spinning, the clock is read only every thousand turns; a
    /// busy-polling client without a place to spin, or whose data stopped
    /// for `SPIN_HOT`, sleeps until the socket is ready for `want`.
    fn gave_up(&mut self, want: PollFlags) -> bool {
        if self.config.mode == Mode::BusyPoll {
            self.spins += 1;
            if self.spinning && self.spins < 1024 {
                std::hint::spin_loop();
                return false;
            }
            self.spins = 0;
            if !self.spinning || self.last.elapsed() >= SPIN_HOT {
                if self.spinning {
                    self.spinners.give();
                    self.spinning = false;
                }
                let mut fds = [PollFd::new(&self.conn, want)];
                let tick = rustix::time::Timespec {
                    tv_sec: 0,
                    tv_nsec: TICK.as_nanos() as i64,
                };
                if matches!(crate::sys::retry(|| poll(&mut fds, Some(&tick))), Ok(1..)) {
                    self.spinning = self.spinners.try_take();
                    // Data is there: a cold start of spinning, not idleness.
                    self.last = Instant::now();
                    return false;
                }
            }
        }
        self.door.is_shut()
            || self
                .config
                .idle
                .is_some_and(|idle| self.last.elapsed() >= idle)
    }

    /// Writes everything; `None` when the client went or stopped reading
    /// for longer than the idle time.
    fn write_all(&mut self, mut data: &[u8]) -> Option<()> {
        while !data.is_empty() {
            match crate::sys::retry_io(|| self.conn.write(data)) {
                Ok(0) => return None,
                Ok(n) => {
                    data = &data[n..];
                    self.last = Instant::now();
                }
                Err(e) if crate::sys::timed_out(&e) => {
                    if self.gave_up(PollFlags::OUT) {
                        return None;
                    }
                }
                Err(_) => return None,
            }
        }
        Some(())
    }
}

/// A running embedded reflector, at `addr`; stops when dropped.
#[derive(Debug)]
pub struct Embedded<A> {
    /// Where it listens.
    pub addr: A,
    door: Door,
}

impl<A> Drop for Embedded<A> {
    fn drop(&mut self) {
        self.door.shutdown();
    }
}

/// TCP and UDP echo on one loopback port (the same port for both).
pub type Reflector = Embedded<SocketAddr>;

/// Echo on a Unix stream socket: a name of this process's in the
/// abstract namespace, so no file is left behind.
pub type UnixReflector = Embedded<crate::net::unix::UnixPath>;

/// An embedded reflector's door (no drain: it ends with its run) and
/// what it answers.
fn embedded(busy_poll: bool) -> (Door, ReflectConfig) {
    let mut config = DoorConfig::new("rtt's echo", 64);
    config.drain = Duration::ZERO;
    let reflect = ReflectConfig {
        reflect: Reflect::Echo,
        mode: Mode::spinning(busy_poll),
        idle: None,
    };
    (Door::new(config), reflect)
}

/// Starts TCP and UDP echo on one loopback port, for `sonde rtt` with no
/// host; with `busy_poll` the reflector spins instead of sleeping.
///
/// # Errors
/// When no port can be bound or a thread cannot start.
pub fn start(busy_poll: bool) -> Result<Reflector> {
    let fail = |e| Error::io("starting the embedded echo server", e);
    let (tcp, udp) = loop {
        let tcp = StdListener::bind("127.0.0.1:0").map_err(fail)?;
        let port = tcp.local_addr().map_err(fail)?.port();
        if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) {
            break (tcp, udp);
        }
    };
    let addr = tcp.local_addr().map_err(fail)?;
    let (door, reflect) = embedded(busy_poll);
    let stats = Arc::new(Stats::default());
    let (tcp_door, tcp_stats) = (door.clone(), Arc::clone(&stats));
    std::thread::Builder::new()
        .name("sonde-reflect-tcp".into())
        .spawn(move || {
            let runtime = door::runtime()?;
            runtime.block_on(async {
                let listener = door::to_tokio(tcp)?;
                serve(listener, reflect, tcp_door, tcp_stats).await;
                std::io::Result::Ok(())
            })
        })
        .map_err(fail)?;
    let udp_door = door.clone();
    std::thread::Builder::new()
        .name("sonde-reflect-udp".into())
        .spawn(move || datagram::run(&udp, ServiceKind::Echo, busy_poll, &udp_door, &stats))
        .map_err(fail)?;
    Ok(Reflector { addr, door })
}

/// Starts echo on a Unix stream socket of this process's, for `sonde rtt
/// -U` with no path: the kernel's round trip without the network stack.
///
/// # Errors
/// When the socket cannot be bound or a thread cannot start.
pub fn start_unix(busy_poll: bool) -> Result<UnixReflector> {
    let fail = |e| Error::io("starting the embedded Unix echo server", e);
    let path = crate::net::unix::UnixPath::own("sonde-rtt");
    let listener = crate::net::unix::bind(&path)?;
    let (door, reflect) = embedded(busy_poll);
    let serving = door.clone();
    std::thread::Builder::new()
        .name("sonde-reflect-unix".into())
        .spawn(move || {
            let runtime = door::runtime()?;
            runtime.block_on(async {
                listener.set_nonblocking(true)?;
                let listener = tokio::net::UnixListener::from_std(listener)?;
                serve_unix(listener, reflect, serving, Arc::default()).await;
                std::io::Result::Ok(())
            })
        })
        .map_err(fail)?;
    Ok(UnixReflector { addr: path, door })
}
