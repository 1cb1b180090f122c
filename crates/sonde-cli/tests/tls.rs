//! TLS on `connect` and `listen`: sonde to sonde with a pinned
//! self-signed certificate, the real openssl and ncat both ways, and each
//! handshake failure with its one-line message and exit code.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{
    Listener, TempDir, assert_contains, certificate, have_peer, printed_fingerprint, random_bytes,
    run, sonde, start_command,
};

/// A command with its own config directory (where the certificate made
/// for "this user" is kept).
fn sonde_in(config: &Path, args: &[&str]) -> Command {
    let mut cmd = sonde();
    cmd.env("XDG_CONFIG_HOME", config).args(args);
    cmd
}

/// `sonde listen 127.0.0.1:0 ARGS...` with its own config directory.
fn tls_listener(config: &Path, args: &[&str], stdin: Stdio) -> Listener {
    let mut all = vec!["listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut cmd = sonde_in(config, &all);
    cmd.stdin(stdin).stdout(Stdio::piped());
    start_command(cmd)
}

#[test]
fn hello_world_over_tls_with_the_printed_pin() {
    let config = TempDir::new("tls-hello");
    let listener = tls_listener(
        &config.0,
        &["--tls", "--greet", "Hello, World!"],
        Stdio::null(),
    );
    let pin = printed_fingerprint(&listener);
    let key = config.0.join("sonde/tls-key.pem");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key).expect("key kept").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the key is the user's alone");
    let port = listener.port.to_string();
    let client = run(
        sonde_in(
            &config.0,
            &[
                "connect",
                "127.0.0.1",
                &port,
                "--pin",
                &pin,
                "--message",
                "Hello, World!",
            ],
        ),
        b"",
    );
    assert_eq!(client.code(), Some(0), "{}", client.stderr);
    assert_eq!(client.stdout_text(), "Hello, World!");
    let server = listener.finish();
    assert_eq!(server.code(), Some(0), "{}", server.stderr);
    assert_eq!(String::from_utf8_lossy(&server.stdout), "Hello, World!");
}

#[test]
fn sixty_four_mib_arrive_byte_exact() {
    let config = TempDir::new("tls-64m");
    let data = random_bytes(64 << 20, 17);
    let listener = tls_listener(&config.0, &["--tls"], Stdio::null());
    let pin = printed_fingerprint(&listener);
    let port = listener.port.to_string();
    let client = run(
        sonde_in(&config.0, &["connect", "127.0.0.1", &port, "--pin", &pin]),
        &data,
    );
    assert_eq!(client.code(), Some(0), "{}", client.stderr);
    let server = listener.finish();
    assert_eq!(server.code(), Some(0), "{}", server.stderr);
    assert!(
        server.stdout == data,
        "{} bytes arrived of {}",
        server.stdout.len(),
        data.len()
    );
}

#[test]
fn openssl_and_ncat_clients_reach_sonde_listen() {
    let config = TempDir::new("tls-peers-in");
    for (program, package) in [("openssl", "openssl"), ("ncat", "ncat")] {
        if !have_peer(program, package) {
            continue;
        }
        // The server keeps its side open a second after its (empty)
        // input: an openssl s_client told at once that the server is done
        // may leave before it has sent what it read.
        let args = [
            "--tls",
            "--greet",
            "Hello, World!",
            "--no-shutdown",
            "-q",
            "1",
        ];
        let listener = tls_listener(&config.0, &args, Stdio::null());
        let port = listener.port.to_string();
        let mut cmd = Command::new(program);
        match program {
            "openssl" => cmd.args([
                "s_client",
                "-quiet",
                "-connect",
                &format!("127.0.0.1:{port}"),
            ]),
            _ => cmd.args(["--ssl", "127.0.0.1", &port]),
        };
        let client = run(cmd, b"Hello, World!");
        assert_contains(&client.stdout_text(), "Hello, World!");
        let server = listener.finish();
        assert_eq!(server.code(), Some(0), "{program}: {}", server.stderr);
        assert_eq!(
            String::from_utf8_lossy(&server.stdout),
            "Hello, World!",
            "{program}: server: {}; client: {}",
            server.stderr,
            client.stderr
        );
    }
}

/// Starts a TLS server of a peer tool on a free port with `cert`/`key`,
/// sending `greeting` to its client; returns it once it listens.
fn peer_server(program: &str, port: u16, cert: &str, key: &str) -> std::process::Child {
    let mut cmd = Command::new(program);
    let port = port.to_string();
    match program {
        "openssl" => cmd.args([
            "s_server", "-quiet", "-accept", &port, "-cert", cert, "-key", key,
        ]),
        _ => cmd.args([
            "--ssl",
            "-l",
            "127.0.0.1",
            &port,
            "--ssl-cert",
            cert,
            "--ssl-key",
            key,
        ]),
    };
    let child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the peer's server");
    common::wait_tcp_listening(port.parse().expect("port"));
    child
}

#[test]
fn sonde_connect_reaches_openssl_and_ncat_servers() {
    let dir = TempDir::new("tls-peers-out");
    let (cert, key) = certificate(&dir, "server", 2020, 2100);
    for (program, package) in [("openssl", "openssl"), ("ncat", "ncat")] {
        if !have_peer(program, package) {
            continue;
        }
        let port = common::free_port();
        let mut server = peer_server(program, port, &cert, &key);
        let mut reaper = common::Reaper::new(server.id());
        {
            use std::io::Write;
            let mut stdin = server.stdin.take().expect("piped");
            stdin.write_all(b"Hello back\n").expect("greeting");
            // openssl s_server ends its session at EOF of its stdin: keep it open.
            std::mem::forget(stdin);
        }
        // ncat's spelling of the client flags, sonde's meaning.
        let client = run(
            sonde_in(
                &dir.0,
                &[
                    "connect",
                    "127.0.0.1",
                    &port.to_string(),
                    "--ssl",
                    "--ssl-trustfile",
                    &cert,
                    "-q",
                    "1",
                ],
            ),
            b"Hello, World!\n",
        );
        assert_eq!(client.code(), Some(0), "{program}: {}", client.stderr);
        assert_eq!(client.stdout_text(), "Hello back\n", "{program}");
        let _ = server.kill();
        let out = common::finish(
            server,
            common::collect(None::<std::io::Empty>),
            common::collect(None::<std::io::Empty>),
        );
        drop(out);
        reaper.disarm();
    }
}

/// `sonde connect --tls ARGS...` to `port`: its exit code and stderr.
fn failed_connect(config: &Path, port: u16, args: &[&str]) -> (Option<i32>, String) {
    let port = port.to_string();
    let mut all = vec!["connect", "127.0.0.1", port.as_str(), "--tls"];
    all.extend_from_slice(args);
    let client = run(sonde_in(config, &all), b"x");
    (client.code(), client.stderr)
}

#[test]
fn each_handshake_failure_says_why() {
    let config = TempDir::new("tls-fail");
    // An issuer nobody trusts: the fingerprint, and how to pin it.
    let listener = tls_listener(&config.0, &["--tls"], Stdio::null());
    let pin = printed_fingerprint(&listener);
    let (code, stderr) = failed_connect(&config.0, listener.port, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_contains(&stderr, "the certificate's issuer is not trusted");
    assert_contains(&stderr, &format!("--pin {pin}"));
    drop(listener);
    // A pin that does not match: both fingerprints.
    let listener = tls_listener(&config.0, &["--tls"], Stdio::null());
    let wrong = "AB".repeat(32);
    let (code, stderr) = failed_connect(&config.0, listener.port, &["--pin", &wrong]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_contains(&stderr, &format!("SHA-256 is {pin}, not the pinned AB:AB:"));
    drop(listener);
    // The wrong name: the names it carries.
    let ca = config.0.join("sonde/tls-cert.pem").display().to_string();
    let listener = tls_listener(&config.0, &["--tls"], Stdio::null());
    let (code, stderr) = failed_connect(
        &config.0,
        listener.port,
        &["--ca", &ca, "--sni", "example.com"],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_contains(&stderr, "the certificate is for localhost, 127.0.0.1");
    assert_contains(&stderr, "not example.com");
    drop(listener);
    // Expired: its dates.
    let (cert, key) = certificate(&config, "old", 2000, 2001);
    let listener = tls_listener(&config.0, &["--cert", &cert, "--key", &key], Stdio::null());
    let (code, stderr) = failed_connect(&config.0, listener.port, &["--ca", &cert]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_contains(
        &stderr,
        "the certificate expired on 2001-01-01 00:00:00 UTC",
    );
    drop(listener);
}

#[test]
fn plaintext_on_either_side_is_named() {
    let config = TempDir::new("tls-plain");
    // A TLS client, a plaintext server.
    let plain = common::start_listener(
        &["127.0.0.1:0", "--greet", "SSH-2.0-not-tls\r\n"],
        Stdio::null(),
        Stdio::null(),
    );
    let (code, stderr) = failed_connect(&config.0, plain.port, &["--insecure"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_contains(&stderr, "does not speak TLS");
    assert_contains(
        &stderr,
        "--insecure: the server's certificate is not checked",
    );
    drop(plain);
    // A plaintext client, a TLS server: the server says so and exits 1.
    let listener = tls_listener(&config.0, &["--tls"], Stdio::null());
    let port = listener.port.to_string();
    let _ = run(
        sonde_in(&config.0, &["connect", "127.0.0.1", &port]),
        b"GET / HTTP/1.0\r\n\r\n",
    );
    let server = listener.finish();
    assert_eq!(server.code(), Some(1), "{}", server.stderr);
    assert_contains(&server.stderr, "TLS handshake with 127.0.0.1:");
    assert_contains(&server.stderr, "does not speak TLS");
}

#[test]
fn udp_refuses_tls_as_a_usage_error() {
    let config = TempDir::new("tls-udp");
    let client = run(
        sonde_in(&config.0, &["connect", "-u", "127.0.0.1", "9", "--tls"]),
        b"",
    );
    assert_eq!(client.code(), Some(2), "{}", client.stderr);
    assert_contains(&client.stderr, "UDP modes have no DTLS");
}

#[test]
fn a_flipped_byte_breaks_the_session_loudly() {
    let config = TempDir::new("tls-flip");
    let data = random_bytes(1 << 20, 5);
    let listener = tls_listener(&config.0, &["--tls"], Stdio::null());
    let pin = printed_fingerprint(&listener);
    // Past the handshake, inside the data's records.
    let flip = common::proxy(listener.port, None, Some(200_000));
    let client = run(
        sonde_in(
            &config.0,
            &[
                "connect",
                "127.0.0.1",
                &flip.port.to_string(),
                "--pin",
                &pin,
            ],
        ),
        &data,
    );
    let server = listener.finish();
    flip.thread.join().expect("proxy");
    assert_eq!(server.code(), Some(1), "{}", server.stderr);
    assert_contains(&server.stderr, "TLS with 127.0.0.1:");
    assert!(
        server.stdout.len() < data.len(),
        "all {} bytes came through a forged record",
        data.len()
    );
    assert!(
        data.starts_with(&server.stdout),
        "what came before the forged record is the data"
    );
    assert_ne!(client.code(), None);
}

#[test]
fn listen_k_serves_tls_clients_and_shrugs_off_a_plaintext_one() {
    let config = TempDir::new("tls-many");
    let listener = tls_listener(&config.0, &["-k", "--tls"], Stdio::null());
    let pin = printed_fingerprint(&listener);
    let port = listener.port.to_string();
    // Plaintext at a TLS server: that client fails, the others go on.
    let _ = run(
        sonde_in(&config.0, &["connect", "127.0.0.1", &port]),
        b"plain\n",
    );
    for name in ["one", "two"] {
        let line = format!("{name}\n");
        let client = run(
            sonde_in(
                &config.0,
                &[
                    "connect",
                    "127.0.0.1",
                    &port,
                    "--pin",
                    &pin,
                    "--message",
                    &line,
                ],
            ),
            b"",
        );
        assert_eq!(client.code(), Some(0), "{name}: {}", client.stderr);
    }
    let pid = rustix::process::Pid::from_raw(listener.child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("stopping the server");
    let server = listener.finish();
    let got = String::from_utf8_lossy(&server.stdout).into_owned();
    assert!(got.contains("one\n") && got.contains("two\n"), "{got:?}");
    assert!(!got.contains("plain"), "{got:?}");
    assert_contains(&server.stderr, "does not speak TLS");
}
