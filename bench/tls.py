#!/usr/bin/env python3
"""TLS throughput and CPU: the same input (--size-mib, default 2048, from a
file in /dev/shm) through `sonde connect --tls` -> `sonde listen --tls`,
`ncat --ssl` -> `ncat --ssl -l`, and socat's `OPENSSL:` -> `OPENSSL-LISTEN:`,
all on loopback, the receiver's output counted here (every byte must
arrive), with one self-signed certificate (made here with openssl,
the client verifying it: sonde and socat against it as their CA, ncat with
--ssl-verify --ssl-trustfile). Interleaved rounds, median of --rounds;
throughput from the sender's start to the receiver's exit, CPU time as
user + system of both ends. Prints the ratios the issue names: sonde's
throughput against ncat's and socat's, sonde's CPU against socat's. Then
`sonde perf --tls` against plain `sonde perf` (one stream, the embedded
loopback server, --perf-secs each), interleaved, median of --rounds.

Usage: python3 bench/tls.py [--size-mib 2048] [--rounds 3] [--perf-secs 5] [--perf-only]
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import threading
import time

from benchlib import free_port, wait_listening


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def commands(tool, sonde, port, cert, key):
    """(server, client) command lines for one tool."""
    if tool == "sonde":
        return ([sonde, "listen", f"127.0.0.1:{port}", "--cert", cert, "--key", key, "--quiet"],
                [sonde, "connect", "127.0.0.1", str(port), "--ca", cert])
    if tool == "ncat":
        return (["ncat", "--ssl", "-l", "127.0.0.1", str(port), "--ssl-cert", cert, "--ssl-key", key, "--recv-only"],
                ["ncat", "--ssl", "--ssl-verify", "--ssl-trustfile", cert, "--ssl-servername", "localhost",
                 "--send-only", "127.0.0.1", str(port)])
    return (["socat", "-u", f"OPENSSL-LISTEN:{port},bind=127.0.0.1,cert={cert},key={key},verify=0", "-"],
            ["socat", "-u", "-", f"OPENSSL:127.0.0.1:{port},cafile={cert},commonname=localhost"])


def run(tool, sonde, source, cert, key):
    port = free_port()
    server_cmd, client_cmd = commands(tool, sonde, port, cert, key)
    before = children_cpu()
    server = subprocess.Popen(server_cmd, stdout=subprocess.PIPE)
    got = [0]

    def count():
        while chunk := server.stdout.read1(1 << 20):
            got[0] += len(chunk)

    counter = threading.Thread(target=count)
    counter.start()
    wait_listening(port)
    start = time.perf_counter()
    with open(source, "rb") as data:
        client = subprocess.run(client_cmd, stdin=data, stdout=subprocess.DEVNULL)
    server.wait(timeout=600)
    counter.join()
    wall = time.perf_counter() - start
    want = os.path.getsize(source)
    if client.returncode != 0 or (got[0] != want and tool != "ncat"):
        raise RuntimeError(f"{tool}: client {client.returncode}, server {server.returncode}, {got[0]} of {want} bytes")
    if got[0] != want:
        # ncat's client leaves without TLS's close_notify and its server
        # gives up on what it had not yet written out: a peer's flaw,
        # counted and shown, its time kept.
        print(f"  {tool} lost {want - got[0]:,} of {want:,} bytes (server exit {server.returncode})", flush=True)
    return wall, children_cpu() - before


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sonde", default="target/release/sonde")
    ap.add_argument("--perf-secs", type=int, default=5)
    ap.add_argument("--perf-only", action="store_true")
    args = ap.parse_args()
    if not args.perf_only:
        streams(args)
    perf(args)


def perf_rate(sonde, secs, tls):
    cmd = [sonde, "perf", "-t", str(secs), "-J"] + (["--tls"] if tls else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["end"]["sum_received"]["bits_per_second"]


def perf(args):
    rates = {"plain": [], "tls": []}
    for rnd in range(args.rounds):
        for kind in rates:
            rate = perf_rate(args.sonde, args.perf_secs, kind == "tls")
            rates[kind].append(rate)
            print(f"round {rnd + 1}: perf {kind} {rate / 1e9:.2f} Gbit/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\nperf one stream, {args.perf_secs} s, median of {args.rounds}")
    for kind, rate in med.items():
        print(f"{kind:6s} {rate / 1e9:8.2f} Gbit/s")
    print(f"\nperf --tls / plain {med['tls'] / med['plain']:.2f} (goal >= 0.5)")


def streams(args):
    for tool in ("ncat", "socat", "openssl"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed (apt-get install -y {tool})")
    work = tempfile.mkdtemp(prefix="sonde-tls-", dir="/dev/shm")
    try:
        cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-addext", "basicConstraints=critical,CA:FALSE"],
                       check=True, capture_output=True)
        source = os.path.join(work, "input.bin")
        with open(source, "wb") as out:
            block = os.urandom(1 << 20)
            for _ in range(args.size_mib):
                out.write(block)
        size_bits = args.size_mib * (1 << 20) * 8
        results = {"sonde": [], "ncat": [], "socat": []}
        for rnd in range(args.rounds):
            for tool in results:
                wall, cpu = run(tool, args.sonde, source, cert, key)
                results[tool].append((wall, cpu))
                print(f"round {rnd + 1}: {tool} {size_bits / wall / 1e9:.2f} Gbit/s, {cpu:.2f} s CPU", flush=True)
        med = {t: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for t, v in results.items()}
        print(f"\n{args.size_mib} MiB, median of {args.rounds}")
        print(f"{'tool':6s} {'Gbit/s':>8s} {'CPU s':>7s}")
        for tool, (wall, cpu) in med.items():
            print(f"{tool:6s} {size_bits / wall / 1e9:8.2f} {cpu:7.2f}")
        rate = {t: size_bits / w for t, (w, _) in med.items()}
        print(f"\nsonde/ncat throughput {rate['sonde'] / rate['ncat']:.2f} (goal >= 1.5)")
        print(f"sonde/socat throughput {rate['sonde'] / rate['socat']:.2f} (goal >= 1.0)")
        print(f"sonde/socat CPU time {med['sonde'][1] / med['socat'][1]:.2f} (goal <= 0.8)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
