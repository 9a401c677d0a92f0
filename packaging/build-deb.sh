#!/usr/bin/env bash
# Builds quantfs' Debian package from this tree and checks it with lintian.
#   bash packaging/build-deb.sh [OUTDIR]     (default: build-deb/)
# Needs dpkg-dev, debhelper, lintian and the build dependencies of
# packaging/debian/control (bash packaging/install-deps.sh --deb installs them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/build-deb}" && cd "${1:-$root/build-deb}" && pwd)
ver=$(dpkg-parsechangelog -l "$root/packaging/debian/changelog" -S Version)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=$work/quantfs-$ver
mkdir -p "$src"
# the source as git sees it (no build directories, no node_modules), with
# debian/ at the top where dpkg-buildpackage wants it
(cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp -P --parents -t "$src")
rm -rf "$src/debian"
cp -rL "$root/packaging/debian" "$src/debian"
(cd "$src" && dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1) || { tail -40 "$work/build.log"; exit 1; }
deb=$(ls "$work"/quantfs_"$ver"_*.deb)
lintian --fail-on error --suppress-tags "$(cat "$root/packaging/lintian-suppress" 2>/dev/null | grep -v '^#' | paste -sd, || true)" "$deb" | tee "$work/lintian.txt"
cp "$deb" "$out/"
echo "built $out/$(basename "$deb")"
