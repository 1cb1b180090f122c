//! The hostile-load harness: loads that attackers and broken networks
//! produce, pointed at a server's address, each bounded in count and time
//! and loopback-only, running on threads until stopped; and the server
//! process's threads, descriptors and memory, to check that they come
//! back once a load ends.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The longest any load runs, whatever its caller does.
const LONGEST: Duration = Duration::from_secs(20);

/// One kind of hostile load.
#[derive(Clone, Copy, Debug)]
pub enum Load {
    /// Connections opened and held, silent.
    Flood(usize),
    /// Connections that send the protocol's valid start a byte at a time,
    /// one byte every 200 ms.
    Slowloris(usize),
    /// Connections that send the valid start, then nothing, forever.
    HalfOpen(usize),
    /// Connections that send random bytes (64 KiB each) and close.
    Garbage(usize),
    /// Connections that send the valid start and a megabyte of junk, then
    /// reset (SO_LINGER 0).
    Resets(usize),
    /// Connections that send as fast as they can and never read.
    NonReaders(usize),
    /// Malformed datagrams, as fast as they go, for the load's time.
    UdpFlood,
}

impl Load {
    /// Every TCP load at `n` connections.
    pub fn all_tcp(n: usize) -> [Load; 6] {
        [
            Load::Flood(n),
            Load::Slowloris(n),
            Load::HalfOpen(n),
            Load::Garbage(n),
            Load::Resets(n),
            Load::NonReaders(n.min(50)),
        ]
    }
}

/// A load running against a server; stops (and closes every connection it
/// holds) when dropped.
pub struct Running {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Starts `load` against `addr`; `start` is a valid opening of the
/// server's protocol (a cookie, a hello; empty for byte services).
/// Returns once every connection of the load is open.
pub fn start(load: Load, addr: SocketAddr, start: &[u8]) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let (count, per_thread) = match load {
        Load::Flood(n) | Load::HalfOpen(n) | Load::Slowloris(n) => (n, n),
        Load::Garbage(n) | Load::Resets(n) => (n, n.div_ceil(8)),
        Load::NonReaders(n) => (n, 1),
        Load::UdpFlood => (1, 1),
    };
    let mut threads = Vec::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut left = count;
    while left > 0 {
        let here = left.min(per_thread);
        left -= here;
        let stop = Arc::clone(&stop);
        let start = start.to_vec();
        let ready = ready_tx.clone();
        threads.push(thread::spawn(move || {
            run(load, addr, &start, here, &stop, &ready);
        }));
    }
    drop(ready_tx);
    // Each thread says once when its connections are open.
    for _ in 0..threads.len() {
        if ready_rx.recv_timeout(super::DEADLINE).is_err() {
            break;
        }
    }
    Running { stop, threads }
}

fn connect(addr: SocketAddr) -> Option<TcpStream> {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()
}

fn until_stopped(stop: &AtomicBool) {
    let began = Instant::now();
    while !stop.load(Ordering::SeqCst) && began.elapsed() < LONGEST {
        thread::sleep(Duration::from_millis(20));
    }
}

fn run(
    load: Load,
    addr: SocketAddr,
    start: &[u8],
    n: usize,
    stop: &AtomicBool,
    ready: &std::sync::mpsc::Sender<()>,
) {
    match load {
        Load::Flood(_) | Load::HalfOpen(_) => {
            let held: Vec<TcpStream> = (0..n)
                .filter_map(|_| connect(addr))
                .map(|mut c| {
                    if matches!(load, Load::HalfOpen(_)) {
                        let _ = c.write_all(start);
                    }
                    c
                })
                .collect();
            let _ = ready.send(());
            until_stopped(stop);
            drop(held);
        }
        Load::Slowloris(_) => {
            let mut held: Vec<TcpStream> = (0..n).filter_map(|_| connect(addr)).collect();
            let _ = ready.send(());
            let began = Instant::now();
            let mut at = 0;
            while !stop.load(Ordering::SeqCst) && began.elapsed() < LONGEST {
                let byte = start.get(at % start.len().max(1)).copied().unwrap_or(b'x');
                held.retain_mut(|c| c.write_all(&[byte]).is_ok());
                at += 1;
                thread::sleep(Duration::from_millis(200));
            }
        }
        Load::Garbage(_) | Load::Resets(_) => {
            let _ = ready.send(());
            let junk = super::random_bytes(
                if matches!(load, Load::Resets(_)) {
                    1 << 20
                } else {
                    64 << 10
                },
                n as u64,
            );
            for _ in 0..n {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Some(mut c) = connect(addr) else { continue };
                if matches!(load, Load::Resets(_)) {
                    let _ = c.write_all(start);
                    let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
                }
                let _ = c.set_write_timeout(Some(Duration::from_millis(100)));
                let _ = c.write_all(&junk);
                if matches!(load, Load::Garbage(_)) {
                    let _ = c.shutdown(Shutdown::Write);
                    let _ = c.set_read_timeout(Some(Duration::from_millis(100)));
                    let _ = c.read(&mut [0u8; 1024]);
                }
            }
        }
        Load::NonReaders(_) => {
            let mut held: Vec<TcpStream> = (0..n).filter_map(|_| connect(addr)).collect();
            let _ = ready.send(());
            let junk = vec![b'a'; 64 << 10];
            for c in &mut held {
                let _ = c.set_nonblocking(true);
                let _ = c.write_all(start);
            }
            let began = Instant::now();
            while !stop.load(Ordering::SeqCst) && began.elapsed() < LONGEST {
                for c in &mut held {
                    let _ = c.write(&junk);
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        Load::UdpFlood => {
            let _ = ready.send(());
            let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
                return;
            };
            let junk = super::random_bytes(1400, 7);
            let began = Instant::now();
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) && began.elapsed() < LONGEST {
                let len = 1 + (i * 131) % junk.len();
                let _ = sock.send_to(&junk[..len], addr);
                i += 1;
                if i.is_multiple_of(256) {
                    thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}

/// A process's threads, open descriptors and resident memory (KiB).
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub threads: usize,
    pub fds: usize,
    pub rss_kib: u64,
}

/// What `pid` holds now.
pub fn usage(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    Usage {
        threads: field("Threads:") as usize,
        fds,
        rss_kib: field("VmRSS:"),
    }
}

/// What `pid` holds once it has held the same for 300 ms (its threads
/// started, its lazy set-up done), at most half the common deadline.
pub fn steady(pid: u32) -> Usage {
    let began = Instant::now();
    let mut last = usage(pid);
    loop {
        thread::sleep(Duration::from_millis(300));
        let now = usage(pid);
        let same = now.threads == last.threads && now.fds == last.fds;
        if same || began.elapsed() > super::DEADLINE / 2 {
            return now;
        }
        last = now;
    }
}

/// Waits (at most 10 s) until `pid`'s threads and descriptors are back
/// to `before`'s and its memory within 10% or 5 MiB of it, whichever is
/// larger; the last usage seen, and whether it came back.
pub fn settles(pid: u32, before: Usage) -> (Usage, bool) {
    let began = Instant::now();
    loop {
        let now = usage(pid);
        let slack = (before.rss_kib / 10).max(5 * 1024);
        let back = now.threads <= before.threads
            && now.fds <= before.fds
            && now.rss_kib <= before.rss_kib + slack;
        if back || began.elapsed() > Duration::from_secs(10) {
            return (now, back);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// One server under load at a time in a test binary: several at once on
/// two CPUs, each with its loads' hundreds of connections, take minutes
/// instead of seconds.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds the machine for one server's bar.
pub fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Connections per load: past what any one good client needs, under
/// every server's default cap.
pub const N: usize = 80;

/// How long each load runs before the good client starts.
const LEAD: Duration = Duration::from_millis(500);

/// The bar (issue 18): runs every load in `loads` against `server`, with
/// `start` as its protocol's valid opening, and `good` (which asserts its
/// own success) before, under each load and after; then checks that the
/// server's threads, descriptors and memory came back, that SIGTERM ends
/// it with 0, and that it never said "panicked".
pub fn bar(
    server: super::Listener,
    start: &[u8],
    loads: &[Load],
    good: impl Fn(u16),
) -> super::Finished {
    let addr: SocketAddr = ([127, 0, 0, 1], server.port).into();
    let pid = server.child.id();
    good(server.port);
    let before = steady(pid);
    for load in loads {
        let running = self::start(*load, addr, start);
        // The load's time at work before the good client comes.
        thread::sleep(LEAD);
        good(server.port);
        drop(running);
    }
    let (after, back) = settles(pid, before);
    assert!(back, "before the loads {before:?}, after {after:?}");
    good(server.port);
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("stop");
    let done = server.finish();
    assert_eq!(done.code(), Some(0), "after SIGTERM: {}", done.stderr);
    assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
    done
}

/// `prlimit --nofile=48:48 sonde ARGS...`; `None` (the test skips) where
/// prlimit is missing, unless peers are required.
pub fn limited(args: &[&str]) -> Option<Command> {
    if Command::new("prlimit").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("SONDE_REQUIRE_PEERS").is_none(),
            "prlimit (util-linux) is required"
        );
        eprintln!("skipping: prlimit is not installed");
        return None;
    }
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=48:48")
        .arg(super::sonde_path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    Some(cmd)
}

/// Floods `server` past its descriptors, counts its warnings over 2.5 s
/// (one a second at most: 1 to 4), frees them, waits until the server has
/// given back every thread and descriptor the flood took (one kept is a
/// leak: a relay once held both sockets of a client whose second
/// direction could not start), and runs `good`. Waiting first is what
/// recovering means: until the server has accepted and closed the
/// flood's dead backlog, a client arriving among it may find no
/// descriptor left for its second socket (a relay's TO).
pub fn exhausts(server: super::Listener, good: impl Fn(u16)) {
    let pid = server.child.id();
    let before = steady(pid);
    let held: Vec<TcpStream> = (0..80)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).expect("a flood connection"))
        .collect();
    let mut warnings = 0;
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_millis(2500) {
        if let Ok(line) = server.stderr_lines.recv_timeout(Duration::from_millis(100))
            && line.contains("accepting a connection")
        {
            warnings += 1;
        }
    }
    assert!((1..=4).contains(&warnings), "{warnings} warnings in 2.5 s");
    drop(held);
    let (after, back) = settles(pid, before);
    assert!(back, "before the flood {before:?}, after {after:?}");
    good(server.port);
    server.stop();
}
