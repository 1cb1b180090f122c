//! Moving bytes from one descriptor to another until end of input, as
//! cheaply as the kernel allows: `sendfile` from a file to a socket, `splice`
//! when either end is a pipe or through an intermediate pipe otherwise, and
//! plain reads and writes for terminals or when the bytes must be seen
//! (`--crlf`, `--hex`). Any fast path that the kernel refuses falls back to
//! plain copying without losing a byte.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::fs::FileType;
use rustix::io::Errno;
use rustix::pipe::SpliceFlags;

use super::transform::{Crlf, Direction, HexDump};
use crate::sys::retry;

/// Bytes moved by one `splice` or `sendfile` call at most; also the size
/// asked of an intermediate pipe (the unprivileged maximum is 1 MiB).
const CHUNK: usize = 1 << 20;
/// Buffer for plain copying.
const PLAIN_BUF: usize = 128 * 1024;

/// What kind of descriptor an end of a pump is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdKind {
    /// A regular file.
    RegularFile,
    /// A pipe or FIFO.
    Pipe,
    /// A socket.
    Socket,
    /// A terminal: copied plainly, line by line as typed.
    Terminal,
    /// Anything else (character devices such as /dev/null).
    Other,
}

/// Classifies a descriptor.
pub fn fd_kind(fd: BorrowedFd<'_>) -> FdKind {
    if rustix::termios::isatty(fd) {
        return FdKind::Terminal;
    }
    match rustix::fs::fstat(fd) {
        Ok(stat) => match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => FdKind::RegularFile,
            FileType::Fifo => FdKind::Pipe,
            FileType::Socket => FdKind::Socket,
            _ => FdKind::Other,
        },
        Err(_) => FdKind::Other,
    }
}

/// When bytes last moved in either direction, shared between the threads
/// of a connection so an idle timeout can see both.
#[derive(Clone, Debug)]
pub struct Activity {
    base: Instant,
    last_nanos: Arc<AtomicU64>,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    /// Starts the clock now.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            last_nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records that bytes moved now.
    pub fn touch(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_nanos.store(nanos, Ordering::Relaxed);
    }

    /// The instant bytes last moved (the start, if none have).
    pub fn last(&self) -> Instant {
        self.base + Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed))
    }
}

/// Which end of a pump failed.
#[derive(Debug)]
pub enum PumpError {
    /// Reading the source failed.
    Read(io::Error),
    /// Writing the destination failed.
    Write(io::Error),
}

impl PumpError {
    /// The I/O error, whichever end it came from.
    pub fn into_io(self) -> io::Error {
        match self {
            Self::Read(e) | Self::Write(e) => e,
        }
    }
}

/// Where hex dumps go (stderr, in the binary).
pub type HexSink = Arc<Mutex<dyn Write + Send>>;

/// What to do with the bytes on their way: each forces plain copying.
#[derive(Default)]
pub struct Filters {
    /// Expand line feeds to CRLF.
    pub crlf: Option<Crlf>,
    /// Dump the bytes (after any CRLF expansion) to a sink.
    pub hex: Option<(HexDump, HexSink)>,
    /// Copy the bytes as they are to a session dump (ncat's `-o`).
    pub session: Option<HexSink>,
    /// Refuse a telnet server's negotiation (received bytes only; the
    /// answers go back on the socket they came from).
    pub telnet: Option<super::transform::Telnet>,
}

impl Filters {
    /// The filters for one direction: CRLF expansion only on what is
    /// sent, a hex dump of both ways when there is a sink.
    pub fn for_direction(direction: Direction, crlf: bool, hex: Option<&HexSink>) -> Self {
        Self {
            crlf: (crlf && direction == Direction::Sent).then(Crlf::default),
            hex: hex.map(|sink| (HexDump::new(direction), Arc::clone(sink))),
            session: None,
            telnet: None,
        }
    }

    /// These filters, refusing telnet negotiation when `on`.
    pub fn with_telnet(mut self, on: bool) -> Self {
        self.telnet = on.then(super::transform::Telnet::default);
        self
    }

    /// These filters, copying both directions to `session` as well.
    pub fn with_session(mut self, session: Option<&HexSink>) -> Self {
        self.session = session.map(Arc::clone);
        self
    }

    fn active(&self) -> bool {
        self.crlf.is_some() || self.hex.is_some() || self.session.is_some() || self.telnet.is_some()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Strategy {
    Plain,
    Sendfile,
    SpliceDirect,
    SpliceViaPipe,
}

fn choose(src: FdKind, dst: FdKind, filtered: bool) -> Strategy {
    use FdKind::*;
    match (src, dst) {
        _ if filtered => Strategy::Plain,
        (Terminal, _) | (_, Terminal) => Strategy::Plain,
        (RegularFile, Socket) => Strategy::Sendfile,
        (Pipe, _) | (_, Pipe) => Strategy::SpliceDirect,
        _ => Strategy::SpliceViaPipe,
    }
}

/// Copies everything from `src` to `dst` until `src` ends, and returns the
/// number of bytes read from `src`.
///
/// # Errors
/// [`PumpError::Read`] or [`PumpError::Write`] with the I/O error.
pub fn pump(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    filters: &mut Filters,
    activity: &Activity,
) -> Result<u64, PumpError> {
    let strategy = choose(fd_kind(src), fd_kind(dst), filters.active());
    let mut moved = 0;
    let fast = match strategy {
        Strategy::Plain => Ok(false),
        Strategy::Sendfile => sendfile_all(src, dst, activity, &mut moved),
        Strategy::SpliceDirect => splice_direct(src, dst, activity, &mut moved),
        Strategy::SpliceViaPipe => splice_via_pipe(src, dst, activity, &mut moved),
    }?;
    if !fast {
        moved += plain_copy(src, dst, filters, activity)?;
    }
    Ok(moved)
}

/// Whether an error means "this kind of descriptor does not do that".
fn unsupported(err: Errno) -> bool {
    matches!(
        err,
        Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP | Errno::BADF
    )
}

/// Runs a syscall, retrying when a signal interrupts it.
/// Returns `Ok(true)` when it moved everything, `Ok(false)` when the kernel
/// refused before any byte moved (the caller copies plainly instead).
fn sendfile_all(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    activity: &Activity,
    moved: &mut u64,
) -> Result<bool, PumpError> {
    loop {
        match crate::sys::sendfile(dst, src, None, CHUNK) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                *moved += n as u64;
                activity.touch();
            }
            Err(e) if *moved == 0 && unsupported(e) => return Ok(false),
            // sendfile does not say which end failed: a file that reads
            // fine once almost never fails later, so blame the socket.
            Err(e) => return Err(PumpError::Write(e.into())),
        }
    }
}

fn splice_once(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, len: usize) -> Result<usize, Errno> {
    // Never SPLICE_F_MORE: from a socket into a pipe it kept a server's
    // greeting from `connect ... | grep` until the connection ended.
    let flags = SpliceFlags::MOVE;
    retry(|| rustix::pipe::splice(src, None, dst, None, len, flags))
}

/// How much to splice from `src` now. A splice out of a socket waits in
/// the kernel until it has `len` bytes or the end, and what it moved into
/// a pipe is seen only when it returns (on this machine a server's 8-byte
/// greeting reached `connect | grep` when the connection ended): so wait
/// for data, then ask for what is queued.
fn ready_len(src: BorrowedFd<'_>, socket: bool, len: usize) -> usize {
    if !socket {
        return len;
    }
    let mut fds = [rustix::event::PollFd::new(
        &src,
        rustix::event::PollFlags::IN,
    )];
    let _ = retry(|| rustix::event::poll(&mut fds, None));
    match rustix::io::ioctl_fionread(src) {
        Ok(queued) if queued > 0 => usize::try_from(queued).map_or(len, |q| q.min(len)),
        // The end, or an error: the splice says which.
        _ => len,
    }
}

fn splice_direct(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    activity: &Activity,
    moved: &mut u64,
) -> Result<bool, PumpError> {
    let kind = fd_kind(src);
    let (src_is_pipe, src_is_socket) = (kind == FdKind::Pipe, kind == FdKind::Socket);
    loop {
        let len = ready_len(src, src_is_socket, CHUNK);
        match splice_once(src, dst, len) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                *moved += n as u64;
                activity.touch();
            }
            Err(e) if *moved == 0 && unsupported(e) => return Ok(false),
            // A failing pipe is never the cause; blame the other end.
            Err(e) if src_is_pipe || e == Errno::PIPE => return Err(PumpError::Write(e.into())),
            Err(e) => return Err(PumpError::Read(e.into())),
        }
    }
}

fn splice_via_pipe(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    activity: &Activity,
    moved: &mut u64,
) -> Result<bool, PumpError> {
    let Ok((pipe_r, pipe_w)) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) else {
        return Ok(false);
    };
    let capacity = rustix::pipe::fcntl_setpipe_size(&pipe_w, CHUNK).unwrap_or(64 * 1024);
    let src_is_socket = fd_kind(src) == FdKind::Socket;
    loop {
        let len = ready_len(src, src_is_socket, capacity);
        let mut pending = match splice_once(src, pipe_w.as_fd(), len) {
            Ok(0) => return Ok(true),
            Ok(n) => n,
            Err(e) if *moved == 0 && unsupported(e) => return Ok(false),
            Err(e) => return Err(PumpError::Read(e.into())),
        };
        *moved += pending as u64;
        activity.touch();
        while pending > 0 {
            match splice_once(pipe_r.as_fd(), dst, pending) {
                Ok(0) => return Err(PumpError::Write(io::ErrorKind::WriteZero.into())),
                Ok(n) => pending -= n,
                Err(e) if unsupported(e) => {
                    drain_pipe(&pipe_r, dst, pending)?;
                    return Ok(false);
                }
                Err(e) => return Err(PumpError::Write(e.into())),
            }
        }
    }
}

/// Writes out what is left in the intermediate pipe when the destination
/// turns out not to take `splice`, so no byte is lost on the fallback.
fn drain_pipe(pipe_r: &OwnedFd, dst: BorrowedFd<'_>, mut pending: usize) -> Result<(), PumpError> {
    let mut buf = vec![0u8; pending.min(PLAIN_BUF)];
    while pending > 0 {
        let want = pending.min(buf.len());
        let n = retry(|| rustix::io::read(pipe_r, &mut buf[..want]))
            .map_err(|e| PumpError::Read(e.into()))?;
        if n == 0 {
            break;
        }
        write_all(dst, &buf[..n])?;
        pending -= n;
    }
    Ok(())
}

fn write_all(dst: BorrowedFd<'_>, mut data: &[u8]) -> Result<(), PumpError> {
    while !data.is_empty() {
        match retry(|| rustix::io::write(dst, data)) {
            Ok(0) => return Err(PumpError::Write(io::ErrorKind::WriteZero.into())),
            Ok(n) => data = &data[n..],
            Err(e) => return Err(PumpError::Write(e.into())),
        }
    }
    Ok(())
}

/// Plain read/write copying, applying the filters on the way.
fn plain_copy(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    filters: &mut Filters,
    activity: &Activity,
) -> Result<u64, PumpError> {
    let mut buf = vec![0u8; PLAIN_BUF];
    let mut moved = 0u64;
    loop {
        let n = match retry(|| rustix::io::read(src, &mut buf)) {
            Ok(0) => return Ok(moved),
            Ok(n) => n,
            Err(e) => return Err(PumpError::Read(e.into())),
        };
        moved += n as u64;
        activity.touch();
        match filters.telnet.as_mut() {
            Some(telnet) => {
                let (mut data, mut reply) = (Vec::new(), Vec::new());
                telnet.feed(&buf[..n], &mut data, &mut reply);
                if !reply.is_empty() {
                    // The answers go back to the peer that asked.
                    write_all(src, &reply).map_err(|e| PumpError::Read(e.into_io()))?;
                }
                filters.write(dst, &data)?;
            }
            None => filters.write(dst, &buf[..n])?,
        }
    }
}

impl Filters {
    /// Writes all of `data` to `dst`, expanded and dumped as the filters say.
    ///
    /// # Errors
    /// [`PumpError::Write`] when the destination fails.
    pub fn write(&mut self, dst: BorrowedFd<'_>, data: &[u8]) -> Result<(), PumpError> {
        let out = self.apply(data);
        write_all(dst, &out)
    }

    /// `data` as it goes out: expanded to CRLF if asked, and dumped.
    pub fn apply<'a>(&mut self, data: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        let out = match self.crlf.as_mut() {
            Some(crlf) => {
                let mut expanded = Vec::new();
                crlf.convert(data, &mut expanded);
                std::borrow::Cow::Owned(expanded)
            }
            None => std::borrow::Cow::Borrowed(data),
        };
        self.dump(&out);
        out
    }

    /// Sends `data` to the hex dump and the session dump, if set.
    pub fn dump(&mut self, data: &[u8]) {
        if let Some(sink) = &self.session
            && let Ok(mut sink) = sink.lock()
        {
            let _ = sink.write_all(data);
        }
        if let Some((dump, sink)) = self.hex.as_mut() {
            let mut text = String::new();
            dump.dump(data, &mut text);
            if let Ok(mut sink) = sink.lock() {
                let _ = sink.write_all(text.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn strategy_follows_descriptor_kinds() {
        use FdKind::*;
        assert_eq!(choose(RegularFile, Socket, false), Strategy::Sendfile);
        assert_eq!(choose(Pipe, Socket, false), Strategy::SpliceDirect);
        assert_eq!(choose(Socket, Pipe, false), Strategy::SpliceDirect);
        assert_eq!(choose(Socket, RegularFile, false), Strategy::SpliceViaPipe);
        assert_eq!(choose(Socket, Other, false), Strategy::SpliceViaPipe);
        assert_eq!(choose(Terminal, Socket, false), Strategy::Plain);
        assert_eq!(choose(RegularFile, Socket, true), Strategy::Plain);
    }

    fn temp_file(name: &str) -> std::fs::File {
        let path = std::env::temp_dir().join(format!("sonde-pump-{}-{name}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("create temp file");
        let _ = std::fs::remove_file(&path);
        file
    }

    /// File -> socket (sendfile) -> socket -> file (splice via pipe).
    #[test]
    fn file_to_socket_to_file_is_byte_exact() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut input = temp_file("in");
        input.write_all(&data).expect("write input");
        input.rewind().expect("rewind");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let sender = std::thread::spawn(move || {
            let sock = TcpStream::connect(addr).expect("connect");
            let sent = pump(
                input.as_fd(),
                sock.as_fd(),
                &mut Filters::default(),
                &Activity::new(),
            );
            sent.map_err(|e| format!("{e:?}"))
        });
        let (sock, _) = listener.accept().expect("accept");
        let mut output = temp_file("out");
        let got = pump(
            sock.as_fd(),
            output.as_fd(),
            &mut Filters::default(),
            &Activity::new(),
        );
        assert_eq!(got.map_err(|e| format!("{e:?}")), Ok(data.len() as u64));
        assert_eq!(sender.join().expect("sender thread"), Ok(data.len() as u64));
        output.rewind().expect("rewind");
        let mut back = Vec::new();
        output.read_to_end(&mut back).expect("read back");
        assert!(back == data, "bytes differ");
    }
}
