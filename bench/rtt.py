#!/usr/bin/env python3
"""Round-trip latency: sonde against sockperf 3.7 on loopback, interleaved.

For TCP and UDP at 64 B and 16 KiB, each round runs, back to back:
  sonde     `sonde rtt -m SIZE` (its embedded thread reflector)
  sockperf  `sockperf pp --full-rtt` against `sockperf sr`
  sonde-srv `sonde rtt` against `sonde serve echo` (the tokio server core)
  sonde-thr `sonde rtt` against `sonde serve echo --blocking` (a thread per
            client on blocking sockets, as sockperf's server)
  sonde-bp  `sonde rtt --busy-poll` against `sonde serve echo --busy-poll`
  x-server  `sockperf pp --full-rtt` against `sonde serve sockperf`
  x-client  `sonde rtt --sockperf` against `sockperf sr`
unpinned, then with both ends on CPU 1 (taskset -c 1). Reports medians of
p50 and p99 of the full round trip (sockperf prints half unless --full-rtt)
and sonde/sockperf ratios. qperf tcp_lat/udp_lat (one-way) for reference.

Usage: python3 bench/rtt.py [--rounds 3] [--secs 2]
"""
import argparse
import json
import re
import socket
import statistics
import subprocess

from benchlib import free_port, wait_listening
import time

S = "target/release/sonde"


def pin(cmd, pinned):
    return (["taskset", "-c", "1"] + cmd) if pinned else cmd


def sockperf_pct(text):
    p50 = float(re.search(r"percentile 50\.000 =\s+([\d.]+)", text).group(1))
    p99 = float(re.search(r"percentile 99\.000 =\s+([\d.]+)", text).group(1))
    return p50, p99


def sonde_pct(text):
    d = json.loads(text)["rtt_ns"]
    return d["p50"] / 1000, d["p99"] / 1000


def serve(cmd, port, udp, pinned):
    p = subprocess.Popen(pin(cmd, pinned), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, udp)
    return p


def one(tool, udp, size, secs, pinned):
    port = free_port()
    u = [] if udp else ["--tcp"]
    su = ["-u"] if udp else []
    if tool == "sonde":
        out = subprocess.run(pin([S, "rtt", "-m", str(size), "-t", str(secs), "--json"] + su, pinned),
                             capture_output=True, text=True)
        return sonde_pct(out.stdout)
    if tool in ("sonde-srv", "sonde-thr", "sonde-bp"):
        extra = {"sonde-srv": [], "sonde-thr": ["--blocking"], "sonde-bp": ["--busy-poll"]}[tool]
        srv = serve([S, "serve", "echo", "--bind", "127.0.0.1", "--port", str(port), "--quiet"] + su + extra,
                    port, udp, pinned)
        try:
            spin = ["--busy-poll"] if tool == "sonde-bp" else []
            out = subprocess.run(pin([S, "rtt", f"127.0.0.1:{port}", "-m", str(size), "-t", str(secs), "--json"]
                                     + su + spin, pinned), capture_output=True, text=True)
            return sonde_pct(out.stdout)
        finally:
            srv.terminate()
            srv.wait()
    if tool in ("sockperf", "x-client"):
        srv = serve(["sockperf", "sr", "-i", "127.0.0.1", "-p", str(port)] + u, port, udp, pinned)
    else:
        srv = serve([S, "serve", "sockperf", "--bind", "127.0.0.1", "--port", str(port), "--quiet"] + su, port, udp, pinned)
    try:
        if tool == "x-client":
            out = subprocess.run(pin([S, "rtt", "--sockperf", f"127.0.0.1:{port}", "-m", str(size), "-t", str(secs), "--json"] + su, pinned),
                                 capture_output=True, text=True)
            return sonde_pct(out.stdout)
        out = subprocess.run(pin(["sockperf", "pp", "-i", "127.0.0.1", "-p", str(port), "-t", str(secs), "-m", str(size), "--full-rtt"] + u, pinned),
                             capture_output=True, text=True)
        return sockperf_pct(out.stdout + out.stderr)
    finally:
        srv.terminate()
        srv.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=int, default=2)
    a = ap.parse_args()
    tools = ["sonde", "sockperf", "sonde-srv", "sonde-thr", "sonde-bp", "x-server", "x-client"]
    rows = []
    for pinned in (False, True):
        for udp in (False, True):
            for size in (64, 16384):
                res = {t: [] for t in tools}
                for _ in range(a.rounds):
                    for t in tools:
                        # Two spinners on one CPU hand over only at the
                        # scheduler's tick (8 ms round trips): not run.
                        if t == "sonde-bp" and pinned:
                            res[t].append((float("nan"), float("nan")))
                            continue
                        res[t].append(one(t, udp, size, a.secs, pinned))
                med = {t: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for t, v in res.items()}
                rows.append(("pinned" if pinned else "unpinned", "UDP" if udp else "TCP", size, med))
                print(rows[-1], flush=True)
    print()
    print(f"median of {a.rounds} interleaved rounds, {a.secs} s each; full RTT in us")
    print(f"{'cpus':9s} {'proto':5s} {'size':>6s} " + " ".join(f"{t + ' p50/p99':>20s}" for t in tools) + "   sonde/sockperf p50 p99   serve/sockperf p50 p99   blocking/sockperf p50 p99   busy-poll/sockperf p50 p99")
    for cpus, proto, size, med in rows:
        cells = " ".join(f"{med[t][0]:9.1f}/{med[t][1]:<10.1f}" for t in tools)
        r = lambda t, i: med[t][i] / med["sockperf"][i]
        print(f"{cpus:9s} {proto:5s} {size:6d} {cells}   {r('sonde', 0):.2f} {r('sonde', 1):.2f}   {r('sonde-srv', 0):.2f} {r('sonde-srv', 1):.2f}   {r('sonde-thr', 0):.2f} {r('sonde-thr', 1):.2f}   {r('sonde-bp', 0):.2f} {r('sonde-bp', 1):.2f}")
    q = subprocess.run(["qperf", "-v", "127.0.0.1", "tcp_lat", "udp_lat"], capture_output=True, text=True)
    print("\nqperf (one-way latency = RTT/2), for reference:")
    print(q.stdout.strip() or q.stderr.strip())


if __name__ == "__main__":
    main()
