//! The perf client: drives a test against an iperf3 (or sonde) server.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol as SockProto, SockAddr, SockRef, Socket, Type};

use crate::error::{Error, Result};
use crate::net::{self, ConnectOptions};
use crate::wire::iperf::cookie::{self, Cookie};
use crate::wire::iperf::params::{Params, Protocol};
use crate::wire::iperf::results::{Results, StreamResult};
use crate::wire::iperf::{
    self, ProtocolError, UDP_CONNECT_MSG, UDP_CONNECT_REPLY, UDP_CONNECT_REPLY_LEGACY,
};

use super::control::{Control, Got, Poll};
use super::diskfile::DiskFile;
use super::measure::{self, Sample};
use super::running::Running;
use super::session::Expect;
use super::session::client::{Action, ClientSession, End};
use super::stream::{self, Counters, DataSocket, Stream};
use super::tls_data::TlsSocket;
use super::{ConnectedStream, CpuClock, CpuUse, Observer};

pub use super::test_spec::{ClientConfig, ClientReport};

/// Runs a test. `stop` interrupts it (Ctrl-C): the server is told the
/// client has gone, and the report holds what was measured so far.
///
/// # Errors
/// Connection failures, a busy or failing server, protocol violations.
pub fn run(
    config: &ClientConfig,
    observer: &dyn Observer,
    stop: &Arc<AtomicBool>,
) -> Result<ClientReport> {
    let opts = ConnectOptions {
        family: config.family,
        source: config.bind.map(|ip| SocketAddr::new(ip, 0)),
        timeout: config.connect_timeout,
        device: config.local.bind_device.clone(),
    };
    let (stream, _) = net::connect_tcp(&config.host, config.port, &opts)?;
    let cpu = CpuClock::start();
    if let Some(ka) = config.local.control_keepalive {
        super::sockopt::set_control_keepalive(socket2::SockRef::from(&stream), ka)
            .map_err(|e| Error::io("setting keepalive on the control connection", e))?;
    }
    let mut control = Control::new(stream)?;
    let server = control.peer();
    let local = control
        .socket()
        .local_addr()
        .map_err(|e| Error::io("reading the control connection's address", e))?;
    let mut random = [0u8; iperf::COOKIE_LEN - 1];
    let _ = rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty());
    let cookie = cookie::make(&random);
    control.write_all(&cookie, "sending the cookie")?;
    let mss = socket2::SockRef::from(control.socket()).tcp_mss().ok();
    observer.control_connected(mss);
    let mut params = config.params.clone();
    params.tls = config.tls.is_some();
    if params.protocol == Protocol::Udp && params.len == 0 {
        params.len = mss.unwrap_or(1460).clamp(16, 65_507);
    }
    let mut report = ClientReport {
        params: params.clone(),
        server,
        local,
        cookie: cookie::text(&cookie),
        connected: Vec::new(),
        intervals: Vec::new(),
        ends: Vec::new(),
        local_cpu: CpuUse::default(),
        remote: None,
        congestion: None,
        mss,
        buffers: None,
        interrupted: false,
        diskfile: None,
    };
    let mut wire = params.clone();
    if let Some(credentials) = &config.auth {
        wire.authtoken = Some(credentials.token(crate::perf::unix_now())?);
    }
    let session = ClientSession::new(
        Instant::now(),
        server.to_string(),
        wire.to_json(),
        super::control::MESSAGE_TIMEOUT,
    );
    let mut driver = Driver {
        control,
        config,
        params,
        cookie,
        server,
        cpu,
        running: None,
        streams: Vec::new(),
        sent: None,
    };
    let result = driver.drive(session, observer, stop, &mut report);
    if let Some(mut running) = driver.running.take() {
        running.close();
        report.intervals = std::mem::take(&mut running.intervals);
    }
    report.local_cpu = cpu.read();
    result.map(|()| report)
}

/// Drives the control session ([`crate::perf::session::client`]) with
/// the socket, the streams and the measurement; every decision is the
/// session's.
struct Driver<'a> {
    control: Control,
    config: &'a ClientConfig,
    params: Params,
    cookie: Cookie,
    server: SocketAddr,
    cpu: CpuClock,
    running: Option<Running>,
    streams: Vec<Stream>,
    /// This side's results as sent, and the samples they were taken from:
    /// the server's are joined with these, not with later figures.
    sent: Option<(Vec<StreamResult>, Vec<Sample>)>,
}

impl Driver<'_> {
    fn drive(
        &mut self,
        mut session: ClientSession,
        observer: &dyn Observer,
        stop: &Arc<AtomicBool>,
        report: &mut ClientReport,
    ) -> Result<()> {
        loop {
            while let Some(action) = session.poll_action() {
                let done = match action {
                    Action::Finish(End::Done) => {
                        if let Some(running) = self.running.as_mut() {
                            running.close();
                        }
                        return Ok(());
                    }
                    Action::Finish(End::Interrupted) => return Ok(()),
                    Action::Finish(End::Failed(error)) => return Err(error),
                    Action::StartTest => self.start(&mut session, observer, stop, report),
                    action => self.act(action, observer, report),
                };
                if let Err(error) = done {
                    session.handle_failure(error);
                }
            }
            self.wait(&mut session);
        }
    }

    fn act(
        &mut self,
        action: Action,
        observer: &dyn Observer,
        report: &mut ClientReport,
    ) -> Result<()> {
        match action {
            Action::Send(state) => {
                tracing::debug!("perf: sending {state}");
                self.control.write_state(state)?;
            }
            Action::SendJson(json) => {
                tracing::debug!("perf: send_parameters: {json}");
                self.control.write_json(&json, "sending the parameters")?;
            }
            Action::ConnectStreams => {
                self.streams = self.create_streams()?;
                report.connected = self.streams.iter().map(describe).collect();
                report.buffers = self
                    .streams
                    .first()
                    .and_then(|s| stream::buffers(&s.socket));
                report.congestion = self
                    .streams
                    .iter()
                    .find_map(|s| s.socket.tcp().and_then(stream::congestion));
                observer.connected(&report.connected);
                observer.started(report);
            }
            Action::SendResults => self.send_results(report)?,
            Action::ResultsIn(theirs) => self.results_in(*theirs, report),
            Action::StartTest | Action::Finish(_) => {}
        }
        Ok(())
    }

    /// Starts the streams and measures until the test is over.
    fn start(
        &mut self,
        session: &mut ClientSession,
        observer: &dyn Observer,
        stop: &Arc<AtomicBool>,
        report: &mut ClientReport,
    ) -> Result<()> {
        let streams = std::mem::take(&mut self.streams);
        let file = self.config.file.as_deref();
        let running = Running::start(
            streams,
            &self.params,
            self.config.interval,
            Instant::now(),
            file,
        )?;
        self.running = Some(running);
        if let Some(interrupted) = self.measure(session, observer, stop)? {
            if interrupted {
                report.interrupted = true;
                self.local_ends(report);
            }
            session.handle_test_over(Instant::now(), interrupted);
        }
        Ok(())
    }

    /// Reads what the session waits for, by its deadline, and hands it in.
    fn wait(&mut self, session: &mut ClientSession) {
        let deadline = session.poll_timeout();
        match session.poll_read() {
            Expect::State => {
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                match self.control.poll_state(left) {
                    Ok(Poll::State(state)) => {
                        tracing::debug!("perf: the server sent {state}");
                        session.handle_state(Instant::now(), state);
                    }
                    Ok(Poll::Quiet) => session.handle_timeout(Instant::now()),
                    Ok(Poll::Closed) => session.handle_closed(),
                    Err(
                        e @ Error::Protocol {
                            source: ProtocolError::UnknownState(byte),
                            ..
                        },
                    ) => session.handle_unknown_state(byte.to_be_bytes()[0], e),
                    Err(e) => session.handle_failure(e),
                }
            }
            Expect::Json { max } => {
                match self
                    .control
                    .read_json_by(max, deadline, "reading the server's results")
                {
                    Ok(Got::Value(json)) => session.handle_json(Instant::now(), Ok(json)),
                    Ok(Got::Bad(e)) => session.handle_json(Instant::now(), Err(e)),
                    Ok(Got::Quiet) => session.handle_timeout(Instant::now()),
                    Ok(Got::Closed) => session.handle_closed(),
                    Err(e) => session.handle_failure(e),
                }
            }
            Expect::ServerError => match self.control.read_server_error() {
                Error::ServerError { code, errno } => session.handle_server_error(code, errno),
                other => session.handle_failure(other),
            },
            Expect::Nothing => session.handle_failure(Error::Ended("the test stalled".into())),
        }
    }

    /// Runs the test until its end condition: `Some(interrupted)` when it
    /// is over here, `None` when a state byte from the server changed the
    /// session first.
    fn measure(
        &mut self,
        session: &mut ClientSession,
        observer: &dyn Observer,
        stop: &Arc<AtomicBool>,
    ) -> Result<Option<bool>> {
        let params = self.params.clone();
        let Some(running) = self.running.as_mut() else {
            return Ok(Some(true));
        };
        let total = Duration::from_secs(u64::from(params.time) + u64::from(params.omit));
        let by_count = params.num > 0 || params.blockcount > 0;
        let mut last_bytes = (0u64, Instant::now());
        let mut last_received = (0u64, Instant::now());
        loop {
            if stop.load(Ordering::Relaxed) {
                running.final_tick(observer);
                return Ok(Some(true));
            }
            let now = running.elapsed();
            let bytes = running.totals().0;
            if by_count {
                let received = running.counted(false).0;
                if received != last_received.0 {
                    last_received = (received, Instant::now());
                }
            }
            if by_count && counted_done(&params, running, last_received) {
                // A receiver that waited out the quiet ended at the last
                // arrival, not after the wait (over UDP some never come).
                if last_received.0 > 0 {
                    running.settled_at(last_received.1);
                }
                break;
            }
            if (params.time > 0 && now >= total) || running.file_sent() {
                break;
            }
            running.tick_if_due(observer);
            if let Some(why) = running.failure() {
                return Err(Error::Ended(format!("a data stream failed: {why}")));
            }
            if bytes != last_bytes.0 {
                last_bytes = (bytes, Instant::now());
            } else if last_bytes.1.elapsed() > self.config.rcv_timeout
                && running.streams.iter().all(|s| !s.sender)
            {
                return Err(Error::Timeout {
                    phase: "receiving data".into(),
                    after: self.config.rcv_timeout,
                });
            }
            let mut wake = running.next_tick().min(if params.time > 0 {
                total
            } else {
                Duration::MAX
            });
            let step = if by_count {
                Duration::from_millis(5)
            } else {
                Duration::from_millis(100)
            };
            wake = wake.min(now + step);
            match self.control.poll_state(Some(wake.saturating_sub(now)))? {
                Poll::Quiet => {}
                Poll::Closed => {
                    session.handle_closed();
                    return Ok(None);
                }
                Poll::State(state) => {
                    session.handle_state(Instant::now(), state);
                    return Ok(None);
                }
            }
        }
        running.stop_senders();
        running.final_tick(observer);
        Ok(Some(false))
    }

    /// This side's view only, for a test cut short (no results exchange).
    fn local_ends(&mut self, report: &mut ClientReport) {
        if let Some(running) = self.running.as_mut() {
            let samples = running.samples();
            let local = running.meter.results(running.elapsed(), &samples);
            let none = Results::default();
            report.ends = measure::join(
                self.params.protocol,
                running.meter.streams(),
                &local,
                &none,
                &[],
            );
        }
    }

    /// Sends this side's results.
    fn send_results(&mut self, report: &ClientReport) -> Result<()> {
        let Some(running) = self.running.as_mut() else {
            return Err(Error::Ended("results requested before the test ran".into()));
        };
        let samples = running.samples();
        let local = running.meter.results(running.end_time(), &samples);
        let has_retransmits = if running.streams.iter().all(|s| !s.sender) {
            -1
        } else {
            i64::from(self.params.protocol == Protocol::Tcp)
        };
        let mine = Results {
            sender_has_retransmits: has_retransmits,
            streams: local.clone(),
            congestion_used: report.congestion.clone(),
            ..cpu_results(self.cpu.read())
        };
        self.sent = Some((local, samples));
        self.control
            .write_json(&mine.to_json(), "sending the results")
    }

    /// Joins the server's results with this side's.
    fn results_in(&mut self, theirs: Results, report: &mut ClientReport) {
        if let (Some(running), Some((local, samples))) = (self.running.as_ref(), &self.sent) {
            report.ends = running.ends(self.params.protocol, local, &theirs, samples);
        }
        report.remote = Some(theirs);
        report.diskfile = self.config.file.as_deref().map(DiskFile::stat);
    }

    fn create_streams(&mut self) -> Result<Vec<Stream>> {
        let p = &self.params;
        let per_way = p.parallel as usize;
        let total = p.total_streams();
        let mut out = Vec::with_capacity(total);
        for index in 0..total {
            let sender = if p.bidirectional {
                index < per_way
            } else {
                !p.reverse
            };
            let local = self.local_addr(index);
            let socket = match p.protocol {
                Protocol::Tcp => DataSocket::Tcp(self.connect_tcp(local)?),
                Protocol::Udp => DataSocket::Udp(self.connect_udp(local)?),
            };
            out.push(Stream {
                id: iperf::stream_id(index),
                sender,
                socket,
                counters: Arc::new(Counters::default()),
            });
        }
        // Every cookie is in before the first handshake: the server takes
        // the streams' TLS in the same order once they have all arrived.
        if let Some(tls) = self.config.tls.as_ref().filter(|_| p.tls) {
            let peer = self.server.to_string();
            let secure = |stream: Stream| -> Result<Stream> {
                let socket = match stream.socket {
                    DataSocket::Tcp(tcp) => DataSocket::Tls(TlsSocket::client(tcp, tls, &peer)?),
                    other => other,
                };
                Ok(Stream { socket, ..stream })
            };
            out = out.into_iter().map(secure).collect::<Result<_>>()?;
        }
        Ok(out)
    }

    fn local_addr(&self, index: usize) -> Option<SocketAddr> {
        let port = self
            .config
            .cport
            .map_or(0, |p| p.saturating_add(index as u16));
        match (self.config.bind, port) {
            (None, 0) => None,
            (Some(ip), port) => Some(SocketAddr::new(ip, port)),
            (None, port) => Some(SocketAddr::new(unspecified(self.server), port)),
        }
    }

    /// The server's address, with the flow label of `-L` (leased for
    /// `sock`) when it is IPv6.
    fn target(&self, sock: &impl std::os::fd::AsRawFd) -> std::io::Result<SocketAddr> {
        match (self.server, self.params.flowlabel) {
            (SocketAddr::V6(v6), label) if label > 0 => {
                super::sockopt::flow_label(sock, v6, label).map(SocketAddr::V6)
            }
            (addr, _) => Ok(addr),
        }
    }

    fn connect_tcp(&self, local: Option<SocketAddr>) -> Result<TcpStream> {
        let fail = |e| Error::io(format!("connecting a data stream to {}", self.server), e);
        let protocol = if self.config.local.mptcp {
            SockProto::from(super::sockopt::IPPROTO_MPTCP)
        } else {
            SockProto::TCP
        };
        let socket = Socket::new(
            Domain::for_address(self.server),
            Type::STREAM,
            Some(protocol),
        )
        .map_err(|e| {
            if self.config.local.mptcp {
                Error::io("opening an MPTCP data stream (-m)", e)
            } else {
                fail(e)
            }
        })?;
        super::sockopt::bind_device(
            SockRef::from(&socket),
            self.config.local.bind_device.as_deref(),
        )
        .map_err(fail)?;
        if let Some(local) = local {
            socket.set_reuse_address(true).map_err(fail)?;
            socket.bind(&SockAddr::from(local)).map_err(fail)?;
        }
        if self.params.mss > 0 {
            socket.set_tcp_mss(self.params.mss).map_err(fail)?;
        }
        let target = self.target(&socket).map_err(fail)?;
        socket.connect(&SockAddr::from(target)).map_err(fail)?;
        let mut tcp: TcpStream = socket.into();
        stream::apply_tcp_options(&tcp, &self.params).map_err(fail)?;
        super::sockopt::apply_local_tcp(SockRef::from(&tcp), &self.config.local).map_err(fail)?;
        tcp.write_all(&self.cookie).map_err(fail)?;
        Ok(tcp)
    }

    fn connect_udp(&self, local: Option<SocketAddr>) -> Result<UdpSocket> {
        let fail = |e| Error::io(format!("setting up a UDP stream with {}", self.server), e);
        let local = local.unwrap_or_else(|| SocketAddr::new(unspecified(self.server), 0));
        let sock = UdpSocket::bind(local).map_err(fail)?;
        super::sockopt::bind_device(
            SockRef::from(&sock),
            self.config.local.bind_device.as_deref(),
        )
        .map_err(fail)?;
        let target = self.target(&sock).map_err(fail)?;
        sock.connect(target).map_err(fail)?;
        stream::apply_udp_options(&sock, &self.params);
        super::sockopt::apply_local_udp(&sock, &self.config.local, self.server.is_ipv6())
            .map_err(fail)?;
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(fail)?;
        sock.send(&UDP_CONNECT_MSG).map_err(fail)?;
        // In reverse mode data may overtake the reply: skip a few strays.
        let mut reply = vec![0u8; 65_536];
        for _ in 0..64 {
            let n = sock.recv(&mut reply).map_err(fail)?;
            if n == 4 && (reply[..4] == UDP_CONNECT_REPLY || reply[..4] == UDP_CONNECT_REPLY_LEGACY)
            {
                return Ok(sock);
            }
        }
        Err(Error::Ended(format!(
            "{}: no UDP connect reply",
            self.server
        )))
    }
}

fn unspecified(like: SocketAddr) -> IpAddr {
    match like {
        SocketAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

pub(crate) fn describe(s: &Stream) -> ConnectedStream {
    let (local, remote) = s.socket.addrs();
    ConnectedStream {
        id: s.id,
        socket: s.socket.fd(),
        local,
        remote,
        sender: s.sender,
    }
}

fn cpu_results(cpu: CpuUse) -> Results {
    Results {
        cpu_util_total: cpu.total,
        cpu_util_user: cpu.user,
        cpu_util_system: cpu.system,
        ..Results::default()
    }
}

/// Whether a counted test (`-n`, `-k`) is over, seen from the client: its
/// sending streams (if any) have written the count, and its receiving
/// streams (if any) have had it.
///
/// The client's senders stop at the count themselves (see `Budget`). A
/// receiving stream counts bytes, since the server's blocks are not its
/// reads; and as what the server sent after the omitted seconds is not
/// exactly what arrived after this side's (nor is all of it, over UDP),
/// receiving is also over once nothing has arrived for `QUIET_END` since
/// the count began. `received` is the bytes received so far and when they
/// last grew.
fn counted_done(params: &Params, running: &Running, received: (u64, Instant)) -> bool {
    if running.meter.omitting() {
        return false;
    }
    let blocks = super::budget::count(params).unwrap_or(0);
    let has = |sender: bool| running.streams.iter().any(|s| s.sender == sender);
    let sent = !has(true) || running.counted(true).1 >= blocks;
    let got = !has(false)
        || received.0 >= super::running::counted_bytes(params)
        || (received.0 > 0 && received.1.elapsed() >= QUIET_END);
    sent && got
}

/// How long a receiving client waits for more of a counted test.
const QUIET_END: Duration = Duration::from_millis(500);
