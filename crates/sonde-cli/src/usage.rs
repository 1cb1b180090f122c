//! Usage errors (exit 2) and the value parsers every subcommand shares:
//! seconds with decimals, ports, sizes and rates with units, `-4`/`-6`.

use std::time::Duration;

use sonde::net::Family;

/// A mistake in the command line that clap could not see (exit 2).
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A [`UsageError`] as an `anyhow` error.
pub(crate) fn usage(text: impl Into<String>) -> anyhow::Error {
    UsageError(text.into()).into()
}

/// The address family of `-4` and `-6`.
pub(crate) fn family(v4: bool, v6: bool) -> Family {
    match (v4, v6) {
        (true, _) => Family::V4,
        (_, true) => Family::V6,
        _ => Family::Any,
    }
}

/// Parses seconds with decimals ("0.5", "3").
pub(crate) fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{text}': seconds must be 0 or more"))
}

pub(crate) fn parse_port(text: &str) -> Result<u16, String> {
    sonde::net::parse_port(text).map_err(|e| e.to_string())
}

pub(crate) fn parse_source(text: &str) -> Result<std::net::SocketAddr, String> {
    sonde::net::parse_local_addr(text).map_err(|e| e.to_string())
}

/// Parses a size: a number with an optional K, M, G or T (1024-based).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    parse_units(text, 1024.0)
}

/// Parses a rate: a number with an optional K, M, G or T (1000-based).
pub(crate) fn parse_rate(text: &str) -> Result<u64, String> {
    parse_units(text, 1000.0)
}

fn parse_units(text: &str, base: f64) -> Result<u64, String> {
    let t = text.trim();
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], base),
        Some('M') => (&t[..t.len() - 1], base * base),
        Some('G') => (&t[..t.len() - 1], base * base * base),
        Some('T') => (&t[..t.len() - 1], base * base * base * base),
        _ => (t, 1.0),
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{text}' is not a number (with an optional K, M, G or T)"))?;
    if value.is_nan() || value < 0.0 || !value.is_finite() {
        return Err(format!("'{text}' must be 0 or more"));
    }
    Ok((value * mult) as u64)
}

/// HOST with a PORT given apart (`rtt HOST PORT`, `send FILE HOST PORT`),
/// as one HOST:PORT (`[::1]:PORT` for an IPv6 literal).
pub(crate) fn with_port(host: &str, port: u16) -> Result<String, UsageError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(format!("[{bare}]:{port}"));
    }
    if host.contains(':') {
        return Err(UsageError(format!(
            "{host} {port}: a port twice (give HOST PORT or HOST:PORT)"
        )));
    }
    Ok(format!("{host}:{port}"))
}

/// An error and its causes as one line, "what: why: why", leaving out a
/// cause whose words the line already holds (a library error that names
/// its source would otherwise say it twice).
pub(crate) fn describe(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_take_decimals_and_refuse_negatives() {
        assert_eq!(parse_secs("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
    }

    #[test]
    fn sizes_are_1024_based_and_rates_1000_based() {
        assert_eq!(parse_size("128K"), Ok(131_072));
        assert_eq!(parse_size("1M"), Ok(1_048_576));
        assert_eq!(parse_rate("10M"), Ok(10_000_000));
        assert!(parse_size("-1").is_err());
    }
}
