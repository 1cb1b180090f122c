//! The code phrase's channel: what the transfer writes to its local socket
//! goes out sealed with ChaCha20-Poly1305 under this side's key, in frames
//! of at most 64 KiB, each with the next nonce (a counter, never sent);
//! what arrives is opened and handed on, or the connection is cut at the
//! first frame that does not authenticate. An empty frame ends each
//! direction, so that a cut connection is never taken for an end.
//! One thread each way.

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};

use super::TransferError;
use super::pake::Keys;

/// The most plaintext one frame carries.
const MAX_PLAIN: usize = 64 * 1024;
const TAG_LEN: usize = 16;

/// Why the channel failed.
#[derive(Debug, Clone)]
enum Broken {
    /// A frame did not authenticate: changed on the way.
    Tampered(String),
    /// The connection ended or failed without the peer's end.
    Cut(String),
}

/// A sealed channel running on its threads.
pub(crate) struct Sealed {
    threads: Vec<JoinHandle<()>>,
    failure: Arc<Mutex<Option<Broken>>>,
    ended: mpsc::Receiver<()>,
    cut: TcpStream,
    peer: String,
}

impl Sealed {
    /// Starts the channel on `tcp` with `keys`; the local end carries the
    /// plaintext.
    pub(crate) fn start(
        tcp: TcpStream,
        keys: &Keys,
        peer: String,
    ) -> io::Result<(UnixStream, Sealed)> {
        let (local, theirs) = UnixStream::pair()?;
        let failure = Arc::new(Mutex::new(None));
        let (done, ended) = mpsc::channel::<()>();
        let outbound = {
            let (tcp, local, failure, done) = (
                tcp.try_clone()?,
                theirs.try_clone()?,
                Arc::clone(&failure),
                done.clone(),
            );
            let cipher = ChaCha20Poly1305::new(&keys.outbound.into());
            std::thread::Builder::new()
                .name("sonde-seal".into())
                .spawn(move || {
                    let _done = done;
                    if let Err(e) = seal(&cipher, local, &tcp) {
                        record(&failure, Broken::Cut(crate::error::describe(&e)), &tcp);
                    }
                })?
        };
        let inbound = {
            let (tcp, failure) = (tcp.try_clone()?, Arc::clone(&failure));
            let cipher = ChaCha20Poly1305::new(&keys.inbound.into());
            std::thread::Builder::new()
                .name("sonde-open".into())
                .spawn(move || {
                    let _done = done;
                    if let Err(broken) = open(&cipher, &tcp, &theirs) {
                        let _ = theirs.shutdown(Shutdown::Both);
                        record(&failure, broken, &tcp);
                    }
                })?
        };
        Ok((
            local,
            Sealed {
                threads: vec![outbound, inbound],
                failure,
                ended,
                cut: tcp,
                peer,
            },
        ))
    }

    /// Waits for both directions to end (the peer has `limit` to end its
    /// side once ours has), then says how the channel ended.
    pub(crate) fn finish_within(mut self, limit: Duration) -> Result<(), TransferError> {
        let timed_out = matches!(
            self.ended.recv_timeout(limit),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        if timed_out {
            let _ = self.cut.shutdown(Shutdown::Both);
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let failure = self.failure.lock().ok().and_then(|mut f| f.take());
        match failure {
            Some(Broken::Tampered(why)) => Err(TransferError::Tampered(format!(
                "the data from {} {why}: nothing of it was kept",
                self.peer
            ))),
            Some(Broken::Cut(why)) => Err(TransferError::CutShort {
                what: format!("the sealed channel with {} ({why})", self.peer),
            }),
            None if timed_out => Err(TransferError::CutShort {
                what: format!(
                    "the sealed channel with {} (it did not end its side)",
                    self.peer
                ),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Sealed {
    /// Abandoned: cut, so that the threads end.
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            let _ = self.cut.shutdown(Shutdown::Both);
        }
    }
}

fn record(slot: &Mutex<Option<Broken>>, broken: Broken, tcp: &TcpStream) {
    if let Ok(mut slot) = slot.lock() {
        // The first failure is the cause; what follows is its echo.
        slot.get_or_insert(broken);
    }
    let _ = tcp.shutdown(Shutdown::Both);
}

/// The nonce of frame `n`: 4 zero bytes and the counter. Each direction
/// has its own key, so counters never meet.
fn nonce(n: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_be_bytes());
    bytes.into()
}

/// Local plaintext out, sealed, until the local side ends (then the end
/// frame).
fn seal(cipher: &ChaCha20Poly1305, mut local: UnixStream, tcp: &TcpStream) -> io::Result<()> {
    let mut frame = vec![0u8; 4 + MAX_PLAIN + TAG_LEN];
    for counter in 0u64.. {
        let n = match local.read(&mut frame[4..4 + MAX_PLAIN]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let tag = cipher
            .encrypt_in_place_detached(&nonce(counter), b"", &mut frame[4..4 + n])
            .map_err(|_| io::Error::other("sealing a frame"))?;
        frame[4 + n..4 + n + TAG_LEN].copy_from_slice(&tag);
        let len = u32::try_from(n + TAG_LEN).unwrap_or(u32::MAX);
        frame[..4].copy_from_slice(&len.to_be_bytes());
        (&*tcp).write_all(&frame[..4 + n + TAG_LEN])?;
        if n == 0 {
            let _ = tcp.shutdown(Shutdown::Write);
            return Ok(());
        }
    }
    Ok(())
}

/// Sealed frames in, opened, to the local side, until the peer's end.
fn open(cipher: &ChaCha20Poly1305, tcp: &TcpStream, local: &UnixStream) -> Result<(), Broken> {
    let mut reader = BufReader::with_capacity(256 * 1024, tcp);
    let mut frame = vec![0u8; MAX_PLAIN + TAG_LEN];
    let mut delivering = true;
    for counter in 0u64.. {
        let mut header = [0u8; 4];
        let cut = |e: io::Error| match e.kind() {
            io::ErrorKind::UnexpectedEof => Broken::Cut("it ended before the sender's end".into()),
            _ => Broken::Cut(crate::error::describe(&e)),
        };
        reader.read_exact(&mut header).map_err(cut)?;
        let len = u32::from_be_bytes(header) as usize;
        if !(TAG_LEN..=MAX_PLAIN + TAG_LEN).contains(&len) {
            return Err(Broken::Tampered(format!("came in a frame of {len} bytes")));
        }
        reader.read_exact(&mut frame[..len]).map_err(cut)?;
        let (text, tag) = frame[..len].split_at_mut(len - TAG_LEN);
        let tag = Tag::clone_from_slice(tag);
        cipher
            .decrypt_in_place_detached(&nonce(counter), b"", text, &tag)
            .map_err(|_| {
                Broken::Tampered("was changed on the way (it failed authentication)".into())
            })?;
        if text.is_empty() {
            let _ = local.shutdown(Shutdown::Write);
            return Ok(());
        }
        // A local side that stopped reading: the rest is read to its end
        // (or a failure) all the same.
        if delivering && (&*local).write_all(text).is_err() {
            delivering = false;
        }
    }
    Ok(())
}
