//! Unix datagram sockets, nc's `-uU`: `connect -uU` to a datagram echo
//! (Python's socket module), its replies printed; `listen -uU` taking
//! OpenBSD nc's datagrams and answering the last sender with what it
//! reads; a live listener's file refused, and the file removed on
//! SIGTERM.

mod common;

use std::process::{Command, Stdio};

use common::{DEADLINE, TempDir, assert_contains, have_peer, run, sonde, spawn_lines, spawn_ready};

/// A datagram echo bound at `path`, by Python; it says "ready" once bound.
const ECHO: &str = "import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print('ready', flush=True)
while True:
    d, a = s.recvfrom(65536)
    if a:
        s.sendto(d.upper(), a)
";

#[test]
fn connect_uu_sends_each_line_and_prints_the_replies() {
    if !have_peer("python3", "python3") {
        return;
    }
    let dir = TempDir::new("unix-dgram-connect");
    let path = dir.join("echo.sock");
    let p = path.to_str().expect("utf-8");
    let mut py = Command::new("python3");
    py.args(["-c", ECHO, p]);
    let (mut echo, _reap, ready) = spawn_ready(py, |l| l == "ready");
    assert!(ready.is_some(), "the echo did not start");
    let mut cmd = sonde();
    cmd.args(["connect", "-uU", p, "-q", "0.5"]);
    let done = run(cmd, b"one\ntwo\n");
    let _ = echo.kill();
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert_eq!(done.stdout_text(), "ONE\nTWO\n");
    // Nothing listening: refused, naming the socket.
    let mut cmd = sonde();
    cmd.args(["connect", "-uU", &format!("{p}.none"), "--message", "x"]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(1), "{}", done.stderr);
    assert_contains(&done.stderr, "connecting to unix:");
}

#[test]
fn listen_uu_hears_nc_and_answers_the_last_sender() {
    if !have_peer("nc.openbsd", "netcat-openbsd") || !have_peer("python3", "python3") {
        return;
    }
    let dir = TempDir::new("unix-dgram-listen");
    let path = dir.join("listen.sock");
    let p = path.to_str().expect("utf-8");
    let mut cmd = sonde();
    cmd.args(["listen", "-uU", p]).stdin(Stdio::piped());
    let (mut child, mut reaper, line, lines) =
        spawn_lines(cmd, |l| l.starts_with("listening on unix-dgram:"));
    assert!(line.is_some(), "listen -uU did not listen");
    // A second listener on the live file is refused.
    let mut again = sonde();
    again.args(["listen", "-uU", p]);
    let done = run(again, b"");
    assert_eq!(done.code(), Some(1), "{}", done.stderr);
    assert_contains(&done.stderr, "a server is running on it");
    // nc sends a datagram; the listener prints it.
    let mut nc = Command::new("nc.openbsd");
    nc.args(["-uU", "-w", "1", p]);
    let sent = run(nc, b"from nc\n");
    assert_eq!(sent.code(), Some(0), "{}", sent.stderr);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l == "from nc") {
        seen.push(lines.recv_timeout(DEADLINE).expect("the datagram printed"));
    }
    // A client bound where it can be answered, the last to speak, gets
    // the line the listener reads next.
    const ASK: &str = "import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[2])
s.settimeout(10)
s.sendto(b'ping\\n', sys.argv[1])
print(s.recv(100).decode(), end='')
";
    let client = dir.join("client.sock");
    let py = Command::new("python3")
        .args(["-c", ASK, p, client.to_str().expect("utf-8")])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let _reap = common::Reaper::new(py.id());
    while !seen.iter().any(|l: &String| l == "ping") {
        seen.push(lines.recv_timeout(DEADLINE).expect("the ping printed"));
    }
    let stdin = child.stdin.as_mut().expect("the listener's stdin");
    std::io::Write::write_all(stdin, b"pong\n").expect("a typed line");
    let asked = py.wait_with_output().expect("python3");
    assert!(asked.status.success(), "{:?}", asked.status);
    assert_eq!(String::from_utf8_lossy(&asked.stdout), "pong\n");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("stop");
    let status = child.wait().expect("wait");
    reaper.disarm();
    assert!(status.success(), "{status}");
    assert!(!path.exists(), "the socket file is removed");
}
