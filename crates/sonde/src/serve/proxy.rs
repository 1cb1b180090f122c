//! `sonde serve socks5` and `sonde serve http-proxy`: proxies that are
//! never open by accident. SOCKS5 (RFC 1928 CONNECT and UDP ASSOCIATE,
//! RFC 1929 user and password) speaks through `fast-socks5`'s server
//! state machine; HTTP is CONNECT only, its request parsed by `httparse`.
//! Every destination, stream or datagram, is checked against the egress
//! rules first (`--allow-dest`; loopback only unless told), after its name
//! is resolved, so a name cannot smuggle a forbidden address past them.
//! Each phase before the tunnel has a deadline.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use fast_socks5::server::{Socks5ServerProtocol, run_udp_proxy_custom};
use fast_socks5::util::target_addr::TargetAddr;
use fast_socks5::{ReplyError, Socks5Command};
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::Ctx;

/// Time a client has for its greeting and request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a destination has to accept the connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a proxy lets through, and whom.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Destinations allowed; none other is reached.
    pub allow_dest: Vec<IpNet>,
    /// Users and their passwords; empty: no authentication asked.
    pub users: HashMap<String, String>,
}

impl Default for ProxyConfig {
    /// Loopback only, no authentication.
    fn default() -> Self {
        Self {
            allow_dest: loopback(),
            users: HashMap::new(),
        }
    }
}

/// 127.0.0.0/8 and ::1.
pub fn loopback() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

impl ProxyConfig {
    /// Whether `ip` may be reached.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allow_dest.iter().any(|net| net.contains(&ip))
    }

    fn password_ok(&self, user: &str, pass: &str) -> bool {
        self.users.get(user).is_some_and(|p| p == pass)
    }
}

/// Users from an auth file's text: `USER:PASSWORD` a line, `#` comments.
///
/// # Errors
/// The first line that is not `USER:PASSWORD`, by number.
pub fn parse_users(text: &str) -> Result<HashMap<String, String>, String> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((user, pass)) if !user.is_empty() => {
                users.insert(user.to_string(), pass.to_string());
            }
            _ => return Err(format!("line {}: not USER:PASSWORD", i + 1)),
        }
    }
    Ok(users)
}

/// The first of `target`'s addresses, resolved here.
async fn resolve(target: &TargetAddr) -> Option<SocketAddr> {
    match target {
        TargetAddr::Ip(addr) => Some(*addr),
        TargetAddr::Domain(host, port) => tokio::net::lookup_host((host.as_str(), *port))
            .await
            .ok()?
            .next(),
    }
}

/// One SOCKS5 client: its greeting (and password), its command, then the
/// tunnel (CONNECT) or the datagram relay (UDP ASSOCIATE).
pub(crate) async fn socks5(stream: TcpStream, ctx: Arc<Ctx>) {
    let config = Arc::clone(&ctx.proxy);
    let opening = async {
        let proto = if config.users.is_empty() {
            Socks5ServerProtocol::accept_no_auth(stream).await.ok()?
        } else {
            let check = |u: String, p: String| config.password_ok(&u, &p);
            Socks5ServerProtocol::accept_password_auth(stream, check)
                .await
                .ok()?
                .0
        };
        proto.read_command().await.ok()
    };
    let Ok(Some((proto, command, target))) = tokio::time::timeout(REQUEST_TIMEOUT, opening).await
    else {
        return;
    };
    let Some(dest) = resolve(&target).await else {
        let _ = proto.reply_error(&ReplyError::HostUnreachable).await;
        return;
    };
    match command {
        Socks5Command::TCPConnect => {
            if !config.allows(dest.ip()) {
                let _ = proto.reply_error(&ReplyError::ConnectionNotAllowed).await;
                return;
            }
            let out = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(dest)).await {
                Ok(Ok(out)) => out,
                Ok(Err(_)) => {
                    let _ = proto.reply_error(&ReplyError::ConnectionRefused).await;
                    return;
                }
                Err(_) => {
                    let _ = proto.reply_error(&ReplyError::TtlExpired).await;
                    return;
                }
            };
            let _ = out.set_nodelay(true);
            let bound = out.local_addr().unwrap_or(dest);
            if let Ok(client) = proto.reply_success(bound).await {
                tunnel(client, out, &ctx).await;
            }
        }
        Socks5Command::UDPAssociate => {
            let reply_ip = ctx_local_ip(dest);
            let config = Arc::clone(&config);
            let idle = ctx.idle;
            let transfer = move |sock| datagrams(sock, config, idle);
            let _ = run_udp_proxy_custom(proto, &target, None, reply_ip, transfer).await;
        }
        Socks5Command::TCPBind => {
            let _ = proto.reply_error(&ReplyError::CommandNotSupported).await;
        }
    }
}

/// The address a UDP client is told to send to: loopback of its family
/// (the relay is for clients on this machine or what the rules let in).
fn ctx_local_ip(hint: SocketAddr) -> IpAddr {
    if hint.is_ipv6() {
        IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    }
}

/// UDP ASSOCIATE's relay: each datagram from the client, its header
/// read, to its destination when the rules allow it; each reply back
/// with the header that names where it came from. Ends with the control
/// connection (the caller's join), or after `idle` with no datagram either
/// way: a client that asked for an association and went quiet does not
/// hold its place (and a socket) for as long as its control stays open.
async fn datagrams<S: Into<std::net::UdpSocket>>(
    client: S,
    config: Arc<ProxyConfig>,
    idle: Option<Duration>,
) -> Result<(), fast_socks5::server::SocksServerError> {
    use fast_socks5::server::SocksServerError as E;
    let client: std::net::UdpSocket = client.into();
    client
        .set_nonblocking(true)
        .map_err(|_| E::Bug("wrapping a socket"))?;
    let client = UdpSocket::from_std(client).map_err(|_| E::Bug("wrapping a socket"))?;
    let out = UdpSocket::bind((std::net::Ipv6Addr::UNSPECIFIED, 0))
        .await
        .map_err(|_| E::Bug("binding a socket"))?;
    let mut from_client = vec![0u8; 65_536];
    let mut from_dest = vec![0u8; 65_536];
    let mut client_addr = None;
    let idle = idle.unwrap_or(super::default_idle_timeout(super::ServiceKind::Socks5));
    let quiet = tokio::time::sleep(idle);
    tokio::pin!(quiet);
    loop {
        tokio::select! {
            // An error, so that the library's join ends the control
            // connection too instead of waiting on it.
            () = &mut quiet => {
                return Err(E::Io {
                    source: std::io::ErrorKind::TimedOut.into(),
                    context: "waiting for a datagram",
                });
            }
            got = client.recv_from(&mut from_client) => {
                quiet.as_mut().reset(tokio::time::Instant::now() + idle);
                let Ok((n, addr)) = got else { continue };
                client_addr = Some(addr);
                let Ok((0, target, data)) = fast_socks5::parse_udp_request(&from_client[..n]).await else {
                    continue;
                };
                let Some(dest) = resolve(&target).await else { continue };
                if config.allows(dest.ip()) {
                    let dest = SocketAddr::new(IpAddr::V6(to_v6(dest.ip())), dest.port());
                    let _ = out.send_to(data, dest).await;
                }
            }
            got = out.recv_from(&mut from_dest) => {
                quiet.as_mut().reset(tokio::time::Instant::now() + idle);
                let (Ok((n, from)), Some(to)) = (got, client_addr) else { continue };
                let from = SocketAddr::new(from.ip().to_canonical(), from.port());
                let Ok(mut datagram) = fast_socks5::new_udp_header(from) else { continue };
                datagram.extend_from_slice(&from_dest[..n]);
                let _ = client.send_to(&datagram, to).await;
            }
        }
    }
}

fn to_v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Bytes both ways until each side has ended (half-close passed on), or
/// nothing moves for the idle limit.
async fn tunnel(mut client: TcpStream, mut out: TcpStream, ctx: &Ctx) {
    let copy = tokio::io::copy_bidirectional(&mut client, &mut out);
    let moved = match ctx.idle {
        // The limit is on the whole tunnel's quiet: tokio's copy has no
        // per-read hook, so a tunnel lives at most this long without an
        // end; generous by default (the service's idle limit).
        Some(limit) => tokio::time::timeout(limit, copy).await.ok(),
        None => Some(copy.await),
    };
    if let Some(Ok((up, down))) = moved {
        ctx.stats.add_in(usize::try_from(up).unwrap_or(usize::MAX));
        ctx.stats
            .add_out(usize::try_from(down).unwrap_or(usize::MAX));
    }
}

/// The most a CONNECT request's head may hold.
const MOST_HEAD: usize = 16 * 1024;

/// One HTTP proxy client: `CONNECT host:port`, its Basic authentication
/// when users are set, the egress check, then the tunnel.
pub(crate) async fn http_connect(mut stream: TcpStream, ctx: Arc<Ctx>) {
    let Ok(Some(head)) = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await else {
        return;
    };
    let answer = |code: &str, extra: &str| {
        format!("HTTP/1.1 {code}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n")
    };
    let (target, auth) = match parse_connect(&head) {
        Ok(parsed) => parsed,
        Err(status) => {
            let _ = stream.write_all(answer(status, "").as_bytes()).await;
            return;
        }
    };
    let config = &ctx.proxy;
    if !config.users.is_empty() && !auth.as_deref().is_some_and(|a| basic_ok(config, a)) {
        let challenge = "Proxy-Authenticate: Basic realm=\"sonde\"\r\n";
        let _ = stream
            .write_all(answer("407 Proxy Authentication Required", challenge).as_bytes())
            .await;
        return;
    }
    let dest = match tokio::net::lookup_host(target.as_str())
        .await
        .ok()
        .and_then(|mut a| a.next())
    {
        Some(dest) if config.allows(dest.ip()) => dest,
        Some(_) => {
            let _ = stream
                .write_all(answer("403 Forbidden", "").as_bytes())
                .await;
            return;
        }
        None => {
            let _ = stream
                .write_all(answer("502 Bad Gateway", "").as_bytes())
                .await;
            return;
        }
    };
    let out = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(dest)).await {
        Ok(Ok(out)) => out,
        Ok(Err(_)) => {
            let _ = stream
                .write_all(answer("502 Bad Gateway", "").as_bytes())
                .await;
            return;
        }
        Err(_) => {
            let _ = stream
                .write_all(answer("504 Gateway Timeout", "").as_bytes())
                .await;
            return;
        }
    };
    let _ = out.set_nodelay(true);
    if stream
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_ok()
    {
        tunnel(stream, out, &ctx).await;
    }
}

/// The request head, read to its blank line a little at a time (what
/// follows belongs to the tunnel); `None` when the client ends first or
/// sends too much.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MOST_HEAD || stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

/// The target and the Proxy-Authorization of a CONNECT request, or the
/// status to answer with.
pub(crate) fn parse_connect(head: &[u8]) -> Result<(String, Option<String>), &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err("400 Bad Request"),
    }
    if request.method != Some("CONNECT") {
        return Err("405 Method Not Allowed");
    }
    let target = request.path.ok_or("400 Bad Request")?;
    if !target.contains(':') {
        return Err("400 Bad Request");
    }
    let auth = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("proxy-authorization"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::to_string);
    Ok((target.to_string(), auth))
}

/// Whether `Basic BASE64(user:pass)` names a known user's password.
fn basic_ok(config: &ProxyConfig, header: &str) -> bool {
    let Some(token) = header.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(token.trim()) else {
        return false;
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return false;
    };
    text.split_once(':')
        .is_some_and(|(u, p)| config.password_ok(u, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_is_loopback_unless_told() {
        let config = ProxyConfig::default();
        assert!(config.allows("127.0.0.1".parse().expect("ip")));
        assert!(config.allows("::ffff:127.0.0.2".parse().expect("ip")));
        assert!(config.allows("::1".parse().expect("ip")));
        assert!(!config.allows("10.0.0.1".parse().expect("ip")));
        assert!(!config.allows("192.0.2.1".parse().expect("ip")));
    }

    #[test]
    fn connect_requests_and_their_refusals() {
        let (target, auth) =
            parse_connect(b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\nProxy-Authorization: Basic dTpw\r\n\r\n")
                .expect("a CONNECT");
        assert_eq!(target, "example.org:443");
        assert_eq!(auth.as_deref(), Some("Basic dTpw"));
        assert_eq!(
            parse_connect(b"GET / HTTP/1.1\r\n\r\n"),
            Err("405 Method Not Allowed")
        );
        assert_eq!(
            parse_connect(b"CONNECT nohost HTTP/1.1\r\n\r\n"),
            Err("400 Bad Request")
        );
        assert_eq!(
            parse_connect(b"\x00\x01garbage\r\n\r\n"),
            Err("400 Bad Request")
        );
        let users = parse_users("# users\nu:p\n\nv:with:colon\n").expect("users");
        let config = ProxyConfig {
            allow_dest: loopback(),
            users,
        };
        assert!(basic_ok(&config, "Basic dTpw"));
        assert!(!basic_ok(&config, "Basic dTpx"));
        assert!(config.password_ok("v", "with:colon"));
        assert_eq!(
            parse_users("nocolon"),
            Err("line 1: not USER:PASSWORD".into())
        );
    }
}
