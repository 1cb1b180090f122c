//! The two ends of `sonde relay FROM TO`, as text: sonde's spellings
//! (`tcp-listen:8080`, `tcp:host:80`, `unix:@name`, `exec:CMD`) and
//! socat's (`TCP-LISTEN:8080,fork,reuseaddr`, `TCP4:host:80`,
//! `UNIX-CONNECT:/path`, `OPENSSL:host:443`, `SYSTEM:cmd`, `-`), with the
//! socat options that mean something here; any other option is refused
//! by name. Pure: nothing is resolved or opened.

use std::fmt;

use crate::net::Family;
pub use crate::net::unix::UnixPath;

/// One end of a relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Connect over TCP.
    Tcp { host: String, port: u16 },
    /// Listen for TCP clients (`addr` none: every interface).
    TcpListen { addr: Option<String>, port: u16 },
    /// Send datagrams to a UDP port.
    Udp { host: String, port: u16 },
    /// Take datagrams on a UDP port, a session per client address.
    UdpListen { addr: Option<String>, port: u16 },
    /// Connect to a Unix stream socket.
    Unix(UnixPath),
    /// Listen on a Unix stream socket.
    UnixListen(UnixPath),
    /// Connect over TLS.
    Tls { host: String, port: u16 },
    /// Listen for TLS clients.
    TlsListen { addr: Option<String>, port: u16 },
    /// This process's stdin and stdout.
    Stdio,
    /// A process per connection (`shell`: a line for `/bin/sh -c`).
    Exec { command: String, shell: bool },
}

impl End {
    /// Whether this end waits for clients.
    pub fn listens(&self) -> bool {
        matches!(
            self,
            Self::TcpListen { .. }
                | Self::UdpListen { .. }
                | Self::UnixListen(_)
                | Self::TlsListen { .. }
        )
    }

    /// Whether this end carries datagrams rather than a byte stream.
    pub fn datagrams(&self) -> bool {
        matches!(self, Self::Udp { .. } | Self::UdpListen { .. })
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = |addr: &Option<String>, port: &u16| match addr {
            Some(a) if a.contains(':') => format!("[{a}]:{port}"),
            Some(a) => format!("{a}:{port}"),
            None => port.to_string(),
        };
        match self {
            Self::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
            Self::TcpListen { addr, port } => write!(f, "tcp-listen:{}", on(addr, port)),
            Self::Udp { host, port } => write!(f, "udp:{host}:{port}"),
            Self::UdpListen { addr, port } => write!(f, "udp-listen:{}", on(addr, port)),
            Self::Unix(path) => write!(f, "unix:{path}"),
            Self::UnixListen(path) => write!(f, "unix-listen:{path}"),
            Self::Tls { host, port } => write!(f, "tls:{host}:{port}"),
            Self::TlsListen { addr, port } => write!(f, "tls-listen:{}", on(addr, port)),
            Self::Stdio => write!(f, "stdio"),
            Self::Exec { command, .. } => write!(f, "exec:{command}"),
        }
    }
}

/// An end and the socat options given with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// What it is.
    pub end: End,
    /// `-4`/`-6` from socat's `TCP4`/`TCP6`/`pf=`.
    pub family: Family,
    /// socat's `max-children=N`: clients at once.
    pub max_children: Option<usize>,
    /// socat's `bind=ADDR` on a connecting end: the local address.
    pub bind: Option<String>,
    /// socat's `connect-timeout=SECS`.
    pub connect_timeout: Option<f64>,
    /// socat's `stderr` on `EXEC`/`SYSTEM`: the process's stderr too.
    pub stderr: bool,
}

/// Why an end was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the relay end {text:?}: {why}")]
pub struct SpecError {
    /// The end as given.
    pub text: String,
    /// What is wrong with it.
    pub why: String,
}

/// The kinds, by every name they go by (lower case).
fn kind(name: &str) -> Option<(&'static str, Family)> {
    let any = Family::Any;
    Some(match name {
        "tcp" | "tcp-connect" => ("tcp", any),
        "tcp4" | "tcp4-connect" => ("tcp", Family::V4),
        "tcp6" | "tcp6-connect" => ("tcp", Family::V6),
        "tcp-listen" | "tcp-l" => ("tcp-listen", any),
        "tcp4-listen" | "tcp4-l" => ("tcp-listen", Family::V4),
        "tcp6-listen" | "tcp6-l" => ("tcp-listen", Family::V6),
        "udp" | "udp-connect" | "udp-sendto" => ("udp", any),
        "udp4" | "udp4-connect" => ("udp", Family::V4),
        "udp6" | "udp6-connect" => ("udp", Family::V6),
        "udp-listen" | "udp-l" | "udp-recvfrom" => ("udp-listen", any),
        "udp4-listen" | "udp4-l" => ("udp-listen", Family::V4),
        "udp6-listen" | "udp6-l" => ("udp-listen", Family::V6),
        "unix" | "unix-connect" | "unix-client" | "local" => ("unix", any),
        "abstract" | "abstract-connect" | "abstract-client" => ("abstract", any),
        "unix-listen" | "unix-l" => ("unix-listen", any),
        "abstract-listen" => ("abstract-listen", any),
        "tls" | "ssl" | "openssl" | "openssl-connect" => ("tls", any),
        "tls-listen" | "ssl-l" | "openssl-listen" => ("tls-listen", any),
        "stdio" | "stdin" | "stdout" | "-" => ("stdio", any),
        "exec" => ("exec", any),
        "system" | "sh-exec" => ("system", any),
        _ => return None,
    })
}

/// Options accepted and ignored, with why they need nothing here.
const NO_OPS: &[&str] = &[
    // A listening end always serves many clients, each on its own.
    "fork",
    // sonde's listeners always reuse the address.
    "reuseaddr",
    "reuseport",
    // TCP_NODELAY is already set on every TCP end.
    "nodelay",
    // socat's TLS checks: sonde always verifies, see --insecure.
    "verify=1",
];

/// Parses one end of `sonde relay`.
///
/// # Errors
/// [`SpecError`] for an unknown kind or option, a missing or bad port, or
/// an empty path or command.
pub fn parse(text: &str) -> Result<Spec, SpecError> {
    let fail = |why: String| SpecError {
        text: text.to_string(),
        why,
    };
    if text == "-" {
        return Ok(plain(End::Stdio, Family::Any));
    }
    let cut = text.find([':', ',']).unwrap_or(text.len());
    let (name, rest) = (
        &text[..cut],
        text[cut..].strip_prefix(':').unwrap_or(&text[cut..]),
    );
    let lower = name.to_ascii_lowercase();
    let (kind, family) = kind(&lower).ok_or_else(|| {
        fail(format!(
            "{name:?} is not a kind of end sonde knows (tcp, tcp-listen, udp, udp-listen, unix, unix-listen, tls, tls-listen, stdio, exec, or socat's names for them)"
        ))
    })?;
    // EXEC's and SYSTEM's commands may hold commas of their own: socat
    // options go after the last comma only when they look like options.
    let (body, options) = if matches!(kind, "exec" | "system") {
        (rest, "")
    } else {
        rest.split_once(',').unwrap_or((rest, ""))
    };
    let end = end(kind, body).map_err(fail)?;
    let mut spec = plain(end, family);
    for option in options.split(',').filter(|o| !o.is_empty()) {
        apply(&mut spec, option).map_err(fail)?;
    }
    // On a listening end socat's bind= is the address listened on.
    if let End::TcpListen { addr, .. } | End::UdpListen { addr, .. } | End::TlsListen { addr, .. } =
        &mut spec.end
        && let Some(bind) = spec.bind.take()
    {
        if addr.is_some() {
            return Err(fail("both an address and bind= to listen on".into()));
        }
        *addr = Some(bind);
    }
    Ok(spec)
}

fn plain(end: End, family: Family) -> Spec {
    Spec {
        end,
        family,
        max_children: None,
        bind: None,
        connect_timeout: None,
        stderr: false,
    }
}

/// The end of `kind` with `body` (what follows the first colon).
fn end(kind: &str, body: &str) -> Result<End, String> {
    Ok(match kind {
        "tcp" => {
            let (host, port) = host_port(body)?;
            End::Tcp { host, port }
        }
        "udp" => {
            let (host, port) = host_port(body)?;
            End::Udp { host, port }
        }
        "tls" => {
            let (host, port) = host_port(body)?;
            End::Tls { host, port }
        }
        "tcp-listen" | "udp-listen" | "tls-listen" => {
            let (addr, port) = listen_on(body)?;
            match kind {
                "tcp-listen" => End::TcpListen { addr, port },
                "udp-listen" => End::UdpListen { addr, port },
                _ => End::TlsListen { addr, port },
            }
        }
        "unix" | "unix-listen" | "abstract" | "abstract-listen" => {
            let path = unix_path(body, kind.starts_with("abstract"))?;
            if kind.ends_with("listen") {
                End::UnixListen(path)
            } else {
                End::Unix(path)
            }
        }
        "stdio" if body.is_empty() => End::Stdio,
        "stdio" => return Err("stdio takes nothing after it".into()),
        _ if body.trim().is_empty() => return Err("a command to run is missing".into()),
        _ => End::Exec {
            command: body.to_string(),
            shell: kind == "system",
        },
    })
}

fn port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{text:?} is not a port (1 to 65535)")),
        Ok(p) => Ok(p),
    }
}

/// `HOST:PORT` or `[V6]:PORT`.
fn host_port(body: &str) -> Result<(String, u16), String> {
    let (host, p) = crate::net::split_host_port(body)
        .map_err(|_| format!("{body:?} is not HOST:PORT ([::1]:PORT for IPv6)"))?;
    Ok((host, port(&p.to_string())?))
}

/// `PORT`, `ADDR:PORT` or `[V6]:PORT`; port 0 asks for any free one.
fn listen_on(body: &str) -> Result<(Option<String>, u16), String> {
    if !body.contains(':') {
        return match body.parse::<u16>() {
            Ok(p) => Ok((None, p)),
            Err(_) => Err(format!("{body:?} is not a port (0 to 65535)")),
        };
    }
    let (addr, port) = crate::net::split_host_port(body)
        .map_err(|_| format!("{body:?} is not ADDR:PORT ([::1]:PORT for IPv6)"))?;
    Ok((Some(addr), port))
}

fn unix_path(body: &str, abstract_kind: bool) -> Result<UnixPath, String> {
    if body.is_empty() {
        return Err("a socket path is missing".into());
    }
    Ok(match body.strip_prefix('@') {
        Some(name) if !name.is_empty() => UnixPath::Abstract(name.to_string()),
        Some(_) => return Err("an abstract name is missing after @".into()),
        None if abstract_kind => UnixPath::Abstract(body.to_string()),
        None => UnixPath::File(body.into()),
    })
}

/// One socat option of an end.
fn apply(spec: &mut Spec, option: &str) -> Result<(), String> {
    let lower = option.to_ascii_lowercase();
    if NO_OPS.contains(&lower.as_str()) {
        return Ok(());
    }
    let (key, value) = lower.split_once('=').unwrap_or((&lower, ""));
    let value = &option[option.len() - value.len()..];
    let number = || {
        value
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or_else(|| format!("{key}={value:?} needs a positive number"))
    };
    match key {
        "max-children" => {
            let n = value
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("max-children={value:?} needs a whole number above 0"))?;
            spec.max_children = Some(n);
        }
        "bind" if !value.is_empty() => spec.bind = Some(value.to_string()),
        "connect-timeout" => spec.connect_timeout = Some(number()?),
        "pf" => {
            spec.family = match value {
                "ip4" | "ipv4" | "inet" | "4" => Family::V4,
                "ip6" | "ipv6" | "inet6" | "6" => Family::V6,
                _ => return Err(format!("pf={value:?} is not ip4 or ip6")),
            }
        }
        "stderr" if matches!(spec.end, End::Exec { .. }) => spec.stderr = true,
        _ => {
            return Err(format!(
                "the socat option {option:?} has no meaning in sonde (it takes fork, reuseaddr, reuseport, nodelay, max-children=N, bind=ADDR, connect-timeout=SECS, pf=ip4|ip6, and stderr on exec)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end_of(text: &str) -> End {
        parse(text).expect("an end").end
    }

    #[test]
    fn sondes_spellings() {
        assert_eq!(
            end_of("tcp-listen:8080"),
            End::TcpListen {
                addr: None,
                port: 8080
            }
        );
        assert_eq!(
            end_of("tcp:127.0.0.1:80"),
            End::Tcp {
                host: "127.0.0.1".into(),
                port: 80
            }
        );
        assert_eq!(
            end_of("udp-listen:[::1]:53"),
            End::UdpListen {
                addr: Some("::1".into()),
                port: 53
            }
        );
        assert_eq!(
            end_of("unix:@name"),
            End::Unix(UnixPath::Abstract("name".into()))
        );
        assert_eq!(
            end_of("unix-listen:/tmp/s.sock"),
            End::UnixListen(UnixPath::File("/tmp/s.sock".into()))
        );
        assert_eq!(end_of("stdio"), End::Stdio);
        assert_eq!(
            end_of("exec:cat -n"),
            End::Exec {
                command: "cat -n".into(),
                shell: false
            }
        );
        assert_eq!(
            end_of("tls-listen:127.0.0.1:8443").to_string(),
            "tls-listen:127.0.0.1:8443"
        );
    }

    #[test]
    fn socats_spellings_and_options() {
        let spec = parse("TCP-LISTEN:8080,fork,reuseaddr,max-children=5").expect("socat's");
        assert_eq!(
            spec.end,
            End::TcpListen {
                addr: None,
                port: 8080
            }
        );
        assert_eq!(spec.max_children, Some(5));
        assert_eq!(
            end_of("TCP-LISTEN:80,bind=127.0.0.1"),
            End::TcpListen {
                addr: Some("127.0.0.1".into()),
                port: 80
            }
        );
        assert_eq!(parse("TCP4:host:80").expect("tcp4").family, Family::V4);
        assert_eq!(
            end_of("UNIX-CONNECT:/run/x"),
            End::Unix(UnixPath::File("/run/x".into()))
        );
        assert_eq!(
            end_of("ABSTRACT-LISTEN:x"),
            End::UnixListen(UnixPath::Abstract("x".into()))
        );
        assert_eq!(
            end_of("OPENSSL:example.org:443").to_string(),
            "tls:example.org:443"
        );
        assert_eq!(end_of("-"), End::Stdio);
        assert_eq!(end_of("STDIO"), End::Stdio);
        assert_eq!(
            end_of("SYSTEM:echo a,b"),
            End::Exec {
                command: "echo a,b".into(),
                shell: true
            }
        );
        let spec = parse("tcp:h:1,bind=127.0.0.2,connect-timeout=2.5,pf=ip6").expect("options");
        assert_eq!(spec.bind.as_deref(), Some("127.0.0.2"));
        assert_eq!(spec.connect_timeout, Some(2.5));
        assert_eq!(spec.family, Family::V6);
    }

    #[test]
    fn refused_by_name() {
        for (bad, says) in [
            (
                "TCP-LISTEN:8080,keepidle=5",
                "\"keepidle=5\" has no meaning",
            ),
            ("PTY:x", "\"PTY\" is not a kind"),
            ("tcp:host", "is not HOST:PORT"),
            ("tcp-listen:99999", "is not a port"),
            ("unix:", "a socket path is missing"),
            ("exec:", "a command to run is missing"),
            ("tcp-listen:80,max-children=0", "a whole number above 0"),
            ("stdio:x", "takes nothing"),
        ] {
            let e = parse(bad).expect_err(bad).to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
