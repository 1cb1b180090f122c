//! `serve smtp`'s web side against a stored fixture (a multipart message
//! with text, HTML, an inline image and an attachment, sent by smtplib):
//! every Mailpit endpoint it covers, with the JSON keys Mailpit's own
//! have, the sandbox on what a message brings, the read flag kept in the
//! Maildir across a restart; and `sonde mail wait`.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::http::{get, request};
use common::mail::{self, SEND_RAW, python};
use common::{Reaper, TempDir, assert_contains, have_peer, run, sonde};
use serde_json::{Value, json};

/// The fixture, its tracking image pointed at `tracker`, written to `dir`.
fn fixture(dir: &TempDir, tracker: u16) -> (PathBuf, Vec<u8>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mixed.eml");
    let text = std::fs::read_to_string(path).expect("the fixture");
    let raw = text.replace("{TRACKER}", &tracker.to_string()).into_bytes();
    let file = dir.join("mixed.eml");
    std::fs::write(&file, &raw).expect("write");
    (file, raw)
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Mailpit's keys for a list, a summary and a message.
const LIST: &[&str] = &[
    "total",
    "unread",
    "count",
    "messages_count",
    "messages_unread",
    "start",
    "tags",
    "messages",
];
const SUMMARY: &[&str] = &[
    "ID",
    "MessageID",
    "Read",
    "From",
    "To",
    "Cc",
    "Bcc",
    "ReplyTo",
    "Subject",
    "Created",
    "Username",
    "Tags",
    "Size",
    "Attachments",
    "Snippet",
];
const MESSAGE: &[&str] = &[
    "ID",
    "MessageID",
    "From",
    "To",
    "Cc",
    "Bcc",
    "ReplyTo",
    "ReturnPath",
    "Subject",
    "ListUnsubscribe",
    "Date",
    "Tags",
    "Username",
    "Text",
    "HTML",
    "Size",
    "Inline",
    "Attachments",
];

#[test]
fn the_api_in_mailpits_shapes() {
    if !have_peer("python3", "python3") {
        return;
    }
    let dir = TempDir::new("smtp-api");
    let store = dir.join("mail");
    let sink = mail::sink(&store, &[]);
    let (file, raw) = fixture(&dir, 9);
    let port = sink.server.port.to_string();
    let file = file.to_str().expect("utf-8");
    python(SEND_RAW, &[&port, file, "ann@example.com"]);
    let plain = dir.join("plain.eml");
    std::fs::write(&plain, b"Subject: second\r\n\r\nplain\r\n").expect("write");
    python(
        SEND_RAW,
        &[&port, plain.to_str().expect("utf-8"), "app@example.com"],
    );
    let web = sink.web;

    let list = get(web, "/api/v1/messages").json();
    assert_eq!(keys(&list), set(LIST), "{list}");
    assert_eq!(
        (list["total"].clone(), list["unread"].clone()),
        (json!(2), json!(2))
    );
    let first = &list["messages"][0];
    assert_eq!(keys(first), set(SUMMARY), "{first}");
    assert_eq!(first["Subject"], "second", "newest first");
    let summary = &list["messages"][1];
    assert_eq!(summary["Subject"], "Café report");
    assert_eq!(
        summary["From"],
        json!({"Name": "Ann Example", "Address": "ann@example.com"})
    );
    assert_eq!(
        summary["To"][1],
        json!({"Name": "Cy D", "Address": "cy@example.com"})
    );
    assert_eq!(summary["Cc"][0]["Address"], "dee@example.com");
    assert_eq!(summary["MessageID"], "fixture-1@example.com");
    assert_eq!(
        (summary["Attachments"].clone(), summary["Size"].clone()),
        (json!(2), json!(raw.len()))
    );
    assert_eq!(summary["Snippet"], "Hello Bob, the report is attached.");
    let id = summary["ID"].as_str().expect("an ID").to_string();

    let m = get(web, &format!("/api/v1/message/{id}")).json();
    assert_eq!(keys(&m), set(MESSAGE), "{m}");
    assert_eq!(m["Text"], "Hello Bob,\r\nthe report is attached.");
    assert_contains(
        m["HTML"].as_str().unwrap_or(""),
        "<h1 id=\"greeting\">Hello Bob</h1>",
    );
    assert_eq!(m["Date"], "2026-12-07T10:00:00Z");
    assert_eq!(m["Inline"][0]["ContentID"], "logo@example.com");
    let attachment = &m["Attachments"][0];
    assert_eq!(
        keys(attachment),
        set(&["PartID", "FileName", "ContentType", "ContentID", "Size"])
    );
    assert_eq!(
        (attachment["PartID"].clone(), attachment["FileName"].clone()),
        (json!("3"), json!("report.csv"))
    );
    assert_eq!(
        get(web, "/api/v1/messages").json()["unread"],
        1,
        "opening it read it"
    );

    assert_eq!(
        get(web, &format!("/api/v1/message/{id}/raw")).body,
        raw,
        "byte-exact"
    );
    let headers = get(web, &format!("/api/v1/message/{id}/headers")).json();
    assert_eq!(headers["X-Trace"], json!(["one", "two"]));
    assert_eq!(headers["Subject"], json!(["=?UTF-8?Q?Caf=C3=A9?= report"]));
    let csv = get(web, &format!("/api/v1/message/{id}/part/3"));
    assert_eq!(csv.body, b"region,sales\r\nnorth,10");
    assert_eq!(csv.header("content-type").as_deref(), Some("text/csv"));
    assert_eq!(
        csv.header("content-disposition").as_deref(),
        Some("attachment; filename=\"report.csv\"")
    );
    assert!(
        csv.header("content-security-policy")
            .is_some_and(|p| p.starts_with("sandbox"))
    );
    let gif = get(web, &format!("/api/v1/message/{id}/part/2"));
    assert!(gif.body.starts_with(b"GIF89a"), "decoded from base64");
    assert_eq!(
        get(web, &format!("/api/v1/message/{id}/part/9")).status,
        404
    );

    let view = get(web, &format!("/view/{id}.html"));
    let policy = view.header("content-security-policy").unwrap_or_default();
    assert!(
        policy.starts_with("sandbox;") && policy.contains("default-src 'none'"),
        "{policy}"
    );
    let html = String::from_utf8_lossy(&view.body);
    assert_contains(&html, &format!("src=\"/api/v1/message/{id}/part/2\""));

    let found = |q: &str| get(web, &format!("/api/v1/search?query={q}")).json();
    let hit = found("subject:caf%C3%A9");
    assert_eq!(keys(&hit), set(LIST));
    assert_eq!(hit["messages_count"], 1);
    assert_eq!(found("to:cy@example.com")["messages"][0]["ID"], id.as_str());
    assert_eq!(found("from:nobody")["messages_count"], 0);
    assert_eq!(found("is:unread")["messages"][0]["Subject"], "second");
    assert_eq!(
        get(web, "/api/v1/messages?start=1&limit=1").json()["messages"][0]["ID"],
        id.as_str()
    );

    for path in ["/livez", "/readyz", "/"] {
        assert_eq!(get(web, path).status, 200, "{path}");
    }
    assert_eq!(get(web, "/api/v1/message/nope").status, 404);

    // The read flag is the Maildir's: a restart keeps it.
    sink.server.stop();
    let again = mail::sink(&store, &[]);
    let list = get(again.web, "/api/v1/messages").json();
    assert_eq!(
        (list["total"].clone(), list["unread"].clone()),
        (json!(2), json!(1))
    );
    assert_eq!(list["messages"][1]["Read"], true);
    // So is the envelope (the second message names its recipient nowhere else).
    let by_envelope = get(again.web, "/api/v1/search?query=to:user@example.com").json();
    assert_eq!(
        by_envelope["messages"][0]["Subject"], "second",
        "{by_envelope}"
    );
    let web = again.web;
    assert_eq!(
        get(web, "/api/v1/message/latest").json()["Subject"],
        "second"
    );
    let second = list["messages"][0]["ID"].as_str().expect("ID").to_string();
    assert_eq!(
        request(web, "DELETE", &format!("/api/v1/message/{second}"), b"").status,
        200
    );
    assert_eq!(get(web, &format!("/api/v1/message/{second}")).status, 404);
    let ids = format!("{{\"IDs\": [\"{id}\"]}}");
    assert_eq!(
        request(web, "DELETE", "/api/v1/messages", ids.as_bytes()).status,
        200
    );
    assert_eq!(get(web, "/api/v1/messages").json()["total"], 0);
    let files = |sub: &str| std::fs::read_dir(store.join(sub)).map_or(0, |d| d.count());
    assert_eq!(files("new") + files("cur"), 0, "their files went too");
    python(
        SEND_RAW,
        &[&again.server.port.to_string(), file, "ann@example.com"],
    );
    assert_eq!(request(web, "DELETE", "/api/v1/messages", b"").status, 200);
    assert_eq!(
        get(web, "/api/v1/messages").json()["total"],
        0,
        "delete all"
    );
    again.server.stop();
}

#[test]
fn mail_wait_takes_the_next_match_or_times_out() {
    if !have_peer("python3", "python3") {
        return;
    }
    let dir = TempDir::new("smtp-wait");
    let sink = mail::sink(Path::new(":memory:"), &[]);
    let web = format!("127.0.0.1:{}", sink.web);
    let mut cmd = sonde();
    cmd.args([
        "mail",
        "wait",
        &web,
        "--to",
        "bob@example.com",
        "--timeout",
        "30",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("mail wait");
    let _reaper = Reaper::new(child.id());
    let stdout = common::collect(child.stdout.take());
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("its first line");
    assert_contains(&line, "waiting on http://");
    let port = sink.server.port.to_string();
    for (to, subject) in [
        ("carl@example.com", "not this"),
        ("bob@example.com", "this one"),
    ] {
        let file = dir.join("m.eml");
        std::fs::write(
            &file,
            format!("To: {to}\r\nSubject: {subject}\r\n\r\nhi\r\n"),
        )
        .expect("write");
        python(
            SEND_RAW,
            &[&port, file.to_str().expect("utf-8"), "app@example.com", to],
        );
    }
    let done = common::finish(child, stdout, common::collect(Some(stderr)));
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let message: Value = serde_json::from_str(&done.stdout_text()).expect("JSON");
    assert_eq!(message["Subject"], "this one");
    assert_eq!(message["To"][0]["Address"], "bob@example.com");

    let wait = |extra: &[&str]| {
        let mut cmd = sonde();
        cmd.args(["mail", "wait", &web]).args(extra);
        run(cmd, b"")
    };
    let stored = wait(&["--subject", "this one", "--stored", "--timeout", "10"]);
    assert_eq!(stored.code(), Some(0), "{}", stored.stderr);
    assert_contains(&stored.stdout_text(), "\"this one\"");
    let none = wait(&["--to", "nobody@example.com", "--timeout", "0.3"]);
    assert_eq!(none.code(), Some(1));
    assert_contains(
        &none.stderr,
        "no message matching to:\"nobody@example.com\"",
    );
    sink.server.stop();
    let gone = wait(&["--timeout", "5"]);
    assert_eq!(gone.code(), Some(1));
    assert_contains(&gone.stderr, "connecting to 127.0.0.1:");
}

#[test]
fn metrics_count_the_messages_stored() {
    if !have_peer("python3", "python3") {
        return;
    }
    let dir = TempDir::new("smtp-metrics");
    let sink = mail::sink(Path::new(":memory:"), &["--metrics", "127.0.0.1:0"]);
    let metrics = sink.server.metrics_port();
    let raw = b"Subject: counted\r\n\r\ncounted\r\n";
    let file = dir.join("counted.eml");
    std::fs::write(&file, raw).expect("write");
    let port = sink.server.port.to_string();
    for _ in 0..2 {
        python(
            SEND_RAW,
            &[&port, file.to_str().expect("utf-8"), "a@example.com"],
        );
    }
    // The 250 comes after the store took the message: counted by then.
    let text = String::from_utf8_lossy(&get(metrics, "/metrics").body).into_owned();
    assert_contains(&text, "sonde_smtp_messages_stored_total 2");
    assert_contains(&text, "sonde_connections_accepted_total 2");
    let bytes = format!("sonde_smtp_stored_bytes_total {}", 2 * raw.len());
    assert_contains(&text, &bytes);
    sink.server.stop();
}
