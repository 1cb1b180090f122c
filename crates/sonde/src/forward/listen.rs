//! A listening FROM: each client, through the front door (TCP, after its
//! TLS handshake for `tls-listen`, or a Unix socket), joined to its own
//! TO. A client's work runs on a pool's threads, kept rather than made
//! anew for each of many short connections.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use super::join::Sock;
use super::spec::Spec;
use super::{Event, Opened, Options, open, pair};
use crate::door::{Accepted, Door, DoorConfig, Permit, UnixAccepted};
use crate::error::{Error, Result};

/// What a relay listens on.
pub(super) enum Listener {
    /// TCP; `true`: each client's TLS is accepted first.
    Tcp(std::net::TcpListener, bool),
    /// A Unix stream socket.
    Unix(std::os::unix::net::UnixListener),
}

/// What every client's work shares.
struct Shared<F> {
    to: Spec,
    opts: Options,
    tls: Option<crate::tls::ServerTls>,
    notify: F,
}

/// Serves clients of `listener` until the process ends, at most the
/// door's cap at once.
///
/// # Errors
/// When the runtime cannot start or the listener cannot be registered.
pub(super) fn serve(
    listener: Listener,
    to: &Spec,
    opts: &Options,
    notify: impl Fn(Event) + Send + Sync + 'static,
) -> Result<()> {
    let tls = match (&listener, &opts.server_tls) {
        (Listener::Tcp(_, true), None) => {
            return Err(Error::Invalid("tls-listen needs a certificate".into()));
        }
        (Listener::Tcp(_, true), Some(t)) => Some(t.clone()),
        _ => None,
    };
    let max = opts.max_connections.max(1);
    let mut config = DoorConfig::new("relay", max);
    config.rules = opts.rules.clone();
    config.counters = Arc::clone(&opts.counters);
    let door = Door::new(config);
    // Each client is three pieces of blocking work (its relay and its two
    // directions): enough threads that no client waits for another's.
    // A crowd's threads go soon after it leaves (tokio keeps idle ones
    // 10 s), so a flood does not leave hundreds behind.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(3 * max + 8)
        .thread_keep_alive(std::time::Duration::from_secs(2))
        .thread_name("sonde-relay")
        .build()
        .map_err(|e| Error::io("starting the runtime", e))?;
    let shared = Arc::new(Shared {
        to: to.clone(),
        opts: opts.clone(),
        tls,
        notify,
    });
    let registering = |e| Error::io("registering the listener", e);
    runtime.block_on(async {
        match listener {
            Listener::Tcp(listener, _) => {
                let listener = crate::door::to_tokio(listener).map_err(registering)?;
                door.serve(listener, |conn| {
                    let Accepted {
                        stream,
                        peer,
                        permit,
                    } = conn;
                    let side = move |tls: Option<&crate::tls::ServerTls>| {
                        let stream = crate::door::to_blocking(stream)
                            .map_err(|e| Error::io("taking over a connection", e))?;
                        client_side(stream, peer, tls)
                    };
                    launch(permit, peer.to_string(), side, &shared);
                })
                .await;
            }
            Listener::Unix(listener) => {
                listener.set_nonblocking(true).map_err(registering)?;
                let listener = tokio::net::UnixListener::from_std(listener).map_err(registering)?;
                let mut count = 0u64;
                door.serve_unix(listener, |conn| {
                    let UnixAccepted { stream, permit } = conn;
                    count += 1;
                    let side = move |_: Option<&crate::tls::ServerTls>| {
                        let stream = stream
                            .into_std()
                            .and_then(|s| s.set_nonblocking(false).map(|()| s))
                            .map_err(|e| Error::io("taking over a connection", e))?;
                        Ok(Opened::Sock(Sock::Unix(stream), None))
                    };
                    launch(permit, format!("unix client {count}"), side, &shared);
                })
                .await;
            }
        }
        Ok(())
    })
}

/// Runs one client's relay on the pool: its side made ready (`side`),
/// its TO opened, the two joined, and how it went told.
fn launch<F: Fn(Event) + Send + Sync + 'static>(
    permit: Permit,
    client: String,
    side: impl FnOnce(Option<&crate::tls::ServerTls>) -> Result<Opened> + Send + 'static,
    shared: &Arc<Shared<F>>,
) {
    let shared = Arc::clone(shared);
    let pool = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let spawn = move |work: Box<dyn FnOnce() + Send>| {
            drop(pool.spawn_blocking(work));
            Ok(())
        };
        let done = side(shared.tls.as_ref()).and_then(|a| {
            let b = open(&shared.to, &shared.opts)?;
            (shared.notify)(Event::Connected(client.clone()));
            pair(a, b, &client, &shared.opts, &spawn)
        });
        (shared.notify)(match done {
            Ok(moved) => Event::Closed(client, moved),
            Err(e) => Event::Failed(client, e),
        });
    });
}

/// An accepted client as a socket to join: the connection itself, or the
/// plaintext end of the TLS session accepted on it.
fn client_side(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<&crate::tls::ServerTls>,
) -> Result<Opened> {
    let _ = stream.set_nodelay(true);
    match tls {
        None => Ok(Opened::Sock(Sock::Tcp(stream), None)),
        Some(tls) => {
            let (plain, bridge) = crate::tls::accept(stream, tls, &peer.to_string())?;
            Ok(Opened::Sock(Sock::Unix(plain), Some(bridge)))
        }
    }
}
