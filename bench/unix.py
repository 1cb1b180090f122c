#!/usr/bin/env python3
"""Unix stream sockets against TCP loopback, sonde to sonde (issue 20).

The kernel-only baseline: the same measure over a Unix socket and over
TCP on 127.0.0.1, interleaved round by round, median of --rounds:
  perf: `sonde perf -U -t SECS -J` (its embedded server on a Unix
    socket) and `sonde perf -t SECS -J` (its embedded TCP server), one
    stream, the receiver's rate;
  rtt:  `sonde rtt -U -n COUNT --json` and `sonde rtt -n COUNT --json`
    (each against its embedded echo), 64-byte messages, p50 and p99.
Prints a table and the Unix figure's ratio to TCP's.

Usage: python3 bench/unix.py [--rounds 3] [--secs 3] [--count 20000]
Loopback and Unix sockets only; each run is bounded in time or count.
"""
import argparse
import json
import statistics
import subprocess

SONDE = "target/release/sonde"


def perf(unix, secs):
    args = [SONDE, "perf", "-t", str(secs), "-J"] + (["-U"] if unix else [])
    out = subprocess.run(args, check=True, capture_output=True, timeout=secs + 30)
    return json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9


def rtt(unix, count):
    args = [SONDE, "rtt", "-n", str(count), "--json"] + (["-U"] if unix else [])
    out = subprocess.run(args, check=True, capture_output=True, timeout=120)
    ns = json.loads(out.stdout)["rtt_ns"]
    return ns["p50"] / 1000, ns["p99"] / 1000


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--secs", type=int, default=3)
    p.add_argument("--count", type=int, default=20000)
    a = p.parse_args()
    got = {k: [] for k in ("perf_unix", "perf_tcp", "p50_unix", "p50_tcp", "p99_unix", "p99_tcp")}
    for r in range(a.rounds):
        for unix, way in ((True, "unix"), (False, "tcp")):
            got[f"perf_{way}"].append(perf(unix, a.secs))
            p50, p99 = rtt(unix, a.count)
            got[f"p50_{way}"].append(p50)
            got[f"p99_{way}"].append(p99)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in got.items()), flush=True)
    med = {k: statistics.median(v) for k, v in got.items()}
    print()
    print(f"| measure (median of {a.rounds}) | Unix socket | TCP loopback | Unix / TCP |")
    print("|---|---|---|---|")
    print(f"| perf, 1 stream, {a.secs} s (Gbit/s) | {med['perf_unix']:.1f} | {med['perf_tcp']:.1f} | {med['perf_unix'] / med['perf_tcp']:.2f}x |")
    for q in ("p50", "p99"):
        u, t = med[f"{q}_unix"], med[f"{q}_tcp"]
        print(f"| rtt 64 B {q} (us) | {u:.1f} | {t:.1f} | {u / t:.2f}x |")


if __name__ == "__main__":
    main()
