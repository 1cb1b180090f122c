//! The README's examples, run: every fenced block marked `sh test` runs in
//! bash (`-e`, in a temp dir, this build's `sonde` first on PATH) against
//! servers started here on free loopback ports: an echo server where the
//! README says 7007 (a UDP one where it says 9007), a perf server where it
//! says 5201 and a receiver where it says 7090. A line of a block that
//! ends in `&` is a server of its own: it is started first, must say it is
//! ready (its first line of output) and still run, and is stopped after
//! the block. So the README cannot drift from the binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{Reaper, TempDir, sonde, start_sonde};

/// The blocks marked `sh test`, in order.
fn runnable_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh test") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// `text` with each README port (a whole number) replaced by ours.
fn with_ports(text: &str, ports: &[(&str, u16)]) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let swapped = ports
            .iter()
            .find(|(readme, _)| readme == word)
            .map_or_else(|| word.clone(), |(_, ours)| ours.to_string());
        out.push_str(&swapped);
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The block's server lines (ending in `&`, before any comment), and the
/// rest of it.
fn split_servers(block: &str) -> (Vec<String>, String) {
    let mut servers = Vec::new();
    let mut rest = String::new();
    for line in block.lines() {
        let code = line.split(" #").next().unwrap_or(line).trim_end();
        match code.strip_suffix('&') {
            Some(server) => servers.push(server.trim().to_string()),
            None => {
                rest.push_str(line);
                rest.push('\n');
            }
        }
    }
    (servers, rest)
}

/// A README server line, running; stopped when dropped.
struct Server {
    child: std::process::Child,
    _reaper: Reaper,
}

impl Server {
    fn start(line: &str, dir: &TempDir, path: &str) -> Self {
        let mut cmd = Command::new("bash");
        cmd.args(["-c", &format!("exec {line}")])
            .current_dir(&dir.0)
            .env("PATH", path)
            .stdin(Stdio::null());
        let (mut child, reaper, first) = common::spawn_ready(cmd, |_| true);
        // Ready means its banner, not an error (warnings aside).
        assert!(
            first
                .as_ref()
                .is_some_and(|l| !l.starts_with("sonde: ") || l.starts_with("sonde: warning")),
            "README server {line:?}: {first:?}"
        );
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "README server {line:?} ended: {first:?}"
        );
        Self {
            child,
            _reaper: reaper,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn with_ports_swaps_whole_numbers_only() {
    let ports = [("7007", 40001)];
    assert_eq!(
        with_ports("a 7007 b:7007 c 17007 70070", &ports),
        "a 40001 b:40001 c 17007 70070"
    );
}

#[test]
fn every_runnable_example_runs() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let blocks = runnable_blocks(&readme);
    assert!(!blocks.is_empty(), "no `sh test` block in the README");
    let dir = TempDir::new("readme");
    let drop_dir = dir.join("received");
    let echo = start_sonde(
        &["serve", "echo", "--bind", "127.0.0.1", "--port", "0"],
        Stdio::null(),
        Stdio::null(),
    );
    let udp_echo = start_sonde(
        &[
            "serve",
            "echo",
            "--udp",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
        ],
        Stdio::null(),
        Stdio::null(),
    );
    let receiver = start_sonde(
        &[
            "receive",
            drop_dir.to_str().expect("utf-8"),
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--keep-open",
            "--overwrite",
        ],
        Stdio::null(),
        Stdio::null(),
    );
    let perf_port = common::free_port();
    let mut perf = sonde()
        .args([
            "perf",
            "-s",
            "-B",
            "127.0.0.1",
            "-p",
            &perf_port.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("a perf server");
    let mut perf_reaper = Reaper::new(perf.id());
    let mut lines = BufReader::new(perf.stdout.take().expect("stdout")).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("Server listening"))),
        "the perf server did not start"
    );
    std::thread::spawn(move || for _ in lines {});
    let ports = [
        ("7007", echo.port),
        ("9007", udp_echo.port),
        ("5201", perf_port),
        ("7090", receiver.port),
    ];
    let bin = common::sonde_path();
    let path = format!(
        "{}:{}",
        bin.parent().expect("the binary's directory").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    std::fs::write(dir.join("file"), b"a file to serve\n").expect("a file");
    for (i, block) in blocks.iter().enumerate() {
        let script = with_ports(block, &ports);
        let (servers, script) = split_servers(&script);
        let _running: Vec<Server> = servers
            .iter()
            .map(|line| Server::start(line, &dir, &path))
            .collect();
        let mut cmd = Command::new("bash");
        cmd.args(["-e", "-o", "pipefail", "-c", &script])
            .current_dir(&dir.0)
            .env("PATH", &path);
        let done = common::run(cmd, b"");
        assert_eq!(
            done.code(),
            Some(0),
            "README block {i} failed:\n{script}\nstdout:\n{}\nstderr:\n{}",
            done.stdout_text(),
            done.stderr
        );
    }
    let _ = perf.kill();
    let _ = perf.wait();
    perf_reaper.disarm();
    drop((echo, udp_echo, receiver));
}
