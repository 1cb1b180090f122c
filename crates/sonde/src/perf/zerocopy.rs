//! The copy-free data paths: `-Z` sends with `sendfile(2)` from a memory
//! file filled once with the payload, and `--skip-rx-copy` receives with
//! `MSG_TRUNC`, which discards the bytes in the kernel.

use std::io;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::net::RecvFlags;

use super::stream::{Counters, payload};
use crate::iperf::params::Params;

/// Sends from a memfd with sendfile until `stop`.
pub(crate) fn send(
    sock: &TcpStream,
    params: &Params,
    c: &Counters,
    stop: &AtomicBool,
) -> io::Result<()> {
    let len = params.len as usize;
    let file = rustix::fs::memfd_create("sonde-payload", rustix::fs::MemfdFlags::CLOEXEC)?;
    let data = payload(len, params.repeating_payload);
    rustix::io::write(&file, &data)?;
    while !stop.load(Ordering::Relaxed) {
        let mut offset = 0u64;
        while (offset as usize) < len {
            let left = len - offset as usize;
            let n = match rustix::fs::sendfile(sock.as_fd(), &file, Some(&mut offset), left) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            c.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        c.blocks.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Receives and discards in the kernel (MSG_TRUNC) until EOF or `stop`.
pub(crate) fn recv_discard(sock: &TcpStream, c: &Counters, stop: &AtomicBool) -> io::Result<()> {
    // With MSG_TRUNC on TCP the kernel drops up to the buffer's length
    // without copying into it: the (calloc'd, never touched) buffer only
    // states a size.
    let mut buf = vec![0u8; 1 << 20];
    let flags = RecvFlags::TRUNC;
    loop {
        let n = match rustix::net::recv(sock.as_fd(), &mut buf[..], flags) {
            Ok((_, n)) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Ok(());
        }
        c.bytes.fetch_add(n as u64, Ordering::Relaxed);
        c.blocks.fetch_add(1, Ordering::Relaxed);
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
    }
}
