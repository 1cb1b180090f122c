#!/usr/bin/env python3
"""sonde serve smtp against aiosmtpd as a mail sink (issue 21).

Two sinks on loopback, each keeping every message in a Maildir under a
temp dir:
  sonde    sonde serve smtp --bind 127.0.0.1 --port P --store DIR
           (each message fsync'd, renamed into new/, new/ fsync'd before
           the 250)
  aiosmtpd python3 -m aiosmtpd -n -l 127.0.0.1:P -c aiosmtpd.handlers.Mailbox DIR
           (Python's mailbox.Maildir: written and renamed, not fsync'd, so
           the comparison flatters aiosmtpd)
and, for what the disk costs, sonde with --store :memory: ("sonde-memory").
The load (crates/sonde/examples/smtp_load.rs): --senders connections at
once, each sending small messages one after another as smtplib does
(every command waits for its reply), for --secs seconds or --max messages.
Rounds interleave the two; the median of --rounds, and sonde's ratio to
aiosmtpd's. Needs aiosmtpd (pip install aiosmtpd).

--baseline BIN adds "sonde-baseline", the same Maildir sink from another
sonde binary (an older build), interleaved with the others: what a change
to the store is worth, on a disk whose speed drifts from minute to minute.

Usage: python3 bench/smtp.py [--rounds 3] [--senders 10] [--secs 5] [--baseline BIN]
Loopback only; every load is bounded in time and count.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from benchlib import free_port, wait_listening  # noqa: E402

SONDE = "target/release/sonde"
LOAD = "target/release/examples/smtp_load"


def start(name, port, store, baseline=None):
    if name.startswith("sonde"):
        where = ":memory:" if name == "sonde-memory" else store
        binary = baseline if name == "sonde-baseline" else SONDE
        args = [binary, "serve", "smtp", "--bind", "127.0.0.1", "--port", str(port),
                "--http", "0", "--store", where, "--max-messages", "1000000", "--quiet"]
    else:
        args = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                "-c", "aiosmtpd.handlers.Mailbox", store]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port)
    return proc


def count(store):
    new = os.path.join(store, "new")
    return len(os.listdir(new)) if os.path.isdir(new) else 0


def one(name, a):
    port = free_port()
    scratch = tempfile.mkdtemp(prefix=f"bench-smtp-{name}-")
    # A path that does not exist yet: Python's Maildir makes tmp/, new/
    # and cur/ only when it creates the directory itself.
    store = os.path.join(scratch, "maildir")
    # Each sink starts on a clean disk: what the one before left to write
    # back would otherwise be flushed by the next one's first fsync.
    os.sync()
    proc = start(name, port, store, a.baseline)
    try:
        out = subprocess.run([LOAD, f"127.0.0.1:{port}", str(a.senders), str(a.secs), str(a.max)],
                             check=True, capture_output=True, text=True, timeout=a.secs + 60)
        rate = float(out.stdout.strip())
        kept = count(store)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)
    return rate, kept


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--senders", type=int, default=10)
    p.add_argument("--secs", type=float, default=5)
    p.add_argument("--max", type=int, default=200000)
    p.add_argument("--baseline", help="another sonde binary to compare, as sonde-baseline")
    a = p.parse_args()
    names = ("sonde", "aiosmtpd", "sonde-memory")
    if a.baseline:
        names = ("sonde", "sonde-baseline", "aiosmtpd", "sonde-memory")
    rates = {name: [] for name in names}
    for r in range(a.rounds):
        for name in names:
            rate, kept = one(name, a)
            rates[name].append(rate)
            print(f"round {r + 1}: {name} {rate:.0f} messages/s ({kept} in its Maildir)", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print()
    print(f"| sink | messages/s (median of {a.rounds}) | x aiosmtpd |")
    print("|---|---|---|")
    for name in names:
        print(f"| {name} | {med[name]:,.0f} | {med[name] / med['aiosmtpd']:.2f}x |")


if __name__ == "__main__":
    main()
