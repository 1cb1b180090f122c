//! The client of `perf` over a Unix socket: every stream connected and
//! its hello sent before any data moves, a blocking thread per stream
//! that only counts, and this thread sampling the counts each interval.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::hello::{Hello, Tally, share};
use super::{Length, UnixReport, UnixTest};
use crate::error::{Error, Result};
use crate::net::unix::UnixPath;
use crate::perf::{StreamEnd, StreamInterval};

/// One stream as this side sees it.
struct Lane {
    sock: UnixStream,
    /// This side sends on it.
    sends: bool,
    /// Bytes moved so far (sent or received).
    moved: Arc<AtomicU64>,
    /// What it must send, for a sender: for how long, or how much.
    length: (Option<Duration>, u64),
}

/// How a stream's thread ended: (bytes, seconds) of its sender and of
/// its receiver.
type Outcome = std::result::Result<((u64, f64), (u64, f64)), String>;

/// Runs `test` against the server at `path`, calling `on_interval` with
/// each interval's streams as it ends.
///
/// # Errors
/// When the server cannot be reached, a stream fails, or the server's
/// tally is not its protocol's.
pub fn run(
    path: &UnixPath,
    test: &UnixTest,
    mut on_interval: impl FnMut(&[StreamInterval]),
) -> Result<UnixReport> {
    let lanes = connect_all(path, test)?;
    let start = Instant::now();
    let (tx, rx) = mpsc::channel();
    let mut info = Vec::new();
    for (index, lane) in lanes.into_iter().enumerate() {
        info.push((lane.sock.as_raw_fd(), lane.sends, Arc::clone(&lane.moved)));
        let tx = tx.clone();
        let len = test.len;
        std::thread::Builder::new()
            .name(format!("sonde-unix-stream-{}", index + 1))
            .spawn(move || {
                let _ = tx.send((index, lane.run(len, start)));
            })
            .map_err(|e| Error::io("starting a stream's thread", e))?;
    }
    drop(tx);
    let mut report = UnixReport::default();
    let mut outcomes: Vec<Option<Outcome>> = info.iter().map(|_| None).collect();
    let mut last = (0.0, vec![0u64; info.len()]);
    let mut left = info.len();
    let mut tick = 1u32;
    while left > 0 {
        let due = start + test.interval * tick;
        match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
            Ok((index, outcome)) => {
                outcomes[index] = Some(outcome);
                left -= 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let interval = sample(&info, &mut last, start.elapsed().as_secs_f64());
                on_interval(&interval);
                report.intervals.push(interval);
                tick += 1;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    // The tail since the last whole interval, as iperf3 prints it.
    if report.seconds - last.0 > 0.01 {
        let interval = sample(&info, &mut last, report.seconds);
        on_interval(&interval);
        report.intervals.push(interval);
    }
    for (index, ((fd, sends, _), outcome)) in info.iter().zip(outcomes).enumerate() {
        let (sent, received) = outcome
            .unwrap_or_else(|| Err("its thread ended without a word".into()))
            .map_err(|why| {
                Error::Invalid(format!("stream {} over unix:{path}: {why}", index + 1))
            })?;
        report.ends.push(StreamEnd {
            id: index as u32 + 1,
            socket: *fd,
            local_sender: *sends,
            sent,
            received,
            retransmits: None,
            udp: None,
            rtt: None,
        });
    }
    Ok(report)
}

/// Connects every stream and sends its hello.
fn connect_all(path: &UnixPath, test: &UnixTest) -> Result<Vec<Lane>> {
    let id = super::random_id();
    let ways: Vec<bool> = if test.bidir {
        [true, false]
            .iter()
            .flat_map(|&w| std::iter::repeat_n(w, test.streams as usize))
            .collect()
    } else {
        vec![!test.reverse; test.streams as usize]
    };
    let total = ways.len() as u32;
    let mut lanes = Vec::with_capacity(ways.len());
    for (i, &sends) in ways.iter().enumerate() {
        let index = i as u32 % test.streams;
        let (secs, bytes) = match test.length {
            Length::Time(t) => (t.as_secs_f64(), 0),
            Length::Bytes(n) => (0.0, share(n, test.streams, index).max(1)),
        };
        let hello = Hello::new(&id, total, sends, (secs, bytes), test.len);
        let mut sock = crate::net::unix::connect(path)?;
        super::widen(&sock);
        let fail = |e| Error::io(format!("starting a stream over unix:{path}"), e);
        sock.set_read_timeout(Some(super::QUIET)).map_err(fail)?;
        sock.set_write_timeout(Some(super::QUIET)).map_err(fail)?;
        sock.write_all(hello.line().as_bytes()).map_err(fail)?;
        let deadline = match test.length {
            Length::Time(t) => Some(t),
            Length::Bytes(_) => None,
        };
        lanes.push(Lane {
            sock,
            sends,
            moved: Arc::default(),
            length: (deadline, bytes),
        });
    }
    Ok(lanes)
}

/// Each stream's bytes since the previous sample, as one interval.
fn sample(
    info: &[(i32, bool, Arc<AtomicU64>)],
    (at, before): &mut (f64, Vec<u64>),
    now: f64,
) -> Vec<StreamInterval> {
    let interval = info
        .iter()
        .zip(before.iter_mut())
        .enumerate()
        .map(|(i, ((fd, sends, moved), prev))| {
            let total = moved.load(Ordering::Relaxed);
            let bytes = total.saturating_sub(*prev);
            *prev = total;
            StreamInterval {
                id: i as u32 + 1,
                socket: *fd,
                sender: *sends,
                start: *at,
                end: now,
                bytes,
                omitted: false,
                packets: 0,
                lost: 0,
                out_of_order: 0,
                jitter_ms: 0.0,
                tcp: None,
            }
        })
        .collect();
    *at = now;
    interval
}

impl Lane {
    /// Moves the stream's bytes; a sender then waits for the server's
    /// tally, a receiver sends its own.
    fn run(mut self, len: usize, start: Instant) -> Outcome {
        if self.sends {
            let deadline = self.length.0.map(|t| start + t);
            let sent = self
                .send(len, deadline)
                .map_err(|e| format!("sending: {e}"))?;
            let secs = start.elapsed().as_secs_f64();
            let _ = self.sock.shutdown(std::net::Shutdown::Write);
            let tally = match super::read_line(&mut self.sock) {
                Ok(Some(line)) => Tally::parse(&line).map_err(|e| e.to_string())?,
                Ok(None) => return Err("the server closed without its tally".into()),
                Err(e) => return Err(format!("reading the server's tally: {e}")),
            };
            Ok(((sent, secs), (tally.bytes, tally.seconds)))
        } else {
            let got = self.receive(len).map_err(|e| format!("receiving: {e}"))?;
            let secs = start.elapsed().as_secs_f64();
            // The server checks what it sent against this.
            let tally = Tally {
                bytes: got,
                seconds: secs,
            };
            let _ = self.sock.write_all(tally.line().as_bytes());
            Ok(((got, secs), (got, secs)))
        }
    }

    fn send(&mut self, len: usize, deadline: Option<Instant>) -> std::io::Result<u64> {
        let buf = crate::perf::stream::payload(len, false);
        let mut sent = 0u64;
        let budget = self.length.1;
        loop {
            let n = match deadline {
                Some(at) if Instant::now() >= at => break,
                Some(_) => buf.len(),
                None if sent >= budget => break,
                None => {
                    usize::try_from(budget - sent).map_or(buf.len(), |left| left.min(buf.len()))
                }
            };
            let wrote = crate::sys::retry_io(|| self.sock.write(&buf[..n]))?;
            if wrote == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            sent += wrote as u64;
            self.moved.fetch_add(wrote as u64, Ordering::Relaxed);
        }
        Ok(sent)
    }

    fn receive(&mut self, len: usize) -> std::io::Result<u64> {
        let mut buf = vec![0u8; len.max(64 * 1024)];
        let mut got = 0u64;
        loop {
            let n = crate::sys::retry_io(|| self.sock.read(&mut buf))?;
            if n == 0 {
                return Ok(got);
            }
            got += n as u64;
            self.moved.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}
