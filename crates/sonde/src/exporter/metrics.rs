//! What a probe answers: every series of its module, named as Prometheus
//! asks (an application prefix, base units, ratios 0 to 1), laid out
//! before the probe runs with zeros so a failed probe still answers each
//! one (graphs show a gap, never lose the series), and encoded by
//! prometheus-client as the text format or OpenMetrics. Pure.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::config::Module;

/// One sample: a series and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The metric's name.
    pub name: &'static str,
    /// What it means.
    pub help: &'static str,
    /// Its labels.
    pub labels: Vec<(&'static str, String)>,
    /// Its value.
    pub value: f64,
}

/// A probe's answer as it fills in.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Answer {
    /// Every series of the module, in order.
    pub samples: Vec<Sample>,
}

/// The latency quantiles each rtt probe answers.
pub const QUANTILES: [(&str, f64); 4] =
    [("0.5", 0.5), ("0.9", 0.9), ("0.99", 0.99), ("0.999", 0.999)];

/// A perf module's directions: `upload` (client to server), `download`.
pub fn directions(module: &Module) -> &'static [&'static str] {
    match module {
        Module::Perf { bidir: true, .. } => &["upload", "download"],
        Module::Perf { reverse: true, .. } => &["download"],
        _ => &["upload"],
    }
}

impl Answer {
    /// Every series `module` answers, zero.
    pub fn for_module(module: &Module) -> Self {
        let mut a = Self::default();
        a.add(
            "probe_success",
            "Whether the probe worked (1) or not (0)",
            &[],
        );
        a.add("probe_duration_seconds", "How long the probe took", &[]);
        match module {
            Module::Perf { udp, .. } => {
                for d in directions(module) {
                    let l = [("direction", *d)];
                    a.add("sonde_perf_sent_bytes", "Bytes the sender sent", &l);
                    a.add("sonde_perf_received_bytes", "Bytes the receiver got", &l);
                    a.add("sonde_perf_sent_bits_per_second", "The sender's rate", &l);
                    a.add(
                        "sonde_perf_received_bits_per_second",
                        "The receiver's rate: the throughput",
                        &l,
                    );
                    if *udp {
                        a.add("sonde_perf_udp_lost_packets", "Datagrams lost", &l);
                        a.add(
                            "sonde_perf_udp_lost_ratio",
                            "Datagrams lost, of those sent (0 to 1)",
                            &l,
                        );
                        a.add(
                            "sonde_perf_udp_jitter_seconds",
                            "The receiver's jitter (RFC 3550), mean of the streams",
                            &l,
                        );
                    } else {
                        a.add(
                            "sonde_perf_retransmits",
                            "TCP retransmits the sender counted",
                            &l,
                        );
                    }
                }
                a.add(
                    "sonde_perf_server_busy",
                    "The server was running another test (1), even after a retry",
                    &[],
                );
            }
            Module::Rtt { udp, .. } => {
                for (q, _) in QUANTILES {
                    a.add(
                        "sonde_rtt_seconds",
                        "Round-trip time at this quantile",
                        &[("quantile", q)],
                    );
                }
                a.add("sonde_rtt_min_seconds", "The shortest round trip", &[]);
                a.add("sonde_rtt_mean_seconds", "The mean round trip", &[]);
                a.add("sonde_rtt_max_seconds", "The longest round trip", &[]);
                a.add("sonde_rtt_round_trips", "Round trips measured", &[]);
                if *udp {
                    a.add(
                        "sonde_rtt_lost_ratio",
                        "Requests with no reply in time, of those sent (0 to 1)",
                        &[],
                    );
                }
            }
            Module::Connect { tls, .. } => {
                a.add(
                    "sonde_connect_seconds",
                    "Time to set up the TCP connection",
                    &[],
                );
                if *tls {
                    a.add(
                        "sonde_tls_handshake_seconds",
                        "Time of the TLS handshake",
                        &[],
                    );
                    a.add(
                        "sonde_tls_cert_expiry_timestamp_seconds",
                        "When the server's certificate expires (Unix time)",
                        &[],
                    );
                }
            }
            Module::Sweep { .. } => {
                a.add(
                    "sonde_sweep_base_delay_seconds",
                    "The fitted round trip of an empty message",
                    &[],
                );
                a.add(
                    "sonde_sweep_bandwidth_bytes_per_second",
                    "The fitted bandwidth (bytes a second each way)",
                    &[],
                );
                a.add("sonde_sweep_sizes", "Message sizes measured", &[]);
            }
            Module::Smtp { .. } => {
                a.add(
                    "sonde_smtp_banner_seconds",
                    "Time from connecting to the 220 greeting",
                    &[],
                );
                a.add("sonde_smtp_ehlo_seconds", "Time of the EHLO exchange", &[]);
                a.add(
                    "sonde_smtp_size_limit_bytes",
                    "The largest message the server takes (EHLO SIZE; 0: none said)",
                    &[],
                );
            }
        }
        a
    }

    fn add(&mut self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)]) {
        self.samples.push(Sample {
            name,
            help,
            labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            value: 0.0,
        });
    }

    /// Sets a series laid out by [`Self::for_module`] (others are ignored:
    /// the module's schema is the promise).
    pub fn set(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let found = self.samples.iter_mut().find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && s.labels
                    .iter()
                    .zip(labels)
                    .all(|((k, v), (k2, v2))| k == k2 && v == v2)
        });
        if let Some(sample) = found {
            sample.value = if value.is_finite() { value } else { 0.0 };
        }
    }

    /// A series' value, if laid out.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels
                        .iter()
                        .zip(labels)
                        .all(|((k, v), (k2, v2))| k == k2 && v == v2)
            })
            .map(|s| s.value)
    }
}

/// The samples as Prometheus's text format, or OpenMetrics (with its
/// `# EOF`) when `openmetrics`.
pub fn encode(samples: &[Sample], openmetrics: bool) -> String {
    type Labeled = Family<Vec<(String, String)>, Gauge<f64, AtomicU64>>;
    let mut registry = Registry::default();
    let mut seen: Vec<&str> = Vec::new();
    for sample in samples {
        if seen.contains(&sample.name) {
            continue;
        }
        seen.push(sample.name);
        let same = samples.iter().filter(|s| s.name == sample.name);
        if sample.labels.is_empty() {
            let gauge = Gauge::<f64, AtomicU64>::default();
            gauge.set(sample.value);
            registry.register(sample.name, sample.help, gauge);
        } else {
            let family = Labeled::default();
            for s in same {
                let labels = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect();
                family.get_or_create(&labels).set(s.value);
            }
            registry.register(sample.name, sample.help, family);
        }
    }
    let mut out = String::new();
    let done = if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, &registry)
    } else {
        prometheus_client::encoding::text::encode_registry(&mut out, &registry)
    };
    // Writing to a String cannot fail.
    let _ = done;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporter::config::Config;

    #[test]
    fn a_failed_probe_answers_every_series() {
        let config = Config::default();
        let answer = Answer::for_module(&config.modules["perf_udp"]);
        let text = encode(&answer.samples, false);
        for name in [
            "probe_success 0",
            "sonde_perf_received_bits_per_second{direction=\"upload\"} 0",
            "sonde_perf_udp_lost_ratio{direction=\"upload\"} 0",
            "sonde_perf_server_busy 0",
        ] {
            assert!(text.contains(name), "{name} in\n{text}");
        }
        assert!(!text.contains("# EOF"));
        assert!(!text.contains("retransmits"), "UDP has no retransmits");
    }

    #[test]
    fn values_and_the_openmetrics_end() {
        let config = Config::default();
        let mut answer = Answer::for_module(&config.modules["rtt"]);
        answer.set("probe_success", &[], 1.0);
        answer.set("sonde_rtt_seconds", &[("quantile", "0.99")], 0.000_25);
        answer.set("sonde_rtt_seconds", &[("quantile", "0.42")], 9.0);
        answer.set("sonde_rtt_max_seconds", &[], f64::NAN);
        let text = encode(&answer.samples, true);
        assert!(text.contains("probe_success 1.0"), "{text}");
        assert!(
            text.contains("sonde_rtt_seconds{quantile=\"0.99\"} 0.00025"),
            "{text}"
        );
        assert!(!text.contains("0.42"), "only the schema's series");
        assert!(text.contains("sonde_rtt_max_seconds 0.0"), "NaN made 0");
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("# HELP sonde_rtt_seconds Round-trip time at this quantile"));
    }

    #[test]
    fn bidir_answers_both_ways() {
        let text = "[modules.b]\nprober = \"perf\"\nbidir = true";
        let config = Config::parse(text).expect("config");
        let answer = Answer::for_module(&config.modules["b"]);
        let out = encode(&answer.samples, false);
        assert!(out.contains("direction=\"upload\"") && out.contains("direction=\"download\""));
    }
}
