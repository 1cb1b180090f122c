//! The embedded server: a one-test perf server on a loopback port of its
//! own, for `sonde perf` with no host and the load of `rtt --under-load`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::server::{self, ServerConfig};
use crate::error::{Error, Result};

/// A running embedded server; stopped and joined when dropped (it ends by
/// itself after its one test).
#[derive(Debug)]
pub struct Embedded {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Starts a server for one test on 127.0.0.1 and a free port.
///
/// # Errors
/// When the port cannot be bound or the thread cannot start.
pub fn start() -> Result<Embedded> {
    start_with(None)
}

/// As [`start`], agreeing to TLS data streams with `tls` when given.
///
/// # Errors
/// When the port cannot be bound or the thread cannot start.
pub fn start_with(tls: Option<crate::tls::ServerTls>) -> Result<Embedded> {
    let listener =
        crate::net::listen_tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0), false)?;
    let fail = |e| Error::io("starting the embedded perf server", e);
    let addr = listener.local_addr().map_err(fail)?;
    let config = ServerConfig {
        one_off: true,
        max_tests: 1,
        tls,
        ..ServerConfig::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("sonde-perf-embedded".into())
        .spawn(move || {
            let _ = server::serve(listener, config, |_| {}, &flag);
        })
        .map_err(fail)?;
    Ok(Embedded {
        addr,
        stop,
        thread: Some(thread),
    })
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
