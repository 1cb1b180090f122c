//! `sonde serve` from the command line: it reports its address, serves,
//! and on SIGTERM drains and exits 0 with a summary on stderr.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;

use common::*;

#[test]
fn serve_echo_then_sigterm_exits_0_with_a_summary() {
    let mut child = sonde()
        .args(["serve", "echo", "--bind", "127.0.0.1", "--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    assert!(
        first.starts_with("sonde serve echo listening on 127.0.0.1:"),
        "{first}"
    );
    let port: u16 = first
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s.write_all(b"hello").expect("send");
    let mut back = [0u8; 5];
    s.read_exact(&mut back).expect("echo");
    assert_eq!(&back, b"hello");
    drop(s);
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let done = finish(
        child,
        collect(None::<std::io::Empty>),
        collect(None::<std::io::Empty>),
    );
    assert_eq!(done.code(), Some(0));
    let summary = rest.join("\n");
    assert!(summary.contains("1 connections served"), "{summary}");
    assert!(summary.contains("5 bytes in, 5 bytes out"), "{summary}");
}

#[test]
fn udp_is_only_for_echo_and_discard() {
    let mut cmd = sonde();
    cmd.args(["serve", "chat", "--udp", "--port", "0"]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(2), "{}", done.stderr);
    assert!(
        done.stderr
            .contains("--udp works with echo, discard and sockperf")
    );
}

/// `--stats-interval` prints live counters.
#[test]
fn stats_interval_prints_counters() {
    let mut child = sonde()
        .args([
            "serve",
            "chargen",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--stats-interval",
            "0.2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let _listening = lines.next().expect("a line").expect("utf-8");
    let stats = lines.next().expect("a stats line").expect("utf-8");
    assert!(
        stats.contains("open now") && stats.contains("connections served"),
        "{stats}"
    );
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let done = finish(
        child,
        collect(None::<std::io::Empty>),
        collect(None::<std::io::Empty>),
    );
    assert_eq!(done.code(), Some(0), "{rest:?}");
}

/// A busy connection holds the drain (30 s here); a second SIGINT ends the
/// server at once, with exit 1.
#[test]
fn a_second_sigint_exits_at_once() {
    let mut child = sonde()
        .args([
            "serve",
            "echo",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--drain-timeout",
            "30",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let port: u16 = first
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    // A client that sends and never reads keeps the echo busy writing.
    let mut busy = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    busy.set_nonblocking(true).expect("nonblocking");
    let chunk = vec![0u8; 65536];
    let mut stalled = 0;
    while stalled < 200 {
        match busy.write(&chunk) {
            Ok(n) if n > 0 => stalled = 0,
            _ => {
                stalled += 1;
                std::thread::yield_now();
            }
        }
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("first SIGINT");
    // Signals sent together merge into one: wait until the first one has
    // taken effect (the listener is closed), then send the second.
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        std::thread::yield_now();
    }
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("second SIGINT");
    let started = std::time::Instant::now();
    let done = finish(
        child,
        collect(None::<std::io::Empty>),
        collect(None::<std::io::Empty>),
    );
    assert_eq!(done.code(), Some(1));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "it waited for the drain"
    );
}
