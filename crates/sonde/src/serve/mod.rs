//! `sonde serve`: the test services on the front door ([`crate::door`]):
//! RFC 862 echo, RFC 863 discard, RFC 864 chargen and a line-based chat
//! room as small tokio tasks (so a hundred thousand idle clients cost
//! little), the sockperf reflector and the lowest-latency echo on a thread
//! per client ([`reflector`]), and the UDP services on one blocking thread
//! ([`datagram`]).

pub mod chat;
pub mod datagram;
pub mod proxy;
mod readers;
pub mod reflector;
mod secure;
pub mod services;
pub mod smtp;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::door::{Accepted, Door, DoorConfig, Permit};

/// Which service a server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// RFC 862: send back what arrives.
    Echo,
    /// RFC 863: read and count.
    Discard,
    /// RFC 864: send the rotating character pattern.
    Chargen,
    /// Lines from each client go to every other client.
    Chat,
    /// Reflects sockperf's ping-pong messages (TCP or UDP).
    Sockperf,
    /// A SOCKS5 proxy (CONNECT and UDP ASSOCIATE), within its egress rules.
    Socks5,
    /// An HTTP proxy (CONNECT only), within its egress rules.
    HttpProxy,
    /// A mail sink: SMTP in, every message kept, none delivered.
    Smtp,
}

impl ServiceKind {
    /// The default (unprivileged) port.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Echo => 7007,
            Self::Discard => 7009,
            Self::Chargen => 7019,
            Self::Chat => 7070,
            Self::Sockperf => crate::wire::sockperf::DEFAULT_PORT,
            Self::Socks5 => 1080,
            Self::HttpProxy => 3128,
            // Mailpit's, so an app set up for it needs no change.
            Self::Smtp => 1025,
        }
    }

    /// The server's name in log lines.
    fn door_name(self) -> &'static str {
        match self {
            Self::Echo => "serve echo",
            Self::Discard => "serve discard",
            Self::Chargen => "serve chargen",
            Self::Chat => "serve chat",
            Self::Sockperf => "serve sockperf",
            Self::Socks5 => "serve socks5",
            Self::HttpProxy => "serve http-proxy",
            Self::Smtp => "serve smtp",
        }
    }

    /// The service's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Discard => "discard",
            Self::Chargen => "chargen",
            Self::Chat => "chat",
            Self::Sockperf => "sockperf",
            Self::Socks5 => "socks5",
            Self::HttpProxy => "http-proxy",
            Self::Smtp => "smtp",
        }
    }
}

/// How a server behaves.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Connections served at once; a client past this is closed at once.
    pub max_connections: usize,
    /// Close a connection that moves nothing for this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// After shutdown, how long busy connections may finish.
    pub drain: Duration,
    /// Who may connect.
    pub rules: crate::door::access::Rules,
    /// Serve over TLS (echo, discard, chargen and chat).
    pub tls: Option<crate::tls::ServerTls>,
    /// What the proxies let through, and whom.
    pub proxy: Arc<proxy::ProxyConfig>,
    /// The mail sink's limits and store.
    pub smtp: Arc<smtp::SmtpConfig>,
}

/// How long a connection may move nothing before it is closed, unless
/// told otherwise: five minutes for the byte services, an hour for chat,
/// where people read for a long time without typing.
pub fn default_idle_timeout(kind: ServiceKind) -> Duration {
    match kind {
        ServiceKind::Chat => Duration::from_secs(3600),
        _ => Duration::from_secs(300),
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            idle_timeout: None,
            drain: Duration::from_secs(5),
            rules: crate::door::access::Rules::default(),
            tls: None,
            proxy: Arc::default(),
            smtp: Arc::default(),
        }
    }
}

impl ServeConfig {
    /// The front door for a server with this configuration.
    pub fn door(&self, kind: ServiceKind) -> Door {
        let mut config = DoorConfig::new(kind.door_name(), self.max_connections);
        config.drain = self.drain;
        config.rules = self.rules.clone();
        Door::new(config)
    }
}

/// Byte counters of a running server (its connections are counted by its
/// [`Door`]).
#[derive(Debug, Default)]
pub struct Stats {
    /// Bytes received.
    pub bytes_in: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
    /// UDP datagrams received.
    pub datagrams: AtomicU64,
}

impl Stats {
    pub(crate) fn add_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A one-line summary: a TCP service's connections (the door's
    /// counters), a UDP service's datagrams (it has peers, not
    /// connections), and the bytes each way.
    pub fn summary(&self, door: &Door, udp: bool) -> String {
        use crate::units::{count, size};
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (bytes_in, bytes_out) = (get(&self.bytes_in), get(&self.bytes_out));
        let bytes = |n: u64| match n {
            0..1024 => format!("{n} bytes"),
            _ => format!("{} bytes ({})", count(n), size(n)),
        };
        let moved = format!("{} in, {} out", bytes(bytes_in), bytes(bytes_out));
        if udp {
            format!("{} datagrams, {moved}", count(get(&self.datagrams)))
        } else {
            format!("{}, {moved}", door.counters().snapshot())
        }
    }
}

/// What every connection task shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) stats: Arc<Stats>,
    pub(crate) idle: Option<Duration>,
    /// Cancelled when the server shuts down: chat and chargen connections
    /// close.
    pub(crate) shutdown: CancellationToken,
    /// The sockets of the services that only answer: shut for reading at
    /// shutdown.
    pub(crate) readers: Arc<readers::Readers>,
    /// The proxies' rules.
    pub(crate) proxy: Arc<proxy::ProxyConfig>,
    /// The mail sink's.
    pub(crate) smtp: Arc<smtp::SmtpConfig>,
}

/// Serves `kind` on `listener` through `door` until the door shuts, then
/// waits for the connections still busy, at most the door's drain time.
/// Returns the byte counters.
pub async fn run(
    listener: TcpListener,
    kind: ServiceKind,
    config: ServeConfig,
    door: Door,
    stats: Arc<Stats>,
) -> Arc<Stats> {
    // Over TLS the session, not the bare socket, is what is measured: the
    // async services carry it like the others'.
    if kind == ServiceKind::Sockperf && config.tls.is_none() {
        let reflect = reflector::ReflectConfig {
            reflect: reflector::Reflect::Sockperf,
            mode: reflector::Mode::Blocking,
            idle: config.idle_timeout,
        };
        reflector::serve(listener, reflect, door, Arc::clone(&stats)).await;
        return stats;
    }
    let room = chat::Room::new();
    let ctx = Arc::new(Ctx {
        stats: Arc::clone(&stats),
        idle: config.idle_timeout,
        shutdown: door.closing(),
        readers: Arc::default(),
        proxy: Arc::clone(&config.proxy),
        smtp: Arc::clone(&config.smtp),
    });
    let acceptor = config
        .tls
        .as_ref()
        .map(|tls| tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.config)));
    door.serve(listener, |accepted| match &acceptor {
        Some(acceptor) => secure::spawn(kind, accepted, Arc::clone(&ctx), &room, acceptor.clone()),
        None => spawn_service(kind, accepted, Arc::clone(&ctx), &room),
    })
    .await;
    // Wakes every echo and discard connection waiting for data with an
    // end of input: idle ones close at once, busy ones finish.
    ctx.readers.shut_all();
    if kind == ServiceKind::Chat {
        room.closing().await;
    }
    door.drained().await;
    stats
}

/// Spawns a connection's task, which holds its permit. One `spawn` per
/// service, so that each task is only as large as its own service's
/// future: an idle echo connection does not pay for chat's (the larger
/// futures are boxed besides).
fn spawn_service(kind: ServiceKind, accepted: Accepted, ctx: Arc<Ctx>, room: &Arc<chat::Room>) {
    let Accepted {
        stream,
        peer,
        permit,
    } = accepted;
    let _ = stream.set_nodelay(true);
    match kind {
        // Registered before the spawn: a value captured by the task stays
        // in it for good, so the task holds the registered stream only.
        ServiceKind::Echo => tokio::spawn(echo_task(ctx.readers.add(stream), ctx, permit)),
        ServiceKind::Discard => {
            let stream = ctx.readers.add(stream);
            tokio::spawn(async move {
                let _permit = permit;
                services::discard(stream, &ctx).await;
            })
        }
        // `run` hands plain sockperf to the reflector's threads.
        ServiceKind::Sockperf => return,
        ServiceKind::Chargen => tokio::spawn(async move {
            services::cap_send_buffer(&stream);
            let _permit = permit;
            Box::pin(services::chargen(stream, &ctx)).await;
        }),
        ServiceKind::Chat => {
            let room = Arc::clone(room);
            tokio::spawn(async move {
                let _permit = permit;
                Box::pin(room.join(stream, peer, &ctx)).await;
            })
        }
        ServiceKind::Socks5 => tokio::spawn(async move {
            let _permit = permit;
            Box::pin(proxy::socks5(stream, ctx)).await;
        }),
        ServiceKind::HttpProxy => tokio::spawn(async move {
            let _permit = permit;
            Box::pin(proxy::http_connect(stream, ctx)).await;
        }),
        ServiceKind::Smtp => tokio::spawn(async move {
            let _permit = permit;
            Box::pin(smtp::serve(stream, ctx)).await;
        }),
    };
}

/// An echo connection's task. While idle it holds the registered stream,
/// the context, its permit and a small wait: it fits the smallest task
/// cell tokio allocates for it (256 bytes with tokio's header and
/// trailer), which is what keeps an idle connection under 1 KiB of memory.
///
/// Not an `async fn`: its parameters would be kept apart from the body's
/// locals, and the future would grow past the small cell.
#[allow(clippy::manual_async_fn)]
fn echo_task(
    mut stream: readers::Answering,
    ctx: Arc<Ctx>,
    permit: Permit,
) -> impl Future<Output = ()> {
    async move {
        services::echo(&mut stream, &ctx).await;
        drop(stream);
        drop(permit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_echo_task_fits_the_small_task_cell() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let ctx = Arc::new(Ctx {
                stats: Arc::default(),
                idle: Some(Duration::from_secs(300)),
                shutdown: CancellationToken::new(),
                readers: Arc::default(),
                proxy: Arc::default(),
                smtp: Arc::default(),
            });
            let door = Door::new(DoorConfig::new("test", 1));
            let permit = door.try_permit().expect("a free place");
            let task = echo_task(ctx.readers.add(stream), Arc::clone(&ctx), permit);
            // tokio's task cell is 128-byte aligned, with about 104 bytes of
            // header and trailer around the future.
            assert!(
                std::mem::size_of_val(&task) <= 152,
                "{} bytes",
                std::mem::size_of_val(&task)
            );
        });
    }
}
