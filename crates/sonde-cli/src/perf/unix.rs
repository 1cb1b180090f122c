//! `sonde perf -U`: throughput over a Unix stream socket, sonde to sonde
//! (`perf -s -U PATH` and `perf -U PATH`; `perf -U` alone runs both ends
//! in this process). The flags that mean something without a network
//! (-t, -n, -k, -l, -P, -R, --bidir, -i, -f, -J, -1) are taken; the
//! others are refused by name. The text is perf's layout.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use sonde::net::unix::UnixPath;
use sonde::perf::StreamEnd;
#[cfg(test)]
use sonde::perf::StreamInterval;
use sonde::perf::text::{Layout, Side};
use sonde::perf::unix::{self, Length, ServerEvent, UnixReport, UnixServerConfig, UnixTest};
use sonde::units::{Format, bitrate, bytes};
use sonde::wire::iperf::params::Params;

use super::args::PerfArgs;
use super::{Out, emit};
use crate::usage::usage;

/// The flags `-U` refuses: they are about a network (or iperf3's
/// protocol), which a Unix socket has none of.
fn refused(args: &PerfArgs) -> Option<&'static str> {
    let checks: [(bool, &'static str); 24] = [
        (args.udp, "-u"),
        (args.bitrate.is_some(), "-b"),
        (args.window.is_some(), "-w"),
        (args.no_delay, "-N"),
        (args.mss.is_some(), "-M"),
        (args.omit > 0, "-O"),
        (args.zerocopy, "-Z"),
        (args.skip_rx_copy, "--skip-rx-copy"),
        (args.congestion.is_some(), "-C"),
        (args.v4 || args.v6, "-4/-6"),
        (
            args.bind.is_some() || args.bind_dev.is_some(),
            "-B/--bind-dev",
        ),
        (args.cport.is_some(), "--cport"),
        (args.file.is_some(), "-F"),
        (args.tls.on(), "--tls"),
        (args.client.is_some(), "-c (-U names the socket)"),
        (args.json_stream, "--json-stream"),
        (args.report_dir.is_some(), "--report-dir"),
        (args.tos.is_some() || args.dscp.is_some(), "-S/--dscp"),
        (
            args.flowlabel.is_some() || args.fq_rate.is_some(),
            "-L/--fq-rate",
        ),
        (args.mptcp || args.sctp, "-m/--sctp"),
        (args.dont_fragment, "--dont-fragment"),
        (args.get_server_output, "--get-server-output"),
        (args.cntl_ka.is_some(), "--cntl-ka"),
        (args.daemon, "-D"),
    ];
    checks
        .into_iter()
        .find(|(set, _)| *set)
        .map(|(_, flag)| flag)
}

/// `sonde perf -U [PATH]` and `sonde perf -s -U PATH`.
pub(super) fn run(
    args: &PerfArgs,
    path: &str,
    out: &Out,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<ExitCode> {
    if let Some(flag) = refused(args) {
        return Err(usage(format!(
            "{flag} does not go with -U: over a Unix socket sonde takes -t, -n, -k, -l, -P, -R, --bidir, -i, -f, -J, --report and -1"
        )));
    }
    let path = UnixPath::parse(path);
    if args.server {
        let path = path.ok_or_else(|| usage("-s -U needs the socket's PATH"))?;
        return serve(args, &path, out, stop);
    }
    let test = test(args, path.is_none())?;
    // The embedded server stops when dropped, after the test.
    let (path, _embedded) = match path {
        Some(path) => (path, None),
        None => {
            let server = unix::start_embedded().context("starting the embedded server")?;
            (server.path.clone(), Some(server))
        }
    };
    client(args, &path, &test, out)
}

/// The test the flags ask for.
fn test(args: &PerfArgs, embedded: bool) -> anyhow::Result<UnixTest> {
    let len = match args.length {
        Some(l) => usize::try_from(l)
            .ok()
            .filter(|l| (1..=unix::MAX_LEN).contains(l))
            .ok_or_else(|| usage(format!("-l {l}: 1 to {} bytes", unix::MAX_LEN)))?,
        None => sonde::perf::TCP_LEN,
    };
    if args.parallel == 0 || args.parallel > unix::MAX_STREAMS {
        return Err(usage(format!(
            "-P {}: 1 to {}",
            args.parallel,
            unix::MAX_STREAMS
        )));
    }
    let counted = [
        args.time.is_some(),
        args.bytes.is_some(),
        args.blockcount.is_some(),
    ];
    if counted.iter().filter(|c| **c).count() > 1 {
        return Err(usage("-t, -n and -k are mutually exclusive"));
    }
    let length = match (args.bytes, args.blockcount) {
        (Some(n), _) => Length::Bytes(n),
        (_, Some(k)) => Length::Bytes(k.saturating_mul(len as u64)),
        _ => Length::Time(Duration::from_secs(u64::from(
            args.time.unwrap_or(if embedded { 3 } else { 10 }),
        ))),
    };
    Ok(UnixTest {
        streams: args.parallel,
        reverse: args.reverse,
        bidir: args.bidir,
        length,
        len,
        interval: Duration::from_secs_f64(if args.interval > 0.0 {
            args.interval.max(0.1)
        } else {
            // No intervals (-i 0): one at the end.
            1e6
        }),
    })
}

/// The text layout of a test, perf's.
fn layout(test: &UnixTest, format: Format) -> Layout {
    let params = Params {
        parallel: test.streams,
        bidirectional: test.bidir,
        ..Params::default()
    };
    Layout::new(&params, format, true)
}

fn client(
    args: &PerfArgs,
    path: &UnixPath,
    test: &UnixTest,
    out: &Out,
) -> anyhow::Result<ExitCode> {
    let format = super::format(args)?;
    let layout = layout(test, format);
    if !args.json {
        emit(out, &format!("Connecting to unix:{path}\n"));
        if test.reverse {
            emit(out, &format!("Reverse mode, unix:{path} is sending\n"));
        }
        if args.interval > 0.0 {
            emit(out, &layout.interval_header(false));
        }
    }
    let mut first = true;
    let report = unix::run(path, test, |interval| {
        if !args.json && args.interval > 0.0 {
            emit(out, &layout.interval(interval, first));
            first = false;
        }
    })?;
    let doc = json_doc(path, test, &report);
    if let Some(file) = &args.report {
        let title = format!("sonde perf -U: unix:{path}");
        crate::report::write_one(file, title, "this test", doc.clone())?;
    }
    if args.json {
        emit(
            out,
            &format!(
                "{}\n",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            ),
        );
    } else {
        emit(out, &layout.summary(&report.ends, Side::Both, None));
        emit(out, "\nsonde perf done.\n");
    }
    Ok(ExitCode::SUCCESS)
}

/// One interval or summary entry, in iperf3's keys.
fn entry(socket: Option<i32>, (start, end): (f64, f64), moved: u64, sender: bool) -> Value {
    let secs = end - start;
    let bps = if secs > 0.0 {
        moved as f64 * 8.0 / secs
    } else {
        0.0
    };
    let mut v = json!({"start": start, "end": end, "seconds": secs, "bytes": moved,
        "bits_per_second": bps, "omitted": false, "sender": sender});
    if let Some(fd) = socket {
        v["socket"] = json!(fd);
    }
    v
}

/// The run as JSON in iperf3's `-J` shape, for the keys that have a
/// meaning here.
fn json_doc(path: &UnixPath, test: &UnixTest, report: &UnixReport) -> Value {
    let (secs, total) = match test.length {
        Length::Time(t) => (t.as_secs(), 0),
        Length::Bytes(n) => (0, n),
    };
    let intervals: Vec<Value> = report
        .intervals
        .iter()
        .map(|iv| {
            let streams: Vec<Value> = iv
                .iter()
                .map(|s| entry(Some(s.socket), (s.start, s.end), s.bytes, s.sender))
                .collect();
            let (start, end) = iv.first().map_or((0.0, 0.0), |s| (s.start, s.end));
            let sum = entry(
                None,
                (start, end),
                iv.iter().map(|s| s.bytes).sum(),
                !test.reverse,
            );
            json!({"streams": streams, "sum": sum})
        })
        .collect();
    // Per direction, as iperf3's: the client's upload under `sum_sent`
    // and `sum_received`, with --bidir the other way under `_bidir_reverse`.
    let sums = |upload: bool, sender: bool| {
        let part = report.ends.iter().filter(|e| e.local_sender == upload);
        let pick = |e: &StreamEnd| if sender { e.sent } else { e.received };
        let moved = part.clone().map(|e| pick(e).0).sum();
        let secs = part.map(|e| pick(e).1).fold(0.0, f64::max);
        entry(None, (0.0, secs), moved, sender)
    };
    let streams: Vec<Value> = report
        .ends
        .iter()
        .map(|e| {
            json!({"sender": entry(Some(e.socket), (0.0, e.sent.1), e.sent.0, true),
                   "receiver": entry(Some(e.socket), (0.0, e.received.1), e.received.0, false)})
        })
        .collect();
    let first = !test.reverse;
    let mut end = json!({"streams": streams, "sum_sent": sums(first, true), "sum_received": sums(first, false)});
    if test.bidir {
        end["sum_sent_bidir_reverse"] = sums(false, true);
        end["sum_received_bidir_reverse"] = sums(false, false);
    }
    json!({
        "start": {
            "connecting_to": {"host": format!("unix:{path}"), "port": 0},
            "version": format!("sonde {}", env!("CARGO_PKG_VERSION")),
            "test_start": {"protocol": "UNIX", "num_streams": test.streams, "blksize": test.len,
                "omit": 0, "duration": secs, "bytes": total, "blocks": 0,
                "reverse": u8::from(test.reverse), "bidir": u8::from(test.bidir)},
        },
        "intervals": intervals,
        "end": end,
    })
}

/// `perf -s -U PATH`: serves tests until SIGINT/SIGTERM (or one, `-1`);
/// the socket file goes with the server.
fn serve(
    args: &PerfArgs,
    path: &UnixPath,
    out: &Out,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<ExitCode> {
    let listener = sonde::net::unix::bind(path)?;
    // Removed when serving ends (a signal stops it), and only then: a
    // failure to bind leaves another server's file alone.
    let _socket_file = sonde::net::unix::SocketFile::of(path);
    let format = super::format(args)?;
    let tested = super::server::TestMetrics::default();
    let counters = Arc::<sonde::door::Counters>::default();
    args.metrics.start(tested.registry(&counters), args.json)?;
    emit(
        out,
        &format!(
            "-----------------------------------------------------------\nServer listening on unix:{path}\n-----------------------------------------------------------\n"
        ),
    );
    let config = UnixServerConfig {
        max_connections: args.access.max_connections(2 * unix::MAX_STREAMS as usize),
        one_off: args.one_off,
        max_duration: args.server_max_duration,
        counters,
    };
    let sink = Arc::clone(out);
    let json = args.json;
    let count = move |event: &ServerEvent| match event {
        ServerEvent::Test { received, sent, .. } => {
            // The receiver's count: in -R, the client's (checked here).
            let counted = if received.0 > 0 { *received } else { *sent };
            tested.done((received.0, sent.0), counted);
        }
        ServerEvent::Failed { .. } => tested.ended("failed"),
    };
    unix::serve(
        listener,
        config,
        move |event| {
            count(&event);
            server_event(&sink, event, format, json);
        },
        stop,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// A finished test's line (or JSON line), or a failed stream's.
fn server_event(out: &Out, event: ServerEvent, format: Format, json: bool) {
    match event {
        ServerEvent::Test {
            peer,
            streams,
            received,
            sent,
        } => {
            if json {
                let doc = json!({"peer": peer, "streams": streams,
                    "received": {"bytes": received.0, "seconds": received.1},
                    "sent": {"bytes": sent.0, "seconds": sent.1}});
                emit(out, &format!("{doc}\n"));
                return;
            }
            let mut line = format!("Accepted a test from {peer}: {streams} stream(s)");
            for (what, (n, secs)) in [("received", received), ("sent", sent)] {
                if n > 0 {
                    let rate = if secs > 0.0 {
                        n as f64 * 8.0 / secs
                    } else {
                        0.0
                    };
                    line.push_str(&format!(
                        ", {what} {} in {secs:.2} sec ({})",
                        bytes(n, format),
                        bitrate(rate, format)
                    ));
                }
            }
            emit(out, &format!("{line}\n"));
        }
        ServerEvent::Failed { peer, error } => eprintln!("sonde: perf -U: {peer}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_iperf3s_keys() {
        let test = UnixTest {
            streams: 1,
            reverse: false,
            bidir: false,
            length: Length::Time(Duration::from_secs(1)),
            len: 1024,
            interval: Duration::from_secs(1),
        };
        let iv = StreamInterval {
            id: 1,
            socket: 5,
            sender: true,
            start: 0.0,
            end: 1.0,
            bytes: 1000,
            omitted: false,
            packets: 0,
            lost: 0,
            out_of_order: 0,
            jitter_ms: 0.0,
            tcp: None,
        };
        let end = StreamEnd {
            id: 1,
            socket: 5,
            local_sender: true,
            sent: (1000, 1.0),
            received: (1000, 1.0),
            retransmits: None,
            udp: None,
            rtt: None,
        };
        let report = UnixReport {
            intervals: vec![vec![iv]],
            ends: vec![end],
            seconds: 1.0,
        };
        let doc = json_doc(&UnixPath::File("/tmp/s".into()), &test, &report);
        assert_eq!(doc["end"]["sum_received"]["bytes"], 1000);
        assert_eq!(doc["end"]["sum_sent"]["bits_per_second"], 8000.0);
        assert_eq!(doc["intervals"][0]["streams"][0]["socket"], 5);
        assert_eq!(doc["start"]["connecting_to"]["host"], "unix:/tmp/s");
    }
}
