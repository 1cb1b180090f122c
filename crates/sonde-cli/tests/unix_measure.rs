//! Measuring over Unix stream sockets, the kernel-only baseline a TCP
//! figure is compared with: `rtt -U` against its embedded echo and
//! against `serve echo|sockperf --unix PATH`, closed and open loop; the
//! server's socket file removed when it stops.

mod common;

use std::process::Stdio;

use common::{TempDir, assert_contains, run, sonde, spawn_ready};

/// `sonde ARGS...` (a server) once it says it listens on the Unix socket.
fn serving(args: &[&str]) -> (std::process::Child, common::Reaper) {
    let mut cmd = sonde();
    cmd.args(args).stdin(Stdio::null());
    let (child, reaper, line) = spawn_ready(cmd, |l| l.contains("listening on unix:"));
    assert!(line.is_some(), "sonde {args:?} did not listen");
    (child, reaper)
}

/// Stops a server with SIGTERM: it must exit 0.
fn stop(mut child: std::process::Child, mut reaper: common::Reaper) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("stop");
    let status = child.wait().expect("wait");
    reaper.disarm();
    assert!(status.success(), "{status}");
}

/// `sonde rtt ARGS... --json`, which must succeed: its document.
fn rtt_json(args: &[&str]) -> serde_json::Value {
    let mut cmd = sonde();
    cmd.arg("rtt").args(args).arg("--json");
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(0), "rtt {args:?}: {}", done.stderr);
    serde_json::from_slice(&done.stdout).expect("rtt's JSON")
}

#[test]
fn rtt_u_measures_over_its_own_unix_echo() {
    let doc = rtt_json(&["-U", "-n", "500", "--warmup", "10"]);
    assert_eq!(doc["protocol"], "Unix", "{doc}");
    assert!(
        doc["server"]
            .as_str()
            .is_some_and(|s| s.starts_with("unix:@sonde-rtt-")),
        "{doc}"
    );
    assert_eq!(doc["rtt_ns"]["count"], 500, "{doc}");
    assert!(
        doc["rtt_ns"]["min"].as_u64().is_some_and(|ns| ns > 0),
        "{doc}"
    );
    // Open loop too: each message's latency counted from when it was due.
    let doc = rtt_json(&["-U", "--rate", "5000", "-n", "200", "-m", "1K"]);
    assert_eq!(doc["rtt_ns"]["count"], 200, "{doc}");
    assert_eq!(doc["size"], 1024, "{doc}");
}

#[test]
fn serve_echo_and_sockperf_on_a_unix_socket() {
    let dir = TempDir::new("unix-measure");
    let path = dir.join("echo.sock");
    let p = path.to_str().expect("utf-8");
    let (child, reaper) = serving(&["serve", "echo", "--unix", p]);
    let doc = rtt_json(&["-U", p, "-n", "300", "-m", "64K"]);
    assert_eq!(doc["server"], format!("unix:{p}"), "{doc}");
    assert_eq!(doc["rtt_ns"]["count"], 300, "{doc}");
    // A second server on the same file is refused while the first lives.
    let mut again = sonde();
    again.args(["serve", "echo", "--unix", p]);
    let done = run(again, b"");
    assert_eq!(done.code(), Some(1), "{}", done.stderr);
    assert_contains(&done.stderr, "a server is running on it");
    stop(child, reaper);
    assert!(!path.exists(), "the socket file is removed");

    let name = format!("@sonde-test-sockperf-{}", std::process::id());
    let (child, reaper) = serving(&["serve", "sockperf", "--unix", &name]);
    let doc = rtt_json(&["--sockperf", "-U", &name, "-n", "300"]);
    assert_eq!(doc["protocol"], "Unix", "{doc}");
    assert_eq!(doc["rtt_ns"]["count"], 300, "{doc}");
    stop(child, reaper);
}

#[test]
fn unix_usage_errors() {
    for (args, says) in [
        (
            vec!["serve", "chat", "--unix", "x.sock"],
            "--unix works with echo and sockperf",
        ),
        (
            vec!["serve", "echo", "--unix", "x.sock", "--udp"],
            "cannot be used with",
        ),
        (vec!["rtt", "-U", "-u"], "cannot be used with"),
        (
            vec!["rtt", "--sockperf", "-U"],
            "--sockperf -U needs a PATH",
        ),
        (vec!["rtt", "--sockperf"], "--sockperf needs a HOST"),
    ] {
        let mut cmd = sonde();
        cmd.args(&args);
        let done = run(cmd, b"");
        assert_eq!(done.code(), Some(2), "{args:?}: {}", done.stderr);
        assert_contains(&done.stderr, says);
    }
    // Nothing there: a clear run-time failure naming the socket.
    let mut cmd = sonde();
    cmd.args(["rtt", "-U", "/nonexistent/sonde.sock"]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(1), "{}", done.stderr);
    assert_contains(&done.stderr, "connecting to unix:/nonexistent/sonde.sock");
}

/// `sonde perf ARGS... -J`, which must succeed: its document.
fn perf_json(args: &[&str]) -> serde_json::Value {
    let mut cmd = sonde();
    cmd.arg("perf").args(args).arg("-J");
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(0), "perf {args:?}: {}", done.stderr);
    serde_json::from_slice(&done.stdout).expect("perf's JSON")
}

#[test]
fn perf_u_alone_measures_over_its_own_socket() {
    let doc = perf_json(&["-U", "-t", "1"]);
    let end = &doc["end"];
    let sent = end["sum_sent"]["bytes"].as_u64().expect("bytes sent");
    assert!(sent > 0, "{end}");
    assert_eq!(
        end["sum_received"]["bytes"], sent,
        "a Unix socket loses nothing"
    );
    assert_eq!(doc["start"]["test_start"]["protocol"], "UNIX");
    assert!(
        doc["intervals"].as_array().is_some_and(|i| !i.is_empty()),
        "{doc}"
    );
}

#[test]
fn perf_s_u_serves_exact_counts_every_way() {
    let dir = TempDir::new("unix-perf");
    let path = dir.join("perf.sock");
    let p = path.to_str().expect("utf-8");
    let mut cmd = sonde();
    cmd.args(["perf", "-s", "-U", p]).stdin(Stdio::null());
    let (child, reaper, lines) = {
        let (child, reaper, line, rest) =
            common::spawn_lines(cmd, |l| l.contains("Server listening on unix:"));
        assert!(line.is_some(), "perf -s -U did not listen");
        (child, reaper, rest)
    };
    // A connection that never says hello, and one that says nonsense,
    // do not stop the tests after them.
    let _silent = std::os::unix::net::UnixStream::connect(&path).expect("connect");
    let mut junk = std::os::unix::net::UnixStream::connect(&path).expect("connect");
    std::io::Write::write_all(&mut junk, b"GET / HTTP/1.0\n").expect("write");
    let forward = perf_json(&["-U", p, "-n", "64M", "-P", "3"]);
    assert_eq!(
        forward["end"]["sum_received"]["bytes"],
        64 << 20,
        "{}",
        forward["end"]
    );
    assert_eq!(forward["end"]["sum_sent"]["bytes"], 64 << 20);
    let reverse = perf_json(&["-U", p, "-n", "10M", "-R", "-l", "1000"]);
    assert_eq!(
        reverse["end"]["sum_received"]["bytes"],
        10 << 20,
        "{}",
        reverse["end"]
    );
    let both = perf_json(&["-U", p, "-k", "100", "-l", "64K", "--bidir"]);
    for key in ["sum_received", "sum_received_bidir_reverse"] {
        assert_eq!(
            both["end"][key]["bytes"],
            100 << 16,
            "{key}: {}",
            both["end"]
        );
    }
    // The server's words: the nonsense refused, the tests reported.
    let (mut refused, mut reported) = (false, false);
    while !(refused && reported) {
        let line = lines
            .recv_timeout(common::DEADLINE)
            .expect("the server's lines");
        refused |= line.contains("not sonde's perf over a Unix socket");
        reported |= line.contains("Accepted a test from pid") && line.contains("3 stream(s)");
    }
    stop(child, reaper);
    assert!(!path.exists(), "the socket file is removed");
}

#[test]
fn perf_s_u_1_ends_after_one_test() {
    let name = format!("@sonde-test-perf-{}", std::process::id());
    let (mut child, mut reaper) = serving_perf(&["perf", "-s", "-U", &name, "-1"]);
    let doc = perf_json(&["-U", &name, "-n", "1M"]);
    assert_eq!(doc["end"]["sum_received"]["bytes"], 1 << 20);
    let status = child.wait().expect("wait");
    reaper.disarm();
    assert!(status.success(), "{status}");
    for (args, says) in [
        (vec!["perf", "-U", "-u"], "-u does not go with -U"),
        (vec!["perf", "-s", "-U"], "-s -U needs the socket's PATH"),
        (vec!["perf", "-U", "-P", "0"], "-P 0"),
    ] {
        let mut cmd = sonde();
        cmd.args(&args);
        let done = run(cmd, b"");
        assert_eq!(done.code(), Some(2), "{args:?}: {}", done.stderr);
        assert_contains(&done.stderr, says);
    }
}

/// A perf server on a Unix socket, once it says it listens.
fn serving_perf(args: &[&str]) -> (std::process::Child, common::Reaper) {
    let mut cmd = sonde();
    cmd.args(args).stdin(Stdio::null());
    let (child, reaper, line) = spawn_ready(cmd, |l| l.contains("Server listening on unix:"));
    assert!(line.is_some(), "sonde {args:?} did not listen");
    (child, reaper)
}
