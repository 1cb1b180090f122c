//! Exhaustion (issue 18, item 3): each server, run with its descriptor
//! limit lowered to 48 (prlimit) and flooded with 80 held connections,
//! keeps its listener, logs the failed accepts at most once a second,
//! and serves a good client again as soon as descriptors free.

mod common;

use std::net::TcpStream;

use common::hostile::{exhausts, limited};
use common::{Listener, TempDir, run, sonde};

fn rtt_works(extra: &'static [&'static str]) -> impl Fn(u16) {
    move |port| {
        let mut cmd = sonde();
        cmd.args(["rtt", &format!("127.0.0.1:{port}"), "-n", "100"])
            .args(extra);
        let done = run(cmd, b"");
        assert_eq!(done.code(), Some(0), "rtt: {}", done.stderr);
    }
}

fn serve(args: &[&str]) -> Option<Listener> {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--bind", "127.0.0.1", "--port", "0"]);
    limited(&all).map(common::start_command)
}

#[test]
fn serve_echo_recovers_from_exhaustion() {
    if let Some(server) = serve(&["echo"]) {
        exhausts(server, rtt_works(&[]));
    }
}

#[test]
fn threaded_echo_recovers_from_exhaustion() {
    if let Some(server) = serve(&["echo", "--blocking"]) {
        exhausts(server, rtt_works(&[]));
    }
}

#[test]
fn sockperf_recovers_from_exhaustion() {
    if let Some(server) = serve(&["sockperf"]) {
        exhausts(server, rtt_works(&["--sockperf", "--tcp"]));
    }
}

#[test]
fn chat_recovers_from_exhaustion() {
    if let Some(server) = serve(&["chat"]) {
        exhausts(server, |port| {
            use std::io::BufRead;
            let conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            conn.set_read_timeout(Some(common::DEADLINE))
                .expect("timeout");
            let mut welcome = String::new();
            std::io::BufReader::new(conn)
                .read_line(&mut welcome)
                .expect("the room's welcome");
            assert!(!welcome.is_empty());
        });
    }
}

#[test]
fn perf_server_recovers_from_exhaustion() {
    let Some(cmd) = limited(&["perf", "-s", "-B", "127.0.0.1", "-p", "0"]) else {
        return;
    };
    exhausts(common::start_perf_server(cmd), |port| {
        let mut cmd = sonde();
        cmd.args(["perf", "-c", "127.0.0.1", "-p", &port.to_string()])
            .args(["-t", "1"]);
        let done = run(cmd, b"");
        assert_eq!(done.code(), Some(0), "perf: {}", done.stderr);
    });
}

#[test]
fn receive_k_recovers_from_exhaustion() {
    let dst = TempDir::new("exhaust-dst");
    let src = TempDir::new("exhaust-src");
    let file = src.join("good.bin");
    std::fs::write(&file, common::random_bytes(1 << 20, 9)).expect("source");
    let dir = dst.0.to_str().expect("utf-8").to_string();
    let args = ["receive", &dir, "--bind", "127.0.0.1", "-p", "0", "-k"];
    let Some(cmd) = limited(&args) else { return };
    exhausts(common::start_command(cmd), |port| {
        let mut cmd = sonde();
        cmd.arg("send").arg(&file).arg(format!("127.0.0.1:{port}"));
        let done = run(cmd, b"");
        assert_eq!(done.code(), Some(0), "send: {}", done.stderr);
    });
    assert!(dst.join("good.bin").exists());
}

#[test]
fn listen_k_recovers_from_exhaustion() {
    let Some(cmd) = limited(&["listen", "-k", "127.0.0.1:0", "--max-conns", "500"]) else {
        return;
    };
    exhausts(common::start_command(cmd), |port| {
        // Accepted and read: the connection ends when we end it, not at
        // once with a reset.
        use std::io::{Read, Write};
        let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        conn.write_all(b"a line\n").expect("a line");
        conn.shutdown(std::net::Shutdown::Write).expect("our end");
        conn.set_read_timeout(Some(common::DEADLINE))
            .expect("timeout");
        let got = conn.read_to_end(&mut Vec::new());
        assert!(got.is_ok(), "{got:?}");
    });
}
