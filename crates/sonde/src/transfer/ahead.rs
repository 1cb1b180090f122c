//! Reading small files ahead: a thread of its own reads and hashes each
//! small file of a plan in order, a bounded number ahead of the sender, so
//! the disk and the hash overlap with the network.

use std::path::PathBuf;
use std::sync::mpsc;

/// How many small files may wait read, at most (each at most 1 MiB).
const DEPTH: usize = 32;

/// A small file, read and hashed.
#[derive(Debug)]
pub(crate) struct Ready {
    /// Its bytes.
    pub(crate) data: Vec<u8>,
    /// Their BLAKE3.
    pub(crate) hash: blake3::Hash,
    /// Why it could not be read, if it could not.
    pub(crate) error: Option<String>,
}

impl Default for Ready {
    fn default() -> Self {
        Ready {
            data: Vec::new(),
            hash: blake3::hash(b""),
            error: None,
        }
    }
}

/// The reading thread's output, in the plan's order.
pub(crate) struct Ahead {
    rx: mpsc::Receiver<Ready>,
}

impl Ahead {
    /// Starts reading `files` (each with the size it was planned with).
    pub(crate) fn start(files: impl Iterator<Item = (PathBuf, u64)>) -> Ahead {
        let files: Vec<_> = files.collect();
        let (tx, rx) = mpsc::sync_channel(DEPTH);
        std::thread::spawn(move || {
            for (path, size) in files {
                if tx.send(read(&path, size)).is_err() {
                    return;
                }
            }
        });
        Ahead { rx }
    }

    /// The next small file (an error one if the thread is gone).
    pub(crate) fn next(&self) -> Ready {
        self.rx.recv().unwrap_or_else(|_| Ready {
            error: Some("the reading thread stopped".into()),
            ..Ready::default()
        })
    }
}

fn read(path: &std::path::Path, size: u64) -> Ready {
    let failed = |error: String| Ready {
        error: Some(error),
        ..Ready::default()
    };
    match std::fs::read(path) {
        Ok(data) if data.len() as u64 != size => failed(format!(
            "{} changed size while being sent ({size} bytes planned, {} read)",
            path.display(),
            data.len()
        )),
        Ok(data) => Ready {
            hash: blake3::hash(&data),
            data,
            error: None,
        },
        Err(e) => failed(format!(
            "reading {}: {}",
            path.display(),
            crate::error::describe(&e)
        )),
    }
}
