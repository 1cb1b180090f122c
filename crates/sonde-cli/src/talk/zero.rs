//! `sonde connect -z HOST PORTS`: which ports are open, as nc -z says it
//! (`Connection to HOST PORT port [tcp/ssh] succeeded!` with -v), or as
//! JSON; exit 0 when every port named is open, 1 otherwise.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use sonde::net;
use sonde::talk::scan::{self, State};

use super::connect::ConnectArgs;
use crate::usage::UsageError;

/// nc's default for a port that does not answer is the system's connect
/// timeout (minutes); a scan wants seconds.
const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// `connect -z`.
pub(crate) fn check(args: &ConnectArgs) -> anyhow::Result<ExitCode> {
    let (host, list) = if args.ports.is_empty() {
        let (host, port) = net::split_host_port(&args.host)
            .map_err(|e| UsageError(format!("{e} (or give the ports as a second argument)")))?;
        (host, port.to_string())
    } else {
        (args.host.clone(), args.ports.join(","))
    };
    if args.tls.on() || args.message.is_some() {
        return Err(
            UsageError("-z sends nothing: it takes neither --tls nor --message".into()).into(),
        );
    }
    super::numeric(&args.talk, &host)?;
    let ports = scan::parse_ports(&list).map_err(|e| UsageError(e.to_string()))?;
    let udp = args.talk.udp;
    let ip = net::resolve(&host, 0, args.talk.family())?
        .first()
        .map(std::net::SocketAddr::ip)
        .ok_or_else(|| anyhow::anyhow!("resolving {host}: no address"))?;
    let wait = args.connect_timeout.unwrap_or(DEFAULT_WAIT);
    let probes = scan::check(ip, &ports, udp, wait, args.talk.delay);
    let names = std::fs::read_to_string("/etc/services")
        .map(|t| scan::services(&t))
        .unwrap_or_default();
    let proto = if udp { "udp" } else { "tcp" };
    let service = |port: u16| names.get(&(port, proto.to_string())).cloned();
    if args.json {
        let ports: Vec<_> = probes
            .iter()
            .map(|p| {
                let mut v = serde_json::to_value(p).unwrap_or_default();
                v["service"] = json!(service(p.port));
                v
            })
            .collect();
        let count = |s: State| probes.iter().filter(|p| p.state == s).count();
        let doc = json!({"host": host, "address": ip.to_string(), "protocol": proto, "ports": ports,
            "open": count(State::Open), "closed": count(State::Closed), "filtered": count(State::Filtered)});
        outln!("{}", serde_json::to_string_pretty(&doc)?);
    } else if args.verbose > 0 {
        for p in &probes {
            let name = service(p.port).unwrap_or_else(|| "*".into());
            match p.state {
                State::Open => eprintln!(
                    "Connection to {host} {} port [{proto}/{name}] succeeded!",
                    p.port
                ),
                _ => eprintln!(
                    "sonde: connect to {host} port {} ({proto}) failed: {}",
                    p.port,
                    p.error.as_deref().unwrap_or("no answer")
                ),
            }
        }
    }
    let all_open = probes.iter().all(|p| p.state == State::Open);
    Ok(if all_open {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
