//! `sonde connect HOST PORT`: stdin to the socket, the socket to stdout.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use sonde::net::{self, ConnectOptions, proxy};
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
    pub(crate) proxy: ProxyArgs,
    #[command(flatten)]
    pub(crate) talk: TalkArgs,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
}

/// ncat's proxy flags.
#[derive(Debug, clap::Args)]
pub(crate) struct ProxyArgs {
    /// Connect through the proxy at HOST[:PORT] (default port 1080 for SOCKS, 3128 for HTTP) (ncat's).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub(crate) proxy: Option<String>,
    /// The proxy's protocol: http (CONNECT), socks4 or socks5 (default http, as ncat).
    #[arg(long, value_name = "TYPE", requires = "proxy", value_parser = ["http", "socks4", "socks5"])]
    pub(crate) proxy_type: Option<String>,
    /// USER:PASS for the proxy (SOCKS4: USER), or set SONDE_PROXY_AUTH, which keeps it out of process lists.
    #[arg(long, value_name = "USER[:PASS]", requires = "proxy")]
    pub(crate) proxy_auth: Option<String>,
    /// Where the target's name is resolved: remote (by the proxy, the default), local, both, none.
    #[arg(long, value_name = "TYPE", requires = "proxy", value_parser = ["local", "remote", "both", "none"])]
    pub(crate) proxy_dns: Option<String>,
}

impl ProxyArgs {
    /// The proxy to go through, if any.
    fn proxy(&self) -> anyhow::Result<Option<proxy::Proxy>> {
        let Some(at) = &self.proxy else {
            return Ok(None);
        };
        let kind = match self.proxy_type.as_deref() {
            Some("socks5") => proxy::Kind::Socks5,
            Some("socks4") => proxy::Kind::Socks4,
            _ => proxy::Kind::Http,
        };
        let (host, port) = match net::split_host_port(at) {
            Ok(hp) => hp,
            Err(_) if !at.contains(':') || at.parse::<std::net::Ipv6Addr>().is_ok() => {
                (at.clone(), kind.default_port())
            }
            Err(e) => return Err(UsageError(format!("--proxy {at}: {e}")).into()),
        };
        let auth = self
            .proxy_auth
            .clone()
            .or_else(|| std::env::var("SONDE_PROXY_AUTH").ok())
            .map(|a| match a.split_once(':') {
                Some((user, pass)) => (user.to_string(), pass.to_string()),
                None => (a, String::new()),
            });
        let dns = match self.proxy_dns.as_deref() {
            Some("local") => proxy::Dns::Local,
            Some("both") => proxy::Dns::Both,
            Some("none") => proxy::Dns::None,
            _ => proxy::Dns::Remote,
        };
        Ok(Some(proxy::Proxy {
            host,
            port,
            kind,
            auth,
            dns,
        }))
    }
}

/// `sonde connect HOST PORT`.
pub(crate) fn connect(args: ConnectArgs) -> anyhow::Result<ExitCode> {
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
    super::numeric(&args.talk, &host)?;
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
    if args.talk.udp && args.proxy.proxy.is_some() {
        return Err(UsageError("--proxy is for TCP: not with -u".into()).into());
    }
    if args.talk.udp {
        let input = input(&args.talk, args.message.as_deref())?;
        let sock = net::connect_udp(&host, port, &opts)?;
        udp::talk(sock, input, stdout_fd()?, udp_options(&args.talk)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let job = match program {
        Some((program, stderr)) => Job::Exec(program, stderr),
        None => Job::relay(input(&args.talk, args.message.as_deref())?, args.verbose),
    };
    let (stream, peer) = match args.proxy.proxy()? {
        Some(through) => net::proxy::connect(&through, &host, port, &opts)?,
        None => net::connect_tcp(&host, port, &opts)?,
    };
    if args.verbose > 0 {
        let name = super::service_name(peer.port(), "tcp");
        eprintln!("Connection to {host} {port} port [tcp/{name}] succeeded!");
    }
    let relay_opts = relay_options(&args.talk, interactive)?;
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
    if args.talk.udp {
        // nc -uU: each line a datagram, replies printed.
        let input = input(&args.talk, args.message.as_deref())?;
        let sock = net::unix::connect_datagram(&path)?;
        udp::talk(sock, input, stdout_fd()?, udp_options(&args.talk)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let interactive = program.is_none() && args.message.is_none() && std::io::stdin().is_terminal();
    let job = match program {
        Some((program, stderr)) => Job::Exec(program, stderr),
        None => Job::relay(input(&args.talk, args.message.as_deref())?, args.verbose),
    };
    let stream = net::unix::connect(&path)?;
    super::run_job(
        stream,
        format!("unix:{path}"),
        job,
        relay_options(&args.talk, interactive)?,
    )
}
