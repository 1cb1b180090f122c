//! iperf3's authentication against Debian's iperf3, both ways: keys made
//! by openssl, good credentials, a wrong password, an unknown user, none
//! at all, a client clock 60 s off (libfaketime), and both paddings.
//! Each server runs with `-1`, so it also shows that refused tests do not
//! count as its one test: it exits after the good one.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Instant;

use common::{DEADLINE, Reaper, TempDir, sonde};

/// A key pair and a users file naming alice (password "secret").
fn credentials(dir: &TempDir) {
    let key = dir.join("private.pem");
    let made = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .stderr(Stdio::null())
        .status()
        .expect("openssl genrsa");
    assert!(made.success());
    let made = Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(dir.join("public.pem"))
        .stderr(Stdio::null())
        .status()
        .expect("openssl rsa -pubout");
    assert!(made.success());
    // echo -n "{alice}secret" | sha256sum
    let users = "# user,sha256(\"{user}password\")\n\
        alice,27b307f21eb6137ab56a3c80a93a5db840e79a697f80f3381c87edaa79a83f6f\n";
    std::fs::write(dir.join("users.csv"), users).expect("users file");
}

fn have_peers() -> bool {
    common::have_peer("iperf3", "iperf3")
        && common::have_peer("openssl", "openssl")
        && common::have_peer("faketime", "faketime")
}

fn command(program: &str) -> Command {
    common::perf_program(program)
}

/// A one-off server with authentication, once it listens.
fn server(program: &str, dir: &Path, extra: &[&str]) -> (Child, u16, Reaper) {
    let port = common::free_port();
    let mut cmd = command(program);
    if program == "iperf3" {
        cmd.arg("--forceflush");
    }
    let mut child = cmd
        .args(["-s", "-1", "-B", "127.0.0.1", "-p", &port.to_string()])
        .arg("--rsa-private-key-path")
        .arg(dir.join("private.pem"))
        .arg("--authorized-users-path")
        .arg(dir.join("users.csv"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("a server");
    let reaper = Reaper::new(child.id());
    common::await_stdout_line(&mut child, "Server listening", program);
    (child, port, reaper)
}

/// One client's test: `user` and `password` (None: no credentials),
/// its clock shifted by `shift` (a faketime offset such as "-60s").
struct Try<'a> {
    user: Option<&'a str>,
    password: &'a str,
    shift: Option<&'a str>,
    extra: &'a [&'a str],
}

const GOOD: Try<'static> = Try {
    user: Some("alice"),
    password: "secret",
    shift: None,
    extra: &[],
};

fn client(program: &str, port: u16, dir: &Path, t: &Try<'_>) -> common::Finished {
    let inner = command(program);
    let mut cmd = match t.shift {
        Some(shift) => {
            let mut c = Command::new("faketime");
            c.args(["-f", shift]).arg(inner.get_program());
            c.args(inner.get_args());
            c
        }
        None => inner,
    };
    cmd.args(["-c", "127.0.0.1", "-p", &port.to_string(), "-t", "1"])
        .args(t.extra)
        .env("IPERF3_PASSWORD", t.password);
    if let Some(user) = t.user {
        cmd.args(["--username", user, "--rsa-public-key-path"])
            .arg(dir.join("public.pem"));
    }
    common::run(cmd, b"")
}

fn refused(program: &str, done: &common::Finished, what: &str) {
    assert_ne!(done.code(), Some(0), "{program}, {what}: ran");
    common::assert_contains(&done.stderr, "test authorization failed");
}

/// Waits for a one-off server to exit after its one good test.
fn exits(mut srv: Child, mut reaper: Reaper) {
    let start = Instant::now();
    while srv.try_wait().expect("the server").is_none() {
        assert!(
            start.elapsed() < DEADLINE,
            "the one-off server did not exit"
        );
        thread::sleep(std::time::Duration::from_millis(10));
    }
    reaper.disarm();
}

/// The flag sonde needs to talk to 3.12, which pads with PKCS#1 v1.5
/// only (and knows no such flag).
fn pkcs1(program: &str) -> &'static [&'static str] {
    if program == "sonde" {
        &["--use-pkcs1-padding"]
    } else {
        &[]
    }
}

/// Every refusal, then the good test, from `client_prog` to `server_prog`.
fn each_case(server_prog: &str, client_prog: &str) {
    let dir = TempDir::new("perf-auth");
    credentials(&dir);
    let (srv, port, reaper) = server(server_prog, &dir.0, pkcs1(server_prog));
    let padding = pkcs1(client_prog);
    let pair = format!("{client_prog} to {server_prog}");
    let cases = [
        (
            "a wrong password",
            Try {
                password: "wrong",
                extra: padding,
                ..GOOD
            },
        ),
        (
            "an unknown user",
            Try {
                user: Some("bob"),
                extra: padding,
                ..GOOD
            },
        ),
        (
            "no credentials",
            Try {
                user: None,
                extra: padding,
                ..GOOD
            },
        ),
        (
            "a clock 60 s slow",
            Try {
                shift: Some("-60s"),
                extra: padding,
                ..GOOD
            },
        ),
    ];
    for (what, t) in &cases {
        refused(&pair, &client(client_prog, port, &dir.0, t), what);
    }
    let good = client(
        client_prog,
        port,
        &dir.0,
        &Try {
            extra: padding,
            ..GOOD
        },
    );
    assert_eq!(good.code(), Some(0), "{pair}, good: {}", good.stderr);
    exits(srv, reaper);
}

#[test]
fn sonde_authenticates_to_iperf3() {
    if !have_peers() {
        return;
    }
    each_case("iperf3", "sonde");
}

#[test]
fn iperf3_authenticates_to_sonde() {
    if !have_peers() {
        return;
    }
    each_case("sonde", "iperf3");
}

#[test]
fn sonde_to_sonde_with_oaep_and_a_padding_mismatch() {
    if !have_peers() {
        return;
    }
    let dir = TempDir::new("perf-auth-oaep");
    credentials(&dir);
    let (srv, port, reaper) = server("sonde", &dir.0, &[]);
    let mismatch = Try {
        extra: &["--use-pkcs1-padding"],
        ..GOOD
    };
    let done = client("sonde", port, &dir.0, &mismatch);
    refused("PKCS#1 to an OAEP server", &done, "padding");
    let done = client("sonde", port, &dir.0, &GOOD);
    assert_eq!(done.code(), Some(0), "OAEP: {}", done.stderr);
    exits(srv, reaper);
    // And sonde's OAEP token is refused by 3.12, which knows only PKCS#1.
    let (srv, port, mut reaper) = server("iperf3", &dir.0, &[]);
    refused(
        "OAEP to iperf3 3.12",
        &client("sonde", port, &dir.0, &GOOD),
        "padding",
    );
    let mut srv = srv;
    let _ = srv.kill();
    let _ = srv.wait();
    reaper.disarm();
}

#[test]
fn half_the_credentials_is_a_usage_error() {
    let done = common::run(
        {
            let mut c = sonde();
            c.args(["perf", "-c", "127.0.0.1", "--username", "alice"]);
            c
        },
        b"",
    );
    assert_eq!(done.code(), Some(2), "{}", done.stderr);
    common::assert_contains(&done.stderr, "--rsa-public-key-path");
    let done = common::run(
        {
            let mut c = sonde();
            c.args(["perf", "-s", "--rsa-private-key-path", "/nonexistent"]);
            c
        },
        b"",
    );
    assert_eq!(done.code(), Some(2), "{}", done.stderr);
    common::assert_contains(&done.stderr, "--authorized-users-path");
}
