//! `serve smtp`'s web side: the UI and the Mailpit-shaped JSON API on
//! `--http` (8025 by default, as Mailpit's), on the sink's own runtime,
//! through the front door's HTTP serving (`routes.rs` has the paths).

mod routes;

use std::sync::Arc;

use tokio::net::TcpListener;

use super::store::Store;
use crate::door::{Door, DoorConfig};
use crate::serve::ServeConfig;

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
    let app = routes::router(store, door.closing());
    door.serve_http(listener, app).await;
}
