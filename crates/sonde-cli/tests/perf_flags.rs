//! iperf3's flags that sonde perf took on last: each one's effect seen
//! from outside (affinity in /proc, the daemon's pid file, paced rates,
//! prefixes, messages), and the ones that travel on the wire against
//! Debian's iperf3 both ways.

mod common;

use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{DEADLINE, sonde};

fn perf(args: &[&str]) -> common::Finished {
    let mut cmd = sonde();
    cmd.arg("perf").args(args);
    common::run(cmd, b"")
}

/// The CPUs a thread may run on, as /proc shows them ("1", "0-1").
fn cpus_of(status: &str) -> Option<String> {
    std::fs::read_to_string(status).ok()?.lines().find_map(|l| {
        l.strip_prefix("Cpus_allowed_list:")
            .map(|v| v.trim().to_string())
    })
}

/// Waits (at most the deadline) until a thread of `pid` named `name`
/// may run on `want` only; fails naming the CPUs it last saw.
fn await_thread_cpus(pid: u32, name: &str, want: &str) {
    let start = Instant::now();
    let mut seen = None;
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten();
        for task in tasks {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim() == name
                && let Some(cpus) = cpus_of(&task.path().join("status").to_string_lossy())
            {
                if cpus == want {
                    return;
                }
                seen = Some(cpus);
            }
        }
        assert!(
            start.elapsed() < DEADLINE,
            "thread {name} of {pid} never ran on CPUs {want} only (seen: {seen:?})"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// A server (`sonde perf -s` or `iperf3 -s`) bound to `addr` on a free
/// port, with the port once it says it listens.
fn server_on(program: &str, addr: &str, extra: &[&str]) -> (Child, u16, common::Reaper) {
    let port = common::free_port();
    let mut cmd = common::perf_program(program);
    if program == "iperf3" {
        // Piped, iperf3 holds its banner in a buffer without this.
        cmd.arg("--forceflush");
    }
    let mut child = cmd
        .args(["-s", "-B", addr, "-p", &port.to_string()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("a server");
    let reaper = common::Reaper::new(child.id());
    common::await_stdout_line(&mut child, "Server listening", program);
    (child, port, reaper)
}

fn server(program: &str, extra: &[&str]) -> (Child, u16, common::Reaper) {
    server_on(program, "127.0.0.1", extra)
}

fn stop(mut child: Child, mut reaper: common::Reaper) {
    let _ = child.kill();
    let _ = child.wait();
    reaper.disarm();
}

fn client(program: &str, port: u16, args: &[&str]) -> Child {
    let mut cmd = common::perf_program(program);
    cmd.args(["-c", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("a client")
}

fn two_cpus() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

#[test]
fn affinity_applies_here_and_on_the_server_both_ways() {
    if !two_cpus() || !common::have_peer("iperf3", "iperf3") {
        return;
    }
    // This side: -A 1.
    let mut embedded = sonde()
        .args(["perf", "-A", "1", "-t", "2"])
        .stdout(Stdio::null())
        .spawn()
        .expect("sonde perf -A 1");
    await_thread_cpus(embedded.id(), "sonde", "1");
    let _ = embedded.wait();
    // The server's: -A ,1 against a sonde server and an iperf3 server.
    let (srv, port, reaper) = server("sonde", &[]);
    let mut c = client("iperf3", port, &["-A", "0,1", "-t", "2"]);
    await_thread_cpus(srv.id(), "sonde-perf-test", "1");
    assert!(c.wait().expect("iperf3 client").success());
    stop(srv, reaper);
    let (srv, port, reaper) = server("iperf3", &["-1"]);
    let mut c = client("sonde", port, &["-A", ",1", "-t", "2"]);
    let start = Instant::now();
    while cpus_of(&format!("/proc/{}/status", srv.id())).as_deref() != Some("1") {
        assert!(
            start.elapsed() < DEADLINE,
            "iperf3's server never moved to CPU 1"
        );
        thread::sleep(Duration::from_millis(5));
    }
    assert!(c.wait().expect("sonde client").success());
    stop(srv, reaper);
}

#[test]
fn a_daemon_detaches_and_writes_its_pid() {
    let dir = common::TempDir::new("perf-daemon");
    let pidfile = dir.join("perf.pid");
    let log = dir.join("perf.log");
    let port = common::free_port().to_string();
    let done = perf(&[
        "-s",
        "-D",
        "-I",
        pidfile.to_str().expect("utf-8"),
        "--logfile",
        log.to_str().expect("utf-8"),
        "-B",
        "127.0.0.1",
        "-p",
        &port,
    ]);
    assert_eq!(
        done.code(),
        Some(0),
        "the parent returns at once: {}",
        done.stderr
    );
    let start = Instant::now();
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(start.elapsed() < DEADLINE, "no pid file");
        thread::sleep(Duration::from_millis(5));
    };
    let mut reaper = common::Reaper::new(pid);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the daemon runs");
    // Fields after the name: state, ppid, pgrp, session.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        fields.get(3),
        Some(&pid.to_string().as_str()),
        "it leads its own session: {stat}"
    );
    // It serves.
    let test = perf(&["-c", "127.0.0.1", "-p", &port, "-t", "1"]);
    assert_eq!(test.code(), Some(0), "{}", test.stderr);
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).expect("pid"),
        rustix::process::Signal::TERM,
    );
    reaper.disarm();
    let _ = reaper;
}

/// The received rate of a `-J` document, bit/s.
fn received(doc: &Value) -> f64 {
    doc["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
}

#[test]
fn fq_rate_paces_the_sender_both_ways() {
    if !common::have_peer("iperf3", "iperf3") {
        return;
    }
    // iperf3's client asks the sonde server (the sender with -R) to pace.
    let (srv, port, reaper) = server("sonde", &[]);
    let mut cmd = Command::new("iperf3");
    cmd.args([
        "-c",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "--fq-rate",
        "100M",
        "-R",
        "-t",
        "2",
        "-J",
    ]);
    let done = common::run(cmd, b"");
    stop(srv, reaper);
    let doc: Value = serde_json::from_slice(&done.stdout).expect("JSON");
    let rate = received(&doc);
    assert!(rate > 50e6 && rate < 130e6, "paced to 100 Mbit/s: {rate}");
    // And sonde's client paces itself against iperf3's server.
    let (srv, port, reaper) = server("iperf3", &["-1"]);
    let done = perf(&[
        "-c",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "--fq-rate",
        "100M",
        "-t",
        "2",
        "-J",
    ]);
    stop(srv, reaper);
    let doc: Value = serde_json::from_slice(&done.stdout).expect("JSON");
    let rate = received(&doc);
    assert!(rate > 50e6 && rate < 130e6, "paced to 100 Mbit/s: {rate}");
}

#[test]
fn a_flow_label_and_dscp_travel_both_ways() {
    if !common::have_peer("iperf3", "iperf3") {
        return;
    }
    for (srv_prog, cli_prog) in [("iperf3", "sonde"), ("sonde", "iperf3")] {
        let (srv, port, reaper) = server_on(srv_prog, "::1", &["-1", "-6"]);
        let mut cmd = common::perf_program(cli_prog);
        cmd.args([
            "-6",
            "-c",
            "::1",
            "-p",
            &port.to_string(),
            "-L",
            "0x12345",
            "--dscp",
            "ef",
            "-t",
            "1",
            "-R",
        ]);
        let done = common::run(cmd, b"");
        assert_eq!(
            done.code(),
            Some(0),
            "{cli_prog} against {srv_prog}: {}",
            done.stderr
        );
        stop(srv, reaper);
    }
}

#[test]
fn timestamps_come_before_the_title_on_every_line() {
    let done = perf(&["-t", "1", "-T", "mytitle", "--timestamps=%Y-stamp "]);
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let text = done.stdout_text();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (stamp, rest) = line.split_once(' ').unwrap_or_default();
        assert!(stamp.ends_with("-stamp"), "{line}");
        assert!(rest.starts_with("mytitle:  "), "{line}");
    }
}

#[test]
fn debug_version_decimals_and_clear_refusals() {
    let debug = perf(&["-t", "1", "-d"]);
    assert_eq!(debug.code(), Some(0), "{}", debug.stderr);
    assert!(debug.stderr.contains("send_parameters"), "{}", debug.stderr);
    assert!(debug.stderr.contains("TEST_END"), "{}", debug.stderr);
    let version = perf(&["-v"]);
    assert!(
        version.stdout_text().starts_with("sonde perf "),
        "{}",
        version.stdout_text()
    );
    let decimals = perf(&["-t", "1.5", "-O", "0.5", "-J"]);
    assert_eq!(decimals.code(), Some(0), "{}", decimals.stderr);
    let doc: Value = serde_json::from_slice(&decimals.stdout).expect("JSON");
    assert_eq!(
        doc["start"]["test_start"]["duration"], 1,
        "cut to whole seconds, as iperf3"
    );
    let sctp = perf(&["--sctp", "-t", "1"]);
    assert_ne!(sctp.code(), Some(0));
    assert!(sctp.stderr.contains("--sctp"), "{}", sctp.stderr);
    let mptcp = perf(&["-m", "-t", "1"]);
    assert!(
        mptcp.code() == Some(0) || mptcp.stderr.contains("MPTCP"),
        "{}",
        mptcp.stderr
    );
}

#[test]
fn a_peer_that_is_not_iperf3_is_named_as_such() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let _ = std::io::Write::write_all(&mut conn, b"unexpected banner\n");
            thread::sleep(Duration::from_millis(500));
        }
    });
    let done = perf(&["-c", "127.0.0.1", "-p", &port, "-t", "1"]);
    assert_eq!(done.code(), Some(1));
    assert!(
        done.stderr.contains("does not speak iperf3's protocol"),
        "{}",
        done.stderr
    );
}
