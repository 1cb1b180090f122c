//! TLS data streams of sonde-to-sonde `perf --tls`: each stream's TLS
//! session is set up when it connects (client and server handshake the
//! streams in the same order, after every cookie is in) and then run by
//! the stream's own thread, writing and reading through rustls: the cost
//! of the crypto is in the figures, which is the point of measuring it.
//! No bridge, no extra copy; no sendfile, splice or zero-copy either
//! (the kernel sees only ciphertext).

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::worker::Counters;
use crate::tls::{self, ClientTls, ServerTls, TlsError};

/// A TCP data stream under TLS; its session waits here for the stream's
/// thread, which takes it.
pub struct TlsSocket {
    tcp: TcpStream,
    session: Arc<Mutex<Option<rustls::Connection>>>,
}

impl std::fmt::Debug for TlsSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSocket")
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

impl TlsSocket {
    /// The client's handshake on a connected data stream (its cookie sent).
    pub(crate) fn client(
        mut tcp: TcpStream,
        config: &ClientTls,
        peer: &str,
    ) -> Result<Self, TlsError> {
        let session = tls::client_session(&mut tcp, config, peer)?;
        Ok(Self::with(tcp, session))
    }

    /// The server's handshake on an arrived data stream (its cookie read).
    pub(crate) fn server(
        mut tcp: TcpStream,
        config: &ServerTls,
        peer: &str,
    ) -> Result<Self, TlsError> {
        let session = tls::server_session(&mut tcp, config, peer)?;
        Ok(Self::with(tcp, session))
    }

    fn with(tcp: TcpStream, session: rustls::Connection) -> Self {
        Self {
            tcp,
            session: Arc::new(Mutex::new(Some(session))),
        }
    }

    /// The TCP connection under the session (its options and state).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub(crate) fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            tcp: self.tcp.try_clone()?,
            session: Arc::clone(&self.session),
        })
    }

    /// Runs `work` on the session as a byte stream, on the one thread
    /// that takes it.
    pub(crate) fn run<R>(
        self,
        work: impl FnOnce(&mut dyn Duplex) -> io::Result<R>,
    ) -> io::Result<R> {
        let mut session = self.session.lock().ok().and_then(|mut s| s.take());
        // Many records a write, many a read: a syscall per 16 KiB record
        // costs more than the copy through a buffer.
        if let Some(conn) = session.as_mut() {
            conn.set_buffer_limit(Some(BUFFERED / 16));
        }
        let mut tcp = Buffered {
            reader: io::BufReader::with_capacity(BUFFERED, self.tcp.try_clone()?),
            writer: self.tcp,
        };
        match session {
            Some(rustls::Connection::Client(mut c)) => {
                work(&mut rustls::Stream::new(&mut c, &mut tcp))
            }
            Some(rustls::Connection::Server(mut c)) => {
                work(&mut rustls::Stream::new(&mut c, &mut tcp))
            }
            None => Err(io::Error::other("the stream's TLS session was taken twice")),
        }
    }
}

/// Bytes a stream's session holds to write, and reads from its socket at
/// a time.
const BUFFERED: usize = 1 << 20;

/// A connection read through a buffer and written directly.
struct Buffered {
    reader: io::BufReader<TcpStream>,
    writer: TcpStream,
}

impl Read for Buffered {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl Write for Buffered {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.writer.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads (buffered: the session holds what it decrypted) and writes: a
/// TLS session over its connection.
pub(crate) trait Duplex: BufRead + Write {}

impl<T: BufRead + Write> Duplex for T {}

/// Receives through the session until the end, a failure or `stop`.
pub(crate) fn recv(
    socket: TlsSocket,
    len: usize,
    c: &Counters,
    stop: &AtomicBool,
) -> io::Result<()> {
    socket.run(|stream| recv_from(stream, len, c, stop))
}

fn recv_from(
    stream: &mut dyn Duplex,
    len: usize,
    c: &Counters,
    stop: &AtomicBool,
) -> io::Result<()> {
    // The decrypted bytes are counted where rustls holds them (`fill_buf`),
    // not copied out: a perf receiver has no use for them.
    let _ = len;
    while !stop.load(Ordering::Relaxed) {
        match stream.fill_buf() {
            Ok([]) => return Ok(()),
            Ok(got) => {
                let n = got.len();
                stream.consume(n);
                c.bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The sender ends the test by closing, without close_notify.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
