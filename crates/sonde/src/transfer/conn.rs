//! The transfer connection, thin: the hello, frames and chunks read and
//! written on a blocking stream (TCP, or the plaintext side of a TLS or
//! code-phrase layer: [`Carrier`]), with every failure named. Messages
//! may be queued and leave together (many small files' frames in one
//! write); whatever is queued goes out before this side blocks to read,
//! so neither end ever waits on words the other has not sent.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use std::os::fd::AsFd;

use super::TransferError;
use super::carrier::Carrier;
use super::floor::{Floored, RateFloor};
use super::wire::{self, HELLO_LEN, Message, WireError};
use crate::sys::retry;

/// One side of a transfer connection.
pub(crate) struct Conn {
    reader: BufReader<Floored<Carrier>>,
    writer: Carrier,
    /// Frames queued to go out together.
    queued: Vec<u8>,
    peer: SocketAddr,
    /// How long the peer may be silent.
    timeout: Duration,
}

impl Conn {
    /// Wraps a connected stream; reads give up after `timeout` of silence.
    pub(crate) fn new(
        stream: Carrier,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<Self, TransferError> {
        Self::floored(stream, peer, timeout, 0)
    }

    /// As `new`, and reads fail when fewer than `min_rate` bytes a second
    /// arrive over a window of `timeout` (0: no floor).
    pub(crate) fn floored(
        stream: Carrier,
        peer: SocketAddr,
        timeout: Duration,
        min_rate: u64,
    ) -> Result<Self, TransferError> {
        let what = || format!("configuring the connection to {peer}");
        stream
            .set_nodelay()
            .map_err(|e| TransferError::io(what(), e))?;
        let timeout = timeout.max(Duration::from_millis(1));
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| TransferError::io(what(), e))?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| TransferError::io(what(), e))?;
        let writer = stream
            .try_clone()
            .map_err(|e| TransferError::io(what(), e))?;
        let floor = RateFloor::new(min_rate, timeout);
        Ok(Conn {
            reader: BufReader::with_capacity(
                256 * 1024,
                Floored {
                    inner: stream,
                    floor,
                    early: io::Cursor::default(),
                },
            ),
            writer,
            queued: Vec::new(),
            peer,
            timeout,
        })
    }

    /// A second handle on the same connection, for a thread that only
    /// reads; this one then only writes. Nothing must be buffered yet.
    pub(crate) fn reading_half(&self) -> Result<Conn, TransferError> {
        debug_assert!(self.reader.buffer().is_empty());
        let what = || format!("configuring the connection to {}", self.peer);
        let stream = self
            .writer
            .try_clone()
            .map_err(|e| TransferError::io(what(), e))?;
        let writer = stream
            .try_clone()
            .map_err(|e| TransferError::io(what(), e))?;
        let floor = self.reader.get_ref().floor.clone();
        Ok(Conn {
            reader: BufReader::with_capacity(
                64 * 1024,
                Floored {
                    inner: stream,
                    floor,
                    early: io::Cursor::default(),
                },
            ),
            writer,
            queued: Vec::new(),
            peer: self.peer,
            timeout: self.timeout,
        })
    }

    /// After a refusal: ends our side, then reads and drops what the peer
    /// still sends for a moment (at most 200 ms and 4 MiB), so that
    /// closing with its data unread does not reset the connection and
    /// lose the refusal on the way.
    pub(crate) fn drain_and_close(&mut self) {
        let _ = self.writer.shutdown(std::net::Shutdown::Write);
        let _ = self
            .writer
            .set_read_timeout(Some(Duration::from_millis(200)));
        let deadline = std::time::Instant::now() + Duration::from_millis(200);
        let mut buf = vec![0; 64 * 1024];
        let mut drained = 0;
        while drained < 4 << 20 && std::time::Instant::now() < deadline {
            match self.reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
        let _ = self.writer.set_read_timeout(Some(self.timeout));
    }

    /// Bytes the front door read ahead (the sender's offer), read first.
    pub(crate) fn read_first(&mut self, early: Vec<u8>) {
        self.reader.get_mut().early = io::Cursor::new(early);
    }

    /// Ends the connection both ways (a reading thread's read returns).
    pub(crate) fn shutdown(&self) {
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
    }

    /// Queues a control message to leave with the next write or flush.
    pub(crate) fn queue(&mut self, message: &Message) {
        self.queued.extend_from_slice(&wire::encode(message));
        if self.queued.len() >= 256 * 1024 {
            // Best effort here; a failure shows at the next write.
            let _ = self.flush();
        }
    }

    /// Queues raw bytes (a chunk) to leave with the next write or flush.
    pub(crate) fn queue_bytes(&mut self, bytes: &[u8]) {
        self.queued.extend_from_slice(bytes);
    }

    /// Sends whatever is queued.
    pub(crate) fn flush(&mut self) -> Result<(), TransferError> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let queued = std::mem::take(&mut self.queued);
        let sent = self.writer.write_all(&queued);
        self.queued = queued;
        self.queued.clear();
        sent.map_err(|e| self.io_error("sending messages", e))
    }

    /// The peer's time limit.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends our hello, reads the peer's and checks it.
    pub(crate) fn hello(&mut self) -> Result<(), TransferError> {
        self.write_all(&wire::hello(), "sending the hello")?;
        let mut theirs = [0; HELLO_LEN];
        let peer = self.peer;
        let greeting = || format!("greeting {peer}");
        match self.read_exact(&mut theirs, "reading the peer's hello") {
            Err(TransferError::CutShort { .. }) => {
                return Err(TransferError::Wire {
                    what: greeting(),
                    source: wire::WireError::NoHello,
                });
            }
            other => other?,
        }
        wire::check_hello(&theirs).map_err(|source| TransferError::Wire {
            what: greeting(),
            source,
        })
    }

    /// Sends a control message.
    pub(crate) fn send(&mut self, message: &Message) -> Result<(), TransferError> {
        let frame = wire::encode(message);
        self.write_all(&frame, "sending a message")
    }

    /// Reads the next control message.
    pub(crate) fn recv(&mut self) -> Result<Message, TransferError> {
        let mut header = [0; 4];
        self.read_exact(&mut header, "reading a message")?;
        let len = wire::frame_len(header).map_err(|e| self.wire(e))?;
        let mut body = vec![0; len];
        self.read_exact(&mut body, "reading a message")?;
        wire::decode(&body).map_err(|e| self.wire(e))
    }

    /// Reads the next message, which must be `expected`-like; a refusal
    /// becomes [`TransferError::Refused`] about `what`.
    pub(crate) fn reply(&mut self, what: &str) -> Result<Message, TransferError> {
        match self.recv()? {
            Message::Refuse { reason } => Err(TransferError::Refused {
                what: what.to_string(),
                reason: crate::shown::escaped(&reason, false).into_owned(),
            }),
            other => Ok(other),
        }
    }

    /// Reads a chunk's length (0: the file ended).
    pub(crate) fn chunk_len(&mut self) -> Result<usize, TransferError> {
        let mut header = [0; 4];
        self.read_exact(&mut header, "reading file data")?;
        wire::chunk_len(header).map_err(|e| self.wire(e))
    }

    pub(crate) fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), TransferError> {
        if self.reader.buffer().len() < buf.len() {
            self.flush()?;
        }
        self.reader
            .read_exact(buf)
            .map_err(|e| self.io_error(what, e))
    }

    pub(crate) fn write_all(&mut self, buf: &[u8], what: &str) -> Result<(), TransferError> {
        self.flush()?;
        self.writer
            .write_all(buf)
            .map_err(|e| self.io_error(what, e))
    }

    /// Sends `buf` with more to follow at once (MSG_MORE), so a chunk's
    /// header and its data leave in the same segments.
    pub(crate) fn write_more(&mut self, mut buf: &[u8], what: &str) -> Result<(), TransferError> {
        self.flush()?;
        while !buf.is_empty() {
            let sent = retry(|| rustix::net::send(&self.writer, buf, rustix::net::SendFlags::MORE));
            match sent {
                Ok(n) => buf = &buf[n..],
                Err(e) => return Err(self.io_error(what, e.into())),
            }
        }
        Ok(())
    }

    /// Sends `len` bytes of `file` from `offset` without copying them
    /// through this process (sendfile), or by reading and writing where the
    /// file system cannot.
    pub(crate) fn send_file_range(
        &mut self,
        file: &File,
        mut offset: u64,
        mut len: usize,
        name: &str,
    ) -> Result<(), TransferError> {
        use rustix::io::Errno;
        self.flush()?;
        while len > 0 {
            match crate::sys::sendfile(self.writer.as_fd(), file.as_fd(), Some(&mut offset), len) {
                Ok(0) => {
                    return Err(TransferError::Source(format!(
                        "{name} shrank while being sent"
                    )));
                }
                Ok(n) => len -= n,
                Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                    return self.copy_range(file, offset, len, name);
                }
                Err(e) => return Err(self.io_error("sending file data", e.into())),
            }
        }
        Ok(())
    }

    fn copy_range(
        &mut self,
        file: &File,
        offset: u64,
        len: usize,
        name: &str,
    ) -> Result<(), TransferError> {
        let mut buf = vec![0; len];
        std::os::unix::fs::FileExt::read_exact_at(file, &mut buf, offset)
            .map_err(|e| TransferError::io(format!("reading {name}"), e))?;
        self.write_all(&buf, "sending file data")
    }

    /// The error for a message that does not belong here.
    pub(crate) fn unexpected(&self, expected: &'static str, got: &Message) -> TransferError {
        self.wire(WireError::Unexpected {
            expected,
            got: got.name(),
        })
    }

    pub(crate) fn wire(&self, source: WireError) -> TransferError {
        TransferError::Wire {
            what: format!("talking to {}", self.peer),
            source,
        }
    }

    fn io_error(&self, what: &str, cause: io::Error) -> TransferError {
        if crate::sys::timed_out(&cause) {
            return TransferError::Timeout {
                what: format!("{what} (peer {})", self.peer),
                after: self.timeout,
            };
        }
        TransferError::io(format!("{what} (peer {})", self.peer), cause)
    }
}
