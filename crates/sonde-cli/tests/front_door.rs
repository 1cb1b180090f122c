//! The front door, server by server, through the binary: a flood of idle
//! connections leaves each server's threads and descriptors bounded (read
//! from /proc) and a good client served; a failed accept is logged once
//! per interval and the server serves again when descriptors free; a
//! silent sender or a client that never reads holds up nobody.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use common::{Listener, TempDir, random_bytes, sonde, start_sonde};

/// Idle connections in each flood.
const FLOOD: usize = 2000;

/// Threads and open descriptors of a process.
fn counts(pid: u32) -> (usize, usize) {
    let entries = |what: &str| {
        fs::read_dir(format!("/proc/{pid}/{what}"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    (entries("task"), entries("fd"))
}

/// Lets this process (and the servers it starts) open the flood.
fn raise_fd_limit() {
    let limit = sonde::door::raise_fd_limit();
    assert!(
        limit >= 3 * FLOOD as u64,
        "the open-file limit ({limit}) is too low for a flood of {FLOOD}"
    );
}

/// Opens `n` connections that say nothing.
fn flood(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("a flood connection"))
        .collect()
}

/// Waits (polling /proc, at most 20 s) until the server's threads are at
/// most `threads`, then checks its descriptors against `fds`.
fn assert_bounded(pid: u32, threads: usize, fds: usize, what: &str) {
    let start = Instant::now();
    let mut now = counts(pid);
    while now.0 > threads && start.elapsed() < Duration::from_secs(20) {
        thread::sleep(Duration::from_millis(20));
        now = counts(pid);
    }
    assert!(
        now.0 <= threads,
        "{what}: {} threads (at most {threads})",
        now.0
    );
    assert!(
        now.1 <= fds,
        "{what}: {} descriptors (at most {fds})",
        now.1
    );
}

fn stop(mut server: Listener) {
    let _ = server.child.kill();
    let _ = server.child.wait();
    server.reaper.disarm();
}

/// An echo round trip on a fresh connection.
fn echo_once(port: u16) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("good client");
    s.set_read_timeout(Some(common::DEADLINE)).expect("timeout");
    s.write_all(b"hello, door").expect("send");
    let mut back = [0u8; 11];
    s.read_exact(&mut back).expect("echo");
    assert_eq!(&back, b"hello, door");
}

#[test]
fn a_flood_of_idle_clients_leaves_serve_echo_bounded() {
    raise_fd_limit();
    let server = start_sonde(
        &[
            "serve",
            "echo",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--max-connections",
            "3000",
        ],
        Stdio::null(),
        Stdio::null(),
    );
    let pid = server.child.id();
    echo_once(server.port);
    let (threads, fds) = counts(pid);
    let held = flood(server.port, FLOOD);
    echo_once(server.port);
    // Tasks, not threads; a descriptor per connection, within the cap.
    assert_bounded(pid, threads, fds + FLOOD + 8, "serve echo");
    drop(held);
    stop(server);
}

/// A sockperf pong request and its reply.
fn sockperf_once(port: u16) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("good client");
    s.set_read_timeout(Some(common::DEADLINE)).expect("timeout");
    let mut msg = vec![0u8; 64];
    sonde::wire::sockperf::Header {
        seq: 7,
        flags: sonde::wire::sockperf::CLIENT | sonde::wire::sockperf::PONG_REQUEST,
        len: 64,
    }
    .write(&mut msg);
    s.write_all(&msg).expect("send");
    let mut back = vec![0u8; 64];
    s.read_exact(&mut back).expect("pong");
    let header = sonde::wire::sockperf::Header::read(&back).expect("a header");
    assert_eq!(
        (header.seq, header.flags),
        (7, sonde::wire::sockperf::PONG_REQUEST)
    );
}

#[test]
fn idle_clients_of_the_thread_services_cost_no_thread() {
    raise_fd_limit();
    for (args, sockperf) in [
        (&["serve", "sockperf"][..], true),
        (&["serve", "echo", "--blocking"][..], false),
        (&["serve", "echo", "--busy-poll"][..], false),
    ] {
        let mut all = args.to_vec();
        all.extend([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--max-connections",
            "3000",
        ]);
        let server = start_sonde(&all, Stdio::null(), Stdio::null());
        let pid = server.child.id();
        let (threads, fds) = counts(pid);
        let held = flood(server.port, FLOOD);
        if sockperf {
            sockperf_once(server.port);
        } else {
            echo_once(server.port);
        }
        // The good client's thread ends with it; the flood has none.
        assert_bounded(pid, threads, fds + FLOOD + 8, args.join(" ").as_str());
        drop(held);
        stop(server);
    }
}

#[test]
fn a_flood_of_idle_clients_leaves_listen_k_bounded() {
    raise_fd_limit();
    let dir = TempDir::new("door-listen");
    let out = dir.join("stdout");
    let server = start_sonde(
        &["listen", "-k", "--max-conns", "3000", "127.0.0.1:0"],
        Stdio::null(),
        Stdio::from(fs::File::create(&out).expect("stdout file")),
    );
    let pid = server.child.id();
    let first = TcpStream::connect(("127.0.0.1", server.port)).expect("a first client");
    assert!(server.next_line().starts_with("connection from"));
    let (threads, fds) = counts(pid);
    let held = flood(server.port, FLOOD);
    let mut good = TcpStream::connect(("127.0.0.1", server.port)).expect("good client");
    good.write_all(b"from the good client\n").expect("send");
    let start = Instant::now();
    while !fs::read_to_string(&out).is_ok_and(|t| t.contains("from the good client")) {
        assert!(
            start.elapsed() < common::DEADLINE,
            "the good client's data never came out"
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert_bounded(pid, threads, fds + FLOOD + 8, "listen -k");
    drop((first, held, good));
    stop(server);
}

#[test]
fn a_flood_of_silent_connections_leaves_perf_s_bounded() {
    raise_fd_limit();
    let server = common::perf_server(&[]);
    let (pid, port) = (server.child.id(), server.port);
    let (threads, fds) = counts(pid);
    let held = flood(port, FLOOD);
    let client = sonde()
        .args([
            "perf",
            "-c",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "1",
            "-J",
        ])
        .output()
        .expect("a good client");
    assert!(
        client.status.success(),
        "{}",
        String::from_utf8_lossy(&client.stderr)
    );
    // A thread is spent only on a connection that sent a cookie.
    assert_bounded(pid, threads, fds + FLOOD + 8, "perf -s");
    drop(held);
    server.stop();
}

fn send_file(port: u16, path: &std::path::Path) -> common::Finished {
    let mut cmd = sonde();
    cmd.args(["send", "--quiet"])
        .arg(path)
        .arg(format!("127.0.0.1:{port}"));
    common::run(cmd, b"")
}

#[test]
fn a_flood_of_silent_connections_leaves_receive_k_bounded() {
    raise_fd_limit();
    let src = TempDir::new("door-src");
    let dst = TempDir::new("door-dst");
    let path = src.join("good.bin");
    fs::write(&path, random_bytes(1 << 20, 3)).expect("source");
    let server = common::receiver(&dst, &["--keep-open"]);
    let pid = server.child.id();
    let (threads, fds) = counts(pid);
    // Past its cap of 256, each newcomer takes the place of the oldest
    // connection that has not said hello.
    let held = flood(server.port, FLOOD);
    let sent = send_file(server.port, &path);
    assert_eq!(sent.code(), Some(0), "{}", sent.stderr);
    assert_eq!(
        fs::read(dst.join("good.bin")).expect("arrived"),
        fs::read(&path).expect("source")
    );
    assert_bounded(pid, threads, fds + 256 + 16, "receive -k");
    drop(held);
    stop(server);
}

#[test]
fn a_silent_sender_does_not_hold_up_a_good_one() {
    let src = TempDir::new("silent-src");
    let dst = TempDir::new("silent-dst");
    let path = src.join("big.bin");
    let data = random_bytes(32 << 20, 9);
    fs::write(&path, &data).expect("source");
    let server = common::receiver(&dst, &["--keep-open", "--timeout", "2"]);
    // Says hello, then nothing: the network went dark before its offer.
    let mut silent = TcpStream::connect(("127.0.0.1", server.port)).expect("silent sender");
    silent
        .write_all(&sonde::transfer::wire::hello())
        .expect("hello");
    let started = Instant::now();
    let sent = send_file(server.port, &path);
    assert_eq!(sent.code(), Some(0), "{}", sent.stderr);
    assert_eq!(
        fs::read(dst.join("big.bin")).expect("arrived").len(),
        data.len()
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the good sender waited for the silent one"
    );
    // The silent one never got a session: the front door answered its
    // hello, waited for its offer, and closed it when that did not come.
    silent
        .set_read_timeout(Some(common::DEADLINE))
        .expect("timeout");
    let mut rest = Vec::new();
    let closed = std::io::Read::read_to_end(&mut silent, &mut rest);
    assert!(
        closed.is_ok(),
        "closed by the receiver, not timed out: {closed:?}"
    );
    assert_eq!(
        rest,
        sonde::transfer::wire::hello(),
        "only the receiver's hello"
    );
    stop(server);
}

#[test]
fn a_client_that_never_reads_is_dropped_and_the_reader_gets_everything() {
    let input = random_bytes(32 << 20, 5);
    let server = start_sonde(
        &["listen", "-k", "127.0.0.1:0"],
        Stdio::piped(),
        Stdio::null(),
    );
    let mut server = server;
    let port = server.port;
    let stalled = TcpStream::connect(("127.0.0.1", port)).expect("a client that never reads");
    assert!(server.next_line().starts_with("connection from"));
    let mut reader = TcpStream::connect(("127.0.0.1", port)).expect("a reader");
    assert!(server.next_line().starts_with("connection from"));
    let mut stdin = server.child.stdin.take().expect("piped stdin");
    let writer = thread::spawn(move || {
        stdin.write_all(&input).expect("feeding the listener");
        input
    });
    let mut got = Vec::new();
    reader
        .set_read_timeout(Some(common::DEADLINE))
        .expect("timeout");
    let mut buf = vec![0u8; 1 << 16];
    while got.len() < 32 << 20 {
        let n = reader.read(&mut buf).expect("reading the broadcast");
        assert!(n > 0, "the listener closed the reader early");
        got.extend_from_slice(&buf[..n]);
    }
    let input = writer.join().expect("writer");
    assert!(
        got == input,
        "the reader got every byte of the input, in order"
    );
    let mut dropped = false;
    while !dropped {
        dropped = server.next_line().contains("stopped reading");
    }
    drop(stalled);
    stop(server);
}

#[test]
fn a_sender_waiting_on_a_silent_receiver_says_so_and_gives_up() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accepts and says nothing (no hello), until the sender gives up.
    let silent = thread::spawn(move || listener.accept().map(|(conn, _)| conn));
    let src = TempDir::new("silent-receiver");
    let path = src.join("x");
    fs::write(&path, b"x").expect("source");
    let mut cmd = sonde();
    cmd.args(["send", "--timeout", "1.5"])
        .arg(&path)
        .arg(format!("127.0.0.1:{port}"));
    let sent = common::run(cmd, b"");
    assert_eq!(sent.code(), Some(1), "{}", sent.stderr);
    assert!(
        sent.stderr
            .contains(&format!("waiting for 127.0.0.1:{port} to say hello")),
        "{}",
        sent.stderr
    );
    assert!(
        sent.stderr.contains("no answer for 1.5 s"),
        "{}",
        sent.stderr
    );
    drop(silent.join());
}
