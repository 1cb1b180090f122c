#!/usr/bin/env python3
"""Soak test of the sonde perf server: many back-to-back and overlapping
tests against one server, sampling its open descriptors and resident memory.
Both must stay flat (no leak per test).

Usage: python3 bench/soak.py [--tests 2000] [--parallel 4] [--sonde target/release/sonde]
"""
import argparse
import concurrent.futures
import os
import socket
import subprocess

from benchlib import free_port, wait_listening
import time




def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests", type=int, default=2000)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--sonde", default="target/release/sonde")
    a = ap.parse_args()
    port = free_port()
    srv = subprocess.Popen([a.sonde, "perf", "-s", "-B", "127.0.0.1", "-p", str(port), "--max-tests", "8"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port)

    def one(i):
        mode = ["-u", "-b", "10M", "-n", "100K"] if i % 4 == 3 else ["-n", "1M"]
        if i % 5 == 4:
            mode += ["-R"]
        r = subprocess.run([a.sonde, "perf", "-c", "127.0.0.1", "-p", str(port), "-J"] + mode,
                           capture_output=True, timeout=60)
        return r.returncode

    samples = [(0, fds(srv.pid), rss_kib(srv.pid))]
    failures = 0
    start = time.time()
    with concurrent.futures.ThreadPoolExecutor(a.parallel) as pool:
        done = 0
        for code in pool.map(one, range(a.tests)):
            done += 1
            failures += code != 0
            if done % 200 == 0:
                samples.append((done, fds(srv.pid), rss_kib(srv.pid)))
                print(f"{done:5d} tests  fds={samples[-1][1]}  rss={samples[-1][2]} KiB  failures={failures}", flush=True)
    elapsed = time.time() - start
    time.sleep(0.5)
    samples.append((a.tests, fds(srv.pid), rss_kib(srv.pid)))
    srv.terminate()
    srv.wait(timeout=10)
    print()
    print(f"{a.tests} tests ({a.parallel} at a time) in {elapsed:.1f} s, {failures} failed")
    print(f"open descriptors: start {samples[0][1]}, after 200 {samples[1][1]}, end {samples[-1][1]}, max {max(s[1] for s in samples)}")
    print(f"RSS KiB: start {samples[0][2]}, after 200 {samples[1][2]}, end {samples[-1][2]}, max {max(s[2] for s in samples)}")


if __name__ == "__main__":
    main()
