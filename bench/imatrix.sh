#!/usr/bin/env bash
# The -imat and IQ4 views against llama-quantize [--imatrix] on the same cores,
# one run: the 673 MB synthetic model of bench/make_model.py with a synthetic
# imatrix (tests/mkimatrix.py; the quantizers' work does not depend on where
# the weights came from).
#   LQ=/path/to/llama-quantize bash bench/imatrix.sh [WORKDIR] [TYPE...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=${1:-/tmp/quantfs-bench}
shift || true
py=${PYTHON:-/usr/bin/python3}
[ -d build ] || meson setup build >/dev/null
meson compile -C build >/dev/null
mkdir -p "$work/src/synth" "$work/tmp"
[ -f "$work/src/synth/synth.gguf" ] || $py bench/make_model.py "$work/src/synth/synth.gguf"
[ -f "$work/src/synth/imatrix.gguf" ] || $py tests/mkimatrix.py "$work/src/synth/synth.gguf" "$work/src/synth/imatrix.gguf" --format gguf
types=${*:-q4_k_m q4_k_m-imat q2_k-imat q3_k_m-imat q4_0-imat q5_k_m-imat q6_k-imat iq4_xs iq4_xs-imat iq4_nl iq4_nl-imat}
echo "== machine: $(nproc) CPUs; llama-quantize threads: ${THREADS:-2}"
$py bench/mixes.py ./build/fs/quantfs "$work/src" synth synth.gguf "${LQ:?LQ=llama-quantize}" "$work/tmp" $types
