#!/usr/bin/env python3
"""sonde perf against iperf3 3.12 on loopback, side by side.

Each case runs sonde (client and server) and iperf3 (client and server)
interleaved, `--runs` times each (default 3), for `-t` seconds (default 5),
and prints the medians and the sonde/iperf3 ratios of:
- receiver throughput (Gbit/s), or received packets/s for UDP, and loss;
- CPU seconds per GB moved (client + server, from each tool's
  cpu_utilization_percent), the stable measure on kernel-bound loopback.

Usage: python3 bench/perf.py [--runs 3] [--time 5] [--sonde target/release/sonde] [--only NAME]
"""
import argparse
import json
import socket
import statistics
import subprocess

from benchlib import free_port, wait_listening
import sys
import time

CASES = [
    ("tcp-1", [], []),
    ("tcp-1-128K", ["-l", "128K"], []),  # like for like: iperf3's block size
    ("tcp-P2", ["-P", "2"], []),
    ("tcp-R", ["-R"], []),
    ("tcp-Z", ["-Z"], ["--skip-rx-copy"]),  # sonde also discards with MSG_TRUNC
    ("udp-1400", ["-u", "-b", "0", "-l", "1400"], []),
    ("udp-64", ["-u", "-b", "0", "-l", "64"], []),
]


def one(tool, sonde, flags, secs):
    port = free_port()
    prog = [sonde, "perf"] if tool == "sonde" else ["iperf3"]
    srv = subprocess.Popen(prog + ["-s", "-1", "-B", "127.0.0.1", "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port)
    out = subprocess.run(prog + ["-c", "127.0.0.1", "-p", str(port), "-t", str(secs), "-J"] + flags,
                         capture_output=True, text=True, timeout=secs + 60)
    srv.wait(timeout=30)
    doc = json.loads(out.stdout)
    if "error" in doc:
        raise RuntimeError(f"{tool}: {doc['error']}")
    end = doc["end"]
    rcv = end["sum_received"]
    secs_rcv = rcv["seconds"] or secs
    cpu = end["cpu_utilization_percent"]
    cpu_s = (cpu["host_total"] + cpu["remote_total"]) / 100 * secs
    gb = rcv["bytes"] / 1e9
    r = {"gbps": rcv["bytes"] * 8 / secs_rcv / 1e9, "cpu_per_gb": cpu_s / gb if gb else float("nan")}
    if "-u" in flags:
        s = end.get("sum", rcv)
        packets, lost = s.get("packets", 0), s.get("lost_packets", 0)
        r["rx_pps"] = (packets - lost) / secs_rcv
        r["loss"] = 100.0 * lost / packets if packets else 0.0
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--time", type=int, default=5)
    ap.add_argument("--sonde", default="target/release/sonde")
    ap.add_argument("--only")
    a = ap.parse_args()
    rows = []
    for name, flags, sonde_extra in CASES:
        if a.only and a.only != name:
            continue
        res = {"sonde": [], "iperf3": []}
        for i in range(a.runs):
            for tool in ("sonde", "iperf3"):
                extra = sonde_extra if tool == "sonde" else []
                r = one(tool, a.sonde, flags + extra, a.time)
                res[tool].append(r)
                print(f"{name:9s} run {i + 1} {tool:6s} " + " ".join(f"{k}={v:.3f}" for k, v in r.items()), flush=True)
        med = {t: {k: statistics.median(x[k] for x in v) for k in v[0]} for t, v in res.items()}
        rows.append((name, med))
    print()
    print(f"median of {a.runs} interleaved runs, {a.time} s each, loopback")
    print(f"{'case':9s} {'metric':11s} {'sonde':>10s} {'iperf3':>10s} {'ratio':>7s}")
    for name, med in rows:
        for k in med["sonde"]:
            s, i = med["sonde"][k], med["iperf3"][k]
            ratio = s / i if i else float("nan")
            print(f"{name:9s} {k:11s} {s:10.3f} {i:10.3f} {ratio:7.2f}")


if __name__ == "__main__":
    sys.exit(main())
