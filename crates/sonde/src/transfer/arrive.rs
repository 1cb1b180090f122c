//! A file's data arriving at the receiver: a pack of small files, or one
//! file streamed from an offset; hashed as it comes, checked against the
//! sender's digest, and handed to the batch to be committed.

use std::os::unix::fs::OpenOptionsExt;

use super::batch::finish;
use super::claims::Claim;
use super::commit::Placed;
use super::conn::Conn;
use super::pipeline::receive_stream;
use super::place::Held;
use super::receive::{Pending, State, placed, refuse};
use super::sink::Sink;
use super::wire::{Message, WireError};
use super::{FileReport, Outcome, TransferError, hex};

impl<'a> State<'a> {
    /// Several small files' whole data in one chunk.
    pub(super) fn pack(
        &mut self,
        conn: &mut Conn,
        sizes: &[u64],
        hashes: &[String],
    ) -> Result<(), TransferError> {
        let total: u64 = sizes.iter().sum();
        let cap = self.options.max_size.unwrap_or(u64::MAX);
        if self.report.moved + total > cap {
            let reason = format!("it is over --max-size ({cap} bytes)");
            return Err(refuse(conn, "the transfer", reason));
        }
        let len = conn.chunk_len()?;
        if len as u64 != total {
            return Err(conn.wire(WireError::Invalid(format!(
                "a pack of {total} bytes came with a chunk of {len}"
            ))));
        }
        let mut data = vec![0; len];
        conn.read_exact(&mut data, "reading file data")?;
        let mut at = 0usize;
        for (size, theirs) in sizes.iter().zip(hashes) {
            let head = self.head(conn, "pack")?;
            if head.size.is_some_and(|s| s != *size) || head.size.is_none() {
                return Err(conn.wire(WireError::Invalid(format!(
                    "{} was announced with {:?} bytes and packed with {size}",
                    head.path, head.size
                ))));
            }
            self.may_replace(conn, &head)?;
            let bytes = data[at..at + *size as usize].to_vec();
            at += *size as usize;
            let hash = blake3::hash(&bytes);
            let good = hex(&hash) == *theirs;
            self.progress.add(*size);
            let index = self.written_file(&head, 0, *size, &hash);
            let (mode, mtime) = (head.mode, head.mtime);
            let (placed, claim) = placed_of(head, good);
            if good {
                self.batch.write(placed, (claim, index), bytes, mode, mtime);
            } else {
                self.batch.add(placed, (claim, index), 0);
            }
        }
        self.batch.hand_over();
        self.report.moved += total;
        Ok(())
    }

    /// A file in place that differs is replaced only with --overwrite.
    fn may_replace(&mut self, conn: &mut Conn, head: &Pending) -> Result<(), TransferError> {
        if head.target.exists()
            && !self.options.overwrite
            && !matches!(head.held, Held::Partial(..))
        {
            let reason = "it exists and differs (use --overwrite to replace it)".to_string();
            return Err(refuse(conn, &head.path, reason));
        }
        Ok(())
    }

    /// This side's report of a file whose data came (settled at commit);
    /// returns its place in the report.
    fn written_file(
        &mut self,
        head: &Pending,
        offset: u64,
        moved: u64,
        hash: &blake3::Hash,
    ) -> usize {
        self.report.bytes += offset + moved;
        self.report.files.push(FileReport {
            path: head.path.clone(),
            size: offset + moved,
            resumed_from: offset,
            moved,
            outcome: Outcome::Verified,
            blake3: hex(hash),
            reason: None,
        });
        self.report.files.len() - 1
    }

    /// One file's data from `offset` on, streamed.
    pub(super) fn start(&mut self, conn: &mut Conn, offset: u64) -> Result<(), TransferError> {
        let head = self.head(conn, "start")?;
        let path = head.path.clone();
        let offset = match (&head.held, offset) {
            (_, 0) => 0,
            (Held::Partial(len, _), o) if o == *len => o,
            (_, o) => {
                return Err(conn.wire(WireError::Invalid(format!(
                    "the sender asked to resume {path} at byte {o}, which is not what is held"
                ))));
            }
        };
        if offset == 0 {
            self.may_replace(conn, &head)?;
        }
        if head.size.is_some_and(|s| offset > s) {
            return Err(conn.wire(WireError::Invalid(format!(
                "resuming {path} at byte {offset}, past its end"
            ))));
        }
        self.progress.start_file(&path, head.size);
        self.progress.add(offset);
        let hasher = match &head.held {
            Held::Partial(_, hasher) if offset > 0 => (**hasher).clone(),
            _ => blake3::Hasher::new(),
        };
        let (hash, moved) = self.data(conn, &head, offset, hasher)?;
        let theirs = match conn.recv()? {
            Message::Digest { blake3 } => blake3,
            other => return Err(conn.unexpected("digest", &other)),
        };
        let good = hex(&hash) == theirs;
        self.report.moved += moved;
        let index = self.written_file(&head, offset, moved, &hash);
        let (placed, claim) = placed_of(head, good);
        self.batch.add(placed, (claim, index), moved);
        Ok(())
    }

    /// Receives a file's data into its partial file, which it leaves with
    /// its mode and time.
    fn data(
        &mut self,
        conn: &mut Conn,
        head: &Pending,
        offset: u64,
        hasher: blake3::Hasher,
    ) -> Result<(blake3::Hash, u64), TransferError> {
        let target = &head.target;
        let file = placed(conn, &head.path, target.open(offset))?;
        let mut sink = Sink::new(file, offset);
        let cap = self
            .options
            .max_size
            .map_or(u64::MAX, |m| m.saturating_sub(self.report.moved));
        let expect = head.size.map(|s| s - offset);
        let got = receive_stream(
            conn,
            &mut sink,
            expect,
            cap,
            hasher,
            self.progress,
            &head.path,
        );
        let file = sink.into_file();
        let (hasher, moved) = match got {
            Ok(got) => got,
            Err(err) => {
                // Refused (over --max-size) or a broken protocol: keep
                // nothing this sender wrote. Cut short: the partial file
                // stays, to be resumed.
                if matches!(
                    err,
                    TransferError::Refusing { .. } | TransferError::Wire { .. }
                ) {
                    drop(file);
                    forget_partial(&target.partial, offset);
                }
                if let TransferError::Refusing { reason, .. } = &err {
                    let _ = conn.send(&Message::Refuse {
                        reason: reason.clone(),
                    });
                    conn.drain_and_close();
                }
                return Err(err);
            }
        };
        finish(&file, &target.partial, Some(head.mode), head.mtime)?;
        Ok((hasher.finalize(), moved))
    }
}

/// Takes back what a refused sender wrote to a partial file: all of it
/// when it started the file, else what it added after `offset` (the
/// bytes an earlier transfer left stay, to be resumed).
fn forget_partial(partial: &std::path::Path, offset: u64) {
    if offset == 0 {
        let _ = std::fs::remove_file(partial);
    } else if let Ok(file) = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(partial)
    {
        let _ = file.set_len(offset);
    }
}

/// A file for the batch, and the claim on it.
pub(super) fn placed_of(head: Pending<'_>, good: bool) -> (Placed, Claim<'_>) {
    let placed = Placed {
        partial: head.target.partial,
        path: head.target.path,
        dir: head.target.dir,
        good,
    };
    (placed, head.claim)
}
