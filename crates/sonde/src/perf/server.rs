//! The perf server: accepts iperf3 clients (stock or sonde), runs several
//! tests at once up to a limit, and never hangs on a bad peer: every phase
//! has a timeout, and a failing test only ends itself.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::json;

use tokio::io::AsyncReadExt;

use crate::door::{self, Accepted, Door, DoorConfig, Permit, Refusal, Unidentified};
use crate::error::{Error, Result};
use crate::wire::iperf::codec::{self, errors};
use crate::wire::iperf::cookie::Cookie;
use crate::wire::iperf::params::{Params, Protocol};
use crate::wire::iperf::results::Results;
use crate::wire::iperf::state::TestState;
use crate::wire::iperf::{self, COOKIE_LEN, MAX_PARAMS_LEN, UDP_CONNECT_REPLY};

use super::client::ClientReport;
use super::control::{Control, Poll};
use super::measure::StreamEnd;
use super::running::Running;
use super::stream::{self, Counters, DataSocket, Stream};
use super::{CpuClock, Quiet};

/// How a server behaves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Tests run at once; past this a client gets iperf3's busy reply.
    pub max_tests: usize,
    /// Time allowed for each set-up message (parameters, streams).
    pub setup_timeout: Duration,
    /// Time a new connection has to send its cookie.
    pub identify_timeout: Duration,
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_tests: 8,
            setup_timeout: Duration::from_secs(10),
            identify_timeout: door::IDENTIFY_TIMEOUT,
            max_connections: 2048,
            grace: Duration::from_secs(40),
            rcv_timeout: Duration::from_secs(120),
            max_duration: None,
            bitrate_limit: None,
            one_off: false,
            json: false,
            idle_timeout: None,
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
    let door = Door::new(door_config);
    let shared = Arc::new(Shared {
        config,
        local,
        tests: Mutex::default(),
        active: AtomicUsize::new(0),
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
/// stream to its running test, a control connection to a test thread.
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
    drop(waiting);
    if let Some(error) = error {
        return (shared.notify)(ServerEvent::Failed { peer, error });
    }
    match door::to_blocking(stream) {
        Ok(stream) => dispatch(stream, peer, order, cookie, permit, &shared),
        Err(e) => (shared.notify)(ServerEvent::Failed {
            peer,
            error: Error::io("taking over a connection", e),
        }),
    }
}

/// A connection that sent its cookie: a data stream of a running test,
/// or the control connection of a new one (refused when the server runs
/// as many tests as it allows).
fn dispatch(
    stream: TcpStream,
    peer: SocketAddr,
    order: u64,
    cookie: Cookie,
    permit: Permit,
    shared: &Arc<Shared>,
) {
    let known = shared
        .tests
        .lock()
        .ok()
        .and_then(|t| t.get(&cookie).cloned());
    if let Some(test) = known {
        // A closed test just drops it.
        let _ = test.send(Arrived {
            order,
            stream,
            permit,
        });
        return;
    }
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
        run_test(control, peer, cookie, running, &test_shared);
    };
    if let Err(e) = permit.spawn_thread("sonde-perf-test", work) {
        (shared.notify)(ServerEvent::Failed {
            peer,
            error: Error::io("starting a test thread", e),
        });
    }
}

/// Runs one client's test on its thread and reports how it ended.
fn run_test(control: Control, peer: SocketAddr, cookie: Cookie, running: usize, shared: &Shared) {
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
    };
    match test.run() {
        Ok(Some((params, ends, json))) => (shared.notify)(ServerEvent::Done {
            peer,
            params: Box::new(params),
            ends,
            concurrent: test.concurrent,
            json: json.map(Box::new),
        }),
        Ok(None) => {}
        Err(error) => (shared.notify)(ServerEvent::Failed { peer, error }),
    }
    if let Ok(mut tests) = shared.tests.lock() {
        tests.remove(&cookie);
    }
    shared.finished.fetch_add(1, Ordering::SeqCst);
}

/// A data stream handed to its test, with its place at the door.
struct Arrived {
    /// Its place in the connect order.
    order: u64,
    stream: TcpStream,
    permit: Permit,
}

/// Holds one place among the running tests.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Test<'a> {
    control: Control,
    shared: &'a Shared,
    streams_rx: mpsc::Receiver<Arrived>,
    /// The data streams' places at the door, held while the test runs.
    permits: Vec<Permit>,
    concurrent: usize,
    cookie: String,
}

/// What a finished test leaves: its parameters, per-stream totals, and
/// its `-J` document when asked for.
type Finished = (Params, Vec<StreamEnd>, Option<serde_json::Value>);

impl Test<'_> {
    fn refuse(&mut self, code: i32, error: Error) -> Error {
        let _ = self
            .control
            .write_all(&codec::encode_server_error(code, 0), "sending an error");
        error
    }

    fn run(&mut self) -> Result<Option<Finished>> {
        self.control.write_state(TestState::ParamExchange)?;
        let json = match self
            .control
            .read_json(MAX_PARAMS_LEN, "reading the parameters")
        {
            Ok(json) => json,
            Err(e @ Error::Protocol { .. }) => return Err(self.refuse(errors::IERECVPARAMS, e)),
            Err(e) => return Err(e),
        };
        let params = Params::from_json(&json).map_err(|source| Error::Protocol {
            what: "reading the parameters".into(),
            source,
        })?;
        self.check(&params)?;
        let streams = self.accept_streams(&params)?;
        let connected: Vec<_> = streams.iter().map(super::client::describe).collect();
        self.control.write_state(TestState::TestStart)?;
        let cpu = CpuClock::start();
        self.control.write_state(TestState::TestRunning)?;
        let mut running = Running::start(
            streams,
            &params,
            Some(Duration::from_secs(1)),
            Instant::now(),
        )?;
        if !self.wait_for_end(&params, &mut running)? {
            return Ok(None);
        }
        running.stop_senders();
        running.settle(&params);
        running.final_tick(&Quiet);
        let now = running.elapsed();
        let samples = running.samples();
        running.close();
        let local = running.meter.results(now, &samples);
        self.control.write_state(TestState::ExchangeResults)?;
        let theirs = self.control.read_results("reading the client's results")?;
        let ends = running.ends(params.protocol, &local, &theirs, &samples);
        let cpu = cpu.read();
        let all_receive = running.streams.iter().all(|s| !s.sender);
        let mut mine = Results {
            cpu_util_total: cpu.total,
            cpu_util_user: cpu.user,
            cpu_util_system: cpu.system,
            sender_has_retransmits: if all_receive {
                -1
            } else {
                i64::from(params.protocol == Protocol::Tcp)
            },
            congestion_used: running.streams.iter().find_map(|s| match &s.socket {
                DataSocket::Tcp(t) => stream::congestion(t),
                DataSocket::Udp(_) => None,
            }),
            streams: local,
            ..Results::default()
        };
        let doc = self.shared.config.json.then(|| {
            let report = ClientReport {
                params: params.clone(),
                server: self
                    .control
                    .socket()
                    .local_addr()
                    .unwrap_or(self.control.peer()),
                local: self.control.peer(),
                cookie: self.cookie.clone(),
                connected,
                intervals: running.intervals.clone(),
                ends: ends.clone(),
                local_cpu: cpu,
                remote: Some(theirs.clone()),
                congestion: mine.congestion_used.clone(),
                mss: None,
                interrupted: false,
            };
            super::json::json_server_report(&report, env!("CARGO_PKG_VERSION"))
        });
        if params.get_server_output {
            match &doc {
                Some(doc) => mine.server_output_json = Some(doc.clone()),
                None => {
                    let peer = self.control.peer();
                    let text = super::report::server_output_text(
                        peer,
                        self.concurrent,
                        &running.intervals,
                        &ends,
                        params.protocol,
                    );
                    mine.server_output_text = Some(text);
                }
            }
        }
        mine.sonde = Some(json!({
            "concurrent_tests": self.concurrent,
            "tcp_intervals": super::json::sonde_tcp_intervals(&running.intervals),
        }));
        self.control
            .write_json(&mine.to_json(), "sending the results")?;
        self.control.write_state(TestState::DisplayResults)?;
        // The client ends with IPERF_DONE; a client that just closes is fine too.
        let _ = self
            .control
            .poll_state(Some(self.shared.config.setup_timeout));
        Ok(Some((params, ends, doc)))
    }

    /// Checks the parameters and the server's own limits.
    fn check(&mut self, params: &Params) -> Result<()> {
        if let Err((code, source)) = params.validate() {
            let error = Error::Protocol {
                what: "checking the parameters".into(),
                source,
            };
            return Err(self.refuse(code, error));
        }
        let total = u64::from(params.time) + u64::from(params.omit);
        if let Some(max) = self.shared.config.max_duration
            && (params.time == 0 || total > max.as_secs())
        {
            let e = Error::Invalid(format!(
                "test of {total} s exceeds the server's maximum of {} s",
                max.as_secs()
            ));
            return Err(self.refuse(errors::IEMAXSERVERTESTDURATIONEXCEEDED, e));
        }
        if let Some(limit) = self.shared.config.bitrate_limit {
            let ways = if params.bidirectional { 2 } else { 1 };
            let rate = params
                .bandwidth
                .saturating_mul(u64::from(params.parallel))
                .saturating_mul(ways);
            if params.bandwidth == 0 || rate > limit {
                let e = Error::Invalid(format!(
                    "total rate {rate} bit/s exceeds the server's limit of {limit}"
                ));
                return Err(self.refuse(errors::IETOTALRATE, e));
            }
        }
        self.concurrent = self
            .concurrent
            .max(self.shared.active.load(Ordering::Relaxed));
        Ok(())
    }

    fn accept_streams(&mut self, params: &Params) -> Result<Vec<Stream>> {
        let total = params.total_streams();
        let per_way = params.parallel as usize;
        let role = |index: usize| {
            if params.bidirectional {
                index >= per_way
            } else {
                params.reverse
            }
        };
        let mut streams = Vec::with_capacity(total);
        if params.protocol == Protocol::Udp {
            let _turn = self
                .shared
                .udp_setup
                .lock()
                .map_err(|_| Error::Invalid("UDP set-up lock poisoned".into()))?;
            let mut listener = bind_udp(self.shared.local)?;
            self.control.write_state(TestState::CreateStreams)?;
            for index in 0..total {
                let (sock, next) = self.udp_stream(listener, params)?;
                listener = next;
                streams.push(new_stream(index, role(index), DataSocket::Udp(sock)));
            }
        } else {
            self.control.write_state(TestState::CreateStreams)?;
            let mut arrived = Vec::with_capacity(total);
            for _ in 0..total {
                let stream = self
                    .streams_rx
                    .recv_timeout(self.shared.config.setup_timeout)
                    .map_err(|_| Error::Timeout {
                        phase: "waiting for the data streams".into(),
                        after: self.shared.config.setup_timeout,
                    })?;
                arrived.push(stream);
            }
            arrived.sort_by_key(|a| a.order);
            for (
                index,
                Arrived {
                    stream: sock,
                    permit,
                    ..
                },
            ) in arrived.into_iter().enumerate()
            {
                self.permits.push(permit);
                stream::apply_tcp_options(&sock, params)
                    .map_err(|e| Error::io("setting data stream options", e))?;
                streams.push(new_stream(index, role(index), DataSocket::Tcp(sock)));
            }
        }
        Ok(streams)
    }

    /// Takes one UDP hello on `listener`, connects it to the client, binds
    /// the next listener, then replies (in that order, so the next hello is
    /// never lost).
    fn udp_stream(&self, listener: UdpSocket, params: &Params) -> Result<(UdpSocket, UdpSocket)> {
        let fail = |e| Error::io("setting up a UDP stream", e);
        listener
            .set_read_timeout(Some(self.shared.config.setup_timeout))
            .map_err(fail)?;
        let mut hello = [0u8; 64];
        let (_, from) = listener.recv_from(&mut hello).map_err(|e| {
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                Error::Timeout {
                    phase: "waiting for a UDP stream hello".into(),
                    after: self.shared.config.setup_timeout,
                }
            } else {
                fail(e)
            }
        })?;
        listener.connect(from).map_err(fail)?;
        listener.set_read_timeout(None).map_err(fail)?;
        stream::apply_udp_options(&listener, params);
        let next = bind_udp(self.shared.local)?;
        listener.send(&UDP_CONNECT_REPLY).map_err(fail)?;
        Ok((listener, next))
    }

    /// Runs until TEST_END (true) or until the client goes (false).
    fn wait_for_end(&mut self, params: &Params, running: &mut Running) -> Result<bool> {
        let limit = (params.time > 0).then(|| {
            Duration::from_secs(u64::from(params.time) + u64::from(params.omit))
                + self.shared.config.grace
        });
        let receiving = running.streams.iter().any(|s| !s.sender);
        let mut last = (running.totals().0, Instant::now());
        loop {
            let now = running.elapsed();
            if limit.is_some_and(|l| now >= l) {
                let after = limit.unwrap_or_default();
                return Err(self.refuse(
                    errors::IESERVERTESTDURATIONEXPIRED,
                    Error::Timeout {
                        phase: "waiting for the client to end the test".into(),
                        after,
                    },
                ));
            }
            let bytes = running.totals().0;
            if bytes != last.0 {
                last = (bytes, Instant::now());
            } else if receiving && last.1.elapsed() >= self.shared.config.rcv_timeout {
                let after = self.shared.config.rcv_timeout;
                return Err(self.refuse(
                    errors::IENOMSG,
                    Error::Timeout {
                        phase: "receiving data".into(),
                        after,
                    },
                ));
            }
            let wake = running
                .next_tick()
                .saturating_sub(now)
                .min(Duration::from_millis(250));
            match self.control.poll_state(Some(wake))? {
                Poll::Quiet => {}
                Poll::State(TestState::TestEnd) => return Ok(true),
                Poll::State(TestState::ClientTerminate) | Poll::Closed => return Ok(false),
                Poll::State(other) => {
                    return Err(Error::Ended(format!(
                        "the client sent an unexpected {other}"
                    )));
                }
            }
            running.tick_if_due(&Quiet);
        }
    }
}

fn new_stream(index: usize, sender: bool, socket: DataSocket) -> Stream {
    Stream {
        id: iperf::stream_id(index),
        sender,
        socket,
        counters: Arc::new(Counters::default()),
    }
}

/// Binds the UDP socket that takes stream hellos on the server's port.
fn bind_udp(local: SocketAddr) -> Result<UdpSocket> {
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
