//! `sonde send PATH... HOST[:PORT]`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use sonde::net::{self, ConnectOptions};
use sonde::transfer::plan::Plan;
use sonde::transfer::{self, Progress, SendOptions};

use super::progress::Display;
use super::{CommonArgs, finish};
use crate::usage::{UsageError, parse_secs};

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
    let family = crate::usage::family(args.ipv4, args.ipv6);
    let options = ConnectOptions {
        device: None,
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
