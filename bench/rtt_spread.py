#!/usr/bin/env python3
"""How much the unpinned p99 swings from round to round: sockperf, `sonde rtt`
against `sonde serve echo --blocking` (sonde-thr) and against `sonde serve
echo` (sonde-srv), and `sonde rtt` with its embedded reflector (sonde), at
64 B over TCP and UDP, unpinned, interleaved. Prints each tool's median p50
and p99 and the p99 ratio to sockperf's of every round, so that one can see
whether a p99 ratio is the tool's or the VM's.

Usage: python3 bench/rtt_spread.py [--rounds 7] [--secs 2]
"""
import argparse
import importlib.util
import os
import statistics

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("rtt", os.path.join(here, "rtt.py"))
rtt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rtt)

TOOLS = ["sockperf", "sonde-thr", "sonde-srv", "sonde"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--secs", type=int, default=2)
    a = ap.parse_args()
    for udp in (False, True):
        res = {t: [] for t in TOOLS}
        for _ in range(a.rounds):
            for t in TOOLS:
                res[t].append(rtt.one(t, udp, 64, a.secs, False))
        for t in TOOLS:
            p50 = statistics.median(x[0] for x in res[t])
            p99 = statistics.median(x[1] for x in res[t])
            ratios = [round(x[1] / s[1], 2) for x, s in zip(res[t], res["sockperf"])]
            print(f"{'UDP' if udp else 'TCP'} {t:9s} p50 {p50:7.1f} p99 {p99:7.1f} us; p99/sockperf per round {ratios}",
                  flush=True)


if __name__ == "__main__":
    main()
