//! UDP echo, discard and the sockperf reflector. Echo sends each datagram back once, to its
//! sender, so no peer ever gets more bytes than it sent (no amplification).

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::{ServiceKind, Stats};

/// Serves `kind` (echo, discard or sockperf) on `sock` until `shutdown`.
pub async fn run(
    sock: UdpSocket,
    kind: ServiceKind,
    shutdown: CancellationToken,
    stats: Arc<Stats>,
) -> Arc<Stats> {
    let mut buf = vec![0u8; 65_536];
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return stats,
            r = sock.recv_from(&mut buf) => r,
        };
        let Ok((n, from)) = received else { continue };
        stats.add_in(n);
        stats
            .served
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let reply = match kind {
            ServiceKind::Echo => true,
            ServiceKind::Sockperf => crate::wire::sockperf::reflect(&mut buf[..n]),
            _ => false,
        };
        if reply && sock.send_to(&buf[..n], from).await.is_ok() {
            stats.add_out(n);
        }
    }
}
