//! sonde's own text about a perf test, beside iperf3's layout (in
//! [`super::text`]): the one-line summary and a sonde server's sender TCP
//! state per interval. Only formats; the binary prints.

use std::fmt::Write as _;

use serde_json::Value;

use crate::wire::iperf::params::Protocol;

use super::client::ClientReport;
use super::measure::{StreamEnd, rate};
use crate::units::{Format, bytes};

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
            "; {who} {} received ({:.2} s, {} sent)",
            crate::units::rate(rate(s.received.0, s.received.1)),
            s.received.1,
            crate::units::size(s.sent.0)
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
                "[{socket:3}] {start:6.2}-{end:<6.2} sec  {:4}  {}  {} us",
                s["retransmits"].as_u64().unwrap_or(0),
                bytes(s["snd_cwnd"].as_u64().unwrap_or(0), Format::Adaptive),
                s["rtt"].as_u64().unwrap_or(0)
            );
        }
    }
    Some(out)
}
