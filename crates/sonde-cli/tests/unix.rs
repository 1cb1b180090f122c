//! Unix stream sockets: `connect -U` and `listen -U` with socat on the
//! other end, a file and an abstract name; the socket file removed when
//! done, a stale one replaced, a live one refused; and `sonde relay
//! unix-listen:PATH` serving many clients and cleaning up on SIGTERM.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};

use common::{DEADLINE, TempDir, assert_contains, have_peer, run, sonde, spawn_lines};

/// `sonde ARGS...` once it says it listens on the Unix socket.
fn start(args: &[&str]) -> (std::process::Child, common::Reaper) {
    let mut cmd = sonde();
    cmd.args(args).stdin(Stdio::null());
    let (child, reaper, line, _rest) = spawn_lines(cmd, |l| l.starts_with("listening on unix:"));
    assert!(line.is_some(), "sonde {args:?} did not listen");
    (child, reaper)
}

fn wait(mut child: std::process::Child, mut reaper: common::Reaper) -> std::process::ExitStatus {
    let status = child.wait().expect("wait");
    reaper.disarm();
    status
}

#[test]
fn connect_u_to_socat_on_a_file_and_an_abstract_name() {
    if !have_peer("socat", "socat") {
        return;
    }
    let dir = TempDir::new("unix-connect");
    let file = dir.join("cat.sock");
    let name = format!("sonde-unix-test-{}", std::process::id());
    for (listen, ours, shown) in [
        (
            format!("UNIX-LISTEN:{}", file.display()),
            file.display().to_string(),
            file.display().to_string(),
        ),
        (
            format!("ABSTRACT-LISTEN:{name}"),
            format!("@{name}"),
            format!("@{name}"),
        ),
    ] {
        let mut socat = Command::new("socat")
            .args([&listen, "EXEC:cat"])
            .stderr(Stdio::null())
            .spawn()
            .expect("socat");
        let _reap = common::Reaper::new(socat.id());
        common::wait_unix_listening(&shown);
        let mut cmd = sonde();
        cmd.args(["connect", "-U", &ours, "--message", "over unix"]);
        let done = run(cmd, b"");
        assert_eq!(done.code(), Some(0), "{}", done.stderr);
        assert_eq!(done.stdout_text(), "over unix");
        let _ = socat.wait();
    }
}

#[test]
fn listen_u_takes_socat_and_removes_its_file() {
    if !have_peer("socat", "socat") {
        return;
    }
    let dir = TempDir::new("unix-listen");
    let path = dir.join("in.sock");
    let p = path.to_str().expect("utf-8");
    let out_file = dir.join("listen.out");
    let mut child = sonde()
        .args(["listen", "-U", p, "--greet", "hello\n"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_file).expect("stdout file"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("sonde listen -U");
    let mut reaper = common::Reaper::new(child.id());
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.starts_with("listening on unix:"))),
        "sonde listen -U did not listen"
    );
    std::thread::spawn(move || for _ in lines {});
    let socat = Command::new("socat")
        .args(["-t", "5", "-", &format!("UNIX-CONNECT:{p}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat");
    let mut socat = socat;
    socat
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"from socat\n")
        .expect("write");
    let out = socat.wait_with_output().expect("socat ends");
    assert_eq!(out.stdout, b"hello\n", "the greeting reached socat");
    let status = child.wait().expect("listen ends");
    reaper.disarm();
    assert_eq!(
        std::fs::read(&out_file).expect("listen's stdout"),
        b"from socat\n"
    );
    assert!(status.success(), "{status}");
    assert!(!path.exists(), "the socket file is removed");
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    let dir = TempDir::new("unix-stale");
    let path = dir.join("s.sock");
    let p = path.to_str().expect("utf-8");
    // A server that went: its file stays, nobody answers. Bound and never
    // listening, so that a child another test forks meanwhile (which
    // holds our descriptors until it execs) cannot answer for it.
    let stale =
        socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).expect("a socket");
    stale
        .bind(&socket2::SockAddr::unix(&path).expect("an address"))
        .expect("bind");
    drop(stale);
    assert!(path.exists());
    let (child, reaper) = start(&["listen", "-U", p]);
    let mut conn = UnixStream::connect(&path).expect("the new listener answers");
    conn.write_all(b"x").expect("write");
    conn.shutdown(Shutdown::Write).expect("half-close");
    let mut rest = Vec::new();
    conn.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let _ = conn.read_to_end(&mut rest);
    assert!(wait(child, reaper).success());
    // A live one: refused, and left alone.
    let live = UnixListener::bind(&path).expect("bind");
    let mut cmd = sonde();
    cmd.args(["listen", "-U", p]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(1), "{}", done.stderr);
    assert_contains(&done.stderr, "a server is running on it");
    drop(live);
    // Not a socket at all.
    let plain = dir.join("plain");
    std::fs::write(&plain, b"data").expect("a file");
    let mut cmd = sonde();
    cmd.args(["listen", "-U", plain.to_str().expect("utf-8")]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(1), "{}", done.stderr);
    assert_contains(&done.stderr, "is not a socket");
    assert_eq!(std::fs::read(&plain).expect("kept"), b"data");
}

#[test]
fn relay_unix_listen_serves_many_and_cleans_up() {
    let dir = TempDir::new("unix-relay");
    let path = dir.join("front.sock");
    let p = path.to_str().expect("utf-8");
    let mut echo_cmd = sonde();
    echo_cmd
        .args(["serve", "echo", "--bind", "127.0.0.1", "--port", "0"])
        .stdout(Stdio::null());
    let echo = common::start_command(echo_cmd);
    let (child, reaper) = start(&[
        "relay",
        &format!("unix-listen:{p}"),
        &format!("tcp:127.0.0.1:{}", echo.port),
    ]);
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut conn = UnixStream::connect(&path).expect("connect");
                conn.set_read_timeout(Some(DEADLINE)).expect("timeout");
                let line = format!("client {i}\n");
                conn.write_all(line.as_bytes()).expect("write");
                conn.shutdown(Shutdown::Write).expect("half-close");
                let mut got = String::new();
                conn.read_to_string(&mut got).expect("read");
                assert_eq!(got, line);
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client");
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("stop");
    let status = wait(child, reaper);
    assert_eq!(status.code(), Some(0), "SIGTERM ends the relay with 0");
    assert!(!path.exists(), "the socket file is removed");
    echo.stop();
}

#[test]
fn listen_k_u_takes_many_clients() {
    let dir = TempDir::new("unix-many");
    let path = dir.join("many.sock");
    let p = path.to_str().expect("utf-8");
    let out = dir.join("out");
    let mut child = sonde()
        .args(["listen", "-k", "-U", p])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("sonde listen -k -U");
    let reaper = common::Reaper::new(child.id());
    let stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || lines.recv_timeout(DEADLINE).expect("a line from listen");
    assert_contains(&next(), "listening on unix:");
    for i in 0..3 {
        let mut conn = UnixStream::connect(&path).expect("connect");
        conn.write_all(format!("line {i}\n").as_bytes())
            .expect("write");
        drop(conn);
        // Closed once what it sent is out.
        loop {
            if next().ends_with("closed") {
                break;
            }
        }
    }
    let mut got: Vec<String> = std::fs::read_to_string(&out)
        .expect("output")
        .lines()
        .map(str::to_string)
        .collect();
    got.sort();
    assert_eq!(got, ["line 0", "line 1", "line 2"]);
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("stop");
    assert!(wait(child, reaper).success());
    assert!(!path.exists(), "the socket file is removed");
}

/// `listen -k -U --sh-exec`: each client of the Unix socket its own
/// process, at once (two held open together get two pids).
#[test]
fn listen_k_u_exec_gives_each_client_its_own_process() {
    let dir = TempDir::new("unix-exec");
    let path = dir.join("exec.sock");
    let p = path.to_str().expect("utf-8");
    let (child, reaper) = start(&[
        "listen",
        "-k",
        "-U",
        p,
        "--sh-exec",
        "read l; echo \"$$ $l\"",
    ]);
    let mut conns: Vec<UnixStream> = (0..2)
        .map(|_| UnixStream::connect(&path).expect("connect"))
        .collect();
    let mut answers = Vec::new();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.set_read_timeout(Some(DEADLINE)).expect("timeout");
        conn.write_all(format!("client {i}\n").as_bytes())
            .expect("write");
        let mut got = String::new();
        conn.read_to_string(&mut got).expect("the process's answer");
        let (pid, line) = got.trim_end().split_once(' ').expect("pid and line");
        assert_eq!(line, format!("client {i}"));
        answers.push(pid.to_string());
    }
    assert_ne!(answers[0], answers[1], "a process each");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("stop");
    assert!(wait(child, reaper).success());
    assert!(!path.exists(), "the socket file is removed");
}
