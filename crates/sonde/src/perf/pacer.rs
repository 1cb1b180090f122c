//! The sending pacer: a token bucket that holds the asked rate over any
//! interval and keeps bursts small (at most 1 ms worth of the rate beyond
//! the steady flow, unless `/BURST` asks for more). Time lost to a late
//! wake-up (tokens that overflowed the bucket) is owed, up to 100 ms of the
//! rate, and paid back at half the rate through a half-size bucket, so the
//! average holds and no 1 ms still carries more than 2 ms worth. Pure: the
//! caller passes the time.

use std::time::Duration;

/// Paces sends to `bits_per_sec`.
#[derive(Clone, Debug)]
pub struct Pacer {
    bytes_per_sec: f64,
    /// Tokens (bytes) that may be sent now.
    tokens: f64,
    /// The most tokens that can pile up.
    capacity: f64,
    /// The same while time owed is paid back.
    paying_capacity: f64,
    /// Tokens lost to lateness, still to be paid back.
    owed: f64,
    /// The most that can be owed.
    owed_limit: f64,
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
        let bursts = f64::from(burst.max(1)) * block;
        let capacity = bursts.max(millisecond) + block;
        // Paying back adds half the rate: half a millisecond of bucket keeps
        // any 1 ms within 0.5 + 1.5 = 2 ms worth (plus a block).
        let paying_capacity = bursts.max(millisecond / 2.0) + block;
        Self {
            bytes_per_sec,
            tokens: block.min(capacity),
            capacity,
            paying_capacity,
            owed: 0.0,
            owed_limit: 100.0 * millisecond,
            last: Duration::ZERO,
        }
    }

    fn refill(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.last = self.last.max(now);
        let mut fresh = elapsed * self.bytes_per_sec;
        if self.owed > 0.0 {
            let back = (fresh / 2.0).min(self.owed);
            self.owed -= back;
            fresh += back;
        }
        let cap = if self.owed > 0.0 {
            self.paying_capacity
        } else {
            self.capacity
        };
        let total = self.tokens + fresh;
        if total > cap {
            self.owed = (self.owed + total - cap).min(self.owed_limit);
            self.tokens = cap;
        } else {
            self.tokens = total;
        }
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

    /// Sends as `simulate` does, but wakes `late` after the moment asked
    /// every `every`-th wait: a loaded machine.
    fn simulate_late(rate: u64, block: usize, late: Duration, every: u32) -> Vec<Duration> {
        let mut pacer = Pacer::new(rate, block, 0);
        let (mut now, mut n, mut sends) = (Duration::ZERO, 0u32, Vec::new());
        while now < Duration::from_secs(3) {
            let wait = pacer.wait(now, block);
            if wait.is_zero() {
                sends.push(now);
            } else {
                n += 1;
                now += wait + if n % every == 0 { late } else { Duration::ZERO };
            }
        }
        sends
    }

    #[test]
    fn late_wake_ups_are_paid_back_smoothly() {
        let (rate, block) = (10_000_000u64, 1400usize);
        // 3 ms late every 50th wait: without paying back, about 5% is lost.
        let sends = simulate_late(rate, block, Duration::from_millis(3), 50);
        for second in 0..3u64 {
            let from = Duration::from_secs(second);
            let to = from + Duration::from_secs(1);
            let n = sends.iter().filter(|t| **t >= from && **t < to).count();
            let ratio = (n * block * 8) as f64 / rate as f64;
            assert!((0.98..=1.02).contains(&ratio), "second {second}: {ratio}");
        }
        let limit = 2.0 * rate as f64 / 8.0 / 1000.0;
        for start in &sends {
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
