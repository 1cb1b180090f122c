//! `sonde connect` and `sonde listen` end to end: the lesson's programs,
//! byte-exact bulk transfers both ways, late replies, many clients, UDP.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use common::*;

fn python_lesson(program: &str) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(format!(
        "{}/tests/lesson/{program}",
        env!("CARGO_MANIFEST_DIR")
    ));
    cmd
}

/// The lesson's Python client talks to `sonde listen --greet`.
#[test]
fn lesson_client_against_sonde_listen() {
    let listener = start_listener(
        &["0", "--greet", "Hello, World!"],
        Stdio::null(),
        Stdio::piped(),
    );
    let client = run(
        python_lesson("client.py")
            .arg(listener.port.to_string())
            .to_owned_cmd(),
        b"",
    );
    assert_eq!(client.code(), Some(0), "python client: {}", client.stderr);
    assert_eq!(client.stdout_text(), "Hello, World!\n");
    let server = listener.finish();
    assert_eq!(server.code(), Some(0), "sonde listen: {}", server.stderr);
    assert_eq!(server.stdout_text(), "Hello, World!");
}

/// `sonde connect --message` talks to the lesson's Python server.
#[test]
fn lesson_server_against_sonde_connect() {
    let mut server = python_lesson("server.py")
        .arg("0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is required for this test");
    let mut port_line = String::new();
    let mut stderr = server.stderr.take().expect("piped stderr");
    let mut byte = [0u8; 1];
    while stderr.read(&mut byte).expect("reading the port") == 1 && byte[0] != b'\n' {
        port_line.push(char::from(byte[0]));
    }
    let port = port_line.trim().to_string();
    let server_out = collect(server.stdout.take());
    let mut cmd = sonde();
    cmd.args(["connect", "localhost", &port, "--message", "Hello, World!"]);
    let client = run(cmd, b"");
    assert_eq!(client.code(), Some(0), "sonde connect: {}", client.stderr);
    assert_eq!(client.stdout_text(), "Hello, World!");
    let server = finish(server, server_out, collect(Some(stderr)));
    assert_eq!(server.code(), Some(0));
    assert_eq!(server.stdout_text(), "Hello, World!\n");
}

trait ToOwnedCmd {
    fn to_owned_cmd(&mut self) -> Command;
}

impl ToOwnedCmd for Command {
    fn to_owned_cmd(&mut self) -> Command {
        let mut cmd = Command::new(self.get_program());
        cmd.args(self.get_args());
        cmd
    }
}

const BULK: usize = 256 << 20;

fn write_file(dir: &TempDir, name: &str, data: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("writing a test file");
    path
}

fn file(path: &std::path::Path) -> Stdio {
    Stdio::from(std::fs::File::open(path).expect("opening a test file"))
}

fn create(path: &std::path::Path) -> Stdio {
    Stdio::from(std::fs::File::create(path).expect("creating a test file"))
}

fn hash_file(path: &std::path::Path) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(std::fs::File::open(path).expect("opening a file"))
        .expect("hashing a file");
    hasher.finalize()
}

/// 256 MiB from `connect`'s stdin arrive byte-exact on `listen`'s stdout.
#[test]
fn bulk_connect_to_listen_is_byte_exact() {
    let dir = TempDir::new("bulk-cl");
    let data = random_bytes(BULK, 1);
    let input = write_file(&dir, "in", &data);
    let output = dir.join("out");
    let listener = start_listener(&["127.0.0.1:0"], Stdio::null(), create(&output));
    let mut cmd = sonde();
    cmd.args(["connect", "127.0.0.1", &listener.port.to_string()]);
    let child = cmd
        .stdin(file(&input))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting sonde connect");
    let stderr = collect(child.stderr.as_ref().map(|_| std::io::empty()));
    let client = finish(child, collect(None::<std::io::Empty>), stderr);
    assert_eq!(client.code(), Some(0));
    let server = listener.finish();
    assert_eq!(server.code(), Some(0), "{}", server.stderr);
    assert_eq!(hash_file(&output), blake3::hash(&data));
}

/// 256 MiB from `listen`'s stdin arrive byte-exact on `connect`'s stdout.
#[test]
fn bulk_listen_to_connect_is_byte_exact() {
    let dir = TempDir::new("bulk-lc");
    let data = random_bytes(BULK, 2);
    let input = write_file(&dir, "in", &data);
    let output = dir.join("out");
    let listener = start_listener(&["127.0.0.1:0"], file(&input), Stdio::null());
    let child = sonde()
        .args(["connect", "127.0.0.1", &listener.port.to_string()])
        .stdin(Stdio::null())
        .stdout(create(&output))
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting sonde connect");
    let client = finish(
        child,
        collect(None::<std::io::Empty>),
        collect(None::<std::io::Empty>),
    );
    assert_eq!(client.code(), Some(0));
    let server = listener.finish();
    assert_eq!(server.code(), Some(0), "{}", server.stderr);
    assert_eq!(hash_file(&output), blake3::hash(&data));
}

/// A server that answers only after end-of-input, and late (socat would
/// have given up after 0.5 s), gets the whole request, and sonde prints
/// the whole answer.
#[test]
fn late_answer_after_end_of_input_is_printed_whole() {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = server.local_addr().expect("addr").port();
    let request = random_bytes(3 << 20, 3);
    let answer = random_bytes(5 << 20, 4);
    let expected = answer.clone();
    let handle = thread::spawn(move || {
        let (mut conn, _) = server.accept().expect("accept");
        let mut got = Vec::new();
        conn.read_to_end(&mut got).expect("read the request");
        thread::sleep(Duration::from_millis(1200));
        conn.write_all(&answer).expect("write the answer");
        got
    });
    let mut cmd = sonde();
    cmd.args(["connect", "127.0.0.1", &port.to_string()]);
    let client = run(cmd, &request);
    assert_eq!(client.code(), Some(0), "{}", client.stderr);
    assert!(client.stdout == expected, "answer differs");
    assert!(
        handle.join().expect("server thread") == request,
        "request differs"
    );
}

/// When the peer finishes sending first, sonde still sends all of its
/// piped input before it exits.
#[test]
fn input_is_sent_in_full_after_the_peer_half_closes() {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = server.local_addr().expect("addr").port();
    let request = random_bytes(8 << 20, 5);
    let handle = thread::spawn(move || {
        let (mut conn, _) = server.accept().expect("accept");
        conn.write_all(b"early reply").expect("reply");
        conn.shutdown(Shutdown::Write).expect("half-close");
        let mut got = Vec::new();
        conn.read_to_end(&mut got).expect("read the request");
        got
    });
    let mut cmd = sonde();
    cmd.args(["connect", &format!("127.0.0.1:{port}")]);
    let client = run(cmd, &request);
    assert_eq!(client.code(), Some(0), "{}", client.stderr);
    assert_eq!(client.stdout, b"early reply");
    assert!(handle.join().expect("server thread") == request);
}

/// `listen -k` serves several clients at once: stdin goes to all of them,
/// and what each sends reaches stdout.
#[test]
fn keep_open_serves_several_clients() {
    let mut listener = start_listener(&["-k", "127.0.0.1:0"], Stdio::piped(), Stdio::piped());
    let mut clients: Vec<TcpStream> = (0..3)
        .map(|_| {
            let client = TcpStream::connect(("127.0.0.1", listener.port)).expect("connect");
            client.set_read_timeout(Some(DEADLINE)).expect("timeout");
            client
        })
        .collect();
    for _ in 0..3 {
        assert!(listener.next_line().starts_with("connection from"));
    }
    let mut stdin = listener.child.stdin.take().expect("piped stdin");
    stdin.write_all(b"to all\n").expect("write stdin");
    for client in &mut clients {
        let mut got = [0u8; 7];
        client.read_exact(&mut got).expect("broadcast arrives");
        assert_eq!(&got, b"to all\n");
    }
    for (i, client) in clients.iter_mut().enumerate() {
        client
            .write_all(format!("client {i}\n").as_bytes())
            .expect("send");
        client.shutdown(Shutdown::Write).expect("half-close");
    }
    for _ in 0..3 {
        assert!(listener.next_line().ends_with("closed"));
    }
    let _ = listener.child.kill();
    let done = listener.finish();
    let text = done.stdout_text();
    for i in 0..3 {
        assert!(
            text.contains(&format!("client {i}\n")),
            "missing client {i} in {text:?}"
        );
    }
}

/// UDP: a datagram reaches `listen -u`'s stdout, and its stdin line goes
/// back to that peer.
#[test]
fn udp_listen_round_trip() {
    let mut listener = start_listener(&["-u", "127.0.0.1:0"], Stdio::piped(), Stdio::piped());
    let peer = UdpSocket::bind("127.0.0.1:0").expect("bind");
    peer.set_read_timeout(Some(DEADLINE)).expect("timeout");
    peer.send_to(b"ping\n", ("127.0.0.1", listener.port))
        .expect("send");
    assert!(listener.next_line().starts_with("datagram from"));
    let mut stdin = listener.child.stdin.take().expect("piped stdin");
    stdin.write_all(b"pong\n").expect("write stdin");
    let mut buf = [0u8; 64];
    let (n, _) = peer.recv_from(&mut buf).expect("reply");
    assert_eq!(&buf[..n], b"pong\n");
    let _ = listener.child.kill();
    assert_eq!(listener.finish().stdout, b"ping\n");
}

/// UDP: `connect -u` sends a datagram per line and prints the echoes,
/// then exits after the quiet time.
#[test]
fn udp_connect_sends_lines_and_prints_replies() {
    let echo = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = echo.local_addr().expect("addr").port();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buf) {
            let _ = echo.send_to(&buf[..n], from);
        }
    });
    let mut cmd = sonde();
    cmd.args(["connect", "-u", "-q", "0.5", "127.0.0.1", &port.to_string()]);
    let client = run(cmd, b"one\ntwo\n");
    assert_eq!(client.code(), Some(0), "{}", client.stderr);
    assert_eq!(client.stdout_text(), "one\ntwo\n");
}

/// Accepts one connection, returns what it read (to EOF) and the client's
/// address, after writing `reply` and closing.
fn one_shot_server(
    reply: &'static [u8],
) -> (u16, thread::JoinHandle<(Vec<u8>, std::net::SocketAddr)>) {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = server.local_addr().expect("addr").port();
    let handle = thread::spawn(move || {
        let (mut conn, from) = server.accept().expect("accept");
        conn.write_all(reply).expect("reply");
        let mut got = Vec::new();
        conn.read_to_end(&mut got).expect("read");
        (got, from)
    });
    (port, handle)
}

#[test]
fn crlf_hex_and_source_address() {
    let (port, handle) = one_shot_server(b"ok");
    let mut cmd = sonde();
    cmd.args([
        "connect",
        "--crlf",
        "--hex",
        "--source",
        "127.0.0.2",
        "127.0.0.1",
    ])
    .arg(port.to_string());
    let client = run(cmd, b"a\nb\n");
    assert_eq!(client.code(), Some(0), "{}", client.stderr);
    let (got, from) = handle.join().expect("server");
    assert_eq!(got, b"a\r\nb\r\n");
    assert_eq!(from.ip().to_string(), "127.0.0.2");
    assert!(
        client.stderr.contains("> 00000000  61 0d 0a 62 0d 0a"),
        "{}",
        client.stderr
    );
    assert!(
        client.stderr.contains("< 00000000  6f 6b"),
        "{}",
        client.stderr
    );
}

#[test]
fn send_only_discards_and_recv_only_never_reads_stdin() {
    let (port, handle) = one_shot_server(b"ignored");
    let mut cmd = sonde();
    cmd.args(["connect", "--send-only", "127.0.0.1"])
        .arg(port.to_string());
    let client = run(cmd, b"data");
    assert_eq!(client.code(), Some(0), "{}", client.stderr);
    assert!(client.stdout.is_empty());
    assert_eq!(handle.join().expect("server").0, b"data");

    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = server.local_addr().expect("addr").port();
    let handle = thread::spawn(move || {
        let (mut conn, _) = server.accept().expect("accept");
        conn.write_all(b"hello").expect("write");
        conn.shutdown(Shutdown::Write).expect("half-close");
        let mut got = Vec::new();
        let _ = conn.read_to_end(&mut got);
        got
    });
    let mut cmd = sonde();
    cmd.args(["connect", "--recv-only", "127.0.0.1"])
        .arg(port.to_string());
    let client = run(cmd, b"never sent");
    assert_eq!(client.code(), Some(0), "{}", client.stderr);
    assert_eq!(client.stdout, b"hello");
    assert!(handle.join().expect("server").is_empty());
}

/// With `--no-shutdown` sonde keeps its write side open after the input
/// ends, and still exits when the peer closes.
#[test]
fn no_shutdown_keeps_the_write_side_open() {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = server.local_addr().expect("addr").port();
    let handle = thread::spawn(move || {
        let (mut conn, _) = server.accept().expect("accept");
        let mut got = [0u8; 4];
        conn.read_exact(&mut got).expect("read");
        // No EOF may follow: a short read timeout must expire.
        conn.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let mut more = [0u8; 1];
        let still_open = matches!(conn.read(&mut more), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock);
        conn.write_all(b"bye").expect("write");
        (got, still_open)
    });
    let mut cmd = sonde();
    cmd.args(["connect", "--no-shutdown", "127.0.0.1"])
        .arg(port.to_string());
    let client = run(cmd, b"data");
    assert_eq!(client.code(), Some(0), "{}", client.stderr);
    assert_eq!(client.stdout, b"bye");
    let (got, still_open) = handle.join().expect("server");
    assert_eq!(&got, b"data");
    assert!(still_open, "sonde half-closed despite --no-shutdown");
}

/// With a terminal on stdin, sonde exits as soon as the peer has finished
/// sending: an interactive user has nothing left to wait for.
#[test]
fn terminal_input_ends_when_the_peer_finishes() {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let controller = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
    grantpt(&controller).expect("grantpt");
    unlockpt(&controller).expect("unlockpt");
    let name = ptsname(&controller, Vec::new()).expect("ptsname");
    let terminal = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().expect("utf-8 pty name"))
        .expect("open the pty");
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = server.local_addr().expect("addr").port();
    thread::spawn(move || {
        if let Ok((mut conn, _)) = server.accept() {
            let _ = conn.write_all(b"bye\n");
            let _ = conn.shutdown(Shutdown::Write);
            let mut rest = Vec::new();
            let _ = conn.read_to_end(&mut rest);
        }
    });
    let child = sonde()
        .args(["connect", "127.0.0.1", &port.to_string()])
        .stdin(Stdio::from(terminal))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut child = child;
    let out = collect(child.stdout.take());
    let err = collect(child.stderr.take());
    let done = finish(child, out, err);
    drop(controller);
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert_eq!(done.stdout, b"bye\n");
}

/// A server's greeting reaches a pipe while the connection is still open
/// (`sonde connect ... | grep`): the splice into the pipe hands over what
/// came, not only what came before the end.
#[test]
fn a_greeting_reaches_a_pipe_before_the_connection_ends() {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = server.local_addr().expect("addr").port().to_string();
    let greeter = thread::spawn(move || {
        let (mut conn, _) = server.accept().expect("accept");
        conn.write_all(b"welcome\n").expect("greet");
        // Held open until the client has shown the greeting and goes.
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
    });
    let mut client = sonde()
        .args(["connect", "127.0.0.1", &port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("connect");
    let mut reaper = Reaper::new(client.id());
    let mut out = client.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut line = [0u8; 8];
        let _ = tx.send(out.read_exact(&mut line).map(|()| line));
    });
    let got = rx.recv_timeout(Duration::from_secs(10));
    drop(client.stdin.take());
    let _ = client.wait();
    reaper.disarm();
    let _ = greeter.join();
    assert_eq!(
        got.expect("the greeting within 10 s, the connection still open")
            .expect("read"),
        *b"welcome\n"
    );
}
