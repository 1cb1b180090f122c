//! `sonde perf`: throughput tests over iperf3's wire protocol. The client
//! and server drive the control connection; each data stream runs on its
//! own blocking thread ([`stream`]), which only counts, while the control
//! thread samples the counts every interval ([`measure`]).

pub mod budget;
pub mod client;
pub mod control;
pub mod diskfile;
pub mod embedded;
pub mod json;
pub mod measure;
pub mod pacer;
mod receive;
pub mod report;
pub(crate) mod running;
pub mod server;
pub mod session;
pub mod sockopt;
pub mod stream;
mod test_spec;
pub mod text;
pub mod tls_data;
pub mod unix;
mod worker;
mod zerocopy;

use std::time::{Duration, Instant};

pub use measure::{StreamEnd, StreamInterval};

/// sonde's TCP block size when `-l` is not given: 1 MiB, the most iperf3
/// accepts (iperf3's own default is 128 KiB). Each `write` costs a trip
/// through the socket lock and the stack; measured on loopback (client and
/// server CPU per GB, 3 interleaved runs): 128 KiB 0.83, 256 KiB 0.74,
/// 512 KiB 0.65, 1 MiB 0.57 CPU-s/GB, against iperf3's 0.79.
pub const TCP_LEN: usize = 1 << 20;

/// Receives the events of a test as they happen, for live output.
pub trait Observer: Send + Sync {
    /// The control connection is up (its MSS, where the kernel tells).
    fn control_connected(&self, _mss: Option<u32>) {}
    /// The data streams are connected.
    fn connected(&self, _streams: &[ConnectedStream]) {}
    /// The test is about to start: what `-J`'s `start` says is known.
    fn started(&self, _report: &client::ClientReport) {}
    /// An interval ended.
    fn interval(&self, _interval: &[StreamInterval]) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Quiet;

impl Observer for Quiet {}

/// A connected data stream, as iperf3 reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectedStream {
    /// Stream id.
    pub id: u32,
    /// Descriptor number.
    pub socket: i32,
    /// Local address.
    pub local: Option<std::net::SocketAddr>,
    /// Remote address.
    pub remote: Option<std::net::SocketAddr>,
    /// This side sends on it.
    pub sender: bool,
}

/// CPU use of this process over a span, in % of one core.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuUse {
    /// User and system.
    pub total: f64,
    /// User.
    pub user: f64,
    /// System.
    pub system: f64,
}

/// Measures this process's CPU time from a starting point.
#[derive(Clone, Copy, Debug)]
pub struct CpuClock {
    wall: Instant,
    user: Duration,
    system: Duration,
}

fn rusage() -> (Duration, Duration) {
    // SAFETY: getrusage fills the plain struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (Duration::ZERO, Duration::ZERO);
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

impl CpuClock {
    /// Starts measuring now.
    pub fn start() -> Self {
        let (user, system) = rusage();
        Self {
            wall: Instant::now(),
            user,
            system,
        }
    }

    /// CPU use since the start.
    pub fn read(&self) -> CpuUse {
        let (user, system) = rusage();
        let wall = self.wall.elapsed().as_secs_f64().max(1e-9);
        let pct = |d: Duration| d.as_secs_f64() / wall * 100.0;
        let user = pct(user.saturating_sub(self.user));
        let system = pct(system.saturating_sub(self.system));
        CpuUse {
            total: user + system,
            user,
            system,
        }
    }
}

/// Seconds since 1970: the time in iperf3's credentials.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
