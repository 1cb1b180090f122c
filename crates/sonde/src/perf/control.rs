//! The control connection's I/O, thin: state bytes and length-prefixed
//! JSON, each read by a deadline the session gives, so a silent peer
//! cannot hang us. The decoding is in [`crate::wire::iperf`], the
//! decisions in [`crate::perf::session`].

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::sys::retry_io;
use crate::wire::iperf::codec;
use crate::wire::iperf::state::TestState;

/// How long a message may take to arrive once expected (iperf3 3.15+
/// waits 10 s for the first byte and 30 s overall).
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A control connection.
#[derive(Debug)]
pub struct Control {
    stream: TcpStream,
    peer: SocketAddr,
}

/// What a read with a deadline found.
#[derive(Debug, PartialEq)]
pub enum Got<T> {
    /// The message.
    Value(T),
    /// A message that is not iperf3's (a bad length, bad JSON).
    Bad(crate::wire::iperf::ProtocolError),
    /// Nothing whole by the deadline.
    Quiet,
    /// The peer closed the connection.
    Closed,
}

impl Got<()> {
    /// The same outcome for a read that found nothing whole.
    fn map_none<T>(self) -> Got<T> {
        match self {
            Got::Bad(e) => Got::Bad(e),
            Got::Closed => Got::Closed,
            Got::Value(()) | Got::Quiet => Got::Quiet,
        }
    }
}

/// What a timed read of a state byte found.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll {
    /// A state byte arrived.
    State(TestState),
    /// Nothing within the time given.
    Quiet,
    /// The peer closed the connection.
    Closed,
}

impl Control {
    /// Wraps a connected control socket and sets TCP_NODELAY.
    ///
    /// # Errors
    /// When the peer address cannot be read.
    pub fn new(stream: TcpStream) -> Result<Self> {
        let peer = stream
            .peer_addr()
            .map_err(|e| Error::io("reading the control connection's peer", e))?;
        let _ = stream.set_nodelay(true);
        Ok(Self { stream, peer })
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The socket.
    pub fn socket(&self) -> &TcpStream {
        &self.stream
    }

    fn io(&self, what: &str, err: io::Error) -> Error {
        if crate::sys::timed_out(&err) {
            return Error::Timeout {
                phase: format!("{what} (control connection with {})", self.peer),
                after: MESSAGE_TIMEOUT,
            };
        }
        Error::io(
            format!("{what} (control connection with {})", self.peer),
            err,
        )
    }

    /// Writes a state byte.
    ///
    /// # Errors
    /// [`Error::Io`] when the write fails.
    pub fn write_state(&mut self, state: TestState) -> Result<()> {
        self.write_all(&[state.to_wire()], "sending a state byte")
    }

    /// Writes raw bytes.
    ///
    /// # Errors
    /// [`Error::Io`] when the write fails.
    pub fn write_all(&mut self, bytes: &[u8], what: &str) -> Result<()> {
        self.stream.write_all(bytes).map_err(|e| self.io(what, e))
    }

    /// Reads a state byte, waiting at most `limit` (`None`: no limit).
    ///
    /// # Errors
    /// [`Error::Protocol`] for an unknown byte, [`Error::Io`] on failure.
    pub fn poll_state(&mut self, limit: Option<Duration>) -> Result<Poll> {
        let limit = limit.map(|l| l.max(Duration::from_micros(1)));
        self.stream
            .set_read_timeout(limit)
            .map_err(|e| self.io("waiting for a state byte", e))?;
        let mut byte = [0u8; 1];
        {
            match retry_io(|| self.stream.read(&mut byte)) {
                Ok(0) => Ok(Poll::Closed),
                Ok(_) => TestState::from_wire(byte[0])
                    .map(Poll::State)
                    .map_err(|source| Error::Protocol {
                        what: format!("reading the control connection from {}", self.peer),
                        source,
                    }),
                Err(e) if crate::sys::timed_out(&e) => Ok(Poll::Quiet),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(Poll::Closed),
                Err(e) => Err(self.io("waiting for a state byte", e)),
            }
        }
    }

    /// Reads exactly `buf.len()` bytes by `deadline` (`None`: no limit).
    fn fill_by(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Instant>,
        what: &str,
    ) -> Result<Got<()>> {
        let mut filled = 0;
        while filled < buf.len() {
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(Got::Quiet),
                },
                None => None,
            };
            self.stream
                .set_read_timeout(left)
                .map_err(|e| self.io(what, e))?;
            match retry_io(|| self.stream.read(&mut buf[filled..])) {
                Ok(0) => return Ok(Got::Closed),
                Ok(n) => filled += n,
                Err(e) if crate::sys::timed_out(&e) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(Got::Closed),
                Err(e) => return Err(self.io(what, e)),
            }
        }
        Ok(Got::Value(()))
    }

    /// Reads length-prefixed JSON of at most `max` bytes by `deadline`.
    ///
    /// # Errors
    /// [`Error::Io`] when the socket fails.
    pub fn read_json_by(
        &mut self,
        max: u32,
        deadline: Option<Instant>,
        what: &str,
    ) -> Result<Got<Value>> {
        let mut prefix = [0u8; 4];
        match self.fill_by(&mut prefix, deadline, what)? {
            Got::Value(()) => {}
            other => return Ok(other.map_none()),
        }
        let len = match codec::decode_len(prefix, max) {
            Ok(len) => len,
            Err(e) => return Ok(Got::Bad(e)),
        };
        let mut body = vec![0u8; len];
        match self.fill_by(&mut body, deadline, what)? {
            Got::Value(()) => Ok(match codec::decode_json(&body) {
                Ok(json) => Got::Value(json),
                Err(e) => Got::Bad(e),
            }),
            other => Ok(other.map_none()),
        }
    }

    /// Writes `value` as length-prefixed JSON.
    ///
    /// # Errors
    /// [`Error::Io`] when the write fails.
    pub fn write_json(&mut self, value: &Value, what: &str) -> Result<()> {
        let frame = codec::encode_json(value);
        self.write_all(&frame, what)
    }

    /// Reads the two big-endian i32 of a `SERVER_ERROR` (a missing second
    /// word counts as errno 0, as old servers send only one).
    pub fn read_server_error(&mut self) -> Error {
        let what = "reading a server error";
        let mut code = [0u8; 4];
        let deadline = Instant::now() + MESSAGE_TIMEOUT;
        if !matches!(
            self.fill_by(&mut code, Some(deadline), what),
            Ok(Got::Value(()))
        ) {
            return Error::ServerError { code: 0, errno: 0 };
        }
        let mut errno = [0u8; 4];
        let deadline = Instant::now() + Duration::from_millis(500);
        let errno = match self.fill_by(&mut errno, Some(deadline), what) {
            Ok(Got::Value(())) => i32::from_be_bytes(errno),
            _ => 0,
        };
        Error::ServerError {
            code: i32::from_be_bytes(code),
            errno,
        }
    }
}
