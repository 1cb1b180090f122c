//! The bar (issue 18) for the servers that are not `serve` TCP services:
//! `perf -s`, `receive -k` and `listen -k` under every TCP load of the
//! harness (and perf -s under a UDP flood too, as it reads UDP tests),
//! and the UDP services (`serve echo -u`, `sockperf -u`, `discard -u`)
//! under a flood of malformed datagrams. Each good client does its
//! normal work under each load; afterwards the server's threads,
//! descriptors and memory come back, SIGTERM ends it with 0, and no
//! panic reaches its stderr.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::hostile::{Load, N, alone, bar};
use common::{Listener, TempDir, run, sonde, start_sonde};

fn all_loads() -> Vec<Load> {
    Load::all_tcp(N).to_vec()
}

#[test]
fn perf_server_runs_tests_through_every_load() {
    let _alone = alone();
    let server = common::perf_server(&[]);
    let test_runs = |port: u16| {
        let mut cmd = sonde();
        cmd.args(["perf", "-c", "127.0.0.1", "-p", &port.to_string()])
            .args(["-t", "1"]);
        let done = run(cmd, b"");
        assert_eq!(
            done.code(),
            Some(0),
            "perf: {}{}",
            done.stdout_text(),
            done.stderr
        );
    };
    let cookie = b"hostilehostilehostilehostilehostile1\0";
    let mut loads = all_loads();
    loads.push(Load::UdpFlood);
    bar(server, cookie, &loads, test_runs);
}

#[test]
fn receive_k_takes_transfers_through_every_load() {
    let _alone = alone();
    let dst = TempDir::new("bar-receive");
    let src = TempDir::new("bar-receive-src");
    let file = src.join("good.bin");
    let data = common::random_bytes(8 << 20, 11);
    std::fs::write(&file, &data).expect("source");
    let server = common::receiver(&dst, &["-k", "--overwrite"]);
    let sends = |port: u16| {
        let mut cmd = sonde();
        cmd.arg("send").arg(&file).arg(format!("127.0.0.1:{port}"));
        let done = run(cmd, b"");
        assert_eq!(done.code(), Some(0), "send: {}", done.stderr);
        assert!(std::fs::read(dst.join("good.bin")).expect("arrived") == data);
    };
    bar(server, &sonde::transfer::wire::hello(), &all_loads(), sends);
}

/// Counts `needle` in what comes out of `pipe`, as it comes, without
/// keeping it (the loads' junk runs to gigabytes).
fn count_in(mut pipe: std::io::PipeReader, needle: &'static [u8]) -> Arc<AtomicUsize> {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        // The end of the last read, so a needle across two reads counts.
        let mut carry: Vec<u8> = Vec::new();
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            carry.extend_from_slice(&buf[..n]);
            // memchr's search (built optimised even in test builds): the
            // loads push hundreds of megabytes through here, and a byte
            // by byte scan in a debug build fell behind the server.
            let found = memchr::memmem::find_iter(&carry, needle).count();
            counter.fetch_add(found, Ordering::SeqCst);
            let keep = carry.len().min(needle.len() - 1);
            carry.drain(..carry.len() - keep);
        }
    });
    seen
}

#[test]
fn listen_k_takes_a_line_through_every_load() {
    let _alone = alone();
    // listen -k's stdout carries every client's bytes, the loads' junk
    // too; the test counts the good lines in it as they pass.
    let (reader, writer) = std::io::pipe().expect("a pipe");
    let server = start_sonde(
        &["listen", "-k", "127.0.0.1:0", "--max-conns", "500"],
        Stdio::null(),
        Stdio::from(writer),
    );
    let lines = count_in(reader, b"a good line\n");
    // A line is through when listen -k has written it out.
    let a_line = |port: u16| {
        let before = lines.load(Ordering::SeqCst);
        let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        conn.write_all(b"a good line\n").expect("a line");
        let began = Instant::now();
        while lines.load(Ordering::SeqCst) == before {
            assert!(
                began.elapsed() < common::DEADLINE,
                "the good line never came out"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    bar(server, b"", &all_loads(), a_line);
    // One before the loads, one under each, one after.
    assert_eq!(
        lines.load(Ordering::SeqCst),
        all_loads().len() + 2,
        "good lines lost"
    );
}

fn udp_serve(service: &str) -> Listener {
    start_sonde(
        &["serve", service, "-u", "--bind", "127.0.0.1", "--port", "0"],
        Stdio::null(),
        Stdio::null(),
    )
}

/// 1,000 UDP round trips of sonde rtt (`extra`: its mode flags): all
/// answered with no load, at least 95% under a flood that shares the
/// server's socket (the flood's datagrams and the good client's queue in
/// the same receive buffer; where it overflows, the kernel drops).
fn udp_round_trips(extra: &'static [&'static str]) -> impl Fn(u16) {
    move |port| {
        let mut cmd = sonde();
        cmd.args(["rtt", &format!("127.0.0.1:{port}"), "-n", "1000"])
            .args(["--timeout", "0.2", "--json"])
            .args(extra);
        let done = run(cmd, b"");
        assert_eq!(done.code(), Some(0), "rtt: {}", done.stderr);
        let report: serde_json::Value = serde_json::from_slice(&done.stdout).expect("rtt's JSON");
        let lost = report["lost"].as_u64().expect("a lost count");
        assert!(lost <= 50, "{lost} of 1,000 lost: {report}");
    }
}

#[test]
fn udp_echo_answers_through_a_flood() {
    let _alone = alone();
    bar(
        udp_serve("echo"),
        b"",
        &[Load::UdpFlood],
        udp_round_trips(&["-u"]),
    );
}

#[test]
fn udp_sockperf_answers_through_a_flood() {
    let _alone = alone();
    bar(
        udp_serve("sockperf"),
        b"",
        &[Load::UdpFlood],
        udp_round_trips(&["--sockperf"]),
    );
}

#[test]
fn udp_discard_reads_through_a_flood() {
    let _alone = alone();
    // Discard answers nothing, so what shows it still reads is its count
    // at the end: at least every good datagram (the flood's add to it).
    let sent = AtomicUsize::new(0);
    let sends = |port: u16| {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("a socket");
        for i in 0..1000u32 {
            sock.send_to(&i.to_be_bytes(), ("127.0.0.1", port))
                .expect("a datagram");
            sent.fetch_add(1, Ordering::SeqCst);
            // At a pace the receive buffer holds: 50 at a time.
            if i % 50 == 49 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    };
    let done = bar(udp_serve("discard"), b"", &[Load::UdpFlood], sends);
    // "sonde: 605 datagrams, 60,500 bytes (59.1 KiB) in, 0 bytes out"
    let counted: usize = done
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("sonde: ")?.split_once(" datagrams"))
        .and_then(|(n, _)| n.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("no count in {}", done.stderr));
    let sent = sent.load(Ordering::SeqCst);
    assert!(
        counted >= sent,
        "counted {counted} of {sent} good datagrams"
    );
}
