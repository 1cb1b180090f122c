#!/usr/bin/env python3
"""sonde exporter's probes per second and memory (issue 22).

On loopback: `sonde serve echo` on every address (so 127.0.0.1,
127.0.0.2, ... are distinct targets), `sonde exporter --max-concurrent
64`, and the load (crates/sonde/examples/exporter_load.rs): --scrapers
keep-alive connections asking /probe one after another, as Prometheus's
scrapes of many targets would, for --secs seconds.
  connect  the connect module: one TCP connect per probe
  rtt      the rtt module: 100 round trips of 64 bytes per probe
Then memory, on a fresh exporter: its peak resident set (VmHWM) at rest
and after one probe of each of 1,000 distinct targets (127.0.0.1 to
127.0.4.250).
Median of --rounds, the modules interleaved round by round. No peer is
named for this one: the figures are the exporter's own.

Usage: python3 bench/exporter.py [--rounds 3] [--scrapers 16] [--secs 5]
Loopback only; every load is bounded in time and count.
"""
import argparse
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from benchlib import free_port, wait_listening  # noqa: E402

SONDE = "target/release/sonde"
LOAD = "target/release/examples/exporter_load"


def rss_peak_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scrapers", type=int, default=16)
    p.add_argument("--secs", type=float, default=5)
    a = p.parse_args()
    echo_port, exporter_port = free_port(), free_port()
    echo = subprocess.Popen([SONDE, "serve", "echo", "--port", str(echo_port), "--quiet"])
    exporter = subprocess.Popen([SONDE, "exporter", "--listen", f"127.0.0.1:{exporter_port}",
                                 "--max-concurrent", "64", "--quiet"])
    try:
        wait_listening(echo_port)
        wait_listening(exporter_port)
        addr = f"127.0.0.1:{exporter_port}"
        rates = {"connect": [], "rtt": []}
        for r in range(a.rounds):
            for module in rates:
                out = subprocess.run([LOAD, addr, str(a.scrapers), str(a.secs), "10000000",
                                      module, str(echo_port), "1"],
                                     capture_output=True, text=True, check=True).stdout.split()
                rate, failed = float(out[0]), int(out[1])
                rates[module].append(rate)
                print(f"round {r + 1}: {module} {rate:,.0f} probes/s ({failed} failed)", file=sys.stderr)
        # Memory on a fresh exporter: at rest, then after 1,000 targets.
        exporter.terminate()
        exporter.wait()
        exporter = subprocess.Popen([SONDE, "exporter", "--listen", f"127.0.0.1:{exporter_port}",
                                     "--max-concurrent", "64", "--quiet"])
        wait_listening(exporter_port)
        before = rss_peak_kib(exporter.pid)
        out = subprocess.run([LOAD, addr, str(a.scrapers), "60", "1000", "connect",
                              str(echo_port), "1000"], capture_output=True, text=True, check=True).stdout.split()
        after = rss_peak_kib(exporter.pid)
        print(f"\n| module | probes/s (median of {a.rounds}, {a.scrapers} scrapers) |")
        print("|---|---|")
        for module, values in rates.items():
            print(f"| {module} | {statistics.median(values):,.0f} |")
        print(f"\nmemory: peak RSS {before / 1024:.1f} MiB at rest, {after / 1024:.1f} MiB "
              f"after one probe of each of 1,000 targets ({out[1]} failed)")
    finally:
        for proc in (exporter, echo):
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
