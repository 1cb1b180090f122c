//! System calls as every subsystem uses them: retried when a signal
//! interrupts them (EINTR), in one place, for rustix's calls and the
//! standard library's alike; and their errors in plain words.

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

/// Describes an I/O error in a few lowercase words ("connection refused"),
/// without the "(os error 111)" suffix the standard library adds.
pub fn describe(err: &io::Error) -> String {
    use io::ErrorKind as K;
    let short = match err.kind() {
        K::ConnectionRefused => "connection refused",
        K::ConnectionReset => "connection reset by peer",
        K::ConnectionAborted => "connection aborted",
        K::BrokenPipe => "broken pipe (the peer closed the connection)",
        K::AddrInUse => "address already in use",
        K::AddrNotAvailable => "address not available",
        K::PermissionDenied => "permission denied",
        K::TimedOut | K::WouldBlock => "timed out",
        K::HostUnreachable => "host unreachable",
        K::NetworkUnreachable => "network unreachable",
        _ => "",
    };
    if !short.is_empty() {
        return short.to_string();
    }
    let text = err.to_string();
    let text = text
        .strip_prefix("failed to lookup address information: ")
        .unwrap_or(&text);
    let text = match text.find(" (os error") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "unknown error".to_string(),
    }
}
