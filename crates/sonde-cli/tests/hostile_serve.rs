//! `serve` against clients that hold it: idle `echo --busy-poll` clients
//! stop spinning (they sleep until data comes) and spinning places are
//! capped below the CPU count, so they cost no CPU and a good client's
//! round trips still run; `chargen` clients that never read hold only a
//! capped send buffer each, and a reader is served beside them.

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

/// Bytes queued to send on the sockets bound to `port` (the server's
/// side of its connections), from /proc/net/tcp and tcp6.
fn queued_to_send(port: u16) -> u64 {
    let local = format!(":{port:04X}");
    let mut total = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 4 && fields[1].ends_with(&local) {
                let tx = fields[4].split(':').next().unwrap_or("0");
                total += u64::from_str_radix(tx, 16).unwrap_or(0);
            }
        }
    }
    total
}

#[test]
fn chargen_clients_that_never_read_hold_little_and_a_reader_is_served() {
    let server = start_sonde(
        &["serve", "chargen", "--bind", "127.0.0.1", "--port", "0"],
        Stdio::null(),
        Stdio::null(),
    );
    let flood = 400;
    let never_read: Vec<TcpStream> = (0..flood)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).expect("connect"))
        .collect();
    // A good client reads 512 KiB of the pattern while they sit there.
    let mut good = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    good.set_read_timeout(Some(common::DEADLINE))
        .expect("timeout");
    let mut got = vec![0u8; 512 * 1024];
    good.read_exact(&mut got).expect("512 KiB of chargen");
    assert!(
        got.iter()
            .all(|b| (32..127).contains(b) || *b == b'\r' || *b == b'\n')
    );
    // Each connection that never reads holds at most its capped send
    // buffer on the server's side (the kernel doubles the 128 KiB asked,
    // and counts what is in flight), not megabytes.
    let held = queued_to_send(server.port);
    let per = held / flood;
    assert!(
        per <= 320 * 1024,
        "{held} bytes queued for {flood} clients ({per} each)"
    );
    drop(never_read);
    drop(server);
}
