//! The sending end: offers the plan, announces files a window ahead of
//! their data, and for each, from what the receiver holds, skips, leaves,
//! resumes or sends it (small ones packed together, read and hashed ahead
//! on a thread of their own). A reading thread takes the receiver's words
//! as they come, so nothing waits a round trip per file.

use std::collections::VecDeque;
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::ahead::{Ahead, Ready};
use super::carrier::Carrier;
use super::conn::Conn;
use super::pipeline::{send_file_stream, send_stream};
use super::plan::{Entry, Kind, Plan};
use super::resume::{Held, Resume, hash_prefix, head_of, head_of_file, prefix_hash, resume_point};
use super::secure::{self, SendSecurity};
use super::wire::{Message, WireError};
use super::{FileReport, Outcome, Progress, Report, TransferError, hex};
use crate::shown::escaped;

mod pack;

use pack::packable;

/// How the sender behaves.
#[derive(Clone, Debug)]
pub struct SendOptions {
    /// Give up when the receiver is silent this long.
    pub timeout: Duration,
    /// How the connection is protected.
    pub security: SendSecurity,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            timeout: super::DEFAULT_TIMEOUT,
            security: SendSecurity::Plain,
        }
    }
}

/// Files announced ahead of their data, at most...
const WINDOW: usize = 256;
/// ...and bytes of small files read ahead for them.
const WINDOW_BYTES: usize = 32 * 1024 * 1024;
/// Files this small travel packed, read and hashed ahead.
pub(crate) const SMALL: u64 = 1024 * 1024;
// A small file's proof is its whole hash (see `announce`).
const _: () = assert!(SMALL <= super::wire::PROOF_LEN);

/// Sends `plan` over a connected stream. Mismatched and refused files are
/// reported, not errors: the caller checks [`Report::mismatches`] and
/// [`Report::refused`].
///
/// # Errors
/// [`TransferError::Refused`] when the receiver refuses the transfer,
/// others when the connection or a file fails.
pub fn send(
    stream: TcpStream,
    peer: SocketAddr,
    plan: &Plan,
    progress: &Progress,
    options: &SendOptions,
) -> Result<Report, TransferError> {
    let started = Instant::now();
    let (carrier, layer) = secure::client(stream, peer, &options.security)?;
    let result = send_over(carrier, peer, plan, progress, options);
    let mut report = secure::settle(result, layer)?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn send_over(
    carrier: Carrier,
    peer: SocketAddr,
    plan: &Plan,
    progress: &Progress,
    options: &SendOptions,
) -> Result<Report, TransferError> {
    let mut conn = Conn::new(carrier, peer, options.timeout)?;
    progress.wait_for(&format!("waiting for {peer} to say hello"));
    conn.hello()?;
    let (files, dirs, bytes) = plan.totals();
    progress.total.store(bytes, Ordering::Relaxed);
    progress.files_total.store(files, Ordering::Relaxed);
    let offered = conn.send(&Message::Offer {
        files: files as i64,
        dirs: dirs as i64,
        bytes: bytes as i64,
    });
    if let Err(err) = offered {
        // A receiver that turned us away at its door (busy, or its access
        // rules) wrote why and closed before our offer arrived.
        return Err(match conn.reply("the transfer") {
            Err(refused @ TransferError::Refused { .. }) => refused,
            _ => err,
        });
    }
    progress.wait_for(&format!("waiting for {peer} to accept the offer"));
    match conn.reply("the transfer")? {
        Message::Accept => {}
        // What we sent, back: an echo server (or another sender).
        Message::Offer { .. } => {
            let why = "it sent our offer back: an echo server, or another sender";
            return Err(conn.wire(WireError::NotReceiver(why)));
        }
        other => return Err(conn.unexpected("accept", &other)),
    }
    progress.wait_for("");
    let report = Report {
        peer: peer.to_string(),
        dirs,
        bytes,
        ..Report::default()
    };
    let words = listen(&conn)?;
    let mut sender = Sender {
        conn,
        words,
        progress,
        report,
        settling: VecDeque::new(),
    };
    let result = sender.run(plan);
    sender.conn.shutdown();
    result
}

/// Starts the thread that reads the receiver's messages into a channel.
fn listen(conn: &Conn) -> Result<mpsc::Receiver<Result<Message, TransferError>>, TransferError> {
    let mut reading = conn.reading_half()?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        loop {
            let got = reading.recv();
            let last = matches!(got, Err(_) | Ok(Message::Done | Message::Refuse { .. }));
            // A silent receiver is the waiting side's to judge: a long
            // file's data goes one way only.
            if matches!(got, Err(TransferError::Timeout { .. })) {
                continue;
            }
            if tx.send(got).is_err() || last {
                return;
            }
        }
    });
    Ok(rx)
}

/// One file announced and not yet sent.
struct Offered<'a> {
    entry: &'a Entry,
    /// Its data, read and hashed ahead, for a small file.
    ready: Option<Ready>,
}

struct Sender<'a> {
    conn: Conn,
    words: mpsc::Receiver<Result<Message, TransferError>>,
    progress: &'a Progress,
    report: Report,
    /// Reports of files whose data went, in order, until committed.
    settling: VecDeque<FileReport>,
}

impl Sender<'_> {
    fn run(&mut self, plan: &Plan) -> Result<Report, TransferError> {
        let ahead = Ahead::start(plan.entries.iter().filter_map(small_source));
        let mut entries = plan.entries.iter();
        let mut offered: VecDeque<Offered> = VecDeque::new();
        loop {
            let held = |o: &VecDeque<Offered>| -> usize {
                o.iter()
                    .filter_map(|f| f.ready.as_ref())
                    .map(|r| r.data.len())
                    .sum()
            };
            while offered.len() < WINDOW && held(&offered) < WINDOW_BYTES {
                let Some(entry) = entries.next() else { break };
                if let Some(item) = self.announce(entry, &ahead) {
                    offered.push_back(item);
                }
            }
            let Some(head) = offered.pop_front() else {
                break;
            };
            let held = self.answer(&head.entry.path)?;
            match (held, head.ready) {
                (Ok(held), Some(ready)) if packable(&held, &ready) => {
                    self.pack(head.entry, ready, &mut offered)?;
                }
                (Ok(held), ready) => self.file(head.entry, &held, ready)?,
                (Err(reason), _) => self.refused(head.entry, reason, 0),
            }
        }
        // Stdin's size is known only now that it has been sent.
        self.conn.send(&Message::End)?;
        // Batches settle on the way (`word`); the last comes before Done.
        match self.word("the end of the transfer")? {
            Message::Done if self.settling.is_empty() => {}
            other => return Err(self.conn.unexpected("committed or done", &other)),
        }
        self.report.bytes = self.report.files.iter().map(|f| f.size).sum();
        Ok(std::mem::take(&mut self.report))
    }

    /// Announces an entry; a file is returned to be sent once answered.
    fn announce<'e>(&mut self, entry: &'e Entry, ahead: &Ahead) -> Option<Offered<'e>> {
        let path = entry.path.clone();
        match &entry.kind {
            Kind::Dir { mode, mtime } => {
                self.conn.queue(&Message::Dir {
                    path,
                    mode: *mode,
                    mtime: Some(*mtime),
                });
                None
            }
            Kind::Link { target } => {
                self.conn.queue(&Message::Link {
                    path,
                    target: target.clone(),
                });
                self.report.links += 1;
                None
            }
            Kind::File {
                source,
                mode,
                size,
                mtime,
            } => {
                let ready = (*size <= SMALL).then(|| ahead.next());
                let head = match &ready {
                    // A small file's proof is its whole hash, made ahead.
                    Some(ready) if ready.error.is_none() && ready.data.len() as u64 == *size => {
                        Some(hex(&ready.hash))
                    }
                    Some(ready) if ready.error.is_none() => head_of(&ready.data, *size),
                    Some(_) => None,
                    None => head_of_file(source, *size),
                };
                self.conn.queue(&Message::File {
                    path,
                    mode: *mode,
                    size: *size as i64,
                    mtime: Some(*mtime),
                    head,
                });
                Some(Offered { entry, ready })
            }
            Kind::Stdin => {
                self.conn.queue(&Message::File {
                    path,
                    mode: 0o644,
                    size: -1,
                    mtime: None,
                    head: None,
                });
                Some(Offered { entry, ready: None })
            }
        }
    }

    /// The next of the receiver's messages, settling batches and notes on
    /// the way; a refusal of the transfer is an error.
    fn word(&mut self, what: &str) -> Result<Message, TransferError> {
        self.conn.flush()?;
        loop {
            let timeout = self.conn.timeout();
            let got = match self.words.recv_timeout(timeout) {
                Ok(got) => got?,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(TransferError::Timeout {
                        what: format!("waiting for {what}"),
                        after: timeout,
                    });
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(TransferError::CutShort {
                        what: what.to_string(),
                    });
                }
            };
            match got {
                Message::Committed { files, mismatched } => self.committed(files, &mismatched)?,
                Message::Note { path, reason } => self.report.notes.push(said(path, reason)),
                Message::Refuse { reason } => {
                    return Err(TransferError::Refused {
                        what: what.to_string(),
                        reason: escaped(&reason, false).into_owned(),
                    });
                }
                other => return Ok(other),
            }
        }
    }

    /// The receiver's answer to the file announced at the head.
    fn answer(&mut self, name: &str) -> Result<Result<Held, String>, TransferError> {
        match self.word(name)? {
            Message::Have {
                len,
                blake3,
                complete,
                overwrite,
            } => Ok(Ok(Held {
                len: len as u64,
                hash: blake3,
                complete,
                overwrite,
            })),
            Message::Decline { reason } => Ok(Err(reason)),
            other => Err(self.conn.unexpected("have or decline", &other)),
        }
    }

    fn committed(&mut self, files: u64, mismatched: &[u64]) -> Result<(), TransferError> {
        if files > self.settling.len() as u64 {
            return Err(self.conn.wire(WireError::Invalid(format!(
                "it committed {files} files, {} were sent",
                self.settling.len()
            ))));
        }
        for at in 0..files {
            let Some(mut file) = self.settling.pop_front() else {
                break;
            };
            file.outcome = if mismatched.contains(&at) {
                Outcome::Mismatch
            } else {
                Outcome::Verified
            };
            self.progress.files_done.fetch_add(1, Ordering::Relaxed);
            self.report.files.push(file);
        }
        Ok(())
    }

    fn refused(&mut self, entry: &Entry, reason: String, done: u64) {
        self.progress.add(entry_size(entry).saturating_sub(done));
        self.progress.files_done.fetch_add(1, Ordering::Relaxed);
        self.report.files.push(FileReport {
            path: entry.path.clone(),
            size: entry_size(entry),
            resumed_from: 0,
            moved: 0,
            outcome: Outcome::Refused,
            blake3: String::new(),
            reason: Some(reason),
        });
    }

    fn aside(&mut self, word: Message) -> Result<(), TransferError> {
        match word {
            Message::Committed { files, mismatched } => self.committed(files, &mismatched),
            Message::Note { path, reason } => {
                self.report.notes.push(said(path, reason));
                Ok(())
            }
            Message::Refuse { reason } => Err(TransferError::Refused {
                what: "the transfer".into(),
                reason: escaped(&reason, false).into_owned(),
            }),
            other => Err(self.conn.unexpected("have or decline", &other)),
        }
    }

    /// One file on its own: skipped, left, or sent from where to resume.
    fn file(
        &mut self,
        entry: &Entry,
        held: &Held,
        ready: Option<Ready>,
    ) -> Result<(), TransferError> {
        let name = entry.path.as_str();
        let size = match &entry.kind {
            Kind::File { size, .. } => Some(*size),
            _ => None,
        };
        if let Some(ready) = &ready
            && let Some(err) = &ready.error
        {
            return Err(TransferError::Source(err.clone()));
        }
        let file = match &entry.kind {
            Kind::File { source, .. } if ready.is_none() => Some(
                File::open(source)
                    .map_err(|e| TransferError::io(format!("opening {}", source.display()), e))?,
            ),
            _ => None,
        };
        self.progress.start_file(name, size);
        let start = match (&ready, &file, size) {
            (Some(ready), _, _) => resume_point(held, ready.data.len() as u64, |len| {
                Ok(prefix_hash(&ready.data, len))
            })?,
            (None, Some(file), Some(size)) => {
                resume_point(held, size, |len| hash_prefix(file, len, name))?
            }
            // Standard input cannot be read twice: it always starts afresh.
            _ => Resume::From(0, Box::default()),
        };
        let start = match start {
            Resume::From(0, _) if held.complete && !held.overwrite => {
                let reason = "it exists and differs (use --overwrite to replace it)";
                self.conn.queue(&Message::Leave);
                self.refused(entry, reason.to_string(), 0);
                return Ok(());
            }
            other => other,
        };
        let (offset, hasher) = match start {
            Resume::Skip(hash) => {
                self.conn.queue(&Message::Skip);
                self.progress.add(size.unwrap_or(0));
                self.progress.files_done.fetch_add(1, Ordering::Relaxed);
                self.report.files.push(FileReport {
                    path: name.to_string(),
                    size: size.unwrap_or(0),
                    resumed_from: 0,
                    moved: 0,
                    outcome: Outcome::Skipped,
                    blake3: hex(&hash),
                    reason: None,
                });
                return Ok(());
            }
            Resume::From(offset, hasher) => (offset, *hasher),
        };
        self.conn.queue(&Message::Start {
            offset: offset as i64,
        });
        self.progress.add(offset);
        let streamed = match (&ready, &file, size) {
            (Some(ready), _, _) => self.send_ready(ready, offset, hasher),
            (None, Some(file), Some(size)) => send_file_stream(
                &mut self.conn,
                file,
                offset,
                size - offset,
                hasher,
                self.progress,
                name,
            ),
            _ => send_stream(
                &mut self.conn,
                &mut std::io::stdin(),
                None,
                hasher,
                self.progress,
                name,
            ),
        };
        let (hasher, moved) = streamed.map_err(|err| self.refusal_behind(err))?;
        let hash = hasher.finalize();
        self.conn.queue_bytes(&0u32.to_be_bytes());
        self.conn.queue(&Message::Digest { blake3: hex(&hash) });
        self.report.moved += moved;
        self.settling.push_back(FileReport {
            path: name.to_string(),
            size: size.unwrap_or(offset + moved),
            resumed_from: offset,
            moved,
            outcome: Outcome::Verified,
            blake3: hex(&hash),
            reason: None,
        });
        Ok(())
    }

    /// A small file's bytes from `offset`, already in memory.
    fn send_ready(
        &mut self,
        ready: &Ready,
        offset: u64,
        mut hasher: blake3::Hasher,
    ) -> Result<(blake3::Hasher, u64), TransferError> {
        let rest = &ready.data[offset as usize..];
        hasher.update(rest);
        if !rest.is_empty() {
            self.conn.queue_bytes(&(rest.len() as u32).to_be_bytes());
            self.conn.queue_bytes(rest);
            self.progress.add(rest.len() as u64);
        }
        Ok((hasher, rest.len() as u64))
    }

    /// After a failed write, the receiver may have said why before it
    /// closed (over --max-size, say): that refusal is the better error.
    fn refusal_behind(&mut self, err: TransferError) -> TransferError {
        if !matches!(
            err,
            TransferError::Io { .. } | TransferError::CutShort { .. }
        ) {
            return err;
        }
        loop {
            match self.words.recv_timeout(Duration::from_secs(1)) {
                Ok(Ok(Message::Refuse { reason })) => {
                    return TransferError::Refused {
                        what: "the transfer".into(),
                        reason,
                    };
                }
                Ok(Ok(_)) => {}
                _ => return err,
            }
        }
    }
}

/// A small file's source and size, for reading ahead.
fn small_source(entry: &Entry) -> Option<(std::path::PathBuf, u64)> {
    match &entry.kind {
        Kind::File { source, size, .. } if *size <= SMALL => Some((source.clone(), *size)),
        _ => None,
    }
}

fn entry_size(entry: &Entry) -> u64 {
    match &entry.kind {
        Kind::File { size, .. } => *size,
        _ => 0,
    }
}

/// A receiver's note on a file, both its strings made safe to print.
fn said(path: String, reason: String) -> (String, String) {
    (
        escaped(&path, false).into_owned(),
        escaped(&reason, false).into_owned(),
    )
}
