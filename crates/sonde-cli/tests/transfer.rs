//! `sonde send` / `sonde receive` end to end on loopback: files of every
//! size byte-exact, trees with modes, stdin, skip and resume, a flipped
//! byte caught, refusals, and hostile headers refused with nothing written.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::sync::atomic::Ordering;
use std::thread;

use common::{
    Finished, Listener, TempDir, assert_contains, proxy, proxy_with, random_bytes, run, sonde,
    start_sonde,
};
use sonde::transfer::wire::{self, Message};

/// Starts `sonde receive DIR ARGS...` on a loopback port.
fn receiver(dir: &Path, args: &[&str]) -> Listener {
    let dir = dir.to_str().expect("utf-8 temp path");
    let mut all = vec!["receive", dir, "--bind", "127.0.0.1", "--port", "0"];
    all.extend_from_slice(args);
    start_sonde(&all, Stdio::null(), Stdio::piped())
}

fn send_cmd(paths: &[&Path], port: u16, args: &[&str]) -> Command {
    let mut cmd = sonde();
    cmd.arg("send").args(paths).arg(format!("127.0.0.1:{port}"));
    cmd.args(args);
    cmd
}

fn send(paths: &[&Path], port: u16, args: &[&str]) -> Finished {
    run(send_cmd(paths, port, args), b"")
}

/// Sends `paths` to a fresh receiver in `dir`; returns both ends' results.
fn exchange(
    dir: &Path,
    recv_args: &[&str],
    paths: &[&Path],
    send_args: &[&str],
) -> (Finished, Finished) {
    let recv = receiver(dir, recv_args);
    let sent = send(paths, recv.port, send_args);
    (sent, recv.finish())
}

/// Both ends exited with `code`.
fn both_exit(sent: &Finished, got: &Finished, code: i32) {
    assert_eq!(sent.code(), Some(code), "send: {}", sent.stderr);
    assert_eq!(got.code(), Some(code), "receive: {}", got.stderr);
}

fn json(finished: &Finished) -> serde_json::Value {
    serde_json::from_slice(&finished.stdout)
        .unwrap_or_else(|e| panic!("JSON on stdout ({e}): {}", finished.stdout_text()))
}

/// Names in `dir`, hidden ones included, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut all: Vec<String> = fs::read_dir(dir)
        .expect("listing a dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    all.sort();
    all
}

/// A source directory holding one file `name` with `content`, an empty
/// destination directory, and the file's path.
fn one_file(tag: &str, name: &str, content: impl AsRef<[u8]>) -> (TempDir, TempDir, PathBuf) {
    let src = TempDir::new(tag);
    let dst = TempDir::new(&format!("{tag}-dst"));
    let path = src.join(name);
    fs::write(&path, content).expect("source");
    (src, dst, path)
}

#[test]
fn files_of_every_size_arrive_byte_exact() {
    let src = TempDir::new("xfer-src");
    let dst = TempDir::new("xfer-dst");
    let sizes = [0usize, 1, (1 << 20) + 1];
    let mut paths = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let path = src.join(&format!("f{size}"));
        fs::write(&path, random_bytes(*size, i as u64 + 7)).expect("writing a source");
        paths.push(path);
    }
    let recv = receiver(&dst.0, &["--json"]);
    let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    let sent = send(&refs, recv.port, &["--json"]);
    let got = recv.finish();
    assert_eq!(sent.code(), Some(0), "send: {}", sent.stderr);
    assert_eq!(got.code(), Some(0), "receive: {}", got.stderr);
    for path in &paths {
        let name = path.file_name().expect("a name");
        let left = fs::read(path).expect("source");
        let right = fs::read(dst.0.join(name)).expect("received");
        assert!(left == right, "{name:?} differs");
    }
    let report = json(&sent);
    let files = report["files"].as_array().expect("files");
    assert_eq!(files.len(), 3);
    assert!(files.iter().all(|f| f["outcome"] == "verified"));
    assert_eq!(json(&got)["bytes"], (1 << 20) + 2);
    assert_eq!(
        names(&dst.0),
        ["f0", "f1", "f1048577"],
        "no partial files left"
    );
}

#[test]
fn a_gibibyte_arrives_byte_exact() {
    let src = TempDir::new("xfer-gib");
    let dst = TempDir::new("xfer-gib-dst");
    let path = src.join("big");
    {
        let mut out = fs::File::create(&path).expect("creating big");
        let block = random_bytes(1 << 20, 11);
        for i in 0..1024u32 {
            let mut b = block.clone();
            b[..4].copy_from_slice(&i.to_le_bytes());
            out.write_all(&b).expect("writing big");
        }
    }
    let (sent, got) = exchange(&dst.0, &[], &[&path], &["--json"]);
    both_exit(&sent, &got, 0);
    let hash = |p: &Path| {
        let mut h = blake3::Hasher::new();
        h.update_reader(fs::File::open(p).expect("open"))
            .expect("read");
        h.finalize().to_hex().to_string()
    };
    let want = hash(&path);
    assert_eq!(hash(&dst.join("big")), want);
    assert_eq!(json(&sent)["files"][0]["blake3"], want.as_str());
    assert_contains(&got.stdout_text(), "verified");
}

#[test]
fn a_tree_keeps_its_shape_and_permission_bits() {
    let src = TempDir::new("xfer-tree");
    let dst = TempDir::new("xfer-tree-dst");
    let root = src.join("data");
    fs::create_dir_all(root.join("a/b/c")).expect("nested");
    fs::create_dir_all(root.join("empty")).expect("empty");
    fs::write(root.join("top.txt"), b"top\n").expect("top");
    fs::write(root.join("a/b/c/deep.txt"), b"deep\n").expect("deep");
    fs::write(root.join("a/run.sh"), b"#!/bin/sh\n").expect("script");
    let mode = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m));
    mode(&root.join("a/run.sh"), 0o4750).expect("setuid on the source");
    mode(&root.join("a/b"), 0o700).expect("private dir");
    std::os::unix::fs::symlink("/etc/passwd", root.join("a/link")).expect("symlink");
    let (sent, got) = exchange(&dst.0, &[], &[&root], &[]);
    both_exit(&sent, &got, 0);
    assert_contains(&sent.stderr, "skipping symlink");
    let out = dst.join("data");
    assert_eq!(
        fs::read(out.join("a/b/c/deep.txt")).expect("deep"),
        b"deep\n"
    );
    assert_eq!(fs::read(out.join("top.txt")).expect("top"), b"top\n");
    assert!(out.join("empty").is_dir(), "the empty directory is made");
    assert!(!out.join("a/link").exists(), "no symlink is made");
    let bits = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o7777;
    assert_eq!(bits(&out.join("a/run.sh")), 0o750, "setuid is dropped");
    assert_eq!(bits(&out.join("a/b")), 0o700);
    assert_contains(&sent.stdout_text(), "3 files");
}

#[test]
fn stdin_is_sent_under_its_name() {
    let dst = TempDir::new("xfer-stdin");
    let recv = receiver(&dst.0, &[]);
    let data = random_bytes(3 << 20, 5);
    let mut cmd = sonde();
    cmd.args([
        "send",
        "-",
        &format!("127.0.0.1:{}", recv.port),
        "--name",
        "log.bin",
    ]);
    let sent = run(cmd, &data);
    let got = recv.finish();
    assert_eq!(sent.code(), Some(0), "send: {}", sent.stderr);
    assert_eq!(got.code(), Some(0), "receive: {}", got.stderr);
    assert!(fs::read(dst.join("log.bin")).expect("received") == data);
}

#[test]
fn stdin_needs_a_name() {
    let mut cmd = sonde();
    cmd.args(["send", "-", "127.0.0.1:9"]);
    let out = run(cmd, b"x");
    assert_eq!(out.code(), Some(2));
    assert_contains(&out.stderr, "--name");
}

#[test]
fn identical_files_are_skipped_and_others_refused_unless_overwrite() {
    let (_src, dst, path) = one_file("xfer-skip", "same.txt", b"hello\n");
    fs::write(dst.join("same.txt"), b"hello\n").expect("in place");
    let (sent, got) = exchange(&dst.0, &[], &[&path], &["--json"]);
    both_exit(&sent, &got, 0);
    assert_eq!(json(&sent)["files"][0]["outcome"], "skipped");
    assert_eq!(json(&sent)["moved"], 0);

    fs::write(dst.join("same.txt"), b"other\n").expect("differs now");
    let (sent, got) = exchange(&dst.0, &[], &[&path], &[]);
    both_exit(&sent, &got, 4);
    assert_contains(&sent.stderr, "--overwrite");
    assert_eq!(fs::read(dst.join("same.txt")).expect("kept"), b"other\n");

    let (sent, got) = exchange(&dst.0, &["--overwrite"], &[&path], &[]);
    both_exit(&sent, &got, 0);
    assert_eq!(
        fs::read(dst.join("same.txt")).expect("replaced"),
        b"hello\n"
    );
}

#[test]
fn max_size_refuses_a_large_transfer() {
    let (_src, dst, path) = one_file("xfer-max", "big", random_bytes(100_000, 3));
    let (sent, got) = exchange(&dst.0, &["--max-size", "64K"], &[&path], &["--json"]);
    both_exit(&sent, &got, 4);
    let report = json(&sent);
    assert_eq!(report["exit_code"], 4);
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("--max-size"))
    );
    assert_contains(&sent.stderr, "--max-size");
    assert!(names(&dst.0).is_empty());

    // Stdin's size is unknown up front: the cap stops it as it streams.
    let recv = receiver(&dst.0, &["--max-size", "64K"]);
    let mut cmd = sonde();
    cmd.args([
        "send",
        "-",
        &format!("127.0.0.1:{}", recv.port),
        "--name",
        "s",
    ]);
    let sent = run(cmd, &random_bytes(3 << 20, 4));
    let got = recv.finish();
    assert_eq!(sent.code(), Some(4), "{}", sent.stderr);
    assert_eq!(got.code(), Some(4), "{}", got.stderr);
    assert!(names(&dst.0).is_empty(), "{:?}", names(&dst.0));
}

#[test]
fn an_interrupted_transfer_resumes_with_only_the_rest() {
    let src = TempDir::new("xfer-resume");
    let dst = TempDir::new("xfer-resume-dst");
    let path = src.join("data.bin");
    let size = 8u64 << 20;
    fs::write(&path, random_bytes(size as usize, 9)).expect("source");

    let recv = receiver(&dst.0, &[]);
    let cut = proxy(recv.port, Some(5 << 20), None);
    let sent = send(&[&path], cut.port, &[]);
    let got = recv.finish();
    cut.thread.join().expect("proxy");
    assert_eq!(sent.code(), Some(1), "cut short: {}", sent.stderr);
    assert_eq!(got.code(), Some(1), "cut short: {}", got.stderr);
    assert!(!dst.join("data.bin").exists(), "nothing in place yet");
    let partial = fs::metadata(dst.join(".data.bin.sonde-part")).expect("a partial file");
    assert!(partial.len() >= 2 << 20, "kept {} bytes", partial.len());

    let recv = receiver(&dst.0, &[]);
    let count = proxy(recv.port, None, None);
    let sent = send(&[&path], count.port, &["--json"]);
    let got = recv.finish();
    count.thread.join().expect("proxy");
    assert_eq!(sent.code(), Some(0), "{}", sent.stderr);
    assert_eq!(got.code(), Some(0), "{}", got.stderr);
    let report = json(&sent);
    let from = report["files"][0]["resumed_from"]
        .as_u64()
        .expect("resumed_from");
    assert_eq!(from, partial.len());
    assert_eq!(report["files"][0]["moved"].as_u64(), Some(size - from));
    let wire_bytes = count.forwarded.load(Ordering::Relaxed);
    assert!(
        wire_bytes < size - from + 4096,
        "{wire_bytes} bytes crossed for the {} left",
        size - from
    );
    assert!(fs::read(dst.join("data.bin")).expect("in place") == fs::read(&path).expect("src"));
    assert_eq!(names(&dst.0), ["data.bin"]);
}

#[test]
fn a_killed_sender_resumes_where_the_receiver_stopped() {
    let src = TempDir::new("xfer-kill");
    let dst = TempDir::new("xfer-kill-dst");
    let path = src.join("data.bin");
    let size = 8u64 << 20;
    fs::write(&path, random_bytes(size as usize, 21)).expect("source");

    let recv = receiver(&dst.0, &[]);
    let stall = proxy_with(recv.port, Some(3 << 20), None, true);
    let mut child = send_cmd(&[&path], stall.port, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting send");
    let start = std::time::Instant::now();
    while stall.forwarded.load(Ordering::Relaxed) < 3 << 20 {
        assert!(
            start.elapsed() < common::DEADLINE,
            "the sender never got half-way"
        );
        thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().expect("killing the sender");
    let _ = child.wait();
    let got = recv.finish();
    stall.thread.join().expect("proxy");
    assert_eq!(got.code(), Some(1), "cut short: {}", got.stderr);
    let held = fs::metadata(dst.join(".data.bin.sonde-part"))
        .expect("a partial file")
        .len();
    assert!(held >= 1 << 20, "kept {held} bytes");

    let (sent, got) = exchange(&dst.0, &[], &[&path], &["--json"]);
    both_exit(&sent, &got, 0);
    let file = &json(&sent)["files"][0];
    assert_eq!(file["resumed_from"].as_u64(), Some(held));
    assert_eq!(file["moved"].as_u64(), Some(size - held));
    assert!(fs::read(dst.join("data.bin")).expect("in place") == fs::read(&path).expect("src"));
}

#[test]
fn keep_open_takes_transfer_after_transfer() {
    let src = TempDir::new("xfer-keep");
    let dst = TempDir::new("xfer-keep-dst");
    let recv = receiver(&dst.0, &["--keep-open"]);
    for name in ["one", "two", "three"] {
        let path = src.join(name);
        fs::write(&path, name).expect("source");
        let sent = send(&[&path], recv.port, &[]);
        assert_eq!(sent.code(), Some(0), "{name}: {}", sent.stderr);
    }
    // A hostile sender in between does not end it either.
    let mut bad = TcpStream::connect(("127.0.0.1", recv.port)).expect("connect");
    bad.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("garbage");
    let mut rest = Vec::new();
    let _ = bad.read_to_end(&mut rest);
    let path = src.join("four");
    fs::write(&path, "four").expect("source");
    let sent = send(&[&path], recv.port, &[]);
    assert_eq!(sent.code(), Some(0), "{}", sent.stderr);
    let mut child = recv.child;
    child.kill().expect("stopping the receiver");
    let _ = child.wait();
    assert_eq!(names(&dst.0), ["four", "one", "three", "two"]);
}

#[test]
fn special_files_in_the_way_are_refused_without_opening_them() {
    let (_src, dst, path) = one_file("xfer-fifo", "pipe", b"data");
    let made = Command::new("mkfifo").arg(dst.join("pipe")).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let (sent, got) = exchange(&dst.0, &["--overwrite"], &[&path], &[]);
    both_exit(&sent, &got, 4);
    assert_contains(&sent.stderr, "not a regular file");
}

#[test]
fn ipv6_loopback_works() {
    let (_src, dst, path) = one_file("xfer-v6", "v6.txt", b"over ::1\n");
    let d = dst.0.to_str().expect("utf-8");
    let recv = start_sonde(
        &["receive", d, "--bind", "::1", "--port", "0"],
        Stdio::null(),
        Stdio::piped(),
    );
    let mut cmd = sonde();
    cmd.arg("send")
        .arg(&path)
        .arg(format!("[::1]:{}", recv.port));
    let sent = run(cmd, b"");
    assert_eq!(recv.finish().code(), Some(0));
    assert_eq!(sent.code(), Some(0), "{}", sent.stderr);
    assert_eq!(
        fs::read(dst.join("v6.txt")).expect("received"),
        b"over ::1\n"
    );
}

#[test]
fn a_flipped_byte_is_caught_and_nothing_is_kept() {
    let (_src, dst, path) = one_file("xfer-flip", "data.bin", random_bytes((1 << 20) + 1, 2));
    let recv = receiver(&dst.0, &[]);
    let flip = proxy(recv.port, None, Some(100_000));
    let sent = send(&[&path], flip.port, &[]);
    let got = recv.finish();
    flip.thread.join().expect("proxy");
    assert_eq!(sent.code(), Some(3), "{}", sent.stderr);
    assert_eq!(got.code(), Some(3), "{}", got.stderr);
    assert_contains(&sent.stderr, "mismatch");
    assert!(names(&dst.0).is_empty(), "{:?}", names(&dst.0));
}

/// Speaks to a receiver by hand: the hello, then `frames` as raw bytes.
/// Returns the receiver's exit and stderr, and what it answered last.
fn hostile(dir: &Path, frames: &[Vec<u8>]) -> (Finished, Option<Message>) {
    let (finished, all) = hostile_all(dir, frames);
    (finished, all.last().cloned())
}

/// As `hostile`, with everything the receiver answered.
fn hostile_all(dir: &Path, frames: &[Vec<u8>]) -> (Finished, Vec<Message>) {
    let recv = receiver(dir, &[]);
    let mut conn = TcpStream::connect(("127.0.0.1", recv.port)).expect("connect");
    conn.write_all(&wire::hello()).expect("hello");
    let mut theirs = [0; wire::HELLO_LEN];
    conn.read_exact(&mut theirs).expect("their hello");
    for frame in frames {
        let _ = conn.write_all(frame);
    }
    let _ = conn.shutdown(Shutdown::Write);
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    let mut all = Vec::new();
    let mut at = 0;
    while rest.len() >= at + 4 {
        let len = u32::from_be_bytes(rest[at..at + 4].try_into().expect("4")) as usize;
        let Some(body) = rest.get(at + 4..at + 4 + len) else {
            break;
        };
        all.extend(wire::decode(body).ok());
        at += 4 + len;
    }
    (recv.finish(), all)
}

fn raw(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn offer() -> Vec<u8> {
    wire::encode(&Message::Offer {
        files: 1,
        dirs: 0,
        bytes: 10,
    })
}

fn file(path: &str, size: i64) -> Vec<u8> {
    wire::encode(&Message::File {
        path: path.into(),
        mode: 0o644,
        size,
        mtime: None,
        head: None,
    })
}

fn end() -> Vec<u8> {
    wire::encode(&Message::End)
}

/// `Start` at byte 0 and one data chunk of `data`.
fn data(data: &[u8]) -> Vec<u8> {
    let mut out = wire::encode(&Message::Start { offset: 0 });
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn hostile_headers_are_refused_with_nothing_written() {
    let outside = TempDir::new("xfer-outside");
    // A path that could reach outside is declined (and the rest of a
    // transfer would go on); broken numbers and frames end it.
    let cases: Vec<(&str, Vec<Vec<u8>>, &str)> = vec![
        (
            "parent",
            vec![offer(), file("../escape", 10), end()],
            "leaves the directory",
        ),
        (
            "absolute",
            vec![offer(), file("/tmp/escape", 10), end()],
            "absolute",
        ),
        ("nul", vec![offer(), file("a\0b", 10), end()], "NUL"),
        (
            "long name",
            vec![offer(), file(&"n".repeat(5000), 10), end()],
            "over the limit",
        ),
        (
            "huge frame",
            vec![offer(), u32::MAX.to_be_bytes().to_vec()],
            "over the limit",
        ),
        ("absurd size", vec![offer(), file("a", 1 << 62)], "absurd"),
        (
            "size beyond the offer",
            vec![offer(), file("a", 11)],
            "offered",
        ),
        (
            "negative count",
            vec![raw(br#"{"type":"offer","files":-1,"dirs":0,"bytes":0}"#)],
            "negative",
        ),
        (
            "bad utf-8",
            vec![
                offer(),
                raw(b"{\"type\":\"file\",\"path\":\"\xff\xfe\",\"mode\":420,\"size\":1}"),
            ],
            "malformed",
        ),
        (
            "symlink escape",
            vec![offer(), file("link/evil", 10), end()],
            "symlink",
        ),
        (
            "a chunk length of 0xFFFFFFFF",
            vec![offer(), file("a", 10), {
                let mut start = wire::encode(&Message::Start { offset: 0 });
                start.extend_from_slice(&u32::MAX.to_be_bytes());
                start
            }],
            "over the limit",
        ),
        (
            "more data than announced",
            vec![offer(), file("a", 10), data(&[7; 20])],
            "more",
        ),
    ];
    for (name, frames, why) in cases {
        let dir = TempDir::new("xfer-hostile");
        std::os::unix::fs::symlink(&outside.0, dir.join("link")).expect("symlink");
        let (got, answers) = hostile_all(&dir.0, &frames);
        assert_eq!(got.code(), Some(4), "{name}: {}", got.stderr);
        assert!(got.stderr.contains(why), "{name}: {}", got.stderr);
        let said = answers.iter().find_map(|m| match m {
            Message::Refuse { reason } | Message::Decline { reason } => Some(reason),
            _ => None,
        });
        match said {
            Some(reason) => assert!(reason.contains(why), "{name}: {reason}"),
            None => panic!("{name}: answered {answers:?}"),
        }
        assert_eq!(names(&dir.0), ["link"], "{name}: something was written");
        assert!(names(&outside.0).is_empty(), "{name}: written outside");
    }
}

#[test]
fn a_truncated_frame_is_an_error_and_writes_nothing() {
    let dir = TempDir::new("xfer-trunc");
    let mut frame = file("a", 10);
    frame.truncate(frame.len() - 5);
    let (got, _) = hostile(&dir.0, &[offer(), frame]);
    assert_eq!(got.code(), Some(1), "{}", got.stderr);
    assert_contains(&got.stderr, "closed before the transfer ended");
    assert!(names(&dir.0).is_empty());
}

#[test]
fn a_version_mismatch_is_a_clear_error() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let fake = thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut theirs = [0; wire::HELLO_LEN];
        conn.read_exact(&mut theirs).expect("hello");
        conn.write_all(&wire::hello_with(99)).expect("our hello");
    });
    let src = TempDir::new("xfer-version");
    let path = src.join("x");
    fs::write(&path, b"x").expect("source");
    let sent = send(&[&path], port, &[]);
    fake.join().expect("fake peer");
    assert_eq!(sent.code(), Some(1));
    assert!(
        sent.stderr
            .contains("version mismatch: this sonde speaks 3, the peer speaks 99"),
        "{}",
        sent.stderr
    );
}

/// Sends stdin that arrives in two parts 1.5 s apart (long enough for the
/// display's first tick) with stderr on `stderr`; returns the send's exit.
fn slow_stdin_send(dst: &Path, stderr: Stdio) -> (Finished, std::process::ExitStatus) {
    let recv = receiver(dst, &[]);
    let mut child = sonde()
        .args([
            "send",
            "-",
            &format!("127.0.0.1:{}", recv.port),
            "--name",
            "slow",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("starting send");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(&random_bytes(1 << 20, 1))
        .expect("first part");
    thread::sleep(std::time::Duration::from_millis(1500));
    input
        .write_all(&random_bytes(1 << 20, 2))
        .expect("second part");
    drop(input);
    let status = child.wait().expect("send exits");
    (recv.finish(), status)
}

#[test]
fn progress_is_a_plain_line_each_second_without_a_terminal() {
    let dst = TempDir::new("xfer-lines");
    let recv = receiver(&dst.0, &[]);
    let mut cmd = sonde();
    cmd.args([
        "send",
        "-",
        &format!("127.0.0.1:{}", recv.port),
        "--name",
        "slow",
    ]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting send");
    let out = common::collect(child.stdout.take());
    let err = common::collect(child.stderr.take());
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(&random_bytes(1 << 20, 1))
        .expect("first part");
    thread::sleep(std::time::Duration::from_millis(1500));
    drop(input);
    let sent = common::finish(child, out, err);
    assert_eq!(recv.finish().code(), Some(0));
    assert_eq!(sent.code(), Some(0), "{}", sent.stderr);
    assert_contains(&sent.stderr, "sonde: sending slow: ");
    assert_contains(&sent.stdout_text(), "verified");
}

#[test]
fn progress_is_bars_on_a_terminal() {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let controller = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
    grantpt(&controller).expect("grantpt");
    unlockpt(&controller).expect("unlockpt");
    let name = ptsname(&controller, Vec::new()).expect("ptsname");
    let terminal = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().expect("utf-8 pty name"))
        .expect("open the pty");
    let mut screen = fs::File::from(controller);
    let drawn = thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0; 4096];
        // The pty reports EIO once the last writer has gone.
        while let Ok(n) = screen.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&all).contains("ETA") {
                break;
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let dst = TempDir::new("xfer-bars");
    let (got, status) = slow_stdin_send(&dst.0, Stdio::from(terminal));
    assert_eq!(got.code(), Some(0), "{}", got.stderr);
    assert!(status.success());
    let drawn = drawn.join().expect("reader");
    assert!(
        drawn.contains("total") && drawn.contains("ETA"),
        "{drawn:?}"
    );
}
