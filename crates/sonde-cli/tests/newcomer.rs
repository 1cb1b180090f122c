//! A newcomer's first hour: one command line (HOST PORT where nc takes
//! it), clear words once (a wrong server named as such, no message
//! saying its own text twice), help that says what each subcommand is
//! for without repeating a default, `--json` documents on every failure,
//! completions that end quietly into a closed pipe.

mod common;

use std::process::Stdio;

use common::{Finished, TempDir, assert_contains, run, sonde, start_sonde};
use serde_json::Value;

fn sonde_run(args: &[&str], stdin: &[u8]) -> Finished {
    let mut cmd = sonde();
    cmd.args(args);
    run(cmd, stdin)
}

/// No line says a thing twice: "x: x".
fn says_once(text: &str) {
    for line in text.lines() {
        let parts: Vec<&str> = line.split(": ").collect();
        for pair in parts.windows(2) {
            assert_ne!(pair[0].trim(), pair[1].trim(), "repeated in {line:?}");
        }
    }
}

#[test]
fn completions_end_quietly_into_a_closed_pipe() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let mut child = sonde()
            .args(["completions", shell])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sonde completions");
        // Read one byte and close: the writer meets a closed pipe.
        let mut out = child.stdout.take().expect("stdout");
        let mut one = [0u8; 1];
        let _ = std::io::Read::read(&mut out, &mut one);
        drop(out);
        let done = common::finish(child, common::collect(None::<std::io::Empty>), {
            let (tx, rx) = std::sync::mpsc::channel();
            let _ = tx.send(Vec::new());
            rx
        });
        assert_eq!(done.code(), Some(0), "{shell}: {}", done.stderr);
    }
}

#[test]
fn every_help_says_what_it_is_for_and_each_default_once() {
    let top = sonde_run(&["--help"], b"").stdout_text();
    assert!(!top.contains("command-line tool"), "{top}");
    assert_contains(&top, "throughput");
    let serve = top
        .lines()
        .find(|l| l.trim_start().starts_with("serve"))
        .unwrap_or_default();
    assert_contains(serve, "sockperf");
    for sub in [
        "connect",
        "listen",
        "perf",
        "serve",
        "rtt",
        "send",
        "receive",
        "completions",
    ] {
        let help = sonde_run(&[sub, "--help"], b"").stdout_text();
        let first = help.lines().next().unwrap_or_default();
        assert!(first.len() > 20, "{sub}: first line {first:?}");
        for line in help.lines() {
            assert!(
                !(line.contains("(default") && line.contains("[default:")),
                "{sub}: a default said twice: {line:?}"
            );
        }
    }
}

#[test]
fn send_takes_host_port_counts_stdin_and_creates_the_directory() {
    let dir = TempDir::new("newcomer-send");
    let into = dir.join("new/sub");
    let recv = start_sonde(
        &["receive", into.to_str().expect("utf-8"), "--port", "0"],
        Stdio::null(),
        Stdio::piped(),
    );
    let port = recv.port.to_string();
    let data = vec![5u8; 300_000];
    let done = sonde_run(
        &["send", "-", "127.0.0.1", &port, "--name", "in.bin"],
        &data,
    );
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let summary = done.stdout_text() + &done.stderr;
    assert_contains(&summary, "(293 KiB)");
    let got = recv.finish();
    assert_eq!(got.code(), Some(0), "{}", got.stderr);
    assert_eq!(std::fs::read(into.join("in.bin")).expect("the file"), data);
}

#[test]
fn usage_mistakes_exit_2_and_json_failures_print_a_document() {
    let missing = sonde_run(&["send", "/nonexistent/file", "127.0.0.1", "9"], b"");
    assert_eq!(missing.code(), Some(2), "{}", missing.stderr);
    assert_contains(
        &missing.stderr,
        "/nonexistent/file: no such file or directory",
    );
    let alone = sonde_run(&["send", "file-only"], b"");
    assert_eq!(alone.code(), Some(2), "{}", alone.stderr);
    for (args, code) in [
        (
            vec!["send", "--json", "/nonexistent/file", "127.0.0.1:9"],
            2,
        ),
        (vec!["send", "--json", "Cargo.toml", "127.0.0.1:9"], 1),
    ] {
        let done = sonde_run(&args, b"");
        assert_eq!(done.code(), Some(code), "{args:?}: {}", done.stderr);
        let doc: Value = serde_json::from_slice(&done.stdout).expect("a JSON document");
        assert_eq!(doc["exit_code"], code, "{doc}");
        assert!(
            doc["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{doc}"
        );
    }
}

#[test]
fn the_wrong_server_is_named_once_and_rtt_takes_host_port() {
    let echo = start_sonde(
        &["serve", "echo", "--port", "0"],
        Stdio::null(),
        Stdio::null(),
    );
    let port = echo.port.to_string();
    let dir = TempDir::new("newcomer-wrong");
    let file = dir.join("f.txt");
    std::fs::write(&file, b"hello").expect("a file");
    let done = sonde_run(
        &["send", file.to_str().expect("utf-8"), "127.0.0.1", &port],
        b"",
    );
    assert_eq!(done.code(), Some(1), "{}", done.stderr);
    assert_contains(&done.stderr, "is not a sonde receiver");
    says_once(&done.stderr);
    let rtt = sonde_run(&["rtt", "127.0.0.1", &port, "-n", "50", "--json"], b"");
    assert_eq!(rtt.code(), Some(0), "{}", rtt.stderr);
    let doc: Value = serde_json::from_slice(&rtt.stdout).expect("JSON");
    assert_eq!(doc["rtt_ns"]["count"], 50, "{doc}");
    drop(echo);
}

/// Each client against servers of other kinds: one clear line naming
/// the address and what it is not, said once.
#[test]
fn each_client_names_a_server_of_another_kind() {
    let chargen = start_sonde(
        &["serve", "chargen", "--port", "0"],
        Stdio::null(),
        Stdio::null(),
    );
    let dir = TempDir::new("newcomer-kinds");
    let receiver = start_sonde(
        &[
            "receive",
            dir.join("in").to_str().expect("utf-8"),
            "--port",
            "0",
            "-k",
        ],
        Stdio::null(),
        Stdio::null(),
    );
    let perf_port = common::free_port().to_string();
    let mut perf = sonde()
        .args(["perf", "-s", "-B", "127.0.0.1", "-p", &perf_port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("a perf server");
    let mut perf_reaper = common::Reaper::new(perf.id());
    common::wait_tcp_listening(perf_port.parse().expect("port"));
    let file = dir.join("f.txt");
    std::fs::write(&file, b"x").expect("a file");
    let file = file.to_str().expect("utf-8").to_string();
    let (chargen_port, receive_port) = (chargen.port.to_string(), receiver.port.to_string());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "send".into(),
                file.clone(),
                "127.0.0.1".into(),
                chargen_port.clone(),
            ],
            "does not speak sonde's transfer protocol",
        ),
        (
            vec!["send".into(), file, "127.0.0.1".into(), perf_port.clone()],
            "without sonde's hello",
        ),
        (
            vec![
                "perf".into(),
                "-c".into(),
                "127.0.0.1".into(),
                "-p".into(),
                chargen_port.clone(),
                "-t".into(),
                "1".into(),
            ],
            "does not speak iperf3's protocol",
        ),
        (
            vec![
                "perf".into(),
                "-c".into(),
                "127.0.0.1".into(),
                "-p".into(),
                receive_port,
                "-t".into(),
                "1".into(),
            ],
            "does not speak iperf3's protocol",
        ),
        (
            vec![
                "rtt".into(),
                "127.0.0.1".into(),
                chargen_port,
                "-n".into(),
                "5".into(),
            ],
            "is not an echo server",
        ),
        (
            vec![
                "rtt".into(),
                "127.0.0.1".into(),
                perf_port,
                "-n".into(),
                "5".into(),
            ],
            "instead of answering",
        ),
    ];
    let runs: Vec<_> = cases
        .into_iter()
        .map(|(args, want)| {
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let done = sonde_run(&args, b"");
                assert_eq!(done.code(), Some(1), "{args:?}: {}", done.stderr);
                let last = done.stderr.lines().last().unwrap_or_default().to_string();
                assert_contains(&last, want);
                says_once(&last);
            })
        })
        .collect();
    for run in runs {
        run.join().expect("a client's check");
    }
    let _ = perf.kill();
    let _ = perf.wait();
    perf_reaper.disarm();
    drop((chargen, receiver));
}

/// Every time flag of every subcommand takes decimals (the few that are
/// milliseconds, as iperf3 has them, take whole numbers).
#[test]
fn every_time_flag_takes_decimals() {
    let dir = TempDir::new("newcomer-times");
    let file = dir.join("f");
    std::fs::write(&file, b"x").expect("a file");
    let file = file.to_str().expect("utf-8");
    let cases: &[(&[&str], i32)] = &[
        (
            &[
                "connect",
                "-q",
                "0.5",
                "--idle-timeout",
                "0.5",
                "--connect-timeout",
                "0.5",
                "127.0.0.1",
                "1",
            ],
            1,
        ),
        (
            &["listen", "-q", "0.5", "--idle-timeout", "0.5", "99999"],
            2,
        ),
        (
            &[
                "perf",
                "-c",
                "127.0.0.1",
                "-p",
                "1",
                "-t",
                "0.5",
                "-O",
                "0.5",
                "-i",
                "0.5",
                "--idle-timeout",
                "0.5",
                "--server-max-duration",
                "1.5",
                "--time-skew-threshold",
                "1.5",
            ],
            1,
        ),
        (
            &[
                "serve",
                "echo",
                "--idle-timeout",
                "0.5",
                "--drain-timeout",
                "0.5",
                "--stats-interval",
                "0.5",
                "--port",
                "99999",
            ],
            2,
        ),
        (
            &["rtt", "-t", "0.2", "--timeout", "0.5", "--warmup", "0.1s"],
            0,
        ),
        (
            &[
                "send",
                "--timeout",
                "0.5",
                "--connect-timeout",
                "0.5",
                file,
                "127.0.0.1",
                "1",
            ],
            1,
        ),
        (&["receive", "--timeout", "0.5", "--port", "99999"], 2),
    ];
    for (args, code) in cases {
        let done = sonde_run(args, b"");
        assert_eq!(done.code(), Some(*code), "{args:?}: {}", done.stderr);
        assert!(
            !done.stderr.contains("'0.5'") && !done.stderr.contains("'1.5'"),
            "{args:?} refused a decimal: {}",
            done.stderr
        );
    }
}

/// Ctrl-C (SIGINT) and SIGTERM end a transfer with 130 and 143, saying
/// what they cut short.
#[test]
fn interrupted_transfers_exit_130_or_143_and_say_what_was_cut() {
    use rustix::process::{Pid, Signal, kill_process};
    let dir = TempDir::new("newcomer-interrupt");
    let file = dir.join("f");
    std::fs::write(&file, b"data").expect("a file");
    // A listener that accepts and never says hello: the sender waits.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port().to_string();
    let _holder = std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(2).collect();
        std::thread::sleep(common::DEADLINE);
        drop(held);
    });
    for (signal, code) in [(Signal::INT, 130), (Signal::TERM, 143)] {
        let mut child = sonde()
            .args(["send", file.to_str().expect("utf-8"), "127.0.0.1", &port])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sonde send");
        let mut reaper = common::Reaper::new(child.id());
        let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        // It says what it waits for once a second: then it is waiting.
        let mut line = String::new();
        std::io::BufRead::read_line(&mut err, &mut line).expect("a progress line");
        assert_contains(&line, "waiting for");
        let pid = Pid::from_raw(child.id() as i32).expect("pid");
        kill_process(pid, signal).expect("a signal");
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut rest);
        let status = child.wait().expect("the sender");
        reaper.disarm();
        assert_eq!(status.code(), Some(code), "{signal:?}: {rest}");
        assert_contains(&rest, "interrupted while sending");
        assert_contains(&rest, "run the same command again to resume");
    }
}
