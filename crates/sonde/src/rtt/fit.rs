//! The lesson's model fitted to measurements: a round trip carries a
//! message both ways, and what that costs depends on the exchange. A
//! store-and-forward reflector (one that answers only once the whole
//! message is in: sockperf's format, and every UDP datagram) costs
//! rtt(size) = base + 2 · size / bandwidth; a streaming echo over TCP
//! sends the first bytes back while the last still arrive, so the two
//! directions overlap and rtt(size) ≈ base + size / bandwidth. A
//! least-squares line through (size, rtt) gives the base latency
//! (intercept) and the one-way bandwidth (passes / slope). Pure.

/// What a round trip of a message costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// The reply starts once the whole message is in: two passes.
    StoreAndForward,
    /// The reply streams back as the message arrives: one pass.
    Streaming,
}

impl Model {
    /// How many times the message crosses the bottleneck in series.
    fn passes(self) -> f64 {
        match self {
            Model::StoreAndForward => 2.0,
            Model::Streaming => 1.0,
        }
    }

    /// The formula, as printed.
    pub fn formula(self) -> &'static str {
        match self {
            Model::StoreAndForward => "base + 2*size/bandwidth",
            Model::Streaming => "base + size/bandwidth",
        }
    }

    /// Why this model, as printed.
    pub fn why(self) -> &'static str {
        match self {
            Model::StoreAndForward => "the reflector answers once the whole message is in",
            Model::Streaming => "a streaming echo: the two directions overlap",
        }
    }

    /// Its name in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Model::StoreAndForward => "store_and_forward",
            Model::Streaming => "streaming",
        }
    }
}

/// A fitted model.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// The model fitted.
    pub model: Model,
    /// Round trip of an empty message, ns.
    pub base_ns: f64,
    /// One-way bandwidth, bytes per second.
    pub bytes_per_sec: f64,
    /// Coefficient of determination (1 = the line explains everything).
    pub r_squared: f64,
    /// Measured minus fitted RTT at each size, ns.
    pub residuals: Vec<(u64, f64)>,
    /// Where the rate starts to show: sizes below it pass without the
    /// bottleneck's rate (a shaper's burst, socket buffers) and are not
    /// part of the slope. `None` when every size is on one line.
    pub knee: Option<u64>,
}

/// Why no meaningful fit exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    /// Fewer than two different sizes.
    #[error("a fit needs at least two different message sizes")]
    TooFewSizes,
    /// RTT does not grow with size (noise swamped the transfer time).
    #[error(
        "RTT does not grow with message size here, so no bandwidth can be fitted (use larger sizes)"
    )]
    NoSlope,
}

/// Fits `model` to `(size bytes, rtt ns)`.
///
/// # Errors
/// [`FitError`] when the points cannot define the line.
pub fn fit(points: &[(u64, f64)], model: Model) -> Result<Fit, FitError> {
    let n = points.len() as f64;
    let distinct = {
        let mut sizes: Vec<u64> = points.iter().map(|p| p.0).collect();
        sizes.sort_unstable();
        sizes.dedup();
        sizes.len()
    };
    if distinct < 2 {
        return Err(FitError::TooFewSizes);
    }
    let mean_x = points.iter().map(|p| p.0 as f64).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 as f64 - mean_x).powi(2)).sum();
    let sxy: f64 = points
        .iter()
        .map(|p| (p.0 as f64 - mean_x) * (p.1 - mean_y))
        .sum();
    let slope = sxy / sxx;
    if slope <= 0.0 || !slope.is_finite() {
        return Err(FitError::NoSlope);
    }
    let base = mean_y - slope * mean_x;
    let residuals: Vec<(u64, f64)> = points
        .iter()
        .map(|p| (p.0, p.1 - (base + slope * p.0 as f64)))
        .collect();
    let ss_res: f64 = residuals.iter().map(|r| r.1 * r.1).sum();
    let ss_tot: f64 = points.iter().map(|p| (p.1 - mean_y).powi(2)).sum();
    let r_squared = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else {
        1.0
    };
    // slope is ns per byte for the round trip: passes / bandwidth.
    let bytes_per_sec = model.passes() / slope * 1e9;
    Ok(Fit {
        model,
        base_ns: base,
        bytes_per_sec,
        r_squared,
        residuals,
        knee: None,
    })
}

/// A line: (intercept, slope).
type Line = (f64, f64);

/// Least squares through `points`: (intercept, slope, squared error).
fn line(points: &[(u64, f64)]) -> Option<(f64, f64, f64)> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0 as f64).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 as f64 - mean_x).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = points
        .iter()
        .map(|p| (p.0 as f64 - mean_x) * (p.1 - mean_y))
        .sum();
    let slope = sxy / sxx;
    let intercept = mean_y - slope * mean_x;
    let sse = points
        .iter()
        .map(|p| (p.1 - intercept - slope * p.0 as f64).powi(2))
        .sum();
    Some((intercept, slope, sse))
}

/// Fits `model` as [`fit`] does, and when the small sizes sit off the
/// line (below a knee, where a shaper's burst or the buffers let them by
/// without the rate) fits two segments: the base from the small sizes,
/// the bandwidth from the sizes above the knee only, and the knee where
/// the two meet. Needs two sizes on each side; a second segment is kept
/// only when it explains the points far better (a tenth of one line's
/// error) and is clearly flatter (under three quarters of the slope).
///
/// # Errors
/// As [`fit`].
pub fn fit_knee(points: &[(u64, f64)], model: Model) -> Result<Fit, FitError> {
    let one = fit(points, model)?;
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|p| p.0);
    let Some((_, _, one_sse)) = line(&sorted) else {
        return Ok(one);
    };
    // (squared error, the small sizes' line, the large sizes' line)
    let mut best: Option<(f64, Line, Line)> = None;
    for split in 2..sorted.len().saturating_sub(1) {
        let (low, high) = sorted.split_at(split);
        let (Some(l), Some(h)) = (line(low), line(high)) else {
            continue;
        };
        let sse = l.2 + h.2;
        if h.1 > 0.0 && l.1 < h.1 * 0.75 && best.is_none_or(|b| sse < b.0) {
            best = Some((sse, (l.0, l.1), (h.0, h.1)));
        }
    }
    let Some((sse, (low_base, low_slope), (high_base, high_slope))) = best else {
        return Ok(one);
    };
    if sse > one_sse * 0.1 {
        return Ok(one);
    }
    let knee = ((low_base - high_base) / (high_slope - low_slope)).max(0.0);
    let fitted = |x: f64| {
        if x < knee {
            low_base + low_slope * x
        } else {
            high_base + high_slope * x
        }
    };
    let residuals: Vec<(u64, f64)> = points
        .iter()
        .map(|p| (p.0, p.1 - fitted(p.0 as f64)))
        .collect();
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
    let ss_tot: f64 = points.iter().map(|p| (p.1 - mean_y).powi(2)).sum();
    let ss_res: f64 = residuals.iter().map(|r| r.1 * r.1).sum();
    Ok(Fit {
        model,
        base_ns: low_base,
        bytes_per_sec: model.passes() / high_slope * 1e9,
        r_squared: if ss_tot > 0.0 {
            1.0 - ss_res / ss_tot
        } else {
            1.0
        },
        residuals,
        knee: Some(knee as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_known_base_and_bandwidth() {
        // base 20 us, 1 GB/s one way: rtt = 20_000 + 2 * size ns.
        let points: Vec<(u64, f64)> = [1u64, 64, 1024, 16_384, 65_536, 262_144, 1_048_576]
            .iter()
            .map(|&s| (s, 20_000.0 + 2.0 * s as f64))
            .collect();
        let f = fit(&points, Model::StoreAndForward).expect("a line");
        assert!((f.base_ns - 20_000.0).abs() < 1e-6, "{}", f.base_ns);
        assert!(
            (f.bytes_per_sec - 1e9).abs() / 1e9 < 1e-9,
            "{}",
            f.bytes_per_sec
        );
        assert!((f.r_squared - 1.0).abs() < 1e-12);
        assert!(f.residuals.iter().all(|r| r.1.abs() < 1e-6));
    }

    #[test]
    fn noise_lowers_r_squared_and_shows_in_residuals() {
        let points = [
            (1u64, 21_000.0),
            (1_000_000, 2_020_000.0),
            (2_000_000, 4_019_000.0),
            (500_000, 1_030_000.0),
        ];
        let f = fit(&points, Model::StoreAndForward).expect("a line");
        assert!(f.r_squared < 1.0 && f.r_squared > 0.99);
        assert!(f.residuals.iter().any(|r| r.1.abs() > 100.0));
    }

    #[test]
    fn meaningless_fits_are_refused_clearly() {
        assert_eq!(
            fit(&[(64, 10.0)], Model::Streaming),
            Err(FitError::TooFewSizes)
        );
        assert_eq!(
            fit(&[(64, 10.0), (64, 12.0)], Model::Streaming),
            Err(FitError::TooFewSizes)
        );
        assert_eq!(
            fit(&[(1, 30.0), (1000, 20.0)], Model::Streaming),
            Err(FitError::NoSlope)
        );
    }

    #[test]
    fn a_streaming_echo_is_one_pass() {
        // 100 Mbit/s = 12.5 MB/s: one pass of 1 MB is 80 ms.
        let points: Vec<(u64, f64)> = [65_536u64, 262_144, 1_048_576]
            .iter()
            .map(|&s| (s, 1e6 + s as f64 / 12.5e6 * 1e9))
            .collect();
        let one = fit(&points, Model::Streaming).expect("a line");
        let two = fit(&points, Model::StoreAndForward).expect("a line");
        assert!(
            (one.bytes_per_sec - 12.5e6).abs() < 1.0,
            "{}",
            one.bytes_per_sec
        );
        assert!(
            (two.bytes_per_sec - 25e6).abs() < 1.0,
            "twice the truth: {}",
            two.bytes_per_sec
        );
    }

    #[test]
    fn a_burst_makes_a_knee_and_the_base_comes_from_below_it() {
        // base 100 us; the first 16 KiB pass unqueued; then 12.5 MB/s,
        // store and forward: rtt = base + 2 * (size - 16 KiB) / rate.
        let burst = 16_384.0;
        let points: Vec<(u64, f64)> = [1u64, 64, 1024, 4096, 65_536, 131_072, 262_144, 524_288]
            .iter()
            .map(|&s| {
                let queued = (s as f64 - burst).max(0.0);
                (s, 100_000.0 + 2.0 * queued / 12.5e6 * 1e9)
            })
            .collect();
        let plain = fit(&points, Model::StoreAndForward).expect("a line");
        let f = fit_knee(&points, Model::StoreAndForward).expect("two segments");
        assert!(
            plain.base_ns < 0.0,
            "one line puts the base below zero: {}",
            plain.base_ns
        );
        assert!((f.base_ns - 100_000.0).abs() < 1.0, "{}", f.base_ns);
        assert!(
            (f.bytes_per_sec - 12.5e6).abs() < 1.0,
            "{}",
            f.bytes_per_sec
        );
        let knee = f.knee.expect("a knee");
        assert!((knee as f64 - burst).abs() < 1.0, "{knee}");
        // One line through points on one line has no knee.
        let straight: Vec<(u64, f64)> = points.iter().map(|p| (p.0, 5e4 + p.0 as f64)).collect();
        assert_eq!(
            fit_knee(&straight, Model::Streaming).expect("a line").knee,
            None
        );
    }
}
