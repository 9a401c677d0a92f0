#!/usr/bin/env bash
# Installs quantfs' build and test dependencies from Debian 12's packages.
# Idempotent; needs root (or sudo). Skips apt entirely when all are present.
set -euo pipefail
pkgs=(build-essential meson ninja-build pkg-config libfuse3-dev fuse3 libzstd-dev libxxhash-dev
      libjansson-dev libsleef-dev libcmocka-dev python3 python3-pytest python3-numpy nodejs npm groff-base
      valgrind util-linux chromium python3-pil openssh-server openssh-client sshfs)
# --deb: also what building and checking the Debian package needs
[ "${1:-}" = --deb ] && pkgs+=(dpkg-dev debhelper lintian fakeroot man-db groff-base systemd)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from elsewhere (nodesource, nvm): accept a working one
if command -v node >/dev/null && command -v npm >/dev/null; then
    missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -ra missing <<< "${missing[*]}"
if ((${#missing[@]})); then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq || true
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
