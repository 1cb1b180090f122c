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

/// Starts TCP and UDP echo on one loopback port.
///
/// # Errors
/// When no port can be bound.
pub fn start() -> Result<Reflector> {
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
                thread::spawn(move || {
                    let mut buf = vec![0u8; 256 * 1024];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 || conn.write_all(&buf[..n]).is_err() {
                            break;
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
                if let Ok((n, from)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(&buf[..n], from);
                }
            }
        })
        .map_err(fail)?;
    Ok(Reflector { addr, stop })
}
