#!/usr/bin/env bash
# Bootstrap from the history archive against catch-up from the validator,
# at the mainnet profile, in the same run.
#
#   cargo build --release -p dagstream
#   [PIN=1] [PERF=FILE] scripts/bench_bootstrap_mainnet.sh [HISTORY_ROUNDS]
#
# A validator (`--profile mainnet`) produces HISTORY_ROUNDS rounds of
# history (default 2,200: some 3,200 commits), then goes on live. A first
# observer follows it with `--archive file://DIR` until the archive holds
# the history. Then, in three interleaved pairs, fresh observers reach the
# archive's last commit: one from the validator alone (the baseline), one
# with `--bootstrap-from` the archive (and the validator for the tail).
# For each it prints the time, the rate, the observer's CPU, the rate at
# which its store grew, and the validator's CPU over the same window
# against its CPU while nobody catches up (the committee's own production,
# which the validator simulates in full). The disk's own sequential write
# rate (1 GiB, synced) is measured first, in the same directory: an
# observer stores every block durably, so no bootstrap can outrun it.
# Last, where /dev/shm is writable, one more bootstrap from the archive
# with the observer's store in memory (tmpfs): its rate without the disk.
#
# Disk: the validator's store, the archive (about a third of it) and one
# observer's store at a time: some 6 GB at the default history.
set -euo pipefail

history=${1:-2200}
port_v=${VALIDATOR_PORT:-7493}
port_vm=${VALIDATOR_METRICS_PORT:-7494}
port_om=${OBSERVER_METRICS_PORT:-7495}
source "$(dirname "$0")/bench_common.sh" bootstrap

pin_validator=() pin_observer=()
if [[ ${PIN:-0} == 1 ]]; then
    pin_validator=(taskset -c 0) pin_observer=(taskset -c 1)
fi
"$bin" genesis --out "$dir/genesis" --profile mainnet --history-rounds "$history" --log-level warn
"${pin_validator[@]}" "$bin" validator --data-dir "$dir/validator" --genesis "$dir/genesis" --profile mainnet \
    --listen "127.0.0.1:$port_v" --metrics-listen "127.0.0.1:$port_vm" --log-level warn &
pids+=($!)
validator=$!
wait_validator_settled "$port_vm" "$history"
echo "validator serving, tip at commit $(metric "$port_vm" dagstream_validator_highest_commit)"

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)
# The validator's CPU per second while nobody catches up.
idle_before=$(cpu "$validator")
sleep 10
idle_rate=$(python3 -c "print(($(cpu "$validator") - $idle_before) / $tick / 10)")
echo "validator CPU while idle: $idle_rate s/s"

# The floor under every run: this disk's sequential write rate, synced.
disk=$(dd if=/dev/zero of="$dir/disk-test" bs=1M count=1024 conv=fdatasync 2>&1 |
    awk '/copied/ {print $(NF-1) " " $NF}')
rm -f "$dir/disk-test"
echo "disk: sequential write, synced: $disk"

# The archive: an observer that follows the validator and uploads.
archive="$PWD/$dir/archive"
"$bin" observer --data-dir "$dir/writer" --genesis "$dir/genesis" --upstream "http://127.0.0.1:$port_v" \
    --metrics-listen "127.0.0.1:$port_om" --log-level warn --archive "file://$archive" &
writer=$!
pids+=($writer)
until curl -s "http://127.0.0.1:$port_om/metrics" >/dev/null; do sleep 0.5; done
target=$(metric "$port_vm" dagstream_validator_highest_commit)
until (($(metric "$port_om" dagstream_archive_commit) >= target)); do sleep 2; done
kill "$writer"
wait "$writer" 2>/dev/null || true
rm -rf "${dir:?}/writer"
target=$(python3 -c "import json, glob; print(json.load(open(sorted(glob.glob('$archive/watermarks/*.json'))[-1]))['commit'])")
echo "archive: $(ls "$archive/bundles" | wc -l) bundles, $(du -sh "$archive" | cut -f1), to commit $target"

# One fresh observer until it holds commit $target; $1 names the run, the
# rest are extra flags.
run() {
    local name=$1
    shift
    local v_before started now o_cpu v_cpu
    v_before=$(cpu "$validator")
    started=$(date +%s.%N)
    local data=${data_root:-$dir}/$name
    "${pin_observer[@]}" "$bin" observer --data-dir "$data" --genesis "$dir/genesis" \
        --upstream "http://127.0.0.1:$port_v" --metrics-listen "127.0.0.1:$port_om" --log-level warn "$@" &
    local observer=$!
    pids+=($observer)
    # PERF=FILE: a perf profile (DWARF call graphs, 199 Hz) of the first
    # bootstrap from the archive, written to FILE when that observer stops.
    # Unwinding every sample costs the profiled run its speed: compare
    # the other runs.
    if [[ -n ${PERF:-} && $name == from-archive ]]; then
        perf record -F 199 --call-graph dwarf,32768 -p "$observer" -o "$PERF" 2>/dev/null &
        pids+=($!)
    fi
    until curl -s "http://127.0.0.1:$port_om/metrics" >/dev/null; do sleep 0.2; done
    until (($(metric "$port_om" dagstream_observer_commits_persisted_total | cut -d. -f1) >= target)); do
        sleep 0.5
    done
    now=$(date +%s.%N)
    o_cpu=$(cpu "$observer")
    v_cpu=$(($(cpu "$validator") - v_before))
    local from_archive
    from_archive=$(metric "$port_om" dagstream_archive_bootstrapped_commits_total)
    kill "$observer"
    wait "$observer" 2>/dev/null || true
    local stored
    stored=$(du -sb "$data" | cut -f1)
    # Each run's store is as large as the chain: one at a time on disk.
    rm -rf "${data:?}"
    python3 - "$name" "$started" "$now" "$target" "$o_cpu" "$v_cpu" "$tick" "$idle_rate" "${from_archive:-0}" "$stored" <<'PY'
import sys
name, started, ended, commits = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
o_cpu, v_cpu, tick, idle, archived = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8]), float(sys.argv[9])
stored = int(sys.argv[10])
seconds = ended - started
serving = v_cpu / tick - idle * seconds
print(f"| {name} | {seconds:.1f} | {commits / seconds:.0f} | {1000 * o_cpu / tick / commits:.2f} | "
      f"{stored / seconds / 1e6:.0f} | {v_cpu / tick:.1f} | {serving:.1f} | {int(archived)} |")
PY
}
echo "| run | s | commits/s | observer ms CPU per commit | store MB/s | validator CPU s | validator CPU s above idle | commits from the archive |"
echo "|---|---|---|---|---|---|---|---|"
run from-validator
run from-archive --bootstrap-from "file://$archive"
run from-validator-2
run from-archive-2 --bootstrap-from "file://$archive"
run from-validator-3
run from-archive-3 --bootstrap-from "file://$archive"
# The same bootstrap with the observer's store in memory (tmpfs), where
# the disk allows: what the observer does without the disk's bound.
if [[ -d /dev/shm && -w /dev/shm ]]; then
    data_root=$(mktemp -d /dev/shm/bench-bootstrap.XXXXXX)
    run from-archive-store-in-memory --bootstrap-from "file://$archive"
    rmdir "$data_root"
fi
