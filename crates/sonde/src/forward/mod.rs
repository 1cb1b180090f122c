//! `sonde relay FROM TO`, socat's staple: bytes between two ends, each a
//! TCP, UDP, Unix or TLS socket (connecting or listening), stdio, or a
//! process. A listening FROM serves many clients at once through the
//! front door, each with its own TO; half-close passes through both
//! ways; socket to socket moves with splice(2) where the kernel allows.
//! UDP relays keep a session per client address ([`datagram`]).
//!
//! The ends as text are [`spec`]'s; this module opens them and joins
//! them ([`join`]).

pub mod datagram;
pub mod join;
mod listen;
pub mod spec;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use self::join::{Moved, Sock};
use self::spec::{End, Spec};
use crate::error::{Error, Result};
use crate::net::{self, ConnectOptions};
use crate::talk::exec::{ExecOptions, Program};
use crate::talk::relay::{Input, RelayOptions};

/// How a relay runs.
#[derive(Clone, Default)]
pub struct Options {
    /// Clients at once on a listening FROM (UDP: sessions).
    pub max_connections: usize,
    /// Close a connection (UDP: forget a session) quiet for this long.
    pub idle_timeout: Option<Duration>,
    /// Give up connecting TO after this long.
    pub connect_timeout: Option<Duration>,
    /// The certificate a `tls-listen` end shows.
    pub server_tls: Option<crate::tls::ServerTls>,
    /// How a `tls` end checks its server.
    pub client_tls: Option<crate::tls::ClientTls>,
    /// Who may connect to a listening FROM.
    pub rules: crate::door::access::Rules,
    /// Where a listening FROM's door counts (for a metrics endpoint).
    pub counters: std::sync::Arc<crate::door::Counters>,
}

/// What happened, for the caller to report.
#[derive(Debug)]
pub enum Event {
    /// A listening FROM is ready, on this address.
    Listening(String),
    /// A client came, and its TO was opened.
    Connected(String),
    /// A client's relay ended.
    Closed(String, Moved),
    /// A client's relay failed (its TO could not be opened, or a side
    /// was cut).
    Failed(String, Error),
}

/// Why a pair of ends cannot be relayed.
fn refuse(from: &Spec, to: &Spec, why: &str) -> Error {
    Error::Invalid(format!("relay {} to {}: {why}", from.end, to.end))
}

/// Checks that FROM and TO make a relay sonde can run.
///
/// # Errors
/// [`Error::Invalid`] naming the pair and why.
pub fn check(from: &Spec, to: &Spec) -> Result<()> {
    if to.end.listens() {
        return Err(refuse(
            from,
            to,
            "TO must connect (put the listening end first)",
        ));
    }
    if from.end.datagrams() != to.end.datagrams() {
        return Err(refuse(
            from,
            to,
            "UDP relays only to UDP (datagrams keep their bounds)",
        ));
    }
    let process_or_stdio = |e: &End| matches!(e, End::Stdio | End::Exec { .. });
    if process_or_stdio(&from.end) && process_or_stdio(&to.end) {
        return Err(refuse(from, to, "one end must be a socket"));
    }
    Ok(())
}

/// Runs the relay: a listening FROM until the process ends; otherwise
/// one connection, joined to TO, until both directions are done.
///
/// # Errors
/// When an end cannot be opened or listened on, or (one connection)
/// when the relay fails.
pub fn run(
    from: &Spec,
    to: &Spec,
    opts: &Options,
    notify: impl Fn(Event) + Send + Sync + 'static,
) -> Result<()> {
    check(from, to)?;
    match &from.end {
        End::UdpListen { addr, port } => {
            let sock = bind_udp(addr.as_deref(), *port, from)?;
            notify(Event::Listening(local(sock.local_addr())));
            datagram::serve(sock, to, opts, notify)
        }
        End::Udp { .. } => Err(refuse(from, to, "a UDP FROM must listen (udp-listen:PORT)")),
        End::TcpListen { addr, port } | End::TlsListen { addr, port } => {
            let tls = matches!(from.end, End::TlsListen { .. });
            let listener = listen_tcp(addr.as_deref(), *port, from)?;
            notify(Event::Listening(local(listener.local_addr())));
            listen::serve(listen::Listener::Tcp(listener, tls), to, opts, notify)
        }
        End::UnixListen(path) => {
            let listener = net::unix::bind(path)?;
            notify(Event::Listening(format!("unix:{path}")));
            listen::serve(listen::Listener::Unix(listener), to, opts, notify)
        }
        _ => {
            let a = open(from, opts)?;
            let b = open(to, opts)?;
            let name = from.end.to_string();
            let moved = pair(a, b, &name, opts, &join::new_thread)?;
            notify(Event::Closed(name, moved));
            Ok(())
        }
    }
}

fn local(addr: std::io::Result<SocketAddr>) -> String {
    addr.map_or_else(|_| "an unknown address".into(), |a| a.to_string())
}

fn listen_tcp(addr: Option<&str>, port: u16, spec: &Spec) -> Result<std::net::TcpListener> {
    let addrs = net::local_addrs(addr, port, spec.family)?;
    net::listen_tcp(addrs[0], spec.family == net::Family::V6)
}

fn bind_udp(addr: Option<&str>, port: u16, spec: &Spec) -> Result<std::net::UdpSocket> {
    let addrs = net::local_addrs(addr, port, spec.family)?;
    net::bind_udp(addrs[0], spec.family == net::Family::V6)
}

/// An end, opened.
pub(crate) enum Opened {
    /// A connected socket, with the TLS session it is the plaintext of.
    Sock(Sock, Option<crate::tls::Bridge>),
    /// A process to start for the other end.
    Exec(Program, bool),
    /// This process's stdin and stdout.
    Stdio,
}

/// Opens a connecting end (a listening one is served, not opened).
pub(crate) fn open(spec: &Spec, opts: &Options) -> Result<Opened> {
    let connect = ConnectOptions {
        device: None,
        family: spec.family,
        source: match &spec.bind {
            Some(addr) => Some(bind_addr(addr)?),
            None => None,
        },
        timeout: spec
            .connect_timeout
            .map(Duration::from_secs_f64)
            .or(opts.connect_timeout),
    };
    Ok(match &spec.end {
        End::Tcp { host, port } => {
            let (stream, _) = net::connect_tcp(host, *port, &connect)?;
            Opened::Sock(Sock::Tcp(stream), None)
        }
        End::Tls { host, port } => {
            let tls = opts
                .client_tls
                .as_ref()
                .ok_or_else(|| Error::Invalid("a tls end needs its TLS settings".into()))?;
            let (stream, peer) = net::connect_tcp(host, *port, &connect)?;
            let (plain, bridge) = crate::tls::connect(stream, tls, &peer.to_string())?;
            Opened::Sock(Sock::Unix(plain), Some(bridge))
        }
        End::Unix(path) => Opened::Sock(Sock::Unix(net::unix::connect(path)?), None),
        End::Stdio => Opened::Stdio,
        End::Exec { command, shell } => {
            let program = if *shell {
                Program::shell(command)
            } else {
                Program::exec(std::slice::from_ref(command))?
            };
            Opened::Exec(program, spec.stderr)
        }
        _ => {
            return Err(Error::Invalid(format!(
                "{} cannot be opened here",
                spec.end
            )));
        }
    })
}

/// socat's `bind=ADDR` (or `ADDR:PORT`).
fn bind_addr(text: &str) -> Result<SocketAddr> {
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 0));
    }
    text.parse()
        .map_err(|_| Error::Invalid(format!("bind={text}: not an address (ADDR or ADDR:PORT)")))
}

/// Joins two opened ends until both directions are done; a TLS session
/// that broke is the relay's failure.
pub(crate) fn pair(
    a: Opened,
    b: Opened,
    name: &str,
    opts: &Options,
    spawn: &join::Spawn,
) -> Result<Moved> {
    let relay = RelayOptions {
        idle_timeout: opts.idle_timeout,
        ..RelayOptions::default()
    };
    let mut bridges = Vec::new();
    let moved = match (a, b) {
        (Opened::Sock(a, ta), Opened::Sock(b, tb)) => {
            bridges.extend(ta.into_iter().chain(tb));
            join::join(a, b, name, opts.idle_timeout, spawn)
        }
        (Opened::Sock(s, t), Opened::Exec(program, stderr))
        | (Opened::Exec(program, stderr), Opened::Sock(s, t)) => {
            bridges.extend(t);
            let opts = ExecOptions {
                relay,
                stderr_to_peer: stderr,
            };
            let finished = crate::talk::exec::run(s, name, &program, opts)?;
            finished.relayed.map(|s| Moved {
                forward: s.received,
                back: s.sent,
            })
        }
        (Opened::Sock(s, t), Opened::Stdio) | (Opened::Stdio, Opened::Sock(s, t)) => {
            bridges.extend(t);
            let stdin = dup(std::io::stdin())?;
            let stdout = dup(std::io::stdout())?;
            crate::talk::relay::relay(s, name, Input::Fd(stdin), stdout, relay).map(|s| Moved {
                forward: s.received,
                back: s.sent,
            })
        }
        _ => Err(Error::Invalid("one end must be a socket".into())),
    };
    for bridge in bridges {
        bridge.finish_within(crate::talk::exec::LINGER)?;
    }
    moved
}

fn dup(fd: impl std::os::fd::AsFd) -> Result<std::os::fd::OwnedFd> {
    fd.as_fd()
        .try_clone_to_owned()
        .map_err(|e| Error::io("duplicating stdin or stdout", e))
}

impl fmt::Display for Moved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes forward, {} back", self.forward, self.back)
    }
}
