//! The smaller habits of nc and ncat users: `-v` prints OpenBSD nc's
//! line, `-o FILE` and `-x FILE` dump the session (as it is, and in
//! hex), `-d`/`-i SECS` paces the input a line at a time, `-n` refuses
//! names.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{Shutdown, TcpListener};
use std::time::{Duration, Instant};

use common::{Listener, TempDir, assert_contains, have_peer, run, sonde};

fn echo() -> Listener {
    let mut cmd = sonde();
    cmd.args(["serve", "echo", "--bind", "127.0.0.1", "--port", "0"])
        .stdout(std::process::Stdio::null());
    common::start_command(cmd)
}

#[test]
fn session_dumps_as_they_are_and_in_hex() {
    let server = echo();
    let dir = TempDir::new("dumps");
    let (raw, hex) = (dir.join("session.txt"), dir.join("session.hex"));
    let mut cmd = sonde();
    cmd.args([
        "connect",
        "127.0.0.1",
        &server.port.to_string(),
        "--message",
        "hello",
    ])
    .arg("-o")
    .arg(&raw)
    .arg("-x")
    .arg(&hex);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert_eq!(done.stdout_text(), "hello");
    // What was sent and what came back, in the order they moved.
    assert_eq!(std::fs::read(&raw).expect("the session"), b"hellohello");
    let text = std::fs::read_to_string(&hex).expect("the hex dump");
    assert_contains(&text, "68 65 6c 6c 6f");
    assert!(text.lines().any(|l| l.starts_with('>')), "{text}");
    assert!(text.lines().any(|l| l.starts_with('<')), "{text}");
    assert_eq!(done.stderr, "", "the dumps go to their files, not stderr");
    server.stop();
}

#[test]
fn delay_sends_a_line_at_a_time() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let mut each = Vec::new();
        for _ in 0..2 {
            let (conn, _) = listener.accept().expect("accept");
            let mut at = Vec::new();
            for line in BufReader::new(&conn).lines() {
                at.push((line.expect("a line"), Instant::now()));
            }
            each.push(at);
        }
        each
    });
    for flag in ["-d", "-i"] {
        let mut cmd = sonde();
        cmd.args(["connect", flag, "0.2", "127.0.0.1", &port.to_string()]);
        let done = run(cmd, b"one\ntwo\nthree\n");
        assert_eq!(done.code(), Some(0), "{flag}: {}", done.stderr);
    }
    for at in server.join().expect("server") {
        let lines: Vec<&str> = at.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(lines, ["one", "two", "three"]);
        for pair in at.windows(2) {
            let gap = pair[1].1 - pair[0].1;
            // A lower bound only: a busy machine makes gaps longer, not shorter.
            assert!(gap >= Duration::from_millis(150), "lines {gap:?} apart");
        }
    }
}

#[test]
fn verbose_says_what_openbsd_nc_says_and_n_refuses_names() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let serving = std::thread::spawn(move || {
        for _ in 0..2 {
            if let Ok((mut conn, _)) = listener.accept() {
                let mut rest = Vec::new();
                let _ = conn.read_to_end(&mut rest);
                let _ = conn.shutdown(Shutdown::Both);
            }
        }
    });
    let mut cmd = sonde();
    cmd.args([
        "connect",
        "-v",
        "-n",
        "127.0.0.1",
        &port.to_string(),
        "--message",
        "x",
    ]);
    let ours = run(cmd, b"");
    assert_eq!(ours.code(), Some(0), "{}", ours.stderr);
    let line = format!("Connection to 127.0.0.1 {port} port [tcp/");
    assert_contains(&ours.stderr, &line);
    if have_peer("nc.openbsd", "netcat-openbsd") {
        let mut nc = std::process::Command::new("nc.openbsd");
        nc.args(["-v", "-n", "-N", "127.0.0.1", &port.to_string()]);
        let theirs = run(nc, b"x");
        let first = |t: &str| {
            t.lines()
                .find(|l| l.starts_with("Connection to"))
                .map(str::to_string)
        };
        assert_eq!(
            first(&ours.stderr),
            first(&theirs.stderr),
            "the same line as nc -v"
        );
    }
    serving.join().expect("server");
    let mut cmd = sonde();
    cmd.args(["connect", "-n", "localhost", "9"]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(2), "{}", done.stderr);
    assert_contains(&done.stderr, "-n");
}

#[test]
fn broker_passes_each_clients_bytes_to_the_others() {
    let server = common::start_listener(
        &["--broker", "127.0.0.1:0"],
        std::process::Stdio::null(),
        std::process::Stdio::null(),
    );
    let connect = || {
        let conn = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        conn.set_read_timeout(Some(common::DEADLINE))
            .expect("timeout");
        conn
    };
    let (mut a, mut b) = (connect(), connect());
    // Both are members before anyone speaks.
    for _ in 0..2 {
        assert_contains(&server.next_line(), "connection from");
    }
    std::io::Write::write_all(&mut a, b"from a\n").expect("a speaks");
    let mut got = [0u8; 7];
    b.read_exact(&mut got).expect("b hears a");
    assert_eq!(&got, b"from a\n");
    std::io::Write::write_all(&mut b, b"from b\n").expect("b speaks");
    let mut got = [0u8; 7];
    a.read_exact(&mut got).expect("a hears b, not itself");
    assert_eq!(&got, b"from b\n");
    server.stop();
}

#[test]
fn telnet_negotiation_is_refused_with_t() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(common::DEADLINE))
            .expect("timeout");
        // IAC DO ECHO, then a prompt.
        std::io::Write::write_all(&mut conn, &[255, 253, 1]).expect("negotiate");
        std::io::Write::write_all(&mut conn, b"login: ").expect("prompt");
        let mut answer = [0u8; 3];
        conn.read_exact(&mut answer).expect("an answer");
        answer
    });
    let mut cmd = sonde();
    cmd.args([
        "connect",
        "-t",
        "--recv-only",
        "127.0.0.1",
        &port.to_string(),
    ]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert_eq!(
        done.stdout, b"login: ",
        "the negotiation kept out of the output"
    );
    assert_eq!(
        server.join().expect("server"),
        [255, 252, 1],
        "IAC WON'T ECHO"
    );
}

/// The world's most typed nc line, `nc -lvnp PORT`, and traditional nc's
/// `-l ADDR -p PORT`: the same listener as `listen [ADDR:]PORT`.
#[test]
fn listen_takes_ncs_l_v_n_p() {
    for args in [vec!["-lvnp", "0"], vec!["-l", "127.0.0.1", "-p", "0"]] {
        let mut cmd = sonde();
        cmd.arg("listen")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped());
        let server = common::start_command(cmd);
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        std::io::Write::write_all(&mut conn, b"to the listener\n").expect("write");
        drop(conn);
        let done = server.finish();
        assert_eq!(done.code(), Some(0), "{args:?}: {}", done.stderr);
        assert_eq!(done.stdout_text(), "to the listener\n", "{args:?}");
    }
    let mut cmd = sonde();
    cmd.args(["listen", "9000", "-p", "9001"]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(2), "{}", done.stderr);
    assert_contains(&done.stderr, "give the port once");
}

/// `-vv` ends with ncat's count of what moved.
#[test]
fn vv_counts_what_moved() {
    let server = echo();
    let mut cmd = sonde();
    cmd.args([
        "connect",
        "-vv",
        "127.0.0.1",
        &server.port.to_string(),
        "--message",
        "hello",
    ]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert_contains(&done.stderr, "succeeded!");
    assert_contains(&done.stderr, "sonde: 5 bytes sent, 5 bytes received in ");
    server.stop();
}
