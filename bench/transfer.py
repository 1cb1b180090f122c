#!/usr/bin/env python3
"""File transfer benchmark: `sonde send` -> `sonde receive` against the
pipeline people use today (`nc` into a file, then `sha256sum` on both
sides, run in parallel, and the sums compared).

Both write the received file into the same directory (default /tmp, on
disk), and it is deleted between runs. Runs are interleaved (sonde,
pipeline, sonde, ...) and the medians compared. Wall time runs from the
sender's start until the receiver has exited (sonde) or both sums are
known (pipeline). Also runs `sonde perf -t 5` (one TCP stream, loopback)
beside them, for the issue's second goal (sonde send >= 40% of it).

Usage: python3 bench/transfer.py [--size-mib 4096] [--rounds 3] [--dir /tmp]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import time

from benchlib import free_port, wait_listening


def make_file(path, size):
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    with open(path, "wb") as out:
        left = size
        block = os.urandom(1 << 20)
        while left > 0:
            # Fresh randomness per MiB would cost minutes; vary the block a little.
            chunk = block[: min(left, len(block))]
            out.write(chunk)
            block = block[1:] + block[:1]
            left -= len(chunk)


def run_sonde(sonde, source, into):
    port = free_port()
    recv = subprocess.Popen([sonde, "receive", into, "--port", str(port), "--bind", "127.0.0.1", "--quiet"])
    wait_listening(port)
    start = time.perf_counter()
    send = subprocess.run([sonde, "send", source, f"127.0.0.1:{port}", "--quiet"])
    recv.wait(timeout=600)
    wall = time.perf_counter() - start
    if send.returncode != 0 or recv.returncode != 0:
        raise RuntimeError(f"sonde send {send.returncode}, receive {recv.returncode}")
    os.remove(os.path.join(into, os.path.basename(source)))
    return wall


def sha256(path):
    return subprocess.Popen(["sha256sum", path], stdout=subprocess.PIPE, text=True)


def run_pipeline(source, into):
    port = free_port()
    target = os.path.join(into, os.path.basename(source))
    with open(target, "wb") as out:
        recv = subprocess.Popen(["nc", "-l", "127.0.0.1", str(port)], stdout=out)
        wait_listening(port)
        start = time.perf_counter()
        with open(source, "rb") as data:
            subprocess.run(["nc", "-N", "127.0.0.1", str(port)], stdin=data, check=True)
        recv.wait(timeout=600)
    ours, theirs = sha256(source), sha256(target)
    sums = [p.communicate()[0].split()[0] for p in (ours, theirs)]
    wall = time.perf_counter() - start
    if sums[0] != sums[1]:
        raise RuntimeError("the pipeline's sums differ")
    os.remove(target)
    return wall


def perf_gbps(sonde):
    out = subprocess.run([sonde, "perf", "-t", "5", "-J"], capture_output=True, text=True, check=True)
    end = json.loads(out.stdout)["end"]
    return end["sum_received"]["bits_per_second"] / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--sonde", default="target/release/sonde")
    args = ap.parse_args()
    for tool in ("nc", "sha256sum"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed")
    # `nc -N` is OpenBSD netcat's; where nc is ncat the pipeline would hang.
    usage = subprocess.run(["nc", "-h"], capture_output=True, text=True)
    if "OpenBSD" not in usage.stdout + usage.stderr:
        raise SystemExit("nc here is not OpenBSD netcat (apt-get install -y netcat-openbsd)")
    work = os.path.join(args.dir, "sonde-bench-transfer")
    into = os.path.join(work, "into")
    os.makedirs(into, exist_ok=True)
    source = os.path.join(work, "payload.bin")
    size = args.size_mib << 20
    make_file(source, size)
    times = {"sonde": [], "pipeline": [], "perf": []}
    for r in range(args.rounds):
        times["sonde"].append(run_sonde(args.sonde, source, into))
        times["pipeline"].append(run_pipeline(source, into))
        times["perf"].append(perf_gbps(args.sonde))
        print(f"round {r + 1}: sonde {times['sonde'][-1]:.2f} s, pipeline {times['pipeline'][-1]:.2f} s, "
              f"perf {times['perf'][-1]:.2f} Gbit/s", flush=True)
    sonde_s = statistics.median(times["sonde"])
    pipe_s = statistics.median(times["pipeline"])
    perf = statistics.median(times["perf"])
    sonde_gbps = size * 8 / sonde_s / 1e9
    print(f"\n{args.size_mib} MiB, median of {args.rounds}, written under {into}")
    print(f"sonde send/receive  {sonde_s:7.2f} s  {sonde_gbps:6.2f} Gbit/s")
    print(f"nc + sha256sum      {pipe_s:7.2f} s  {size * 8 / pipe_s / 1e9:6.2f} Gbit/s")
    print(f"sonde perf (1 TCP stream)          {perf:6.2f} Gbit/s")
    print(f"pipeline/sonde wall time: {pipe_s / sonde_s:.2f}x (goal >= 2)")
    print(f"sonde send / sonde perf: {sonde_gbps / perf:.2f} (goal >= 0.40)")


if __name__ == "__main__":
    main()
