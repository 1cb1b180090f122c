//! The shaped path the truth tests measure (tests/truth.rs,
//! tests/truth_counts.rs): two hosts and a router in network namespaces
//! the test creates, joined by veth pairs and shaped with `tc tbf` both ways
//! at the router; every packet stays in them. Needs root and iproute2:
//! skipped with a message without them, a failure under
//! SONDE_REQUIRE_PEERS=1.

#![allow(dead_code, unreachable_pub, unused_macros)]

use std::process::{Child, Command, Stdio};

use crate::common::{self, Reaper, sonde_path};
use serde_json::Value;

/// Two hosts in namespaces of their own and a router between them (a
/// third), joined by veth pairs; the router shapes both ways, so a sender
/// is not held back by its own queue as it would be by a local shaper:
/// what the link cannot carry is dropped, as on a real path. Removed on
/// drop.
pub struct Link {
    pub a: String,
    pub b: String,
    r: String,
    /// B's address, as A reaches it.
    pub b_addr: String,
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
    pub fn sonde(ns: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(sonde_path()).args(args);
        cmd
    }

    /// The payload rate, bit/s, of TCP over a link shaped to `mbit`.
    pub fn payload(mbit: u32) -> f64 {
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
pub fn serve(ns: &str, args: &[&str], ready: &str) -> (Child, Reaper) {
    let path = sonde_path();
    let mut all = vec![path.to_str().expect("a UTF-8 path")];
    all.extend(args);
    spawn_in(ns, &all, ready)
}

pub fn stop((mut child, mut reaper): (Child, Reaper)) {
    let _ = child.kill();
    let _ = child.wait();
    reaper.disarm();
}

/// One shaped path at a time: the tests measure, and tests beside each
/// other would share the CPUs they measure with.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn link_or_skip(tag: &str, mbit: u32, subnet: u8) -> Option<Link> {
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

pub fn json(cmd: Command) -> Value {
    let done = common::run(cmd, b"");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    serde_json::from_slice(&done.stdout).expect("JSON")
}

/// Holds the shaped paths to one at a time for as long as it lives.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `python3 ARGS` inside namespace `ns`, once it prints "listening".
pub fn python(ns: &str, args: &[&str], who: &str) -> (Child, Reaper) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "python3"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {who}: {e}"));
    let reaper = Reaper::new(child.id());
    common::await_stdout_line(&mut child, "listening", who);
    (child, reaper)
}

/// The path of a helper script beside the truth tests.
pub fn script(name: &str) -> String {
    format!("{}/tests/truth/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `PROGRAM ARGS` inside namespace `ns`, once `ready` is on its output.
pub fn spawn_in(ns: &str, program_and_args: &[&str], ready: &str) -> (Child, Reaper) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).args(program_and_args);
    let (child, reaper, line) = common::spawn_ready(cmd, |l| l.contains(ready));
    assert!(line.is_some(), "no {ready:?} from {program_and_args:?}");
    (child, reaper)
}

/// Fails an attempt (an `Err` naming what missed) unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        let held: bool = $cond;
        if !held {
            return Err(format!($($why)+));
        }
    };
}

/// How often a figure is taken before a miss fails the test.
pub const ATTEMPTS: usize = 3;

/// Takes a figure up to [`ATTEMPTS`] times and passes on the first that
/// agrees with the truth. A stall of this shared VM's host (a 14-byte
/// round trip of 286 µs where it is 60) only adds delay to whatever runs
/// through it; a sonde that is wrong is wrong every time, and fails.
/// Every miss is printed, so a pass at a later attempt is seen.
pub fn attempts(what: &str, mut attempt: impl FnMut() -> Result<(), String>) {
    let mut missed = Vec::new();
    for n in 1..=ATTEMPTS {
        match attempt() {
            Ok(()) => return,
            Err(why) => {
                eprintln!("truth: {what}: attempt {n} of {ATTEMPTS} missed: {why}");
                missed.push(why);
            }
        }
    }
    panic!("{what}: every attempt missed:\n{}", missed.join("\n"));
}

/// The p50 round trip of the sweep's run at `size`, ns.
pub fn p50_at(doc: &Value, size: u64) -> f64 {
    doc["runs"]
        .as_array()
        .and_then(|runs| runs.iter().find(|r| r["size"] == size))
        .and_then(|r| r["rtt_ns"]["p50"].as_f64())
        .unwrap_or(0.0)
}
