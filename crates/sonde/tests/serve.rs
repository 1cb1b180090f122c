//! `sonde serve` through the library: echo, discard, chargen, chat, UDP,
//! limits, idle timeout and graceful shutdown. Every test binds port 0 and
//! runs under a timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sonde::door::Door;
use sonde::serve::{self, ServeConfig, ServiceKind, Stats};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

const DEADLINE: Duration = Duration::from_secs(60);

struct Server {
    addr: SocketAddr,
    door: Door,
    stats: Arc<Stats>,
    task: JoinHandle<Arc<Stats>>,
}

async fn start(kind: ServiceKind, config: ServeConfig) -> Server {
    // As the binary does: sonde's backlog (4096), not tokio's 1024.
    let std_listener =
        sonde::net::listen_tcp("127.0.0.1:0".parse().expect("addr"), false).expect("bind");
    let listener = sonde::door::to_tokio(std_listener).expect("register");
    let addr = listener.local_addr().expect("addr");
    let door = config.door(kind);
    let stats = Arc::new(Stats::default());
    let task = tokio::spawn(serve::run(
        listener,
        kind,
        config,
        door.clone(),
        Arc::clone(&stats),
    ));
    Server {
        addr,
        door,
        stats,
        task,
    }
}

fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("finished within the deadline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_is_byte_exact_with_1000_concurrent_clients() {
    within(async {
        let server = start(ServiceKind::Echo, ServeConfig::default()).await;
        let mut clients = Vec::new();
        for i in 0..1000u64 {
            let addr = server.addr;
            clients.push(tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.expect("connect");
                let data = bytes(4096 + (i as usize % 7) * 1000, i + 1);
                let (mut r, mut w) = s.split();
                let send = async {
                    w.write_all(&data).await.expect("send");
                    w.shutdown().await.expect("half-close");
                };
                let mut back = Vec::new();
                let recv = r.read_to_end(&mut back);
                let (_, got) = tokio::join!(send, recv);
                got.expect("receive");
                assert!(back == data, "client {i}: echo differs");
            }));
        }
        for c in clients {
            c.await.expect("client task");
        }
        assert_eq!(server.door.counters().snapshot().accepted, 1000);
        assert_eq!(
            server.stats.bytes_in.load(Ordering::Relaxed),
            server.stats.bytes_out.load(Ordering::Relaxed)
        );
        server.door.shutdown();
        server.task.await.expect("server");
    })
    .await;
}

#[tokio::test]
async fn discard_counts_bytes() {
    within(async {
        let server = start(ServiceKind::Discard, ServeConfig::default()).await;
        let mut s = TcpStream::connect(server.addr).await.expect("connect");
        s.write_all(&vec![7u8; 1_000_000]).await.expect("send");
        s.shutdown().await.expect("close");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.expect("eof");
        assert!(rest.is_empty());
        server.door.shutdown();
        let stats = server.task.await.expect("server");
        assert_eq!(stats.bytes_in.load(Ordering::Relaxed), 1_000_000);
        assert_eq!(stats.bytes_out.load(Ordering::Relaxed), 0);
    })
    .await;
}

#[tokio::test]
async fn chargen_sends_the_rfc_864_pattern_and_closes_on_shutdown() {
    within(async {
        let server = start(ServiceKind::Chargen, ServeConfig::default()).await;
        let s = TcpStream::connect(server.addr).await.expect("connect");
        let mut lines = BufReader::new(s);
        for i in 0..200 {
            let mut line = Vec::new();
            lines.read_until(b'\n', &mut line).await.expect("line");
            assert_eq!(line, serve::services::chargen_line(i), "line {i}");
        }
        server.door.shutdown();
        server.task.await.expect("server returns at once");
    })
    .await;
}

async fn line(reader: &mut BufReader<TcpStream>) -> String {
    let mut text = String::new();
    reader.read_line(&mut text).await.expect("a line");
    text.trim_end().to_string()
}

async fn chat_client(addr: SocketAddr) -> BufReader<TcpStream> {
    let mut c = BufReader::new(TcpStream::connect(addr).await.expect("connect"));
    assert!(line(&mut c).await.starts_with("* welcome, user"));
    c
}

#[tokio::test]
async fn chat_three_clients_see_lines_nicks_and_notices_in_order() {
    within(async {
        let server = start(ServiceKind::Chat, ServeConfig::default()).await;
        let mut a = chat_client(server.addr).await;
        let mut b = chat_client(server.addr).await;
        assert_eq!(line(&mut a).await, "* user2 joined");
        let mut c = chat_client(server.addr).await;
        assert_eq!(line(&mut a).await, "* user3 joined");
        assert_eq!(line(&mut b).await, "* user3 joined");
        a.get_mut()
            .write_all(b"/nick alice\nhello \x1b[2Jall\n")
            .await
            .expect("send");
        for r in [&mut a, &mut b, &mut c] {
            assert_eq!(line(r).await, "* user1 is now known as alice");
        }
        assert_eq!(line(&mut b).await, "<alice> hello [2Jall");
        assert_eq!(line(&mut c).await, "<alice> hello [2Jall");
        b.get_mut()
            .write_all(b"/me waves\n/who\n")
            .await
            .expect("send");
        assert_eq!(line(&mut a).await, "* user2 waves");
        assert_eq!(line(&mut c).await, "* user2 waves");
        assert_eq!(line(&mut b).await, "* here: alice, user2, user3");
        c.get_mut()
            .write_all(&vec![b'x'; 9000])
            .await
            .expect("long");
        c.get_mut().write_all(b"\n/quit\n").await.expect("quit");
        assert!(line(&mut c).await.starts_with("* line too long"));
        assert_eq!(line(&mut a).await, "* user3 left");
        assert_eq!(line(&mut b).await, "* user3 left");
        server.door.shutdown();
        assert_eq!(line(&mut a).await, "* the server is closing");
        server.task.await.expect("server");
    })
    .await;
}

#[tokio::test]
async fn chat_lines_cut_across_reads_and_at_the_length_limit() {
    within(async {
        let server = start(ServiceKind::Chat, ServeConfig::default()).await;
        let mut a = chat_client(server.addr).await;
        let mut b = chat_client(server.addr).await;
        assert_eq!(line(&mut a).await, "* user2 joined");
        // A line in pieces, each flushed to the socket on its own.
        for piece in [&b"hel"[..], b"lo th", b"ere\r\nsecond\n"] {
            b.get_mut().write_all(piece).await.expect("send");
            b.get_mut().flush().await.expect("flush");
            tokio::task::yield_now().await;
        }
        assert_eq!(line(&mut a).await, "<user2> hello there");
        assert_eq!(line(&mut a).await, "<user2> second");
        // Exactly the limit passes; one byte more is refused, and the
        // line after it (in the same write) still goes out.
        let mut longest = vec![b'y'; sonde::serve::chat::MAX_LINE];
        longest.push(b'\n');
        b.get_mut().write_all(&longest).await.expect("send");
        let shown = line(&mut a).await;
        assert_eq!(shown.len(), "<user2> ".len() + sonde::serve::chat::MAX_LINE);
        let mut over = vec![b'z'; sonde::serve::chat::MAX_LINE + 1];
        over.extend_from_slice(b"\nafter\n");
        b.get_mut().write_all(&over).await.expect("send");
        assert!(line(&mut b).await.starts_with("* line too long"));
        assert_eq!(line(&mut a).await, "<user2> after");
        server.door.shutdown();
        server.task.await.expect("server");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_client_that_stops_reading_is_dropped_and_others_go_on() {
    within(async {
        let server = start(ServiceKind::Chat, ServeConfig::default()).await;
        let mut talker = chat_client(server.addr).await;
        let mut listener = chat_client(server.addr).await;
        assert_eq!(line(&mut talker).await, "* user2 joined");
        // The slow one never reads after its welcome.
        let _slow = TcpStream::connect(server.addr).await.expect("connect");
        assert_eq!(line(&mut talker).await, "* user3 joined");
        assert_eq!(line(&mut listener).await, "* user3 joined");
        let text = format!("{}\n", "y".repeat(4000));
        let mut seen_drop = false;
        for i in 0..3000 {
            talker
                .get_mut()
                .write_all(text.as_bytes())
                .await
                .expect("talk");
            let got = line(&mut listener).await;
            if got.starts_with("* user3 was disconnected") {
                seen_drop = true;
                let again = line(&mut listener).await;
                assert!(again.starts_with("<user1> y"), "{again}");
                break;
            }
            assert!(got.starts_with("<user1> y"), "line {i}: {got}");
        }
        assert!(seen_drop, "the slow client was never dropped");
        server.door.shutdown();
        server.task.await.expect("server");
    })
    .await;
}

#[tokio::test]
async fn max_connections_refuses_the_extra_client() {
    within(async {
        let config = ServeConfig {
            max_connections: 2,
            ..ServeConfig::default()
        };
        let server = start(ServiceKind::Echo, config).await;
        let mut a = TcpStream::connect(server.addr).await.expect("a");
        let mut b = TcpStream::connect(server.addr).await.expect("b");
        for s in [&mut a, &mut b] {
            s.write_all(b"x").await.expect("w");
            let mut one = [0u8; 1];
            s.read_exact(&mut one).await.expect("echo");
        }
        let mut c = TcpStream::connect(server.addr).await.expect("c connects");
        let mut buf = [0u8; 1];
        let n = c.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0, "the extra client is closed at once");
        assert_eq!(server.door.counters().snapshot().refused, 1);
        server.door.shutdown();
        server.task.await.expect("server");
    })
    .await;
}

#[tokio::test]
async fn idle_timeout_closes_a_silent_client() {
    within(async {
        let config = ServeConfig {
            idle_timeout: Some(Duration::from_millis(300)),
            ..ServeConfig::default()
        };
        let server = start(ServiceKind::Echo, config).await;
        let mut s = TcpStream::connect(server.addr).await.expect("connect");
        let mut buf = [0u8; 1];
        let started = tokio::time::Instant::now();
        assert_eq!(s.read(&mut buf).await.unwrap_or(0), 0);
        assert!(started.elapsed() >= Duration::from_millis(250));
        server.door.shutdown();
        server.task.await.expect("server");
    })
    .await;
}

#[tokio::test]
async fn shutdown_lets_busy_connections_finish_and_closes_idle_ones() {
    within(async {
        let server = start(ServiceKind::Echo, ServeConfig::default()).await;
        let mut idle = TcpStream::connect(server.addr).await.expect("idle");
        let mut busy = TcpStream::connect(server.addr).await.expect("busy");
        busy.write_all(b"ping").await.expect("w");
        let mut got = [0u8; 4];
        busy.read_exact(&mut got).await.expect("echo");
        server.door.shutdown();
        server.task.await.expect("run returns");
        let mut buf = [0u8; 1];
        assert_eq!(idle.read(&mut buf).await.unwrap_or(0), 0, "idle closed");
        assert_eq!(server.door.counters().snapshot().accepted, 2);
        assert!(
            TcpStream::connect(server.addr).await.is_err(),
            "no longer accepting"
        );
    })
    .await;
}

#[tokio::test]
async fn udp_echo_sends_each_datagram_back_once() {
    within(async {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = sock.local_addr().expect("addr");
        let door = ServeConfig::default().door(ServiceKind::Echo);
        let server_door = door.clone();
        let task = tokio::task::spawn_blocking(move || {
            let stats = Stats::default();
            serve::datagram::run(&sock, ServiceKind::Echo, false, &server_door, &stats);
            stats
        });
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        client.connect(addr).await.expect("connect");
        for size in [1usize, 100, 1400, 65_000] {
            let data = bytes(size, size as u64);
            client.send(&data).await.expect("send");
            let mut buf = vec![0u8; 65_536];
            let n = client.recv(&mut buf).await.expect("recv");
            assert_eq!(&buf[..n], &data[..]);
        }
        door.shutdown();
        let stats = task.await.expect("server");
        assert_eq!(
            stats.bytes_in.load(Ordering::Relaxed),
            stats.bytes_out.load(Ordering::Relaxed)
        );
    })
    .await;
}

/// An echo client that sends but never reads cannot make the server buffer
/// without bound: once the socket buffers are full the server stops reading
/// it, so the client's writes stop being accepted.
#[tokio::test]
async fn echo_stops_reading_a_client_that_never_reads() {
    within(async {
        let server = start(ServiceKind::Echo, ServeConfig::default()).await;
        let s = TcpStream::connect(server.addr).await.expect("connect");
        let chunk = vec![1u8; 64 * 1024];
        let mut written = 0usize;
        loop {
            // Stop when no write is accepted for half a second.
            match tokio::time::timeout(Duration::from_millis(500), s.writable()).await {
                Ok(Ok(())) => match s.try_write(&chunk) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => panic!("write failed: {e}"),
                },
                _ => break,
            }
            assert!(
                written < 256 << 20,
                "the server kept taking data: {written} bytes"
            );
        }
        // What was taken is bounded by the kernel's socket buffers (both
        // directions, both ends), not by the server's memory.
        let server_held = server.stats.bytes_in.load(Ordering::Relaxed)
            - server.stats.bytes_out.load(Ordering::Relaxed);
        assert!(
            server_held <= 64 * 1024,
            "server holds {server_held} bytes in memory"
        );
        server.door.shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(10), server.task).await;
    })
    .await;
}
