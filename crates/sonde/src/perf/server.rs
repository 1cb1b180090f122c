//! The perf server: accepts iperf3 clients (stock or sonde), runs several
//! tests at once up to a limit, and never hangs on a bad peer: every phase
//! has a timeout, and a failing test only ends itself.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::error::{Error, Result};
use crate::wire::iperf::codec::{self, errors};
use crate::wire::iperf::cookie::Cookie;
use crate::wire::iperf::params::{Params, Protocol};
use crate::wire::iperf::results::Results;
use crate::wire::iperf::state::TestState;
use crate::wire::iperf::{self, MAX_PARAMS_LEN, UDP_CONNECT_REPLY};

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
    /// Time allowed for each set-up message (cookie, parameters, streams).
    pub setup_timeout: Duration,
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
    tests: Mutex<HashMap<Cookie, mpsc::Sender<(u64, TcpStream)>>>,
    active: AtomicUsize,
    /// UDP hellos carry no cookie: one test at a time sets up UDP streams.
    udp_setup: Mutex<()>,
    notify: Notify,
    finished: AtomicUsize,
}

/// Serves clients of `listener` until `shutdown` is set (or, with
/// `one_off`, after one test).
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
    let shared = Arc::new(Shared {
        config,
        local,
        tests: Mutex::default(),
        active: AtomicUsize::new(0),
        udp_setup: Mutex::new(()),
        notify: Arc::new(notify),
        finished: AtomicUsize::new(0),
    });
    let mut idle_since = Instant::now();
    // Accept order is the client's connect order; cookie reads run on
    // their own threads and may finish in any order, so streams carry it.
    let mut accepted = 0u64;
    loop {
        if shutdown.load(Ordering::Relaxed)
            || (shared.config.one_off && shared.finished.load(Ordering::Relaxed) > 0)
        {
            return Ok(());
        }
        if shared.active.load(Ordering::Relaxed) > 0 {
            idle_since = Instant::now();
        }
        if shared.config.one_off
            && shared
                .config
                .idle_timeout
                .is_some_and(|t| idle_since.elapsed() >= t)
        {
            return Ok(());
        }
        if !readable(&listener, Duration::from_millis(100)) {
            continue;
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                idle_since = Instant::now();
                accepted += 1;
                let order = accepted;
                let conn_shared = Arc::clone(&shared);
                let spawned = thread::Builder::new()
                    .name("sonde-perf-conn".into())
                    .spawn(move || handle(stream, peer, order, &conn_shared));
                if let Err(e) = spawned {
                    (shared.notify)(ServerEvent::Failed {
                        peer,
                        error: Error::io("starting a connection thread", e),
                    });
                }
            }
            Err(e) => {
                // Out of descriptors and the like: keep serving.
                (shared.notify)(ServerEvent::Failed {
                    peer: local,
                    error: Error::io("accepting a connection", e),
                });
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn readable(listener: &TcpListener, timeout: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(listener, PollFlags::IN)];
    let ts = Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    matches!(poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
}

/// A new connection: a data stream of a running test (its cookie is
/// known), or the control connection of a new test.
fn handle(stream: TcpStream, peer: SocketAddr, order: u64, shared: &Arc<Shared>) {
    let mut control = match Control::new(stream) {
        Ok(c) => c,
        Err(_) => return,
    };
    let cookie = match control.read_cookie(shared.config.setup_timeout) {
        Ok(c) => c,
        Err(error) => return (shared.notify)(ServerEvent::Failed { peer, error }),
    };
    let known = shared
        .tests
        .lock()
        .ok()
        .and_then(|t| t.get(&cookie).cloned());
    if let Some(test) = known {
        // A data stream: undo what reading the cookie set (a read timeout,
        // TCP_NODELAY) and hand it over (a closed test just drops it).
        if let Ok(sock) = control.socket().try_clone() {
            let _ = sock.set_read_timeout(None);
            let _ = sock.set_nodelay(false);
            let _ = test.send((order, sock));
        }
        return;
    }
    let running = shared.active.fetch_add(1, Ordering::SeqCst) + 1;
    let _slot = Slot(shared);
    if running > shared.config.max_tests {
        let _ = control.write_state(TestState::AccessDenied);
        return (shared.notify)(ServerEvent::Busy(peer));
    }
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

/// Holds one place among the running tests.
struct Slot<'a>(&'a Shared);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Test<'a> {
    control: Control,
    shared: &'a Shared,
    streams_rx: mpsc::Receiver<(u64, TcpStream)>,
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
                let pair = self
                    .streams_rx
                    .recv_timeout(self.shared.config.setup_timeout)
                    .map_err(|_| Error::Timeout {
                        phase: "waiting for the data streams".into(),
                        after: self.shared.config.setup_timeout,
                    })?;
                arrived.push(pair);
            }
            arrived.sort_by_key(|(order, _)| *order);
            for (index, (_, sock)) in arrived.into_iter().enumerate() {
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
