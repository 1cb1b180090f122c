//! The access-control flags every TCP server takes (`serve`, `perf -s`,
//! `listen`, `receive`), turned into the front door's rules.

use std::time::Duration;

use clap::Args;
use sonde::door::access::{self, IpNet, Rules};

use crate::usage::parse_secs;

#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Access control")]
pub(crate) struct AccessArgs {
    /// Let in only peers in CIDR (repeatable: 10.0.0.0/8, ::1, 127.0.0.2); without it, everyone.
    #[arg(long, value_name = "CIDR", value_parser = access::parse_block)]
    pub(crate) allow: Vec<IpNet>,
    /// Refuse peers in CIDR (repeatable; wins over --allow; ::ffff:a.b.c.d/n is a.b.c.d/(n-96)).
    #[arg(long, value_name = "CIDR", value_parser = access::parse_block)]
    pub(crate) deny: Vec<IpNet>,
    /// Connections open at once; a client past this is refused and counted.
    #[arg(long, visible_alias = "max-conns", value_name = "N")]
    pub(crate) max_connections: Option<usize>,
    /// Connections open at once from one address.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_per_ip: Option<u32>,
    /// New connections from one address: N a second (N, N/s, or N/m a minute), bursts of one second's worth.
    #[arg(long, value_name = "N/s", value_parser = access::parse_rate)]
    pub(crate) accept_rate: Option<f64>,
    /// New connections from everyone together: N a second (N, N/s, N/m).
    #[arg(long, value_name = "N/s", value_parser = access::parse_rate)]
    pub(crate) accept_rate_total: Option<f64>,
    /// Report refused connections on stderr every SECS, counted by source (never a line per attempt).
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "10")]
    pub(crate) report_refusals: Duration,
}

impl AccessArgs {
    /// The door's rules.
    pub(crate) fn rules(&self) -> Rules {
        Rules {
            allow: self.allow.clone(),
            deny: self.deny.clone(),
            max_per_ip: self.max_per_ip,
            rate_per_source: self.accept_rate,
            rate_overall: self.accept_rate_total,
            report_every: self.report_refusals.max(Duration::from_millis(10)),
        }
    }

    /// `--max-connections`, or the server's own default.
    pub(crate) fn max_connections(&self, default: usize) -> usize {
        self.max_connections.unwrap_or(default).max(1)
    }
}
