//! The file-transfer protocol on the wire, pure: no sockets, no files.
//!
//! A connection opens with a 10-byte hello each way (`sondexfr` and a
//! big-endian u16 version). Control messages are frames: a big-endian u32
//! length and that many bytes of JSON, at most [`MAX_FRAME`]. Data travels
//! as chunks (a big-endian u32 length and the bytes; a zero length ends a
//! file's data).
//!
//! Nothing waits a round trip per file. The sender announces files ahead
//! of their data (a window of them); the receiver answers each `File` as
//! it reads it, in order (`Have`, or `Decline` for one it will not take,
//! which does not stop the rest), and the sender's data for each answered
//! file follows in the same order: `Skip` (identical in place), `Leave`
//! (different in place, no `--overwrite`), `Start` and its chunks and
//! `Digest`, or, for several small files at once, one `Pack` and one chunk
//! holding them all. The receiver writes files to partial names and makes
//! them durable a batch at a time (`Committed`, in data order), renaming
//! each into place only once verified. Directories and symlinks need no
//! answer; one refused is reported with `Note`.
//!
//! The sender proves what it holds before the receiver says anything of
//! its own: each `File` carries `head`, the BLAKE3 of the file's first
//! [`proof_len`] bytes, and the receiver shows a partial file (to resume)
//! or the file in place (to skip) in `Have` only when its own first bytes
//! hash the same and its length fits the size announced. To any other
//! sender it answers as for a name it does not hold (or, for a file in
//! place it may not replace, declines it), so a stranger learns neither
//! lengths nor hashes of what it never sent.
//!
//! ```text
//! sender                              receiver
//! hello                       ->
//!                             <-      hello
//! Offer{files,dirs,bytes}     ->
//!                             <-      Accept | Refuse
//! Dir{path,mode,mtime}        ->      (made; a refusal is a Note)
//! Link{path,target}           ->      (made; a refusal is a Note)
//! File{path,mode,size,mtime,head} ->
//!                             <-      Have{len,blake3,complete} | Decline
//! Skip | Leave | Start{offset} chunks.. 0 Digest{blake3}
//!      | Pack{sizes,blake3} chunk  ->
//!                             <-      Committed{files,mismatched}
//! End                         ->
//!                             <-      Committed.., Done
//! ```
//!
//! A `Refuse` ends the transfer.

use serde::{Deserialize, Serialize};

/// The first bytes each side sends.
pub const MAGIC: [u8; 8] = *b"sondexfr";
/// This build's protocol version.
pub const VERSION: u16 = 3;
/// The hello's length: magic and version.
pub const HELLO_LEN: usize = 10;
/// The largest control frame accepted (a path is at most 4,096 bytes).
pub const MAX_FRAME: usize = 64 * 1024;
/// The largest data chunk accepted.
pub const MAX_CHUNK: usize = 4 * 1024 * 1024;
/// The longest path accepted, in bytes.
pub const MAX_PATH: usize = 4096;
/// The longest path component accepted, in bytes.
pub const MAX_NAME: usize = 255;
/// The most files one `Pack` may carry.
pub const MAX_PACK: usize = 1024;
/// The most entries one transfer may announce.
pub const MAX_ENTRIES: i64 = 10_000_000;
/// The most of a file's first bytes a sender proves it holds (`File`'s
/// `head`): all of a small file, the first MiB of a larger one.
pub const PROOF_LEN: u64 = 1024 * 1024;

/// How many of a `size`-byte file's first bytes `head` covers.
pub fn proof_len(size: u64) -> u64 {
    size.min(PROOF_LEN)
}

/// The largest size a file or a transfer may announce (2^60 bytes).
pub const MAX_SIZE: i64 = 1 << 60;

/// A wire-level problem: a peer that is not sonde, or broke the protocol.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The hello did not start with [`MAGIC`].
    #[error("it does not speak sonde's transfer protocol (its first bytes: {})", shown(.0))]
    NotSonde(Vec<u8>),
    /// The peer closed the connection before its hello.
    #[error(
        "it closed the connection without sonde's hello: it does not speak sonde's transfer protocol"
    )]
    NoHello,
    /// Both ends are sonde, but speak different versions.
    #[error("protocol version mismatch: this sonde speaks {ours}, the peer speaks {theirs}")]
    Version {
        /// Ours.
        ours: u16,
        /// The peer's.
        theirs: u16,
    },
    /// A frame announced more bytes than allowed.
    #[error("a frame of {0} bytes is over the limit of {MAX_FRAME}")]
    FrameTooLong(usize),
    /// A chunk announced more bytes than allowed.
    #[error("a data chunk of {0} bytes is over the limit of {MAX_CHUNK}")]
    ChunkTooLong(usize),
    /// A frame's JSON did not parse as a message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A message arrived where another was expected.
    #[error("expected {expected}, got {got}")]
    Unexpected {
        /// What the protocol called for.
        expected: &'static str,
        /// What came.
        got: &'static str,
    },
    /// A field held an impossible value.
    #[error("{0}")]
    Invalid(String),
    /// The peer answered as no sonde receiver would.
    #[error("it is not a sonde receiver ({0})")]
    NotReceiver(&'static str),
}

/// Bytes as a reader can take them: printable ASCII as text, the rest
/// as `\xNN`.
fn shown(bytes: &[u8]) -> String {
    let text: String = bytes
        .iter()
        .map(|&b| std::ascii::escape_default(b).to_string())
        .collect();
    format!("\"{text}\"")
}

/// Every control message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    /// Sender: what is coming (sizes known in advance; stdin counts 0).
    Offer {
        /// Regular files (and symlinks).
        files: i64,
        /// Directories.
        dirs: i64,
        /// The sum of the files' sizes.
        bytes: i64,
    },
    /// Receiver: go ahead.
    Accept,
    /// Sender: a directory to create.
    Dir {
        /// Relative path, `/`-separated.
        path: String,
        /// Permission bits.
        mode: u32,
        /// Modification time, nanoseconds since the epoch.
        #[serde(default)]
        mtime: Option<i64>,
    },
    /// Sender: a symlink to create (`--symlinks`).
    Link {
        /// Relative path, `/`-separated.
        path: String,
        /// What it points to, relative to its directory.
        target: String,
    },
    /// Sender: a file comes; `size` is -1 when unknown (stdin).
    File {
        /// Relative path, `/`-separated.
        path: String,
        /// Permission bits.
        mode: u32,
        /// Bytes, or -1.
        size: i64,
        /// Modification time, nanoseconds since the epoch.
        #[serde(default)]
        mtime: Option<i64>,
        /// BLAKE3 (hex) of the file's first [`proof_len`] bytes: what the
        /// receiver asks before it shows anything it holds. None when the
        /// size is not known ahead (stdin) or the bytes could not be read.
        #[serde(default)]
        head: Option<String>,
    },
    /// Receiver: what it already holds of the file announced, shown only
    /// to a sender whose `head` matched (else `len` 0).
    Have {
        /// Bytes held (0: nothing).
        len: i64,
        /// Their BLAKE3 in hex, when `len` > 0.
        blake3: Option<String>,
        /// True for a file in place, false for a partial one left by an
        /// interrupted transfer.
        complete: bool,
        /// Whether a file in place that differs would be replaced (else
        /// the sender leaves it).
        #[serde(default)]
        overwrite: bool,
    },
    /// Receiver: it will not take the file announced; the rest goes on.
    Decline {
        /// Why.
        reason: String,
    },
    /// Sender: the file in place is identical; nothing to send.
    Skip,
    /// Sender: the file in place differs and may not be replaced.
    Leave,
    /// Sender: data follows from `offset` on.
    Start {
        /// The byte the data starts at.
        offset: i64,
    },
    /// Sender: the whole file's BLAKE3, after its last chunk.
    Digest {
        /// Hex.
        blake3: String,
    },
    /// Sender: the next files' whole data, in one chunk that follows.
    Pack {
        /// Each file's size, in order.
        sizes: Vec<u64>,
        /// Each file's BLAKE3, hex.
        blake3: Vec<String>,
    },
    /// Receiver: the next `files` files sent with data are settled and
    /// durable; those at the positions in `mismatched` did not match and
    /// nothing was put in place for them.
    Committed {
        /// How many.
        files: u64,
        /// Positions among them (0-based) that did not match.
        #[serde(default)]
        mismatched: Vec<u64>,
    },
    /// Receiver: a directory or symlink was not made.
    Note {
        /// Its path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Receiver: it will not take this; the transfer ends.
    Refuse {
        /// Why.
        reason: String,
    },
    /// Sender: nothing more.
    End,
    /// Receiver: the transfer is over.
    Done,
}

impl Message {
    /// The message's name, for errors.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Offer { .. } => "offer",
            Message::Accept => "accept",
            Message::Dir { .. } => "dir",
            Message::Link { .. } => "link",
            Message::File { .. } => "file",
            Message::Have { .. } => "have",
            Message::Decline { .. } => "decline",
            Message::Skip => "skip",
            Message::Leave => "leave",
            Message::Start { .. } => "start",
            Message::Digest { .. } => "digest",
            Message::Pack { .. } => "pack",
            Message::Committed { .. } => "committed",
            Message::Note { .. } => "note",
            Message::Refuse { .. } => "refuse",
            Message::End => "end",
            Message::Done => "done",
        }
    }
}

/// Our hello.
pub fn hello() -> [u8; HELLO_LEN] {
    hello_with(VERSION)
}

/// A hello carrying `version` (tests speak other versions).
pub fn hello_with(version: u16) -> [u8; HELLO_LEN] {
    let mut out = [0; HELLO_LEN];
    out[..8].copy_from_slice(&MAGIC);
    out[8..].copy_from_slice(&version.to_be_bytes());
    out
}

/// Checks the peer's hello.
///
/// # Errors
/// [`WireError::NotSonde`] or [`WireError::Version`].
pub fn check_hello(bytes: &[u8; HELLO_LEN]) -> Result<(), WireError> {
    if bytes[..8] != MAGIC {
        return Err(WireError::NotSonde(bytes.to_vec()));
    }
    let theirs = u16::from_be_bytes([bytes[8], bytes[9]]);
    if theirs != VERSION {
        return Err(WireError::Version {
            ours: VERSION,
            theirs,
        });
    }
    Ok(())
}

/// A message as a frame: length and JSON.
pub fn encode(message: &Message) -> Vec<u8> {
    // Serialising a plain enum of strings and integers cannot fail.
    let body = serde_json::to_vec(message).unwrap_or_default();
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Checks a frame's announced length.
///
/// # Errors
/// [`WireError::FrameTooLong`].
pub fn frame_len(header: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(WireError::FrameTooLong(len));
    }
    Ok(len)
}

/// Checks a chunk's announced length (0 ends the file).
///
/// # Errors
/// [`WireError::ChunkTooLong`].
pub fn chunk_len(header: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_CHUNK {
        return Err(WireError::ChunkTooLong(len));
    }
    Ok(len)
}

/// Parses a frame's body and checks its numbers.
///
/// # Errors
/// [`WireError::Malformed`] for JSON that is not a message (bad UTF-8
/// included), [`WireError::Invalid`] for impossible numbers.
pub fn decode(body: &[u8]) -> Result<Message, WireError> {
    let message: Message =
        serde_json::from_slice(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    check_numbers(&message)?;
    Ok(message)
}

fn check_numbers(message: &Message) -> Result<(), WireError> {
    let count = |what: &str, n: i64| {
        if n < 0 {
            Err(WireError::Invalid(format!("{what} {n} is negative")))
        } else if n > MAX_ENTRIES {
            Err(WireError::Invalid(format!(
                "{what} {n} is over the limit of {MAX_ENTRIES}"
            )))
        } else {
            Ok(())
        }
    };
    let size = |what: &str, n: i64, min: i64| {
        if n < min {
            Err(WireError::Invalid(format!("{what} {n} is negative")))
        } else if n > MAX_SIZE {
            Err(WireError::Invalid(format!("{what} {n} is absurd")))
        } else {
            Ok(())
        }
    };
    match message {
        Message::Offer { files, dirs, bytes } => {
            count("file count", *files)?;
            count("directory count", *dirs)?;
            size("total size", *bytes, 0)
        }
        Message::File { size: n, .. } => size("file size", *n, -1),
        Message::Have { len, .. } => size("length held", *len, 0),
        Message::Start { offset } => size("offset", *offset, 0),
        Message::Pack { sizes, blake3 } => {
            if sizes.len() != blake3.len() || sizes.is_empty() || sizes.len() > MAX_PACK {
                return Err(WireError::Invalid(format!(
                    "a pack of {} sizes and {} hashes (1 to {MAX_PACK} of each)",
                    sizes.len(),
                    blake3.len()
                )));
            }
            let total: u64 = sizes.iter().map(|&s| s.min(MAX_CHUNK as u64 + 1)).sum();
            if total > MAX_CHUNK as u64 {
                return Err(WireError::Invalid(format!(
                    "a pack of {total} bytes is over the limit of {MAX_CHUNK}"
                )));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Only the permission bits: never setuid, setgid or sticky.
pub fn permission_bits(mode: u32) -> u32 {
    mode & 0o777
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(message: Message) {
        let frame = encode(&message);
        let len = frame_len(frame[..4].try_into().expect("4 bytes")).expect("short frame");
        assert_eq!(len, frame.len() - 4);
        assert_eq!(decode(&frame[4..]), Ok(message));
    }

    #[test]
    fn messages_survive_the_wire() {
        roundtrip(Message::Offer {
            files: 3,
            dirs: 1,
            bytes: 1 << 40,
        });
        roundtrip(Message::File {
            path: "a/b c/é.txt".into(),
            mode: 0o644,
            size: -1,
            mtime: Some(1_700_000_000_123_456_789),
            head: Some("ab".into()),
        });
        roundtrip(Message::Pack {
            sizes: vec![0, 5],
            blake3: vec!["a".into(), "b".into()],
        });
        roundtrip(Message::Committed {
            files: 3,
            mismatched: vec![1],
        });
        roundtrip(Message::Have {
            len: 5,
            blake3: Some("ab".into()),
            complete: false,
            overwrite: true,
        });
        roundtrip(Message::Done);
    }

    #[test]
    fn hello_checks_magic_and_version() {
        assert_eq!(check_hello(&hello()), Ok(()));
        assert_eq!(
            check_hello(&hello_with(7)),
            Err(WireError::Version {
                ours: VERSION,
                theirs: 7
            })
        );
        let mut other = hello();
        other[0] = b'X';
        assert!(matches!(check_hello(&other), Err(WireError::NotSonde(_))));
    }

    #[test]
    fn hostile_numbers_and_bytes_are_refused() {
        let neg = br#"{"type":"offer","files":-1,"dirs":0,"bytes":0}"#;
        assert_eq!(
            decode(neg),
            Err(WireError::Invalid("file count -1 is negative".into()))
        );
        let huge = br#"{"type":"file","path":"a","mode":420,"size":9223372036854775807}"#;
        assert!(matches!(decode(huge), Err(WireError::Invalid(m)) if m.contains("absurd")));
        let bad_utf8 = b"{\"type\":\"file\",\"path\":\"\xff\",\"mode\":420,\"size\":1}";
        assert!(matches!(decode(bad_utf8), Err(WireError::Malformed(_))));
        assert!(matches!(
            decode(br#"{"type":"file","path":"a","mode":1,"size":1,"x":2}"#),
            Err(WireError::Malformed(_))
        ));
        assert_eq!(
            frame_len((MAX_FRAME as u32 + 1).to_be_bytes()),
            Err(WireError::FrameTooLong(MAX_FRAME + 1))
        );
        assert!(chunk_len(u32::MAX.to_be_bytes()).is_err());
        let uneven = br#"{"type":"pack","sizes":[1,2],"blake3":["a"]}"#;
        assert!(matches!(decode(uneven), Err(WireError::Invalid(_))));
        let big = br#"{"type":"pack","sizes":[4194304,1],"blake3":["a","b"]}"#;
        assert!(matches!(decode(big), Err(WireError::Invalid(m)) if m.contains("over the limit")));
    }

    #[test]
    fn only_permission_bits_are_kept() {
        assert_eq!(permission_bits(0o104_755), 0o755);
        assert_eq!(permission_bits(0o3777), 0o777);
    }
}
