"""End-to-end checks of flared with pymemcache, a widely used Python memcached client nobody here wrote.

Usage: python3 pymemcache_e2e.py HOST:PORT   (exit 0 = all checks passed; an assertion names the failed check)
"""
import socket
import sys
import time

from pymemcache.client.base import Client
from pymemcache.client.retrying import RetryingClient  # noqa: F401  (import checks the package is complete)

host, port = sys.argv[1].rsplit(":", 1)
c = Client((host, int(port)), connect_timeout=5, timeout=10)

# set / get / flags through pymemcache's serde-less bytes path
assert c.set("py:a", b"hello", noreply=False) is True
assert c.get("py:a") == b"hello"
assert c.get("py:missing") is None

# binary-safe values, empty value, 1 MiB value
blob = bytes(range(256)) * 16
assert c.set("py:blob", blob, noreply=False)
assert c.get("py:blob") == blob
assert c.set("py:empty", b"", noreply=False)
assert c.get("py:empty") == b""
big = b"x" * (1 << 20)
assert c.set("py:big", big, noreply=False)
assert c.get("py:big") == big

# add / replace
assert c.add("py:a", b"nope", noreply=False) is False
assert c.add("py:new", b"v", noreply=False) is True
assert c.replace("py:new", b"v2", noreply=False) is True
assert c.replace("py:none", b"v", noreply=False) is False

# append / prepend
assert c.append("py:a", b" world", noreply=False)
assert c.prepend("py:a", b">> ", noreply=False)
assert c.get("py:a") == b">> hello world"

# gets / cas
value, token = c.gets("py:a")
assert value == b">> hello world"
assert c.cas("py:a", b"cas1", token, noreply=False) is True
assert c.cas("py:a", b"cas2", token, noreply=False) is False  # stale token -> EXISTS
assert c.cas("py:nokey", b"x", b"1", noreply=False) is None  # NOT_FOUND
assert c.get("py:a") == b"cas1"

# incr / decr
assert c.set("py:n", b"10", noreply=False)
assert c.incr("py:n", 5) == 15
assert c.decr("py:n", 100) == 0
assert c.incr("py:n", 18446744073709551615) == 18446744073709551615
assert c.incr("py:n", 2) == 1  # wraps at 2^64
assert c.incr("py:nokey", 1) is None

# delete
assert c.delete("py:new", noreply=False) is True
assert c.delete("py:new", noreply=False) is False

# get_many keeps every hit
c.set_many({"py:m1": b"1", "py:m2": b"2", "py:m3": b"3"}, noreply=False)
got = c.get_many(["py:m1", "py:m2", "py:nokey", "py:m3"])
assert got == {"py:m1": b"1", "py:m2": b"2", "py:m3": b"3"}, got

# touch and expiry
assert c.set("py:exp", b"soon", expire=1, noreply=False)
assert c.get("py:exp") == b"soon"
assert c.touch("py:exp", 100, noreply=False) is True
time.sleep(2.1)
assert c.get("py:exp") == b"soon", "touch must extend the expiry"
assert c.set("py:exp2", b"soon", expire=1, noreply=False)
time.sleep(2.1)
assert c.get("py:exp2") is None, "an item past its exptime must be gone"

# gat (memcached form) on a plain socket: pymemcache 4 has no gat
with socket.create_connection((host, int(port)), timeout=10) as s:
    s.sendall(b"gat 100 py:blob py:nokey\r\n")
    want = b"VALUE py:blob 0 4096\r\n" + blob + b"\r\nEND\r\n"
    got = b""
    while len(got) < len(want):
        chunk = s.recv(65536)
        assert chunk, "connection closed during gat"
        got += chunk
    assert got == want, got[:60]

# noreply writes are applied
c.set("py:nr", b"quiet", noreply=True)
assert c.get("py:nr") == b"quiet"

# stats and version
stats = c.stats()
assert int(stats[b"curr_items"]) > 0
assert int(stats[b"cmd_get"]) > 0
assert c.version()[:1].isdigit(), c.version()  # libmemcached needs digits right after VERSION

# flush_all empties the node
assert c.flush_all(noreply=False) is True
assert c.get("py:a") is None

c.close()
print("pymemcache: all checks passed")
