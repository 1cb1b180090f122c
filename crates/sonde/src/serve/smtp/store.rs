//! Where `serve smtp` keeps what it accepted: a standard Maildir (each
//! message written under `tmp/`, flushed to disk, renamed into `new/`,
//! and the directory fsync'd, all before the 250), so a message the
//! client was told is stored survives a kill -9 and mutt, a script or
//! grep can read it; or memory only. The oldest are pruned past the cap.
//!
//! Messages that arrive together are committed together (group commit):
//! the first to come writes and fdatasyncs everyone's waiting files,
//! renames them and fsyncs `new/` once, while the others wait for it, so
//! the directory's flush (and the journal's commit behind it) is shared.
//! One syncfs(2) for the batch was tried and dropped: it flushes every
//! other process's dirty data on the filesystem too (BENCHMARKS.md).
//!
//! A Maildir holds messages, not envelopes: those are appended to
//! `.sonde-envelopes` beside `new/` (one JSON line each, written with the
//! batch, before its renames, and left to the kernel to write back), read
//! back on start and compacted then.
//! A message read is moved to `cur/` with the `S` flag, as a mail reader
//! would; each arrival is announced to whoever subscribed (the web
//! side's event stream).

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use tokio::sync::broadcast;

use super::session::Envelope;
use super::summary::{Summary, summarize};

/// The envelopes' file, in the Maildir's root (where Maildir readers look
/// for nothing; Dovecot keeps its own files there too).
const ENVELOPES: &str = ".sonde-envelopes";

/// Arrivals announced but not yet taken by a slow subscriber, before it
/// misses some (it is told it did).
const EVENTS: usize = 1024;

/// A message as stored.
#[derive(Clone, Debug)]
pub struct Stored {
    /// Its id (the Maildir file's unique name).
    pub id: String,
    /// Who sent it to whom.
    pub envelope: Envelope,
    /// Its size in bytes, as stored.
    pub size: usize,
    /// When it arrived.
    pub received: SystemTime,
    /// What a list shows of it: from, to, subject, a snippet.
    pub summary: Arc<Summary>,
    /// Whether someone has opened it.
    pub read: bool,
}

/// The messages, in a Maildir or in memory.
#[derive(Debug)]
pub struct Store {
    dir: Option<PathBuf>,
    max: usize,
    next: AtomicU64,
    /// Messages stored since the start, and their bytes.
    stored: (AtomicU64, AtomicU64),
    /// Oldest first: each message's summary (and its bytes in memory).
    kept: Mutex<VecDeque<(Stored, Option<Vec<u8>>)>>,
    /// Messages waiting to be committed, and who commits them.
    group: Group,
    /// Each message stored, to whoever listens.
    events: broadcast::Sender<Stored>,
}

/// Group commit: the batch being gathered, the batches done, and what
/// failed in them.
#[derive(Debug, Default)]
struct Group {
    state: Mutex<Commits>,
    done: Condvar,
}

/// A message waiting for its batch: its id, bytes and envelope line.
#[derive(Debug)]
struct Pending {
    id: String,
    data: Vec<u8>,
    envelope: String,
}

#[derive(Debug, Default)]
struct Commits {
    /// The messages of the batch being gathered.
    waiting: Vec<Pending>,
    /// The number of the batch being gathered (from 1).
    gathering: u64,
    /// The last batch committed (0: none yet).
    committed: u64,
    /// A batch is being written.
    writing: bool,
    /// Why a message of a committed batch was not stored, by id.
    failed: HashMap<String, String>,
}

impl Store {
    /// A Maildir at `dir` (created with `tmp`, `new` and `cur` when
    /// missing), keeping at most `max` messages; what is there already
    /// counts towards it, oldest first.
    ///
    /// # Errors
    /// When the directories cannot be made or read.
    pub fn maildir(dir: &Path, max: usize) -> io::Result<Self> {
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let mut envelopes = read_envelopes(dir);
        let mut found = Vec::new();
        for sub in ["new", "cur"] {
            for entry in fs::read_dir(dir.join(sub))? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let size = entry.metadata().map_or(0, |m| m.len() as usize);
                let received = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(UNIX_EPOCH);
                let (id, info) = name.split_once(':').unwrap_or((&name, ""));
                let raw = fs::read(entry.path()).unwrap_or_default();
                found.push(Stored {
                    id: id.to_string(),
                    // A message put there by another program has none.
                    envelope: envelopes.remove(id).unwrap_or_default(),
                    size,
                    received,
                    summary: Arc::new(summarize(&raw)),
                    read: info.strip_prefix("2,").is_some_and(|f| f.contains('S')),
                });
            }
        }
        // Maildir names begin with the time: their order is arrival's.
        found.sort_by(|a, b| a.id.cmp(&b.id));
        if !envelopes.is_empty() {
            // Lines of messages gone (pruned, deleted, moved away).
            compact_envelopes(dir, &found)?;
        }
        let store = Self {
            dir: Some(dir.to_path_buf()),
            max: max.max(1),
            next: AtomicU64::new(0),
            stored: Default::default(),
            kept: Mutex::new(found.into_iter().map(|s| (s, None)).collect()),
            group: Group::default(),
            events: broadcast::channel(EVENTS).0,
        };
        store.prune();
        Ok(store)
    }

    /// Messages in memory only, at most `max`.
    pub fn memory(max: usize) -> Self {
        Self {
            dir: None,
            max: max.max(1),
            next: AtomicU64::new(0),
            stored: Default::default(),
            kept: Mutex::default(),
            group: Group::default(),
            events: broadcast::channel(EVENTS).0,
        }
    }

    /// Each message stored from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Stored> {
        self.events.subscribe()
    }

    /// Where the Maildir is, if there is one.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Stores a message: on disk, durably, before it returns. Blocking.
    ///
    /// # Errors
    /// When the message cannot be written; nothing is left in `new/`.
    pub fn put(&self, envelope: Envelope, data: Vec<u8>) -> io::Result<Stored> {
        let received = SystemTime::now();
        let id = self.unique(received);
        let stored = Stored {
            id: id.clone(),
            envelope,
            size: data.len(),
            received,
            summary: Arc::new(summarize(&data)),
            read: false,
        };
        let bytes = match &self.dir {
            Some(dir) => {
                let envelope = envelope_line(&id, &stored.envelope);
                self.group.commit(
                    dir,
                    Pending {
                        id: id.clone(),
                        data,
                        envelope,
                    },
                )?;
                None
            }
            None => Some(data),
        };
        if let Ok(mut kept) = self.kept.lock() {
            kept.push_back((stored.clone(), bytes));
        }
        self.stored.0.fetch_add(1, Ordering::Relaxed);
        self.stored
            .1
            .fetch_add(stored.size as u64, Ordering::Relaxed);
        self.prune();
        // Nobody listening is no error.
        let _ = self.events.send(stored.clone());
        Ok(stored)
    }

    /// The messages kept, oldest first.
    pub fn list(&self) -> Vec<Stored> {
        self.kept
            .lock()
            .map(|k| k.iter().map(|(s, _)| s.clone()).collect())
            .unwrap_or_default()
    }

    /// A message's bytes, as stored.
    pub fn raw(&self, id: &str) -> Option<Vec<u8>> {
        let kept = self.kept.lock().ok()?;
        let (_, bytes) = kept.iter().find(|(s, _)| s.id == id)?;
        match (bytes, &self.dir) {
            (Some(bytes), _) => Some(bytes.clone()),
            (None, Some(dir)) => find(dir, id).and_then(|p| fs::read(p).ok()),
            (None, None) => None,
        }
    }

    /// How many are kept, and how many of those are unread.
    pub fn counts(&self) -> (usize, usize) {
        self.kept.lock().map_or((0, 0), |k| {
            (k.len(), k.iter().filter(|(s, _)| !s.read).count())
        })
    }

    /// Messages stored since the start, and their bytes.
    pub fn stored(&self) -> (u64, u64) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (load(&self.stored.0), load(&self.stored.1))
    }

    /// One message's summary: by id, or the newest for `latest`.
    pub fn get(&self, id: &str) -> Option<Stored> {
        let kept = self.kept.lock().ok()?;
        let found = match id {
            "latest" => kept.back(),
            _ => kept.iter().find(|(s, _)| s.id == id),
        };
        found.map(|(s, _)| s.clone())
    }

    /// Marks a message read; in a Maildir it moves to `cur/` with the
    /// `S` flag, as a mail reader would.
    pub fn mark_read(&self, id: &str) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        let Some((stored, _)) = kept.iter_mut().find(|(s, _)| s.id == id) else {
            return;
        };
        if stored.read {
            return;
        }
        stored.read = true;
        if let Some(dir) = &self.dir {
            let new = dir.join("new").join(id);
            if new.exists() {
                let _ = fs::rename(new, dir.join("cur").join(format!("{id}:2,S")));
            }
        }
    }

    /// Deletes messages by id (their files too); returns how many went.
    pub fn delete(&self, ids: &[String]) -> usize {
        let Ok(mut kept) = self.kept.lock() else {
            return 0;
        };
        let before = kept.len();
        kept.retain(|(s, _)| {
            let go = ids.contains(&s.id);
            if go && let Some(path) = self.dir.as_deref().and_then(|d| find(d, &s.id)) {
                let _ = fs::remove_file(path);
            }
            !go
        });
        before - kept.len()
    }

    /// Deletes every message; returns how many went.
    pub fn delete_all(&self) -> usize {
        let ids: Vec<String> = self.list().into_iter().map(|s| s.id).collect();
        self.delete(&ids)
    }

    /// A name unique to this message, Maildir's way: the time, a counter
    /// and the process, then the host.
    fn unique(&self, at: SystemTime) -> String {
        let t = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}.M{:06}P{}Q{n}.{}",
            t.as_secs(),
            t.subsec_micros(),
            std::process::id(),
            host()
        )
    }

    /// Drops the oldest past the cap (their files too).
    fn prune(&self) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        while kept.len() > self.max {
            let Some((old, _)) = kept.pop_front() else {
                break;
            };
            if let Some(path) = self.dir.as_deref().and_then(|d| find(d, &old.id)) {
                let _ = fs::remove_file(path);
            }
        }
    }
}

impl Group {
    /// Commits message `id` with whatever else is waiting: returns once
    /// it is on disk under `new/` (or could not be). The first to find
    /// nobody writing writes the batch; the rest wait for it.
    fn commit(&self, dir: &Path, message: Pending) -> io::Result<()> {
        let poisoned = || io::Error::other("the store's lock was poisoned");
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        state.gathering = state.gathering.max(1);
        let batch = state.gathering;
        let id = message.id.clone();
        state.waiting.push(message);
        loop {
            if state.committed >= batch {
                return match state.failed.remove(&id) {
                    Some(why) => Err(io::Error::other(why)),
                    None => Ok(()),
                };
            }
            if !state.writing {
                // Ours is the batch being gathered: write it.
                let messages = std::mem::take(&mut state.waiting);
                let number = state.gathering;
                state.gathering += 1;
                state.writing = true;
                drop(state);
                let failures = write_batch(dir, &messages);
                state = self.state.lock().map_err(|_| poisoned())?;
                state.committed = number;
                state.writing = false;
                state.failed.extend(failures);
                self.done.notify_all();
                continue;
            }
            state = self.done.wait(state).map_err(|_| poisoned())?;
        }
    }
}

/// Writes and fdatasyncs each message under `tmp/` and their envelopes,
/// renames each into `new/` and fsyncs `new/` once, so a name is there
/// only when its bytes are, and both outlive a crash. Every file is
/// written, and its write-back started, before the first is flushed: the
/// first flush's journal commit then carries every file's blocks and the
/// others' find it done (BENCHMARKS.md: 1.1x to 1.8x the messages a
/// second of writing and flushing each in turn). The messages that
/// failed, with why (a failed rename or directory flush fails them all;
/// a failed envelope fails none: the message is what matters).
fn write_batch(dir: &Path, messages: &[Pending]) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    let mut open = Vec::new();
    for Pending { id, data, .. } in messages {
        let tmp = dir.join("tmp").join(id);
        match File::create(&tmp).and_then(|mut f| {
            f.write_all(data)?;
            start_write_back(&f);
            Ok(f)
        }) {
            Ok(f) => open.push((id, f)),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                failed.push((id.clone(), e.to_string()));
            }
        }
    }
    let mut written = Vec::new();
    for (id, f) in open {
        match f.sync_data() {
            Ok(()) => written.push(id),
            Err(e) => {
                let _ = fs::remove_file(dir.join("tmp").join(id));
                failed.push((id.clone(), e.to_string()));
            }
        }
    }
    let lines: String = messages
        .iter()
        .filter(|m| written.contains(&&m.id))
        .map(|m| m.envelope.as_str())
        .collect();
    if let Err(e) = append_envelopes(dir, &lines) {
        tracing::warn!(
            "serve smtp: keeping envelopes in {}: {e}",
            dir.join(ENVELOPES).display()
        );
    }
    let new = dir.join("new");
    let renamed = (|| -> io::Result<()> {
        for id in &written {
            fs::rename(dir.join("tmp").join(id), new.join(id))?;
        }
        File::open(&new)?.sync_all()
    })();
    if let Err(e) = renamed {
        for id in written {
            let _ = fs::remove_file(dir.join("tmp").join(id));
            let _ = fs::remove_file(new.join(id));
            failed.push((id.clone(), e.to_string()));
        }
    }
    failed
}

/// Starts writing `file`'s dirty pages to disk without waiting, so a
/// batch's files are written at once (sync_file_range(2); the flush that
/// makes them durable is still each file's fdatasync).
fn start_write_back(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is `file`'s, open for the whole call; the
        // call takes integers only and touches no memory of ours.
        let _ =
            unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// A message's envelope as a line of the envelopes' file.
fn envelope_line(id: &str, envelope: &Envelope) -> String {
    let line = serde_json::json!({"id": id, "envelope": envelope});
    format!("{line}\n")
}

/// Appends `lines` to the envelopes' file.
fn append_envelopes(dir: &Path, lines: &str) -> io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(ENVELOPES))?;
    // Not flushed on its own: a flush here measured a fifth off the
    // messages a second (BENCHMARKS.md). The kernel writes it back within
    // seconds; a crash before loses those envelopes, never a message.
    file.write_all(lines.as_bytes())
}

/// The envelopes on file, by message id (a line that does not read, as
/// one cut by a crash, is skipped).
fn read_envelopes(dir: &Path) -> HashMap<String, Envelope> {
    #[derive(serde::Deserialize)]
    struct Line {
        id: String,
        envelope: Envelope,
    }
    let text = fs::read_to_string(dir.join(ENVELOPES)).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .map(|l| (l.id, l.envelope))
        .collect()
}

/// Rewrites the envelopes' file with those of `kept` only (written aside,
/// flushed, renamed over it).
fn compact_envelopes(dir: &Path, kept: &[Stored]) -> io::Result<()> {
    let lines: String = kept
        .iter()
        .filter(|s| s.envelope != Envelope::default())
        .map(|s| envelope_line(&s.id, &s.envelope))
        .collect();
    let aside = dir.join(format!("{ENVELOPES}.tmp"));
    let mut file = File::create(&aside)?;
    file.write_all(lines.as_bytes())?;
    file.sync_data()?;
    fs::rename(aside, dir.join(ENVELOPES))
}

/// The file of message `id`, in `new/` or (read, with flags) in `cur/`.
fn find(dir: &Path, id: &str) -> Option<PathBuf> {
    let new = dir.join("new").join(id);
    if new.exists() {
        return Some(new);
    }
    fs::read_dir(dir.join("cur")).ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        (name == id || name.starts_with(&format!("{id}:"))).then(|| e.path())
    })
}

/// This machine's name for Maildir file names (`/` and `:` replaced, as
/// the format asks).
fn host() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .replace(['/', ':'], "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            helo: "c".into(),
            from: "a@x".into(),
            to: vec!["b@y".into()],
            smtputf8: false,
        }
    }

    #[test]
    fn a_maildir_keeps_the_newest_and_the_bytes() {
        let dir = std::env::temp_dir().join(format!("sonde-maildir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = Store::maildir(&dir, 2).expect("maildir");
        let ids: Vec<String> = (0..3)
            .map(|i| {
                let data = format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes();
                store.put(envelope(), data).expect("put").id
            })
            .collect();
        let kept: Vec<String> = store.list().into_iter().map(|s| s.id).collect();
        assert_eq!(kept, ids[1..]);
        assert_eq!(fs::read_dir(dir.join("new")).expect("new").count(), 2);
        assert_eq!(fs::read_dir(dir.join("tmp")).expect("tmp").count(), 0);
        assert_eq!(
            store.raw(&ids[2]).expect("raw"),
            b"Subject: 2\r\n\r\nbody 2\r\n"
        );
        // Opened again, it finds what is there, in order.
        let again = Store::maildir(&dir, 5).expect("maildir");
        let subjects: Vec<String> = again
            .list()
            .into_iter()
            .map(|s| s.summary.subject.clone())
            .collect();
        assert_eq!(
            subjects,
            ["1", "2"],
            "the subjects read back from the files"
        );
        let list = again.list();
        assert_eq!(
            list[1].envelope,
            envelope(),
            "and the envelopes from theirs"
        );
        // The pruned message's line went when the file was compacted.
        let lines = fs::read_to_string(dir.join(ENVELOPES)).expect("envelopes");
        assert_eq!(lines.lines().count(), 2, "{lines}");
        assert!(!lines.contains(&ids[0]));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn memory_keeps_the_bytes_too() {
        let store = Store::memory(1);
        store.put(envelope(), b"one".to_vec()).expect("put");
        let id = store.put(envelope(), b"two".to_vec()).expect("put").id;
        assert_eq!(store.list().len(), 1);
        assert_eq!(store.raw(&id).expect("raw"), b"two");
    }
}
