//! sonde: a toolkit for TCP and UDP.
//!
//! The library holds everything the `sonde` binary does, without printing to
//! stdout or exiting the process, so it can be tested and embedded.
//!
//! # Layout
//! - [`net`]: resolving names, connecting (every address in turn), binding
//!   dual-stack listeners with a large backlog.
//! - [`pump`]: moving bytes between two descriptors as cheaply as the kernel
//!   allows (`sendfile`, `splice`, or plain reads and writes).
//! - [`relay`]: the netcat core: a TCP connection joined to an input and an
//!   output with careful end-of-input (half-close) rules.
//! - [`multi`]: a listener that serves many clients at once (`listen -k`).
//! - [`udp`]: line-per-datagram talking and listening over UDP.
//! - [`transform`]: pure byte transforms: CRLF line endings and hex dumps.
//! - [`transfer`]: verified, resumable file transfer (`send`/`receive`).
//! - [`error`]: the library's error type.

pub mod error;
pub mod iperf;
pub mod multi;
pub mod net;
pub mod perf;
pub mod pump;
pub mod relay;
pub mod rtt;
pub mod serve;
pub mod transfer;
pub mod transform;
pub mod udp;

pub use error::{Error, Result};
