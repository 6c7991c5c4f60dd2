#!/usr/bin/env bash
# Side-by-side benchmark of one flared node against Debian's memcached on loopback, with the same load generator
# (libmemcached-tools' memcaslap), alternating A/B runs. Prints get and set ops/s, p50/p99 latency (µs, interpolated
# from memcaslap's log2 histogram) and the flared/memcached ratio for 1 and 16 connections, then the resident memory
# and data-directory size of flared after loading 100,000 values of 10,000 bytes.
#
#   bench/single-node.sh [SECONDS_PER_RUN=8] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}; rounds=${2:-3}
scripts/install-deps >/dev/null
cargo build --release -q -p flare-runtime --bin flared
work=$(mktemp -d /tmp/flare-bench.XXXXXX)
mc_port=$((20000 + RANDOM % 10000)); fl_port=$((mc_port + 1))
cleanup() { kill "${mc_pid:-}" "${fl_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
memcached -p "$mc_port" -l 127.0.0.1 -U 0 -m 4096 -u "$(id -un)" & mc_pid=$!
target/release/flared --data-dir="$work/data" --server-name=127.0.0.1 --server-port="$fl_port" -s 2>"$work/flared.log" & fl_pid=$!
for p in "$mc_port" "$fl_port"; do
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done
printf 'key\n16 16 1\nvalue\n100 100 1\ncmd\n0 0.0\n1 1.0\n' > "$work/get.conf"
printf 'key\n16 16 1\nvalue\n100 100 1\ncmd\n0 1.0\n1 0.0\n' > "$work/set.conf"

run() { # server_port workload conns -> "ops p50 p99"
  local port=$1 kind=$2 conns=$3 threads=1
  [ "$conns" -ge 2 ] && threads=2
  memcaslap -s "127.0.0.1:$port" -T "$threads" -c "$conns" -w 1k -t "${secs}s" -S "${secs}s" -F "$work/$kind.conf" > "$work/out" 2>&1 || true
  python3 bench/memcaslap_parse.py "$work/out" "$kind" "$secs"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "# flared vs memcached, memcaslap, ${secs}s per run, $rounds alternating rounds, 100-byte values, $(nproc) cores"
printf '%-5s %5s | %12s %7s %7s | %12s %7s %7s | %6s\n' op conns "mc ops/s" "p50us" "p99us" "flared ops/s" "p50us" "p99us" ratio
for conns in 1 16; do
  for kind in get set; do
    : > "$work/mc"; : > "$work/fl"
    for _ in $(seq "$rounds"); do
      run "$mc_port" "$kind" "$conns" >> "$work/mc"
      run "$fl_port" "$kind" "$conns" >> "$work/fl"
    done
    mo=$(cut -d' ' -f1 "$work/mc" | median); m5=$(cut -d' ' -f2 "$work/mc" | median); m9=$(cut -d' ' -f3 "$work/mc" | median)
    fo=$(cut -d' ' -f1 "$work/fl" | median); f5=$(cut -d' ' -f2 "$work/fl" | median); f9=$(cut -d' ' -f3 "$work/fl" | median)
    ratio=$(awk -v a="$fo" -v b="$mo" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    printf '%-5s %5s | %12.0f %7.0f %7.0f | %12.0f %7.0f %7.0f | %5sx\n' "$kind" "$conns" "$mo" "$m5" "$m9" "$fo" "$f5" "$f9" "$ratio"
  done
done

echo
echo "# memory: 100,000 values x 10,000 bytes (1 GB) loaded into flared"
python3 - "$fl_port" <<'PY'
import sys, time
from pymemcache.client.base import Client
c = Client(("127.0.0.1", int(sys.argv[1])), timeout=60)
c.flush_all(noreply=False)
value = b"v" * 10000
t = time.time()
for base in range(0, 100000, 100):
    c.set_many({f"mem:{i:06d}": value for i in range(base, base + 100)}, noreply=True)
c.get("mem:000000")
print(f"loaded 100000 x 10000 B in {time.time() - t:.1f}s; curr_items={int(c.stats()[b'curr_items'])}")
PY
sleep 2
rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/$fl_pid/status")
du_mib=$(du -sm "$work/data" | cut -f1)
echo "flared RSS after load: $((rss_kib / 1024)) MiB; data directory: ${du_mib} MiB"
