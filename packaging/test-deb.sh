#!/usr/bin/env bash
# Builds the Debian package, installs it with dpkg -i and tests the installed
# files: mount -t fuse.quantfs, a scratch fstab with mount -T, the unit
# (systemd-analyze verify), the service user, SIGTERM (tests/test_installed.py).
# Installs a package system-wide: tests/run.sh runs it only under CI=true or
# QUANTFS_TEST_DEB=1, as root. systemd is not PID 1 in CI, so the unit is
# verified and its ExecStart run by hand as its user, not started by systemd.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash packaging/install-deps.sh --deb
bash packaging/build-deb.sh build-deb
dpkg -i build-deb/quantfs_*.deb
QUANTFS_INSTALLED=1 QUANTFS_SHARED=${QUANTFS_SHARED:-$root/../shared} PYTHONDONTWRITEBYTECODE=1 \
    pytest-3 -v -p no:cacheprovider tests/test_installed.py
