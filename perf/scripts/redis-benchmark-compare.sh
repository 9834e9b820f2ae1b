#!/usr/bin/env bash
# redis-benchmark against `dinomo serve` (one worker core) and Debian's redis-server on this
# machine, alternately (redis, dinomo, redis, dinomo, ...), for GET and SET with and without
# pipelining (-P 16). Prints each figure's median over the rounds and the dinomo/redis ratio,
# then dinomo's round trips per GET by cache outcome from INFO.
#
#   perf/scripts/redis-benchmark-compare.sh [ROUNDS] [REQUESTS]
#
# Durability: redis-server runs without persistence (--save "" --appendonly no); dinomo with
# --durability memory (acknowledged once in the pool's memory). Both bind 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
requests=${2:-200000}
cargo build --release --locked -p dinomo-tools --bin dinomo >/dev/null
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

redis_port=$((20000 + RANDOM % 10000))
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null 2>&1 &
pids+=($!)
target/release/dinomo serve --dir "$work/dinomo" --port 0 --cores 1 --durability memory >"$work/out" 2>"$work/err" &
pids+=($!)
for _ in $(seq 1 100); do grep -q "^listening on" "$work/out" 2>/dev/null && break; sleep 0.1; done
dinomo_port=$(sed -n 's/^listening on .*://p' "$work/out")
[ -n "$dinomo_port" ] || { cat "$work/err"; exit 1; }
for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done

run() { # port pipeline -> "SET rps GET rps"
    redis-benchmark -p "$1" -t set,get -n "$requests" -P "$2" -r 100000 -d 100 --csv 2>/dev/null |
        awk -F'"' '/^"SET"/{s=$4} /^"GET"/{g=$4} END{print s, g}'
}
declare -A results
for round in $(seq 1 "$rounds"); do
    for p in 1 16; do
        for target in redis dinomo; do
            port=$redis_port; [ "$target" = dinomo ] && port=$dinomo_port
            read -r s g < <(run "$port" "$p")
            results["$target,$p,SET"]+="$s "
            results["$target,$p,GET"]+="$g "
        done
    done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(date -u +%Y-%m-%d)"
echo "redis-benchmark -n $requests -r 100000 -d 100, $rounds rounds alternating; medians in requests/s"
printf "%-8s %-4s %12s %12s %8s\n" test P redis dinomo ratio
for p in 1 16; do
    for t in SET GET; do
        r=$(echo "${results[redis,$p,$t]}" | median)
        d=$(echo "${results[dinomo,$p,$t]}" | median)
        printf "%-8s %-4s %12.0f %12.0f %8.2f\n" "$t" "$p" "$r" "$d" "$(awk -v d="$d" -v r="$r" 'BEGIN{print d / r}')"
    done
done
echo "dinomo round trips per operation by outcome (INFO dinomo):"
redis-cli -p "$dinomo_port" info dinomo | tr -d '\r' | awk -F: '
    /^ops_(value|shortcut|log|miss|write):/ {split($1, a, "_"); ops[a[2]]=$2}
    /^round_trips_(value|shortcut|log|miss|write):/ {split($1, a, "_"); rt[a[3]]=$2}
    END {for (o in ops) if (ops[o] > 0) printf "  %-8s %10d ops %6.3f round trips/op\n", o, ops[o], rt[o]/ops[o]}'
