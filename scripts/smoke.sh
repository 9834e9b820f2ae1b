#!/usr/bin/env bash
# Smoke test of the built binaries: `dinomo serve` answers redis-cli and redis-benchmark, and
# dinomo-bench runs against it and against the embedded target with sane reports.
set -euo pipefail
cd "$(dirname "$0")/.."
# The same build as `cargo test --workspace` (same features): nothing is compiled twice.
cargo test --workspace --locked --no-run >/dev/null 2>&1 || cargo test --workspace --locked --no-run
bin=target/debug/dinomo
bench=target/debug/dinomo-bench
work=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "smoke: FAILED: $*" >&2; echo "--- dinomo serve stderr ---" >&2; cat "$work/err" >&2 || true; exit 1; }

"$bin" serve --dir "$work/data" --port 0 --pool-size 512MiB --no-pin >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 1 300); do
    grep -q "^listening on " "$work/out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || fail "dinomo serve exited early"
    sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$work/out")
[ -n "$addr" ] || fail "no listening line"
port=${addr##*:}
echo "smoke: dinomo serve listens on $addr"

[ "$(redis-cli -p "$port" PING)" = "PONG" ] || fail "PING"
[ "$(redis-cli -p "$port" SET smoke:key hello)" = "OK" ] || fail "SET"
[ "$(redis-cli -p "$port" GET smoke:key)" = "hello" ] || fail "GET"
[ "$(redis-cli -p "$port" DEL smoke:key)" = "1" ] || fail "DEL"
redis-cli -p "$port" INFO dinomo | grep -q "^round_trips:" || fail "INFO dinomo"
redis-cli -p "$port" CLUSTER SLOTS | grep -q 16383 || fail "CLUSTER SLOTS"

for args in "-t set,get -n 20000" "-t set,get -n 20000 -P 16"; do
    # shellcheck disable=SC2086
    out=$(redis-benchmark -p "$port" $args -q 2>/dev/null | tr '\r' '\n' | grep -E "^(SET|GET):.*requests per second" || true)
    echo "$out" | sed 's/^/smoke: redis-benchmark '"$args"': /'
    [ "$(echo "$out" | grep -c "requests per second")" = "2" ] || fail "redis-benchmark $args"
done

check_json() {
    python3 - "$1" "$2" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
assert report["ops_per_sec"] > 0, report["ops_per_sec"]
assert report["errors"] == 0, report["errors"]
for p in ("p50", "p99", "p999"):
    assert report["latency_us"][p] > 0, p
if sys.argv[2] == "dinomo":
    assert report["round_trips_per_op"] is not None
    assert report["verbs_per_op"]["write"] > 0, report["verbs_per_op"]
    assert abs(sum(report["hit_ratio"][k] for k in ("value", "shortcut", "log", "miss")) - 1) < 1e-6
print("smoke: %s: %.0f ops/s, %.3f round trips/op" % (sys.argv[1].rsplit("/", 1)[-1], report["ops_per_sec"], report["round_trips_per_op"] or 0))
PY
}
"$bench" --target "resp://$addr" --workload A --records 5000 --ops 20000 --threads 2 --pipeline 8 \
    --value-size 200 --json "$work/resp.json" >/dev/null || fail "dinomo-bench against dinomo serve"
check_json "$work/resp.json" dinomo || fail "dinomo-bench report (resp)"
"$bench" --target embedded --workload B --records 5000 --ops 20000 --threads 2 --pipeline 8 \
    --value-size 200 --cache-bytes 256KiB --json "$work/embedded.json" >/dev/null || fail "dinomo-bench embedded"
check_json "$work/embedded.json" dinomo || fail "dinomo-bench report (embedded)"

kill -TERM "$pid"
wait "$pid" || fail "dinomo serve did not stop cleanly"
pid=""
grep -q "clean shutdown" "$work/err" || fail "no clean shutdown"
echo "smoke: passed"
