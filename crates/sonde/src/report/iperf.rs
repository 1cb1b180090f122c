//! Charts of an iperf3 `-J` document (iperf3's own, 3.12 and newer, or
//! sonde's, which is the same): throughput per stream and in total, per
//! direction with `--bidir`; retransmits, cwnd and RTT per interval where
//! the sender reported them; UDP loss, out-of-order packets and jitter
//! where a receiver did; and the end's summary. Keys that are missing
//! leave out what they would draw; nothing here panics on a document.

use serde_json::Value;

use super::Run;
use super::page::{Axis, Chart, Page, Series, Table, jain};

/// `--json-stream` lines (`{"event": ..., "data": ...}`) as one `-J`
/// document; `None` when the text is not such lines.
pub(super) fn from_stream(text: &str) -> Option<Value> {
    let mut doc = serde_json::json!({"intervals": []});
    let mut any = false;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let event: Value = serde_json::from_str(line).ok()?;
        let data = event.get("data").cloned().unwrap_or(Value::Null);
        match event.get("event").and_then(Value::as_str)? {
            "start" => doc["start"] = data,
            "interval" => {
                if let Some(list) = doc["intervals"].as_array_mut() {
                    list.push(data);
                }
            }
            "end" => doc["end"] = data,
            "error" => doc["error"] = data,
            _ => {}
        }
        any = true;
    }
    any.then_some(doc)
}

/// Whether `doc` looks like an iperf3 `-J` document.
pub(super) fn is_iperf(doc: &Value) -> bool {
    doc.get("start").is_some() && (doc.get("intervals").is_some() || doc.get("end").is_some())
}

fn f(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut at = v;
    for key in path {
        at = &at[*key];
    }
    at.as_str().unwrap_or("")
}

/// The facts of one run: hosts, date, version.
pub(super) fn facts(page: &mut Page, doc: &Value) {
    let start = &doc["start"];
    let conn = &start["connected"][0];
    let side = |host: &str, port: &Value| match port.as_u64() {
        Some(p) if !host.is_empty() => format!("{host} port {p}"),
        _ => host.to_string(),
    };
    let facts = &mut page.facts;
    // The test's own addresses, over the name of the machine drawing it.
    let local = side(s(conn, &["local_host"]), &conn["local_port"]);
    if !local.is_empty() {
        facts.local = local;
        facts.remote = side(s(conn, &["remote_host"]), &conn["remote_port"]);
    }
    // The test's own date, over the day it was drawn.
    let date = s(start, &["timestamp", "time"]);
    if !date.is_empty() {
        facts.date = date.to_string();
    }
    let version = s(start, &["version"]);
    // The tool that made the result, over the one drawing it.
    if !version.is_empty() {
        facts.version = format!("{version} ({})", s(start, &["system_info"]));
    }
    let peer = s(doc, &["server_output_json", "start", "version"]);
    if facts.peer_version.is_empty() && !peer.is_empty() {
        facts.peer_version = peer.to_string();
    }
}

/// One stream's key in the charts: its socket, and whether this end sent.
fn stream_label(st: &Value, bidir: bool) -> String {
    let id = st.get("socket").and_then(Value::as_i64).unwrap_or(0);
    match (bidir, st.get("sender").and_then(Value::as_bool)) {
        (true, Some(true)) => format!("stream {id} (sent)"),
        (true, Some(false)) => format!("stream {id} (received)"),
        _ => format!("stream {id}"),
    }
}

/// Per-interval figures of each stream, by label, in order.
struct Lines {
    order: Vec<String>,
    points: std::collections::HashMap<String, Vec<(f64, f64)>>,
}

impl Lines {
    fn new() -> Self {
        Self {
            order: Vec::new(),
            points: Default::default(),
        }
    }

    fn push(&mut self, label: String, point: (f64, f64)) {
        if !self.points.contains_key(&label) {
            self.order.push(label.clone());
        }
        self.points.entry(label).or_default().push(point);
    }

    fn series(self, prefix: &str) -> Vec<Series> {
        let Lines { order, mut points } = self;
        order
            .into_iter()
            .filter_map(|l| {
                let p = points.remove(&l)?;
                Some(Series::line(format!("{prefix}{l}"), p))
            })
            .collect()
    }
}

/// The charts of every run, overlaid on shared axes by test time. One run
/// draws each stream and the total; several draw each run's total.
pub(super) fn charts(page: &mut Page, runs: &[Run<'_>]) {
    let time = || Axis::linear("time", "s");
    let mut rate = Chart::new(
        "throughput",
        "Throughput",
        time(),
        Axis::linear("throughput", "Mbit/s"),
    );
    let mut retr = Chart::new(
        "retransmits",
        "Retransmits per interval",
        time(),
        Axis::linear("retransmits", "segments"),
    );
    let mut cwnd = Chart::new(
        "cwnd",
        "Congestion window (sender)",
        time(),
        Axis::linear("cwnd", "KiB"),
    );
    let mut rtt = Chart::new(
        "rtt",
        "Round-trip time (sender's TCP_INFO)",
        time(),
        Axis::linear("RTT", "ms"),
    );
    let mut lost = Chart::new(
        "loss",
        "UDP loss per interval",
        time(),
        Axis::linear("lost", "%"),
    );
    let mut jitter = Chart::new("jitter", "UDP jitter", time(), Axis::linear("jitter", "ms"));
    let mut ooo = Chart::new(
        "ooo",
        "UDP out-of-order packets per interval",
        time(),
        Axis::linear("out of order", "packets"),
    );
    let many = runs.len() > 1;
    for run in runs {
        let doc = run.doc;
        let prefix = if many {
            format!("{}: ", run.label)
        } else {
            String::new()
        };
        // iperf3 3.12 does not say bidir in test_start; its sums do.
        let bidir = doc["start"]["test_start"]["bidir"].as_i64().unwrap_or(0) != 0
            || doc["intervals"][0].get("sum_bidir_reverse").is_some()
            || doc["end"].get("sum_sent_bidir_reverse").is_some();
        let mut per = [Lines::new(), Lines::new(), Lines::new(), Lines::new()];
        let mut totals = Lines::new();
        let mut udp = [Lines::new(), Lines::new(), Lines::new()];
        // A forward UDP test's loss is seen by the server: its intervals.
        let mut sources = vec![&doc["intervals"]];
        if let Some(server) = doc["server_output_json"].get("intervals") {
            sources.push(server);
        }
        for (which, intervals) in sources.into_iter().enumerate() {
            for iv in intervals.as_array().into_iter().flatten() {
                if which == 0 {
                    interval(iv, bidir, &mut per, &mut totals);
                } else {
                    // The server's side (`--get-server-output` from a
                    // server run with -J): what it sent, with -R.
                    sender_figures(iv, "server ", bidir, &mut per);
                }
                udp_interval(iv, &mut udp);
            }
        }
        let [r, re, cw, rt] = per;
        if !many {
            rate.series.extend(r.series(""));
        }
        rate.series.extend(totals.series(&prefix));
        retr.series.extend(re.series(&prefix));
        cwnd.series.extend(cw.series(&prefix));
        rtt.series.extend(rt.series(&prefix));
        let [lo, ji, oo] = udp;
        lost.series.extend(lo.series(&prefix));
        jitter.series.extend(ji.series(&prefix));
        ooo.series.extend(oo.series(&prefix));
    }
    for chart in [rate, retr, cwnd, rtt, lost, jitter, ooo] {
        page.chart(chart);
    }
}

fn interval(iv: &Value, bidir: bool, per: &mut [Lines; 4], totals: &mut Lines) {
    for st in iv["streams"].as_array().into_iter().flatten() {
        if st["omitted"].as_bool() == Some(true) {
            continue;
        }
        let (Some(t), label) = (f(st, "end"), stream_label(st, bidir)) else {
            continue;
        };
        if let Some(bps) = f(st, "bits_per_second") {
            per[0].push(label.clone(), (t, bps / 1e6));
        }
    }
    sender_figures(iv, "", bidir, per);
    for (key, name) in [("sum", "total"), ("sum_bidir_reverse", "total (reverse)")] {
        let sum = &iv[key];
        if let (Some(t), Some(bps)) = (f(sum, "end"), f(sum, "bits_per_second")) {
            let name = match (bidir, key, sum["sender"].as_bool()) {
                (true, _, Some(true)) => "total (sent)",
                (true, _, Some(false)) => "total (received)",
                _ => name,
            };
            totals.push(name.to_string(), (t, bps / 1e6));
        }
    }
}

/// What a sending stream's TCP_INFO said: retransmits, cwnd, RTT.
fn sender_figures(iv: &Value, who: &str, bidir: bool, per: &mut [Lines; 4]) {
    for st in iv["streams"].as_array().into_iter().flatten() {
        if st["omitted"].as_bool() == Some(true) || st["sender"].as_bool() == Some(false) {
            continue;
        }
        let (Some(t), label) = (f(st, "end"), format!("{who}{}", stream_label(st, bidir))) else {
            continue;
        };
        if let Some(n) = f(st, "retransmits") {
            per[1].push(label.clone(), (t, n));
        }
        if let Some(c) = f(st, "snd_cwnd") {
            per[2].push(label.clone(), (t, c / 1024.0));
        }
        if let Some(us) = f(st, "rtt") {
            per[3].push(label, (t, us / 1000.0));
        }
    }
}

fn udp_interval(iv: &Value, udp: &mut [Lines; 3]) {
    for st in iv["streams"].as_array().into_iter().flatten() {
        let Some(t) = f(st, "end") else { continue };
        let label = stream_label(st, false);
        // Receivers report loss; a UDP sender's interval has only packets.
        if let Some(pct) = f(st, "lost_percent") {
            udp[0].push(label.clone(), (t, pct));
        }
        if let Some(ms) = f(st, "jitter_ms") {
            udp[1].push(label.clone(), (t, ms));
        }
        if let Some(n) = f(st, "out_of_order") {
            udp[2].push(label, (t, n));
        }
    }
}

fn mbits(v: &Value) -> String {
    f(v, "bits_per_second").map_or_else(|| "".into(), |b| format!("{:.1}", b / 1e6))
}

fn mbytes(v: &Value) -> String {
    f(v, "bytes").map_or_else(|| "".into(), |b| format!("{:.2}", b / 1e6))
}

/// The summary as the text output has it: each stream's sender and
/// receiver, and the sums; then the fairness across streams and runs.
pub(super) fn tables(page: &mut Page, runs: &[Run<'_>]) {
    let mut summary = Table::new(
        "Summary",
        &[
            "run",
            "stream",
            "side",
            "seconds",
            "MB",
            "Mbit/s",
            "retransmits",
            "jitter ms",
            "lost / total",
        ],
    );
    let mut fairness = Table::new(
        "Fairness (Jain's index: 1 is equal shares)",
        &["over", "of", "index"],
    );
    let mut totals = Vec::new();
    for run in runs {
        let end = &run.doc["end"];
        let mut shares = Vec::new();
        for st in end["streams"].as_array().into_iter().flatten() {
            for side in ["sender", "receiver", "udp"] {
                let v = &st[side];
                if v.is_null() {
                    continue;
                }
                let id = v["socket"].as_i64().unwrap_or(0).to_string();
                if side != "sender" {
                    shares.extend(f(v, "bits_per_second"));
                }
                summary.rows.push(row(run.label, &id, side, v));
            }
        }
        for (key, side) in [
            ("sum_sent", "sender"),
            ("sum_received", "receiver"),
            ("sum", "total"),
            ("sum_sent_bidir_reverse", "sender (reverse)"),
            ("sum_received_bidir_reverse", "receiver (reverse)"),
        ] {
            let v = &end[key];
            if !v.is_null() {
                summary.rows.push(row(run.label, "sum", side, v));
            }
        }
        if let Some(j) = jain(&shares) {
            fairness.rows.push(vec![
                "streams".into(),
                run.label.to_string(),
                format!("{j:.3}"),
            ]);
        }
        totals.extend(
            f(&end["sum_received"], "bits_per_second").or(f(&end["sum"], "bits_per_second")),
        );
    }
    if runs.len() > 1
        && let Some(j) = jain(&totals)
    {
        fairness.rows.push(vec![
            "runs".into(),
            format!("{} runs", runs.len()),
            format!("{j:.3}"),
        ]);
    }
    page.table(summary);
    page.table(fairness);
}

fn row(run: &str, id: &str, side: &str, v: &Value) -> Vec<String> {
    let lost = match (f(v, "lost_packets"), f(v, "packets")) {
        (Some(l), Some(p)) => format!("{l} / {p}"),
        _ => String::new(),
    };
    vec![
        run.to_string(),
        id.to_string(),
        side.to_string(),
        f(v, "seconds").map_or_else(String::new, |s| format!("{s:.2}")),
        mbytes(v),
        mbits(v),
        f(v, "retransmits").map_or_else(String::new, |r| r.to_string()),
        f(v, "jitter_ms").map_or_else(String::new, |j| format!("{j:.3}")),
        lost,
    ]
}
