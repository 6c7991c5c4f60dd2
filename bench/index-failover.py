#!/usr/bin/env python3
"""Index-group failover on real processes on loopback, default settings (issue 12), printed for BENCHMARKS.md.

Three index servers (one Raft group), two partitions with a slave each, a proxy, and a client (pymemcache) writing
through the proxy all along. RUNS times: kill -9 of the leader index server -> time until another index server says
`index_role leader`; the map version it shows must be at least the one before (no committed version lost); then the
old leader is restarted and must come back as a follower with the same map and applied index. Then kill -9 of a
master -> time until the index group shows its slave as the active master. Reports the client's failed operations
during the index kills (must be 0) and during the master's failover.

Usage: bench/index-failover.py [RUNS=5] [--debug]   (uses target/release; run `cargo build --release` first, or
--debug for target/debug)
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time

from pymemcache.client.base import Client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, line, timeout=2):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(line.encode() + b"\r\n")
        data = b""
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                return data.decode(errors="replace")
            data += chunk
            if data.endswith(b"END\r\n") or (b"\r\n" in data and not line.startswith("stats")):
                return data.decode(errors="replace")


class Group:
    def __init__(self, work, binaries):
        self.work, self.bin = work, binaries
        self.procs = {}
        self.indexes = [free_port() for _ in range(3)]
        self.list = ",".join(f"127.0.0.1:{p}" for p in self.indexes)
        for p in self.indexes:
            self.start("flarei", p)

    def start(self, binary, port):
        d = os.path.join(self.work, str(port))
        os.makedirs(d, exist_ok=True)
        args = [os.path.join(self.bin, binary), f"--data-dir={d}", "--server-name=127.0.0.1",
                f"--server-port={port}", "-s", f"--index-servers={self.list}"]
        log = open(os.path.join(d, "log"), "ab")
        self.procs[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
        for _ in range(400):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{binary} on {port} did not start")

    def live(self, port):
        return self.procs[port].poll() is None

    def stat(self, port, name):
        try:
            for l in call(port, "stats", timeout=1).split("\r\n"):
                if l.startswith(f"STAT {name} "):
                    return l.split(" ", 2)[2]
        except OSError:
            pass
        return ""

    def leader(self, other_than=None):
        for p in self.indexes:
            if p != other_than and self.live(p) and self.stat(p, "index_role") == "leader":
                return p
        return None

    def any_index(self):
        return next(p for p in self.indexes if self.live(p))

    def admin(self, line):
        reply = call(self.any_index(), line).strip()
        assert reply == "OK", f"{line}: {reply}"

    def field(self, port, name):
        for l in call(self.any_index(), "stats nodes").split("\r\n"):
            if l.startswith(f"STAT 127.0.0.1:{port}:{name} "):
                return l.split()[-1]
        return ""

    def wait(self, port, role, state, limit=60):
        t = time.time()
        while time.time() - t < limit:
            if self.field(port, "role") == role and self.field(port, "state") == state:
                return
            time.sleep(0.01)
        raise RuntimeError(f"{port} did not become {role}/{state}")

    def node(self):
        port = self.start("flared", free_port())
        t = time.time()
        while self.field(port, "role") == "":
            if time.time() - t > 30:
                raise RuntimeError(f"node {port} did not register")
            time.sleep(0.05)
        return port

    def kill9(self, port):
        self.procs[port].send_signal(signal.SIGKILL)
        self.procs[port].wait()

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        for p in self.procs.values():
            p.wait()


def writer(port, stop, counts):
    c = Client(("127.0.0.1", port), timeout=5)
    i = 0
    while not stop.is_set():
        try:
            ok = c.set(f"k{i}", b"v%d" % i, noreply=False)
        except Exception:  # a refused or failed write: counted, retried with the next key
            ok = False
            c = Client(("127.0.0.1", port), timeout=5)
        counts["ok" if ok else "failed"] += 1
        i += 1
        time.sleep(0.002)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="?", type=int, default=5)
    ap.add_argument("--debug", action="store_true")
    a = ap.parse_args()
    binaries = os.path.join(ROOT, "target", "debug" if a.debug else "release")
    work = tempfile.mkdtemp(prefix="flare-index-failover-")
    g = Group(work, binaries)
    stop = threading.Event()
    try:
        t = time.time()
        while g.leader() is None:
            if time.time() - t > 10:
                raise RuntimeError("no first leader")
            time.sleep(0.01)
        m0, s0, m1, s1, proxy = (g.node() for _ in range(5))
        g.admin(f"node role 127.0.0.1 {m0} master 1 0")
        g.wait(m0, "master", "active")
        g.admin(f"node role 127.0.0.1 {s0} slave 1 0")
        g.wait(s0, "slave", "active")
        g.admin(f"node role 127.0.0.1 {m1} master 1 1")
        g.wait(m1, "master", "ready")
        g.admin(f"node state 127.0.0.1 {m1} active")
        g.wait(m1, "master", "active")
        g.admin(f"node role 127.0.0.1 {s1} slave 1 1")
        g.wait(s1, "slave", "active")
        counts = {"ok": 0, "failed": 0}
        w = threading.Thread(target=writer, args=(proxy, stop, counts))
        w.start()
        took, lost = [], 0
        for run in range(a.runs):
            time.sleep(1.5)
            old = g.leader()
            version = int(g.stat(old, "node_map_version"))
            g.kill9(old)
            t = time.time()
            new = None
            while new is None:
                new = g.leader(other_than=old)
                if new is None:
                    time.sleep(0.005)
            took.append(time.time() - t)
            if int(g.stat(new, "node_map_version")) < version:
                lost += 1
            g.start("flarei", old)
            t = time.time()
            while not (g.stat(old, "index_role") == "follower"
                       and g.stat(old, "node_map_version") == g.stat(new, "node_map_version")
                       and g.stat(old, "index_applied") == g.stat(new, "index_applied")):
                if time.time() - t > 10:
                    raise RuntimeError(f"run {run}: the old leader did not rejoin with the same map")
                time.sleep(0.02)
            print(f"run {run}: new leader after {took[-1] * 1000:.0f} ms; old leader back as a follower "
                  f"after {(time.time() - t) * 1000:.0f} ms", flush=True)
        time.sleep(2)
        failed_index = counts["failed"]
        ok_index = counts["ok"]
        g.kill9(m0)
        t = time.time()
        g.wait(s0, "master", "active")
        failover = time.time() - t
        time.sleep(0.5)
        stop.set()
        w.join()
        ms = sorted(x * 1000 for x in took)
        print()
        print(f"new leader after kill -9 of the leader index server ({a.runs} runs): median "
              f"{statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms; all: {', '.join(f'{x:.0f}' for x in ms)}")
        print(f"map versions lost: {lost}; client writes through the proxy meanwhile: {ok_index} ok, "
              f"{failed_index} failed")
        print(f"then kill -9 of a master: its slave promoted by the new leader after {failover * 1000:.0f} ms; "
              f"client writes failed during that failover: {counts['failed'] - failed_index}")
    finally:
        stop.set()
        g.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
