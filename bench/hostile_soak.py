#!/usr/bin/env python3
"""Soak of the whole binary under hostile load (issue 18, item 5).

Starts every sonde server at once on loopback (serve echo, discard,
chargen, chat, sockperf, echo -u, smtp and its web side, socks5,
http-proxy; perf -s; receive -k; listen -k; a listening relay; the
exporter), runs a
good client against each in a loop, first alone (the unloaded figures),
then for --minutes beside a hostile load that cycles through the
harness's kinds (a flood of held connections, slowloris, half-open peers,
garbage, resets, clients that never read), and prints per server: good
operations done, failures, p50 and p99 of a good operation alone and
under load (and their ratios, against the issue's 3x), the peak threads,
descriptors and RSS while loaded, and their levels at the start and end.

Usage: python3 bench/hostile_soak.py [--minutes 10] [--alone 5] [--sonde target/release/sonde]
Every load is bounded in count (80 connections) and time; loopback only.
"""
import argparse
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

N = 80
STOP = threading.Event()
LOADED = threading.Event()


def start(cmd, out=subprocess.DEVNULL, perf=False):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if perf else out,
                            stderr=subprocess.PIPE, text=True)
    stream = proc.stdout if perf else proc.stderr
    for line in stream:
        m = re.search(r"Server listening on (\d+)" if perf else r":(\d+)\s*$", line)
        if m:
            port = int(m.group(1))
            break
    else:
        raise RuntimeError(f"no port from {cmd}")
    for s in (proc.stdout, proc.stderr):
        if s is not None:
            threading.Thread(target=lambda s=s: [None for _ in s], daemon=True).start()
    return proc, port


def usage(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            st = f.read()
        threads = int(re.search(r"Threads:\s+(\d+)", st).group(1))
        rss = int(re.search(r"VmRSS:\s+(\d+)", st).group(1))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return threads, fds, rss
    except (OSError, AttributeError):
        return 0, 0, 0


def conn(port, timeout=5):
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    c.settimeout(timeout)
    return c


def recv_exact(c, n):
    got = b""
    while len(got) < n:
        b = c.recv(n - len(got))
        if not b:
            raise OSError("closed")
        got += b
    return got


def round_trips(c, fill):
    """10 echoes of 64 bytes on connection `c`."""
    for _ in range(10):
        c.sendall(fill * 64)
        recv_exact(c, 64)


def op_echo(port):
    with conn(port) as c:
        round_trips(c, b"x")


def op_discard(port):
    with conn(port) as c:
        c.sendall(b"d" * 65536)
        c.shutdown(socket.SHUT_WR)
        if c.recv(1):
            raise OSError("discard answered")


def op_chargen(port):
    with conn(port) as c:
        if not recv_exact(c, 65536).startswith(b' !"#$%&'):
            raise OSError("not the pattern")


def op_chat(port):
    with conn(port) as hear, conn(port) as say:
        f = hear.makefile("rb")
        f.readline()
        say.sendall(b"good line\n")
        while b"good line" not in f.readline():
            pass


def op_sockperf(port):
    with conn(port) as c:
        for seq in range(10):
            c.sendall(struct.pack(">QHI", seq, 0x3, 14))
            recv_exact(c, 14)


def op_udp_echo(port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        for _ in range(10):
            s.sendto(b"u" * 64, ("127.0.0.1", port))
            s.recvfrom(2048)


def op_listen(port):
    with conn(port) as c:
        c.sendall(b"a good line\n")


def op_smtp(port):
    import smtplib
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as m:
        m.sendmail("good@example.com", ["you@example.com"],
                   b"Subject: soak\r\n\r\nstill here\r\n")


def http_get(port, path):
    import http.client
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        h.request("GET", path)
        r = h.getresponse()
        body = r.read()
        if r.status != 200:
            raise OSError(f"HTTP {r.status}")
        return body
    finally:
        h.close()


def op_web(port):
    if b'"messages"' not in http_get(port, "/api/v1/messages?limit=1"):
        raise OSError("no message list")


def via_socks5(to):
    def op(port):
        with conn(port) as c:
            c.sendall(b"\x05\x01\x00")
            if recv_exact(c, 2) != b"\x05\x00":
                raise OSError("socks5 greeting refused")
            c.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", to))
            if recv_exact(c, 10)[1] != 0:
                raise OSError("socks5 connect refused")
            round_trips(c, b"s")
    return op


def via_http_proxy(to):
    def op(port):
        with conn(port) as c:
            c.sendall(f"CONNECT 127.0.0.1:{to} HTTP/1.1\r\nHost: 127.0.0.1:{to}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                head += recv_exact(c, 1)
            if b" 200" not in head.split(b"\r\n")[0]:
                raise OSError(head[:80])
            round_trips(c, b"h")
    return op


def probe_of(to):
    def op(port):
        if b"probe_success 1" not in http_get(port, f"/probe?target=127.0.0.1:{to}&module=connect"):
            raise OSError("probe failed")
    return op


def start_smtp(cmd):
    """serve smtp: its SMTP port, then its web side's."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ports = []
    for line in proc.stderr:
        m = re.search(r"http://[^ ]*:(\d+)/" if ports else r":(\d+)\s*$", line)
        if m:
            ports.append(int(m.group(1)))
            if len(ports) == 2:
                break
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    return proc, ports


def load_loop(port, udp):
    """Cycles through the hostile loads against one server until STOP."""
    kinds = ["flood", "slowloris", "halfopen", "garbage", "resets", "nonreaders"]
    junk = os.urandom(1 << 20)
    i = 0
    while not STOP.is_set():
        kind = "udpflood" if udp else kinds[i % len(kinds)]
        i += 1
        held = []
        try:
            if kind == "udpflood":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    end = time.time() + 5
                    k = 0
                    while time.time() < end and not STOP.is_set():
                        s.sendto(junk[: 1 + (k * 131) % 1400], ("127.0.0.1", port))
                        k += 1
                        if k % 256 == 0:
                            time.sleep(0.001)
                continue
            if kind in ("garbage", "resets"):
                for _ in range(N if kind == "garbage" else 20):
                    try:
                        c = conn(port, 0.2)
                        if kind == "resets":
                            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        c.sendall(junk[: 65536 if kind == "garbage" else 1 << 20])
                        c.close()
                    except OSError:
                        pass
                continue
            for _ in range(N if kind != "nonreaders" else 20):
                try:
                    held.append(conn(port, 2))
                except OSError:
                    pass
            end = time.time() + 5
            while time.time() < end and not STOP.is_set():
                for c in held:
                    try:
                        if kind == "slowloris":
                            c.send(b"x")
                        elif kind == "nonreaders":
                            c.setblocking(False)
                            c.send(junk[:65536])
                    except OSError:
                        pass
                time.sleep(0.2 if kind == "slowloris" else 0.01)
        finally:
            for c in held:
                c.close()


class Server:
    def __init__(self, name, proc, port, op, udp=False):
        self.name, self.proc, self.port, self.op, self.udp = name, proc, port, op, udp
        self.alone, self.loaded, self.failures = [], [], 0
        self.first_failure = None
        self.start = self.end = None
        self.peak = (0, 0, 0)

    def good_loop(self):
        while not STOP.is_set():
            began = time.perf_counter()
            try:
                self.op(self.port)
                took = time.perf_counter() - began
                (self.loaded if LOADED.is_set() else self.alone).append(took)
            except Exception as err:
                self.failures += 1
                if self.first_failure is None:
                    self.first_failure = repr(err)[:300]
                time.sleep(0.05)

    def sample(self):
        u = usage(self.proc.pid)
        self.peak = tuple(max(a, b) for a, b in zip(self.peak, u))


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--alone", type=float, default=5, help="seconds of good clients alone first")
    ap.add_argument("--sonde", default="target/release/sonde")
    ap.add_argument("--only", action="append", default=[],
                    help="soak only the servers whose names hold this (repeatable)")
    a = ap.parse_args()
    S = a.sonde
    tmp = tempfile.mkdtemp(prefix="sonde-soak-")
    payload = os.path.join(tmp, "good.bin")
    with open(payload, "wb") as f:
        f.write(os.urandom(1 << 20))
    into = os.path.join(tmp, "into")

    def op_perf(port):
        r = subprocess.run([S, "perf", "-c", "127.0.0.1", "-p", str(port), "-n", "10M", "-J"],
                           capture_output=True, timeout=60)
        if r.returncode:
            raise OSError(r.stderr[-200:])

    def op_send(port):
        r = subprocess.run([S, "send", payload, f"127.0.0.1:{port}", "--quiet"],
                           capture_output=True, timeout=60)
        if r.returncode:
            raise OSError(r.stderr[-200:])

    def serve(svc, *extra):
        return start([S, "serve", svc, *extra, "--bind", "127.0.0.1", "--port", "0"])

    servers = [Server("serve echo", *serve("echo"), op_echo),
               Server("serve discard", *serve("discard"), op_discard),
               Server("serve chargen", *serve("chargen"), op_chargen),
               Server("serve chat", *serve("chat"), op_chat),
               Server("serve sockperf", *serve("sockperf"), op_sockperf),
               Server("serve echo -u", *serve("echo", "-u"), op_udp_echo, udp=True),
               Server("perf -s", *start([S, "perf", "-s", "-B", "127.0.0.1", "-p", "0"], perf=True), op_perf),
               Server("receive -k", *start([S, "receive", into, "--bind", "127.0.0.1", "-p", "0", "-k", "--overwrite"]), op_send),
               Server("listen -k", *start([S, "listen", "-k", "127.0.0.1:0", "--max-conns", "500"]), op_listen)]
    # The later servers; their good clients reach the soak's echo.
    echo = servers[0].port
    smtp, (smtp_port, web_port) = start_smtp([S, "serve", "smtp", "--store", ":memory:", "--bind", "127.0.0.1",
                                               "--port", "0", "--http", "0"])
    servers += [Server("serve smtp", smtp, smtp_port, op_smtp),
                Server("smtp web side", smtp, web_port, op_web),
                Server("serve socks5", *serve("socks5"), via_socks5(echo)),
                Server("http-proxy", *serve("http-proxy"), via_http_proxy(echo)),
                Server("relay", *start([S, "relay", "tcp-listen:127.0.0.1:0", f"tcp:127.0.0.1:{echo}", "--quiet"]), op_echo),
                Server("exporter", *start([S, "exporter", "--listen", "127.0.0.1:0"]), probe_of(echo))]
    kept = servers[0]  # the echo the later servers' good clients reach
    if a.only:
        for s in servers:
            if not any(o in s.name for o in a.only) and s is not kept:
                s.proc.terminate()
                s.proc.wait()
        servers = [s for s in servers if any(o in s.name for o in a.only)]
    for s in servers:
        s.start = usage(s.proc.pid)
    goods = [threading.Thread(target=s.good_loop, daemon=True) for s in servers]
    for t in goods:
        t.start()
    time.sleep(a.alone)
    LOADED.set()
    loads = [threading.Thread(target=load_loop, args=(s.port, s.udp), daemon=True) for s in servers]
    for t in loads:
        t.start()
    end = time.time() + a.minutes * 60
    while time.time() < end:
        for s in servers:
            s.sample()
        time.sleep(1)
    STOP.set()
    for t in loads + goods:
        t.join(timeout=30)
    time.sleep(3)
    for s in servers:
        s.end = usage(s.proc.pid)
    # Once each: serve smtp is two rows (its SMTP and its web side), and
    # a second SIGTERM is taken as "now".
    for proc in {id(s.proc): s.proc for s in servers + [kept]}.values():
        proc.terminate()
    codes = [s.proc.wait(timeout=15) for s in servers]
    kept.proc.wait(timeout=15)
    print(f"{a.minutes:g} min under hostile load, all servers at once, after {a.alone:g} s alone")
    print(f"{'server':16} {'good ops':>8} {'fail':>5} {'p50 alone':>10} {'p50 load':>9} {'ratio':>6} {'p99 alone':>10} {'p99 load':>9} {'ratio':>6}"
          f" {'threads start/peak/end':>23} {'fds start/peak/end':>19} {'RSS MiB start/peak/end':>23} exit")
    for s, code in zip(servers, codes):
        p50a, p50 = pct(s.alone, 0.5) * 1e3, pct(s.loaded, 0.5) * 1e3
        p99a, p99 = pct(s.alone, 0.99) * 1e3, pct(s.loaded, 0.99) * 1e3
        th = f"{s.start[0]}/{s.peak[0]}/{s.end[0]}"
        fd = f"{s.start[1]}/{s.peak[1]}/{s.end[1]}"
        rss = f"{s.start[2]/1024:.1f}/{s.peak[2]/1024:.1f}/{s.end[2]/1024:.1f}"
        print(f"{s.name:16} {len(s.loaded):8d} {s.failures:5d} {p50a:8.2f}ms {p50:7.2f}ms {p50/p50a:5.1f}x"
              f" {p99a:8.2f}ms {p99:7.2f}ms {p99/p99a:5.1f}x"
              f" {th:>23} {fd:>19} {rss:>23} {code}")
    print(f"{'server':16} {'busy s':>7} {'max op':>8}  (time the good client spent in operations while loaded, its longest)")
    for s in servers:
        print(f"{s.name:16} {sum(s.loaded):7.1f} {max(s.loaded, default=0):7.2f}s")
    for s in servers:
        if s.first_failure:
            print(f"{s.name}: first failure: {s.first_failure}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
