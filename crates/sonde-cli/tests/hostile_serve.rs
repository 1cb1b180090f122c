//! `serve echo --busy-poll` against idle clients: a client that stops
//! sending stops its spinning (it sleeps until data comes), and spinning
//! places are capped below the CPU count, so idle connections cost no
//! CPU and a good client's round trips still run.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use common::{run, sonde, start_sonde};

/// User and system CPU seconds `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

#[test]
fn idle_busy_poll_clients_burn_no_cpu() {
    let server = start_sonde(
        &[
            "serve",
            "echo",
            "--busy-poll",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
        ],
        Stdio::null(),
        Stdio::null(),
    );
    // Four clients, each with its thread (they sent a byte), then idle.
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut conn = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        conn.write_all(b"x").expect("a byte");
        let mut back = [0u8; 1];
        conn.read_exact(&mut back).expect("echoed");
        idle.push(conn);
    }
    let pid = server.child.id();
    let before = cpu_seconds(pid);
    // The interval measured: what the idle clients cost over a second.
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_seconds(pid) - before;
    assert!(
        used < 0.3,
        "{used:.2} CPU-seconds in 1 s with 4 idle clients"
    );
    // A good client still gets its round trips.
    let mut cmd = sonde();
    cmd.args(["rtt", &format!("127.0.0.1:{}", server.port), "-n", "1000"]);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    drop(idle);
    drop(server);
}
