//! A load for `bench/exporter.py`: SCRAPERS keep-alive connections to a
//! `sonde exporter`, each asking `/probe?target=...&module=MODULE` one
//! after another (as many Prometheus scrapes of many targets would), for
//! SECS seconds or COUNT probes in all, the targets cycling over TARGETS
//! loopback addresses (127.0.0.1, 127.0.0.2, ...) at ECHO_PORT. Prints
//! the successful probes per second and the failed ones (two numbers).
//!
//! `cargo run --release --example exporter_load -- HOST:PORT SCRAPERS SECS COUNT MODULE ECHO_PORT TARGETS`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The n-th loopback address: 127.0.0.1 to 127.0.0.250, then 127.0.1.1 ...
fn host(n: u64) -> String {
    format!("127.0.{}.{}", n / 250, n % 250 + 1)
}

/// One answer's body, by its Content-Length; `None` when the line died.
fn answer(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut length = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

struct Load {
    addr: String,
    module: String,
    echo_port: u16,
    targets: u64,
    end: Instant,
    count: u64,
}

fn scraper(load: &Load, next: &AtomicU64, good: &AtomicU64, bad: &AtomicU64) {
    let Ok(stream) = TcpStream::connect(&load.addr) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let mut writer = stream.try_clone().expect("a clone of the socket");
    let mut reader = BufReader::new(stream);
    while Instant::now() < load.end {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= load.count {
            return;
        }
        let target = format!("{}:{}", host(n % load.targets), load.echo_port);
        let request = format!(
            "GET /probe?target={target}&module={} HTTP/1.1\r\nHost: x\r\n\r\n",
            load.module
        );
        if writer.write_all(request.as_bytes()).is_err() {
            return;
        }
        let Some(body) = answer(&mut reader) else {
            return;
        };
        let text = String::from_utf8_lossy(&body);
        if text.lines().any(|l| l == "probe_success 1.0") {
            good.fetch_add(1, Ordering::Relaxed);
        } else {
            bad.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 7 {
        eprintln!("usage: exporter_load HOST:PORT SCRAPERS SECS COUNT MODULE ECHO_PORT TARGETS");
        std::process::exit(2);
    }
    let number = |i: usize| args[i].parse::<u64>().expect("a number");
    let secs: f64 = args[2].parse().expect("seconds");
    let load = Load {
        addr: args[0].clone(),
        module: args[4].clone(),
        echo_port: u16::try_from(number(5)).expect("a port"),
        targets: number(6).max(1),
        end: Instant::now() + Duration::from_secs_f64(secs),
        count: number(3),
    };
    let (next, good, bad) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..number(1) {
            s.spawn(|| scraper(&load, &next, &good, &bad));
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{:.1} {}",
        good.load(Ordering::Relaxed) as f64 / elapsed,
        bad.load(Ordering::Relaxed)
    );
}
