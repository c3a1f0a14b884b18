#!/usr/bin/env bash
# Observer catch-up at the mainnet profile: how many times faster than the
# chain's live rate an observer verifies and persists a long history, and
# whether its memory stays flat meanwhile.
#
#   cargo build --release -p dagstream
#   [PIN=1] [RANDOMNESS=off] [EPOCH_ROUNDS=N] [PERF=FILE] scripts/bench_catchup_mainnet.sh [HISTORY_ROUNDS]
#
# A validator (`--profile mainnet`: 100 authorities, 75 ms rounds, 5,000 TPS,
# 13.3 commits per second live) first produces HISTORY_ROUNDS rounds of
# history (default 3,000) into its store, as fast as it can, then goes on
# live. Once it serves,
# an observer starts from an empty data dir and follows it on loopback. Every
# second the script samples the observer's persisted commits (its metrics)
# and RSS (/proc), until the observer is within 20 commits of the validator.
# It prints the samples and the catch-up rate over the whole run.
# EPOCH_ROUNDS=N: the committee hands the chain to a new one every N rounds
# (`--epoch-rounds`), so that the observer verifies HISTORY_ROUNDS / N
# hand-offs while catching up.
set -euo pipefail

history=${1:-3000}
port_v=${VALIDATOR_PORT:-7393}
port_vm=${VALIDATOR_METRICS_PORT:-7394}
port_om=${OBSERVER_METRICS_PORT:-7395}
source "$(dirname "$0")/bench_common.sh" catchup

# RANDOMNESS=off: a chain without randomness, to measure what it costs.
genesis_flags=()
[[ ${RANDOMNESS:-on} == off ]] && genesis_flags+=(--no-randomness)
"$bin" genesis --out "$dir/genesis" --profile mainnet --history-rounds "$history" --log-level warn \
    "${genesis_flags[@]}"
# PIN=1: the validator (which simulates the whole committee) on CPU 0 and
# the observer on CPU 1, so that neither's load slows the other: the
# observer's rate is then its own, on one core.
validator_flags=()
[[ -n ${EPOCH_ROUNDS:-} ]] && validator_flags+=(--epoch-rounds "$EPOCH_ROUNDS")
pin_validator=() pin_observer=()
if [[ ${PIN:-0} == 1 ]]; then
    pin_validator=(taskset -c 0) pin_observer=(taskset -c 1)
fi
"${pin_validator[@]}" "$bin" validator --data-dir "$dir/validator" --genesis "$dir/genesis" --profile mainnet \
    --listen "127.0.0.1:$port_v" --metrics-listen "127.0.0.1:$port_vm" --log-level warn \
    "${validator_flags[@]}" &
pids+=($!)
# The genesis lies HISTORY_ROUNDS rounds in the past: the validator
# produces them as fast as it can, then keeps to the schedule.
wait_validator_settled "$port_vm" "$history"
start_tip=$(metric "$port_vm" dagstream_validator_highest_commit)
echo "validator serving, tip at commit ${start_tip:-?}"

"${pin_observer[@]}" "$bin" observer --data-dir "$dir/observer" --genesis "$dir/genesis" \
    --upstream "http://127.0.0.1:$port_v" --metrics-listen "127.0.0.1:$port_om" --log-level warn &
pids+=($!)
observer=$!
started=$(date +%s.%N)
# PERF=FILE: a perf profile of the observer (call graphs from DWARF, 199 Hz)
# for the whole catch-up, written to FILE when the observer stops.
if [[ -n ${PERF:-} ]]; then
    perf record -F 199 --call-graph dwarf,32768 -p "$observer" -o "$PERF" 2>/dev/null &
    pids+=($!)
fi
echo "| s | observer commit | validator commit | observer RSS MB |"
echo "|---|---|---|---|"
while true; do
    sleep 1
    now=$(date +%s.%N)
    local_tip=$(metric "$port_om" dagstream_observer_commits_persisted_total)
    tip=$(metric "$port_vm" dagstream_validator_highest_commit)
    rss=$(awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$observer/status")
    elapsed=$(python3 -c "print(f'{$now - $started:.0f}')")
    echo "| $elapsed | ${local_tip:-0} | ${tip:-?} | $rss |"
    if [[ -n "${local_tip:-}" && -n "${tip:-}" ]] && ((${local_tip%.*} + 20 >= ${tip%.*})); then
        break
    fi
done
# The commit stream's batches: their mean size in commits (each batch is
# verified as a whole: its certificate, and its randomness, once).
batches=$(metric "$port_vm" 'dagstream_publisher_batch_size_count{service="commits"}')
batched=$(metric "$port_vm" 'dagstream_publisher_batch_size_sum{service="commits"}')
echo "commit batches: ${batches:-?}, ${batched:-?} commits"
echo "observer epoch: $(metric "$port_om" dagstream_observer_epoch)"
# What the validator sent, by stream: blocks (in commits, as certifiers and
# on the block stream) and their bytes.
curl -s "http://127.0.0.1:$port_vm/metrics" | awk '/^dagstream_publisher_(blocks|bytes)_sent_total/ {print "validator", $1, $2}'
# What the observer did besides persisting: blocks it verified from the
# block stream, blocks dropped at epoch boundaries, sessions ended.
echo "observer blocks verified: $(metric "$port_om" dagstream_observer_blocks_verified_total)," \
    "dropped ahead/behind an epoch: $(metric "$port_om" dagstream_observer_future_epoch_blocks_total)/$(metric "$port_om" dagstream_observer_stale_epoch_blocks_total)," \
    "sessions ended: $(curl -s "http://127.0.0.1:$port_om/metrics" | awk '/^dagstream_observer_session_ends_total/ {s += $2} END {print s + 0}')"
# CPU time (user + system, in clock ticks) of each process so far: the
# observer's is its own cost of catching up, whatever the validator (which
# simulates every authority of the committee on the same cores) takes.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
observer_cpu=$(cpu "$observer")
validator_cpu=$(cpu "${pids[0]}")
python3 - "$started" "$now" "${local_tip%.*}" "$observer_cpu" "$validator_cpu" "$(getconf CLK_TCK)" <<'PY'
import sys
started, ended, commits = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
observer_cpu, validator_cpu, tick = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
seconds = ended - started
live = 1000 / 75  # commits per second at the mainnet profile
rate = commits / seconds
print(f"caught up {commits} commits in {seconds:.1f} s: {rate:.0f} commits/s, {rate / live:.1f}x live ({live:.1f}/s)")
print(f"observer CPU {observer_cpu / tick:.1f} s: {1000 * observer_cpu / tick / commits:.2f} ms per commit; "
      f"validator CPU since its start {validator_cpu / tick:.1f} s")
PY
