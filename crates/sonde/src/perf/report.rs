//! Text output of a perf test in iperf3's layout: interval lines,
//! the sender and receiver summary, the sending server's TCP state, and
//! sonde's one-line summary. Only formats; the binary prints.

use std::fmt::Write as _;

use serde_json::Value;

use crate::wire::iperf::params::Protocol;

use super::ConnectedStream;
use super::client::ClientReport;
use super::measure::{StreamEnd, StreamInterval, lost_percent, rate};
use crate::units::{Format, bitrate, bytes};

/// "Connecting to host …" and one line per connected stream.
pub fn connected_lines(host: &str, port: u16, streams: &[ConnectedStream]) -> String {
    let mut out = format!("Connecting to host {host}, port {port}\n");
    for s in streams {
        let addr = |a: Option<std::net::SocketAddr>| {
            a.map_or(("?".to_string(), 0), |a| (a.ip().to_string(), a.port()))
        };
        let (lh, lp) = addr(s.local);
        let (rh, rp) = addr(s.remote);
        let _ = writeln!(
            out,
            "[{:3}] local {lh} port {lp} connected to {rh} port {rp}",
            s.socket
        );
    }
    out
}

/// The column header for interval lines.
pub fn interval_header(protocol: Protocol, sender: bool) -> &'static str {
    match (protocol, sender) {
        (Protocol::Tcp, true) => "[ ID] Interval           Transfer     Bitrate         Retr  Cwnd",
        (Protocol::Tcp, false) => "[ ID] Interval           Transfer     Bitrate",
        (Protocol::Udp, true) => {
            "[ ID] Interval           Transfer     Bitrate         Total Datagrams"
        }
        (Protocol::Udp, false) => {
            "[ ID] Interval           Transfer     Bitrate         Jitter    Lost/Total Datagrams"
        }
    }
}

fn span(start: f64, end: f64) -> String {
    format!("{start:6.2}-{end:<6.2} sec")
}

/// One interval line for a stream (or a `[SUM]` when `id` is "SUM").
fn interval_line(label: &str, iv: &StreamInterval, protocol: Protocol, format: Format) -> String {
    let mut line = format!(
        "[{label:>3}] {}  {}  {}",
        span(iv.start, iv.end),
        bytes(iv.bytes, format),
        bitrate(iv.bits_per_second(), format)
    );
    match (protocol, iv.sender) {
        (Protocol::Tcp, true) => {
            if let Some((retr, state)) = iv.tcp {
                let _ = write!(
                    line,
                    "  {retr:3}   {}",
                    bytes(state.snd_cwnd, Format::Adaptive)
                );
            }
        }
        (Protocol::Udp, true) => {
            let _ = write!(line, "  {}", iv.packets);
        }
        (Protocol::Udp, false) => {
            let pct = lost_percent(iv.lost, iv.packets);
            let _ = write!(
                line,
                "  {:.3} ms  {}/{} ({:.2}%)",
                iv.jitter_ms, iv.lost, iv.packets, pct
            );
        }
        (Protocol::Tcp, false) => {}
    }
    if iv.omitted {
        line.push_str("  (omitted)");
    }
    line
}

/// The lines of one interval: one per stream, and `[SUM]` lines when
/// there are several streams in a direction.
pub fn interval_lines(interval: &[StreamInterval], protocol: Protocol, format: Format) -> String {
    let mut out = String::new();
    for iv in interval {
        let _ = writeln!(
            out,
            "{}",
            interval_line(&iv.socket.to_string(), iv, protocol, format)
        );
    }
    for sender in [true, false] {
        let part: Vec<&StreamInterval> = interval.iter().filter(|s| s.sender == sender).collect();
        if part.len() > 1 {
            let first = part[0];
            let sum = StreamInterval {
                bytes: part.iter().map(|s| s.bytes).sum(),
                packets: part.iter().map(|s| s.packets).sum(),
                lost: part.iter().map(|s| s.lost).sum(),
                tcp: None,
                ..first.clone()
            };
            let label = if interval.iter().any(|s| s.sender != sender) && !sender {
                "SUM-RX"
            } else {
                "SUM"
            };
            let _ = writeln!(out, "{}", interval_line(label, &sum, protocol, format));
        }
    }
    out
}

/// The end summary: a sender and a receiver line per stream, then sums.
pub fn summary_lines(ends: &[StreamEnd], protocol: Protocol, format: Format) -> String {
    let mut out = String::from("- - - - - - - - - - - - - - - - - - - - - - - - -\n");
    let header = match protocol {
        Protocol::Tcp => "[ ID] Interval           Transfer     Bitrate         Retr",
        Protocol::Udp => {
            "[ ID] Interval           Transfer     Bitrate         Jitter    Lost/Total Datagrams"
        }
    };
    let _ = writeln!(out, "{header}");
    let mut line = |label: &str, (b, secs): (u64, f64), extra: String, role: &str| {
        let _ = writeln!(
            out,
            "[{label:>3}] {}  {}  {}{extra}  {role}",
            span(0.0, secs),
            bytes(b, format),
            bitrate(rate(b, secs), format)
        );
    };
    for e in ends {
        let label = e.socket.to_string();
        match (protocol, e.udp) {
            (Protocol::Udp, Some((jitter, lost, packets, _))) => {
                let pct = lost_percent(lost.max(0) as u64, packets.max(0) as u64);
                let extra = format!("  {jitter:.3} ms  {lost}/{packets} ({pct:.2}%)");
                line(
                    &label,
                    e.sent,
                    format!("  {:.3} ms  0/{packets} (0%)", 0.0),
                    "sender",
                );
                line(&label, e.received, extra, "receiver");
            }
            _ => {
                let retr = e
                    .retransmits
                    .map_or(String::from("     "), |r| format!("  {r:3}"));
                line(&label, e.sent, retr, "sender");
                line(&label, e.received, String::new(), "receiver");
            }
        }
    }
    for (sum, label) in sums(ends) {
        let retr = sum
            .retransmits
            .map_or(String::new(), |r| format!("  {r:3}"));
        line(label, sum.sent, retr, "sender");
        line(label, sum.received, String::new(), "receiver");
    }
    out
}

/// Sums per direction when there are several streams in it.
fn sums(ends: &[StreamEnd]) -> Vec<(StreamEnd, &'static str)> {
    let mut out = Vec::new();
    let bidir = ends.iter().any(|e| e.local_sender) && ends.iter().any(|e| !e.local_sender);
    for dir in [true, false] {
        let part: Vec<&StreamEnd> = ends.iter().filter(|e| e.local_sender == dir).collect();
        if part.len() > 1 {
            out.push((sum(&part), if bidir && !dir { "SUM-RX" } else { "SUM" }));
        }
    }
    out
}

/// The ends of one direction: this side sending (`true`) or receiving.
pub(crate) fn direction(ends: &[StreamEnd], sending: bool) -> Vec<&StreamEnd> {
    ends.iter().filter(|e| e.local_sender == sending).collect()
}

pub(crate) fn sum(part: &[&StreamEnd]) -> StreamEnd {
    let max = |f: fn(&StreamEnd) -> f64| part.iter().map(|e| f(e)).fold(0.0, f64::max);
    StreamEnd {
        sent: (part.iter().map(|e| e.sent.0).sum(), max(|e| e.sent.1)),
        received: (
            part.iter().map(|e| e.received.0).sum(),
            max(|e| e.received.1),
        ),
        retransmits: part.iter().map(|e| e.retransmits).sum(),
        local_sender: part.first().is_some_and(|e| e.local_sender),
        ..StreamEnd::default()
    }
}

/// The final plain line: what was measured, in one sentence.
pub fn summary_line(report: &ClientReport) -> String {
    let p = &report.params;
    let proto = match p.protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    };
    let mode = if p.bidirectional {
        " bidir"
    } else if p.reverse {
        " reverse"
    } else {
        ""
    };
    let mut text = format!(
        "sonde perf: {proto}{mode} {} stream(s) to {}",
        p.parallel, report.server
    );
    for dir in [true, false] {
        let part = direction(&report.ends, dir);
        if part.is_empty() {
            continue;
        }
        let s = sum(&part);
        let who = if dir { "upload" } else { "download" };
        let _ = write!(
            text,
            "; {who} {:.2} Gbit/s received ({:.2} s, {} sent)",
            rate(s.received.0, s.received.1) / 1e9,
            s.received.1,
            bytes(s.sent.0, Format::Adaptive)
        );
        if let Some(r) = s.retransmits {
            let _ = write!(text, ", {r} retransmits");
        }
        let (lost, packets) = part
            .iter()
            .filter_map(|e| e.udp)
            .fold((0, 0), |(l, n), u| (l + u.1, n + u.2));
        if packets > 0 {
            let _ = write!(text, ", {lost}/{packets} lost");
        }
    }
    if let Some(n) = remote_concurrency(report) {
        let _ = write!(text, "; {n} test(s) ran at once on the server");
    }
    text
}

/// The server's per-interval TCP state of its sending streams, when the
/// server is sonde (reverse and bidirectional tests).
pub(crate) fn remote_tcp(report: &ClientReport) -> Option<&Vec<Value>> {
    report
        .remote
        .as_ref()?
        .sonde
        .as_ref()?
        .get("tcp_intervals")?
        .as_array()
}

/// How many tests ran at once on a sonde server during this one.
pub fn remote_concurrency(report: &ClientReport) -> Option<u64> {
    report
        .remote
        .as_ref()?
        .sonde
        .as_ref()?
        .get("concurrent_tests")?
        .as_u64()
}

/// Lines showing the sending server's TCP state per interval (what iperf3
/// shows only on the server), or `None` when the server did not send it.
pub fn remote_tcp_lines(report: &ClientReport) -> Option<String> {
    let rows = remote_tcp(report)?;
    if rows.iter().all(|r| r.as_array().is_none_or(Vec::is_empty)) {
        return None;
    }
    let mut out = String::from(
        "Sender TCP state on the server, per interval:\n[ ID] Interval           Retr  Cwnd         RTT\n",
    );
    for (row, local) in rows.iter().zip(&report.intervals) {
        let (start, end) = local.first().map_or((0.0, 0.0), |s| (s.start, s.end));
        for s in row.as_array().into_iter().flatten() {
            let id = s["id"].as_u64().unwrap_or(0);
            let socket = report
                .connected
                .iter()
                .find(|c| u64::from(c.id) == id)
                .map_or(0, |c| c.socket);
            let _ = writeln!(
                out,
                "[{socket:3}] {}  {:4}  {}  {} us",
                span(start, end),
                s["retransmits"].as_u64().unwrap_or(0),
                bytes(s["snd_cwnd"].as_u64().unwrap_or(0), Format::Adaptive),
                s["rtt"].as_u64().unwrap_or(0)
            );
        }
    }
    Some(out)
}

/// What an iperf3 server prints for a test (its intervals and summary,
/// from the server's side), for `--get-server-output` in text mode.
pub fn server_output_text(
    peer: std::net::SocketAddr,
    concurrent: usize,
    intervals: &[Vec<StreamInterval>],
    ends: &[StreamEnd],
    protocol: Protocol,
) -> String {
    let streams = ends.len();
    let mut text = format!(
        "Accepted connection from {peer}; {streams} stream(s), {concurrent} test(s) at once\n"
    );
    for interval in intervals {
        text.push_str(&interval_lines(interval, protocol, Format::Adaptive));
    }
    text.push_str(&summary_lines(ends, protocol, Format::Adaptive));
    text
}
