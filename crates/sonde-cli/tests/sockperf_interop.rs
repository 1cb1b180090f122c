//! sockperf's message format against Debian's sockperf 3.7, both ways:
//! a stock `sockperf ping-pong` measures `sonde serve sockperf`, and
//! `sonde rtt --sockperf` measures a stock `sockperf server`, over TCP and
//! UDP. Skipped without sockperf unless SONDE_REQUIRE_PEERS=1.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

fn have_sockperf() -> bool {
    have_peer("sockperf", "sockperf")
}

#[test]
fn stock_sockperf_client_measures_sonde_serve_sockperf() {
    if !have_sockperf() {
        return;
    }
    for udp in [false, true] {
        let port = free_port().to_string();
        let mut args = vec!["serve", "sockperf", "--bind", "127.0.0.1", "--port", &port];
        if udp {
            args.push("--udp");
        }
        let mut server = sonde()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve");
        let mut lines = BufReader::new(server.stderr.take().expect("stderr")).lines();
        let first = lines.next().expect("a line").expect("utf-8");
        assert!(first.contains("listening"), "{first}");
        let mut cmd = Command::new("sockperf");
        cmd.args([
            "ping-pong",
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "1",
            "-m",
            "64",
        ]);
        if !udp {
            cmd.arg("--tcp");
        }
        let done = run(cmd, b"");
        let _ = server.kill();
        let _ = server.wait();
        let text = format!("{}{}", done.stdout_text(), done.stderr);
        assert_eq!(done.code(), Some(0), "{text}");
        assert!(
            !text.contains("No messages were received"),
            "udp={udp}: {text}"
        );
        assert!(text.contains("percentile 50.000"), "udp={udp}: {text}");
    }
}

#[test]
fn sonde_rtt_sockperf_measures_a_stock_sockperf_server() {
    if !have_sockperf() {
        return;
    }
    for udp in [false, true] {
        let port = free_port().to_string();
        let mut cmd = Command::new("sockperf");
        cmd.args(["server", "-i", "127.0.0.1", "-p", &port]);
        if !udp {
            cmd.arg("--tcp");
        }
        let mut server = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sockperf server");
        // sockperf prints its banner, then waits; wait for its ready line.
        let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
        for line in lines.by_ref() {
            let line = line.expect("utf-8");
            if line.contains("Warmup stage") || line.contains("[tid") || line.contains("listening")
            {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let target = format!("127.0.0.1:{port}");
        let mut args = vec!["rtt", "--sockperf", &target, "-n", "1000", "--json"];
        // sockperf's default is UDP, and so is --sockperf's: TCP is --tcp.
        if !udp {
            args.push("--tcp");
        }
        let mut c = sonde();
        c.args(&args);
        let done = run(c, b"");
        let _ = server.kill();
        let _ = server.wait();
        assert_eq!(done.code(), Some(0), "udp={udp}: {}", done.stderr);
        let v: Value = serde_json::from_slice(&done.stdout).expect("JSON");
        assert_eq!(v["rtt_ns"]["count"], 1000, "udp={udp}: {v}");
    }
}
