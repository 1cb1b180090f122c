#!/usr/bin/env python3
"""Truth run: sonde's figures about a shaped path against the truth, and
iperf3's where it has the figure, side by side.

Builds two hosts and a router in network namespaces (root), shapes the
router's two veths with tc tbf (RATE Mbit/s, 16 KiB burst, 50 ms queue),
and runs, interleaved, ROUNDS times: TCP throughput (sonde perf, iperf3),
UDP at twice the rate (the loss the path cannot carry: sonde perf, iperf3),
sonde rtt --sweep (sockperf's format against sonde serve sockperf:
bandwidth, base, knee), the UDP sweep against a reflector that adds 5 ms
(tests/truth/delay.py), rtt --under-load with a cubic load (the 50 ms
queue), and perf -u's lost datagrams through a middlebox that drops,
duplicates and swaps known ones (tests/truth/relay.py; sonde's server and
iperf3's). Prints the medians, the truth and the ratios.

    sudo python3 bench/truth.py --sonde target/release/sonde [--rate 100] [--rounds 3]
"""
import argparse
import json
import statistics
import subprocess
import time

NS = ["sonde-truth-a", "sonde-truth-r", "sonde-truth-b"]


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def setup(rate):
    teardown()
    a, r, b = NS
    for ns in NS:
        sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", "ta", "netns", a, "type", "veth", "peer", "name", "tra", "netns", r)
    sh("ip", "link", "add", "tb", "netns", b, "type", "veth", "peer", "name", "trb", "netns", r)
    for ns, dev, addr in [(a, "ta", "10.233.1.1/24"), (r, "tra", "10.233.1.254/24"),
                          (r, "trb", "10.233.2.254/24"), (b, "tb", "10.233.2.2/24")]:
        sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", a, "route", "add", "default", "via", "10.233.1.254")
    sh("ip", "-n", b, "route", "add", "default", "via", "10.233.2.254")
    sh("ip", "netns", "exec", r, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    for dev in ["tra", "trb"]:
        sh("ip", "netns", "exec", r, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
           "rate", f"{rate}mbit", "burst", "16kb", "latency", "50ms")


def teardown():
    for ns in NS:
        sh("ip", "netns", "del", ns, check=False)


def in_ns(ns, *cmd):
    return ["ip", "netns", "exec", ns, *cmd]


def server(ns, port, *cmd):
    proc = subprocess.Popen(in_ns(ns, *cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while not sh(*in_ns(ns, "ss", "-Hltn", f"sport = :{port}")).stdout.strip():
        if time.time() > deadline:
            raise RuntimeError(f"{cmd} does not listen on {port}")
        time.sleep(0.01)
    return proc


def run_json(ns, *cmd):
    out = subprocess.run(in_ns(ns, *cmd), check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def perf(tool, sonde, args):
    a, _, b = NS
    prog = [sonde, "perf"] if tool == "sonde" else ["iperf3"]
    srv = server(b, 5301, *prog, "-s", "-1", "-p", "5301")
    try:
        return run_json(a, *prog, "-c", "10.233.2.2", "-p", "5301", "-J", *args)
    finally:
        srv.wait(timeout=20)


HERE = __file__.rsplit("/", 1)[0] + "/../crates/sonde-cli/tests/truth/"


def helper(ns, *args):
    proc = subprocess.Popen(in_ns(ns, "python3", *args), stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()  # "listening"
    return proc


def udp_sweep(sonde):
    a, _, b = NS
    refl = helper(b, HERE + "delay.py", "9009", "0.005")
    try:
        target = "10.233.2.2:9009"
        d = run_json(a, sonde, "rtt", target, "-u", "--sweep",
                     "16,1K,4K,8K,16K,32K,40K,48K,56K,64000", "-n", "12", "--json")
        s = run_json(a, sonde, "rtt", target, "-u", "-m", "16", "-n", "200", "--json")
    finally:
        refl.kill()
        refl.wait()
    return d["fit"]["bandwidth_bits_per_sec"], d["fit"]["base_ns"] / 1e3, s["rtt_ns"]["p50"] / 1e3


def under_load(sonde):
    a, _, b = NS
    echo = server(b, 7007, sonde, "serve", "echo", "--port", "7007")
    srv = server(b, 5201, sonde, "perf", "-s", "-p", "5201")
    try:
        d = run_json(a, sonde, "rtt", "10.233.2.2", "7007", "--under-load",
                     "--load-congestion", "cubic", "--json")
    finally:
        for p in (echo, srv):
            p.kill()
            p.wait()
    grown = (d["loaded_rtt_ns"]["p50"] - d["idle_rtt_ns"]["p50"]) / 1e6
    return grown, d["loaded_rtt_ns"]["max"] / 1e6


def relayed_loss(tool, sonde):
    """perf -u -k 2001 through relay.py: (lost, what iperf3's rules make of it)."""
    a, _, b = NS
    prog = [sonde, "perf"] if tool == "sonde" else ["iperf3"]
    srv = server(b, 5302, *prog, "-s", "-1", "-p", "5302")
    relay = helper(b, HERE + "relay.py", "5303", "5302")
    try:
        d = run_json(a, sonde, "perf", "-c", "10.233.2.2", "-p", "5303", "-u", "-b", "20M",
                     "-l", "1000", "-k", "2001", "-J")
    finally:
        relay.kill()
        relay.wait()
        srv.wait(timeout=20)
    return d["end"]["sum_received"]["lost_packets"]


def relay_truth(sent):
    """iperf3's lost count for datagrams 1..sent under relay.py's rules."""
    arrived, held = [], None
    for seq in range(1, sent + 1):
        if seq % 10 == 0:
            continue
        if seq % 100 == 55:
            held = seq
            continue
        arrived += [seq, seq] if seq % 50 == 25 else [seq]
        if held:
            arrived.append(held)
            held = None
    highest = lost = 0
    for seq in arrived + ([held] if held else []):
        if seq > highest:
            lost += seq - highest - 1
            highest = seq
        else:
            lost = max(lost - 1, 0)
    return lost


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sonde", default="target/release/sonde")
    p.add_argument("--rate", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    payload = a.rate * 1e6 * 1448 / 1514
    udp_payload = a.rate * 1e6 * 1400 / 1442
    setup(a.rate)
    res = {k: [] for k in ["tcp_sonde", "tcp_iperf3", "loss_sonde", "loss_iperf3", "bw", "base", "knee", "small",
                          "ubw", "ubase", "usmall", "grown", "worst", "lost_sonde", "lost_iperf3"]}
    try:
        for rnd in range(a.rounds):
            for tool in ["sonde", "iperf3"]:
                d = perf(tool, a.sonde, ["-t", "5", "-O", "1"])
                res[f"tcp_{tool}"].append(d["end"]["sum_received"]["bits_per_second"])
                d = perf(tool, a.sonde, ["-u", "-b", f"{2 * a.rate}M", "-l", "1400", "-t", "3"])
                res[f"loss_{tool}"].append(d["end"]["sum_received"]["lost_percent"])
            srv = server(NS[2], 11111, a.sonde, "serve", "sockperf", "--port", "11111")
            try:
                d = run_json(NS[0], a.sonde, "rtt", "10.233.2.2:11111", "--sockperf", "--tcp", "--sweep",
                             "14,64,1K,4K,64K,128K,256K,512K", "-n", "20", "--json")
                s = run_json(NS[0], a.sonde, "rtt", "10.233.2.2:11111", "--sockperf", "--tcp",
                             "-m", "14", "-n", "1000", "--json")
            finally:
                srv.kill()
                srv.wait()
            res["bw"].append(d["fit"]["bandwidth_bits_per_sec"])
            res["base"].append(d["fit"]["base_ns"] / 1e3)
            res["knee"].append(d["fit"].get("knee_bytes") or 0)
            res["small"].append(s["rtt_ns"]["p50"] / 1e3)
            for k, v in zip(["ubw", "ubase", "usmall"], udp_sweep(a.sonde)):
                res[k].append(v)
            for k, v in zip(["grown", "worst"], under_load(a.sonde)):
                res[k].append(v)
            for tool in ["sonde", "iperf3"]:
                res[f"lost_{tool}"].append(relayed_loss(tool, a.sonde))
            print(f"round {rnd + 1}: " + ", ".join(f"{k} {v[-1]:.4g}" for k, v in res.items()), flush=True)
    finally:
        teardown()
    m = {k: statistics.median(v) for k, v in res.items()}
    loss_truth = (1 - udp_payload / (2 * a.rate * 1e6)) * 100
    print(f"\nshaped path: {a.rate} Mbit/s (tbf, 16 KiB burst, 50 ms queue), median of {a.rounds}")
    print(f"{'figure':34s} {'sonde':>12s} {'iperf3':>12s} {'truth':>12s} {'sonde/truth':>12s} {'iperf3/truth':>13s}")
    print(f"{'TCP throughput (Mbit/s)':34s} {m['tcp_sonde'] / 1e6:12.2f} {m['tcp_iperf3'] / 1e6:12.2f} "
          f"{payload / 1e6:12.2f} {m['tcp_sonde'] / payload:12.4f} {m['tcp_iperf3'] / payload:13.4f}")
    print(f"{'UDP loss at 2x the rate (%)':34s} {m['loss_sonde']:12.2f} {m['loss_iperf3']:12.2f} "
          f"{loss_truth:12.2f} {m['loss_sonde'] / loss_truth:12.4f} {m['loss_iperf3'] / loss_truth:13.4f}")
    print(f"{'sweep bandwidth (Mbit/s)':34s} {m['bw'] / 1e6:12.2f} {'-':>12s} {payload / 1e6:12.2f} "
          f"{m['bw'] / payload:12.4f} {'-':>13s}")
    print(f"{'sweep base (us) / 14 B round trip':34s} {m['base']:12.1f} {'-':>12s} {m['small']:12.1f} "
          f"{'-':>12s} {'-':>13s}")
    print(f"{'sweep knee (bytes; burst 16384)':34s} {m['knee']:12.0f}")
    udp_truth = a.rate * 1e6 * 1480 / 1514
    print(f"{'UDP sweep bandwidth (Mbit/s)':34s} {m['ubw'] / 1e6:12.2f} {'-':>12s} {udp_truth / 1e6:12.2f} "
          f"{m['ubw'] / udp_truth:12.4f} {'-':>13s}")
    print(f"{'UDP sweep base (us), +5 ms reflector':34s} {m['ubase']:12.1f} {'-':>12s} {m['usmall']:12.1f} "
          f"{m['ubase'] / m['usmall']:12.4f} {'-':>13s}")
    print(f"{'under load (cubic): p50 growth (ms)':34s} {m['grown']:12.1f} {'-':>12s} {'35-50':>12s}")
    print(f"{'under load (cubic): worst (ms)':34s} {m['worst']:12.1f} {'-':>12s} {50:12.1f}")
    lt = relay_truth(2001)
    print(f"{'perf -u lost through the relay':34s} {m['lost_sonde']:12.0f} {m['lost_iperf3']:12.0f} {lt:12.0f} "
          f"{m['lost_sonde'] / lt:12.4f} {m['lost_iperf3'] / lt:13.4f}")


if __name__ == "__main__":
    main()
