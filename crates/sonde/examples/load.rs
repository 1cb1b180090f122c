//! Load generator for the `sonde serve` benchmarks (bench/serve.py).
//!
//! `load echo ADDR CLIENTS SECS`: each client sends a 64-byte message and
//! waits for it back, over and over, on a persistent connection; prints
//! requests/s and the p50/p99 round trip.
//! `load chat ADDR CLIENTS SECS`: every client sends lines as fast as its
//! peers take them; prints chat lines delivered per second (all clients).
//! `load chat-rounds ADDR CLIENTS SECS [WINDOW]`: chat as people type it:
//! in each round every client writes one line (one write each); at most
//! WINDOW rounds (default 4) are in flight, a round being done when every
//! line has reached all the other clients; prints lines delivered per
//! second.
//! `load idle ADDR CLIENTS`: opens CLIENTS connections, prints "ready",
//! and holds them until stdin closes.

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: load echo|chat|chat-rounds|idle ADDR CLIENTS [SECS [WINDOW]]";
    let (Some(mode), Some(addr), Some(clients)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let clients: usize = clients.parse().unwrap_or(1);
    let secs: f64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let Ok(rt) = rt else { std::process::exit(1) };
    rt.block_on(async {
        match mode.as_str() {
            "echo" => echo(addr, clients, Duration::from_secs_f64(secs)).await,
            "chat" => chat(addr, clients, Duration::from_secs_f64(secs)).await,
            "chat-rounds" => {
                let window = args.get(5).and_then(|w| w.parse().ok()).unwrap_or(4);
                chat_rounds(addr, clients, Duration::from_secs_f64(secs), window).await
            }
            "idle" => idle(addr, clients).await,
            _ => eprintln!("{usage}"),
        }
    });
}

async fn connect(addr: &str) -> TcpStream {
    loop {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return s;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

async fn echo(addr: &str, clients: usize, length: Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..clients {
        streams.push(connect(addr).await);
    }
    let start = Instant::now();
    for mut s in streams {
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let msg = [b'x'; 64];
            let mut back = [0u8; 64];
            let mut samples = Vec::with_capacity(100_000);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if s.write_all(&msg).await.is_err() || s.read_exact(&mut back).await.is_err() {
                    break;
                }
                samples.push(t.elapsed().as_nanos() as u64);
            }
            samples
        }));
    }
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(s) = t.await {
            all.extend(s);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "requests_per_sec={:.0} p50_us={:.1} p99_us={:.1} requests={}",
        all.len() as f64 / elapsed,
        pct(0.50) as f64 / 1000.0,
        pct(0.99) as f64 / 1000.0,
        all.len()
    );
}

async fn chat(addr: &str, clients: usize, length: Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let mut streams = Vec::new();
    for _ in 0..clients {
        streams.push(connect(addr).await);
    }
    // Let the join notices settle before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    let base = received.load(Ordering::Relaxed);
    let mut tasks = Vec::new();
    for s in streams {
        let (r, mut w) = s.into_split();
        let stop_r = Arc::clone(&stop);
        let received = Arc::clone(&received);
        tasks.push(tokio::spawn(async move {
            // Count newlines in raw chunks: cheap, so the server is measured.
            let mut r = r;
            let mut buf = vec![0u8; 64 * 1024];
            while !stop_r.load(Ordering::Relaxed) {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let lines = buf[..n].iter().filter(|&&b| b == b'\n').count();
                        received.fetch_add(lines as u64, Ordering::Relaxed);
                    }
                }
            }
        }));
        let stop_w = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let burst = "hello everyone\n".repeat(10);
            while !stop_w.load(Ordering::Relaxed) {
                if w.write_all(burst.as_bytes()).await.is_err() {
                    break;
                }
                // Pace each sender so the room, not the generator, is measured.
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }));
    }
    tokio::time::sleep(length).await;
    let delivered = received.load(Ordering::Relaxed) - base;
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    println!(
        "lines_delivered_per_sec={:.0} delivered={delivered}",
        delivered as f64 / elapsed
    );
    std::process::exit(0);
}

/// `chat-rounds` (see the header), with at most `window` rounds in flight.
async fn chat_rounds(addr: &str, clients: usize, length: Duration, window: u64) {
    let received = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(tokio::sync::Notify::new());
    let (round_tx, round_rx) = tokio::sync::watch::channel(0u64);
    let mut writers = Vec::new();
    for _ in 0..clients {
        let (mut r, w) = connect(addr).await.into_split();
        writers.push(w);
        let received = Arc::clone(&received);
        let progress = Arc::clone(&progress);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let lines = buf[..n].iter().filter(|&&b| b == b'\n').count();
                received.fetch_add(lines as u64, Ordering::Relaxed);
                progress.notify_one();
            }
        });
    }
    for mut w in writers {
        let mut rounds = round_rx.clone();
        tokio::spawn(async move {
            let mut written = 0u64;
            while rounds.changed().await.is_ok() {
                let now = *rounds.borrow_and_update();
                // One write per line, as typed, even when rounds pile up.
                while written < now {
                    if w.write_all(b"hello everyone\n").await.is_err() {
                        return;
                    }
                    written += 1;
                }
            }
        });
    }
    // Let the join notices settle before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = received.load(Ordering::Relaxed);
    let per_round = (clients * clients.saturating_sub(1)).max(1) as u64;
    let start = Instant::now();
    let mut round = 0u64;
    while start.elapsed() < length {
        // Up to `window` rounds in flight, so that a server's latency (Nagle,
        // delayed ACKs) is not all that is measured.
        let done = (received.load(Ordering::Relaxed) - base) / per_round;
        if round < done + window {
            round = done + window;
            let _ = round_tx.send(round);
        }
        if tokio::time::timeout(Duration::from_secs(5), progress.notified())
            .await
            .is_err()
        {
            eprintln!("round {round} stalled");
            std::process::exit(1);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let delivered = received.load(Ordering::Relaxed) - base;
    println!(
        "lines_delivered_per_sec={:.0} delivered={delivered} rounds_started={round}",
        delivered as f64 / elapsed
    );
    std::process::exit(0);
}

async fn idle(addr: &str, clients: usize) {
    let mut held = Vec::with_capacity(clients);
    for _ in 0..clients {
        held.push(connect(addr).await);
    }
    println!("ready {}", held.len());
    let _ = tokio::task::spawn_blocking(|| {
        let stdin = std::io::stdin();
        for _ in stdin.lock().lines() {}
    })
    .await;
    drop(held);
}
