//! `sonde report` and `--report`: every committed result (iperf3 3.12's
//! -J from Debian's iperf3: TCP, UDP, -R, --bidir, -P 4, the server's
//! side; sonde's JSON from each subcommand, --json-stream lines) renders
//! with the charts its data holds; a result missing optional keys still
//! renders; a broken file is exit 1 naming it and the problem; several
//! results overlay with their labels; and each subcommand's --report
//! writes its page. The pages are drawn in a real browser by
//! `report_browser.rs`.

mod common;

use std::path::{Path, PathBuf};

use common::{TempDir, assert_contains, run, sonde};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The page's chart model, read back from the HTML.
fn page_of(html: &str) -> Value {
    let start = html
        .find("<script type=\"application/json\" id=\"sonde-page\">")
        .expect("the page's data")
        + "<script type=\"application/json\" id=\"sonde-page\">".len();
    let end = start + html[start..].find("</script>").expect("its end");
    serde_json::from_str(&html[start..end]).expect("the page's JSON")
}

/// Each chart's id and its series count.
fn charts(page: &Value) -> Vec<(String, usize)> {
    page["charts"]
        .as_array()
        .expect("charts")
        .iter()
        .map(|c| {
            let id = c["id"].as_str().unwrap_or("").to_string();
            (id, c["series"].as_array().map_or(0, Vec::len))
        })
        .collect()
}

/// `sonde report ARGS... -o OUT`; the page's model.
fn report(args: &[&str], out: &Path) -> Value {
    let mut cmd = sonde();
    cmd.arg("report").args(args).arg("-o").arg(out);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let html = std::fs::read_to_string(out).expect("the page");
    assert!(!html.contains(" src="), "nothing loaded from elsewhere");
    page_of(&html)
}

fn ids(page: &Value) -> Vec<String> {
    charts(page).into_iter().map(|c| c.0).collect()
}

#[test]
fn every_fixture_renders_the_charts_its_data_holds() {
    let dir = TempDir::new("report-fixtures");
    let want: &[(&str, &[&str])] = &[
        (
            "iperf3/tcp.json",
            &["throughput", "retransmits", "cwnd", "rtt"],
        ),
        ("iperf3/reverse.json", &["throughput"]),
        (
            "iperf3/bidir.json",
            &["throughput", "retransmits", "cwnd", "rtt"],
        ),
        (
            "iperf3/parallel.json",
            &["throughput", "retransmits", "cwnd", "rtt"],
        ),
        ("iperf3/udp.json", &["throughput"]),
        ("iperf3/udp-reverse.json", &["throughput", "loss", "jitter"]),
        ("iperf3/server.json", &["throughput"]),
        ("iperf3/server-udp.json", &["throughput", "loss", "jitter"]),
        (
            "sonde/perf.json",
            &["throughput", "retransmits", "cwnd", "rtt"],
        ),
        (
            "sonde/perf-stream.jsonl",
            &["throughput", "retransmits", "cwnd", "rtt"],
        ),
        ("sonde/perf-udp.json", &["throughput"]),
        ("sonde/rtt.json", &["histogram", "cdf", "over-time"]),
        ("sonde/rtt-udp.json", &["histogram", "cdf", "over-time"]),
        ("sonde/sweep.json", &["sweep"]),
        ("sonde/under-load.json", &["cdf"]),
        ("sonde/send.json", &["rate"]),
    ];
    for (name, expected) in want {
        let out = dir.join(&format!("{}.html", name.replace('/', "-")));
        let page = report(&[fixture(name).to_str().expect("utf-8")], &out);
        let got = ids(&page);
        for id in *expected {
            assert!(
                got.iter().any(|g| g == id),
                "{name}: no {id} chart in {got:?}"
            );
        }
        assert!(
            !page["tables"].as_array().expect("tables").is_empty(),
            "{name}: a table"
        );
    }
    // -P 4: four streams and the total; --bidir: each direction's.
    let parallel = report(
        &[fixture("iperf3/parallel.json").to_str().expect("utf-8")],
        &dir.join("p.html"),
    );
    assert_eq!(charts(&parallel)[0], ("throughput".into(), 5));
    let bidir = report(
        &[fixture("iperf3/bidir.json").to_str().expect("utf-8")],
        &dir.join("b.html"),
    );
    let labels: Vec<&str> = bidir["charts"][0]["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter_map(|s| s["label"].as_str())
        .collect();
    assert!(
        labels.contains(&"total (sent)") && labels.contains(&"total (received)"),
        "{labels:?}"
    );
    // The facts: iperf3's version, both hosts.
    assert_contains(&bidir["facts"]["version"].to_string(), "iperf 3.12");
    assert_contains(&bidir["facts"]["remote"].to_string(), "127.0.0.1");
}

#[test]
fn a_result_missing_optional_keys_still_renders() {
    let dir = TempDir::new("report-sparse");
    // iperf3's -J with no TCP_INFO figures and no end.
    let mut doc: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("iperf3/tcp.json")).expect("fixture"),
    )
    .expect("json");
    for iv in doc["intervals"].as_array_mut().expect("intervals") {
        for st in iv["streams"].as_array_mut().expect("streams") {
            for key in [
                "retransmits",
                "snd_cwnd",
                "rtt",
                "rttvar",
                "snd_wnd",
                "pmtu",
            ] {
                st.as_object_mut().expect("object").remove(key);
            }
        }
    }
    doc.as_object_mut().expect("object").remove("end");
    let sparse = dir.join("sparse.json");
    std::fs::write(&sparse, doc.to_string()).expect("write");
    let page = report(&[sparse.to_str().expect("utf-8")], &dir.join("sparse.html"));
    assert_eq!(ids(&page), ["throughput"]);
    // rtt's JSON from before the histogram: its CDF from the percentiles.
    let old = r#"{"protocol":"TCP","server":"127.0.0.1:7","size":64,"rtt_ns":{"count":10,"min":1000,"p50":2000,"p90":3000,"p99":4000,"p99_9":5000,"max":6000}}"#;
    let path = dir.join("old-rtt.json");
    std::fs::write(&path, old).expect("write");
    let page = report(&[path.to_str().expect("utf-8")], &dir.join("old-rtt.html"));
    assert_eq!(ids(&page), ["cdf"]);
}

#[test]
fn a_broken_file_is_exit_1_naming_it_and_the_problem() {
    let dir = TempDir::new("report-broken");
    let cases = [
        (
            "truncated.json",
            "{\"start\": {\"connected\"",
            "not a JSON document",
        ),
        (
            "other.json",
            "{\"hello\": 1}",
            "not a result sonde can draw",
        ),
        (
            "failed.json",
            "{\"start\": {}, \"error\": \"unable to connect to server\"}",
            "unable to connect",
        ),
    ];
    for (name, text, said) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        let mut cmd = sonde();
        cmd.arg("report")
            .arg(&path)
            .arg("-o")
            .arg(dir.join("x.html"));
        let done = run(cmd, b"");
        assert_eq!(done.code(), Some(1), "{name}: {}", done.stderr);
        assert_contains(&done.stderr, name);
        assert_contains(&done.stderr, said);
    }
    let mut cmd = sonde();
    cmd.arg("report")
        .arg(dir.join("missing.json"))
        .arg("-o")
        .arg(dir.join("x.html"));
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(1));
    assert_contains(&done.stderr, "reading");
    assert_contains(&done.stderr, "missing.json");
    assert!(!dir.join("x.html").exists(), "no page for a broken result");
    // Two kinds in one report.
    let mut cmd = sonde();
    cmd.arg("report")
        .arg(fixture("iperf3/tcp.json"))
        .arg(fixture("sonde/rtt.json"))
        .arg("-o")
        .arg(dir.join("x.html"));
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(1));
    assert_contains(&done.stderr, "one kind of result per report");
}

#[test]
fn several_results_overlay_with_their_labels_and_fairness() {
    let dir = TempDir::new("report-overlay");
    let tcp = fixture("iperf3/tcp.json");
    let sonde_perf = fixture("sonde/perf.json");
    let page = report(
        &[
            tcp.to_str().expect("utf-8"),
            sonde_perf.to_str().expect("utf-8"),
            "--label",
            "iperf3",
            "--label",
            "sonde",
        ],
        &dir.join("both.html"),
    );
    let labels: Vec<&str> = page["charts"][0]["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter_map(|s| s["label"].as_str())
        .collect();
    assert_eq!(labels, ["iperf3: total", "sonde: total"]);
    let fairness = page["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| {
            t["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("Fairness"))
        })
        .expect("a fairness table");
    let rows = fairness["rows"].as_array().expect("rows");
    assert!(rows.iter().any(|r| r[0] == "runs"), "{rows:?}");
    assert!(
        rows.iter().any(|r| r[0] == "streams" && r[1] == "sonde"),
        "{rows:?}"
    );
}

/// Runs `args` (a sonde command with --report PATH) and reads the page.
fn reported(args: &[&str], path: &Path) -> Value {
    let mut cmd = sonde();
    cmd.args(args).arg("--report").arg(path);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(0), "{args:?}: {}", done.stderr);
    assert_contains(&done.stderr, "report written to");
    page_of(&std::fs::read_to_string(path).expect("the page"))
}

#[test]
fn each_subcommand_writes_its_report() {
    let dir = TempDir::new("report-live");
    let perf = reported(&["perf", "-t", "1", "-P", "2"], &dir.join("perf.html"));
    assert_eq!(charts(&perf)[0], ("throughput".into(), 3));
    assert_contains(
        &perf["facts"]["command"].to_string(),
        "perf -t 1 -P 2 --report",
    );
    let rtt = reported(&["rtt", "-n", "300"], &dir.join("rtt.html"));
    assert_eq!(ids(&rtt), ["histogram", "cdf", "over-time"]);
    let sweep = reported(
        // Sizes far enough apart that the round trip grows past the
        // noise of a busy machine (64 B to 16 KiB once fitted no slope).
        &["rtt", "--sweep", "64,64K,256K", "-n", "60"],
        &dir.join("sweep.html"),
    );
    assert_eq!(charts(&sweep), [("sweep".into(), 2)]);

    // A reverse test against a server writing a report of each test: the
    // client's page has the server's TCP_INFO (it sent).
    let reports = TempDir::new("report-dir");
    let server = common::perf_server(&["--report-dir", reports.0.to_str().expect("utf-8")]);
    let port = server.port.to_string();
    let reverse = reported(
        &["perf", "-c", "127.0.0.1", "-p", &port, "-t", "1", "-R"],
        &dir.join("reverse.html"),
    );
    let cwnd = reverse["charts"]
        .as_array()
        .expect("charts")
        .iter()
        .find(|c| c["id"] == "cwnd")
        .expect("the server's cwnd");
    assert_contains(&cwnd["series"][0]["label"].to_string(), "server stream");
    server.stop();
    let written: Vec<_> = std::fs::read_dir(&reports.0)
        .expect("the report dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".html"))
        .collect();
    assert_eq!(written.len(), 1, "one page for the one test");
    let page = page_of(&std::fs::read_to_string(written[0].path()).expect("page"));
    assert_eq!(ids(&page)[0], "throughput");

    // A transfer: the sender's page and the receiver's.
    let src = TempDir::new("report-src");
    let dst = TempDir::new("report-dst");
    std::fs::write(src.join("a.bin"), common::random_bytes(4 << 20, 3)).expect("source");
    let recv_page = dir.join("recv.html");
    let receiver = common::receiver(&dst, &["--report", recv_page.to_str().expect("utf-8")]);
    let to = format!("127.0.0.1:{}", receiver.port);
    let sent = reported(
        &["send", src.join("a.bin").to_str().expect("utf-8"), &to],
        &dir.join("send.html"),
    );
    assert_eq!(ids(&sent), ["rate"]);
    let done = receiver.finish();
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let got = page_of(&std::fs::read_to_string(&recv_page).expect("the receiver's page"));
    let files = &got["tables"][1]["rows"][0];
    assert_eq!(files[5], "verified", "{files}");
}

#[test]
fn perf_s_report_dir_must_be_a_directory() {
    let mut cmd = sonde();
    cmd.args(["perf", "-s", "--report-dir", "/nonexistent/sonde-reports"]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(2), "{}", done.stderr);
    assert_contains(&done.stderr, "not a directory");
}
