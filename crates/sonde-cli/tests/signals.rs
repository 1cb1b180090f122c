//! Servers stop on SIGINT or SIGTERM with exit 0 (`receive -k` between
//! transfers, `listen -k`, `serve`, `perf -s`); one-shot commands cut
//! short say so with the signal's status (130, 143), as nc and a shell do.

mod common;

use std::process::Stdio;

use common::{Listener, TempDir, start_sonde};
use rustix::process::{Pid, Signal, kill_process};

/// Signals `server` and returns its status as a shell shows it (128 +
/// the signal for a process the signal ended) and what it said after.
fn stop(server: Listener, signal: Signal) -> (Option<i32>, String) {
    use std::os::unix::process::ExitStatusExt;
    let pid = Pid::from_raw(server.child.id() as i32).expect("pid");
    kill_process(pid, signal).expect("a signal");
    let done = server.finish();
    let code = done
        .status
        .code()
        .or_else(|| done.status.signal().map(|s| 128 + s));
    (code, done.stderr)
}

#[test]
fn servers_stop_on_a_signal_with_exit_0() {
    let dir = TempDir::new("signals-receive");
    let dir = dir.0.to_str().expect("utf-8").to_string();
    let servers: [&[&str]; 3] = [
        &["receive", &dir, "--bind", "127.0.0.1", "--port", "0", "-k"],
        &["listen", "-k", "127.0.0.1:0"],
        &["serve", "echo", "--bind", "127.0.0.1", "--port", "0"],
    ];
    for args in servers {
        for signal in [Signal::TERM, Signal::INT] {
            let server = start_sonde(args, Stdio::null(), Stdio::null());
            let (code, said) = stop(server, signal);
            assert_eq!(code, Some(0), "{args:?} on {signal:?}: {said}");
            assert!(!said.contains("panicked"), "{said}");
        }
    }
}

#[test]
fn one_shot_commands_cut_short_exit_with_the_signal() {
    let dir = TempDir::new("signals-once");
    let dir = dir.0.to_str().expect("utf-8").to_string();
    let once: [&[&str]; 2] = [
        &["receive", &dir, "--bind", "127.0.0.1", "--port", "0"],
        &["listen", "127.0.0.1:0"],
    ];
    for args in once {
        for (signal, want) in [(Signal::TERM, 143), (Signal::INT, 130)] {
            let server = start_sonde(args, Stdio::null(), Stdio::null());
            let (code, said) = stop(server, signal);
            assert_eq!(code, Some(want), "{args:?} on {signal:?}: {said}");
        }
    }
}
