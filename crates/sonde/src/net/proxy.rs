//! Connecting through a proxy, as ncat's `--proxy` does: SOCKS5 (RFC
//! 1928, with RFC 1929's user and password), SOCKS4 (and 4a for a name
//! the proxy resolves) through `tokio-socks`, and HTTP CONNECT. The
//! connection to the proxy is made as any other (every address, the
//! timeout); the handshake has its own deadline; what comes back is a
//! plain blocking stream to the target, ready for a relay or TLS.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use base64::Engine;

use super::{ConnectOptions, Family, connect_tcp, resolve};
use crate::error::{Error, Result};

/// A handshake that does not finish within this (when no connect
/// timeout is given) fails.
pub const HANDSHAKE: Duration = Duration::from_secs(10);

/// Which protocol the proxy speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// SOCKS version 5.
    Socks5,
    /// SOCKS version 4 (4a for a name the proxy resolves).
    Socks4,
    /// An HTTP proxy's CONNECT.
    Http,
}

impl Kind {
    /// The port a proxy of this kind listens on unless told (ncat's).
    pub fn default_port(self) -> u16 {
        match self {
            Self::Socks5 | Self::Socks4 => 1080,
            Self::Http => 3128,
        }
    }
}

/// Where the target's name is resolved (ncat's `--proxy-dns`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dns {
    /// Here; a name that does not resolve is an error.
    Local,
    /// By the proxy: the name is sent as it is.
    #[default]
    Remote,
    /// Here first, by the proxy when it does not resolve here.
    Both,
    /// Nowhere: the target must be an address.
    None,
}

/// A proxy to connect through.
#[derive(Clone, Debug)]
pub struct Proxy {
    /// The proxy's host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Its protocol.
    pub kind: Kind,
    /// User and password (SOCKS4: the user id alone).
    pub auth: Option<(String, String)>,
    /// Where the target's name is resolved.
    pub dns: Dns,
}

/// The target as the proxy is told it: an address, or a name for it to
/// resolve.
fn target(proxy: &Proxy, host: &str, port: u16, family: Family) -> Result<(String, u16)> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok((host.to_string(), port));
    }
    let local = || resolve(host, port, family).map(|a| (a[0].ip().to_string(), port));
    match proxy.dns {
        Dns::Remote => Ok((host.to_string(), port)),
        Dns::Local => local(),
        Dns::Both => Ok(local().unwrap_or_else(|_| (host.to_string(), port))),
        Dns::None => Err(Error::Invalid(format!(
            "--proxy-dns none: {host} is a name, not an address"
        ))),
    }
}

/// Connects to `host`:`port` through `proxy`; the stream and the proxy's
/// address.
///
/// # Errors
/// [`Error::Connect`] when the proxy cannot be reached; [`Error::Invalid`]
/// naming the proxy and the target when it refuses, or its handshake
/// does not finish in time.
pub fn connect(
    proxy: &Proxy,
    host: &str,
    port: u16,
    opts: &ConnectOptions,
) -> Result<(TcpStream, SocketAddr)> {
    let (stream, at) = connect_tcp(&proxy.host, proxy.port, opts)?;
    let _ = stream.set_nodelay(true);
    let (to_host, to_port) = target(proxy, host, port, opts.family)?;
    let limit = opts.timeout.unwrap_or(HANDSHAKE);
    let fail =
        |why: String| Error::Invalid(format!("through the proxy {at} to {host}:{port}: {why}"));
    let stream = match proxy.kind {
        Kind::Http => http_connect(stream, &to_host, to_port, proxy.auth.as_ref(), limit),
        Kind::Socks5 | Kind::Socks4 => socks(stream, proxy, (&to_host, to_port), limit),
    }
    .map_err(fail)?;
    Ok((stream, at))
}

/// The SOCKS handshake on a small runtime of its own, then the stream
/// back as a blocking one.
fn socks(
    stream: TcpStream,
    proxy: &Proxy,
    (host, port): (&str, u16),
    limit: Duration,
) -> std::result::Result<TcpStream, String> {
    use tokio_socks::tcp::{Socks4Stream, Socks5Stream};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        let socket = tokio::net::TcpStream::from_std(stream).map_err(|e| e.to_string())?;
        let target = (host, port);
        let auth = proxy.auth.as_ref();
        let handshake = async {
            let inner = match (proxy.kind, auth) {
                (Kind::Socks5, None) => Socks5Stream::connect_with_socket(socket, target)
                    .await
                    .map(Socks5Stream::into_inner),
                (Kind::Socks5, Some((user, pass))) => {
                    Socks5Stream::connect_with_password_and_socket(socket, target, user, pass)
                        .await
                        .map(Socks5Stream::into_inner)
                }
                (_, None) => Socks4Stream::connect_with_socket(socket, target)
                    .await
                    .map(Socks4Stream::into_inner),
                (_, Some((user, _))) => {
                    Socks4Stream::connect_with_userid_and_socket(socket, target, user)
                        .await
                        .map(Socks4Stream::into_inner)
                }
            };
            inner.map_err(|e| e.to_string())
        };
        let socket = tokio::time::timeout(limit, handshake)
            .await
            .map_err(|_| format!("no answer within {:.1} s", limit.as_secs_f64()))??;
        let std = socket.into_std().map_err(|e| e.to_string())?;
        std.set_nonblocking(false).map_err(|e| e.to_string())?;
        Ok(std)
    })
}

/// The most an HTTP proxy's answer to CONNECT may hold.
const MOST_HEADERS: usize = 16 * 1024;

/// `CONNECT host:port`, and the proxy's answer read to its blank line a
/// byte at a time (what follows it is the target's, not ours to read).
fn http_connect(
    mut stream: TcpStream,
    host: &str,
    port: u16,
    auth: Option<&(String, String)>,
    limit: Duration,
) -> std::result::Result<TcpStream, String> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some((user, pass)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    let io = |e: std::io::Error| crate::error::describe(&e);
    stream.set_read_timeout(Some(limit)).map_err(io)?;
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() >= MOST_HEADERS {
            return Err(format!("an answer of more than {MOST_HEADERS} bytes"));
        }
        match stream.read(&mut byte) {
            Ok(0) => return Err("the proxy closed the connection".into()),
            Ok(_) => answer.push(byte[0]),
            Err(e) => return Err(io(e)),
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    response
        .parse(&answer)
        .map_err(|e| format!("not an HTTP answer ({e})"))?;
    match response.code {
        Some(200..=299) => {}
        Some(code) => {
            let reason = response.reason.unwrap_or("");
            return Err(format!("the proxy answered {code} {reason}"));
        }
        None => return Err("not an HTTP answer".into()),
    }
    stream.set_read_timeout(None).map_err(io)?;
    Ok(stream)
}
