//! The UDP services (echo, discard, the sockperf reflector) on one
//! blocking thread: `recvfrom` sleeps in the kernel until a datagram
//! comes, with no readiness wait before it (sockperf's own server does the
//! same). Echo sends each datagram back once, to its sender, so no peer
//! ever gets more bytes than it sent (no amplification). A datagram from
//! outside `--allow` or inside `--deny` is dropped unanswered and counted.

use std::net::UdpSocket;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{ServiceKind, Stats};
use crate::door::Door;

/// How often a waiting service looks at shutdown.
const TICK: Duration = Duration::from_millis(200);

/// Serves `kind` (echo, discard or sockperf) on `sock` until `door`
/// shuts; the service holds one of the door's places while it runs. With
/// `busy_poll` it spins on a non-blocking socket instead of sleeping.
pub fn run(sock: &UdpSocket, kind: ServiceKind, busy_poll: bool, door: &Door, stats: &Stats) {
    let _permit = door.try_permit();
    let setup = if busy_poll {
        sock.set_nonblocking(true)
    } else {
        sock.set_read_timeout(Some(TICK))
    };
    if let Err(err) = setup {
        tracing::warn!("UDP {}: configuring the socket: {err}", kind.name());
        return;
    }
    let mut buf = vec![0u8; 65_536];
    let mut spins = 0u32;
    let every = door.config().rules.report_every;
    let mut reported = std::time::Instant::now();
    loop {
        if reported.elapsed() >= every {
            door.report_refusals();
            reported = std::time::Instant::now();
        }
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if crate::sys::timed_out(&e) => {
                spins = spins.wrapping_add(1);
                if (!busy_poll || spins.is_multiple_of(1024)) && door.is_shut() {
                    break;
                }
                std::hint::spin_loop();
                continue;
            }
            // An ICMP error for an earlier reply, an interrupted call: go on.
            Err(_) if !door.is_shut() => continue,
            Err(_) => break,
        };
        if door.refuses_datagram(from.ip()) {
            continue;
        }
        stats.add_in(n);
        stats.datagrams.fetch_add(1, Ordering::Relaxed);
        let reply = match kind {
            ServiceKind::Echo => true,
            ServiceKind::Sockperf => crate::wire::sockperf::reflect(&mut buf[..n]),
            _ => false,
        };
        if reply && sock.send_to(&buf[..n], from).is_ok() {
            stats.add_out(n);
        }
    }
    door.report_refusals();
}
