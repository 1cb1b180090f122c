//! `perf` over a Unix stream socket, sonde to sonde: the kernel moving
//! bytes between two processes without its network stack, the baseline a
//! TCP figure on the same machine is compared with. iperf3 has no Unix
//! sockets, so this is sonde's own small protocol ([`hello`]): each data
//! connection says which way and for how long, the server waits until
//! every stream of the test has come, and a stream the client sent on
//! ends with the server's tally. The text and JSON are perf's, from the
//! same [`StreamInterval`]s and [`StreamEnd`]s.

mod client;
pub mod hello;
mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use client::run;
pub use server::{ServerEvent, UnixServerConfig, serve};

use super::{StreamEnd, StreamInterval};
use crate::error::{Error, Result};
use crate::net::unix::UnixPath;

/// The largest block a stream writes at once.
pub const MAX_LEN: usize = 16 << 20;
/// The most streams one test may have (each way).
pub const MAX_STREAMS: u32 = 128;
/// How long a hello, a tally or the rest of a test's streams may take.
const LINE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stream may move nothing before it is given up.
const QUIET: Duration = Duration::from_secs(10);

/// How long a test lasts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Length {
    /// Each stream sends for this long.
    Time(Duration),
    /// The streams of each direction send this many bytes between them.
    Bytes(u64),
}

/// One test over a Unix socket.
#[derive(Clone, Debug)]
pub struct UnixTest {
    /// Streams each way.
    pub streams: u32,
    /// The server sends.
    pub reverse: bool,
    /// Both ways at once (`streams` each).
    pub bidir: bool,
    /// How long.
    pub length: Length,
    /// Bytes per write.
    pub len: usize,
    /// Report every this long.
    pub interval: Duration,
}

/// What a test measured: each interval's streams, and each stream's end.
#[derive(Clone, Debug, Default)]
pub struct UnixReport {
    /// Every interval, in order.
    pub intervals: Vec<Vec<StreamInterval>>,
    /// Each stream: what its sender sent and its receiver got.
    pub ends: Vec<StreamEnd>,
    /// From the first byte to the last stream's end.
    pub seconds: f64,
}

/// A perf server on a Unix socket of this process's, for `sonde perf -U`
/// with no path; stops when dropped.
#[derive(Debug)]
pub struct Embedded {
    /// Where it listens: an abstract name, so no file is left behind.
    pub path: UnixPath,
    stop: Arc<AtomicBool>,
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts the embedded server.
///
/// # Errors
/// When the socket cannot be bound or the thread cannot start.
pub fn start_embedded() -> Result<Embedded> {
    let path = UnixPath::own("sonde-perf");
    let listener = crate::net::unix::bind(&path)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let config = UnixServerConfig {
        max_connections: 2 * MAX_STREAMS as usize,
        one_off: false,
        max_duration: None,
        counters: Arc::default(),
    };
    std::thread::Builder::new()
        .name("sonde-perf-unix".into())
        .spawn(move || serve(listener, config, |_| {}, &flag))
        .map_err(|e| Error::io("starting the embedded perf server", e))?;
    Ok(Embedded { path, stop })
}

/// A test's id: random hex, so the server can tell tests apart.
fn random_id() -> String {
    let mut bytes = [0u8; 8];
    let _ = rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty());
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Gives a stream room to move large writes at once: the default send
/// buffer (about 200 KiB) cuts a 1 MiB write into several wake-ups of the
/// reader. Best effort: a refusal leaves the default.
fn widen(sock: &std::os::unix::net::UnixStream) {
    let sref = socket2::SockRef::from(sock);
    let _ = sref.set_send_buffer_size(BUFFER);
    let _ = sref.set_recv_buffer_size(BUFFER);
}

/// The socket buffers [`widen`] asks for.
const BUFFER: usize = 4 << 20;

/// Reads one line (at most [`hello::MAX_LINE`] bytes) a byte at a time,
/// so nothing after it is taken from the stream; the socket's read
/// timeout bounds each wait. `None` at a clean end of input first.
fn read_line(sock: &mut impl std::io::Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match crate::sys::retry_io(|| sock.read(&mut byte))? {
            0 if line.is_empty() => return Ok(None),
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            _ if byte[0] == b'\n' => return Ok(Some(line)),
            _ if line.len() >= hello::MAX_LINE => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "a line longer than this protocol's",
                ));
            }
            _ => line.push(byte[0]),
        }
    }
}
