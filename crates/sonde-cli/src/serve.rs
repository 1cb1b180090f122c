//! `sonde serve`: runs a service behind the front door (tasks on a tokio
//! runtime, or a thread per client for sockperf and the lowest-latency
//! echo, or one thread for UDP), handles SIGINT/SIGTERM (stop accepting,
//! drain, exit 0 with a summary; a second signal exits at once) and prints
//! live counters on request.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use sonde::door::Door;
use sonde::net::{self, Family};
use sonde::serve::proxy::{self, ProxyConfig};
use sonde::serve::reflector::{self, Mode, Reflect, ReflectConfig};
use sonde::serve::{self, ServeConfig, ServiceKind, Stats};

use crate::usage::parse_secs;

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
    /// A SOCKS5 proxy: CONNECT and UDP ASSOCIATE, to --allow-dest only (loopback unless told).
    Socks5,
    /// An HTTP proxy, CONNECT only, to --allow-dest only (loopback unless told).
    HttpProxy,
    /// A mail sink for testing programs that send mail: SMTP in, every message kept, none delivered.
    Smtp,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The service.
    pub(crate) service: Service,
    /// Address to bind (default: every interface, IPv4 and IPv6).
    #[arg(long, value_name = "ADDR")]
    pub(crate) bind: Option<String>,
    /// Port (default per service: echo 7007, discard 7009, chargen 7019, chat 7070, sockperf 11111, socks5 1080, http-proxy 3128).
    #[arg(long, short = 'p')]
    pub(crate) port: Option<u16>,
    /// UDP instead of TCP (echo, discard and sockperf).
    #[arg(long, short = 'u')]
    pub(crate) udp: bool,
    /// echo and sockperf: on a Unix stream socket at PATH (@NAME: abstract) instead of TCP, for `rtt -U`
    /// (the file is removed on exit; a live server's is refused).
    #[arg(long, short = 'U', value_name = "PATH", conflicts_with_all = ["udp", "bind", "port"])]
    pub(crate) unix: Option<String>,
    /// Close a connection that moves nothing for SECS (default 300, chat 3600; 0: never).
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
    /// socks5 and http-proxy: destinations they may reach (repeat; default 127.0.0.0/8 and ::1 only, so never an open proxy by accident).
    #[arg(long, value_name = "CIDR", value_parser = sonde::door::access::parse_block)]
    pub(crate) allow_dest: Vec<sonde::door::access::IpNet>,
    /// socks5 and http-proxy: ask for a user and password, from FILE (USER:PASSWORD a line).
    #[arg(long, value_name = "FILE")]
    pub(crate) auth_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) smtp: crate::mail::SmtpArgs,
    #[command(flatten)]
    pub(crate) access: crate::access::AccessArgs,
    #[command(flatten)]
    pub(crate) metrics: crate::metrics::MetricsArgs,
    /// TLS on echo, discard, chargen and chat (`--cert`/`--key`, or a certificate made once for this user).
    #[command(flatten)]
    pub(crate) tls: crate::tls::TlsArgs,
}

/// Connections at once by default: enough for a flood test, bounded.
const MAX_CONNECTIONS: usize = 100_000;

fn kind(service: Service) -> ServiceKind {
    match service {
        Service::Echo => ServiceKind::Echo,
        Service::Discard => ServiceKind::Discard,
        Service::Chargen => ServiceKind::Chargen,
        Service::Chat => ServiceKind::Chat,
        Service::Sockperf => ServiceKind::Sockperf,
        Service::Socks5 => ServiceKind::Socks5,
        Service::HttpProxy => ServiceKind::HttpProxy,
        Service::Smtp => ServiceKind::Smtp,
    }
}

/// `sonde serve SERVICE`.
pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let kind = kind(args.service);
    check(&args, kind)?;
    let port = args.port.unwrap_or_else(|| kind.default_port());
    let addr: SocketAddr = net::local_addrs(args.bind.as_deref(), port, Family::Any)?[0];
    let limit = sonde::door::raise_fd_limit();
    let max_connections = args.access.max_connections(MAX_CONNECTIONS);
    if limit < max_connections.min(10_000) as u64 + 64 && !args.quiet {
        eprintln!(
            "sonde: warning: only {limit} open files allowed (ulimit -n); fewer clients than asked can connect"
        );
    }
    let idle = match args.idle_timeout {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None => Some(serve::default_idle_timeout(kind)),
    };
    // The auth file is read once: the proxies' users and smtp's.
    let proxy = proxy_config(&args)?;
    let config = ServeConfig {
        max_connections,
        idle_timeout: idle,
        drain: args.drain_timeout,
        rules: args.access.rules(),
        // With STARTTLS the TLS flags give its certificate, and the
        // connection starts plain.
        tls: if args.smtp.offers_starttls() {
            None
        } else {
            args.tls.server(args.quiet)?
        },
        smtp: Arc::new(if kind == ServiceKind::Smtp {
            let starttls = args
                .smtp
                .offers_starttls()
                .then(|| args.tls.server_forced(args.quiet))
                .transpose()?;
            let users = proxy.users.clone();
            crate::mail::config(&args.smtp, args.quiet, users, starttls)?
        } else {
            Default::default()
        }),
        proxy: Arc::new(proxy),
    };
    let door = config.door(kind);
    let stats = Arc::new(Stats::default());
    args.metrics
        .start(serve_metrics(&door, &stats, kind, &config), args.quiet)?;
    on_signals(&door)?;
    if let Some(every) = args.stats_interval {
        print_stats_every(every, door.clone(), Arc::clone(&stats), args.udp);
    }
    let threaded = args.busy_poll || args.blocking;
    if let Some(path) = &args.unix {
        serve_unix(&args, path, (kind, idle), &door, &stats)?;
    } else if args.udp {
        let sock = net::bind_udp(addr, false)?;
        announce(&args, kind, &format!("udp {}", local(sock.local_addr())));
        serve::datagram::run(&sock, kind, args.busy_poll, &door, &stats);
    } else {
        let web = match kind {
            ServiceKind::Smtp => {
                crate::mail::Web::bind(&args.smtp, args.bind.as_deref(), args.quiet)?
            }
            _ => None,
        };
        let listener = net::listen_tcp(addr, false)?;
        announce(&args, kind, &local(listener.local_addr()));
        if let Some(web) = &web {
            web.announce();
        }
        // The thread services only accept on the runtime: one thread does.
        let runtime = if threaded || kind == ServiceKind::Sockperf {
            tokio::runtime::Builder::new_current_thread()
        } else {
            tokio::runtime::Builder::new_multi_thread()
        }
        .enable_all()
        .build()
        .context("starting the runtime")?;
        let listener = runtime
            .block_on(async { sonde::door::to_tokio(listener) })
            .context("registering the listener")?;
        if threaded {
            let reflect = ReflectConfig {
                reflect: Reflect::Echo,
                mode: Mode::spinning(args.busy_poll),
                idle,
            };
            let serving = reflector::serve(listener, reflect, door.clone(), Arc::clone(&stats));
            runtime.block_on(serving);
        } else {
            let web =
                runtime.block_on(async { web.map(|w| w.start(&config, &door)).transpose() })?;
            let serving = serve::run(listener, kind, config, door.clone(), Arc::clone(&stats));
            // On a worker, not in `block_on`, so connections are polled
            // where their sockets are.
            runtime
                .block_on(async {
                    let served = tokio::spawn(serving).await;
                    if let Some(web) = web {
                        let _ = web.await;
                    }
                    served
                })
                .context("running the server")?;
        }
    }
    if !args.quiet {
        eprintln!("sonde: {}", stats.summary(&door, args.udp));
    }
    Ok(ExitCode::SUCCESS)
}

/// What `--metrics` shows of a server: its door's counters and its bytes
/// (and a mail sink's messages).
fn serve_metrics(
    door: &Door,
    stats: &Arc<Stats>,
    kind: ServiceKind,
    config: &ServeConfig,
) -> prometheus_client::registry::Registry {
    use std::sync::atomic::Ordering::Relaxed;
    let mut registry = crate::metrics::with_door(door.shared_counters());
    let (a, b, c) = (Arc::clone(stats), Arc::clone(stats), Arc::clone(stats));
    let counted = sonde::door::metrics::Counted(vec![
        (
            "sonde_received_bytes",
            "Bytes received from clients",
            Box::new(move || a.bytes_in.load(Relaxed)),
        ),
        (
            "sonde_sent_bytes",
            "Bytes sent to clients",
            Box::new(move || b.bytes_out.load(Relaxed)),
        ),
        (
            "sonde_datagrams_received",
            "UDP datagrams received",
            Box::new(move || c.datagrams.load(Relaxed)),
        ),
    ]);
    registry.register_collector(Box::new(counted));
    if kind == ServiceKind::Smtp {
        let store = Arc::clone(&config.smtp.store);
        let both = Arc::clone(&store);
        registry.register_collector(Box::new(sonde::door::metrics::Counted(vec![
            (
                "sonde_smtp_messages_stored",
                "Messages stored since the start",
                Box::new(move || store.stored().0),
            ),
            (
                "sonde_smtp_stored_bytes",
                "Bytes of the messages stored since the start",
                Box::new(move || both.stored().1),
            ),
        ])));
    }
    registry
}

/// `serve echo|sockperf --unix PATH`: the thread reflector on a Unix
/// stream socket, whose file goes when the server does.
fn serve_unix(
    args: &ServeArgs,
    path: &str,
    (kind, idle): (ServiceKind, Option<Duration>),
    door: &Door,
    stats: &Arc<Stats>,
) -> anyhow::Result<()> {
    let path = sonde::net::unix::UnixPath::parse(path)
        .ok_or_else(|| crate::usage::UsageError("--unix needs a socket path".into()))?;
    let listener = net::unix::bind(&path)?;
    // Removed when serving ends (a signal stops it), and only then: a
    // failure to bind leaves another server's file alone.
    let _socket_file = sonde::net::unix::SocketFile::of(&path);
    announce(args, kind, &format!("unix:{path}"));
    let reflect = ReflectConfig {
        reflect: if kind == ServiceKind::Sockperf {
            Reflect::Sockperf
        } else {
            Reflect::Echo
        },
        mode: Mode::spinning(args.busy_poll),
        idle,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        reflector::serve_unix(listener, reflect, door.clone(), Arc::clone(stats)).await;
        anyhow::Ok(())
    })
}

/// The proxies' egress rules and users.
fn proxy_config(args: &ServeArgs) -> anyhow::Result<ProxyConfig> {
    let users = match &args.auth_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the auth file {}", path.display()))?;
            proxy::parse_users(&text)
                .map_err(|e| crate::usage::UsageError(format!("{}: {e}", path.display())))?
        }
        None => Default::default(),
    };
    let allow_dest = if args.allow_dest.is_empty() {
        proxy::loopback()
    } else {
        args.allow_dest.clone()
    };
    Ok(ProxyConfig { allow_dest, users })
}

/// The flags that only some services take.
fn check(args: &ServeArgs, kind: ServiceKind) -> anyhow::Result<()> {
    let usage = |text: String| Err(crate::usage::UsageError(text).into());
    if args.udp
        && !matches!(
            kind,
            ServiceKind::Echo | ServiceKind::Discard | ServiceKind::Sockperf
        )
    {
        return usage(format!(
            "--udp works with echo, discard and sockperf, not {}",
            kind.name()
        ));
    }
    if kind != ServiceKind::Smtp && args.smtp.given() {
        return usage(format!(
            "--store and the --max-message-size, --max-recipients and --max-messages limits are smtp's, not {}'s",
            kind.name()
        ));
    }
    let proxy = matches!(kind, ServiceKind::Socks5 | ServiceKind::HttpProxy);
    if args.smtp.offers_starttls() && args.tls.tls {
        return usage(
            "--tls is TLS from the first byte, --starttls a plain start that turns TLS: one or the other (--cert/--key give either its certificate)".into(),
        );
    }
    if !proxy && !args.allow_dest.is_empty() {
        return usage(format!(
            "--allow-dest is the proxies' (socks5, http-proxy), not {}'s",
            kind.name()
        ));
    }
    if !proxy && kind != ServiceKind::Smtp && args.auth_file.is_some() {
        return usage(format!(
            "--auth-file is the proxies' and smtp's, not {}'s",
            kind.name()
        ));
    }
    if proxy && args.tls.on() {
        return usage(format!(
            "{} takes no --tls: its clients speak plain SOCKS or HTTP",
            kind.name()
        ));
    }
    if args.unix.is_some() && !matches!(kind, ServiceKind::Echo | ServiceKind::Sockperf) {
        return usage(format!(
            "--unix works with echo and sockperf, not {}",
            kind.name()
        ));
    }
    if args.unix.is_some() && args.tls.on() {
        return usage("--tls is for TCP: not with --unix".into());
    }
    if (args.busy_poll || args.blocking) && kind != ServiceKind::Echo {
        let flag = if args.busy_poll {
            "--busy-poll"
        } else {
            "--blocking"
        };
        return usage(format!("{flag} works with echo, not {}", kind.name()));
    }
    if args.tls.on() {
        if args.udp {
            return usage(crate::tls::NO_DTLS.into());
        }
        if args.busy_poll || args.blocking {
            return usage(
                "--tls does not go with --blocking or --busy-poll: the threaded echo measures the bare socket; without them, echo --tls runs on the async service".into(),
            );
        }
    }
    Ok(())
}

fn announce(args: &ServeArgs, kind: ServiceKind, on: &str) {
    if args.quiet {
        return;
    }
    let mode = if args.busy_poll {
        " (busy-poll)"
    } else if args.blocking {
        " (blocking)"
    } else {
        ""
    };
    eprintln!("sonde serve {}{mode} listening on {on}", kind.name());
}

/// Prints the counters to stderr every `every` until the server stops.
fn print_stats_every(every: Duration, door: Door, stats: Arc<Stats>, udp: bool) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(every);
            if door.is_shut() {
                return;
            }
            let summary = stats.summary(&door, udp);
            if udp {
                eprintln!("sonde: {summary}");
            } else {
                eprintln!("sonde: {} open now; {summary}", door.active());
            }
        }
    });
}

/// First SIGINT or SIGTERM: shut down gracefully; a second: exit now.
///
/// The handler is installed before this returns (so before the address
/// is printed): a signal right after start-up never meets the default
/// action.
pub(crate) fn on_signals(door: &Door) -> anyhow::Result<()> {
    let door = door.clone();
    ctrlc::set_handler(move || {
        if door.is_shut() {
            std::process::exit(1);
        }
        door.shutdown();
    })
    .context("handling SIGINT and SIGTERM")
}

fn local(addr: std::io::Result<SocketAddr>) -> String {
    addr.map_or_else(|_| "an unknown address".to_string(), |a| a.to_string())
}
