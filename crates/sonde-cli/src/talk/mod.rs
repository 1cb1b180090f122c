//! `sonde connect` and `sonde listen`, the netcat pair: the flags they
//! share and the library options built from them.

pub(crate) mod connect;
mod exec;
pub(crate) mod listen;
mod zero;

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sonde::net::Family;
use sonde::talk::pump::HexSink;
use sonde::talk::relay::{Duplex, Input, RelayOptions, relay};
use sonde::talk::udp::UdpOptions;

use crate::usage::{UsageError, parse_secs};

/// Flags shared by `connect` and `listen`.
#[derive(Debug, Args)]
pub(crate) struct TalkArgs {
    /// Use UDP instead of TCP: each input line is one datagram.
    #[arg(short = 'u', long)]
    pub(crate) udp: bool,
    /// The address is a Unix stream socket's path (@NAME: Linux's abstract namespace) (nc's -U).
    #[arg(short = 'U', long)]
    pub(crate) unix: bool,
    /// Use IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub(crate) ipv4: bool,
    /// Use IPv6 only.
    #[arg(short = '6')]
    pub(crate) ipv6: bool,
    /// After the input ends, quit after SECS (UDP: SECS of silence; default 1 for UDP) (-q is nc's).
    #[arg(short = 'q', long = "quit-after", value_name = "SECS", value_parser = parse_secs)]
    pub(crate) quit_after: Option<Duration>,
    /// Fail when no data moves either way for SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) idle_timeout: Option<Duration>,
    /// Send line endings as CRLF.
    #[arg(long)]
    pub(crate) crlf: bool,
    /// Dump the traffic in hex on stderr.
    #[arg(long)]
    pub(crate) hex: bool,
    /// Dump the traffic in hex to FILE instead (ncat's -x).
    #[arg(short = 'x', long, value_name = "FILE")]
    pub(crate) hex_dump: Option<std::path::PathBuf>,
    /// Copy the session, both ways as it is, to FILE (ncat's -o).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub(crate) output: Option<std::path::PathBuf>,
    /// Send the input a line at a time, SECS apart (ncat's -d; -i is OpenBSD nc's).
    #[arg(short = 'd', long, visible_short_alias = 'i', value_name = "SECS", value_parser = parse_secs)]
    pub(crate) delay: Option<Duration>,
    /// No name look-ups: addresses only (nc's -n).
    #[arg(short = 'n', long)]
    pub(crate) numeric: bool,
    /// Answer a telnet server's DO with WON'T and WILL with DON'T, and keep the negotiation out of the output (OpenBSD nc's -t).
    #[arg(short = 't', long)]
    pub(crate) telnet: bool,
    /// Keep the write side open at the end of the input (no half-close).
    #[arg(long)]
    pub(crate) no_shutdown: bool,
    /// Only send: discard what the peer sends.
    #[arg(long, conflicts_with = "recv_only")]
    pub(crate) send_only: bool,
    /// Only receive: never read stdin.
    #[arg(long)]
    pub(crate) recv_only: bool,
    #[command(flatten)]
    pub(crate) exec: exec::ExecArgs,
}

impl TalkArgs {
    /// The Unix socket of `-U` (stream, or datagram with `-u`).
    pub(super) fn unix_path(&self, text: &str) -> anyhow::Result<sonde::net::unix::UnixPath> {
        sonde::net::unix::UnixPath::parse(text)
            .ok_or_else(|| UsageError("-U needs a socket path".into()).into())
    }

    /// The address family of `-4` and `-6`.
    pub(super) fn family(&self) -> Family {
        crate::usage::family(self.ipv4, self.ipv6)
    }
}

/// The hex dump's sink (a file with -x, stderr with --hex) and the
/// session dump's (-o).
pub(super) fn sinks(talk: &TalkArgs) -> anyhow::Result<(Option<HexSink>, Option<HexSink>)> {
    let file = |path: &std::path::Path| -> anyhow::Result<HexSink> {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Arc::new(Mutex::new(file)) as HexSink)
    };
    let hex = match &talk.hex_dump {
        Some(path) => Some(file(path)?),
        None => talk
            .hex
            .then(|| Arc::new(Mutex::new(std::io::stderr())) as HexSink),
    };
    let session = talk.output.as_deref().map(file).transpose()?;
    Ok((hex, session))
}

/// `sonde connect`: a port check with -z, else a connection.
pub(crate) fn connect(args: connect::ConnectArgs) -> anyhow::Result<std::process::ExitCode> {
    if args.zero_io {
        return zero::check(&args);
    }
    connect::connect(args)
}

/// The /etc/services name of `port` for `proto` ("tcp" or "udp"), or `*`
/// as nc says when there is none.
pub(super) fn service_name(port: u16, proto: &str) -> String {
    std::fs::read_to_string("/etc/services")
        .ok()
        .and_then(|t| sonde::talk::scan::services(&t).remove(&(port, proto.to_string())))
        .unwrap_or_else(|| "*".into())
}

/// With -n, a host that is a name is refused (nothing is looked up).
pub(super) fn numeric(talk: &TalkArgs, host: &str) -> anyhow::Result<()> {
    if talk.numeric && host.parse::<std::net::IpAddr>().is_err() {
        return Err(UsageError(format!("-n: {host:?} is a name, and -n looks nothing up")).into());
    }
    Ok(())
}

pub(super) fn stdin_fd() -> anyhow::Result<OwnedFd> {
    std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stdin")
}

pub(super) fn stdout_fd() -> anyhow::Result<OwnedFd> {
    std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stdout")
}

/// What to send: the message, stdin, or nothing; a line at a time with
/// -d.
pub(super) fn input(talk: &TalkArgs, message: Option<&str>) -> anyhow::Result<Input> {
    let input = match message {
        Some(text) => Input::Bytes(text.as_bytes().to_vec()),
        None if talk.recv_only => Input::Nothing,
        None => Input::Fd(stdin_fd()?),
    };
    match talk.delay {
        Some(every) => input.paced(every).context("pacing the input"),
        None => Ok(input),
    }
}

pub(super) fn relay_options(talk: &TalkArgs, interactive: bool) -> anyhow::Result<RelayOptions> {
    let (hex, session) = sinks(talk)?;
    Ok(RelayOptions {
        no_shutdown: talk.no_shutdown,
        send_only: talk.send_only,
        quit_after: talk.quit_after,
        idle_timeout: talk.idle_timeout,
        crlf: talk.crlf,
        hex,
        session,
        greeting: None,
        interactive,
        output_may_close: false,
        broker: false,
        telnet: talk.telnet,
    })
}

pub(super) fn udp_options(talk: &TalkArgs) -> anyhow::Result<UdpOptions> {
    let (hex, session) = sinks(talk)?;
    Ok(UdpOptions {
        quit_after: talk.quit_after,
        crlf: talk.crlf,
        hex,
        session,
    })
}

pub(super) fn local(addr: std::io::Result<std::net::SocketAddr>) -> String {
    addr.map_or_else(|_| "an unknown address".to_string(), |a| a.to_string())
}

/// Which end of TLS this side is.
pub(crate) enum Secure {
    Client(sonde::tls::ClientTls),
    Server(sonde::tls::ServerTls),
}

/// What a connection is joined to: the input and stdout, or a process.
pub(crate) enum Job {
    Relay(Input),
    /// A relay that ends with ncat's `-vv` line of what it moved.
    Counted(Input),
    Exec(sonde::talk::exec::Program, bool),
}

impl Job {
    /// A relay of `input`, told at its end with `-vv`.
    pub(super) fn relay(input: Input, verbose: u8) -> Self {
        if verbose >= 2 {
            Self::Counted(input)
        } else {
            Self::Relay(input)
        }
    }
}

/// Runs `job` over `stream`, plain or through a TLS bridge; the exit code
/// is the process's outcome with `--exec`.
pub(crate) fn relay_over(
    stream: std::net::TcpStream,
    peer: std::net::SocketAddr,
    tls: Option<&Secure>,
    job: Job,
    opts: RelayOptions,
) -> anyhow::Result<std::process::ExitCode> {
    let Some(tls) = tls else {
        return run_job(stream, peer, job, opts);
    };
    let name = peer.to_string();
    let (plain, bridge) = match tls {
        Secure::Client(tls) => sonde::tls::connect(stream, tls, &name)?,
        Secure::Server(tls) => sonde::tls::accept(stream, tls, &name)?,
    };
    let done = run_job(plain, peer, job, opts);
    // A broken session first: it is why the relay ended.
    bridge.finish()?;
    done
}

pub(super) fn run_job<S: Duplex>(
    stream: S,
    peer: impl std::fmt::Display,
    job: Job,
    opts: RelayOptions,
) -> anyhow::Result<std::process::ExitCode> {
    match job {
        Job::Relay(input) => {
            relay(stream, peer, input, stdout_fd()?, opts)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Job::Counted(input) => {
            let began = std::time::Instant::now();
            let moved = relay(stream, peer, input, stdout_fd()?, opts)?;
            eprintln!(
                "sonde: {} bytes sent, {} bytes received in {:.2} seconds.",
                moved.sent,
                moved.received,
                began.elapsed().as_secs_f64()
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Job::Exec(program, stderr_to_peer) => {
            exec::run(stream, peer, &program, opts, stderr_to_peer)
        }
    }
}
