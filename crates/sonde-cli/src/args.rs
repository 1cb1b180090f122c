//! The command line: every subcommand and flag, parsed by clap. Values are
//! checked here, so a bad argument is a usage error (exit 2) before
//! anything runs.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;

/// sonde: talk to and serve TCP and UDP ports, move files, and measure a
/// network's throughput, delay and bandwidth.
#[derive(Debug, Parser)]
#[command(name = "sonde", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Connect to HOST PORT: stdin to the socket, the socket to stdout (like nc).
    Connect(ConnectArgs),
    /// Listen on [ADDR:]PORT for one client (or many with -k) (like nc -l).
    Listen(ListenArgs),
    /// Measure throughput with iperf3's protocol and flags (-s server, -c HOST client;
    /// neither: an embedded loopback test).
    Perf(Box<crate::perf_args::PerfArgs>),
    /// Serve echo, discard, chargen or chat to many clients at once.
    Serve(crate::serve::ServeArgs),
    /// Measure round-trip latency against an echo server, and fit delay and
    /// bandwidth over message sizes (no host: an embedded loopback echo).
    Rtt(crate::rtt::RttArgs),
    /// Send files, directories or stdin to `sonde receive`, verified with
    /// BLAKE3 and resumable.
    Send(crate::transfer::SendArgs),
    /// Receive files from `sonde send` into a directory (one transfer, or
    /// many with --keep-open).
    Receive(crate::transfer::ReceiveArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: Shell,
    },
}

/// Flags shared by `connect` and `listen`.
#[derive(Debug, Args)]
pub(crate) struct TalkArgs {
    /// Use UDP instead of TCP: each input line is one datagram.
    #[arg(short = 'u', long)]
    pub(crate) udp: bool,
    /// Use IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub(crate) ipv4: bool,
    /// Use IPv6 only.
    #[arg(short = '6')]
    pub(crate) ipv6: bool,
    /// After the input ends, quit after SECS (UDP: SECS of silence; default 1 for UDP).
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
    /// Keep the write side open at the end of the input (no half-close).
    #[arg(long)]
    pub(crate) no_shutdown: bool,
    /// Only send: discard what the peer sends.
    #[arg(long, conflicts_with = "recv_only")]
    pub(crate) send_only: bool,
    /// Only receive: never read stdin.
    #[arg(long)]
    pub(crate) recv_only: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// Host name or address (`::1`, or `HOST:PORT` / `[::1]:PORT` with no PORT argument).
    pub(crate) host: String,
    /// Port number.
    #[arg(value_parser = parse_port)]
    pub(crate) port: Option<u16>,
    /// Send TEXT instead of stdin, half-close, and print the reply.
    #[arg(long, value_name = "TEXT", conflicts_with = "recv_only")]
    pub(crate) message: Option<String>,
    /// Local address to connect from: ADDR or ADDR:PORT ([V6]:PORT).
    #[arg(short = 's', long, value_name = "ADDR[:PORT]", value_parser = parse_source)]
    pub(crate) source: Option<std::net::SocketAddr>,
    /// Give up connecting to each address after SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) connect_timeout: Option<Duration>,
    #[command(flatten)]
    pub(crate) talk: TalkArgs,
}

/// Where to listen: an optional address and a port.
#[derive(Clone, Debug)]
pub(crate) struct ListenOn {
    pub(crate) host: Option<String>,
    pub(crate) port: u16,
}

#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// PORT, or ADDR:PORT ([V6]:PORT); with no address, IPv4 and IPv6 both.
    #[arg(value_name = "[ADDR:]PORT", value_parser = parse_listen_on)]
    pub(crate) on: ListenOn,
    /// Send TEXT to each client as soon as it connects.
    #[arg(long, value_name = "TEXT")]
    pub(crate) greet: Option<String>,
    /// Serve many clients at once; stdin goes to all of them.
    #[arg(short = 'k', long)]
    pub(crate) keep_open: bool,
    /// With -k: clients at once; more are closed at once (as ncat's --max-conns).
    #[arg(long, value_name = "N", default_value_t = sonde::talk::many::DEFAULT_MAX_CLIENTS)]
    pub(crate) max_conns: usize,
    /// Do not report addresses on stderr.
    #[arg(long)]
    pub(crate) quiet: bool,
    #[command(flatten)]
    pub(crate) talk: TalkArgs,
}

/// Parses seconds with decimals ("0.5", "3").
pub(crate) fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{text}': seconds must be 0 or more"))
}

fn parse_port(text: &str) -> Result<u16, String> {
    sonde::net::parse_port(text).map_err(|e| e.to_string())
}

fn parse_source(text: &str) -> Result<std::net::SocketAddr, String> {
    sonde::net::parse_local_addr(text).map_err(|e| e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds_take_decimals_and_refuse_negatives() {
        assert_eq!(parse_secs("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
    }

    #[test]
    fn listen_address_is_optional() {
        let on = parse_listen_on("9000").expect("port alone");
        assert_eq!((on.host, on.port), (None, 9000));
        let on = parse_listen_on("[::1]:9000").expect("v6 and port");
        assert_eq!((on.host.as_deref(), on.port), (Some("::1"), 9000));
        assert!(parse_listen_on("70000").is_err());
    }
}
