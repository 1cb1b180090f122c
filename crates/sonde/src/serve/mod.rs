//! `sonde serve`: one server core (accept loop, per-connection task,
//! connection limit, idle timeout, graceful shutdown, counters) with the
//! test services plugged in: RFC 862 echo, RFC 863 discard, RFC 864
//! chargen, a line-based chat room, and a sockperf reflector.

pub mod chat;
pub mod datagram;
mod readers;
pub mod reflector;
pub mod services;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Which service a server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// RFC 862: send back what arrives.
    Echo,
    /// RFC 863: read and count.
    Discard,
    /// RFC 864: send the rotating character pattern.
    Chargen,
    /// Lines from each client go to every other client.
    Chat,
    /// Reflects sockperf's ping-pong messages (TCP or UDP).
    Sockperf,
}

impl ServiceKind {
    /// The default (unprivileged) port.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Echo => 7007,
            Self::Discard => 7009,
            Self::Chargen => 7019,
            Self::Chat => 7070,
            Self::Sockperf => crate::wire::sockperf::DEFAULT_PORT,
        }
    }

    /// The service's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Discard => "discard",
            Self::Chargen => "chargen",
            Self::Chat => "chat",
            Self::Sockperf => "sockperf",
        }
    }
}

/// How a server behaves.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Connections served at once; a client past this is closed at once.
    pub max_connections: usize,
    /// Close a connection that moves nothing for this long.
    pub idle_timeout: Option<Duration>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            idle_timeout: None,
        }
    }
}

/// Counters of a running server.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted and served.
    pub served: AtomicU64,
    /// Connections refused by the limit.
    pub refused: AtomicU64,
    /// Accepts that failed (e.g. out of descriptors).
    pub accept_errors: AtomicU64,
    /// Bytes received.
    pub bytes_in: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
    /// Connections open now.
    pub active: AtomicU64,
    /// Most connections open at once.
    pub peak: AtomicU64,
}

impl Stats {
    fn opened(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
        let now = self.active.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn add_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "{} connections served ({} refused, {} failed accepts), {} bytes in, {} bytes out, peak {} at once",
            get(&self.served),
            get(&self.refused),
            get(&self.accept_errors),
            get(&self.bytes_in),
            get(&self.bytes_out),
            get(&self.peak)
        )
    }
}

/// What every connection task shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) stats: Arc<Stats>,
    pub(crate) idle: Option<Duration>,
    /// Cancelled when the server shuts down: chat and chargen connections
    /// close.
    pub(crate) shutdown: CancellationToken,
    /// The sockets of the services that only answer: shut for reading at
    /// shutdown.
    pub(crate) readers: Arc<readers::Readers>,
    /// Woken when the last connection closes (the drain waits for it).
    all_closed: tokio::sync::Notify,
}

impl Ctx {
    /// Counts a connection's end.
    fn closed(&self) {
        if self.stats.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.all_closed.notify_waiters();
        }
    }

    /// Waits until no connection is open, at most `limit`.
    async fn drained(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.all_closed.notified();
            tokio::pin!(notified);
            // Registered before the count is read, so no wake-up is lost.
            notified.as_mut().enable();
            if self.stats.active.load(Ordering::Acquire) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

/// Serves `kind` on `listener` until `shutdown` is cancelled, then waits
/// for the connections still busy, at most `drain`. Returns the counters.
pub async fn run(
    listener: TcpListener,
    kind: ServiceKind,
    config: ServeConfig,
    shutdown: CancellationToken,
    drain: Duration,
    stats: Arc<Stats>,
) -> Arc<Stats> {
    let room = chat::Room::new();
    let ctx = Arc::new(Ctx {
        stats: Arc::clone(&stats),
        idle: config.idle_timeout,
        shutdown: shutdown.clone(),
        readers: Arc::default(),
        all_closed: tokio::sync::Notify::new(),
    });
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of descriptors and the like: log, breathe, go on.
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "accepting a connection: {} (the server goes on)",
                    crate::error::describe(&err)
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if stats.active.load(Ordering::Relaxed) >= config.max_connections as u64 {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        }
        stats.opened();
        spawn_service(kind, stream, peer, Arc::clone(&ctx), &room);
    }
    drop(listener);
    // Wakes every echo, discard and sockperf connection waiting for data
    // with an end of input: idle ones close at once, busy ones finish.
    ctx.readers.shut_all();
    if kind == ServiceKind::Chat {
        room.closing().await;
    }
    ctx.drained(drain).await;
    stats
}

/// Spawns a connection's task. One `spawn` per service, so that each task
/// is only as large as its own service's future: an idle echo connection
/// does not pay for chat's (the larger futures are boxed besides).
fn spawn_service(
    kind: ServiceKind,
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<Ctx>,
    room: &Arc<chat::Room>,
) {
    let _ = stream.set_nodelay(true);
    match kind {
        // Registered before the spawn: a value captured by the task stays
        // in it for good, so the task holds the registered stream only.
        ServiceKind::Echo => tokio::spawn(echo_task(ctx.readers.add(stream), ctx)),
        ServiceKind::Discard => {
            let stream = ctx.readers.add(stream);
            tokio::spawn(async move {
                services::discard(stream, &ctx).await;
                ctx.closed();
            })
        }
        ServiceKind::Sockperf => {
            let stream = ctx.readers.add(stream);
            tokio::spawn(async move {
                Box::pin(services::sockperf(stream, &ctx)).await;
                ctx.closed();
            })
        }
        ServiceKind::Chargen => tokio::spawn(async move {
            Box::pin(services::chargen(stream, &ctx)).await;
            ctx.closed();
        }),
        ServiceKind::Chat => {
            let room = Arc::clone(room);
            tokio::spawn(async move {
                Box::pin(room.join(stream, peer, &ctx)).await;
                ctx.closed();
            })
        }
    };
}

/// An echo connection's task. While idle it holds the registered stream,
/// the context and a small wait: it fits the smallest task cell tokio
/// allocates for it (256 bytes with tokio's header and trailer), which is
/// what keeps an idle connection under 1 KiB of memory.
///
/// Not an `async fn`: its parameters would be kept apart from the body's
/// locals, and the future would grow to 192 bytes (the next cell, 384).
#[allow(clippy::manual_async_fn)]
fn echo_task(mut stream: readers::Answering, ctx: Arc<Ctx>) -> impl Future<Output = ()> {
    async move {
        services::echo(&mut stream, &ctx).await;
        drop(stream);
        ctx.closed();
    }
}

/// Raises the soft limit on open files to the hard limit; returns the
/// limit now in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum {
        limit.current = Some(hard);
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// A tokio listener from a std one (bound with sonde's backlog).
///
/// # Errors
/// When the socket cannot be made non-blocking or registered.
pub fn tokio_listener(listener: std::net::TcpListener) -> std::io::Result<TcpListener> {
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_echo_task_fits_the_small_task_cell() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let stream = TcpStream::connect(addr).await.expect("connect");
            let ctx = Arc::new(Ctx {
                stats: Arc::default(),
                idle: None,
                shutdown: CancellationToken::new(),
                readers: Arc::default(),
                all_closed: tokio::sync::Notify::new(),
            });
            let task = echo_task(ctx.readers.add(stream), Arc::clone(&ctx));
            // tokio's task cell is 128-byte aligned, with about 104 bytes of
            // header and trailer around the future.
            assert!(
                std::mem::size_of_val(&task) <= 152,
                "{} bytes",
                std::mem::size_of_val(&task)
            );
        });
    }
}
