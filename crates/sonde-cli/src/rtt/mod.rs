//! `sonde rtt`: round-trip latency, and the lesson's model fitted over
//! message sizes (`--sweep`). With no host, an echo reflector starts on
//! loopback inside the process.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::json;
use sonde::rtt::client::{self, Length, RttConfig, RttReport};
use sonde::rtt::fit;
use sonde::rtt::stats::{Summary, micros};
use sonde::serve::ServiceKind;

mod under_load;

use crate::usage::UsageError;
use crate::usage::parse_secs;
use crate::usage::parse_size;

#[derive(Debug, Args)]
pub(crate) struct RttArgs {
    /// Echo server, HOST[:PORT] ([::1]:PORT for IPv6; port 7007, `sonde serve echo`'s).
    /// None: an echo server on loopback inside the process.
    pub(crate) host: Option<String>,
    /// The port, given apart as nc and `sonde connect` take it (HOST PORT).
    #[arg(value_name = "PORT", requires = "host")]
    pub(crate) port: Option<u16>,
    /// UDP instead of TCP (the default with --sockperf, as sockperf's).
    #[arg(short = 'u', long, conflicts_with = "tcp")]
    pub(crate) udp: bool,
    /// TCP: with --sockperf, sockperf's own flag (without it TCP is the default).
    #[arg(long)]
    pub(crate) tcp: bool,
    /// Message size in bytes (K and M mean 1024 and 1024²); TCP 1 B-16 MiB, UDP 16-65507.
    #[arg(short = 'm', long, value_name = "BYTES", value_parser = parse_size, default_value = "64")]
    pub(crate) size: u64,
    /// Round trips to measure (as sockperf's -n; in perf, -n is iperf3's byte count).
    #[arg(short = 'n', long, value_name = "COUNT", conflicts_with = "time")]
    pub(crate) count: Option<u64>,
    /// Seconds to measure (default 2; with --sweep, 1000 round trips per size).
    #[arg(short = 't', long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) time: Option<Duration>,
    /// Warm-up done first and discarded: a count of round trips, or a time
    /// with an `s` suffix (`0.5s`).
    #[arg(long, value_name = "COUNT|SECSs", default_value = "100", value_parser = parse_warmup)]
    pub(crate) warmup: (u64, Duration),
    /// Measure at each size and fit delay and bandwidth (base + 2·size/bandwidth for UDP and sockperf, base + size/bandwidth for a TCP echo): e.g. 1,64,1K,16K,64K,256K,1M.
    #[arg(long, value_name = "SIZES", value_delimiter = ',', value_parser = parse_size)]
    pub(crate) sweep: Option<Vec<u64>>,
    /// UDP: count a request lost when its reply takes longer than SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "1")]
    pub(crate) timeout: Duration,
    /// JSON output.
    #[arg(long)]
    pub(crate) json: bool,
    /// Write every round trip to FILE as CSV (size,index,rtt_ns), after the run.
    #[arg(long, value_name = "FILE")]
    pub(crate) csv: Option<std::path::PathBuf>,
    /// Also write the run as a self-contained HTML page of charts
    /// (histogram, CDF, latency over time; a sweep's fit; idle and loaded).
    #[arg(long, value_name = "FILE.html")]
    pub(crate) report: Option<std::path::PathBuf>,
    /// Open loop: N messages per second, several in flight, each latency
    /// counted from when its message was due (no coordinated omission).
    #[arg(long, value_name = "N", conflicts_with = "sweep")]
    pub(crate) rate: Option<f64>,
    /// With --rate: Poisson (exponential) spacing instead of a fixed interval.
    #[arg(long, requires = "rate")]
    pub(crate) poisson: bool,
    /// Speak sockperf's ping-pong format, to measure a stock `sockperf server`
    /// (default port 11111; messages of at least 14 bytes).
    #[arg(long, conflicts_with = "rate")]
    pub(crate) sockperf: bool,
    /// Over a Unix stream socket instead of TCP: to `sonde serve echo --unix PATH`
    /// (or sockperf), the kernel's round trip without the network stack; -U alone:
    /// an echo server inside the process on one.
    #[arg(short = 'U', long = "unix", value_name = "PATH", num_args = 0..=1, default_missing_value = "",
          conflicts_with_all = ["host", "udp", "under_load"])]
    pub(crate) unix: Option<String>,
    /// Messages per second, still one round trip at a time (sockperf's --mps).
    #[arg(long, value_name = "N", conflicts_with = "rate")]
    pub(crate) mps: Option<f64>,
    /// Measure idle, then beside a bulk TCP stream (the perf engine) to a
    /// sonde or iperf3 server at the same host, and report the ratio.
    #[arg(long, conflicts_with_all = ["sweep", "rate"])]
    pub(crate) under_load: bool,
    /// Port of the perf server for --under-load (default: with a HOST, 5201;
    /// without, an embedded server).
    #[arg(long, value_name = "PORT", requires = "under_load")]
    pub(crate) load_port: Option<u16>,
    /// TCP congestion control of the --under-load stream (as perf's -C): a
    /// loss-based one (cubic) fills a path's queue, BBR keeps it short.
    #[arg(long, value_name = "ALGO", requires = "under_load")]
    pub(crate) load_congestion: Option<String>,
    /// Spin instead of sleeping while waiting for replies (lowest latency, a whole CPU);
    /// with no host, the embedded reflector spins too.
    #[arg(long)]
    pub(crate) busy_poll: bool,
    /// TLS to the echo server (`sonde serve echo --tls`): --pin, --ca, --insecure as for connect.
    #[command(flatten)]
    pub(crate) tls: crate::tls::TlsArgs,
}

/// `100` (round trips) or `0.5s` (seconds).
fn parse_warmup(text: &str) -> Result<(u64, Duration), String> {
    match text.strip_suffix('s') {
        Some(secs) => parse_secs(secs).map(|d| (0, d)),
        None => text
            .parse()
            .map(|n| (n, Duration::ZERO))
            .map_err(|_| format!("'{text}' is neither a count nor seconds like 0.5s")),
    }
}

/// An embedded echo server, held for the run (it stops when dropped).
type Embedded = Box<dyn std::any::Any>;

/// The Unix socket of `-U`, and the embedded echo server on it when no
/// path was given.
fn unix_target(
    args: &RttArgs,
    path: &str,
) -> anyhow::Result<(sonde::net::unix::UnixPath, Option<Embedded>)> {
    use sonde::net::unix::UnixPath;
    if path.is_empty() {
        if args.sockperf {
            return Err(UsageError(
                "--sockperf -U needs a PATH (a `sonde serve sockperf --unix PATH`)".into(),
            )
            .into());
        }
        let reflector = sonde::serve::reflector::start_unix(args.busy_poll)?;
        return Ok((
            reflector.addr.clone(),
            Some(Box::new(reflector) as Embedded),
        ));
    }
    let path = UnixPath::parse(path).ok_or_else(|| UsageError("-U: an empty path".into()))?;
    Ok((path, None))
}

fn target(args: &RttArgs) -> anyhow::Result<(SocketAddr, Option<Embedded>)> {
    if args.sockperf && args.host.is_none() {
        return Err(
            UsageError("--sockperf needs a HOST (a sockperf server) or -U PATH".into()).into(),
        );
    }
    match &args.host {
        None => {
            let reflector = sonde::serve::reflector::start(args.busy_poll)?;
            Ok((reflector.addr, Some(Box::new(reflector) as Embedded)))
        }
        Some(text) => {
            let default_port = if args.sockperf {
                ServiceKind::Sockperf.default_port()
            } else {
                ServiceKind::Echo.default_port()
            };
            let (host, port) = sonde::net::split_host_default_port(text, default_port)
                .map_err(|e| UsageError(e.to_string()))?;
            let addr = sonde::net::resolve(&host, port, sonde::net::Family::Any)?[0];
            Ok((addr, None))
        }
    }
}

/// The TLS configuration, for a TCP closed-loop run against a host.
fn secure(args: &RttArgs) -> anyhow::Result<Option<sonde::tls::ClientTls>> {
    if !args.tls.on() {
        return Ok(None);
    }
    let refuse = |what: &str| Err(UsageError(format!("--tls does not go with {what}")).into());
    if args.udp {
        return Err(UsageError(crate::tls::NO_DTLS.into()).into());
    }
    if args.busy_poll {
        return refuse("--busy-poll");
    }
    if args.rate.is_some() || args.under_load {
        return refuse("--rate or --under-load (closed-loop round trips only)");
    }
    let Some(host) = &args.host else {
        return Err(UsageError("--tls needs a HOST (an echo server with --tls)".into()).into());
    };
    let name = sonde::net::split_host_default_port(host, 0)
        .map(|(h, _)| h)
        .unwrap_or_else(|_| host.clone());
    args.tls.client(&name)
}

/// `sonde rtt`.
pub(crate) fn rtt(mut args: RttArgs) -> anyhow::Result<ExitCode> {
    // sockperf's server and client speak UDP unless told --tcp (or -U,
    // a stream).
    args.udp = args.udp || (args.sockperf && !args.tcp && args.unix.is_none());
    if let (Some(host), Some(port)) = (&args.host, args.port) {
        args.host = Some(crate::usage::with_port(host, port)?);
    }
    let pace = match args.mps {
        Some(n) if n > 0.0 && n.is_finite() => Some(Duration::from_secs_f64(1.0 / n)),
        Some(n) => return Err(UsageError(format!("--mps {n}: must be above 0")).into()),
        None => None,
    };
    let sizes: Vec<usize> = match &args.sweep {
        Some(list) => list.iter().map(|&s| s as usize).collect(),
        None => vec![args.size as usize],
    };
    for &size in &sizes {
        client::check_size(args.udp, size).map_err(|e| UsageError(e.to_string()))?;
        if args.sockperf && size < sonde::wire::sockperf::HEADER_LEN {
            return Err(UsageError(format!(
                "message size {size} is out of range for --sockperf (at least 14 bytes)"
            ))
            .into());
        }
    }
    let tls = secure(&args)?;
    let (addr, unix, _embedded) = match &args.unix {
        Some(path) => {
            let (path, embedded) = unix_target(&args, path)?;
            let nowhere = SocketAddr::from(([127, 0, 0, 1], 0));
            (nowhere, Some(path), embedded)
        }
        None => {
            let (addr, embedded) = target(&args)?;
            (addr, None, embedded)
        }
    };
    let server = match &unix {
        Some(path) => format!("unix:{path}"),
        None => addr.to_string(),
    };
    let length = match (args.count, args.time, args.sweep.is_some()) {
        (Some(n), _, _) => Length::Count(n),
        (None, Some(t), _) => Length::Time(t),
        (None, None, true) => Length::Count(1000),
        (None, None, false) => Length::Time(Duration::from_secs(2)),
    };
    let config = RttConfig {
        addr,
        udp: args.udp,
        size: sizes[0],
        length,
        warmup: args.warmup.0,
        warmup_time: args.warmup.1,
        timeout: args.timeout,
        busy_poll: args.busy_poll,
        // The JSON and the report draw latency over time.
        keep_samples: args.csv.is_some() || args.json || args.report.is_some(),
        sockperf: args.sockperf,
        pace,
        tls,
        unix,
    };
    let reports = if args.sweep.is_some() {
        sweep(&config, &sizes)?
    } else if args.under_load {
        let port = args
            .load_port
            .or(args.host.as_ref().map(|_| sonde::wire::iperf::DEFAULT_PORT));
        under_load::run(&config, port, &args)?;
        return Ok(ExitCode::SUCCESS);
    } else {
        vec![match args.rate {
            Some(rate) if rate > 0.0 => sonde::rtt::open::run(&config, rate, args.poisson)?,
            Some(_) => return Err(UsageError("--rate must be above 0".into()).into()),
            None => client::run(&config)?,
        }]
    };
    if let Some(path) = &args.csv {
        write_csv(path, &reports)?;
    }
    if args.sweep.is_some() {
        let doc = sweep_json(&args, &server, &reports);
        print_sweep(&args, &server, &reports, &doc);
        if let Some(path) = &args.report {
            let title = format!("sonde rtt --sweep: {} to {server}", proto(&args));
            crate::report::write_one(path, title, "sweep", doc)?;
        }
    } else if let Some(report) = reports.first() {
        print_one(&args, &server, report);
        if let Some(path) = &args.report {
            let title = format!("sonde rtt: {} {} B to {server}", proto(&args), report.size);
            let doc = report_json(&args, &server, report);
            crate::report::write_one(path, title, "this run", doc)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Passes over the sizes of a sweep: each size is measured in every pass,
/// so a stall of the machine (a shared VM's neighbour) falls on all sizes
/// alike instead of bending the line at the few it would hit.
const SWEEP_PASSES: u64 = 3;

/// Round trips again after the first pass, on the new connection, before
/// measuring (TCP's window grows back; the full warm-up was paid once).
const REWARM: u64 = 3;

/// Measures every size in [`SWEEP_PASSES`] passes, the order reversed on
/// every other pass, and adds up each size's runs.
fn sweep(config: &RttConfig, sizes: &[usize]) -> anyhow::Result<Vec<RttReport>> {
    let passes = match config.length {
        Length::Count(n) => n.clamp(1, SWEEP_PASSES),
        Length::Time(_) => SWEEP_PASSES,
    };
    let share = |pass: u64| match config.length {
        // The first passes take the remainder: n = 20 is 7, 7, 6.
        Length::Count(n) => Length::Count(n / passes + u64::from(pass < n % passes)),
        Length::Time(t) => Length::Time(t / passes as u32),
    };
    let mut reports: Vec<Option<RttReport>> = sizes.iter().map(|_| None).collect();
    for pass in 0..passes {
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        if pass % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let mut this = config.clone();
            this.size = sizes[i];
            this.length = share(pass);
            if pass > 0 {
                this.warmup = config.warmup.min(REWARM);
                this.warmup_time = Duration::ZERO;
            }
            let report = client::run(&this)?;
            match &mut reports[i] {
                Some(all) => all.absorb(report),
                slot => *slot = Some(report),
            }
        }
    }
    Ok(reports.into_iter().flatten().collect())
}

/// Writes the samples after the run (never inside the timed section).
fn write_csv(path: &std::path::Path, reports: &[RttReport]) -> anyhow::Result<()> {
    use std::io::Write;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let fail = |e| anyhow::Error::new(e).context(format!("writing {}", path.display()));
    writeln!(out, "size,index,rtt_ns").map_err(fail)?;
    for r in reports {
        for (i, rtt) in r.samples.iter().enumerate() {
            writeln!(out, "{},{i},{rtt}", r.size).map_err(fail)?;
        }
    }
    out.flush().map_err(fail)
}

fn proto(args: &RttArgs) -> &'static str {
    match (args.udp, args.unix.is_some()) {
        (true, _) => "UDP",
        (false, true) => "Unix",
        (false, false) => "TCP",
    }
}

fn summary_json(s: &Summary) -> serde_json::Value {
    json!({"count": s.count, "min": s.min, "mean": s.mean, "stdev": s.stdev, "p50": s.p50, "p90": s.p90,
           "p99": s.p99, "p99_9": s.p999, "p99_99": s.p9999, "max": s.max})
}

/// The buckets a report draws: `[low ns, high ns, count]`, ten a decade.
pub(super) fn histogram_json(latency: &sonde::rtt::stats::Latency) -> serde_json::Value {
    let buckets: Vec<[u64; 3]> = latency
        .buckets()
        .into_iter()
        .map(|(a, b, n)| [a, b, n])
        .collect();
    json!(buckets)
}

/// Latency over time: `[seconds, ns]`, at most 2,000 points, each the
/// slowest of its stretch.
fn samples_json(samples: &[u64]) -> serde_json::Value {
    let points: Vec<(f64, u64)> = sonde::rtt::stats::over_time(samples, 2000);
    json!(points)
}

fn report_json(args: &RttArgs, server: &str, r: &RttReport) -> serde_json::Value {
    let s = r.latency.summary();
    let mut v = json!({"protocol": proto(args), "server": server, "size": r.size,
        "warmup_discarded": r.warmup, "seconds": r.elapsed.as_secs_f64(), "rtt_ns": summary_json(&s),
        "histogram_ns": histogram_json(&r.latency)});
    if !r.samples.is_empty() {
        v["samples"] = samples_json(&r.samples);
    }
    if args.udp {
        v["sent"] = json!(r.seq.sent);
        v["received"] = json!(r.seq.received);
        v["lost"] = json!(r.seq.lost());
        v["duplicates"] = json!(r.seq.duplicates);
        v["late"] = json!(r.seq.late);
    }
    v
}

fn print_one(args: &RttArgs, server: &str, r: &RttReport) {
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report_json(args, server, r)).unwrap_or_default()
        );
        return;
    }
    let s = r.latency.summary();
    outln!(
        "sonde rtt: {} {} B to {server}: {} round trips in {:.2} s ({} warm-up round trips discarded)",
        proto(args),
        r.size,
        s.count,
        r.elapsed.as_secs_f64(),
        r.warmup
    );
    if args.udp {
        outln!(
            "UDP: {} sent, {} answered, {} lost, {} duplicates, {} late",
            r.seq.sent,
            r.seq.received,
            r.seq.lost(),
            r.seq.duplicates,
            r.seq.late
        );
    }
    outln!("{:>8} {:>12} {:>12}", "", "RTT", "RTT/2");
    let rows: [(&str, f64); 10] = [
        ("min", s.min as f64),
        ("mean", s.mean),
        ("stdev", s.stdev),
        ("p50", s.p50 as f64),
        ("p90", s.p90 as f64),
        ("p99", s.p99 as f64),
        ("p99.9", s.p999 as f64),
        ("p99.99", s.p9999 as f64),
        ("max", s.max as f64),
        ("", 0.0),
    ];
    for (name, v) in rows.iter().filter(|r| !r.0.is_empty()) {
        outln!(
            "{name:>8} {:>12} {:>12}",
            micros(*v as u64),
            micros((*v / 2.0) as u64)
        );
    }
    outln!("\nRTT histogram:");
    out!("{}", r.latency.text_histogram(40));
}

/// Each size's fastest round trip, and the line fitted through them.
fn sweep_fit(args: &RttArgs, reports: &[RttReport]) -> (Vec<(u64, f64)>, FitResult) {
    // Each size's fastest round trip, as pathchar takes it: what the link
    // costs never varies, and everything that does (a queue, a scheduler,
    // a stalled host) only adds, so the minimum of many is the link's.
    let points: Vec<(u64, f64)> = reports
        .iter()
        .map(|r| (r.size as u64, r.latency.summary().min as f64))
        .collect();
    // UDP datagrams and sockperf's messages are answered whole; a TCP
    // echo streams them back.
    let model = if args.udp || args.sockperf {
        fit::Model::StoreAndForward
    } else {
        fit::Model::Streaming
    };
    let fitted = fit::fit_knee(&points, model);
    (points, fitted)
}

type FitResult = Result<fit::Fit, fit::FitError>;

/// A sweep's JSON: each size's run and the fit.
fn sweep_json(args: &RttArgs, server: &str, reports: &[RttReport]) -> serde_json::Value {
    let (_, fitted) = sweep_fit(args, reports);
    // Each size's figures; latency over time is a plain run's.
    let runs: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            let mut run = report_json(args, server, r);
            if let Some(map) = run.as_object_mut() {
                map.remove("samples");
            }
            run
        })
        .collect();
    let model = match &fitted {
        Ok(f) => {
            json!({"model": f.model.name(), "formula": f.model.formula(), "base_ns": f.base_ns, "bandwidth_bytes_per_sec": f.bytes_per_sec,
            "bandwidth_bits_per_sec": f.bytes_per_sec * 8.0, "r_squared": f.r_squared, "knee_bytes": f.knee,
            "residuals_ns": f.residuals.iter().map(|r| json!({"size": r.0, "residual": r.1})).collect::<Vec<_>>()})
        }
        Err(e) => json!({"error": e.to_string()}),
    };
    json!({"runs": runs, "fit": model})
}

fn print_sweep(args: &RttArgs, server: &str, reports: &[RttReport], doc: &serde_json::Value) {
    if args.json {
        outln!("{}", serde_json::to_string_pretty(doc).unwrap_or_default());
        return;
    }
    let (points, fitted) = sweep_fit(args, reports);
    outln!(
        "sonde rtt --sweep: {} to {server}, the fit through each size's fastest round trip",
        proto(args)
    );
    outln!(
        "{:>10} {:>12} {:>12} {:>12} {:>14}",
        "size",
        "min RTT",
        "p50 RTT",
        "p99 RTT",
        "residual"
    );
    for (r, p) in reports.iter().zip(&points) {
        let residual = fitted
            .as_ref()
            .ok()
            .and_then(|f| f.residuals.iter().find(|x| x.0 == p.0))
            .map_or(0.0, |x| x.1);
        let s = r.latency.summary();
        outln!(
            "{:>10} {:>12} {:>12} {:>12} {:>11.1} us",
            r.size,
            micros(s.min),
            micros(s.p50),
            micros(s.p99),
            residual / 1000.0
        );
    }
    match &fitted {
        Ok(f) => outln!(
            "fit rtt(size) = {} ({}): base {:.1} us, one-way bandwidth {} ({}/s), R^2 {:.4}",
            f.model.formula(),
            f.model.why(),
            f.base_ns / 1000.0,
            sonde::units::rate(f.bytes_per_sec * 8.0),
            sonde::units::size(f.bytes_per_sec as u64),
            f.r_squared
        ),
        Err(e) => outln!("no fit: {e}"),
    }
    if let Ok(f) = &fitted
        && let Some(knee) = f.knee
    {
        outln!(
            "knee at {}: smaller messages pass without the bottleneck's rate (a shaper's burst, socket buffers); the base is fitted below it, the bandwidth above it",
            sonde::units::size(knee)
        );
    }
}
