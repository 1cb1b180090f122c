//! `sonde perf -s`: iperf3's server text, as each test goes (the
//! accepted and connected lines, each interval, its own side's summary,
//! the banner for the next test), or with `-J` one JSON document per test.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use sonde::net::{self, Family};
use sonde::perf::diskfile::DiskFile;
use sonde::perf::measure::StreamEnd;
use sonde::perf::server::{self, ServerConfig, ServerEvent};
use sonde::perf::text::{self, Layout, Side};
use sonde::units::Format;
use sonde::wire::iperf::params::Params;

use super::args::PerfArgs;
use super::{Out, emit, pretty};
use crate::usage::{parse_rate, usage};

/// `sonde perf -s`.
/// `-s --tls`: the certificate shown to sonde clients that ask for TLS
/// (its fingerprint on stderr, for their --pin).
fn server_tls(args: &PerfArgs) -> anyhow::Result<Option<sonde::tls::ServerTls>> {
    if !args.tls.on() {
        return Ok(None);
    }
    super::check_tls_flags(args)?;
    args.tls.server(args.json)
}

pub(super) fn serve(
    args: &PerfArgs,
    out: &Out,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<ExitCode> {
    if let Some(dir) = args.report_dir.as_ref().filter(|d| !d.is_dir()) {
        return Err(usage(format!(
            "--report-dir {}: not a directory",
            dir.display()
        )));
    }
    let fam = crate::usage::family(args.v4, args.v6);
    let host = args.bind.as_deref().map(|b| super::split_device(b).0);
    let addr = net::local_addrs(host.as_deref(), args.port, fam)?[0];
    let listener = net::listen_tcp(addr, fam == Family::V6)?;
    // -M on the listener: accepted streams inherit it, as with iperf3.
    sonde::perf::sockopt::listener_options(&listener, super::device(args).as_deref(), args.mss)
        .context("setting the listener's interface (--bind-dev) and MSS (-M)")?;
    let port = listener.local_addr().map_or(args.port, |a| a.port());
    sonde::door::raise_fd_limit();
    let bitrate_limit = match &args.server_bitrate_limit {
        Some(text) => Some(parse_rate(text.split('/').next().unwrap_or(text)).map_err(usage)?),
        None => None,
    };
    let config = ServerConfig {
        max_tests: args.max_tests.max(1),
        max_streams: args.max_streams.max(1),
        rcv_timeout: Duration::from_millis(args.rcv_timeout.max(100)),
        max_duration: args.server_max_duration,
        bitrate_limit,
        one_off: args.one_off,
        idle_timeout: args.idle_timeout,
        // --report-dir draws each test from its -J document.
        json: args.json || args.report_dir.is_some(),
        auth: args.auth.verifier()?,
        file: args.file.clone(),
        max_connections: args
            .access
            .max_connections(ServerConfig::default().max_connections),
        rules: args.access.rules(),
        tls: server_tls(args)?,
        ..ServerConfig::default()
    };
    let tested = TestMetrics::default();
    args.metrics
        .start(tested.registry(&config.counters), args.json)?;
    let json = args.json;
    // With -J, as iperf3 -s -J: one JSON document per test and nothing else.
    let prefix = super::live::Prefix::new(args);
    if !json {
        let mut banner = text::listening(port, 1);
        if args.verbose {
            banner.push_str(&format!(
                "sonde: up to {} tests at once, {} connections\n",
                config.max_tests, config.max_connections
            ));
        }
        emit(out, &prefix.apply(&banner));
    }
    let out_for_end = Arc::clone(out);
    let out = Arc::clone(out);
    let text_out = Text {
        port,
        format: super::format(args)?,
        verbose: args.verbose,
        one_off: args.one_off,
        file: args.file.clone(),
        counts: Arc::default(),
    };
    let counts = Arc::clone(&text_out.counts);
    let reports = args.report_dir.clone();
    server::serve(
        listener,
        config,
        move |event| {
            tested.count(&event);
            if let (
                Some(dir),
                ServerEvent::Done {
                    peer,
                    json: Some(doc),
                    ..
                },
            ) = (&reports, &event)
            {
                test_report(dir, *peer, doc);
            }
            let text = if json {
                describe_json(event)
            } else {
                prefix.apply(&text_out.describe(event))
            };
            emit(&out, &text);
        },
        stop,
    )?;
    if stop.load(Ordering::Relaxed) && !json {
        let running = counts
            .0
            .load(Ordering::Relaxed)
            .saturating_sub(counts.1.load(Ordering::Relaxed));
        emit(
            &out_for_end,
            &format!(
                "sonde: interrupt - the server has terminated ({running} test(s) cut short)\n"
            ),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What `--metrics` counts of the tests, as they end.
#[derive(Clone)]
pub(super) struct TestMetrics {
    tests: crate::metrics::Outcomes,
    throughput: prometheus_client::metrics::histogram::Histogram,
}

impl Default for TestMetrics {
    fn default() -> Self {
        // 1 Mbit/s to 100 Gbit/s, a bucket a decade.
        let buckets = prometheus_client::metrics::histogram::exponential_buckets(1e6, 10.0, 6);
        Self {
            tests: crate::metrics::Outcomes::new(&["done", "failed", "interrupted", "busy"]),
            throughput: prometheus_client::metrics::histogram::Histogram::new(buckets),
        }
    }
}

impl TestMetrics {
    /// The registry `--metrics` serves: these and the door's `counters`.
    pub(super) fn registry(
        &self,
        counters: &Arc<sonde::door::Counters>,
    ) -> prometheus_client::registry::Registry {
        let mut r = crate::metrics::with_door(Arc::clone(counters));
        let what = (
            "tests",
            "Tests ended, by result (done, failed, interrupted, busy)",
        );
        self.tests.register(&mut r, "sonde_perf", what);
        self.tests.register_bytes(&mut r, "sonde_perf");
        r.register(
            "sonde_perf_test_bits_per_second",
            "Each test's throughput as its receiver measured it",
            self.throughput.clone(),
        );
        r
    }

    /// A test done: the bytes the server `moved` (received, sent), and
    /// what its receiver counted (bytes, seconds), its throughput.
    pub(super) fn done(&self, moved: (u64, u64), (bytes, secs): (u64, f64)) {
        self.tests.ended("done");
        self.tests.moved(moved.0, moved.1);
        if secs > 0.0 {
            self.throughput.observe(bytes as f64 * 8.0 / secs);
        }
    }

    /// A test that ended otherwise (failed, interrupted, busy).
    pub(super) fn ended(&self, result: &str) {
        self.tests.ended(result);
    }

    fn count(&self, event: &ServerEvent) {
        match event {
            ServerEvent::Done { ends, .. } => {
                let sent: u64 = ends
                    .iter()
                    .filter(|e| e.local_sender)
                    .map(|e| e.sent.0)
                    .sum();
                let received: u64 = ends
                    .iter()
                    .filter(|e| !e.local_sender)
                    .map(|e| e.received.0)
                    .sum();
                let bytes: u64 = ends.iter().map(|e| e.received.0).sum();
                let secs = ends.iter().map(|e| e.received.1).fold(0.0, f64::max);
                self.done((received, sent), (bytes, secs));
            }
            ServerEvent::Failed { .. } => self.tests.ended("failed"),
            ServerEvent::Interrupted { .. } => self.tests.ended("interrupted"),
            ServerEvent::Busy(_) => self.tests.ended("busy"),
            _ => {}
        }
    }
}

/// One test's report in `dir`, named by when and whose it was; a failure
/// is a warning, and the server goes on.
fn test_report(dir: &std::path::Path, peer: std::net::SocketAddr, doc: &serde_json::Value) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let who = peer.ip().to_string().replace(':', "-");
    let path = dir.join(format!("perf-{secs}-{who}-{}.html", peer.port()));
    let title = format!("sonde perf -s: a test from {peer}");
    let facts = crate::report::facts_now(title);
    let made = crate::report::write(&path, facts, &[("this test".to_string(), doc.clone())]);
    if let Err(e) = made {
        tracing::warn!("{e:#}");
    }
}

/// A server event under -J: each test's document, or its error.
fn describe_json(event: ServerEvent) -> String {
    match event {
        ServerEvent::Done {
            json: Some(doc), ..
        } => format!("{}\n", pretty(&doc, true)),
        ServerEvent::Failed { error, .. } => {
            format!("{}\n", pretty(&json!({"error": error.to_string()}), true))
        }
        _ => String::new(),
    }
}

/// How the server's text is written: iperf3 -s's lines for each test.
struct Text {
    port: u16,
    format: Format,
    verbose: bool,
    one_off: bool,
    /// `-F`.
    file: Option<std::path::PathBuf>,
    /// Tests begun and ended so far.
    counts: Arc<(AtomicUsize, AtomicUsize)>,
}

impl Text {
    fn describe(&self, event: ServerEvent) -> String {
        match event {
            ServerEvent::Accepted { peer, concurrent } => {
                self.counts.0.fetch_add(1, Ordering::Relaxed);
                let mut out = text::accepted(peer);
                if self.verbose {
                    out.push_str(&format!("sonde: {concurrent} test(s) running\n"));
                }
                out
            }
            ServerEvent::Busy(peer) => {
                format!("sonde: refused {peer}: the server is busy (the --max-tests limit)\n")
            }
            ServerEvent::Started { streams, .. } => text::connected_lines(&streams),
            ServerEvent::Interval {
                params,
                interval,
                index,
                ..
            } => {
                let layout = Layout::new(&params, self.format, false);
                let mut out = String::new();
                if index == 0 {
                    out.push_str(&layout.interval_header(interval.iter().any(|s| s.sender)));
                }
                out.push_str(&layout.interval(&interval, index == 0));
                out
            }
            ServerEvent::Done {
                params,
                ends,
                concurrent,
                ..
            } => {
                let mut out = self.summary(&params, &ends);
                if self.verbose {
                    out.push_str(&format!("sonde: {concurrent} test(s) ran at once\n"));
                }
                out + &self.next()
            }
            ServerEvent::Interrupted { params, ends, .. } => {
                let mut out = self.summary(&params, &ends);
                out.push_str("sonde: the client has terminated\n");
                out + &self.next()
            }
            ServerEvent::Failed { peer, error } => {
                format!("sonde: error - {peer}: {error}\n") + &self.next()
            }
        }
    }

    fn summary(&self, params: &Params, ends: &[StreamEnd]) -> String {
        let file = self.file.as_deref().map(DiskFile::stat);
        Layout::new(params, self.format, false).summary(ends, Side::Own, file.as_ref())
    }

    /// The banner for the next test, as iperf3 prints it after each one.
    fn next(&self) -> String {
        let ended = self.counts.1.fetch_add(1, Ordering::Relaxed) + 1;
        if self.one_off {
            String::new()
        } else {
            text::listening(self.port, ended + 1)
        }
    }
}
