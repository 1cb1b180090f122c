//! The receiver's floor under a sender's rate: a connection that brings
//! fewer than `--min-rate` bytes a second over a whole window (the
//! `--timeout`) is dropped, so a sender that drips a byte now and then,
//! never silent long enough for the timeout, cannot hold a receiver's
//! place for as long as it likes. Pure: the caller gives the time.

use std::io::{self, Read};
use std::time::{Duration, Instant};

/// Counts what arrives in windows of `window`.
#[derive(Clone, Debug)]
pub(crate) struct RateFloor {
    min_per_sec: u64,
    window: Duration,
    since: Instant,
    bytes: u64,
}

impl RateFloor {
    /// A floor of `min_per_sec` bytes a second from `now` (`None`: 0, no
    /// floor).
    pub(crate) fn new(min_per_sec: u64, window: Duration, now: Instant) -> Option<Self> {
        (min_per_sec > 0 && !window.is_zero()).then_some(Self {
            min_per_sec,
            window,
            since: now,
            bytes: 0,
        })
    }

    /// Counts `n` bytes arrived at `now`; the complaint when a window
    /// closed under the floor.
    pub(crate) fn arrived(&mut self, n: usize, now: Instant) -> Result<(), String> {
        self.bytes += n as u64;
        let spent = now.saturating_duration_since(self.since);
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
        self.since = now;
        self.bytes = 0;
        Ok(())
    }
}

/// A reader under a floor (none: as it is).
pub(crate) struct Floored<R> {
    pub(crate) inner: R,
    pub(crate) floor: Option<RateFloor>,
}

impl<R: Read> Read for Floored<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(floor) = &mut self.floor {
            floor.arrived(n, Instant::now()).map_err(io::Error::other)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dripping_sender_fails_when_the_window_closes() {
        let t0 = Instant::now();
        let mut floor = RateFloor::new(1024, Duration::from_secs(60), t0).expect("a floor");
        // A byte every 3 s: fine until the window has passed.
        for i in 1..20 {
            assert!(floor.arrived(1, t0 + Duration::from_secs(3 * i)).is_ok());
        }
        let said = floor
            .arrived(1, t0 + Duration::from_secs(60))
            .expect_err("under the floor");
        assert!(said.contains("20 bytes in 60.0 s"), "{said}");
    }

    #[test]
    fn enough_bytes_open_a_new_window() {
        let t0 = Instant::now();
        let mut floor = RateFloor::new(10, Duration::from_secs(10), t0).expect("a floor");
        assert!(floor.arrived(100, t0 + Duration::from_secs(10)).is_ok());
        // The next window starts empty.
        assert!(floor.arrived(50, t0 + Duration::from_secs(15)).is_ok());
        assert!(floor.arrived(0, t0 + Duration::from_secs(20)).is_err());
    }

    #[test]
    fn zero_is_no_floor() {
        assert!(RateFloor::new(0, Duration::from_secs(60), Instant::now()).is_none());
    }
}
