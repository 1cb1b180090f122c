//! `sonde connect -z`: on the same open and closed ports it agrees with
//! OpenBSD's `nc -z` (exit status, and -v's line for an open port word
//! for word); port lists, UDP, JSON, and a bad list as a usage error.

mod common;

use std::net::{TcpListener, UdpSocket};

use common::{assert_contains, free_port, have_peer, run, sonde};
use serde_json::Value;

fn zero(args: &[&str]) -> common::Finished {
    let mut cmd = sonde();
    cmd.args(["connect", "-z"]).args(args);
    run(cmd, b"")
}

#[test]
fn open_and_closed_ports_as_nc_says_them() {
    let open = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = open.local_addr().expect("addr").port().to_string();
    let closed = free_port().to_string();
    let yes = zero(&["-v", "127.0.0.1", &port]);
    assert_eq!(yes.code(), Some(0), "{}", yes.stderr);
    assert_contains(
        &yes.stderr,
        &format!("Connection to 127.0.0.1 {port} port [tcp/"),
    );
    let no = zero(&["-v", "-w", "1", "127.0.0.1", &closed]);
    assert_eq!(no.code(), Some(1), "{}", no.stderr);
    assert_contains(
        &no.stderr,
        &format!("connect to 127.0.0.1 port {closed} (tcp) failed: connection refused"),
    );
    if have_peer("nc.openbsd", "netcat-openbsd") {
        for (p, want) in [(&port, 0), (&closed, 1)] {
            let mut nc = std::process::Command::new("nc.openbsd");
            nc.args(["-z", "-v", "-w", "1", "127.0.0.1", p]);
            let theirs = run(nc, b"");
            assert_eq!(theirs.code(), Some(want), "nc on {p}: {}", theirs.stderr);
        }
        let mut nc = std::process::Command::new("nc.openbsd");
        nc.args(["-z", "-v", "127.0.0.1", &port]);
        let theirs = run(nc, b"");
        let line = |text: &str| {
            text.lines()
                .find(|l| l.starts_with("Connection to"))
                .map(str::to_string)
        };
        assert_eq!(
            line(&yes.stderr),
            line(&theirs.stderr),
            "the same line as nc's"
        );
    }
    // Quiet without -v, as nc.
    assert_eq!(zero(&["127.0.0.1", &port]).stderr, "");
}

#[test]
fn a_list_is_open_only_when_every_port_is() {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind");
    let (pa, pb) = (
        a.local_addr().expect("a").port(),
        b.local_addr().expect("b").port(),
    );
    let closed = free_port();
    let both = zero(&["127.0.0.1", &format!("{pa},{pb}")]);
    assert_eq!(both.code(), Some(0), "{}", both.stderr);
    // Or as separate arguments, as OpenBSD nc takes them.
    let apart = zero(&["127.0.0.1", &pa.to_string(), &closed.to_string()]);
    assert_eq!(apart.code(), Some(1), "{}", apart.stderr);
    let mixed = zero(&["--json", "127.0.0.1", &format!("{pa},{closed},{pb}")]);
    assert_eq!(mixed.code(), Some(1), "{}", mixed.stderr);
    let doc: Value = serde_json::from_slice(&mixed.stdout).expect("json");
    let states: Vec<(u64, &str)> = doc["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["port"].as_u64().unwrap_or(0),
                p["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (u64::from(pa), "open"),
            (u64::from(closed), "closed"),
            (u64::from(pb), "open")
        ]
    );
    assert_eq!(
        (doc["open"].as_u64(), doc["closed"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(doc["ports"][0]["took"].as_f64().is_some_and(|t| t >= 0.0));
    // A range of closed ports, all tried (64 at a time).
    let low = free_port();
    let range = format!("{low}-{}", low.saturating_add(99));
    let many = zero(&["--json", "-w", "2", "127.0.0.1", &range]);
    let doc: Value = serde_json::from_slice(&many.stdout).expect("json");
    assert!(
        doc["ports"].as_array().is_some_and(|p| p.len() >= 50),
        "{doc}"
    );
}

#[test]
fn udp_ports_answer_or_refuse() {
    let open = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = open.local_addr().expect("addr").port().to_string();
    let yes = zero(&["-u", "-v", "-w", "1", "127.0.0.1", &port]);
    assert_eq!(yes.code(), Some(0), "{}", yes.stderr);
    assert_contains(
        &yes.stderr,
        &format!("Connection to 127.0.0.1 {port} port [udp/"),
    );
    let mut buf = [0u8; 8];
    let (n, _) = open.recv_from(&mut buf).expect("nc's probe arrived");
    assert_eq!(&buf[..n], b"X");
    drop(open);
    let no = zero(&["-u", "-w", "1", "127.0.0.1", &port]);
    assert_eq!(
        no.code(),
        Some(1),
        "a refusal (ICMP port unreachable): {}",
        no.stderr
    );
}

#[test]
fn a_bad_port_list_is_a_usage_error() {
    for bad in ["25-20", "0", "22,,80", "http"] {
        let done = zero(&["127.0.0.1", bad]);
        assert_eq!(done.code(), Some(2), "{bad}: {}", done.stderr);
        assert_contains(&done.stderr, "port list");
    }
    let mut cmd = sonde();
    cmd.args(["connect", "127.0.0.1", "20-25"]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(2), "a list without -z: {}", done.stderr);
}

/// OpenBSD nc's `-i SECS` with `-z`: one port at a time, that far apart.
#[test]
fn i_spaces_the_ports_out() {
    let low = free_port();
    let range = format!("{low}-{}", low.saturating_add(2));
    let since = std::time::Instant::now();
    let done = zero(&["--json", "-i", "0.2", "-w", "1", "127.0.0.1", &range]);
    let doc: Value = serde_json::from_slice(&done.stdout).expect("json");
    assert_eq!(doc["ports"].as_array().map(Vec::len), Some(3), "{doc}");
    assert!(since.elapsed() >= std::time::Duration::from_millis(400));
}
