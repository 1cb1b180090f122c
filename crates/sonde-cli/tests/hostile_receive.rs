//! `receive -k` against a sender that drips: never silent for the
//! `--timeout`, it is still dropped when a window closes under
//! `--min-rate`, and a good sender then gets the place it held.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{TempDir, run, sonde};
use sonde::transfer::wire;

/// Whether the receiver has closed (or reset) the connection, without
/// waiting: anything it said first is read past.
fn closed_by_peer(conn: &mut TcpStream) -> bool {
    conn.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 4096];
    let closed = loop {
        match conn.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    conn.set_nonblocking(false).expect("blocking");
    closed
}

#[test]
fn a_dripping_sender_is_dropped_under_the_min_rate() {
    let dst = TempDir::new("drip-dst");
    let recv = common::receiver(
        &dst,
        &[
            "-k",
            "--max-transfers",
            "1",
            "--timeout",
            "2",
            "--min-rate",
            "1K",
        ],
    );
    let mut drip = TcpStream::connect(("127.0.0.1", recv.port)).expect("connect");
    drip.write_all(&wire::hello()).expect("hello");
    let mut theirs = [0; wire::HELLO_LEN];
    drip.read_exact(&mut theirs).expect("their hello");
    // Its offer whole (the front door reads that before the transfer
    // takes its place), then a directory's frame one byte every 300 ms:
    // never 2 s of silence.
    let offer = wire::encode(&wire::Message::Offer {
        files: 0,
        dirs: 1,
        bytes: 0,
    });
    drip.write_all(&offer).expect("the offer");
    let mut accept = [0u8; 64];
    let _ = drip.read(&mut accept).expect("the receiver's accept");
    let dir = wire::encode(&wire::Message::Dir {
        path: "d".repeat(200),
        mode: 0o755,
        mtime: None,
    });
    let start = Instant::now();
    let mut dropped = false;
    for byte in dir.iter().take(200) {
        if drip.write_all(&[*byte]).is_err() {
            dropped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        if closed_by_peer(&mut drip) {
            dropped = true;
            break;
        }
    }
    let took = start.elapsed();
    assert!(dropped, "the dripping sender was never dropped");
    assert!(took >= Duration::from_secs(2), "dropped after {took:?}");
    // The place is free again: a good sender gets through.
    let src = TempDir::new("drip-src");
    let file = src.join("good.bin");
    std::fs::write(&file, common::random_bytes(1 << 20, 5)).expect("source");
    let mut cmd = sonde();
    cmd.args(["send", file.to_str().expect("utf-8")])
        .arg(format!("127.0.0.1:{}", recv.port));
    let sent = run(cmd, b"");
    assert_eq!(sent.code(), Some(0), "{}", sent.stderr);
    let pid = rustix::process::Pid::from_raw(recv.child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("stop");
    let done = recv.finish();
    common::assert_contains(&done.stderr, "under --min-rate");
    assert!(
        std::fs::read(dst.join("good.bin")).expect("arrived") == std::fs::read(&file).expect("src")
    );
}

/// A sender turned away while every transfer place is taken hears why,
/// after the one hello it is owed (the soak once saw a second hello read
/// as a frame of 1,936,682,596 bytes: "sond").
#[test]
fn a_sender_past_max_transfers_is_told_the_receiver_is_busy() {
    let dst = TempDir::new("busy-dst");
    let recv = common::receiver(&dst, &["-k", "--max-transfers", "1", "--timeout", "20"]);
    let mut held = TcpStream::connect(("127.0.0.1", recv.port)).expect("connect");
    held.write_all(&wire::hello()).expect("hello");
    let mut theirs = [0; wire::HELLO_LEN];
    held.read_exact(&mut theirs).expect("their hello");
    held.write_all(&wire::encode(&wire::Message::Offer {
        files: 0,
        dirs: 1,
        bytes: 0,
    }))
    .expect("the offer");
    // The accept says the session has its place.
    let mut accept = [0u8; 64];
    let _ = held.read(&mut accept).expect("the receiver's accept");
    let src = TempDir::new("busy-src");
    let file = src.join("turned-away.bin");
    std::fs::write(&file, b"not now").expect("source");
    let mut cmd = sonde();
    cmd.args(["send", file.to_str().expect("utf-8")])
        .arg(format!("127.0.0.1:{}", recv.port));
    let sent = run(cmd, b"");
    assert_eq!(sent.code(), Some(4), "refused: {}", sent.stderr);
    common::assert_contains(&sent.stderr, "busy with other transfers");
    drop(held);
    let pid = rustix::process::Pid::from_raw(recv.child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("stop");
    recv.finish();
}
