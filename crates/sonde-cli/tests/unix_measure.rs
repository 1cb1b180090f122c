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
