//! `sonde connect HOST PORT`: stdin to the socket, the socket to stdout.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use sonde::net::{self, ConnectOptions};
use sonde::talk::udp;

use super::{Job, Secure, TalkArgs, input, relay_options, relay_over, stdout_fd, udp_options};
use crate::tls::TlsArgs;
use crate::usage::{UsageError, parse_port, parse_secs, parse_source};

#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// Host name or address (`::1`, or `HOST:PORT` / `[::1]:PORT` with no PORT argument).
    pub(crate) host: String,
    /// Port number; with -z a list, as nc takes it (`22`, `20-25`,
    /// `22,80,8000-8010`, or `22 80 443`).
    #[arg(value_name = "PORT")]
    pub(crate) ports: Vec<String>,
    /// Only check whether each port is open (nc's -z): no data sent.
    /// Exit 0 when every port named is open, 1 otherwise.
    #[arg(short = 'z', long = "zero-io")]
    pub(crate) zero_io: bool,
    /// Say what happened at each port (-v, as nc; with -z, a line per port).
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// With -z: every port's state and the time it took, as JSON on stdout.
    #[arg(long, requires = "zero_io")]
    pub(crate) json: bool,
    /// Send TEXT instead of stdin, half-close, and print the reply.
    #[arg(long, value_name = "TEXT", conflicts_with = "recv_only")]
    pub(crate) message: Option<String>,
    /// Local address to connect from: ADDR or ADDR:PORT ([V6]:PORT) (-s is nc's; in perf it is iperf3's server).
    #[arg(short = 's', long, value_name = "ADDR[:PORT]", value_parser = parse_source)]
    pub(crate) source: Option<std::net::SocketAddr>,
    /// Give up connecting to each address (with -z, each port) after SECS
    /// (nc's -w).
    #[arg(short = 'w', long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) connect_timeout: Option<Duration>,
    #[command(flatten)]
    pub(crate) talk: TalkArgs,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
}

/// `sonde connect HOST PORT`.
pub(crate) fn connect(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    if args.zero_io {
        return super::zero::check(&args);
    }
    if args.talk.unix {
        return connect_unix(&args);
    }
    if args.ports.len() > 1 {
        return Err(UsageError("one PORT (a list of ports needs -z)".into()).into());
    }
    let (host, port) = match args.ports.first() {
        Some(port) => (args.host.clone(), parse_port(port).map_err(UsageError)?),
        None => net::split_host_port(&args.host)
            .map_err(|e| UsageError(format!("{e} (or give the port as a second argument)")))?,
    };
    let opts = ConnectOptions {
        device: None,
        family: args.talk.family(),
        source: args.source,
        timeout: args.connect_timeout,
    };
    let program = super::exec::program(&args.talk)?;
    if program.is_some() && args.message.is_some() {
        return Err(UsageError("--exec's process does the talking: no --message".into()).into());
    }
    let interactive = program.is_none() && args.message.is_none() && std::io::stdin().is_terminal();
    if args.talk.udp && args.tls.on() {
        return Err(UsageError(crate::tls::NO_DTLS.into()).into());
    }
    let tls = args.tls.client(&host)?;
    if args.talk.udp {
        let input = input(&args.talk, args.message.as_deref())?;
        let sock = net::connect_udp(&host, port, &opts)?;
        udp::talk(sock, input, stdout_fd()?, udp_options(&args.talk))?;
        return Ok(ExitCode::SUCCESS);
    }
    let job = match program {
        Some((program, stderr)) => Job::Exec(program, stderr),
        None => Job::Relay(input(&args.talk, args.message.as_deref())?),
    };
    let (stream, peer) = net::connect_tcp(&host, port, &opts)?;
    let relay_opts = relay_options(&args.talk, interactive);
    let tls = tls.map(Secure::Client);
    relay_over(stream, peer, tls.as_ref(), job, relay_opts)
}

/// `sonde connect -U PATH`.
fn connect_unix(args: &ConnectArgs) -> anyhow::Result<ExitCode> {
    if !args.ports.is_empty() {
        return Err(UsageError("-U takes a socket path and no port".into()).into());
    }
    if args.tls.on() {
        return Err(UsageError("--tls is for TCP: not with -U".into()).into());
    }
    let path = args.talk.unix_path(&args.host)?;
    let program = super::exec::program(&args.talk)?;
    let interactive = program.is_none() && args.message.is_none() && std::io::stdin().is_terminal();
    let job = match program {
        Some((program, stderr)) => Job::Exec(program, stderr),
        None => Job::Relay(input(&args.talk, args.message.as_deref())?),
    };
    let stream = net::unix::connect(&path)?;
    super::run_job(
        stream,
        format!("unix:{path}"),
        job,
        relay_options(&args.talk, interactive),
    )
}
