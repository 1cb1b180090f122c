//! The sending pacer: a token bucket that holds the asked rate over any
//! interval and keeps bursts small (at most 1 ms worth of the rate beyond
//! the steady flow, unless `/BURST` asks for more). Pure: the caller
//! passes the time.

use std::time::Duration;

/// Paces sends to `bits_per_sec`.
#[derive(Clone, Debug)]
pub struct Pacer {
    bytes_per_sec: f64,
    /// Tokens (bytes) that may be sent now.
    tokens: f64,
    /// The most tokens that can pile up.
    capacity: f64,
    last: Duration,
}

impl Pacer {
    /// A pacer for `bits_per_sec` sending blocks of `block` bytes; `burst`
    /// blocks may leave back to back (0 or 1: no bursts).
    pub fn new(bits_per_sec: u64, block: usize, burst: u32) -> Self {
        let bytes_per_sec = bits_per_sec as f64 / 8.0;
        let block = block as f64;
        let millisecond = bytes_per_sec / 1000.0;
        // A burst (or a block), or 1 ms of the rate if that is more, plus
        // one block of slack so a late wake-up is made up for (a capacity of
        // exactly one block would forget every microsecond of lateness). In
        // any 1 ms window at most 2 ms worth, plus one block, can leave.
        let capacity = (f64::from(burst.max(1)) * block).max(millisecond) + block;
        Self {
            bytes_per_sec,
            tokens: block.min(capacity),
            capacity,
            last: Duration::ZERO,
        }
    }

    fn refill(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.bytes_per_sec).min(self.capacity);
    }

    /// At `now` (time since the start), how long to wait before `bytes`
    /// may leave; zero means send now (and the bytes are accounted).
    pub fn wait(&mut self, now: Duration, bytes: usize) -> Duration {
        self.refill(now);
        let need = bytes as f64;
        // The capacity always holds a block, so a full bucket can send;
        // the small slack absorbs floating-point rounding.
        if self.tokens + 1e-6 >= need {
            self.tokens -= need;
            return Duration::ZERO;
        }
        let wait = Duration::from_secs_f64((need - self.tokens) / self.bytes_per_sec);
        wait.max(Duration::from_nanos(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives the pacer with a simulated clock: send whenever allowed,
    /// otherwise jump to the moment it says.
    fn simulate(rate: u64, block: usize, burst: u32, total: Duration) -> Vec<Duration> {
        let mut pacer = Pacer::new(rate, block, burst);
        let mut now = Duration::ZERO;
        let mut sends = Vec::new();
        while now < total {
            let wait = pacer.wait(now, block);
            if wait.is_zero() {
                sends.push(now);
            } else {
                now += wait;
            }
        }
        sends
    }

    #[test]
    fn rate_holds_within_two_percent_every_second() {
        for (rate, block) in [
            (100_000_000, 1400),
            (1_048_576, 1460),
            (10_000_000_000, 131_072),
        ] {
            let sends = simulate(rate, block, 0, Duration::from_secs(3));
            for second in 0..3u64 {
                let from = Duration::from_secs(second);
                let to = from + Duration::from_secs(1);
                let n = sends.iter().filter(|t| **t >= from && **t < to).count();
                let bits = (n * block * 8) as f64;
                let ratio = bits / rate as f64;
                assert!(
                    (0.98..=1.02).contains(&ratio),
                    "rate {rate} block {block}: {ratio}"
                );
            }
        }
    }

    #[test]
    fn no_millisecond_carries_more_than_two_milliseconds_of_rate() {
        let (rate, block) = (100_000_000u64, 1400usize);
        let sends = simulate(rate, block, 0, Duration::from_millis(500));
        let limit = 2.0 * rate as f64 / 8.0 / 1000.0;
        for start in sends.iter() {
            let end = *start + Duration::from_millis(1);
            let n = sends.iter().filter(|t| *t >= start && **t < end).count();
            assert!(
                (n * block) as f64 <= limit + block as f64,
                "{n} blocks in 1 ms"
            );
        }
    }

    #[test]
    fn bursts_leave_back_to_back() {
        let sends = simulate(1_000_000, 1000, 10, Duration::from_millis(100));
        let at_zero = sends.iter().filter(|t| t.is_zero()).count();
        assert!((1..=11).contains(&at_zero));
        let mut pacer = Pacer::new(1_000_000, 1000, 10);
        // After a long pause, ten blocks (and one of slack) may go at once,
        // not more.
        let later = Duration::from_secs(1);
        let burst = (0..20)
            .take_while(|_| pacer.wait(later, 1000).is_zero())
            .count();
        assert_eq!(burst, 11);
    }
}
