//! Open loop: messages leave on a schedule (`--rate N`, evenly spaced or
//! Poisson), several in flight, and each latency counts from the moment the
//! message was *due*, not when it actually left, so a stall shows up in the
//! figures instead of hiding (coordinated omission). A sender thread keeps
//! the schedule; this thread takes the replies.

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::net::{self, ConnectOptions};

use super::client::{Length, MIN_UDP_SIZE, RttConfig, RttReport};
use super::seq::{Reply, SeqTrack};
use super::stats::Latency;

/// The send schedule: due times (ns from the start) of `count` messages.
/// Pure; `seed` drives the Poisson spacing.
pub fn schedule(rate: f64, count: u64, poisson: bool, seed: u64) -> Vec<u64> {
    let mean = 1e9 / rate.max(1e-9);
    let mut state = seed | 1;
    let mut t = 0.0f64;
    (0..count)
        .map(|_| {
            let due = t as u64;
            let gap = if poisson {
                // Exponential spacing from a xorshift uniform in (0, 1].
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = ((state >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
                -mean * u.ln()
            } else {
                mean
            };
            t += gap;
            due
        })
        .collect()
}

fn wait_until(start: Instant, due_ns: u64) {
    let due = start + Duration::from_nanos(due_ns);
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > Duration::from_micros(200) {
            thread::sleep(left - Duration::from_micros(100));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Runs an open-loop measurement at `rate` messages per second.
///
/// # Errors
/// Connection failures, a bad size, a peer that closes or resets.
pub fn run(config: &RttConfig, rate: f64, poisson: bool) -> Result<RttReport> {
    super::client::check_size(config.udp, config.size)?;
    let count = match config.length {
        Length::Count(n) => n,
        Length::Time(t) => (t.as_secs_f64() * rate).ceil() as u64,
    };
    let due = Arc::new(schedule(rate, count, poisson, 0x5eed));
    if config.udp {
        udp(config, &due)
    } else {
        tcp(config, &due)
    }
}

fn tcp(config: &RttConfig, due: &Arc<Vec<u64>>) -> Result<RttReport> {
    let patience = Some(config.timeout.max(Duration::from_secs(1)));
    if let Some(path) = &config.unix {
        let sock = crate::net::unix::connect(path)?;
        let peer = format!("unix:{path}");
        let fail = |e| Error::io(format!("echo with {peer}"), e);
        sock.set_read_timeout(patience).map_err(fail)?;
        let writer = sock.try_clone().map_err(fail)?;
        return in_flight((sock, writer), &peer, config, due);
    }
    let host = config.addr.ip().to_string();
    let (sock, peer) = net::connect_tcp(&host, config.addr.port(), &ConnectOptions::default())?;
    let _ = sock.set_nodelay(true);
    let fail = |e| Error::io(format!("echo with {peer}"), e);
    sock.set_read_timeout(patience).map_err(fail)?;
    let writer = sock.try_clone().map_err(fail)?;
    in_flight((sock, writer), &peer, config, due)
}

/// The open loop over a byte stream: `writer` sends on its own thread as
/// the schedule says, while this one reads the replies.
fn in_flight<S: Read + Write + Send + 'static>(
    (mut reader, mut writer): (S, S),
    peer: &dyn std::fmt::Display,
    config: &RttConfig,
    due: &Arc<Vec<u64>>,
) -> Result<RttReport> {
    let fail = |e| Error::io(format!("echo with {peer}"), e);
    let start = Instant::now();
    let sender_due = Arc::clone(due);
    let size = config.size;
    let sender = thread::spawn(move || {
        let msg = vec![b'x'; size];
        for &d in sender_due.iter() {
            wait_until(start, d);
            if writer.write_all(&msg).is_err() {
                break;
            }
        }
    });
    let mut back = vec![0u8; size];
    let mut latency = Latency::new();
    // TCP keeps order, so the k-th reply answers the k-th message.
    for &d in due.iter() {
        reader.read_exact(&mut back).map_err(fail)?;
        let now = start.elapsed().as_nanos() as u64;
        latency.record(now.saturating_sub(d));
    }
    let _ = sender.join();
    Ok(report(
        config,
        latency,
        start.elapsed(),
        SeqTrack::default(),
    ))
}

fn udp(config: &RttConfig, due: &Arc<Vec<u64>>) -> Result<RttReport> {
    let host = config.addr.ip().to_string();
    let sock = net::connect_udp(&host, config.addr.port(), &ConnectOptions::default())?;
    let addr: SocketAddr = config.addr;
    let fail = |e| Error::io(format!("echo with {addr}"), e);
    let writer = sock.try_clone().map_err(fail)?;
    let start = Instant::now();
    let sender_due = Arc::clone(due);
    let size = config.size.max(MIN_UDP_SIZE);
    let sender = thread::spawn(move || send_udp(&writer, &sender_due, start, size));
    let mut seq = SeqTrack::with_capacity(due.len() as u64);
    for s in 0..due.len() as u64 {
        seq.sent(s);
    }
    let latency = receive_udp(&sock, due, start, config.timeout, &mut seq).map_err(fail)?;
    let _ = sender.join();
    Ok(report(config, latency, start.elapsed(), seq))
}

fn send_udp(sock: &UdpSocket, due: &[u64], start: Instant, size: usize) {
    let mut msg = vec![b'x'; size];
    for (s, &d) in due.iter().enumerate() {
        wait_until(start, d);
        msg[..8].copy_from_slice(&(s as u64).to_be_bytes());
        msg[8..16].copy_from_slice(&d.to_be_bytes());
        let _ = sock.send(&msg);
    }
}

/// Takes replies until every message is answered or `timeout` passes after
/// the last one was due; matches them by sequence number.
fn receive_udp(
    sock: &UdpSocket,
    due: &[u64],
    start: Instant,
    timeout: Duration,
    seq: &mut SeqTrack,
) -> std::io::Result<Latency> {
    let mut latency = Latency::new();
    let mut back = vec![0u8; 65_536];
    let last_due = Duration::from_nanos(due.last().copied().unwrap_or(0));
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    while seq.received < due.len() as u64 && start.elapsed() < last_due + timeout {
        let n = match sock.recv(&mut back) {
            Ok(n) => n,
            Err(e) if crate::sys::timed_out(&e) => {
                continue;
            }
            Err(e) => return Err(e),
        };
        let now = start.elapsed().as_nanos() as u64;
        if n < MIN_UDP_SIZE {
            continue;
        }
        let mut word = [0u8; 8];
        word.copy_from_slice(&back[..8]);
        let s = u64::from_be_bytes(word);
        // Several are in flight: every first reply counts, in any order.
        if matches!(seq.reply(s, s), Reply::Current)
            && let Some(&d) = due.get(s as usize)
        {
            latency.record(now.saturating_sub(d));
        }
    }
    Ok(latency)
}

fn report(config: &RttConfig, latency: Latency, elapsed: Duration, seq: SeqTrack) -> RttReport {
    RttReport {
        size: config.size,
        latency,
        warmup: 0,
        elapsed,
        seq,
        samples: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_schedule_is_evenly_spaced() {
        let s = schedule(1000.0, 5, false, 1);
        assert_eq!(s, vec![0, 1_000_000, 2_000_000, 3_000_000, 4_000_000]);
    }

    #[test]
    fn poisson_schedule_keeps_the_mean_rate() {
        let s = schedule(10_000.0, 100_000, true, 7);
        let span = *s.last().expect("non-empty") as f64 / 1e9;
        let rate = s.len() as f64 / span;
        assert!((rate - 10_000.0).abs() / 10_000.0 < 0.02, "{rate}");
        assert!(s.windows(2).all(|w| w[0] <= w[1]));
        let gaps: Vec<u64> = s.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.iter().any(|&g| g < 50_000) && gaps.iter().any(|&g| g > 200_000),
            "spread like an exponential"
        );
    }
}
