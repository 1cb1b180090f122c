//! `--metrics [ADDR:]PORT` on the servers: where to serve their counters
//! for Prometheus, and the start of that endpoint (a thread of its own).

use anyhow::Context;
use clap::Args;
use prometheus_client::registry::Registry;

use crate::usage::UsageError;

#[derive(Debug, Args)]
pub(crate) struct MetricsArgs {
    /// Serve this server's counters for Prometheus at http://[ADDR:]PORT/metrics (PORT alone: every interface).
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub(crate) metrics: Option<String>,
}

/// `PORT` (every interface), `ADDR:PORT` or `[V6]:PORT`; `default_port`
/// when none is given.
pub(crate) fn listen_spec(
    spec: Option<&str>,
    default_port: u16,
    flag: &str,
) -> anyhow::Result<std::net::SocketAddr> {
    let any = |port| sonde::net::local_addrs(None, port, sonde::net::Family::Any);
    let addrs = match spec {
        None => any(default_port)?,
        Some(spec) => match spec.parse::<u16>() {
            Ok(port) => any(port)?,
            Err(_) => {
                let (host, port) = sonde::net::split_host_port(spec)
                    .map_err(|e| UsageError(format!("{flag} {spec}: {e}")))?;
                sonde::net::local_addrs(Some(&host), port, sonde::net::Family::Any)?
            }
        },
    };
    Ok(addrs[0])
}

impl MetricsArgs {
    /// Binds and serves `registry` if `--metrics` was given; says where
    /// on stderr unless `quiet`.
    pub(crate) fn start(&self, registry: Registry, quiet: bool) -> anyhow::Result<()> {
        let Some(spec) = self.metrics.as_deref() else {
            return Ok(());
        };
        let addr = listen_spec(Some(spec), 0, "--metrics")?;
        let listener = sonde::net::listen_tcp(addr, false).context("binding --metrics")?;
        let at = listener
            .local_addr()
            .map_or_else(|_| addr.to_string(), |a| a.to_string());
        sonde::door::metrics::spawn(listener, registry).context("starting the metrics endpoint")?;
        if !quiet {
            eprintln!("sonde: metrics on http://{at}/metrics");
        }
        Ok(())
    }
}

/// A door's counters, registered.
pub(crate) fn with_door(counters: std::sync::Arc<sonde::door::Counters>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(sonde::door::metrics::DoorCollector(counters)));
    registry
}
