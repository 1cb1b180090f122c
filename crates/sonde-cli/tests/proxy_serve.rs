//! `sonde serve socks5` and `sonde serve http-proxy` with real clients:
//! curl through each to Python's http.server; egress refused outside
//! `--allow-dest` (loopback only by default) before any connection is
//! tried; passwords from `--auth-file`; SOCKS5's UDP ASSOCIATE relaying a
//! datagram and its reply; and sonde's own `connect --proxy` through it.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Command, Stdio};

use common::{Listener, Reaper, TempDir, assert_contains, free_port, have_peer, run, sonde};

/// `sonde serve SERVICE --bind 127.0.0.1 --port 0 EXTRA...`.
fn proxy(service: &str, extra: &[&str]) -> Listener {
    let mut cmd = sonde();
    cmd.args(["serve", service, "--bind", "127.0.0.1", "--port", "0"])
        .args(extra)
        .stdout(Stdio::null());
    common::start_command(cmd)
}

/// Python's http.server on loopback, serving a page; its port.
fn web_server(dir: &TempDir) -> (u16, std::process::Child, Reaper) {
    std::fs::write(dir.join("index.html"), b"hello through the proxy\n").expect("page");
    let port = free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--directory")
        .arg(&dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let reaper = Reaper::new(child.id());
    common::wait_tcp_listening(port);
    (port, child, reaper)
}

fn curl(args: &[&str]) -> common::Finished {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-m", "20"]).args(args);
    run(cmd, b"")
}

#[test]
fn curl_through_socks5_and_http_proxy_within_the_egress_rules() {
    if !have_peer("curl", "curl") || !have_peer("python3", "python3") {
        return;
    }
    let dir = TempDir::new("proxy-web");
    let (web, _web, _reap) = web_server(&dir);
    let page = format!("http://localhost:{web}/index.html");
    let socks = proxy("socks5", &[]);
    let http = proxy("http-proxy", &[]);
    let via_socks = format!("127.0.0.1:{}", socks.port);
    let via_http = format!("http://127.0.0.1:{}", http.port);
    let got = curl(&["--socks5-hostname", &via_socks, &page]);
    assert_eq!(
        got.stdout_text(),
        "hello through the proxy\n",
        "{}",
        got.stderr
    );
    let got = curl(&["-p", "-x", &via_http, &page]);
    assert_eq!(
        got.stdout_text(),
        "hello through the proxy\n",
        "{}",
        got.stderr
    );
    // Outside loopback (TEST-NET-1): refused before any connection.
    let away = "http://192.0.2.1:80/";
    let got = curl(&["--socks5", &via_socks, away]);
    assert_ne!(got.code(), Some(0), "socks5 let 192.0.2.1 through");
    let got = curl(&["-p", "-x", &via_http, away]);
    assert_ne!(got.code(), Some(0));
    assert_contains(&got.stderr, "403");
    // Rules that leave loopback out refuse it too.
    let narrow = proxy("http-proxy", &["--allow-dest", "10.0.0.0/8"]);
    let got = curl(&[
        "-p",
        "-x",
        &format!("http://127.0.0.1:{}", narrow.port),
        &page,
    ]);
    assert_contains(&got.stderr, "403");
    for server in [socks, http, narrow] {
        server.stop();
    }
}

#[test]
fn passwords_from_the_auth_file() {
    if !have_peer("curl", "curl") || !have_peer("python3", "python3") {
        return;
    }
    let dir = TempDir::new("proxy-auth");
    let (web, _web, _reap) = web_server(&dir);
    let users = dir.join("users");
    std::fs::write(&users, b"# who may\nalice:wonder\n").expect("auth file");
    let users = users.to_str().expect("utf-8");
    let page = format!("http://127.0.0.1:{web}/index.html");
    let socks = proxy("socks5", &["--auth-file", users]);
    let http = proxy("http-proxy", &["--auth-file", users]);
    let via_socks = format!("socks5h://127.0.0.1:{}", socks.port);
    let via_http = format!("http://127.0.0.1:{}", http.port);
    for via in [&via_socks, &via_http] {
        let got = curl(&["-p", "-x", via, "--proxy-user", "alice:wonder", &page]);
        assert_eq!(
            got.stdout_text(),
            "hello through the proxy\n",
            "{via}: {}",
            got.stderr
        );
        let got = curl(&["-p", "-x", via, "--proxy-user", "alice:guess", &page]);
        assert_ne!(got.code(), Some(0), "{via} let a wrong password through");
    }
    let got = curl(&["-p", "-x", &via_http, &page]);
    assert_contains(&got.stderr, "407");
    // sonde's own client through sonde's proxy, with the password.
    let mut cmd = sonde();
    cmd.args(["connect", "--proxy", &format!("127.0.0.1:{}", socks.port)])
        .args(["--proxy-type", "socks5", "--proxy-auth", "alice:wonder"])
        .args(["127.0.0.1", &web.to_string()])
        .args(["--message", "GET /index.html HTTP/1.0\r\n\r\n"]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert_contains(&done.stdout_text(), "hello through the proxy");
    socks.stop();
    http.stop();
}

/// A SOCKS5 UDP ASSOCIATE without a password on the proxy at `port`: the
/// control connection and the relay's port.
fn associate(port: u16) -> (TcpStream, u16) {
    let mut control = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    control
        .set_read_timeout(Some(common::DEADLINE))
        .expect("timeout");
    control.write_all(&[5, 1, 0]).expect("greeting");
    let mut chosen = [0u8; 2];
    control.read_exact(&mut chosen).expect("method");
    assert_eq!(chosen, [5, 0]);
    // UDP ASSOCIATE, from any address.
    control
        .write_all(&[5, 3, 0, 1, 0, 0, 0, 0, 0, 0])
        .expect("associate");
    let mut reply = [0u8; 10];
    control.read_exact(&mut reply).expect("reply");
    assert_eq!(&reply[..4], &[5, 0, 0, 1], "{reply:?}");
    (control, u16::from_be_bytes([reply[8], reply[9]]))
}

/// An association nothing moves on ends at the idle limit, its control
/// connection closed by the proxy, though the client keeps it open.
#[test]
fn a_quiet_udp_association_ends_at_the_idle_limit() {
    let socks = proxy("socks5", &["--idle-timeout", "0.5"]);
    let (mut control, _) = associate(socks.port);
    let since = std::time::Instant::now();
    let mut byte = [0u8; 1];
    let n = control.read(&mut byte).expect("closed, not timed out");
    assert_eq!(n, 0, "the proxy closes the control connection");
    assert!(since.elapsed() >= std::time::Duration::from_millis(400));
    socks.stop();
}

#[test]
fn udp_associate_relays_a_datagram_and_its_reply() {
    let echo = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let echo_port = echo.local_addr().expect("addr").port();
    let echoing = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let (n, from) = echo
            .recv_from(&mut buf)
            .expect("a datagram through the proxy");
        echo.send_to(&buf[..n], from).expect("reply");
    });
    let socks = proxy("socks5", &[]);
    let (control, relay_port) = associate(socks.port);
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    client
        .set_read_timeout(Some(common::DEADLINE))
        .expect("timeout");
    let mut datagram = vec![0, 0, 0, 1, 127, 0, 0, 1];
    datagram.extend_from_slice(&echo_port.to_be_bytes());
    datagram.extend_from_slice(b"over udp");
    client
        .send_to(&datagram, ("127.0.0.1", relay_port))
        .expect("send");
    let mut buf = [0u8; 1500];
    let n = client
        .recv(&mut buf)
        .expect("the echo back through the proxy");
    assert_eq!(&buf[..4], &[0, 0, 0, 1]);
    assert_eq!(
        u16::from_be_bytes([buf[8], buf[9]]),
        echo_port,
        "from the echo's address"
    );
    assert_eq!(&buf[10..n], b"over udp");
    echoing.join().expect("echo");
    drop(control);
    socks.stop();
}

#[test]
fn proxy_flags_are_the_proxies_own() {
    for args in [
        vec!["serve", "echo", "--allow-dest", "10.0.0.0/8"],
        vec!["serve", "socks5", "--tls"],
        vec!["serve", "http-proxy", "--allow-dest", "not-a-cidr"],
        vec!["serve", "socks5", "-u"],
    ] {
        let mut cmd = sonde();
        cmd.args(&args);
        let done = run(cmd, b"");
        assert_eq!(done.code(), Some(2), "{args:?}: {}", done.stderr);
    }
}
