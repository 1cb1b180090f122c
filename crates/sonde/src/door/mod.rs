//! The front door: the one place where every sonde server accepts
//! connections. It owns the listeners, the cap on open connections (a
//! [`Permit`] that each connection's task or thread holds, released on
//! every exit path, panics included), what a client past the cap gets
//! ([`Refusal`]), failed accepts (logged once per interval, after a short
//! back-off; never a hot spin, never an exit), the counters, and shutdown
//! (stop accepting, drain, then return).
//!
//! A connection that must still say who it is (a cookie, a hello) marks
//! itself [`Permit::unidentified`]: when the cap is full, a newcomer takes
//! the place of the oldest such connection, so a flood of silent
//! connections cannot keep a real client out.
//!
//! Access control ([`access::Rules`]: blocks of addresses, a cap per
//! source, accept rates) is checked before a permit is taken, and every
//! refusal is counted and reported once per [`access::Rules::report_every`]
//! with its count, never a line per attempt. TLS wraps the accepted stream
//! in the server's handler, which is generic over the stream.

mod accept;
mod http;
pub use http::HEAD_TIMEOUT;
pub mod access;
mod memory;
pub mod metrics;
pub use memory::give_back as give_memory_back;
mod permit;
mod unix;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use accept::{Accepted, runtime, to_blocking, to_tokio};
pub use permit::{Permit, Unidentified};
pub use unix::UnixAccepted;

/// How long a connection that has not yet said who it is (no cookie, no
/// hello) may take to do so: a client writes these at once, so seconds are
/// plenty even across a slow link.
pub const IDENTIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// TCP keepalive on every accepted connection: a peer that vanished
/// without a FIN or a reset is found within about two minutes.
pub const KEEPALIVE: Duration = Duration::from_secs(60);

/// A failed accept is logged at most once in this long.
pub const LOG_EVERY: Duration = Duration::from_secs(1);

/// How often refused connections are reported, by default.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// What a client past the cap (or not admitted) gets before it is closed.
#[derive(Clone, Debug, Default)]
pub enum Refusal {
    /// Nothing: closed at once.
    #[default]
    Close,
    /// These bytes, then closed (iperf3's busy state byte; a transfer
    /// refusal frame).
    Send(Arc<[u8]>),
}

/// How a door behaves.
#[derive(Clone, Debug)]
pub struct DoorConfig {
    /// The server's name, for log lines ("serve echo", "perf").
    pub name: &'static str,
    /// Connections open at once, each holding a [`Permit`].
    pub max_connections: usize,
    /// What a client past the cap gets.
    pub refusal: Refusal,
    /// What a client refused by the rules gets (`None`: the same as past
    /// the cap).
    pub denial: Option<Refusal>,
    /// TCP keepalive idle time on accepted connections (`None`: off).
    pub keepalive: Option<Duration>,
    /// After shutdown, how long busy connections may finish.
    pub drain: Duration,
    /// Who may come in, checked before a permit is taken.
    pub rules: access::Rules,
    /// Where the door counts, so others (a metrics endpoint) may read
    /// the counters while it serves.
    pub counters: Arc<Counters>,
}

impl DoorConfig {
    /// A door named `name` with a cap of `max_connections` and the
    /// defaults: close refused clients, keepalive on, 5 s drain.
    pub fn new(name: &'static str, max_connections: usize) -> Self {
        Self {
            name,
            max_connections: max_connections.max(1),
            refusal: Refusal::Close,
            denial: None,
            keepalive: Some(KEEPALIVE),
            drain: Duration::from_secs(5),
            rules: access::Rules::default(),
            counters: Arc::default(),
        }
    }
}

/// The counters of a door.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections let in.
    pub accepted: AtomicU64,
    /// Connections refused: over the cap, or not admitted.
    pub refused: AtomicU64,
    /// Connections that had not identified themselves, closed to make room.
    pub evicted: AtomicU64,
    /// Accepts that failed (out of descriptors, ...).
    pub failed: AtomicU64,
    /// Connections open now (permits held).
    pub active: AtomicU64,
    /// Most connections open at once.
    pub peak: AtomicU64,
    /// Connections refused, by [`access::Reason`] (its number).
    pub refused_by: [AtomicU64; access::Reason::ALL.len()],
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// See [`Counters::accepted`].
    pub accepted: u64,
    /// See [`Counters::refused`].
    pub refused: u64,
    /// See [`Counters::evicted`].
    pub evicted: u64,
    /// See [`Counters::failed`].
    pub failed: u64,
    /// See [`Counters::active`].
    pub active: u64,
    /// See [`Counters::peak`].
    pub peak: u64,
}

impl Counters {
    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            accepted: get(&self.accepted),
            refused: get(&self.refused),
            evicted: get(&self.evicted),
            failed: get(&self.failed),
            active: get(&self.active),
            peak: get(&self.peak),
        }
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connection{} served ({} refused, {} failed accepts), peak {} at once",
            crate::units::count(self.accepted),
            if self.accepted == 1 { "" } else { "s" },
            crate::units::count(self.refused),
            self.failed,
            crate::units::count(self.peak)
        )?;
        if self.evicted > 0 {
            write!(f, ", {} silent ones closed to make room", self.evicted)?;
        }
        Ok(())
    }
}

/// The front door of one server. Cheap to clone: clones share the cap,
/// the counters and the shutdown.
#[derive(Clone, Debug)]
pub struct Door {
    inner: Arc<permit::Inner>,
}

impl Door {
    /// A door with `config`, counting into its `counters`.
    pub fn new(config: DoorConfig) -> Self {
        let counters = Arc::clone(&config.counters);
        Self {
            inner: Arc::new(permit::Inner::new(config, counters)),
        }
    }

    /// The counters, to be read elsewhere.
    pub fn shared_counters(&self) -> Arc<Counters> {
        Arc::clone(&self.inner.counters)
    }

    /// The configuration.
    pub fn config(&self) -> &DoorConfig {
        &self.inner.config
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Connections open now.
    pub fn active(&self) -> u64 {
        self.inner.counters.active.load(Ordering::Acquire)
    }

    /// Stops accepting; handlers that watch [`Self::closing`] wind down.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Whether shutdown has begun.
    pub fn is_shut(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// A token cancelled at shutdown, for handlers to select on.
    pub fn closing(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Whether a datagram from `ip` is refused by the blocks of the rules
    /// (`--allow`, `--deny`; a UDP service has no connections to cap or
    /// rate). A refusal is counted and reported like a connection's.
    pub fn refuses_datagram(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        match self.inner.gate.blocks(ip) {
            Some(reason) => {
                self.inner.refused(ip, reason, true);
                true
            }
            None => false,
        }
    }

    /// Logs the refusals gathered since the last report (a server without
    /// an accept loop calls it on its own tick).
    pub fn report_refusals(&self) {
        self.inner.report_refusals();
    }

    /// A permit outside the accept loop (a UDP service, which has no
    /// accept, still counts as open and is seen by the drain), or `None`
    /// when the cap is reached.
    pub fn try_permit(&self) -> Option<Permit> {
        Permit::try_new(&self.inner)
    }

    /// Waits until no connection is open, at most the drain time; `true`
    /// when every one closed.
    pub async fn drained(&self) -> bool {
        self.inner.drained(self.inner.config.drain).await
    }
}

/// Raises the soft limit on open files to the hard limit (every server
/// does, so that its cap, not `ulimit -n`, bounds it); returns the limit
/// now in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum {
        limit.current = Some(hard);
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Instant;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    const DEADLINE: Duration = Duration::from_secs(30);

    /// A door serving on a loopback port with `handler`, and its address.
    async fn open(
        config: DoorConfig,
        handler: impl FnMut(Accepted) + Send + 'static,
    ) -> (Door, SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let door = Door::new(config);
        let serving = door.clone();
        let task = tokio::spawn(async move { serving.serve(listener, handler).await });
        (door, addr, task)
    }

    /// Polls `done` (at most the deadline): the door's work is on tasks.
    async fn until(mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < DEADLINE, "condition not reached");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn closed_at_once(addr: SocketAddr) -> Vec<u8> {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let mut got = Vec::new();
        tokio::time::timeout(DEADLINE, s.read_to_end(&mut got))
            .await
            .expect("closed")
            .expect("read");
        got
    }

    #[tokio::test]
    async fn a_panicking_handler_gives_its_place_back() {
        tokio::time::timeout(DEADLINE, async {
            let (door, addr, _task) = open(DoorConfig::new("test", 1), |conn| {
                tokio::spawn(async move {
                    let _permit = conn.permit;
                    panic!("a test service that fails");
                });
            })
            .await;
            for round in 1..=3 {
                let _client = TcpStream::connect(addr).await.expect("connect");
                until(|| door.counters().snapshot().accepted == round).await;
                until(|| door.active() == 0).await;
            }
            assert_eq!(door.counters().snapshot().refused, 0);
        })
        .await
        .expect("in time");
    }

    #[tokio::test]
    async fn past_the_cap_a_client_gets_the_refusal() {
        tokio::time::timeout(DEADLINE, async {
            let mut config = DoorConfig::new("test", 1);
            config.refusal = Refusal::Send(Arc::from(&b"busy"[..]));
            let held = Arc::new(std::sync::Mutex::new(Vec::new()));
            let keep = Arc::clone(&held);
            let (door, addr, _task) = open(config, move |conn| {
                keep.lock().expect("lock").push(conn);
            })
            .await;
            let _first = TcpStream::connect(addr).await.expect("first");
            until(|| door.active() == 1).await;
            assert_eq!(closed_at_once(addr).await, b"busy");
            let counts = door.counters().snapshot();
            assert_eq!((counts.accepted, counts.refused, counts.peak), (1, 1, 1));
            held.lock().expect("lock").clear();
            until(|| door.active() == 0).await;
        })
        .await
        .expect("in time");
    }

    #[tokio::test]
    async fn a_newcomer_takes_the_place_of_the_oldest_unidentified() {
        tokio::time::timeout(DEADLINE, async {
            let evicted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let seen = Arc::clone(&evicted);
            let (door, addr, _task) = open(DoorConfig::new("test", 2), move |conn| {
                let waiting = conn.permit.unidentified();
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    waiting.evicted().await;
                    seen.fetch_add(1, Ordering::SeqCst);
                    drop(conn);
                });
            })
            .await;
            let mut clients = Vec::new();
            for _ in 0..5 {
                clients.push(TcpStream::connect(addr).await.expect("connect"));
                until(|| door.counters().snapshot().accepted == clients.len() as u64).await;
            }
            until(|| evicted.load(Ordering::SeqCst) == 3).await;
            until(|| door.active() == 2).await;
            let counts = door.counters().snapshot();
            assert_eq!((counts.accepted, counts.evicted, counts.refused), (5, 3, 0));
            // The oldest were closed; the two newest are still held.
            let mut first = [0u8; 1];
            assert_eq!(clients[0].read(&mut first).await.expect("eof"), 0);
        })
        .await
        .expect("in time");
    }

    #[tokio::test]
    async fn a_peer_not_admitted_is_refused_before_taking_a_place() {
        tokio::time::timeout(DEADLINE, async {
            let mut config = DoorConfig::new("test", 10);
            config.rules.deny = vec![access::parse_block("127.0.0.0/8").expect("a block")];
            let (door, addr, _task) = open(config, drop).await;
            assert!(closed_at_once(addr).await.is_empty());
            let counts = door.counters().snapshot();
            assert_eq!((counts.accepted, counts.refused, counts.active), (0, 1, 0));
        })
        .await
        .expect("in time");
    }

    #[tokio::test]
    async fn shutdown_stops_accepting_and_drains_with_a_limit() {
        tokio::time::timeout(DEADLINE, async {
            let mut config = DoorConfig::new("test", 10);
            config.drain = Duration::from_millis(100);
            let held = Arc::new(std::sync::Mutex::new(Vec::new()));
            let keep = Arc::clone(&held);
            let (door, addr, task) = open(config, move |conn| {
                keep.lock().expect("lock").push(conn);
            })
            .await;
            let _client = TcpStream::connect(addr).await.expect("connect");
            until(|| door.active() == 1).await;
            door.shutdown();
            task.await.expect("the accept loop returns");
            assert!(
                !door.drained().await,
                "one is still open after the drain time"
            );
            held.lock().expect("lock").clear();
            assert!(door.drained().await);
        })
        .await
        .expect("in time");
    }
}
