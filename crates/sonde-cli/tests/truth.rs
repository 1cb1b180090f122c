//! Measurement truth: sonde's figures about a link against a link whose
//! truth is known. Three network namespaces this test creates (two hosts
//! and a router between them), joined by veth pairs and shaped with `tc
//! tbf` both ways at the router; every packet stays in them. The payload rate of a shaped TCP link is the rate times
//! 1448/1514 (at MTU 1500 with timestamps, each 1514-byte frame the
//! shaper counts carries 1448 bytes of data).
//!
//! Needs root and iproute2: skipped with a message without them, a
//! failure under SONDE_REQUIRE_PEERS=1.

mod common;

use std::process::{Child, Command, Stdio};

use common::{Reaper, sonde_path};
use serde_json::Value;

/// Two hosts in namespaces of their own and a router between them (a
/// third), joined by veth pairs; the router shapes both ways, so a sender
/// is not held back by its own queue as it would be by a local shaper:
/// what the link cannot carry is dropped, as on a real path. Removed on
/// drop.
struct Link {
    a: String,
    b: String,
    r: String,
    /// B's address, as A reaches it.
    b_addr: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Link {
    /// A path shaped to `mbit` both ways, or `None` where namespaces
    /// cannot be made (not root, no iproute2).
    fn new(tag: &str, mbit: u32, subnet: u8) -> Option<Self> {
        let id = std::process::id();
        let name = |side: &str| format!("sonde-{tag}-{side}-{id}");
        let (a, b, r) = (name("a"), name("b"), name("r"));
        if !ip(&["netns", "add", &a]) {
            return None;
        }
        let link = Link {
            a: a.clone(),
            b: b.clone(),
            r: r.clone(),
            b_addr: format!("10.232.{subnet}.2"),
        };
        let (left, right) = (format!("10.231.{subnet}"), format!("10.232.{subnet}"));
        let (va, ra, rb, vb) = (
            format!("sa{subnet}"),
            format!("ra{subnet}"),
            format!("rb{subnet}"),
            format!("sb{subnet}"),
        );
        let ok = ip(&["netns", "add", &b])
            && ip(&["netns", "add", &r])
            && ip(&[
                "link", "add", &va, "netns", &a, "type", "veth", "peer", "name", &ra, "netns", &r,
            ])
            && ip(&[
                "link", "add", &vb, "netns", &b, "type", "veth", "peer", "name", &rb, "netns", &r,
            ])
            && ip(&["-n", &a, "addr", "add", &format!("{left}.1/24"), "dev", &va])
            && ip(&[
                "-n",
                &r,
                "addr",
                "add",
                &format!("{left}.254/24"),
                "dev",
                &ra,
            ])
            && ip(&[
                "-n",
                &r,
                "addr",
                "add",
                &format!("{right}.254/24"),
                "dev",
                &rb,
            ])
            && ip(&[
                "-n",
                &b,
                "addr",
                "add",
                &format!("{right}.2/24"),
                "dev",
                &vb,
            ])
            && [(&a, &va), (&r, &ra), (&r, &rb), (&b, &vb)]
                .iter()
                .all(|(ns, dev)| {
                    ip(&["-n", ns, "link", "set", dev, "up"])
                        && ip(&["-n", ns, "link", "set", "lo", "up"])
                })
            && ip(&[
                "-n",
                &a,
                "route",
                "add",
                "default",
                "via",
                &format!("{left}.254"),
            ])
            && ip(&[
                "-n",
                &b,
                "route",
                "add",
                "default",
                "via",
                &format!("{right}.254"),
            ])
            && Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &r,
                    "sysctl",
                    "-q",
                    "-w",
                    "net.ipv4.ip_forward=1",
                ])
                .status()
                .is_ok_and(|s| s.success());
        assert!(ok, "setting up the namespaces {a}, {r} and {b}");
        for dev in [&ra, &rb] {
            let rate = format!("{mbit}mbit");
            let shaped = Command::new("ip")
                .args([
                    "netns", "exec", &r, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
                ])
                .args(["rate", &rate, "burst", "16kb", "latency", "50ms"])
                .status()
                .is_ok_and(|s| s.success());
            assert!(shaped, "shaping {dev} in {r}");
        }
        Some(link)
    }

    /// `sonde ARGS` inside namespace `ns`.
    fn sonde(ns: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(sonde_path()).args(args);
        cmd
    }

    /// The payload rate, bit/s, of TCP over a link shaped to `mbit`.
    fn payload(mbit: u32) -> f64 {
        f64::from(mbit) * 1e6 * 1448.0 / 1514.0
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b, &self.r] {
            ip(&["netns", "del", ns]);
        }
    }
}

/// A server in a namespace, ready once `ready` is on its output.
fn serve(ns: &str, args: &[&str], ready: &str) -> (Child, Reaper) {
    let (child, reaper, line) = common::spawn_ready(Link::sonde(ns, args), |l| l.contains(ready));
    assert!(line.is_some(), "no {ready:?} from {args:?}");
    (child, reaper)
}

fn stop((mut child, mut reaper): (Child, Reaper)) {
    let _ = child.kill();
    let _ = child.wait();
    reaper.disarm();
}

/// One shaped path at a time: the tests measure, and tests beside each
/// other would share the CPUs they measure with.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn link_or_skip(tag: &str, mbit: u32, subnet: u8) -> Option<Link> {
    let link = Link::new(tag, mbit, subnet);
    if link.is_none() {
        if std::env::var("SONDE_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!(
                "network namespaces are required (SONDE_REQUIRE_PEERS=1): run as root with iproute2"
            );
        }
        eprintln!("skipping: cannot create network namespaces (needs root and iproute2)");
    }
    link
}

fn json(cmd: Command) -> Value {
    let done = common::run(cmd, b"");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    serde_json::from_slice(&done.stdout).expect("JSON")
}

/// The sweep's bandwidth, through sockperf's store-and-forward format,
/// within 5% of the shaped link's payload rate, at two rates.
#[test]
fn the_sweep_finds_the_shaped_rate() {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (mbit, subnet, sizes, n) in [
        (100, 41, "14,64,1K,4K,64K,128K,256K,512K", "20"),
        (20, 42, "14,64,1K,4K,32K,64K,128K,256K", "12"),
    ] {
        let Some(link) = link_or_skip("sweep", mbit, subnet) else {
            return;
        };
        let server = serve(
            &link.b,
            &["serve", "sockperf", "--port", "11111"],
            "listening",
        );
        let target = format!("{}:11111", link.b_addr);
        let mut cmd = Link::sonde(
            &link.a,
            &[
                "rtt",
                &target,
                "--sockperf",
                "--tcp",
                "--sweep",
                sizes,
                "-n",
                n,
                "--json",
            ],
        );
        cmd.stdin(Stdio::null());
        let doc = json(cmd);
        // The base's truth: the round trip of the smallest message.
        let small = json(Link::sonde(
            &link.a,
            &[
                "rtt",
                &target,
                "--sockperf",
                "--tcp",
                "-m",
                "14",
                "-n",
                "500",
                "--json",
            ],
        ));
        stop(server);
        let unshaped = small["rtt_ns"]["p50"].as_f64().unwrap_or(0.0);
        let fit = &doc["fit"];
        assert_eq!(fit["model"], "store_and_forward", "{fit}");
        let bw = fit["bandwidth_bits_per_sec"].as_f64().unwrap_or(0.0);
        let truth = Link::payload(mbit);
        let base = fit["base_ns"].as_f64().unwrap_or(0.0);
        eprintln!(
            "truth: {mbit} Mbit/s shaped: sweep {:.2} Mbit/s, payload {:.2} ({:+.1}%); base {:.0} us, a 14-byte round trip {:.0} us; knee {}",
            bw / 1e6,
            truth / 1e6,
            (bw / truth - 1.0) * 100.0,
            base / 1e3,
            unshaped / 1e3,
            fit["knee_bytes"]
        );
        // The shaper's 16 KiB burst lets small messages by unqueued: the
        // sweep must find that knee, and take the base from below it.
        let knee = fit["knee_bytes"].as_u64().unwrap_or(0);
        assert!((4096..65_536).contains(&knee), "knee {knee}: {fit}");
        assert!(
            (base - unshaped).abs() <= (0.1 * unshaped).max(100_000.0),
            "base {:.0} us against a 14-byte round trip of {:.0} us",
            base / 1e3,
            unshaped / 1e3
        );
        assert!(
            (bw / truth - 1.0).abs() < 0.05,
            "{mbit} Mbit/s: the sweep says {:.1} Mbit/s, the payload rate is {:.1}",
            bw / 1e6,
            truth / 1e6
        );
    }
}

/// perf's TCP throughput within 2% of the payload rate.
#[test]
fn perf_measures_the_shaped_rate() {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mbit = 100;
    let Some(link) = link_or_skip("perf", mbit, 43) else {
        return;
    };
    let server = serve(&link.b, &["perf", "-s", "-p", "5201"], "Server listening");
    let cmd = Link::sonde(
        &link.a,
        &["perf", "-c", &link.b_addr, "-t", "3", "-O", "1", "-J"],
    );
    let doc = json(cmd);
    stop(server);
    let got = doc["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    let truth = Link::payload(mbit);
    eprintln!(
        "truth: perf TCP {:.2} Mbit/s, payload {:.2} ({:+.2}%)",
        got / 1e6,
        truth / 1e6,
        (got / truth - 1.0) * 100.0
    );
    assert!(
        (got / truth - 1.0).abs() < 0.02,
        "perf says {:.2} Mbit/s, the payload rate is {:.2}",
        got / 1e6,
        truth / 1e6
    );
}

/// perf's UDP: at half the link's rate everything arrives at the rate
/// asked; at twice it, the loss is what the link cannot carry.
#[test]
fn perf_udp_loss_is_what_the_link_cannot_carry() {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mbit = 100;
    let Some(link) = link_or_skip("udp", mbit, 44) else {
        return;
    };
    let server = serve(&link.b, &["perf", "-s", "-p", "5201"], "Server listening");
    let run = |rate: &str| {
        let args = [
            "perf",
            "-c",
            &link.b_addr,
            "-u",
            "-b",
            rate,
            "-l",
            "1400",
            "-t",
            "2",
            "-J",
        ];
        let doc = json(Link::sonde(&link.a, &args));
        let sum = &doc["end"]["sum_received"];
        (
            sum["bits_per_second"].as_f64().unwrap_or(0.0),
            sum["lost_percent"].as_f64().unwrap_or(-1.0),
        )
    };
    let (half, half_loss) = run("50M");
    let (twice, twice_loss) = run("200M");
    stop(server);
    eprintln!(
        "truth: UDP at 50M: {:.2} Mbit/s, {half_loss:.2}% lost; at 200M: {:.2} Mbit/s, {twice_loss:.2}% lost",
        half / 1e6,
        twice / 1e6
    );
    assert!(
        (half / 50e6 - 1.0).abs() < 0.01,
        "50M asked: {:.2} Mbit/s",
        half / 1e6
    );
    assert!(half_loss == 0.0, "50M asked: {half_loss}% lost");
    // 100 Mbit/s of 1442-byte frames carries 97.1 Mbit/s of 1400-byte
    // payloads: 1 - 97.1/200 = 51.5% of what was asked is lost.
    let expected = (1.0 - 100.0 * 1400.0 / 1442.0 / 200.0) * 100.0;
    assert!(
        (twice_loss - expected).abs() <= 2.0,
        "200M asked: {twice_loss}% lost, {expected:.1}% expected"
    );
}

/// A UDP reflector this test controls, across the shaped path: it drops
/// every datagram whose sequence number is 9 mod 10 and answers twice
/// those that are 3 mod 7. `rtt -u` must count exactly that.
#[test]
fn rtt_counts_exactly_what_a_reflector_drops_and_duplicates() {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !common::have_peer("python3", "python3") {
        return;
    }
    let Some(link) = link_or_skip("counts", 100, 45) else {
        return;
    };
    const REFLECTOR: &str = "import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', int(sys.argv[1])))
print('listening', flush=True)
while True:
    d, a = s.recvfrom(65536)
    seq = struct.unpack('>Q', d[:8])[0]
    if seq % 10 == 9:
        continue
    s.sendto(d, a)
    if seq % 7 == 3:
        s.sendto(d, a)
";
    let mut child = Command::new("ip")
        .args(["netns", "exec", &link.b, "python3", "-c", REFLECTOR, "7007"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the reflector");
    let reaper = Reaper::new(child.id());
    common::await_stdout_line(&mut child, "listening", "the reflector");
    let target = format!("{}:7007", link.b_addr);
    let args = [
        "rtt",
        &target,
        "-u",
        "-n",
        "1000",
        "--warmup",
        "0",
        "--timeout",
        "0.05",
        "--json",
    ];
    let doc = json(Link::sonde(&link.a, &args));
    stop((child, reaper));
    let sent = doc["sent"].as_u64().unwrap_or(0);
    let drops = (0..sent).filter(|s| s % 10 == 9).count() as u64;
    let dups = (0..sent).filter(|s| s % 7 == 3 && s % 10 != 9).count() as u64;
    eprintln!(
        "truth: rtt -u sent {sent}, lost {} ({drops} dropped), duplicates {} ({dups} sent twice)",
        doc["lost"], doc["duplicates"]
    );
    assert_eq!(sent, 1000, "{doc}");
    assert_eq!(doc["lost"], drops, "{doc}");
    assert_eq!(doc["duplicates"], dups, "{doc}");
    assert_eq!(doc["late"], 0, "{doc}");
}
