//! The cap on open connections: a permit per connection, released when it
//! drops (a task that ends or panics, a thread that returns or unwinds),
//! and the queue of connections that have not yet identified themselves,
//! oldest first, which make room for newcomers when the cap is full.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::access::{Gate, Reason, RefusalLog};
use super::{Counters, DoorConfig};

/// What every permit of one door shares.
pub(super) struct Inner {
    pub(super) config: DoorConfig,
    pub(super) counters: Arc<Counters>,
    pub(super) shutdown: CancellationToken,
    /// Woken when the last permit goes (the drain waits for it).
    all_closed: tokio::sync::Notify,
    /// Connections still to identify themselves, by arrival.
    waiting: Mutex<Waiting>,
    /// When a failed accept was last logged, and how many since.
    pub(super) failures: Mutex<(Option<Instant>, u64)>,
    /// The access rules in force.
    pub(super) gate: Gate,
    /// Refusals since the last report, and when that was.
    pub(super) refusals: Mutex<(Instant, RefusalLog)>,
    /// Memory to give back when a crowd of connections has left.
    trim: super::memory::Trim,
}

#[derive(Default)]
struct Waiting {
    next: u64,
    queue: BTreeMap<u64, CancellationToken>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Door")
            .field("config", &self.config)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Inner {
    pub(super) fn new(config: DoorConfig, counters: Arc<Counters>) -> Self {
        super::memory::few_arenas();
        Self {
            gate: Gate::new(config.rules.clone()),
            refusals: Mutex::new((Instant::now(), RefusalLog::default())),
            config,
            counters,
            shutdown: CancellationToken::new(),
            all_closed: tokio::sync::Notify::new(),
            waiting: Mutex::default(),
            failures: Mutex::new((None, 0)),
            trim: super::memory::Trim::default(),
        }
    }

    /// Takes a place if one is free.
    fn take(&self) -> bool {
        let cap = self.config.max_connections as u64;
        let active = &self.counters.active;
        let mut now = active.load(Ordering::Relaxed);
        loop {
            if now >= cap {
                return false;
            }
            match active.compare_exchange_weak(now, now + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    self.counters.peak.fetch_max(now + 1, Ordering::Relaxed);
                    self.trim.saw(now + 1);
                    return true;
                }
                Err(seen) => now = seen,
            }
        }
    }

    /// Closes the oldest connection still to identify itself and takes
    /// its place at once (it gives its permit back as soon as its task
    /// sees the eviction, so the count is over the cap only that long).
    fn take_from_oldest(&self) -> bool {
        let oldest = self
            .waiting
            .lock()
            .ok()
            .and_then(|mut w| w.queue.pop_first().map(|(_, token)| token));
        let Some(token) = oldest else { return false };
        token.cancel();
        self.counters.evicted.fetch_add(1, Ordering::Relaxed);
        let now = self.counters.active.fetch_add(1, Ordering::AcqRel) + 1;
        self.counters.peak.fetch_max(now, Ordering::Relaxed);
        true
    }

    /// Counts a refusal (of a connection, or a datagram) for the next
    /// report.
    pub(super) fn refused(&self, ip: std::net::IpAddr, reason: Reason, datagram: bool) {
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        self.counters.refused_by[reason as usize].fetch_add(1, Ordering::Relaxed);
        if let Ok(mut log) = self.refusals.lock() {
            log.1.add(ip, reason, datagram);
        }
    }

    /// Logs the refusals gathered since the last report, if any.
    pub(super) fn report_refusals(&self) {
        let lines = match self.refusals.lock() {
            Ok(mut log) => {
                let since = std::mem::replace(&mut log.0, Instant::now());
                let cap = self.config.max_connections;
                log.1
                    .report(since.elapsed(), |reason| self.gate.why(reason, cap))
            }
            Err(_) => return,
        };
        for line in lines {
            tracing::warn!("{}: {line}", self.config.name);
        }
        self.gate.tidy();
    }

    fn release(&self) {
        let was = self.counters.active.fetch_sub(1, Ordering::AcqRel);
        if was == 1 {
            self.all_closed.notify_waiters();
        }
        self.trim.left(was - 1);
    }

    pub(super) async fn drained(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.all_closed.notified();
            tokio::pin!(notified);
            // Registered before the count is read, so no wake-up is lost.
            notified.as_mut().enable();
            if self.counters.active.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }
}

/// One open connection's place under the cap. Dropping it gives the place
/// back, on every path: a task that ends, fails or panics drops it, and so
/// does a thread that returns or unwinds.
#[derive(Debug)]
pub struct Permit {
    inner: Arc<Inner>,
    /// The source address counted under `--max-per-ip` (boxed: an idle
    /// echo task must stay in the smallest task cell).
    ip: Option<Box<std::net::IpAddr>>,
}

impl Permit {
    pub(super) fn try_new(inner: &Arc<Inner>) -> Option<Self> {
        inner.take().then(|| Self {
            inner: Arc::clone(inner),
            ip: None,
        })
    }

    /// A place taken from the oldest unidentified connection, when the cap
    /// is full and there is one.
    pub(super) fn from_oldest(inner: &Arc<Inner>) -> Option<Self> {
        inner.take_from_oldest().then(|| Self {
            inner: Arc::clone(inner),
            ip: None,
        })
    }

    /// Marks the place as one of `ip`'s, already counted by the gate:
    /// given back with the permit.
    pub(super) fn held_by(mut self, ip: std::net::IpAddr) -> Self {
        self.ip = Some(Box::new(ip));
        self
    }

    /// Marks the connection as not yet identified until the guard drops:
    /// when the cap is full, a newcomer may take its place, and
    /// [`Unidentified::evicted`] then completes.
    pub fn unidentified(&self) -> Unidentified {
        let token = CancellationToken::new();
        let id = match self.inner.waiting.lock() {
            Ok(mut w) => {
                w.next += 1;
                let id = w.next;
                w.queue.insert(id, token.clone());
                id
            }
            Err(_) => 0,
        };
        Unidentified {
            inner: Arc::clone(&self.inner),
            id,
            token,
        }
    }

    /// Runs `work` on a thread of its own that holds this permit; the
    /// place is given back when `work` returns or panics.
    ///
    /// # Errors
    /// When the thread cannot be started (the permit is then released).
    pub fn spawn_thread(
        self,
        name: &str,
        work: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let _permit = self;
                work();
            })
            .map(drop)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(ip) = self.ip.take() {
            self.inner.gate.release(*ip);
        }
        self.inner.release();
    }
}

/// A connection's mark as still to identify itself; see
/// [`Permit::unidentified`].
#[derive(Debug)]
pub struct Unidentified {
    inner: Arc<Inner>,
    id: u64,
    token: CancellationToken,
}

impl Unidentified {
    /// Completes when a newcomer took this connection's place.
    pub fn evicted(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// Cancelled when a newcomer takes this connection's place, for a
    /// connection that drops the mark elsewhere than it waits.
    pub fn eviction(&self) -> CancellationToken {
        self.token.clone()
    }
}

impl Drop for Unidentified {
    fn drop(&mut self) {
        if let Ok(mut w) = self.inner.waiting.lock() {
            w.queue.remove(&self.id);
        }
    }
}
