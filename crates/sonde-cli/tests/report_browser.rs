//! Every kind of report opened in a real browser (Debian's chromium,
//! headless, its profile in a temp dir, every request sent to a dead
//! proxy and every name unresolvable): no console error, no request of any
//! kind, and every chart drawn (its canvas has a size, and it has as many
//! series as the data). Each page is also shot as a PNG, wide and inside
//! a 375-pixel frame (a phone; chromium's own window is never narrower
//! than 500), under target/report-screenshots for a person to look at.
//! With SONDE_SCREENSHOTS=docs the README's two are refreshed too.

mod common;

use std::path::{Path, PathBuf};

use common::{TempDir, have_peer, run, sonde};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn shots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/report-screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    dir
}

/// Chromium, headless, with nothing reachable.
fn chromium(profile: &TempDir, args: &[String]) -> common::Finished {
    let mut cmd = std::process::Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        "--allow-file-access-from-files",
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.0.display()))
    .args(args);
    run(cmd, b"")
}

/// The text of the element `<pre id="sonde-check">` (or the wrapper's
/// `data-check`) in a dumped DOM, as JSON.
fn check_in(dom: &str, marker: &str, end: &str) -> Value {
    let start = dom.find(marker).map(|i| i + marker.len());
    let Some(start) = start else {
        panic!("no {marker} in the page:\n{}", &dom[..dom.len().min(2000)]);
    };
    let stop = start + dom[start..].find(end).expect("its end");
    let text = dom[start..stop]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// What the page's script says it drew, checked.
fn assert_drawn(name: &str, check: &Value, narrow: Option<u64>) {
    assert_eq!(check["errors"], serde_json::json!([]), "{name}: errors");
    assert_eq!(check["requests"], 0, "{name}: requests");
    let charts = check["charts"].as_array().expect("charts");
    assert_eq!(
        charts.len() as u64,
        check["expected"].as_u64().unwrap_or(0),
        "{name}: every chart"
    );
    assert!(!charts.is_empty(), "{name}: no chart");
    for c in charts {
        assert_eq!(c["series"], c["expected"], "{name}: {c}");
        assert!(c["series"].as_u64() > Some(0), "{name}: {c}");
        assert!(c["points"].as_u64() > Some(0), "{name}: {c}");
        let (w, h) = (
            c["width"].as_u64().unwrap_or(0),
            c["height"].as_u64().unwrap_or(0),
        );
        assert!(w > 100 && h > 100, "{name}: drawn at {w}x{h}");
        if let Some(most) = narrow {
            assert!(w <= most, "{name}: {w} px wide in a {most} px frame");
        }
    }
}

/// Opens `page`: its check, a wide shot and a phone-sized one.
fn open(name: &str, page: &Path, profile: &TempDir, work: &TempDir) {
    let url = format!("file://{}", page.display());
    let done = chromium(profile, &["--dump-dom".into(), url.clone()]);
    let dom = String::from_utf8_lossy(&done.stdout).into_owned();
    let check = check_in(&dom, "<pre id=\"sonde-check\" hidden=\"\">", "</pre>");
    assert_drawn(name, &check, None);

    let frame = work.join(&format!("{name}-phone.html"));
    let wrapper = format!(
        "<!DOCTYPE html><html><body style=\"margin:0\">\
<iframe id=\"f\" src=\"{url}\" style=\"width:375px;height:3000px;border:0\"></iframe>\
<script>document.getElementById('f').onload=function(){{setTimeout(function(){{\
var d=document.getElementById('f').contentDocument;\
document.body.setAttribute('data-check',d.getElementById('sonde-check').textContent);}},500);}};</script>\
</body></html>"
    );
    std::fs::write(&frame, wrapper).expect("the phone frame");
    let framed = format!("file://{}", frame.display());
    let done = chromium(profile, &["--dump-dom".into(), framed.clone()]);
    let dom = String::from_utf8_lossy(&done.stdout).into_owned();
    let check = check_in(&dom, "data-check=\"", "\"");
    assert_drawn(&format!("{name} (phone)"), &check, Some(375));

    let dir = shots();
    let wide = dir.join(format!("{name}.png"));
    let phone = dir.join(format!("{name}-phone.png"));
    for (shot, size, what) in [(&wide, "1280,2000", &url), (&phone, "500,2400", &framed)] {
        let done = chromium(
            profile,
            &[
                format!("--window-size={size}"),
                format!("--screenshot={}", shot.display()),
                what.clone(),
            ],
        );
        assert!(shot.exists(), "{name}: no screenshot: {}", done.stderr);
    }
}

#[test]
fn every_report_draws_each_chart_in_a_browser_with_the_network_off() {
    if !have_peer("chromium", "chromium") {
        return;
    }
    let work = TempDir::new("report-browser");
    let profile = TempDir::new("report-browser-profile");
    let pages: &[(&str, &[&str])] = &[
        ("perf-parallel", &["iperf3/parallel.json"]),
        ("perf-bidir", &["iperf3/bidir.json"]),
        ("perf-udp-reverse", &["iperf3/udp-reverse.json"]),
        ("perf-server-udp", &["iperf3/server-udp.json"]),
        ("perf-stream", &["sonde/perf-stream.jsonl"]),
        ("perf-overlay", &["iperf3/tcp.json", "sonde/perf.json"]),
        ("rtt", &["sonde/rtt.json"]),
        ("rtt-sweep", &["sonde/sweep.json"]),
        ("rtt-under-load", &["sonde/under-load.json"]),
        ("transfer", &["sonde/send.json"]),
    ];
    for (name, files) in pages {
        let page = work.join(&format!("{name}.html"));
        let mut cmd = sonde();
        cmd.arg("report");
        for f in *files {
            cmd.arg(fixture(f));
        }
        cmd.arg("-o").arg(&page);
        let done = run(cmd, b"");
        assert_eq!(done.code(), Some(0), "{name}: {}", done.stderr);
        open(name, &page, &profile, &work);
    }
    if std::env::var("SONDE_SCREENSHOTS").as_deref() == Ok("docs") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        std::fs::create_dir_all(&docs).expect("docs");
        for name in ["perf-parallel", "rtt-sweep"] {
            std::fs::copy(
                shots().join(format!("{name}.png")),
                docs.join(format!("report-{name}.png")),
            )
            .expect("copying a screenshot");
        }
    }
}
