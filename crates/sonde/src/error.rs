//! The library's error type: every variant says what was being done and
//! with what input, so the binary can print it as one clear line.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// A failure in a sonde operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A host name did not resolve.
    #[error("resolving {host}: {}", describe(cause))]
    Resolve {
        /// The name as given.
        host: String,
        /// Why the lookup failed (in the message, not the error chain).
        cause: io::Error,
    },
    /// A name resolved, but to no address of the family asked for.
    #[error("resolving {host}: no {family} address")]
    NoAddress {
        /// The name as given.
        host: String,
        /// "IPv4" or "IPv6".
        family: &'static str,
    },
    /// Every address of a host refused or failed the connection.
    #[error("connecting to {target}: {}", list_failures(.failures))]
    Connect {
        /// The host and port as given.
        target: String,
        /// Each address tried with its error, in order.
        failures: Vec<(SocketAddr, io::Error)>,
    },
    /// Binding or listening on a local address failed.
    #[error("listening on {addr}: {}", describe(cause))]
    Listen {
        /// The local address.
        addr: SocketAddr,
        /// Why it failed.
        cause: io::Error,
    },
    /// A socket operation failed; `what` names it, e.g. "reading from 127.0.0.1:9000".
    #[error("{what}: {}", describe(cause))]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        cause: io::Error,
    },
    /// Nothing moved in either direction for too long.
    #[error("{what}: no data for {:.1} s (idle timeout)", .after.as_secs_f64())]
    IdleTimeout {
        /// The connection that went quiet.
        what: String,
        /// The idle time allowed.
        after: Duration,
    },
    /// The peer broke the iperf3 protocol.
    #[error("{what}: {source}")]
    Protocol {
        /// What was being done.
        what: String,
        /// What was wrong.
        source: crate::wire::iperf::ProtocolError,
    },
    /// iperf3's authentication: credentials not made, or not accepted.
    #[error("authentication: {0}")]
    Auth(#[from] crate::wire::iperf::auth::AuthError),
    /// The iperf3 server is running as many tests as it allows.
    #[error("the server is busy running a test. try again later")]
    Busy,
    /// The iperf3 server reported an error.
    #[error("the server reported an error: {} (code {code}{})", crate::wire::iperf::codec::errors::describe(*.code), errno_text(*.errno))]
    ServerError {
        /// iperf3's error code.
        code: i32,
        /// The server's errno, or 0.
        errno: i32,
    },
    /// The peer ended the test early (terminated, or closed the control connection).
    #[error("{0}")]
    Ended(String),
    /// A phase took too long.
    #[error("{phase} timed out after {:.1} s", .after.as_secs_f64())]
    Timeout {
        /// What was being waited for.
        phase: String,
        /// How long.
        after: Duration,
    },
    /// An argument was out of range or malformed.
    #[error("{0}")]
    Invalid(String),
    /// A data stream's TLS handshake failed.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

fn errno_text(errno: i32) -> String {
    if errno == 0 {
        String::new()
    } else {
        format!(", {}", describe(&io::Error::from_raw_os_error(errno)))
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with a description of what was being done.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            cause: source,
        }
    }
}

pub use crate::sys::describe;

fn list_failures(failures: &[(SocketAddr, io::Error)]) -> String {
    match failures {
        [] => "no address to try".to_string(),
        [(_, err)] => describe(err),
        many => many
            .iter()
            .map(|(addr, err)| format!("{addr}: {}", describe(err)))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_common_errors_in_plain_words() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(describe(&refused), "connection refused");
        let raw = io::Error::from_raw_os_error(libc_enoent());
        assert_eq!(describe(&raw), "no such file or directory");
    }

    #[test]
    fn connect_error_names_target_and_each_address() {
        let one = Error::Connect {
            target: "127.0.0.1:10000".into(),
            failures: vec![(
                "127.0.0.1:10000".parse().expect("literal address"),
                io::ErrorKind::ConnectionRefused.into(),
            )],
        };
        assert_eq!(
            one.to_string(),
            "connecting to 127.0.0.1:10000: connection refused"
        );
    }

    fn libc_enoent() -> i32 {
        2
    }
}
