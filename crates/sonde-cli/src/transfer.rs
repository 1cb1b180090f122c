//! `sonde send` and `sonde receive`: the command lines, the connection set
//! up, and the summary and exit code of a transfer (0 verified, 1 cut
//! short or failed, 3 a hash mismatch, 4 refused by the receiver).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sonde::net::{self, ConnectOptions, Family};
use sonde::transfer::plan::Plan;
use sonde::transfer::serve::{ReceiveEvent, ServeOptions, serve};
use sonde::transfer::{
    self, Outcome, Progress, ReceiveOptions, Report, SendOptions, TransferError,
};
use sonde::units::{Format, bitrate, bytes};

use crate::args::parse_secs;
use crate::talk::UsageError;
use crate::transfer_progress::Display;

/// Exit code of a transfer whose hashes did not match.
const EXIT_MISMATCH: u8 = 3;

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Files and directories to send (`-` for stdin, with --name), then
    /// HOST[:PORT] of the receiver (port 7090 by default).
    #[arg(value_name = "PATH... HOST[:PORT]", num_args = 2.., required = true)]
    pub(crate) args: Vec<String>,
    /// The name stdin is sent under (with `-`).
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// Use IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub(crate) ipv4: bool,
    /// Use IPv6 only.
    #[arg(short = '6')]
    pub(crate) ipv6: bool,
    /// Give up connecting to each address after SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) connect_timeout: Option<Duration>,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ReceiveArgs {
    /// Directory to write into (default: the current one).
    #[arg(value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// Address to bind (default: every interface, IPv4 and IPv6).
    #[arg(long, value_name = "ADDR")]
    pub(crate) bind: Option<String>,
    /// Port.
    #[arg(long, short = 'p', default_value_t = transfer::DEFAULT_PORT)]
    pub(crate) port: u16,
    /// Take one transfer after another (several at once) instead of exiting after the first.
    #[arg(long, short = 'k')]
    pub(crate) keep_open: bool,
    /// With --keep-open: transfers at once; a sender past this is turned away.
    #[arg(long, value_name = "N", default_value_t = 8, requires = "keep_open")]
    pub(crate) max_transfers: usize,
    /// Replace files that exist and differ.
    #[arg(long)]
    pub(crate) overwrite: bool,
    /// Refuse a transfer of more than SIZE bytes (K, M, G, T: 1024-based).
    #[arg(long, value_name = "SIZE", value_parser = crate::perf_args::parse_size)]
    pub(crate) max_size: Option<u64>,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// Flags both ends take.
#[derive(Clone, Debug, Args)]
pub(crate) struct CommonArgs {
    /// Give up when the peer is silent for SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "60")]
    pub(crate) timeout: Duration,
    /// No progress and no summary (errors still go to stderr).
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
    /// Print the result as JSON on stdout instead of the summary.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `sonde send PATH... HOST[:PORT]`.
pub(crate) fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let (target, paths) = args
        .args
        .split_last()
        .ok_or_else(|| UsageError("send needs PATH... HOST[:PORT]".into()))?;
    let plan = plan(paths, args.name.as_deref())?;
    for warning in &plan.warnings {
        eprintln!("sonde: warning: {warning}");
    }
    let (host, port) = net::split_host_default_port(target, transfer::DEFAULT_PORT)
        .map_err(|e| UsageError(e.to_string()))?;
    let family = match (args.ipv4, args.ipv6) {
        (true, _) => Family::V4,
        (_, true) => Family::V6,
        _ => Family::Any,
    };
    let options = ConnectOptions {
        family,
        source: None,
        timeout: args.connect_timeout,
    };
    let (stream, peer) = net::connect_tcp(&host, port, &options)?;
    let progress = std::sync::Arc::new(Progress::default());
    let display = Display::start(&progress, "sending", args.common.quiet || args.common.json);
    let result = transfer::send(
        stream,
        peer,
        &plan,
        &progress,
        &SendOptions {
            timeout: args.common.timeout,
        },
    );
    display.finish();
    finish(result, &args.common, "sent", "to")
}

fn plan(paths: &[String], name: Option<&str>) -> anyhow::Result<Plan> {
    if paths.iter().any(|p| p == "-") {
        if paths.len() > 1 {
            return Err(UsageError("stdin (-) is sent alone".into()).into());
        }
        let name = name.ok_or_else(|| UsageError("sending stdin (-) needs --name NAME".into()))?;
        sonde::transfer::path::components(name)
            .map_err(|e| UsageError(format!("--name {name:?}: {e}")))?;
        return Ok(Plan::stdin(name));
    }
    if name.is_some() {
        return Err(UsageError("--name is for stdin (-) only".into()).into());
    }
    let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    Ok(Plan::paths(&paths)?)
}

/// `sonde receive [DIR]`.
pub(crate) fn receive(args: ReceiveArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let meta = std::fs::metadata(&dir)
        .with_context(|| format!("opening the directory {}", dir.display()))?;
    if !meta.is_dir() {
        return Err(UsageError(format!("{} is not a directory", dir.display())).into());
    }
    let addr: SocketAddr = net::local_addrs(args.bind.as_deref(), args.port, Family::Any)?[0];
    let listener = net::listen_tcp(addr, false)?;
    sonde::door::raise_fd_limit();
    let local = listener.local_addr().context("reading the bound address")?;
    if !args.common.quiet {
        eprintln!(
            "sonde receive: writing into {}; listening on {local}",
            dir.display()
        );
    }
    let receive = ReceiveOptions {
        dir,
        overwrite: args.overwrite,
        max_size: args.max_size,
        timeout: args.common.timeout,
    };
    let mut options = ServeOptions::new(receive, args.keep_open);
    options.max_transfers = args.max_transfers.max(1);
    let common = args.common;
    if args.keep_open {
        serve_many(listener, options, common)?;
        return Ok(ExitCode::SUCCESS);
    }
    let quiet = common.quiet || common.json;
    let outcome = Arc::new(Mutex::new(None));
    let display: Mutex<Option<Display>> = Mutex::new(None);
    let slot = Arc::clone(&outcome);
    serve(listener, options, move |event| match event {
        ReceiveEvent::Started { progress, .. } => {
            if let Ok(mut shown) = display.lock() {
                *shown = Some(Display::start(&progress, "receiving", quiet));
            }
        }
        ReceiveEvent::Finished { result, .. } => {
            if let Some(shown) = display.lock().ok().and_then(|mut d| d.take()) {
                shown.finish();
            }
            if let Ok(mut slot) = slot.lock() {
                *slot = Some(result);
            }
        }
        ReceiveEvent::Busy(peer) => turned_away(peer, quiet),
    })?;
    let result = outcome
        .lock()
        .ok()
        .and_then(|mut r| r.take())
        .context("the receiver ended without a transfer")?;
    finish(result, &common, "received", "from")
}

/// `receive --keep-open`: several transfers at once, each reported as it
/// ends (no live bars: they would be several at once).
fn serve_many(
    listener: TcpListener,
    options: ServeOptions,
    common: CommonArgs,
) -> anyhow::Result<()> {
    let quiet = common.quiet || common.json;
    serve(listener, options, move |event| match event {
        ReceiveEvent::Started { peer, .. } if !quiet => {
            eprintln!("sonde receive: a transfer from {peer} begins");
        }
        ReceiveEvent::Started { .. } => {}
        // One bad sender does not end a receiver that keeps open.
        ReceiveEvent::Finished { result, .. } => {
            if let Err(err) = finish(result, &common, "received", "from") {
                eprintln!("sonde: {err:#}");
            }
        }
        ReceiveEvent::Busy(peer) => turned_away(peer, quiet),
    })?;
    Ok(())
}

fn turned_away(peer: SocketAddr, quiet: bool) {
    if !quiet {
        eprintln!("sonde receive: turned {peer} away: busy with other transfers");
    }
}

/// Prints the summary or the JSON and picks the exit code.
fn finish(
    result: Result<Report, TransferError>,
    common: &CommonArgs,
    verb: &str,
    preposition: &str,
) -> anyhow::Result<ExitCode> {
    let report = match result {
        Ok(report) => report,
        Err(err) => {
            let code = err.exit_code();
            if common.json {
                // Scripts reading stdout get a document either way.
                let doc = serde_json::json!({"error": err.to_string(), "exit_code": code});
                outln!("{}", serde_json::to_string_pretty(&doc)?);
            }
            if code == 1 {
                return Err(err.into());
            }
            eprintln!("sonde: {err}");
            return Ok(ExitCode::from(code));
        }
    };
    if common.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else if !common.quiet {
        outln!("{}", summary(&report, verb, preposition));
    }
    if report.mismatches() > 0 {
        for file in report
            .files
            .iter()
            .filter(|f| f.outcome == Outcome::Mismatch)
        {
            eprintln!("sonde: {}: BLAKE3 mismatch, not kept", file.path);
        }
        return Ok(ExitCode::from(EXIT_MISMATCH));
    }
    Ok(ExitCode::SUCCESS)
}

/// One line: what moved, how fast, and whether it verified.
fn summary(report: &Report, verb: &str, preposition: &str) -> String {
    let files = report.files.len();
    let rate = report.moved as f64 * 8.0 / report.seconds.max(1e-9);
    let mut line = format!(
        "sonde: {verb} {files} file{} ({}) {preposition} {} in {:.2} s, {}",
        if files == 1 { "" } else { "s" },
        bytes(report.bytes, Format::Adaptive),
        report.peer,
        report.seconds,
        bitrate(rate, Format::Adaptive),
    );
    if report.dirs > 0 {
        line.push_str(&format!(", {} directories", report.dirs));
    }
    let skipped = report.skipped();
    if skipped > 0 {
        line.push_str(&format!(", {skipped} already in place"));
    }
    let resumed: Vec<_> = report.files.iter().filter(|f| f.resumed_from > 0).collect();
    if !resumed.is_empty() {
        let from: u64 = resumed.iter().map(|f| f.resumed_from).sum();
        line.push_str(&format!(
            ", {} resumed ({} already there)",
            resumed.len(),
            bytes(from, Format::Adaptive)
        ));
    }
    match report.mismatches() {
        0 => line.push_str(", verified"),
        n => line.push_str(&format!(", {n} MISMATCHED")),
    }
    line
}
