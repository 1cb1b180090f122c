//! What a sender will send: the paths named on the command line, with
//! directories walked recursively (names and sizes only; the data is read
//! while it streams). Symlinks inside a directory, devices, sockets and
//! names that are not UTF-8 are skipped with a warning; a symlink named on
//! the command line is followed, as `scp` does.

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
    },
    /// A regular file.
    File {
        /// Where it is read from.
        source: PathBuf,
        /// Permission bits.
        mode: u32,
        /// Its size when planned.
        size: u64,
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
    /// under them.
    ///
    /// # Errors
    /// [`TransferError::Source`] when a path cannot be read or named.
    pub fn paths(paths: &[PathBuf]) -> Result<Plan, TransferError> {
        let mut plan = Plan::default();
        for path in paths {
            plan.add_root(path)?;
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
                Kind::Stdin => totals.0 += 1,
            }
        }
        totals
    }

    fn add_root(&mut self, path: &Path) -> Result<(), TransferError> {
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
            self.add_walked(&name, path, &item)?;
        }
        Ok(())
    }

    fn add_walked(
        &mut self,
        root_name: &str,
        root: &Path,
        item: &walkdir::DirEntry,
    ) -> Result<(), TransferError> {
        let shown = item.path().display();
        let Some(wire) = wire_path(root_name, root, item.path()) else {
            self.warnings
                .push(format!("skipping {shown}: its name is not UTF-8"));
            return Ok(());
        };
        let kind = item.file_type();
        if kind.is_symlink() {
            self.warnings.push(format!("skipping symlink {shown}"));
        } else if kind.is_dir() {
            let meta = item
                .metadata()
                .map_err(|e| TransferError::Source(format!("reading {shown}: {e}")))?;
            self.entries.push(Entry {
                path: wire,
                kind: Kind::Dir {
                    mode: permission_bits(meta.permissions().mode()),
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
        },
    }
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
