//! One client's test on the server, thin: drives the control session
//! ([`crate::perf::session::server`]) by reading and writing the control
//! connection, setting up the data streams, measuring, and building the
//! results; every decision is the session's.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Arrived, ServerEvent, Shared, StreamPlaces, bind_udp};
use crate::door::Permit;
use crate::error::{Error, Result};
use crate::perf::client::{ClientReport, describe};
use crate::perf::control::{Control, Got, Poll};
use crate::perf::json::{Host, json_server_report, sonde_tcp_intervals};
use crate::perf::measure::StreamEnd;
use crate::perf::running::Running;
use crate::perf::session::Expect;
use crate::perf::session::server::{Action, End, Judged, ServerLimits, ServerSession};
use crate::perf::stream::{self, Counters, DataSocket, Stream};
use crate::perf::tls_data::TlsSocket;
use crate::perf::{ConnectedStream, CpuClock, Observer, StreamInterval};
use crate::wire::iperf::codec;
use crate::wire::iperf::params::{Params, Protocol};
use crate::wire::iperf::results::Results;
use crate::wire::iperf::state::TestState;
use crate::wire::iperf::{self, UDP_CONNECT_REPLY};

/// What a finished test leaves: its parameters, per-stream totals, and
/// its `-J` document when asked for.
pub(super) type Finished = (Params, Vec<StreamEnd>, Option<serde_json::Value>);

pub(super) struct Test<'a> {
    pub(super) control: Control,
    pub(super) shared: &'a Shared,
    pub(super) streams_rx: mpsc::Receiver<Arrived>,
    /// The data streams' places at the door, held while the test runs.
    pub(super) permits: Vec<Permit>,
    pub(super) concurrent: usize,
    pub(super) cookie: String,
    /// The streams, from set-up until the test starts.
    pub(super) streams: Vec<Stream>,
    pub(super) connected: Vec<ConnectedStream>,
    /// The first data socket's buffer sizes.
    pub(super) streams_buffers: Option<(u64, u64)>,
    pub(super) running: Option<(Running, CpuClock)>,
    /// CPU use counted from TEST_START.
    pub(super) cpu: Option<CpuClock>,
    /// The test once stopped: closed, with its final figures.
    pub(super) stopped: Option<Stopped>,
    pub(super) finished: Option<Finished>,
    /// The test's parameters once it starts, shared with its events.
    pub(super) params: Option<Arc<Params>>,
    /// Its places among the server's data streams.
    pub(super) places: StreamPlaces<'a>,
}

/// Hands each interval of a test to the server's events.
struct Relay<'a> {
    shared: &'a Shared,
    peer: SocketAddr,
    params: Arc<Params>,
    index: std::sync::atomic::AtomicUsize,
}

impl Observer for Relay<'_> {
    fn interval(&self, interval: &[StreamInterval]) {
        (self.shared.notify)(ServerEvent::Interval {
            peer: self.peer,
            params: Arc::clone(&self.params),
            interval: interval.to_vec(),
            index: self.index.fetch_add(1, Ordering::Relaxed),
        });
    }
}

/// A test stopped and closed, with this side's final figures.
pub(super) struct Stopped {
    running: Running,
    cpu: crate::perf::CpuUse,
    local: Vec<crate::wire::iperf::results::StreamResult>,
    samples: Vec<crate::perf::measure::Sample>,
}

/// The session's limits from the server's configuration.
pub(super) fn limits(config: &super::ServerConfig) -> ServerLimits {
    ServerLimits {
        message_timeout: config.message_timeout,
        setup_timeout: config.setup_timeout,
        grace: config.grace,
        rcv_timeout: config.rcv_timeout,
        max_duration: config.max_duration,
        bitrate_limit: config.bitrate_limit,
        auth: config.auth.clone(),
        tls: config.tls.is_some(),
    }
}

impl<'a> Test<'a> {
    /// Runs the session from the parameters judged before the test had a
    /// thread (see `greet`) to its end: `Some` for a test that ran, `None`
    /// when the client went during it.
    pub(super) fn run(&mut self, judged: Judged) -> Result<Option<Finished>> {
        let limits = limits(&self.shared.config);
        let peer = self.control.peer().to_string();
        let now = Instant::now();
        let mut session = ServerSession::new(now, peer, limits)
            .with_wall_clock(now, crate::perf::unix_now())
            .with_judged(now, judged);
        loop {
            while let Some(action) = session.poll_action() {
                match action {
                    Action::Finish(End::Done) => return Ok(self.finished.take()),
                    Action::Finish(End::ClientGone) => {
                        self.interrupted(session.params().cloned().unwrap_or_default());
                        return Ok(None);
                    }
                    Action::Finish(End::Failed(error)) => return Err(error),
                    action => {
                        if let Err(error) = self.act(action, &mut session) {
                            session.handle_failure(error);
                        }
                    }
                }
            }
            self.wait(&mut session);
        }
    }

    fn act(&mut self, action: Action, session: &mut ServerSession) -> Result<()> {
        let params = session.params().cloned().unwrap_or_default();
        match action {
            Action::Send(state) => {
                tracing::debug!("perf: sending {state} to {}", self.control.peer());
                if state == TestState::TestStart {
                    self.cpu = Some(CpuClock::start());
                }
                self.control.write_state(state)?;
            }
            Action::SendError(code) => {
                let frame = codec::encode_server_error(code, 0);
                let _ = self.control.write_all(&frame, "sending an error");
            }
            Action::CreateStreams => {
                // Past the server's streams: busy, as past its tests.
                if !self.places.take(params.total_streams()) {
                    let _ = self.control.write_state(TestState::AccessDenied);
                    return Err(Error::Ended(format!(
                        "refused a test of {} streams: over --max-streams {} across the running tests",
                        params.total_streams(),
                        self.shared.config.max_streams
                    )));
                }
                let deadline = session.poll_timeout();
                match self.create_streams(&params, deadline)? {
                    true => session.handle_streams_ready(Instant::now()),
                    false => session.handle_timeout(Instant::now()),
                }
            }
            Action::StartTest => {
                // -A n,m: the test's thread, and the streams it starts, on CPU m.
                if let Some(core) = params.server_affinity {
                    let _ = crate::perf::sockopt::set_affinity(core as usize);
                }
                self.concurrent = self
                    .concurrent
                    .max(self.shared.active.load(Ordering::Relaxed));
                let streams = std::mem::take(&mut self.streams);
                let cpu = self.cpu.take().unwrap_or_else(CpuClock::start);
                let tick = Some(Duration::from_secs(1));
                let shared = Arc::new(params.clone());
                (self.shared.notify)(ServerEvent::Started {
                    peer: self.control.peer(),
                    params: Arc::clone(&shared),
                    streams: self.connected.clone(),
                });
                self.params = Some(shared);
                self.running = Some((
                    Running::start(
                        streams,
                        &params,
                        tick,
                        Instant::now(),
                        self.shared.config.file.as_deref(),
                    )?,
                    cpu,
                ));
            }
            Action::StopTest => {
                // Every stream is closed and counted before EXCHANGE_RESULTS
                // goes out: the figures are final, and no data still flows.
                if let Some((mut running, cpu)) = self.running.take() {
                    running.stop_senders();
                    running.settle(&params);
                    running.final_tick(&self.relay());
                    let now = running.end_time();
                    let samples = running.samples();
                    running.close();
                    let local = running.meter.results(now, &samples);
                    self.stopped = Some(Stopped {
                        running,
                        cpu: cpu.read(),
                        local,
                        samples,
                    });
                }
            }
            Action::SendResults(theirs) => self.send_results(&params, *theirs)?,
            Action::Finish(_) => {}
        }
        Ok(())
    }

    /// Reads what the session waits for, by its deadline, and hands it in.
    fn wait(&mut self, session: &mut ServerSession) {
        let deadline = session.poll_timeout();
        match session.poll_read() {
            Expect::Json { max } => {
                match self
                    .control
                    .read_json_by(max, deadline, "reading the control connection")
                {
                    Ok(Got::Value(json)) => session.handle_json(Instant::now(), Ok(json)),
                    Ok(Got::Bad(e)) => session.handle_json(Instant::now(), Err(e)),
                    Ok(Got::Quiet) => session.handle_timeout(Instant::now()),
                    Ok(Got::Closed) => session.handle_closed(),
                    Err(e) => session.handle_failure(e),
                }
            }
            Expect::State => self.poll_state(session, deadline),
            Expect::ServerError | Expect::Nothing => {
                session.handle_failure(Error::Ended("the test stalled".into()));
            }
        }
    }

    /// Waits for a state byte until the deadline or the next interval,
    /// whichever is first, measuring as the test runs.
    fn poll_state(&mut self, session: &mut ServerSession, deadline: Option<Instant>) {
        let now = Instant::now();
        let mut wake = deadline.map_or(Duration::from_millis(250), |d| {
            d.saturating_duration_since(now)
        });
        if let Some((running, _)) = self.running.as_ref() {
            let tick = running.next_tick().saturating_sub(running.elapsed());
            wake = wake.min(tick).min(Duration::from_millis(250));
        }
        match self.control.poll_state(Some(wake)) {
            Ok(Poll::State(state)) => {
                tracing::debug!("perf: {} sent {state}", self.control.peer());
                session.handle_state(Instant::now(), state);
            }
            Ok(Poll::Closed) => session.handle_closed(),
            Ok(Poll::Quiet) => {
                let relay = self.relay();
                if let Some((running, _)) = self.running.as_mut() {
                    running.tick_if_due(&relay);
                    session.handle_progress(Instant::now(), running.totals().0);
                }
                session.handle_timeout(Instant::now());
            }
            Err(e) => session.handle_failure(e),
        }
    }

    /// What reports each interval as the server's event.
    fn relay(&self) -> Relay<'a> {
        Relay {
            shared: self.shared,
            peer: self.control.peer(),
            params: self.params.clone().unwrap_or_default(),
            index: std::sync::atomic::AtomicUsize::new(
                self.running.as_ref().map_or(0, |(r, _)| r.intervals.len()),
            ),
        }
    }

    /// The client went mid-test: reports what was measured until then.
    fn interrupted(&mut self, params: Params) {
        let Some((mut running, _)) = self.running.take() else {
            return;
        };
        running.stop_senders();
        running.final_tick(&self.relay());
        let samples = running.samples();
        let local = running.meter.results(running.end_time(), &samples);
        running.close();
        let none = Results::default();
        let streams = running.meter.streams();
        let ends = crate::perf::measure::join(params.protocol, streams, &local, &none, &[]);
        (self.shared.notify)(ServerEvent::Interrupted {
            peer: self.control.peer(),
            params: Box::new(params),
            ends,
        });
    }

    /// Sets up the data streams; `false` when the deadline passed first.
    fn create_streams(&mut self, params: &Params, deadline: Option<Instant>) -> Result<bool> {
        let total = params.total_streams();
        let per_way = params.parallel as usize;
        let role = |index: usize| {
            if params.bidirectional {
                index >= per_way
            } else {
                params.reverse
            }
        };
        let sockets = if params.protocol == Protocol::Udp {
            self.udp_streams(params, deadline)?
        } else {
            self.tcp_streams(params, deadline)?
        };
        let Some(sockets) = sockets.filter(|s| s.len() == total) else {
            return Ok(false);
        };
        self.streams = sockets
            .into_iter()
            .enumerate()
            .map(|(index, socket)| Stream {
                id: iperf::stream_id(index),
                sender: role(index),
                socket,
                counters: Arc::new(Counters::default()),
            })
            .collect();
        self.connected = self.streams.iter().map(describe).collect();
        self.streams_buffers = self
            .streams
            .first()
            .and_then(|s| stream::buffers(&s.socket));
        Ok(true)
    }

    fn tcp_streams(
        &mut self,
        params: &Params,
        deadline: Option<Instant>,
    ) -> Result<Option<Vec<DataSocket>>> {
        self.control.write_state(TestState::CreateStreams)?;
        let mut arrived = Vec::with_capacity(params.total_streams());
        while arrived.len() < params.total_streams() {
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            match self.streams_rx.recv_timeout(left) {
                Ok(stream) => arrived.push(stream),
                Err(_) => return Ok(None),
            }
        }
        arrived.sort_by_key(|a| a.order);
        let mut sockets = Vec::with_capacity(arrived.len());
        for Arrived { stream, permit, .. } in arrived {
            self.permits.push(permit);
            stream::apply_tcp_options(&stream, params)
                .map_err(|e| Error::io("setting data stream options", e))?;
            // In the order the client connected them, as it handshakes.
            let socket = match self.shared.config.tls.as_ref().filter(|_| params.tls) {
                Some(tls) => {
                    let peer = self.control.peer().to_string();
                    DataSocket::Tls(TlsSocket::server(stream, tls, &peer)?)
                }
                None => DataSocket::Tcp(stream),
            };
            sockets.push(socket);
        }
        Ok(Some(sockets))
    }

    /// UDP hellos carry no cookie: one test at a time sets its streams up.
    fn udp_streams(
        &mut self,
        params: &Params,
        deadline: Option<Instant>,
    ) -> Result<Option<Vec<DataSocket>>> {
        let _turn = self
            .shared
            .udp_setup
            .lock()
            .map_err(|_| Error::Invalid("UDP set-up lock poisoned".into()))?;
        let mut listener = bind_udp(self.shared.local)?;
        self.control.write_state(TestState::CreateStreams)?;
        let mut sockets = Vec::with_capacity(params.total_streams());
        for _ in 0..params.total_streams() {
            let Some((sock, next)) = self.udp_stream(listener, params, deadline)? else {
                return Ok(None);
            };
            listener = next;
            sockets.push(DataSocket::Udp(sock));
        }
        Ok(Some(sockets))
    }

    /// Takes one UDP hello on `listener`, connects it to the client, binds
    /// the next listener, then replies (in that order, so the next hello is
    /// never lost). `None` when the deadline passed first.
    fn udp_stream(
        &self,
        listener: UdpSocket,
        params: &Params,
        deadline: Option<Instant>,
    ) -> Result<Option<(UdpSocket, UdpSocket)>> {
        let fail = |e| Error::io("setting up a UDP stream", e);
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            return Ok(None);
        }
        listener.set_read_timeout(left).map_err(fail)?;
        let mut hello = [0u8; 64];
        let from = match listener.recv_from(&mut hello) {
            Ok((_, from)) => from,
            Err(e) if crate::sys::timed_out(&e) => return Ok(None),
            Err(e) => return Err(fail(e)),
        };
        listener.connect(from).map_err(fail)?;
        listener.set_read_timeout(None).map_err(fail)?;
        stream::apply_udp_options(&listener, params);
        let next = bind_udp(self.shared.local)?;
        listener.send(&UDP_CONNECT_REPLY).map_err(fail)?;
        Ok(Some((listener, next)))
    }

    /// Builds and sends this server's results, and keeps what the test
    /// leaves for the caller.
    fn send_results(&mut self, params: &Params, theirs: Results) -> Result<()> {
        let Some(Stopped {
            running,
            cpu,
            local,
            samples,
        }) = self.stopped.take()
        else {
            return Err(Error::Ended("results asked for before the test ran".into()));
        };
        let ends = running.ends(params.protocol, &local, &theirs, &samples);
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
            congestion_used: running
                .streams
                .iter()
                .find_map(|s| s.socket.tcp().and_then(stream::congestion)),
            streams: local,
            ..Results::default()
        };
        let peer = self.control.peer();
        let doc = self.shared.config.json.then(|| {
            let server = self.control.socket().local_addr().unwrap_or(peer);
            let report = self.report(params, server, &running, &ends, theirs, cpu, &mine);
            json_server_report(&report, &Host::now(env!("CARGO_PKG_VERSION")))
        });
        if params.get_server_output {
            match &doc {
                Some(doc) => mine.server_output_json = Some(doc.clone()),
                None => {
                    let text = crate::perf::text::server_test(
                        peer,
                        &self.connected,
                        &running.intervals,
                        &ends,
                        params,
                    );
                    mine.server_output_text = Some(text);
                }
            }
        }
        mine.sonde = Some(json!({
            "concurrent_tests": self.concurrent,
            "tcp_intervals": sonde_tcp_intervals(&running.intervals),
        }));
        self.control
            .write_json(&mine.to_json(), "sending the results")?;
        self.finished = Some((params.clone(), ends, doc));
        Ok(())
    }

    /// The test as a report in the client's layout, for the `-J` document.
    #[allow(clippy::too_many_arguments)]
    fn report(
        &self,
        params: &Params,
        server: SocketAddr,
        running: &Running,
        ends: &[StreamEnd],
        theirs: Results,
        cpu: crate::perf::CpuUse,
        mine: &Results,
    ) -> ClientReport {
        ClientReport {
            params: params.clone(),
            server,
            local: self.control.peer(),
            cookie: self.cookie.clone(),
            connected: self.connected.clone(),
            intervals: running.intervals.clone(),
            ends: ends.to_vec(),
            local_cpu: cpu,
            remote: Some(theirs),
            congestion: mine.congestion_used.clone(),
            mss: None,
            buffers: self.streams_buffers,
            interrupted: false,
            diskfile: self
                .shared
                .config
                .file
                .as_deref()
                .map(crate::perf::diskfile::DiskFile::stat),
        }
    }
}
