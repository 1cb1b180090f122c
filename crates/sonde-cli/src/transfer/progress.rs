//! Progress of a transfer on stderr: bars (the file and the total: files,
//! bytes, rate, ETA) when stderr is a terminal, a plain line every second when it
//! is not, nothing with --quiet or --json. A thread reads the transfer's
//! counters; the transfer itself never waits on the display.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sonde::transfer::Progress;

/// A running display; [`Display::finish`] stops it.
pub(crate) struct Display {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Display {
    /// Starts showing `progress` (nothing when `quiet`).
    pub(crate) fn start(progress: &Arc<Progress>, verb: &'static str, quiet: bool) -> Display {
        let stop = Arc::new(AtomicBool::new(false));
        if quiet {
            return Display { stop, thread: None };
        }
        let thread = {
            let stop = Arc::clone(&stop);
            let progress = Arc::clone(progress);
            thread::spawn(move || {
                if std::io::stderr().is_terminal() {
                    bars(&stop, &progress);
                } else {
                    lines(&stop, &progress, verb);
                }
            })
        };
        Display {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the display and clears the bars.
    pub(crate) fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn bars(stop: &AtomicBool, p: &Progress) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg:20!} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    // No length until one is known: a bar of length 0 draws full.
    let file = multi.add(ProgressBar::no_length().with_style(style.clone()));
    let total = multi.add(ProgressBar::no_length().with_style(style));
    total.set_message("total");
    while !stop.load(Ordering::Relaxed) {
        let size = p.file_size.load(Ordering::Relaxed);
        let done = p.done.load(Ordering::Relaxed);
        if size != u64::MAX && size > 0 {
            file.set_length(size);
        }
        file.set_message(p.waiting_for().unwrap_or_else(|| p.current()));
        file.set_position(p.file_done.load(Ordering::Relaxed));
        let all = p.total.load(Ordering::Relaxed).max(done);
        if all > 0 {
            total.set_length(all);
        }
        if let Some(files) = files(p) {
            total.set_message(files);
        }
        total.set_position(done);
        thread::sleep(Duration::from_millis(100));
    }
    file.finish_and_clear();
    total.finish_and_clear();
}

fn lines(stop: &AtomicBool, p: &Progress, verb: &str) {
    let started = Instant::now();
    let mut next = Duration::from_secs(1);
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(50));
        let elapsed = started.elapsed();
        if elapsed < next {
            continue;
        }
        next += Duration::from_secs(1);
        if let Some(waiting) = p.waiting_for() {
            eprintln!("sonde: {verb}: {waiting} ({:.0} s)", elapsed.as_secs_f64());
            continue;
        }
        let (done, total) = (
            p.done.load(Ordering::Relaxed),
            p.total.load(Ordering::Relaxed),
        );
        let rate = done as f64 / elapsed.as_secs_f64();
        let left = total.saturating_sub(done) as f64;
        let eta = if rate > 0.0 && total > 0 {
            format!(", ETA {:.0} s", left / rate)
        } else {
            String::new()
        };
        eprintln!(
            "sonde: {verb}{}: {}{} of {} total, {}{eta}",
            match p.current() {
                name if name.is_empty() => String::new(),
                name => format!(" {name}"),
            },
            files(p).map(|f| f + ", ").unwrap_or_default(),
            sonde::units::size(done),
            sonde::units::size(total),
            sonde::units::rate(rate * 8.0),
        );
    }
}

/// "1,204 of 5,130 files", for a transfer of more than one.
fn files(p: &Progress) -> Option<String> {
    let total = p.files_total.load(Ordering::Relaxed);
    (total > 1).then(|| {
        format!(
            "{} of {} files",
            sonde::units::count(p.files_done.load(Ordering::Relaxed)),
            sonde::units::count(total)
        )
    })
}

/// The transfer's progress sampled on a thread for --json and --report:
/// `[seconds, bytes done, files done]` every 100 ms, thinned (every other
/// kept, the period doubled) whenever 4,000 are held, so an hour's
/// transfer keeps a few thousand.
pub(crate) struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<[f64; 3]>>>,
}

impl Sampler {
    /// Starts sampling `progress` (nothing unless `wanted`).
    pub(crate) fn start(progress: &Arc<Progress>, wanted: bool) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = wanted.then(|| {
            let (stop, p) = (Arc::clone(&stop), Arc::clone(progress));
            thread::spawn(move || {
                let started = Instant::now();
                let mut period = Duration::from_millis(100);
                let mut points = Vec::new();
                let sample = |points: &mut Vec<[f64; 3]>| {
                    points.push([
                        started.elapsed().as_secs_f64(),
                        p.done.load(Ordering::Relaxed) as f64,
                        p.files_done.load(Ordering::Relaxed) as f64,
                    ]);
                };
                sample(&mut points);
                let mut next = period;
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(20));
                    if started.elapsed() < next {
                        continue;
                    }
                    sample(&mut points);
                    next += period;
                    if points.len() >= 4000 {
                        points = points.into_iter().step_by(2).collect();
                        period *= 2;
                    }
                }
                sample(&mut points);
                points
            })
        });
        Sampler { stop, thread }
    }

    /// Stops sampling; what was sampled.
    pub(crate) fn finish(mut self) -> Vec<[f64; 3]> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}
