//! A newcomer's first hour: one command line (HOST PORT where nc takes
//! it), clear words once (a wrong server named as such, no message
//! saying its own text twice), help that says what each subcommand is
//! for without repeating a default, `--json` documents on every failure,
//! completions that end quietly into a closed pipe.

mod common;

use std::process::Stdio;

use common::{Finished, TempDir, assert_contains, run, sonde, start_sonde};
use serde_json::Value;

fn sonde_run(args: &[&str], stdin: &[u8]) -> Finished {
    let mut cmd = sonde();
    cmd.args(args);
    run(cmd, stdin)
}

/// No line says a thing twice: "x: x".
fn says_once(text: &str) {
    for line in text.lines() {
        let parts: Vec<&str> = line.split(": ").collect();
        for pair in parts.windows(2) {
            assert_ne!(pair[0].trim(), pair[1].trim(), "repeated in {line:?}");
        }
    }
}

#[test]
fn completions_end_quietly_into_a_closed_pipe() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let mut child = sonde()
            .args(["completions", shell])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sonde completions");
        // Read one byte and close: the writer meets a closed pipe.
        let mut out = child.stdout.take().expect("stdout");
        let mut one = [0u8; 1];
        let _ = std::io::Read::read(&mut out, &mut one);
        drop(out);
        let done = common::finish(child, common::collect(None::<std::io::Empty>), {
            let (tx, rx) = std::sync::mpsc::channel();
            let _ = tx.send(Vec::new());
            rx
        });
        assert_eq!(done.code(), Some(0), "{shell}: {}", done.stderr);
    }
}

#[test]
fn every_help_says_what_it_is_for_and_each_default_once() {
    let top = sonde_run(&["--help"], b"").stdout_text();
    assert!(!top.contains("command-line tool"), "{top}");
    assert_contains(&top, "throughput");
    let serve = top
        .lines()
        .find(|l| l.trim_start().starts_with("serve"))
        .unwrap_or_default();
    assert_contains(serve, "sockperf");
    for sub in [
        "connect",
        "listen",
        "perf",
        "serve",
        "rtt",
        "send",
        "receive",
        "completions",
    ] {
        let help = sonde_run(&[sub, "--help"], b"").stdout_text();
        let first = help.lines().next().unwrap_or_default();
        assert!(first.len() > 20, "{sub}: first line {first:?}");
        for line in help.lines() {
            assert!(
                !(line.contains("(default") && line.contains("[default:")),
                "{sub}: a default said twice: {line:?}"
            );
        }
    }
}

#[test]
fn send_takes_host_port_counts_stdin_and_creates_the_directory() {
    let dir = TempDir::new("newcomer-send");
    let into = dir.join("new/sub");
    let recv = start_sonde(
        &["receive", into.to_str().expect("utf-8"), "--port", "0"],
        Stdio::null(),
        Stdio::piped(),
    );
    let port = recv.port.to_string();
    let data = vec![5u8; 300_000];
    let done = sonde_run(
        &["send", "-", "127.0.0.1", &port, "--name", "in.bin"],
        &data,
    );
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let summary = done.stdout_text() + &done.stderr;
    assert_contains(&summary, "(293 KiB)");
    let got = recv.finish();
    assert_eq!(got.code(), Some(0), "{}", got.stderr);
    assert_eq!(std::fs::read(into.join("in.bin")).expect("the file"), data);
}

#[test]
fn usage_mistakes_exit_2_and_json_failures_print_a_document() {
    let missing = sonde_run(&["send", "/nonexistent/file", "127.0.0.1", "9"], b"");
    assert_eq!(missing.code(), Some(2), "{}", missing.stderr);
    assert_contains(
        &missing.stderr,
        "/nonexistent/file: no such file or directory",
    );
    let alone = sonde_run(&["send", "file-only"], b"");
    assert_eq!(alone.code(), Some(2), "{}", alone.stderr);
    for (args, code) in [
        (
            vec!["send", "--json", "/nonexistent/file", "127.0.0.1:9"],
            2,
        ),
        (vec!["send", "--json", "Cargo.toml", "127.0.0.1:9"], 1),
    ] {
        let done = sonde_run(&args, b"");
        assert_eq!(done.code(), Some(code), "{args:?}: {}", done.stderr);
        let doc: Value = serde_json::from_slice(&done.stdout).expect("a JSON document");
        assert_eq!(doc["exit_code"], code, "{doc}");
        assert!(
            doc["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{doc}"
        );
    }
}

#[test]
fn the_wrong_server_is_named_once_and_rtt_takes_host_port() {
    let echo = start_sonde(
        &["serve", "echo", "--port", "0"],
        Stdio::null(),
        Stdio::null(),
    );
    let port = echo.port.to_string();
    let dir = TempDir::new("newcomer-wrong");
    let file = dir.join("f.txt");
    std::fs::write(&file, b"hello").expect("a file");
    let done = sonde_run(
        &["send", file.to_str().expect("utf-8"), "127.0.0.1", &port],
        b"",
    );
    assert_eq!(done.code(), Some(1), "{}", done.stderr);
    assert_contains(&done.stderr, "is not a sonde receiver");
    says_once(&done.stderr);
    let rtt = sonde_run(&["rtt", "127.0.0.1", &port, "-n", "50", "--json"], b"");
    assert_eq!(rtt.code(), Some(0), "{}", rtt.stderr);
    let doc: Value = serde_json::from_slice(&rtt.stdout).expect("JSON");
    assert_eq!(doc["rtt_ns"]["count"], 50, "{doc}");
    drop(echo);
}
