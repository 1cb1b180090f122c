//! `sonde perf`'s command line: iperf3's flags with iperf3's meanings and
//! units (seconds, and milliseconds where iperf3 uses them).

use clap::Args;

use crate::usage::{parse_rate, parse_size};

/// iperf3's flags (run `sonde perf --help`).
#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub(crate) struct PerfArgs {
    /// Run as a server (-s is iperf3's; in connect it is nc's source).
    #[arg(short = 's', long, conflicts_with = "client")]
    pub(crate) server: bool,
    /// Run as a client of HOST.
    #[arg(short = 'c', long, value_name = "HOST")]
    pub(crate) client: Option<String>,
    /// Over a Unix stream socket, sonde to sonde: -s -U PATH serves on it, -U PATH is its
    /// client, -U alone runs both ends in this process (the kernel-only baseline).
    #[arg(short = 'U', long = "unix", value_name = "PATH", num_args = 0..=1, default_missing_value = "")]
    pub(crate) unix: Option<String>,
    /// Server port.
    #[arg(short = 'p', long, default_value_t = sonde::wire::iperf::DEFAULT_PORT)]
    pub(crate) port: u16,
    /// Seconds to transmit (default 10; 3 for the embedded test; decimals
    /// are taken and cut to whole seconds, as iperf3 does).
    #[arg(short = 't', long, value_name = "SECS", value_parser = parse_whole_secs)]
    pub(crate) time: Option<u32>,
    /// Bytes to transmit instead of a time (K/M/G = 1024-based; -n is iperf3's).
    #[arg(short = 'n', long = "bytes", value_name = "N[KMG]", value_parser = parse_size)]
    pub(crate) bytes: Option<u64>,
    /// Blocks (writes or datagrams) to transmit instead of a time (-k is iperf3's; in listen it is nc's keep-open).
    #[arg(short = 'k', long = "blockcount", value_name = "N[KMG]", value_parser = parse_size)]
    pub(crate) blockcount: Option<u64>,
    /// Parallel streams.
    #[arg(short = 'P', long, default_value_t = 1)]
    pub(crate) parallel: u32,
    /// Reverse: the server sends.
    #[arg(short = 'R', long)]
    pub(crate) reverse: bool,
    /// Both directions at once.
    #[arg(long, conflicts_with = "reverse")]
    pub(crate) bidir: bool,
    /// UDP instead of TCP.
    #[arg(short = 'u', long)]
    pub(crate) udp: bool,
    /// Target rate per stream in bit/s, 0 = unlimited (K/M/G = 1000-based), optional /BURST.
    #[arg(short = 'b', long = "bitrate", value_name = "RATE[/BURST]")]
    pub(crate) bitrate: Option<String>,
    /// Block (TCP) or datagram (UDP) length.
    #[arg(short = 'l', long = "length", value_name = "N[KM]", value_parser = parse_size)]
    pub(crate) length: Option<u64>,
    /// Socket buffer size.
    #[arg(short = 'w', long = "window", value_name = "N[KM]", value_parser = parse_size)]
    pub(crate) window: Option<u64>,
    /// TCP_NODELAY on data sockets.
    #[arg(short = 'N', long = "no-delay")]
    pub(crate) no_delay: bool,
    /// TCP maximum segment size.
    #[arg(short = 'M', long = "set-mss", value_name = "MSS")]
    pub(crate) mss: Option<u32>,
    /// Seconds to omit at the start.
    #[arg(short = 'O', long, value_name = "SECS", default_value = "0", value_parser = parse_whole_secs)]
    pub(crate) omit: u32,
    /// Seconds between reports (0 for none).
    #[arg(short = 'i', long, value_name = "SECS", default_value_t = 1.0)]
    pub(crate) interval: f64,
    /// Units: k m g t (bits) or K M G T (bytes).
    #[arg(short = 'f', long, value_name = "UNIT")]
    pub(crate) format: Option<char>,
    /// JSON output (iperf3's schema).
    #[arg(short = 'J', long)]
    pub(crate) json: bool,
    /// JSON lines, one event per line (iperf3 3.17's --json-stream).
    #[arg(long)]
    pub(crate) json_stream: bool,
    /// --json-stream's events, then the whole -J document on one line (iperf3 3.20).
    #[arg(long)]
    pub(crate) json_stream_full_output: bool,
    /// Also write the test as a self-contained HTML page of charts (the
    /// client; with -R it asks a server run with -J for its side too).
    #[arg(long, value_name = "FILE.html")]
    pub(crate) report: Option<std::path::PathBuf>,
    /// The server: write each test's HTML report into this directory
    /// (needs -J's document, which the server then builds for each test).
    #[arg(long, value_name = "DIR")]
    pub(crate) report_dir: Option<std::path::PathBuf>,
    /// Zero-copy sending (sendfile).
    #[arg(short = 'Z', long)]
    pub(crate) zerocopy: bool,
    /// Receive without copying (MSG_TRUNC; iperf3 3.19's --skip-rx-copy).
    #[arg(long)]
    pub(crate) skip_rx_copy: bool,
    /// TCP congestion control algorithm.
    #[arg(short = 'C', long, value_name = "ALGO")]
    pub(crate) congestion: Option<String>,
    /// Server: handle one test, then exit.
    #[arg(short = '1', long = "one-off")]
    pub(crate) one_off: bool,
    /// IPv4 only.
    #[arg(short = '4', long = "version4", conflicts_with = "v6")]
    pub(crate) v4: bool,
    /// IPv6 only.
    #[arg(short = '6', long = "version6")]
    pub(crate) v6: bool,
    /// Bind to this local address (ADDR%DEV also binds to the interface DEV).
    #[arg(short = 'B', long, value_name = "ADDR[%DEV]")]
    pub(crate) bind: Option<String>,
    /// Bind every socket to this network interface (SO_BINDTODEVICE).
    #[arg(long, value_name = "DEV")]
    pub(crate) bind_dev: Option<String>,
    /// Client: local port of the first data stream.
    #[arg(long, value_name = "PORT")]
    pub(crate) cport: Option<u16>,
    /// A prefix for every output line.
    #[arg(short = 'T', long, value_name = "TITLE")]
    pub(crate) title: Option<String>,
    /// Extra data for the JSON output.
    #[arg(long, value_name = "TEXT")]
    pub(crate) extra_data: Option<String>,
    /// Verbose output.
    #[arg(short = 'V', long)]
    pub(crate) verbose: bool,
    /// Write output to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub(crate) logfile: Option<std::path::PathBuf>,
    /// Server: exit after SECS without a client.
    #[arg(long, value_name = "SECS", value_parser = crate::usage::parse_secs)]
    pub(crate) idle_timeout: Option<std::time::Duration>,
    /// Receiving side: fail after MS without data.
    #[arg(long, value_name = "MS", default_value_t = 120_000)]
    pub(crate) rcv_timeout: u64,
    /// Client: timeout for the control connection, in ms.
    #[arg(long, value_name = "MS")]
    pub(crate) connect_timeout: Option<u64>,
    /// Server: refuse tests longer than SECS.
    #[arg(long, value_name = "SECS", value_parser = crate::usage::parse_secs)]
    pub(crate) server_max_duration: Option<std::time::Duration>,
    /// Server: refuse tests above this total rate (bit/s, K/M/G = 1000-based).
    #[arg(long, value_name = "RATE")]
    pub(crate) server_bitrate_limit: Option<String>,
    /// Server: tests run at once (past it, iperf3's busy reply).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub(crate) max_tests: usize,
    /// Server: data streams across all running tests (each a thread and its buffers); a test past it gets iperf3's busy reply.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub(crate) max_streams: usize,
    /// Ask the server for its output.
    #[arg(long)]
    pub(crate) get_server_output: bool,
    /// 64-bit UDP sequence numbers.
    #[arg(long)]
    pub(crate) udp_counters_64bit: bool,
    /// Payload "0123456789…" instead of random bytes.
    #[arg(long)]
    pub(crate) repeating_payload: bool,
    /// IP type of service, 0-255 (decimal, 0 octal or 0x hex).
    #[arg(short = 'S', long, value_name = "TOS", value_parser = parse_tos)]
    pub(crate) tos: Option<u32>,
    /// DSCP value, 0-63 or a name (ef, af11, cs1, ...); sets the TOS.
    #[arg(long, value_name = "DSCP", value_parser = sonde::perf::sockopt::parse_dscp, conflicts_with = "tos")]
    pub(crate) dscp: Option<u32>,
    /// IPv6 flow label.
    #[arg(short = 'L', long = "flowlabel", value_name = "N", value_parser = parse_flowlabel)]
    pub(crate) flowlabel: Option<u32>,
    /// Fair-queue socket pacing in bit/s (K/M/G = 1000-based).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub(crate) fq_rate: Option<u64>,
    /// CPU affinity: N for this side, N,M for this side and the server.
    #[arg(short = 'A', long, value_name = "N[,M]", value_parser = parse_affinity)]
    pub(crate) affinity: Option<(Option<usize>, Option<u32>)>,
    /// Prefix each output line with the time (strftime FORMAT, default "%c ").
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "%c ")]
    pub(crate) timestamps: Option<String>,
    /// Give up on unacknowledged TCP data after MS (TCP_USER_TIMEOUT).
    #[arg(long, value_name = "MS")]
    pub(crate) snd_timeout: Option<u64>,
    /// Keepalive on the control connection: IDLE/INTV/CNT (seconds, seconds, count; parts optional).
    #[arg(long, value_name = "IDLE/INTV/CNT", num_args = 0..=1, require_equals = true, default_missing_value = "", value_parser = sonde::perf::sockopt::Keepalive::parse)]
    pub(crate) cntl_ka: Option<sonde::perf::sockopt::Keepalive>,
    /// Set the IPv4 Don't Fragment flag on UDP datagrams.
    #[arg(long)]
    pub(crate) dont_fragment: bool,
    /// Run the data streams over MPTCP.
    #[arg(short = 'm', long)]
    pub(crate) mptcp: bool,
    /// Use SCTP rather than TCP (where the kernel has it).
    #[arg(long)]
    pub(crate) sctp: bool,
    /// SCTP: bind the association to NAME (with --sctp).
    #[arg(short = 'X', long, value_name = "NAME", requires = "sctp")]
    pub(crate) xbind: Vec<String>,
    /// SCTP: number of streams (with --sctp).
    #[arg(long, value_name = "N", requires = "sctp")]
    pub(crate) nstreams: Option<u32>,
    /// iperf3's pacing timer in µs (sent to the server; sonde paces by its own clock).
    #[arg(long, value_name = "N[KMG]", value_parser = parse_rate)]
    pub(crate) pacing_timer: Option<u64>,
    /// UDP GSO/GRO (iperf3 3.21; sonde batches UDP sends with GSO already).
    #[arg(long)]
    pub(crate) gsro: bool,
    /// Server: run as a daemon (in the background, detached).
    #[arg(short = 'D', long)]
    pub(crate) daemon: bool,
    /// Write the process id to FILE.
    #[arg(short = 'I', long, value_name = "FILE")]
    pub(crate) pidfile: Option<std::path::PathBuf>,
    /// Debugging output on stderr (level 1-4, default 4).
    #[arg(short = 'd', long, value_name = "LEVEL", num_args = 0..=1, require_equals = true, default_missing_value = "4")]
    pub(crate) debug: Option<u8>,
    /// Print the version and exit.
    #[arg(short = 'v', long)]
    pub(crate) version: bool,
    /// Flush output after each line (always done; accepted for iperf3 scripts).
    #[arg(long)]
    pub(crate) forceflush: bool,
    /// Send this file's bytes (ending the test at its end), or write what
    /// arrives into it.
    #[arg(short = 'F', long, value_name = "FILE")]
    pub(crate) file: Option<std::path::PathBuf>,
    /// iperf3's authentication.
    #[command(flatten)]
    pub(crate) auth: super::auth::AuthArgs,
    /// Who may connect to `-s` (a refused iperf3 client hears access denied).
    #[command(flatten)]
    pub(crate) access: crate::access::AccessArgs,
    /// -s: serve the server's counters for Prometheus (tests, bytes, throughput, connections).
    #[command(flatten)]
    pub(crate) metrics: crate::metrics::MetricsArgs,
    /// TLS data streams, sonde to sonde only: `-s --tls` agrees when a client asks; a client verifies as `connect --tls` does (--pin, --ca). Never offered to a stock iperf3.
    #[command(flatten)]
    pub(crate) tls: crate::tls::TlsArgs,
}

/// Seconds as iperf3 reads them: decimals are taken and cut to whole
/// seconds.
fn parse_whole_secs(text: &str) -> Result<u32, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !(0.0..=f64::from(u32::MAX)).contains(&secs) {
        return Err(format!("'{text}': seconds must be 0 or more"));
    }
    Ok(secs as u32)
}

fn parse_tos(text: &str) -> Result<u32, String> {
    sonde::perf::sockopt::parse_int(text)
        .filter(|t| *t <= 255)
        .ok_or_else(|| {
            format!("'{text}' is not a TOS value (0-255; 52, 064 and 0x34 are the same)")
        })
}

fn parse_flowlabel(text: &str) -> Result<u32, String> {
    sonde::perf::sockopt::parse_int(text)
        .filter(|l| *l <= 0xFFFFF)
        .ok_or_else(|| format!("'{text}' is not a flow label (0 to 1048575)"))
}

/// `-A N`, `-A N,M` or `-A ,M`.
fn parse_affinity(text: &str) -> Result<(Option<usize>, Option<u32>), String> {
    let (mine, server) = text.split_once(',').unwrap_or((text, ""));
    let num = |p: &str| -> Result<Option<u64>, String> {
        let p = p.trim();
        if p.is_empty() {
            return Ok(None);
        }
        p.parse()
            .map(Some)
            .map_err(|_| format!("'{text}' is not N or N,M (CPU numbers)"))
    };
    Ok((
        num(mine)?.map(|c| c as usize),
        num(server)?.map(|c| u32::try_from(c).unwrap_or(u32::MAX)),
    ))
}

/// Parses `RATE[/BURST]`.
pub(crate) fn parse_bitrate(text: &str) -> Result<(u64, u32), String> {
    let (rate, burst) = match text.split_once('/') {
        Some((r, b)) => (
            r,
            b.parse::<u32>()
                .map_err(|_| format!("'{b}' is not a burst count"))?,
        ),
        None => (text, 0),
    };
    if burst > 1000 {
        return Err(format!("burst {burst} is over the maximum of 1000"));
    }
    Ok((parse_rate(rate)?, burst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_a_burst() {
        assert_eq!(parse_bitrate("100M/10"), Ok((100_000_000, 10)));
        assert_eq!(parse_bitrate("0"), Ok((0, 0)));
        assert!(parse_bitrate("1M/x").is_err());
    }
}
