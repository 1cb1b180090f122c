//! `sonde serve smtp` with real clients: Python's smtplib (a message
//! byte-exact in the Maildir, SMTPUTF8 addresses, a 10 MB attachment),
//! swaks (plain, and a message over the size limit refused with 552),
//! and a raw socket for what the libraries never send (pipelined
//! commands, BDAT, bare LF, a long line, commands out of order, a client
//! gone mid-DATA, ten at once); a message answered 250 outlives kill -9.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::http;
use common::mail::{self, SEND_RAW, python};
use common::{DEADLINE, Listener, TempDir, assert_contains, have_peer, run, sonde};

/// `sonde serve smtp` on loopback, its Maildir in `dir`.
fn sink(dir: &Path, extra: &[&str]) -> Listener {
    mail::sink(dir, extra).server
}

/// Each message in the Maildir is the API's `raw`, byte for byte, in
/// the same order (the API lists the newest first).
fn same_through_the_api(web: u16, dir: &Path) {
    let list = http::get(web, "/api/v1/messages").json();
    let mut through: Vec<Vec<u8>> = list["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["ID"].as_str())
        .map(|id| http::get(web, &format!("/api/v1/message/{id}/raw")).body)
        .collect();
    through.reverse();
    assert!(through == stored(dir), "the API's bytes are the Maildir's");
}

/// The messages in the Maildir's `new/`, oldest first.
fn stored(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir.join("new"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read(p).expect("a message"))
        .collect()
}

/// A raw SMTP client: each reply read whole (its last line).
struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Raw {
    fn connect(port: u16) -> Self {
        let writer = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        writer.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let reader = BufReader::new(writer.try_clone().expect("clone"));
        let mut raw = Self { reader, writer };
        assert!(raw.reply().starts_with("220 "));
        raw
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send");
    }

    /// The next reply's last line.
    fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("a reply");
            assert!(!line.is_empty(), "the server closed");
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_string();
            }
        }
    }

    fn say(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }
}

#[test]
fn smtplib_messages_are_stored_byte_exact() {
    if !have_peer("python3", "python3") {
        return;
    }
    let dir = TempDir::new("smtp-smtplib");
    let store = dir.join("mail");
    let mail::Sink { server, web } = mail::sink(&store, &[]);
    let port = server.port.to_string();
    let raw = b"From: app@example.com\r\nTo: user@example.com\r\nSubject: Welcome\r\n\r\nHello\r\n.a line that starts with a dot\r\n8-bit: \xc3\xa9t\xc3\xa9\r\n".to_vec();
    let file = dir.join("one.eml");
    std::fs::write(&file, &raw).expect("write");
    python(
        SEND_RAW,
        &[&port, file.to_str().expect("utf-8"), "app@example.com"],
    );
    assert_contains(
        &server.next_line(),
        "from app@example.com to user@example.com: \"Welcome\"",
    );
    // SMTPUTF8 addresses, and a 10 MB attachment-sized body.
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for i in 0..160_000u32 {
        big.extend_from_slice(format!("{i:08} {}\r\n", "x".repeat(54)).as_bytes());
    }
    let big_file = dir.join("big.eml");
    std::fs::write(&big_file, &big).expect("write");
    let args = [
        port.as_str(),
        big_file.to_str().expect("utf-8"),
        "ünï@example.com",
        "dést@exämple.com",
    ];
    python(SEND_RAW, &args);
    let line = server.next_line();
    assert_contains(&line, "from ünï@example.com to dést@exämple.com");
    let messages = stored(&store);
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0], raw, "byte-exact, dots unstuffed");
    assert!(messages[1] == big, "the 10 MB message byte-exact");
    // And through the API, newest first.
    let list = http::get(web, "/api/v1/messages").json();
    let ids: Vec<&str> = list["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["ID"].as_str())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(
        http::get(web, &format!("/api/v1/message/{}/raw", ids[1])).body,
        raw
    );
    assert!(http::get(web, &format!("/api/v1/message/{}/raw", ids[0])).body == big);
    assert_eq!(
        std::fs::read_dir(store.join("tmp")).expect("tmp").count(),
        0
    );
    server.stop();
}

#[test]
fn swaks_plain_and_over_the_size_limit() {
    if !have_peer("swaks", "swaks") {
        return;
    }
    let dir = TempDir::new("smtp-swaks");
    let store = dir.join("mail");
    let mail::Sink { server, web } = mail::sink(&store, &["--max-message-size", "2000"]);
    let port = server.port.to_string();
    let swaks = |extra: &[&str]| {
        let mut cmd = Command::new("swaks");
        cmd.args([
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--to",
            "dev@example.com",
        ])
        .args(["--from", "app@example.com", "--helo", "tester"])
        .args(extra);
        run(cmd, b"")
    };
    let ok = swaks(&["--header", "Subject: from swaks"]);
    assert_eq!(ok.code(), Some(0), "{}", ok.stdout_text());
    assert_contains(&ok.stdout_text(), "250 2.0.0 Ok: queued as ");
    assert_contains(&server.next_line(), "\"from swaks\"");
    let body = "y".repeat(5000);
    let over = swaks(&["--body", &body]);
    assert_ne!(over.code(), Some(0));
    assert_contains(&over.stdout_text(), "552 5.3.4");
    assert_eq!(
        stored(&store).len(),
        1,
        "nothing of the refused message is kept"
    );
    same_through_the_api(web, &store);
    server.stop();
}

#[test]
fn the_edges_of_the_protocol() {
    let dir = TempDir::new("smtp-edges");
    let store = dir.join("mail");
    let server = sink(&store, &["--max-recipients", "3"]);
    let mut c = Raw::connect(server.port);
    assert!(c.say("MAIL FROM:<a@x>").starts_with("503 "), "before HELO");
    assert!(c.say("FROB").starts_with("500 "), "an unknown command");
    assert!(c.say("VRFY someone").starts_with("252 "));
    // Everything pipelined at once, as PIPELINING allows.
    c.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<1@y>\r\nRCPT TO:<2@y>\r\nRCPT TO:<3@y>\r\nRCPT TO:<4@y>\r\nDATA\r\n");
    let replies: Vec<String> = (0..7).map(|_| c.reply()).collect();
    assert!(replies[0].starts_with("250 "), "{replies:?}");
    assert!(
        replies[5].starts_with("452 "),
        "the fourth recipient: {replies:?}"
    );
    assert!(replies[6].starts_with("354 "), "{replies:?}");
    // Bare LF line endings and a line over 1,000 octets are kept as sent.
    let long = "z".repeat(1500);
    c.send(format!("Subject: edges\nbare LF\n{long}\r\n.\r\n").as_bytes());
    assert!(c.reply().starts_with("250 2.0.0 Ok: queued as "));
    // BDAT, in two chunks.
    assert!(c.say("MAIL FROM:<a@x>").starts_with("250 "));
    assert!(c.say("RCPT TO:<b@y>").starts_with("250 "));
    c.send(b"BDAT 18\r\nSubject: chunked\r\n");
    assert!(c.reply().starts_with("250 "));
    c.send(b"BDAT 8 LAST\r\n\r\nbody\r\n");
    assert!(c.reply().starts_with("250 2.0.0 Ok: queued as "));
    let data = c.say("DATA");
    assert!(data.starts_with("503 "), "DATA with no transaction: {data}");
    assert!(c.say("QUIT").starts_with("221 "));
    let messages = stored(&store);
    assert_eq!(messages.len(), 2);
    // The CRLF before the dot ends the last line: it is the message's.
    let edges = format!("Subject: edges\nbare LF\n{long}\r\n");
    assert_eq!(String::from_utf8_lossy(&messages[0]), edges);
    assert_eq!(messages[1], b"Subject: chunked\r\n\r\nbody\r\n");
    // A client gone mid-DATA leaves nothing behind.
    let mut gone = Raw::connect(server.port);
    gone.say("HELO g");
    gone.say("MAIL FROM:<a@x>");
    gone.say("RCPT TO:<b@y>");
    assert!(gone.say("DATA").starts_with("354 "));
    gone.send(b"Subject: half\r\n\r\nnever ends");
    drop(gone);
    // Ten at once, each stored.
    let clients: Vec<_> = (0..10)
        .map(|i| {
            let port = server.port;
            std::thread::spawn(move || {
                let mut c = Raw::connect(port);
                c.say("EHLO many");
                c.say("MAIL FROM:<a@x>");
                c.say("RCPT TO:<b@y>");
                c.say("DATA");
                c.say(&format!("Subject: {i}\r\n\r\nclient {i}\r\n."))
            })
        })
        .collect();
    for client in clients {
        assert!(client.join().expect("client").starts_with("250 "));
    }
    assert_eq!(
        stored(&store).len(),
        12,
        "the half message is not among them"
    );
    server.stop();
}

#[test]
fn a_message_answered_250_outlives_kill_9() {
    let dir = TempDir::new("smtp-kill");
    let store = dir.join("mail");
    let mut server = sink(&store, &[]);
    let mut c = Raw::connect(server.port);
    c.say("HELO k");
    c.say("MAIL FROM:<a@x>");
    c.say("RCPT TO:<b@y>");
    c.say("DATA");
    assert!(c.say("Subject: kept\r\n\r\nsafe\r\n.").starts_with("250 "));
    server.child.kill().expect("kill -9");
    let _ = server.child.wait();
    assert_eq!(stored(&store), [b"Subject: kept\r\n\r\nsafe\r\n".to_vec()]);
    let mut rest = Vec::new();
    let _ = c.reader.read_to_end(&mut rest);
    server.stop();
}

const STARTTLS_AUTH: &str = "import smtplib, ssl, sys
port, user, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl._create_unverified_context()
with smtplib.SMTP('127.0.0.1', port) as s:
    s.ehlo()
    assert s.has_extn('starttls'), s.esmtp_features
    assert not s.has_extn('auth'), 'AUTH only inside TLS'
    try:
        s.sendmail('a@x', ['b@y'], b'Subject: early\\r\\n\\r\\nx\\r\\n')
        print('sent before TLS')
    except smtplib.SMTPSenderRefused as e:
        print('refused', e.smtp_code)
    s.starttls(context=ctx)
    s.ehlo()
    assert s.has_extn('auth'), s.esmtp_features
    try:
        s.login(user, 'wrong')
    except smtplib.SMTPAuthenticationError as e:
        print('bad password', e.smtp_code)
    s.login(user, pw)
    s.sendmail('a@x', ['b@y'], b'Subject: secret\\r\\n\\r\\nover TLS\\r\\n')
    print('sent')
";

#[test]
fn smtplib_starttls_and_auth() {
    if !have_peer("python3", "python3") {
        return;
    }
    let dir = TempDir::new("smtp-tls");
    let store = dir.join("mail");
    let users = dir.join("users");
    std::fs::write(&users, "ann:s3cret\n").expect("auth file");
    let mail::Sink { server, web } = mail::sink(
        &store,
        &[
            "--require-starttls",
            "--auth-file",
            users.to_str().expect("utf-8"),
        ],
    );
    let out = python(STARTTLS_AUTH, &[&server.port.to_string(), "ann", "s3cret"]);
    assert_eq!(out, "refused 530\nbad password 535\nsent\n");
    assert_eq!(
        stored(&store),
        [b"Subject: secret\r\n\r\nover TLS\r\n".to_vec()]
    );
    same_through_the_api(web, &store);
    server.stop();
}

#[test]
fn swaks_over_implicit_tls_with_auth() {
    if !have_peer("swaks", "swaks") {
        return;
    }
    let dir = TempDir::new("smtp-swaks-tls");
    let store = dir.join("mail");
    let mail::Sink { server, web } = mail::sink(&store, &["--tls", "--auth-accept-any"]);
    let mut cmd = Command::new("swaks");
    cmd.args([
        "--server",
        "127.0.0.1",
        "--port",
        &server.port.to_string(),
        "--tls-on-connect",
    ])
    .args(["--to", "dev@example.com", "--from", "app@example.com"])
    .args([
        "--auth",
        "LOGIN",
        "--auth-user",
        "anyone",
        "--auth-password",
        "anything",
    ])
    .args(["--header", "Subject: implicit"]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(0), "{}", done.stdout_text());
    assert_contains(&done.stdout_text(), "235 2.7.0 Authentication successful");
    assert_eq!(stored(&store).len(), 1);
    same_through_the_api(web, &store);
    server.stop();
}

/// The chaos flags, at probability 1 so the test knows what comes.
#[test]
fn chaos_on_purpose() {
    let dir = TempDir::new("smtp-chaos");
    let store = dir.join("mail");
    let refusing = sink(&store, &["--chaos-sender", "1"]);
    let mut c = Raw::connect(refusing.port);
    c.say("HELO c");
    assert!(c.say("MAIL FROM:<a@x>").starts_with("451 4.3.0"));
    refusing.stop();
    let picky = sink(&store, &["--chaos-recipient", "1"]);
    let mut c = Raw::connect(picky.port);
    c.say("HELO c");
    assert!(c.say("MAIL FROM:<a@x>").starts_with("250 "));
    assert!(c.say("RCPT TO:<b@y>").starts_with("451 4.3.0"));
    picky.stop();
    let dropping = sink(&store, &["--chaos-disconnect", "1"]);
    let mut c = Raw::connect(dropping.port);
    c.say("HELO c");
    c.say("MAIL FROM:<a@x>");
    c.say("RCPT TO:<b@y>");
    assert!(c.say("DATA").starts_with("354 "));
    c.send(b"Subject: lost\r\n\r\nhalf");
    let mut rest = String::new();
    let n = c
        .reader
        .read_to_string(&mut rest)
        .expect("closed, not timed out");
    assert_eq!((n, rest.as_str()), (0, ""), "the line goes dead, no reply");
    dropping.stop();
    assert!(stored(&store).is_empty(), "nothing stored");
    let mut cmd = sonde();
    cmd.args(["serve", "smtp", "--chaos-auth", "1.5"]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(2), "{}", done.stderr);
    assert_contains(&done.stderr, "not a probability");
}
