//! HTTP servers behind the door (`serve smtp`'s web side, the exporter):
//! each connection let in is served by hyper with an axum router, with a
//! deadline for each request's head (and between requests), and ends
//! with the server: the request under way finishes, then it closes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::{Accepted, Door};

/// How long a client may take to send a request's head (and, between
/// requests, to start the next).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

impl Door {
    /// Serves `app` on `listener` until the door shuts, then lets busy
    /// requests finish for the drain time. A response that never ends on
    /// its own (an event stream) must end when [`Door::closing`] does.
    pub async fn serve_http(&self, listener: TcpListener, app: axum::Router) {
        self.serve(listener, |accepted| {
            tokio::spawn(connection(accepted, app.clone(), self.clone()));
        })
        .await;
        self.drained().await;
    }
}

/// One client's connection: requests until it closes, goes quiet past
/// [`HEAD_TIMEOUT`] or the server shuts. Until its first request's head
/// is in, a newcomer may take its place when the door is full, so silent
/// or dripping clients cannot keep the others out.
async fn connection(accepted: Accepted, app: axum::Router, door: Door) {
    let Accepted { stream, permit, .. } = accepted;
    let waiting = permit.unidentified();
    let evicted = waiting.eviction();
    let waiting = Arc::new(Mutex::new(Some(waiting)));
    let _permit = permit;
    let _ = stream.set_nodelay(true);
    let app = TowerToHyperService::new(app);
    let service = hyper::service::service_fn(move |request| {
        if let Ok(mut mark) = waiting.lock() {
            mark.take();
        }
        app.call(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let closing = door.closing();
    tokio::select! {
        _ = conn.as_mut() => return,
        () = evicted.cancelled() => return,
        () = closing.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
