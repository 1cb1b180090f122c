#!/usr/bin/env python3
"""Many small files: `sonde send DIR` -> `sonde receive` against `tar c |
nc` into `nc -l | tar x` followed by `sync` (the same durability: sonde's
receiver has every file durable before it reports), and against the same
pipeline without the sync.

sonde makes each batch durable with one syncfs (its way); with
--fsync-each it also runs with an fsync of each file and directory
(SONDE_DURABILITY=fsync); the receiver's log gives what each step of the
commits cost.

Two trees: N files of 4 KiB written here (20,000 by default, 100 to a
directory), and a real tree nobody here wrote (the Rust toolchain's HTML
documentation, about 52,000 files, or --real PATH). Runs are interleaved
(sonde, tar+sync, tar, sonde, ...), median of --rounds, on the disk under
--dir. Every run receives into a fresh directory, and all are deleted only
at the end: ext4 is slow to hand out inodes freed seconds ago, which would
tax whichever tool ran after a deletion.

Wall time runs from the sender's start until the receiver has exited (and,
for tar+sync, the sync has returned).

With --fresh-fs (root), every run of one tree lands on a new ext4 made
for the run on a loop device (an image file under --dir): a disk that has
had hundreds of thousands of files made and deleted on it hands out inodes
slower and slower (ext4's recently_deleted scan), and the figures would
drift with the history of the machine rather than the tools.

Usage: python3 bench/tree.py [--files 20000] [--rounds 3] [--dir /tmp] [--fresh-fs] [--fsync-each]
"""
import argparse
import glob
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time

from benchlib import free_port, wait_listening


def small_tree(root, count):
    tree = os.path.join(root, "small")
    if os.path.isdir(tree):
        return tree
    for i in range(count):
        d = os.path.join(tree, f"d{i // 100:04d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:06d}"), "wb") as out:
            out.write(os.urandom(4096))
    return tree


def real_tree():
    found = sorted(glob.glob(os.path.expanduser("~/.rustup/toolchains/*/share/doc/rust/html")))
    return found[0] if found else "/usr/share/doc"


STEPS = (
    ("data durable", re.compile(r"data durable in ([0-9.]+) ms")),
    ("renamed", re.compile(r"renamed in ([0-9.]+) ms")),
    ("renames durable", re.compile(r"renames durable in ([0-9.]+) ms")),
)


def run_sonde(sonde, source, into, durability, steps):
    """One sonde run; adds what each commit step cost (summed over the
    run's commits, from the receiver's SONDE_LOG=debug lines) to `steps`."""
    port = free_port()
    env = dict(os.environ, SONDE_LOG="debug", SONDE_DURABILITY=durability)
    recv = subprocess.Popen([sonde, "receive", into, "--port", str(port), "--bind", "127.0.0.1", "--quiet"],
                            env=env, stderr=subprocess.PIPE, text=True)
    wait_listening(port)
    start = time.perf_counter()
    send = subprocess.run([sonde, "send", source, f"127.0.0.1:{port}", "--quiet"])
    _, log = recv.communicate(timeout=900)
    wall = time.perf_counter() - start
    if send.returncode != 0 or recv.returncode != 0:
        raise RuntimeError(f"sonde send {send.returncode}, receive {recv.returncode}: {log[-2000:]}")
    for name, pattern in STEPS:
        steps.setdefault(name, []).append(sum(float(m) for m in pattern.findall(log)))
    steps.setdefault("commits", []).append(log.count("commit: data durable"))
    return wall


def run_tar(source, into, sync):
    port = free_port()
    parent, name = os.path.split(source.rstrip("/"))
    listen = subprocess.Popen(["ncat", "-l", "127.0.0.1", str(port)], stdout=subprocess.PIPE)
    untar = subprocess.Popen(["tar", "x", "-C", into], stdin=listen.stdout)
    listen.stdout.close()
    wait_listening(port)
    start = time.perf_counter()
    tar = subprocess.Popen(["tar", "c", "-C", parent, name], stdout=subprocess.PIPE)
    subprocess.run(["ncat", "--send-only", "127.0.0.1", str(port)], stdin=tar.stdout, check=True)
    tar.wait()
    untar.wait(timeout=900)
    listen.wait(timeout=60)
    if sync:
        subprocess.run(["sync"], check=True)
    wall = time.perf_counter() - start
    if tar.returncode != 0 or untar.returncode != 0:
        raise RuntimeError(f"tar c {tar.returncode}, tar x {untar.returncode}")
    return wall


class FreshFs:
    """A new ext4 on a loop device, mounted under `parent`, for one run."""

    def __init__(self, parent, size_gib):
        self.image = os.path.join(parent, "fs.img")
        self.mount = os.path.join(parent, "fs")
        with open(self.image, "wb") as img:
            img.truncate(size_gib << 30)
        subprocess.run(["mkfs.ext4", "-q", "-F", self.image], check=True)
        os.makedirs(self.mount, exist_ok=True)
        subprocess.run(["mount", "-o", "loop", self.image, self.mount], check=True)

    def close(self):
        subprocess.run(["umount", self.mount], check=True)
        os.remove(self.image)


def count_files(path):
    return sum(len(files) for _, _, files in os.walk(path))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--real", default=None)
    ap.add_argument("--sonde", default="target/release/sonde")
    ap.add_argument("--fresh-fs", action="store_true", help="receive each run on a new ext4 (root)")
    ap.add_argument("--fsync-each", action="store_true",
                    help="also run sonde with SONDE_DURABILITY=fsync (slow: a minute a round on the real tree)")
    args = ap.parse_args()
    for tool in ("ncat", "tar"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed (apt-get install -y {tool})")
    work = tempfile.mkdtemp(prefix="sonde-tree-", dir=args.dir)
    sources = tempfile.mkdtemp(prefix="sonde-tree-src-", dir=args.dir)
    trees = [("4 KiB files", small_tree(sources, args.files)), ("real tree", args.real or real_tree())]
    try:
        for label, tree in trees:
            # Read once so that every run starts from a warm page cache.
            subprocess.run(["tar", "c", "-C", os.path.dirname(tree), os.path.basename(tree)],
                           stdout=subprocess.DEVNULL, check=True)
            files = count_files(tree)
            times = {"sonde": [], "sonde fsync": [], "tar+sync": [], "tar": []}
            if not args.fsync_each:
                del times["sonde fsync"]
            steps = {tool: {} for tool in times if tool.startswith("sonde")}
            for rnd in range(args.rounds):
                for tool in times:
                    fresh = FreshFs(work, 8) if args.fresh_fs else None
                    into = tempfile.mkdtemp(prefix=f"{tool}-", dir=fresh.mount if fresh else work)
                    subprocess.run(["sync"], check=True)
                    try:
                        if tool.startswith("sonde"):
                            durability = "fsync" if tool == "sonde fsync" else "syncfs"
                            wall = run_sonde(args.sonde, tree, into, durability, steps[tool])
                        else:
                            wall = run_tar(tree, into, sync=tool == "tar+sync")
                        got = count_files(into)
                    finally:
                        if fresh:
                            fresh.close()
                    if got != files:
                        raise RuntimeError(f"{tool}: {got} files of {files}")
                    times[tool].append(wall)
                    print(f"{label} round {rnd + 1}: {tool} {wall:.2f} s", flush=True)
            m = {k: statistics.median(v) for k, v in times.items()}
            print(f"\n{label}: {tree} ({files} files), median of {args.rounds}")
            print(f"{'tool':11s} {'median s':>9s} {'files/s':>9s} {'sonde/this':>11s}")
            for tool, t in m.items():
                print(f"{tool:11s} {t:9.2f} {files / t:9.0f} {m['sonde'] / t:11.2f}")
            print(f"\n{label}: the receiver's commit steps, summed over a run (median ms)")
            for tool, by_step in steps.items():
                shown = ", ".join(f"{name} {statistics.median(v):.0f}" for name, v in by_step.items())
                print(f"{tool:11s} {shown}")
            print(flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sources, ignore_errors=True)


if __name__ == "__main__":
    main()
