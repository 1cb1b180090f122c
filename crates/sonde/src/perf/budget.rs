//! The blocks a counted test (`-n BYTES` or `-k BLOCKS`) may send, shared
//! by all its sending streams, so that the senders stop at the count
//! themselves instead of overshooting while the control thread looks.
//!
//! As in iperf3: `-k` counts blocks (TCP writes, UDP datagrams), `-n` sends
//! whole blocks until the bytes reach the count, and the omitted seconds
//! (`-O`) do not count: the budget is armed when they end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::wire::iperf::params::Params;

/// The blocks a counted test sends: `-k`, or `-n` in whole blocks; `None`
/// for a timed test.
pub fn count(params: &Params) -> Option<u64> {
    if params.blockcount > 0 {
        Some(params.blockcount)
    } else if params.num > 0 {
        Some(params.num.div_ceil(u64::from(params.len.max(1))))
    } else {
        None
    }
}

/// A count of blocks to send, taken from by every sending stream.
#[derive(Debug)]
pub struct Budget {
    /// Blocks allowed once armed; `None`: a timed test, no limit.
    limit: Option<u64>,
    taken: AtomicU64,
    armed: AtomicBool,
}

impl Budget {
    /// The budget of a test with `params`; armed at once unless the test
    /// omits its first seconds.
    pub fn for_params(params: &Params) -> Self {
        Self {
            limit: count(params),
            taken: AtomicU64::new(0),
            armed: AtomicBool::new(params.omit == 0),
        }
    }

    /// No limit.
    pub fn unlimited() -> Self {
        Self {
            limit: None,
            taken: AtomicU64::new(0),
            armed: AtomicBool::new(false),
        }
    }

    /// Whether the test is counted rather than timed.
    pub fn is_limited(&self) -> bool {
        self.limit.is_some()
    }

    /// Takes up to `want` blocks; returns how many may be sent now (0: the
    /// count is reached and the sender should stop).
    pub fn take(&self, want: u64) -> u64 {
        let Some(limit) = self.limit else {
            return want;
        };
        if !self.armed.load(Ordering::Acquire) {
            // Counted even now, so that `arm` knows what is still in flight.
            self.taken.fetch_add(want, Ordering::AcqRel);
            return want;
        }
        let mut taken = self.taken.load(Ordering::Acquire);
        loop {
            let grant = limit.saturating_sub(taken).min(want);
            if grant == 0 {
                return 0;
            }
            match self.taken.compare_exchange_weak(
                taken,
                taken + grant,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return grant,
                Err(now) => taken = now,
            }
        }
    }

    /// Returns `n` blocks taken but not sent (a send that failed and will
    /// be tried again).
    pub fn give_back(&self, n: u64) {
        if self.limit.is_some() {
            self.taken.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Starts the count at the end of the omitted seconds, when the
    /// senders had sent `sent` blocks in all: blocks taken since, or taken
    /// before and still being written, count.
    pub fn arm(&self, sent: u64) {
        if self.armed.load(Ordering::Acquire) {
            return;
        }
        // The count first, then the flag: a sender that saw the flag set
        // before the count was brought down would find the whole omitted
        // second's blocks taken, get none, and stop for good (a counted
        // test then never ended). Blocks taken meanwhile, unarmed, are
        // still added to the count.
        let _ = self
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_sub(sent))
            });
        self.armed.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(num: u64, blockcount: u64, len: u32, omit: u32) -> Params {
        Params {
            num,
            blockcount,
            len,
            omit,
            ..Params::default()
        }
    }

    #[test]
    fn block_counts_are_exact_across_streams() {
        let b = Budget::for_params(&params(0, 10, 1000, 0));
        assert!(b.is_limited());
        let mut sent = 0;
        // Two streams taking in turn, one block or a batch at a time.
        for want in [1, 4, 1, 4, 1, 4] {
            sent += b.take(want);
        }
        assert_eq!(sent, 10);
        assert_eq!(b.take(1), 0);
        assert_eq!(b.take(64), 0);
    }

    #[test]
    fn bytes_round_up_to_whole_blocks_as_iperf3_does() {
        let b = Budget::for_params(&params(1000, 0, 131_072, 0));
        assert_eq!(b.take(1), 1);
        assert_eq!(b.take(1), 0);
        let b = Budget::for_params(&params(1 << 20, 0, 131_072, 0));
        assert_eq!(b.take(100), 8);
    }

    #[test]
    fn omitted_seconds_do_not_count() {
        let b = Budget::for_params(&params(0, 3, 1000, 2));
        assert_eq!(b.take(50), 50, "unlimited while omitting");
        // 49 of the 50 were written when omitting ended; one is in flight
        // and counts.
        b.arm(49);
        assert_eq!(b.take(1), 1);
        assert_eq!(b.take(2), 1);
        b.arm(0);
        assert_eq!(b.take(1), 0, "arming twice does not refill");
    }

    #[test]
    fn a_sender_taking_while_the_count_is_armed_gets_its_blocks() {
        // The omitted second took (and sent) many blocks; a sender keeps
        // taking while the control thread arms the count. It must end with
        // at least the count, never stop early on the omitted blocks.
        for _ in 0..500 {
            let b = std::sync::Arc::new(Budget::for_params(&params(0, 5, 1000, 1)));
            assert_eq!(b.take(100_000), 100_000);
            let sender = {
                let b = std::sync::Arc::clone(&b);
                std::thread::spawn(move || {
                    let mut got = 0u64;
                    while b.take(1) == 1 {
                        got += 1;
                        assert!(got < 10_000_000, "no limit");
                    }
                    got
                })
            };
            b.arm(100_000);
            let got = sender.join().expect("the sender");
            assert!(got >= 5, "the sender stopped after {got} of 5 blocks");
        }
    }

    #[test]
    fn blocks_given_back_can_be_taken_again() {
        let b = Budget::for_params(&params(0, 10, 1000, 0));
        assert_eq!(b.take(8), 8);
        assert_eq!(b.take(4), 2);
        b.give_back(2);
        assert_eq!(b.take(64), 2);
        assert_eq!(b.take(1), 0);
    }

    #[test]
    fn timed_tests_are_unlimited() {
        let b = Budget::for_params(&params(0, 0, 1000, 0));
        assert!(!b.is_limited());
        assert_eq!(b.take(64), 64);
        assert_eq!(Budget::unlimited().take(7), 7);
    }
}
