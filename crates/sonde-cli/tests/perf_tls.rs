//! Sonde-to-sonde `perf --tls`: forward, reverse and two streams against
//! `perf -s --tls`, every byte counted and none of the payload visible on
//! the wire (a tap between them looks for it, and finds it in a plain run);
//! a server that does not agree (sonde without --tls, a stock iperf3) is
//! said plainly; UDP and the kernel's byte paths refuse --tls.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use common::{Reaper, TempDir, assert_contains, certificate, have_peer, run, sonde};

/// `sonde perf -s -B 127.0.0.1 -p 0 ARGS...`, once it listens, and its
/// port.
fn perf_server(args: &[&str]) -> (common::Listener, u16) {
    let server = common::perf_server(args);
    let port = server.port;
    (server, port)
}

/// Forwards every connection to `to`, counting in what clients send the
/// places where `0123456789` (a `--repeating-payload` block) shows.
struct Tap {
    port: u16,
    seen: Arc<AtomicU64>,
}

fn tap(to: u16) -> Tap {
    let listener = TcpListener::bind("127.0.0.1:0").expect("tap bind");
    let port = listener.local_addr().expect("tap addr").port();
    let seen = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&seen);
    thread::spawn(move || {
        // A test opens a control and a few data connections: bounded.
        for client in listener.incoming().take(16) {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                return;
            };
            let count = Arc::clone(&count);
            let (mut back_from, mut back_to) = (
                server.try_clone().expect("clone"),
                client.try_clone().expect("clone"),
            );
            thread::spawn(move || {
                let _ = std::io::copy(&mut back_from, &mut back_to);
                let _ = back_to.shutdown(std::net::Shutdown::Write);
            });
            thread::spawn(move || forward(client, server, &count));
        }
    });
    Tap { port, seen }
}

fn forward(mut from: TcpStream, mut to: TcpStream, count: &AtomicU64) {
    let mut buf = vec![0; 256 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let hits = buf[..n].windows(10).filter(|w| w == b"0123456789").count();
        count.fetch_add(hits as u64, Ordering::Relaxed);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// A counted test (`-n 8M`) to `port`; the JSON of a successful one.
fn client(port: u16, args: &[&str]) -> common::Finished {
    let mut cmd: Command = sonde();
    let port = port.to_string();
    cmd.args(["perf", "-c", "127.0.0.1", "-p", &port, "-n", "8M", "-J"])
        .args(["--repeating-payload"])
        .args(args);
    run(cmd, b"")
}

fn received(done: &common::Finished) -> u64 {
    let doc: serde_json::Value = serde_json::from_str(&done.stdout_text()).expect("-J output");
    doc["end"]["sum_received"]["bytes"]
        .as_u64()
        .expect("end.sum_received.bytes")
}

#[test]
fn perf_tls_runs_forward_reverse_and_two_streams_encrypted() {
    let dir = TempDir::new("perf-tls");
    let (cert, key) = certificate(&dir, "server", 2020, 2100);
    let (_server, port) = perf_server(&["--tls", "--cert", &cert, "--key", &key]);
    let wire = tap(port);
    let plain = client(wire.port, &[]);
    assert_eq!(plain.code(), Some(0), "plain: {}", plain.stderr);
    let in_plain = wire.seen.swap(0, Ordering::Relaxed);
    assert!(in_plain > 1000, "the tap sees a plain payload ({in_plain})");
    let secure = client(wire.port, &["--tls", "--ca", &cert]);
    assert_eq!(secure.code(), Some(0), "tls: {}", secure.stderr);
    assert!(received(&secure) >= 8 << 20, "{}", secure.stdout_text());
    let in_tls = wire.seen.load(Ordering::Relaxed);
    assert_eq!(in_tls, 0, "payload visible on the wire of a TLS test");
    for extra in [&["-R"][..], &["-P", "2"][..], &["--bidir"][..]] {
        let mut args = vec!["--tls", "--ca", &cert];
        args.extend_from_slice(extra);
        let done = client(port, &args);
        assert_eq!(done.code(), Some(0), "{extra:?}: {}", done.stderr);
        assert!(
            received(&done) >= 8 << 20,
            "{extra:?}: {}",
            done.stdout_text()
        );
    }
}

#[test]
fn a_server_that_does_not_agree_to_tls_is_named() {
    let (_server, port) = perf_server(&[]);
    let done = client(port, &["--tls", "--insecure"]);
    assert_eq!(done.code(), Some(1), "{}", done.stderr);
    assert_contains(&done.stderr, "did not agree to TLS");
    if !have_peer("iperf3", "iperf3") {
        return;
    }
    let port = common::free_port();
    let mut stock = common::perf_program("iperf3");
    let stock = stock
        .args(["-s", "-1", "--forceflush", "-B", "127.0.0.1"])
        .args(["-p", &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("iperf3 -s");
    let _stock_reaper = Reaper::new(stock.id());
    let mut stock = stock;
    common::await_stdout_line(&mut stock, "Server listening", "iperf3");
    let done = client(port, &["--tls", "--insecure"]);
    assert_eq!(done.code(), Some(1), "{}", done.stderr);
    assert_contains(&done.stderr, "did not agree to TLS");
}

#[test]
fn tls_refuses_udp_and_the_kernel_byte_paths() {
    for args in [&["-u"][..], &["-Z"][..], &["--skip-rx-copy"][..]] {
        let mut cmd = sonde();
        cmd.args(["perf", "-c", "127.0.0.1", "--tls", "--insecure"])
            .args(args);
        let done = run(cmd, b"");
        assert_eq!(done.code(), Some(2), "{args:?}: {}", done.stderr);
    }
}
