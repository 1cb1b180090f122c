//! What a transfer's connection runs on: the TCP stream itself, or the
//! local end of a socket pair whose other end a protecting layer (a TLS
//! session, or the code phrase's AEAD) runs on its own thread. The
//! transfer reads and writes either the same way, `sendfile` included.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// A transfer connection's byte stream.
#[derive(Debug)]
pub(crate) enum Carrier {
    /// Plain TCP.
    Tcp(TcpStream),
    /// Plaintext to and from a protecting layer.
    Local(UnixStream),
}

impl Carrier {
    pub(crate) fn try_clone(&self) -> io::Result<Carrier> {
        Ok(match self {
            Carrier::Tcp(s) => Carrier::Tcp(s.try_clone()?),
            Carrier::Local(s) => Carrier::Local(s.try_clone()?),
        })
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Carrier::Tcp(s) => s.shutdown(how),
            Carrier::Local(s) => s.shutdown(how),
        }
    }

    pub(crate) fn set_read_timeout(&self, limit: Option<Duration>) -> io::Result<()> {
        match self {
            Carrier::Tcp(s) => s.set_read_timeout(limit),
            Carrier::Local(s) => s.set_read_timeout(limit),
        }
    }

    pub(crate) fn set_write_timeout(&self, limit: Option<Duration>) -> io::Result<()> {
        match self {
            Carrier::Tcp(s) => s.set_write_timeout(limit),
            Carrier::Local(s) => s.set_write_timeout(limit),
        }
    }

    /// Control messages wait for replies: Nagle must never hold them
    /// (a local socket has no Nagle; its layer sets it on the network).
    pub(crate) fn set_nodelay(&self) -> io::Result<()> {
        match self {
            Carrier::Tcp(s) => s.set_nodelay(true),
            Carrier::Local(_) => Ok(()),
        }
    }
}

impl Read for &Carrier {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match *self {
            Carrier::Tcp(s) => (&*s).read(buf),
            Carrier::Local(s) => (&*s).read(buf),
        }
    }
}

impl Read for Carrier {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for &Carrier {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match *self {
            Carrier::Tcp(s) => (&*s).write(buf),
            Carrier::Local(s) => (&*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for Carrier {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Carrier {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Carrier::Tcp(s) => s.as_fd(),
            Carrier::Local(s) => s.as_fd(),
        }
    }
}
