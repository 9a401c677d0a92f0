#!/usr/bin/env bash
# llama-server's router mode over a quantfs mount, with a real llama-server
# v0.5.0 built from the npm bundle (node-llama-cpp@3.22.1's
# llama/gitRelease.bundle): tests/test_router.py's llama-server test, which
# lists the store, loads two models through the mount and generates, then
# restarts after the store changed. The build (about 20 minutes on 2 cores,
# 3 on 16) is cached by the bundle's hash, so a second run only tests:
#   bash bench/router.sh            (cache: ${XDG_CACHE_HOME:-~/.cache}/quantfs)
#   LLAMA_SERVER=/path/llama-server bash bench/router.sh   (no build)
# Not in CI: the build does not fit its time budget (README, "Pointing
# clients at the views"); bench/RESULTS.md keeps a recorded run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bundle=tests/node/node_modules/node-llama-cpp/llama/gitRelease.bundle
server=${LLAMA_SERVER:-}
if [ -z "$server" ]; then
    [ -f "$bundle" ] || { echo "router.sh: $bundle is missing (cd tests/node && npm install)" >&2; exit 2; }
    hash=$(sha256sum "$bundle" | cut -c1-16)
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/quantfs/llama-server-$hash
    server=$cache/bin/llama-server
    if [ ! -x "$server" ]; then
        command -v cmake >/dev/null || { echo "router.sh: cmake is needed to build llama-server (apt install cmake)" >&2; exit 2; }
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        git clone -q "$bundle" "$tmp/llama.cpp"
        # CPU only, static, no network code (nothing downloads), no web UI
        cmake -S "$tmp/llama.cpp" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
            -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
            -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >/dev/null
        cmake --build "$tmp/build" -j"$(nproc)" --target llama-server >/dev/null
        mkdir -p "$cache/bin"
        cp "$tmp/build/bin/llama-server" "$server.tmp" && mv "$server.tmp" "$server"
    fi
fi
[ -d build ] || meson setup build >/dev/null
meson compile -C build >/dev/null
echo "== llama-server: $("$server" --version 2>&1 | grep -m1 version || true)"
cd tests
QUANTFS_LLAMA_SERVER=$server QUANTFS_BIN=../build/fs/quantfs ${PYTEST:-pytest-3} -v -p no:cacheprovider \
    test_router.py -k llama_server
