#!/usr/bin/env bash
# Benchmarks: kernel throughput (scalar vs SIMD) and full sequential reads of
# views of a ~670 MB synthetic F32 model through a real mount, as ratios to
# reading the f32 view (the same FUSE path without conversion).
#   bash bench/run.sh [WORKDIR]     (default /tmp/quantfs-bench; needs ~1 GB)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=${1:-/tmp/quantfs-bench}
py=${PYTHON:-/usr/bin/python3}  # Debian's, which has numpy
[ -d build ] || meson setup build >/dev/null
meson compile -C build >/dev/null
mkdir -p "$work/src/synth" "$work/mnt"
[ -f "$work/src/synth/synth.gguf" ] || $py bench/make_model.py "$work/src/synth/synth.gguf"
echo "== machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== kernels (16 MiB of f32 input, best of 3)"
./build/bench/bench_kernels 3
cat "$work/src/synth/synth.gguf" > /dev/null   # source in page cache: measure conversion, not the disk
views=${VIEWS:-f32 fp16 bf16 q8_0 q4_0 q4_k}
echo "== full sequential reads through the mount, default options"
./build/fs/quantfs "$work/src" "$work/mnt"
trap 'fusermount3 -u "$work/mnt"' EXIT
$py bench/read_views.py "$work/mnt" synth synth.gguf $views
cat "$work/mnt/.quantfs/stats"
fusermount3 -u "$work/mnt"
trap - EXIT
echo "== cache tiers: cold vs memory-tier vs persistent-tier reads"
$py bench/cache_tiers.py ./build/fs/quantfs "$work/src" synth synth.gguf "$work"
echo "== content-addressed keys: a first node, a node with its own copy, a restart (BEFORE=old quantfs to compare)"
$py bench/fleet.py ./build/fs/quantfs "$work/src/synth/synth.gguf" "$work/fleet"
