//! `sonde rtt --under-load`: round trips idle, then with a bulk TCP stream
//! (the perf engine, against a sonde or iperf3 server at the same host, or
//! an embedded one) running beside them: how much the queues inflate
//! delay.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use super::client::{self, RttConfig, RttReport};
use crate::error::{Error, Result};
use crate::perf::client::{self as perf_client, ClientConfig};
use crate::perf::{Observer, StreamInterval};

/// How long the load may take to move its first bytes.
const START_LIMIT: Duration = Duration::from_secs(30);

/// What the two runs measured.
#[derive(Debug)]
pub struct UnderLoad {
    /// Round trips with nothing else on the path.
    pub idle: RttReport,
    /// Round trips beside the bulk stream.
    pub loaded: RttReport,
    /// The bulk stream's mean rate (bit/s) while they ran.
    pub load_bits_per_second: f64,
}

/// Tells the waiting thread when the load's first interval is in, and
/// keeps each interval's rate.
struct Started {
    first: Mutex<Option<mpsc::Sender<()>>>,
    rates: Mutex<Vec<f64>>,
}

impl Observer for Started {
    fn interval(&self, interval: &[StreamInterval]) {
        if let Ok(mut tx) = self.first.lock()
            && let Some(tx) = tx.take()
        {
            let _ = tx.send(());
        }
        let bits: f64 = interval.iter().map(StreamInterval::bits_per_second).sum();
        if let Ok(mut rates) = self.rates.lock() {
            rates.push(bits);
        }
    }
}

/// Measures idle, then under a bulk TCP upload to the echo server's host
/// at `load_port` (an embedded perf server on loopback when `None`), its
/// sockets on congestion control `congestion` where given (a loss-based
/// one such as CUBIC fills a path's queue; BBR keeps it short).
///
/// # Errors
/// When either run fails, or the load moves nothing within 30 s.
pub fn run(
    config: &RttConfig,
    load_port: Option<u16>,
    congestion: Option<&str>,
) -> Result<UnderLoad> {
    let idle = client::run(config)?;
    let embedded = match load_port {
        Some(_) => None,
        None => Some(crate::perf::embedded::start()?),
    };
    let (host, port) = match (&embedded, load_port) {
        (Some(server), _) => (IpAddr::V4(Ipv4Addr::LOCALHOST), server.addr.port()),
        (None, port) => (
            config.addr.ip(),
            port.unwrap_or(crate::wire::iperf::DEFAULT_PORT),
        ),
    };
    let mut load = ClientConfig::new(host.to_string(), port);
    load.params.time = 3600;
    load.params.congestion = congestion.map(str::to_string);
    load.interval = Some(Duration::from_millis(200));
    let (tx, started) = mpsc::channel();
    let observer = Arc::new(Started {
        first: Mutex::new(Some(tx)),
        rates: Mutex::new(Vec::new()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let load_thread = {
        let (observer, stop) = (Arc::clone(&observer), Arc::clone(&stop));
        std::thread::spawn(move || perf_client::run(&load, observer.as_ref(), &stop))
    };
    if started.recv_timeout(START_LIMIT).is_err() {
        stop.store(true, Ordering::SeqCst);
        let why = match load_thread.join() {
            Ok(Err(e)) => e.to_string(),
            _ => format!("no data moved within {} s", START_LIMIT.as_secs()),
        };
        return Err(Error::Ended(format!(
            "starting the load against {host}:{port}: {why}"
        )));
    }
    let loaded = client::run(config);
    stop.store(true, Ordering::SeqCst);
    let _ = load_thread.join();
    drop(embedded);
    let rates = observer.rates.lock().map(|r| r.clone()).unwrap_or_default();
    let load_bits_per_second = if rates.is_empty() {
        0.0
    } else {
        rates.iter().sum::<f64>() / rates.len() as f64
    };
    Ok(UnderLoad {
        idle,
        loaded: loaded?,
        load_bits_per_second,
    })
}
