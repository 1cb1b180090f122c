//! `-J`'s JSON document in iperf3's schema (start, intervals, end), and
//! `--json-stream`'s interval events.

use serde_json::{Value, json};

use crate::wire::iperf::params::Protocol;

use super::client::ClientReport;
use super::measure::{StreamInterval, lost_percent, rate};
use super::report::{direction, remote_tcp, sum};

fn sum_json(bytes: u64, secs: f64, sender: bool) -> Value {
    json!({"start": 0, "end": secs, "seconds": secs, "bytes": bytes,
           "bits_per_second": rate(bytes, secs), "sender": sender})
}

fn interval_json(iv: &StreamInterval, protocol: Protocol) -> Value {
    let mut v = json!({"socket": iv.socket, "start": iv.start, "end": iv.end, "seconds": iv.end - iv.start,
        "bytes": iv.bytes, "bits_per_second": iv.bits_per_second(), "omitted": iv.omitted, "sender": iv.sender});
    if let Some((retr, st)) = iv.tcp {
        for (k, x) in [
            ("retransmits", retr),
            ("snd_cwnd", st.snd_cwnd),
            ("rtt", st.rtt),
            ("rttvar", st.rttvar),
            ("pmtu", st.pmtu),
        ] {
            v[k] = json!(x);
        }
    }
    if protocol == Protocol::Udp {
        v["packets"] = json!(iv.packets);
        if !iv.sender {
            v["jitter_ms"] = json!(iv.jitter_ms);
            v["lost_packets"] = json!(iv.lost);
            v["lost_percent"] = json!(lost_percent(iv.lost, iv.packets));
        }
    }
    v
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
            system_info: format!(
                "{} {} {} {}",
                u.sysname().to_string_lossy(),
                u.nodename().to_string_lossy(),
                u.release().to_string_lossy(),
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
    json!({
        "connected": connected,
        "version": host.version,
        "system_info": host.system_info,
        "timestamp": {"timesecs": now.as_secs(), "timemillisecs": now.as_millis() as u64},
        "connecting_to": {"host": target, "port": report.server.port()},
        "cookie": report.cookie,
        "tcp_mss_default": report.mss.unwrap_or(0),
        "target_bitrate": p.bandwidth,
        "test_start": {
            "protocol": if p.protocol == Protocol::Udp { "UDP" } else { "TCP" },
            "num_streams": p.parallel, "blksize": p.len, "omit": p.omit, "duration": p.time,
            "bytes": p.num, "blocks": p.blockcount, "reverse": u8::from(p.reverse), "tos": p.tos,
            "target_bitrate": p.bandwidth, "bidir": u8::from(p.bidirectional), "interval": 1
        }
    })
}

/// One `intervals[]` element.
pub fn json_interval(interval: &[StreamInterval], protocol: Protocol) -> Value {
    let streams: Vec<Value> = interval
        .iter()
        .map(|iv| interval_json(iv, protocol))
        .collect();
    let mut v = json!({"streams": streams});
    for (key, dir) in [("sum", true), ("sum_bidir_reverse", false)] {
        let part: Vec<&StreamInterval> = interval.iter().filter(|s| s.sender == dir).collect();
        let (Some(first), true) = (part.first(), !part.is_empty()) else {
            continue;
        };
        let total = part.iter().map(|s| s.bytes).sum();
        let mut sum = StreamInterval {
            bytes: total,
            tcp: None,
            ..(*first).clone()
        };
        sum.packets = part.iter().map(|s| s.packets).sum();
        sum.lost = part.iter().map(|s| s.lost).sum();
        let mut sv = interval_json(&sum, protocol);
        if protocol == Protocol::Tcp && dir {
            sv["retransmits"] = json!(part.iter().filter_map(|s| s.tcp.map(|t| t.0)).sum::<u64>());
        }
        let bidir = interval.iter().any(|s| s.sender) && interval.iter().any(|s| !s.sender);
        let key = if !bidir { "sum" } else { key };
        v[key] = sv;
    }
    v
}

/// Puts a sonde server's TCP state beside this side's receiving streams.
fn merge_remote_tcp(report: &ClientReport, intervals: &mut [Value]) {
    let Some(rows) = remote_tcp(report) else {
        return;
    };
    for (iv, row) in intervals.iter_mut().zip(rows) {
        for state in row.as_array().into_iter().flatten() {
            let id = state["id"].as_u64();
            let socket = report
                .connected
                .iter()
                .find(|c| Some(u64::from(c.id)) == id)
                .map(|c| i64::from(c.socket));
            let streams = iv["streams"].as_array_mut();
            for s in streams.into_iter().flatten() {
                if s["socket"].as_i64() == socket && s["sender"] == json!(false) {
                    s["sender_tcp"] = state.clone();
                }
            }
        }
    }
}

/// The whole `-J` document; `target` is the host the client connected to.
pub fn json_report(report: &ClientReport, target: &str, host: &Host) -> Value {
    let protocol = report.params.protocol;
    let mut intervals: Vec<Value> = report
        .intervals
        .iter()
        .map(|i| json_interval(i, protocol))
        .collect();
    merge_remote_tcp(report, &mut intervals);
    let mut end = json!({"streams": end_streams(report)});
    end_sums(report, &mut end);
    let remote = report.remote.clone().unwrap_or_default();
    end["cpu_utilization_percent"] = json!({
        "host_total": report.local_cpu.total, "host_user": report.local_cpu.user, "host_system": report.local_cpu.system,
        "remote_total": remote.cpu_util_total, "remote_user": remote.cpu_util_user, "remote_system": remote.cpu_util_system,
    });
    if protocol == Protocol::Tcp {
        if let Some(cc) = &report.congestion {
            end["sender_tcp_congestion"] = json!(cc);
        }
        if let Some(cc) = &remote.congestion_used {
            end["receiver_tcp_congestion"] = json!(cc);
        }
    }
    let mut doc =
        json!({"start": json_start(report, target, host), "intervals": intervals, "end": end});
    if let Some(text) = remote.server_output_text {
        doc["server_output_text"] = json!(text);
    }
    if let Some(value) = remote.server_output_json {
        doc["server_output_json"] = value;
    }
    if let Some(title) = &report.params.title {
        doc["title"] = json!(title);
    }
    if let Some(extra) = &report.params.extra_data {
        doc["extra_data"] = json!(extra);
    }
    if let Some(value) = remote.sonde {
        doc["end"]["sonde"] = value;
    }
    doc
}

/// `end.streams`: each stream's sender and receiver (TCP) or its UDP
/// figures.
fn end_streams(report: &ClientReport) -> Vec<Value> {
    let mut streams = Vec::new();
    for e in &report.ends {
        let mut snd = sum_json(e.sent.0, e.sent.1, e.local_sender);
        snd["socket"] = json!(e.socket);
        let mut rcv = sum_json(e.received.0, e.received.1, e.local_sender);
        rcv["socket"] = json!(e.socket);
        if let Some(r) = e.retransmits {
            snd["retransmits"] = json!(r);
        }
        if let Some((cwnd, min, max, mean)) = e.rtt {
            for (k, x) in [
                ("max_snd_cwnd", cwnd),
                ("min_rtt", min),
                ("max_rtt", max),
                ("mean_rtt", mean),
            ] {
                snd[k] = json!(x);
            }
        }
        match e.udp {
            Some((jitter, lost, packets, ooo)) => {
                let mut u = sum_json(e.received.0, e.received.1, e.local_sender);
                u["socket"] = json!(e.socket);
                set_loss(&mut u, jitter, lost, packets);
                u["out_of_order"] = json!(ooo);
                streams.push(json!({"udp": u}));
            }
            None => streams.push(json!({"sender": snd, "receiver": rcv})),
        }
    }
    streams
}

/// Jitter and loss, as iperf3 writes them.
fn set_loss(v: &mut Value, jitter: f64, lost: i64, packets: i64) {
    v["jitter_ms"] = json!(jitter);
    v["lost_packets"] = json!(lost);
    v["packets"] = json!(packets);
    v["lost_percent"] = json!(lost_percent(lost.max(0) as u64, packets.max(0) as u64));
}

/// `end.sum_sent`, `end.sum_received` (and `end.sum` for UDP), per
/// direction: `_bidir_reverse` for the second with `--bidir`.
fn end_sums(report: &ClientReport, end: &mut Value) {
    let bidir = report.params.bidirectional;
    for (dir, suffix) in [(true, ""), (false, "_bidir_reverse")] {
        let part = direction(&report.ends, dir);
        if part.is_empty() {
            continue;
        }
        let s = sum(&part);
        let suffix = if bidir { suffix } else { "" };
        let mut sent = sum_json(s.sent.0, s.sent.1, dir);
        if let Some(r) = s.retransmits {
            sent["retransmits"] = json!(r);
        }
        let mut received = sum_json(s.received.0, s.received.1, dir);
        if report.params.protocol == Protocol::Udp {
            let (lost, packets) = part
                .iter()
                .filter_map(|e| e.udp)
                .fold((0, 0), |(l, n), u| (l + u.1, n + u.2));
            let jitter =
                part.iter().filter_map(|e| e.udp.map(|u| u.0)).sum::<f64>() / part.len() as f64;
            set_loss(&mut received, jitter, lost, packets);
            sent["packets"] = json!(packets);
            let mut legacy = sum_json(s.sent.0, s.received.1, dir);
            set_loss(&mut legacy, jitter, lost, packets);
            end[format!("sum{suffix}")] = legacy;
        }
        end[format!("sum_sent{suffix}")] = sent;
        end[format!("sum_received{suffix}")] = received;
    }
}

/// A server's `-J` document for one test: the client's layout, with the
/// client's address as `accepted_connection` in place of `connecting_to`
/// (`report.local` is the client, `report.server` this server).
pub fn json_server_report(report: &ClientReport, host: &Host) -> Value {
    let mut doc = json_report(report, &report.server.ip().to_string(), host);
    if let Some(start) = doc["start"].as_object_mut() {
        start.remove("connecting_to");
        start.insert(
            "accepted_connection".into(),
            json!({"host": report.local.ip().to_string(), "port": report.local.port()}),
        );
    }
    doc
}

/// The TCP state of this side's sending streams, per interval, for a sonde
/// client in reverse mode (iperf3 shows it only on the sender).
pub(crate) fn sonde_tcp_intervals(intervals: &[Vec<StreamInterval>]) -> Value {
    let rows: Vec<serde_json::Value> = intervals
        .iter()
        .map(|iv| {
            let streams: Vec<serde_json::Value> = iv
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
mod tests {
    use super::*;
    use crate::perf::measure::StreamEnd;
    use crate::perf::stream::TcpState;
    use crate::perf::{ConnectedStream, CpuUse};
    use crate::wire::iperf::params::Params;
    use crate::wire::iperf::results::Results;

    fn host() -> Host {
        Host {
            version: "sonde 0.1.0".into(),
            system_info: "Linux box 6.1.0 x86_64".into(),
            timestamp: std::time::Duration::from_millis(1_764_630_000_123),
        }
    }

    /// A two-second, one-stream TCP upload with fixed figures.
    fn report() -> ClientReport {
        let state = TcpState {
            total_retrans: 3,
            snd_cwnd: 65_536,
            rtt: 40,
            rttvar: 5,
            pmtu: 65_535,
        };
        let interval = |start: f64, bytes: u64| StreamInterval {
            id: 1,
            socket: 5,
            sender: true,
            start,
            end: start + 1.0,
            bytes,
            tcp: Some((1, state)),
            ..StreamInterval::default()
        };
        ClientReport {
            params: Params {
                time: 2,
                len: 131_072,
                ..Params::default()
            },
            server: "127.0.0.1:5201".parse().expect("literal"),
            local: "127.0.0.1:40000".parse().expect("literal"),
            cookie: "cookie".into(),
            connected: vec![ConnectedStream {
                id: 1,
                socket: 5,
                local: "127.0.0.1:40002".parse().ok(),
                remote: "127.0.0.1:5201".parse().ok(),
                sender: true,
            }],
            intervals: vec![vec![interval(0.0, 1000)], vec![interval(1.0, 3000)]],
            ends: vec![StreamEnd {
                id: 1,
                socket: 5,
                local_sender: true,
                sent: (4000, 2.0),
                received: (4000, 2.0),
                retransmits: Some(3),
                udp: None,
                rtt: Some((65_536, 30, 50, 40)),
            }],
            local_cpu: CpuUse {
                total: 10.0,
                user: 4.0,
                system: 6.0,
            },
            remote: Some(Results {
                cpu_util_total: 20.0,
                cpu_util_user: 5.0,
                cpu_util_system: 15.0,
                congestion_used: Some("bbr".into()),
                ..Results::default()
            }),
            congestion: Some("cubic".into()),
            mss: Some(1448),
            interrupted: false,
        }
    }

    #[test]
    fn the_document_is_built_from_its_inputs_alone() {
        let doc = json_report(&report(), "127.0.0.1", &host());
        let want: Value = serde_json::from_str(include_str!("testdata/json_report_tcp.json"))
            .expect("the fixture is JSON");
        assert_eq!(
            doc,
            want,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
    }
}
