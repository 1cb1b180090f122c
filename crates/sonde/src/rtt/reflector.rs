//! A small echo reflector on its own threads, for `sonde rtt` with no host:
//! blocking sockets, so it adds no runtime hop to the measured path.

use std::io::{Read, Write};

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    thread::Builder::new()
        .name("sonde-reflect-tcp".into())
        .spawn(move || {
            for conn in tcp.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_nodelay(true);
                let _ = conn.set_nonblocking(busy_poll);
                thread::spawn(move || {
                    let mut buf = vec![0u8; 256 * 1024];
                    loop {
                        match conn.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                if write_spinning(&mut conn, &buf[..n]).is_err() {
                                    break;
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                std::hint::spin_loop()
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(_) => break,
                        }
                    }
                });
            }
        })
        .map_err(fail)?;
    let flag = Arc::clone(&stop);
    udp.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(fail)?;
    thread::Builder::new()
        .name("sonde-reflect-udp".into())
        .spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !flag.load(Ordering::Relaxed) {
                match udp.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        let _ = udp.send_to(&buf[..n], from);
                    }
                    Err(_) if busy_poll => std::hint::spin_loop(),
                    Err(_) => {}
                }
            }
        })
        .map_err(fail)?;
    Ok(Reflector { addr, stop })
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
