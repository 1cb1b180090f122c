//! `sonde exporter` against servers on loopback: each module (perf
//! against sonde's server and iperf3's, rtt and sweep against an echo
//! server, connect with and without TLS, smtp against the mail sink),
//! the scrape's timeout header, one target's probes taking turns (two
//! scrapes of one iperf3 server at once: both answered, none busy), a
//! busy iperf3 server reported as busy, `--max-concurrent`, and bad
//! requests answered 400 with a clear body.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::http::{get, request_with};
use common::{Listener, TempDir, assert_contains, have_peer, start_peer_server, start_sonde};

/// The modules of these tests: short tests, small counts.
const MODULES: &str = r#"
[modules.perf]
prober = "perf"
duration = 1

[modules.perf_udp]
prober = "perf"
udp = true
bitrate = 10000000
duration = 1

[modules.perf_bidir]
prober = "perf"
bidir = true
duration = 1

[modules.rtt]
prober = "rtt"
count = 50

[modules.connect]
prober = "connect"

[modules.tls]
prober = "connect"
tls = true
insecure = true

[modules.sweep]
prober = "sweep"
sizes = [64, 65536, 262144]
count = 50

[modules.smtp]
prober = "smtp"
"#;

fn exporter(dir: &TempDir, extra: &[&str]) -> Listener {
    let file = dir.join("modules.toml");
    std::fs::write(&file, MODULES).expect("modules");
    let mut args = vec!["exporter", "--listen", "127.0.0.1:0", "--config"];
    args.push(file.to_str().expect("utf-8"));
    args.extend_from_slice(extra);
    start_sonde(&args, Stdio::null(), Stdio::null())
}

fn server(args: &[&str]) -> Listener {
    start_sonde(args, Stdio::null(), Stdio::null())
}

/// A probe's series as (line, value) pairs, and the whole text.
fn probe(port: u16, query: &str, headers: &[(&str, &str)]) -> (String, u16) {
    let answer = request_with(port, "GET", &format!("/probe?{query}"), headers, b"");
    (
        String::from_utf8_lossy(&answer.body).into_owned(),
        answer.status,
    )
}

/// The value of series `name` (with its labels, as the text has them).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[test]
fn each_module_against_a_loopback_server() {
    let dir = TempDir::new("exporter-modules");
    let exp = exporter(&dir, &[]);
    let echo = server(&["serve", "echo", "--bind", "127.0.0.1", "--port", "0"]);
    let tls_echo = server(&[
        "serve",
        "echo",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--tls",
    ]);
    let perf = common::perf_server(&[]);
    let sink_dir = dir.join("mail");
    let sink = common::mail::sink(&sink_dir, &[]);
    let on = |p: u16| format!("127.0.0.1:{p}");
    let cases: [(&str, u16, &[&str]); 8] = [
        (
            "perf",
            perf.port,
            &["sonde_perf_received_bits_per_second{direction=\"upload\"}"],
        ),
        (
            "perf_udp",
            perf.port,
            &["sonde_perf_received_bytes{direction=\"upload\"}"],
        ),
        (
            "perf_bidir",
            perf.port,
            &[
                "sonde_perf_received_bytes{direction=\"upload\"}",
                "sonde_perf_received_bytes{direction=\"download\"}",
            ],
        ),
        (
            "rtt",
            echo.port,
            &[
                "sonde_rtt_seconds{quantile=\"0.99\"}",
                "sonde_rtt_round_trips",
            ],
        ),
        ("connect", echo.port, &["sonde_connect_seconds"]),
        (
            "tls",
            tls_echo.port,
            &[
                "sonde_tls_handshake_seconds",
                "sonde_tls_cert_expiry_timestamp_seconds",
            ],
        ),
        (
            "sweep",
            echo.port,
            &[
                "sonde_sweep_base_delay_seconds",
                "sonde_sweep_bandwidth_bytes_per_second",
            ],
        ),
        (
            "smtp",
            sink.server.port,
            &["sonde_smtp_banner_seconds", "sonde_smtp_ehlo_seconds"],
        ),
    ];
    for (module, port, positive) in cases {
        let (text, status) = probe(
            exp.port,
            &format!("target={}&module={module}", on(port)),
            &[],
        );
        assert_eq!(status, 200, "{module}: {text}");
        assert_eq!(value(&text, "probe_success"), 1.0, "{module}:\n{text}");
        for series in positive {
            assert!(value(&text, series) > 0.0, "{module}: {series} in\n{text}");
        }
    }
    let (text, _) = probe(
        exp.port,
        &format!("target={}&module=smtp", on(sink.server.port)),
        &[],
    );
    assert_eq!(value(&text, "sonde_smtp_size_limit_bytes"), 50_000_000.0);
    // The certificate sonde made for itself is good for years.
    let (text, _) = probe(
        exp.port,
        &format!("target={}&module=tls", on(tls_echo.port)),
        &[],
    );
    let expiry = value(&text, "sonde_tls_cert_expiry_timestamp_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("now")
        .as_secs_f64();
    assert!(expiry > now + 86_400.0, "{expiry}");
    // A dead target: every series still there, zero, and the reason in debug.
    let dead = on(common::free_port());
    let (text, _) = probe(exp.port, &format!("target={dead}&module=perf_udp"), &[]);
    assert_eq!(value(&text, "probe_success"), 0.0);
    assert_eq!(
        value(&text, "sonde_perf_udp_lost_ratio{direction=\"upload\"}"),
        0.0
    );
    let (text, _) = probe(
        exp.port,
        &format!("target={dead}&module=rtt&debug=true"),
        &[],
    );
    assert_contains(&text, "probe failed: connecting to");
    // OpenMetrics when asked.
    let om = [("Accept", "application/openmetrics-text; version=1.0.0")];
    let answer = request_with(
        exp.port,
        "GET",
        &format!("/probe?target={}&module=connect", on(echo.port)),
        &om,
        b"",
    );
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text"))
    );
    assert!(String::from_utf8_lossy(&answer.body).ends_with("# EOF\n"));
    // Its own metrics, and the page listing the last probes.
    let own = String::from_utf8_lossy(&get(exp.port, "/metrics").body).into_owned();
    assert_contains(&own, "sonde_exporter_probes_total{");
    assert_contains(&own, "result=\"success\"");
    let page = String::from_utf8_lossy(&get(exp.port, "/").body).into_owned();
    assert_contains(&page, "<td>perf_bidir</td>");
    assert_contains(&page, "/result?id=1");
    assert_contains(
        &String::from_utf8_lossy(&get(exp.port, "/result?id=1").body),
        "probing 127.0.0.1:",
    );
    for s in [exp, echo, tls_echo, perf, sink.server] {
        s.stop();
    }
}

#[test]
fn the_scrape_timeout_and_bad_requests() {
    let dir = TempDir::new("exporter-timeout");
    let exp = exporter(&dir, &[]);
    let echo = server(&["serve", "echo", "--bind", "127.0.0.1", "--port", "0"]);
    let target = format!("127.0.0.1:{}", echo.port);
    // A 1 s test needs 1.5 s; a 1.5 s scrape (1.0 s after the offset) cannot hold it.
    let short = [("X-Prometheus-Scrape-Timeout-Seconds", "1.5")];
    let start = Instant::now();
    let (text, status) = probe(
        exp.port,
        &format!("target={target}&module=perf&debug=true"),
        &short,
    );
    assert_eq!(status, 200);
    assert_contains(
        &text,
        "the module needs 1.5 s and the scrape allows 1.0 s: not started",
    );
    assert_eq!(value(&text, "probe_success"), 0.0);
    assert!(start.elapsed() < Duration::from_secs(1), "refused at once");
    let (text, _) = probe(
        exp.port,
        &format!("target={target}&module=rtt&debug=true"),
        &short,
    );
    assert_contains(&text, "within 1.0 s");
    for (query, says) in [
        ("module=rtt", "the target parameter is missing"),
        (
            &format!("target={target}") as &str,
            "the module parameter is missing",
        ),
        (
            &format!("target={target}&module=ping"),
            "unknown module \"ping\" (known: connect, perf",
        ),
        ("target=:5201&module=rtt", "target \":5201\": no host"),
    ] {
        let (text, status) = probe(exp.port, query, &[]);
        assert_eq!(status, 400, "{query}: {text}");
        assert_contains(&text, says);
    }
    exp.stop();
    echo.stop();
}

#[test]
fn one_iperf3_server_probes_take_turns_and_busy_is_reported() {
    if !have_peer("iperf3", "iperf3") {
        return;
    }
    let dir = TempDir::new("exporter-turns");
    let exp = exporter(&dir, &[]);
    let port = common::free_port();
    let (_child, _reaper) = start_peer_server(
        "iperf3",
        &["-s", "-B", "127.0.0.1", "-p", &port.to_string()],
        port,
    );
    let query = format!("target=127.0.0.1:{port}&module=perf");
    let start = Instant::now();
    let both: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| probe(exp.port, &query, &[]).0))
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("a scrape"))
            .collect()
    });
    for text in &both {
        assert_eq!(value(text, "probe_success"), 1.0, "{text}");
        assert_eq!(value(text, "sonde_perf_server_busy"), 0.0);
    }
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "one after the other"
    );
    // Another client holds the server (its first second reported): the
    // probe retries once, then says busy.
    let mut holder = std::process::Command::new("iperf3");
    holder
        .args([
            "-c",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "8",
            "--forceflush",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut holder = holder.spawn().expect("iperf3 -c");
    let _holder_reaper = common::Reaper::new(holder.id());
    common::await_stdout_line(&mut holder, "sec", "iperf3 -c");
    let (busy, _) = probe(exp.port, &format!("{query}&debug=true"), &[]);
    assert_eq!(value(&busy, "sonde_perf_server_busy"), 1.0, "{busy}");
    assert_eq!(value(&busy, "probe_success"), 0.0);
    assert_contains(&busy, "busy running another test, also after a retry");
    let _ = holder.kill();
    let _ = holder.wait();
    exp.stop();
}

#[test]
fn max_concurrent_holds_probes_back() {
    let dir = TempDir::new("exporter-concurrent");
    let exp = exporter(&dir, &["--max-concurrent", "1"]);
    let (a, b) = (common::perf_server(&[]), common::perf_server(&[]));
    let start = Instant::now();
    let texts: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = [a.port, b.port]
            .iter()
            .map(|p| {
                let query = format!("target=127.0.0.1:{p}&module=perf");
                let port = exp.port;
                s.spawn(move || probe(port, &query, &[]).0)
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("a scrape"))
            .collect()
    });
    for text in &texts {
        assert_eq!(value(text, "probe_success"), 1.0, "{text}");
    }
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "two 1 s tests, one at a time"
    );
    for s in [exp, a, b] {
        s.stop();
    }
}
