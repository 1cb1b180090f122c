//! The perf server: accepts iperf3 clients (stock or sonde), runs several
//! tests at once up to a limit, and never hangs on a bad peer: every phase
//! has a timeout, and a failing test only ends itself.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

mod greet;
mod test;

pub use greet::PARAMS_TIMEOUT;

use test::Test;

use super::control::Control;
use super::measure::StreamEnd;
use crate::door::{self, Accepted, Door, DoorConfig, Permit, Refusal, Unidentified};
use crate::error::{Error, Result};
use crate::perf::session::server::Judged;
use crate::wire::iperf::COOKIE_LEN;
use crate::wire::iperf::cookie::Cookie;
use crate::wire::iperf::params::Params;
use crate::wire::iperf::state::TestState;

/// How a server behaves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Tests run at once; past this a client gets iperf3's busy reply.
    pub max_tests: usize,
    /// Data streams across every running test (each is a thread and its
    /// buffers); a test that would pass it gets iperf3's busy reply.
    pub max_streams: usize,
    /// Time allowed for each set-up message (parameters, streams).
    pub setup_timeout: Duration,
    /// Time allowed for each control message once the test is set up (the
    /// client's results).
    pub message_timeout: Duration,
    /// Time a new connection has to send its cookie.
    pub identify_timeout: Duration,
    /// Time a new test's client has to send its parameters once asked.
    pub params_timeout: Duration,
    /// Connections open at once (control and data, and those still to
    /// send a cookie); past this a client gets iperf3's busy reply.
    pub max_connections: usize,
    /// Extra time past duration + omit before a silent test is dropped.
    pub grace: Duration,
    /// Drop a receiving test when no data arrives for this long.
    pub rcv_timeout: Duration,
    /// Refuse tests longer than this (time + omit).
    pub max_duration: Option<Duration>,
    /// Refuse tests whose total rate (bit/s) is above this.
    pub bitrate_limit: Option<u64>,
    /// Serve one test, then return.
    pub one_off: bool,
    /// With `one_off`, return after this long without a client (iperf3's
    /// `--idle-timeout`; without `-1` iperf3 restarts a stuck listener,
    /// which sonde, whose tests each time out on their own, never needs).
    pub idle_timeout: Option<Duration>,
    /// Build each test's `-J` document (printed by the caller, and sent as
    /// `server_output_json` when the client asks for the server's output).
    pub json: bool,
    /// iperf3's authentication: with a verifier, a test runs only with
    /// credentials it accepts.
    pub auth: Option<Arc<crate::wire::iperf::auth::Verifier>>,
    /// `-F`: every test sends this file's bytes, or writes what arrives
    /// into it.
    pub file: Option<std::path::PathBuf>,
    /// Who may connect (a refused client hears iperf3's access denied).
    pub rules: door::access::Rules,
    /// With a certificate, the server agrees to TLS data streams when a
    /// sonde client asks.
    pub tls: Option<crate::tls::ServerTls>,
    /// The door's counters, for a metrics endpoint to read.
    pub counters: Arc<door::Counters>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_tests: 8,
            max_streams: 256,
            setup_timeout: Duration::from_secs(10),
            message_timeout: crate::perf::control::MESSAGE_TIMEOUT,
            identify_timeout: door::IDENTIFY_TIMEOUT,
            params_timeout: PARAMS_TIMEOUT,
            max_connections: 2048,
            grace: Duration::from_secs(40),
            rcv_timeout: Duration::from_secs(120),
            max_duration: None,
            bitrate_limit: None,
            one_off: false,
            json: false,
            idle_timeout: None,
            auth: None,
            file: None,
            rules: door::access::Rules::default(),
            tls: None,
            counters: Arc::default(),
        }
    }
}

/// What happened on the server, for the caller to report.
#[derive(Debug)]
pub enum ServerEvent {
    /// A client's test began.
    Accepted {
        /// The client's control address.
        peer: SocketAddr,
        /// Tests running, this one included.
        concurrent: usize,
    },
    /// A client was refused because the server was full.
    Busy(SocketAddr),
    /// A test's data streams are connected and it starts.
    Started {
        /// The client.
        peer: SocketAddr,
        /// The parameters it runs with.
        params: Arc<Params>,
        /// Its data streams.
        streams: Vec<crate::perf::ConnectedStream>,
    },
    /// One interval of a running test, as it ends.
    Interval {
        /// The client.
        peer: SocketAddr,
        /// The parameters it runs with.
        params: Arc<Params>,
        /// Each stream's figures.
        interval: Vec<crate::perf::StreamInterval>,
        /// Its place: 0 for the first.
        index: usize,
    },
    /// The client went during its test (it was interrupted, or crashed):
    /// what this side measured until then.
    Interrupted {
        /// The client.
        peer: SocketAddr,
        /// The parameters it ran with.
        params: Box<Params>,
        /// This side's figures.
        ends: Vec<StreamEnd>,
    },
    /// A test finished normally.
    Done {
        /// The client.
        peer: SocketAddr,
        /// The parameters it ran with.
        params: Box<Params>,
        /// Per-stream totals from both sides.
        ends: Vec<StreamEnd>,
        /// The most tests that ran at once during it.
        concurrent: usize,
        /// The test's `-J` document, with [`ServerConfig::json`].
        json: Option<Box<serde_json::Value>>,
    },
    /// A test or connection ended in error; the server goes on.
    Failed {
        /// The peer.
        peer: SocketAddr,
        /// What went wrong.
        error: Error,
    },
}

type Notify = Arc<dyn Fn(ServerEvent) + Send + Sync>;

struct Shared {
    config: ServerConfig,
    local: SocketAddr,
    tests: Mutex<HashMap<Cookie, mpsc::Sender<Arrived>>>,
    active: AtomicUsize,
    /// Data streams held by running tests.
    streams: AtomicUsize,
    /// UDP hellos carry no cookie: one test at a time sets up UDP streams.
    udp_setup: Mutex<()>,
    notify: Notify,
    finished: AtomicUsize,
}

/// Serves clients of `listener` until `shutdown` is set (or, with
/// `one_off`, after one test). Connections come through the front door:
/// until a connection has sent its cookie it is a small task on this
/// thread's runtime; only a new test's control connection gets a thread.
///
/// # Errors
/// Only when the listener itself fails.
pub fn serve(
    listener: TcpListener,
    config: ServerConfig,
    notify: impl Fn(ServerEvent) + Send + Sync + 'static,
    shutdown: &AtomicBool,
) -> Result<()> {
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("reading the listener's address", e))?;
    let mut door_config = DoorConfig::new("perf", config.max_connections);
    // Past the cap a client hears iperf3's "busy" at once.
    door_config.refusal = Refusal::Send(Arc::from([TestState::AccessDenied.to_wire()]));
    door_config.rules = config.rules.clone();
    door_config.counters = Arc::clone(&config.counters);
    let door = Door::new(door_config);
    let shared = Arc::new(Shared {
        config,
        local,
        tests: Mutex::default(),
        active: AtomicUsize::new(0),
        streams: AtomicUsize::new(0),
        udp_setup: Mutex::new(()),
        notify: Arc::new(notify),
        finished: AtomicUsize::new(0),
    });
    let fail = |e| Error::io(format!("serving on {local}"), e);
    let runtime = door::runtime().map_err(fail)?;
    runtime.block_on(async {
        let listener = door::to_tokio(listener).map_err(fail)?;
        // Accept order is the client's connect order; cookies may arrive
        // in any order, so streams carry it.
        let mut accepted = 0u64;
        let accept = door.serve(listener, |conn| {
            accepted += 1;
            // Marked before its task first runs, so the accept loop can
            // make room even while it is ahead of the tasks.
            let waiting = conn.permit.unidentified();
            tokio::spawn(identify(conn, waiting, accepted, Arc::clone(&shared)));
        });
        tokio::join!(accept, watch(&door, &shared, shutdown));
        Ok(())
    })
}

/// Shuts the door when told to, after a one-off test, or when a one-off
/// server has waited long enough for a client.
async fn watch(door: &Door, shared: &Shared, shutdown: &AtomicBool) {
    let mut idle_since = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        if shared.active.load(Ordering::Relaxed) > 0 || door.active() > 0 {
            idle_since = Instant::now();
        }
        let config = &shared.config;
        let idle_out = config.one_off
            && config
                .idle_timeout
                .is_some_and(|t| idle_since.elapsed() >= t);
        if shutdown.load(Ordering::Relaxed)
            || (config.one_off && shared.finished.load(Ordering::Relaxed) > 0)
            || idle_out
        {
            door.shutdown();
            return;
        }
    }
}

/// Reads a new connection's cookie, in a task, then hands it on: a data
/// stream to its running test; for a new test's control connection, asks
/// for the parameters (still in the task: see `greet`) and only then
/// gives it a thread and a test slot.
async fn identify(conn: Accepted, waiting: Unidentified, order: u64, shared: Arc<Shared>) {
    let Accepted {
        mut stream,
        peer,
        permit,
    } = conn;
    let limit = shared.config.identify_timeout;
    let mut cookie = [0u8; COOKIE_LEN];
    let read = tokio::time::timeout(limit, stream.read_exact(&mut cookie));
    let read = tokio::select! {
        () = waiting.evicted() => return,
        read = read => read,
    };
    let error = match read {
        Ok(Ok(_)) => None,
        Ok(Err(_)) => Some(Error::Ended(format!(
            "reading the cookie: the peer {peer} closed the control connection"
        ))),
        Err(_) => Some(Error::Timeout {
            phase: format!("reading the cookie (control connection with {peer})"),
            after: limit,
        }),
    };
    if let Some(error) = error {
        return (shared.notify)(ServerEvent::Failed { peer, error });
    }
    let known = shared
        .tests
        .lock()
        .ok()
        .and_then(|t| t.get(&cookie).cloned());
    let params = match known {
        Some(_) => None,
        None => match greet::greet(&mut stream, peer, &waiting, shared.config.params_timeout).await
        {
            greet::Greeted::Params(params) => {
                match greet::judged(params, &test::limits(&shared.config)) {
                    Ok(judged) => Some(judged),
                    Err((frames, error)) => {
                        greet::refuse(&mut stream, &frames, shared.config.params_timeout).await;
                        return (shared.notify)(ServerEvent::Failed { peer, error });
                    }
                }
            }
            greet::Greeted::Gone(error) => {
                if let Some(error) = error {
                    (shared.notify)(ServerEvent::Failed { peer, error });
                }
                return;
            }
        },
    };
    drop(waiting);
    let stream = match door::to_blocking(stream) {
        Ok(stream) => stream,
        Err(e) => {
            return (shared.notify)(ServerEvent::Failed {
                peer,
                error: Error::io("taking over a connection", e),
            });
        }
    };
    match (known, params) {
        (Some(test), _) => {
            // A closed test just drops it.
            let _ = test.send(Arrived {
                order,
                stream,
                permit,
            });
        }
        (None, Some(params)) => start_test(stream, peer, cookie, permit, params, &shared),
        (None, None) => {}
    }
}

/// A new test's control connection whose parameters are in: refused when
/// the server runs as many tests as it allows, else run on a thread.
fn start_test(
    stream: TcpStream,
    peer: SocketAddr,
    cookie: Cookie,
    permit: Permit,
    params: Judged,
    shared: &Arc<Shared>,
) {
    let Ok(mut control) = Control::new(stream) else {
        return;
    };
    let running = shared.active.fetch_add(1, Ordering::SeqCst) + 1;
    let slot = Slot(Arc::clone(shared));
    if running > shared.config.max_tests {
        let _ = control.write_state(TestState::AccessDenied);
        return (shared.notify)(ServerEvent::Busy(peer));
    }
    let test_shared = Arc::clone(shared);
    let work = move || {
        let _slot = slot;
        run_test(control, peer, cookie, params, running, &test_shared);
    };
    if let Err(e) = permit.spawn_thread("sonde-perf-test", work) {
        (shared.notify)(ServerEvent::Failed {
            peer,
            error: Error::io("starting a test thread", e),
        });
    }
}

/// Runs one client's test on its thread and reports how it ended.
fn run_test(
    control: Control,
    peer: SocketAddr,
    cookie: Cookie,
    params: Judged,
    running: usize,
    shared: &Shared,
) {
    let (tx, rx) = mpsc::channel();
    if let Ok(mut tests) = shared.tests.lock() {
        tests.insert(cookie, tx);
    }
    (shared.notify)(ServerEvent::Accepted {
        peer,
        concurrent: running,
    });
    let mut test = Test {
        control,
        shared,
        streams_rx: rx,
        permits: Vec::new(),
        concurrent: running,
        cookie: crate::wire::iperf::cookie::text(&cookie),
        streams: Vec::new(),
        connected: Vec::new(),
        streams_buffers: None,
        running: None,
        cpu: None,
        stopped: None,
        finished: None,
        params: None,
        places: StreamPlaces { shared, held: 0 },
    };
    let mut counts = true;
    match test.run(params) {
        Ok(Some((params, ends, json))) => (shared.notify)(ServerEvent::Done {
            peer,
            params: Box::new(params),
            ends,
            concurrent: test.concurrent,
            json: json.map(Box::new),
        }),
        Ok(None) => {}
        Err(error) => {
            // As iperf3's -1: a test refused its credentials is not the one.
            counts = !matches!(error, Error::Auth(_));
            (shared.notify)(ServerEvent::Failed { peer, error });
        }
    }
    if let Ok(mut tests) = shared.tests.lock() {
        tests.remove(&cookie);
    }
    if counts {
        shared.finished.fetch_add(1, Ordering::SeqCst);
    }
    // Its streams' buffers are free now: give them back rather than keep
    // the peak of every test.
    door::give_memory_back();
}

/// A data stream handed to its test, with its place at the door.
struct Arrived {
    /// Its place in the connect order.
    order: u64,
    stream: TcpStream,
    permit: Permit,
}

/// A test's places among the server's data streams, given back when the
/// test ends.
struct StreamPlaces<'a> {
    shared: &'a Shared,
    held: usize,
}

impl StreamPlaces<'_> {
    /// Takes `n` places, if that many are free.
    fn take(&mut self, n: usize) -> bool {
        let max = self.shared.config.max_streams;
        let taken = self
            .shared
            .streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held + n <= max).then_some(held + n)
            })
            .is_ok();
        if taken {
            self.held += n;
        }
        taken
    }
}

impl Drop for StreamPlaces<'_> {
    fn drop(&mut self) {
        self.shared.streams.fetch_sub(self.held, Ordering::AcqRel);
    }
}

/// Holds one place among the running tests.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Binds the UDP socket that takes stream hellos on the server's port.
pub(super) fn bind_udp(local: SocketAddr) -> Result<UdpSocket> {
    use socket2::{Domain, Protocol as P, SockAddr, Socket, Type};
    let fail = |e| Error::Listen {
        addr: local,
        cause: e,
    };
    let socket =
        Socket::new(Domain::for_address(local), Type::DGRAM, Some(P::UDP)).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    if local.is_ipv6() && local.ip().is_unspecified() {
        socket.set_only_v6(false).map_err(fail)?;
    }
    socket.bind(&SockAddr::from(local)).map_err(fail)?;
    let _ = socket.as_fd();
    Ok(socket.into())
}
