//! Port checks (`nc -z`): a port list as nc takes it (`22`, `20-25`,
//! `22,80,8000-8010`), each port tried with a deadline and a bounded
//! number in flight, and the service names of /etc/services. The lists
//! and the names are pure; [`check`] does the trying.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Ports tried at once, at most.
pub const IN_FLIGHT: usize = 64;

/// Ports a list may name, at most (all of them).
const MOST: usize = 65_535;

/// What was found at a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// TCP: the connection was accepted. UDP: no refusal came back (the
    /// port may be open, or what is there may drop what it cannot read,
    /// as nc warns).
    Open,
    /// Refused (TCP reset, or ICMP port unreachable for UDP).
    Closed,
    /// No answer within the deadline.
    Filtered,
}

/// One port's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// The port.
    pub port: u16,
    /// What was there.
    pub state: State,
    /// How long it took to find out.
    #[serde(serialize_with = "seconds")]
    pub took: Duration,
    /// Why it is not open, as the system said it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Why a port list was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("port list {list:?}: {why}")]
pub struct PortListError {
    /// The list as given.
    pub list: String,
    /// What is wrong with it.
    pub why: String,
}

/// The ports of a list like `22,80,8000-8010`, in the order given, each
/// once.
///
/// # Errors
/// [`PortListError`] for an empty part, a port outside 1 to 65535, or a
/// range that runs backwards.
pub fn parse_ports(list: &str) -> Result<Vec<u16>, PortListError> {
    let fail = |why: String| PortListError {
        list: list.to_string(),
        why,
    };
    let port = |text: &str| match text.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(fail(format!("{text:?} is not a port (1 to 65535)"))),
        Ok(p) => Ok(p),
    };
    let mut seen = vec![false; MOST + 1];
    let mut ports = Vec::new();
    for part in list.split(',') {
        let (low, high) = match part.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(part)?, port(part)?),
        };
        if high < low {
            return Err(fail(format!("the range {part:?} runs backwards")));
        }
        for p in low..=high {
            if !std::mem::replace(&mut seen[usize::from(p)], true) {
                ports.push(p);
            }
        }
    }
    Ok(ports)
}

/// Service names by (port, "tcp" or "udp"), from the text of
/// /etc/services: the first name given for each.
pub fn services(text: &str) -> HashMap<(u16, String), String> {
    let mut names = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let (Some(name), Some(at)) = (words.next(), words.next()) else {
            continue;
        };
        let Some((port, proto)) = at.split_once('/') else {
            continue;
        };
        if let Ok(port) = port.parse::<u16>() {
            names
                .entry((port, proto.to_ascii_lowercase()))
                .or_insert_with(|| name.to_string());
        }
    }
    names
}

/// Tries `port` on `ip` over TCP within `limit`.
fn check_tcp(ip: std::net::IpAddr, port: u16, limit: Duration) -> Probe {
    let start = Instant::now();
    let got = TcpStream::connect_timeout(&SocketAddr::new(ip, port), limit);
    let (state, error) = match got {
        Ok(_) => (State::Open, None),
        Err(e) if e.kind() == ErrorKind::TimedOut => {
            (State::Filtered, Some(crate::sys::describe(&e)))
        }
        Err(e) => (State::Closed, Some(crate::sys::describe(&e))),
    };
    Probe {
        port,
        state,
        took: start.elapsed(),
        error,
    }
}

/// Tries `port` on `ip` over UDP as nc does: a datagram of "X" a few
/// times, open unless a refusal (ICMP port unreachable) comes back
/// within `limit`.
fn check_udp(ip: std::net::IpAddr, port: u16, limit: Duration) -> Probe {
    let start = Instant::now();
    let any: SocketAddr = if ip.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let outcome = (|| {
        let sock = UdpSocket::bind(any)?;
        sock.connect(SocketAddr::new(ip, port))?;
        let tries = 3u32;
        let wait = (limit / tries).max(Duration::from_millis(10));
        let mut buf = [0u8; 1];
        for _ in 0..tries {
            sock.send(b"X")?;
            sock.set_read_timeout(Some(wait))?;
            match sock.recv(&mut buf) {
                Ok(_) => return Ok(()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })();
    let (state, error) = match outcome {
        Ok(()) => (State::Open, None),
        Err(e) => (State::Closed, Some(crate::sys::describe(&e))),
    };
    Probe {
        port,
        state,
        took: start.elapsed(),
        error,
    }
}

/// Tries every port of `ports` on `ip` (UDP when `udp`), each within
/// `limit`, at most [`IN_FLIGHT`] at once, or with `spacing` one at a time
/// that far apart (OpenBSD nc's `-i`, for a scan that must not look like
/// one); the outcomes in the order of `ports`.
pub fn check(
    ip: std::net::IpAddr,
    ports: &[u16],
    udp: bool,
    limit: Duration,
    spacing: Option<Duration>,
) -> Vec<Probe> {
    let probe = |port| {
        if udp {
            check_udp(ip, port, limit)
        } else {
            check_tcp(ip, port, limit)
        }
    };
    if let Some(gap) = spacing {
        return ports
            .iter()
            .enumerate()
            .map(|(i, &port)| {
                if i > 0 {
                    std::thread::sleep(gap);
                }
                probe(port)
            })
            .collect();
    }
    let next = AtomicUsize::new(0);
    let found: Mutex<Vec<Option<Probe>>> = Mutex::new(vec![None; ports.len()]);
    let workers = ports.len().clamp(1, IN_FLIGHT);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&port) = ports.get(i) else { break };
                    let probe = probe(port);
                    if let Ok(mut all) = found.lock() {
                        all[i] = Some(probe);
                    }
                }
            });
        }
    });
    found
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists_as_nc_takes_them() {
        assert_eq!(parse_ports("22").expect("a list"), [22]);
        assert_eq!(parse_ports("20-23").expect("a list"), [20, 21, 22, 23]);
        assert_eq!(
            parse_ports("80,22,21-23").expect("a list"),
            [80, 22, 21, 23]
        );
        assert_eq!(parse_ports("1-65535").expect("a list").len(), 65_535);
        for bad in ["", "0", "70000", "25-20", "a", "22,", "-5"] {
            assert!(parse_ports(bad).is_err(), "{bad:?}");
        }
        let e = parse_ports("25-20").expect_err("backwards");
        assert_eq!(
            e.to_string(),
            "port list \"25-20\": the range \"25-20\" runs backwards"
        );
    }

    #[test]
    fn service_names_from_etc_services() {
        let text = "# comment\nssh\t\t22/tcp\t\t\t# SSH\ndomain 53/tcp\ndomain 53/udp\nhttp 80/tcp www\nbroken line\nx 99999/tcp\n";
        let names = services(text);
        assert_eq!(
            names.get(&(22, "tcp".into())).map(String::as_str),
            Some("ssh")
        );
        assert_eq!(
            names.get(&(53, "udp".into())).map(String::as_str),
            Some("domain")
        );
        assert_eq!(
            names.get(&(80, "tcp".into())).map(String::as_str),
            Some("http")
        );
        assert_eq!(names.len(), 4);
    }
}
