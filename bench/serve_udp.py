#!/usr/bin/env python3
"""The reflectors `serve` answers with by default, measured side by side.

Each round runs back to back, interleaved, on loopback:
  sockperf        `sockperf pp --full-rtt` against `sockperf sr`
  sonde           `sockperf pp --full-rtt` against `sonde serve sockperf`
  sonde-old       the same against an older sonde binary (--old BIN), to
                  compare a change of server path (e.g. tokio against the
                  blocking thread)
for TCP and UDP, and `sonde rtt -u` against `sonde serve echo --udp` (and
the old binary's). Prints the median p50 and p99 (us) over the rounds and
the ratio to sockperf's server (to the new binary for the echo rows).

Usage: python3 bench/serve_udp.py [--rounds 5] [--secs 2] [--old PATH]
"""
import argparse
import json
import re
import statistics
import subprocess

from benchlib import free_port, wait_listening

S = "target/release/sonde"


def pct(text):
    p50 = float(re.search(r"percentile 50\.000 =\s+([\d.]+)", text).group(1))
    p99 = float(re.search(r"percentile 99\.000 =\s+([\d.]+)", text).group(1))
    return p50, p99


def with_server(cmd, port, udp, client):
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, udp)
        return client()
    finally:
        server.kill()
        server.wait()


def sockperf_against(server_cmd, udp, secs):
    port = free_port()
    mode = [] if udp else ["--tcp"]
    cmd = server_cmd(port, udp)

    def client():
        out = subprocess.run(["sockperf", "pp", "-i", "127.0.0.1", "-p", str(port), "-t", str(secs),
                              "-m", "64", "--full-rtt"] + mode, capture_output=True, text=True, timeout=secs + 30)
        return pct(out.stdout + out.stderr)

    return with_server(cmd, port, udp, client)


def rtt_against(binary, secs):
    port = free_port()
    cmd = [binary, "serve", "echo", "--udp", "--bind", "127.0.0.1", "--port", str(port), "--quiet"]

    def client():
        out = subprocess.run([S, "rtt", f"127.0.0.1:{port}", "-u", "-m", "64", "-t", str(secs), "--json"],
                             capture_output=True, text=True, timeout=secs + 30)
        d = json.loads(out.stdout)["rtt_ns"]
        return d["p50"] / 1000, d["p99"] / 1000

    return with_server(cmd, port, True, client)


def servers(old):
    rows = {
        "sockperf": lambda port, udp: ["sockperf", "sr", "-i", "127.0.0.1", "-p", str(port)] + ([] if udp else ["--tcp"]),
        "sonde": lambda port, udp: [S, "serve", "sockperf", "--bind", "127.0.0.1", "--port", str(port), "--quiet"]
        + (["--udp"] if udp else []),
    }
    if old:
        rows["sonde-old"] = lambda port, udp: [old, "serve", "sockperf", "--bind", "127.0.0.1", "--port", str(port),
                                               "--quiet"] + (["--udp"] if udp else [])
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--secs", type=int, default=2)
    ap.add_argument("--old", help="an older sonde binary to compare with")
    args = ap.parse_args()
    results = {}
    for _ in range(args.rounds):
        for udp in (False, True):
            for name, cmd in servers(args.old).items():
                results.setdefault(("sockperf pp", udp, name), []).append(sockperf_against(cmd, udp, args.secs))
        for name, binary in [("sonde", S)] + ([("sonde-old", args.old)] if args.old else []):
            results.setdefault(("sonde rtt echo", True, name), []).append(rtt_against(binary, args.secs))
    print(f"{'client':14} {'proto':5} {'server':10} {'p50 us':>8} {'p99 us':>8} {'p50 x':>6} {'p99 x':>6}")
    for (client, udp, name), runs in results.items():
        p50 = statistics.median(r[0] for r in runs)
        p99 = statistics.median(r[1] for r in runs)
        base_name = "sockperf" if client == "sockperf pp" else "sonde"
        base = results[(client, udp, base_name)]
        b50 = statistics.median(r[0] for r in base)
        b99 = statistics.median(r[1] for r in base)
        print(f"{client:14} {'udp' if udp else 'tcp':5} {name:10} {p50:8.1f} {p99:8.1f} {p50 / b50:6.2f} {p99 / b99:6.2f}")


if __name__ == "__main__":
    main()
