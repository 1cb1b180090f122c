//! The measuring loop: closed loop (one message in flight) over TCP or UDP,
//! timed with the monotonic clock (`Instant`, nanosecond resolution).
//! Nothing is allocated per sample: the histogram and buffers are made
//! before the timed section.

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::net::{self, ConnectOptions};

use super::seq::{Reply, SeqTrack};
use super::stats::Latency;

/// The smallest UDP message: room for a sequence number and a timestamp.
pub const MIN_UDP_SIZE: usize = 16;
/// The largest UDP message.
pub const MAX_UDP_SIZE: usize = 65_507;
/// The largest TCP message.
pub const MAX_TCP_SIZE: usize = 16 << 20;

/// How long a run lasts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Length {
    /// This many round trips.
    Count(u64),
    /// This long.
    Time(Duration),
}

/// One closed-loop run.
#[derive(Debug, Clone)]
pub struct RttConfig {
    /// The echo server.
    pub addr: SocketAddr,
    /// UDP instead of TCP.
    pub udp: bool,
    /// Message size in bytes.
    pub size: usize,
    /// Measured part.
    pub length: Length,
    /// Round trips done first and discarded.
    pub warmup: u64,
    /// Warm up for at least this long too (`--warmup 0.5s`).
    pub warmup_time: Duration,
    /// UDP: give up on a reply after this long (counted lost).
    pub timeout: Duration,
    /// Spin on non-blocking reads instead of sleeping in the kernel: lower
    /// latency for a whole CPU.
    pub busy_poll: bool,
    /// Keep every sample (for `--csv`), in memory sized before the run.
    pub keep_samples: bool,
    /// Speak sockperf's ping-pong format (for a stock `sockperf server`).
    pub sockperf: bool,
    /// Begin round trips no more often than this (sockperf's `--mps`):
    /// still one at a time, each waiting for its reply.
    pub pace: Option<Duration>,
    /// TCP: speak TLS to the reflector (`serve echo --tls`).
    pub tls: Option<crate::tls::ClientTls>,
    /// A Unix stream socket to the reflector instead of TCP to `addr`
    /// (`serve echo --unix`): the kernel's round trip without its network
    /// stack, the baseline a TCP figure is compared with.
    pub unix: Option<crate::net::unix::UnixPath>,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct RttReport {
    /// Message size.
    pub size: usize,
    /// Round trips (ns).
    pub latency: Latency,
    /// Warm-up round trips discarded (as many as the warm-up took).
    pub warmup: u64,
    /// Wall time of the measured part.
    pub elapsed: Duration,
    /// UDP accounting (all zero for TCP).
    pub seq: SeqTrack,
    /// Every measured round trip in order (ns), when asked for.
    pub samples: Vec<u64>,
}

impl RttReport {
    /// Adds another run at the same size (a later pass of a sweep).
    pub fn absorb(&mut self, other: RttReport) {
        self.latency.absorb(&other.latency);
        self.warmup += other.warmup;
        self.elapsed += other.elapsed;
        self.seq.absorb(&other.seq);
        self.samples.extend(other.samples);
    }
}

/// Room for the samples of a run, made before it starts.
fn sample_store(config: &RttConfig) -> Vec<u64> {
    if !config.keep_samples {
        return Vec::new();
    }
    let expected = match config.length {
        Length::Count(n) => n,
        // Generous for loopback (200,000 round trips a second).
        Length::Time(t) => (t.as_secs_f64() * 200_000.0) as u64,
    };
    Vec::with_capacity(usize::try_from(expected).unwrap_or(0).min(1 << 28))
}

/// Checks a size against the protocol's limits.
///
/// # Errors
/// [`Error::Invalid`] naming the limits.
pub fn check_size(udp: bool, size: usize) -> Result<()> {
    let (lo, hi, proto) = if udp {
        (MIN_UDP_SIZE, MAX_UDP_SIZE, "UDP")
    } else {
        (1, MAX_TCP_SIZE, "TCP")
    };
    if (lo..=hi).contains(&size) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "message size {size} is out of range for {proto} ({lo} to {hi} bytes)"
        )))
    }
}

/// Runs one closed-loop measurement.
///
/// # Errors
/// Connection failures, a peer that closes or resets, a bad size.
pub fn run(config: &RttConfig) -> Result<RttReport> {
    check_size(config.udp, config.size)?;
    if config.udp {
        run_udp(config)
    } else {
        run_tcp(config)
    }
}

/// Still warming up after `done` round trips begun at `since`?
fn warming(config: &RttConfig, done: u64, since: Instant) -> bool {
    done < config.warmup || since.elapsed() < config.warmup_time
}

/// Waits until round trip `n` of a paced run is due.
fn pace(config: &RttConfig, start: Instant, n: u64) {
    if let Some(gap) = config.pace {
        let due = start + gap.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

fn keep_going(length: Length, done: u64, start: Instant) -> bool {
    match length {
        Length::Count(n) => done < n,
        Length::Time(t) => start.elapsed() < t,
    }
}

fn run_tcp(config: &RttConfig) -> Result<RttReport> {
    let patience = config.timeout.max(Duration::from_secs(5));
    if let Some(path) = &config.unix {
        let sock = crate::net::unix::connect(path)?;
        let setup = if config.busy_poll {
            sock.set_nonblocking(true)
        } else {
            sock.set_read_timeout(Some(patience))
        };
        setup.map_err(|e| Error::io("setting up the socket", e))?;
        return measure_tcp(sock, &format!("unix:{path}"), config, patience);
    }
    let host = config.addr.ip().to_string();
    let (sock, peer) = net::connect_tcp(&host, config.addr.port(), &ConnectOptions::default())?;
    let _ = sock.set_nodelay(true);
    if config.busy_poll {
        sock.set_nonblocking(true)
            .map_err(|e| Error::io("setting up busy polling", e))?;
    }
    // A server that never answers (a discard server, say) fails the run
    // instead of hanging it.
    if !config.busy_poll {
        sock.set_read_timeout(Some(patience))
            .map_err(|e| Error::io("setting a read timeout", e))?;
    }
    match &config.tls {
        None => measure_tcp(sock, &peer, config, patience),
        Some(tls) => {
            let stream = crate::tls::connect_stream(sock, tls, &peer.to_string())
                .map_err(|e| Error::Invalid(e.to_string()))?;
            measure_tcp(stream, &peer, config, patience)
        }
    }
}

/// The round trips of a TCP run over `sock` (plain, or a TLS session).
fn measure_tcp<S: Read + Write>(
    mut sock: S,
    peer: &dyn std::fmt::Display,
    config: &RttConfig,
    patience: Duration,
) -> Result<RttReport> {
    // One buffer goes out and comes back: the reply lands where the next
    // request is read from, so a round trip touches half the memory (on one
    // CPU the client's and the reflector's buffers share the caches).
    let mut msg = vec![b'x'; config.size];
    let mut expected = msg.clone();
    if config.sockperf {
        sockperf_request(&mut expected, 0);
        crate::wire::sockperf::reflect(&mut expected);
    }
    let fail = |e: std::io::Error| {
        if crate::sys::timed_out(&e) {
            Error::Invalid(format!(
                "{peer} sent nothing back for {:.1} s: is it an echo server?",
                patience.as_secs_f64()
            ))
        } else {
            Error::io(format!("echo with {peer}"), e)
        }
    };
    let warm_start = Instant::now();
    // The first round trip is checked: what comes back must be what an
    // echo (or a sockperf) server sends.
    round_trip(&mut sock, &mut msg, config).map_err(|e| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ) {
            Error::Invalid(format!(
                "{peer} closed the connection instead of answering: is it an echo server{}?",
                if config.sockperf {
                    ""
                } else {
                    " (a sockperf server needs --sockperf; a TLS one, --tls)"
                }
            ))
        } else {
            fail(e)
        }
    })?;
    if msg != expected {
        let what = if config.sockperf {
            "a sockperf server"
        } else {
            "an echo server"
        };
        return Err(Error::Invalid(format!(
            "{peer} is not {what}: what came back is not what it would send"
        )));
    }
    let mut warmed = 1u64;
    while warming(config, warmed, warm_start) {
        round_trip(&mut sock, &mut msg, config).map_err(fail)?;
        warmed += 1;
    }
    let mut latency = Latency::new();
    let mut samples = sample_store(config);
    let start = Instant::now();
    let mut done = 0u64;
    while keep_going(config.length, done, start) {
        pace(config, start, done);
        let t0 = Instant::now();
        round_trip(&mut sock, &mut msg, config).map_err(fail)?;
        let rtt = t0.elapsed().as_nanos() as u64;
        latency.record(rtt);
        if config.keep_samples {
            samples.push(rtt);
        }
        done += 1;
    }
    let elapsed = start.elapsed();
    if msg != expected {
        return Err(Error::Invalid(format!(
            "{peer} did not echo the message back unchanged"
        )));
    }
    Ok(RttReport {
        size: config.size,
        latency,
        warmup: warmed,
        elapsed,
        seq: SeqTrack::default(),
        samples,
    })
}

/// Writes a sockperf ping-pong request header (the message is its length).
fn sockperf_request(msg: &mut [u8], seq: u64) {
    use crate::wire::sockperf::{CLIENT, Header, PONG_REQUEST};
    let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
    Header {
        seq,
        flags: CLIENT | PONG_REQUEST,
        len,
    }
    .write(msg);
}

/// One round trip of `msg`, whose reply is read back into it (a sockperf
/// request gets its header written again first, since the reply clears the
/// client flag). With a non-blocking socket (busy poll) it spins on
/// `WouldBlock` instead of sleeping.
fn round_trip(
    sock: &mut (impl Read + Write),
    msg: &mut [u8],
    config: &RttConfig,
) -> std::io::Result<()> {
    let sockperf = config.sockperf;
    // Only a busy-polling (non-blocking) socket asks again when dry; a
    // blocking one that says WouldBlock has timed out.
    let began = Instant::now();
    let patience = config.timeout.max(Duration::from_secs(5));
    let spin = |e: &std::io::Error| {
        (config.busy_poll && spin(e) && began.elapsed() < patience)
            || e.kind() == std::io::ErrorKind::Interrupted
    };
    if sockperf {
        sockperf_request(msg, 0);
    }
    let mut sent = 0;
    while sent < msg.len() {
        match sock.write(&msg[sent..]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if spin(&e) => std::hint::spin_loop(),
            Err(e) => return Err(e),
        }
    }
    let mut got = 0;
    while got < msg.len() {
        match sock.read(&mut msg[got..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if spin(&e) => std::hint::spin_loop(),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn spin(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
    )
}

fn run_udp(config: &RttConfig) -> Result<RttReport> {
    let host = config.addr.ip().to_string();
    let sock = net::connect_udp(&host, config.addr.port(), &ConnectOptions::default())?;
    let fail = |e| Error::io(format!("echo with {}", config.addr), e);
    sock.set_read_timeout(Some(config.timeout)).map_err(fail)?;
    if config.busy_poll {
        sock.set_nonblocking(true).map_err(fail)?;
    }
    let mut out = vec![b'x'; config.size];
    let mut back = vec![0u8; MAX_UDP_SIZE + 1];
    let expected = match config.length {
        Length::Count(n) => n + config.warmup,
        Length::Time(t) => (t.as_secs_f64() * 200_000.0) as u64,
    };
    let mut seq = SeqTrack::with_capacity(expected);
    let mut latency = Latency::new();
    let mut samples = sample_store(config);
    let mut next = 0u64;
    let mut start = Instant::now();
    let mut done = 0u64;
    let mut warmed: Option<u64> = None;
    loop {
        if warmed.is_none() && !warming(config, next, start) {
            warmed = Some(next);
            start = Instant::now();
        }
        let measuring = warmed.is_some();
        if measuring && !keep_going(config.length, done, start) {
            break;
        }
        if measuring {
            pace(config, start, done);
        }
        let this = next;
        next += 1;
        if config.sockperf {
            sockperf_request(&mut out, this);
        } else {
            out[..8].copy_from_slice(&this.to_be_bytes());
        }
        let sent_at = Instant::now();
        seq.sent(this);
        sock.send(&out).map_err(fail)?;
        let reply = await_reply(&sock, &mut back, &mut seq, this, sent_at, config);
        if let Some(rtt) = reply.map_err(fail)?
            && measuring
        {
            latency.record(rtt);
            if config.keep_samples {
                samples.push(rtt);
            }
        }
        if measuring {
            done += 1;
        }
    }
    Ok(RttReport {
        size: config.size,
        latency,
        warmup: warmed.unwrap_or(0),
        elapsed: start.elapsed(),
        seq,
        samples,
    })
}

/// Waits for the reply to `current`; late replies and duplicates are
/// counted and skipped. `None` when it does not come in time (lost).
fn await_reply(
    sock: &UdpSocket,
    back: &mut [u8],
    seq: &mut SeqTrack,
    current: u64,
    sent_at: Instant,
    config: &RttConfig,
) -> std::io::Result<Option<u64>> {
    let deadline = sent_at + config.timeout;
    loop {
        let n = match sock.recv(back) {
            Ok(n) => n,
            // Busy polling: a non-blocking socket says WouldBlock at once.
            Err(e) if spin(&e) && Instant::now() < deadline => {
                std::hint::spin_loop();
                continue;
            }
            Err(e) if crate::sys::timed_out(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let rtt = sent_at.elapsed().as_nanos() as u64;
        // sockperf ignores a reply that still has the CLIENT bit; so do we.
        let answered = !config.sockperf
            || crate::wire::sockperf::Header::read(&back[..n])
                .is_some_and(|h| h.flags & crate::wire::sockperf::CLIENT == 0);
        if n >= MIN_UDP_SIZE && answered {
            let mut word = [0u8; 8];
            word.copy_from_slice(&back[..8]);
            if seq.reply(u64::from_be_bytes(word), current) == Reply::Current {
                return Ok(Some(rtt));
            }
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
    }
}
