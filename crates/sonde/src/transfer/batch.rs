//! Group commit on the receiver: files are written to their partial names
//! (small ones by a writer thread), and a batch of them is made durable
//! together, renamed into place and made durable again (`commit`; a
//! `syncfs` measured faster here than an fsync of each file from a pool:
//! BENCHMARKS.md). Only then is the batch reported to the sender, so the
//! promise of one file at a time stands: a file is in place under its
//! name only when complete and verified, and after a reported success a
//! crash loses nothing.
//!
//! The work is a pipeline across threads: the session reads and verifies,
//! the writer creates and writes small files, the committer syncs and
//! renames the batch before, so that a commit does not stop the session
//! from reading the next batch.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};

use super::TransferError;
use super::commit::{Outcome, Placed, ToCommit, committer};
use super::place::{InDir, system_time};

/// A batch is committed once it holds as many files as were committed
/// before it, within these bounds (the first commits come early, so that
/// the committer starts while the session reads; later ones are larger,
/// so that a long tree costs few syncs)...
const MIN_FILES: usize = 512;
const MAX_FILES: usize = 8192;
/// ...or this many bytes.
pub(crate) const MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Batches handed to the committer and not yet settled, at most.
const IN_FLIGHT: usize = 2;
/// Packs of small files queued for the writer, at most (each up to a
/// chunk's worth of bytes).
const QUEUED: usize = 8;
/// The longest a commit may take.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(600);

/// A batch settled: the caller's tickets for its files, in order, and
/// the positions of those that did not match (removed, not placed).
pub(crate) struct Settled<C> {
    pub(crate) tickets: Vec<C>,
    pub(crate) mismatched: Vec<u64>,
}

/// A small file to write.
struct Job {
    partial: PathBuf,
    data: Vec<u8>,
    mode: u32,
    mtime: Option<i64>,
}

/// What the writer thread is given, in order.
enum Work {
    /// Small files' verified bytes (a pack's worth: one handover, not
    /// one a file, as a handover may wake the writer).
    Write(Vec<Job>),
    /// Everything before is written: commit these.
    Commit(ToCommit),
}

/// Files written and not yet committed, the batches being committed, and
/// the threads doing it. `C` is the caller's ticket for each file, handed
/// back when its batch settles.
pub(crate) struct Batch<C> {
    files: Vec<Placed>,
    tickets: Vec<C>,
    bytes: u64,
    work: Option<mpsc::SyncSender<Work>>,
    done: mpsc::Receiver<Outcome>,
    committing: VecDeque<Vec<C>>,
    /// Small files not yet handed to the writer.
    jobs: Vec<Job>,
    /// Files handed to the committer so far.
    handed: usize,
}

impl<C> Batch<C> {
    pub(crate) fn new() -> Batch<C> {
        // `SONDE_DURABILITY=fsync` measures the other way.
        let each = std::env::var("SONDE_DURABILITY").as_deref() == Ok("fsync");
        let (work, queue) = mpsc::sync_channel::<Work>(QUEUED);
        let (report, done) = mpsc::channel();
        let (commits, to_commit) = mpsc::channel();
        let failed = report.clone();
        std::thread::spawn(move || writer(&queue, &commits, &failed));
        std::thread::spawn(move || committer(&to_commit, &report, each));
        Batch {
            files: Vec::new(),
            tickets: Vec::new(),
            bytes: 0,
            work: Some(work),
            done,
            committing: VecDeque::new(),
            jobs: Vec::new(),
            handed: 0,
        }
    }

    /// Takes a small file's verified bytes for the writer thread (handed
    /// over with the others at [`Batch::hand_over`]).
    pub(crate) fn write(
        &mut self,
        file: Placed,
        ticket: C,
        data: Vec<u8>,
        mode: u32,
        mtime: Option<i64>,
    ) {
        self.bytes += data.len() as u64;
        self.jobs.push(Job {
            partial: file.partial.clone(),
            data,
            mode,
            mtime,
        });
        self.files.push(file);
        self.tickets.push(ticket);
    }

    /// Hands the small files taken so far to the writer thread.
    pub(crate) fn hand_over(&mut self) {
        if self.jobs.is_empty() {
            return;
        }
        let jobs = std::mem::take(&mut self.jobs);
        // A writer gone is reported at the commit.
        if let Some(work) = &self.work {
            let _ = work.send(Work::Write(jobs));
        }
    }

    /// Adds a file already written (and closed) by the caller, or one
    /// that did not match.
    pub(crate) fn add(&mut self, file: Placed, ticket: C, bytes: u64) {
        self.bytes += bytes;
        self.files.push(file);
        self.tickets.push(ticket);
    }

    /// Whether the batch is due.
    pub(crate) fn full(&self) -> bool {
        let due = self.handed.clamp(MIN_FILES, MAX_FILES);
        self.files.len() >= due || self.bytes >= MAX_BYTES
    }

    /// Batches handed over and not yet settled.
    pub(crate) fn in_flight(&self) -> usize {
        self.committing.len()
    }

    /// Hands the batch (and the directories made for it) to be committed
    /// once the files before are written; waits for the oldest batch
    /// when too many are on their way, and returns it.
    pub(crate) fn commit(
        &mut self,
        made: Vec<PathBuf>,
    ) -> Result<Option<Settled<C>>, TransferError> {
        if self.files.is_empty() && made.is_empty() {
            return Ok(None);
        }
        self.hand_over();
        let files = std::mem::take(&mut self.files);
        self.handed += files.len();
        self.committing.push_back(std::mem::take(&mut self.tickets));
        self.bytes = 0;
        let sent = self
            .work
            .as_ref()
            .is_some_and(|work| work.send(Work::Commit(ToCommit { files, made })).is_ok());
        if !sent {
            return Err(TransferError::Source("the writer thread stopped".into()));
        }
        if self.committing.len() > IN_FLIGHT {
            return self.settled(true);
        }
        Ok(None)
    }

    /// The oldest batch, if it has settled (or once it has, with `wait`).
    pub(crate) fn settled(&mut self, wait: bool) -> Result<Option<Settled<C>>, TransferError> {
        if self.committing.is_empty() {
            return Ok(None);
        }
        let outcome = if wait {
            self.done
                .recv_timeout(COMMIT_TIMEOUT)
                .map_err(|_| TransferError::Source("the committing thread stopped".into()))?
        } else {
            match self.done.try_recv() {
                Ok(outcome) => outcome,
                Err(mpsc::TryRecvError::Empty) => return Ok(None),
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(TransferError::Source(
                        "the committing thread stopped".into(),
                    ));
                }
            }
        };
        let mismatched = outcome?;
        let tickets = self.committing.pop_front().unwrap_or_default();
        Ok(Some(Settled {
            tickets,
            mismatched,
        }))
    }
}

impl<C> Drop for Batch<C> {
    fn drop(&mut self) {
        // Ends the threads once their queues are empty; the claims on
        // files being committed are let go only once they are settled.
        self.work.take();
        for _ in 0..self.committing.len() {
            if self.done.recv_timeout(COMMIT_TIMEOUT).is_err() {
                break;
            }
        }
    }
}

/// The writer thread: writes small files in order, and passes each batch
/// on to the committer once its files are written (or reports the first
/// failure in its stead).
fn writer(
    queue: &mpsc::Receiver<Work>,
    commits: &mpsc::Sender<ToCommit>,
    failed: &mpsc::Sender<Outcome>,
) {
    let mut first_failure = None;
    let mut dirs = InDir::default();
    for work in queue {
        match work {
            Work::Write(jobs) => {
                for job in jobs {
                    if first_failure.is_none()
                        && let Err(err) = write_small(&mut dirs, &job)
                    {
                        first_failure = Some(err);
                    }
                }
            }
            Work::Commit(batch) => {
                let sent = match first_failure.take() {
                    Some(err) => failed.send(Err(err)).is_ok(),
                    None => commits.send(batch).is_ok(),
                };
                if !sent {
                    return;
                }
            }
        }
    }
}

fn write_small(dirs: &mut InDir, job: &Job) -> Result<(), TransferError> {
    let partial = &job.partial;
    let dir = partial.parent().unwrap_or(Path::new("."));
    // Made with its mode where the umask leaves it whole, saving a chmod
    // a file; it holds what it will hold under its name, so a reader of
    // the partial file sees nothing the finished one would not show.
    let exact = umask().is_some_and(|mask| job.mode & mask == 0);
    let mode = if exact { job.mode } else { 0o600 };
    let flags =
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut file = dirs
        .name(dir, partial)
        .and_then(|(handle, name)| {
            Ok(rustix::fs::openat(
                handle,
                name,
                flags,
                Mode::from_raw_mode(mode),
            )?)
        })
        .map(File::from)
        .map_err(|e| failed("opening", partial, e))?;
    file.write_all(&job.data)
        .map_err(|e| failed("writing", partial, e))?;
    finish(&file, partial, (!exact).then_some(job.mode), job.mtime)
}

/// The process's umask, read once from /proc (umask(2) cannot be read
/// without being set, which would race with threads creating files).
fn umask() -> Option<u32> {
    static UMASK: OnceLock<Option<u32>> = OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    })
}

/// Gives a written partial file its mode (if not made with it) and its
/// modification time.
pub(crate) fn finish(
    file: &File,
    path: &Path,
    mode: Option<u32>,
    mtime: Option<i64>,
) -> Result<(), TransferError> {
    if let Some(mode) = mode {
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| failed("setting the mode of", path, e))?;
    }
    if let Some(at) = mtime.and_then(system_time) {
        file.set_modified(at)
            .map_err(|e| failed("setting the time of", path, e))?;
    }
    Ok(())
}

fn failed(what: &str, path: &Path, err: io::Error) -> TransferError {
    TransferError::io(format!("{what} {}", path.display()), err)
}
