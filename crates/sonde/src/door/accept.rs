//! The accept loop: every sonde server's connections come through here.
//! A failed accept (most often out of descriptors) backs off briefly,
//! doubling while it keeps failing, and is logged at most once per
//! [`LOG_EVERY`]; the loop itself only ends at shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

use super::access::Reason;
use super::permit::Permit;
use super::{Door, LOG_EVERY, Refusal};
use crate::error::describe;

/// The first pause after a failed accept; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// A connection let in: the stream, who it is from (an IPv4 client of a
/// dual-stack socket shows as itself, not `::ffff:`), and its place.
#[derive(Debug)]
pub struct Accepted {
    /// The connection.
    pub stream: TcpStream,
    /// The peer.
    pub peer: SocketAddr,
    /// Its place under the cap; hold it as long as the connection is open.
    pub permit: Permit,
}

impl Door {
    /// Accepts on `listener` until shutdown, handing each connection let
    /// in to `handler` (which spawns its task or thread). Clients past
    /// the cap, or not admitted, get the door's [`Refusal`].
    pub async fn serve(&self, listener: TcpListener, mut handler: impl FnMut(Accepted)) {
        self.accept_loop(&listener, |(stream, peer)| {
            if let Some(accepted) = self.let_in(stream, peer) {
                handler(accepted);
            }
        })
        .await;
    }

    /// The loop every listener's accepts run in, until shutdown: each new
    /// connection to `take`, a failed accept backed off and logged, the
    /// refusals reported every so often.
    pub(super) async fn accept_loop<L: Listening>(
        &self,
        listener: &L,
        mut take: impl FnMut(L::Conn),
    ) {
        let on = listener.describe();
        let mut backoff = MIN_BACKOFF;
        let every = self
            .inner
            .config
            .rules
            .report_every
            .max(Duration::from_millis(10));
        let mut report = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let accepted = tokio::select! {
                biased;
                () = self.inner.shutdown.cancelled() => break,
                _ = report.tick() => {
                    self.inner.report_refusals();
                    continue;
                }
                accepted = listener.accept_next() => accepted,
            };
            match accepted {
                Ok(conn) => {
                    backoff = MIN_BACKOFF;
                    take(conn);
                }
                Err(err) => {
                    self.failed(&on, &err);
                    tokio::select! {
                        () = self.inner.shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        self.inner.report_refusals();
    }

    /// As [`Self::serve`], on several listeners at once (an IPv4 and an
    /// IPv6 socket, say).
    pub async fn serve_all(
        &self,
        listeners: Vec<TcpListener>,
        handler: impl FnMut(Accepted) + Clone + Send + 'static,
    ) {
        let mut loops = tokio::task::JoinSet::new();
        for listener in listeners {
            let door = self.clone();
            let handler = handler.clone();
            loops.spawn(async move { door.serve(listener, handler).await });
        }
        while loops.join_next().await.is_some() {}
    }

    /// Checks the peer and takes a place for it, or refuses it.
    fn let_in(&self, stream: TcpStream, peer: SocketAddr) -> Option<Accepted> {
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let (inner, ip) = (&self.inner, peer.ip());
        if let Some(reason) = inner.gate.check(ip) {
            return self.refuse(&stream, ip, reason);
        }
        if !inner.gate.hold(ip) {
            return self.refuse(&stream, ip, Reason::PerIp);
        }
        let permit = Permit::try_new(inner).or_else(|| Permit::from_oldest(inner));
        let Some(mut permit) = permit else {
            if inner.gate.counts_per_ip() {
                inner.gate.release(ip);
            }
            return self.refuse(&stream, ip, Reason::Full);
        };
        if inner.gate.counts_per_ip() {
            permit = permit.held_by(ip);
        }
        inner.counters.accepted.fetch_add(1, Ordering::Relaxed);
        if let Some(idle) = inner.config.keepalive {
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(idle)
                .with_interval(Duration::from_secs(10))
                .with_retries(6);
            let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        }
        Some(Accepted {
            stream,
            peer,
            permit,
        })
    }

    /// Counts the refusal, sends the door's refusal bytes (without waiting:
    /// a new socket's buffer is empty) and closes.
    fn refuse(&self, stream: &TcpStream, ip: std::net::IpAddr, reason: Reason) -> Option<Accepted> {
        self.inner.refused(ip, reason, false);
        let config = &self.inner.config;
        let refusal = match (reason, &config.denial) {
            (Reason::Full, _) | (_, None) => &config.refusal,
            (_, Some(denial)) => denial,
        };
        if let Refusal::Send(bytes) = refusal {
            let _ = stream.try_write(bytes);
            let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
        }
        None
    }

    /// Counts a failed accept and logs it, at most once per interval.
    fn failed(&self, on: &str, err: &std::io::Error) {
        self.inner.counters.failed.fetch_add(1, Ordering::Relaxed);
        let Ok(mut log) = self.inner.failures.lock() else {
            return;
        };
        let (last, quiet) = &mut *log;
        if last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            *quiet += 1;
            return;
        }
        let since = match *quiet {
            0 => String::new(),
            n => format!("; {n} more since the last report"),
        };
        tracing::warn!(
            "{}: accepting a connection on {on}: {} (the server goes on{since})",
            self.inner.config.name,
            describe(err)
        );
        *last = Some(Instant::now());
        *quiet = 0;
    }

    /// Runs [`Self::serve`] on a small runtime of its own on this thread,
    /// for servers whose work runs on threads; `handler` runs inside the
    /// runtime, so it may spawn tasks. Returns at shutdown.
    ///
    /// # Errors
    /// When the runtime cannot start or the listener cannot be registered.
    pub fn serve_blocking(
        &self,
        listener: std::net::TcpListener,
        handler: impl FnMut(Accepted),
    ) -> std::io::Result<()> {
        let runtime = runtime()?;
        runtime.block_on(async {
            let listener = to_tokio(listener)?;
            self.serve(listener, handler).await;
            Ok(())
        })
    }
}

/// A listener the door accepts on: TCP, or a Unix stream socket.
pub(super) trait Listening {
    /// What an accept gives.
    type Conn;
    /// The next connection.
    fn accept_next(&self) -> impl std::future::Future<Output = std::io::Result<Self::Conn>>;
    /// Where it listens, for a log line.
    fn describe(&self) -> String;
}

impl Listening for TcpListener {
    type Conn = (TcpStream, SocketAddr);
    fn accept_next(&self) -> impl std::future::Future<Output = std::io::Result<Self::Conn>> {
        self.accept()
    }
    fn describe(&self) -> String {
        self.local_addr()
            .map_or_else(|_| "a TCP socket".into(), |a| a.to_string())
    }
}

impl Door {
    /// Takes the first connection let in on `listener` and stops
    /// accepting (`listen` without `-k`, as nc closes its listener after
    /// one client): the stream comes back blocking, with its place.
    ///
    /// # Errors
    /// When the runtime cannot start, or the stream cannot be made blocking.
    pub fn accept_one(
        &self,
        listener: std::net::TcpListener,
    ) -> std::io::Result<(std::net::TcpStream, SocketAddr, super::Permit)> {
        let mut first = None;
        self.serve_blocking(listener, |accepted| {
            if first.is_none() {
                first =
                    Some(to_blocking(accepted.stream).map(|s| (s, accepted.peer, accepted.permit)));
                self.shutdown();
            }
        })?;
        first.unwrap_or_else(|| Err(std::io::ErrorKind::Interrupted.into()))
    }
}

/// A tokio listener from a std one (bound with sonde's backlog).
///
/// # Errors
/// When the socket cannot be made non-blocking or registered.
pub fn to_tokio(listener: std::net::TcpListener) -> std::io::Result<TcpListener> {
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// The runtime a blocking server's door runs on: one thread, for the
/// accept loop and the small tasks of connections still identifying
/// themselves.
///
/// # Errors
/// When the runtime cannot start.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Turns an accepted tokio stream into a blocking std one, for a thread.
///
/// # Errors
/// When the socket cannot be deregistered or made blocking.
pub fn to_blocking(stream: TcpStream) -> std::io::Result<std::net::TcpStream> {
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}
