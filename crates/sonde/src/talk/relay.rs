//! The netcat core: one TCP connection joined to an input and an output.
//!
//! Both directions run at once on their own threads (blocking I/O is the
//! cheapest per byte, and lets the pumps use `splice`). The rules for ending:
//! - at the end of the input, half-close (unless `no_shutdown`) and keep
//!   reading until the peer has finished, so no late reply is lost;
//! - when the peer finishes first, keep sending the rest of the input,
//!   unless the input is interactive (a terminal), when there is nothing
//!   left to wait for;
//! - a failed write or a reset ends it early with an error.

use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::pump::{self, Activity, Filters, HexSink, PumpError};
use super::transform::Direction;
use crate::error::{Error, Result};

/// What to send to the peer.
#[derive(Debug)]
pub enum Input {
    /// A descriptor (stdin, a file, a pipe), read to its end.
    Fd(OwnedFd),
    /// Fixed bytes (`--message`).
    Bytes(Vec<u8>),
    /// Nothing at all (`--recv-only`).
    Nothing,
}

impl Input {
    /// The same input a line at a time, `every` apart (ncat's `--delay`,
    /// OpenBSD nc's `-i`): a thread reads it and writes each line into a
    /// pipe, which is the new input.
    ///
    /// # Errors
    /// When the pipe or the thread cannot be made.
    pub fn paced(self, every: Duration) -> std::io::Result<Self> {
        use std::io::{BufRead, Write};
        let mut lines: Box<dyn BufRead + Send> = match self {
            Self::Nothing => return Ok(self),
            Self::Fd(fd) => Box::new(std::io::BufReader::new(std::fs::File::from(fd))),
            Self::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes)),
        };
        let (reader, mut writer) = std::io::pipe()?;
        thread::Builder::new()
            .name("sonde-pacer".into())
            .spawn(move || {
                let mut line = Vec::new();
                let mut first = true;
                loop {
                    line.clear();
                    match lines.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if !std::mem::take(&mut first) {
                        thread::sleep(every);
                    }
                    // The relay stopped reading: nothing more to pace.
                    if writer.write_all(&line).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self::Fd(reader.into()))
    }
}

/// How a relay behaves; the defaults are netcat's with safe end-of-input.
#[derive(Clone, Default)]
pub struct RelayOptions {
    /// Keep the write side open at the end of the input.
    pub no_shutdown: bool,
    /// Discard what the peer sends.
    pub send_only: bool,
    /// Stop waiting this long after the input ends.
    pub quit_after: Option<Duration>,
    /// Fail when nothing moves either way for this long.
    pub idle_timeout: Option<Duration>,
    /// Send line feeds as CRLF.
    pub crlf: bool,
    /// Dump traffic in hex to this sink.
    pub hex: Option<HexSink>,
    /// Copy traffic, both ways as it is, to this sink (ncat's `-o`).
    pub session: Option<HexSink>,
    /// Bytes to send before the input (`listen --greet`).
    pub greeting: Option<Vec<u8>>,
    /// The input is a person at a terminal: when the peer finishes
    /// sending, end without waiting for more input.
    pub interactive: bool,
    /// The output may stop reading (a process that has read all it
    /// wants): that ends the downlink only, and the input still goes out.
    /// Otherwise a closed output (`| head`) ends the relay quietly.
    pub output_may_close: bool,
    /// `listen -k`: what each client sends goes to every other client
    /// too (ncat's `--broker`).
    pub broker: bool,
    /// Refuse a telnet server's option negotiation (OpenBSD nc's `-t`).
    pub telnet: bool,
}

impl RelayOptions {
    /// The filters for one direction.
    pub(crate) fn filters(&self, direction: Direction) -> Filters {
        Filters::for_direction(direction, self.crlf, self.hex.as_ref())
            .with_session(self.session.as_ref())
            .with_telnet(self.telnet && direction == Direction::Received)
    }
}

/// What a finished relay moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Bytes read from the input (and greeting) and sent.
    pub sent: u64,
    /// Bytes received from the peer.
    pub received: u64,
}

enum Event {
    Up(Result<u64, PumpError>),
    Down(Result<u64, PumpError>),
}

/// A connected byte stream a relay runs over: TCP, or the plaintext end
/// of a TLS bridge (`crate::tls`), which half-closes the same way.
pub trait Duplex: AsFd + Send + Sized + 'static {
    /// Another handle on the same stream.
    fn duplicate(&self) -> std::io::Result<Self>;
    /// Shuts one or both halves.
    fn shut(&self, how: Shutdown) -> std::io::Result<()>;
}

impl Duplex for TcpStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn shut(&self, how: Shutdown) -> std::io::Result<()> {
        self.shutdown(how)
    }
}

impl Duplex for std::os::unix::net::UnixStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn shut(&self, how: Shutdown) -> std::io::Result<()> {
        self.shutdown(how)
    }
}

/// Relays between `stream` (connected to `peer`) and `input`/`output`
/// until both directions are finished by the rules in the module docs.
///
/// A thread blocked reading an interactive input is left behind when the
/// relay ends early; the caller is expected to exit soon after.
///
/// # Errors
/// [`Error::Io`] naming the direction that failed (a reset, a write to a
/// closed connection), [`Error::IdleTimeout`].
pub fn relay<S: Duplex>(
    stream: S,
    peer: impl std::fmt::Display,
    input: Input,
    output: OwnedFd,
    opts: RelayOptions,
) -> Result<RelayStats> {
    let activity = Activity::new();
    let (tx, rx) = mpsc::channel();
    let mut up_done = matches!(input, Input::Nothing) && opts.greeting.is_none();
    if !up_done {
        spawn_uplink(&stream, input, &opts, &activity, tx.clone())?;
    }
    spawn_downlink(&stream, output, &opts, &activity, tx)?;
    let mut stats = RelayStats::default();
    let mut down_done = false;
    let mut up_done_at = Instant::now();
    while !(up_done && down_done) {
        if down_done && opts.interactive {
            break;
        }
        let deadline = next_deadline(&opts, &activity, up_done.then_some(up_done_at));
        let event = match deadline {
            Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match event {
            Ok(Event::Up(Ok(n))) => {
                stats.sent = n;
                up_done = true;
                up_done_at = Instant::now();
                if !opts.no_shutdown {
                    // The peer may already have gone; its reply still counts.
                    let _ = stream.shut(Shutdown::Write);
                }
            }
            Ok(Event::Down(Ok(n))) => {
                stats.received = n;
                down_done = true;
            }
            Ok(Event::Up(Err(e))) => return Err(up_error(&peer, e)),
            Ok(Event::Down(Err(PumpError::Write(e))))
                if e.kind() == std::io::ErrorKind::BrokenPipe && opts.output_may_close =>
            {
                down_done = true;
            }
            Ok(Event::Down(Err(PumpError::Write(e))))
                if e.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                // Whoever read our output has gone (`| head`): stop quietly.
                break;
            }
            Ok(Event::Down(Err(e))) => return Err(down_error(&peer, e)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(limit) = opts.idle_timeout
                    && activity.last().elapsed() >= limit
                {
                    let _ = stream.shut(Shutdown::Both);
                    return Err(Error::IdleTimeout {
                        what: format!("connection with {peer}"),
                        after: limit,
                    });
                }
                if up_done && opts.quit_after.is_some_and(|q| up_done_at.elapsed() >= q) {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = stream.shut(Shutdown::Both);
    Ok(stats)
}

/// The next moment a timer could end the relay.
fn next_deadline(
    opts: &RelayOptions,
    activity: &Activity,
    up_done_at: Option<Instant>,
) -> Option<Instant> {
    let idle = opts.idle_timeout.map(|limit| activity.last() + limit);
    let quit = up_done_at.and_then(|at| opts.quit_after.map(|q| at + q));
    match (idle, quit) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn up_error(peer: &dyn std::fmt::Display, err: PumpError) -> Error {
    match err {
        PumpError::Read(e) => Error::io("reading the input", e),
        PumpError::Write(e) => Error::io(format!("sending to {peer}"), e),
    }
}

fn down_error(peer: &dyn std::fmt::Display, err: PumpError) -> Error {
    match err {
        PumpError::Read(e) => Error::io(format!("receiving from {peer}"), e),
        PumpError::Write(e) => Error::io("writing the output", e),
    }
}

fn clone_stream<S: Duplex>(stream: &S) -> Result<S> {
    stream
        .duplicate()
        .map_err(|e| Error::io("duplicating the socket", e))
}

fn spawn_uplink<S: Duplex>(
    stream: &S,
    input: Input,
    opts: &RelayOptions,
    activity: &Activity,
    tx: mpsc::Sender<Event>,
) -> Result<()> {
    let sock = clone_stream(stream)?;
    let mut filters = opts.filters(Direction::Sent);
    let greeting = opts.greeting.clone();
    let activity = activity.clone();
    thread::Builder::new()
        .name("sonde-uplink".into())
        .spawn(move || {
            let result = send_all(&sock, greeting, input, &mut filters, &activity);
            let _ = tx.send(Event::Up(result));
        })
        .map_err(|e| Error::io("starting the sending thread", e))?;
    Ok(())
}

/// Sends the greeting, then the input; returns the bytes sent.
pub(crate) fn send_all(
    sock: &impl AsFd,
    greeting: Option<Vec<u8>>,
    input: Input,
    filters: &mut Filters,
    activity: &Activity,
) -> Result<u64, PumpError> {
    let mut sent = 0;
    if let Some(greeting) = greeting {
        // The greeting is sent as given: --crlf is for what is typed.
        let mut plain = Filters {
            crlf: None,
            hex: filters.hex.take(),
            session: filters.session.take(),
            telnet: None,
        };
        plain.write(sock.as_fd(), &greeting)?;
        filters.hex = plain.hex.take();
        filters.session = plain.session.take();
        sent += greeting.len() as u64;
    }
    sent += match input {
        Input::Fd(fd) => pump::pump(fd.as_fd(), sock.as_fd(), filters, activity)?,
        Input::Bytes(bytes) => {
            filters.write(sock.as_fd(), &bytes)?;
            bytes.len() as u64
        }
        Input::Nothing => 0,
    };
    activity.touch();
    Ok(sent)
}

fn spawn_downlink<S: Duplex>(
    stream: &S,
    output: OwnedFd,
    opts: &RelayOptions,
    activity: &Activity,
    tx: mpsc::Sender<Event>,
) -> Result<()> {
    let sock = clone_stream(stream)?;
    let output = if opts.send_only {
        std::fs::File::options()
            .write(true)
            .open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|e| Error::io("opening /dev/null", e))?
    } else {
        output
    };
    let mut filters = opts.filters(Direction::Received);
    let activity = activity.clone();
    thread::Builder::new()
        .name("sonde-downlink".into())
        .spawn(move || {
            let result = pump::pump(sock.as_fd(), output.as_fd(), &mut filters, &activity);
            let _ = tx.send(Event::Down(result));
        })
        .map_err(|e| Error::io("starting the receiving thread", e))?;
    Ok(())
}
