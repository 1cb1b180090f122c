//! The receiving end: checks the offer and every path before touching the
//! disk, tells the sender what it already holds, writes each file beside
//! its target, and renames it into place only when its BLAKE3 matches.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::conn::Conn;
use super::path::components;
use super::pipeline::receive_stream;
use super::place::{Held, PlaceError, Target, apply_modes, directory};
use super::sink::Sink;
use super::wire::{Message, WireError, permission_bits};
use super::{FileReport, Outcome, Progress, Report, TransferError, hex};

/// How the receiver behaves.
#[derive(Clone, Debug)]
pub struct ReceiveOptions {
    /// Everything lands under this directory, and nowhere else.
    pub dir: PathBuf,
    /// Replace files that exist and differ (else the transfer is refused).
    pub overwrite: bool,
    /// The most bytes one transfer may bring.
    pub max_size: Option<u64>,
    /// Give up when the sender is silent this long.
    pub timeout: Duration,
}

/// What one transfer has brought so far, against what was offered.
struct State<'a> {
    options: &'a ReceiveOptions,
    progress: &'a Progress,
    claims: &'a Claims,
    report: Report,
    offered_files: u64,
    offered_dirs: u64,
    offered_bytes: u64,
    announced: u64,
    /// Each directory sent, with the mode it gets at the end.
    dirs: Vec<(PathBuf, u32)>,
}

/// Receives one transfer over an accepted stream. Mismatched files are
/// reported, not errors: the caller checks [`Report::mismatches`].
///
/// # Errors
/// [`TransferError::Refusing`] when the offer, a path or a size is
/// refused (the sender is told why), others when the connection or the
/// disk fails.
pub fn receive(
    stream: TcpStream,
    peer: SocketAddr,
    options: &ReceiveOptions,
    progress: &Progress,
) -> Result<Report, TransferError> {
    let mut conn = Conn::new(stream, peer, options.timeout)?;
    conn.hello()?;
    session(conn, peer, options, progress, &Claims::default())
}

/// Receives one transfer whose sender's hello was already read and found
/// good (the front door reads it); files another session is writing are
/// refused.
pub(crate) fn receive_greeted(
    stream: TcpStream,
    peer: SocketAddr,
    options: &ReceiveOptions,
    progress: &Progress,
    claims: &Claims,
) -> Result<Report, TransferError> {
    let mut conn = Conn::new(stream, peer, options.timeout)?;
    conn.write_all(&super::wire::hello(), "sending the hello")?;
    session(conn, peer, options, progress, claims)
}

/// The targets that sessions are writing now: one session per file.
#[derive(Debug, Default)]
pub(crate) struct Claims(Mutex<HashSet<PathBuf>>);

/// One session's hold on a target; let go when dropped.
struct Claim<'a> {
    claims: &'a Claims,
    path: PathBuf,
}

impl Claims {
    fn claim(&self, path: &Path) -> Option<Claim<'_>> {
        let mut held = self.0.lock().ok()?;
        held.insert(path.to_path_buf()).then(|| Claim {
            claims: self,
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Ok(mut held) = self.claims.0.lock() {
            held.remove(&self.path);
        }
    }
}

fn session(
    mut conn: Conn,
    peer: SocketAddr,
    options: &ReceiveOptions,
    progress: &Progress,
    claims: &Claims,
) -> Result<Report, TransferError> {
    let started = Instant::now();
    match transfer(&mut conn, peer, options, progress, claims) {
        Ok(mut report) => {
            report.seconds = started.elapsed().as_secs_f64();
            Ok(report)
        }
        // A malformed request is refused like an unsafe one: the sender
        // hears why, and nothing of it is written.
        Err(TransferError::Wire { source, .. }) => Err(refuse(
            &mut conn,
            &format!("what {peer} sent"),
            source.to_string(),
        )),
        Err(err) => Err(err),
    }
}

fn transfer(
    conn: &mut Conn,
    peer: SocketAddr,
    options: &ReceiveOptions,
    progress: &Progress,
    claims: &Claims,
) -> Result<Report, TransferError> {
    let (files, dirs, bytes) = match conn.recv()? {
        Message::Offer { files, dirs, bytes } => (files as u64, dirs as u64, bytes as u64),
        other => return Err(conn.unexpected("offer", &other)),
    };
    if let Some(max) = options.max_size
        && bytes > max
    {
        let reason = format!("{bytes} bytes is over --max-size ({max} bytes)");
        return Err(refuse(conn, "the transfer", reason));
    }
    progress
        .total
        .store(bytes, std::sync::atomic::Ordering::Relaxed);
    conn.send(&Message::Accept)?;
    let mut state = State {
        options,
        progress,
        claims,
        report: Report {
            peer: peer.to_string(),
            ..Report::default()
        },
        offered_files: files,
        offered_dirs: dirs,
        offered_bytes: bytes,
        announced: 0,
        dirs: Vec::new(),
    };
    state.entries(conn)?;
    // Only now: a read-only directory is filled before it is made
    // read-only, and an interrupted transfer leaves its directories
    // writable for the resume.
    apply_modes(&state.dirs);
    conn.send(&Message::Done)?;
    Ok(state.report)
}

/// Tells the sender why, and returns the error for our side.
fn refuse(conn: &mut Conn, what: &str, reason: String) -> TransferError {
    let _ = conn.send(&Message::Refuse {
        reason: reason.clone(),
    });
    TransferError::Refusing {
        what: what.to_string(),
        reason,
    }
}

fn placed<T>(
    conn: &mut Conn,
    what: &str,
    result: Result<T, PlaceError>,
) -> Result<T, TransferError> {
    result.map_err(|e| match e {
        PlaceError::Refuse(reason) => refuse(conn, what, reason),
        PlaceError::Failed(err) => err,
    })
}

impl State<'_> {
    fn entries(&mut self, conn: &mut Conn) -> Result<(), TransferError> {
        loop {
            match conn.recv()? {
                Message::Dir { path, mode } => self.dir(conn, &path, mode)?,
                Message::File { path, mode, size } => {
                    let size = u64::try_from(size).ok();
                    let file = self.file(conn, &path, mode, size)?;
                    self.report.moved += file.moved;
                    self.report.bytes += file.size;
                    self.report.files.push(file);
                }
                Message::End => return Ok(()),
                other => return Err(conn.unexpected("dir, file or end", &other)),
            }
        }
    }

    fn dir(&mut self, conn: &mut Conn, path: &str, mode: u32) -> Result<(), TransferError> {
        self.report.dirs += 1;
        if self.report.dirs > self.offered_dirs {
            let reason = format!("more directories than the {} offered", self.offered_dirs);
            return Err(refuse(conn, path, reason));
        }
        let parts = components(path).map_err(|e| refuse(conn, path, e.to_string()))?;
        let dir = placed(conn, path, directory(&self.options.dir, &parts))?;
        self.dirs.push((dir, permission_bits(mode)));
        conn.send(&Message::Ready)
    }

    /// Checks a file's announcement against the offer and its path.
    fn admit(
        &mut self,
        conn: &mut Conn,
        path: &str,
        size: Option<u64>,
    ) -> Result<Target, TransferError> {
        if self.report.files.len() as u64 >= self.offered_files {
            let reason = format!("more files than the {} offered", self.offered_files);
            return Err(refuse(conn, path, reason));
        }
        self.announced += size.unwrap_or(0);
        if self.announced > self.offered_bytes {
            let reason = format!("files larger than the {} bytes offered", self.offered_bytes);
            return Err(refuse(conn, path, reason));
        }
        let parts = components(path).map_err(|e| refuse(conn, path, e.to_string()))?;
        placed(conn, path, Target::new(&self.options.dir, &parts))
    }

    fn file(
        &mut self,
        conn: &mut Conn,
        path: &str,
        mode: u32,
        size: Option<u64>,
    ) -> Result<FileReport, TransferError> {
        let target = self.admit(conn, path, size)?;
        let Some(_claim) = self.claims.claim(&target.path) else {
            let reason = "another transfer to this receiver is writing it now".to_string();
            return Err(refuse(conn, path, reason));
        };
        let held = placed(conn, path, target.held())?;
        conn.send(&have(&held, self.options.overwrite))?;
        self.progress.start_file(path, size);
        let mut report = FileReport {
            path: path.to_string(),
            size: size.unwrap_or(0),
            resumed_from: 0,
            moved: 0,
            outcome: Outcome::Skipped,
            blake3: String::new(),
        };
        let offset = match (conn.recv()?, &held) {
            (Message::Skip, Held::Complete(_, hash)) => {
                self.progress.add(report.size);
                report.blake3 = hex(hash);
                return Ok(report);
            }
            (Message::Start { offset: 0 }, _) => 0,
            (Message::Start { offset }, Held::Partial(len, _)) if offset as u64 == *len => *len,
            (Message::Start { offset }, _) => {
                return Err(conn.wire(WireError::Invalid(format!(
                    "the sender asked to resume {path} at byte {offset}, which is not what is held"
                ))));
            }
            (other, _) => return Err(conn.unexpected("start or skip", &other)),
        };
        if target.exists() && !self.options.overwrite {
            let reason = "it exists and differs (use --overwrite to replace it)".to_string();
            return Err(refuse(conn, path, reason));
        }
        if size.is_some_and(|s| offset > s) {
            return Err(conn.wire(WireError::Invalid(format!(
                "resuming {path} at byte {offset}, past its end"
            ))));
        }
        let hasher = match held {
            Held::Partial(_, hasher) if offset > 0 => *hasher,
            _ => blake3::Hasher::new(),
        };
        report.resumed_from = offset;
        self.progress.add(offset);
        let (hash, file) = self.data(conn, &target, path, offset, size, hasher, &mut report)?;
        let theirs = match conn.recv()? {
            Message::Digest { blake3 } => blake3,
            other => return Err(conn.unexpected("digest", &other)),
        };
        report.blake3 = hex(&hash);
        if report.blake3 == theirs {
            placed(conn, path, target.commit(file, permission_bits(mode)))?;
            report.outcome = Outcome::Verified;
            conn.send(&Message::Verified)?;
        } else {
            drop(file);
            target.discard();
            report.outcome = Outcome::Mismatch;
            conn.send(&Message::Mismatch {
                blake3: report.blake3.clone(),
            })?;
        }
        Ok(report)
    }

    /// Receives a file's data into its partial file.
    #[allow(clippy::too_many_arguments)]
    fn data(
        &mut self,
        conn: &mut Conn,
        target: &Target,
        path: &str,
        offset: u64,
        size: Option<u64>,
        hasher: blake3::Hasher,
        report: &mut FileReport,
    ) -> Result<(blake3::Hash, std::fs::File), TransferError> {
        let file = placed(conn, path, target.open(offset))?;
        let mut sink = Sink::new(file, offset);
        let cap = self
            .options
            .max_size
            .map_or(u64::MAX, |m| m.saturating_sub(self.report.moved));
        let expect = size.map(|s| s - offset);
        let got = receive_stream(conn, &mut sink, expect, cap, hasher, self.progress, path);
        let file = sink.into_file();
        let (hasher, moved) = match got {
            Ok(got) => got,
            Err(err) => {
                if let TransferError::Refusing { reason, .. } = &err {
                    // Over --max-size: keep nothing.
                    drop(file);
                    target.discard();
                    let _ = conn.send(&Message::Refuse {
                        reason: reason.clone(),
                    });
                }
                // Cut short: the partial file stays, to be resumed.
                return Err(err);
            }
        };
        report.moved = moved;
        if size.is_none() {
            report.size = moved;
        }
        Ok((hasher.finalize(), file))
    }
}

fn have(held: &Held, overwrite: bool) -> Message {
    match held {
        Held::Nothing => Message::Have {
            len: 0,
            blake3: None,
            complete: false,
            overwrite,
        },
        Held::Partial(len, hasher) => Message::Have {
            len: *len as i64,
            blake3: Some(hex(&hasher.finalize())),
            complete: false,
            overwrite,
        },
        Held::Complete(len, hash) => Message::Have {
            len: *len as i64,
            blake3: Some(hex(hash)),
            complete: true,
            overwrite,
        },
    }
}
