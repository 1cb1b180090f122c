//! `sonde listen [ADDR:]PORT`: one client, or many with `-k`, on the
//! front door.

use std::io::IsTerminal;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use sonde::door::{Counters, Door, DoorConfig};
use sonde::net::{self, Family};
use sonde::talk::many::{self as multi, ClientEvent};
use sonde::talk::relay::{Input, RelayOptions};
use sonde::talk::udp;

use super::{
    Job, Secure, TalkArgs, input, local, relay_options, relay_over, stdout_fd, udp_options,
};
use crate::metrics::Outcomes;
use crate::tls::TlsArgs;
use crate::usage::UsageError;

/// Where to listen: an optional address and a port.
#[derive(Clone, Debug)]
pub(crate) struct ListenOn {
    pub(crate) host: Option<String>,
    pub(crate) port: u16,
}

#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// PORT, or ADDR:PORT ([V6]:PORT); with no address, IPv4 and IPv6 both; with -U a socket path.
    #[arg(value_name = "[ADDR:]PORT", required_unless_present = "port")]
    on: Option<String>,
    /// The port, as traditional nc takes it (`nc -l -p 9000`); the same as giving PORT.
    #[arg(
        short = 'p',
        long = "port",
        value_name = "PORT",
        conflicts_with = "unix"
    )]
    port: Option<u16>,
    /// Accepted for nc's `-l` (`nc -lvnp 4444`): `listen` always listens.
    #[arg(short = 'l', hide = true)]
    _listen: bool,
    /// nc's `-v`: listen reports its address and each client anyway (unless --quiet); -vv adds ncat's count of bytes at the end.
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
    /// Send TEXT to each client as soon as it connects.
    #[arg(long, value_name = "TEXT")]
    pub(crate) greet: Option<String>,
    /// Serve many clients at once; stdin goes to all of them (-k is nc's; in perf it is iperf3's block count).
    #[arg(short = 'k', long)]
    pub(crate) keep_open: bool,
    /// With -k: what each client sends goes to every other client too (ncat's --broker; it implies -k).
    #[arg(long)]
    pub(crate) broker: bool,
    /// Do not report addresses on stderr.
    #[arg(long)]
    pub(crate) quiet: bool,
    #[command(flatten)]
    pub(crate) talk: TalkArgs,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    #[command(flatten)]
    pub(crate) access: crate::access::AccessArgs,
    #[command(flatten)]
    pub(crate) metrics: crate::metrics::MetricsArgs,
}

fn parse_listen_on(text: &str) -> Result<ListenOn, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(ListenOn { host: None, port });
    }
    let (host, port) = sonde::net::split_host_port(text).map_err(|e| e.to_string())?;
    Ok(ListenOn {
        host: Some(host),
        port,
    })
}

impl ListenArgs {
    /// Where to listen, from `[ADDR:]PORT` and nc's `-p PORT`: `-p`
    /// with an address alone (`nc -l 127.0.0.1 -p 9000`) is that address
    /// and port.
    pub(crate) fn on(&self) -> anyhow::Result<String> {
        match (&self.on, self.port) {
            (Some(on), None) => Ok(on.clone()),
            (None, Some(port)) => Ok(port.to_string()),
            (Some(addr), Some(port))
                if addr
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok() =>
            {
                Ok(crate::usage::with_port(addr, port)?)
            }
            (Some(on), Some(port)) => Err(UsageError(format!(
                "{on} and -p {port}: give the port once ([ADDR:]PORT, or -p PORT)"
            ))
            .into()),
            (None, None) => Err(UsageError("listen needs a port".into()).into()),
        }
    }
}

/// `sonde listen [ADDR:]PORT`.
pub(crate) fn listen(args: ListenArgs) -> anyhow::Result<ExitCode> {
    if args.talk.udp && args.metrics.metrics.is_some() {
        let why = "--metrics counts stream clients (-k or --broker): not with -u";
        return Err(UsageError(why.into()).into());
    }
    if args.talk.unix {
        return listen_unix(&args);
    }
    let on = parse_listen_on(&args.on()?).map_err(UsageError)?;
    if let Some(host) = &on.host {
        super::numeric(&args.talk, host)?;
    }
    let fam = args.talk.family();
    let addrs = net::local_addrs(on.host.as_deref(), on.port, fam)?;
    let addr = addrs[0];
    let v6_only = fam == Family::V6;
    let report = |text: String| {
        if !args.quiet {
            eprintln!("{text}");
        }
    };
    if args.talk.udp && args.tls.on() {
        return Err(UsageError(crate::tls::NO_DTLS.into()).into());
    }
    let program = super::exec::program(&args.talk)?;
    let tls = args.tls.server(args.quiet)?;
    if args.talk.udp {
        let input = input(&args.talk, None)?;
        let sock = net::bind_udp(addr, v6_only)?;
        report(format!("listening on udp {}", local(sock.local_addr())));
        let quiet = args.quiet;
        udp::listen(
            sock,
            input,
            stdout_fd()?,
            udp_options(&args.talk)?,
            move |peer| {
                if !quiet {
                    eprintln!("datagram from {peer}");
                }
            },
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let listener = net::listen_tcp(addr, v6_only)?;
    // Before the banner, so a signal right after it finds the handler.
    if args.keep_open || args.broker {
        stop_on_signal(args.quiet);
    }
    let (counters, outcomes) = watch(&args)?;
    report(format!("listening on {}", local(listener.local_addr())));
    let interactive = program.is_none() && std::io::stdin().is_terminal();
    let mut opts = relay_options(&args.talk, interactive)?;
    opts.greeting = args.greet.map(String::into_bytes);
    opts.broker = args.broker;
    if args.talk.telnet && (args.keep_open || args.broker) {
        return Err(
            UsageError("-t answers one telnet server: not with -k or --broker".into()).into(),
        );
    }
    if args.broker && program.is_some() {
        return Err(
            UsageError("--broker joins clients to each other, not to --exec".into()).into(),
        );
    }
    if args.keep_open || args.broker {
        sonde::door::raise_fd_limit();
        let max = args.access.max_connections(multi::DEFAULT_MAX_CLIENTS);
        let mut door = DoorConfig::new("listen", max);
        door.rules = args.access.rules();
        door.counters = counters;
        let told = (args.quiet, outcomes);
        match program {
            Some(program) => super::exec::serve_many(listener, program, opts, door, tls, told)?,
            None => serve_many(listener, input(&args.talk, None)?, opts, door, told, tls)?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    let job = match program {
        Some((program, stderr)) => Job::Exec(program, stderr),
        None => Job::relay(input(&args.talk, None)?, args.verbose),
    };
    let on = local(listener.local_addr());
    let mut door = DoorConfig::new("listen", 1);
    door.rules = args.access.rules();
    let door = Door::new(door);
    let (stream, peer, _place) = door
        .accept_one(listener)
        .with_context(|| format!("accepting a client on {on}"))?;
    report(format!("connection from {peer}"));
    let tls = tls.map(Secure::Server);
    relay_over(stream, peer, tls.as_ref(), job, opts)
}

/// `sonde listen -U PATH`: one client on a Unix stream socket, the
/// socket file removed when it is done (or on SIGINT/SIGTERM).
fn listen_unix(args: &ListenArgs) -> anyhow::Result<ExitCode> {
    let many = args.keep_open || args.broker;
    if args.tls.on() {
        return Err(UsageError("--tls is for TCP: not with -U".into()).into());
    }
    let path = args.talk.unix_path(&args.on()?)?;
    let program = super::exec::program(&args.talk)?;
    if args.talk.udp {
        return listen_unix_datagram(args, &path);
    }
    let listener = net::unix::bind(&path)?;
    let socket_file = net::unix::SocketFile::of(&path);
    remove_on_signal(socket_file.path().map(std::path::Path::to_path_buf));
    let (counters, outcomes) = watch(args)?;
    if !args.quiet {
        eprintln!("listening on unix:{path}");
    }
    let interactive = program.is_none() && std::io::stdin().is_terminal();
    let mut opts = relay_options(&args.talk, interactive)?;
    opts.greeting = args.greet.clone().map(String::into_bytes);
    let job = match program {
        Some((program, stderr)) => Job::Exec(program, stderr),
        None => Job::relay(input(&args.talk, None)?, args.verbose),
    };
    if many {
        opts.broker = args.broker;
        let max = args.access.max_connections(multi::DEFAULT_MAX_CLIENTS);
        let mut door = DoorConfig::new("listen", max);
        door.rules = args.access.rules();
        door.counters = counters;
        let quiet = args.quiet;
        let input = match job {
            Job::Relay(input) | Job::Counted(input) => input,
            Job::Exec(..) if args.broker => {
                return Err(UsageError(
                    "--broker joins clients to each other, not to --exec".into(),
                )
                .into());
            }
            Job::Exec(program, stderr) => {
                let name = format!("unix:{path}");
                let told = (quiet, outcomes);
                super::exec::serve_many_unix(listener, name, (program, stderr), opts, door, told)?;
                return Ok(ExitCode::SUCCESS);
            }
        };
        multi::serve_many_unix(listener, input, stdout_fd()?, opts, door, move |event| {
            report_client(event, quiet, &outcomes);
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut door = DoorConfig::new("listen", 1);
    door.rules = args.access.rules();
    let door = Door::new(door);
    let mut first = None;
    door.serve_unix_blocking(listener, |accepted| {
        if first.is_none() {
            first = Some(accepted);
            door.shutdown();
        }
    })
    .with_context(|| format!("accepting a client on unix:{path}"))?;
    let Some(accepted) = first else {
        return Ok(ExitCode::SUCCESS);
    };
    let stream = accepted
        .stream
        .into_std()
        .and_then(|s| s.set_nonblocking(false).map(|()| s))
        .context("taking over the connection")?;
    if !args.quiet {
        eprintln!("connection on unix:{path}");
    }
    let _place = accepted.permit;
    super::run_job(stream, format!("unix:{path}"), job, opts)
}

/// `sonde listen -uU PATH`: every datagram printed, typed lines to the
/// last sender that can be answered; the file removed when done.
fn listen_unix_datagram(args: &ListenArgs, path: &net::unix::UnixPath) -> anyhow::Result<ExitCode> {
    if args.keep_open || args.broker {
        return Err(UsageError(
            "-k and --broker are for stream sockets: a datagram listener hears every sender already".into(),
        )
        .into());
    }
    let sock = net::unix::bind_datagram(path)?;
    let socket_file = net::unix::SocketFile::of(path);
    remove_on_signal(socket_file.path().map(std::path::Path::to_path_buf));
    let quiet = args.quiet;
    if !quiet {
        eprintln!("listening on unix-dgram:{path}");
    }
    udp::listen(
        sock,
        input(&args.talk, None)?,
        stdout_fd()?,
        udp_options(&args.talk)?,
        move |peer| {
            if !quiet {
                eprintln!("datagram from unix:{peer}");
            }
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT or SIGTERM: the socket file removed, exit 0.
fn remove_on_signal(file: Option<std::path::PathBuf>) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            if let Some(path) = file {
                let _ = std::fs::remove_file(path);
            }
            std::process::exit(0);
        }
    });
}

/// `listen -k` is a server: SIGINT or SIGTERM stops it, exit 0 (its
/// clients' streams have no end to wait for; what they sent is out).
fn stop_on_signal(quiet: bool) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            if !quiet {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "sonde listen: stopped");
            }
            std::process::exit(0);
        }
    });
}

fn serve_many(
    listener: TcpListener,
    input: Input,
    opts: RelayOptions,
    door: DoorConfig,
    (quiet, outcomes): (bool, Outcomes),
    tls: Option<sonde::tls::ServerTls>,
) -> anyhow::Result<()> {
    multi::serve_many(
        listener,
        input,
        stdout_fd()?,
        opts,
        door,
        tls,
        move |event| report_client(event, quiet, &outcomes),
    )?;
    Ok(())
}

/// `--metrics` of `listen -k`: the door's counters and its clients by how
/// they ended, served (before the banner) when asked for.
fn watch(args: &ListenArgs) -> anyhow::Result<(Arc<Counters>, Outcomes)> {
    let counters = Arc::<Counters>::default();
    let outcomes = Outcomes::new(&["closed", "dropped", "failed"]);
    if args.metrics.metrics.is_some() {
        if !(args.keep_open || args.broker) {
            let why = "--metrics is for a listener that serves many clients (-k or --broker)";
            return Err(UsageError(why.into()).into());
        }
        let mut registry = crate::metrics::with_door(Arc::clone(&counters));
        let what = (
            "clients",
            "Clients ended, by result (closed, dropped, failed)",
        );
        outcomes.register(&mut registry, "sonde_listen", what);
        args.metrics.start(registry, args.quiet)?;
    }
    Ok((counters, outcomes))
}

/// What `listen -k` says of its clients on stderr, each ending counted.
fn report_client(event: ClientEvent, quiet: bool, outcomes: &Outcomes) {
    match event {
        ClientEvent::Connected(peer) if !quiet => eprintln!("connection from {peer}"),
        ClientEvent::Closed(peer) => {
            outcomes.ended("closed");
            if !quiet {
                eprintln!("{peer} closed");
            }
        }
        ClientEvent::Dropped(peer) => {
            outcomes.ended("dropped");
            eprintln!("sonde: dropped {peer}: it stopped reading and its queue filled");
        }
        ClientEvent::Failed(peer, err) => {
            outcomes.ended("failed");
            eprintln!("sonde: client {peer}: {err}");
        }
        ClientEvent::Connected(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_address_is_optional() {
        let on = parse_listen_on("9000").expect("port alone");
        assert_eq!((on.host, on.port), (None, 9000));
        let on = parse_listen_on("[::1]:9000").expect("v6 and port");
        assert_eq!((on.host.as_deref(), on.port), (Some("::1"), 9000));
        assert!(parse_listen_on("70000").is_err());
    }
}
