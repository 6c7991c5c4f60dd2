#!/usr/bin/env python3
"""A cluster built and inspected only with the operator tools, printed as a transcript (issue 5):

  1. an index server and three nodes (all with --metrics-port) start; `flare-admin master --activate` makes the first
     the master of partition 0;
  2. ITEMS values of VALUE_BYTES bytes (default 100,000 x 10,000 = 1 GB) are written to it;
  3. `flare-admin slave` builds a slave of partition 0 from it, showing its progress (plain lines: no terminal);
  4. `flare-admin master` + `activate` adds partition 1 on the third node;
  5. `flare-stats` and `flare-admin list` show the 2-partition cluster, `curl` the metrics of a node and the index.

Usage: bench/admin-demo.py [--items N] [--value-bytes B]   (run `cargo build --release --bins` first)
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from pymemcache.client.base import Client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def run(*args, check=True):
    """Runs a command, echoing it and its output like a terminal session."""
    shown = " ".join(a.replace(BIN + "/", "") for a in args)
    print(f"$ {shown}", flush=True)
    p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.stdout.write(p.stdout)
    sys.stdout.flush()
    if check and p.returncode != 0:
        raise SystemExit(f"exit {p.returncode}: {shown}")
    return p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--value-bytes", type=int, default=10_000)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="flare-admin-demo-")
    procs = []
    try:
        index, index_metrics = free_port(), free_port()
        nodes = [(free_port(), free_port()) for _ in range(3)]

        def start(binary, port, metrics, *extra):
            d = os.path.join(work, str(port))
            os.makedirs(d)
            log = open(os.path.join(d, "log"), "ab")
            procs.append(subprocess.Popen(
                [os.path.join(BIN, binary), f"--data-dir={d}", "--server-name=127.0.0.1", f"--server-port={port}",
                 f"--metrics-port={metrics}", "-s", *extra], stdout=subprocess.DEVNULL, stderr=log))
            wait_port(port)

        start("flarei", index, index_metrics, "--monitor-interval=1")
        for port, metrics in nodes:
            start("flared", port, metrics, f"--index-servers=127.0.0.1:{index}")
        admin = [os.path.join(BIN, "flare-admin"), "--index-server", f"127.0.0.1:{index}"]
        (m0, m0_metrics), (s0, _), (m1, _) = nodes
        print(f"# index 127.0.0.1:{index}, nodes {', '.join(f'127.0.0.1:{p}' for p, _ in nodes)}\n")
        run(*admin, "list")
        run(*admin, "master", "--force", "--activate", f"127.0.0.1:{m0}:1:0")

        value = os.urandom(a.value_bytes // 2).hex().encode()[: a.value_bytes]
        c = Client(("127.0.0.1", m0), timeout=30)
        t = time.monotonic()
        batch = {}
        for i in range(a.items):
            batch[f"key:{i:08d}"] = value
            if len(batch) == 100:
                c.set_many(batch, noreply=False)
                batch = {}
        if batch:
            c.set_many(batch, noreply=False)
        total = a.items * a.value_bytes
        print(f"\n# loaded {a.items} x {a.value_bytes} B ({total / 1e9:.2f} GB) into 127.0.0.1:{m0} "
              f"in {time.monotonic() - t:.1f} s\n")

        t = time.monotonic()
        run(*admin, "slave", "--force", f"127.0.0.1:{s0}:1:0")
        print(f"# slave construction took {time.monotonic() - t:.1f} s (flare-admin's whole run)\n")

        run(*admin, "master", "--force", "--activate", f"127.0.0.1:{m1}:1:1")
        # Moved keys are removed from partition 0 in the background after activation.
        time.sleep(3)
        print()
        run(os.path.join(BIN, "flare-stats"), "--index-server", f"127.0.0.1:{index}")
        print()
        run(*admin, "list")
        print()
        run(*admin, "verify", check=False)
        print()
        for name, port in [("node 127.0.0.1:%d" % m0, m0_metrics), ("index", index_metrics)]:
            print(f"# metrics of the {name} (excerpt)")
            out = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/metrics"], stdout=subprocess.PIPE,
                                 text=True).stdout
            print(f"$ curl -s http://127.0.0.1:{port}/metrics | grep -v '^#' | grep -v _bucket")
            for line in out.splitlines():
                if not line.startswith("#") and "_bucket" not in line:
                    print(line)
            print()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
