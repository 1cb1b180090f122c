//! Reading small files ahead: a thread of its own reads and hashes each
//! small file of a plan in order, a bounded number ahead of the sender, so
//! the disk and the hash overlap with the network. Files are handed over
//! in runs, not one by one: a handover can wake a sleeping thread, which
//! costs more than reading a 4 KiB file.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Read;
use std::path::PathBuf;
use std::sync::mpsc;

/// How many runs may wait read, at most...
const DEPTH: usize = 4;
/// ...each of at most this many files...
const RUN_FILES: usize = 64;
/// ...or about this many bytes (each file is at most 1 MiB).
const RUN_BYTES: usize = 1024 * 1024;

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
    rx: mpsc::Receiver<Vec<Ready>>,
    run: RefCell<VecDeque<Ready>>,
}

impl Ahead {
    /// Starts reading `files` (each with the size it was planned with).
    pub(crate) fn start(files: impl Iterator<Item = (PathBuf, u64)>) -> Ahead {
        let files: Vec<_> = files.collect();
        let (tx, rx) = mpsc::sync_channel(DEPTH);
        std::thread::spawn(move || {
            let mut run = Vec::new();
            let mut bytes = 0;
            let last = files.len();
            for (at, (path, size)) in files.into_iter().enumerate() {
                let ready = read(&path, size);
                bytes += ready.data.len();
                run.push(ready);
                let end = at + 1 == last;
                if end || run.len() >= RUN_FILES || bytes >= RUN_BYTES {
                    bytes = 0;
                    if tx.send(std::mem::take(&mut run)).is_err() {
                        return;
                    }
                }
            }
        });
        Ahead {
            rx,
            run: RefCell::new(VecDeque::new()),
        }
    }

    /// The next small file (an error one if the thread is gone).
    pub(crate) fn next(&self) -> Ready {
        let mut run = self.run.borrow_mut();
        if run.is_empty()
            && let Ok(more) = self.rx.recv()
        {
            run.extend(more);
        }
        run.pop_front().unwrap_or_else(|| Ready {
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
    match read_known(path, size) {
        Ok(data) if data.len() as u64 > size => failed(format!(
            "{} grew while being sent ({size} bytes planned)",
            path.display(),
        )),
        Ok(data) if (data.len() as u64) < size => failed(format!(
            "{} shrank while being sent ({size} bytes planned, {} read)",
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

/// A file's bytes when its size is known: read straight into a buffer of
/// that size (std's `read_to_end` looks at the metadata first, a syscall a
/// file), then one read more to see whether it has grown.
fn read_known(path: &std::path::Path, size: u64) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut data = vec![0; usize::try_from(size).unwrap_or(usize::MAX)];
    let mut at = 0;
    while at < data.len() {
        match file.read(&mut data[at..]) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    data.truncate(at);
    if at as u64 == size {
        // Grown since planned: the caller sees the size differ.
        let mut more = [0; 1];
        if file.read(&mut more)? > 0 {
            data.push(more[0]);
        }
    }
    Ok(data)
}
