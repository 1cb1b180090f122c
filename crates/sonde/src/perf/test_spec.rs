//! What a client test is given ([`ClientConfig`]) and what it gives back
//! ([`ClientReport`]), apart from the client that runs it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::net::Family;
use crate::wire::iperf::params::Params;
use crate::wire::iperf::results::Results;

use super::measure::{StreamEnd, StreamInterval};
use super::sockopt::LocalOptions;
use super::{ConnectedStream, CpuUse};

/// How to run a client test.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// The test's parameters.
    pub params: Params,
    /// Address family.
    pub family: Family,
    /// Local address to bind (`-B`).
    pub bind: Option<IpAddr>,
    /// Local port of the first data stream (`--cport`).
    pub cport: Option<u16>,
    /// Timeout for the control connection.
    pub connect_timeout: Option<Duration>,
    /// Report interval; `None` for none.
    pub interval: Option<Duration>,
    /// In reverse mode, fail when no data arrives for this long.
    pub rcv_timeout: Duration,
    /// Settings of this side's sockets that the server does not see.
    pub local: LocalOptions,
    /// iperf3's authentication: the credentials sent with the parameters.
    pub auth: Option<crate::wire::iperf::auth::Credentials>,
    /// `-F`: send this file's bytes, or write what arrives into it.
    pub file: Option<std::path::PathBuf>,
    /// TLS data streams to a sonde server (asked for in the parameters),
    /// verifying it as this says.
    pub tls: Option<crate::tls::ClientTls>,
}

impl ClientConfig {
    /// A TCP test against `host:port` with iperf3's defaults.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            params: Params::default(),
            family: Family::Any,
            bind: None,
            cport: None,
            connect_timeout: None,
            interval: Some(Duration::from_secs(1)),
            rcv_timeout: Duration::from_secs(120),
            local: LocalOptions::default(),
            auth: None,
            file: None,
            tls: None,
        }
    }
}

/// Everything a finished (or interrupted) client test measured.
#[derive(Clone, Debug)]
pub struct ClientReport {
    /// The parameters used.
    pub params: Params,
    /// The server's address.
    pub server: SocketAddr,
    /// The control connection's local address.
    pub local: SocketAddr,
    /// The test cookie.
    pub cookie: String,
    /// The data streams.
    pub connected: Vec<ConnectedStream>,
    /// Every interval.
    pub intervals: Vec<Vec<StreamInterval>>,
    /// Per-stream totals from both sides (empty when interrupted).
    pub ends: Vec<StreamEnd>,
    /// This process's CPU use.
    pub local_cpu: CpuUse,
    /// The server's results, when exchanged.
    pub remote: Option<Results>,
    /// Congestion control on this side's data sockets.
    pub congestion: Option<String>,
    /// MSS of the control connection.
    pub mss: Option<u32>,
    /// The first data socket's send and receive buffer sizes, as the
    /// kernel reports them (iperf3's `sndbuf_actual`, `rcvbuf_actual`).
    pub buffers: Option<(u64, u64)>,
    /// The test was interrupted (Ctrl-C) before its end.
    pub interrupted: bool,
    /// `-F`'s file, once the test is over.
    pub diskfile: Option<crate::perf::diskfile::DiskFile>,
}
