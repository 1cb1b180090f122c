//! A small echo reflector on its own threads, for `sonde rtt` with no host
//! and `sonde serve echo --busy-poll`: a thread per client on plain
//! sockets, so it adds no runtime hop to the measured path, and can spin
//! instead of sleeping.

use std::io::{Read, Write};

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::error::{Error, Result};

/// A running reflector; stops when dropped.
#[derive(Debug)]
pub struct Reflector {
    /// Where it listens (TCP and UDP, same port).
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for Reflector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts TCP and UDP echo on one loopback port; with `busy_poll` the
/// reflector spins on non-blocking sockets instead of sleeping.
///
/// # Errors
/// When no port can be bound.
pub fn start(busy_poll: bool) -> Result<Reflector> {
    let fail = |e| Error::io("starting the embedded echo server", e);
    let (tcp, udp) = loop {
        let tcp = TcpListener::bind("127.0.0.1:0").map_err(fail)?;
        let port = tcp.local_addr().map_err(fail)?.port();
        if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) {
            break (tcp, udp);
        }
    };
    let addr = tcp.local_addr().map_err(fail)?;
    let stop = Arc::new(AtomicBool::new(false));
    let tcp_stop = Arc::clone(&stop);
    thread::Builder::new()
        .name("sonde-reflect-tcp".into())
        .spawn(move || serve_tcp(&tcp, busy_poll, usize::MAX, &tcp_stop))
        .map_err(fail)?;
    let udp_stop = Arc::clone(&stop);
    thread::Builder::new()
        .name("sonde-reflect-udp".into())
        .spawn(move || serve_udp(&udp, busy_poll, &udp_stop))
        .map_err(fail)?;
    Ok(Reflector { addr, stop })
}

/// Bytes a TCP reflector asks of each read.
const REFLECT_READ: usize = 64 * 1024;

/// Echoes every client of `listener` on a thread of its own (spinning with
/// `busy_poll`), at most `max_clients` at once (others are closed at
/// once), until `stop` is set and the next client arrives.
pub fn serve_tcp(listener: &TcpListener, busy_poll: bool, max_clients: usize, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(mut conn) = conn else { continue };
        if active.load(Ordering::Relaxed) >= max_clients {
            continue;
        }
        let _ = conn.set_nodelay(true);
        let _ = conn.set_nonblocking(busy_poll);
        active.fetch_add(1, Ordering::Relaxed);
        let active = Arc::clone(&active);
        thread::spawn(move || {
            // At most 64 KiB per read. Measured pinned to one CPU with
            // 16 KiB messages: a 256 KiB read buffer settles after about
            // half a second at ~32 us round trips where 64 or 128 KiB stay at
            // ~23 us (so does sockperf's server, 65,507).
            let mut buf = vec![0u8; REFLECT_READ];
            loop {
                match conn.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if write_spinning(&mut conn, &buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Echoes every datagram on `udp` until `stop` is set: spinning on a
/// non-blocking socket with `busy_poll`, else waking at least every 200 ms
/// to look at `stop`.
pub fn serve_udp(udp: &UdpSocket, busy_poll: bool, stop: &AtomicBool) {
    let _ = udp.set_nonblocking(busy_poll);
    let _ = udp.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        match udp.recv_from(&mut buf) {
            Ok((n, from)) => {
                let _ = udp.send_to(&buf[..n], from);
            }
            Err(_) if busy_poll => std::hint::spin_loop(),
            Err(_) => {}
        }
    }
}

/// Writes everything, spinning while a non-blocking socket is full.
fn write_spinning(conn: &mut std::net::TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        match conn.write(data) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                std::hint::spin_loop();
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
