#!/usr/bin/env python3
"""Failover and growth measurements on real processes on loopback (issue 4), printed as a table for BENCHMARKS.md.

  1. failover: kill -9 of a master -> its slave promoted (the index's `stats nodes` shows it master), RUNS runs,
     default monitor settings;
  2. slave construction: a master holding 100,000 values of 10,000 bytes (1 GB) gets a new slave; time from the
     `node role ... slave` command to the slave being active, RUNS runs;
  3. adding a partition to that 1 GB cluster while a client writes and reads continuously through a proxy: the fraction
     of client operations that failed, and the time from `node role ... master B 1` to `ready` (then to active).

Usage: bench/growth.py [RUNS=5] [--items N] [--value-bytes B] [--failover-only]   (builds nothing: run `cargo build --release` first)
"""
import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from pymemcache.client.base import Client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, line, until=(b"END\r\n",)):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(line.encode() + b"\r\n")
        data = b""
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                return data.decode(errors="replace")
            data += chunk
            if any(data.endswith(u) for u in until) or (b"\r\n" in data and not line.startswith("stats")):
                return data.decode(errors="replace")


class Cluster:
    def __init__(self, work):
        self.work = work
        self.procs = {}
        self.index = free_port()
        self.start("flarei", self.index)

    def start(self, binary, port, *extra):
        d = os.path.join(self.work, str(port))
        os.makedirs(d, exist_ok=True)
        args = [os.path.join(BIN, binary), f"--data-dir={d}", "--server-name=127.0.0.1", f"--server-port={port}", "-s"]
        if binary == "flared":
            args.append(f"--index-servers=127.0.0.1:{self.index}")
        log = open(os.path.join(d, "log"), "ab")
        self.procs[port] = subprocess.Popen(args + list(extra), stdout=subprocess.DEVNULL, stderr=log)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{binary} on {port} did not start")

    def node(self):
        return self.start("flared", free_port())

    def admin(self, line):
        reply = call(self.index, line).strip()
        assert reply == "OK", f"{line}: {reply}"

    def field(self, port, name):
        for l in call(self.index, "stats nodes").split("\r\n"):
            if l.startswith(f"STAT 127.0.0.1:{port}:{name} "):
                return l.split()[-1]
        return ""

    def wait(self, port, role, state, limit=120):
        t = time.time()
        while time.time() - t < limit:
            if self.field(port, "role") == role and self.field(port, "state") == state:
                return time.time() - t
            time.sleep(0.005)
        raise RuntimeError(f"{port} did not become {role}/{state}")

    def kill9(self, port):
        self.procs[port].send_signal(signal.SIGKILL)
        self.procs[port].wait()

    def stop(self):
        for p in self.procs.values():
            p.send_signal(signal.SIGKILL)
        for p in self.procs.values():
            p.wait()


def load(port, items, size):
    c = Client(("127.0.0.1", port), timeout=60)
    value = b"v" * size
    for base in range(0, items, 100):
        c.set_many({f"g:{i:07d}": value for i in range(base, min(items, base + 100))}, noreply=True)
    c.get("g:0000000")
    return int(c.stats()[b"curr_items"])


def failover(runs):
    times = []
    for _ in range(runs):
        work = tempfile.mkdtemp(prefix="flare-failover-")
        c = Cluster(work)
        try:
            m, s = c.node(), c.node()
            c.admin(f"node role 127.0.0.1 {m} master 1 0")
            c.wait(m, "master", "active")
            c.admin(f"node role 127.0.0.1 {s} slave 1 0")
            c.wait(s, "slave", "active")
            time.sleep(1.5)
            t = time.time()
            c.kill9(m)
            while c.field(s, "role") != "master":
                time.sleep(0.002)
            times.append(time.time() - t)
        finally:
            c.stop()
            shutil.rmtree(work, ignore_errors=True)
    return times


def construction(runs, items, size):
    work = tempfile.mkdtemp(prefix="flare-construct-")
    c = Cluster(work)
    times = []
    try:
        m, s = c.node(), c.node()
        c.admin(f"node role 127.0.0.1 {m} master 1 0")
        c.wait(m, "master", "active")
        loaded = load(m, items, size)
        for _ in range(runs):
            t = time.time()
            c.admin(f"node role 127.0.0.1 {s} slave 1 0")
            c.wait(s, "slave", "active", limit=600)
            times.append(time.time() - t)
            got = int(Client(("127.0.0.1", s), timeout=30).stats()[b"curr_items"])
            assert got == loaded, f"slave holds {got} of {loaded} items"
            c.admin(f"node role 127.0.0.1 {s} proxy 0 -1")
            c.wait(s, "proxy", "active")
    finally:
        c.stop()
        shutil.rmtree(work, ignore_errors=True)
    return times, loaded


def grow(items, size):
    work = tempfile.mkdtemp(prefix="flare-grow-")
    c = Cluster(work)
    try:
        m, px, n = c.node(), c.node(), c.node()
        c.admin(f"node role 127.0.0.1 {m} master 1 0")
        c.wait(m, "master", "active")
        loaded = load(m, items, size)
        stop = threading.Event()
        counts = {"ok": 0, "failed": 0}
        errors = []

        def client(seed):
            rnd = random.Random(seed)
            cl = Client(("127.0.0.1", px), timeout=5)
            while not stop.is_set():
                k = f"g:{rnd.randrange(items):07d}"
                try:
                    if rnd.random() < 0.3:
                        ok = cl.set(k, b"w" * 100, noreply=False)
                    else:
                        ok = cl.get(k) is not None
                    counts["ok" if ok else "failed"] += 1
                    if not ok:
                        errors.append(k)
                except Exception as e:  # a client error counts as a failed operation
                    counts["failed"] += 1
                    errors.append(repr(e))
                    cl = Client(("127.0.0.1", px), timeout=5)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(2)
        t0 = time.time()
        c.admin(f"node role 127.0.0.1 {n} master 1 1")
        to_ready = c.wait(n, "master", "ready", limit=600)
        c.admin(f"node state 127.0.0.1 {n} active")
        to_active = c.wait(n, "master", "active") + to_ready
        time.sleep(3)
        stop.set()
        for t in threads:
            t.join()
        moved = int(Client(("127.0.0.1", n), timeout=30).stats()[b"curr_items"])
        return {
            "loaded": loaded,
            "ops": counts["ok"] + counts["failed"],
            "failed": counts["failed"],
            "errors": errors[:5],
            "to_ready": to_ready,
            "to_active": to_active,
            "moved": moved,
            "started": t0,
        }
    finally:
        c.stop()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="?", type=int, default=5)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--value-bytes", type=int, default=10_000)
    ap.add_argument("--failover-only", action="store_true", help="measure the failover alone")
    a = ap.parse_args()
    for b in ("flarei", "flared"):
        if not os.path.exists(os.path.join(BIN, b)):
            sys.exit(f"{BIN}/{b} missing: run cargo build --release --bins first")
    gb = a.items * a.value_bytes / 1e9
    f = failover(a.runs)
    print(f"failover (kill -9 of a master -> slave promoted, default monitor settings, {len(f)} runs): "
          f"median {statistics.median(f) * 1000:.0f} ms, max {max(f) * 1000:.0f} ms; all: "
          + ", ".join(f"{x * 1000:.0f}" for x in f))
    if a.failover_only:
        return
    runs = max(3, a.runs // 2 + 1)
    t, loaded = construction(runs, a.items, a.value_bytes)
    print(f"slave construction ({loaded} items x {a.value_bytes} B = {gb:.1f} GB, {len(t)} runs): "
          f"median {statistics.median(t):.2f} s to active; all: " + ", ".join(f"{x:.2f}" for x in t))
    g = grow(a.items, a.value_bytes)
    frac = g["failed"] / max(1, g["ops"])
    print(f"add a partition to a {gb:.1f} GB cluster under load (4 clients through a proxy, 30% sets): "
          f"{g['failed']} of {g['ops']} client operations failed ({frac:.4%}); "
          f"ready after {g['to_ready']:.2f} s, active after {g['to_active']:.2f} s; "
          f"{g['moved']} of {g['loaded']} keys moved to the new partition")
    if g["errors"]:
        print("  first failures:", g["errors"])


if __name__ == "__main__":
    main()
