"""The client matrix's Python clients: the same checks as every other client of tests/clients/ (see README.md there).

Usage: python3 matrix.py CLIENT PORT   CLIENT: pylibmc-text | pylibmc-binary | bmemcached
Prints one `ok NAME` or `FAIL NAME: why` line per check; exits 1 when any check failed.
pylibmc comes from Debian (run it with /usr/bin/python3), bmemcached (python-binary-memcached) from PyPI.
"""
import sys
import traceback

client_name, port = sys.argv[1], int(sys.argv[2])
addr = f"127.0.0.1:{port}"
failed = []


def check(name, fn):
    try:
        fn()
        print(f"ok {name}")
    except Exception as e:  # a failed check is reported, the next one runs
        failed.append(name)
        detail = "".join(traceback.format_exception_only(type(e), e)).strip()
        print(f"FAIL {name}: {detail}")


def eq(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


if client_name.startswith("pylibmc"):
    import pylibmc

    mc = pylibmc.Client([addr], binary=client_name.endswith("binary"), behaviors={"cas": True})

    def gets(k):
        return mc.gets(k)

    def cas(k, v, u):
        return mc.cas(k, v, u)

    def version():
        return mc.get_stats()[0][1]["version"]

    def incr_initial(k, delta, initial):
        # pylibmc has no initial value: the checks create the key first.
        mc.set(k, str(initial))
        return initial

elif client_name == "bmemcached":
    import bmemcached

    mc = bmemcached.Client((addr,))

    def gets(k):
        return mc.gets(k)

    def cas(k, v, u):
        return mc.cas(k, v, u)

    def version():
        return next(iter(mc.stats().values()))["version"]

    def incr_initial(k, delta, initial):
        # The binary Increment with an initial value (what failed through a proxy).
        return mc.incr(k, delta, default=initial, time=0)

else:
    sys.exit(f"unknown client {client_name}")


def as_str(v):
    return v.decode() if isinstance(v, bytes) else v


mc.flush_all()


def set_get():
    assert mc.set("mx:k", "hello")
    eq(as_str(mc.get("mx:k")), "hello", "get")


def get_multi():
    keys = [f"mx:m{i}" for i in range(40)]
    for k in keys:
        assert mc.set(k, "v" + k)
    got = mc.get_multi(keys)
    eq({k: as_str(v) for k, v in got.items()}, {k: "v" + k for k in keys}, "get_multi")


def cas_unique_across_keys():
    mc.set("mx:a", "1")
    mc.set("mx:b", "1")
    (_, ua), (_, ub) = gets("mx:a"), gets("mx:b")
    if ua == ub:
        raise AssertionError(f"the two keys share the CAS unique {ua}")


def cas_round_trip():
    mc.set("mx:c", "old")
    _, u = gets("mx:c")
    eq(bool(cas("mx:c", "new", u)), True, "cas with the current unique")
    eq(bool(cas("mx:c", "again", u)), False, "cas with a stale unique")
    eq(as_str(mc.get("mx:c")), "new", "value after cas")


def counter():
    eq(int(incr_initial("mx:n", 5, 10)), 10, "incr of a missing key with an initial value")
    eq(int(mc.incr("mx:n", 5)), 15, "incr")
    eq(int(mc.decr("mx:n", 3)), 12, "decr")


def add_delete():
    mc.set("mx:d", "x")
    eq(bool(mc.add("mx:d", "y")), False, "add of an existing key")
    eq(bool(mc.delete("mx:d")), True, "delete")
    eq(mc.get("mx:d"), None, "get after delete")
    eq(bool(mc.add("mx:d", "z")), True, "add after delete")


def flush():
    keys = [f"mx:f{i}" for i in range(40)]
    for k in keys:
        mc.set(k, "x")
    mc.flush_all()
    eq(mc.get_multi(keys), {}, "keys left after flush_all")


def server_version():
    v = as_str(version())
    if not v[:1].isdigit():
        raise AssertionError(f"version {v!r} does not start with a digit")


for name, fn in [
    ("set_get", set_get),
    ("get_multi", get_multi),
    ("cas_unique_across_keys", cas_unique_across_keys),
    ("cas_round_trip", cas_round_trip),
    ("counter", counter),
    ("add_delete", add_delete),
    ("flush_all", flush),
    ("version", server_version),
]:
    check(name, fn)
sys.exit(1 if failed else 0)
