//! A load for `bench/relay.py`: new TCP connections as fast as THREADS
//! threads can make them, each sending a line and reading its echo before
//! it closes, for SECS seconds or COUNT connections in all; prints the
//! connections per second it completed (one number).
//!
//! `cargo run --release --example conn_rate -- HOST:PORT THREADS SECS COUNT`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, threads, secs, count] = args.as_slice() else {
        eprintln!("usage: conn_rate HOST:PORT THREADS SECS COUNT");
        std::process::exit(2);
    };
    let (Ok(threads), Ok(secs), Ok(count)) = (
        threads.parse::<u64>(),
        secs.parse::<f64>(),
        count.parse::<u64>(),
    ) else {
        eprintln!("conn_rate: THREADS, SECS and COUNT are numbers");
        std::process::exit(2);
    };
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let done = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while Instant::now() < until && done.load(Ordering::Relaxed) < count {
                    if one(target) {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let took = start.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        eprintln!("conn_rate: {failed} connections failed");
    }
    println!("{:.0}", done.load(Ordering::Relaxed) as f64 / took);
}

/// One connection: a line out, its echo back, closed.
fn one(target: &str) -> bool {
    let Ok(mut conn) = TcpStream::connect(target) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    if conn.write_all(b"ping\n").is_err() {
        return false;
    }
    let mut got = [0u8; 5];
    conn.read_exact(&mut got).is_ok() && &got == b"ping\n"
}
