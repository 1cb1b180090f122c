//! The chat room, in the spirit of `ncat --chat`: each client is `userN`
//! until it picks a name; each line goes to every other client as
//! `<user1> hello`; `/nick NAME`, `/who`, `/me ACTION`, `/quit`; join and
//! leave notices. Lines are capped at 8 KiB, made valid UTF-8, and stripped
//! of control characters, so no client can drive another's terminal. Every
//! client has a bounded queue: one that stops reading is dropped with a
//! notice when it fills, and never slows the others.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
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
pub fn sanitize(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    String::from_utf8_lossy(raw)
        .chars()
        .filter(|c| *c == '\t' || !c.is_control())
        .collect()
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
        _peer: SocketAddr,
        ctx: &Arc<Ctx>,
    ) {
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
        let (reader, writer) = stream.into_split();
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
        mut reader: tokio::net::tcp::OwnedReadHalf,
        me: &mpsc::Sender<Arc<str>>,
        ctx: &Ctx,
    ) {
        let mut pending: Vec<u8> = Vec::new();
        let mut skipping = false;
        let mut buf = [0u8; 4096];
        loop {
            let read = async {
                match ctx.idle {
                    Some(limit) => tokio::time::timeout(limit, reader.read(&mut buf))
                        .await
                        .unwrap_or(Ok(0)),
                    None => reader.read(&mut buf).await,
                }
            };
            let n = tokio::select! {
                () = ctx.shutdown.cancelled() => return,
                r = read => match r { Ok(0) | Err(_) => return, Ok(n) => n },
            };
            ctx.stats.add_in(n);
            // Plain lines of one read go out together, as one queue entry.
            let mut batch = String::new();
            for &byte in &buf[..n] {
                if byte == b'\n' {
                    if !skipping && !self.handle_line(id, &pending, me, &mut batch) {
                        self.flush(id, &mut batch);
                        return;
                    }
                    pending.clear();
                    skipping = false;
                } else if !skipping {
                    pending.push(byte);
                    if pending.len() > MAX_LINE {
                        let _ = me.try_send(Arc::from(format!(
                            "* line too long (over {MAX_LINE} bytes), not sent\n"
                        )));
                        pending.clear();
                        skipping = true;
                    }
                }
            }
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
    ) -> bool {
        let line = sanitize(raw);
        let is_plain = !line.starts_with('/') && !line.is_empty();
        if !is_plain {
            // Commands keep their order after the lines before them.
            self.flush(id, batch);
        }
        let name = self.name_of(id);
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
            batch.push_str(&format!("<{name}> {line}\n"));
        }
        true
    }
}

/// Writes a client's queue; when the client is dropped for not reading,
/// tries once (without waiting) to tell it why, then closes.
async fn write_queue(
    mut writer: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Arc<str>>,
    kick: CancellationToken,
    ctx: Arc<Ctx>,
) {
    loop {
        let line = tokio::select! {
            () = kick.cancelled() => break,
            line = rx.recv() => line,
        };
        let Some(line) = line else {
            let _ = writer.shutdown().await;
            return;
        };
        // Take whatever else is queued too: one write for many lines.
        let mut out = String::from(&*line);
        while out.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(more) => out.push_str(&more),
                Err(_) => break,
            }
        }
        let write = writer.write_all(out.as_bytes());
        tokio::select! {
            () = kick.cancelled() => break,
            r = write => if r.is_err() { return },
        }
        ctx.stats.add_out(out.len());
    }
    let _ = writer.try_write(b"\n* disconnected: you stopped reading and your queue filled up\n");
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
