#!/usr/bin/env python3
"""Truth run: sonde's figures about a shaped path against the truth, and
iperf3's where it has the figure, side by side.

Builds two hosts and a router in network namespaces (root), shapes the
router's two veths with tc tbf (RATE Mbit/s, 16 KiB burst, 50 ms queue),
and runs, interleaved, ROUNDS times: TCP throughput (sonde perf, iperf3),
UDP at twice the rate (the loss the path cannot carry: sonde perf, iperf3),
and sonde rtt --sweep (sockperf's format against sonde serve sockperf:
bandwidth, base, knee). Prints the medians, the truth and the ratios.

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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sonde", default="target/release/sonde")
    p.add_argument("--rate", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    payload = a.rate * 1e6 * 1448 / 1514
    udp_payload = a.rate * 1e6 * 1400 / 1442
    setup(a.rate)
    res = {k: [] for k in ["tcp_sonde", "tcp_iperf3", "loss_sonde", "loss_iperf3", "bw", "base", "knee", "small"]}
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


if __name__ == "__main__":
    main()
