//! TLS on the modes beyond connect and listen: every task service of
//! `serve` (echo, discard, chargen, chat, sockperf) with sonde and openssl as
//! clients, `rtt --tls` against `serve echo --tls`, a plaintext client
//! against a TLS server said plainly, and the services that refuse TLS as
//! usage errors.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{
    Listener, TempDir, assert_contains, have_peer, printed_fingerprint, run, sonde, start_command,
};

/// `sonde serve SERVICE --tls` on loopback with its own config directory.
fn tls_service(config: &Path, service: &str, extra: &[&str]) -> Listener {
    let mut cmd = sonde();
    cmd.env("XDG_CONFIG_HOME", config)
        .args([
            "serve",
            service,
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--tls",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    start_command(cmd)
}

/// `sonde connect --tls --pin` to `port`, `input` in; its output.
fn connect(pin: &str, port: u16, input: &[u8], extra: &[&str]) -> common::Finished {
    let mut cmd = sonde();
    let port = port.to_string();
    cmd.args(["connect", "127.0.0.1", &port, "--tls", "--pin", pin])
        .args(extra);
    run(cmd, input)
}

/// `sonde connect --tls --pin` to `server`, running, its output piped.
fn spawn_client(server: &Listener, stdin: Stdio) -> (std::process::Child, common::Reaper) {
    let port = server.port.to_string();
    let pin = printed_fingerprint(server);
    let client = sonde()
        .args(["connect", "127.0.0.1", &port, "--tls", "--pin", &pin])
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("connect");
    let reaper = common::Reaper::new(client.id());
    (client, reaper)
}

#[test]
fn echo_over_tls_answers_sonde_and_openssl() {
    let config = TempDir::new("tls-serve-echo");
    let server = tls_service(&config.0, "echo", &[]);
    let done = connect(
        &printed_fingerprint(&server),
        server.port,
        b"Hello, World!\n",
        &[],
    );
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert_eq!(done.stdout_text(), "Hello, World!\n");
    if have_peer("openssl", "openssl") {
        // s_client -quiet ignores the end of its input: it is stopped once
        // the echo is back.
        let to = format!("127.0.0.1:{}", server.port);
        let mut client = Command::new("openssl")
            .args(["s_client", "-quiet", "-connect", &to])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client");
        let mut reaper = common::Reaper::new(client.id());
        let mut stdin = client.stdin.take().expect("stdin");
        stdin.write_all(b"Hello, World!\n").expect("write");
        let mut line = String::new();
        BufReader::new(client.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the echo");
        assert_eq!(line, "Hello, World!\n");
        let _ = client.kill();
        let _ = client.wait();
        reaper.disarm();
    }
    drop(server);
}

#[test]
fn discard_chargen_and_chat_speak_tls() {
    let config = TempDir::new("tls-serve-more");
    // Discard: what is sent is counted and nothing comes back.
    let discard = tls_service(&config.0, "discard", &[]);
    let done = connect(
        &printed_fingerprint(&discard),
        discard.port,
        &[b'x'; 100_000],
        &[],
    );
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert!(done.stdout.is_empty());
    drop(discard);
    // Chargen: the pattern, decrypted.
    let chargen = tls_service(&config.0, "chargen", &[]);
    let (mut client, mut reaper) = spawn_client(&chargen, Stdio::null());
    let mut line = [0u8; 74];
    client
        .stdout
        .as_mut()
        .expect("stdout")
        .read_exact(&mut line)
        .expect("a chargen line");
    assert_eq!(&line[..10], b" !\"#$%&'()");
    let _ = client.kill();
    let _ = client.wait();
    reaper.disarm();
    drop(chargen);
    // Chat: the welcome, over TLS, while the client is still there.
    let chat = tls_service(&config.0, "chat", &[]);
    let (mut client, mut reaper) = spawn_client(&chat, Stdio::piped());
    let mut out = BufReader::new(client.stdout.take().expect("stdout"));
    let mut welcome = String::new();
    out.read_line(&mut welcome).expect("the welcome");
    assert!(welcome.starts_with("* welcome, user1"), "{welcome:?}");
    let mut stdin = client.stdin.take().expect("stdin");
    stdin.write_all(b"/quit\n").expect("quit");
    drop(stdin);
    let _ = client.wait();
    reaper.disarm();
}

#[test]
fn rtt_over_tls_against_serve_echo_tls() {
    let config = TempDir::new("tls-rtt");
    let server = tls_service(&config.0, "echo", &[]);
    let to = format!("127.0.0.1:{}", server.port);
    let pin = printed_fingerprint(&server);
    let mut cmd = sonde();
    cmd.args([
        "rtt", &to, "--tls", "--pin", &pin, "-n", "200", "-m", "1K", "--json",
    ]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let doc: serde_json::Value = serde_json::from_slice(&done.stdout).expect("JSON");
    assert_eq!(doc["rtt_ns"]["count"], 200, "{doc}");
    assert_eq!(doc["size"], 1024);
    // A sweep over TLS too.
    let mut cmd = sonde();
    cmd.args([
        "rtt", &to, "--tls", "--pin", &pin, "--sweep", "64,16K", "-n", "30",
    ]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    // Without the pin the self-signed certificate is not trusted.
    let mut cmd = sonde();
    cmd.args(["rtt", &to, "--tls", "-n", "5"]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(1));
    assert_contains(&done.stderr, "issuer is not trusted");
    // Plaintext against TLS: named, not a hang.
    let mut cmd = sonde();
    cmd.args(["rtt", &to, "-n", "5"]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(1));
    assert_contains(&done.stderr, "--tls");
    drop(server);
}

#[test]
fn sockperf_ping_pong_over_tls() {
    let config = TempDir::new("tls-sockperf");
    let server = tls_service(&config.0, "sockperf", &[]);
    let to = format!("127.0.0.1:{}", server.port);
    let pin = printed_fingerprint(&server);
    let mut cmd = sonde();
    cmd.args([
        "rtt",
        &to,
        "--sockperf",
        "--tcp",
        "--tls",
        "--pin",
        &pin,
        "-n",
        "300",
        "-m",
        "64K",
        "--json",
    ]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let doc: serde_json::Value = serde_json::from_slice(&done.stdout).expect("JSON");
    assert_eq!(doc["rtt_ns"]["count"], 300, "{doc}");
    // A TLS echo is not a sockperf server: what comes back is checked.
    let echo = tls_service(&config.0, "echo", &[]);
    let to = format!("127.0.0.1:{}", echo.port);
    let pin = printed_fingerprint(&echo);
    let mut cmd = sonde();
    cmd.args([
        "rtt",
        &to,
        "--sockperf",
        "--tcp",
        "--tls",
        "--pin",
        &pin,
        "-n",
        "5",
    ]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(1), "{}", done.stderr);
    assert_contains(&done.stderr, "is not a sockperf server");
    drop((server, echo));
}

#[test]
fn services_without_tls_say_so_as_usage_errors() {
    for args in [
        &["serve", "echo", "--blocking", "--tls"][..],
        &["serve", "echo", "--busy-poll", "--tls"],
        &["serve", "sockperf", "--udp", "--tls"],
        &["serve", "echo", "--udp", "--tls"],
        &["rtt", "127.0.0.1", "-u", "--tls"],
        &["rtt", "--tls"],
    ] {
        let mut cmd = sonde();
        cmd.args(args);
        let done = run(cmd, b"");
        assert_eq!(done.code(), Some(2), "{args:?}: {}", done.stderr);
    }
}
