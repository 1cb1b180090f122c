//! `send --tls` to `receive --tls`: a large file byte-exact, a tree and
//! its resend skipped, and the mismatches said plainly (a plain sender
//! against a TLS receiver, TLS against a plain one, a wrong pin).

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{
    Finished, Listener, TempDir, assert_contains, printed_fingerprint, random_bytes, run, sonde,
    start_command,
};

/// `sonde receive DIR --tls ARGS...` on loopback, its certificate made in
/// `config`.
fn tls_receiver(config: &Path, dir: &Path, args: &[&str]) -> Listener {
    let mut cmd = sonde();
    cmd.env("XDG_CONFIG_HOME", config)
        .arg("receive")
        .arg(dir)
        .args(["--bind", "127.0.0.1", "--port", "0", "--tls"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    start_command(cmd)
}

fn send(paths: &[&Path], port: u16, args: &[&str]) -> Finished {
    let mut cmd: Command = sonde();
    cmd.arg("send")
        .args(paths)
        .arg(format!("127.0.0.1:{port}"))
        .args(args);
    run(cmd, b"")
}

#[test]
fn a_tls_transfer_of_256_mib_arrives_byte_exact() {
    let config = TempDir::new("tls-xfer-config");
    let src = TempDir::new("tls-xfer-src");
    let dst = TempDir::new("tls-xfer-dst");
    let data = random_bytes(256 << 20, 17);
    let file = src.join("big.bin");
    fs::write(&file, &data).expect("writing the source");
    let recv = tls_receiver(&config.0, &dst.0, &[]);
    let pin = printed_fingerprint(&recv);
    let sent = send(&[&file], recv.port, &["--pin", &pin]);
    let got = recv.finish();
    assert_eq!(sent.code(), Some(0), "send: {}", sent.stderr);
    assert_eq!(got.code(), Some(0), "receive: {}", got.stderr);
    assert_contains(&sent.stdout_text(), "verified");
    let arrived = fs::read(dst.join("big.bin")).expect("the received file");
    assert!(arrived == data, "256 MiB over TLS differ");
}

#[test]
fn a_tree_over_tls_arrives_and_its_resend_is_skipped() {
    let config = TempDir::new("tls-tree-config");
    let src = TempDir::new("tls-tree-src");
    let dst = TempDir::new("tls-tree-dst");
    let tree = src.join("tree");
    fs::create_dir_all(tree.join("sub")).expect("making the tree");
    for i in 0..200u32 {
        fs::write(
            tree.join(format!("f{i}")),
            random_bytes(i as usize * 37, i.into()),
        )
        .expect("writing a file");
    }
    fs::write(tree.join("sub/last"), b"last").expect("writing a file");
    let recv = tls_receiver(&config.0, &dst.0, &["--keep-open"]);
    let pin = printed_fingerprint(&recv);
    let first = send(&[&tree], recv.port, &["--pin", &pin]);
    assert_eq!(first.code(), Some(0), "send: {}", first.stderr);
    let again = send(&[&tree], recv.port, &["--tls", "--pin", &pin]);
    assert_eq!(again.code(), Some(0), "send again: {}", again.stderr);
    assert_contains(&again.stdout_text(), "201 already in place");
    for i in 0..200u32 {
        let name = format!("f{i}");
        assert_eq!(
            fs::read(dst.join("tree").join(&name)).expect("received"),
            fs::read(tree.join(&name)).expect("sent"),
            "{name}"
        );
    }
    assert_eq!(
        fs::read(dst.join("tree/sub/last")).expect("received"),
        b"last"
    );
}

#[test]
fn a_plain_sender_hears_that_the_receiver_takes_tls_only() {
    let config = TempDir::new("tls-plain-config");
    let src = TempDir::new("tls-plain-src");
    let dst = TempDir::new("tls-plain-dst");
    let file = src.join("note.txt");
    fs::write(&file, b"hello").expect("writing the source");
    let recv = tls_receiver(&config.0, &dst.0, &["--keep-open"]);
    let plain = send(&[&file], recv.port, &[]);
    assert_eq!(plain.code(), Some(4), "plain send: {}", plain.stderr);
    assert_contains(&plain.stderr, "this receiver takes TLS only");
    let wrong = format!("{:0>64}", "AB");
    let pinned = send(&[&file], recv.port, &["--pin", &wrong]);
    assert_eq!(pinned.code(), Some(1), "wrong pin: {}", pinned.stderr);
    assert_contains(&pinned.stderr, &printed_fingerprint(&recv));
    assert!(!dst.join("note.txt").exists(), "nothing may arrive");
}

#[test]
fn a_tls_sender_to_a_plain_receiver_says_it_does_not_speak_tls() {
    let src = TempDir::new("tls-to-plain-src");
    let dst = TempDir::new("tls-to-plain-dst");
    let file = src.join("note.txt");
    fs::write(&file, b"hello").expect("writing the source");
    let mut cmd = sonde();
    cmd.arg("receive")
        .arg(&dst.0)
        .args(["--bind", "127.0.0.1", "--port", "0", "--keep-open"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let recv = start_command(cmd);
    let wrong = format!("{:0>64}", "CD");
    let sent = send(&[&file], recv.port, &["--pin", &wrong]);
    assert_eq!(sent.code(), Some(1), "send: {}", sent.stderr);
    assert_contains(&sent.stderr, "does not speak TLS");
    assert!(!dst.join("note.txt").exists(), "nothing may arrive");
}
