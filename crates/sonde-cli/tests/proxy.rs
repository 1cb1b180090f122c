//! `connect --proxy` through real proxies: Debian's microsocks (SOCKS5,
//! with and without a password, names resolved by the proxy or here),
//! tinyproxy (HTTP CONNECT, with Basic authentication) and dante
//! (SOCKS4); a refusal is named with the proxy and the target.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread;

use common::{TempDir, assert_contains, free_port, have_peer, run, sonde};

/// A server that answers `count` clients, each with "pong: LINE" for the
/// line it sends, then closes.
fn pong_server(count: usize) -> (u16, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = thread::spawn(move || {
        for _ in 0..count {
            let Ok((conn, _)) = listener.accept() else {
                return;
            };
            let mut line = String::new();
            let mut reader = BufReader::new(&conn);
            if reader.read_line(&mut line).is_ok() {
                let _ = (&conn).write_all(format!("pong: {line}").as_bytes());
            }
        }
    });
    (port, handle)
}

/// `sonde connect --proxy ... HOST PORT`, a line sent (no half-close:
/// these proxies end a tunnel at it) and the answer read to the end.
fn through(proxy: &[&str], host: &str, port: u16) -> common::Finished {
    let mut cmd = sonde();
    cmd.arg("connect").args(proxy).args([
        host,
        &port.to_string(),
        "--message",
        "ping\n",
        "--no-shutdown",
    ]);
    run(cmd, b"")
}

#[test]
fn socks5_through_microsocks() {
    if !have_peer("microsocks", "microsocks") {
        return;
    }
    let (target, server) = pong_server(3);
    let p = free_port();
    let ps = p.to_string();
    let (_open, _reap) =
        common::start_peer_server("microsocks", &["-i", "127.0.0.1", "-p", &ps], p);
    let at = format!("127.0.0.1:{p}");
    let socks = ["--proxy", at.as_str(), "--proxy-type", "socks5"];
    let done = through(&socks, "127.0.0.1", target);
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert_eq!(done.stdout_text(), "pong: ping\n");
    // A name the proxy resolves (the default), and one resolved here.
    let done = through(&socks, "localhost", target);
    assert_eq!(done.stdout_text(), "pong: ping\n", "{}", done.stderr);
    let local = [&socks[..], &["--proxy-dns", "local"]].concat();
    let done = through(&local, "localhost", target);
    assert_eq!(done.stdout_text(), "pong: ping\n", "{}", done.stderr);
    server.join().expect("server");
    // With a password: the right one is let through, a wrong one named.
    let (target, server) = pong_server(1);
    let q = free_port();
    let qs = q.to_string();
    let args = ["-i", "127.0.0.1", "-p", &qs, "-u", "user", "-P", "secret"];
    let (_auth, _reap2) = common::start_peer_server("microsocks", &args, q);
    let at = format!("127.0.0.1:{q}");
    let socks = ["--proxy", at.as_str(), "--proxy-type", "socks5"];
    let good = [&socks[..], &["--proxy-auth", "user:secret"]].concat();
    let done = through(&good, "127.0.0.1", target);
    assert_eq!(done.stdout_text(), "pong: ping\n", "{}", done.stderr);
    let bad = [&socks[..], &["--proxy-auth", "user:wrong"]].concat();
    let done = through(&bad, "127.0.0.1", target);
    assert_eq!(done.code(), Some(1), "{}", done.stderr);
    assert_contains(
        &done.stderr,
        &format!("through the proxy 127.0.0.1:{q} to 127.0.0.1:{target}"),
    );
    server.join().expect("server");
}

#[test]
fn http_connect_through_tinyproxy() {
    if !have_peer("tinyproxy", "tinyproxy") {
        return;
    }
    let (target, server) = pong_server(2);
    let dir = TempDir::new("tinyproxy");
    let p = free_port();
    let conf = dir.join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {p}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\nMaxClients 20\n\
             User nobody\nGroup nogroup\nBasicAuth user secret\n"
        ),
    )
    .expect("config");
    let conf = conf.to_str().expect("utf-8");
    let (_proxy, _reap) = common::start_peer_server("tinyproxy", &["-d", "-c", conf], p);
    let at = format!("127.0.0.1:{p}");
    // HTTP is the default type, as ncat's.
    let good = ["--proxy", at.as_str(), "--proxy-auth", "user:secret"];
    let done = through(&good, "127.0.0.1", target);
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert_eq!(done.stdout_text(), "pong: ping\n");
    // The password may come from the environment instead.
    let mut cmd = sonde();
    cmd.env("SONDE_PROXY_AUTH", "user:secret")
        .args(["connect", "--proxy", &at, "127.0.0.1", &target.to_string()])
        .args(["--message", "ping\n", "--no-shutdown"]);
    let done = run(cmd, b"");
    assert_eq!(done.stdout_text(), "pong: ping\n", "{}", done.stderr);
    let bad = ["--proxy", at.as_str(), "--proxy-auth", "user:wrong"];
    let done = through(&bad, "127.0.0.1", target);
    assert_eq!(done.code(), Some(1), "{}", done.stderr);
    assert_contains(&done.stderr, "the proxy answered 401");
    server.join().expect("server");
}

#[test]
fn proxy_usage_errors() {
    for args in [
        vec!["connect", "-u", "--proxy", "127.0.0.1:9", "127.0.0.1", "9"],
        vec!["connect", "--proxy-type", "socks5", "127.0.0.1", "9"],
        vec![
            "connect",
            "--proxy",
            "127.0.0.1:9",
            "--proxy-type",
            "socks6",
            "127.0.0.1",
            "9",
        ],
    ] {
        let mut cmd = sonde();
        cmd.args(&args);
        let done = run(cmd, b"");
        assert_eq!(done.code(), Some(2), "{args:?}: {}", done.stderr);
    }
}

#[test]
fn socks4_through_dante() {
    if !have_peer("danted", "dante-server") {
        return;
    }
    let (target, server) = pong_server(2);
    let dir = TempDir::new("dante");
    let p = free_port();
    let conf = dir.join("danted.conf");
    std::fs::write(
        &conf,
        format!(
            "logoutput: stderr\ninternal: 127.0.0.1 port = {p}\nexternal: 127.0.0.1\n\
             socksmethod: none\nclientmethod: none\n\
             user.privileged: root\nuser.unprivileged: nobody\n\
             client pass {{\n from: 127.0.0.0/8 to: 0.0.0.0/0\n}}\n\
             socks pass {{\n from: 127.0.0.0/8 to: 127.0.0.0/8\n protocol: tcp\n}}\n"
        ),
    )
    .expect("config");
    let pid = dir.join("danted.pid");
    let (conf, pid) = (conf.to_str().expect("utf-8"), pid.to_str().expect("utf-8"));
    let (_proxy, _reap) =
        common::start_peer_server("danted", &["-f", conf, "-p", pid, "-N", "1"], p);
    let at = format!("127.0.0.1:{p}");
    let socks4 = ["--proxy", at.as_str(), "--proxy-type", "socks4"];
    let done = through(&socks4, "127.0.0.1", target);
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert_eq!(done.stdout_text(), "pong: ping\n");
    // SOCKS4 carries an address: a name resolved here first.
    let local = [&socks4[..], &["--proxy-dns", "local", "-4"]].concat();
    let done = through(&local, "localhost", target);
    assert_eq!(done.stdout_text(), "pong: ping\n", "{}", done.stderr);
    server.join().expect("server");
}
