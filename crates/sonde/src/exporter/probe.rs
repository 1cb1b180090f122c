//! One probe, run: the module's prober against a target within a
//! budget, its series filled in (see [`metrics`](super::metrics)), and
//! what went wrong as debug lines. Blocking, on the caller's thread: the
//! probers are sonde's own clients (perf, rtt), a TCP connect with an
//! optional TLS handshake, and an SMTP greeting.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::config::Module;
use super::metrics::{Answer, QUANTILES, directions};
use crate::net::Family;
use crate::perf::client::ClientConfig;
use crate::rtt::client::{Length, RttConfig};

/// Where a probe goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// The host, as given.
    pub host: String,
    /// The port, given or the module's.
    pub port: u16,
}

impl Target {
    /// Reads `HOST[:PORT]` (`[V6]:PORT`), the module's port when none.
    ///
    /// # Errors
    /// A message saying what is wrong with it.
    pub fn parse(text: &str, default_port: u16) -> Result<Self, String> {
        let (host, port) = crate::net::split_host_default_port(text, default_port)
            .map_err(|e| format!("target {text:?}: {e}"))?;
        if host.is_empty() {
            return Err(format!("target {text:?}: no host"));
        }
        Ok(Self { host, port })
    }

    fn addr(&self) -> Result<SocketAddr, String> {
        crate::net::resolve(&self.host, self.port, Family::Any)
            .map_err(|e| e.to_string())?
            .first()
            .copied()
            .ok_or_else(|| format!("{}: no address", self.host))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::net::display_target(&self.host, self.port))
    }
}

/// What a probe came back with.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Every series of the module.
    pub answer: Answer,
    /// What happened, a line each (for `&debug=true`).
    pub debug: Vec<String>,
    /// The server was busy with another test (after the retry).
    pub busy: bool,
}

/// Runs `module` against `target` within `budget`.
pub fn run(module: &Module, target: &Target, budget: Duration) -> Outcome {
    let start = Instant::now();
    let mut answer = Answer::for_module(module);
    let mut debug = vec![format!(
        "probing {target} with {} within {:.1} s",
        module.prober(),
        budget.as_secs_f64()
    )];
    let mut busy = false;
    let result = if module.least_time() > budget {
        Err(format!(
            "the module needs {:.1} s and the scrape allows {:.1} s: not started (raise scrape_timeout or shorten the test)",
            module.least_time().as_secs_f64(),
            budget.as_secs_f64()
        ))
    } else {
        match module {
            Module::Perf { .. } => perf(module, target, budget, &mut answer, &mut busy),
            Module::Rtt { .. } => rtt(module, target, budget, &mut answer),
            Module::Connect { .. } => connect(module, target, budget, &mut answer),
            Module::Sweep { .. } => sweep(module, target, budget, &mut answer),
            Module::Smtp { .. } => smtp(target, budget, &mut answer),
        }
    };
    match result {
        Ok(()) => {
            answer.set("probe_success", &[], 1.0);
            debug.push("probe succeeded".into());
        }
        Err(why) => debug.push(format!("probe failed: {why}")),
    }
    if busy {
        answer.set("sonde_perf_server_busy", &[], 1.0);
    }
    answer.set("probe_duration_seconds", &[], start.elapsed().as_secs_f64());
    Outcome {
        answer,
        debug,
        busy,
    }
}

/// Sets `stop` once `budget` has passed, unless dropped first.
struct Watchdog(Option<std::sync::mpsc::Sender<()>>);

impl Watchdog {
    fn new(budget: Duration, stop: Arc<AtomicBool>) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(budget) {
                stop.store(true, Ordering::SeqCst);
            }
        });
        Self(Some(tx))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread, which ends.
        self.0.take();
    }
}

/// How long to wait before the one retry of a busy server.
const BUSY_BACKOFF: Duration = Duration::from_secs(1);

fn perf(
    module: &Module,
    target: &Target,
    budget: Duration,
    answer: &mut Answer,
    busy: &mut bool,
) -> Result<(), String> {
    let Module::Perf {
        duration,
        udp,
        reverse,
        bidir,
        parallel,
        bitrate,
        ..
    } = module
    else {
        return Ok(());
    };
    let mut config = ClientConfig::new(target.host.clone(), target.port);
    config.params.time = *duration;
    config.params.parallel = *parallel;
    config.params.reverse = *reverse;
    config.params.bidirectional = *bidir;
    if *udp {
        config.params.protocol = crate::wire::iperf::params::Protocol::Udp;
        config.params.bandwidth = bitrate.unwrap_or(1_000_000);
        config.params.len = 1460;
    } else {
        config.params.bandwidth = bitrate.unwrap_or(0);
    }
    config.connect_timeout = Some(budget.min(Duration::from_secs(5)));
    config.interval = None;
    config.rcv_timeout = budget;
    let deadline = Instant::now() + budget;
    let mut tries = 0;
    let report = loop {
        let stop = Arc::new(AtomicBool::new(false));
        let left = deadline.saturating_duration_since(Instant::now());
        let _watchdog = Watchdog::new(left, Arc::clone(&stop));
        match crate::perf::client::run(&config, &crate::perf::Quiet, &stop) {
            Err(crate::error::Error::Busy)
                if tries == 0 && left > module.least_time() + BUSY_BACKOFF =>
            {
                tries += 1;
                std::thread::sleep(BUSY_BACKOFF);
            }
            Err(crate::error::Error::Busy) => {
                *busy = true;
                return Err(format!(
                    "{target} is busy running another test, also after a retry"
                ));
            }
            Err(e) => return Err(e.to_string()),
            Ok(report) if report.interrupted => {
                return Err("the test did not finish within the scrape's budget".into());
            }
            Ok(report) => break report,
        }
    };
    for (direction, local_sender) in directions(module).iter().map(|d| (*d, *d == "upload")) {
        let ends: Vec<_> = report
            .ends
            .iter()
            .filter(|e| e.local_sender == local_sender)
            .collect();
        let l = [("direction", direction)];
        let sum = |f: &dyn Fn(&crate::perf::measure::StreamEnd) -> (u64, f64)| {
            let bytes: u64 = ends.iter().map(|e| f(e).0).sum();
            let secs = ends.iter().map(|e| f(e).1).fold(0.0, f64::max);
            (
                bytes as f64,
                if secs > 0.0 {
                    bytes as f64 * 8.0 / secs
                } else {
                    0.0
                },
            )
        };
        let (sent, sent_rate) = sum(&|e| e.sent);
        let (received, received_rate) = sum(&|e| e.received);
        answer.set("sonde_perf_sent_bytes", &l, sent);
        answer.set("sonde_perf_received_bytes", &l, received);
        answer.set("sonde_perf_sent_bits_per_second", &l, sent_rate);
        answer.set("sonde_perf_received_bits_per_second", &l, received_rate);
        let retransmits: i64 = ends.iter().filter_map(|e| e.retransmits).sum();
        answer.set("sonde_perf_retransmits", &l, retransmits as f64);
        let udp: Vec<_> = ends.iter().filter_map(|e| e.udp).collect();
        if !udp.is_empty() {
            let lost: i64 = udp.iter().map(|u| u.1).sum();
            let packets: i64 = udp.iter().map(|u| u.2).sum();
            let jitter_ms = udp.iter().map(|u| u.0).sum::<f64>() / udp.len() as f64;
            answer.set("sonde_perf_udp_lost_packets", &l, lost as f64);
            let ratio = if packets > 0 {
                lost as f64 / packets as f64
            } else {
                0.0
            };
            answer.set("sonde_perf_udp_lost_ratio", &l, ratio);
            answer.set("sonde_perf_udp_jitter_seconds", &l, jitter_ms / 1000.0);
        }
    }
    Ok(())
}

/// One closed-loop rtt run at `size`, `count` round trips.
fn rtt_run(
    target: &Target,
    size: usize,
    count: u64,
    (udp, sockperf): (bool, bool),
    budget: Duration,
) -> Result<crate::rtt::client::RttReport, String> {
    let addr = target.addr()?;
    let config = RttConfig {
        addr,
        udp,
        size,
        length: Length::Count(count),
        warmup: count.min(10),
        warmup_time: Duration::ZERO,
        timeout: budget.min(Duration::from_secs(1)),
        busy_poll: false,
        keep_samples: false,
        sockperf,
        pace: None,
        tls: None,
        unix: None,
    };
    crate::rtt::client::run(&config).map_err(|e| e.to_string())
}

fn rtt(
    module: &Module,
    target: &Target,
    budget: Duration,
    answer: &mut Answer,
) -> Result<(), String> {
    let Module::Rtt {
        count,
        size,
        udp,
        sockperf,
        ..
    } = module
    else {
        return Ok(());
    };
    let report = rtt_run(target, *size, *count, (*udp, *sockperf), budget)?;
    let s = report.latency.summary();
    let secs = |ns: u64| ns as f64 / 1e9;
    for (label, ns) in QUANTILES.iter().zip([s.p50, s.p90, s.p99, s.p999]) {
        answer.set("sonde_rtt_seconds", &[("quantile", label.0)], secs(ns));
    }
    answer.set("sonde_rtt_min_seconds", &[], secs(s.min));
    answer.set("sonde_rtt_mean_seconds", &[], s.mean / 1e9);
    answer.set("sonde_rtt_max_seconds", &[], secs(s.max));
    answer.set("sonde_rtt_round_trips", &[], s.count as f64);
    if *udp {
        let sent = report.seq.sent.max(1) as f64;
        answer.set("sonde_rtt_lost_ratio", &[], report.seq.lost() as f64 / sent);
    }
    if s.count == 0 {
        return Err("no round trip came back".into());
    }
    Ok(())
}

fn sweep(
    module: &Module,
    target: &Target,
    budget: Duration,
    answer: &mut Answer,
) -> Result<(), String> {
    let Module::Sweep { sizes, count, .. } = module else {
        return Ok(());
    };
    let deadline = Instant::now() + budget;
    let mut points = Vec::new();
    for &size in sizes {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "out of time after {} of {} sizes",
                points.len(),
                sizes.len()
            ));
        }
        let report = rtt_run(target, size, *count, (false, false), left)?;
        points.push((size as u64, report.latency.summary().min as f64));
    }
    answer.set("sonde_sweep_sizes", &[], points.len() as f64);
    let fit = crate::rtt::fit::fit_knee(&points, crate::rtt::fit::Model::Streaming)
        .map_err(|e| e.to_string())?;
    answer.set("sonde_sweep_base_delay_seconds", &[], fit.base_ns / 1e9);
    answer.set(
        "sonde_sweep_bandwidth_bytes_per_second",
        &[],
        fit.bytes_per_sec,
    );
    Ok(())
}

fn connect(
    module: &Module,
    target: &Target,
    budget: Duration,
    answer: &mut Answer,
) -> Result<(), String> {
    let Module::Connect { tls, insecure, .. } = module else {
        return Ok(());
    };
    let addr = target.addr()?;
    let start = Instant::now();
    let tcp = TcpStream::connect_timeout(&addr, budget)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    answer.set("sonde_connect_seconds", &[], start.elapsed().as_secs_f64());
    if !*tls {
        return Ok(());
    }
    let _ = tcp.set_read_timeout(Some(budget));
    let _ = tcp.set_write_timeout(Some(budget));
    let options = crate::tls::ClientOptions {
        insecure: *insecure,
        ..Default::default()
    };
    let client = crate::tls::config::client(&options, &target.host).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let session =
        crate::tls::connect_stream(tcp, &client, &addr.to_string()).map_err(|e| e.to_string())?;
    answer.set(
        "sonde_tls_handshake_seconds",
        &[],
        start.elapsed().as_secs_f64(),
    );
    let der = session
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("the server showed no certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("reading its certificate: {e}"))?;
    let expiry = cert.validity().not_after.timestamp();
    answer.set(
        "sonde_tls_cert_expiry_timestamp_seconds",
        &[],
        expiry as f64,
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if expiry < i64::try_from(now).unwrap_or(i64::MAX) {
        return Err("its certificate has expired".into());
    }
    Ok(())
}

fn smtp(target: &Target, budget: Duration, answer: &mut Answer) -> Result<(), String> {
    let addr = target.addr()?;
    let start = Instant::now();
    let tcp = TcpStream::connect_timeout(&addr, budget)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = tcp.set_read_timeout(Some(budget));
    let _ = tcp.set_write_timeout(Some(budget));
    let mut writer = tcp.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(tcp);
    let banner = reply(&mut reader)?;
    answer.set(
        "sonde_smtp_banner_seconds",
        &[],
        start.elapsed().as_secs_f64(),
    );
    if !banner.first().is_some_and(|l| l.starts_with("220")) {
        return Err(format!("greeted with {banner:?}, not 220"));
    }
    let start = Instant::now();
    writer
        .write_all(b"EHLO sonde-exporter\r\n")
        .map_err(|e| e.to_string())?;
    let ehlo = reply(&mut reader)?;
    answer.set(
        "sonde_smtp_ehlo_seconds",
        &[],
        start.elapsed().as_secs_f64(),
    );
    let _ = writer.write_all(b"QUIT\r\n");
    if !ehlo.first().is_some_and(|l| l.starts_with("250")) {
        return Err(format!("EHLO answered {ehlo:?}"));
    }
    let size = ehlo
        .iter()
        .find_map(|l| l.get(4..)?.strip_prefix("SIZE")?.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    answer.set("sonde_smtp_size_limit_bytes", &[], size);
    Ok(())
}

/// An SMTP reply's lines (at most 100, each at most 1,000 bytes).
fn reply(reader: &mut impl BufRead) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = std::io::Read::take(&mut *reader, 1000)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("reading the server's reply: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let last = text.as_bytes().get(3) != Some(&b'-');
        lines.push(text);
        if last || lines.len() >= 100 {
            return Ok(lines);
        }
    }
}
