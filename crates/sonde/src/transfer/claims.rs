//! The receiver's sessions side by side: which targets each is writing
//! (one session per file), and whether a session has been alone since it
//! began (then a directory it made holds only what it put there).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The targets that sessions are writing now (one session per file), and
/// how many sessions there are.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    held: Mutex<HashSet<PathBuf>>,
    /// Sessions begun, ever.
    begun: AtomicU64,
    /// Sessions running now.
    running: AtomicU64,
}

/// A session's presence among the receiver's sessions.
pub(crate) struct Presence<'a> {
    claims: &'a Claims,
    /// The sessions begun when this one began, if it was the only one.
    alone_at: Option<u64>,
}

impl Presence<'_> {
    /// Whether no other session has run since this one began: then a
    /// directory this session made holds only what it put there.
    pub(crate) fn alone(&self) -> bool {
        self.alone_at.is_some_and(|at| {
            self.claims.begun.load(Ordering::SeqCst) == at
                && self.claims.running.load(Ordering::SeqCst) == 1
        })
    }
}

impl Drop for Presence<'_> {
    fn drop(&mut self) {
        self.claims.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One session's hold on a target; let go when dropped.
pub(crate) struct Claim<'a> {
    claims: &'a Claims,
    path: PathBuf,
}

impl Claims {
    pub(crate) fn enter(&self) -> Presence<'_> {
        let begun = self.begun.fetch_add(1, Ordering::SeqCst) + 1;
        let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        Presence {
            claims: self,
            alone_at: (running == 1).then_some(begun),
        }
    }

    pub(crate) fn claim(&self, path: &Path) -> Option<Claim<'_>> {
        let mut held = self.held.lock().ok()?;
        held.insert(path.to_path_buf()).then(|| Claim {
            claims: self,
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Ok(mut held) = self.claims.held.lock() {
            held.remove(&self.path);
        }
    }
}
