#!/usr/bin/env python3
"""`sonde serve` benchmarks, side by side with ncat 7.93 in one run.

1. 10,000 idle connections held by `sonde serve echo`: RSS per connection.
2. Echo request/response, 64-byte messages on persistent connections, with
   1, 100 and 1,000 concurrent clients: requests/s and p99, sonde against
   `ncat -l -k -m 2000 --exec /bin/cat` (runs interleaved).
3. Chat fan-out: 100 clients, each line delivered to 99 others: lines
   delivered per second, sonde chat against `ncat --chat`, two ways:
   bursts (each client writes 10 lines at once, faster than either server
   forwards them: bulk bytes) and rounds (each client writes one line per
   write, as typed; at most WINDOW rounds in flight, for WINDOW 1, 4, 16).

The load generator is crates/sonde/examples/load.rs. When a C compiler is
there, the echo rows also run bench/ref/epoll_echo.c (one thread, epoll,
read and write back, nothing else): a floor that shows what the kernel alone
costs per request here; and every echo row runs a second time with
bench/ref/echo_load.c as the generator (one thread, epoll, nothing else),
which leaves more of the two CPUs to the servers. Echo rows are the median
of --rounds interleaved rounds.
Usage: cargo build --release --example load && python3 bench/serve.py [--secs 5] [--rounds 3] [--only idle|echo|chat]
"""
import argparse
import os
import resource
import socket
import statistics
import subprocess

from benchlib import free_port, wait_listening
import time

SONDE = "target/release/sonde"
LOAD = "target/release/examples/load"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def build_c(name):
    out = f"target/{name}"
    try:
        subprocess.run(["cc", "-O2", "-o", out, f"bench/ref/{name}.c"], check=True)
        return out
    except (OSError, subprocess.CalledProcessError):
        return None


REF = None


def start(tool, service, port):
    if tool == "c-epoll":
        cmd = [REF, str(port)]
    elif tool == "sonde":
        cmd = [SONDE, "serve", service, "--bind", "127.0.0.1", "--port", str(port), "--quiet"]
    elif service == "echo":
        cmd = ["ncat", "-l", "-k", "-m", "2000", "127.0.0.1", str(port), "--exec", "/bin/cat"]
    else:
        cmd = ["ncat", "-l", "-k", "-m", "2000", "--chat", "127.0.0.1", str(port)]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port)
    return p


def load(mode, port, clients, secs, *extra):
    out = subprocess.run([LOAD, mode, f"127.0.0.1:{port}", str(clients), str(secs), *extra],
                         capture_output=True, text=True, timeout=secs + 120)
    return dict(kv.split("=") for kv in out.stdout.split())


def c_load(gen, port, clients, secs):
    out = subprocess.run([gen, str(port), str(clients), str(secs)],
                         capture_output=True, text=True, timeout=secs + 120)
    return dict(kv.split("=") for kv in out.stdout.split())


def idle_rss(n):
    port = free_port()
    srv = start("sonde", "echo", port)
    time.sleep(0.5)
    before = rss_kib(srv.pid)
    gen = subprocess.Popen([LOAD, "idle", f"127.0.0.1:{port}", str(n)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    gen.stdout.readline()
    deadline = time.time() + 60
    while len(os.listdir(f"/proc/{srv.pid}/fd")) < n and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1)
    after = rss_kib(srv.pid)
    gen.stdin.close()
    gen.wait()
    srv.terminate()
    srv.wait()
    print(f"idle: {n} connections: RSS {before} KiB -> {after} KiB = {(after - before) / n:.3f} KiB per connection")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=float, default=5)
    ap.add_argument("--idle", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=("idle", "echo", "chat"))
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if a.only in (None, "idle"):
        idle_rss(a.idle)
    if a.only in (None, "echo"):
        echo_rows(a.secs, a.rounds)
    if a.only in (None, "chat"):
        chat(a.secs, "chat", "bursts")
        for window in (1, 4, 16):
            chat(a.secs, "chat-rounds", f"rounds, window {window}", str(window))


def echo_rows(secs, rounds):
    global REF
    REF = build_c("epoll_echo")
    lean = build_c("echo_load")
    tools = ("sonde", "ncat") + (("c-epoll",) if REF else ())
    gens = [("tokio generator", lambda port, n: load("echo", port, n, secs))]
    if lean:
        gens.append(("C generator", lambda port, n: c_load(lean, port, n, secs)))
    for gen_name, run in gens:
        for clients in (1, 100, 1000):
            res = {tool: [] for tool in tools}
            for _ in range(rounds):
                for tool in tools:
                    port = free_port()
                    srv = start(tool, "echo", port)
                    res[tool].append(run(port, clients))
                    srv.terminate()
                    srv.wait()
                    print(f"echo {clients:5d} clients, {gen_name}, {tool:7s} {res[tool][-1]}", flush=True)
            med = {tool: (statistics.median(float(r["requests_per_sec"]) for r in v),
                          statistics.median(float(r["p99_us"]) for r in v)) for tool, v in res.items()}
            line = " ".join(f"{tool} {m[0]:.0f}/s p99 {m[1]:.0f} us;" for tool, m in med.items())
            ratio = med["sonde"][0] / med["ncat"][0]
            floor = f", sonde/c-epoll {med['sonde'][0] / med['c-epoll'][0]:.2f}" if REF else ""
            print(f"echo {clients:5d} clients, {gen_name}: {line} sonde/ncat {ratio:.2f}{floor}", flush=True)


def chat(secs, mode, label, *extra):
    res = {}
    for tool in ("sonde", "ncat"):
        port = free_port()
        srv = start(tool, "chat", port)
        res[tool] = load(mode, port, 100, secs, *extra)
        srv.terminate()
        srv.wait()
        print(f"chat 100 clients, {label}: {tool:6s} {res[tool]}", flush=True)
    s, n = float(res["sonde"]["lines_delivered_per_sec"]), float(res["ncat"]["lines_delivered_per_sec"])
    print(f"chat 100 clients, {label}: sonde/ncat lines delivered/s = {s / n:.2f}")


if __name__ == "__main__":
    main()
