//! Unix domain stream sockets: where one lives (a file, or a name in
//! Linux's abstract namespace), connecting, and binding with the rule a
//! listener needs: a socket file left by a server that has gone is
//! replaced, but one a live server still answers on is refused.

use std::fmt;
use std::io::ErrorKind;
use std::os::unix::net::{UnixListener, UnixStream};

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

/// Connects to a Unix stream socket, a file or an abstract name.
pub fn connect(path: &UnixPath) -> Result<UnixStream> {
    let what = || format!("connecting to unix:{path}");
    match path {
        UnixPath::File(file) => UnixStream::connect(file).map_err(|e| Error::io(what(), e)),
        UnixPath::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .map_err(|e| Error::io(what(), e))?;
            UnixStream::connect_addr(&addr).map_err(|e| Error::io(what(), e))
        }
    }
}

/// Binds a Unix stream socket at `path`. A file left there by a server
/// that has gone (nothing answers on it) is replaced; one a live server
/// answers on, or anything that is not a socket, is refused.
///
/// # Errors
/// [`Error::Invalid`] for a live socket or a file in the way;
/// [`Error::Io`] when binding fails.
pub fn bind(path: &UnixPath) -> Result<UnixListener> {
    let what = || format!("listening on unix:{path}");
    let file = match path {
        UnixPath::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .map_err(|e| Error::io(what(), e))?;
            return UnixListener::bind_addr(&addr).map_err(|e| Error::io(what(), e));
        }
        UnixPath::File(file) => file,
    };
    match UnixListener::bind(file) {
        Ok(listener) => return Ok(listener),
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
    if UnixStream::connect(file).is_ok() {
        return Err(Error::Invalid(format!(
            "{}: a server is running on it (stop it first)",
            what()
        )));
    }
    // Nobody answers: a socket left by a server that has gone.
    std::fs::remove_file(file).map_err(|e| Error::io(what(), e))?;
    UnixListener::bind(file).map_err(|e| Error::io(what(), e))
}
