//! The chat room, in the spirit of `ncat --chat`: each client is `userN`
//! until it picks a name; each line goes to every other client as
//! `<user1> hello`; `/nick NAME`, `/who`, `/me ACTION`, `/quit`; join and
//! leave notices. Lines are capped at 8 KiB, made valid UTF-8, and stripped
//! of control characters, so no client can drive another's terminal. Every
//! client has a bounded queue: one that stops reading is dropped with a
//! notice when it fills, and never slows the others.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Ctx;

/// The longest line accepted, newline excluded.
pub const MAX_LINE: usize = 8192;
/// Lines queued for one client before it counts as not reading.
pub const QUEUE: usize = 1024;

struct Member {
    name: String,
    tx: mpsc::Sender<Arc<str>>,
    /// Cancelled when the member is dropped for not reading.
    kick: CancellationToken,
}

/// The clients of one chat server.
#[derive(Default)]
pub struct Room {
    members: Mutex<(u64, HashMap<u64, Member>)>,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Room")
    }
}

/// Makes a line safe to show: valid UTF-8, no control characters (tabs
/// kept), no trailing CR.
pub fn sanitize(raw: &[u8]) -> Cow<'_, str> {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    // Most lines are plain printable ASCII: shown as they are, no copy.
    if raw
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        && let Ok(plain) = std::str::from_utf8(raw)
    {
        return Cow::Borrowed(plain);
    }
    Cow::Owned(
        String::from_utf8_lossy(raw)
            .chars()
            .filter(|c| *c == '\t' || !c.is_control())
            .collect(),
    )
}

/// How much one read of a client takes.
const READ_CHUNK: usize = 8 * 1024;

/// A client's line being read: the start of a line that a read cut.
struct Line {
    /// The client's name, as lines are shown under it.
    name: String,
    pending: Vec<u8>,
    /// The line is over `MAX_LINE` and is being skipped to its end.
    skipping: bool,
}

impl Line {
    /// Keeps `part` of the line being read, unless it grows too long.
    fn extend(&mut self, part: &[u8], me: &mpsc::Sender<Arc<str>>) {
        if self.skipping {
            return;
        }
        if self.pending.len() + part.len() > MAX_LINE {
            let _ = me.try_send(Arc::from(format!(
                "* line too long (over {MAX_LINE} bytes), not sent\n"
            )));
            self.pending.clear();
            self.skipping = true;
        } else {
            self.pending.extend_from_slice(part);
        }
    }
}

fn valid_nick(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Room {
    /// An empty room.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Sends `line` to every member but `except`; a member whose queue is
    /// full is dropped (its writer tells it why).
    fn broadcast(&self, except: Option<u64>, line: &str) {
        self.broadcast_text(except, Arc::from(format!("{line}\n")));
    }

    /// Sends newline-terminated `text` (one or more lines) to every member
    /// but `except`, as one queue entry each.
    fn broadcast_text(&self, except: Option<u64>, text: Arc<str>) {
        if let Ok(mut guard) = self.members.lock() {
            let mut slow = Vec::new();
            for (id, m) in &guard.1 {
                if Some(*id) != except && m.tx.try_send(Arc::clone(&text)).is_err() {
                    slow.push(*id);
                }
            }
            for id in &slow {
                if let Some(m) = guard.1.remove(id) {
                    m.kick.cancel();
                }
            }
        }
    }

    fn name_of(&self, id: u64) -> String {
        self.members
            .lock()
            .ok()
            .and_then(|g| g.1.get(&id).map(|m| m.name.clone()))
            .unwrap_or_default()
    }

    /// Tells every member the server is closing.
    pub async fn closing(&self) {
        self.broadcast(None, "* the server is closing");
    }

    /// Serves one client until it leaves.
    pub(crate) async fn join(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        ctx: &Arc<Ctx>,
    ) {
        let (reader, writer) = stream.into_split();
        self.join_halves(reader, writer, peer, ctx).await;
    }

    /// Serves one client over any stream (TLS, say) until it leaves.
    pub(crate) async fn join_stream<S>(
        self: &Arc<Self>,
        stream: S,
        peer: SocketAddr,
        ctx: &Arc<Ctx>,
    ) where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(stream);
        self.join_halves(reader, writer, peer, ctx).await;
    }

    async fn join_halves<R, W>(
        self: &Arc<Self>,
        reader: R,
        writer: W,
        _peer: SocketAddr,
        ctx: &Arc<Ctx>,
    ) where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(QUEUE);
        let kick = CancellationToken::new();
        let id = {
            let Ok(mut guard) = self.members.lock() else {
                return;
            };
            guard.0 += 1;
            let id = guard.0;
            let member = Member {
                name: format!("user{id}"),
                tx: tx.clone(),
                kick: kick.clone(),
            };
            guard.1.insert(id, member);
            id
        };
        let writer = tokio::spawn(write_queue(writer, rx, kick.clone(), Arc::clone(ctx)));
        let name = self.name_of(id);
        let _ = tx.try_send(Arc::from(format!(
            "* welcome, {name}; /nick NAME, /who, /me ACTION, /quit\n"
        )));
        self.broadcast(Some(id), &format!("* {name} joined"));
        tokio::select! {
            () = kick.cancelled() => {}
            () = self.read_lines(id, reader, &tx, ctx) => {}
        }
        let name = self.name_of(id);
        let was_member = self
            .members
            .lock()
            .ok()
            .and_then(|mut g| g.1.remove(&id))
            .is_some();
        if was_member {
            self.broadcast(None, &format!("* {name} left"));
        } else if kick.is_cancelled() {
            self.broadcast(None, &format!("* user{id} was disconnected (not reading)"));
        }
        drop(tx);
        let _ = writer.await;
    }

    async fn read_lines(
        &self,
        id: u64,
        mut reader: impl AsyncRead + Unpin,
        me: &mpsc::Sender<Arc<str>>,
        ctx: &Ctx,
    ) {
        let mut line = Line {
            name: self.name_of(id),
            pending: Vec::new(),
            skipping: false,
        };
        let mut buf = vec![0u8; READ_CHUNK];
        while let Some(n) = super::services::read_some(&mut reader, &mut buf, ctx).await {
            // Plain lines of one read go out together, as one queue entry.
            let mut batch = String::new();
            let mut rest = &buf[..n];
            while let Some(end) = memchr::memchr(b'\n', rest) {
                let keep_going = if line.pending.is_empty() && end <= MAX_LINE {
                    line.skipping
                        || self.handle_line(id, &rest[..end], me, &mut batch, &mut line.name)
                } else {
                    line.extend(&rest[..end], me);
                    let raw = std::mem::take(&mut line.pending);
                    let go =
                        line.skipping || self.handle_line(id, &raw, me, &mut batch, &mut line.name);
                    line.pending = raw;
                    line.pending.clear();
                    go
                };
                if !keep_going {
                    self.flush(id, &mut batch);
                    return;
                }
                line.skipping = false;
                rest = &rest[end + 1..];
            }
            line.extend(rest, me);
            self.flush(id, &mut batch);
        }
    }

    fn flush(&self, id: u64, batch: &mut String) {
        if !batch.is_empty() {
            self.broadcast_text(Some(id), Arc::from(std::mem::take(batch)));
        }
    }

    /// Handles one line; false when the client quits.
    fn handle_line(
        &self,
        id: u64,
        raw: &[u8],
        me: &mpsc::Sender<Arc<str>>,
        batch: &mut String,
        name: &mut String,
    ) -> bool {
        let line = sanitize(raw);
        let is_plain = !line.starts_with('/') && !line.is_empty();
        if !is_plain {
            // Commands keep their order after the lines before them.
            self.flush(id, batch);
        }
        let reply = |text: String| {
            let _ = me.try_send(Arc::from(format!("{text}\n")));
        };
        if let Some(rest) = line.strip_prefix("/nick ") {
            let new = rest.trim();
            let taken = self
                .members
                .lock()
                .map(|g| g.1.values().any(|m| m.name == new))
                .unwrap_or(true);
            if !valid_nick(new) {
                reply(format!(
                    "* '{new}' is not a valid name (1-32 letters, digits, _ or -)"
                ));
            } else if taken {
                reply(format!("* the name {new} is taken"));
            } else {
                if let Ok(mut g) = self.members.lock()
                    && let Some(m) = g.1.get_mut(&id)
                {
                    m.name = new.to_string();
                }
                self.broadcast(None, &format!("* {name} is now known as {new}"));
                *name = new.to_string();
            }
        } else if line == "/who" {
            let mut names: Vec<String> = self
                .members
                .lock()
                .map(|g| g.1.values().map(|m| m.name.clone()).collect())
                .unwrap_or_default();
            names.sort();
            reply(format!("* here: {}", names.join(", ")));
        } else if let Some(action) = line.strip_prefix("/me ") {
            self.broadcast(Some(id), &format!("* {name} {action}"));
        } else if line == "/quit" {
            return false;
        } else if !line.is_empty() {
            for part in ["<", name, "> ", &line, "\n"] {
                batch.push_str(part);
            }
        }
        true
    }
}

/// Writes a client's queue; when the client is dropped for not reading,
/// tries once (without waiting) to tell it why, then closes.
async fn write_queue(
    mut writer: impl AsyncWrite + Unpin,
    mut rx: mpsc::Receiver<Arc<str>>,
    kick: CancellationToken,
    ctx: Arc<Ctx>,
) {
    let mut entries: Vec<Arc<str>> = Vec::new();
    loop {
        let first = tokio::select! {
            () = kick.cancelled() => break,
            first = rx.recv() => first,
        };
        let Some(first) = first else {
            let _ = writer.shutdown().await;
            return;
        };
        // Take whatever else is queued too: one write for many entries,
        // gathered by the kernel rather than copied here.
        entries.clear();
        let mut len = first.len();
        entries.push(first);
        while len < WRITE_MAX && entries.len() < WRITE_ENTRIES {
            match rx.try_recv() {
                Ok(more) => {
                    len += more.len();
                    entries.push(more);
                }
                Err(_) => break,
            }
        }
        let write = write_entries(&mut writer, &entries);
        tokio::select! {
            () = kick.cancelled() => break,
            r = write => if r.is_err() { return },
        }
        ctx.stats.add_out(len);
    }
    // The client stopped reading: this goes out only if there is room.
    let last =
        writer.write_all(b"\n* disconnected: you stopped reading and your queue filled up\n");
    let _ = tokio::time::timeout(std::time::Duration::from_millis(10), last).await;
}

/// Bytes gathered into one write at most (a little more with the last entry).
const WRITE_MAX: usize = 64 * 1024;
/// Queue entries gathered into one write at most (well under `IOV_MAX`).
const WRITE_ENTRIES: usize = 256;

/// Writes every entry, in order, with vectored writes.
async fn write_entries(
    writer: &mut (impl AsyncWrite + Unpin),
    entries: &[Arc<str>],
) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = entries.iter().map(|e| IoSlice::new(e.as_bytes())).collect();
    let mut left = &mut slices[..];
    while !left.is_empty() {
        let n = writer.write_vectored(left).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut left, n);
    }
    // A TLS stream holds its last record until flushed (a socket's flush
    // does nothing).
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_strips_control_characters_and_bad_utf8() {
        assert_eq!(sanitize(b"hi\x1b[2Jthere\r"), "hi[2Jthere");
        assert_eq!(sanitize(b"tab\tok"), "tab\tok");
        assert_eq!(sanitize(b"bad \xff byte"), "bad \u{fffd} byte");
        assert_eq!(sanitize("caf\u{e9} \u{9b}x".as_bytes()), "caf\u{e9} x");
    }

    #[test]
    fn nicknames_are_short_and_plain() {
        assert!(valid_nick("alice_1"));
        assert!(!valid_nick(""));
        assert!(!valid_nick("a b"));
        assert!(!valid_nick(&"x".repeat(33)));
    }
}
