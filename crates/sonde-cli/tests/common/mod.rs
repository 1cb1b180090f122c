//! Helpers shared by the binary's integration tests: run `sonde` with a
//! deadline, start a listener and learn its port from stderr.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub mod hostile;
pub mod http;
pub mod mail;

/// Every process a test starts must finish within this, or the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn sonde_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sonde"))
}

pub fn sonde() -> Command {
    Command::new(sonde_path())
}

/// What a finished process left behind.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Collects a pipe on a thread so the child never blocks writing it.
pub fn collect(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut all = Vec::new();
            let _ = pipe.read_to_end(&mut all);
            let _ = tx.send(all);
        });
    } else {
        let _ = tx.send(Vec::new());
    }
    rx
}

/// Waits for `child`, killing it and failing the test past the deadline.
pub fn finish(
    mut child: Child,
    stdout: mpsc::Receiver<Vec<u8>>,
    stderr: mpsc::Receiver<Vec<u8>>,
) -> Finished {
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("polling the child") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("process did not finish within {DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    Finished {
        status,
        stdout: stdout.recv_timeout(DEADLINE).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&stderr.recv_timeout(DEADLINE).unwrap_or_default())
            .into_owned(),
    }
}

/// Runs a command to completion with the given stdin bytes.
pub fn run(mut cmd: Command, stdin: &[u8]) -> Finished {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the command");
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let mut input = child.stdin.take().expect("piped stdin");
    let data = stdin.to_vec();
    thread::spawn(move || {
        use std::io::Write;
        let _ = input.write_all(&data);
    });
    finish(child, stdout, stderr)
}

/// Kills a started server when the test ends without stopping it (a
/// failed assertion), so no server outlives its test.
pub struct Reaper(Option<u32>);

impl Reaper {
    /// Kills `pid` when dropped, unless disarmed.
    pub fn new(pid: u32) -> Self {
        Self(Some(pid))
    }

    /// The process is waited for: nothing is left to kill.
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(pid) = self
            .0
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// A started `sonde listen` whose port is known.
pub struct Listener {
    /// Kills the child if the test ends first.
    pub reaper: Reaper,
    pub child: Child,
    pub port: u16,
    pub stdout: mpsc::Receiver<Vec<u8>>,
    /// The remaining stderr lines, as they come.
    pub stderr_lines: mpsc::Receiver<String>,
    /// The `sonde: ...` lines before the address.
    pub before: Vec<String>,
}

/// Starts `sonde listen ARGS...` (ARGS must bind port 0) with the given
/// stdin and stdout, and reads the bound port from its first stderr line.
pub fn start_listener(args: &[&str], stdin: Stdio, stdout: Stdio) -> Listener {
    let mut all = vec!["listen"];
    all.extend_from_slice(args);
    start_sonde(&all, stdin, stdout)
}

/// Starts `sonde ARGS...` (a server bound to port 0 that reports its
/// address at the end of its first stderr line) and learns the port.
pub fn start_sonde(args: &[&str], stdin: Stdio, stdout: Stdio) -> Listener {
    let mut cmd = sonde();
    cmd.args(args).stdin(stdin).stdout(stdout);
    start_command(cmd)
}

/// `sonde receive DIR --bind 127.0.0.1 -p 0 EXTRA...`, once it listens.
pub fn receiver(dir: &TempDir, extra: &[&str]) -> Listener {
    let mut args = vec![
        "receive",
        dir.0.to_str().expect("utf-8 path"),
        "--bind",
        "127.0.0.1",
        "-p",
        "0",
    ];
    args.extend_from_slice(extra);
    start_sonde(&args, Stdio::null(), Stdio::piped())
}

/// Starts `cmd` (a server bound to port 0 that reports its address at
/// the end of its first stderr line) and learns the port.
pub fn start_command(mut cmd: Command) -> Listener {
    let mut child = cmd.stderr(Stdio::piped()).spawn().expect("starting sonde");
    let stderr = child.stderr.take().expect("piped stderr");
    let stdout = collect(child.stdout.take());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Warnings (a low open-file limit, ...) and notes (a TLS
    // certificate's fingerprint) may come first.
    let mut before = Vec::new();
    let first = rx
        .iter()
        .find(|line| {
            let note = line.starts_with("sonde: ");
            if note {
                before.push(line.clone());
            }
            !note
        })
        .expect("sonde reports its address");
    let port = first
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {first:?}"));
    Listener {
        reaper: Reaper(Some(child.id())),
        child,
        port,
        stdout,
        stderr_lines: rx,
        before,
    }
}

impl Listener {
    /// Waits for the listener to exit; returns its status and stdout.
    pub fn finish(mut self) -> Finished {
        self.reaper.disarm();
        let (tx, rx) = mpsc::channel();
        let lines = self.stderr_lines;
        thread::spawn(move || {
            let text: Vec<String> = lines.iter().collect();
            let _ = tx.send(text.join("\n").into_bytes());
        });
        finish(self.child, self.stdout, rx)
    }

    /// Kills the server and waits for it (a server that has no
    /// graceful end to test).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaper.disarm();
    }

    /// The next stderr line, within the deadline.
    pub fn next_line(&self) -> String {
        self.stderr_lines
            .recv_timeout(DEADLINE)
            .expect("a stderr line from sonde listen")
    }

    /// The port of the metrics endpoint the server announced (`sonde:
    /// metrics on http://ADDR:PORT/metrics`) before its address line.
    pub fn metrics_port(&self) -> u16 {
        let line = self
            .before
            .iter()
            .find(|l| l.contains("metrics on http://"))
            .unwrap_or_else(|| panic!("no metrics line in {:?}", self.before));
        line.trim_end_matches("/metrics")
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line}"))
    }
}

/// Deterministic pseudo-random bytes (xorshift), fast enough for 256 MiB.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("sonde-test-{}-{tag}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("creating a temp dir");
        Self(path)
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether a peer tool is installed; panics when it is missing under
/// SONDE_REQUIRE_PEERS=1 (CI), else says the test is skipped.
pub fn have_peer(program: &str, package: &str) -> bool {
    // Installed means it runs, whatever it makes of --version (openssl
    // refuses the flag).
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var("SONDE_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("{program} is required (SONDE_REQUIRE_PEERS=1) but not installed");
        }
        eprintln!("skipping: {program} is not installed (apt-get install -y {package})");
    }
    found
}

/// A port free for both TCP and UDP (iperf3 and sockperf use one number
/// for both).
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().expect("addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits (polling /proc/net/tcp and tcp6, within the deadline) until
/// something listens on TCP `port`: for servers that print nothing when
/// ready, as `iperf3 -s -J` does.
pub fn wait_tcp_listening(port: u16) {
    let needle = format!(":{port:04X} ");
    let start = Instant::now();
    loop {
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let text = std::fs::read_to_string(table).unwrap_or_default();
            // Columns: sl local_address rem_address st ...; 0A is LISTEN.
            let listening = text.lines().skip(1).any(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                cols.len() > 3 && format!("{} ", cols[1]).ends_with(&needle) && cols[3] == "0A"
            });
            if listening {
                return;
            }
        }
        assert!(start.elapsed() < DEADLINE, "nothing listens on port {port}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Starts a peer's server (`program ARGS...`, its output discarded) and
/// waits until it listens on TCP `port`.
pub fn start_peer_server(program: &str, args: &[&str], port: u16) -> (Child, Reaper) {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    let reaper = Reaper::new(child.id());
    wait_tcp_listening(port);
    (child, reaper)
}

/// Waits (polling /proc/net/unix, within the deadline) until a Unix
/// stream socket listens at `path` (`@NAME` for an abstract name): for
/// peers that print nothing when ready, as socat does.
pub fn wait_unix_listening(path: &str) {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
        // Columns: Num RefCount Protocol Flags Type St Inode Path; the
        // flag 00010000 is a listening socket.
        let listening = text.lines().skip(1).any(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.len() > 7 && cols[3] == "00010000" && cols[7] == path
        });
        if listening {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "nothing listens on unix:{path}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Asserts that `text` contains `needle`, showing `text` when it does not.
#[track_caller]
pub fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "{needle:?} not in:\n{text}");
}

/// `iperf3` or `sonde perf`, by name, for tests that pair the two.
pub fn perf_program(name: &str) -> Command {
    if name == "iperf3" {
        Command::new("iperf3")
    } else {
        let mut c = sonde();
        c.arg("perf");
        c
    }
}

/// Reads `child`'s stdout until a line holding `needle` (a server's
/// banner), then keeps draining it on a thread so the child never blocks
/// on a full pipe. Panics, naming `who`, if the output ends first.
pub fn await_stdout_line(child: &mut Child, needle: &str, who: &str) {
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains(needle) => break,
            Some(Ok(_)) => {}
            _ => panic!("{who} did not print {needle:?}"),
        }
    }
    thread::spawn(move || for _ in lines {});
}

/// Spawns `cmd` with stdout and stderr piped and waits (within the
/// deadline) for a line on either that `ready` accepts; the child, its
/// reaper, and that line (`None` if the output ended or the deadline
/// passed first). Both pipes are drained on threads from then on.
pub fn spawn_ready(cmd: Command, ready: impl Fn(&str) -> bool) -> (Child, Reaper, Option<String>) {
    let (child, reaper, line, rest) = spawn_lines(cmd, ready);
    thread::spawn(move || for _ in rest {});
    (child, reaper, line)
}

/// As [`spawn_ready`], and the lines after that one, from both pipes.
pub fn spawn_lines(
    mut cmd: Command,
    ready: impl Fn(&str) -> bool,
) -> (Child, Reaper, Option<String>, mpsc::Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting a server");
    let reaper = Reaper::new(child.id());
    let (tx, rx) = mpsc::channel();
    let pipes: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ];
    for pipe in pipes.into_iter().flatten() {
        let tx = tx.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let start = Instant::now();
    let line = loop {
        let left = DEADLINE.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) if ready(&line) => break Some(line),
            Ok(_) => {}
            Err(_) => break None,
        }
    };
    (child, reaper, line, rx)
}

/// Starts `cmd`, a `sonde perf -s` (or an iperf3 -s with --forceflush)
/// bound to port 0, and learns its port from "Server listening on PORT".
/// Its stdout and stderr lines after that come on `stderr_lines`.
pub fn start_perf_server(cmd: Command) -> Listener {
    let (child, reaper, line, rest) = spawn_lines(cmd, |l| l.starts_with("Server listening on "));
    let port = line
        .as_deref()
        .and_then(|l| l.strip_prefix("Server listening on "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("perf -s reports no port: {line:?}"));
    let (_, stdout) = mpsc::channel();
    Listener {
        reaper,
        child,
        port,
        stdout,
        stderr_lines: rest,
        before: Vec::new(),
    }
}

/// `sonde perf -s` on 127.0.0.1, port 0, with `extra` flags.
pub fn perf_server(extra: &[&str]) -> Listener {
    let mut cmd = sonde();
    cmd.args(["perf", "-s", "-B", "127.0.0.1", "-p", "0"])
        .args(extra);
    start_perf_server(cmd)
}

/// A one-connection proxy: counts the bytes from client to server, and can
/// cut both sides after `cut` of them (or, with `stall`, stop forwarding
/// there and close only when the client goes) or flip the byte at `flip`.
pub struct Proxy {
    pub port: u16,
    pub forwarded: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub thread: std::thread::JoinHandle<()>,
}

pub fn proxy(to: u16, cut: Option<u64>, flip: Option<u64>) -> Proxy {
    proxy_with(to, cut, flip, false)
}

pub fn proxy_with(to: u16, cut: Option<u64>, flip: Option<u64>, stall: bool) -> Proxy {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy bind");
    let port = listener.local_addr().expect("proxy addr").port();
    let forwarded = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = std::sync::Arc::clone(&forwarded);
    let thread = thread::spawn(move || {
        let (mut client, _) = listener.accept().expect("proxy accept");
        let mut server = std::net::TcpStream::connect(("127.0.0.1", to)).expect("proxy connect");
        let (mut c2, mut s2) = (
            client.try_clone().expect("clone"),
            server.try_clone().expect("clone"),
        );
        let back = thread::spawn(move || {
            let _ = std::io::copy(&mut s2, &mut c2);
            let _ = c2.shutdown(std::net::Shutdown::Write);
        });
        let mut buf = vec![0; 64 * 1024];
        let mut at = 0u64;
        loop {
            let n = match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut n = n as u64;
            if let Some(cut) = cut {
                n = n.min(cut - at);
            }
            if let Some(flip) = flip.filter(|f| (at..at + n).contains(f)) {
                buf[(flip - at) as usize] ^= 0x01;
            }
            if server.write_all(&buf[..n as usize]).is_err() {
                break;
            }
            at += n;
            count.store(at, std::sync::atomic::Ordering::Relaxed);
            if cut == Some(at) && stall {
                // Hold the sender here until it dies.
                let _ = std::io::copy(&mut client, &mut std::io::sink());
                let _ = server.shutdown(std::net::Shutdown::Both);
                break;
            }
            if cut == Some(at) {
                let _ = server.shutdown(std::net::Shutdown::Both);
                let _ = client.shutdown(std::net::Shutdown::Both);
                break;
            }
        }
        let _ = server.shutdown(std::net::Shutdown::Write);
        let _ = back.join();
    });
    Proxy {
        port,
        forwarded,
        thread,
    }
}

/// The SHA-256 a TLS server printed before its address (`sonde: TLS
/// certificate SHA-256 AA:BB:...`), for a client's `--pin`.
pub fn printed_fingerprint(listener: &Listener) -> String {
    let line = listener
        .before
        .iter()
        .find(|l| l.contains("TLS certificate SHA-256"))
        .unwrap_or_else(|| panic!("no fingerprint in {:?}", listener.before));
    line.split_whitespace()
        .nth(4)
        .expect("the fingerprint after SHA-256")
        .to_string()
}

/// A self-signed certificate for localhost and 127.0.0.1, valid from
/// `from` to `until` (years), written as PEM; returns (cert, key).
pub fn certificate(dir: &TempDir, name: &str, from: i32, until: i32) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params");
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("certificate");
    let cert_path = dir.join(&format!("{name}-cert.pem"));
    let key_path = dir.join(&format!("{name}-key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("writing the certificate");
    std::fs::write(&key_path, key.serialize_pem()).expect("writing the key");
    (
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}
