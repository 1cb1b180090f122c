#!/usr/bin/env python3
"""Bulk transfer benchmark for `sonde connect` -> `sonde listen`.

Moves the same file (default 2 GiB) over loopback through sonde, ncat and
socat -b 131072, each reading the file on stdin and the receiver writing to
/dev/null. Runs are interleaved (sonde, ncat, socat, sonde, ...) and the
medians compared. Prints throughput (file size / wall time from the sender's
start until both ends have exited) and CPU seconds (user + system of both
processes), and the ratios sonde/peer.

Usage: python3 bench/talk.py [--size-mib 2048] [--rounds 3] [--sonde PATH]
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess

from benchlib import free_port, wait_listening
import sys
import time





def tools(sonde):
    return {
        "sonde": (
            lambda p: [sonde, "listen", "--quiet", f"127.0.0.1:{p}"],
            lambda p: [sonde, "connect", "127.0.0.1", str(p)],
        ),
        "ncat": (
            lambda p: ["ncat", "-l", "--recv-only", "127.0.0.1", str(p)],
            lambda p: ["ncat", "--send-only", "127.0.0.1", str(p)],
        ),
        "socat": (
            lambda p: ["socat", "-b", "131072", "-u", f"TCP-LISTEN:{p},bind=127.0.0.1,reuseaddr", "GOPEN:/dev/null"],
            lambda p: ["socat", "-b", "131072", "-u", "-", f"TCP:127.0.0.1:{p}"],
        ),
    }


def wait_rusage(proc):
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def one_run(rx_cmd, tx_cmd, path):
    port = free_port()
    with open(os.devnull, "wb") as null, open(os.devnull, "rb") as null_in:
        rx = subprocess.Popen(rx_cmd(port), stdin=null_in, stdout=null)
        try:
            wait_listening(port)
        except RuntimeError:
            rx.kill()
            raise
        with open(path, "rb") as src:
            start = time.perf_counter()
            tx = subprocess.Popen(tx_cmd(port), stdin=src, stdout=null)
            cpu = wait_rusage(tx) + wait_rusage(rx)
            wall = time.perf_counter() - start
    if tx.returncode or rx.returncode:
        raise RuntimeError(f"exit codes tx={tx.returncode} rx={rx.returncode}")
    return wall, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sonde", default="target/release/sonde")
    ap.add_argument("--file", default="/tmp/sonde-bench-talk.bin")
    args = ap.parse_args()
    for tool in ("ncat", "socat", "ss"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (apt-get install -y ncat socat iproute2)")
    size = args.size_mib << 20
    if not os.path.exists(args.file) or os.path.getsize(args.file) != size:
        with open(args.file, "wb") as f:
            chunk = os.urandom(16 << 20)
            for _ in range(size // len(chunk)):
                f.write(chunk)
    subprocess.run(["cat", args.file], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
    results = {name: [] for name in tools(args.sonde)}
    for r in range(args.rounds):
        for name, (rx, tx) in tools(args.sonde).items():
            wall, cpu = one_run(rx, tx, args.file)
            gbps = size * 8 / wall / 1e9
            results[name].append((gbps, cpu))
            print(f"round {r + 1} {name:6s} {gbps:6.2f} Gbit/s  {cpu:5.2f} CPU-s", flush=True)
    print()
    print(f"{args.size_mib} MiB over loopback, median of {args.rounds} interleaved runs")
    print(f"{'tool':8s} {'Gbit/s':>8s} {'CPU-s':>7s} {'sonde/x thr':>12s} {'sonde/x CPU':>12s}")
    med = {n: (statistics.median(g for g, _ in v), statistics.median(c for _, c in v)) for n, v in results.items()}
    s_thr, s_cpu = med["sonde"]
    for name, (thr, cpu) in med.items():
        print(f"{name:8s} {thr:8.2f} {cpu:7.2f} {s_thr / thr:12.2f} {s_cpu / cpu:12.2f}")


if __name__ == "__main__":
    main()
