//! `sonde relay FROM TO`: the flags, the TLS each end needs, and the
//! report of each client on stderr.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use sonde::forward::spec::{self, End};
use sonde::forward::{self, Event, Options};

use crate::metrics::Outcomes;
use crate::tls::TlsArgs;
use crate::usage::{UsageError, parse_secs};

/// Clients at once on a listening FROM, unless --max-conns says.
const DEFAULT_MAX: usize = 100;
/// How long a listening TCP relay's client may move nothing.
const DEFAULT_IDLE: Duration = Duration::from_secs(3600);
/// How long a listening relay waits for its TO to answer.
const DEFAULT_CONNECT: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// Where clients come from: tcp-listen:[ADDR:]PORT, udp-listen:[ADDR:]PORT, tls-listen:[ADDR:]PORT, or a connecting end (socat's spellings too: TCP-LISTEN:8080,fork).
    #[arg(value_name = "FROM")]
    pub(crate) from: String,
    /// Where each goes: tcp:HOST:PORT, udp:HOST:PORT, unix:PATH (@NAME: abstract), tls:HOST:PORT, stdio, exec:CMD, system:LINE.
    #[arg(value_name = "TO")]
    pub(crate) to: String,
    /// Close a relay (UDP: forget a session) after SECS with nothing moving either way (a listening FROM: TCP 3600, UDP 60; 0: no limit, TCP only).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) idle_timeout: Option<Duration>,
    /// Give up connecting TO after SECS (a listening FROM: 10 by default).
    #[arg(short = 'w', long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) connect_timeout: Option<Duration>,
    /// Say nothing on stderr but failures.
    #[arg(long)]
    pub(crate) quiet: bool,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    #[command(flatten)]
    pub(crate) access: crate::access::AccessArgs,
    #[command(flatten)]
    pub(crate) metrics: crate::metrics::MetricsArgs,
}

/// `sonde relay FROM TO`.
pub(crate) fn run(args: RelayArgs) -> anyhow::Result<ExitCode> {
    let from = spec::parse(&args.from).map_err(|e| UsageError(e.to_string()))?;
    let to = spec::parse(&args.to).map_err(|e| UsageError(e.to_string()))?;
    forward::check(&from, &to).map_err(|e| UsageError(e.to_string()))?;
    let max = from
        .max_children
        .unwrap_or_else(|| args.access.max_connections(DEFAULT_MAX));
    if from.end.listens() {
        sonde::door::raise_fd_limit();
        let socket_file = match &from.end {
            End::UnixListen(spec::UnixPath::File(path)) => Some(path.clone()),
            _ => None,
        };
        stop_on_signal(socket_file, args.quiet);
    }
    let (idle_timeout, connect_timeout) = deadlines(&args, &from.end)?;
    let opts = Options {
        max_connections: max,
        idle_timeout,
        connect_timeout,
        server_tls: server_tls(&args.tls, &from.end, args.quiet)?,
        client_tls: client_tls(&args.tls, &to.end)?,
        rules: args.access.rules(),
        counters: Arc::default(),
    };
    let outcomes = Outcomes::new(&["closed", "failed"]);
    if args.metrics.metrics.is_some() && !from.end.listens() {
        return Err(UsageError("--metrics is for a relay whose FROM listens".into()).into());
    }
    let mut registry = crate::metrics::with_door(Arc::clone(&opts.counters));
    let what = ("relays", "Relays ended, by result (closed, failed)");
    outcomes.register(&mut registry, "sonde_relay", what);
    outcomes.register_bytes(&mut registry, "sonde_relay");
    args.metrics.start(registry, args.quiet)?;
    let quiet = args.quiet;
    forward::run(&from, &to, &opts, move |event| match event {
        Event::Listening(on) => eprintln!("listening on {on}"),
        Event::Connected(client) if !quiet => eprintln!("connection from {client}"),
        Event::Closed(client, moved) => {
            outcomes.ended("closed");
            outcomes.moved(moved.forward, moved.back);
            if !quiet {
                eprintln!("{client} closed: {moved}");
            }
        }
        Event::Failed(client, e) => {
            outcomes.ended("failed");
            eprintln!("sonde: relay for {client}: {e}");
        }
        _ => {}
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The idle and connect limits. A relay that serves clients is a server,
/// and every phase of a server has a deadline: a client that goes quiet
/// gives its place back after an hour (UDP: a session after a minute),
/// and a TO that does not answer fails the client after 10 s. An hour
/// keeps an idle ssh session through the relay alive for the length of a
/// coffee; `--idle-timeout 0` lifts the limit, as socat has none.
fn deadlines(args: &RelayArgs, from: &End) -> anyhow::Result<(Option<Duration>, Option<Duration>)> {
    if !from.listens() {
        return Ok((
            args.idle_timeout.filter(|d| !d.is_zero()),
            args.connect_timeout,
        ));
    }
    let idle = match args.idle_timeout {
        Some(d) if d.is_zero() && from.datagrams() => {
            return Err(UsageError(
                "--idle-timeout 0: a UDP session needs an idle limit to end".into(),
            )
            .into());
        }
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None if from.datagrams() => None,
        None => Some(DEFAULT_IDLE),
    };
    let connect = args.connect_timeout.or(Some(DEFAULT_CONNECT));
    Ok((idle, connect))
}

/// The certificate a tls-listen FROM shows (the server's flags only).
fn server_tls(
    flags: &TlsArgs,
    from: &End,
    quiet: bool,
) -> anyhow::Result<Option<sonde::tls::ServerTls>> {
    if !matches!(from, End::TlsListen { .. }) {
        return Ok(None);
    }
    let mut own = flags.clone();
    own.tls = true;
    (own.ca, own.pin, own.insecure, own.sni) = (None, None, false, None);
    own.server(quiet)
}

/// How a tls TO checks its server (the client's flags only).
fn client_tls(flags: &TlsArgs, to: &End) -> anyhow::Result<Option<sonde::tls::ClientTls>> {
    let End::Tls { host, .. } = to else {
        return Ok(None);
    };
    let mut own = flags.clone();
    own.tls = true;
    own.client_ca = None;
    // A server's --cert is not this end's client certificate.
    (own.cert, own.key) = (None, None);
    own.client(host)
}

/// A listening relay is a server: SIGINT or SIGTERM stops it, exit 0, its
/// Unix socket file (when it made one) removed first.
fn stop_on_signal(socket_file: Option<std::path::PathBuf>, quiet: bool) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            if let Some(path) = socket_file {
                let _ = std::fs::remove_file(path);
            }
            if !quiet {
                eprintln!("sonde relay: stopped");
            }
            std::process::exit(0);
        }
    });
}
