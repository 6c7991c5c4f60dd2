#!/usr/bin/env bash
# Cluster benchmarks on loopback, side by side in one run, alternating round by round (medians of ROUNDS):
#   1. gets and sets through a proxy node vs directly to the partition's master, at 1 and 16 connections:
#      the added latency per request on one connection and the throughput ratio at 16;
#   2. sets on a master with one asynchronous slave vs on a master without slaves.
# Two clusters run at once: A = index + master + proxy, B = index + master + slave (async replication).
#
#   bench/cluster.sh [SECONDS_PER_RUN=4] [ROUNDS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-4}; rounds=${2:-5}
scripts/install-deps >/dev/null
cargo build --release -q -p flare-runtime --bins
work=$(mktemp -d /tmp/flare-cluster-bench.XXXXXX)
base=$((21000 + RANDOM % 8000))
ia=$base; ma=$((base + 1)); pa=$((base + 2)); ib=$((base + 3)); mb=$((base + 4)); sb=$((base + 5))
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start() { # start BINARY PORT [INDEX_PORT]
  local bin=$1 port=$2 idx=${3:-}
  mkdir -p "$work/$port"
  local args=(--data-dir="$work/$port" --server-name=127.0.0.1 --server-port="$port" -s)
  [ -n "$idx" ] && args+=(--index-servers="127.0.0.1:$idx")
  [ "$bin" = flarei ] && args+=(--monitor-interval=1)
  "target/release/$bin" "${args[@]}" 2>"$work/$port.log" & pids+=($!)
  for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0; sleep 0.1; done
  echo "$bin on $port did not start" >&2; cat "$work/$port.log" >&2; exit 1
}
admin() { # admin INDEX_PORT LINE -> first reply line
  exec 3<>"/dev/tcp/127.0.0.1/$1"; printf '%s\r\n' "$2" >&3; head -n1 <&3 | tr -d '\r'; exec 3>&-
}
state_of() { # state_of INDEX_PORT NODE_PORT -> role/state
  exec 3<>"/dev/tcp/127.0.0.1/$1"; printf 'stats nodes\r\n' >&3
  local role="" state=""
  while IFS= read -r line <&3; do
    line=${line%$'\r'}; [ "$line" = END ] && break
    case "$line" in "STAT 127.0.0.1:$2:role "*) role=${line##* };; "STAT 127.0.0.1:$2:state "*) state=${line##* };; esac
  done; exec 3>&-; echo "$role/$state"
}
wait_state() { for _ in $(seq 200); do [ "$(state_of "$1" "$2")" = "$3" ] && return 0; sleep 0.1; done; echo "$2 not $3" >&2; exit 1; }

start flarei "$ia"; start flared "$ma" "$ia"; start flared "$pa" "$ia"
start flarei "$ib"; start flared "$mb" "$ib"; start flared "$sb" "$ib"
[ "$(admin "$ia" "node role 127.0.0.1 $ma master 1 0")" = OK ]; wait_state "$ia" "$ma" master/active
[ "$(admin "$ib" "node role 127.0.0.1 $mb master 1 0")" = OK ]; wait_state "$ib" "$mb" master/active
[ "$(admin "$ib" "node role 127.0.0.1 $sb slave 1 0")" = OK ]; wait_state "$ib" "$sb" slave/active
sleep 1.5 # every node has the last map

printf 'key\n16 16 1\nvalue\n100 100 1\ncmd\n0 0.0\n1 1.0\n' > "$work/get.conf"
printf 'key\n16 16 1\nvalue\n100 100 1\ncmd\n0 1.0\n1 0.0\n' > "$work/set.conf"
run() { # run PORT KIND CONNS -> "ops p50 p99"
  local threads=1; [ "$3" -ge 2 ] && threads=2
  memcaslap -s "127.0.0.1:$1" -T "$threads" -c "$3" -w 1k -t "${secs}s" -S "${secs}s" -F "$work/$2.conf" > "$work/out" 2>&1 || true
  if grep -q "didn't set success\|SERVER_ERROR\|CLIENT_ERROR" "$work/out"; then
    echo "memcaslap saw errors from port $1:" >&2; grep -m3 "ERROR\|didn't" "$work/out" >&2
  fi
  python3 bench/memcaslap_parse.py "$work/out" "$2" "$secs"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
col() { cut -d' ' -f"$1" "$2" | median; }
# Mean latency per request at one connection = 1 / throughput; the proxy hop adds the difference.
usec() { awk -v o="$1" 'BEGIN { printf "%.1f", (o > 0 ? 1e6 / o : 0) }'; }

echo "# proxy hop: memcaslap through the proxy vs directly to the master, ${secs}s runs, $rounds alternating rounds"
printf '%-4s %5s | %10s %6s %6s | %10s %6s %6s | %7s %10s\n' op conns "direct/s" p50us p99us "proxy/s" p50us p99us ratio "added µs"
for conns in 1 16; do
  for kind in get set; do
    : > "$work/d"; : > "$work/p"
    for _ in $(seq "$rounds"); do run "$ma" "$kind" "$conns" >> "$work/d"; run "$pa" "$kind" "$conns" >> "$work/p"; done
    d=$(col 1 "$work/d"); p=$(col 1 "$work/p")
    ratio=$(awk -v a="$p" -v b="$d" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    added=$(awk -v a="$(usec "$p")" -v b="$(usec "$d")" -v c="$conns" 'BEGIN { printf "%.1f", (c == 1 ? a - b : 0) }')
    [ "$conns" = 1 ] || added="-"
    printf '%-4s %5s | %10.0f %6.0f %6.0f | %10.0f %6.0f %6.0f | %6sx %10s\n' "$kind" "$conns" \
      "$d" "$(col 2 "$work/d")" "$(col 3 "$work/d")" "$p" "$(col 2 "$work/p")" "$(col 3 "$work/p")" "$ratio" "$added"
  done
done

echo
echo "# async replication: sets on a master with one slave vs a master without slaves, 16 connections"
: > "$work/solo"; : > "$work/repl"
for _ in $(seq "$rounds"); do run "$ma" set 16 >> "$work/solo"; run "$mb" set 16 >> "$work/repl"; done
solo=$(col 1 "$work/solo"); repl=$(col 1 "$work/repl")
printf 'master alone: %.0f sets/s; master + async slave: %.0f sets/s; ratio %s\n' "$solo" "$repl" \
  "$(awk -v a="$repl" -v b="$solo" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')"
exec 3<>"/dev/tcp/127.0.0.1/$mb"; printf 'stats\r\n' >&3
while IFS= read -r line <&3; do line=${line%$'\r'}; [ "$line" = END ] && break
  case "$line" in "STAT curr_items "*|"STAT replication_queue "*|"STAT replication_failures "*) echo "  master $line";; esac; done; exec 3>&-
exec 3<>"/dev/tcp/127.0.0.1/$sb"; printf 'stats\r\n' >&3
while IFS= read -r line <&3; do line=${line%$'\r'}; [ "$line" = END ] && break
  case "$line" in "STAT curr_items "*) echo "  slave  $line";; esac; done; exec 3>&-
