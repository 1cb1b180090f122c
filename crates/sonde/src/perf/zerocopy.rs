//! The copy-free data paths: `-Z` sends with `sendfile(2)` from a memory
//! file filled once with the payload, and `--skip-rx-copy` receives with
//! `MSG_TRUNC`, which discards the bytes in the kernel.

use std::io;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

use rustix::net::RecvFlags;

use super::receive::Receive;
use super::worker::{Run, pace, paced_piece, payload};

/// Bytes handed to `sendfile` per call.
const SEND_AT_ONCE: usize = 1 << 20;
/// Bytes asked of each discarding `recv`.
const RECV_AT_ONCE: usize = 16 << 20;

/// Sends from a memfd with sendfile until `stop`.
pub(crate) fn send(sock: &TcpStream, run: &Run<'_>) -> io::Result<()> {
    let (params, c, stop, budget) = (run.params, run.c, run.stop, run.budget);
    let block = params.len as usize;
    let file = rustix::fs::memfd_create("sonde-payload", rustix::fs::MemfdFlags::CLOEXEC)?;
    let data = payload(block, params.repeating_payload);
    // Several blocks back to back, handed over in one call: fewer system
    // calls for the same pages (the block count is bytes / block).
    let repeat = (SEND_AT_ONCE / block.max(1)).max(1);
    for _ in 0..repeat {
        rustix::io::write(&file, &data)?;
    }
    // With -b, paced in pieces as the copying sender is.
    let piece = if params.bandwidth > 0 {
        paced_piece(params)
    } else {
        usize::MAX
    };
    let mut pacer = run.pacer(piece.min(block));
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let blocks = budget.take(repeat as u64) as usize;
        if blocks == 0 {
            break;
        }
        let len = block * blocks;
        let mut offset = 0u64;
        while (offset as usize) < len {
            let left = (len - offset as usize).min(piece);
            pace(&mut pacer, left, stop);
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let n = crate::sys::sendfile(sock.as_fd(), file.as_fd(), Some(&mut offset), left)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            c.bytes.fetch_add(n as u64, Ordering::Relaxed);
            sent += n as u64;
            c.blocks.store(sent / block as u64, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Receives and discards in the kernel (MSG_TRUNC) until EOF or `stop`.
pub(crate) fn recv_discard(sock: &TcpStream, receive: Receive<'_>) -> io::Result<()> {
    // MSG_TRUNC discards without copying: the buffer is never written (so
    // never takes memory), and a large one means fewer calls.
    let mut buf = vec![0u8; RECV_AT_ONCE];
    Receive {
        flags: RecvFlags::TRUNC,
        ..receive
    }
    .run(sock, &mut buf)
}
