//! File transfer (`sonde send` / `sonde receive`): files and directory
//! trees streamed over one TCP connection, every file hashed with BLAKE3 as
//! it goes, verified by the receiver before it is renamed into place,
//! resumable after an interruption, and confined to the receiving directory
//! whatever the sender says.
//!
//! - [`wire`]: the protocol's messages and framing, pure.
//! - [`path`]: which paths a receiver accepts, pure.
//! - [`plan`]: what a sender will send (walking directories).
//! - [`send()`] and [`receive()`]: the two ends, on blocking threads (one
//!   transfer at a time needs no runtime): a large file's hashing and
//!   socket on one, its disk on another, so the two overlap; small files
//!   read ahead on the sender and written by a small pool on the receiver,
//!   made durable a batch at a time.

mod ahead;
mod arrive;
mod batch;
mod carrier;
mod claims;
pub mod code;
mod commit;
mod conn;
mod floor;
mod pake;
pub mod path;
mod pipeline;
mod place;
pub mod plan;
mod receive;
mod resume;
mod sealed;
mod secure;
mod send;
pub mod serve;
mod sink;
pub mod wire;

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

pub use receive::{ReceiveOptions, receive};
pub use secure::{ReceiveSecurity, SendSecurity};
pub use send::{SendOptions, send};

use crate::error::describe;

/// `sonde receive`'s default port, which `sonde send` uses too.
pub const DEFAULT_PORT: u16 = 7090;

/// How long either end waits for the other by default before giving up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A transfer that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// Reading or writing a socket or a file failed.
    #[error("{what}: {}", describe(cause))]
    Io {
        /// What was being done, with what.
        what: String,
        /// Why.
        cause: io::Error,
    },
    /// The peer said nothing for the whole timeout.
    #[error("{what}: no answer for {:.1} s (--timeout)", .after.as_secs_f64())]
    Timeout {
        /// What was being waited for, from whom.
        what: String,
        /// How long.
        after: Duration,
    },
    /// The peer closed the connection before the transfer ended.
    #[error("{what}: the connection closed before the transfer ended")]
    CutShort {
        /// What was being done.
        what: String,
    },
    /// The peer broke the protocol.
    #[error("{what}: {source}")]
    Wire {
        /// What was being done.
        what: String,
        /// What was wrong.
        source: wire::WireError,
    },
    /// The receiver refused what the sender offered.
    #[error("the receiver refused {what}: {reason}")]
    Refused {
        /// What was refused.
        what: String,
        /// The receiver's reason.
        reason: String,
    },
    /// This receiver refused what the sender offered (it was told so).
    #[error("refused {what}: {reason}")]
    Refusing {
        /// What was refused.
        what: String,
        /// Why.
        reason: String,
    },
    /// A file to send could not be read or is not sendable.
    #[error("{0}")]
    Source(String),
    /// The connection's TLS failed (the handshake, or the session).
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The code phrases of the two ends differ (or the receiver took no
    /// code): nothing was sent.
    #[error("{0}")]
    Code(String),
    /// Data under the code phrase's encryption failed authentication: it
    /// was changed on the way.
    #[error("{0}")]
    Tampered(String),
}

impl TransferError {
    /// The process exit code for this failure: 4 for a refusal, 3 for data
    /// changed on the way, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            TransferError::Refused { .. } | TransferError::Refusing { .. } => 4,
            // As a file whose hash does not match: the bytes were changed.
            TransferError::Tampered(_) => 3,
            _ => 1,
        }
    }

    pub(crate) fn io(what: impl Into<String>, cause: io::Error) -> Self {
        let what = what.into();
        match cause.kind() {
            io::ErrorKind::UnexpectedEof => TransferError::CutShort { what },
            _ => TransferError::Io { what, cause },
        }
    }
}

/// What became of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Hashes matched; the file is in place.
    Verified,
    /// An identical file was already in place; nothing moved.
    Skipped,
    /// The hashes differed; nothing was put in place.
    Mismatch,
    /// The receiver would not take it (the reason says why); the rest of
    /// the transfer went on.
    Refused,
}

/// One file's account.
#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    /// The path on the wire (relative, `/`-separated).
    pub path: String,
    /// Its size.
    pub size: u64,
    /// Where the data started: above 0 when a partial file was resumed.
    pub resumed_from: u64,
    /// Data bytes that crossed the connection for it.
    pub moved: u64,
    /// What became of it.
    pub outcome: Outcome,
    /// Its BLAKE3, hex (the sender's, or the receiver's on a mismatch).
    pub blake3: String,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A whole transfer's account.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The peer's address.
    pub peer: String,
    /// Each file, in order.
    pub files: Vec<FileReport>,
    /// Directories sent or made.
    pub dirs: u64,
    /// Symlinks sent or made.
    pub links: u64,
    /// Directories and symlinks the receiver did not make, and why.
    pub notes: Vec<(String, String)>,
    /// The sum of the files' sizes.
    pub bytes: u64,
    /// Data bytes that crossed the connection.
    pub moved: u64,
    /// Wall time, from the hello to the end.
    pub seconds: f64,
}

impl Report {
    /// Files whose hashes did not match.
    pub fn mismatches(&self) -> usize {
        self.count(Outcome::Mismatch)
    }

    /// Files that were already in place.
    pub fn skipped(&self) -> usize {
        self.count(Outcome::Skipped)
    }

    /// Files the receiver would not take.
    pub fn refused(&self) -> usize {
        self.count(Outcome::Refused)
    }

    /// Files resumed from a partial one.
    pub fn resumed(&self) -> usize {
        self.files.iter().filter(|f| f.resumed_from > 0).count()
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.files.iter().filter(|f| f.outcome == outcome).count()
    }
}

/// Live counters a progress display reads while a transfer runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes of all files (known sizes).
    pub total: AtomicU64,
    /// Bytes of all files dealt with so far (sent, skipped or resumed).
    pub done: AtomicU64,
    /// Files (and symlinks) in the transfer.
    pub files_total: AtomicU64,
    /// Files settled so far (committed, skipped or refused).
    pub files_done: AtomicU64,
    /// The current file's size, or `u64::MAX` when unknown.
    pub file_size: AtomicU64,
    /// Bytes of the current file dealt with so far.
    pub file_done: AtomicU64,
    /// The current file's path.
    pub file_name: Mutex<String>,
    /// What the transfer waits for from its peer, while it waits (the
    /// hello, the answer to the offer), else empty.
    pub waiting: Mutex<String>,
}

impl Progress {
    pub(crate) fn start_file(&self, name: &str, size: Option<u64>) {
        if let Ok(mut current) = self.file_name.lock() {
            current.clear();
            current.push_str(name);
        }
        self.file_size
            .store(size.unwrap_or(u64::MAX), Ordering::Relaxed);
        self.file_done.store(0, Ordering::Relaxed);
    }

    pub(crate) fn add(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
        self.file_done.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn wait_for(&self, what: &str) {
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.clear();
            waiting.push_str(what);
        }
    }

    /// What the transfer waits for now, if anything.
    pub fn waiting_for(&self) -> Option<String> {
        self.waiting
            .lock()
            .ok()
            .filter(|w| !w.is_empty())
            .map(|w| w.clone())
    }

    /// The current file's name.
    pub fn current(&self) -> String {
        self.file_name.lock().map(|n| n.clone()).unwrap_or_default()
    }
}

/// A BLAKE3 hash as hex.
pub(crate) fn hex(hash: &blake3::Hash) -> String {
    hash.to_hex().to_string()
}
