"""Writes 10,000 keys through a proxy node with pymemcache and reads every key back from every node.

Usage: python3 cluster_rw.py PROXY_PORT NODE_PORT...   (exit 0 = every value read back from every node)
"""
import sys

from pymemcache.client.base import Client

proxy = int(sys.argv[1])
nodes = [int(p) for p in sys.argv[2:]]
N = 10000
keys = [f"cluster:{i:05d}" for i in range(N)]
value = {k: f"value-{k}-{'x' * (i % 50)}".encode() for i, k in enumerate(keys)}

c = Client(("127.0.0.1", proxy), connect_timeout=5, timeout=20)
for start in range(0, N, 500):
    batch = {k: value[k] for k in keys[start:start + 500]}
    failed = c.set_many(batch, noreply=False)
    assert not failed, f"not stored through the proxy: {failed[:5]}"

for port in nodes:
    r = Client(("127.0.0.1", port), connect_timeout=5, timeout=20)
    for start in range(0, N, 500):
        chunk = keys[start:start + 500]
        got = r.get_many(chunk)
        missing = [k for k in chunk if got.get(k) != value[k]]
        assert not missing, f"node {port}: {len(missing)} keys wrong or missing, e.g. {missing[:3]}"
    r.close()
print(f"all {N} keys read back from {len(nodes)} nodes")
