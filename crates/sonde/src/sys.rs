//! System calls as every subsystem uses them: retried when a signal
//! interrupts them (EINTR), in one place, for rustix's calls and the
//! standard library's alike.

use std::io;
use std::os::fd::BorrowedFd;

use rustix::io::Errno;

/// Runs `call` again for as long as a signal interrupts it.
pub(crate) fn retry<T>(mut call: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    loop {
        match call() {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// As [`retry`], for the standard library's I/O.
pub(crate) fn retry_io<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Whether a blocking call gave up at its socket timeout (`SO_RCVTIMEO`
/// reports this as "would block").
pub(crate) fn timed_out(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// One `sendfile` of at most `len` bytes of `file` to `sock`, from
/// `offset` (advanced) or, with `None`, from the file's position.
pub(crate) fn sendfile(
    sock: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    mut offset: Option<&mut u64>,
    len: usize,
) -> Result<usize, Errno> {
    retry(|| rustix::fs::sendfile(sock, file, offset.as_deref_mut(), len))
}
