//! The control connection's I/O: state bytes, length-prefixed JSON and the
//! cookie, each read with a deadline so a silent peer cannot hang us. The
//! decoding itself is in [`crate::wire::iperf`].

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::wire::iperf::codec;
use crate::wire::iperf::cookie::Cookie;
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
        if matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
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

    /// Reads exactly `buf.len()` bytes within `limit`.
    fn read_exact_within(&mut self, buf: &mut [u8], limit: Duration, what: &str) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut filled = 0;
        while filled < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.io(what, io::ErrorKind::TimedOut.into()));
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| self.io(what, e))?;
            match self.stream.read(&mut buf[filled..]) {
                Ok(0) => {
                    return Err(Error::Ended(format!(
                        "{what}: the peer {} closed the control connection",
                        self.peer
                    )));
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(what, e)),
            }
        }
        Ok(())
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
        loop {
            return match self.stream.read(&mut byte) {
                Ok(0) => Ok(Poll::Closed),
                Ok(_) => TestState::from_wire(byte[0])
                    .map(Poll::State)
                    .map_err(|source| Error::Protocol {
                        what: format!("reading the control connection from {}", self.peer),
                        source,
                    }),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    Ok(Poll::Quiet)
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(Poll::Closed),
                Err(e) => Err(self.io("waiting for a state byte", e)),
            };
        }
    }

    /// Reads a state byte within [`MESSAGE_TIMEOUT`].
    ///
    /// # Errors
    /// As [`Self::poll_state`], plus [`Error::Timeout`] and [`Error::Ended`].
    pub fn read_state(&mut self, what: &str) -> Result<TestState> {
        match self.poll_state(Some(MESSAGE_TIMEOUT))? {
            Poll::State(state) => Ok(state),
            Poll::Quiet => Err(self.io(what, io::ErrorKind::TimedOut.into())),
            Poll::Closed => Err(Error::Ended(format!(
                "{what}: the peer {} closed the control connection",
                self.peer
            ))),
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

    /// Reads length-prefixed JSON of at most `max` bytes.
    ///
    /// # Errors
    /// [`Error::Protocol`] for a bad length or body, else I/O or timeout.
    pub fn read_json(&mut self, max: u32, what: &str) -> Result<Value> {
        let mut prefix = [0u8; 4];
        self.read_exact_within(&mut prefix, MESSAGE_TIMEOUT, what)?;
        let peer = self.peer;
        let protocol = |source| Error::Protocol {
            what: format!("{what} from {peer}"),
            source,
        };
        let len = codec::decode_len(prefix, max).map_err(protocol)?;
        let mut body = vec![0u8; len];
        self.read_exact_within(&mut body, MESSAGE_TIMEOUT, what)?;
        codec::decode_json(&body).map_err(protocol)
    }

    /// Reads the peer's results JSON.
    ///
    /// # Errors
    /// As [`Self::read_json`], and [`Error::Protocol`] for bad results.
    pub fn read_results(&mut self, what: &str) -> Result<crate::wire::iperf::results::Results> {
        let value = self.read_json(crate::wire::iperf::MAX_RESULTS_LEN, what)?;
        crate::wire::iperf::results::Results::from_json(&value).map_err(|source| Error::Protocol {
            what: what.to_string(),
            source,
        })
    }

    /// Reads the 37-byte cookie within `limit`.
    ///
    /// # Errors
    /// I/O, timeout, or the peer closing first.
    pub fn read_cookie(&mut self, limit: Duration) -> Result<Cookie> {
        let mut cookie = [0u8; crate::wire::iperf::COOKIE_LEN];
        self.read_exact_within(&mut cookie, limit, "reading the cookie")?;
        Ok(cookie)
    }

    /// Reads the two big-endian i32 of a `SERVER_ERROR` (a missing second
    /// word counts as errno 0, as old servers send only one).
    pub fn read_server_error(&mut self) -> Error {
        let mut code = [0u8; 4];
        if self
            .read_exact_within(&mut code, MESSAGE_TIMEOUT, "reading a server error")
            .is_err()
        {
            return Error::ServerError { code: 0, errno: 0 };
        }
        let mut errno = [0u8; 4];
        let errno = match self.read_exact_within(
            &mut errno,
            Duration::from_millis(500),
            "reading a server error",
        ) {
            Ok(()) => i32::from_be_bytes(errno),
            Err(_) => 0,
        };
        Error::ServerError {
            code: i32::from_be_bytes(code),
            errno,
        }
    }

    /// Half-closes, drains what the peer still sends (briefly) and closes,
    /// so the last message is not lost to a reset.
    pub fn finish(mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut sink = [0u8; 256];
        while matches!(self.stream.read(&mut sink), Ok(n) if n > 0) {}
    }
}
