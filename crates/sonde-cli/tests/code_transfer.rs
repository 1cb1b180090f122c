//! `send --code` to `receive --code`: the printed code carries a file
//! byte-exact; a wrong code fails both ends with nothing written, and the
//! receiver gives up after its attempts; a byte of ciphertext flipped on
//! the way is refused (exit 3, nothing in place); a plain sender is told.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{
    Finished, Listener, TempDir, assert_contains, random_bytes, run, sonde, start_command,
};

const CODE: &str = "7-acorn-actor-sunset";

/// `sonde receive DIR --code ARGS...` on loopback.
fn code_receiver(dir: &Path, args: &[&str]) -> Listener {
    let mut cmd = sonde();
    cmd.arg("receive")
        .arg(dir)
        .args(["--bind", "127.0.0.1", "--port", "0", "--code"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    start_command(cmd)
}

fn send(path: &Path, port: u16, args: &[&str]) -> Finished {
    let mut cmd: Command = sonde();
    cmd.arg("send")
        .arg(path)
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .env_remove("SONDE_CODE");
    run(cmd, b"")
}

/// The code a receiver printed before its banner.
fn printed_code(listener: &Listener) -> String {
    let line = listener
        .before
        .iter()
        .find(|l| l.starts_with("sonde: code "))
        .unwrap_or_else(|| panic!("no code in {:?}", listener.before));
    line.split_whitespace()
        .nth(2)
        .expect("the code")
        .to_string()
}

#[test]
fn the_printed_code_carries_a_file_byte_exact() {
    let src = TempDir::new("code-src");
    let dst = TempDir::new("code-dst");
    let data = random_bytes(64 << 20, 23);
    let file = src.join("big.bin");
    fs::write(&file, &data).expect("writing the source");
    let recv = code_receiver(&dst.0, &[]);
    let code = printed_code(&recv);
    let sent = send(&file, recv.port, &["--code", &code]);
    let got = recv.finish();
    assert_eq!(sent.code(), Some(0), "send: {}", sent.stderr);
    assert_eq!(got.code(), Some(0), "receive: {}", got.stderr);
    assert!(fs::read(dst.join("big.bin")).expect("received") == data);
}

#[test]
fn wrong_codes_fail_both_ends_and_the_receiver_gives_up() {
    let src = TempDir::new("code-wrong-src");
    let dst = TempDir::new("code-wrong-dst");
    let file = src.join("note.txt");
    fs::write(&file, b"secret").expect("writing the source");
    let recv = code_receiver(&dst.0, &[CODE, "--code-attempts", "2"]);
    let plain = send(&file, recv.port, &[]);
    assert_eq!(plain.code(), Some(4), "plain: {}", plain.stderr);
    assert_contains(&plain.stderr, "this receiver takes a code");
    for guess in ["8-acorn-actor-sunset", "7-acorn-actor-star"] {
        let wrong = send(&file, recv.port, &["--code", guess]);
        assert_eq!(wrong.code(), Some(1), "{guess}: {}", wrong.stderr);
        assert_contains(&wrong.stderr, "the code did not match");
    }
    let got = recv.finish();
    assert_eq!(got.code(), Some(1), "receive: {}", got.stderr);
    assert_contains(&got.stderr, "the code did not match");
    assert_contains(&got.stderr, "gave up");
    assert!(!dst.join("note.txt").exists(), "nothing may be written");
    let typo = send(&file, 9, &["--code", "7-acorn-actor-sunsett"]);
    assert_eq!(
        typo.code(),
        Some(2),
        "a typo is a usage error: {}",
        typo.stderr
    );
}

#[test]
fn a_flipped_byte_of_ciphertext_is_refused_and_nothing_is_kept() {
    let src = TempDir::new("code-flip-src");
    let dst = TempDir::new("code-flip-dst");
    let file = src.join("data.bin");
    fs::write(&file, random_bytes(8 << 20, 5)).expect("writing the source");
    let recv = code_receiver(&dst.0, &[CODE]);
    // Well past the handshake and the first frames: inside file data.
    let tamper = common::proxy(recv.port, None, Some(3 << 20));
    let sent = send(&file, tamper.port, &["--code", CODE]);
    let got = recv.finish();
    assert_ne!(sent.code(), Some(0), "send: {}", sent.stderr);
    assert_eq!(got.code(), Some(3), "receive: {}", got.stderr);
    assert_contains(&got.stderr, "changed on the way");
    assert!(!dst.join("data.bin").exists(), "nothing may be in place");
}

#[test]
fn code_and_tls_are_alternatives() {
    let src = TempDir::new("code-tls-src");
    let file = src.join("note.txt");
    fs::write(&file, b"x").expect("writing the source");
    let done = send(&file, 9, &["--code", CODE, "--tls"]);
    assert_eq!(done.code(), Some(2), "{}", done.stderr);
    assert_contains(&done.stderr, "alternatives");
}
