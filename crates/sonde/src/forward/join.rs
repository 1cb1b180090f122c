//! Two connected sockets joined: each direction on its own thread, moved
//! with splice(2) where the kernel allows (the pump chooses), and at the
//! end of one direction its far side is half-closed, so half-close
//! passes through. A failed direction cuts both; an idle limit, when
//! set, closes a relay in which nothing moved either way for that long.

use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
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

/// Moves bytes both ways between `a` (FROM) and `b` (TO) until each
/// direction has ended and been passed on as a half-close.
///
/// # Errors
/// [`Error::Io`] naming the direction that failed, [`Error::IdleTimeout`].
pub fn join(a: Sock, b: Sock, name: &str, idle: Option<Duration>) -> Result<Moved> {
    let activity = Activity::new();
    let (tx, rx) = mpsc::channel();
    let start = |src: &Sock, dst: &Sock, forward: bool| -> Result<()> {
        let (src, dst) = (copy(src)?, copy(dst)?);
        let (tx, activity) = (tx.clone(), activity.clone());
        std::thread::Builder::new()
            .name("sonde-relay-pump".into())
            .spawn(move || {
                let moved =
                    pump::pump(src.as_fd(), dst.as_fd(), &mut Filters::default(), &activity);
                // Passed on: the far side learns this direction is over.
                let _ = dst.shut(Shutdown::Write);
                let _ = tx.send(if forward {
                    Done::Forward(moved)
                } else {
                    Done::Back(moved)
                });
            })
            .map(drop)
            .map_err(|e| Error::io("starting a relay thread", e))
    };
    start(&a, &b, true)?;
    start(&b, &a, false)?;
    drop(tx);
    let cut = |a: &Sock, b: &Sock| {
        let _ = a.shut(Shutdown::Both);
        let _ = b.shut(Shutdown::Both);
    };
    let mut moved = Moved::default();
    let mut left = 2;
    while left > 0 {
        let wait = idle.map(|limit| {
            (activity.last() + limit).saturating_duration_since(std::time::Instant::now())
        });
        let done = match wait {
            Some(wait) => rx.recv_timeout(wait),
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match done {
            Ok(Done::Forward(Ok(n))) => moved.forward = n,
            Ok(Done::Back(Ok(n))) => moved.back = n,
            Ok(Done::Forward(Err(e)) | Done::Back(Err(e))) => {
                cut(&a, &b);
                let e = match e {
                    PumpError::Read(e) | PumpError::Write(e) => e,
                };
                return Err(Error::io(format!("relaying for {name}"), e));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(limit) = idle
                    && activity.last().elapsed() >= limit
                {
                    cut(&a, &b);
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
    cut(&a, &b);
    Ok(moved)
}

fn copy(sock: &Sock) -> Result<Sock> {
    sock.duplicate()
        .map_err(|e| Error::io("duplicating a socket", e))
}
