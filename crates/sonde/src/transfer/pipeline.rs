//! Moving one file's data with hashing, disk and network work overlapped.
//! The sender reads and hashes each piece on one thread while the socket
//! is fed on another (with sendfile for regular files, so the data is
//! copied once); the receiver reads and hashes each piece on one thread
//! while another writes full buffers to the disk. Pieces are hashed right
//! after they are copied, while they are still in the CPU's cache.
//! Buffers go round between the two threads, so a run allocates a few at
//! its start and none after.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::thread;

use super::conn::Conn;
use super::sink::ALIGN;
use super::wire::WireError;
use super::{Progress, TransferError};

/// Bytes per chunk on the wire.
const CHUNK: usize = 1024 * 1024;
/// What the sender reads and hashes at a time.
const HASH_BLOCK: usize = 128 * 1024;
/// Buffers in flight between the two threads.
const DEPTH: usize = 4;

/// A buffer whose used part starts block-aligned (for direct writes).
struct Buf {
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

impl Buf {
    fn used(&self) -> &[u8] {
        &self.bytes[self.start..self.start + self.len]
    }
}

fn buffers(tx: &mpsc::Sender<Buf>, size: usize) {
    for _ in 0..DEPTH + 1 {
        let bytes = vec![0; size + ALIGN];
        let start = bytes.as_ptr().align_offset(ALIGN).min(ALIGN);
        let _ = tx.send(Buf {
            bytes,
            start,
            len: 0,
        });
    }
}

/// Sends `input` as chunks, at most `limit` bytes (exactly `limit` when
/// given: an input that ends sooner is an error), hashing them into
/// `hasher`. Returns the hasher and the bytes sent; the end-of-file chunk is
/// left to the caller.
pub(crate) fn send_stream(
    conn: &mut Conn,
    input: &mut (dyn Read + Send),
    limit: Option<u64>,
    mut hasher: blake3::Hasher,
    progress: &Progress,
    name: &str,
) -> Result<(blake3::Hasher, u64), TransferError> {
    let (full_tx, full_rx) = mpsc::sync_channel::<Buf>(DEPTH);
    let (empty_tx, empty_rx) = mpsc::channel::<Buf>();
    buffers(&empty_tx, CHUNK + 4);
    thread::scope(|scope| {
        let reader = scope.spawn(move || -> Result<(blake3::Hasher, u64), TransferError> {
            let mut sent = 0u64;
            while let Ok(mut buf) = empty_rx.recv() {
                let want = limit.map_or(CHUNK, |l| (l - sent).min(CHUNK as u64) as usize);
                if want == 0 {
                    break;
                }
                let data = buf.start + 4;
                let n = read_some(input, &mut buf.bytes[data..data + want])
                    .map_err(|e| TransferError::io(format!("reading {name}"), e))?;
                if n == 0 {
                    if let Some(limit) = limit {
                        return Err(TransferError::Source(format!(
                            "{name} shrank while being sent ({sent} of {limit} bytes)"
                        )));
                    }
                    break;
                }
                hasher.update(&buf.bytes[data..data + n]);
                buf.bytes[buf.start..data].copy_from_slice(&(n as u32).to_be_bytes());
                buf.len = n + 4;
                sent += n as u64;
                if full_tx.send(buf).is_err() {
                    break;
                }
            }
            Ok((hasher, sent))
        });
        let mut wrote = Ok(());
        for buf in full_rx {
            wrote = conn.write_all(buf.used(), "sending file data");
            if wrote.is_err() {
                break;
            }
            progress.add((buf.len - 4) as u64);
            let _ = empty_tx.send(buf);
        }
        // A failed write drops the channels, which stops the reader.
        drop(empty_tx);
        let read = reader
            .join()
            .map_err(|_| TransferError::Source(format!("reading {name}: the reader failed")))?;
        wrote?;
        read
    })
}

/// Sends `len` bytes of a regular file from `offset` as chunks, hashing
/// them into `hasher`. A reader thread reads each chunk into one small
/// buffer (which stays in cache) and hashes it; this thread then hands the
/// same range to the kernel with sendfile, so the data is copied once, not
/// three times.
pub(crate) fn send_file_stream(
    conn: &mut Conn,
    file: &File,
    offset: u64,
    len: u64,
    mut hasher: blake3::Hasher,
    progress: &Progress,
    name: &str,
) -> Result<(blake3::Hasher, u64), TransferError> {
    let (tx, rx) = mpsc::sync_channel::<(u64, usize)>(DEPTH);
    thread::scope(|scope| {
        let reader = scope.spawn(move || -> Result<blake3::Hasher, TransferError> {
            // Small enough to stay in the CPU's cache between the copy and
            // the hash.
            let mut buf = vec![0; HASH_BLOCK];
            let mut at = offset;
            while at < offset + len {
                let want = (offset + len - at).min(CHUNK as u64) as usize;
                for piece in (0..want).step_by(HASH_BLOCK) {
                    let part = &mut buf[..(want - piece).min(HASH_BLOCK)];
                    file.read_exact_at(part, at + piece as u64)
                        .map_err(|e| read_error(e, name))?;
                    hasher.update(part);
                }
                if tx.send((at, want)).is_err() {
                    break;
                }
                at += want as u64;
            }
            Ok(hasher)
        });
        let mut sent = Ok(0u64);
        for (at, n) in rx.iter() {
            let step = conn
                .write_more(&(n as u32).to_be_bytes(), "sending file data")
                .and_then(|()| conn.send_file_range(file, at, n, name));
            if let Err(err) = step {
                sent = Err(err);
                break;
            }
            progress.add(n as u64);
            sent = sent.map(|s| s + n as u64);
        }
        // A failed send drops the channel, which stops the reader.
        drop(rx);
        let hasher = reader
            .join()
            .map_err(|_| TransferError::Source(format!("reading {name}: the reader failed")))?;
        let sent = sent?;
        Ok((hasher?, sent))
    })
}

/// Receives chunks until the end-of-file chunk, hashing them into `hasher`
/// and writing them to `output`. `expect` is the exact count due when known;
/// `cap` bounds an unknown one. Returns the hasher and the bytes received;
/// on a failure, what arrived before it is still written.
pub(crate) fn receive_stream(
    conn: &mut Conn,
    output: &mut (dyn Write + Send),
    expect: Option<u64>,
    cap: u64,
    hasher: blake3::Hasher,
    progress: &Progress,
    name: &str,
) -> Result<(blake3::Hasher, u64), TransferError> {
    let (full_tx, full_rx) = mpsc::sync_channel::<Buf>(DEPTH);
    let (empty_tx, empty_rx) = mpsc::channel::<Buf>();
    buffers(&empty_tx, CHUNK);
    thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<(), TransferError> {
            for buf in full_rx {
                output
                    .write_all(buf.used())
                    .map_err(|e| TransferError::io(format!("writing {name}"), e))?;
                if empty_tx.send(buf).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let mut hasher = hasher;
        let limits = (expect, cap);
        let got = read_chunks(conn, &full_tx, &empty_rx, limits, &mut hasher, progress);
        drop(full_tx);
        writer
            .join()
            .map_err(|_| TransferError::Source(format!("writing {name}: the writer failed")))??;
        Ok((hasher, got?))
    })
}

fn read_chunks(
    conn: &mut Conn,
    full: &mpsc::SyncSender<Buf>,
    empty: &mpsc::Receiver<Buf>,
    (expect, cap): (Option<u64>, u64),
    hasher: &mut blake3::Hasher,
    progress: &Progress,
) -> Result<u64, TransferError> {
    let mut got = 0u64;
    let limit = expect.unwrap_or(cap);
    loop {
        let len = conn.chunk_len()?;
        if len == 0 {
            break;
        }
        if got + len as u64 > limit {
            return Err(match expect {
                Some(n) => conn.wire(WireError::Invalid(format!(
                    "the sender sent more than the {n} bytes it announced"
                ))),
                None => TransferError::Refusing {
                    what: "the transfer".into(),
                    reason: format!("it is over --max-size ({cap} bytes)"),
                },
            });
        }
        let Ok(mut buf) = empty.recv() else {
            // The writer stopped: its error is reported by the caller.
            return Ok(got);
        };
        // Hash each piece as it arrives, while it is still in cache; the
        // writer thread only hands full buffers to the disk.
        for piece in (0..len).step_by(HASH_BLOCK) {
            let from = buf.start + piece;
            let part = &mut buf.bytes[from..from + (len - piece).min(HASH_BLOCK)];
            conn.read_exact(part, "reading file data")?;
            hasher.update(part);
        }
        buf.len = len;
        got += len as u64;
        progress.add(len as u64);
        if full.send(buf).is_err() {
            return Ok(got);
        }
    }
    match expect {
        Some(n) if got != n => Err(conn.wire(WireError::Invalid(format!(
            "the sender ended the file after {got} of the {n} bytes it announced"
        )))),
        _ => Ok(got),
    }
}

fn read_error(err: std::io::Error, name: &str) -> TransferError {
    match err.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            TransferError::Source(format!("{name} shrank while being sent"))
        }
        _ => TransferError::io(format!("reading {name}"), err),
    }
}

/// Reads until `buf` is full or the input ends, so chunks stay large even
/// from pipes.
fn read_some(input: &mut (dyn Read + Send), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match crate::sys::retry_io(|| input.read(&mut buf[filled..]))? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
