//! The exporter's modules: each a probe and its options, read from a TOML
//! file (`examples/exporter/sonde-exporter.toml`) or, with none, the
//! defaults below. Pure: parsing and checks only.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// A module: what one scrape of `/probe?module=NAME` runs.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "prober", rename_all = "snake_case", deny_unknown_fields)]
pub enum Module {
    /// An iperf3-protocol test against any iperf3 or sonde server.
    Perf {
        /// Whole seconds of test (iperf3's -t).
        #[serde(default = "perf_duration")]
        duration: u32,
        /// UDP instead of TCP.
        #[serde(default)]
        udp: bool,
        /// The server sends (-R).
        #[serde(default)]
        reverse: bool,
        /// Both ways at once (--bidir).
        #[serde(default)]
        bidir: bool,
        /// Streams (-P).
        #[serde(default = "one")]
        parallel: u32,
        /// Target bits a second per stream (-b; 0 unlimited; UDP's default 1 Mbit/s).
        #[serde(default)]
        bitrate: Option<u64>,
        /// The port when the target names none.
        #[serde(default = "perf_port")]
        port: u16,
    },
    /// Round trips against an echo or sockperf server.
    Rtt {
        /// Round trips measured.
        #[serde(default = "rtt_count")]
        count: u64,
        /// Message size in bytes.
        #[serde(default = "rtt_size")]
        size: usize,
        /// UDP instead of TCP.
        #[serde(default)]
        udp: bool,
        /// sockperf's message format (for `sockperf server`).
        #[serde(default)]
        sockperf: bool,
        /// The port when the target names none.
        #[serde(default = "echo_port")]
        port: u16,
    },
    /// TCP connect time, and with `tls` the handshake and the
    /// certificate's expiry.
    Connect {
        /// Run a TLS handshake after connecting.
        #[serde(default)]
        tls: bool,
        /// Accept any certificate (a self-signed test server's).
        #[serde(default)]
        insecure: bool,
        /// The port when the target names none.
        #[serde(default = "echo_port")]
        port: u16,
    },
    /// Round trips over several sizes, fitted: the base delay and the
    /// bandwidth (`rtt --sweep`).
    Sweep {
        /// The sizes, in bytes.
        #[serde(default = "sweep_sizes")]
        sizes: Vec<usize>,
        /// Round trips per size.
        #[serde(default = "sweep_count")]
        count: u64,
        /// The port when the target names none.
        #[serde(default = "echo_port")]
        port: u16,
    },
    /// An SMTP server's banner and EHLO times.
    Smtp {
        /// The port when the target names none.
        #[serde(default = "smtp_port")]
        port: u16,
    },
}

fn perf_duration() -> u32 {
    2
}
fn one() -> u32 {
    1
}
fn perf_port() -> u16 {
    crate::wire::iperf::DEFAULT_PORT
}
fn rtt_count() -> u64 {
    100
}
fn rtt_size() -> usize {
    64
}
fn echo_port() -> u16 {
    7007
}
fn sweep_sizes() -> Vec<usize> {
    vec![64, 1024, 8192, 32768]
}
fn sweep_count() -> u64 {
    200
}
fn smtp_port() -> u16 {
    1025
}

impl Module {
    /// The prober's name, as the file spells it.
    pub fn prober(&self) -> &'static str {
        match self {
            Self::Perf { .. } => "perf",
            Self::Rtt { .. } => "rtt",
            Self::Connect { .. } => "connect",
            Self::Sweep { .. } => "sweep",
            Self::Smtp { .. } => "smtp",
        }
    }

    /// The port used when the target gives none.
    pub fn default_port(&self) -> u16 {
        match self {
            Self::Perf { port, .. }
            | Self::Rtt { port, .. }
            | Self::Connect { port, .. }
            | Self::Sweep { port, .. }
            | Self::Smtp { port } => *port,
        }
    }

    /// The least time the probe needs (a perf test's length and half a
    /// second for the exchanges around it: a tenth of that on loopback);
    /// a scrape shorter than this is refused.
    pub fn least_time(&self) -> Duration {
        match self {
            Self::Perf { duration, .. } => {
                Duration::from_secs(u64::from(*duration)) + Duration::from_millis(500)
            }
            _ => Duration::ZERO,
        }
    }

    fn check(&self, name: &str) -> Result<(), String> {
        let bad = |why: String| Err(format!("module {name}: {why}"));
        match self {
            Self::Perf {
                duration,
                parallel,
                reverse,
                bidir,
                ..
            } => {
                if !(1..=3600).contains(duration) {
                    return bad(format!("duration {duration} is not 1 to 3600 seconds"));
                }
                if !(1..=128).contains(parallel) {
                    return bad(format!("parallel {parallel} is not 1 to 128"));
                }
                if *reverse && *bidir {
                    return bad("reverse and bidir: one or the other".into());
                }
            }
            Self::Rtt {
                count, size, udp, ..
            } => {
                if *count == 0 || *count > 1_000_000 {
                    return bad(format!("count {count} is not 1 to 1000000"));
                }
                crate::rtt::client::check_size(*udp, *size)
                    .map_err(|e| format!("module {name}: {e}"))?;
            }
            Self::Sweep { sizes, count, .. } => {
                if sizes.len() < 2 || *count == 0 {
                    return bad("a sweep needs two sizes or more and a count".into());
                }
                for size in sizes {
                    crate::rtt::client::check_size(false, *size)
                        .map_err(|e| format!("module {name}: {e}"))?;
                }
            }
            Self::Connect { insecure, tls, .. } if *insecure && !*tls => {
                return bad("insecure is for tls = true".into());
            }
            Self::Connect { .. } | Self::Smtp { .. } => {}
        }
        Ok(())
    }
}

/// Every module, by name.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The modules.
    pub modules: BTreeMap<String, Module>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    modules: BTreeMap<String, Module>,
}

impl Config {
    /// Reads a config file's text.
    ///
    /// # Errors
    /// A message naming what is wrong and where.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.modules.is_empty() {
            return Err("no [modules.NAME] in the file".into());
        }
        for (name, module) in &file.modules {
            module.check(name)?;
        }
        Ok(Self {
            modules: file.modules,
        })
    }
}

/// The modules with no file: one per prober, and the UDP and TLS kinds.
pub const DEFAULT: &str = r#"
[modules.perf]
prober = "perf"
duration = 2

[modules.perf_udp]
prober = "perf"
udp = true
duration = 2
bitrate = 100000000

[modules.perf_reverse]
prober = "perf"
reverse = true
duration = 2

[modules.rtt]
prober = "rtt"
count = 100

[modules.rtt_udp]
prober = "rtt"
udp = true
count = 100

[modules.connect]
prober = "connect"

[modules.connect_tls]
prober = "connect"
tls = true
port = 443

[modules.sweep]
prober = "sweep"

[modules.smtp]
prober = "smtp"
"#;

impl Default for Config {
    fn default() -> Self {
        Self::parse(DEFAULT).unwrap_or(Self {
            modules: BTreeMap::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_parse() {
        let config = Config::default();
        assert_eq!(config.modules.len(), 9);
        assert_eq!(config.modules["perf"].default_port(), 5201);
        assert_eq!(config.modules["smtp"].default_port(), 1025);
        assert_eq!(
            config.modules["perf"].least_time(),
            Duration::from_millis(2500)
        );
    }

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../../../../examples/exporter/sonde-exporter.toml");
        let config = Config::parse(text).expect("the example");
        assert!(config.modules.contains_key("perf"));
    }

    #[test]
    fn mistakes_are_named() {
        for (text, says) in [
            ("[modules.a]\nprober = \"ping\"", "unknown variant"),
            ("[modules.a]\nprober = \"rtt\"\ncuont = 3", "unknown field"),
            (
                "[modules.a]\nprober = \"perf\"\nparallel = 0",
                "module a: parallel 0",
            ),
            (
                "[modules.a]\nprober = \"perf\"\nreverse = true\nbidir = true",
                "one or the other",
            ),
            (
                "[modules.a]\nprober = \"rtt\"\nsize = 0",
                "module a: message size 0",
            ),
            ("", "missing field"),
        ] {
            let err = Config::parse(text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
