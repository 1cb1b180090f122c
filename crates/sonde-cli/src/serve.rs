//! `sonde serve`: runs a service of the server core on a tokio runtime,
//! handles SIGINT/SIGTERM (stop accepting, drain, exit 0 with a summary;
//! a second SIGINT exits at once) and prints live counters on request.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use sonde::net::{self, Family};
use sonde::serve::{self, ServeConfig, ServiceKind, Stats};
use tokio_util::sync::CancellationToken;

use crate::args::parse_secs;

/// The services.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Service {
    /// RFC 862: send back what arrives (TCP or UDP).
    Echo,
    /// RFC 863: read and count (TCP or UDP).
    Discard,
    /// RFC 864: send the rotating character pattern.
    Chargen,
    /// Line chat: each line to every other client.
    Chat,
    /// Reflects sockperf ping-pong messages, for a stock `sockperf ping-pong` (TCP or UDP).
    Sockperf,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The service.
    pub(crate) service: Service,
    /// Address to bind (default: every interface, IPv4 and IPv6).
    #[arg(long, value_name = "ADDR")]
    pub(crate) bind: Option<String>,
    /// Port (default per service: echo 7007, discard 7009, chargen 7019, chat 7070, sockperf 11111).
    #[arg(long, short = 'p')]
    pub(crate) port: Option<u16>,
    /// UDP instead of TCP (echo, discard and sockperf).
    #[arg(long, short = 'u')]
    pub(crate) udp: bool,
    /// Connections at once; a client past this is closed at once and counted.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub(crate) max_connections: usize,
    /// Close a connection that moves nothing for SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) idle_timeout: Option<Duration>,
    /// On SIGINT/SIGTERM, let busy connections finish for at most SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "5")]
    pub(crate) drain_timeout: Duration,
    /// Print counters to stderr every SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) stats_interval: Option<Duration>,
    /// Do not print the address or the summary.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// echo only: a thread per client that spins instead of sleeping, for
    /// the lowest latency (each client keeps a CPU busy; for `rtt`, not for
    /// thousands of clients).
    #[arg(long)]
    pub(crate) busy_poll: bool,
    /// echo only: a thread per client on blocking sockets, as sockperf's
    /// server does: the lowest latency without spinning (for `rtt`, not
    /// for thousands of clients).
    #[arg(long, conflicts_with = "busy_poll")]
    pub(crate) blocking: bool,
}

fn kind(service: Service) -> ServiceKind {
    match service {
        Service::Echo => ServiceKind::Echo,
        Service::Discard => ServiceKind::Discard,
        Service::Chargen => ServiceKind::Chargen,
        Service::Chat => ServiceKind::Chat,
        Service::Sockperf => ServiceKind::Sockperf,
    }
}

/// `sonde serve SERVICE`.
pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let kind = kind(args.service);
    if args.udp
        && !matches!(
            kind,
            ServiceKind::Echo | ServiceKind::Discard | ServiceKind::Sockperf
        )
    {
        return Err(crate::talk::UsageError(format!(
            "--udp works with echo, discard and sockperf, not {}",
            kind.name()
        ))
        .into());
    }
    if args.busy_poll || args.blocking {
        let flag = if args.busy_poll {
            "--busy-poll"
        } else {
            "--blocking"
        };
        if !matches!(kind, ServiceKind::Echo) {
            return Err(crate::talk::UsageError(format!(
                "{flag} works with echo, not {}",
                kind.name()
            ))
            .into());
        }
        let port = args.port.unwrap_or_else(|| kind.default_port());
        let addr: SocketAddr = net::local_addrs(args.bind.as_deref(), port, Family::Any)?[0];
        return thread_echo(&args, addr);
    }
    let limit = serve::raise_fd_limit();
    if limit < args.max_connections.min(10_000) as u64 + 64 && !args.quiet {
        eprintln!(
            "sonde: warning: only {limit} open files allowed (ulimit -n); fewer clients than asked can connect"
        );
    }
    let port = args.port.unwrap_or_else(|| kind.default_port());
    let addr: SocketAddr = net::local_addrs(args.bind.as_deref(), port, Family::Any)?[0];
    // One UDP socket is one task: a single thread serves it with no
    // hand-offs (pinned to one CPU with its client, p99 45 -> 30 us).
    let runtime = if args.udp {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()
    .context("starting the runtime")?;
    runtime.block_on(run(args, kind, addr))
}

async fn run(args: ServeArgs, kind: ServiceKind, addr: SocketAddr) -> anyhow::Result<ExitCode> {
    let stats = Arc::new(Stats::default());
    let shutdown = CancellationToken::new();
    spawn_signals(shutdown.clone())?;
    if let Some(every) = args.stats_interval {
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!(
                    "sonde: {} open now; {}",
                    stats.active.load(Ordering::Relaxed),
                    stats.summary()
                );
            }
        });
    }
    let stats = if args.udp {
        let sock = net::bind_udp(addr, false)?;
        sock.set_nonblocking(true)
            .context("configuring the socket")?;
        let sock = tokio::net::UdpSocket::from_std(sock).context("registering the socket")?;
        if !args.quiet {
            eprintln!(
                "sonde serve {} listening on udp {}",
                kind.name(),
                local(sock.local_addr())
            );
        }
        // On a worker, not in `block_on`: there each datagram would cross
        // from the worker that polls the sockets to the main thread.
        tokio::spawn(serve::datagram::run(sock, kind, shutdown, stats))
            .await
            .context("running the UDP service")?
    } else {
        let listener = net::listen_tcp(addr, false)?;
        let listener = serve::tokio_listener(listener).context("registering the listener")?;
        if !args.quiet {
            eprintln!(
                "sonde serve {} listening on {}",
                kind.name(),
                local(listener.local_addr())
            );
        }
        let config = ServeConfig {
            max_connections: args.max_connections.max(1),
            idle_timeout: args.idle_timeout,
        };
        let drain = args.drain_timeout;
        tokio::spawn(serve::run(listener, kind, config, shutdown, drain, stats))
            .await
            .context("running the server")?
    };
    if !args.quiet {
        eprintln!("sonde: {}", stats.summary());
    }
    Ok(ExitCode::SUCCESS)
}

/// `serve echo --busy-poll` or `--blocking`: the thread-per-client
/// reflector (spinning, or blocking) on the given address, until SIGINT or
/// SIGTERM.
fn thread_echo(args: &ServeArgs, addr: SocketAddr) -> anyhow::Result<ExitCode> {
    use sonde::serve::reflector;
    use std::sync::atomic::AtomicBool;
    ctrlc::set_handler(|| std::process::exit(0)).context("handling SIGINT")?;
    let stop = AtomicBool::new(false);
    let mode = if args.busy_poll {
        "busy-poll"
    } else {
        "blocking"
    };
    if args.udp {
        let sock = net::bind_udp(addr, false)?;
        if !args.quiet {
            eprintln!(
                "sonde serve echo ({mode}) listening on udp {}",
                local(sock.local_addr())
            );
        }
        reflector::serve_udp(&sock, args.busy_poll, &stop);
    } else {
        let listener = net::listen_tcp(addr, false)?;
        if !args.quiet {
            eprintln!(
                "sonde serve echo ({mode}) listening on {}",
                local(listener.local_addr())
            );
        }
        let most = args.max_connections.max(1);
        reflector::serve_tcp(&listener, args.busy_poll, most, &stop);
    }
    Ok(ExitCode::SUCCESS)
}

/// First SIGINT or SIGTERM: shut down gracefully; a second SIGINT: exit now.
///
/// The handlers are installed before this returns (so before the address
/// is printed): a signal right after start-up never meets the default
/// action.
fn spawn_signals(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        shutdown.cancel();
        int.recv().await;
        std::process::exit(1);
    });
    Ok(())
}

fn local(addr: std::io::Result<SocketAddr>) -> String {
    addr.map_or_else(|_| "an unknown address".to_string(), |a| a.to_string())
}
