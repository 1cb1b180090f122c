//! The sending end: offers the plan, then for each file learns what the
//! receiver holds, skips or resumes when the held bytes hash the same, and
//! streams the rest with its BLAKE3.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::conn::Conn;
use super::pipeline::{send_file_stream, send_stream};
use super::plan::{Entry, Kind, Plan};
use super::wire::Message;
use super::{FileReport, Outcome, Progress, Report, TransferError, hex};

/// How the sender behaves.
#[derive(Clone, Debug)]
pub struct SendOptions {
    /// Give up when the receiver is silent this long.
    pub timeout: Duration,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            timeout: super::DEFAULT_TIMEOUT,
        }
    }
}

/// Sends `plan` over a connected stream. Mismatched files are reported,
/// not errors: the caller checks [`Report::mismatches`].
///
/// # Errors
/// [`TransferError::Refused`] when the receiver refuses, others when the
/// connection or a file fails.
pub fn send(
    stream: TcpStream,
    peer: SocketAddr,
    plan: &Plan,
    progress: &Progress,
    options: &SendOptions,
) -> Result<Report, TransferError> {
    let started = Instant::now();
    let mut conn = Conn::new(stream, peer, options.timeout)?;
    progress.wait_for(&format!("waiting for {peer} to say hello"));
    conn.hello()?;
    let (files, dirs, bytes) = plan.totals();
    progress.total.store(bytes, Ordering::Relaxed);
    conn.send(&Message::Offer {
        files: files as i64,
        dirs: dirs as i64,
        bytes: bytes as i64,
    })?;
    progress.wait_for(&format!("waiting for {peer} to accept the offer"));
    match conn.reply("the transfer")? {
        Message::Accept => {}
        // What we sent, back: an echo server (or another sender).
        Message::Offer { .. } => {
            let why = "it sent our offer back: an echo server, or another sender";
            return Err(conn.wire(super::wire::WireError::NotReceiver(why)));
        }
        other => return Err(conn.unexpected("accept", &other)),
    }
    progress.wait_for("");
    let mut report = Report {
        peer: peer.to_string(),
        dirs,
        bytes,
        ..Report::default()
    };
    for entry in &plan.entries {
        match &entry.kind {
            Kind::Dir { mode } => send_dir(&mut conn, &entry.path, *mode)?,
            _ => {
                let file = send_file(&mut conn, entry, progress)?;
                report.moved += file.moved;
                report.files.push(file);
            }
        }
    }
    // Stdin's size is known only now that it has been sent.
    report.bytes = report.files.iter().map(|f| f.size).sum();
    conn.send(&Message::End)?;
    match conn.reply("the end of the transfer")? {
        Message::Done => {}
        other => return Err(conn.unexpected("done", &other)),
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn send_dir(conn: &mut Conn, path: &str, mode: u32) -> Result<(), TransferError> {
    conn.send(&Message::Dir {
        path: path.to_string(),
        mode,
    })?;
    match conn.reply(path)? {
        Message::Ready => Ok(()),
        other => Err(conn.unexpected("ready", &other)),
    }
}

/// Where the data starts, and the hash of what comes before it.
enum Resume {
    Skip(blake3::Hash),
    /// A different file is in place and the receiver will not replace it:
    /// ask, so it says why, without streaming data it will not read.
    Refusal,
    From(u64, Box<blake3::Hasher>),
}

fn send_file(
    conn: &mut Conn,
    entry: &Entry,
    progress: &Progress,
) -> Result<FileReport, TransferError> {
    let name = entry.path.as_str();
    let (file, mode, size) = match &entry.kind {
        Kind::File { source, mode, size } => {
            let file = File::open(source)
                .map_err(|e| TransferError::io(format!("opening {}", source.display()), e))?;
            (Some(file), *mode, Some(*size))
        }
        _ => (None, 0o644, None),
    };
    progress.start_file(name, size);
    conn.send(&Message::File {
        path: name.to_string(),
        mode,
        size: size.map_or(-1, |s| s as i64),
    })?;
    let start = decide(conn, name, file.as_ref().zip(size))?;
    let report = |outcome, offset, moved, hash: &blake3::Hash| FileReport {
        path: name.to_string(),
        size: size.unwrap_or(offset + moved),
        resumed_from: offset,
        moved,
        outcome,
        blake3: hex(hash),
    };
    let (offset, hasher) = match start {
        Resume::Skip(hash) => {
            conn.send(&Message::Skip)?;
            progress.add(size.unwrap_or(0));
            return Ok(report(Outcome::Skipped, 0, 0, &hash));
        }
        Resume::Refusal => {
            conn.send(&Message::Start { offset: 0 })?;
            let reply = conn.reply(name)?;
            return Err(conn.unexpected("refuse", &reply));
        }
        Resume::From(offset, hasher) => (offset, *hasher),
    };
    conn.send(&Message::Start {
        offset: offset as i64,
    })?;
    progress.add(offset);
    let streamed = match (&file, size) {
        (Some(file), Some(size)) => {
            send_file_stream(conn, file, offset, size - offset, hasher, progress, name)
        }
        _ => send_stream(conn, &mut std::io::stdin(), None, hasher, progress, name),
    };
    let (hasher, moved) = streamed.map_err(|err| refusal_behind(conn, name, err))?;
    let hash = hasher.finalize();
    let mut tail = 0u32.to_be_bytes().to_vec();
    tail.extend_from_slice(&super::wire::encode(&Message::Digest {
        blake3: hex(&hash),
    }));
    conn.write_all(&tail, "sending the digest")?;
    match conn.reply(name)? {
        Message::Verified => Ok(report(Outcome::Verified, offset, moved, &hash)),
        Message::Mismatch { .. } => Ok(report(Outcome::Mismatch, offset, moved, &hash)),
        other => Err(conn.unexpected("verified", &other)),
    }
}

/// Reads the receiver's `Have` and decides where to start.
fn decide(
    conn: &mut Conn,
    name: &str,
    file: Option<(&File, u64)>,
) -> Result<Resume, TransferError> {
    let (len, held_hash, complete, overwrite) = match conn.reply(name)? {
        Message::Have {
            len,
            blake3,
            complete,
            overwrite,
        } => (len as u64, blake3, complete, overwrite),
        other => return Err(conn.unexpected("have", &other)),
    };
    let start = match file {
        Some((file, size)) => {
            resume_point(file, size, (len, held_hash.as_deref(), complete), name)?
        }
        // Standard input cannot be read twice: it always starts afresh.
        None => Resume::From(0, Box::default()),
    };
    Ok(match start {
        Resume::From(0, _) if complete && !overwrite => Resume::Refusal,
        other => other,
    })
}

/// After a failed write, the receiver may have said why before it closed
/// (over --max-size, say): that refusal is the better error.
fn refusal_behind(conn: &mut Conn, name: &str, err: TransferError) -> TransferError {
    if !matches!(
        err,
        TransferError::Io { .. } | TransferError::CutShort { .. }
    ) {
        return err;
    }
    match conn.reply(name) {
        Err(refused @ TransferError::Refused { .. }) => refused,
        _ => err,
    }
}

/// Decides from what the receiver holds: an identical file in place is
/// skipped, a partial one whose bytes hash the same as our prefix is
/// resumed, anything else starts from zero.
fn resume_point(
    file: &File,
    size: u64,
    (held, held_hash, complete): (u64, Option<&str>, bool),
    name: &str,
) -> Result<Resume, TransferError> {
    let fresh = Resume::From(0, Box::default());
    let Some(held_hash) = held_hash else {
        return Ok(fresh);
    };
    if held == 0 || held > size || (complete && held != size) {
        return Ok(fresh);
    }
    // The file was just opened: its cursor is at the start (the data
    // itself is sent by offset, never through the cursor).
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(std::io::Read::take(file, held))
        .map_err(|e| TransferError::io(format!("reading {name}"), e))?;
    // A file now shorter than what is held cannot match it.
    if hasher.count() != held || hex(&hasher.finalize()) != held_hash {
        return Ok(fresh);
    }
    Ok(if complete {
        Resume::Skip(hasher.finalize())
    } else {
        Resume::From(held, Box::new(hasher))
    })
}
