//! The two lines of `perf` over a Unix socket, between two sonde ends
//! (iperf3 has no Unix sockets, so there is no wire to match): each data
//! connection opens with a hello saying which way the bytes go and for
//! how long, and a stream the client sent on ends with the server's tally
//! of what it received. Pure: text in, values out.

use serde::{Deserialize, Serialize};

/// The longest line either side reads: a hello or a tally is far shorter,
/// so a peer that sends more is not speaking this protocol.
pub const MAX_LINE: usize = 1024;

/// What this protocol's hello says first, so that anything else (an
/// iperf3 client pointed at the socket, a stray `nc -U`) is told apart.
const MAGIC: &str = "sonde-unix-perf";

/// A data connection's hello, from the client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`MAGIC`].
    proto: String,
    /// The test this connection is a stream of (the client's random id):
    /// the server reports per test, and `-1` ends after the first.
    pub test: String,
    /// Streams in the test.
    pub streams: u32,
    /// The client sends (the server receives); else the server sends.
    pub client_sends: bool,
    /// Seconds to send for, when `bytes` is 0.
    pub secs: f64,
    /// Bytes this stream sends (0: for `secs`).
    pub bytes: u64,
    /// Bytes per write.
    pub len: usize,
}

/// The server's count of what a stream the client sent on brought.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Bytes received.
    pub bytes: u64,
    /// From the hello to the end of the stream, seconds.
    pub seconds: f64,
}

/// Why a line is not this protocol's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HelloError {
    /// Not the JSON of a hello or tally.
    #[error("not sonde's perf over a Unix socket ({0})")]
    Malformed(String),
    /// A value out of range.
    #[error("{0}")]
    Invalid(String),
}

impl Hello {
    /// A hello for one stream of test `test`.
    pub fn new(
        test: &str,
        streams: u32,
        client_sends: bool,
        (secs, bytes): (f64, u64),
        len: usize,
    ) -> Self {
        Self {
            proto: MAGIC.into(),
            test: test.into(),
            streams,
            client_sends,
            secs,
            bytes,
            len,
        }
    }

    /// The line to send, newline included.
    pub fn line(&self) -> String {
        let mut text = serde_json::to_string(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads a hello line (without its newline), checking every value.
    ///
    /// # Errors
    /// [`HelloError`] saying what is wrong.
    pub fn parse(line: &[u8]) -> Result<Self, HelloError> {
        let hello: Self =
            serde_json::from_slice(line).map_err(|e| HelloError::Malformed(e.to_string()))?;
        if hello.proto != MAGIC {
            return Err(HelloError::Malformed(format!("proto {:?}", hello.proto)));
        }
        if hello.len == 0 || hello.len > super::MAX_LEN {
            return Err(HelloError::Invalid(format!(
                "a block of {} bytes (1 to {})",
                hello.len,
                super::MAX_LEN
            )));
        }
        if !(hello.secs.is_finite() && hello.secs >= 0.0) || (hello.bytes == 0 && hello.secs == 0.0)
        {
            return Err(HelloError::Invalid(format!(
                "{} seconds and {} bytes: nothing ends the stream",
                hello.secs, hello.bytes
            )));
        }
        if hello.streams == 0 || hello.streams > super::MAX_STREAMS || hello.test.len() > 64 {
            return Err(HelloError::Invalid(format!(
                "{} streams (1 to {})",
                hello.streams,
                super::MAX_STREAMS
            )));
        }
        Ok(hello)
    }
}

impl Tally {
    /// The line to send, newline included.
    pub fn line(&self) -> String {
        let mut text = serde_json::to_string(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads a tally line (without its newline).
    ///
    /// # Errors
    /// [`HelloError::Malformed`] for anything else.
    pub fn parse(line: &[u8]) -> Result<Self, HelloError> {
        let tally: Self =
            serde_json::from_slice(line).map_err(|e| HelloError::Malformed(e.to_string()))?;
        if !(tally.seconds.is_finite() && tally.seconds >= 0.0) {
            return Err(HelloError::Malformed(format!("{} seconds", tally.seconds)));
        }
        Ok(tally)
    }
}

/// The bytes each of `streams` sends so that together they send `total`:
/// the first ones carry the remainder.
pub fn share(total: u64, streams: u32, index: u32) -> u64 {
    let n = u64::from(streams.max(1));
    total / n + u64::from(u64::from(index) < total % n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hello_goes_and_comes_back() {
        let hello = Hello::new("ab12", 4, true, (10.0, 0), 131_072);
        let line = hello.line();
        assert!(line.ends_with('\n'));
        assert_eq!(Hello::parse(line.trim_end().as_bytes()), Ok(hello));
        let tally = Tally {
            bytes: 5,
            seconds: 1.5,
        };
        assert_eq!(Tally::parse(tally.line().trim_end().as_bytes()), Ok(tally));
    }

    #[test]
    fn bad_hellos_are_refused_with_the_reason() {
        let bad = |h: Hello| Hello::parse(h.line().trim_end().as_bytes()).expect_err("refused");
        assert!(matches!(
            bad(Hello::new("t", 1, true, (0.0, 0), 10)),
            HelloError::Invalid(_)
        ));
        assert!(matches!(
            bad(Hello::new("t", 1, true, (1.0, 0), 0)),
            HelloError::Invalid(_)
        ));
        assert!(matches!(
            bad(Hello::new("t", 0, true, (1.0, 0), 10)),
            HelloError::Invalid(_)
        ));
        assert!(matches!(
            bad(Hello::new("t", 1, true, (f64::NAN, 0), 10)),
            HelloError::Malformed(_) | HelloError::Invalid(_)
        ));
        let mut other = Hello::new("t", 1, true, (1.0, 0), 10);
        other.proto = "iperf3".into();
        assert!(matches!(bad(other), HelloError::Malformed(_)));
        assert!(Hello::parse(b"\x00\x01 not json").is_err());
        assert!(Tally::parse(b"{\"bytes\":1}").is_err());
    }

    #[test]
    fn shares_add_up() {
        for (total, streams) in [(10, 3), (0, 4), (7, 1), (1, 5)] {
            let sum: u64 = (0..streams).map(|i| share(total, streams, i)).sum();
            assert_eq!(sum, total);
        }
        assert_eq!(share(10, 3, 0), 4);
        assert_eq!(share(10, 3, 2), 3);
    }
}
