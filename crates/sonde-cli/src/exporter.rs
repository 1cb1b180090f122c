//! `sonde exporter`: the Prometheus exporter's flags, its modules file
//! read and checked, and its server on a tokio runtime behind the front
//! door, until SIGINT/SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sonde::door::{Door, DoorConfig};
use sonde::exporter::config::Config;
use sonde::exporter::{DEFAULT_PORT, Settings};

use crate::usage::{UsageError, parse_secs};

#[derive(Debug, Args)]
pub(crate) struct ExporterArgs {
    /// Where to serve /probe and /metrics: [ADDR:]PORT (default every interface, port 9579).
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub(crate) listen: Option<String>,
    /// The modules, a TOML file (examples/exporter/sonde-exporter.toml); without it, the defaults.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<std::path::PathBuf>,
    /// Probes running at once, all targets together.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub(crate) max_concurrent: usize,
    /// Perf probes that may wait for one target (they run one after another); past it, one fails at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub(crate) queue: usize,
    /// Taken off the scrape's timeout (X-Prometheus-Scrape-Timeout-Seconds), for the answer's way back.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "0.5")]
    pub(crate) timeout_offset: Duration,
    /// Do not print the address.
    #[arg(long)]
    pub(crate) quiet: bool,
    #[command(flatten)]
    pub(crate) access: crate::access::AccessArgs,
}

/// `sonde exporter`.
pub(crate) fn exporter(args: ExporterArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the modules file {}", path.display()))?;
            Config::parse(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())))?
        }
        None => Config::default(),
    };
    let settings = Settings {
        config,
        max_concurrent: args.max_concurrent.max(1),
        timeout_offset: args.timeout_offset,
        queue: args.queue,
        ..Settings::default()
    };
    let addr = crate::metrics::listen_spec(args.listen.as_deref(), DEFAULT_PORT, "--listen")?;
    let listener = sonde::net::listen_tcp(addr, false)?;
    if !args.quiet {
        let at = listener
            .local_addr()
            .map_or_else(|_| addr.to_string(), |a| a.to_string());
        eprintln!("sonde exporter listening on {at}");
    }
    let mut door = DoorConfig::new("exporter", args.access.max_connections(1024));
    door.rules = args.access.rules();
    let door = Door::new(door);
    crate::serve::on_signals(&door)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let listener = sonde::door::to_tokio(listener).context("registering the listener")?;
        let serving = sonde::exporter::run(listener, door.clone(), settings);
        tokio::spawn(serving).await.context("running the exporter")
    })?;
    Ok(ExitCode::SUCCESS)
}
