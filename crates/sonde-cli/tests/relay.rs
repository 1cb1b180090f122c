//! `sonde relay FROM TO` between real peers: socat, ncat and Python
//! clients and servers, byte-exact with 256 MiB and a reply that comes
//! only after the client's half-close; UDP sessions per client; Unix
//! sockets (a file and an abstract name) with socat; TLS on either side;
//! a process as TO; socat's spellings, and its options refused by name.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use common::{
    DEADLINE, Listener, Reaper, TempDir, assert_contains, have_peer, run, sonde, start_command,
};
use sha2::{Digest, Sha256};

/// `sonde relay FROM TO EXTRA...`, once it listens.
fn relay(from: &str, to: &str, extra: &[&str]) -> Listener {
    let mut cmd = sonde();
    cmd.args(["relay", from, to])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    start_command(cmd)
}

/// A server that reads to the end, then answers with the SHA-256 of what
/// it read, in hex, and a newline (as `sha256sum` does, less the name).
fn python_hash_server() -> (u16, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match conn.read(&mut buf).expect("read") {
                0 => break,
                n => hash.update(&buf[..n]),
            }
        }
        let hex = format!("{:x}\n", hash.finalize());
        conn.write_all(hex.as_bytes()).expect("reply");
    });
    (port, handle)
}

/// The data file and its hash, as the servers answer it.
fn payload(dir: &TempDir, size: usize) -> (std::path::PathBuf, String) {
    let data = common::random_bytes(size, 77);
    let path = dir.join("payload.bin");
    std::fs::write(&path, &data).expect("payload");
    (path, format!("{:x}", Sha256::digest(&data)))
}

/// A client program's stdout, given the payload on stdin.
fn client_reply(mut cmd: Command, payload: &std::path::Path) -> String {
    let input = std::fs::File::open(payload).expect("payload");
    let out = cmd
        .stdin(input)
        .stderr(Stdio::null())
        .output()
        .expect("a peer client");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn tcp_relays_between_socat_ncat_and_python_are_byte_exact() {
    if !have_peer("socat", "socat") || !have_peer("ncat", "ncat") {
        return;
    }
    let dir = TempDir::new("relay-bulk");
    let (file, want) = payload(&dir, 256 << 20);
    // socat client, Python server.
    let (port, server) = python_hash_server();
    let r = relay(
        "tcp-listen:127.0.0.1:0",
        &format!("tcp:127.0.0.1:{port}"),
        &[],
    );
    let mut socat = Command::new("socat");
    socat.args(["-t", "60", "-", &format!("TCP:127.0.0.1:{}", r.port)]);
    assert_eq!(client_reply(socat, &file), want, "socat → relay → Python");
    server.join().expect("python server");
    r.stop();
    // ncat client, socat server (sha256sum after the end of input).
    let q = common::free_port();
    let args = [
        format!("TCP-LISTEN:{q},bind=127.0.0.1,reuseaddr"),
        "SYSTEM:sha256sum".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_socat, _reap) = common::start_peer_server("socat", &args, q);
    let r = relay(
        "TCP-LISTEN:0,bind=127.0.0.1,fork,reuseaddr",
        &format!("TCP4:127.0.0.1:{q}"),
        &[],
    );
    let mut ncat = Command::new("ncat");
    ncat.args(["127.0.0.1", &r.port.to_string()]);
    let got = client_reply(ncat, &file);
    assert_eq!(
        got.split_whitespace().next(),
        Some(want.as_str()),
        "ncat → relay → socat"
    );
    r.stop();
    // Python client, ncat server (it writes what it gets to a file:
    // ncat's --sh-exec cuts the connection at the client's half-close
    // instead of passing it on, so it has no late reply to give).
    let q = common::free_port();
    let out = dir.join("ncat.out");
    let sink = std::fs::File::create(&out).expect("ncat's output");
    let mut ncat = Command::new("ncat")
        .args(["-l", "127.0.0.1", &q.to_string()])
        .stdin(Stdio::null())
        .stdout(sink)
        .stderr(Stdio::null())
        .spawn()
        .expect("ncat -l");
    let _reap = Reaper::new(ncat.id());
    common::wait_tcp_listening(q);
    let r = relay("tcp-listen:127.0.0.1:0", &format!("tcp:127.0.0.1:{q}"), &[]);
    let mut conn = TcpStream::connect(("127.0.0.1", r.port)).expect("connect");
    conn.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let data = std::fs::read(&file).expect("payload");
    conn.write_all(&data).expect("send");
    conn.shutdown(Shutdown::Write).expect("half-close");
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).expect("the end");
    assert!(reply.is_empty());
    let status = ncat.wait().expect("ncat ends at the end of its input");
    assert!(status.success(), "ncat: {status}");
    let got = std::fs::read(&out).expect("ncat's output");
    assert_eq!(
        format!("{:x}", Sha256::digest(&got)),
        want,
        "Python → relay → ncat"
    );
    let done = r.finish_after_kill();
    assert_contains(&done, "closed: 268435456 bytes forward");
}

trait KillAndRead {
    fn finish_after_kill(self) -> String;
}

impl KillAndRead for Listener {
    /// Stops the relay (it serves until stopped) and returns its stderr.
    fn finish_after_kill(mut self) -> String {
        let _ = self.child.kill();
        self.finish().stderr
    }
}

#[test]
fn udp_sessions_answer_each_client() {
    let echo = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = echo.local_addr().expect("addr").port();
    let echo_thread = thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for _ in 0..6 {
            let (n, from) = echo.recv_from(&mut buf).expect("recv");
            let mut reply = b"echo ".to_vec();
            reply.extend_from_slice(&buf[..n]);
            echo.send_to(&reply, from).expect("send");
        }
    });
    let r = relay(
        "udp-listen:127.0.0.1:0",
        &format!("udp:127.0.0.1:{port}"),
        &["--idle-timeout", "5"],
    );
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
            sock.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            sock.connect(("127.0.0.1", r.port)).expect("connect");
            (i, sock)
        })
        .collect();
    for round in 0..2 {
        for (i, sock) in &clients {
            sock.send(format!("c{i} r{round}").as_bytes())
                .expect("send");
            let mut buf = [0u8; 64];
            let n = sock.recv(&mut buf).expect("a reply to this client");
            assert_eq!(&buf[..n], format!("echo c{i} r{round}").as_bytes());
        }
    }
    echo_thread.join().expect("echo");
    r.stop();
}

#[test]
fn unix_sockets_with_socat_a_file_and_an_abstract_name() {
    if !have_peer("socat", "socat") {
        return;
    }
    let dir = TempDir::new("relay-unix");
    let path = dir.join("echo.sock");
    let name = format!("sonde-relay-test-{}", std::process::id());
    for (listen, connect) in [
        (
            format!("UNIX-LISTEN:{},fork", path.display()),
            format!("unix:{}", path.display()),
        ),
        (
            format!("ABSTRACT-LISTEN:{name},fork"),
            format!("unix:@{name}"),
        ),
    ] {
        let mut child = Command::new("socat")
            .args([&listen, "EXEC:cat"])
            .stderr(Stdio::null())
            .spawn()
            .expect("socat");
        let _reap = Reaper::new(child.id());
        let shown = connect.trim_start_matches("unix:");
        common::wait_unix_listening(shown);
        let r = relay("tcp-listen:127.0.0.1:0", &connect, &[]);
        let reply = exchange(r.port, b"through a unix socket\n");
        assert_eq!(reply, b"through a unix socket\n", "{connect}");
        r.stop();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Sends `data`, half-closes, reads until the other end closes.
fn exchange(port: u16, data: &[u8]) -> Vec<u8> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(DEADLINE)).expect("timeout");
    conn.write_all(data).expect("send");
    conn.shutdown(Shutdown::Write).expect("half-close");
    let mut got = Vec::new();
    let _ = conn.read_to_end(&mut got);
    got
}

#[test]
fn tls_on_either_side() {
    let config = TempDir::new("relay-tls");
    // tls-listen in front of a plain echo server; sonde's TLS client in.
    let mut echo_cmd = sonde();
    echo_cmd
        .args(["serve", "echo", "--bind", "127.0.0.1", "--port", "0"])
        .stdout(Stdio::null());
    let echo = start_command(echo_cmd);
    let mut cmd = sonde();
    cmd.env("XDG_CONFIG_HOME", &config.0)
        .args([
            "relay",
            "tls-listen:127.0.0.1:0",
            &format!("tcp:127.0.0.1:{}", echo.port),
        ])
        .stdout(Stdio::null());
    let front = start_command(cmd);
    let pin = common::printed_fingerprint(&front);
    let mut client = sonde();
    client.args([
        "connect",
        "127.0.0.1",
        &front.port.to_string(),
        "--pin",
        &pin,
        "--message",
        "sealed",
    ]);
    let done = run(client, b"");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert_eq!(done.stdout_text(), "sealed");
    // tcp-listen to a tls TO (the relay is the TLS client), pinned.
    let back = relay(
        "tcp-listen:127.0.0.1:0",
        &format!("tls:127.0.0.1:{}", front.port),
        &["--pin", &pin],
    );
    assert_eq!(exchange(back.port, b"twice sealed"), b"twice sealed");
    back.stop();
    front.stop();
    echo.stop();
}

#[test]
fn a_process_per_client_and_stdio() {
    let r = relay("tcp-listen:127.0.0.1:0", "system:tr a-z A-Z", &[]);
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let port = r.port;
            thread::spawn(move || exchange(port, format!("client {i}\n").as_bytes()))
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        assert_eq!(
            c.join().expect("client"),
            format!("CLIENT {i}\n").as_bytes()
        );
    }
    r.stop();
    // stdio to a server: nc's job.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut got = Vec::new();
        conn.read_to_end(&mut got).expect("read");
        conn.write_all(b"late reply").expect("reply");
        got
    });
    let mut cmd = sonde();
    cmd.args(["relay", "-", &format!("tcp:127.0.0.1:{port}")]);
    let done = run(cmd, b"from stdin");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert_eq!(done.stdout_text(), "late reply");
    assert_eq!(server.join().expect("server"), b"from stdin");
}

#[test]
fn what_sonde_cannot_do_is_refused_by_name() {
    for (from, to, says) in [
        (
            "TCP-LISTEN:0,keepidle=5",
            "tcp:127.0.0.1:9",
            "\"keepidle=5\" has no meaning in sonde",
        ),
        (
            "PTY,link=/tmp/x",
            "tcp:127.0.0.1:9",
            "\"PTY\" is not a kind",
        ),
        ("tcp-listen:0", "tcp-listen:0", "TO must connect"),
        ("udp-listen:0", "tcp:127.0.0.1:9", "UDP relays only to UDP"),
        ("stdio", "exec:cat", "one end must be a socket"),
        (
            "udp-listen:0,idle-timeout=0",
            "udp:127.0.0.1:9",
            "a UDP session needs an idle limit",
        ),
    ] {
        let mut cmd = sonde();
        let (from, idle) = match from.split_once(",idle-timeout=") {
            Some((from, secs)) => (from, Some(secs)),
            None => (from, None),
        };
        cmd.args(["relay", from, to]);
        if let Some(secs) = idle {
            cmd.args(["--idle-timeout", secs]);
        }
        let done = run(cmd, b"");
        assert_eq!(done.code(), Some(2), "{from} {to}: {}", done.stderr);
        assert_contains(&done.stderr, says);
    }
    // A TO that refuses: the client is closed, the relay says why and
    // serves on.
    let closed = common::free_port();
    let r = relay(
        "tcp-listen:127.0.0.1:0",
        &format!("tcp:127.0.0.1:{closed}"),
        &[],
    );
    assert_eq!(exchange(r.port, b"anyone?"), b"");
    let line = r.next_line();
    assert_contains(&line, "connection refused");
    assert_eq!(exchange(r.port, b"again?"), b"");
    r.stop();
}

/// A client and a TO that both go quiet give the place back at the idle
/// limit: the relay closes the client.
#[test]
fn a_quiet_relay_ends_at_the_idle_limit() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let to = format!("tcp:{}", silent.local_addr().expect("addr"));
    let holding = thread::spawn(move || silent.accept().map(|(s, _)| s));
    let r = relay("tcp-listen:127.0.0.1:0", &to, &["--idle-timeout", "0.4"]);
    let mut client = std::net::TcpStream::connect(("127.0.0.1", r.port)).expect("connect");
    client
        .set_read_timeout(Some(common::DEADLINE))
        .expect("timeout");
    let since = std::time::Instant::now();
    let mut byte = [0u8; 1];
    let n = std::io::Read::read(&mut client, &mut byte).expect("closed, not timed out");
    assert_eq!(n, 0, "the relay closes a quiet client");
    assert!(since.elapsed() >= std::time::Duration::from_millis(300));
    drop(holding.join().expect("the TO was connected"));
    r.stop();
}
