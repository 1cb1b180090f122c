//! `--metrics` on the servers, scraped: `serve echo` counts connections
//! let in, refused by reason (one over `--max-connections`), open now and
//! the bytes; `perf -s` the tests done, their bytes and a throughput
//! histogram; `receive -k` its transfers, `relay` its relays and
//! `listen -k` its clients, each by result, as Prometheus's text format.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::http::get;
use common::{DEADLINE, TempDir, assert_contains, run, sonde, start_sonde};

/// The endpoint's text; every series in it is one the README's table
/// names.
fn scrape(port: u16) -> String {
    let text = String::from_utf8_lossy(&get(port, "/metrics").body).into_owned();
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .expect("README");
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("a name and a type");
        let shown = if kind == "counter" {
            format!("`{name}_total`")
        } else {
            format!("`{name}")
        };
        assert!(
            readme.contains(&shown),
            "README's --metrics table lacks {shown}"
        );
    }
    text
}

#[test]
fn serve_counts_connections_refusals_and_bytes() {
    let server = start_sonde(
        &[
            "serve",
            "echo",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--max-connections",
            "1",
            "--metrics",
            "127.0.0.1:0",
        ],
        Stdio::null(),
        Stdio::null(),
    );
    let metrics = server.metrics_port();
    let mut held = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    held.write_all(b"hello\n").expect("send");
    let mut back = [0u8; 6];
    held.read_exact(&mut back).expect("the echo");
    // A second client while the one place is taken: closed at once.
    let mut over = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    let mut rest = Vec::new();
    let _ = over.read_to_end(&mut rest);
    // The echo's bytes are counted once its write returns, which may be
    // a moment after the client has read them.
    let text = scrape_until(metrics, "sonde_sent_bytes_total 6");
    for line in [
        "sonde_connections_accepted_total 1",
        "sonde_connections_refused_total{reason=\"full\"} 1",
        "sonde_connections_refused_total{reason=\"denied\"} 0",
        "sonde_connections_active 1",
        "sonde_received_bytes_total 6",
        "sonde_sent_bytes_total 6",
        "# TYPE sonde_connections_accepted counter",
    ] {
        assert_contains(&text, line);
    }
    server.stop();
}

#[test]
fn perf_server_counts_tests_and_throughput() {
    // perf -s says where its metrics are before its banner, which the
    // helper waits for: the port is chosen here.
    let metrics = common::free_port();
    let server = common::perf_server(&["--metrics", &format!("127.0.0.1:{metrics}")]);
    let mut cmd = sonde();
    cmd.args([
        "perf",
        "-c",
        "127.0.0.1",
        "-p",
        &server.port.to_string(),
        "-t",
        "1",
    ]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let text = scrape(metrics);
    assert_contains(&text, "sonde_perf_tests_total{result=\"done\"} 1");
    assert_contains(&text, "sonde_perf_test_bits_per_second_count 1");
    let received: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("sonde_perf_received_bytes_total ")?
                .parse()
                .ok()
        })
        .expect("received bytes");
    assert!(received > 0.0, "{text}");
    server.stop();
}

/// Scrapes until `line` is there (the server counts an ending a moment
/// after its client has gone); the whole text.
fn scrape_until(port: u16, line: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = scrape(port);
        if text.contains(line) {
            return text;
        }
        assert!(Instant::now() < deadline, "no {line:?} in {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn receive_counts_transfers_by_result_and_bytes() {
    let (dir, from) = (TempDir::new("metrics-recv"), TempDir::new("metrics-send"));
    let file = from.0.join("file.bin");
    std::fs::write(&file, vec![7u8; 100_000]).expect("write the file");
    let server = common::receiver(&dir, &["--keep-open", "--metrics", "127.0.0.1:0"]);
    let metrics = server.metrics_port();
    assert_contains(
        &scrape(metrics),
        "sonde_receive_transfers_total{result=\"done\"} 0",
    );
    let mut cmd = sonde();
    cmd.arg("send")
        .arg(&file)
        .arg(format!("127.0.0.1:{}", server.port));
    let sent = run(cmd, b"");
    assert_eq!(sent.code(), Some(0), "{}", sent.stderr);
    let text = scrape_until(metrics, "sonde_receive_transfers_total{result=\"done\"} 1");
    for line in [
        "sonde_receive_transfers_total{result=\"failed\"} 0",
        "sonde_receive_received_bytes_total 100000",
        "sonde_connections_accepted_total 1",
    ] {
        assert_contains(&text, line);
    }
    server.stop();
}

/// A server that echoes one client's bytes until it half-closes.
fn echo_once() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut back = conn.try_clone().expect("clone");
        let _ = std::io::copy(&mut conn, &mut back);
    });
    port
}

/// Sends `line`, half-closes and reads to the end: what came back.
fn exchange(port: u16, line: &[u8]) -> Vec<u8> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.write_all(line).expect("send");
    conn.shutdown(Shutdown::Write).expect("half-close");
    let mut back = Vec::new();
    conn.read_to_end(&mut back).expect("read the rest");
    back
}

#[test]
fn relay_counts_relays_and_bytes_both_ways() {
    let to = format!("tcp:127.0.0.1:{}", echo_once());
    let mut cmd = sonde();
    cmd.args([
        "relay",
        "tcp-listen:127.0.0.1:0",
        &to,
        "--metrics",
        "127.0.0.1:0",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    let server = common::start_command(cmd);
    let metrics = server.metrics_port();
    assert_eq!(exchange(server.port, b"hello\n"), b"hello\n");
    let text = scrape_until(metrics, "sonde_relay_relays_total{result=\"closed\"} 1");
    for line in [
        "sonde_relay_relays_total{result=\"failed\"} 0",
        "sonde_relay_received_bytes_total 6",
        "sonde_relay_sent_bytes_total 6",
        "sonde_connections_accepted_total 1",
    ] {
        assert_contains(&text, line);
    }
    server.stop();
}

#[test]
fn listen_k_counts_its_clients() {
    let args = ["-k", "127.0.0.1:0", "--metrics", "127.0.0.1:0"];
    let server = common::start_listener(&args, Stdio::null(), Stdio::null());
    let metrics = server.metrics_port();
    for _ in 0..2 {
        exchange(server.port, b"a line\n");
    }
    let text = scrape_until(metrics, "sonde_listen_clients_total{result=\"closed\"} 2");
    assert_contains(&text, "sonde_listen_clients_total{result=\"dropped\"} 0");
    assert_contains(&text, "sonde_connections_accepted_total 2");
    server.stop();
}

#[test]
fn metrics_where_nothing_serves_many_is_a_usage_error() {
    for args in [
        &["listen", "127.0.0.1:0", "--metrics", "0"][..],
        &["listen", "-u", "-k", "127.0.0.1:0", "--metrics", "0"],
        &["relay", "-", "tcp:127.0.0.1:9", "--metrics", "0"],
        &["perf", "-c", "127.0.0.1", "--metrics", "0"],
    ] {
        let mut cmd = sonde();
        cmd.args(args);
        let done = run(cmd, b"");
        assert_eq!(done.code(), Some(2), "{args:?}: {}", done.stderr);
        assert_contains(&done.stderr, "--metrics");
    }
}

#[test]
fn perf_s_on_a_unix_socket_counts_its_tests() {
    let metrics = common::free_port();
    let name = format!("@sonde-test-metrics-{}", std::process::id());
    let on = format!("127.0.0.1:{metrics}");
    let mut cmd = sonde();
    cmd.args(["perf", "-s", "-U", &name, "--metrics", &on])
        .stdin(Stdio::null());
    let (mut child, mut reaper, line) =
        common::spawn_ready(cmd, |l| l.contains("Server listening on unix:"));
    assert!(line.is_some(), "perf -s -U did not listen");
    let mut client = sonde();
    client.args(["perf", "-U", &name, "-n", "1M"]);
    let done = run(client, b"");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let text = scrape_until(metrics, "sonde_perf_tests_total{result=\"done\"} 1");
    assert_contains(&text, "sonde_perf_received_bytes_total 1048576");
    assert_contains(&text, "sonde_perf_test_bits_per_second_count 1");
    let _ = child.kill();
    let _ = child.wait();
    reaper.disarm();
}
