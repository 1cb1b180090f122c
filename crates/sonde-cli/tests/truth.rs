//! Measurement truth: sonde's figures about a link against a link whose
//! truth is known, a path of network namespaces shaped with `tc tbf`
//! (tests/truth/link.rs). The payload rate of a shaped TCP link is the
//! rate times 1448/1514 (at MTU 1500 with timestamps, each 1514-byte frame
//! the shaper counts carries 1448 bytes of data).

mod common;
#[macro_use]
#[path = "truth/link.rs"]
mod link;

use std::process::Stdio;

use link::{
    Link, attempts, json, link_or_skip, one_at_a_time, p50_at, python, script, serve, stop,
};

/// The sweep's bandwidth, through sockperf's store-and-forward format,
/// within 5% of the shaped link's payload rate, at two rates; its base
/// within 10% or 100 µs of the unshaped round trip (the sweep's own
/// 14-byte messages, measured in the same passes as the rest).
#[test]
fn the_sweep_finds_the_shaped_rate() {
    let _one = one_at_a_time();
    for (mbit, subnet, sizes, n) in [
        (100, 41, "14,64,1K,4K,64K,128K,256K,512K", "21"),
        (20, 42, "14,64,1K,64K,128K,256K", "12"),
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
        let args = [
            "rtt",
            &target,
            "--sockperf",
            "--tcp",
            "--sweep",
            sizes,
            "-n",
            n,
            "--json",
        ];
        attempts(&format!("the sweep at {mbit} Mbit/s"), || {
            let mut cmd = Link::sonde(&link.a, &args);
            cmd.stdin(Stdio::null());
            sweep_agrees(mbit, &json(cmd))
        });
        stop(server);
    }
}

fn sweep_agrees(mbit: u32, doc: &serde_json::Value) -> Result<(), String> {
    let unshaped = p50_at(doc, 14);
    let fit = &doc["fit"];
    ensure!(fit["model"] == "store_and_forward", "{fit}");
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
    ensure!((4096..65_536).contains(&knee), "knee {knee}: {fit}");
    ensure!(
        (base - unshaped).abs() <= (0.1 * unshaped).max(100_000.0),
        "base {:.0} us against a 14-byte round trip of {:.0} us",
        base / 1e3,
        unshaped / 1e3
    );
    ensure!(
        (bw / truth - 1.0).abs() < 0.05,
        "{mbit} Mbit/s: the sweep says {:.1} Mbit/s, the payload rate is {:.1}",
        bw / 1e6,
        truth / 1e6
    );
    Ok(())
}

/// perf's TCP throughput within 2% of the payload rate.
#[test]
fn perf_measures_the_shaped_rate() {
    let _one = one_at_a_time();
    let mbit = 100;
    let Some(link) = link_or_skip("perf", mbit, 43) else {
        return;
    };
    let server = serve(&link.b, &["perf", "-s", "-p", "5201"], "Server listening");
    attempts("perf over TCP", || {
        let args = ["perf", "-c", &link.b_addr, "-t", "3", "-O", "1", "-J"];
        let doc = json(Link::sonde(&link.a, &args));
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
        ensure!(
            (got / truth - 1.0).abs() < 0.02,
            "perf says {:.2} Mbit/s, the payload rate is {:.2}",
            got / 1e6,
            truth / 1e6
        );
        Ok(())
    });
    stop(server);
}

/// perf's UDP: at half the link's rate everything arrives at the rate
/// asked; at twice it, the loss is what the link cannot carry.
#[test]
fn perf_udp_loss_is_what_the_link_cannot_carry() {
    let _one = one_at_a_time();
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
    attempts("perf over UDP", || {
        let (half, half_loss) = run("50M");
        let (twice, twice_loss) = run("200M");
        eprintln!(
            "truth: UDP at 50M: {:.2} Mbit/s, {half_loss:.2}% lost; at 200M: {:.2} Mbit/s, {twice_loss:.2}% lost",
            half / 1e6,
            twice / 1e6
        );
        ensure!(
            (half / 50e6 - 1.0).abs() < 0.01,
            "50M asked: {:.2} Mbit/s",
            half / 1e6
        );
        ensure!(half_loss == 0.0, "50M asked: {half_loss}% lost");
        // 100 Mbit/s of 1442-byte frames carries 97.1 Mbit/s of 1400-byte
        // payloads: 1 - 97.1/200 = 51.5% of what was asked is lost.
        let expected = (1.0 - 100.0 * 1400.0 / 1442.0 / 200.0) * 100.0;
        ensure!(
            (twice_loss - expected).abs() <= 2.0,
            "200M asked: {twice_loss}% lost, {expected:.1}% expected"
        );
        Ok(())
    });
    stop(server);
}

/// Over UDP every datagram is stored and forwarded whole, and a reflector
/// that holds each one for 5 ms adds a delay the link's truth knows: the
/// sweep's bandwidth within 5% of the UDP payload rate (1480 bytes of IP
/// payload in every 1514-byte frame), its base within 10% of a 16-byte
/// round trip through the same reflector, the knee of the shaper's burst
/// found.
#[test]
fn the_udp_sweep_finds_the_rate_and_an_added_delay() {
    let _one = one_at_a_time();
    if !common::have_peer("python3", "python3") {
        return;
    }
    let mbit = 100;
    let Some(link) = link_or_skip("usweep", mbit, 47) else {
        return;
    };
    let delay_s = 0.005;
    let reflector = python(
        &link.b,
        &[&script("delay.py"), "9009", &delay_s.to_string()],
        "the delaying reflector",
    );
    let target = format!("{}:9009", link.b_addr);
    let sizes = "16,1K,4K,8K,16K,32K,40K,48K,56K,64000";
    let args = ["rtt", &target, "-u", "--sweep", sizes, "-n", "12", "--json"];
    attempts("the UDP sweep", || {
        let doc = json(Link::sonde(&link.a, &args));
        let fit = &doc["fit"];
        ensure!(fit["model"] == "store_and_forward", "{fit}");
        let bw = fit["bandwidth_bits_per_sec"].as_f64().unwrap_or(0.0);
        let base = fit["base_ns"].as_f64().unwrap_or(0.0);
        let knee = fit["knee_bytes"].as_u64().unwrap_or(0);
        let truth = f64::from(mbit) * 1e6 * 1480.0 / 1514.0;
        let round_trip = p50_at(&doc, 16);
        eprintln!(
            "truth: UDP sweep {:.2} Mbit/s, payload {:.2} ({:+.1}%); base {:.0} us, a 16-byte round trip through a {:.0} ms reflector {:.0} us; knee {knee}",
            bw / 1e6,
            truth / 1e6,
            (bw / truth - 1.0) * 100.0,
            base / 1e3,
            delay_s * 1e3,
            round_trip / 1e3,
        );
        ensure!(round_trip >= delay_s * 1e9, "{round_trip} ns round trip");
        ensure!(
            (base - round_trip).abs() <= 0.1 * round_trip,
            "base {:.0} us against a 16-byte round trip of {:.0} us",
            base / 1e3,
            round_trip / 1e3
        );
        ensure!(
            (bw / truth - 1.0).abs() < 0.05,
            "the UDP sweep says {:.2} Mbit/s, the payload rate is {:.2}",
            bw / 1e6,
            truth / 1e6
        );
        ensure!((4096..65_536).contains(&knee), "knee {knee}: {fit}");
        Ok(())
    });
    stop(reflector);
}

/// `rtt --under-load` across the shaper's 50 ms queue, the load a
/// loss-based stream (cubic): it fills the queue to its limit, and after
/// each loss backs off only to 0.7 of it, so the loaded round trip's p50
/// grows by most of the queue and its worst reaches all of it, and no
/// more.
#[test]
fn under_load_shows_the_shapers_queue() {
    let _one = one_at_a_time();
    let Some(link) = link_or_skip("load", 100, 48) else {
        return;
    };
    let echo = serve(&link.b, &["serve", "echo", "--port", "7007"], "listening");
    let perf = serve(&link.b, &["perf", "-s", "-p", "5201"], "Server listening");
    let args = [
        "rtt",
        &link.b_addr,
        "7007",
        "--under-load",
        "--load-congestion",
        "cubic",
        "--json",
    ];
    attempts("rtt --under-load", || {
        let doc = json(Link::sonde(&link.a, &args));
        let ms = |side: &str, at: &str| doc[side][at].as_f64().unwrap_or(0.0) / 1e6;
        let grown = ms("loaded_rtt_ns", "p50") - ms("idle_rtt_ns", "p50");
        let worst = ms("loaded_rtt_ns", "max");
        let queue = 50.0;
        eprintln!(
            "truth: under load (cubic) the p50 grew by {grown:.1} ms, the worst was {worst:.1} ms, the queue holds {queue} ms; {} loaded round trips",
            doc["loaded_rtt_ns"]["count"]
        );
        ensure!(grown >= 0.6 * queue, "p50 grew by {grown:.1} ms: {doc}");
        ensure!(grown <= queue + 5.0, "p50 grew by {grown:.1} ms: {doc}");
        ensure!(worst >= 0.9 * queue, "worst {worst:.1} ms: {doc}");
        Ok(())
    });
    stop(perf);
    stop(echo);
}
