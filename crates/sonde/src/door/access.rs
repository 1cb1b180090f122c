//! Who may come in, checked by the front door before a connection takes a
//! place: `--allow`/`--deny` blocks of addresses (deny wins; an IPv4 peer
//! of a dual-stack socket and a `::ffff:` block are the same thing), a cap
//! per source address, and token buckets on the accept rate per source
//! and overall. Refusals are gathered by source and reason and reported
//! once per interval ([`RefusalLog`], pure: the caller passes the time).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
pub use ipnet::IpNet;

/// Why a peer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// In a `--deny` block.
    Denied,
    /// `--allow` was given and the peer is in none of its blocks.
    NotAllowed,
    /// Over `--accept-rate-total`.
    RateOverall,
    /// Over `--accept-rate` from this address.
    RatePerSource,
    /// This address already holds `--max-per-ip` connections.
    PerIp,
    /// Every place under `--max-connections` is taken.
    Full,
}

impl Reason {
    /// Every reason, in its number's order.
    pub const ALL: [Self; 6] = [
        Self::Denied,
        Self::NotAllowed,
        Self::RateOverall,
        Self::RatePerSource,
        Self::PerIp,
        Self::Full,
    ];

    /// Its name as a metric's label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Denied => "denied",
            Self::NotAllowed => "not_allowed",
            Self::RateOverall => "rate_overall",
            Self::RatePerSource => "rate_per_source",
            Self::PerIp => "per_ip",
            Self::Full => "full",
        }
    }
}

/// The rules of one door.
#[derive(Clone, Debug)]
pub struct Rules {
    /// Blocks a peer must be in (none: every address).
    pub allow: Vec<IpNet>,
    /// Blocks refused whatever `allow` says.
    pub deny: Vec<IpNet>,
    /// Connections open at once from one address.
    pub max_per_ip: Option<u32>,
    /// New connections a second from one address.
    pub rate_per_source: Option<f64>,
    /// New connections a second from everyone.
    pub rate_overall: Option<f64>,
    /// How often refusals are reported (gathered by source between).
    pub report_every: Duration,
}

impl Default for Rules {
    /// Everyone may come in; refusals (over the cap) reported every 10 s.
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            deny: Vec::new(),
            max_per_ip: None,
            rate_per_source: None,
            rate_overall: None,
            report_every: super::REPORT_EVERY,
        }
    }
}

/// A block of addresses from `10.0.0.0/8`, `::1`, `127.0.0.2` or
/// `::ffff:10.0.0.0/104` (the last is the same as `10.0.0.0/8`).
///
/// # Errors
/// A message naming the text when it is no address or block.
pub fn parse_block(text: &str) -> Result<IpNet, String> {
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => text
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("'{text}' is not an address or a CIDR block (10.0.0.0/8, ::1)"))?,
    };
    Ok(canonical(net))
}

/// A `::ffff:a.b.c.d/n` block (n ≥ 96) as the IPv4 block it stands for.
fn canonical(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(|n| IpNet::V4(n.trunc()))
                .unwrap_or(net),
            None => net,
        },
        _ => net.trunc(),
    }
}

/// A rate of `N` or `N/s` connections a second (`N/m`: a minute).
///
/// # Errors
/// A message naming the text when it is no positive rate.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let (number, per) = match text.split_once('/') {
        None => (text, 1.0),
        Some((n, "s")) => (n, 1.0),
        Some((n, "m")) => (n, 60.0),
        Some(_) => return Err(format!("'{text}': a rate is N, N/s or N/m")),
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok(n / per),
        _ => Err(format!("'{text}': a rate is a number above 0, N/s or N/m")),
    }
}

/// A token bucket for `per_second`: refills at that rate and holds one
/// second's worth (at least one token).
fn quota(per_second: f64) -> Option<Quota> {
    let period = Duration::from_secs_f64(1.0 / per_second);
    let burst = NonZeroU32::new((per_second.floor() as u32).max(1))?;
    Quota::with_period(period).map(|q| q.allow_burst(burst))
}

/// The rules in force: the blocks, the buckets and the count per address.
pub(super) struct Gate {
    rules: Rules,
    per_source: Option<DefaultKeyedRateLimiter<IpAddr>>,
    overall: Option<DefaultDirectRateLimiter>,
    open: Mutex<HashMap<IpAddr, u32>>,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate").field("rules", &self.rules).finish()
    }
}

impl Gate {
    pub(super) fn new(rules: Rules) -> Self {
        Self {
            per_source: rules
                .rate_per_source
                .and_then(quota)
                .map(DefaultKeyedRateLimiter::keyed),
            overall: rules
                .rate_overall
                .and_then(quota)
                .map(DefaultDirectRateLimiter::direct),
            open: Mutex::default(),
            rules,
        }
    }

    /// The rules of blocks alone (pure).
    pub(super) fn blocks(&self, ip: IpAddr) -> Option<Reason> {
        let ip = ip.to_canonical();
        if self.rules.deny.iter().any(|net| net.contains(&ip)) {
            return Some(Reason::Denied);
        }
        if !self.rules.allow.is_empty() && !self.rules.allow.iter().any(|net| net.contains(&ip)) {
            return Some(Reason::NotAllowed);
        }
        None
    }

    /// Blocks, then the buckets (a refused peer spends no token of the
    /// overall bucket it was not going to use).
    pub(super) fn check(&self, ip: IpAddr) -> Option<Reason> {
        if let Some(reason) = self.blocks(ip) {
            return Some(reason);
        }
        if let Some(bucket) = &self.per_source
            && bucket.check_key(&ip).is_err()
        {
            return Some(Reason::RatePerSource);
        }
        if let Some(bucket) = &self.overall
            && bucket.check().is_err()
        {
            return Some(Reason::RateOverall);
        }
        None
    }

    /// Counts one more connection from `ip`, or `false` when it already
    /// holds its cap. Without a cap nothing is counted.
    pub(super) fn hold(&self, ip: IpAddr) -> bool {
        let Some(cap) = self.rules.max_per_ip else {
            return true;
        };
        let Ok(mut open) = self.open.lock() else {
            return false;
        };
        let held = open.entry(ip).or_insert(0);
        if *held >= cap {
            return false;
        }
        *held += 1;
        true
    }

    /// Gives back a place [`Self::hold`] counted.
    pub(super) fn release(&self, ip: IpAddr) {
        if let Ok(mut open) = self.open.lock()
            && let Some(held) = open.get_mut(&ip)
        {
            *held -= 1;
            if *held == 0 {
                open.remove(&ip);
            }
        }
    }

    /// Whether connections are counted per address.
    pub(super) fn counts_per_ip(&self) -> bool {
        self.rules.max_per_ip.is_some()
    }

    /// Forgets the buckets of sources that have refilled (bounds memory
    /// under a flood from many addresses).
    pub(super) fn tidy(&self) {
        if let Some(bucket) = &self.per_source {
            bucket.retain_recent();
        }
    }

    /// The flag and limit behind a reason, as a refusal names it.
    pub(super) fn why(&self, reason: Reason, max_connections: usize) -> String {
        let rate = |r: Option<f64>| r.map_or_else(String::new, |r| format!(" {r}/s"));
        match reason {
            Reason::Denied => "in a --deny block".into(),
            Reason::NotAllowed => "not in an --allow block".into(),
            Reason::RateOverall => {
                format!("over --accept-rate-total{}", rate(self.rules.rate_overall))
            }
            Reason::RatePerSource => {
                format!("over --accept-rate{}", rate(self.rules.rate_per_source))
            }
            Reason::PerIp => format!("over --max-per-ip {}", self.rules.max_per_ip.unwrap_or(0)),
            Reason::Full => format!("over --max-connections {max_connections}"),
        }
    }
}

/// Refusals since the last report, by source and reason (and whether
/// they were datagrams of a UDP service or connections).
#[derive(Debug, Default)]
pub struct RefusalLog {
    counts: HashMap<(IpAddr, Reason, bool), u64>,
}

/// Sources named one by one in a report; the rest are summed.
const NAMED: usize = 5;

impl RefusalLog {
    /// Counts one refused connection (or, with `datagram`, a datagram).
    pub fn add(&mut self, ip: IpAddr, reason: Reason, datagram: bool) {
        *self.counts.entry((ip, reason, datagram)).or_insert(0) += 1;
    }

    /// The report of what was gathered over `interval`, most refused
    /// first, and starts again; empty when nothing was refused.
    pub fn report(&mut self, interval: Duration, why: impl Fn(Reason) -> String) -> Vec<String> {
        let mut groups: Vec<((IpAddr, Reason, bool), u64)> = self.counts.drain().collect();
        groups.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let secs = interval.as_secs_f64();
        let mut lines: Vec<String> = groups
            .iter()
            .take(NAMED)
            .map(|((ip, reason, datagram), n)| {
                format!(
                    "refused {} from {ip} in the last {}: {}",
                    things(*n, *datagram),
                    seconds(secs),
                    why(*reason)
                )
            })
            .collect();
        let rest = &groups[groups.len().min(NAMED)..];
        if !rest.is_empty() {
            let n: u64 = rest.iter().map(|g| g.1).sum();
            lines.push(format!(
                "refused {} from {} other sources in the last {}",
                things(n, rest.iter().all(|g| g.0.2)),
                rest.len(),
                seconds(secs)
            ));
        }
        lines
    }
}

fn things(n: u64, datagrams: bool) -> String {
    let what = if datagrams { "datagram" } else { "connection" };
    match n {
        1 => format!("1 {what}"),
        n => format!("{} {what}s", crate::units::count(n)),
    }
}

/// An interval as a report names it: whole seconds, or tenths below 10.
fn seconds(secs: f64) -> String {
    if secs < 9.95 {
        format!("{secs:.1} s")
    } else {
        format!("{secs:.0} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(allow: &[&str], deny: &[&str]) -> Gate {
        let blocks = |list: &[&str]| {
            list.iter()
                .map(|t| parse_block(t).expect("a block"))
                .collect()
        };
        Gate::new(Rules {
            allow: blocks(allow),
            deny: blocks(deny),
            ..Rules::default()
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn deny_wins_and_allow_limits() {
        let g = gate(&["127.0.0.0/8", "::1"], &["127.0.0.2"]);
        assert_eq!(g.blocks(ip("127.0.0.1")), None);
        assert_eq!(g.blocks(ip("127.0.0.2")), Some(Reason::Denied));
        assert_eq!(g.blocks(ip("::1")), None);
        assert_eq!(g.blocks(ip("10.0.0.1")), Some(Reason::NotAllowed));
        assert_eq!(g.blocks(ip("::2")), Some(Reason::NotAllowed));
    }

    #[test]
    fn mapped_addresses_and_blocks_are_their_ipv4_selves() {
        let g = gate(&[], &["::ffff:10.0.0.0/104"]);
        assert_eq!(g.blocks(ip("10.9.8.7")), Some(Reason::Denied));
        assert_eq!(g.blocks(ip("::ffff:10.9.8.7")), Some(Reason::Denied));
        assert_eq!(g.blocks(ip("11.0.0.1")), None);
        let g = gate(&["10.0.0.0/8"], &[]);
        assert_eq!(g.blocks(ip("::ffff:10.1.2.3")), None);
        assert_eq!(
            parse_block("10.1.2.3/8").expect("block").to_string(),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn bad_blocks_and_rates_are_named() {
        assert!(
            parse_block("10.0.0.0/33")
                .expect_err("a prefix of 33")
                .contains("10.0.0.0/33")
        );
        assert!(parse_block("example.com").is_err());
        assert_eq!(parse_rate("20/s"), Ok(20.0));
        assert_eq!(parse_rate("30/m"), Ok(0.5));
        assert_eq!(parse_rate("5"), Ok(5.0));
        for bad in ["0", "-1/s", "x/s", "5/h", "inf"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_per_ip_cap_counts_and_gives_back() {
        let g = Gate::new(Rules {
            max_per_ip: Some(2),
            ..Rules::default()
        });
        let (a, b) = (ip("127.0.0.1"), ip("127.0.0.2"));
        assert!(g.hold(a) && g.hold(a));
        assert!(!g.hold(a));
        assert!(g.hold(b));
        g.release(a);
        assert!(g.hold(a));
    }

    #[test]
    fn a_bucket_holds_one_seconds_worth() {
        let g = Gate::new(Rules {
            rate_per_source: Some(3.0),
            ..Rules::default()
        });
        let (a, b) = (ip("127.0.0.1"), ip("::1"));
        let passed = (0..10).filter(|_| g.check(a).is_none()).count();
        assert_eq!(passed, 3);
        assert_eq!(g.check(a), Some(Reason::RatePerSource));
        assert_eq!(g.check(b), None, "another source has its own bucket");
    }

    #[test]
    fn a_report_sums_by_source_and_names_the_worst() {
        let mut log = RefusalLog::default();
        for _ in 0..1204 {
            log.add(ip("10.1.2.3"), Reason::PerIp, false);
        }
        log.add(ip("10.1.2.4"), Reason::Denied, false);
        for n in 0..10u8 {
            log.add(IpAddr::from([192, 0, 2, n]), Reason::Denied, n == 0);
        }
        let why = |r: Reason| format!("{r:?}");
        let lines = log.report(Duration::from_secs(10), why);
        assert_eq!(
            lines[0],
            "refused 1,204 connections from 10.1.2.3 in the last 10 s: PerIp"
        );
        assert_eq!(lines.len(), NAMED + 1);
        assert_eq!(
            lines[NAMED],
            "refused 7 connections from 7 other sources in the last 10 s"
        );
        assert!(log.report(Duration::from_secs(10), why).is_empty());
    }
}
