//! TLS for the stream modes (rustls with the ring provider): what each end
//! trusts and shows ([`config`]), a failed handshake said in one line
//! (`seen`), and a bridge that runs a TLS session on a thread of its own
//! between the TCP connection and a local socket pair, so that a mode
//! written for a plain byte stream (the netcat relay with its half-close
//! rules) carries TLS unchanged.

pub mod config;
mod seen;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, poll};

pub use config::{ClientOptions, ClientTls, ServerOptions, ServerTls, fingerprint};

/// How long a handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Decrypted bytes held for the local side, at most, before the bridge
/// stops reading the network (so a slow reader slows the peer).
const HELD: usize = 256 * 1024;

/// A TLS failure, said as what was being done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate, key or CA file could not be used.
    #[error("{what} {}: {}", path.display(), crate::sys::describe(cause))]
    File {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        cause: io::Error,
    },
    /// A PEM file without what it should hold.
    #[error("{}: {what}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was missing.
        what: &'static str,
    },
    /// Options that do not go together, or a value that cannot be used.
    #[error("{0}")]
    Usage(String),
    /// rustls refused the configuration.
    #[error("TLS: {0}")]
    Rustls(rustls::Error),
    /// The handshake failed.
    #[error("TLS handshake with {peer}: {why}")]
    Handshake {
        /// The peer.
        peer: String,
        /// Why, in one line.
        why: String,
    },
    /// The session failed after the handshake.
    #[error("TLS with {peer}: {why}")]
    Session {
        /// The peer.
        peer: String,
        /// Why.
        why: String,
    },
}

impl TlsError {
    fn file(what: &'static str, path: &Path, err: impl std::fmt::Display) -> TlsError {
        TlsError::File {
            what,
            path: path.to_path_buf(),
            cause: io::Error::other(err.to_string()),
        }
    }
}

/// A TLS session running on its own thread; the local end of its socket
/// pair carries the plaintext.
pub struct Bridge {
    thread: Option<JoinHandle<()>>,
    failure: Arc<Mutex<Option<String>>>,
    /// Disconnected when the session's thread ends.
    ended: mpsc::Receiver<()>,
    /// The connection, to cut when the bridge is abandoned.
    cut: Option<TcpStream>,
    peer: String,
    /// The ALPN protocol agreed, if any.
    pub alpn: Option<Vec<u8>>,
}

impl Bridge {
    /// Waits for the session to end; an error if it failed (a bad record,
    /// a reset), which a plain reader of the local end would take for an
    /// ordinary end.
    ///
    /// # Errors
    /// [`TlsError::Session`] with what went wrong.
    pub fn finish(self) -> Result<(), TlsError> {
        self.finish_within(Duration::MAX)
    }

    /// As [`finish`](Self::finish), but a peer that has not ended its side
    /// within `limit` of ours is cut off (a session then fails).
    ///
    /// # Errors
    /// [`TlsError::Session`] with what went wrong.
    pub fn finish_within(mut self, limit: Duration) -> Result<(), TlsError> {
        let mut failure = None;
        if let Err(mpsc::RecvTimeoutError::Timeout) = self.ended.recv_timeout(limit) {
            self.cut_off();
            failure = Some(format!(
                "the peer did not end the session within {:.1} s of us",
                limit.as_secs_f64()
            ));
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            failure = Some("the session's thread stopped".to_string());
        }
        let failure = self
            .failure
            .lock()
            .ok()
            .and_then(|mut f| f.take())
            .or(failure);
        match failure {
            Some(why) => Err(TlsError::Session {
                peer: self.peer.clone(),
                why,
            }),
            None => Ok(()),
        }
    }

    fn cut_off(&mut self) {
        if let Some(tcp) = self.cut.take() {
            let _ = tcp.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Bridge {
    /// A bridge dropped unfinished is abandoned: its connection is cut so
    /// that its thread ends rather than wait on a peer nobody reads.
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.cut_off();
        }
    }
}

/// Runs the client's handshake with `tcp` (to `peer`, for its messages),
/// then bridges it; returns the plaintext end.
///
/// # Errors
/// [`TlsError::Handshake`] saying why (an untrusted issuer with the
/// fingerprint seen, a name mismatch with the names, dates, a pin
/// mismatch, a peer that does not speak TLS).
pub fn connect(
    tcp: TcpStream,
    tls: &ClientTls,
    peer: &str,
) -> Result<(UnixStream, Bridge), TlsError> {
    let conn = rustls::ClientConnection::new(Arc::clone(&tls.config), tls.name.clone())
        .map_err(TlsError::Rustls)?;
    start(tcp, rustls::Connection::Client(conn), peer)
}

/// Runs the server's handshake with an accepted `tcp`, then bridges it.
///
/// # Errors
/// [`TlsError::Handshake`] saying why.
pub fn accept(
    tcp: TcpStream,
    tls: &ServerTls,
    peer: &str,
) -> Result<(UnixStream, Bridge), TlsError> {
    let conn = rustls::ServerConnection::new(Arc::clone(&tls.config)).map_err(TlsError::Rustls)?;
    start(tcp, rustls::Connection::Server(conn), peer)
}

/// Runs the client's handshake with `tcp` and returns the session as a
/// blocking stream on this thread, for a mode that reads and writes in
/// turn (`rtt`): no bridge thread between it and the socket. The socket's
/// timeouts are what they were before the handshake.
///
/// # Errors
/// [`TlsError::Handshake`] saying why, as [`connect`].
pub fn connect_stream(
    mut tcp: TcpStream,
    tls: &ClientTls,
    peer: &str,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, TlsError> {
    let mut conn = rustls::ClientConnection::new(Arc::clone(&tls.config), tls.name.clone())
        .map_err(TlsError::Rustls)?;
    let timeouts = (tcp.read_timeout(), tcp.write_timeout());
    handshake(&mut tcp, &mut conn, peer)?;
    if let (Ok(read), Ok(write)) = timeouts {
        let _ = tcp.set_read_timeout(read);
        let _ = tcp.set_write_timeout(write);
    }
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// Runs the client's handshake on `tcp` and returns the session, for a
/// thread that then moves data through it itself (perf's data streams).
///
/// # Errors
/// [`TlsError::Handshake`] saying why, as [`connect`].
pub(crate) fn client_session(
    tcp: &mut TcpStream,
    tls: &ClientTls,
    peer: &str,
) -> Result<rustls::Connection, TlsError> {
    let mut conn = rustls::ClientConnection::new(Arc::clone(&tls.config), tls.name.clone())
        .map_err(TlsError::Rustls)?;
    handshake(tcp, &mut conn, peer)?;
    Ok(rustls::Connection::Client(conn))
}

/// Runs the server's handshake on `tcp` and returns the session.
///
/// # Errors
/// [`TlsError::Handshake`] saying why.
pub(crate) fn server_session(
    tcp: &mut TcpStream,
    tls: &ServerTls,
    peer: &str,
) -> Result<rustls::Connection, TlsError> {
    let mut conn =
        rustls::ServerConnection::new(Arc::clone(&tls.config)).map_err(TlsError::Rustls)?;
    handshake(tcp, &mut conn, peer)?;
    Ok(rustls::Connection::Server(conn))
}

/// Completes a handshake within [`HANDSHAKE_TIMEOUT`]; the socket is left
/// without timeouts.
fn handshake<C, D>(tcp: &mut TcpStream, conn: &mut C, peer: &str) -> Result<(), TlsError>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<D>>,
    D: rustls::SideData,
{
    // One deadline for the whole handshake, checked at every read:
    // rustls reads on until the handshake is done, so a peer that sends
    // a byte within each read's timeout must not hold it open for ever.
    let mut due = Due {
        tcp,
        deadline: std::time::Instant::now() + HANDSHAKE_TIMEOUT,
    };
    while conn.is_handshaking() {
        if let Err(err) = conn.complete_io(&mut due) {
            return Err(TlsError::Handshake {
                peer: peer.to_string(),
                why: describe_io(&err),
            });
        }
    }
    let _ = due.tcp.set_read_timeout(None);
    let _ = due.tcp.set_write_timeout(None);
    Ok(())
}

/// A socket whose every read and write must finish by `deadline`.
struct Due<'a> {
    tcp: &'a mut TcpStream,
    deadline: std::time::Instant,
}

impl Due<'_> {
    /// The time left, or a timeout once there is none.
    fn left(&self) -> io::Result<Duration> {
        let left = self
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        Ok(left)
    }
}

impl io::Read for Due<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.set_read_timeout(Some(self.left()?))?;
        self.tcp.read(buf)
    }
}

impl io::Write for Due<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.set_write_timeout(Some(self.left()?))?;
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

fn start(
    mut tcp: TcpStream,
    mut conn: rustls::Connection,
    peer: &str,
) -> Result<(UnixStream, Bridge), TlsError> {
    let handshake = |why: String| TlsError::Handshake {
        peer: peer.to_string(),
        why,
    };
    match &mut conn {
        rustls::Connection::Client(c) => self::handshake(&mut tcp, c, peer)?,
        rustls::Connection::Server(c) => self::handshake(&mut tcp, c, peer)?,
    }
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let (local, theirs) =
        UnixStream::pair().map_err(|e| handshake(format!("making a socket pair: {e}")))?;
    let failure = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&failure);
    let cut = tcp.try_clone().ok();
    let (done, ended) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("tls".into())
        .spawn(move || {
            let _done = done;
            if let Err(err) = pump(conn, &tcp, &theirs) {
                if let Ok(mut slot) = slot.lock() {
                    *slot = Some(describe_io(&err));
                }
                let _ = tcp.shutdown(Shutdown::Both);
            }
        })
        .map_err(|e| handshake(format!("starting its thread: {e}")))?;
    Ok((
        local,
        Bridge {
            thread: Some(thread),
            failure,
            ended,
            cut,
            peer: peer.to_string(),
            alpn,
        },
    ))
}

/// An I/O error from rustls, its TLS cause said plainly.
fn describe_io(err: &io::Error) -> String {
    if let Some(tls) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        return seen::describe(tls);
    }
    match err.kind() {
        io::ErrorKind::UnexpectedEof => {
            "the peer closed the connection during the handshake (does it speak TLS?)".into()
        }
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!(
                "no answer in {:.0} s (does the peer speak TLS?)",
                HANDSHAKE_TIMEOUT.as_secs_f64()
            )
        }
        _ => crate::sys::describe(err),
    }
}

/// Where the bridge stands.
#[derive(Default)]
struct Ends {
    /// The peer's stream has ended (close_notify, or the connection).
    peer_done: bool,
    /// The local side has ended its output.
    local_done: bool,
    /// The local side was told the peer ended.
    told_local: bool,
    /// The network was told we ended (close_notify sent, write half shut).
    told_peer: bool,
}

/// Moves bytes both ways until both have ended.
fn pump(mut conn: rustls::Connection, tcp: &TcpStream, local: &UnixStream) -> io::Result<()> {
    tcp.set_nonblocking(true)?;
    local.set_nonblocking(true)?;
    let mut held: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut ends = Ends::default();
    // The peer's first data may have come with the end of its handshake,
    // already read from the socket (and perhaps not yet processed): no
    // poll would ever report it.
    conn.process_new_packets().map_err(io::Error::other)?;
    take_plaintext(&mut conn, &mut held, &mut buf, &mut ends)?;
    loop {
        while conn.wants_write() {
            match conn.write_tls(&mut &*tcp) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if ends.local_done && !conn.wants_write() && !ends.told_peer {
            let _ = tcp.shutdown(Shutdown::Write);
            ends.told_peer = true;
        }
        deliver(&mut held, local)?;
        if ends.peer_done && held.is_empty() && !ends.told_local {
            let _ = local.shutdown(Shutdown::Write);
            ends.told_local = true;
        }
        if ends.told_local && ends.told_peer {
            return Ok(());
        }
        let read_net = !ends.peer_done && held.len() < HELD;
        let read_local = !ends.local_done && !conn.wants_write();
        let mut net = PollFlags::empty();
        if read_net {
            net |= PollFlags::IN;
        }
        if conn.wants_write() {
            net |= PollFlags::OUT;
        }
        let mut near = PollFlags::empty();
        if read_local {
            near |= PollFlags::IN;
        }
        if !held.is_empty() {
            near |= PollFlags::OUT;
        }
        let mut fds = [PollFd::new(tcp, net), PollFd::new(local, near)];
        poll(&mut fds, None).map_err(io::Error::from)?;
        let (net_ready, local_ready) = (fds[0].revents(), fds[1].revents());
        if read_net && !net_ready.is_empty() {
            from_net(&mut conn, tcp, &mut held, &mut buf, &mut ends)?;
        }
        if read_local && !local_ready.is_empty() {
            from_local(&mut conn, local, &mut buf, &mut ends)?;
        }
    }
}

/// Hands held plaintext to the local side, as much as it takes now.
fn deliver(held: &mut Vec<u8>, local: &UnixStream) -> io::Result<()> {
    while !held.is_empty() {
        match (&*local).write(held) {
            Ok(n) => {
                held.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            // The local side stopped reading: what the peer sends goes
            // nowhere, as it would on a plain socket closed for reading.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => held.clear(),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn from_net(
    conn: &mut rustls::Connection,
    tcp: &TcpStream,
    held: &mut Vec<u8>,
    buf: &mut [u8],
    ends: &mut Ends,
) -> io::Result<()> {
    // rustls takes at most a record or so a read: read on while the
    // socket has more, rather than wait in poll for each record.
    while !ends.peer_done && held.len() < HELD {
        match conn.read_tls(&mut &*tcp) {
            Ok(0) => ends.peer_done = true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
        conn.process_new_packets().map_err(io::Error::other)?;
        take_plaintext(conn, held, buf, ends)?;
    }
    Ok(())
}

/// Takes what rustls has decrypted into `held`.
fn take_plaintext(
    conn: &mut rustls::Connection,
    held: &mut Vec<u8>,
    buf: &mut [u8],
    ends: &mut Ends,
) -> io::Result<()> {
    loop {
        match conn.reader().read(buf) {
            Ok(0) => {
                ends.peer_done = true;
                return Ok(());
            }
            Ok(n) => held.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            // The connection ended without a close_notify: an end all the
            // same (most peers close so), the bytes before it are whole.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                ends.peer_done = true;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}

fn from_local(
    conn: &mut rustls::Connection,
    local: &UnixStream,
    buf: &mut [u8],
    ends: &mut Ends,
) -> io::Result<()> {
    match (&*local).read(buf) {
        Ok(0) => {
            ends.local_done = true;
            conn.send_close_notify();
        }
        Ok(n) => conn.writer().write_all(&buf[..n])?,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(())
}
