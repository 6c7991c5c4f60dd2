#!/usr/bin/env bash
# Side-by-side benchmark of one flared node against Debian's memcached on loopback, with the same load generator
# (libmemcached-tools' memcaslap), alternating A/B runs. Prints, per workload, the median over the rounds of: ops/s,
# p50/p99 latency (µs, interpolated from memcaslap's log2 histogram, so coarse), the server's CPU time per operation
# (user+system µs from /proc, steadier than ops/s on a shared machine), and the flared/memcached throughput ratio,
# for 1 and 16 connections. Then the resident memory and data-directory size of flared after loading 100,000 values
# of 10,000 bytes (1 GB).
#
#   bench/single-node.sh [SECONDS_PER_RUN=4] [ROUNDS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-4}; rounds=${2:-5}
scripts/install-deps >/dev/null
cargo build --release -q -p flare-runtime --bin flared
work=$(mktemp -d /tmp/flare-bench.XXXXXX)
mc_port=$((20000 + RANDOM % 10000)); fl_port=$((mc_port + 1))
cleanup() { kill "${mc_pid:-}" "${fl_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
memcached -p "$mc_port" -l 127.0.0.1 -U 0 -m 4096 -t 4 -u "$(id -un)" & mc_pid=$!
target/release/flared --data-dir="$work/data" --server-name=127.0.0.1 --server-port="$fl_port" -s 2>"$work/flared.log" & fl_pid=$!
for p in "$mc_port" "$fl_port"; do
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done
printf 'key\n16 16 1\nvalue\n100 100 1\ncmd\n0 0.0\n1 1.0\n' > "$work/get.conf"
printf 'key\n16 16 1\nvalue\n100 100 1\ncmd\n0 1.0\n1 0.0\n' > "$work/set.conf"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # server_pid server_port workload conns -> "ops p50 p99 cpu_us_per_op"
  local pid=$1 port=$2 kind=$3 conns=$4 threads=1
  [ "$conns" -ge 2 ] && threads=2
  local t0; t0=$(cpu_ticks "$pid")
  memcaslap -s "127.0.0.1:$port" -T "$threads" -c "$conns" -w 1k -t "${secs}s" -S "${secs}s" -F "$work/$kind.conf" > "$work/out" 2>&1 || true
  local t1; t1=$(cpu_ticks "$pid")
  if grep -q "didn't set success\|CLIENT_ERROR\|SERVER_ERROR" "$work/out"; then
    echo "memcaslap saw errors from port $port:" >&2; grep -m3 "ERROR\|didn't" "$work/out" >&2
  fi
  read -r ops p50 p99 < <(python3 bench/memcaslap_parse.py "$work/out" "$kind" "$secs")
  local hz; hz=$(getconf CLK_TCK)
  awk -v o="$ops" -v a="$p50" -v b="$p99" -v t="$((t1 - t0))" -v s="$secs" -v hz="$hz" \
    'BEGIN { printf "%s %s %s %.1f\n", o, a, b, (o > 0 ? t * 1e6 / hz / (o * s) : 0) }'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
col() { cut -d' ' -f"$1" "$2" | median; }

echo "# flared vs memcached (-t 4), memcaslap, ${secs}s per run, $rounds alternating rounds, 100-byte values, $(nproc) cores"
printf '%-4s %5s | %9s %6s %6s %7s | %9s %6s %6s %7s | %6s\n' op conns "mc ops/s" p50us p99us "cpu/op" "fl ops/s" p50us p99us "cpu/op" ratio
for conns in 1 16; do
  for kind in get set; do
    : > "$work/mc"; : > "$work/fl"
    for _ in $(seq "$rounds"); do
      run "$mc_pid" "$mc_port" "$kind" "$conns" >> "$work/mc"
      run "$fl_pid" "$fl_port" "$kind" "$conns" >> "$work/fl"
    done
    mo=$(col 1 "$work/mc"); fo=$(col 1 "$work/fl")
    ratio=$(awk -v a="$fo" -v b="$mo" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    printf '%-4s %5s | %9.0f %6.0f %6.0f %6.1fµs | %9.0f %6.0f %6.0f %6.1fµs | %5sx\n' "$kind" "$conns" \
      "$mo" "$(col 2 "$work/mc")" "$(col 3 "$work/mc")" "$(col 4 "$work/mc")" \
      "$fo" "$(col 2 "$work/fl")" "$(col 3 "$work/fl")" "$(col 4 "$work/fl")" "$ratio"
  done
done

echo
echo "# memory: 100,000 values x 10,000 bytes (1 GB) loaded into a freshly started flared"
kill "$fl_pid"; wait "$fl_pid" 2>/dev/null || true
rm -rf "$work/data"
target/release/flared --data-dir="$work/data" --server-name=127.0.0.1 --server-port="$fl_port" -s 2>>"$work/flared.log" & fl_pid=$!
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$fl_port) 2>/dev/null && break; sleep 0.1; done
rss_start=$(awk '/VmRSS/ {print $2}' "/proc/$fl_pid/status")
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
echo "flared RSS at start: $((rss_start / 1024)) MiB; after load: $((rss_kib / 1024)) MiB; data directory: ${du_mib} MiB"
