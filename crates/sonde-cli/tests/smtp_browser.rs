//! `serve smtp`'s web UI in a real browser (Debian's chromium, headless,
//! its profile in a temp dir, any name unresolvable and anything off
//! loopback sent to a dead proxy). A message sent by smtplib is listed,
//! opens, and its HTML shows in the sandboxed frame (the browser fetched
//! the frame and the inline image it names, through a relay that logs
//! each request) without fetching its remote image: a counting server on
//! loopback, which the same browser does reach when asked directly, sees
//! nothing. A screenshot goes under target/smtp-screenshots; with
//! SONDE_SCREENSHOTS=docs the README's is refreshed too.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::http;
use common::mail::{self, SEND_RAW, python};
use common::{TempDir, assert_contains, have_peer, run};

/// A GIF of one pixel, what the tracker answers.
const PIXEL: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

/// A loopback server counting the connections made to it.
fn tracker() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the tracker");
    let port = listener.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut head = [0u8; 4096];
            let _ = conn.read(&mut head);
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                PIXEL.len()
            );
            let _ = conn.write_all(answer.as_bytes());
            let _ = conn.write_all(PIXEL);
        }
    });
    (port, hits)
}

/// A loopback relay to `to` that logs the request lines going through.
fn relay(to: u16) -> (u16, Arc<Mutex<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
    let port = listener.local_addr().expect("addr").port();
    let log = Arc::new(Mutex::new(String::new()));
    let logged = Arc::clone(&log);
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                continue;
            };
            let (mut from_client, mut to_server) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            let (mut from_server, mut to_client) = (server, client);
            let logged = Arc::clone(&logged);
            thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n @ 1..) = from_client.read(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    for line in text.lines().filter(|l| l.ends_with(" HTTP/1.1")) {
                        if let Ok(mut log) = logged.lock() {
                            log.push_str(line);
                            log.push('\n');
                        }
                    }
                    if to_server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to_server.shutdown(std::net::Shutdown::Write);
            });
            thread::spawn(move || {
                let _ = std::io::copy(&mut from_server, &mut to_client);
                let _ = to_client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, log)
}

/// Chromium, headless: loopback only.
fn chromium(profile: &TempDir, args: &[String]) -> common::Finished {
    let mut cmd = std::process::Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--virtual-time-budget=3000",
    ])
    .arg(format!("--user-data-dir={}", profile.0.display()))
    .args(args);
    run(cmd, b"")
}

#[test]
fn the_ui_shows_a_message_in_the_sandbox_and_fetches_nothing_remote() {
    if !have_peer("chromium", "chromium") || !have_peer("python3", "python3") {
        return;
    }
    let dir = TempDir::new("smtp-browser");
    let profile = TempDir::new("smtp-browser-profile");
    let sink = mail::sink(Path::new(":memory:"), &[]);
    let (tracker_port, hits) = tracker();
    let (web, log) = relay(sink.web);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mixed.eml");
    let text = std::fs::read_to_string(fixture).expect("the fixture");
    let file = dir.join("mixed.eml");
    std::fs::write(&file, text.replace("{TRACKER}", &tracker_port.to_string())).expect("write");
    let port = sink.server.port.to_string();
    python(
        SEND_RAW,
        &[&port, file.to_str().expect("utf-8"), "ann@example.com"],
    );
    let id = http::get(sink.web, "/api/v1/messages").json()["messages"][0]["ID"]
        .as_str()
        .expect("an ID")
        .to_string();

    // The control: this browser reaches the tracker when sent there.
    let control = chromium(
        &profile,
        &[
            "--dump-dom".into(),
            format!("http://127.0.0.1:{tracker_port}/"),
        ],
    );
    assert_eq!(control.code(), Some(0), "{}", control.stderr);
    let reached = hits.load(Ordering::SeqCst);
    assert!(reached >= 1, "the browser never reached the tracker");

    let list = chromium(
        &profile,
        &[
            "--dump-dom".into(),
            format!("http://127.0.0.1:{web}/?live=0"),
        ],
    );
    let dom = list.stdout_text();
    assert_contains(&dom, &format!("data-id=\"{id}\""));
    assert_contains(&dom, "Café report");
    assert_contains(&dom, "Ann Example &lt;ann@example.com&gt;");

    // `live=0`: the event stream would keep the virtual clock waiting.
    let page = format!("http://127.0.0.1:{web}/?live=0#{id}");
    let opened = chromium(&profile, &["--dump-dom".into(), page.clone()]);
    let dom = opened.stdout_text();
    assert_contains(&dom, "data-state=\"shown\"");
    assert_contains(&dom, "<h2>Café report</h2>");
    assert_contains(&dom, "report.csv");
    assert_contains(
        &dom,
        &format!(
            "<iframe id=\"html\" sandbox=\"\" referrerpolicy=\"no-referrer\" src=\"/view/{id}.html\""
        ),
    );
    let requests = log.lock().map(|l| l.clone()).unwrap_or_default();
    assert_contains(&requests, &format!("GET /view/{id}.html HTTP/1.1"));
    assert_contains(
        &requests,
        &format!("GET /api/v1/message/{id}/part/2 HTTP/1.1"),
    );

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/smtp-screenshots");
    std::fs::create_dir_all(&shots).expect("the screenshot directory");
    let shot = shots.join("mail-ui.png");
    let _ = std::fs::remove_file(&shot);
    let done = chromium(
        &profile,
        &[
            "--window-size=1280,720".into(),
            format!("--screenshot={}", shot.display()),
            page,
        ],
    );
    assert!(shot.exists(), "no screenshot: {}", done.stderr);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        reached,
        "the remote image was fetched"
    );
    if std::env::var("SONDE_SCREENSHOTS").as_deref() == Ok("docs") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        std::fs::copy(&shot, docs.join("mail-ui.png")).expect("copying the screenshot");
    }
    sink.server.stop();
}
