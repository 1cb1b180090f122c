//! `sonde rtt` end to end: the embedded echo server over TCP and UDP, the
//! sweep and its fit, and UDP accounting against a reflector that drops,
//! duplicates and delays replies on purpose.

mod common;

use std::net::UdpSocket;
use std::thread;

use common::*;
use serde_json::Value;

fn rtt(args: &[&str]) -> Finished {
    let mut cmd = sonde();
    cmd.arg("rtt").args(args);
    run(cmd, b"")
}

fn json(done: &Finished) -> Value {
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    serde_json::from_slice(&done.stdout).expect("JSON")
}

#[test]
fn embedded_tcp_and_udp_report_percentiles() {
    for proto in [&[][..], &["-u"]] {
        let done = rtt(&[proto, &["-n", "500", "--json"]].concat());
        let v = json(&done);
        let r = &v["rtt_ns"];
        assert_eq!(r["count"], 500);
        let order =
            ["min", "p50", "p90", "p99", "p99_9", "p99_99", "max"].map(|k| r[k].as_u64().expect(k));
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "{r}");
        if !proto.is_empty() {
            assert_eq!(v["lost"], 0);
        }
    }
    let text = rtt(&["-n", "200"]).stdout_text();
    assert!(
        text.contains("RTT/2") && text.contains("p99.99") && text.contains("RTT histogram"),
        "{text}"
    );
}

#[test]
fn sweep_fits_base_and_bandwidth() {
    let v = json(&rtt(&["--sweep", "1,1K,64K,1M", "-n", "50", "--json"]));
    assert_eq!(v["runs"].as_array().map(Vec::len), Some(4));
    let fit = &v["fit"];
    assert!(
        fit["bandwidth_bytes_per_sec"].as_f64().is_some() || fit["error"].is_string(),
        "{fit}"
    );
    let one = json(&rtt(&["--sweep", "64", "-n", "10", "--json"]));
    assert!(
        one["fit"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("at least two")),
        "{one}"
    );
}

#[test]
fn sizes_out_of_range_are_usage_errors() {
    for args in [
        &["-u", "-m", "8"][..],
        &["-u", "-m", "70000"],
        &["-m", "17M"],
    ] {
        let done = rtt(args);
        assert_eq!(done.code(), Some(2), "{args:?}: {}", done.stderr);
        assert!(done.stderr.contains("out of range"), "{}", done.stderr);
    }
}

/// Replies to seq%10==3 are dropped, to seq%10==5 sent twice, and to
/// seq%10==7 held back until the next request arrives (so they come late).
#[test]
fn udp_loss_duplicates_and_late_replies_are_counted() {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = sock.local_addr().expect("addr").port();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut held: Option<(Vec<u8>, std::net::SocketAddr)> = None;
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let seq = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
            let reply = buf[..n].to_vec();
            match seq % 10 {
                3 => {}
                5 => {
                    let _ = sock.send_to(&reply, from);
                    let _ = sock.send_to(&reply, from);
                }
                7 => held = Some((reply, from)),
                _ => {
                    let _ = sock.send_to(&reply, from);
                }
            }
            if seq % 10 != 7
                && let Some((late, to)) = held.take()
            {
                let _ = sock.send_to(&late, to);
            }
        }
    });
    let done = rtt(&[
        "-u",
        &format!("127.0.0.1:{port}"),
        "-n",
        "100",
        "--warmup",
        "0",
        "--timeout",
        "0.05",
        "--json",
    ]);
    let v = json(&done);
    assert_eq!(v["sent"], 100, "{v}");
    assert_eq!(v["lost"], 10, "{v}");
    assert_eq!(v["duplicates"], 10, "{v}");
    assert_eq!(v["late"], 10, "{v}");
    assert_eq!(
        v["rtt_ns"]["count"], 80,
        "only replies to the request in flight are timed: {v}"
    );
}

#[test]
fn csv_has_every_sample_and_busy_poll_works() {
    let dir = TempDir::new("rtt-csv");
    let path = dir.join("samples.csv");
    let done = rtt(&[
        "-n",
        "300",
        "--busy-poll",
        "--csv",
        path.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let text = std::fs::read_to_string(&path).expect("csv");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "size,index,rtt_ns");
    assert_eq!(lines.len(), 301);
    assert!(lines[1].starts_with("64,0,"));
    let done = rtt(&["-u", "-n", "300", "--busy-poll", "--json"]);
    assert_eq!(json(&done)["lost"], 0);
}

#[test]
fn open_loop_counts_from_the_due_time() {
    for proto in [&[][..], &["-u"]] {
        let args = [proto, &["--rate", "2000", "-n", "1000", "--json"]].concat();
        let v = json(&rtt(&args));
        assert_eq!(v["rtt_ns"]["count"], 1000, "{v}");
        let args = [
            proto,
            &["--rate", "2000", "--poisson", "-n", "500", "--json"],
        ]
        .concat();
        assert_eq!(json(&rtt(&args))["rtt_ns"]["count"], 500);
    }
}

#[test]
fn under_load_reports_idle_loaded_and_their_ratio() {
    let v = json(&rtt(&["--under-load", "-n", "300", "--json"]));
    assert_eq!(v["idle_rtt_ns"]["count"], 300, "{v}");
    assert_eq!(v["loaded_rtt_ns"]["count"], 300, "{v}");
    assert!(v["ratio_p50"].as_f64().is_some_and(|r| r > 0.0), "{v}");
    assert!(
        v["load_bits_per_second"].as_f64().is_some_and(|b| b > 0.0),
        "{v}"
    );
}

#[test]
fn warmup_by_count_or_time_is_discarded_and_reported() {
    let v = json(&rtt(&["-n", "100", "--warmup", "37", "--json"]));
    assert_eq!(v["warmup_discarded"], 37);
    assert_eq!(v["rtt_ns"]["count"], 100);
    let v = json(&rtt(&["-u", "-n", "100", "--warmup", "0.2s", "--json"]));
    assert!(v["warmup_discarded"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(v["rtt_ns"]["count"], 100);
    let done = rtt(&["--warmup", "soon"]);
    assert_eq!(done.code(), Some(2));
}

#[test]
fn a_reader_that_goes_away_ends_the_report_quietly() {
    // As `sonde rtt | head -1`: the pipe is closed before the report.
    for args in [&["-n", "200"][..], &["-n", "200", "--json"]] {
        let mut child = sonde()
            .arg("rtt")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting sonde rtt");
        drop(child.stdout.take());
        let stderr = collect(child.stderr.take());
        let done = finish(child, collect(None::<std::process::ChildStdout>), stderr);
        assert_eq!(done.code(), Some(0), "{args:?}: {}", done.stderr);
        assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
    }
}
