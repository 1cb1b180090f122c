//! Access control at the front door, through the binary: `--allow` and
//! `--deny` with IPv4 and IPv6 loopback addresses (127.0.0.2 is loopback
//! too, and an IPv4 client of a dual-stack socket is itself, not
//! `::ffff:`), `--max-per-ip`, `--accept-rate`, refusals reported once per
//! interval under a flood, and every server taking the same flags: `perf
//! -s` (iperf3's access denied), `listen -k`, `receive` and UDP `serve`.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Listener, TempDir, have_peer, perf_program, run, sonde, start_sonde};

const PATIENCE: Duration = Duration::from_secs(10);

/// A connection to `port` from the source address `from` (dual-stack
/// server on `::`: the destination is the source's own loopback).
fn connect_from(from: &str, port: u16) -> TcpStream {
    let from: IpAddr = from.parse().expect("an address");
    let domain = if from.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, None).expect("socket");
    sock.bind(&SocketAddr::new(from, 0).into())
        .expect("bind the source");
    let to = match from {
        IpAddr::V4(_) => SocketAddr::from(([127, 0, 0, 1], port)),
        IpAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
    };
    sock.connect(&to.into()).expect("connect");
    let stream: TcpStream = sock.into();
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream
}

/// Whether an echo server answers `from`: `true` when "hi" comes back,
/// `false` when the connection is closed without a byte.
fn echoed(from: &str, port: u16) -> bool {
    let mut s = connect_from(from, port);
    // A refused connection may be closed before this write lands.
    let _ = s.write_all(b"hi");
    let mut got = [0u8; 2];
    match s.read(&mut got) {
        Ok(2) => &got == b"hi",
        Ok(0) | Err(_) => false,
        Ok(n) => panic!("{n} bytes of an echo of 2"),
    }
}

fn serve_echo(extra: &[&str]) -> Listener {
    let mut args = vec!["serve", "echo", "--bind", "::", "--port", "0"];
    args.extend(extra);
    start_sonde(&args, Stdio::null(), Stdio::piped())
}

/// Stops a server with SIGINT and returns its stderr.
fn stop(server: Listener) -> String {
    let pid = rustix::process::Pid::from_raw(server.child.id() as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    let done = server.finish();
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    done.stderr
}

#[test]
fn deny_wins_over_allow_for_ipv4_and_ipv6() {
    let server = serve_echo(&[
        "--allow",
        "127.0.0.0/8",
        "--allow",
        "::1",
        "--deny",
        "127.0.0.2",
    ]);
    let port = server.port;
    assert!(echoed("127.0.0.1", port), "127.0.0.1 is allowed");
    assert!(echoed("::1", port), "::1 is allowed");
    assert!(!echoed("127.0.0.2", port), "127.0.0.2 is denied");
    let stderr = stop(server);
    common::assert_contains(&stderr, "(1 refused,");
    common::assert_contains(&stderr, "from 127.0.0.2");
    common::assert_contains(&stderr, "in a --deny block");
}

#[test]
fn an_allow_list_refuses_everyone_else_and_mapped_blocks_are_ipv4() {
    let server = serve_echo(&["--allow", "::1", "--deny", "::ffff:127.0.0.3/128"]);
    let port = server.port;
    assert!(echoed("::1", port));
    assert!(!echoed("127.0.0.1", port), "not in --allow");
    let stderr = stop(server);
    common::assert_contains(&stderr, "not in an --allow block");
    let server = serve_echo(&["--deny", "::ffff:127.0.0.3/128"]);
    assert!(
        !echoed("127.0.0.3", server.port),
        "::ffff:127.0.0.3 is 127.0.0.3"
    );
    assert!(echoed("127.0.0.1", server.port));
    stop(server);
}

#[test]
fn the_per_ip_cap_leaves_room_for_other_addresses() {
    let server = serve_echo(&["--max-per-ip", "2"]);
    let port = server.port;
    let mut held = vec![
        connect_from("127.0.0.1", port),
        connect_from("127.0.0.1", port),
    ];
    for s in &mut held {
        s.write_all(b"hi").expect("write");
        let mut got = [0u8; 2];
        s.read_exact(&mut got).expect("held connections are served");
    }
    assert!(!echoed("127.0.0.1", port), "a third from 127.0.0.1");
    assert!(echoed("127.0.0.2", port), "another address has its own cap");
    drop(held);
    // The places come back when the connections close.
    let start = Instant::now();
    while !echoed("127.0.0.1", port) {
        assert!(start.elapsed() < PATIENCE, "places never given back");
    }
    let stderr = stop(server);
    common::assert_contains(&stderr, "over --max-per-ip 2");
}

#[test]
fn the_accept_rate_is_a_bucket_per_source() {
    let server = serve_echo(&["--accept-rate", "5/s"]);
    let port = server.port;
    let start = Instant::now();
    let served = (0..30).filter(|_| echoed("127.0.0.1", port)).count();
    let secs = start.elapsed().as_secs_f64();
    // A second's worth at once, then five a second.
    let most = 5 + (secs * 5.0).ceil() as usize;
    assert!(
        (5..=most).contains(&served),
        "{served} of 30 served in {secs:.2} s"
    );
    assert!(
        echoed("127.0.0.2", port),
        "another source has its own bucket"
    );
    let stderr = stop(server);
    common::assert_contains(&stderr, "over --accept-rate 5/s");
}

/// Lines of stderr that report refusals, and the connections they count.
fn reports(stderr: &str) -> (usize, u64) {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(": refused "))
        .collect();
    let counted = lines
        .iter()
        .filter_map(|l| l.split(": refused ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|n| n.replace(',', "").parse::<u64>().ok())
        .sum();
    (lines.len(), counted)
}

#[test]
fn a_flood_of_refusals_is_reported_once_per_interval() {
    let server = serve_echo(&["--deny", "127.0.0.1", "--report-refusals", "0.5"]);
    let port = server.port;
    let start = Instant::now();
    let flood = 2000;
    for _ in 0..flood {
        let mut s = connect_from("127.0.0.1", port);
        let mut byte = [0u8; 1];
        let _ = s.read(&mut byte);
    }
    let secs = start.elapsed().as_secs_f64();
    let stderr = stop(server);
    let (lines, counted) = reports(&stderr);
    // One line per half second of the flood, and one at the end.
    let most = (secs / 0.5).ceil() as usize + 2;
    assert!(
        (1..=most).contains(&lines),
        "{lines} report lines for a {secs:.2} s flood:\n{stderr}"
    );
    assert_eq!(counted, flood, "{stderr}");
    common::assert_contains(&stderr, "(2,000 refused,");
}

#[test]
fn perf_refuses_with_iperf3s_access_denied() {
    let mut cmd = sonde();
    cmd.args([
        "perf",
        "-s",
        "-B",
        "127.0.0.1",
        "-p",
        "0",
        "--deny",
        "127.0.0.1",
    ]);
    let server = common::start_perf_server(cmd);
    let port = server.port.to_string();
    let mut client = sonde();
    client.args(["perf", "-c", "127.0.0.1", "-p", &port, "-t", "1"]);
    let done = run(client, b"");
    assert_eq!(done.code(), Some(1), "{}", done.stderr);
    common::assert_contains(&done.stderr, "busy");
    if have_peer("iperf3", "iperf3") {
        let mut iperf3 = perf_program("iperf3");
        iperf3.args(["-c", "127.0.0.1", "-p", &port, "-t", "1"]);
        let done = run(iperf3, b"");
        assert_ne!(done.code(), Some(0));
        let said = format!("{}{}", done.stdout_text(), done.stderr);
        common::assert_contains(&said, "the server is busy running a test");
    }
    server.stop();
}

#[test]
fn listen_and_receive_take_the_same_flags() {
    let listen = start_sonde(
        &["listen", "-k", "0", "--deny", "127.0.0.1"],
        Stdio::piped(),
        Stdio::piped(),
    );
    let mut s = connect_from("127.0.0.1", listen.port);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(got.is_empty());
    drop(listen);
    let dir = TempDir::new("access-receive");
    let receive = start_sonde(
        &[
            "receive",
            dir.0.to_str().expect("a UTF-8 path"),
            "--port",
            "0",
            "--deny",
            "127.0.0.0/8",
        ],
        Stdio::null(),
        Stdio::piped(),
    );
    let from = TempDir::new("access-send");
    let file = from.join("hello.txt");
    std::fs::write(&file, b"hello").expect("write");
    let mut send = sonde();
    let target = format!("127.0.0.1:{}", receive.port);
    send.args(["send", file.to_str().expect("a UTF-8 path"), &target]);
    let done = run(send, b"");
    assert_ne!(done.code(), Some(0));
    common::assert_contains(&done.stderr, "access rules");
    assert_eq!(std::fs::read_dir(&dir.0).expect("dir").count(), 0);
}

#[test]
fn a_udp_service_drops_datagrams_from_denied_sources() {
    let mut cmd = sonde();
    cmd.args([
        "serve",
        "echo",
        "-u",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--deny",
        "127.0.0.2",
    ]);
    cmd.stdout(Stdio::piped()).stdin(Stdio::null());
    let server = common::start_command(cmd);
    let to = SocketAddr::from(([127, 0, 0, 1], server.port));
    let ask = |from: [u8; 4]| {
        let sock = UdpSocket::bind(SocketAddr::from((from, 0))).expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        sock.send_to(b"hi", to).expect("send");
        let mut got = [0u8; 8];
        sock.recv(&mut got).ok()
    };
    assert_eq!(ask([127, 0, 0, 1]), Some(2));
    // No answer is the answer: the echo drops it (and counts it).
    assert_eq!(ask([127, 0, 0, 2]), None);
    let stderr = stop(server);
    common::assert_contains(&stderr, "refused 1 datagram from 127.0.0.2");
}
