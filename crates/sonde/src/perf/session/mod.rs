//! The iperf3 control session without I/O: the client's and the server's
//! side as state machines, in quinn-proto's style. Inputs are `handle_*`
//! (a state byte, a JSON message, the connection closing, the time),
//! outputs are `poll_*` (the next action, what to read, when the next
//! deadline falls). The drivers in `client` and `server` only read,
//! write, measure and pass the time in, so every transition, the
//! unexpected ones and the timeouts included, is tested in memory.

pub mod client;
pub mod server;

use std::time::Duration;

use crate::error::Error;

/// What a session waits to read from its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A state byte.
    State,
    /// A length-prefixed JSON message of at most `max` bytes.
    Json {
        /// The largest length accepted.
        max: u32,
    },
    /// `SERVER_ERROR`'s two big-endian i32 (code, errno).
    ServerError,
    /// Nothing: the driver is busy with an action.
    Nothing,
}

/// A phase that took too long, named with the peer.
fn with_deadline(phase: &str, peer: &str, after: Duration) -> Error {
    Error::Timeout {
        phase: format!("{phase} (control connection with {peer})"),
        after,
    }
}
