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

type Labels = Vec<(String, String)>;
type Counter = prometheus_client::metrics::counter::Counter;

/// What a server counts of its own work for `--metrics`: sessions (tests,
/// transfers, clients) by how they ended, and the bytes they moved.
#[derive(Clone, Default)]
pub(crate) struct Outcomes {
    ended: prometheus_client::metrics::family::Family<Labels, Counter>,
    received: Counter,
    sent: Counter,
}

impl Outcomes {
    /// Every result in `results` shown from the start, at 0, so a rate
    /// over it exists before the first of each.
    pub(crate) fn new(results: &[&str]) -> Self {
        let outcomes = Self::default();
        for result in results {
            let _ = outcomes.ended.get_or_create(&label(result));
        }
        outcomes
    }

    /// One more session ended with `result`.
    pub(crate) fn ended(&self, result: &str) {
        self.ended.get_or_create(&label(result)).inc();
    }

    /// Bytes a session received and sent.
    pub(crate) fn moved(&self, received: u64, sent: u64) {
        self.received.inc_by(received);
        self.sent.inc_by(sent);
    }

    /// `{prefix}_{name}_total{result}` in `registry`, `what` being
    /// (name, help).
    pub(crate) fn register(&self, registry: &mut Registry, prefix: &str, what: (&str, &str)) {
        let (name, help) = what;
        registry.register(format!("{prefix}_{name}"), help, self.ended.clone());
    }

    /// `{prefix}_received_bytes_total` and `{prefix}_sent_bytes_total`
    /// in `registry`.
    pub(crate) fn register_bytes(&self, registry: &mut Registry, prefix: &str) {
        let (received, sent) = (self.received.clone(), self.sent.clone());
        registry.register(
            format!("{prefix}_received_bytes"),
            "Bytes received",
            received,
        );
        registry.register(format!("{prefix}_sent_bytes"), "Bytes sent", sent);
    }
}

fn label(result: &str) -> Labels {
    vec![("result".to_string(), result.to_string())]
}
