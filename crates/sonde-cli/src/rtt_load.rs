//! `sonde rtt --under-load`: latency idle, then with a bulk TCP stream
//! (the perf engine, against a sonde or iperf3 server at the same host)
//! running beside the pings, and the ratio: how much the queues inflate
//! delay.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use sonde::perf::client::{self as perf_client, ClientConfig};
use sonde::perf::server::{self as perf_server, ServerConfig};
use sonde::perf::{Observer, StreamInterval};
use sonde::rtt::client::{self, RttConfig};
use sonde::rtt::stats::{Summary, micros};

/// Tells the waiting thread when the load's first interval is in.
struct Started(Mutex<Option<mpsc::Sender<()>>>, std::sync::Mutex<Vec<f64>>);

use std::sync::Mutex;

impl Observer for Started {
    fn interval(&self, interval: &[StreamInterval]) {
        if let Ok(mut tx) = self.0.lock()
            && let Some(tx) = tx.take()
        {
            let _ = tx.send(());
        }
        let bits: f64 = interval.iter().map(StreamInterval::bits_per_second).sum();
        if let Ok(mut rates) = self.1.lock() {
            rates.push(bits);
        }
    }
}

/// Measures idle, then under a bulk TCP load to `load_host:load_port`
/// (or an embedded perf server when `load_port` is `None`).
pub(crate) fn run(
    config: &RttConfig,
    load_port: Option<u16>,
    json_out: bool,
) -> anyhow::Result<()> {
    let idle = client::run(config)?;
    let (port, server) = match load_port {
        Some(p) => (p, None),
        None => {
            let listener =
                sonde::net::listen_tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0), false)?;
            let port = listener
                .local_addr()
                .context("reading the load server's port")?
                .port();
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            let cfg = ServerConfig {
                one_off: true,
                ..ServerConfig::default()
            };
            let handle =
                std::thread::spawn(move || perf_server::serve(listener, cfg, |_| {}, &flag));
            (port, Some((handle, stop)))
        }
    };
    let host = if load_port.is_some() {
        config.addr.ip()
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    let mut load = ClientConfig::new(host.to_string(), port);
    load.params.time = 3600;
    load.interval = Some(Duration::from_millis(200));
    let (tx, started) = mpsc::channel();
    let observer = Arc::new(Started(Mutex::new(Some(tx)), Mutex::new(Vec::new())));
    let stop = Arc::new(AtomicBool::new(false));
    let load_thread = {
        let observer = Arc::clone(&observer);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || perf_client::run(&load, observer.as_ref(), &stop))
    };
    if started.recv_timeout(Duration::from_secs(30)).is_err() {
        stop.store(true, Ordering::SeqCst);
        let outcome = load_thread.join();
        let why = match outcome {
            Ok(Err(e)) => e.to_string(),
            _ => "no data moved within 30 s".to_string(),
        };
        anyhow::bail!("starting the load against {host}:{port}: {why}");
    }
    let loaded = client::run(config);
    stop.store(true, Ordering::SeqCst);
    let _ = load_thread.join();
    if let Some((handle, flag)) = server {
        flag.store(true, Ordering::SeqCst);
        let _ = handle.join();
    }
    let loaded = loaded?;
    let rates = observer.1.lock().map(|r| r.clone()).unwrap_or_default();
    let load_bps = if rates.is_empty() {
        0.0
    } else {
        rates.iter().sum::<f64>() / rates.len() as f64
    };
    print(
        &idle.latency.summary(),
        &loaded.latency.summary(),
        load_bps,
        json_out,
    );
    Ok(())
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn print(idle: &Summary, loaded: &Summary, load_bps: f64, json_out: bool) {
    if json_out {
        let s = |x: &Summary| json!({"count": x.count, "min": x.min, "p50": x.p50, "p90": x.p90, "p99": x.p99, "max": x.max});
        let doc = json!({"idle_rtt_ns": s(idle), "loaded_rtt_ns": s(loaded),
            "ratio_p50": ratio(loaded.p50, idle.p50), "ratio_p99": ratio(loaded.p99, idle.p99),
            "load_bits_per_second": load_bps});
        outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return;
    }
    outln!(
        "sonde rtt --under-load: round trips idle, then beside a bulk TCP stream ({:.2} Gbit/s)",
        load_bps / 1e9
    );
    outln!("{:>8} {:>12} {:>12} {:>8}", "", "idle", "loaded", "ratio");
    for (name, a, b) in [
        ("min", idle.min, loaded.min),
        ("p50", idle.p50, loaded.p50),
        ("p90", idle.p90, loaded.p90),
        ("p99", idle.p99, loaded.p99),
        ("max", idle.max, loaded.max),
    ] {
        outln!(
            "{name:>8} {:>12} {:>12} {:>7.2}x",
            micros(a),
            micros(b),
            ratio(b, a)
        );
    }
}
