//! Two connected sockets joined: each direction on its own thread, moved
//! with splice(2) where the kernel allows (the pump chooses), and at the
//! end of one direction its far side is half-closed, so half-close
//! passes through. A failed direction cuts both; an idle limit, when
//! set, closes a relay in which nothing moved either way for that long.

use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::talk::pump::{self, Activity, Filters, PumpError};
use crate::talk::relay::Duplex;

/// A connected stream socket of either family.
#[derive(Debug)]
pub enum Sock {
    /// TCP.
    Tcp(TcpStream),
    /// A Unix stream socket (also the plaintext end of a TLS session).
    Unix(UnixStream),
}

impl AsFd for Sock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Tcp(s) => s.as_fd(),
            Self::Unix(s) => s.as_fd(),
        }
    }
}

impl Duplex for Sock {
    fn duplicate(&self) -> std::io::Result<Self> {
        Ok(match self {
            Self::Tcp(s) => Self::Tcp(s.try_clone()?),
            Self::Unix(s) => Self::Unix(s.try_clone()?),
        })
    }
    fn shut(&self, how: Shutdown) -> std::io::Result<()> {
        match self {
            Self::Tcp(s) => s.shutdown(how),
            Self::Unix(s) => s.shutdown(how),
        }
    }
}

/// What a relay moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// From FROM to TO.
    pub forward: u64,
    /// From TO back to FROM.
    pub back: u64,
}

enum Done {
    Forward(Result<u64, PumpError>),
    Back(Result<u64, PumpError>),
}

/// Runs a piece of blocking work on a thread: a new one, or one of a
/// pool's (a server relaying many short connections reuses its threads).
pub type Spawn = dyn Fn(Box<dyn FnOnce() + Send + 'static>) -> std::io::Result<()> + Sync;

/// Runs `work` on a new thread.
///
/// # Errors
/// When the thread cannot be started.
pub fn new_thread(work: Box<dyn FnOnce() + Send + 'static>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sonde-relay-pump".into())
        .spawn(work)
        .map(drop)
}

/// Moves bytes both ways between `a` (FROM) and `b` (TO), each direction
/// on a thread from `spawn`, until each has ended and been passed on as a
/// half-close.
///
/// # Errors
/// [`Error::Io`] naming the direction that failed, [`Error::IdleTimeout`].
pub fn join(a: Sock, b: Sock, name: &str, idle: Option<Duration>, spawn: &Spawn) -> Result<Moved> {
    let activity = Activity::new();
    let (tx, rx) = mpsc::channel();
    // Shared, not duplicated: a descriptor fewer per direction, and no
    // dup to fail for want of one once a direction runs.
    let (a, b) = (Arc::new(a), Arc::new(b));
    let start = |src: &Arc<Sock>, dst: &Arc<Sock>, forward: bool| -> Result<()> {
        let (src, dst) = (Arc::clone(src), Arc::clone(dst));
        let (tx, activity) = (tx.clone(), activity.clone());
        spawn(Box::new(move || {
            let moved = pump::pump(src.as_fd(), dst.as_fd(), &mut Filters::default(), &activity);
            if moved.is_ok() {
                // Passed on: the far side learns this direction is over.
                let _ = dst.shut(Shutdown::Write);
            } else {
                // Cut: the other direction, blocked reading, ends too.
                let _ = src.shut(Shutdown::Both);
                let _ = dst.shut(Shutdown::Both);
            }
            let _ = tx.send(if forward {
                Done::Forward(moved)
            } else {
                Done::Back(moved)
            });
        }))
        .map_err(|e| Error::io("starting a relay thread", e))
    };
    start(&b, &a, false)?;
    let Some(limit) = idle else {
        // Nothing to watch: this thread moves the forward direction
        // itself (one thread and one wake-up fewer per client).
        drop(tx);
        return forward_here(&a, &b, &rx, &activity, name);
    };
    if let Err(e) = start(&a, &b, true) {
        // The direction already running must not hold both sockets open.
        cut(&a, &b);
        return Err(e);
    }
    drop(tx);
    let watched = watch(&rx, &activity, limit, name);
    cut(&a, &b);
    watched
}

/// Shuts both sockets both ways: whatever direction still runs ends.
fn cut(a: &Sock, b: &Sock) {
    let _ = a.shut(Shutdown::Both);
    let _ = b.shut(Shutdown::Both);
}

/// The forward direction on this thread, then the back direction's end.
fn forward_here(
    a: &Sock,
    b: &Sock,
    rx: &mpsc::Receiver<Done>,
    activity: &Activity,
    name: &str,
) -> Result<Moved> {
    let forward = pump::pump(a.as_fd(), b.as_fd(), &mut Filters::default(), activity);
    match forward {
        Ok(_) => {
            let _ = b.shut(Shutdown::Write);
        }
        Err(_) => cut(a, b),
    }
    let back = match rx.recv() {
        Ok(Done::Back(back)) => back,
        _ => Ok(0),
    };
    cut(a, b);
    match (forward, back) {
        (Ok(forward), Ok(back)) => Ok(Moved { forward, back }),
        (Err(e), _) | (_, Err(e)) => Err(pump_error(name, e)),
    }
}

/// Waits for both directions, ending the relay when one fails or nothing
/// moved either way for `limit`; the caller cuts both sockets after.
fn watch(
    rx: &mpsc::Receiver<Done>,
    activity: &Activity,
    limit: Duration,
    name: &str,
) -> Result<Moved> {
    let mut moved = Moved::default();
    let mut left = 2;
    while left > 0 {
        let wait = (activity.last() + limit).saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Done::Forward(Ok(n))) => moved.forward = n,
            Ok(Done::Back(Ok(n))) => moved.back = n,
            Ok(Done::Forward(Err(e)) | Done::Back(Err(e))) => return Err(pump_error(name, e)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if activity.last().elapsed() >= limit {
                    return Err(Error::IdleTimeout {
                        what: format!("relay for {name}"),
                        after: limit,
                    });
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        left -= 1;
    }
    Ok(moved)
}

fn pump_error(name: &str, e: PumpError) -> Error {
    let e = match e {
        PumpError::Read(e) | PumpError::Write(e) => e,
    };
    Error::io(format!("relaying for {name}"), e)
}
