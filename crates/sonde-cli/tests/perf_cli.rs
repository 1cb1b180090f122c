//! `sonde perf` from the command line: the embedded default, iperf3-style
//! text and JSON, and usage errors.

mod common;

use common::*;
use serde_json::Value;

fn perf(args: &[&str]) -> Finished {
    let mut cmd = sonde();
    cmd.arg("perf").args(args);
    run(cmd, b"")
}

/// `sonde perf -J ARGS`, which must succeed: its JSON document.
fn perf_json(args: &[&str]) -> Value {
    let done = perf(&[&["-J"], args].concat());
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    serde_json::from_slice(&done.stdout).expect("JSON")
}

#[test]
fn embedded_default_prints_iperf3_layout_and_a_summary_line() {
    let done = perf(&["-t", "1"]);
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let text = done.stdout_text();
    assert!(
        text.starts_with("Connecting to host 127.0.0.1, port "),
        "{text}"
    );
    assert!(text.contains("[ ID] Interval           Transfer     Bitrate         Retr  Cwnd"));
    assert!(
        text.contains(" sender\n") && text.contains(" receiver\n"),
        "{text}"
    );
    assert!(text.contains("\niperf Done.\n"));
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("sonde perf: TCP 1 stream(s) to 127.0.0.1:"),
        "{last}"
    );
    assert!(last.contains("bit/s received"), "{last}");
}

#[test]
fn json_output_follows_iperf3_schema() {
    let done = perf(&["-t", "1", "-J", "-P", "2"]);
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let json: Value = serde_json::from_slice(&done.stdout).expect("JSON");
    assert_eq!(json["start"]["test_start"]["protocol"], "TCP");
    assert_eq!(json["start"]["test_start"]["num_streams"], 2);
    assert_eq!(json["start"]["connected"].as_array().map(Vec::len), Some(2));
    assert!(json["intervals"].as_array().is_some_and(|i| !i.is_empty()));
    assert!(
        json["intervals"][0]["sum"]["bits_per_second"]
            .as_f64()
            .is_some()
    );
    let end = &json["end"];
    assert!(end["sum_sent"]["bytes"].as_u64().unwrap_or(0) > 0);
    assert!(end["sum_received"]["bytes"].as_u64().unwrap_or(0) > 0);
    assert!(
        end["streams"][0]["sender"]["retransmits"]
            .as_i64()
            .is_some()
    );
    assert!(
        end["cpu_utilization_percent"]["host_total"]
            .as_f64()
            .is_some()
    );
}

#[test]
fn tcp_blocks_are_1_mib_unless_counted_or_given() {
    let blksize = |args: &[&str]| perf_json(args)["start"]["test_start"]["blksize"].as_u64();
    assert_eq!(blksize(&["-t", "1"]), Some(1 << 20));
    // -k counts iperf3's blocks, so they keep iperf3's size.
    assert_eq!(blksize(&["-k", "4"]), Some(128 << 10));
    assert_eq!(blksize(&["-n", "1M"]), Some(128 << 10));
    assert_eq!(blksize(&["-t", "1", "-b", "100M"]), Some(1 << 20));
    assert_eq!(blksize(&["-t", "1", "-l", "64K"]), Some(64 << 10));
}

#[test]
fn counted_tests_send_exactly_the_count() {
    let sent = |args: &[&str]| {
        let json = perf_json(args);
        let end = &json["end"];
        (
            end["sum_sent"]["bytes"].as_u64(),
            end["sum_received"]["bytes"].as_u64(),
        )
    };
    // TCP gets every byte there: sent and received are both exact.
    let mib = Some(1u64 << 20);
    assert_eq!(sent(&["-n", "1M"]), (mib, mib));
    assert_eq!(sent(&["-n", "1000"]), (Some(128 << 10), Some(128 << 10)));
    assert_eq!(sent(&["-k", "8", "-P", "3"]), (mib, mib));
    assert_eq!(sent(&["-R", "-k", "8"]), (mib, mib));
    // Both ways at once: each side sends the count.
    let json = perf_json(&["--bidir", "-k", "8"]);
    for sum in [
        "sum_sent",
        "sum_received",
        "sum_sent_bidir_reverse",
        "sum_received_bidir_reverse",
    ] {
        assert_eq!(json["end"][sum]["bytes"].as_u64(), mib, "{sum}");
    }
    assert_eq!(sent(&["-Z", "-n", "1M"]), (mib, mib));
    // UDP: 100 datagrams of 1,000 bytes, however the sender batches them.
    assert_eq!(
        sent(&["-u", "-b", "0", "-l", "1000", "-k", "100"]).0,
        Some(100_000)
    );
    // With -O the count starts when the omitted second ends, with interval
    // reports or without (-i 0 once waited for a report that never came).
    assert_eq!(sent(&["-O", "1", "-k", "80"]).0, Some(10 << 20));
    assert_eq!(sent(&["-i", "0", "-O", "1", "-k", "80"]).0, Some(10 << 20));
}

/// `-b` holds, with and without `-Z`: an upper bound only (a loaded
/// machine may send less, never more); how exact the rate is, is measured
/// in bench/pacing.py.
#[test]
fn a_paced_tcp_test_never_sends_faster_than_asked() {
    for zerocopy in [false, true] {
        let mut args = vec!["-t", "1", "-b", "50M"];
        if zerocopy {
            args.push("-Z");
        }
        let json = perf_json(&args);
        let rate = json["end"]["sum_sent"]["bits_per_second"].as_f64();
        assert!(
            rate.is_some_and(|r| r > 0.0 && r < 75e6),
            "-Z {zerocopy}: {rate:?} bit/s for 50M asked"
        );
    }
}

#[test]
fn udp_json_counts_packets_and_loss() {
    let done = perf(&["-t", "1", "-J", "-u", "-b", "10M", "-l", "1000"]);
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let json: Value = serde_json::from_slice(&done.stdout).expect("JSON");
    let udp = &json["end"]["streams"][0]["udp"];
    let packets = udp["packets"].as_i64().expect("packets");
    // The rate's accuracy is measured in bench/, not here.
    assert!(packets > 0, "{udp}");
    assert!(udp["lost_packets"].as_i64().is_some());
    assert!(udp["jitter_ms"].as_f64().is_some());
}

#[test]
fn json_stream_prints_one_event_per_line() {
    let done = perf(&["-t", "1", "--json-stream"]);
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let events: Vec<String> = done
        .stdout_text()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("a JSON line")["event"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(events.contains(&"interval".to_string()));
    assert_eq!(events.last().map(String::as_str), Some("end"));
}

#[test]
fn usage_errors_name_the_problem() {
    for (args, needle) in [
        (&["--no-such-flag"][..], "--no-such-flag"),
        (&["-t", "1", "-n", "1M"], "mutually exclusive"),
        (&["-u", "-l", "70000"], "UDP length"),
        (&["-P", "0"], "parallel"),
        (&["-b", "1M/x"], "burst"),
        (&["-f", "q"], "-f q"),
    ] {
        let done = perf(args);
        assert_eq!(done.code(), Some(2), "{args:?}: {}", done.stderr);
        assert!(done.stderr.contains(needle), "{args:?}: {}", done.stderr);
    }
}

#[test]
fn refused_connection_exits_1() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let done = perf(&["-c", "127.0.0.1", "-p", &port.to_string(), "-t", "1"]);
    assert_eq!(done.code(), Some(1));
    assert!(
        done.stderr.contains(&format!(
            "connecting to 127.0.0.1:{port}: connection refused"
        )),
        "{}",
        done.stderr
    );
}

/// Ctrl-C prints the summary so far, tells the server, says so on
/// stderr as iperf3 does, and exits 1.
#[test]
fn ctrl_c_prints_the_summary_so_far() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = sonde()
        .args(["perf", "-t", "30", "-i", "0.2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = String::new();
    // Wait for the first interval line, then interrupt.
    for line in lines.by_ref() {
        let line = line.expect("a line");
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("bits/sec") {
            break;
        }
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    for line in lines {
        seen.push_str(&line.expect("a line"));
        seen.push('\n');
    }
    let err = collect(child.stderr.take());
    let done = finish(child, collect(None::<std::io::Empty>), err);
    assert_eq!(done.code(), Some(1), "{}", done.stderr);
    assert!(
        done.stderr
            .contains("interrupt - the client has terminated"),
        "{}",
        done.stderr
    );
    assert!(seen.contains(" sender\n"), "{seen}");
}

/// Both ends sonde, reverse mode: the client shows the sending server's
/// TCP state per interval (iperf3 shows it only on the server), and how
/// many tests ran at once.
#[test]
fn reverse_mode_shows_the_senders_tcp_state() {
    let done = perf(&["-t", "2", "-R", "-J"]);
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let json: Value = serde_json::from_slice(&done.stdout).expect("JSON");
    assert_eq!(json["intervals"][0]["streams"][0]["sender"], false);
    // Under sonde's own key, so the document stays iperf3's key for key.
    let first = &json["end"]["sonde"]["tcp_intervals"][0][0];
    assert!(first["snd_cwnd"].as_u64().unwrap_or(0) > 0, "{first}");
    assert!(first["rtt"].as_u64().is_some(), "{first}");
    assert_eq!(json["end"]["sonde"]["concurrent_tests"], 1);
    let text = perf(&["-t", "1", "-R"]).stdout_text();
    assert!(
        text.contains("Sender TCP state on the server, per interval:"),
        "{text}"
    );
}
