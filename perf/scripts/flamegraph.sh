#!/usr/bin/env bash
# Records a flamegraph of `dinomo serve` (the `profiling` build: release with symbols) while
# redis-benchmark loads it: `perf record` on the software CPU clock (which works where hardware
# counters do not, as on most VMs), folded and drawn by inferno.
#
#   perf/scripts/flamegraph.sh [OUT.svg] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(realpath -m "${1:-flamegraph.svg}")
seconds=${2:-10}
command -v perf >/dev/null || sudo apt-get install -y -qq linux-perf
command -v inferno-flamegraph >/dev/null || cargo install --locked inferno
cargo build --profile profiling --locked -p dinomo-tools --bin dinomo
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
target/profiling/dinomo serve --dir "$work/data" --port 0 --cores 1 >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 1 100); do grep -q "^listening on" "$work/out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/^listening on .*://p' "$work/out")
perf record -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$pid" -o "$work/perf.data" -- sleep "$seconds" 2>/dev/null &
recorder=$!
redis-benchmark -p "$port" -t set,get -n 100000000 -r 100000 -d 100 -P 16 -q >/dev/null 2>&1 &
load=$!
wait "$recorder" || true
kill "$load" 2>/dev/null || true
perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph >"$out"
echo "flamegraph: $out"
