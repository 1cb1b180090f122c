//! `sonde serve` from the command line: it reports its address, serves,
//! and on SIGTERM drains and exits 0 with a summary on stderr.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;

use common::*;

type Lines = std::io::Lines<BufReader<std::process::ChildStderr>>;

/// Starts `sonde serve ARGS...` on 127.0.0.1 port 0; returns the child, its
/// port (from the first stderr line) and the rest of its stderr.
fn start(args: &[&str]) -> (std::process::Child, u16, Lines) {
    let mut child = sonde()
        .arg("serve")
        .args(args)
        .args(["--bind", "127.0.0.1", "--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    assert!(
        first.contains(" listening on 127.0.0.1:")
            || first.contains(" listening on udp 127.0.0.1:"),
        "{first}"
    );
    let port = first
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    (child, port, lines)
}

fn signal(child: &std::process::Child, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, sig).expect("kill");
}

#[test]
fn serve_echo_then_sigterm_exits_0_with_a_summary() {
    let (child, port, lines) = start(&["echo"]);
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s.write_all(b"hello").expect("send");
    let mut back = [0u8; 5];
    s.read_exact(&mut back).expect("echo");
    assert_eq!(&back, b"hello");
    drop(s);
    signal(&child, rustix::process::Signal::TERM);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let done = finish(
        child,
        collect(None::<std::io::Empty>),
        collect(None::<std::io::Empty>),
    );
    assert_eq!(done.code(), Some(0));
    let summary = rest.join("\n");
    assert!(summary.contains("1 connection served"), "{summary}");
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
    let (child, _port, mut lines) = start(&["chargen", "--stats-interval", "0.2"]);
    let stats = lines.next().expect("a stats line").expect("utf-8");
    assert!(
        stats.contains("open now") && stats.contains("connections served"),
        "{stats}"
    );
    signal(&child, rustix::process::Signal::INT);
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
    let (child, port, _lines) = start(&["echo", "--drain-timeout", "30"]);
    // A client that sends and never reads keeps the echo busy writing.
    let mut busy = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    busy.set_nonblocking(true).expect("nonblocking");
    // Written until nothing more goes for 300 ms: only then is the server
    // surely stuck writing back (a short stall may just be the server
    // catching up, and it would then finish echoing everything).
    let chunk = vec![0u8; 65536];
    let mut last_progress = std::time::Instant::now();
    while last_progress.elapsed() < std::time::Duration::from_millis(300) {
        match busy.write(&chunk) {
            Ok(n) if n > 0 => last_progress = std::time::Instant::now(),
            _ => std::thread::yield_now(),
        }
    }
    signal(&child, rustix::process::Signal::INT);
    // Signals sent together merge into one: wait until the first one has
    // taken effect (the listener is closed), then send the second.
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        std::thread::yield_now();
    }
    signal(&child, rustix::process::Signal::INT);
    let started = std::time::Instant::now();
    let done = finish(
        child,
        collect(None::<std::io::Empty>),
        collect(None::<std::io::Empty>),
    );
    assert_eq!(
        done.code(),
        Some(1),
        "{:?} after {:?}",
        done.status,
        started.elapsed()
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "it waited for the drain"
    );
}

#[test]
fn thread_echo_serves_rtt_over_tcp_and_udp_spinning_or_blocking() {
    for (mode, udp) in [
        ("--busy-poll", false),
        ("--busy-poll", true),
        ("--blocking", false),
        ("--blocking", true),
    ] {
        let mut args = vec!["echo", mode];
        if udp {
            args.push("--udp");
        }
        let (child, port, _lines) = start(&args);
        let mut cmd = sonde();
        cmd.args(["rtt", &format!("127.0.0.1:{port}"), "-n", "200", "--json"]);
        if udp {
            cmd.arg("-u");
        }
        let done = run(cmd, b"");
        assert_eq!(done.code(), Some(0), "{mode} udp {udp}: {}", done.stderr);
        let report: serde_json::Value = serde_json::from_slice(&done.stdout).expect("rtt JSON");
        assert!(
            report.to_string().contains("p99"),
            "{mode} udp {udp}: {report}"
        );
        signal(&child, rustix::process::Signal::TERM);
        let done = finish(
            child,
            collect(None::<std::io::Empty>),
            collect(None::<std::io::Empty>),
        );
        assert_eq!(done.code(), Some(0), "{mode} udp {udp}");
    }
}

/// Out of descriptors, a failed accept is logged and the server goes on:
/// once clients leave, a new one is served.
#[test]
fn a_failed_accept_is_logged_and_the_server_keeps_serving() {
    let mut child = std::process::Command::new("prlimit")
        .arg("--nofile=40:40")
        .arg(sonde_path())
        .args(["serve", "echo", "--bind", "127.0.0.1", "--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn prlimit (util-linux)");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let port: u16 = loop {
        let line = lines.next().expect("a line").expect("utf-8");
        if line.contains(" listening on ") {
            break line
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("port");
        }
    };
    // More clients than descriptors: the kernel queues them, accept fails.
    let crowd: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    let logged = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("accepting a connection"));
    assert!(logged.is_some_and(|l| l.contains("too many open files")));
    drop(crowd);
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect after");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s.write_all(b"still here").expect("send");
    let mut back = [0u8; 10];
    s.read_exact(&mut back).expect("echo after the failures");
    assert_eq!(&back, b"still here");
    drop(s);
    signal(&child, rustix::process::Signal::TERM);
    std::thread::spawn(move || for _ in lines {});
    let done = finish(
        child,
        collect(None::<std::io::Empty>),
        collect(None::<std::io::Empty>),
    );
    assert_eq!(done.code(), Some(0));
}
