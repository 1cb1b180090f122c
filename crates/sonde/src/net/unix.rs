//! Unix domain stream sockets: where one lives (a file, or a name in
//! Linux's abstract namespace), connecting, and binding with the rule a
//! listener needs: a socket file left by a server that has gone is
//! replaced, but one a live server still answers on is refused.

use std::fmt;
use std::io::ErrorKind;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};

use crate::error::{Error, Result};

/// Where a Unix socket lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnixPath {
    /// A file in the file system.
    File(std::path::PathBuf),
    /// A name in Linux's abstract namespace (`@name`).
    Abstract(String),
}

impl fmt::Display for UnixPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Abstract(name) => write!(f, "@{name}"),
        }
    }
}

impl UnixPath {
    /// A name of this process's own in the abstract namespace,
    /// `PREFIX-PID-RANDOM`: nothing else will bind it, and no file is
    /// left behind.
    pub fn own(prefix: &str) -> Self {
        let mut random = [0u8; 8];
        let _ = rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty());
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        Self::Abstract(format!("{prefix}-{}-{hex}", std::process::id()))
    }

    /// A path as the command line gives it: `@NAME` is a name in the
    /// abstract namespace, anything else a file; `None` for nothing.
    pub fn parse(text: &str) -> Option<Self> {
        match text.strip_prefix('@') {
            Some(name) if !name.is_empty() => Some(Self::Abstract(name.into())),
            _ if text.is_empty() => None,
            _ => Some(Self::File(text.into())),
        }
    }

    /// Where a socket address lives: `None` for an unnamed socket.
    pub fn of(addr: &std::os::unix::net::SocketAddr) -> Option<Self> {
        use std::os::linux::net::SocketAddrExt;
        if let Some(path) = addr.as_pathname() {
            return Some(Self::File(path.into()));
        }
        addr.as_abstract_name()
            .map(|name| Self::Abstract(String::from_utf8_lossy(name).into_owned()))
    }

    /// The socket address to connect or send to.
    ///
    /// # Errors
    /// When the path is too long for a socket address.
    pub fn addr(&self) -> std::io::Result<std::os::unix::net::SocketAddr> {
        use std::os::linux::net::SocketAddrExt;
        match self {
            Self::File(path) => std::os::unix::net::SocketAddr::from_pathname(path),
            Self::Abstract(name) => {
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            }
        }
    }
}

/// A bound socket's file, removed when this is dropped (an abstract name
/// has none): a server's socket goes with the server.
#[derive(Debug)]
pub struct SocketFile(Option<std::path::PathBuf>);

impl SocketFile {
    /// The file of the socket bound at `path`.
    pub fn of(path: &UnixPath) -> Self {
        match path {
            UnixPath::File(file) => Self(Some(file.clone())),
            UnixPath::Abstract(_) => Self(None),
        }
    }

    /// The file, if the socket has one.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.0.as_deref()
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Some(file) = &self.0 {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Connects to a Unix stream socket, a file or an abstract name.
pub fn connect(path: &UnixPath) -> Result<UnixStream> {
    let what = || format!("connecting to unix:{path}");
    let addr = path.addr().map_err(|e| Error::io(what(), e))?;
    UnixStream::connect_addr(&addr).map_err(|e| Error::io(what(), e))
}

/// Binds a Unix stream socket at `path`. A file left there by a server
/// that has gone (nothing answers on it) is replaced; one a live server
/// answers on, or anything that is not a socket, is refused.
///
/// # Errors
/// [`Error::Invalid`] for a live socket or a file in the way;
/// [`Error::Io`] when binding fails.
pub fn bind(path: &UnixPath) -> Result<UnixListener> {
    bind_with(path, UnixListener::bind_addr, |file| {
        UnixStream::connect(file).is_ok()
    })
}

/// [`bind`] for a Unix datagram socket (`listen -uU`): the same rule, a
/// live server being one a datagram socket can connect to.
///
/// # Errors
/// As [`bind`].
pub fn bind_datagram(path: &UnixPath) -> Result<UnixDatagram> {
    bind_with(path, UnixDatagram::bind_addr, |file| {
        UnixDatagram::unbound().is_ok_and(|probe| probe.connect(file).is_ok())
    })
}

/// A Unix datagram socket connected to `path` (`connect -uU`), bound to a
/// name of its own in the abstract namespace so the server can answer
/// (nc binds a file under /tmp for it; an abstract name leaves nothing).
///
/// # Errors
/// [`Error::Io`] when binding or connecting fails.
pub fn connect_datagram(path: &UnixPath) -> Result<UnixDatagram> {
    let what = || format!("connecting to unix:{path}");
    let own = UnixPath::own("sonde")
        .addr()
        .map_err(|e| Error::io(what(), e))?;
    let sock = UnixDatagram::bind_addr(&own).map_err(|e| Error::io(what(), e))?;
    let to = path.addr().map_err(|e| Error::io(what(), e))?;
    sock.connect_addr(&to).map_err(|e| Error::io(what(), e))?;
    Ok(sock)
}

/// Binds with `bind` at `path`, replacing a socket file nobody answers on
/// (`live` says whether someone does).
fn bind_with<T>(
    path: &UnixPath,
    bind: impl Fn(&std::os::unix::net::SocketAddr) -> std::io::Result<T>,
    live: impl Fn(&std::path::Path) -> bool,
) -> Result<T> {
    let what = || format!("listening on unix:{path}");
    let addr = path.addr().map_err(|e| Error::io(what(), e))?;
    let file = match path {
        UnixPath::Abstract(_) => return bind(&addr).map_err(|e| Error::io(what(), e)),
        UnixPath::File(file) => file,
    };
    match bind(&addr) {
        Ok(bound) => return Ok(bound),
        Err(e) if e.kind() != ErrorKind::AddrInUse => return Err(Error::io(what(), e)),
        Err(_) => {}
    }
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_socket());
    if !is_socket {
        return Err(Error::Invalid(format!(
            "{}: {} is there and is not a socket",
            what(),
            file.display()
        )));
    }
    if live(file) {
        return Err(Error::Invalid(format!(
            "{}: a server is running on it (stop it first)",
            what()
        )));
    }
    // Nobody answers: a socket left by a server that has gone.
    std::fs::remove_file(file).map_err(|e| Error::io(what(), e))?;
    bind(&addr).map_err(|e| Error::io(what(), e))
}
