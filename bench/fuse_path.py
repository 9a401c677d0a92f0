#!/usr/bin/env python3
"""The FUSE path, as ratios measured in one run (issue 22).

    bench/fuse_path.py QUANTFS SRC MODEL FILE [VIEW...]

SRC/MODEL/FILE is an F32 GGUF (bench/make_model.py), in the page cache.
Every 'cold' read is the first read of a fresh mount (empty memory tier, no
cache_dir), 1 MiB read() calls, or a page-touching pass over an mmap. It
prints:
  native       reading the source file itself (page cache)
  f32 / native the f32 view (no conversion: source bytes through FUSE)
  mmap / read  the f32 view through mmap against its read()
  VIEW / f32   each view's output rate against the f32 view's
  warm / native a second read of the f32 view (the kernel's page cache)
  K scaling    q4_k_m's source-equivalent rate with the daemon on N cores
               (taskset, threads=N) against 1 core
  before       the f32 view with -o no_splice,read_ahead_kb=0 (no splice, the
               kernel's 128 KiB readahead: quantfs 0.9's path) against now
and the request sizes the kernel sent (the daemon's read count and bytes).
Each ratio is the median of RUNS (default 3) alternating runs."""
import json
import mmap
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

RUNS = int(os.environ.get("RUNS", "3"))


def read_file(path, bs=1 << 20):
    fd = os.open(path, os.O_RDONLY)
    buf = bytearray(bs)
    n = 0
    t = time.perf_counter()
    while True:
        k = os.readv(fd, [buf])
        if not k:
            break
        n += k
    dt = time.perf_counter() - t
    os.close(fd)
    return n, dt


def mmap_file(path):
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    t = time.perf_counter()
    m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    a = np.frombuffer(m, dtype=np.uint8)
    a[::4096].sum()  # one byte per page: every page faulted in
    dt = time.perf_counter() - t
    del a
    m.close()
    os.close(fd)
    return size, dt


class Mount:
    def __init__(self, quantfs, src, opts=(), prefix=()):
        self.dir = tempfile.mkdtemp(prefix="qfs-fp-")
        args = [*prefix, quantfs, src, self.dir]
        for o in opts:
            args += ["-o", o]
        subprocess.run(args, check=True, capture_output=True)
        deadline = time.time() + 20
        while not os.path.ismount(self.dir):
            assert time.time() < deadline
            time.sleep(0.02)

    def stats(self):
        with open(os.path.join(self.dir, ".quantfs", "stats")) as f:
            return json.load(f)

    def close(self):
        subprocess.run(["fusermount3", "-u", self.dir], check=True)
        os.rmdir(self.dir)


def cold(quantfs, src, model, fname, view, how="read", opts=(), prefix=()):
    m = Mount(quantfs, src, opts, prefix)
    try:
        p = os.path.join(m.dir, model, view, fname)
        n, dt = (mmap_file if how == "mmap" else read_file)(p)
        warm = read_file(p)[1] if how == "warm" else None
        st = m.stats()
    finally:
        m.close()
    return n, dt, warm, st


def main():
    quantfs, src, model, fname = sys.argv[1:5]
    views = sys.argv[5:] or ["fp16", "bf16", "q8_0", "q4_k_m"]
    srcfile = os.path.join(src, model, fname)
    size = os.path.getsize(srcfile)
    read_file(srcfile)  # into the page cache
    ncpu = os.cpu_count()
    res = {}

    def add(key, v):
        res.setdefault(key, []).append(v)

    for _ in range(RUNS):
        n, dt = read_file(srcfile)
        add("native", n / dt)
        n, dt = mmap_file(srcfile)
        add("native mmap", n / dt)
        n, dt, warm, st = cold(quantfs, src, model, fname, "f32", "warm")
        add("f32", n / dt)
        add("warm", n / warm)
        add("req", st.get("bytes_read", 0) / max(1, st.get("reads", 1)))
        n, dt, _, st = cold(quantfs, src, model, fname, "f32", opts=["no_splice", "read_ahead_kb=0"])
        add("f32 before", n / dt)
        add("req before", st.get("bytes_read", 0) / max(1, st.get("reads", 1)))
        n, dt, _, _ = cold(quantfs, src, model, fname, "f32", "mmap")
        add("f32 mmap", n / dt)
        m = Mount(quantfs, src)  # mmap of a view whose pages are all cached: the kernel's part alone
        try:
            p = os.path.join(m.dir, model, "f32", fname)
            read_file(p)
            n, dt = mmap_file(p)
            add("f32 mmap warm", n / dt)
        finally:
            m.close()
        for v in views:
            n, dt, _, _ = cold(quantfs, src, model, fname, v)
            add(v, n / dt)
            add(v + " in", size / dt)
        for t in sorted({1, 4, ncpu}):
            # the daemon on cores 0..t-1 (its session threads convert too)
            n, dt, _, _ = cold(quantfs, src, model, fname, "q4_k_m", opts=["threads=%d" % t],
                               prefix=["taskset", "-c", "0-%d" % (t - 1)])
            add("q4_k_m t%d" % t, size / dt)
    med = {k: statistics.median(v) for k, v in res.items()}
    print("== %d CPUs, %s, %.0f MB source, median of %d runs" % (ncpu, fname, size / 1e6, RUNS))
    print("%-22s %10s %s" % ("", "MB/s", "ratio"))
    print("%-22s %10.0f" % ("native read", med["native"] / 1e6))
    print("%-22s %10.0f %6.2fx native read" % ("native mmap", med["native mmap"] / 1e6,
                                               med["native mmap"] / med["native"]))
    print("%-22s %10.0f %6.2fx native" % ("f32 view, read", med["f32"] / 1e6, med["f32"] / med["native"]))
    print("%-22s %10.0f %6.2fx native (%.0f KiB requests)" % ("f32 view, before", med["f32 before"] / 1e6,
                                                             med["f32 before"] / med["native"], med["req before"] / 1024))
    print("%-22s %10.0f %6.2fx before" % ("f32 view, now", med["f32"] / 1e6, med["f32"] / med["f32 before"]))
    print("%-22s %10.0f %6.2fx its read, %.2fx native mmap" % ("f32 view, mmap", med["f32 mmap"] / 1e6,
                                                               med["f32 mmap"] / med["f32"],
                                                               med["f32 mmap"] / med["native mmap"]))
    print("%-22s %10.0f %6.2fx its read (pages all cached: no request)" % (
        "f32 view, mmap warm", med["f32 mmap warm"] / 1e6, med["f32 mmap warm"] / med["warm"]))
    print("%-22s %10.0f %6.2fx native" % ("f32 view, warm re-read", med["warm"] / 1e6, med["warm"] / med["native"]))
    for v in views:
        print("%-22s %10.0f %6.2fx f32 output (F32 in: %.0f MB/s)" % (v + " view, read", med[v] / 1e6,
                                                                       med[v] / med["f32"], med[v + " in"] / 1e6))
    t1 = med["q4_k_m t1"]
    for t in sorted({4, ncpu}):
        tn = med["q4_k_m t%d" % t]
        print("%-22s %10.0f %6.2fx 1 core (F32 in/s; 1 core: %.0f MB/s)" % ("q4_k_m on %d cores" % t,
                                                                           tn / 1e6, tn / t1, t1 / 1e6))
    print("kernel requests: %.0f KiB average read (f32 view)" % (med["req"] / 1024))


if __name__ == "__main__":
    main()
