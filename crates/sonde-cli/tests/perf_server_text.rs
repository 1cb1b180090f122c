//! What `sonde perf -s` prints as iperf3's server does, beyond line
//! shapes (perf_text_shape): an IPv4 client of the dual-stack listener
//! shown as IPv4, a test whose client is interrupted still summed up,
//! Ctrl-C on the server saying what it cut short; and between two sondes
//! a UDP sender's row ending when its sending ended.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;

use common::{DEADLINE, Reaper, sonde};
use serde_json::Value;

fn interrupt(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
}

/// Lines of a child's stdout, as they come.
fn lines(out: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads lines until one contains `needle`; all of them.
fn until(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut String) {
    loop {
        let line = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("no {needle:?} in:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(needle) {
            return;
        }
    }
}

#[test]
fn an_interrupted_client_still_gets_its_lines_and_ctrl_c_says_what_it_cut() {
    let port = common::free_port().to_string();
    // No -B: the dual-stack listener, where IPv4 peers arrive mapped.
    let mut srv = sonde()
        .args(["perf", "-s", "-p", &port])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server");
    let mut reaper = Reaper::new(srv.id());
    let rx = lines(srv.stdout.take().expect("stdout"));
    let mut seen = String::new();
    until(&rx, "Server listening", &mut seen);
    let mut client = sonde()
        .args(["perf", "-c", "127.0.0.1", "-p", &port, "-t", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the client");
    let mut client_reaper = Reaper::new(client.id());
    until(&rx, "bits/sec", &mut seen);
    interrupt(client.id());
    let _ = client.wait();
    client_reaper.disarm();
    until(&rx, "the client has terminated", &mut seen);
    until(&rx, "Server listening on", &mut seen);
    common::assert_contains(&seen, "Accepted connection from 127.0.0.1, port ");
    common::assert_contains(&seen, "] local 127.0.0.1 port ");
    common::assert_contains(&seen, " receiver\n");
    assert!(!seen.contains("::ffff:"), "{seen}");
    interrupt(srv.id());
    until(&rx, "interrupt - the server has terminated", &mut seen);
    common::assert_contains(&seen, "(0 test(s) cut short)");
    let _ = srv.wait();
    reaper.disarm();
}

#[test]
fn a_udp_senders_row_ends_when_its_sending_ends() {
    let port = common::free_port().to_string();
    let mut srv = sonde()
        .args(["perf", "-s", "-1", "-B", "127.0.0.1", "-p", &port])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server");
    let mut reaper = Reaper::new(srv.id());
    let rx = lines(srv.stdout.take().expect("stdout"));
    until(&rx, "Server listening", &mut String::new());
    let mut cmd = sonde();
    cmd.args([
        "perf",
        "-c",
        "127.0.0.1",
        "-p",
        &port,
        "-u",
        "-b",
        "50M",
        "-t",
        "2",
        "-J",
    ]);
    let done = common::run(cmd, b"");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let doc: Value = serde_json::from_slice(&done.stdout).expect("JSON");
    let udp = &doc["end"]["streams"][0]["udp"];
    let sent = doc["end"]["sum_sent"]["seconds"].as_f64().unwrap_or(0.0);
    let received = doc["end"]["sum_received"]["seconds"]
        .as_f64()
        .unwrap_or(0.0);
    // The sender sent for the test's 2 s; it is not charged the time the
    // receiver took to settle and answer.
    assert!((sent - 2.0).abs() < 0.05, "sender seconds {sent}: {udp}");
    assert!(
        (received - sent).abs() < 0.1,
        "receiver {received}, sender {sent}"
    );
    // A one-off server: it ends after the test.
    let _ = srv.wait();
    reaper.disarm();
}
