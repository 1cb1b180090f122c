//! The committer thread of a receiver's group commit (see `batch`): for
//! each batch, the files' data made durable, the verified files renamed
//! into place (the others removed), and the renames made durable before
//! the batch is reported.
//!
//! With `syncfs`, one sync does two jobs: it makes a batch's data durable
//! and the renames of the batch before it, so a batch costs one sync, not
//! two, when the next is already waiting; when none is, the renames are
//! synced at once, so a report never waits for a slow sender. A tree can
//! span filesystems (a directory in the receiving one may be a mount
//! point), so each filesystem touched is synced. With
//! `SONDE_DURABILITY=fsync`, or where `syncfs` fails, each file and then
//! each directory touched is fsynced instead.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, TryRecvError};
use std::time::{Duration, Instant};

use super::TransferError;
use super::place::InDir;

/// Threads that fsync files when `syncfs` is not the way.
const SYNCERS: usize = 2;

/// One file of a batch, written to its partial name.
pub(crate) struct Placed {
    pub(crate) partial: PathBuf,
    pub(crate) path: PathBuf,
    pub(crate) dir: PathBuf,
    /// Verified: renamed into place at the commit; else removed.
    pub(crate) good: bool,
}

/// A batch to commit: its files, and the directories made for them.
pub(crate) struct ToCommit {
    pub(crate) files: Vec<Placed>,
    pub(crate) made: Vec<PathBuf>,
}

/// A batch's outcome: the positions of its files that did not match.
pub(crate) type Outcome = Result<Vec<u64>, TransferError>;

/// A batch renamed whose renames are not durable yet.
struct Renamed {
    mismatched: Vec<u64>,
    dirs: BTreeSet<PathBuf>,
}

/// How durability is had: `syncfs` on each filesystem touched, or an fsync
/// of each file and directory.
struct Durability {
    each: bool,
    /// A handle on each filesystem met, by device, with where it was met.
    filesystems: HashMap<u64, (File, PathBuf)>,
}

/// Commits batches in order until the channel closes, reporting each.
pub(crate) fn committer(
    batches: &mpsc::Receiver<ToCommit>,
    report: &mpsc::Sender<Outcome>,
    each: bool,
) {
    let mut durability = Durability {
        each,
        filesystems: HashMap::new(),
    };
    let mut renamed: Option<Renamed> = None;
    loop {
        let next = match &renamed {
            Some(_) => match batches.try_recv() {
                Ok(batch) => Some(batch),
                Err(TryRecvError::Empty) => {
                    // Nothing waits to share the sync: sync now.
                    if !settle(&mut durability, renamed.take(), report) {
                        return;
                    }
                    batches.recv().ok()
                }
                Err(TryRecvError::Disconnected) => None,
            },
            None => batches.recv().ok(),
        };
        let Some(batch) = next else {
            settle(&mut durability, renamed.take(), report);
            return;
        };
        let began = Instant::now();
        match durability.data(&batch, renamed.as_ref()) {
            Ok(()) => {
                if let Some(done) = renamed.take()
                    && report.send(Ok(done.mismatched)).is_err()
                {
                    return;
                }
            }
            Err(err) => {
                let _ = report.send(Err(err));
                return;
            }
        }
        let synced = began.elapsed();
        match rename(&batch) {
            Ok(done) => renamed = Some(done),
            Err(err) => {
                let _ = report.send(Err(err));
                return;
            }
        }
        tracing::debug!(
            files = batch.files.len(),
            "commit: data durable in {:.1} ms ({}), renamed in {:.1} ms",
            ms(synced),
            if durability.each {
                "fsync each"
            } else {
                "syncfs"
            },
            ms(began.elapsed() - synced),
        );
        if durability.each && !settle(&mut durability, renamed.take(), report) {
            return;
        }
    }
}

/// Makes a renamed batch's renames durable and reports it; false when
/// nobody listens any more.
fn settle(
    durability: &mut Durability,
    renamed: Option<Renamed>,
    report: &mpsc::Sender<Outcome>,
) -> bool {
    let Some(renamed) = renamed else {
        return true;
    };
    let began = Instant::now();
    let outcome = durability.names(&renamed.dirs).map(|()| renamed.mismatched);
    tracing::debug!("commit: renames durable in {:.1} ms", ms(began.elapsed()));
    report.send(outcome).is_ok()
}

/// Renames a batch's verified files into place and removes the others.
fn rename(batch: &ToCommit) -> Result<Renamed, TransferError> {
    let mut dirs = BTreeSet::new();
    let mut mismatched = Vec::new();
    let mut open = InDir::default();
    for (at, file) in batch.files.iter().enumerate() {
        if file.good {
            open.name(&file.dir, &file.path)
                .and_then(|(handle, name)| {
                    let from = file.partial.file_name().unwrap_or_default();
                    Ok(rustix::fs::renameat(handle, from, handle, name)?)
                })
                .map_err(|e| failed("renaming", &file.path, e))?;
            if !dirs.contains(&file.dir) {
                dirs.insert(file.dir.clone());
            }
        } else {
            let _ = fs::remove_file(&file.partial);
            mismatched.push(at as u64);
        }
    }
    // A directory made is durable once its parent is.
    dirs.extend(
        batch
            .made
            .iter()
            .filter_map(|d| d.parent().map(Path::to_path_buf)),
    );
    Ok(Renamed { mismatched, dirs })
}

impl Durability {
    /// Makes a batch's data durable, and the renames before it.
    fn data(&mut self, batch: &ToCommit, renamed: Option<&Renamed>) -> Result<(), TransferError> {
        let dirs = batch
            .files
            .iter()
            .map(|f| f.dir.as_path())
            .chain(batch.made.iter().map(PathBuf::as_path));
        if !self.each {
            let before = renamed
                .into_iter()
                .flat_map(|r| r.dirs.iter().map(PathBuf::as_path));
            match self.syncfs(dirs.chain(before)) {
                Ok(()) => return Ok(()),
                // Where syncfs is not to be had, one file at a time.
                Err(_) => self.each = true,
            }
            if let Some(before) = renamed {
                sync_dirs(&before.dirs)?;
            }
        }
        fsync_each(&batch.files)
    }

    /// Makes renames in these directories durable.
    fn names(&mut self, dirs: &BTreeSet<PathBuf>) -> Result<(), TransferError> {
        if !self.each && self.syncfs(dirs.iter().map(PathBuf::as_path)).is_ok() {
            return Ok(());
        }
        self.each = true;
        sync_dirs(dirs)
    }

    /// One `syncfs` on each filesystem these directories are on.
    fn syncfs<'p>(&mut self, dirs: impl Iterator<Item = &'p Path>) -> Result<(), TransferError> {
        let mut seen = BTreeSet::new();
        let mut last = None;
        for dir in dirs {
            if last == Some(dir) {
                continue;
            }
            last = Some(dir);
            let dev = fs::metadata(dir)
                .map_err(|e| failed("checking", dir, e))?
                .dev();
            if !seen.insert(dev) {
                continue;
            }
            if let Entry::Vacant(slot) = self.filesystems.entry(dev) {
                let handle = File::open(dir).map_err(|e| failed("opening", dir, e))?;
                slot.insert((handle, dir.to_path_buf()));
            }
        }
        for dev in seen {
            if let Some((handle, dir)) = self.filesystems.get(&dev) {
                rustix::fs::syncfs(handle)
                    .map_err(|e| failed("syncing the filesystem of", dir, e.into()))?;
            }
        }
        Ok(())
    }
}

/// Syncs each file from a pool of threads.
fn fsync_each(files: &[Placed]) -> Result<(), TransferError> {
    let paths: Vec<&Path> = files.iter().map(|f| f.partial.as_path()).collect();
    let per = paths.len().div_ceil(SYNCERS).max(1);
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

fn sync_dirs(dirs: &BTreeSet<PathBuf>) -> Result<(), TransferError> {
    dirs.iter().try_for_each(|dir| sync_dir(dir))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), TransferError> {
    let handle = File::open(dir).map_err(|e| failed("opening", dir, e))?;
    handle.sync_all().map_err(|e| failed("syncing", dir, e))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn failed(what: &str, path: &Path, err: io::Error) -> TransferError {
    TransferError::io(format!("{what} {}", path.display()), err)
}
