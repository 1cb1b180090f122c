//! Where a receiver puts things, thin: directories made one component at a
//! time under the receiving directory, never through a symlink; files
//! written to a partial file beside the target, and renamed into place
//! only once verified and durable (see `batch`).

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{Mode, OFlags};

use super::TransferError;
use super::path::partial_name;

/// A refusal's reason, or a failure.
pub(crate) enum PlaceError {
    Refuse(String),
    Failed(TransferError),
}

impl From<TransferError> for PlaceError {
    fn from(err: TransferError) -> Self {
        PlaceError::Failed(err)
    }
}

fn io_err(what: &str, path: &Path, err: io::Error) -> PlaceError {
    PlaceError::Failed(TransferError::io(format!("{what} {}", path.display()), err))
}

/// The directories one transfer has checked or made, so that the many
/// files of one directory do not check it again each.
#[derive(Debug, Default)]
pub(crate) struct Dirs {
    /// Made since the last commit (their parents are synced with it).
    pub(crate) made: Vec<PathBuf>,
    known: HashSet<PathBuf>,
    /// Made by this transfer (not by one it resumes), and the names this
    /// transfer gave in them: in such a directory, a name not given yet
    /// is free, with nothing to look up.
    fresh: HashSet<PathBuf>,
    named: HashSet<PathBuf>,
}

impl Dirs {
    /// Notes a name this transfer gives (a link, say).
    pub(crate) fn named(&mut self, path: &Path) {
        self.named.insert(path.to_path_buf());
    }

    /// Whether a target and its partial file are free without looking:
    /// names not given yet in a directory this transfer made, while no
    /// other transfer could have put anything there (`alone`).
    fn free(&mut self, target: &Target, alone: bool) -> bool {
        // Both names count: a file may be named as another's partial file.
        let new = self.named.insert(target.path.clone());
        let new = self.named.insert(target.partial.clone()) && new;
        alone && new && self.fresh.contains(&target.dir) && !self.known.contains(&target.path)
    }
}

/// The directories an unfinished transfer made, listed beside the top of
/// its tree (`.TOP.sonde-dirs` in the receiving directory) until it ends,
/// so that a resumed transfer gives them their modes and times as the one
/// that made them would have, and still leaves alone every directory that
/// was there before.
#[derive(Debug)]
pub(crate) struct DirJournal {
    root: PathBuf,
    listed: HashMap<String, HashSet<String>>,
}

impl DirJournal {
    pub(crate) fn new(root: &Path) -> DirJournal {
        DirJournal {
            root: root.to_path_buf(),
            listed: HashMap::new(),
        }
    }

    fn path(&self, top: &str) -> PathBuf {
        self.root.join(format!(".{top}.sonde-dirs"))
    }

    fn load(&mut self, top: &str) -> &mut HashSet<String> {
        if !self.listed.contains_key(top) {
            let text = fs::read_to_string(self.path(top)).unwrap_or_default();
            let names = text.lines().map(str::to_string).collect();
            self.listed.insert(top.to_string(), names);
        }
        self.listed.entry(top.to_string()).or_default()
    }

    /// Whether an unfinished transfer made `path` (relative, `/`-separated).
    pub(crate) fn listed(&mut self, path: &str) -> bool {
        let top = path.split('/').next().unwrap_or(path).to_string();
        self.load(&top).contains(path)
    }

    /// Notes that this transfer made `path`.
    pub(crate) fn record(&mut self, path: &str) -> Result<(), PlaceError> {
        let top = path.split('/').next().unwrap_or(path).to_string();
        if !self.load(&top).insert(path.to_string()) {
            return Ok(());
        }
        let at = self.path(&top);
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&at)
            .map_err(|e| io_err("opening", &at, e))?;
        io::Write::write_all(&mut file, format!("{path}\n").as_bytes())
            .map_err(|e| io_err("writing", &at, e))
    }

    /// The transfer ended: its directories have their modes and times.
    pub(crate) fn finish(&self) {
        for top in self.listed.keys() {
            let _ = fs::remove_file(self.path(top));
        }
    }
}

/// Makes sure `root/parts...` is a directory, making what is missing and
/// adding each directory it made to `dirs.made`.
pub(crate) fn directory_made(
    root: &Path,
    parts: &[&str],
    dirs: &mut Dirs,
) -> Result<PathBuf, PlaceError> {
    let mut at = root.to_path_buf();
    for part in parts {
        at.push(part);
        if dirs.known.contains(&at) {
            continue;
        }
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(PlaceError::Refuse(format!(
                    "{} is a symlink; nothing is written through one",
                    shown(root, &at)
                )));
            }
            Ok(meta) if meta.is_dir() => {
                dirs.known.insert(at.clone());
            }
            Ok(_) => {
                return Err(PlaceError::Refuse(format!(
                    "{} exists and is not a directory",
                    shown(root, &at)
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&at).map_err(|e| io_err("making", &at, e))?;
                dirs.made.push(at.clone());
                dirs.fresh.insert(at.clone());
                dirs.known.insert(at.clone());
            }
            Err(e) => return Err(io_err("checking", &at, e)),
        }
    }
    Ok(at)
}

/// A file's place: its directory, the target and the partial file.
pub(crate) struct Target {
    pub(crate) dir: PathBuf,
    pub(crate) path: PathBuf,
    pub(crate) partial: PathBuf,
    /// Whether the target and the partial file were there when looked at
    /// (so that a fresh tree costs one look at each, not three).
    found: [bool; 2],
}

/// What the receiver already holds of a file.
pub(crate) enum Held {
    Nothing,
    /// A partial file: its length and the hasher fed with its bytes.
    Partial(u64, Box<blake3::Hasher>),
    /// The target itself: its length and hash.
    Complete(u64, blake3::Hash),
    /// A target the sender did not show it holds: replaced only with
    /// --overwrite, and nothing of it told.
    Differs,
}

impl Target {
    /// The place for `parts` under `root` (its directories are made);
    /// `alone`: no other transfer has run beside this one.
    pub(crate) fn new(
        root: &Path,
        parts: &[&str],
        dirs: &mut Dirs,
        alone: bool,
    ) -> Result<Target, PlaceError> {
        let (name, parents) = parts
            .split_last()
            .ok_or_else(|| PlaceError::Refuse("an empty path".into()))?;
        let dir = directory_made(root, parents, dirs)?;
        let mut target = Target {
            path: dir.join(name),
            partial: dir.join(partial_name(name)),
            dir,
            found: [true; 2],
        };
        if dirs.free(&target, alone) {
            target.found = [false; 2];
            return Ok(target);
        }
        for (path, found) in [&target.path, &target.partial]
            .into_iter()
            .zip(&mut target.found)
        {
            match fs::symlink_metadata(path) {
                Ok(meta) if !meta.file_type().is_file() => {
                    return Err(PlaceError::Refuse(format!(
                        "{} exists and is not a regular file",
                        shown(root, path)
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => *found = false,
                _ => {}
            }
        }
        Ok(target)
    }

    /// Whether the target was there.
    pub(crate) fn exists(&self) -> bool {
        self.found[0]
    }

    /// What is held for a sender of `size` bytes whose first bytes hash
    /// to `proof`: a partial file first (an interrupted transfer to
    /// resume), else the target, each only when it proves the same.
    pub(crate) fn held(
        &self,
        size: Option<u64>,
        proof: Option<blake3::Hash>,
    ) -> Result<Held, PlaceError> {
        let unproven = if self.found[0] {
            Held::Differs
        } else {
            Held::Nothing
        };
        let (Some(size), Some(proof)) = (size, proof) else {
            return Ok(unproven);
        };
        if self.found[1]
            && let Some((len, hasher)) = hash_proven(&self.partial, size, false, &proof)?
        {
            return Ok(Held::Partial(len, Box::new(hasher)));
        }
        if self.found[0]
            && let Some((len, hasher)) = hash_proven(&self.path, size, true, &proof)?
        {
            return Ok(Held::Complete(len, hasher.finalize()));
        }
        Ok(unproven)
    }

    /// Opens the partial file for data from `offset` on (0: from scratch).
    pub(crate) fn open(&self, offset: u64) -> Result<File, PlaceError> {
        let mut options = OpenOptions::new();
        options
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW);
        let file = options
            .open(&self.partial)
            .map_err(|e| io_err("opening", &self.partial, e))?;
        file.set_len(offset)
            .map_err(|e| io_err("truncating", &self.partial, e))?;
        let mut file = file;
        io::Seek::seek(&mut file, io::SeekFrom::Start(offset))
            .map_err(|e| io_err("seeking", &self.partial, e))?;
        Ok(file)
    }
}

/// The directory last worked in, held open, so that a run of files in one
/// directory is named relative to it rather than walked from the root
/// each time (a tree's files come a directory at a time).
#[derive(Default)]
pub(crate) struct InDir {
    at: Option<(PathBuf, OwnedFd)>,
}

impl InDir {
    /// A handle on `dir`, and the last component of `path` (in `dir`).
    pub(crate) fn name<'p>(
        &mut self,
        dir: &Path,
        path: &'p Path,
    ) -> io::Result<(&OwnedFd, &'p OsStr)> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
        let fresh = self.at.as_ref().is_none_or(|(open, _)| open != dir);
        if fresh {
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let handle = rustix::fs::open(dir, flags, Mode::empty())?;
            self.at = Some((dir.to_path_buf(), handle));
        }
        let (_, handle) = self
            .at
            .as_ref()
            .ok_or_else(|| io::Error::other("no directory"))?;
        Ok((handle, name))
    }
}

/// Makes a symlink at `at` to `target`; one already there with the same
/// target is left as it is, anything else there is refused.
pub(crate) fn symlink(at: &Path, target: &str) -> Result<(), PlaceError> {
    match fs::symlink_metadata(at) {
        Ok(meta) if meta.file_type().is_symlink() => {
            if fs::read_link(at).is_ok_and(|t| t == Path::new(target)) {
                Ok(())
            } else {
                Err(PlaceError::Refuse(format!(
                    "{} exists and points elsewhere",
                    at.display()
                )))
            }
        }
        Ok(_) => Err(PlaceError::Refuse(format!("{} exists", at.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::os::unix::fs::symlink(target, at).map_err(|e| io_err("making the link", at, e))
        }
        Err(e) => Err(io_err("checking", at, e)),
    }
}

/// A regular file's length and hasher, or `None` when there is none.
/// Hashes the file at `path` when its length fits a `size`-byte file
/// (`complete`: the same length; else a prefix covering the proof) and its
/// first bytes hash to `proof`; `None` otherwise, read no further than
/// needed to tell.
fn hash_proven(
    path: &Path,
    size: u64,
    complete: bool,
    proof: &blake3::Hash,
) -> Result<Option<(u64, blake3::Hasher)>, PlaceError> {
    let Some(mut file) = open_held(path)? else {
        return Ok(None);
    };
    let len = file
        .metadata()
        .map_err(|e| io_err("reading the size of", path, e))?
        .len();
    if !super::resume::fits(len, complete, size) {
        return Ok(None);
    }
    let head = super::wire::proof_len(size);
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(io::Read::take(&mut file, head))
        .map_err(|e| io_err("reading", path, e))?;
    // blake3's Hash compares in constant time.
    if hasher.count() != head || hasher.finalize() != *proof {
        return Ok(None);
    }
    hasher
        .update_reader(&mut file)
        .map_err(|e| io_err("reading", path, e))?;
    Ok(Some((hasher.count(), hasher)))
}

/// Opens a held file to read, never through a symlink (`None`: gone).
fn open_held(path: &Path) -> Result<Option<File>, PlaceError> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("opening", path, e)),
    }
}

/// A path as the sender named it (relative to the receiving directory).
fn shown(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Gives the directories a transfer made the modes and times the sender
/// asked for, deepest first (a time set earlier would change with every
/// entry made inside).
pub(crate) fn apply_modes(dirs: &[(PathBuf, u32, Option<i64>)]) {
    for (dir, mode, mtime) in dirs.iter().rev() {
        if let Some(at) = mtime.and_then(system_time)
            && let Ok(handle) = File::open(dir)
        {
            let _ = handle.set_modified(at);
        }
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(*mode));
    }
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
