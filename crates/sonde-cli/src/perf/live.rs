//! What a perf client prints, as it happens: iperf3's text (the
//! connecting and connected lines, each interval, the summary, and
//! `-V`'s blocks), or `--json-stream`'s events, or at the end `-J`'s
//! document; every line behind `--timestamps` and `-T`'s prefix.
//! sonde's own lines (the one-line summary, a sonde server's sender TCP
//! state) come after iperf3's "iperf Done." with `-V` or in the embedded
//! test, so that iperf3's text stays iperf3's.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use serde_json::json;
use sonde::perf::client::{self, ClientConfig, ClientReport};
use sonde::perf::json::{
    Host, Role, http_date, iperf_numbers, json_error, json_interval, json_start,
};
use sonde::perf::text::{self, Layout, SEPARATOR, Side};
use sonde::perf::{Observer, StreamInterval, report};
use sonde::units::Format;
use sonde::wire::iperf::params::Protocol;

use super::args::PerfArgs;
use super::{Out, emit, pretty};

/// Prints a client's lines as they happen.
struct Live {
    out: Out,
    layout: Layout,
    json_stream: bool,
    text: bool,
    verbose: bool,
    prefix: Prefix,
    /// Intervals printed so far.
    intervals: Mutex<usize>,
    /// The host and port as given.
    target: (String, u16),
    reverse: bool,
    /// UDP without `-l`: the block size comes from the control MSS.
    udp_auto_len: bool,
}

impl Live {
    fn write(&self, text: &str) {
        emit(&self.out, &self.prefix.apply(text));
    }
}

impl Observer for Live {
    fn control_connected(&self, mss: Option<u32>) {
        if !self.text {
            return;
        }
        let mut out = String::new();
        if self.verbose {
            let host = Host::now(env!("CARGO_PKG_VERSION"));
            out.push_str(&format!(
                "sonde perf {} (iperf3 3.12's protocol)\n{}\n",
                env!("CARGO_PKG_VERSION"),
                host.system_info
            ));
            if let Some(mss) = mss {
                out.push_str(&format!("Control connection MSS {mss}\n"));
                if self.udp_auto_len {
                    out.push_str(&format!(
                        "Setting UDP block size to {}\n",
                        mss.clamp(16, 65_507)
                    ));
                }
            }
            out.push_str(&format!("Time: {}\n", http_date(host.timestamp.as_secs())));
        }
        let (host, port) = &self.target;
        out.push_str(&text::connecting(host, *port, self.reverse));
        self.write(&out);
    }

    fn started(&self, report: &ClientReport) {
        if self.json_stream {
            let host = Host::now(env!("CARGO_PKG_VERSION"));
            let mut start = json_start(report, &self.target.0, &host);
            iperf_numbers(&mut start);
            emit(
                &self.out,
                &format!("{}\n", json!({"event": "start", "data": start})),
            );
        }
        if !self.text {
            return;
        }
        let p = &report.params;
        let mut out = String::new();
        if self.verbose {
            out.push_str(&format!("      Cookie: {}\n", report.cookie));
            match p.protocol {
                Protocol::Tcp if p.mss > 0 => out.push_str(&format!("      TCP MSS: {}\n", p.mss)),
                Protocol::Tcp => {
                    let mss = report.mss.unwrap_or(0);
                    out.push_str(&format!("      TCP MSS: {mss} (default)\n"));
                }
                Protocol::Udp => out.push_str(&format!("      Target Bitrate: {}\n", p.bandwidth)),
            }
        }
        out.push_str(&text::connected_lines(&report.connected));
        if self.verbose {
            out.push_str(&text::starting_test(p));
        }
        self.write(&out);
    }

    fn interval(&self, interval: &[StreamInterval]) {
        if self.json_stream {
            let mut data = json_interval(interval, self.layout.protocol, Role::Client);
            iperf_numbers(&mut data);
            let event = json!({"event": "interval", "data": data});
            emit(&self.out, &format!("{event}\n"));
        }
        if !self.text {
            return;
        }
        let Ok(mut seen) = self.intervals.lock() else {
            return;
        };
        let mut out = String::new();
        if *seen == 0 {
            let sends = interval.iter().any(|s| s.sender);
            out.push_str(&self.layout.interval_header(sends));
        }
        out.push_str(&self.layout.interval(interval, *seen == 0));
        *seen += 1;
        self.write(&out);
    }
}

/// Runs the client's test and prints it.
pub(super) fn run_client(
    args: &PerfArgs,
    config: &ClientConfig,
    format: Format,
    out: &Out,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<ExitCode> {
    let text = !args.json && !args.json_stream;
    let live = Live {
        out: Arc::clone(out),
        layout: Layout::new(&config.params, format, true),
        json_stream: args.json_stream,
        text,
        verbose: args.verbose,
        prefix: Prefix::new(args),
        intervals: Mutex::new(0),
        target: (config.host.clone(), config.port),
        reverse: config.params.reverse,
        udp_auto_len: config.params.protocol == Protocol::Udp && config.params.len == 0,
    };
    let report = match client::run(config, &live, stop) {
        Ok(report) => report,
        Err(err) if args.json || args.json_stream => {
            let doc = if args.json_stream {
                json!({"event": "error", "data": err.to_string()})
            } else {
                json_error(&Host::now(env!("CARGO_PKG_VERSION")), &err.to_string())
            };
            emit(out, &format!("{}\n", pretty(&doc, args.json)));
            return Err(err.into());
        }
        Err(err) => return Err(err.into()),
    };
    print_report(args, config, &report, &live);
    if let Some(path) = &args.report {
        let host = Host::now(env!("CARGO_PKG_VERSION"));
        let doc = sonde::perf::json::json_report(&report, &config.host, &host);
        let title = match &args.client {
            Some(_) => format!("sonde perf to {}:{}", config.host, config.port),
            None => "sonde perf: an embedded loopback test".to_string(),
        };
        crate::report::write_one(path, title, "this test", doc)?;
    }
    // Cut short by Ctrl-C: the summary so far is printed, but the test failed.
    Ok(if report.interrupted {
        eprintln!("sonde: interrupt - the client has terminated (the server was told)");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(args: &PerfArgs, config: &ClientConfig, report: &ClientReport, live: &Live) {
    let host = Host::now(env!("CARGO_PKG_VERSION"));
    if args.json || args.json_stream {
        let doc = sonde::perf::json::json_report(report, &config.host, &host);
        let mut text = if args.json {
            pretty(&doc, true)
        } else {
            json!({"event": "end", "data": doc["end"]}).to_string()
        };
        if args.json_stream_full_output {
            text = format!("{text}\n{doc}");
        }
        emit(&live.out, &format!("{text}\n"));
        return;
    }
    let mut summary = live
        .layout
        .summary(&report.ends, Side::Both, report.diskfile.as_ref());
    if live.verbose {
        summary = format!(
            "{SEPARATOR}Test Complete. Summary Results:\n{}",
            &summary[SEPARATOR.len()..]
        );
        summary.push_str(&verbose_end(report));
    }
    live.write(&summary);
    // Asked for by --report -R, not by the user: not shown.
    let asked = args.get_server_output;
    if let Some(text) = report
        .remote
        .as_ref()
        .and_then(|r| r.server_output_text.clone())
        .filter(|_| asked)
    {
        // The server's own words: kept to its lines, nothing that could
        // drive a terminal.
        let text = sonde::shown::escaped(&text, true);
        live.write(&format!("\nServer output:\n{text}"));
    }
    live.write("\niperf Done.\n");
    // sonde's own lines, where they cannot surprise an iperf3 reader.
    if live.verbose || args.client.is_none() {
        if let Some(text) = report::remote_tcp_lines(report) {
            live.write(&text);
        }
        live.write(&format!("{}\n", report::summary_line(report)));
    }
}

/// `-V`'s lines after the summary: CPU use and congestion control.
fn verbose_end(report: &ClientReport) -> String {
    let remote = report.remote.clone().unwrap_or_default();
    let sends = !report.params.reverse || report.params.bidirectional;
    let (mine, theirs) = if sends {
        ("sender", "receiver")
    } else {
        ("receiver", "sender")
    };
    let (l, r) = (&report.local_cpu, &remote);
    let mut out = format!(
        "CPU Utilization: local/{mine} {:.1}% ({:.1}%u/{:.1}%s), remote/{theirs} {:.1}% ({:.1}%u/{:.1}%s)\n",
        l.total, l.user, l.system, r.cpu_util_total, r.cpu_util_user, r.cpu_util_system
    );
    if report.params.protocol == Protocol::Tcp {
        let (snd, rcv) = if sends {
            (report.congestion.clone(), remote.congestion_used.clone())
        } else {
            (remote.congestion_used.clone(), report.congestion.clone())
        };
        for (key, value) in [("snd", snd), ("rcv", rcv)] {
            if let Some(value) = value {
                out.push_str(&format!("{key}_tcp_congestion {value}\n"));
            }
        }
    }
    out
}

/// What goes before every output line: `--timestamps`' time, then `-T`'s
/// title, as iperf3 writes them.
#[derive(Clone, Debug, Default)]
pub(super) struct Prefix {
    /// strftime format of `--timestamps`.
    pub(super) timestamps: Option<String>,
    /// `-T`.
    pub(super) title: Option<String>,
}

impl Prefix {
    pub(super) fn new(args: &PerfArgs) -> Self {
        Self {
            timestamps: args.timestamps.clone(),
            title: args.title.clone(),
        }
    }

    /// `text` with the prefix on each line.
    pub(super) fn apply(&self, text: &str) -> String {
        if self.timestamps.is_none() && self.title.is_none() {
            return text.to_string();
        }
        let stamp = self
            .timestamps
            .as_deref()
            .map(local_time)
            .unwrap_or_default();
        let title = self
            .title
            .as_deref()
            .map(|t| format!("{t}:  "))
            .unwrap_or_default();
        text.lines()
            .map(|l| format!("{stamp}{title}{l}\n"))
            .collect()
    }
}

/// The local time now, formatted by strftime(3).
fn local_time(format: &str) -> String {
    let Ok(format) = std::ffi::CString::new(format) else {
        return String::new();
    };
    let mut buf = [0u8; 256];
    // SAFETY: time and localtime_r fill the plain structs given; strftime
    // writes at most buf.len() bytes and returns how many.
    let n = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        libc::strftime(buf.as_mut_ptr().cast(), buf.len(), format.as_ptr(), &tm)
    };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}
