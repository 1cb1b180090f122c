//! `--exec` and `--sh-exec` on `connect` and `listen`: the socket is the
//! process's stdin and stdout, half-close passes through both ways, the
//! process's stderr stays sonde's unless `--stderr-to-peer`, its exit
//! status is told, and one that outlives its connection is stopped.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use common::{DEADLINE, Listener, assert_contains, random_bytes, run, sonde, start_listener};

/// Sends `data`, half-closes, and reads until the other end closes.
fn exchange(port: u16, data: &[u8]) -> Vec<u8> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut writer = conn.try_clone().expect("clone");
    let data = data.to_vec();
    let sender = thread::spawn(move || {
        // A server that closes at once may leave these unsent.
        if writer.write_all(&data).is_ok() {
            let _ = writer.shutdown(Shutdown::Write);
        }
    });
    let mut got = Vec::new();
    match conn.read_to_end(&mut got) {
        // Closed with what we sent unread: a reset, after all it said.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        read => {
            read.expect("the reply");
        }
    }
    let _ = sender.join();
    got
}

/// `sonde listen 127.0.0.1:0 ARGS...`, stdin and stdout unused.
fn listen(args: &[&str]) -> Listener {
    let mut all = vec!["127.0.0.1:0"];
    all.extend_from_slice(args);
    start_listener(&all, Stdio::null(), Stdio::null())
}

#[test]
fn listen_exec_cat_is_byte_exact_both_ways() {
    let data = random_bytes(8 << 20, 20);
    let server = listen(&["--exec", "cat"]);
    let got = exchange(server.port, &data);
    assert!(got == data, "{} bytes back of {}", got.len(), data.len());
    let done = server.finish();
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert_contains(&done.stderr, "sonde: cat: exited with status 0");
}

#[test]
fn a_process_that_answers_only_after_the_end_of_its_input() {
    // wc reads to the end (the peer's half-close closes its stdin), then
    // answers on a socket whose other half is already shut.
    let server = listen(&["--sh-exec", "wc -c | tr -d ' '"]);
    let got = exchange(server.port, &vec![b'x'; 123_457]);
    assert_eq!(String::from_utf8_lossy(&got), "123457\n");
    server.finish();
}

#[test]
fn connect_exec_joins_a_server_to_a_process() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let data = random_bytes(1 << 20, 21);
    let expected = data.clone();
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.write_all(&data).expect("send");
        conn.shutdown(Shutdown::Write).expect("half-close");
        let mut back = Vec::new();
        conn.read_to_end(&mut back).expect("read back");
        back
    });
    let mut cmd = sonde();
    cmd.args(["connect", "127.0.0.1", &port.to_string(), "--exec", "cat"]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert!(
        server.join().expect("server") == expected,
        "cat's copy differs"
    );
    // ncat's spelling: one word with the arguments in it.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.write_all(b"b\na\n").expect("send");
        conn.shutdown(Shutdown::Write).expect("half-close");
        let mut back = String::new();
        conn.read_to_string(&mut back).expect("read back");
        back
    });
    let mut cmd = sonde();
    cmd.args(["connect", "127.0.0.1", &port.to_string(), "-e", "sort -r"]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert_eq!(server.join().expect("server"), "b\na\n");
}

#[test]
fn stderr_stays_ours_unless_asked() {
    let line = "echo out; echo err >&2";
    let server = listen(&["--sh-exec", line]);
    assert_eq!(exchange(server.port, b""), b"out\n");
    let done = server.finish();
    assert_contains(&done.stderr, "err");
    let server = listen(&["--sh-exec", line, "--stderr-to-peer"]);
    let mut got = exchange(server.port, b"");
    got.sort_unstable();
    let mut want = b"out\nerr\n".to_vec();
    want.sort_unstable();
    assert_eq!(got, want);
    server.finish();
}

#[test]
fn the_exit_status_is_told_and_a_failure_is_exit_1() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = thread::spawn(move || listener.accept().map(|(c, _)| c));
    let mut cmd = sonde();
    cmd.args(["connect", "127.0.0.1", &port.to_string(), "-c", "exit 3"]);
    let done = run(cmd, b"");
    drop(server.join());
    assert_eq!(done.code(), Some(1), "{}", done.stderr);
    assert_contains(
        &done.stderr,
        "sonde: sh -c \"exit 3\": exited with status 3",
    );
}

#[test]
fn a_process_that_outlives_its_connection_is_stopped() {
    // It closes both pipes at once and sleeps on: the connection ends,
    // and the process is asked to stop (SIGTERM) after the linger.
    let server = listen(&["--sh-exec", "exec 0<&- 1>&-; exec sleep 60"]);
    let start = Instant::now();
    assert_eq!(exchange(server.port, b"anyone?"), b"");
    let done = server.finish();
    let took = start.elapsed();
    assert_contains(
        &done.stderr,
        "still running after the connection ended: stopped (signal 15)",
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn listen_k_gives_each_client_its_own_process() {
    let server = listen(&["-k", "--sh-exec", "read line; echo \"$$ $line\""]);
    let port = server.port;
    let clients: Vec<_> = (0..6)
        .map(|i| thread::spawn(move || exchange(port, format!("client{i}\n").as_bytes())))
        .collect();
    let mut pids = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let reply = String::from_utf8(client.join().expect("client")).expect("text");
        let (pid, line) = reply.trim_end().split_once(' ').expect("pid and line");
        assert_eq!(line, format!("client{i}"));
        pids.push(pid.to_string());
    }
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 6, "a process each: {pids:?}");
    server.stop();
}

#[test]
fn exec_usage_errors() {
    for args in [
        vec!["connect", "-u", "127.0.0.1", "9", "--exec", "cat"],
        vec!["connect", "127.0.0.1", "9", "--stderr-to-peer"],
        vec!["connect", "127.0.0.1", "9", "--recv-only", "-c", "cat"],
        vec!["connect", "127.0.0.1", "9", "--message", "hi", "-c", "cat"],
        vec!["listen", "127.0.0.1:0", "--sh-exec", "cat", "--exec", "cat"],
    ] {
        let mut cmd = sonde();
        cmd.args(&args);
        let done = run(cmd, b"");
        assert_eq!(done.code(), Some(2), "{args:?}: {}", done.stderr);
    }
    // A program that is not there: the client's connection is closed,
    // and the server says why.
    let server = listen(&["--exec", "/nonexistent/program"]);
    assert_eq!(exchange(server.port, b"hi"), b"");
    let done = server.finish();
    assert_eq!(done.code(), Some(1), "{}", done.stderr);
    assert_contains(&done.stderr, "starting /nonexistent/program");
}
