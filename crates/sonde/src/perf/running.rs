//! The running phase shared by client and server: start a thread per
//! stream, sample the counters into intervals, stop the senders, and close
//! everything at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::wire::iperf::params::Params;

use super::Observer;
use super::budget::Budget;
use super::measure::{Meter, Sample, StreamInfo, StreamInterval};
use super::stream::{self, Stream};

/// How long a receiver waits for the rest of a counted test once nothing
/// more arrives.
const SETTLE_QUIET: Duration = Duration::from_millis(250);

/// The bytes a counted test sends: its blocks, whole.
pub(crate) fn counted_bytes(params: &Params) -> u64 {
    super::budget::count(params)
        .unwrap_or(0)
        .saturating_mul(u64::from(params.len.max(1)))
}

pub(crate) struct Running {
    pub(crate) streams: Vec<Stream>,
    pub(crate) meter: Meter,
    pub(crate) started: Instant,
    pub(crate) intervals: Vec<Vec<StreamInterval>>,
    senders_stop: Arc<AtomicBool>,
    receivers_stop: Arc<AtomicBool>,
    /// What a counted test's senders may still send.
    budget: Arc<Budget>,
    /// Each stream's bytes and blocks when the count began (the end of
    /// omitting).
    counted_from: Vec<(u64, u64)>,
    handles: Vec<JoinHandle<()>>,
    interval: Option<Duration>,
    next_tick: Duration,
    /// When the senders were stopped, from the start.
    senders_stopped: Option<Duration>,
    /// When the last of a counted test's data arrived, from the start.
    settled: Option<Duration>,
}

impl Running {
    /// Starts moving data on every stream.
    pub(crate) fn start(
        streams: Vec<Stream>,
        params: &Params,
        interval: Option<Duration>,
        started: Instant,
        file: Option<&std::path::Path>,
    ) -> Result<Self> {
        let senders_stop = Arc::new(AtomicBool::new(false));
        let receivers_stop = Arc::new(AtomicBool::new(false));
        let budget = Arc::new(Budget::for_params(params));
        let mut handles = Vec::with_capacity(streams.len());
        for s in &streams {
            let flag = if s.sender {
                &senders_stop
            } else {
                &receivers_stop
            };
            let file = match file {
                Some(path) => Some(
                    super::diskfile::open(path, s.sender)
                        .map_err(|e| Error::io(format!("opening {} (-F)", path.display()), e))?,
                ),
                None => None,
            };
            let handle = stream::spawn(
                s,
                params,
                Arc::clone(flag),
                Arc::clone(&budget),
                started,
                file,
            )
            .map_err(|e| Error::io("starting a stream thread", e))?;
            handles.push(handle);
        }
        let infos = streams
            .iter()
            .map(|s| StreamInfo {
                id: s.id,
                socket: s.socket.fd(),
                sender: s.sender,
            })
            .collect();
        let meter = Meter::new(
            params.protocol,
            infos,
            Duration::from_secs(u64::from(params.omit)),
        );
        Ok(Self {
            streams,
            meter,
            started,
            intervals: Vec::new(),
            senders_stop,
            receivers_stop,
            budget,
            counted_from: Vec::new(),
            handles,
            senders_stopped: None,
            settled: None,
            interval: interval.filter(|i| !i.is_zero()),
            // With no interval reports (-i 0) the omitted seconds still end
            // with a sample of their own: the count starts there.
            next_tick: interval
                .filter(|i| !i.is_zero())
                .unwrap_or(if params.omit > 0 {
                    Duration::from_secs(u64::from(params.omit))
                } else {
                    Duration::MAX
                }),
        })
    }

    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.streams
            .iter()
            .map(|s| Sample {
                bytes: s.counters.bytes.load(Ordering::Relaxed),
                blocks: s.counters.blocks.load(Ordering::Relaxed),
                udp: s.counters.udp.lock().map(|u| u.clone()).unwrap_or_default(),
                tcp: s
                    .socket
                    .tcp()
                    .filter(|_| s.sender)
                    .and_then(stream::tcp_state),
            })
            .collect()
    }

    /// Time since TEST_START.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// When the next interval is due (since TEST_START).
    pub(crate) fn next_tick(&self) -> Duration {
        self.next_tick
    }

    /// Records an interval if one is due; returns whether it did.
    pub(crate) fn tick_if_due(&mut self, observer: &dyn Observer) -> bool {
        let now = self.elapsed();
        if now < self.next_tick {
            return false;
        }
        self.record(now, observer);
        if let Some(step) = self.interval {
            while self.next_tick <= now {
                self.next_tick += step;
            }
        } else {
            self.next_tick = Duration::MAX;
        }
        true
    }

    fn record(&mut self, now: Duration, observer: &dyn Observer) {
        let samples = self.samples();
        let omitting = self.meter.omitting();
        let interval = self.meter.interval(now, &samples);
        if omitting && !self.meter.omitting() {
            // The omitted seconds end with this sample: so does the count
            // of a counted test (iperf3 resets its counts there).
            self.counted_from = samples.iter().map(|x| (x.bytes, x.blocks)).collect();
            let sent = samples
                .iter()
                .zip(&self.streams)
                .filter(|(_, s)| s.sender)
                .map(|(x, _)| x.blocks)
                .sum();
            self.budget.arm(sent);
        }
        if self.interval.is_some() {
            observer.interval(&interval);
        }
        self.intervals.push(interval);
    }

    /// Records the last, partial interval; dropped when it is under 10%
    /// of an interval and follows another, as iperf3's client drops it
    /// (its server prints such a stray "2.00-2.00 sec" row; sonde's does
    /// not). The summary still counts its bytes.
    pub(crate) fn final_tick(&mut self, observer: &dyn Observer) {
        let now = self.elapsed();
        let samples = self.samples();
        let last_at = self
            .intervals
            .last()
            .and_then(|i| i.first())
            .map_or(0.0, |s| s.end);
        let step = self.interval.unwrap_or(Duration::MAX).as_secs_f64();
        let span = now.as_secs_f64() - last_at;
        // The first interval past the omitted seconds is kept however
        // short: a counted test may be over within it.
        let after_omit = self
            .intervals
            .last()
            .and_then(|i| i.first())
            .is_none_or(|s| s.omitted);
        if self.interval.is_none() || after_omit || span >= step * 0.1 {
            let interval = self.meter.interval(now, &samples);
            if self.interval.is_some() {
                observer.interval(&interval);
            }
            self.intervals.push(interval);
        }
    }

    /// Joins this side's results with the peer's into per-stream ends.
    pub(crate) fn ends(
        &self,
        protocol: crate::wire::iperf::params::Protocol,
        local: &[crate::wire::iperf::results::StreamResult],
        theirs: &crate::wire::iperf::results::Results,
        samples: &[Sample],
    ) -> Vec<super::measure::StreamEnd> {
        let ooo: Vec<u64> = samples
            .iter()
            .enumerate()
            .map(|(i, s)| self.meter.out_of_order(i, s))
            .collect();
        let mut ends = super::measure::join(protocol, self.meter.streams(), local, theirs, &ooo);
        for (i, end) in ends.iter_mut().enumerate() {
            end.rtt = self.meter.rtt_summary(i);
        }
        ends
    }

    /// Every sender of `-F`'s file reached its end (false without senders).
    pub(crate) fn file_sent(&self) -> bool {
        let mut senders = self.streams.iter().filter(|s| s.sender).peekable();
        senders.peek().is_some() && senders.all(|s| s.counters.file_done.load(Ordering::Relaxed))
    }

    /// Stops the sending threads (receivers go on draining).
    pub(crate) fn stop_senders(&mut self) {
        self.senders_stop.store(true, Ordering::Relaxed);
        self.senders_stopped.get_or_insert(self.started.elapsed());
    }

    /// When this side's test time ended: for a side that sends, when its
    /// senders stopped (not when the results were asked for, which may
    /// be later by the peer's draining); for a receiver, now.
    pub(crate) fn end_time(&self) -> Duration {
        match (self.senders_stopped, self.settled) {
            (Some(at), _) if self.streams.iter().any(|s| s.sender) => at,
            (_, Some(at)) => at,
            _ => self.elapsed(),
        }
    }

    /// A stream thread's failure, if any.
    pub(crate) fn failure(&self) -> Option<String> {
        self.streams
            .iter()
            .find_map(|s| s.counters.failure.lock().ok().and_then(|f| f.clone()))
    }

    /// Bytes and blocks that this side's sending (`senders`) or receiving
    /// streams moved since the count began: from the start, or from the
    /// end of the omitted seconds (nothing while omitting).
    pub(crate) fn counted(&self, senders: bool) -> (u64, u64) {
        if self.meter.omitting() {
            return (0, 0);
        }
        self.streams
            .iter()
            .enumerate()
            .filter(|(_, s)| s.sender == senders)
            .fold((0, 0), |(bytes, blocks), (i, s)| {
                let from = self.counted_from.get(i).copied().unwrap_or_default();
                (
                    bytes
                        + s.counters
                            .bytes
                            .load(Ordering::Relaxed)
                            .saturating_sub(from.0),
                    blocks
                        + s.counters
                            .blocks
                            .load(Ordering::Relaxed)
                            .saturating_sub(from.1),
                )
            })
    }

    /// For a counted test that this side receives: waits until what the
    /// peer sent (the count, in whole blocks) has arrived, or nothing more
    /// comes for `SETTLE_QUIET`, so that the receiver's figure is the
    /// sender's (iperf3 stops at TEST_END and misses what is in flight).
    pub(crate) fn settle(&mut self, params: &Params) {
        if params.blockcount == 0 && params.num == 0 {
            return;
        }
        if self.streams.iter().all(|s| s.sender) {
            return;
        }
        let target = counted_bytes(params);
        let mut last = (self.counted(false).0, Instant::now());
        // A sender of -F's file ends it short of a whole block: past the
        // byte count, a brief quiet is the end.
        let quiet = |got: u64| {
            if params.num > 0 && got >= params.num {
                SETTLE_QUIET / 10
            } else {
                SETTLE_QUIET
            }
        };
        while last.0 < target && last.1.elapsed() < quiet(last.0) {
            std::thread::sleep(Duration::from_millis(1));
            let now = self.counted(false).0;
            if now != last.0 {
                last = (now, Instant::now());
            }
        }
        self.settled_at(last.1);
    }

    /// Marks when the last of a counted test's data arrived.
    pub(crate) fn settled_at(&mut self, at: Instant) {
        self.settled = Some(at.saturating_duration_since(self.started));
    }

    /// Total bytes and blocks moved by this side's streams.
    pub(crate) fn totals(&self) -> (u64, u64) {
        self.streams.iter().fold((0, 0), |(b, k), s| {
            (
                b + s.counters.bytes.load(Ordering::Relaxed),
                k + s.counters.blocks.load(Ordering::Relaxed),
            )
        })
    }

    /// Closes every data socket and waits for the threads.
    pub(crate) fn close(&mut self) {
        self.senders_stop.store(true, Ordering::Relaxed);
        self.receivers_stop.store(true, Ordering::Relaxed);
        for s in &self.streams {
            s.socket.close();
        }
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.close();
    }
}
