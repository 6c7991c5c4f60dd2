"""Parse memcaslap's report: ops/s of one command kind and p50/p99 from its log2 latency histogram (µs).

The histogram line `k: c0 c1 c2 c3` gives counts for buckets [2^k, 2^(k+1)), [2^(k+1), 2^(k+2)), ... µs; a
percentile is interpolated linearly inside its bucket (coarse by nature: say so when quoting it).
Usage: memcaslap_parse.py FILE get|set SECONDS  -> prints "ops_per_sec p50_us p99_us"
"""
import re
import sys

text = open(sys.argv[1]).read()
kind = sys.argv[2].capitalize()
seconds = float(sys.argv[3])
m = re.search(kind + r" Statistics \((\d+) events\)(.*?)(?:\n\n|\Z)", text, re.S)
if not m:
    print("0 0 0")
    sys.exit(0)
events = int(m.group(1))
buckets = {}
for line in m.group(2).splitlines():
    h = re.match(r"\s+(\d+):\s+([\d\s]+)$", line)
    if h:
        base = int(h.group(1))
        for i, c in enumerate(h.group(2).split()):
            buckets[base + i] = buckets.get(base + i, 0) + int(c)
total = sum(buckets.values())


def pct(p):
    if total == 0:
        return 0.0
    want = p * total
    seen = 0
    for b in sorted(buckets):
        c = buckets[b]
        if seen + c >= want:
            lo, hi = 2 ** b, 2 ** (b + 1)
            return lo + (hi - lo) * ((want - seen) / c if c else 0)
        seen += c
    return float(2 ** (max(buckets) + 1))


print(f"{events / seconds:.0f} {pct(0.50):.0f} {pct(0.99):.0f}")
