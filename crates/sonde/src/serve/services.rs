//! The byte services: echo (RFC 862), discard (RFC 863) and chargen
//! (RFC 864). Buffers exist only while data flows, so an idle connection
//! costs little more than its socket; echo writes everything back before it
//! reads more, so a client that sends but never reads is simply no longer
//! read (TCP's window stops it), never buffered without bound.

use std::task::Poll;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Ctx;
use super::readers::Answering;
use crate::wire::sockperf;

/// The most read at once. Each burst's buffer is allocated without being
/// zeroed, so a large one costs a request/response client nothing, and a
/// message of up to this size is read, and echoed, whole.
const CHUNK: usize = 64 * 1024;

/// Waits until the stream is readable (`true`) or the idle time passes
/// (`false`). Server shutdown arrives as readability too: the server shuts
/// the reading side of every such socket (see `readers`), so this future
/// needs no cancellation waiter of its own and an idle connection's task
/// stays small.
pub(crate) async fn wait_readable(stream: &TcpStream, ctx: &Ctx) -> bool {
    // `poll_read_ready` keeps the waker in the socket's registration, not
    // in a waiter inside this future (tokio's `readable()` future alone is
    // 200 bytes). The timer is boxed: only connections with an idle
    // timeout pay for it.
    let readable = std::future::poll_fn(|cx| stream.poll_read_ready(cx));
    match ctx.idle {
        Some(limit) => Box::pin(tokio::time::timeout(limit, readable))
            .await
            .is_ok_and(|r| r.is_ok()),
        None => readable.await.is_ok(),
    }
}

/// What one read found.
enum Read {
    /// Bytes appended to the buffer.
    Data(usize),
    /// Nothing there now.
    Empty,
    /// End of input or an error.
    End,
}

/// Reads what is there now into `buf`'s spare room, without waiting.
///
/// Through `AsyncRead`, not `try_read`: tokio then takes a short read as
/// proof that the socket is drained, which saves a request/response
/// client's server the read that would only say "would block".
async fn read_now(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Read {
    let mut read = std::pin::pin!(stream.read_buf(buf));
    std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
        Poll::Pending => Poll::Ready(Read::Empty),
        Poll::Ready(Ok(0) | Err(_)) => Poll::Ready(Read::End),
        Poll::Ready(Ok(n)) => Poll::Ready(Read::Data(n)),
    })
    .await
}

/// RFC 862 echo. The task waits for data in a small future; each burst of
/// data is echoed by a boxed one (with its buffer), so an idle connection
/// keeps neither.
pub(crate) async fn echo(stream: &mut Answering, ctx: &Ctx) {
    while wait_readable(stream, ctx).await {
        if !Box::pin(echo_burst(stream, ctx)).await {
            return;
        }
    }
}

/// Echoes what is there until the socket would block (`true`), ends or
/// fails (`false`).
async fn echo_burst(stream: &mut TcpStream, ctx: &Ctx) -> bool {
    let mut buf = Vec::with_capacity(CHUNK);
    loop {
        buf.clear();
        match read_now(stream, &mut buf).await {
            Read::End => return false,
            Read::Empty => return true,
            Read::Data(n) => {
                ctx.stats.add_in(n);
                if stream.write_all(&buf).await.is_err() {
                    return false;
                }
                ctx.stats.add_out(n);
            }
        }
    }
}

/// RFC 863 discard.
pub(crate) async fn discard(mut stream: Answering, ctx: &Ctx) {
    while wait_readable(&stream, ctx).await {
        let mut buf = Vec::with_capacity(CHUNK);
        loop {
            buf.clear();
            match read_now(&mut stream, &mut buf).await {
                Read::End => return,
                Read::Empty => break,
                Read::Data(n) => ctx.stats.add_in(n),
            }
        }
    }
}

/// Reads what comes into `buf`, counted: `None` at the end, an error,
/// the idle timeout or the server's shutdown.
pub(crate) async fn read_some(
    reader: &mut (impl AsyncRead + Unpin),
    buf: &mut [u8],
    ctx: &Ctx,
) -> Option<usize> {
    let read = async {
        match ctx.idle {
            Some(limit) => tokio::time::timeout(limit, reader.read(buf))
                .await
                .unwrap_or(Ok(0)),
            None => reader.read(buf).await,
        }
    };
    let n = tokio::select! {
        () = ctx.shutdown.cancelled() => return None,
        r = read => match r { Ok(0) | Err(_) => return None, Ok(n) => n },
    };
    ctx.stats.add_in(n);
    Some(n)
}

/// Echo (`reply`) or discard over any stream (TLS): reads with the idle
/// timeout until the client closes or the server stops. Bigger per
/// connection than the plain services' tasks, which wait on the socket's
/// readiness alone; a TLS session's buffers dwarf that anyway.
pub(crate) async fn answer_stream<S>(mut stream: S, reply: bool, ctx: &Ctx)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    while let Some(n) = read_some(&mut stream, &mut buf, ctx).await {
        if reply {
            // Flushed: a TLS stream may hold the last record otherwise.
            let sent = async {
                stream.write_all(&buf[..n]).await?;
                stream.flush().await
            };
            if sent.await.is_err() {
                return;
            }
            ctx.stats.add_out(n);
        }
    }
    let _ = stream.shutdown().await;
}

/// sockperf's ping-pong over any stream (TLS): answers each whole
/// message that asks for a pong, keeps the start of one still arriving.
/// A header with an impossible length ends the connection, so what is
/// kept never passes [`sockperf::MAX_MESSAGE`].
pub(crate) async fn sockperf_stream<S>(mut stream: S, ctx: &Ctx)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut pending = Vec::new();
    let mut replies = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    while let Some(n) = read_some(&mut stream, &mut buf, ctx).await {
        pending.extend_from_slice(&buf[..n]);
        replies.clear();
        let Some(used) = sockperf::answer_stream(&mut pending, &mut replies) else {
            break;
        };
        pending.drain(..used);
        if replies.is_empty() {
            continue;
        }
        let sent = async {
            stream.write_all(&replies).await?;
            stream.flush().await
        };
        if sent.await.is_err() {
            return;
        }
        ctx.stats.add_out(replies.len());
    }
    let _ = stream.shutdown().await;
}

/// The RFC 864 pattern: 72-character lines of the 95 printable ASCII
/// characters, each line starting one character further on, CRLF ended.
pub fn chargen_line(index: usize) -> [u8; 74] {
    let mut line = [0u8; 74];
    for (i, out) in line[..72].iter_mut().enumerate() {
        *out = b' ' + ((index + i) % 95) as u8;
    }
    line[72] = b'\r';
    line[73] = b'\n';
    line
}

/// The kernel's send buffer for a chargen connection. Left to autotune,
/// loopback grows it to megabytes, which a client that never reads fills
/// at once: 2,000 such clients made the server write gigabytes, burn two
/// CPUs for seconds and a good client wait a second for 512 KiB. 128 KiB
/// still streams at gigabits to a client that reads.
const CHARGEN_SNDBUF: usize = 128 * 1024;

/// Caps a chargen connection's send buffer (see [`CHARGEN_SNDBUF`]).
pub(crate) fn cap_send_buffer(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_send_buffer_size(CHARGEN_SNDBUF);
}

/// RFC 864 chargen: sends until the client closes, stops reading for the
/// idle time, or the server stops (chargen is closed at once on shutdown).
pub(crate) async fn chargen(mut stream: impl AsyncWrite + Unpin, ctx: &Ctx) {
    // One full cycle of 95 lines, sent over and over.
    let cycle: Vec<u8> = (0..95).flat_map(chargen_line).collect();
    loop {
        let write = async {
            match ctx.idle {
                Some(limit) => tokio::time::timeout(limit, stream.write_all(&cycle))
                    .await
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
                None => stream.write_all(&cycle).await,
            }
        };
        let done = tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            r = write => r,
        };
        if done.is_err() {
            return;
        }
        ctx.stats.add_out(cycle.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chargen_lines_rotate_through_printable_ascii() {
        let first = chargen_line(0);
        assert_eq!(&first[..10], b" !\"#$%&'()");
        assert_eq!(&first[72..], b"\r\n");
        let second = chargen_line(1);
        assert_eq!(second[0], b'!');
        assert_eq!(chargen_line(95), first);
        assert!(first[..72].iter().all(|b| (32..127).contains(b)));
    }
}
