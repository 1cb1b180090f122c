//! What a data stream's thread works with, below the senders and
//! receivers that use it: its counters, its inputs ([`Run`]), the payload,
//! and the pacing of `-b`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::budget::Budget;
use super::pacer::Pacer;
use crate::wire::iperf::datagram::UdpRecvStats;
use crate::wire::iperf::params::Params;

/// What a stream's thread counts; read by the control thread.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes sent or received.
    pub bytes: AtomicU64,
    /// Blocks written (TCP) or datagrams sent (UDP).
    pub blocks: AtomicU64,
    /// UDP receive statistics.
    pub udp: Mutex<UdpRecvStats>,
    /// Set when the thread has ended, with why if it failed.
    pub failure: Mutex<Option<String>>,
    /// A sender of `-F`'s file reached its end.
    pub file_done: AtomicBool,
}

/// The monotonic clock as (seconds, microseconds), as iperf3 stamps UDP.
pub fn monotonic() -> (u64, u32) {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (now.tv_sec as u64, (now.tv_nsec / 1000) as u32)
}

/// The payload: random bytes, or "0123456789…" when asked.
pub fn payload(len: usize, repeating: bool) -> Vec<u8> {
    if repeating {
        return (0..len).map(|i| b'0' + (i % 10) as u8).collect();
    }
    let mut buf = vec![0u8; len];
    let _ = rustix::rand::getrandom(&mut buf, rustix::rand::GetRandomFlags::empty());
    buf
}

/// A pacer for `-b`, handing out `piece` bytes at a time; a `/BURST` of
/// blocks becomes as many pieces.
pub(super) fn pacer_for(
    params: &Params,
    piece: usize,
    started: Instant,
) -> Option<(Pacer, Instant)> {
    (params.bandwidth > 0).then(|| {
        let per_block = u32::try_from(params.len as usize / piece.max(1)).unwrap_or(u32::MAX);
        let burst = if params.burst > 1 {
            params.burst.saturating_mul(per_block.max(1))
        } else {
            params.burst
        };
        // Timed from the test's start, not the thread's: a stream that
        // starts late makes up for it (the pacer pays back what it owes).
        (Pacer::new(params.bandwidth, piece, burst), started)
    })
}

/// What a paced TCP stream writes at once: 1 ms of the rate (at least
/// 1 KiB, at most a block), so that no 1 ms carries much more than 2 ms
/// worth however large the block: a 128 KiB block is 10 ms of 100 Mbit/s.
pub(super) fn paced_piece(params: &Params) -> usize {
    let per_ms = usize::try_from(params.bandwidth / 8 / 1000).unwrap_or(usize::MAX);
    per_ms.clamp(1024, (params.len as usize).max(1024))
}

pub(super) fn pace(pacer: &mut Option<(Pacer, Instant)>, bytes: usize, stop: &AtomicBool) {
    // Sleeping overshoots by tens of µs (more on a busy VM): sleep until
    // shortly before the send is due, then spin, so the rate stays exact.
    const SPIN: Duration = Duration::from_micros(250);
    if let Some((pacer, start)) = pacer.as_mut() {
        loop {
            let wait = pacer.wait(start.elapsed(), bytes);
            if wait.is_zero() || stop.load(Ordering::Relaxed) {
                return;
            }
            if wait > SPIN * 2 {
                thread::sleep(wait - SPIN);
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// What a sending thread works with.
pub(super) struct Run<'a> {
    pub(super) params: &'a Params,
    pub(super) c: &'a Counters,
    pub(super) stop: &'a AtomicBool,
    pub(super) budget: &'a Budget,
    /// When the test started (the pacer's clock).
    pub(super) started: Instant,
}

impl Run<'_> {
    /// The pacer for `-b`, on the test's clock, `piece` bytes at a time.
    pub(super) fn pacer(&self, piece: usize) -> Option<(Pacer, Instant)> {
        pacer_for(self.params, piece, self.started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paced(bandwidth: u64, len: u32, burst: u32) -> Params {
        Params {
            bandwidth,
            len,
            burst,
            ..Params::default()
        }
    }

    #[test]
    fn a_paced_tcp_stream_writes_a_millisecond_of_its_rate_at_once() {
        // 100 Mbit/s is 12,500 bytes a millisecond.
        assert_eq!(paced_piece(&paced(100_000_000, 128 << 10, 0)), 12_500);
        // Never under 1 KiB, never over a block.
        assert_eq!(paced_piece(&paced(1_000_000, 128 << 10, 0)), 1024);
        assert_eq!(paced_piece(&paced(10_000_000_000, 128 << 10, 0)), 128 << 10);
        assert_eq!(paced_piece(&paced(1_000_000, 100, 0)), 1024);
    }

    #[test]
    fn a_burst_of_blocks_becomes_as_many_pieces() {
        let p = paced(100_000_000, 125_000, 4);
        let (mut pacer, _) = pacer_for(&p, 12_500, Instant::now()).expect("a pacer");
        // Once the bucket has filled, 4 blocks of 125,000 bytes = 40
        // pieces (and the one of slack) may leave back to back.
        let full = Duration::from_secs(1);
        let mut sent = 0;
        while pacer.wait(full, 12_500).is_zero() {
            sent += 1;
            assert!(sent <= 100, "no limit");
        }
        assert!((40..=42).contains(&sent), "{sent} pieces at once");
        assert!(pacer_for(&paced(0, 1000, 0), 1000, Instant::now()).is_none());
    }
}
