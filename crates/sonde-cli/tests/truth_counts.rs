//! Exact counts where the truth is exact: reflectors and a middlebox this
//! test controls drop, duplicate and reorder known datagrams across the
//! shaped path (tests/truth/link.rs), and `rtt -u` and `perf -u` must
//! report exactly those counts (perf in iperf3's definitions).

mod common;
#[path = "truth/link.rs"]
mod link;

use link::{Link, json, link_or_skip, one_at_a_time, python, script, serve, stop};

/// A UDP reflector this test controls, across the shaped path: it drops
/// every datagram whose sequence number is 9 mod 10 and answers twice
/// those that are 3 mod 7. `rtt -u` must count exactly that.
#[test]
fn rtt_counts_exactly_what_a_reflector_drops_and_duplicates() {
    let _one = one_at_a_time();
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
    let reflector = python(&link.b, &["-c", REFLECTOR, "7007"], "the reflector");
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
    stop(reflector);
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

/// What iperf3's receiver counts of datagrams 1..=`sent` passed through
/// truth/relay.py: (lost, highest sequence number, out of order, datagrams
/// received). iperf3's definitions: a gap ahead counts its datagrams lost;
/// one behind the highest (late or a duplicate) counts out of order and
/// takes one back off the lost.
fn relayed(sent: u64) -> (u64, u64, u64, u64) {
    let mut arrived = Vec::new();
    let mut held = None;
    for seq in 1..=sent {
        if seq % 10 == 0 {
            continue;
        }
        if seq % 100 == 55 {
            held = Some(seq);
            continue;
        }
        arrived.push(seq);
        if seq % 50 == 25 {
            arrived.push(seq);
        }
        arrived.extend(held.take());
    }
    arrived.extend(held);
    let (mut highest, mut lost, mut late) = (0, 0, 0);
    for &seq in &arrived {
        if seq > highest {
            lost += seq - highest - 1;
            highest = seq;
        } else {
            late += 1;
            lost = u64::saturating_sub(lost, 1);
        }
    }
    (lost, highest, late, arrived.len() as u64)
}

/// `perf -u` through a middlebox (truth/relay.py) that drops every tenth
/// datagram, sends some twice and swaps some, across the shaped path:
/// sonde's counts, both ways and against iperf3's server too, are exactly
/// what iperf3's definitions make of that.
#[test]
fn perf_counts_exactly_what_a_middlebox_does() {
    let _one = one_at_a_time();
    if !common::have_peer("python3", "python3") || !common::have_peer("iperf3", "iperf3") {
        return;
    }
    let Some(link) = link_or_skip("relay", 100, 46) else {
        return;
    };
    let sonde_server = serve(&link.b, &["perf", "-s", "-p", "5201"], "Server listening");
    let iperf3_server = link::spawn_in(
        &link.b,
        &["iperf3", "-s", "-p", "5202", "--forceflush"],
        "Server listening",
    );
    let relay = script("relay.py");
    let relays = [
        python(&link.b, &[&relay, "5301", "5201"], "the relay to sonde"),
        python(&link.b, &[&relay, "5302", "5202"], "the relay to iperf3"),
    ];
    let mut seen = Vec::new();
    for (server, port) in [("sonde", "5301"), ("iperf3", "5302")] {
        for reverse in [false, true] {
            let mut args = vec!["perf", "-c", &link.b_addr, "-p", port, "-u", "-b", "20M"];
            args.extend(["-l", "1000", "-k", "2001", "-J"]);
            if reverse {
                args.push("-R");
            }
            let doc = json(Link::sonde(&link.a, &args));
            let end = &doc["end"];
            let sent = end["sum_sent"]["packets"].as_u64().unwrap_or(0);
            let got = &end["sum_received"];
            let (lost, highest, late, arrived) = relayed(sent);
            let way = if reverse { "from" } else { "to" };
            eprintln!("truth: perf -u {way} {server} through the relay: sent {sent}, {got}");
            assert!(sent >= 2001, "{way} {server}: sent {sent}");
            assert_eq!(got["packets"], highest, "{way} {server}: {got}");
            let n = |key: &str| got[key].as_u64().unwrap_or(u64::MAX);
            if server == "iperf3" && !reverse {
                // iperf3 3.12's server stops counting at the client's
                // TEST_END; a datagram of the tail still in the relay's
                // queue then is not counted (seen once in CI: 1,840 of
                // 1,841, 159 lost of 160). sonde's client sends TEST_END
                // as iperf3's does, so that count may miss one.
                assert!(
                    lost.abs_diff(n("lost_packets")) <= 1,
                    "{way} {server}: {got}"
                );
                assert!(
                    (arrived * 1000).abs_diff(n("bytes")) <= 1000,
                    "{way} {server}: {got}"
                );
            } else if server == "iperf3" {
                // iperf3's server, sending, goes on until the client's
                // TEST_END reaches it, and its count (which iperf3 reports
                // as the packets) includes the datagrams still in the
                // relay when its answer overtakes them (seen once in
                // CI: 2 of 2,186). Gaps count as lost only ahead of an
                // arrival, so the lost count stays exact; the bytes may
                // miss that tail.
                assert_eq!(got["lost_packets"], lost, "{way} {server}: {got}");
                let short = (arrived * 1000).saturating_sub(n("bytes"));
                assert!(
                    short <= 4000 && n("bytes") <= arrived * 1000,
                    "{way} {server}: {got}"
                );
            } else {
                assert_eq!(got["lost_packets"], lost, "{way} {server}: {got}");
                assert_eq!(got["bytes"], arrived * 1000, "{way} {server}: {got}");
            }
            if reverse {
                // The receiver is sonde's client: its own out-of-order count.
                let udp = &end["streams"][0]["udp"];
                assert_eq!(udp["out_of_order"], late, "{way} {server}: {udp}");
            }
            seen.push((server, reverse, lost, late));
        }
    }
    for relay in relays {
        stop(relay);
    }
    stop(iperf3_server);
    stop(sonde_server);
    assert!(
        seen.iter()
            .all(|&(_, _, lost, late)| lost > 100 && late > 50),
        "{seen:?}"
    );
}
