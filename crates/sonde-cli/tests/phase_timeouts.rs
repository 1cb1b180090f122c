//! Every phase a server waits in has a deadline, and each fires: a peer
//! that goes silent at that phase is closed by the server when its limit
//! passes (not before, and not long after). One case per row of the
//! README's table of timeouts; the cases run side by side.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use common::{Listener, TempDir, sonde, start_command};
use sonde::transfer::wire;

/// How late after its limit a server may close a silent peer.
const SLACK: Duration = Duration::from_secs(4);

/// One phase: a server, what a peer sends before it goes silent, and the
/// limit the server must close it by.
struct Case {
    phase: &'static str,
    port: u16,
    opening: Vec<u8>,
    limit: Duration,
    /// After the opening, a byte this often (a slow drip, never silent
    /// long enough for a read's timeout).
    drip: Option<Duration>,
}

/// Connects, sends the opening, reads until the server closes, and says
/// how long that took after the opening went out.
fn closed_after(case: &Case) -> Result<Duration, String> {
    let mut conn = TcpStream::connect(("127.0.0.1", case.port)).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(case.limit + SLACK + SLACK))
        .map_err(|e| e.to_string())?;
    conn.write_all(&case.opening).map_err(|e| e.to_string())?;
    let start = Instant::now();
    if let Some(every) = case.drip {
        let mut tap = conn.try_clone().map_err(|e| e.to_string())?;
        let until = case.limit + SLACK + SLACK;
        thread::spawn(move || {
            while start.elapsed() < until && tap.write_all(b"a").is_ok() {
                thread::sleep(every);
            }
        });
    }
    let mut rest = Vec::new();
    match conn.read_to_end(&mut rest) {
        Ok(_) => Ok(start.elapsed()),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(start.elapsed()),
        Err(e) => Err(format!("still open after {:?}: {e}", start.elapsed())),
    }
}

/// `sonde ARGS...` on loopback with its own config directory (where a
/// TLS server makes its certificate).
fn server(config: &TempDir, args: &[&str]) -> Listener {
    let mut cmd = sonde();
    cmd.env("XDG_CONFIG_HOME", &config.0)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    start_command(cmd)
}

/// A 37-byte iperf3 cookie.
const COOKIE: &[u8; 37] = b"phasetimeoutsphasetimeoutsphasetimeo\0";

/// Another test's cookie: were the two cases to share one, the one whose
/// test starts first would take the other's connection as its stream.
const OTHER_COOKIE: &[u8; 37] = b"phasetimeoutsphasetimeoutsstreamsone\0";

/// The first bytes of a TLS record header (a handshake, TLS 1.0 on the
/// record layer, as every ClientHello starts), and then nothing more.
const TLS_START: &[u8] = &[0x16, 0x03, 0x01];

/// A whole TLS record header announcing 512 bytes of handshake, which a
/// drip then brings a byte a second.
const TLS_HEADER: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00];

/// A listener that never answers a new connection: its accept queue
/// (of one) is full, so the kernel drops further SYNs; the connections
/// that fill it.
fn full_listener() -> (std::net::TcpListener, Vec<TcpStream>) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    socket.bind(&addr.into()).expect("bind");
    socket.listen(0).expect("listen");
    let listener: std::net::TcpListener = socket.into();
    let at = listener.local_addr().expect("addr");
    // A backlog of 0 still queues one; a second fills it for certain.
    let queued = (0..2)
        .filter_map(|_| TcpStream::connect_timeout(&at, Duration::from_millis(300)).ok())
        .collect();
    (listener, queued)
}

/// An SMTP session up to DATA's go-ahead, pipelined.
const SMTP_TO_DATA: &[u8] =
    b"EHLO phase.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n";

/// The cookie and a one-stream test's parameters.
fn cookie_and_params() -> Vec<u8> {
    let params = br#"{"tcp":true,"time":1,"parallel":1,"len":1024}"#;
    let mut bytes = OTHER_COOKIE.to_vec();
    bytes.extend_from_slice(&(params.len() as u32).to_be_bytes());
    bytes.extend_from_slice(params);
    bytes
}

/// The sender's hello and an offer of one empty directory, which the
/// receiver accepts.
fn hello_and_offer() -> Vec<u8> {
    let mut bytes = wire::hello().to_vec();
    bytes.extend(wire::encode(&wire::Message::Offer {
        files: 0,
        dirs: 1,
        bytes: 0,
    }));
    bytes
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn each_phase_closes_a_silent_peer_when_its_limit_passes() {
    let config = TempDir::new("phase-config");
    let dst = TempDir::new("phase-dst");
    let dir = dst.0.to_str().expect("utf-8 path");
    let perf = common::perf_server(&[]);
    let receive = server(&config, &["receive", dir, "--bind", "127.0.0.1", "-p", "0"]);
    let receive_k = server(
        &config,
        &[
            "receive",
            dir,
            "--bind",
            "127.0.0.1",
            "-p",
            "0",
            "-k",
            "--timeout",
            "2",
        ],
    );
    let receive_tls = server(
        &config,
        &["receive", dir, "--bind", "127.0.0.1", "-p", "0", "--tls"],
    );
    let echo = ["serve", "echo", "--bind", "127.0.0.1", "--port", "0"];
    let echo_idle = server(&config, &[&echo[..], &["--idle-timeout", "2"]].concat());
    let echo_tls = server(&config, &[&echo[..], &["--tls"]].concat());
    let chat = ["serve", "chat", "--bind", "127.0.0.1", "--port", "0"];
    let chat_idle = server(&config, &[&chat[..], &["--idle-timeout", "2"]].concat());
    let listen_idle = server(
        &config,
        &["listen", "127.0.0.1:0", "-k", "--idle-timeout", "2"],
    );
    let listen_tls = server(&config, &["listen", "127.0.0.1:0", "-k", "--tls"]);
    let smtp = server(
        &config,
        &[
            "serve",
            "smtp",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--store",
            ":memory:",
            "--idle-timeout",
            "2",
        ],
    );
    let socks = server(
        &config,
        &["serve", "socks5", "--bind", "127.0.0.1", "--port", "0"],
    );
    let http_proxy = server(
        &config,
        &["serve", "http-proxy", "--bind", "127.0.0.1", "--port", "0"],
    );
    let exporter = server(&config, &["exporter", "--listen", "127.0.0.1:0"]);
    let (full, _queued) = full_listener();
    let relay_to_nowhere = server(
        &config,
        &[
            "relay",
            "tcp-listen:127.0.0.1:0",
            &format!("tcp:127.0.0.1:{}", full.local_addr().expect("addr").port()),
            "-w",
            "2",
        ],
    );
    let relay = server(
        &config,
        &[
            "relay",
            "tcp-listen:127.0.0.1:0",
            &format!("tcp:127.0.0.1:{}", echo_idle.port),
            "--idle-timeout",
            "2",
        ],
    );

    let cases = [
        ("perf -s: the cookie", perf.port, vec![], secs(5)),
        (
            "perf -s: the parameters",
            perf.port,
            COOKIE.to_vec(),
            secs(3),
        ),
        (
            "perf -s: the data streams",
            perf.port,
            cookie_and_params(),
            secs(10),
        ),
        ("receive: the hello", receive.port, vec![], secs(5)),
        (
            "receive: the offer",
            receive.port,
            wire::hello().to_vec(),
            secs(5),
        ),
        (
            "receive -k --timeout 2: silence",
            receive_k.port,
            hello_and_offer(),
            secs(2),
        ),
        (
            "receive --tls: the first byte",
            receive_tls.port,
            vec![],
            secs(5),
        ),
        (
            "receive --tls: the handshake",
            receive_tls.port,
            TLS_START.to_vec(),
            secs(10),
        ),
        (
            "receive --tls: the handshake, dripped",
            receive_tls.port,
            TLS_HEADER.to_vec(),
            secs(10),
        ),
        (
            "serve echo --idle-timeout 2",
            echo_idle.port,
            b"hi".to_vec(),
            secs(2),
        ),
        (
            "serve echo --tls: the handshake",
            echo_tls.port,
            TLS_START.to_vec(),
            secs(10),
        ),
        (
            "serve echo --tls: the handshake, dripped",
            echo_tls.port,
            TLS_HEADER.to_vec(),
            secs(10),
        ),
        (
            "serve chat --idle-timeout 2",
            chat_idle.port,
            b"hi\n".to_vec(),
            secs(2),
        ),
        (
            "listen -k --idle-timeout 2",
            listen_idle.port,
            b"hi\n".to_vec(),
            secs(2),
        ),
        (
            "listen -k --tls: the handshake",
            listen_tls.port,
            vec![],
            secs(10),
        ),
        (
            "listen -k --tls: the handshake, dripped",
            listen_tls.port,
            TLS_HEADER.to_vec(),
            secs(10),
        ),
        (
            "serve smtp --idle-timeout 2: a command",
            smtp.port,
            b"EHLO".to_vec(),
            secs(2),
        ),
        (
            "serve smtp --idle-timeout 2: a command, dripped",
            smtp.port,
            b"EHLO ".to_vec(),
            secs(2),
        ),
        (
            "serve smtp --idle-timeout 2: a message, dripped",
            smtp.port,
            SMTP_TO_DATA.to_vec(),
            secs(2),
        ),
        ("serve socks5: the request", socks.port, vec![5], secs(10)),
        (
            "serve socks5: the request, dripped",
            socks.port,
            vec![5, 1, 0, 5, 1, 0, 3, 200],
            secs(10),
        ),
        (
            "serve http-proxy: the request, dripped",
            http_proxy.port,
            b"CONNECT ".to_vec(),
            secs(10),
        ),
        (
            "HTTP (exporter, web side, --metrics): a request's head, dripped",
            exporter.port,
            b"GET / HTTP/1.1\r\nX-Drip: ".to_vec(),
            secs(30),
        ),
        (
            "relay -w 2: a TO that never answers",
            relay_to_nowhere.port,
            vec![],
            secs(2),
        ),
        (
            "relay --idle-timeout 2: an idle client",
            relay.port,
            b"hi".to_vec(),
            secs(2),
        ),
    ];
    let running: Vec<_> = cases
        .into_iter()
        .map(|(phase, port, opening, limit)| {
            let drip = phase.contains("drip").then_some(Duration::from_secs(1));
            let case = Case {
                phase,
                port,
                opening,
                limit,
                drip,
            };
            thread::spawn(move || (closed_after(&case), case))
        })
        .collect();
    let mut wrong = Vec::new();
    for handle in running {
        let (took, case) = handle.join().expect("a case's thread");
        let early = case.limit.saturating_sub(Duration::from_millis(100));
        match took {
            Ok(t) if t >= early && t <= case.limit + SLACK => {}
            Ok(t) => wrong.push(format!(
                "{}: closed after {t:?}, limit {:?}",
                case.phase, case.limit
            )),
            Err(e) => wrong.push(format!("{}: {e}", case.phase)),
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    for server in [
        perf,
        receive,
        receive_k,
        receive_tls,
        echo_idle,
        echo_tls,
        chat_idle,
        listen_idle,
        listen_tls,
        smtp,
        socks,
        http_proxy,
        exporter,
        relay_to_nowhere,
        relay,
    ] {
        server.stop();
    }
}
