//! Every failure is one clear line on stderr with the right exit code: 1 for
//! failures at run time, 2 for usage errors; never a panic.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::thread;

use common::*;

fn sonde_run(args: &[&str]) -> Finished {
    let mut cmd = sonde();
    cmd.args(args);
    run(cmd, b"")
}

fn assert_fails(done: &Finished, code: i32, message: &str) {
    assert_eq!(done.code(), Some(code), "stderr: {}", done.stderr);
    assert_eq!(done.stderr.trim_end(), message);
    assert!(!done.stderr.contains("panicked"));
}

fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn connection_refused() {
    let port = closed_port().to_string();
    let done = sonde_run(&["connect", "127.0.0.1", &port]);
    assert_fails(
        &done,
        1,
        &format!("sonde: connecting to 127.0.0.1:{port}: connection refused"),
    );
}

#[test]
fn name_not_found() {
    let done = sonde_run(&["connect", "nosuch.invalid", "80"]);
    assert_eq!(done.code(), Some(1));
    assert!(
        done.stderr.starts_with("sonde: resolving nosuch.invalid: "),
        "{}",
        done.stderr
    );
}

/// A listener whose accept queue is full drops further SYNs, so a connect
/// to it can only time out.
#[test]
fn connect_timeout() {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let addr: SocketAddr = (Ipv4Addr::LOCALHOST, 0).into();
    socket.bind(&addr.into()).expect("bind");
    socket.listen(0).expect("listen");
    let port = socket
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet")
        .port();
    // Fill the queue (a backlog of 0 holds one connection).
    let _held: Vec<TcpStream> = (0..2)
        .filter_map(|_| {
            TcpStream::connect_timeout(
                &(Ipv4Addr::LOCALHOST, port).into(),
                std::time::Duration::from_millis(300),
            )
            .ok()
        })
        .collect();
    let done = sonde_run(&[
        "connect",
        "--connect-timeout",
        "0.3",
        "127.0.0.1",
        &port.to_string(),
    ]);
    assert_fails(
        &done,
        1,
        &format!("sonde: connecting to 127.0.0.1:{port}: timed out"),
    );
}

#[test]
fn idle_timeout() {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = server.local_addr().expect("addr").port();
    let handle = thread::spawn(move || server.accept().map(|(conn, _)| conn));
    let mut cmd = sonde();
    cmd.args([
        "connect",
        "--idle-timeout",
        "0.3",
        "127.0.0.1",
        &port.to_string(),
    ]);
    // stdin stays open and silent: run() writes nothing and keeps it open
    // only until the child exits, so give it a pipe that never ends.
    let child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut child = child;
    let _stdin = child.stdin.take();
    let out = collect(child.stdout.take());
    let err = collect(child.stderr.take());
    let done = finish(child, out, err);
    let _conn = handle.join().expect("server");
    assert_fails(
        &done,
        1,
        &format!("sonde: connection with 127.0.0.1:{port}: no data for 0.3 s (idle timeout)"),
    );
}

#[test]
fn address_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let done = sonde_run(&["listen", &format!("127.0.0.1:{port}")]);
    assert_fails(
        &done,
        1,
        &format!("sonde: listening on 127.0.0.1:{port}: address already in use"),
    );
}

/// Ports below 1024 need privileges: run the listener as `nobody`.
#[test]
fn permission_denied_on_a_privileged_port() {
    let is_root = rustix::process::geteuid().is_root();
    let done = if is_root {
        // Copy the binary where nobody can run it (the build tree may not be).
        let dir = TempDir::new("setpriv");
        let path = dir.join("sonde");
        std::fs::copy(sonde_path(), &path).expect("copy the binary");
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&path)
            .args(["listen", "127.0.0.1:80"]);
        run(cmd, b"")
    } else {
        sonde_run(&["listen", "127.0.0.1:80"])
    };
    assert_fails(
        &done,
        1,
        "sonde: listening on 127.0.0.1:80: permission denied",
    );
}

/// The peer resets the connection: exit 1 and say so.
#[test]
fn reset_by_peer() {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = server.local_addr().expect("addr").port();
    thread::spawn(move || {
        if let Ok((conn, _)) = server.accept() {
            let conn = socket2::Socket::from(conn);
            let _ = conn.set_linger(Some(std::time::Duration::ZERO));
        }
    });
    let mut child = sonde()
        .args(["connect", "127.0.0.1", &port.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let _stdin = child.stdin.take();
    let out = collect(child.stdout.take());
    let err = collect(child.stderr.take());
    let done = finish(child, out, err);
    assert_fails(
        &done,
        1,
        &format!("sonde: receiving from 127.0.0.1:{port}: connection reset by peer"),
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["connect", "127.0.0.1", "70000"][..],
        &["connect", "127.0.0.1"],
        &["connect", "--no-such-flag", "h", "1"],
        &["listen", "notaport"],
        &["connect", "-q", "-1", "h", "1"],
        &["frobnicate"],
    ] {
        let done = sonde_run(args);
        assert_eq!(done.code(), Some(2), "{args:?}: {}", done.stderr);
        assert!(!done.stderr.contains("panicked"));
    }
}

#[test]
fn help_version_and_completions() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["connect", "--help"],
        &["listen", "--help"],
        &["completions", "bash"],
        &["completions", "zsh"],
        &["completions", "fish"],
    ] {
        let done = sonde_run(args);
        assert_eq!(done.code(), Some(0), "{args:?}: {}", done.stderr);
        assert!(!done.stdout.is_empty());
    }
    assert!(
        sonde_run(&["--version"])
            .stdout_text()
            .starts_with("sonde ")
    );
}
