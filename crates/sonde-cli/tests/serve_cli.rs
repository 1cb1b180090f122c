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
