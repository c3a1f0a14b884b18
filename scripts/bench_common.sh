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
