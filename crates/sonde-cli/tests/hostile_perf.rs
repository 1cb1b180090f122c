//! `perf -s` against clients that start a test and then stay silent: they
//! hold no test slot (a good client, sonde's and a stock iperf3's, runs
//! its test while they wait), and each is closed when the parameters'
//! deadline passes; and against tests that ask for more data streams
//! than the server allows across its tests: busy, as iperf3 says it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{have_peer, perf_program, run, sonde};

/// iperf3's PARAM_EXCHANGE state byte.
const PARAM_EXCHANGE: u8 = 9;

/// `sonde perf -s` on loopback with `extra`; the server and its port.
fn perf_server(extra: &[&str]) -> (common::Listener, String) {
    let server = common::perf_server(extra);
    let port = server.port.to_string();
    (server, port)
}

/// A control connection that sends a cookie, reads the server's first
/// state byte, and says nothing more.
fn silent_client(port: &str, n: usize) -> TcpStream {
    let mut conn = TcpStream::connect(format!("127.0.0.1:{port}")).expect("connect");
    let cookie = format!("silentclientsilentclientsilent{n:06}\0");
    assert_eq!(cookie.len(), 37);
    conn.write_all(cookie.as_bytes()).expect("cookie");
    conn.set_read_timeout(Some(common::DEADLINE))
        .expect("timeout");
    let mut state = [0u8];
    conn.read_exact(&mut state).expect("the first state");
    assert_eq!(state[0], PARAM_EXCHANGE);
    conn
}

fn good_test(client: Command) {
    let done = run(client, b"");
    assert_eq!(
        done.code(),
        Some(0),
        "{}{}",
        done.stdout_text(),
        done.stderr
    );
}

#[test]
fn silent_clients_hold_no_test_slot_and_are_closed_by_the_deadline() {
    let (server, port) = perf_server(&["--max-tests", "2"]);
    // Twice the slots, all asked for their parameters.
    let start = Instant::now();
    let mut silent: Vec<TcpStream> = (0..4).map(|n| silent_client(&port, n)).collect();
    let mut client = sonde();
    client.args(["perf", "-c", "127.0.0.1", "-p", &port, "-t", "1"]);
    good_test(client);
    if have_peer("iperf3", "iperf3") {
        let mut iperf3 = perf_program("iperf3");
        iperf3.args(["-c", "127.0.0.1", "-p", &port, "-t", "1"]);
        good_test(iperf3);
    }
    // Each silent one is closed by the server (an end of stream, not our
    // read timeout), about when the 3 s deadline passes.
    for conn in &mut silent {
        let mut rest = Vec::new();
        let got = conn.read_to_end(&mut rest);
        assert!(got.is_ok(), "closed by the server, not timed out: {got:?}");
    }
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(2900),
        "closed after {waited:?}, before the deadline"
    );
    assert!(waited < Duration::from_secs(30), "closed after {waited:?}");
    server.stop();
}

#[test]
fn tests_past_the_servers_stream_cap_hear_busy() {
    let (server, port) = perf_server(&["--max-streams", "4"]);
    // Four streams fit; six do not, and the client hears iperf3's busy.
    let mut fits = sonde();
    fits.args([
        "perf",
        "-c",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "1",
        "-P",
        "2",
        "--bidir",
    ]);
    good_test(fits);
    let mut over = sonde();
    over.args([
        "perf",
        "-c",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "1",
        "-P",
        "3",
        "--bidir",
    ]);
    let done = run(over, b"");
    assert_eq!(done.code(), Some(1), "{}", done.stdout_text());
    common::assert_contains(&done.stderr, "busy");
    if have_peer("iperf3", "iperf3") {
        let mut iperf3 = perf_program("iperf3");
        iperf3.args(["-c", "127.0.0.1", "-p", &port, "-t", "1", "-P", "5"]);
        let done = run(iperf3, b"");
        assert_ne!(done.code(), Some(0));
        let said = format!("{}{}", done.stdout_text(), done.stderr);
        common::assert_contains(&said, "the server is busy running a test");
    }
    // The places came back: four streams run again.
    let mut again = sonde();
    again.args(["perf", "-c", "127.0.0.1", "-p", &port, "-t", "1", "-P", "4"]);
    good_test(again);
    server.stop();
}
