# Shared by the benchmark scripts that run the release binary; sourced, not
# run. Sets `bin` and a fresh work directory `dir` under the current one
# (the disk a data dir would use), and removes both the directory and every
# process in `pids` on exit.
#
#   source "$(dirname "$0")/bench_common.sh" NAME

bin=${DAGSTREAM_BIN:-target/release/dagstream}
dir=$(mktemp -d "./bench-$1.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

# The value of metric $2 on the Prometheus endpoint at local port $1.
metric() {
    curl -s "http://127.0.0.1:$1/metrics" | awk -v name="$2" '$1 == name {print $2}'
}

# Waits for the validator with metrics on local port $1 to produce the $2
# rounds of history its genesis lies in the past (as fast as it can), then
# to keep the schedule (at most 20 rounds a second, against about 13 at the
# mainnet profile), so that it no longer competes for the CPU.
wait_validator_settled() {
    until curl -s "http://127.0.0.1:$1/metrics" >/dev/null; do sleep 0.5; done
    until (($(metric "$1" dagstream_validator_highest_round) >= $2)); do sleep 1; done
    local previous round
    previous=$(metric "$1" dagstream_validator_highest_round)
    while sleep 1; do
        round=$(metric "$1" dagstream_validator_highest_round)
        ((round - previous <= 20)) && break
        previous=$round
    done
}
