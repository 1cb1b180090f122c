//! sonde: a toolkit for TCP and UDP.
//!
//! The library holds everything the `sonde` binary does, without printing to
//! stdout or exiting the process, so it can be tested and embedded.
//!
//! # Layout
//! From the bottom up; a module imports only those above it in this list
//! (and its own children), never a sibling's internals.
//! - [`wire`]: wire formats several subsystems share, pure: iperf3's
//!   protocol and sockperf's header.
//! - `sys` (private): system calls retried on EINTR, `sendfile`.
//! - [`error`]: the library's error type.
//! - [`units`]: bytes and rates written as iperf3 writes them.
//! - [`net`]: resolving names, connecting (every address in turn), binding
//!   dual-stack listeners with a large backlog.
//! - [`tls`]: TLS for the stream modes: certificates, verifiers, pins,
//!   one-line handshake failures, and the bridge that carries a plain
//!   mode over TLS.
//! - [`door`]: the front door every server accepts through: the cap on
//!   open connections, refusals, failed accepts, counters and shutdown.
//! - [`talk`]: the netcat subsystem (`connect`, `listen`, `listen -k`,
//!   port checks, `--exec`).
//! - [`forward`]: `sonde relay FROM TO`, socat's staple, built on
//!   [`talk`]'s pumps and processes.
//! - [`serve`]: echo, discard, chargen, chat and sockperf services, and
//!   the thread reflector for the lowest latency.
//! - [`perf`]: iperf3-compatible throughput tests (client, server, the
//!   embedded loopback test); [`perf::session`] is the control protocol as
//!   a pure state machine.
//! - [`rtt`]: round-trip latency, the delay and bandwidth fit, latency
//!   under load.
//! - [`transfer`]: verified, resumable file transfer (`send`/`receive`).
//! - [`report`]: results (sonde's and iperf3's JSON) drawn as one
//!   self-contained HTML page.

pub mod door;
pub mod error;
pub mod exporter;
#[doc(hidden)]
pub mod forward;
pub mod fuzzing;
pub mod net;
pub mod perf;
pub mod report;
pub mod rtt;
pub mod serve;
pub mod shown;
mod sys;
pub mod talk;
pub mod tls;
pub mod transfer;
pub mod units;
pub mod wire;

pub use error::{Error, Result};
