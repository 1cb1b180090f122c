#!/usr/bin/env python3
"""sonde relay against socat and ncat as a TCP forwarder (issue 20).

Three forwarders, each listening on a port of its own and forwarding
every client to 127.0.0.1:Q:
  sonde  sonde relay tcp-listen:127.0.0.1:P tcp:127.0.0.1:Q
  socat  socat TCP-LISTEN:P,bind=127.0.0.1,fork,reuseaddr TCP:127.0.0.1:Q
  ncat   ncat -l 127.0.0.1 P -k --sh-exec "ncat 127.0.0.1 Q"
Two measures, interleaved round by round (sonde, socat, ncat), median of
--rounds:
  throughput: iperf3 -c through the forwarder to iperf3 -s, -n SIZE
    (2 GiB by default), its receiver's rate, and the CPU seconds the
    forwarder spent (user + system, its reaped children included, from
    /proc/PID/stat);
  connections per second: a client (crates/sonde/examples/conn_rate.rs,
    --cps-threads threads) opens new connections through the forwarder,
    each sending a line, reading its echo (from sonde serve echo) and
    closing, for --cps-secs or --cps-max connections.
Prints a table and each figure's ratio against socat's, and a row
"direct" (the client straight to the server, no forwarder: the ceiling
this machine sets).

Usage: python3 bench/relay.py [--rounds 3] [--size 2G] [--cps-secs 5]
Loopback only; every load is bounded in bytes, count and time.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from benchlib import free_port, wait_listening  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
CONN_RATE = "target/release/examples/conn_rate"


def cpu_seconds(pid):
    """utime + stime + cutime + cstime of `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICK


class Direct:
    """No forwarder: the client straight to the server, the ceiling."""
    pid = None

    def terminate(self):
        pass

    def wait(self):
        pass


def forwarder(name, sonde, q):
    if name == "direct":
        return Direct(), q
    port = free_port()
    cmd = {
        "sonde": [sonde, "relay", f"tcp-listen:127.0.0.1:{port}", f"tcp:127.0.0.1:{q}", "--quiet"],
        "socat": ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr", f"TCP:127.0.0.1:{q}"],
        "ncat": ["ncat", "-l", "127.0.0.1", str(port), "-k", "--sh-exec", f"ncat 127.0.0.1 {q}"],
    }[name]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_listening(port)
    return proc, port


def throughput(name, sonde, iperf_port, size):
    proc, port = forwarder(name, sonde, iperf_port)
    try:
        before = cpu_seconds(proc.pid) if proc.pid else 0
        out = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-n", size, "-J"],
                             capture_output=True, text=True, timeout=300)
        # socat reaps its children on SIGCHLD: give it a moment to count them.
        time.sleep(0.5)
        cpu = cpu_seconds(proc.pid) - before if proc.pid else 0
        doc = json.loads(out.stdout)
        if "error" in doc:
            raise RuntimeError(f"{name}: iperf3: {doc['error']}")
        rate = doc["end"]["sum_received"]["bits_per_second"]
        return rate / 1e9, cpu
    finally:
        proc.terminate()
        proc.wait()


def cps(name, sonde, echo_port, secs, most, threads):
    proc, port = forwarder(name, sonde, echo_port)
    try:
        out = subprocess.run([CONN_RATE, f"127.0.0.1:{port}", str(threads), str(secs), str(most)],
                             capture_output=True, text=True, timeout=secs + 60)
        if out.stderr:
            print(f"{name}: {out.stderr.strip()}", file=sys.stderr)
        return float(out.stdout.strip())
    finally:
        proc.terminate()
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", default="2G")
    ap.add_argument("--cps-secs", type=float, default=5)
    ap.add_argument("--cps-max", type=int, default=200000)
    ap.add_argument("--cps-threads", type=int, default=4)
    ap.add_argument("--sonde", default="target/release/sonde")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "--example", "conn_rate"], check=True)
    names = ["sonde", "socat", "ncat", "direct"]
    iperf_port = free_port()
    iperf = subprocess.Popen(["iperf3", "-s", "-p", str(iperf_port), "-B", "127.0.0.1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    echo_port = free_port()
    echo = subprocess.Popen([a.sonde, "serve", "echo", "--bind", "127.0.0.1", "--port", str(echo_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(iperf_port)
    wait_listening(echo_port)
    rate = {n: [] for n in names}
    cpu = {n: [] for n in names}
    conns = {n: [] for n in names}
    try:
        for r in range(a.rounds):
            for n in names:
                g, c = throughput(n, a.sonde, iperf_port, a.size)
                rate[n].append(g)
                cpu[n].append(c)
                conns[n].append(cps(n, a.sonde, echo_port, a.cps_secs, a.cps_max, a.cps_threads))
                print(f"round {r + 1} {n}: {g:.2f} Gbit/s, {c:.2f} CPU s, {conns[n][-1]:.0f} conn/s",
                      file=sys.stderr)
    finally:
        iperf.terminate()
        echo.terminate()
    med = {n: (statistics.median(rate[n]), statistics.median(cpu[n]), statistics.median(conns[n]))
           for n in names}
    s_rate, s_cpu, s_conns = med["socat"]
    print(f"{a.size} through one connection (iperf3 -n), and new connections with a line echoed; "
          f"median of {a.rounds}")
    print("| forwarder | Gbit/s | x socat | CPU s | x socat | conn/s | x socat |")
    print("|---|---|---|---|---|---|---|")
    for n in names:
        g, c, k = med[n]
        cpu_cells = "| - | - " if n == "direct" else f"| {c:.2f} | {c / s_cpu:.2f}x "
        print(f"| {n} | {g:.2f} | {g / s_rate:.2f}x {cpu_cells}| {k:.0f} | {k / s_conns:.1f}x |")


if __name__ == "__main__":
    main()
