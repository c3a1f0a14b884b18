#!/usr/bin/env bash
# Observer CPU while following a mainnet-profile validator live.
#
#   cargo build --release -p dagstream
#   scripts/bench_observer_cpu.sh [SECONDS]
#
# A validator (`--profile mainnet`: 100 authorities, 75 ms rounds, 5,000 TPS,
# about 1,333 blocks per second) and an observer following it run as two
# processes on loopback, each with its own data dir under a fresh directory
# in the current one. After a warm-up, in which the observer catches up and
# switches to the block stream, the script reads both processes' CPU time
# from /proc for SECONDS (default 60) and the observer's verified-block count
# from its metrics, and prints CPU per wall second and per block.
set -euo pipefail

seconds=${1:-60}
warmup=${WARMUP_SECONDS:-20}
port_v=${VALIDATOR_PORT:-7391}
port_m=${METRICS_PORT:-7392}
source "$(dirname "$0")/bench_common.sh" observer-cpu

"$bin" genesis --out "$dir/genesis" --profile mainnet --log-level warn
"$bin" validator --data-dir "$dir/validator" --genesis "$dir/genesis" --profile mainnet \
    --listen "127.0.0.1:$port_v" --log-level warn &
pids+=($!)
validator=$!
sleep 2
"$bin" observer --data-dir "$dir/observer" --genesis "$dir/genesis" \
    --upstream "http://127.0.0.1:$port_v" --metrics-listen "127.0.0.1:$port_m" --log-level warn &
pids+=($!)
observer=$!
sleep "$warmup"

ticks=$(getconf CLK_TCK)
# utime + stime of a process, in clock ticks.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
verified() { metric "$port_m" dagstream_observer_blocks_verified_total; }

v0=$(cpu "$validator"); o0=$(cpu "$observer"); b0=$(verified)
sleep "$seconds"
v1=$(cpu "$validator"); o1=$(cpu "$observer"); b1=$(verified)

python3 - "$ticks" "$seconds" "$v0" "$v1" "$o0" "$o1" "$b0" "$b1" <<'PY'
import sys
ticks, seconds, v0, v1, o0, o1, b0, b1 = map(float, sys.argv[1:])
blocks = b1 - b0
observer = (o1 - o0) / ticks
validator = (v1 - v0) / ticks
print(f"| window | {seconds:.0f} s |")
print("|---|---|")
print(f"| blocks verified by the observer | {blocks:.0f} ({blocks / seconds:.0f}/s) |")
print(f"| observer CPU | {100 * observer / seconds:.1f}% of one core |")
if blocks:
    print(f"| observer CPU per block | {1e6 * observer / blocks:.0f} µs |")
print(f"| validator CPU (for scale) | {100 * validator / seconds:.1f}% of one core |")
PY
