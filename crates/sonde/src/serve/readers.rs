//! The sockets of the services that only answer (echo, discard,
//! sockperf), so that shutdown can reach them without a cancellation
//! waiter in every task: at shutdown each one's reading side is shut, which
//! wakes its task with an end of input. An idle connection then costs its
//! socket's descriptor here (a few bytes) instead of a 72-byte waiter.

use std::collections::HashSet;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;

/// The registered sockets, and whether shutdown has begun.
#[derive(Debug, Default)]
pub(crate) struct Readers(Mutex<(HashSet<RawFd>, bool)>);

/// A registered stream: it leaves [`Readers`] when dropped, before the
/// socket itself closes.
pub(crate) struct Answering {
    stream: TcpStream,
    readers: Arc<Readers>,
}

impl Deref for Answering {
    type Target = TcpStream;
    fn deref(&self) -> &TcpStream {
        &self.stream
    }
}

impl DerefMut for Answering {
    fn deref_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

impl Readers {
    /// Registers `stream`; after shutdown began, shuts it at once.
    pub(crate) fn add(self: &Arc<Self>, stream: TcpStream) -> Answering {
        let fd = stream.as_raw_fd();
        if let Ok(mut inner) = self.0.lock() {
            if inner.1 {
                shut(fd);
            } else {
                inner.0.insert(fd);
            }
        }
        Answering {
            stream,
            readers: Arc::clone(self),
        }
    }

    /// Shuts the reading side of every registered socket.
    pub(crate) fn shut_all(&self) {
        if let Ok(mut inner) = self.0.lock() {
            inner.1 = true;
            for fd in inner.0.drain() {
                shut(fd);
            }
        }
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        // The stream (a field) closes only after this returns.
        if let Ok(mut inner) = self.readers.0.lock() {
            inner.0.remove(&self.stream.as_raw_fd());
        }
    }
}

fn shut(fd: RawFd) {
    // SAFETY: `fd` is open: a socket leaves the set (under the same lock)
    // before it is closed, and `add` runs while its stream is alive.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Read);
}
