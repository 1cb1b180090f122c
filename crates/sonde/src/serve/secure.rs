//! The byte services, sockperf's ping-pong and chat over TLS (tokio-rustls): each connection's
//! handshake runs in its own task with its deadline, marked as not yet
//! identified (so when the cap is full a newcomer takes the place of a
//! silent one, as with plain connections), then the service runs over
//! the encrypted stream (chat's reader and writer share it through
//! `tokio::io::split`, whose lock tokio-rustls needs: a TLS session is not
//! full duplex). A client that fails its handshake fails alone.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use super::{Ctx, ServiceKind, chat, services};
use crate::door::Accepted;
use crate::tls::HANDSHAKE_TIMEOUT;

/// Spawns the task of one TLS connection.
pub(super) fn spawn(
    kind: ServiceKind,
    accepted: Accepted,
    ctx: Arc<Ctx>,
    room: &Arc<chat::Room>,
    acceptor: TlsAcceptor,
) {
    let room = Arc::clone(room);
    tokio::spawn(async move {
        let Accepted {
            stream,
            peer,
            permit,
        } = accepted;
        let _ = stream.set_nodelay(true);
        if kind == ServiceKind::Chargen {
            services::cap_send_buffer(&stream);
        }
        let waiting = permit.unidentified();
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
        let tls = tokio::select! {
            () = waiting.evicted() => return,
            () = ctx.shutdown.cancelled() => return,
            done = handshake => match done {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::debug!("{}: TLS handshake with {peer}: {err}", kind.name());
                    return;
                }
                Err(_) => return,
            },
        };
        drop(waiting);
        let _permit = permit;
        match kind {
            ServiceKind::Echo => Box::pin(services::answer_stream(tls, true, &ctx)).await,
            ServiceKind::Discard => Box::pin(services::answer_stream(tls, false, &ctx)).await,
            ServiceKind::Chargen => Box::pin(services::chargen(tls, &ctx)).await,
            ServiceKind::Chat => Box::pin(room.join_stream(tls, peer, &ctx)).await,
            ServiceKind::Sockperf => Box::pin(services::sockperf_stream(tls, &ctx)).await,
            // Implicit TLS, 465-style (`--tls`): SMTP inside the session.
            ServiceKind::Smtp => Box::pin(super::smtp::serve_secure(tls, Arc::clone(&ctx))).await,
            // The CLI refuses --tls for the proxies: a TLS socket has no
            // SOCKS or CONNECT client to speak to here.
            ServiceKind::Socks5 | ServiceKind::HttpProxy => {}
        }
    });
}
