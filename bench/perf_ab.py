#!/usr/bin/env python3
"""Interleaved A/B of `sonde perf` variants against iperf3 on loopback:
each round runs every variant once (client and server of the same tool, as
bench/perf.py does), and the medians of Gbit/s and CPU-s/GB are printed.

A variant is NAME=BINARY:FLAGS (FLAGS space-separated, given to the client);
NAME iperf3 runs iperf3. Used for the block-size sweep and the -Z checks in
BENCHMARKS.md, e.g.:

  python3 bench/perf_ab.py --rounds 3 "l128K=target/release/sonde:-l 128K" \\
      "l1M=target/release/sonde:-l 1M" "iperf3=:"
  python3 bench/perf_ab.py "z=target/release/sonde:-Z --skip-rx-copy" "iperf3=:-Z"
"""
import argparse
import importlib.util
import os
import statistics

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("perf", os.path.join(here, "perf.py"))
perf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(perf)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--time", type=int, default=4)
    ap.add_argument("variants", nargs="+", help="NAME=BINARY:FLAGS")
    a = ap.parse_args()
    variants = []
    for v in a.variants:
        name, rest = v.split("=", 1)
        binary, flags = rest.split(":", 1)
        variants.append((name, binary, flags.split()))
    res = {name: [] for name, _, _ in variants}
    for _ in range(a.rounds):
        for name, binary, flags in variants:
            tool = "iperf3" if name.startswith("iperf3") else "sonde"
            res[name].append(perf.one(tool, binary, flags, a.time))
    for name, runs in res.items():
        g = statistics.median(r["gbps"] for r in runs)
        c = statistics.median(r["cpu_per_gb"] for r in runs)
        print(f"{name:12s} Gbit/s {g:6.2f}  CPU-s/GB {c:.3f}  runs {[round(r['cpu_per_gb'], 3) for r in runs]}")


if __name__ == "__main__":
    main()
