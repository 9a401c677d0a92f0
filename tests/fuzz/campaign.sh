#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS (default 1800) each, JOBS at a
# time (default 2), seeded with tests/fuzz/corpus/NAME, new inputs kept in
# WORK/NAME; then merges what they found back into the committed corpus
# (inputs over 12 KB left out, to keep the repository small) and prints one
# line per target: runs, exec/s, coverage, crashes.
#   bash tests/fuzz/campaign.sh [SECONDS] [JOBS] [WORK]   (needs build-fuzz, see meson.build)
# TARGETS="gguf hf" picks targets (default: all).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-1800} jobs=${2:-2} work=${3:-/tmp/qfs-fuzz}
bin=$root/build-fuzz/tests/fuzz
mkdir -p "$work"
read -ra targets <<< "${TARGETS:-gguf hf safetensors dequant rewrite entry}"
run() {
    local t=$1
    mkdir -p "$work/$t" "$work/$t-crash"
    nice -n 19 "$bin/fuzz_$t" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$work/$t-crash/" "$work/$t" "$root/tests/fuzz/corpus/$t" >"$work/$t.log" 2>&1 || true
}
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c "$(declare -f run); secs=$secs work=$work bin=$bin root=$root run {}"
for t in "${targets[@]}"; do
    mkdir -p "$work/$t-small"
    find "$work/$t" -type f -size -12k -exec cp -t "$work/$t-small" {} +
    "$bin/fuzz_$t" -merge=1 "$root/tests/fuzz/corpus/$t" "$work/$t-small" >/dev/null 2>&1 || true
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$' || echo ?)
    eps=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$' || echo ?)
    cov=$(grep -o 'cov: [0-9]*' "$work/$t.log" | tail -1 | grep -o '[0-9]*' || echo ?)
    echo "$t: runs $runs, exec/s $eps, cov $cov, crashes $(ls "$work/$t-crash" | wc -l)"
done
