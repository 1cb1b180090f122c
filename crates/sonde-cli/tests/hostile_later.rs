//! The bar of issue 18 for the servers later issues added: `serve smtp`
//! (its SMTP side and its web side), `serve socks5`, `serve
//! http-proxy`, a listening `relay`, `sonde exporter` and a server's
//! `--metrics` endpoint. Under each hostile load of the harness a
//! well-behaved client does its normal work; afterwards threads,
//! descriptors and memory come back, SIGTERM ends the server with 0, and
//! no panic reaches its stderr (`common::hostile::bar`). And each, run
//! with its descriptors limited and flooded past them, keeps its
//! listener and serves again once they free (`common::hostile::exhausts`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;

use common::hostile::{Load, N, alone, bar, exhausts, limited};
use common::http::get;
use common::{DEADLINE, Listener, assert_contains, run, sonde, start_command, start_sonde};

fn all_loads() -> Vec<Load> {
    Load::all_tcp(N).to_vec()
}

/// `sonde serve echo` on loopback: the destination the proxies, the
/// relay and the exporter's probes reach.
fn echo() -> Listener {
    let args = ["serve", "echo", "--bind", "127.0.0.1", "--port", "0"];
    start_sonde(&args, Stdio::null(), Stdio::null())
}

/// Reads one SMTP reply (its continuation lines too); it must carry `code`.
fn reply(lines: &mut BufReader<TcpStream>, code: &str) {
    loop {
        let mut line = String::new();
        let n = lines.read_line(&mut line).expect("an SMTP reply");
        assert!(n > 0, "the sink closed before {code}");
        assert!(line.starts_with(code), "wanted {code}, got {line:?}");
        if line.as_bytes().get(3) != Some(&b'-') {
            return;
        }
    }
}

/// One message through a whole SMTP session, each reply checked; the
/// sink answers 250 to the data only once the message is stored.
fn one_message(port: u16) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut lines = BufReader::new(conn.try_clone().expect("clone"));
    reply(&mut lines, "220");
    for (say, code) in [
        (&b"EHLO good.example\r\n"[..], "250"),
        (b"MAIL FROM:<good@example.com>\r\n", "250"),
        (b"RCPT TO:<you@example.com>\r\n", "250"),
        (b"DATA\r\n", "354"),
        (
            b"Subject: through the load\r\n\r\nstill here\r\n.\r\n",
            "250",
        ),
        (b"QUIT\r\n", "221"),
    ] {
        conn.write_all(say).expect("a command");
        reply(&mut lines, code);
    }
}

/// `serve smtp` in memory with its web side; the sink.
fn sink() -> common::mail::Sink {
    common::mail::sink(Path::new(":memory:"), &[])
}

#[test]
fn smtp_sink_stores_mail_through_every_load() {
    let _alone = alone();
    let sink = sink();
    bar(sink.server, b"EHLO x\r\n", &all_loads(), one_message);
}

#[test]
fn smtp_web_side_answers_through_every_load() {
    let _alone = alone();
    let sink = sink();
    one_message(sink.server.port);
    // The loads and the good client go to the web side's port.
    let mut server = sink.server;
    server.port = sink.web;
    let lists = |port: u16| {
        let answer = get(port, "/api/v1/messages");
        assert_eq!(answer.status, 200);
        assert_contains(&String::from_utf8_lossy(&answer.body), "through the load");
    };
    bar(
        server,
        b"GET /api/v1/messages HTTP/1.1\r\n",
        &all_loads(),
        lists,
    );
}

/// `sonde connect` through a proxy to `to`: a line out and back.
fn through_proxy(kind: &'static str, to: u16) -> impl Fn(u16) {
    move |port| {
        let mut cmd = sonde();
        cmd.args(["connect", "--proxy", &format!("127.0.0.1:{port}")])
            .args(["--proxy-type", kind, "127.0.0.1", &to.to_string()]);
        let done = run(cmd, b"a line through the proxy\n");
        assert_eq!(done.code(), Some(0), "{kind}: {}", done.stderr);
        assert_eq!(done.stdout_text(), "a line through the proxy\n");
    }
}

fn proxy(service: &str) -> Listener {
    let args = ["serve", service, "--bind", "127.0.0.1", "--port", "0"];
    start_sonde(&args, Stdio::null(), Stdio::null())
}

#[test]
fn socks5_proxy_connects_through_every_load() {
    let _alone = alone();
    let echo = echo();
    let good = through_proxy("socks5", echo.port);
    bar(proxy("socks5"), b"\x05\x01\x00", &all_loads(), good);
    echo.stop();
}

#[test]
fn http_proxy_connects_through_every_load() {
    let _alone = alone();
    let echo = echo();
    let good = through_proxy("http", echo.port);
    bar(proxy("http-proxy"), b"CONNECT ", &all_loads(), good);
    echo.stop();
}

/// 1,000 echo round trips of `sonde rtt` to `port`.
fn round_trips(port: u16) {
    let mut cmd = sonde();
    cmd.args(["rtt", &format!("127.0.0.1:{port}"), "-n", "1000"]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(0), "rtt: {}", done.stderr);
}

#[test]
fn relay_carries_round_trips_through_every_load() {
    let _alone = alone();
    let echo = echo();
    let mut cmd = sonde();
    let to = format!("tcp:127.0.0.1:{}", echo.port);
    cmd.args(["relay", "tcp-listen:127.0.0.1:0", &to])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    bar(start_command(cmd), b"", &all_loads(), round_trips);
    echo.stop();
}

#[test]
fn exporter_probes_through_every_load() {
    let _alone = alone();
    let echo = echo();
    let args = ["exporter", "--listen", "127.0.0.1:0"];
    let exporter = start_sonde(&args, Stdio::null(), Stdio::null());
    let path = format!("/probe?target=127.0.0.1:{}&module=connect", echo.port);
    let probes = |port: u16| {
        let answer = get(port, &path);
        assert_eq!(answer.status, 200);
        assert_contains(&String::from_utf8_lossy(&answer.body), "probe_success 1");
    };
    bar(exporter, b"GET /probe?target=", &all_loads(), probes);
    echo.stop();
}

#[test]
fn metrics_endpoint_answers_through_every_load() {
    let _alone = alone();
    let args = [
        "serve",
        "discard",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--metrics",
        "127.0.0.1:0",
    ];
    let mut server = start_sonde(&args, Stdio::null(), Stdio::null());
    // The loads and the scrapes go to the metrics endpoint.
    server.port = server.metrics_port();
    let scrapes = |port: u16| {
        let answer = get(port, "/metrics");
        assert_eq!(answer.status, 200);
        assert_contains(
            &String::from_utf8_lossy(&answer.body),
            "sonde_connections_accepted_total 0",
        );
    };
    bar(server, b"GET /metrics HTTP/1.1\r\n", &all_loads(), scrapes);
}

/// `sonde serve SERVICE` on loopback under `limited` descriptors.
fn limited_serve(args: &[&str]) -> Option<Listener> {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--bind", "127.0.0.1", "--port", "0"]);
    limited(&all).map(start_command)
}

#[test]
fn smtp_sink_recovers_from_exhaustion() {
    let _alone = alone();
    let args = ["smtp", "--store", ":memory:", "--no-http"];
    if let Some(server) = limited_serve(&args) {
        exhausts(server, one_message);
    }
}

#[test]
fn socks5_proxy_recovers_from_exhaustion() {
    let _alone = alone();
    let echo = echo();
    if let Some(server) = limited_serve(&["socks5"]) {
        exhausts(server, through_proxy("socks5", echo.port));
    }
    echo.stop();
}

#[test]
fn relay_recovers_from_exhaustion() {
    let _alone = alone();
    let echo = echo();
    let to = format!("tcp:127.0.0.1:{}", echo.port);
    if let Some(cmd) = limited(&["relay", "tcp-listen:127.0.0.1:0", &to]) {
        exhausts(start_command(cmd), round_trips);
    }
    echo.stop();
}

#[test]
fn exporter_recovers_from_exhaustion() {
    let _alone = alone();
    let echo = echo();
    let path = format!("/probe?target=127.0.0.1:{}&module=connect", echo.port);
    if let Some(cmd) = limited(&["exporter", "--listen", "127.0.0.1:0"]) {
        exhausts(start_command(cmd), |port| {
            let answer = get(port, &path);
            assert_contains(&String::from_utf8_lossy(&answer.body), "probe_success 1");
        });
    }
    echo.stop();
}
