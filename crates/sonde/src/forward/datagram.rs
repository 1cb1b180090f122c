//! UDP relays: `udp-listen:PORT udp:HOST:PORT`. Each client address gets
//! a session, its own socket connected to TO, so TO's replies go back to
//! the client that caused them; a session quiet for the idle limit is
//! forgotten. Sessions are capped; past the cap a new client's datagrams
//! are dropped (UDP has no refusal to send), and the access rules apply
//! to every datagram.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::join::Moved;
use super::spec::{End, Spec};
use super::{Event, Options};
use crate::door::{Door, DoorConfig};
use crate::error::{Error, Result};

/// How long a session lasts with nothing either way, unless told.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(60);

/// The largest datagram relayed (UDP's own limit).
const LARGEST: usize = 65_536;

/// One client's session.
struct Session {
    /// Connected to TO.
    sock: Arc<UdpSocket>,
    /// When anything last moved, in ms since the relay started.
    last: Arc<AtomicU64>,
    forward: Arc<AtomicU64>,
}

type Sessions = Arc<Mutex<HashMap<SocketAddr, Session>>>;

/// Relays datagrams arriving on `listen` to `to`, a session per client,
/// until the process ends.
///
/// # Errors
/// When TO does not resolve or `listen` fails.
pub fn serve(
    listen: UdpSocket,
    to: &Spec,
    opts: &Options,
    notify: impl Fn(Event) + Send + Sync + 'static,
) -> Result<()> {
    let End::Udp { host, port } = &to.end else {
        return Err(Error::Invalid(format!(
            "UDP relays only to UDP, not {}",
            to.end
        )));
    };
    let target = *crate::net::resolve(host, *port, to.family)?
        .first()
        .ok_or_else(|| Error::Invalid(format!("resolving {host}: no address")))?;
    let mut config = DoorConfig::new("relay", opts.max_connections.max(1));
    config.rules = opts.rules.clone();
    config.counters = Arc::clone(&opts.counters);
    let door = Door::new(config);
    let listen = Arc::new(listen);
    let sessions: Sessions = Arc::default();
    let notify: Arc<dyn Fn(Event) + Send + Sync> = Arc::new(notify);
    let epoch = Instant::now();
    let idle = opts.idle_timeout.unwrap_or(DEFAULT_IDLE);
    let mut buf = vec![0u8; LARGEST];
    loop {
        let (n, client) = match listen.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // An ICMP error for an earlier reply: not ours to end on.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(Error::io("receiving datagrams", e)),
        };
        if door.refuses_datagram(client.ip()) {
            continue;
        }
        let now = ms_since(epoch);
        let mut all = sessions
            .lock()
            .map_err(|_| Error::Invalid("a relay thread failed".into()))?;
        if !all.contains_key(&client) {
            if all.len() >= opts.max_connections.max(1) {
                continue;
            }
            let session = match open(target, client, &listen, &sessions, (epoch, idle), &notify) {
                Ok(session) => session,
                Err(e) => {
                    notify(Event::Failed(client.to_string(), e));
                    continue;
                }
            };
            notify(Event::Connected(client.to_string()));
            all.insert(client, session);
        }
        if let Some(session) = all.get(&client) {
            session.last.store(now, Ordering::Relaxed);
            session.forward.fetch_add(n as u64, Ordering::Relaxed);
            // A refusal from TO (ICMP) shows on a later send: nothing to do.
            let _ = session.sock.send(&buf[..n]);
        }
    }
}

fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A new session's socket, connected to `target`, and the thread that
/// sends TO's replies back to `client` until the session goes idle.
fn open(
    target: SocketAddr,
    client: SocketAddr,
    listen: &Arc<UdpSocket>,
    sessions: &Sessions,
    (epoch, idle): (Instant, Duration),
    notify: &Arc<dyn Fn(Event) + Send + Sync>,
) -> Result<Session> {
    let any: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let what = || format!("opening a session to {target}");
    let sock = UdpSocket::bind(any).map_err(|e| Error::io(what(), e))?;
    sock.connect(target).map_err(|e| Error::io(what(), e))?;
    let tick = (idle / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    sock.set_read_timeout(Some(tick))
        .map_err(|e| Error::io(what(), e))?;
    let session = Session {
        sock: Arc::new(sock),
        last: Arc::new(AtomicU64::new(ms_since(epoch))),
        forward: Arc::default(),
    };
    let (sock, last, forward) = (
        Arc::clone(&session.sock),
        Arc::clone(&session.last),
        Arc::clone(&session.forward),
    );
    let (listen, sessions, notify) = (Arc::clone(listen), Arc::clone(sessions), Arc::clone(notify));
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    std::thread::Builder::new()
        .name("sonde-relay-udp".into())
        .spawn(move || {
            let mut buf = vec![0u8; LARGEST];
            let mut back = 0u64;
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        last.store(ms_since(epoch), Ordering::Relaxed);
                        back += n as u64;
                        let _ = listen.send_to(&buf[..n], client);
                        continue;
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    // TO refused (ICMP); the client may try again.
                    Err(_) => {}
                }
                let quiet = ms_since(epoch).saturating_sub(last.load(Ordering::Relaxed));
                if quiet >= idle_ms {
                    break;
                }
            }
            if let Ok(mut all) = sessions.lock() {
                all.remove(&client);
            }
            let forward = forward.load(Ordering::Relaxed);
            notify(Event::Closed(client.to_string(), Moved { forward, back }));
        })
        .map_err(|e| Error::io(what(), e))?;
    Ok(session)
}
