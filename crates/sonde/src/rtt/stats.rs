//! Latency statistics from an HDR histogram (nanoseconds): min, mean,
//! stdev, percentiles, max, a text histogram, and the buckets and the
//! latency over time a report draws. Pure.

use hdrhistogram::Histogram;

/// Round-trip times recorded so far.
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

/// The figures of a set of round trips, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// 99.99th percentile.
    pub p9999: u64,
    /// Largest.
    pub max: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty record: 1 ns to 100 s at 3 significant digits (the
    /// histogram is allocated here, never while measuring).
    pub fn new() -> Self {
        let hist = Histogram::new_with_bounds(1, 100_000_000_000, 3)
            .expect("invariant: 1 ns to 100 s at 3 significant figures is a valid range");
        Self { hist }
    }

    /// Records one round trip (clamped into the histogram's range).
    pub fn record(&mut self, nanos: u64) {
        let _ = self.hist.record(nanos.clamp(1, self.hist.high()));
    }

    /// Adds every round trip of another record (another pass).
    pub fn absorb(&mut self, other: &Latency) {
        // Both have the same bounds, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    /// The figures so far.
    pub fn summary(&self) -> Summary {
        let h = &self.hist;
        if h.is_empty() {
            return Summary::default();
        }
        // The middle of each bucket: within 0.05% of the samples at 3
        // significant figures.
        let q = |p: f64| h.median_equivalent(h.value_at_quantile(p));
        Summary {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            stdev: h.stdev(),
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p999: q(0.999),
            p9999: q(0.9999),
            max: h.median_equivalent(h.max()),
        }
    }

    /// Buckets ten to a decade, (low ns, high ns, count), from the one
    /// holding the fastest round trip to the one holding the slowest.
    pub fn buckets(&self) -> Vec<(u64, u64, u64)> {
        let h = &self.hist;
        if h.is_empty() {
            return Vec::new();
        }
        let step = 10f64.powf(0.1);
        let mut low = 10f64.powf((h.min() as f64).log10().floor());
        let mut out = Vec::new();
        while low <= h.max() as f64 {
            let high = low * step;
            let (lo, hi) = (
                low.round() as u64,
                (high.round() as u64).max(low.round() as u64 + 1),
            );
            out.push((lo, hi, h.count_between(lo, hi - 1)));
            low = high;
        }
        out
    }

    /// A text histogram: one line per power-of-two bucket of the round
    /// trip, with its count and a bar scaled to `width`.
    pub fn text_histogram(&self, width: usize) -> String {
        let h = &self.hist;
        if h.is_empty() {
            return String::new();
        }
        let mut buckets: Vec<(u64, u64)> = Vec::new();
        let mut low = h.min().next_power_of_two() / 2;
        low = low.max(1);
        while low <= h.max() {
            let high = low * 2;
            let n = h.count_between(low, high - 1);
            buckets.push((low, n));
            low = high;
        }
        let top = buckets.iter().map(|b| b.1).max().unwrap_or(1).max(1);
        let mut out = String::new();
        for (low, n) in buckets {
            let bar = "#".repeat(((n as f64 / top as f64) * width as f64).ceil() as usize);
            out.push_str(&format!(
                "{:>10} - {:<10} {:>9}  {bar}\n",
                micros(low),
                micros(low * 2),
                n
            ));
        }
        out
    }
}

/// Round trips in order (ns) as at most `points` points of (seconds
/// since the first was sent, ns): each point the slowest of its stretch,
/// so a stall shows however many are drawn. One round trip follows
/// another, so the time of each is the sum of those before it.
pub fn over_time(samples: &[u64], points: usize) -> Vec<(f64, u64)> {
    let per = samples.len().div_ceil(points.max(1)).max(1);
    let mut at = 0u64;
    samples
        .chunks(per)
        .map(|stretch| {
            at += stretch.iter().sum::<u64>();
            (at as f64 / 1e9, stretch.iter().copied().max().unwrap_or(0))
        })
        .collect()
}

/// Nanoseconds as microseconds with a unit ("12.3 us").
pub fn micros(nanos: u64) -> String {
    format!("{:.1} us", nanos as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_round_trip_ten_a_decade() {
        let mut l = Latency::new();
        for v in [15_000u64, 20_000, 20_000, 90_000, 1_200_000] {
            l.record(v);
        }
        let b = l.buckets();
        assert_eq!(b.first().map(|x| x.0), Some(10_000));
        assert!(b.last().is_some_and(|x| x.1 > 1_200_000));
        assert_eq!(b.len(), 21, "10 us to 1.26 ms: two decades and one bucket");
        let total: u64 = b.iter().map(|x| x.2).sum();
        assert_eq!(total, 5);
        assert!(b.windows(2).all(|w| w[0].1 == w[1].0), "no gaps");
    }

    #[test]
    fn over_time_keeps_each_stretchs_slowest_at_its_end() {
        let samples = [1_000_000_000u64, 1, 1, 2_000_000_000, 1, 1];
        assert_eq!(
            over_time(&samples, 2),
            vec![(1.000000002, 1_000_000_000), (3.000000004, 2_000_000_000)]
        );
        assert_eq!(over_time(&samples, 100).len(), 6);
        assert!(over_time(&[], 10).is_empty());
    }

    #[test]
    fn percentiles_of_known_samples() {
        let mut l = Latency::new();
        for v in 1..=10_000u64 {
            l.record(v * 1000); // 1 us .. 10 ms, uniform
        }
        let s = l.summary();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.min, 1000);
        let near = |got: u64, want: u64| (got as f64 - want as f64).abs() / want as f64 <= 0.002;
        assert!(near(s.p50, 5_000_000), "{}", s.p50);
        assert!(near(s.p90, 9_000_000), "{}", s.p90);
        assert!(near(s.p99, 9_900_000), "{}", s.p99);
        assert!(near(s.p999, 9_990_000), "{}", s.p999);
        assert!(near(s.max, 10_000_000), "{}", s.max);
        assert!(
            (s.mean - 5_000_500.0).abs() / 5_000_500.0 < 0.002,
            "{}",
            s.mean
        );
        // Uniform on [a, b]: stdev = (b - a) / sqrt(12).
        let sd = 9_999_000.0 / 12f64.sqrt();
        assert!((s.stdev - sd).abs() / sd < 0.01, "{}", s.stdev);
    }

    #[test]
    fn constant_samples_have_no_spread() {
        let mut l = Latency::new();
        for _ in 0..100 {
            l.record(20_000);
        }
        let s = l.summary();
        for v in [s.min, s.p50, s.p99, s.max] {
            assert!(v.abs_diff(20_000) <= 20, "{v}");
        }
        assert!(s.stdev < 1.0);
        assert!(l.text_histogram(40).contains("100"));
    }
}
