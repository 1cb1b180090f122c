//! `--metrics` on the servers, scraped: `serve echo` counts connections
//! let in, refused by reason (one over `--max-connections`), open now and
//! the bytes; `perf -s` the tests done, their bytes and a throughput
//! histogram, as Prometheus's text format.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;

use common::http::get;
use common::{Listener, assert_contains, run, sonde, start_sonde};

/// The metrics port the server announced before its address line.
fn metrics_port(server: &Listener) -> u16 {
    let line = server
        .before
        .iter()
        .find(|l| l.contains("metrics on http://"))
        .unwrap_or_else(|| panic!("no metrics line in {:?}", server.before));
    line.trim_end_matches("/metrics")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line}"))
}

fn scrape(port: u16) -> String {
    String::from_utf8_lossy(&get(port, "/metrics").body).into_owned()
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
    let metrics = metrics_port(&server);
    let mut held = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    held.write_all(b"hello\n").expect("send");
    let mut back = [0u8; 6];
    held.read_exact(&mut back).expect("the echo");
    // A second client while the one place is taken: closed at once.
    let mut over = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    let mut rest = Vec::new();
    let _ = over.read_to_end(&mut rest);
    let text = scrape(metrics);
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
