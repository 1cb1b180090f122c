//! Group commit on the receiver: files are written to their partial names
//! (small ones by a writer thread), and a batch of them is made durable
//! together: one `syncfs` for the whole batch, then each verified file
//! renamed into place, then one more `syncfs` for the renames and the
//! directories made (measured here against an fsync of each file from a
//! pool and of each directory touched: BENCHMARKS.md; where `syncfs`
//! fails, that is the way). Only then is the batch reported to the
//! sender, so the promise of one file at a time stands: a file is in place
//! under its name only when complete and verified, and after a reported
//! success a crash loses nothing.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime};

use super::TransferError;

/// A batch is committed once it holds this many files...
pub(crate) const MAX_FILES: usize = 8192;
/// ...or this many bytes.
pub(crate) const MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Writer threads for small files: one, as two creating files in one
/// directory contend for its lock (measured slower here).
const WRITERS: usize = 1;

/// One file of a batch, written to its partial name.
pub(crate) struct Written<C> {
    pub(crate) partial: PathBuf,
    pub(crate) path: PathBuf,
    pub(crate) dir: PathBuf,
    /// Verified: renamed into place at the commit; else removed.
    pub(crate) good: bool,
    /// Held until the file is settled (the session's claim on it).
    pub(crate) claim: C,
}

/// A small file for a writer thread.
struct Job {
    partial: PathBuf,
    data: Vec<u8>,
    mode: u32,
    mtime: Option<i64>,
}

/// Files written and not yet committed, and the writers of small ones.
pub(crate) struct Batch<C> {
    files: Vec<Written<C>>,
    bytes: u64,
    jobs: Option<mpsc::Sender<Job>>,
    done: mpsc::Receiver<Result<(), TransferError>>,
    outstanding: usize,
    /// How to make a batch durable (`SONDE_DURABILITY=fsync` measures the
    /// other way).
    each: bool,
}

impl<C> Batch<C> {
    pub(crate) fn new() -> Batch<C> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (report, done) = mpsc::channel();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..WRITERS {
            let queue = Arc::clone(&queue);
            let report = report.clone();
            std::thread::spawn(move || {
                loop {
                    let job = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    if report.send(write_small(&job)).is_err() {
                        return;
                    }
                }
            });
        }
        Batch {
            files: Vec::new(),
            bytes: 0,
            jobs: Some(jobs),
            done,
            outstanding: 0,
            each: std::env::var("SONDE_DURABILITY").as_deref() == Ok("fsync"),
        }
    }

    /// Hands a small file's verified bytes to a writer thread.
    pub(crate) fn write(&mut self, file: Written<C>, data: Vec<u8>, mode: u32, mtime: Option<i64>) {
        self.bytes += data.len() as u64;
        let job = Job {
            partial: file.partial.clone(),
            data,
            mode,
            mtime,
        };
        if let Some(jobs) = &self.jobs
            && jobs.send(job).is_ok()
        {
            self.outstanding += 1;
        }
        self.files.push(file);
    }

    /// Adds a file already written (and closed) by the caller.
    pub(crate) fn add(&mut self, file: Written<C>, bytes: u64) {
        self.bytes += bytes;
        self.files.push(file);
    }

    /// Whether the batch is due.
    pub(crate) fn full(&self) -> bool {
        self.files.len() >= MAX_FILES || self.bytes >= MAX_BYTES
    }

    /// Commits the batch: waits for the writers, makes the files durable,
    /// renames the good ones into place, syncs the directories. Returns
    /// how many files it settled and the positions of those that did not
    /// match, and hands back their claims.
    pub(crate) fn commit(
        &mut self,
        made: &[PathBuf],
    ) -> Result<(u64, Vec<u64>, Vec<C>), TransferError> {
        while self.outstanding > 0 {
            let written = self
                .done
                .recv_timeout(Duration::from_secs(600))
                .map_err(|_| TransferError::Source("the writer threads stopped".into()))?;
            self.outstanding -= 1;
            written?;
        }
        let files = std::mem::take(&mut self.files);
        self.bytes = 0;
        let by_syncfs = self.durable(&files, made)?;
        let mut dirs = BTreeSet::new();
        let mut mismatched = Vec::new();
        let mut claims = Vec::with_capacity(files.len());
        for (at, file) in files.into_iter().enumerate() {
            if file.good {
                fs::rename(&file.partial, &file.path)
                    .map_err(|e| failed("renaming", &file.path, e))?;
                dirs.insert(file.dir);
            } else {
                let _ = fs::remove_file(&file.partial);
                mismatched.push(at as u64);
            }
            claims.push(file.claim);
        }
        // The renames (and the directories made) are durable once their
        // directories are.
        match &by_syncfs {
            // The first syncfs had the directories made already.
            Some(handle) => {
                if !dirs.is_empty() {
                    rustix::fs::syncfs(handle)
                        .map_err(|e| failed("syncing", &dirs_first(&dirs), e.into()))?;
                }
            }
            None => {
                let parents = made
                    .iter()
                    .filter_map(|d| d.parent().map(Path::to_path_buf));
                dirs.extend(parents);
                for dir in &dirs {
                    sync_dir(dir)?;
                }
            }
        }
        Ok((claims.len() as u64, mismatched, claims))
    }

    /// Makes the batch's data durable: by one `syncfs` (whose handle is
    /// returned for the second) or by an fsync of each file.
    fn durable(
        &self,
        files: &[Written<C>],
        made: &[PathBuf],
    ) -> Result<Option<File>, TransferError> {
        let Some(dir) = files.first().map(|f| &f.dir).or(made.first()) else {
            return Ok(None);
        };
        if self.each {
            fsync_each(files)?;
            return Ok(None);
        }
        let handle = File::open(dir).map_err(|e| failed("opening", dir, e))?;
        match rustix::fs::syncfs(&handle) {
            Ok(()) => Ok(Some(handle)),
            // Where syncfs is not to be had, one file at a time.
            Err(_) => {
                fsync_each(files)?;
                Ok(None)
            }
        }
    }
}

impl<C> Drop for Batch<C> {
    fn drop(&mut self) {
        // Ends the writer threads once their queue is empty.
        self.jobs.take();
    }
}

/// Syncs each file from a pool of threads.
fn fsync_each<C>(files: &[Written<C>]) -> Result<(), TransferError> {
    let paths: Vec<&Path> = files.iter().map(|f| f.partial.as_path()).collect();
    let per = paths.len().div_ceil(WRITERS * 2).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = paths
            .chunks(per)
            .map(|part| {
                scope.spawn(move || -> Result<(), TransferError> {
                    for path in part {
                        let file = File::open(path).map_err(|e| failed("opening", path, e))?;
                        file.sync_all().map_err(|e| failed("syncing", path, e))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle
                .join()
                .map_err(|_| TransferError::Source("a syncing thread failed".into()))??;
        }
        Ok(())
    })
}

fn dirs_first(dirs: &BTreeSet<PathBuf>) -> PathBuf {
    dirs.iter().next().cloned().unwrap_or_default()
}

fn write_small(job: &Job) -> Result<(), TransferError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&job.partial)
        .map_err(|e| failed("opening", &job.partial, e))?;
    file.write_all(&job.data)
        .map_err(|e| failed("writing", &job.partial, e))?;
    finish(&file, &job.partial, job.mode, job.mtime)
}

/// Gives a written partial file its mode and modification time.
pub(crate) fn finish(
    file: &File,
    path: &Path,
    mode: u32,
    mtime: Option<i64>,
) -> Result<(), TransferError> {
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| failed("setting the mode of", path, e))?;
    if let Some(at) = mtime.and_then(system_time) {
        file.set_modified(at)
            .map_err(|e| failed("setting the time of", path, e))?;
    }
    Ok(())
}

/// Nanoseconds since the epoch as a time (`None` where it cannot be one).
pub(crate) fn system_time(nanos: i64) -> Option<SystemTime> {
    let since = Duration::from_nanos(nanos.unsigned_abs());
    if nanos >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(since)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(since)
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), TransferError> {
    let handle = File::open(dir).map_err(|e| failed("opening", dir, e))?;
    handle.sync_all().map_err(|e| failed("syncing", dir, e))
}

fn failed(what: &str, path: &Path, err: io::Error) -> TransferError {
    TransferError::io(format!("{what} {}", path.display()), err)
}
