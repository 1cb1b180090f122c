//! `sonde send PATH... HOST[:PORT]`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use sonde::net::{self, ConnectOptions};
use sonde::transfer::plan::Plan;
use sonde::transfer::{self, Progress, SendOptions, SendSecurity};

use super::progress::Display;
use super::{CommonArgs, finish};
use crate::usage::{UsageError, parse_secs};

#[derive(Debug, Args)]
#[command(
    override_usage = "sonde send [OPTIONS] PATH... HOST[:PORT]\n       sonde send [OPTIONS] PATH... HOST PORT"
)]
pub(crate) struct SendArgs {
    /// Files and directories to send (`-` for stdin, with --name), then
    /// the receiver as HOST[:PORT] or HOST PORT (port 7090 by default).
    #[arg(value_name = "ARGS", num_args = 1.., required = true)]
    pub(crate) args: Vec<String>,
    /// The name stdin is sent under (with `-`).
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// Send symlinks inside directories as links (else they are skipped
    /// with a warning); a receiver refuses one that points outside its
    /// directory.
    #[arg(long)]
    pub(crate) symlinks: bool,
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
    /// The code phrase a `receive --code` printed (or SONDE_CODE, which keeps it off the command line): the transfer is encrypted under it.
    #[arg(long, value_name = "CODE", env = "SONDE_CODE", hide_env_values = true)]
    pub(crate) code: Option<String>,
    /// TLS to a `receive --tls`: verified against the system's roots, or --ca, or --pin (the fingerprint it printed).
    #[command(flatten)]
    pub(crate) tls: crate::tls::TlsArgs,
}

/// `sonde send PATH... HOST[:PORT]`.
pub(crate) fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let json = args.common.json;
    super::json_errors(json, move || send_to(args))
}

fn send_to(args: SendArgs) -> anyhow::Result<ExitCode> {
    let (target, paths) = target(&args.args)?;
    let plan = plan(paths, args.name.as_deref(), args.symlinks)?;
    for warning in &plan.warnings {
        eprintln!("sonde: warning: {warning}");
    }
    let (host, port) = net::split_host_default_port(&target, transfer::DEFAULT_PORT)
        .map_err(|e| UsageError(e.to_string()))?;
    let family = crate::usage::family(args.ipv4, args.ipv6);
    let options = ConnectOptions {
        device: None,
        family,
        source: None,
        timeout: args.connect_timeout,
    };
    let security = match (&args.code, args.tls.client(&host)?) {
        (Some(_), Some(_)) => {
            return Err(UsageError("--code and --tls are alternatives: use one".into()).into());
        }
        (Some(code), None) => SendSecurity::Code(
            sonde::transfer::code::normalise(code)
                .map_err(|e| UsageError(format!("--code: {e}")))?,
        ),
        (None, Some(tls)) => SendSecurity::Tls(tls),
        (None, None) => SendSecurity::Plain,
    };
    let (stream, peer) = net::connect_tcp(&host, port, &options)?;
    let progress = std::sync::Arc::new(Progress::default());
    let shown = std::sync::Arc::clone(&progress);
    super::on_interrupt(move || Some(super::interrupted_at(&shown, "sending")));
    let display = Display::start(&progress, "sending", args.common.quiet || args.common.json);
    let sampler = super::progress::Sampler::start(&progress, args.common.samples());
    let result = transfer::send(
        stream,
        peer,
        &plan,
        &progress,
        &SendOptions {
            timeout: args.common.timeout,
            security,
        },
    );
    display.finish();
    let samples = sampler.finish();
    finish(result, &args.common, "sent", "to", samples)
        .map_err(|err| receiver_gone(err, &progress, peer))
}

/// A connection the receiver closed or reset mid-transfer, said as such.
fn receiver_gone(
    err: anyhow::Error,
    progress: &Progress,
    peer: std::net::SocketAddr,
) -> anyhow::Error {
    use sonde::transfer::TransferError;
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let gone = match err.downcast_ref::<TransferError>() {
        Some(TransferError::Io { cause, .. }) => matches!(
            cause.kind(),
            BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof
        ),
        Some(TransferError::CutShort { .. }) => true,
        _ => false,
    };
    if !gone {
        return err;
    }
    let done = progress.done.load(std::sync::atomic::Ordering::Relaxed)
        + progress
            .file_done
            .load(std::sync::atomic::Ordering::Relaxed);
    err.context(format!(
        "the receiver at {peer} closed the connection after {}; run the same command again to resume",
        sonde::units::size(done)
    ))
}

/// The receiver and the paths: the last argument is HOST[:PORT], or the
/// last two are HOST PORT (a number that names no file there is a port).
fn target(args: &[String]) -> anyhow::Result<(String, &[String])> {
    let need = || UsageError("send needs PATH... HOST[:PORT] (or PATH... HOST PORT)".into());
    let (last, rest) = args.split_last().ok_or_else(need)?;
    if let (Ok(port), Some((host, paths))) = (last.parse::<u16>(), rest.split_last())
        && !paths.is_empty()
        && !std::path::Path::new(last).exists()
    {
        return Ok((crate::usage::with_port(host, port)?, paths));
    }
    if rest.is_empty() {
        return Err(need().into());
    }
    Ok((last.clone(), rest))
}

fn plan(paths: &[String], name: Option<&str>, symlinks: bool) -> anyhow::Result<Plan> {
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
    // A path named on the command line that is not there is a usage error.
    if let Some(missing) = paths.iter().find(|p| std::fs::symlink_metadata(p).is_err()) {
        return Err(UsageError(format!("{}: no such file or directory", missing.display())).into());
    }
    Ok(Plan::paths(&paths, symlinks)?)
}
