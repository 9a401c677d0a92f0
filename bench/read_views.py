#!/usr/bin/env python3
"""Times full sequential reads of view files through a quantfs mount.

    bench/read_views.py MOUNT MODEL FILE VIEW...

Each view is read twice with 1 MiB reads: 'cold' converts on read (after
dropping the kernel's cached pages of the mount, but not the source's), 'warm'
is the second read. Prints MB/s of output bytes and of source-equivalent F32
bytes, and the ratio of each to the f32 view's cold read (the FUSE ceiling
for this mount: the same path without conversion)."""
import os
import sys
import time


def read_file(path):
    fd = os.open(path, os.O_RDONLY)
    n = 0
    t = time.perf_counter()
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            break
        n += len(b)
    dt = time.perf_counter() - t
    os.close(fd)
    return n, dt


def drop_cache(path):
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


def main():
    mnt, model, fname, views = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    src_size = os.stat(os.path.join(mnt, model, "f32", fname)).st_size
    rows = []
    for v in views:
        p = os.path.join(mnt, model, v, fname)
        drop_cache(p)
        n, cold = read_file(p)
        _, warm = read_file(p)
        rows.append((v, n, cold, warm))
    base = rows[0][2] if rows[0][0] == "f32" else None
    print("%-6s %10s %10s %12s %10s %10s" % ("view", "MiB", "cold MB/s", "F32-eq MB/s", "warm MB/s",
                                              "cold/f32"))
    for v, n, cold, warm in rows:
        print("%-6s %10.0f %10.0f %12.0f %10.0f %10s" % (v, n / 2**20, n / cold / 1e6, src_size / cold / 1e6,
                                                       n / warm / 1e6, "%.2fx" % (cold / base) if base else "-"))


if __name__ == "__main__":
    main()
