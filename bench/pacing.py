#!/usr/bin/env python3
"""Accuracy of `-b`: runs `sonde perf -b RATE` (embedded server, loopback)
for several rates over UDP and TCP and prints, per run, the worst 1 s
interval's deviation from the asked rate, on the sender and on the receiver
(the receiver's per-interval figures come from the server's results).

Usage: python3 bench/pacing.py [--time 5] [--sonde target/release/sonde]
"""
import argparse
import json
import subprocess

RUNS = [
    ("udp", ["-u", "-b", "10M", "-l", "1400"], 10e6),
    ("udp", ["-u", "-b", "100M", "-l", "1400"], 100e6),
    ("udp", ["-u", "-b", "1G", "-l", "1400"], 1e9),
    ("udp", ["-u", "-b", "100M", "-l", "64"], 100e6),
    ("tcp", ["-b", "100M"], 100e6),
    ("tcp", ["-b", "1G"], 1e9),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--time", type=int, default=5)
    ap.add_argument("--sonde", default="target/release/sonde")
    a = ap.parse_args()
    print(f"{'proto':5s} {'flags':24s} {'asked':>10s} {'mean':>10s} {'worst 1 s interval':>20s} {'lost':>6s}")
    for proto, flags, rate in RUNS:
        out = subprocess.run([a.sonde, "perf", "-t", str(a.time), "-J"] + flags,
                             capture_output=True, text=True, timeout=a.time + 60)
        doc = json.loads(out.stdout)
        rates = [iv["sum"]["bits_per_second"] for iv in doc["intervals"]
                 if iv["sum"]["seconds"] > 0.9]
        worst = max(rates, key=lambda r: abs(r - rate))
        mean = doc["end"]["sum_sent"]["bits_per_second"]
        lost = doc["end"].get("sum", {}).get("lost_percent", 0.0)
        print(f"{proto:5s} {' '.join(flags):24s} {rate / 1e6:8.0f}M {mean / 1e6:9.2f}M "
              f"{worst / 1e6:10.2f}M ({(worst - rate) / rate * 100:+.2f}%) {lost:5.2f}%")


if __name__ == "__main__":
    main()
