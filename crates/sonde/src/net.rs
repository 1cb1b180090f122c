//! Addresses and sockets: parsing `HOST:PORT` forms, resolving names,
//! connecting to every resolved address in turn, and binding listeners that
//! accept IPv4 and IPv6 with a backlog large enough for bursts of connects.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::error::{Error, Result};

/// The listen backlog. The kernel default of 128 makes a burst of connects
/// wait for SYN retransmits (a second each); the kernel caps this at
/// `somaxconn`.
pub const LISTEN_BACKLOG: i32 = 4096;

pub mod proxy;
pub mod unix;

/// Which address families to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Family {
    /// Either; a listener with no address accepts both.
    #[default]
    Any,
    /// IPv4 only (`-4`).
    V4,
    /// IPv6 only (`-6`).
    V6,
}

impl Family {
    fn admits(self, addr: &SocketAddr) -> bool {
        match self {
            Self::Any => true,
            Self::V4 => addr.is_ipv4(),
            Self::V6 => addr.is_ipv6(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::V6 => "IPv6",
            _ => "IPv4",
        }
    }
}

/// Splits `HOST:PORT`, `[V6]:PORT` or `V4:PORT` into host and port.
///
/// # Errors
/// [`Error::Invalid`] when there is no port or it is not a number in range.
pub fn split_host_port(text: &str) -> Result<(String, u16)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| {
            Error::Invalid(format!("'{text}': missing ']' after an IPv6 address"))
        })?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| Error::Invalid(format!("'{text}': expected ':PORT' after ']'")))?;
        (host, port)
    } else {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| Error::Invalid(format!("'{text}': expected HOST:PORT")))?;
        if host.contains(':') {
            return Err(Error::Invalid(format!(
                "'{text}': write an IPv6 address in brackets, as [{host}]:{port}"
            )));
        }
        (host, port)
    };
    Ok((host.to_string(), parse_port(port)?))
}

/// Splits `HOST[:PORT]`, using `default_port` when no port is given.
///
/// # Errors
/// [`Error::Invalid`] when a given port is not a number in range.
pub fn split_host_default_port(text: &str, default_port: u16) -> Result<(String, u16)> {
    let bare_v6 = text.parse::<Ipv6Addr>().is_ok();
    let has_port = if text.starts_with('[') {
        text.contains("]:")
    } else {
        !bare_v6 && text.contains(':')
    };
    if has_port {
        return split_host_port(text);
    }
    let host = text.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), default_port))
}

/// Parses a port number.
///
/// # Errors
/// [`Error::Invalid`] when `text` is not a number from 0 to 65535.
pub fn parse_port(text: &str) -> Result<u16> {
    text.parse()
        .map_err(|_| Error::Invalid(format!("'{text}' is not a port number (0 to 65535)")))
}

/// Parses `ADDR[:PORT]` for a local (source) address; the port defaults to 0.
///
/// # Errors
/// [`Error::Invalid`] when the text is not an IP address, with or without a port.
pub fn parse_local_addr(text: &str) -> Result<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 0))
        .map_err(|_| Error::Invalid(format!("'{text}' is not an IP address (ADDR or ADDR:PORT)")))
}

/// Resolves `host` to socket addresses of the wanted family, in the
/// resolver's order.
///
/// # Errors
/// [`Error::Resolve`] when the name does not resolve, [`Error::NoAddress`]
/// when it has no address of the family.
pub fn resolve(host: &str, port: u16, family: Family) -> Result<Vec<SocketAddr>> {
    let all = (host, port)
        .to_socket_addrs()
        .map_err(|source| Error::Resolve {
            host: host.to_string(),
            cause: source,
        })?;
    let addrs: Vec<SocketAddr> = all.filter(|a| family.admits(a)).collect();
    if addrs.is_empty() {
        return Err(Error::NoAddress {
            host: host.to_string(),
            family: family.name(),
        });
    }
    Ok(addrs)
}

/// How to make an outgoing connection.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// Address families to try.
    pub family: Family,
    /// Local address (and port) to bind before connecting.
    pub source: Option<SocketAddr>,
    /// Give up on each address after this long.
    pub timeout: Option<Duration>,
    /// Bind to this network interface first (SO_BINDTODEVICE).
    pub device: Option<String>,
}

/// Connects over TCP to `host` port `port`, trying every resolved address in
/// turn until one answers; returns the stream and the address it reached
/// (known even if the peer resets the connection at once).
///
/// # Errors
/// [`Error::Resolve`]/[`Error::NoAddress`] for names, [`Error::Connect`]
/// listing each address's failure when none connects.
pub fn connect_tcp(
    host: &str,
    port: u16,
    opts: &ConnectOptions,
) -> Result<(TcpStream, SocketAddr)> {
    let family = source_family(opts);
    let addrs = resolve(host, port, family)?;
    let mut failures = Vec::new();
    for addr in addrs {
        match connect_one(addr, opts) {
            Ok(stream) => return Ok((stream, addr)),
            Err(err) => failures.push((addr, err)),
        }
    }
    Err(Error::Connect {
        target: display_target(host, port),
        failures,
    })
}

/// The family implied by a source address, else the one asked for.
fn source_family(opts: &ConnectOptions) -> Family {
    match opts.source {
        Some(SocketAddr::V4(_)) => Family::V4,
        Some(SocketAddr::V6(_)) => Family::V6,
        None => opts.family,
    }
}

fn connect_one(addr: SocketAddr, opts: &ConnectOptions) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(device) = &opts.device {
        socket.bind_device(Some(device.as_bytes()))?;
    }
    if let Some(source) = opts.source {
        socket.set_reuse_address(true)?;
        socket.bind(&SockAddr::from(source))?;
    }
    let target = SockAddr::from(addr);
    match opts.timeout {
        Some(limit) => socket.connect_timeout(&target, limit)?,
        None => socket.connect(&target)?,
    }
    Ok(socket.into())
}

/// Formats a host and port the way a user would type them.
pub fn display_target(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The local addresses to bind for `host` (or every interface when `None`):
/// with no host and [`Family::Any`], one IPv6 socket that also accepts IPv4.
///
/// # Errors
/// As [`resolve`].
pub fn local_addrs(host: Option<&str>, port: u16, family: Family) -> Result<Vec<SocketAddr>> {
    match host {
        Some(host) => resolve(host, port, family),
        None => Ok(vec![match family {
            Family::V4 => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port),
            Family::Any | Family::V6 => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
        }]),
    }
}

/// Binds a TCP listener on `addr` with `SO_REUSEADDR` and a large backlog.
/// An unspecified IPv6 address accepts IPv4 too unless `v6_only`.
///
/// # Errors
/// [`Error::Listen`] naming the address (in use, permission denied, ...).
pub fn listen_tcp(addr: SocketAddr, v6_only: bool) -> Result<TcpListener> {
    let wrap = |source| Error::Listen {
        addr,
        cause: source,
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(wrap)?;
    socket.set_reuse_address(true).map_err(wrap)?;
    if addr.is_ipv6() {
        socket.set_only_v6(v6_only).map_err(wrap)?;
    }
    socket.bind(&SockAddr::from(addr)).map_err(wrap)?;
    socket.listen(LISTEN_BACKLOG).map_err(wrap)?;
    Ok(socket.into())
}

/// Binds a UDP socket on `addr`; an unspecified IPv6 address accepts IPv4
/// too unless `v6_only`.
///
/// # Errors
/// [`Error::Listen`] naming the address.
pub fn bind_udp(addr: SocketAddr, v6_only: bool) -> Result<std::net::UdpSocket> {
    let wrap = |source| Error::Listen {
        addr,
        cause: source,
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(wrap)?;
    if addr.is_ipv6() {
        socket.set_only_v6(v6_only).map_err(wrap)?;
    }
    socket.bind(&SockAddr::from(addr)).map_err(wrap)?;
    Ok(socket.into())
}

/// Opens a UDP socket connected to the first resolved address of `host`
/// (UDP has no handshake, so there is nothing to try in turn).
///
/// # Errors
/// Resolution errors, or [`Error::Connect`] when the socket cannot be set up.
pub fn connect_udp(host: &str, port: u16, opts: &ConnectOptions) -> Result<std::net::UdpSocket> {
    let addrs = resolve(host, port, source_family(opts))?;
    let mut failures = Vec::new();
    for addr in addrs {
        let local = opts.source.unwrap_or_else(|| match addr {
            SocketAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
            SocketAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
        });
        let attempt = std::net::UdpSocket::bind(local).and_then(|s| s.connect(addr).map(|()| s));
        match attempt {
            Ok(socket) => return Ok(socket),
            Err(err) => failures.push((addr, err)),
        }
    }
    Err(Error::Connect {
        target: display_target(host, port),
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_host_port_forms() {
        let split = |s| split_host_port(s).expect("valid form");
        assert_eq!(split("localhost:80"), ("localhost".into(), 80));
        assert_eq!(split("127.0.0.1:9000"), ("127.0.0.1".into(), 9000));
        assert_eq!(split("[::1]:5201"), ("::1".into(), 5201));
        assert!(split_host_port("::1:80").is_err());
        assert!(split_host_port("host:99999").is_err());
        assert!(split_host_port("host").is_err());
    }

    #[test]
    fn default_port_applies_only_without_one() {
        let split = |s| split_host_default_port(s, 7).expect("valid form");
        assert_eq!(split("example"), ("example".into(), 7));
        assert_eq!(split("::1"), ("::1".into(), 7));
        assert_eq!(split("[::1]"), ("::1".into(), 7));
        assert_eq!(split("[::1]:9"), ("::1".into(), 9));
        assert_eq!(split("a:9"), ("a".into(), 9));
    }

    #[test]
    fn local_addr_port_is_optional() {
        assert_eq!(
            parse_local_addr("127.0.0.2").expect("ip"),
            "127.0.0.2:0".parse().expect("literal")
        );
        assert_eq!(
            parse_local_addr("[::1]:4000").expect("ip and port"),
            "[::1]:4000".parse().expect("literal")
        );
        assert!(parse_local_addr("nope").is_err());
    }

    #[test]
    fn refused_connect_names_the_address() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("bound").port();
        drop(listener);
        let err = connect_tcp("127.0.0.1", port, &ConnectOptions::default())
            .expect_err("nothing listens");
        assert_eq!(
            err.to_string(),
            format!("connecting to 127.0.0.1:{port}: connection refused")
        );
    }
}
