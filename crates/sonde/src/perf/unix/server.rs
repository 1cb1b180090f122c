//! The server of `perf` over a Unix socket, through the front door: a
//! thread per stream, every phase on a deadline (the hello, the wait for
//! the test's other streams, each read or write, the tally), and one
//! report per test once its last stream has ended.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::hello::{Hello, Tally};
use super::{LINE_TIMEOUT, QUIET};
use crate::door::{Door, DoorConfig, UnixAccepted};
use crate::error::{Error, Result};

/// How the server runs.
#[derive(Clone, Debug)]
pub struct UnixServerConfig {
    /// Streams at once, across tests.
    pub max_connections: usize,
    /// Stop after the first test (`-1`).
    pub one_off: bool,
    /// The longest a stream may send for (`--server-max-duration`).
    pub max_duration: Option<Duration>,
    /// Where the door counts (for a metrics endpoint).
    pub counters: Arc<crate::door::Counters>,
}

/// What happened, for the caller to print.
#[derive(Debug)]
pub enum ServerEvent {
    /// A test's streams have all ended.
    Test {
        /// Who ran it: the client process's pid and uid.
        peer: String,
        /// Streams it had.
        streams: u32,
        /// Bytes the server received, and seconds (the longest stream's).
        received: (u64, f64),
        /// Bytes the server sent, and seconds.
        sent: (u64, f64),
    },
    /// A stream failed; the others go on.
    Failed {
        /// Who.
        peer: String,
        /// Why.
        error: Error,
    },
}

/// A test's streams while any is open.
#[derive(Default)]
struct Gathering {
    arrived: u32,
    open: u32,
    received: (u64, f64),
    sent: (u64, f64),
}

type Tests = Arc<(Mutex<HashMap<String, Gathering>>, Condvar)>;

/// A finished test's (bytes, seconds) received and sent.
type Totals = ((u64, f64), (u64, f64));

/// Serves `listener` until `stop` is set (or after one test with
/// `one_off`).
///
/// # Errors
/// When the listener cannot be served.
pub fn serve(
    listener: UnixListener,
    config: UnixServerConfig,
    notify: impl Fn(ServerEvent) + Send + Sync + 'static,
    stop: &AtomicBool,
) -> Result<()> {
    let mut door_config = DoorConfig::new("perf", config.max_connections);
    door_config.counters = Arc::clone(&config.counters);
    let door = Door::new(door_config);
    let tests: Tests = Arc::default();
    let shared = Arc::new((config, notify, tests, door.clone()));
    std::thread::scope(|scope| {
        let watching = door.clone();
        scope.spawn(move || {
            while !watching.is_shut() {
                if stop.load(Ordering::Relaxed) {
                    watching.shutdown();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let served = door.serve_unix_blocking(listener, |accepted| {
            let UnixAccepted { stream, permit } = accepted;
            let shared = Arc::clone(&shared);
            let work = move || {
                let (config, notify, tests, door) = &*shared;
                let Ok(stream) = stream.into_std() else {
                    return;
                };
                let peer = peer_of(&stream);
                match one_stream(stream, config, tests) {
                    Ok(Some(event)) => {
                        notify(event);
                        if config.one_off {
                            door.shutdown();
                        }
                    }
                    Ok(None) => {}
                    Err(error) => notify(ServerEvent::Failed { peer, error }),
                }
            };
            let _ = permit.spawn_thread("sonde-perf-unix", work);
        });
        door.shutdown();
        served.map_err(|e| Error::io("serving perf on a Unix socket", e))
    })
}

/// The client process, from the kernel's credentials of the socket.
fn peer_of(stream: &UnixStream) -> String {
    match rustix::net::sockopt::socket_peercred(stream) {
        Ok(cred) => format!(
            "pid {} (uid {})",
            cred.pid.as_raw_nonzero(),
            cred.uid.as_raw()
        ),
        Err(_) => "a Unix client".into(),
    }
}

/// One stream: its hello, the wait for its test's others, its bytes; the
/// test's report when it was the last one open.
fn one_stream(
    mut stream: UnixStream,
    config: &UnixServerConfig,
    tests: &Tests,
) -> Result<Option<ServerEvent>> {
    let fail = |what: &str, e| Error::io(format!("{what} (perf over a Unix socket)"), e);
    stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(LINE_TIMEOUT)))
        .and_then(|()| stream.set_write_timeout(Some(QUIET)))
        .map_err(|e| fail("setting up a stream", e))?;
    let hello = match super::read_line(&mut stream) {
        Ok(Some(line)) => Hello::parse(&line).map_err(|e| Error::Invalid(e.to_string()))?,
        Ok(None) => return Ok(None),
        Err(e) => return Err(fail("reading a stream's hello", e)),
    };
    gather(tests, &hello)?;
    super::widen(&stream);
    stream
        .set_read_timeout(Some(QUIET))
        .map_err(|e| fail("setting up a stream", e))?;
    let started = Instant::now();
    let moved = if hello.client_sends {
        receive(&mut stream, &hello, started)
    } else {
        send(&mut stream, &hello, config.max_duration, started)
    };
    Ok(
        finish(tests, &hello, moved)?.map(|(received, sent)| ServerEvent::Test {
            peer: peer_of(&stream),
            streams: hello.streams,
            received,
            sent,
        }),
    )
}

/// Counts this stream in, then waits until all of its test's have come,
/// at most [`LINE_TIMEOUT`].
fn gather(tests: &Tests, hello: &Hello) -> Result<()> {
    let (lock, all_in) = &**tests;
    let poisoned = || Error::Invalid("the tests' table was poisoned".into());
    let mut table = lock.lock().map_err(|_| poisoned())?;
    let entry = table.entry(hello.test.clone()).or_default();
    entry.arrived += 1;
    entry.open += 1;
    all_in.notify_all();
    let deadline = Instant::now() + LINE_TIMEOUT;
    loop {
        let arrived = table.get(&hello.test).map_or(0, |g| g.arrived);
        if arrived >= hello.streams {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            if let Some(g) = table.get_mut(&hello.test) {
                g.open -= 1;
                if g.open == 0 {
                    table.remove(&hello.test);
                }
            }
            return Err(Error::Timeout {
                phase: format!(
                    "waiting for the test's other streams ({arrived} of {} came)",
                    hello.streams
                ),
                after: LINE_TIMEOUT,
            });
        }
        table = all_in.wait_timeout(table, left).map_err(|_| poisoned())?.0;
    }
}

/// Adds this stream's bytes to its test; the test's totals when it was
/// the last one open. A failed stream is still counted out, then told.
fn finish(tests: &Tests, hello: &Hello, moved: Result<(u64, f64)>) -> Result<Option<Totals>> {
    let (lock, _) = &**tests;
    let mut table = lock
        .lock()
        .map_err(|_| Error::Invalid("the tests' table was poisoned".into()))?;
    let Some(g) = table.get_mut(&hello.test) else {
        return moved.map(|_| None);
    };
    g.open -= 1;
    if let Ok((bytes, secs)) = &moved {
        let side = if hello.client_sends {
            &mut g.received
        } else {
            &mut g.sent
        };
        side.0 += bytes;
        side.1 = side.1.max(*secs);
    }
    let done = (g.open == 0).then_some((g.received, g.sent));
    if done.is_some() {
        table.remove(&hello.test);
    }
    moved.map(|_| done)
}

/// Reads the client's bytes to their end, then sends the tally.
fn receive(stream: &mut UnixStream, hello: &Hello, started: Instant) -> Result<(u64, f64)> {
    let mut buf = vec![0u8; hello.len.max(64 * 1024)];
    let mut got = 0u64;
    loop {
        match crate::sys::retry_io(|| stream.read(&mut buf)) {
            Ok(0) => break,
            Ok(n) => got += n as u64,
            Err(e) if crate::sys::timed_out(&e) => {
                return Err(Error::Timeout {
                    phase: "receiving a stream (perf over a Unix socket)".into(),
                    after: QUIET,
                });
            }
            Err(e) => return Err(Error::io("receiving a stream (perf over a Unix socket)", e)),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let tally = Tally {
        bytes: got,
        seconds,
    };
    stream
        .write_all(tally.line().as_bytes())
        .map_err(|e| Error::io("sending the tally (perf over a Unix socket)", e))?;
    Ok((got, seconds))
}

/// Sends for the hello's time (at most `max`) or its bytes, ends the
/// stream, and checks the client's tally against what was sent.
fn send(
    stream: &mut UnixStream,
    hello: &Hello,
    max: Option<Duration>,
    started: Instant,
) -> Result<(u64, f64)> {
    let fail = |e| Error::io("sending a stream (perf over a Unix socket)", e);
    let buf = crate::perf::stream::payload(hello.len, false);
    let secs = Duration::try_from_secs_f64(hello.secs).unwrap_or(Duration::MAX);
    let until = max.map_or(secs, |m| secs.min(m));
    let timed = hello.bytes == 0;
    let mut sent = 0u64;
    loop {
        if (timed && started.elapsed() >= until) || (!timed && sent >= hello.bytes) {
            break;
        }
        let n = if timed {
            buf.len()
        } else {
            usize::try_from(hello.bytes - sent).map_or(buf.len(), |left| left.min(buf.len()))
        };
        let wrote = crate::sys::retry_io(|| stream.write(&buf[..n])).map_err(fail)?;
        if wrote == 0 {
            return Err(fail(std::io::ErrorKind::WriteZero.into()));
        }
        sent += wrote as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    stream.set_read_timeout(Some(LINE_TIMEOUT)).map_err(fail)?;
    let line = super::read_line(stream)
        .map_err(|e| Error::io("reading the client's tally (perf over a Unix socket)", e))?;
    let got = line.and_then(|l| Tally::parse(&l).ok()).map(|t| t.bytes);
    match got {
        Some(n) if n == sent => Ok((sent, seconds)),
        Some(n) => Err(Error::Invalid(format!(
            "the client read {n} of the {sent} bytes sent (perf over a Unix socket)"
        ))),
        None => Err(Error::Ended(
            "the client left without its tally (perf over a Unix socket)".into(),
        )),
    }
}
