//! The receiving end: checks the offer and every path before touching the
//! disk, answers each file announced with what it already holds (or
//! declines it, and the rest goes on), writes each file beside its target,
//! and renames it into place only when its BLAKE3 matches and the batch it
//! is in is durable (`batch`); the data itself arrives in `arrive`.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::batch::{Batch, Settled};
use super::carrier::Carrier;
use super::claims::{Claim, Claims, Presence};
use super::conn::Conn;
use super::path::components;
use super::place::{DirJournal, Dirs, Held, PlaceError, Target, apply_modes, directory_made};
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
    /// Drop a sender that brings fewer bytes a second than this over a
    /// whole `timeout` (0: no floor).
    pub min_rate: u64,
}

/// What one transfer has brought so far, against what was offered.
pub(super) struct State<'a> {
    pub(super) options: &'a ReceiveOptions,
    pub(super) progress: &'a Progress,
    pub(super) claims: &'a Claims,
    pub(super) presence: Presence<'a>,
    pub(super) report: Report,
    pub(super) offered_files: u64,
    pub(super) offered_dirs: u64,
    pub(super) offered_bytes: u64,
    pub(super) announced: u64,
    /// Files and symlinks announced so far.
    pub(super) seen: u64,
    /// Each directory this transfer made, with the mode and time it gets
    /// at the end.
    pub(super) dirs: Vec<(PathBuf, u32, Option<i64>)>,
    /// Directories checked and made.
    pub(super) checked: Dirs,
    /// Directories made by this transfer, or by the one it resumes.
    pub(super) journal: DirJournal,
    /// Files answered, waiting for their data, in order.
    pub(super) pending: VecDeque<Pending<'a>>,
    /// Files written and not yet durable, each with its claim and its
    /// place in the report.
    pub(super) batch: Batch<(Claim<'a>, usize)>,
}

/// A file announced and answered.
pub(super) struct Pending<'a> {
    pub(super) path: String,
    pub(super) target: Target,
    pub(super) claim: Claim<'a>,
    pub(super) held: Held,
    pub(super) mode: u32,
    pub(super) mtime: Option<i64>,
    pub(super) size: Option<u64>,
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
    let mut conn = Conn::floored(
        Carrier::Tcp(stream),
        peer,
        options.timeout,
        options.min_rate,
    )?;
    conn.hello()?;
    session(conn, peer, options, progress, &Claims::default())
}

/// Receives one transfer whose sender's hello was already read and found
/// good (the front door reads it); files another session is writing are
/// refused.
/// `early`: the front door already answered the hello and read the
/// sender's offer frame (these bytes), which the session reads first.
pub(crate) fn receive_greeted(
    stream: Carrier,
    peer: SocketAddr,
    options: &ReceiveOptions,
    progress: &Progress,
    (claims, early): (&Claims, Option<Vec<u8>>),
) -> Result<Report, TransferError> {
    let mut conn = Conn::floored(stream, peer, options.timeout, options.min_rate)?;
    match early {
        Some(early) => conn.read_first(early),
        None => conn.write_all(&super::wire::hello(), "sending the hello")?,
    }
    session(conn, peer, options, progress, claims)
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
    progress.total.store(bytes, Ordering::Relaxed);
    conn.send(&Message::Accept)?;
    let mut state = State {
        options,
        progress,
        claims,
        presence: claims.enter(),
        report: Report {
            peer: peer.to_string(),
            ..Report::default()
        },
        offered_files: files,
        offered_dirs: dirs,
        offered_bytes: bytes,
        announced: 0,
        seen: 0,
        dirs: Vec::new(),
        checked: Dirs::default(),
        journal: DirJournal::new(&options.dir),
        pending: VecDeque::new(),
        batch: Batch::new(),
    };
    progress.files_total.store(files, Ordering::Relaxed);
    state.entries(conn)?;
    // Only now: a read-only directory is filled before it is made
    // read-only, and an interrupted transfer leaves its directories
    // writable for the resume.
    apply_modes(&state.dirs);
    state.journal.finish();
    conn.send(&Message::Done)?;
    Ok(state.report)
}

/// Tells the sender why, and returns the error for our side.
pub(super) fn refuse(conn: &mut Conn, what: &str, reason: String) -> TransferError {
    let _ = conn.send(&Message::Refuse {
        reason: reason.clone(),
    });
    conn.drain_and_close();
    TransferError::Refusing {
        what: what.to_string(),
        reason,
    }
}

pub(super) fn placed<T>(
    conn: &mut Conn,
    what: &str,
    result: Result<T, PlaceError>,
) -> Result<T, TransferError> {
    result.map_err(|e| match e {
        PlaceError::Refuse(reason) => refuse(conn, what, reason),
        PlaceError::Failed(err) => err,
    })
}

impl<'a> State<'a> {
    fn entries(&mut self, conn: &mut Conn) -> Result<(), TransferError> {
        loop {
            match conn.recv()? {
                Message::Dir { path, mode, mtime } => self.dir(conn, &path, mode, mtime)?,
                Message::Link { path, target } => self.link(conn, &path, &target)?,
                Message::File {
                    path,
                    mode,
                    size,
                    mtime,
                    head,
                } => {
                    let size = u64::try_from(size).ok();
                    // A proof that is not a hash proves nothing.
                    let proof = head.and_then(|h| blake3::Hash::from_hex(h).ok());
                    self.offer(conn, path, mode, (size, proof), mtime)?;
                }
                Message::Skip => self.skip(conn)?,
                Message::Leave => self.leave(conn)?,
                Message::Start { offset } => self.start(conn, offset as u64)?,
                Message::Pack { sizes, blake3 } => self.pack(conn, &sizes, &blake3)?,
                Message::End if self.pending.is_empty() => return self.commit(conn),
                other => return Err(conn.unexpected("dir, link, file, data or end", &other)),
            }
            if self.batch.full() {
                let made = std::mem::take(&mut self.checked.made);
                let settled = self.batch.commit(made)?;
                self.settle(conn, settled);
            }
            while let Some(settled) = self.batch.settled(false)? {
                self.settle(conn, Some(settled));
            }
        }
    }

    /// Commits the last batch and waits for every batch to settle.
    fn commit(&mut self, conn: &mut Conn) -> Result<(), TransferError> {
        let made = std::mem::take(&mut self.checked.made);
        let settled = self.batch.commit(made)?;
        self.settle(conn, settled);
        while self.batch.in_flight() > 0 {
            let settled = self.batch.settled(true)?;
            self.settle(conn, settled);
        }
        Ok(())
    }

    /// A batch is durable: tells the sender, and lets go of its files.
    fn settle(&mut self, conn: &mut Conn, settled: Option<Settled<(Claim<'a>, usize)>>) {
        let Some(Settled {
            tickets,
            mismatched,
        }) = settled
        else {
            return;
        };
        let files = tickets.len() as u64;
        if files == 0 {
            return;
        }
        self.progress.files_done.fetch_add(files, Ordering::Relaxed);
        // This side's reports of the batch's files settle too.
        for &at in &mismatched {
            if let Some((_, index)) = tickets.get(at as usize) {
                self.report.files[*index].outcome = Outcome::Mismatch;
            }
        }
        conn.queue(&Message::Committed { files, mismatched });
    }

    fn dir(
        &mut self,
        conn: &mut Conn,
        path: &str,
        mode: u32,
        mtime: Option<i64>,
    ) -> Result<(), TransferError> {
        self.report.dirs += 1;
        if self.report.dirs > self.offered_dirs {
            let reason = format!("more directories than the {} offered", self.offered_dirs);
            return Err(refuse(conn, path, reason));
        }
        let made = components(path)
            .map_err(|e| PlaceError::Refuse(e.to_string()))
            .and_then(|parts| {
                // Journaled before it is made: a receiver killed between the
                // two would otherwise leave a directory its resume takes for
                // someone else's, and never give it its time and mode.
                let target = parts
                    .iter()
                    .fold(self.options.dir.clone(), |p, c| p.join(c));
                if std::fs::symlink_metadata(&target).is_err() {
                    self.journal.record(path)?;
                }
                let before = self.checked.made.len();
                let dir = directory_made(&self.options.dir, &parts, &mut self.checked)?;
                let made =
                    self.checked.made.len() > before && self.checked.made.last() == Some(&dir);
                Ok((dir, made))
            });
        match made {
            Ok((dir, true)) => {
                placed(conn, path, self.journal.record(path))?;
                self.dirs.push((dir, permission_bits(mode), mtime));
            }
            Ok((dir, false)) if self.journal.listed(path) => {
                self.dirs.push((dir, permission_bits(mode), mtime));
            }
            Ok((_, false)) => {}
            Err(PlaceError::Refuse(reason)) => self.note(conn, path, reason),
            Err(PlaceError::Failed(err)) => return Err(err),
        }
        Ok(())
    }

    fn note(&mut self, conn: &mut Conn, path: &str, reason: String) {
        self.report.notes.push((path.to_string(), reason.clone()));
        conn.queue(&Message::Note {
            path: path.to_string(),
            reason,
        });
    }

    fn count_file(&mut self, conn: &mut Conn, path: &str) -> Result<(), TransferError> {
        self.seen += 1;
        if self.seen > self.offered_files {
            let reason = format!("more files than the {} offered", self.offered_files);
            return Err(refuse(conn, path, reason));
        }
        Ok(())
    }

    fn link(&mut self, conn: &mut Conn, path: &str, target: &str) -> Result<(), TransferError> {
        self.count_file(conn, path)?;
        self.report.links += 1;
        let made = components(path)
            .map_err(|e| PlaceError::Refuse(e.to_string()))
            .and_then(|parts| {
                super::path::check_link(&parts, target).map_err(PlaceError::Refuse)?;
                let (name, parents) = parts
                    .split_last()
                    .ok_or_else(|| PlaceError::Refuse("an empty path".into()))?;
                let dir = directory_made(&self.options.dir, parents, &mut self.checked)?;
                let at = dir.join(name);
                self.checked.named(&at);
                super::place::symlink(&at, target)
            });
        match made {
            Ok(()) => Ok(()),
            Err(PlaceError::Refuse(reason)) => {
                self.note(conn, path, reason);
                Ok(())
            }
            Err(PlaceError::Failed(err)) => Err(err),
        }
    }

    /// Answers a file announced: what is held of it (as far as the
    /// sender's proof shows it holds the same), or a refusal of it.
    fn offer(
        &mut self,
        conn: &mut Conn,
        path: String,
        mode: u32,
        (size, proof): (Option<u64>, Option<blake3::Hash>),
        mtime: Option<i64>,
    ) -> Result<(), TransferError> {
        self.count_file(conn, &path)?;
        self.announced += size.unwrap_or(0);
        if self.announced > self.offered_bytes {
            let reason = format!("files larger than the {} bytes offered", self.offered_bytes);
            return Err(refuse(conn, &path, reason));
        }
        match self.admit(&path, size, proof) {
            Ok((_, _, Held::Differs)) if !self.options.overwrite => {
                let reason = "it exists and differs (use --overwrite to replace it)".to_string();
                self.decline(&path, size, reason.clone());
                conn.queue(&Message::Decline { reason });
                Ok(())
            }
            Ok((target, claim, held)) => {
                conn.queue(&have(&held, self.options.overwrite));
                self.pending.push_back(Pending {
                    path,
                    target,
                    claim,
                    held,
                    mode: permission_bits(mode),
                    mtime,
                    size,
                });
                Ok(())
            }
            Err(PlaceError::Refuse(reason)) => {
                self.decline(&path, size, reason.clone());
                conn.queue(&Message::Decline { reason });
                Ok(())
            }
            Err(PlaceError::Failed(err)) => Err(err),
        }
    }

    fn admit(
        &mut self,
        path: &str,
        size: Option<u64>,
        proof: Option<blake3::Hash>,
    ) -> Result<(Target, Claim<'a>, Held), PlaceError> {
        let parts = components(path).map_err(|e| PlaceError::Refuse(e.to_string()))?;
        let alone = self.presence.alone();
        let target = Target::new(&self.options.dir, &parts, &mut self.checked, alone)?;
        let claims: &'a Claims = self.claims;
        let claim = claims.claim(&target.path).ok_or_else(|| {
            PlaceError::Refuse("another transfer to this receiver is writing it now".into())
        })?;
        let held = target.held(size, proof)?;
        Ok((target, claim, held))
    }

    fn decline(&mut self, path: &str, size: Option<u64>, reason: String) {
        self.progress.files_done.fetch_add(1, Ordering::Relaxed);
        self.progress.add(size.unwrap_or(0));
        self.report.files.push(FileReport {
            path: path.to_string(),
            size: size.unwrap_or(0),
            resumed_from: 0,
            moved: 0,
            outcome: Outcome::Refused,
            blake3: String::new(),
            reason: Some(reason),
        });
    }

    pub(super) fn head(
        &mut self,
        conn: &Conn,
        what: &'static str,
    ) -> Result<Pending<'a>, TransferError> {
        self.pending.pop_front().ok_or_else(|| {
            conn.wire(WireError::Unexpected {
                expected: "a file announced first",
                got: what,
            })
        })
    }

    fn skip(&mut self, conn: &mut Conn) -> Result<(), TransferError> {
        let head = self.head(conn, "skip")?;
        let Held::Complete(len, hash) = &head.held else {
            return Err(conn.wire(WireError::Invalid(format!(
                "the sender skipped {}, which is not here",
                head.path
            ))));
        };
        self.progress.add(*len);
        self.progress.files_done.fetch_add(1, Ordering::Relaxed);
        self.report.bytes += len;
        self.report.files.push(FileReport {
            path: head.path.clone(),
            size: *len,
            resumed_from: 0,
            moved: 0,
            outcome: Outcome::Skipped,
            blake3: hex(hash),
            reason: None,
        });
        Ok(())
    }

    fn leave(&mut self, conn: &mut Conn) -> Result<(), TransferError> {
        let head = self.head(conn, "leave")?;
        let reason = "it exists and differs (use --overwrite to replace it)".to_string();
        self.decline(&head.path, head.size, reason);
        Ok(())
    }
}

fn have(held: &Held, overwrite: bool) -> Message {
    match held {
        Held::Nothing | Held::Differs => Message::Have {
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
