//! `serve smtp`'s web side: the UI and the Mailpit-shaped JSON API on
//! `--http` (8025 by default, as Mailpit's), on the sink's own runtime.
//! Connections come in through the front door like every server's; each
//! is served by hyper with axum's router (`routes.rs`), with a deadline
//! for each request's head, and ends with the server.

mod routes;

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::store::Store;
use crate::door::{Accepted, Door, DoorConfig};
use crate::serve::ServeConfig;

/// How long a client may take to send a request's head (and, between
/// requests, to start the next).
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The web side's own front door, with the sink's access rules and caps.
pub fn door(config: &ServeConfig) -> Door {
    let mut door = DoorConfig::new("serve smtp http", config.max_connections);
    door.drain = config.drain;
    door.rules = config.rules.clone();
    Door::new(door)
}

/// Serves the UI and API for `store` on `listener` through `door` until
/// it shuts, then lets busy requests finish for the door's drain time.
pub async fn run(listener: TcpListener, door: Door, store: Arc<Store>) {
    let app = routes::router(Arc::clone(&store), door.closing());
    door.serve(listener, |accepted| {
        tokio::spawn(connection(accepted, app.clone(), door.clone()));
    })
    .await;
    door.drained().await;
}

/// One client's connection: requests until it closes, goes quiet past
/// [`HEAD_TIMEOUT`] or the server shuts (then the request under way
/// finishes first; an event stream ends at once).
async fn connection(accepted: Accepted, app: axum::Router, door: Door) {
    let Accepted { stream, permit, .. } = accepted;
    let _permit = permit;
    let _ = stream.set_nodelay(true);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let mut conn = std::pin::pin!(conn);
    let closing = door.closing();
    tokio::select! {
        _ = conn.as_mut() => return,
        () = closing.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
