//! Data streams of a perf test: socket set-up (options, cookie, the UDP
//! hello) and the blocking threads that move data, one per stream, which
//! only count; the control thread samples the counts.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::SockRef;

pub use super::worker::{Counters, monotonic, payload};

use super::budget::Budget;
use super::diskfile;
use super::receive::Receive;
use super::tls_data::{self, TlsSocket};
use super::worker::{Run, pace, paced_piece};
use crate::wire::iperf::datagram::UdpHeader;
use crate::wire::iperf::params::Params;

/// A data socket.
#[derive(Debug)]
pub enum DataSocket {
    /// A TCP stream.
    Tcp(TcpStream),
    /// A connected UDP socket.
    Udp(UdpSocket),
    /// A TCP stream under TLS (sonde-to-sonde `--tls`).
    Tls(TlsSocket),
}

impl DataSocket {
    /// The TCP connection, under TLS or not.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Self::Tcp(s) => Some(s),
            Self::Tls(s) => Some(s.tcp()),
            Self::Udp(_) => None,
        }
    }

    /// The descriptor number, shown as iperf3's `socket`.
    pub fn fd(&self) -> i32 {
        match self {
            Self::Tcp(s) => s.as_raw_fd(),
            Self::Udp(s) => s.as_raw_fd(),
            Self::Tls(s) => s.tcp().as_raw_fd(),
        }
    }

    /// Local and remote addresses.
    pub fn addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        match self {
            Self::Tcp(s) => (s.local_addr().ok(), s.peer_addr().ok()),
            Self::Udp(s) => (s.local_addr().ok(), s.peer_addr().ok()),
            Self::Tls(s) => (s.tcp().local_addr().ok(), s.tcp().peer_addr().ok()),
        }
    }

    fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            Self::Tcp(s) => Self::Tcp(s.try_clone()?),
            Self::Udp(s) => Self::Udp(s.try_clone()?),
            Self::Tls(s) => Self::Tls(s.try_clone()?),
        })
    }

    /// Unblocks and ends whatever thread uses the socket.
    pub fn close(&self) {
        match self {
            Self::Tcp(s) => {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            Self::Tls(s) => {
                let _ = s.tcp().shutdown(std::net::Shutdown::Both);
            }
            Self::Udp(s) => {
                // A UDP receiver polls its stop flag; nothing to unblock.
                let _ = s.set_read_timeout(Some(Duration::from_millis(1)));
            }
        }
    }
}

/// One data stream of a test.
#[derive(Debug)]
pub struct Stream {
    /// The iperf3 stream id.
    pub id: u32,
    /// This side sends on it.
    pub sender: bool,
    /// The socket.
    pub socket: DataSocket,
    /// What its thread counted.
    pub counters: Arc<Counters>,
}

/// Applies the per-stream socket options the parameters ask for.
pub fn apply_tcp_options(sock: &TcpStream, params: &Params) -> io::Result<()> {
    let sref = SockRef::from(sock);
    sock.set_nodelay(params.nodelay)?;
    if params.mss > 0 {
        sref.set_tcp_mss(params.mss)?;
    }
    if params.window > 0 {
        sref.set_send_buffer_size(params.window as usize)?;
        sref.set_recv_buffer_size(params.window as usize)?;
    }
    if let Some(cc) = &params.congestion {
        // As iperf3: an unknown algorithm is a warning, not a failure.
        let _ = sref.set_tcp_congestion(cc.as_bytes());
    }
    let ipv6 = sock.local_addr().is_ok_and(|a| a.is_ipv6());
    if params.tos > 0 {
        let _ = super::sockopt::set_tos(sref, params.tos, ipv6);
    }
    if params.fqrate > 0 {
        super::sockopt::set_fq_rate(sock, params.fqrate)?;
    }
    Ok(())
}

/// Sizes a UDP socket's buffers: `-w` for both when given; otherwise only
/// the receive queue grows (bursts of GSO datagrams overflow a small one).
/// The send buffer keeps the kernel's size so that a sender faster than
/// the path blocks, as iperf3's does, instead of overflowing the queue of
/// a shaped link.
pub fn apply_udp_options(sock: &UdpSocket, params: &Params) {
    let sref = SockRef::from(sock);
    let ipv6 = sock.local_addr().is_ok_and(|a| a.is_ipv6());
    if params.tos > 0 {
        let _ = super::sockopt::set_tos(SockRef::from(sock), params.tos, ipv6);
    }
    if params.fqrate > 0 {
        let _ = super::sockopt::set_fq_rate(sock, params.fqrate);
    }
    if params.dont_fragment && !ipv6 {
        let _ = super::sockopt::set_dont_fragment(sock);
    }
    if params.window > 0 {
        let _ = sref.set_send_buffer_size(params.window as usize);
        let _ = sref.set_recv_buffer_size(params.window as usize);
        return;
    }
    let _ = sref.set_recv_buffer_size(4 << 20);
    // With the privilege to do so, go past rmem_max (harmless when refused).
    let big: libc::c_int = 32 << 20;
    // SAFETY: setsockopt reads an int from the pointer given.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&big as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn monotonic_secs() -> f64 {
    let (sec, usec) = monotonic();
    sec as f64 + f64::from(usec) / 1e6
}

fn fail(counters: &Counters, err: impl std::fmt::Display) {
    if let Ok(mut slot) = counters.failure.lock() {
        *slot = Some(err.to_string());
    }
}

/// Starts the thread that moves data on `stream` until `stop` is set, the
/// socket closes, or (a sender) `budget` is spent.
///
/// # Errors
/// When the socket cannot be duplicated or the thread cannot start.
pub fn spawn(
    stream: &Stream,
    params: &Params,
    stop: Arc<AtomicBool>,
    budget: Arc<Budget>,
    started: Instant,
    file: Option<std::fs::File>,
) -> io::Result<JoinHandle<()>> {
    let socket = stream.socket.try_clone()?;
    let counters = Arc::clone(&stream.counters);
    let params = params.clone();
    let sender = stream.sender;
    thread::Builder::new()
        .name(format!("sonde-stream-{}", stream.id))
        .spawn(move || {
            let run = Run {
                params: &params,
                c: &counters,
                stop: &stop,
                budget: &budget,
                started,
            };
            let result = match (socket, sender, file) {
                (DataSocket::Tcp(s), true, Some(f)) => diskfile::tcp_send(s, f, &run),
                (DataSocket::Udp(s), true, Some(f)) => diskfile::udp_send(&s, f, &run),
                (DataSocket::Tcp(s), true, None) => tcp_send(s, &run),
                (DataSocket::Udp(s), true, None) => udp_send(&s, &run),
                (DataSocket::Tcp(s), false, f) => {
                    tcp_recv(s, &params, &counters, &stop, f.as_ref())
                }
                (DataSocket::Udp(s), false, f) => {
                    udp_recv(&s, &params, &counters, &stop, f.as_ref())
                }
                (DataSocket::Tls(s), true, _) => tls_send(s, &run),
                (DataSocket::Tls(s), false, _) => {
                    tls_data::recv(s, params.len as usize, &counters, &stop)
                }
            };
            if let Err(e) = result
                && !stop.load(Ordering::Relaxed)
            {
                fail(&counters, e);
            }
        })
}

fn tcp_send(sock: TcpStream, run: &Run<'_>) -> io::Result<()> {
    if run.params.zerocopy {
        return super::zerocopy::send(&sock, run);
    }
    send_blocks(sock, run)
}

/// A TLS stream's sender: the same blocks, through its session.
fn tls_send(socket: TlsSocket, run: &Run<'_>) -> io::Result<()> {
    socket.run(|stream| send_blocks(stream, run))
}

/// Writes blocks of the payload until the budget is spent or `stop`.
fn send_blocks(mut sock: impl Write, run: &Run<'_>) -> io::Result<()> {
    let (params, c, stop, budget) = (run.params, run.c, run.stop, run.budget);
    let buf = payload(params.len as usize, params.repeating_payload);
    if params.bandwidth > 0 {
        return tcp_send_paced(sock, &buf, run);
    }
    while !stop.load(Ordering::Relaxed) && budget.take(1) == 1 {
        // A counted block goes out whole; a timed test counts writes.
        let n = if budget.is_limited() {
            sock.write_all(&buf).map(|()| buf.len())?
        } else {
            sock.write(&buf)?
        };
        c.bytes.fetch_add(n as u64, Ordering::Relaxed);
        c.blocks.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// `-b` over TCP: each block goes out in paced pieces (see `paced_piece`).
fn tcp_send_paced(mut sock: impl Write, buf: &[u8], run: &Run<'_>) -> io::Result<()> {
    let (params, c, stop, budget) = (run.params, run.c, run.stop, run.budget);
    let piece = paced_piece(params);
    let mut pacer = run.pacer(piece);
    while !stop.load(Ordering::Relaxed) && budget.take(1) == 1 {
        for chunk in buf.chunks(piece) {
            pace(&mut pacer, chunk.len(), stop);
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            sock.write_all(chunk)?;
            c.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        c.blocks.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Receive buffer bytes shared by a test's streams.
const RECV_BUDGET: usize = 8 << 20;

fn tcp_recv(
    sock: TcpStream,
    params: &Params,
    c: &Counters,
    stop: &AtomicBool,
    sink: Option<&std::fs::File>,
) -> io::Result<()> {
    // A paced test never spins (see receive.rs), nor does a process with
    // one CPU, where spinning only delays the sender.
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let receive = Receive {
        flags: rustix::net::RecvFlags::empty(),
        spin: params.bandwidth == 0 && cpus > 1,
        c,
        stop,
        sink,
    };
    if params.skip_rx_copy && sink.is_none() {
        return super::zerocopy::recv_discard(&sock, receive);
    }
    // Large reads: fewer calls, and fewer trips through the socket lock
    // (whose backlog processing is charged to the reader). Measured on
    // loopback against iperf3 (3 interleaved runs each): 256 KiB reads cost
    // 1.09-1.13 CPU-s/GB, 1 MiB 0.97-0.99, 4-16 MiB 0.76-0.89 (iperf3's
    // 128 KiB: 0.82-0.92). 8 MiB for one stream, less with many.
    let size = (RECV_BUDGET / params.parallel.max(1) as usize).clamp(1 << 20, 8 << 20);
    let mut buf = vec![0u8; (params.len as usize).max(size)];
    receive.run(&sock, &mut buf)
}

/// Datagrams per `send` with UDP GSO: the kernel cuts one buffer into
/// `len`-sized datagrams, each already carrying its own iperf3 header, so
/// the bytes on the wire are the same as one send per datagram.
const GSO_MAX_SEGMENTS: usize = 64;
/// The most one GSO send may carry.
const GSO_MAX_BYTES: usize = 65_000;

fn set_udp_option(sock: &UdpSocket, option: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: setsockopt reads an int from the pointer given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// How many datagrams to send at once: as many as GSO allows when the rate
/// is unlimited, else no more than 0.5 ms worth (so pacing stays smooth
/// and a late wake-up stays within the pacer's slack).
fn gso_batch(sock: &UdpSocket, params: &Params) -> usize {
    let len = params.len as usize;
    let mut batch = (GSO_MAX_BYTES / len.max(1)).min(GSO_MAX_SEGMENTS);
    if params.bandwidth > 0 {
        let half_ms = (params.bandwidth / 8 / 2000) as usize;
        batch = batch.min(half_ms / len.max(1));
    }
    let len_int = libc::c_int::try_from(len).unwrap_or(0);
    if batch > 1 && set_udp_option(sock, libc::UDP_SEGMENT, len_int) {
        batch
    } else {
        1
    }
}

fn udp_send(sock: &UdpSocket, run: &Run<'_>) -> io::Result<()> {
    let (params, c, stop, budget) = (run.params, run.c, run.stop, run.budget);
    let wide = params.udp_counters_64bit;
    let len = params.len as usize;
    let batch = gso_batch(sock, params);
    let one = payload(len, params.repeating_payload);
    let mut buf: Vec<u8> = one.iter().copied().cycle().take(len * batch).collect();
    let mut pacer = run.pacer(len);
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let batch = budget.take(batch as u64) as usize;
        if batch == 0 {
            break;
        }
        let buf = &mut buf[..len * batch];
        pace(&mut pacer, len * batch, stop);
        let (sec, usec) = monotonic();
        for (k, segment) in buf.chunks_mut(len).enumerate() {
            UdpHeader {
                sec: sec as u32,
                usec,
                seq: seq + k as u64 + 1,
            }
            .write(segment, wide);
        }
        match sock.send(buf) {
            Ok(n) => {
                seq += batch as u64;
                c.bytes.fetch_add(n as u64, Ordering::Relaxed);
                c.blocks.fetch_add(batch as u64, Ordering::Relaxed);
            }
            // A full queue or a closed port is not a reason to stop; the
            // sequence numbers were not used, so no gap appears.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused
                ) || e.raw_os_error() == Some(libc::ENOBUFS) =>
            {
                budget.give_back(batch as u64);
                thread::yield_now();
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn udp_recv(
    sock: &UdpSocket,
    params: &Params,
    c: &Counters,
    stop: &AtomicBool,
    sink: Option<&std::fs::File>,
) -> io::Result<()> {
    let wide = params.udp_counters_64bit;
    let len = (params.len as usize).max(1);
    // With GRO a GSO sender's datagrams arrive as one buffer of `len`-sized
    // segments (every iperf3 datagram is exactly `len` bytes).
    let gro = set_udp_option(sock, libc::UDP_GRO, 1);
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf = vec![0u8; 1 << 17];
    while !stop.load(Ordering::Relaxed) {
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionRefused
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        let arrival = monotonic_secs();
        let step = if gro { len } else { n.max(1) };
        let mut datagrams = 0u64;
        if let Ok(mut stats) = c.udp.lock() {
            for datagram in buf[..n].chunks(step) {
                datagrams += 1;
                // Unlike iperf3 3.12, a datagram too short for a header is
                // not parsed; its bytes still count.
                if let Ok(header) = UdpHeader::read(datagram, wide) {
                    stats.record(&header, datagram.len(), arrival);
                    if let Some(file) = sink {
                        let mut file = file;
                        let _ = file.write_all(&datagram[UdpHeader::len(wide)..]);
                    }
                }
            }
        }
        c.bytes.fetch_add(n as u64, Ordering::Relaxed);
        c.blocks.fetch_add(datagrams, Ordering::Relaxed);
    }
    Ok(())
}

/// TCP state of a sending socket, from `TCP_INFO`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpState {
    /// Retransmitted segments since the connection started.
    pub total_retrans: u64,
    /// Congestion window in bytes.
    pub snd_cwnd: u64,
    /// Smoothed RTT in µs.
    pub rtt: u64,
    /// RTT variance in µs.
    pub rttvar: u64,
    /// Path MTU.
    pub pmtu: u64,
    /// The peer's advertised window, in bytes (0 where the kernel does
    /// not report it).
    pub snd_wnd: u64,
}

/// Reads `TCP_INFO` from a TCP socket.
pub fn tcp_state(sock: &TcpStream) -> Option<TcpState> {
    // SAFETY: tcp_info is plain data; getsockopt writes at most `len`
    // bytes into it and reports how many (an older kernel, fewer).
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            sock.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    // tcpi_snd_wnd is Linux 5.4's; an older kernel leaves it 0.
    (rc == 0).then(|| TcpState {
        snd_wnd: u64::from(info.tcpi_snd_wnd),
        total_retrans: u64::from(info.tcpi_total_retrans),
        snd_cwnd: u64::from(info.tcpi_snd_cwnd) * u64::from(info.tcpi_snd_mss),
        rtt: u64::from(info.tcpi_rtt),
        rttvar: u64::from(info.tcpi_rttvar),
        pmtu: u64::from(info.tcpi_pmtu),
    })
}

/// A data socket's send and receive buffer sizes, as the kernel reports
/// them.
pub fn buffers(socket: &DataSocket) -> Option<(u64, u64)> {
    let sock = match socket {
        DataSocket::Tcp(t) => SockRef::from(t),
        DataSocket::Udp(u) => SockRef::from(u),
        DataSocket::Tls(t) => SockRef::from(t.tcp()),
    };
    Some((
        sock.send_buffer_size().ok()? as u64,
        sock.recv_buffer_size().ok()? as u64,
    ))
}

/// The congestion control algorithm of a TCP socket.
pub fn congestion(sock: &TcpStream) -> Option<String> {
    let name = SockRef::from(sock).tcp_congestion().ok()?;
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Some(String::from_utf8_lossy(&name[..end]).into_owned())
}
