//! The receiver's floor under a sender's rate: a connection that brings
//! fewer than `--min-rate` bytes a second over a whole window (the
//! `--timeout`) is dropped, so a sender that drips a byte now and then,
//! never silent long enough for the timeout, cannot hold a receiver's
//! place for as long as it likes. Only the time spent waiting in reads
//! counts: while the receiver is busy itself (hashing a large file in
//! place, committing a batch), the sender is not to blame. Pure: the
//! caller gives the time waited.

use std::io::{self, Read};
use std::time::{Duration, Instant};

/// Counts what arrives in windows of `window` spent waiting for it.
#[derive(Clone, Debug)]
pub(crate) struct RateFloor {
    min_per_sec: u64,
    window: Duration,
    waited: Duration,
    bytes: u64,
}

impl RateFloor {
    /// A floor of `min_per_sec` bytes a second (`None`: 0, no floor).
    pub(crate) fn new(min_per_sec: u64, window: Duration) -> Option<Self> {
        (min_per_sec > 0 && !window.is_zero()).then_some(Self {
            min_per_sec,
            window,
            waited: Duration::ZERO,
            bytes: 0,
        })
    }

    /// Counts `n` bytes that took `waited` to arrive; the complaint when a
    /// window closed under the floor.
    pub(crate) fn arrived(&mut self, n: usize, waited: Duration) -> Result<(), String> {
        self.bytes += n as u64;
        self.waited += waited;
        let spent = self.waited;
        if spent < self.window {
            return Ok(());
        }
        let floor = (self.min_per_sec as f64 * spent.as_secs_f64()) as u64;
        if self.bytes < floor {
            return Err(format!(
                "it sent {} bytes in {:.1} s, under --min-rate {} bytes/s",
                self.bytes,
                spent.as_secs_f64(),
                self.min_per_sec
            ));
        }
        self.waited = Duration::ZERO;
        self.bytes = 0;
        Ok(())
    }
}

/// A reader under a floor (none: as it is), which first hands out the
/// bytes read before it existed (`early`: the offer the front door read).
pub(crate) struct Floored<R> {
    pub(crate) inner: R,
    pub(crate) floor: Option<RateFloor>,
    pub(crate) early: io::Cursor<Vec<u8>>,
}

impl<R: Read> Read for Floored<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if (self.early.position() as usize) < self.early.get_ref().len() {
            return self.early.read(buf);
        }
        let start = Instant::now();
        let n = self.inner.read(buf)?;
        if let Some(floor) = &mut self.floor {
            floor
                .arrived(n, start.elapsed())
                .map_err(io::Error::other)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_dripping_sender_fails_when_the_window_closes() {
        let mut floor = RateFloor::new(1024, 60 * S).expect("a floor");
        // A byte every 3 s: fine until the window has passed.
        for _ in 1..20 {
            assert!(floor.arrived(1, 3 * S).is_ok());
        }
        let said = floor.arrived(1, 3 * S).expect_err("under the floor");
        assert!(said.contains("20 bytes in 60.0 s"), "{said}");
    }

    #[test]
    fn enough_bytes_open_a_new_window() {
        let mut floor = RateFloor::new(10, 10 * S).expect("a floor");
        assert!(floor.arrived(100, 10 * S).is_ok());
        // The next window starts empty.
        assert!(floor.arrived(50, 5 * S).is_ok());
        assert!(floor.arrived(0, 5 * S).is_err());
    }

    #[test]
    fn time_not_spent_waiting_does_not_count() {
        let mut floor = RateFloor::new(1024, 60 * S).expect("a floor");
        // Bytes that were already there take no time to read, however
        // long the receiver was busy before asking.
        for _ in 0..1000 {
            assert!(floor.arrived(1, Duration::ZERO).is_ok());
        }
        assert!(floor.arrived(64 * 1024, 59 * S).is_ok());
    }

    #[test]
    fn zero_is_no_floor() {
        assert!(RateFloor::new(0, 60 * S).is_none());
    }
}
