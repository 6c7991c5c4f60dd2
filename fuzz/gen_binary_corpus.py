#!/usr/bin/env python3
"""Writes the seed corpus of the `binary` fuzz target to corpus/binary/.

Each seed is one chunk-size byte, then request packets without the first packet's 0x80 (the target adds it).
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "binary")


def pkt(op, extras=b"", key=b"", value=b"", opaque=0x11223344, cas=0, datatype=0, keylen=None, bodylen=None):
    kl = len(key) if keylen is None else keylen
    bl = len(extras) + len(key) + len(value) if bodylen is None else bodylen
    return struct.pack(">BBHBBHIIQ", 0x80, op, kl, len(extras), datatype, 0, bl, opaque, cas) + extras + key + value


def ex8(flags=0, exptime=0):
    return struct.pack(">II", flags, exptime)


def ex20(delta=1, initial=0, exptime=0):
    return struct.pack(">QQI", delta, initial, exptime)


def ex4(n=0):
    return struct.pack(">I", n)


seeds = {
    "get": pkt(0x00, key=b"foo"),
    "getq": pkt(0x09, key=b"foo"),
    "getk": pkt(0x0C, key=b"foo"),
    "getkq": pkt(0x0D, key=b"foo"),
    "set": pkt(0x01, ex8(5, 100), b"foo", b"bar"),
    "setq": pkt(0x11, ex8(5, 100), b"foo", b"bar"),
    "set_cas": pkt(0x01, ex8(), b"foo", b"bar", cas=7),
    "add": pkt(0x02, ex8(), b"foo", b"bar"),
    "addq": pkt(0x12, ex8(), b"foo", b"bar"),
    "replace": pkt(0x03, ex8(), b"foo", b"bar"),
    "replaceq": pkt(0x13, ex8(), b"foo", b"bar"),
    "append": pkt(0x0E, b"", b"foo", b"tail"),
    "appendq": pkt(0x19, b"", b"foo", b"tail"),
    "prepend": pkt(0x0F, b"", b"foo", b"head"),
    "prependq": pkt(0x1A, b"", b"foo", b"head"),
    "delete": pkt(0x04, key=b"foo"),
    "deleteq_cas": pkt(0x14, key=b"foo", cas=3),
    "incr": pkt(0x05, ex20(1, 10, 0), b"n"),
    "incrq_nocreate": pkt(0x15, ex20(1, 10, 0xFFFFFFFF), b"n"),
    "decr": pkt(0x06, ex20(2, 0, 60), b"n"),
    "decrq": pkt(0x16, ex20(2, 0, 60), b"n"),
    "quit": pkt(0x07),
    "quitq": pkt(0x17),
    "flush": pkt(0x08),
    "flushq_delay": pkt(0x18, ex4(30)),
    "noop": pkt(0x0A),
    "version": pkt(0x0B),
    "stat": pkt(0x10),
    "stat_threads": pkt(0x10, key=b"threads"),
    "stat_bogus": pkt(0x10, key=b"bogus"),
    "touch": pkt(0x1C, ex4(10), b"foo"),
    "gat": pkt(0x1D, ex4(10), b"foo"),
    "gatq": pkt(0x1E, ex4(10), b"foo"),
    "verbosity": pkt(0x1B, ex4(1)),
    "sasl_auth": pkt(0x21, b"", b"PLAIN", b"\0u\0p"),
    "range_get": pkt(0x30, ex4(0), b"a", b"b"),
    "tap_connect": pkt(0x40, ex8(), b"k"),
    "get_bad_extras": pkt(0x00, ex4(), b"foo"),
    "set_no_extras": pkt(0x01, b"", b"foo", b"bar"),
    "incr_short_extras": pkt(0x05, ex8(), b"n"),
    "get_no_key": pkt(0x00),
    "get_with_value": pkt(0x00, key=b"foo", value=b"x"),
    "set_too_large": pkt(0x01, ex8(), b"foo", b"v" * 200),
    "key_too_long": pkt(0x00, key=b"k" * 40),
    "key_with_space": pkt(0x00, key=b"a b"),
    "datatype": pkt(0x00, key=b"foo", datatype=1),
    "body_short": pkt(0x00, key=b"foo", keylen=10),
    "body_huge": pkt(0x01, ex8(), b"foo", bodylen=0xFFFFFFFF),
}

pipelines = {
    "pipeline_quiet": pkt(0x11, ex8(), b"a", b"1") + pkt(0x09, key=b"a") + pkt(0x0D, key=b"b") + pkt(0x0A),
    "pipeline_resync": pkt(0x01, ex8(), b"foo", b"v" * 200) + pkt(0x21, b"", b"PLAIN", b"x") + pkt(0x0A),
    "pipeline_mixed_text": pkt(0x0A) + b"get foo\r\n" + pkt(0x0B),
}

os.makedirs(OUT, exist_ok=True)
for i, (name, data) in enumerate({**seeds, **pipelines}.items()):
    sel = bytes([31 if i % 3 == 0 else (i * 7) % 32])  # whole, or split into chunks
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(sel + data[1:])
