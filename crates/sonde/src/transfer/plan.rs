//! What a sender will send: the paths named on the command line, with
//! directories walked recursively (names, sizes, modes and times only; the
//! data is read while it streams). Symlinks inside a directory are skipped
//! with a warning, or sent as links when asked; devices, sockets and names
//! that are not UTF-8 are skipped with a warning; a symlink named on the
//! command line is followed, as `scp` does.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::TransferError;
use super::wire::permission_bits;

/// One thing to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The path on the wire: relative, `/`-separated, starting with the
    /// name of the path given.
    pub path: String,
    /// What it is.
    pub kind: Kind,
}

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory, created before what is inside it.
    Dir {
        /// Permission bits.
        mode: u32,
        /// Modification time, nanoseconds since the epoch.
        mtime: i64,
    },
    /// A regular file.
    File {
        /// Where it is read from.
        source: PathBuf,
        /// Permission bits.
        mode: u32,
        /// Its size when planned.
        size: u64,
        /// Modification time, nanoseconds since the epoch.
        mtime: i64,
    },
    /// A symlink inside a directory (with `symlinks`), sent as a link.
    Link {
        /// What it points to, as it is written.
        target: String,
    },
    /// Standard input, of unknown size.
    Stdin,
}

/// The entries to send, and what was left out and why.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// In sending order: each directory before its contents.
    pub entries: Vec<Entry>,
    /// One line per skipped path.
    pub warnings: Vec<String>,
}

impl Plan {
    /// Standard input sent as one file named `name`.
    pub fn stdin(name: &str) -> Plan {
        Plan {
            entries: vec![Entry {
                path: name.to_string(),
                kind: Kind::Stdin,
            }],
            warnings: Vec::new(),
        }
    }

    /// Plans `paths`: files as themselves, directories with everything
    /// under them; symlinks inside directories are sent as links when
    /// `symlinks`, else skipped with a warning.
    ///
    /// # Errors
    /// [`TransferError::Source`] when a path cannot be read or named.
    pub fn paths(paths: &[PathBuf], symlinks: bool) -> Result<Plan, TransferError> {
        let mut plan = Plan::default();
        for path in paths {
            plan.add_root(path, symlinks)?;
        }
        Ok(plan)
    }

    /// Files, directories and the sum of the files' known sizes.
    pub fn totals(&self) -> (u64, u64, u64) {
        let mut totals = (0, 0, 0);
        for entry in &self.entries {
            match entry.kind {
                Kind::Dir { .. } => totals.1 += 1,
                Kind::File { size, .. } => {
                    totals.0 += 1;
                    totals.2 += size;
                }
                Kind::Stdin | Kind::Link { .. } => totals.0 += 1,
            }
        }
        totals
    }

    fn add_root(&mut self, path: &Path, symlinks: bool) -> Result<(), TransferError> {
        let meta = fs::metadata(path).map_err(|e| source_error(path, &e))?;
        let name = root_name(path)?;
        if meta.is_file() {
            self.entries.push(file_entry(name, path, &meta));
            return Ok(());
        }
        if !meta.is_dir() {
            return Err(TransferError::Source(format!(
                "{}: not a regular file or a directory",
                path.display()
            )));
        }
        let walk = walkdir::WalkDir::new(path)
            .follow_links(false)
            .sort_by_file_name();
        for item in walk {
            let item = item.map_err(|e| {
                let at = e.path().unwrap_or(path).to_path_buf();
                TransferError::Source(format!("reading {}: {e}", at.display()))
            })?;
            self.add_walked(&name, path, &item, symlinks)?;
        }
        Ok(())
    }

    fn add_walked(
        &mut self,
        root_name: &str,
        root: &Path,
        item: &walkdir::DirEntry,
        symlinks: bool,
    ) -> Result<(), TransferError> {
        let shown = item.path().display();
        let Some(wire) = wire_path(root_name, root, item.path()) else {
            self.warnings
                .push(format!("skipping {shown}: its name is not UTF-8"));
            return Ok(());
        };
        let kind = item.file_type();
        if kind.is_symlink() && symlinks {
            let target = fs::read_link(item.path())
                .map_err(|e| TransferError::Source(format!("reading {shown}: {e}")))?;
            match target.into_os_string().into_string() {
                Ok(target) => self.entries.push(Entry {
                    path: wire,
                    kind: Kind::Link { target },
                }),
                Err(_) => self
                    .warnings
                    .push(format!("skipping symlink {shown}: its target is not UTF-8")),
            }
        } else if kind.is_symlink() {
            self.warnings
                .push(format!("skipping symlink {shown} (--symlinks sends it)"));
        } else if kind.is_dir() {
            let meta = item
                .metadata()
                .map_err(|e| TransferError::Source(format!("reading {shown}: {e}")))?;
            self.entries.push(Entry {
                path: wire,
                kind: Kind::Dir {
                    mode: permission_bits(meta.permissions().mode()),
                    mtime: mtime(&meta),
                },
            });
        } else if kind.is_file() {
            let meta = item
                .metadata()
                .map_err(|e| TransferError::Source(format!("reading {shown}: {e}")))?;
            self.entries.push(file_entry(wire, item.path(), &meta));
        } else {
            self.warnings
                .push(format!("skipping {shown}: not a regular file"));
        }
        Ok(())
    }
}

fn file_entry(wire: String, path: &Path, meta: &fs::Metadata) -> Entry {
    Entry {
        path: wire,
        kind: Kind::File {
            source: path.to_path_buf(),
            mode: permission_bits(meta.mode()),
            size: meta.len(),
            mtime: mtime(meta),
        },
    }
}

/// A modification time as nanoseconds since the epoch.
fn mtime(meta: &fs::Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

/// The name a path given on the command line is sent under: its last
/// component (`.` and the like resolved first).
fn root_name(path: &Path) -> Result<String, TransferError> {
    let named = match path.file_name() {
        Some(name) => name.to_os_string(),
        None => fs::canonicalize(path)
            .map_err(|e| source_error(path, &e))?
            .file_name()
            .map(|n| n.to_os_string())
            .ok_or_else(|| {
                TransferError::Source(format!("{}: has no name to send it under", path.display()))
            })?,
    };
    named
        .into_string()
        .map_err(|_| TransferError::Source(format!("{}: its name is not UTF-8", path.display())))
}

fn wire_path(root_name: &str, root: &Path, path: &Path) -> Option<String> {
    let rest = path.strip_prefix(root).ok()?;
    let mut out = root_name.to_string();
    for part in rest.components() {
        out.push('/');
        out.push_str(part.as_os_str().to_str()?);
    }
    Some(out)
}

fn source_error(path: &Path, err: &std::io::Error) -> TransferError {
    TransferError::Source(format!(
        "reading {}: {}",
        path.display(),
        crate::error::describe(err)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_paths_start_with_the_root_name() {
        let root = Path::new("/tmp/x/data");
        assert_eq!(
            wire_path("data", root, Path::new("/tmp/x/data/a/b.txt")).as_deref(),
            Some("data/a/b.txt")
        );
        assert_eq!(wire_path("data", root, root).as_deref(), Some("data"));
    }

    #[test]
    fn stdin_is_one_file() {
        let plan = Plan::stdin("log.txt");
        assert_eq!(plan.totals(), (1, 0, 0));
    }
}
