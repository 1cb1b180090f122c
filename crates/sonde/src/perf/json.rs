//! `-J`'s JSON document in iperf3 3.12's schema, key for key (start,
//! intervals, end, in that order), and `--json-stream`'s events. Who
//! writes the document matters as it does to iperf3: a client joins its
//! figures with the server's, a server shows its own side only (the half
//! it did not measure is 0), and each side's TCP details appear on the
//! streams it sends. sonde's own additions stay under `end.sonde`.

use serde_json::{Map, Value, json};

use crate::wire::iperf::params::Protocol;
use crate::wire::iperf::results::Results;

use super::client::ClientReport;
use super::diskfile::DiskFile;
use super::measure::{SenderTcp, StreamEnd, StreamInterval, lost_percent, rate};
use super::report::sum;

/// Who writes a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The client: both sides' figures, joined.
    Client,
    /// The server: its own figures only.
    Server,
}

fn sum_json(bytes: u64, secs: f64, sender: bool) -> Value {
    json!({"start": 0, "end": secs, "seconds": secs, "bytes": bytes,
           "bits_per_second": rate(bytes, secs), "sender": sender})
}

/// An interval of one stream, or (`stream` false) of a sum, in iperf3's
/// key order.
fn interval_json(iv: &StreamInterval, protocol: Protocol, stream: bool) -> Value {
    let mut v = Map::new();
    if stream {
        v.insert("socket".into(), json!(iv.socket));
    }
    for (k, x) in [
        ("start", json!(iv.start)),
        ("end", json!(iv.end)),
        ("seconds", json!(iv.end - iv.start)),
        ("bytes", json!(iv.bytes)),
        ("bits_per_second", json!(iv.bits_per_second())),
    ] {
        v.insert(k.into(), x);
    }
    if let (Some((retr, st)), true) = (iv.tcp, stream) {
        for (k, x) in [
            ("retransmits", retr),
            ("snd_cwnd", st.snd_cwnd),
            ("snd_wnd", st.snd_wnd),
            ("rtt", st.rtt),
            ("rttvar", st.rttvar),
            ("pmtu", st.pmtu),
        ] {
            v.insert(k.into(), json!(x));
        }
    }
    if protocol == Protocol::Udp {
        if iv.sender {
            v.insert("packets".into(), json!(iv.packets));
        } else {
            v.insert("jitter_ms".into(), json!(iv.jitter_ms));
            v.insert("lost_packets".into(), json!(iv.lost));
            v.insert("packets".into(), json!(iv.packets));
            v.insert(
                "lost_percent".into(),
                json!(lost_percent(iv.lost, iv.packets)),
            );
        }
    }
    v.insert("omitted".into(), json!(iv.omitted));
    v.insert("sender".into(), json!(iv.sender));
    Value::Object(v)
}

/// Where and when a document is written: inputs to the formatter, so
/// that it reads no clock and no system itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The program and version, as `version` shows it ("sonde 0.1.0").
    pub version: String,
    /// `uname`'s fields, as iperf3's `system_info`.
    pub system_info: String,
    /// Time since the Unix epoch.
    pub timestamp: std::time::Duration,
}

impl Host {
    /// This host now.
    pub fn now(version: &str) -> Self {
        let u = rustix::system::uname();
        Self {
            version: format!("sonde {version}"),
            // uname -a's fields, as iperf3 writes them.
            system_info: format!(
                "{} {} {} {} {}",
                u.sysname().to_string_lossy(),
                u.nodename().to_string_lossy(),
                u.release().to_string_lossy(),
                u.version().to_string_lossy(),
                u.machine().to_string_lossy()
            ),
            timestamp: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }
}

/// `-J`'s `start` object; `target` is the host the client connected to.
pub fn json_start(report: &ClientReport, target: &str, host: &Host) -> Value {
    let p = &report.params;
    let connected: Vec<Value> = report
        .connected
        .iter()
        .map(|s| {
            json!({"socket": s.socket,
                "local_host": s.local.map(|a| a.ip().to_string()), "local_port": s.local.map(|a| a.port()),
                "remote_host": s.remote.map(|a| a.ip().to_string()), "remote_port": s.remote.map(|a| a.port())})
        })
        .collect();
    let now = host.timestamp;
    let (sndbuf, rcvbuf) = report.buffers.unwrap_or((0, 0));
    let mut start = Map::new();
    for (k, v) in [
        ("connected", json!(connected)),
        ("version", json!(host.version)),
        ("system_info", json!(host.system_info)),
        ("sock_bufsize", json!(p.window)),
        ("sndbuf_actual", json!(sndbuf)),
        ("rcvbuf_actual", json!(rcvbuf)),
        (
            "timestamp",
            json!({"time": http_date(now.as_secs()), "timesecs": now.as_secs(),
                   "timemillisecs": now.as_millis() as u64}),
        ),
        (
            "connecting_to",
            json!({"host": target, "port": report.server.port()}),
        ),
        ("cookie", json!(report.cookie)),
    ] {
        start.insert(k.into(), v);
    }
    if p.protocol == Protocol::Tcp {
        match p.mss {
            0 => start.insert("tcp_mss_default".into(), json!(report.mss.unwrap_or(0))),
            mss => start.insert("tcp_mss".into(), json!(mss)),
        };
    }
    start.insert("target_bitrate".into(), json!(p.bandwidth));
    start.insert(
        "test_start".into(),
        json!({
            "protocol": if p.protocol == Protocol::Udp { "UDP" } else { "TCP" },
            "num_streams": p.parallel, "blksize": p.len, "omit": p.omit, "duration": p.time,
            "bytes": p.num, "blocks": p.blockcount, "reverse": u8::from(p.reverse), "tos": p.tos,
            "target_bitrate": p.bandwidth, "bidir": u8::from(p.bidirectional), "interval": 1
        }),
    );
    Value::Object(start)
}

/// A Unix time as an RFC 1123 date in GMT ("Tue, 01 Dec 2026 21:43:12
/// GMT"), as iperf3's `start.timestamp.time`.
pub fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // The civil date of a day count since 1970-01-01 (the days-from-civil
    // algorithm run backwards: eras of 400 years, years from March).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1).clamp(0, 11) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// One `intervals[]` element as `role` writes it. `sum` holds the streams
/// that go from the client to the server; with `--bidir`,
/// `sum_bidir_reverse` the others.
pub fn json_interval(interval: &[StreamInterval], protocol: Protocol, role: Role) -> Value {
    let streams: Vec<Value> = interval
        .iter()
        .map(|iv| interval_json(iv, protocol, true))
        .collect();
    let mut v = json!({"streams": streams});
    let upload = role == Role::Client;
    let bidir = interval.iter().any(|s| s.sender) && interval.iter().any(|s| !s.sender);
    for (key, local_sends) in [("sum", upload), ("sum_bidir_reverse", !upload)] {
        let part: Vec<&StreamInterval> = interval
            .iter()
            .filter(|s| !bidir || s.sender == local_sends)
            .collect();
        let Some(first) = part.first() else { continue };
        let mut sum = StreamInterval {
            bytes: part.iter().map(|s| s.bytes).sum(),
            tcp: None,
            ..(*first).clone()
        };
        sum.packets = part.iter().map(|s| s.packets).sum();
        sum.lost = part.iter().map(|s| s.lost).sum();
        let mut sv = interval_json(&sum, protocol, false);
        if protocol == Protocol::Tcp && first.sender {
            let retransmits: u64 = part.iter().filter_map(|s| s.tcp.map(|t| t.0)).sum();
            sv = with_after(sv, "bits_per_second", "retransmits", json!(retransmits));
        }
        v[if bidir { key } else { "sum" }] = sv;
        if !bidir {
            break;
        }
    }
    v
}

/// `object` with `value` at `key`, placed right after `after`.
fn with_after(object: Value, after: &str, key: &str, value: Value) -> Value {
    let Value::Object(map) = object else {
        return object;
    };
    let mut out = Map::new();
    for (k, v) in map {
        let here = k == after;
        out.insert(k, v);
        if here {
            out.insert(key.into(), value.clone());
        }
    }
    Value::Object(out)
}

/// `object` with `value` first, at `key`.
fn with_first(object: Value, key: &str, value: Value) -> Value {
    let Value::Object(map) = object else {
        return object;
    };
    let mut out = Map::new();
    out.insert(key.into(), value);
    out.extend(map);
    Value::Object(out)
}

/// The whole `-J` document, as `role` writes it; `target` is the host the
/// client connected to.
pub fn json_document(report: &ClientReport, target: &str, host: &Host, role: Role) -> Value {
    let protocol = report.params.protocol;
    let intervals: Vec<Value> = report
        .intervals
        .iter()
        .map(|i| json_interval(i, protocol, role))
        .collect();
    let ends: Vec<StreamEnd> = match role {
        Role::Client => report.ends.clone(),
        Role::Server => report.ends.iter().map(own_side).collect(),
    };
    let mut end = json!({"streams": end_streams(&ends, report.diskfile.as_ref())});
    end_sums(report, &ends, role, &mut end);
    let remote = report.remote.clone().unwrap_or_default();
    end["cpu_utilization_percent"] = json!({
        "host_total": report.local_cpu.total, "host_user": report.local_cpu.user, "host_system": report.local_cpu.system,
        "remote_total": remote.cpu_util_total, "remote_user": remote.cpu_util_user, "remote_system": remote.cpu_util_system,
    });
    if protocol == Protocol::Tcp {
        congestion(report, &remote, role, &mut end);
    }
    if let Some(value) = remote.sonde.clone() {
        end["sonde"] = value;
    }
    let mut doc =
        json!({"start": json_start(report, target, host), "intervals": intervals, "end": end});
    if let Some(title) = &report.params.title {
        doc["title"] = json!(title);
    }
    if let Some(extra) = &report.params.extra_data {
        doc["extra_data"] = json!(extra);
    }
    if let Some(text) = remote.server_output_text {
        doc["server_output_text"] = json!(text);
    }
    if let Some(value) = remote.server_output_json {
        doc["server_output_json"] = value;
    }
    iperf_numbers(&mut doc);
    doc
}

/// The document of a test that failed before it ran, as iperf3 writes
/// it: an empty test with the error.
pub fn json_error(host: &Host, error: &str) -> Value {
    json!({
        "start": {"connected": [], "version": host.version, "system_info": host.system_info},
        "intervals": [],
        "end": {},
        "error": error,
    })
}

/// The client's `-J` document.
pub fn json_report(report: &ClientReport, target: &str, host: &Host) -> Value {
    json_document(report, target, host, Role::Client)
}

/// A stream's end seen from its own side only, as a server shows it: the
/// half it did not measure is 0 bytes, and only a stream it sent carries
/// TCP details.
fn own_side(e: &StreamEnd) -> StreamEnd {
    let mut own = e.clone();
    if e.local_sender {
        own.received = (0, e.sent.1);
        if let Some(udp) = own.udp.as_mut() {
            (udp.0, udp.1) = (0.0, 0);
        }
    } else {
        own.sent = (0, e.received.1);
        own.retransmits = None;
        own.rtt = None;
    }
    own
}

/// `end.streams`: each stream's sender and receiver (TCP), or its UDP
/// figures. A stream whose sender counts retransmits shows the sender's
/// window and RTTs too (zero where this side did not sample them).
fn end_streams(ends: &[StreamEnd], diskfile: Option<&DiskFile>) -> Vec<Value> {
    let mut streams = Vec::new();
    for e in ends {
        // -F: the file's figures, after the sender's (or the UDP) figures.
        let file = diskfile.map(|f| {
            json!({"sent": e.sent.0, "received": e.received.0, "size": f.size,
                "percent_sent": f.percent(e.sent.0), "percent_received": f.percent(e.received.0),
                "filename": f.name})
        });
        if let Some((jitter, lost, packets, ooo)) = e.udp {
            let secs = if e.local_sender {
                e.sent.1
            } else {
                e.received.1
            };
            let mut u = with_first(
                sum_json(e.sent.0, secs, e.local_sender),
                "socket",
                json!(e.socket),
            );
            u = set_loss(u, jitter, lost, packets);
            u = with_after(u, "lost_percent", "out_of_order", json!(ooo));
            let mut stream = json!({"udp": u});
            if let Some(file) = file {
                stream["diskfile"] = file;
            }
            streams.push(stream);
            continue;
        }
        let mut snd = with_first(
            sum_json(e.sent.0, e.sent.1, e.local_sender),
            "socket",
            json!(e.socket),
        );
        let rcv = with_first(
            sum_json(e.received.0, e.received.1, e.local_sender),
            "socket",
            json!(e.socket),
        );
        if let Some(r) = e.retransmits {
            snd = sender_details(snd, r, e.rtt.unwrap_or_default());
        }
        let mut stream = json!({"sender": snd});
        if let Some(file) = file {
            stream["diskfile"] = file;
        }
        stream["receiver"] = rcv;
        streams.push(stream);
    }
    streams
}

/// A sending stream's retransmits, windows and RTTs, before `sender`.
fn sender_details(snd: Value, retransmits: i64, tcp: SenderTcp) -> Value {
    let mut v = with_after(snd, "bits_per_second", "retransmits", json!(retransmits));
    for (after, key, x) in [
        ("retransmits", "max_snd_cwnd", tcp.max_snd_cwnd),
        ("max_snd_cwnd", "max_snd_wnd", tcp.max_snd_wnd),
        ("max_snd_wnd", "max_rtt", tcp.max_rtt),
        ("max_rtt", "min_rtt", tcp.min_rtt),
        ("min_rtt", "mean_rtt", tcp.mean_rtt),
    ] {
        v = with_after(v, after, key, json!(x));
    }
    v
}

/// Jitter and loss, as iperf3 writes them, before `sender`.
fn set_loss(v: Value, jitter: f64, lost: i64, packets: i64) -> Value {
    let percent = lost_percent(lost.max(0) as u64, packets.max(0) as u64);
    let mut v = with_after(v, "bits_per_second", "jitter_ms", json!(jitter));
    v = with_after(v, "jitter_ms", "lost_packets", json!(lost));
    v = with_after(v, "lost_packets", "packets", json!(packets));
    with_after(v, "packets", "lost_percent", json!(percent))
}

/// `end.sum_sent`, `end.sum_received` (and `end.sum` for UDP), per
/// direction: the client's upload first, and with `--bidir` the other
/// under `_bidir_reverse`.
fn end_sums(report: &ClientReport, ends: &[StreamEnd], role: Role, end: &mut Value) {
    let bidir = report.params.bidirectional;
    let upload = role == Role::Client;
    for (local_sends, suffix) in [(upload, ""), (!upload, "_bidir_reverse")] {
        let part: Vec<&StreamEnd> = ends
            .iter()
            .filter(|e| !bidir || e.local_sender == local_sends)
            .collect();
        let Some(first) = part.first() else { continue };
        let s = sum(&part);
        let dir = first.local_sender;
        let mut sent = sum_json(s.sent.0, s.sent.1, dir);
        if let Some(r) = s.retransmits {
            sent = with_after(sent, "bits_per_second", "retransmits", json!(r));
        }
        let mut received = sum_json(s.received.0, s.received.1, dir);
        if report.params.protocol == Protocol::Udp {
            let (lost, packets) = part
                .iter()
                .filter_map(|e| e.udp)
                .fold((0, 0), |(l, n), u| (l + u.1, n + u.2));
            let jitter =
                part.iter().filter_map(|e| e.udp.map(|u| u.0)).sum::<f64>() / part.len() as f64;
            let secs = if dir { s.received.1 } else { s.sent.1 };
            end[format!("sum{suffix}")] =
                set_loss(sum_json(s.sent.0, secs, dir), jitter, lost, packets);
            // A server counts only its own side: no sent packets when it
            // receives, no receive figures when it sends.
            let sent_packets = if role == Role::Server && !dir {
                0
            } else {
                packets
            };
            sent = set_loss(sum_json(s.sent.0, s.sent.1, true), 0.0, 0, sent_packets);
            let got = if role == Role::Server && dir {
                (0.0, 0, 0)
            } else {
                (jitter, lost, packets)
            };
            received = set_loss(
                sum_json(s.received.0, s.received.1, false),
                got.0,
                got.1,
                got.2,
            );
        }
        end[format!("sum_sent{suffix}")] = sent;
        end[format!("sum_received{suffix}")] = received;
        if !bidir {
            break;
        }
    }
}

/// Which congestion control each end used: a client knows both; a
/// server writes only its own, under its role.
fn congestion(report: &ClientReport, remote: &Results, role: Role, end: &mut Value) {
    let local = report.congestion.clone();
    let sends = report.ends.iter().any(|e| e.local_sender);
    let (sender, receiver) = match role {
        Role::Client if report.params.reverse => (remote.congestion_used.clone(), local),
        Role::Client => (local, remote.congestion_used.clone()),
        Role::Server if sends => (local, None),
        Role::Server => (None, local),
    };
    if let Some(cc) = sender {
        end["sender_tcp_congestion"] = json!(cc);
    }
    if let Some(cc) = receiver {
        end["receiver_tcp_congestion"] = json!(cc);
    }
}

/// Writes whole numbers as integers, as iperf3's JSON library does: a
/// reader that asks whether `start` is an integer gets iperf3's answer.
pub fn iperf_numbers(value: &mut Value) {
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && f.abs() < 1e15
            {
                *value = json!(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(iperf_numbers),
        Value::Object(map) => map.values_mut().for_each(iperf_numbers),
        _ => {}
    }
}

/// A server's `-J` document for one test: its own figures in the client's
/// layout, with the client's address as `accepted_connection` in place of
/// `connecting_to` (`report.local` is the client, `report.server` this
/// server).
pub fn json_server_report(report: &ClientReport, host: &Host) -> Value {
    let mut doc = json_document(report, &report.server.ip().to_string(), host, Role::Server);
    if let Some(Value::Object(start)) = doc.get_mut("start") {
        let mut out = Map::new();
        for (k, v) in std::mem::take(start) {
            if k == "connecting_to" {
                let client =
                    json!({"host": report.local.ip().to_string(), "port": report.local.port()});
                out.insert("accepted_connection".into(), client);
            } else {
                out.insert(k, v);
            }
        }
        *start = out;
    }
    doc
}

/// The TCP state of this side's sending streams, per interval, for a sonde
/// client in reverse mode (iperf3 shows it only on the sender).
pub(crate) fn sonde_tcp_intervals(intervals: &[Vec<StreamInterval>]) -> Value {
    let rows: Vec<Value> = intervals
        .iter()
        .map(|iv| {
            let streams: Vec<Value> = iv
                .iter()
                .filter_map(|s| {
                    s.tcp.map(|(retransmits, st)| {
                        json!({"id": s.id, "retransmits": retransmits, "snd_cwnd": st.snd_cwnd,
                               "rtt": st.rtt, "rttvar": st.rttvar, "pmtu": st.pmtu})
                    })
                })
                .collect();
            json!(streams)
        })
        .collect();
    json!(rows)
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
