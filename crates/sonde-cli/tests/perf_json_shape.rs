//! `sonde perf -J` has iperf3's keys, at iperf3's paths, with iperf3's JSON
//! types, in every mode: each mode runs Debian's iperf3 against itself for
//! the reference (captured here from the installed binary, never copied
//! into the repository), then sonde against sonde, sonde's client against
//! iperf3's server and iperf3's client against sonde's server, and compares
//! the documents' shapes. Anything only in one of them fails, except the
//! allow-list below.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::DEADLINE;

/// Paths sonde may write that iperf3 3.12 does not, and why.
const ONLY_OURS: &[&str] = &[
    // sonde's own additions, all under one key.
    ".end.sonde",
    ".server_output_json.end.sonde",
    // Keys newer iperf3 releases write (3.20, 3.13, 3.17); a 3.12 reader
    // ignores them.
    ".start.timestamp.timemillisecs",
    ".start.test_start.bidir",
    ".start.test_start.interval",
    ".server_output_json.start.timestamp.timemillisecs",
    ".server_output_json.start.test_start.bidir",
    ".server_output_json.start.test_start.interval",
];

/// The kind of each path's values: object, array, string, number (iperf3
/// writes whole numbers as integers, so int and float are one kind), bool,
/// null. Array elements share their array's path with `[]`.
fn shape(value: &Value) -> BTreeMap<String, BTreeSet<&'static str>> {
    fn walk(v: &Value, path: String, out: &mut BTreeMap<String, BTreeSet<&'static str>>) {
        let kind = match v {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(items) => {
                for item in items {
                    walk(item, format!("{path}[]"), out);
                }
                "array"
            }
            Value::Object(map) => {
                for (k, item) in map {
                    walk(item, format!("{path}.{k}"), out);
                }
                "object"
            }
        };
        out.entry(path).or_default().insert(kind);
    }
    let mut out = BTreeMap::new();
    walk(value, String::new(), &mut out);
    out
}

/// Every difference of shape between iperf3's document and ours.
fn differences(reference: &Value, ours: &Value) -> Vec<String> {
    let (want, got) = (shape(reference), shape(ours));
    let allowed = |p: &str| {
        ONLY_OURS
            .iter()
            .any(|a| p == *a || p.starts_with(&format!("{a}.")) || p.starts_with(&format!("{a}[")))
    };
    let mut out = Vec::new();
    for (path, kinds) in &want {
        match got.get(path) {
            None => out.push(format!("missing {path}")),
            Some(ours) if ours != kinds => out.push(format!("{path}: {ours:?}, iperf3 {kinds:?}")),
            Some(_) => {}
        }
    }
    for path in got.keys().filter(|p| !want.contains_key(*p) && !allowed(p)) {
        out.push(format!("extra {path}"));
    }
    out
}

/// Waits (polling /proc/net/tcp, at most the deadline) until something
/// listens on `port`: a probe connection would count as a client.
fn wait_listening(port: u16) {
    let start = Instant::now();
    let hex = format!(":{port:04X} ");
    loop {
        let listening = ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
            std::fs::read_to_string(f).is_ok_and(|t| {
                t.lines()
                    .any(|l| l.contains(&hex) && l.split_whitespace().nth(3) == Some("0A"))
            })
        });
        if listening {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "nothing listened on {port}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn program(name: &str) -> Command {
    common::perf_program(name)
}

/// Runs `server -s -1 -J` and `client -c -J MODE`; both documents.
fn pair(client: &str, server: &str, mode: &[&str]) -> (Value, Value) {
    let port = common::free_port().to_string();
    let mut srv = program(server)
        .args(["-s", "-1", "-J", "-B", "127.0.0.1", "-p", &port])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server");
    wait_listening(port.parse().expect("port"));
    let mut cmd = program(client);
    cmd.args(["-c", "127.0.0.1", "-p", &port, "-J"]).args(mode);
    let done = common::run(cmd, b"");
    // The server's document comes as it ends; a one-off server whose test
    // failed would wait for another client, so it is stopped after the
    // deadline rather than waited on for ever.
    let mut reaper = common::Reaper::new(srv.id());
    let collected = common::collect(srv.stdout.take());
    let start = std::time::Instant::now();
    while srv.try_wait().ok().flatten().is_none() && start.elapsed() < DEADLINE {
        thread::sleep(Duration::from_millis(10));
    }
    let _ = srv.kill();
    let _ = srv.wait();
    reaper.disarm();
    let text =
        String::from_utf8_lossy(&collected.recv_timeout(DEADLINE).unwrap_or_default()).into_owned();
    let parse = |t: &str, who: &str| -> Value {
        serde_json::from_str(t).unwrap_or_else(|e| panic!("{who} {mode:?}: not JSON ({e}): {t}"))
    };
    // A server that was stopped has no document: null, which every key
    // of the reference then reports as missing.
    let server_doc = if text.trim().is_empty() {
        Value::Null
    } else {
        parse(&text, &format!("{server} server"))
    };
    (
        parse(&done.stdout_text(), &format!("{client} client")),
        server_doc,
    )
}

fn check(label: &str, reference: &Value, ours: &Value, failures: &mut Vec<String>) {
    for d in differences(reference, ours) {
        failures.push(format!("{label}: {d}"));
    }
}

/// One mode: sonde's documents, in every pairing, against iperf3's.
/// iperf3 against itself, the reference: a run in which iperf3 itself
/// failed (3.12 sometimes does, with -R) is run again, once.
fn reference(args: &[&str]) -> (Value, Value) {
    let first = pair("iperf3", "iperf3", args);
    if first.0.get("error").is_none() {
        return first;
    }
    eprintln!(
        "iperf3 against itself failed ({}); once more",
        first.0["error"]
    );
    pair("iperf3", "iperf3", args)
}

fn mode(args: &[&str]) -> Vec<String> {
    let (ref_client, ref_server) = reference(args);
    let (our_client, our_server) = pair("sonde", "sonde", args);
    let (mixed_client, _) = pair("sonde", "iperf3", args);
    let (_, mixed_server) = pair("iperf3", "sonde", args);
    let mut failures = Vec::new();
    check(
        &format!("{args:?} sonde client"),
        &ref_client,
        &our_client,
        &mut failures,
    );
    check(
        &format!("{args:?} sonde server"),
        &ref_server,
        &our_server,
        &mut failures,
    );
    check(
        &format!("{args:?} sonde client, iperf3 server"),
        &ref_client,
        &mixed_client,
        &mut failures,
    );
    check(
        &format!("{args:?} sonde server, iperf3 client"),
        &ref_server,
        &mixed_server,
        &mut failures,
    );
    let order: Vec<&String> = our_client
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    if order
        .iter()
        .take(3)
        .map(|k| k.as_str())
        .ne(["start", "intervals", "end"])
    {
        failures.push(format!("{args:?}: top-level keys in the order {order:?}"));
    }
    failures
}

fn peers() -> bool {
    common::have_peer("iperf3", "iperf3")
}

const MODES: &[&[&str]] = &[
    &["-t", "1"],
    &["-t", "1", "-R"],
    &["-t", "1", "--bidir"],
    &["-t", "1", "-P", "2"],
    &["-t", "1", "-Z"],
    &["-n", "10M"],
    &["-k", "100"],
    &["-t", "1", "--get-server-output"],
    &["-t", "1", "-u", "-b", "10M"],
    &["-t", "1", "-u", "-b", "10M", "-R"],
    &["-t", "1", "-u", "-b", "10M", "--bidir"],
    &["-t", "1", "-u", "-b", "10M", "--get-server-output"],
];

#[test]
fn every_mode_has_iperf3s_keys_and_types() {
    if !peers() {
        return;
    }
    let mut failures = Vec::new();
    // Two modes at a time: each mode's four pairings run in turn.
    for chunk in MODES.chunks(2) {
        let runs: Vec<_> = chunk
            .iter()
            .map(|m| thread::spawn(move || mode(m)))
            .collect();
        for run in runs {
            failures.extend(run.join().expect("a mode's thread"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `-F` both ways: `end.streams[].diskfile` as iperf3 writes it.
#[test]
fn a_file_sent_or_received_has_iperf3s_diskfile_keys() {
    if !peers() {
        return;
    }
    let dir = common::TempDir::new("perf-json-file");
    let send = dir.join("send.bin");
    std::fs::write(&send, vec![3u8; 5 << 20]).expect("a file");
    let send = send.to_string_lossy().into_owned();
    let received = dir.join("received.bin").to_string_lossy().into_owned();
    let mut failures = mode(&["-F", &send]);
    failures.extend(mode(&["-t", "1", "-R", "-F", &received]));
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn json_stream_events_come_in_order_with_iperf3s_shapes() {
    if !peers() {
        return;
    }
    let (reference, _) = pair("iperf3", "iperf3", &["-t", "2"]);
    let port = common::free_port().to_string();
    let mut srv = program("sonde")
        .args(["-s", "-1", "-B", "127.0.0.1", "-p", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server");
    wait_listening(port.parse().expect("port"));
    let mut cmd = program("sonde");
    cmd.args(["-c", "127.0.0.1", "-p", &port, "-t", "2", "--json-stream"]);
    let done = common::run(cmd, b"");
    let _ = srv.wait();
    let events: Vec<Value> = done
        .stdout_text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(names.first(), Some(&"start"), "{names:?}");
    assert_eq!(names.last(), Some(&"end"), "{names:?}");
    assert!(
        names[1..names.len() - 1].iter().all(|n| *n == "interval"),
        "{names:?}"
    );
    let mut failures = Vec::new();
    // Each event's data, put back where it sits in a -J document.
    let within = |key: &str, data: &Value| serde_json::json!({ key: data });
    let part = |key: &str| within(key, &reference[key]);
    check(
        "start event",
        &part("start"),
        &within("start", &events[0]["data"]),
        &mut failures,
    );
    let first_interval = within("intervals", &serde_json::json!([reference["intervals"][0]]));
    for e in &events[1..events.len() - 1] {
        let ours = within("intervals", &serde_json::json!([e["data"]]));
        check("interval event", &first_interval, &ours, &mut failures);
    }
    let last = &events[events.len() - 1]["data"];
    check(
        "end event",
        &part("end"),
        &within("end", last),
        &mut failures,
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A failed test's document: refused, and busy.
#[test]
fn a_failed_test_writes_iperf3s_error_document() {
    if !peers() {
        return;
    }
    let closed = common::free_port().to_string();
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_port = busy.local_addr().expect("addr").port().to_string();
    thread::spawn(move || {
        for conn in busy.incoming().take(2).flatten() {
            let mut conn = conn;
            let _ = conn.write_all(&[0xFF]);
        }
    });
    for (port, want) in [(&closed, "connect"), (&busy_port, "busy")] {
        let run = |name: &str| {
            let mut cmd = program(name);
            cmd.args(["-c", "127.0.0.1", "-p", port, "-J", "-t", "1"]);
            let done = common::run(cmd, b"");
            // iperf3 3.12 exits 0 after writing an error document.
            if name != "iperf3" {
                assert_eq!(done.code(), Some(1), "{name} against {want}");
            }
            let doc: Value = serde_json::from_str(&done.stdout_text()).expect("a JSON document");
            assert!(
                doc["error"].as_str().is_some_and(|e| e.contains(want)),
                "{name}: {doc}"
            );
            doc
        };
        let (reference, ours) = (run("iperf3"), run("sonde"));
        assert_eq!(
            differences(&reference, &ours),
            Vec::<String>::new(),
            "{want}"
        );
    }
}
