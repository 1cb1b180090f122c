//! `sonde exporter` scraped by a real Prometheus (Debian's package):
//! two sonde servers (perf and echo) and the exporter on loopback,
//! Prometheus started with the repository's example config pointed at
//! them (a 2 s scrape, its storage in a temp dir), and its query API
//! asked what it stored: every target probed, throughput above zero, a
//! dead target at `probe_success 0` with its series still there. promtool
//! accepts the example config and alert rules, and every metric the
//! examples and the dashboard use is one the README lists.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http::get;
use common::{TempDir, assert_contains, have_peer, run, start_sonde};
use serde_json::Value;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/exporter")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(example(name)).expect("an example file")
}

const MODULES: &str = "
[modules.perf]
prober = \"perf\"
duration = 1

[modules.rtt]
prober = \"rtt\"
count = 50
";

/// A PromQL query's result vector.
fn query(port: u16, promql: &str) -> Vec<Value> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let answer = get(port, &format!("/api/v1/query?query={encoded}"));
    let v = answer.json();
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn value_of(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

#[test]
fn prometheus_scrapes_the_example_config() {
    if !have_peer("prometheus", "prometheus") || !have_peer("promtool", "prometheus") {
        return;
    }
    let dir = TempDir::new("exporter-prometheus");
    let modules = dir.join("modules.toml");
    std::fs::write(&modules, MODULES).expect("modules");
    let perf = common::perf_server(&[]);
    let echo = start_sonde(
        &["serve", "echo", "--bind", "127.0.0.1", "--port", "0"],
        Stdio::null(),
        Stdio::null(),
    );
    // A 2 s scrape less 0.2 s holds perf's 1 s test and its half second.
    let exporter = start_sonde(
        &[
            "exporter",
            "--listen",
            "127.0.0.1:0",
            "--timeout-offset",
            "0.2",
            "--config",
            modules.to_str().expect("utf-8"),
        ],
        Stdio::null(),
        Stdio::null(),
    );
    let dead = format!("127.0.0.1:{}", common::free_port());
    let (perf_at, echo_at) = (
        format!("127.0.0.1:{}", perf.port),
        format!("127.0.0.1:{}", echo.port),
    );
    let config = read("prometheus.yml")
        .replace("scrape_interval: 60s", "scrape_interval: 2s")
        .replace("evaluation_interval: 60s", "evaluation_interval: 2s")
        .replace("scrape_timeout: 10s", "scrape_timeout: 2s")
        .replace(
            "['perf-a.example.net:5201', 'perf-b.example.net:5201']",
            &format!("['{perf_at}', '{dead}']"),
        )
        .replace("['echo.example.net:7007']", &format!("['{echo_at}']"))
        .replace("127.0.0.1:9579", &format!("127.0.0.1:{}", exporter.port));
    let config_file = dir.join("prometheus.yml");
    std::fs::write(&config_file, &config).expect("config");
    std::fs::write(dir.join("sonde-alerts.yml"), read("sonde-alerts.yml")).expect("rules");
    let rules = example("sonde-alerts.yml");
    for args in [
        ["check", "config", config_file.to_str().expect("utf-8")],
        ["check", "rules", rules.to_str().expect("utf-8")],
    ] {
        let mut cmd = Command::new("promtool");
        cmd.args(args);
        let done = run(cmd, b"");
        assert_eq!(
            done.code(),
            Some(0),
            "promtool {args:?}: {}{}",
            done.stdout_text(),
            done.stderr
        );
    }
    let port = common::free_port();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", config_file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let (mut prometheus, _reaper, ready) = common::spawn_ready(cmd, |line| {
        line.contains("Server is ready to receive web requests")
    });
    assert!(ready.is_some(), "prometheus did not start");
    // Each target scraped at least once (every 2 s), within the deadline;
    // Prometheus spreads its targets' first scrapes over the interval, so
    // each query waits for its own series.
    let deadline = Instant::now() + Duration::from_secs(45);
    let wait_for = |expr: &str, series: usize| loop {
        let found = query(port, expr);
        if found.len() >= series || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let success = wait_for("probe_success", 3);
    let by_instance = |instance: &str| {
        success
            .iter()
            .find(|s| s["metric"]["instance"] == instance)
            .map(value_of)
    };
    assert_eq!(by_instance(&perf_at), Some(1.0), "{success:?}");
    assert_eq!(by_instance(&echo_at), Some(1.0), "{success:?}");
    assert_eq!(by_instance(&dead), Some(0.0), "{success:?}");
    let rate = query(port, "sonde_perf_received_bits_per_second");
    let of = |instance: &str| {
        rate.iter()
            .find(|s| s["metric"]["instance"] == instance)
            .map(value_of)
    };
    assert!(of(&perf_at).is_some_and(|v| v > 0.0), "{rate:?}");
    assert_eq!(
        of(&dead),
        Some(0.0),
        "a dead target keeps its series: {rate:?}"
    );
    let rtt = query(port, "sonde_rtt_seconds{quantile=\"0.99\"}");
    assert!(
        rtt.first().map(value_of).is_some_and(|v| v > 0.0),
        "{rtt:?}"
    );
    let own = wait_for("sonde_exporter_probes_total", 1);
    assert!(!own.is_empty(), "the exporter's own metrics are scraped");
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    for s in [perf, echo, exporter] {
        s.stop();
    }
}

/// The metric names a text uses (`sonde_...`, `probe_...`).
fn names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        let starts = rest.starts_with("sonde_") || rest.starts_with("probe_");
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts && boundary {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            out.push(rest[..len].to_string());
            i += len;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn the_examples_use_only_metrics_the_readme_lists() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README");
    let dashboard: Value =
        serde_json::from_str(&read("grafana-dashboard.json")).expect("dashboard JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 6));
    for file in ["grafana-dashboard.json", "sonde-alerts.yml"] {
        for name in names(&read(file)) {
            // Job names are not metrics.
            if ["sonde_perf", "sonde_rtt", "sonde_exporter"].contains(&name.as_str()) {
                continue;
            }
            assert_contains(&readme, &format!("`{name}`"));
        }
    }
}
