//! Moving one file's data with hashing and network work overlapped: the
//! sender reads and hashes on one thread while the socket is written on
//! another; the receiver reads the socket on one thread while another
//! hashes and writes the file. Buffers go round between the two, so a run
//! allocates a few at its start and none after.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::thread;

use super::conn::Conn;
use super::wire::WireError;
use super::{Progress, TransferError};

/// Bytes per chunk on the wire.
pub(crate) const CHUNK: usize = 1024 * 1024;
/// Buffers in flight between the two threads.
const DEPTH: usize = 4;

/// A buffer with room for a chunk header before the data.
struct Buf {
    bytes: Vec<u8>,
    len: usize,
}

fn buffers(tx: &mpsc::Sender<Buf>, size: usize) {
    for _ in 0..DEPTH + 1 {
        let _ = tx.send(Buf {
            bytes: vec![0; size],
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
                let n = read_some(input, &mut buf.bytes[4..4 + want])
                    .map_err(|e| TransferError::io(format!("reading {name}"), e))?;
                if n == 0 {
                    if let Some(limit) = limit {
                        return Err(TransferError::Source(format!(
                            "{name} shrank while being sent ({sent} of {limit} bytes)"
                        )));
                    }
                    break;
                }
                hasher.update(&buf.bytes[4..4 + n]);
                buf.bytes[..4].copy_from_slice(&(n as u32).to_be_bytes());
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
            wrote = conn.write_all(&buf.bytes[..buf.len], "sending file data");
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

/// Receives chunks until the end-of-file chunk, hashing them into `hasher`
/// and writing them to `output`. `expect` is the exact count due when known;
/// `cap` bounds an unknown one. Returns the hasher and the bytes received;
/// on a failure, what arrived before it is still written.
pub(crate) fn receive_stream(
    conn: &mut Conn,
    output: &mut (dyn Write + Send),
    expect: Option<u64>,
    cap: u64,
    mut hasher: blake3::Hasher,
    progress: &Progress,
    name: &str,
) -> Result<(blake3::Hasher, u64), TransferError> {
    let (full_tx, full_rx) = mpsc::sync_channel::<Buf>(DEPTH);
    let (empty_tx, empty_rx) = mpsc::channel::<Buf>();
    buffers(&empty_tx, CHUNK);
    thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<blake3::Hasher, TransferError> {
            for buf in full_rx {
                hasher.update(&buf.bytes[..buf.len]);
                output
                    .write_all(&buf.bytes[..buf.len])
                    .map_err(|e| TransferError::io(format!("writing {name}"), e))?;
                if empty_tx.send(buf).is_err() {
                    break;
                }
            }
            Ok(hasher)
        });
        let got = read_chunks(conn, &full_tx, &empty_rx, expect, cap, progress);
        drop(full_tx);
        let hasher = writer
            .join()
            .map_err(|_| TransferError::Source(format!("writing {name}: the writer failed")))?;
        let got = got?;
        Ok((hasher?, got))
    })
}

fn read_chunks(
    conn: &mut Conn,
    full: &mpsc::SyncSender<Buf>,
    empty: &mpsc::Receiver<Buf>,
    expect: Option<u64>,
    cap: u64,
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
        conn.read_exact(&mut buf.bytes[..len], "reading file data")?;
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

/// Reads until `buf` is full or the input ends, so chunks stay large even
/// from pipes.
fn read_some(input: &mut (dyn Read + Send), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
