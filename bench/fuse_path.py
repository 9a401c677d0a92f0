#!/usr/bin/env python3
"""The FUSE path, as ratios measured in one run (issue 22).

    bench/fuse_path.py QUANTFS SRC MODEL FILE [VIEW...]

SRC/MODEL/FILE is an F32 GGUF (bench/make_model.py), in the page cache.
Every 'cold' read is the first read of a fresh mount (empty memory tier, no
cache_dir), 1 MiB read() calls, or a page-touching pass over an mmap. It
prints:
  native       reading the source file itself (page cache), and with one
               thread per CPU reading disjoint ranges (as the workers do)
  f32 / native the f32 view (no conversion: source bytes through FUSE)
  mmap / read  the f32 view through mmap against its read()
  VIEW / f32   each view's output rate against the f32 view's (and the
               daemon's CPU time over the read's wall time, in cores, and the
               whole machine's: all cores busy means CPU-bound; the cores the
               view's CPU time per byte would take at the f32 view's rate), and
               with -o map_reads (the source mapped, not copied) against it;
               "native mapped" is the bound: the source's pages mapped
               1 MiB at a time by one thread per CPU, against pread
  2 readers    the f32 view and each view read by two threads at once (each
               its half), and the one reader's CPU time: a reader's thread is
               where the kernel fills and copies FUSE's 4 KiB page cache, and
               when it is on a whole core, one reader is what bounds the view
  warm / native a second read of the f32 view (the kernel's page cache)
  K scaling    q4_k_m's source-equivalent rate with the daemon on N cores
               (taskset, threads=N) against 1 core
  before       the f32 view with -o no_splice,read_ahead_kb=0 (no splice, the
               kernel's 128 KiB readahead: quantfs 0.9's path) against now
  small folios the same reads of a copy on tmpfs (SMALL, default /dev/shm):
               a native file whose page cache is 4 KiB folios, as FUSE's is
               (kernel 6.18); with the folio census (root: /proc/kpageflags)
               it shows what bounds the warm and mmap ratios
  BEFORE=BIN   each view's cold read with another quantfs binary against now
  PASSTHROUGH_HP=BIN  libfuse >= 3.16's example/passthrough_hp over SRC (FUSE
               passthrough, root): what passthrough would give the f32 view
and the request sizes the kernel sent (the daemon's read count and bytes).
Each ratio is the median of RUNS (default 3) alternating runs; SCALING=0
leaves out the K scaling reads."""
import json
import mmap
import os
import shutil
import struct
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

RUNS = int(os.environ.get("RUNS", "3"))
SCALING = os.environ.get("SCALING", "1") != "0"  # SCALING=0: skip q4_k_m's 1/4/N-core reads (the slow part)


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


def read_parts(path, n, bs=1 << 20):
    """Bytes and seconds for n threads each reading its 1/n of path at
    once (n readers, as a loader reading tensors in parallel)."""
    size = os.path.getsize(path)
    part = (size // n + bs - 1) // bs * bs

    def one(i):
        fd = os.open(path, os.O_RDONLY)
        buf = bytearray(bs)
        off, end = i * part, min(size, (i + 1) * part)
        while off < end:
            k = os.preadv(fd, [buf], off)
            if not k:
                break
            off += k
        os.close(fd)

    return size, in_threads(one, n)


def in_threads(run, n):
    """Seconds for run(0) .. run(n - 1), each on its own thread."""
    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    t = time.perf_counter()
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    return time.perf_counter() - t


def parallel_read(path, n, bs=1 << 20):
    """n threads pread()ing disjoint ranges of path (what the daemon's
    workers do with a source): bytes/s."""
    size, dt = read_parts(path, n, bs)
    return size / dt


def parallel_map(path, n, bs=1 << 20):
    """n threads reading disjoint ranges of path as -o map_reads does: each
    1 MiB piece mapped, every page touched, unmapped: bytes/s. Against
    parallel_read it says whether mapping the page cache costs this
    machine less than copying it out."""
    size = os.path.getsize(path)
    per = -(-size // n)
    per = max(bs, per - per % bs)

    def run(i):
        fd = os.open(path, os.O_RDONLY)
        off, end = i * per, size if i == n - 1 else (i + 1) * per
        while off < end:
            k = min(bs, end - off)
            m = mmap.mmap(fd, k, prot=mmap.PROT_READ, offset=off)
            np.frombuffer(m, dtype=np.uint32)[::1024].sum()  # a word per page
            m.close()
            off += k
        os.close(fd)
    return size / in_threads(run, n)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as st:
        f = st.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def busy_seconds():
    """CPU seconds the whole machine spent not idle (/proc/stat): over a
    read, against its wall time and the CPU count, whether the read had
    cores left over or was bound by the CPU work each byte takes."""
    with open("/proc/stat") as st:
        f = st.readline().split()[1:]
    ticks = [int(x) for x in f[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


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


def folios(path, pages=4096):
    """(large, small): how many of the first pages of path sit in large
    folios (compound pages) and how many in 4 KiB ones, from /proc/kpageflags
    (root); None where it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY)
        size = min(os.fstat(fd).st_size, pages * 4096) // 4096 * 4096
        m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        os.close(fd)
        a = np.frombuffer(m, dtype=np.uint8)
        int(a[::4096].sum())  # map every page
        base = None
        real = os.path.realpath(path)
        with open("/proc/self/maps") as f:
            for line in f:
                if line.rstrip("\n").endswith(real):
                    base = int(line.split("-")[0], 16)
                    break
        large = small = 0
        with open("/proc/self/pagemap", "rb") as pm, open("/proc/kpageflags", "rb") as kf:
            for i in range(size // 4096):
                pm.seek((base // 4096 + i) * 8)
                e = struct.unpack("Q", pm.read(8))[0]
                pfn = e & ((1 << 55) - 1)
                if not e >> 63 or not pfn:
                    continue
                kf.seek(pfn * 8)
                f = struct.unpack("Q", kf.read(8))[0]
                if f >> 15 & 3:  # KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL
                    large += 1
                else:
                    small += 1
        del a
        m.close()
        return large, small
    except (OSError, TypeError, ValueError):
        return None


class Mount:
    def __init__(self, quantfs, src, opts=(), prefix=(), args=None):
        self.dir = tempfile.mkdtemp(prefix="qfs-fp-")
        if args is None:
            args = [*prefix, quantfs, src, self.dir]
            for o in opts:
                args += ["-o", o]
        else:
            args = [*args, src, self.dir]
        subprocess.run(args, check=True, capture_output=True)
        deadline = time.time() + 20
        while not os.path.ismount(self.dir):
            assert time.time() < deadline
            time.sleep(0.02)
        pids = subprocess.run(["pgrep", "-f", self.dir], capture_output=True, text=True).stdout.split()
        self.pid = int(pids[0]) if pids else None

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
        c0 = cpu_seconds(m.pid) if m.pid else 0
        b0 = busy_seconds()
        r0 = time.thread_time()
        if how == "2 readers":
            n, dt = read_parts(p, 2)
        else:
            n, dt = (mmap_file if how == "mmap" else read_file)(p)
        r1 = time.thread_time()
        b1 = busy_seconds()
        c1 = cpu_seconds(m.pid) if m.pid else 0
        warm = read_file(p)[1] if how == "warm" else None
        st = m.stats()
        st["_cores"] = (c1 - c0) / dt  # the daemon's CPU time over the read's wall time
        st["_busy"] = (b1 - b0) / dt  # the machine's, reader and kernel included
        st["_reader"] = (r1 - r0) / dt  # the reading thread's (one reader: mostly the kernel's page cache work)
    finally:
        m.close()
    return n, dt, warm, st


def passthrough(hp, src, model, fname):
    """read, mmap and warm re-read rates of SRC's file through libfuse's
    passthrough_hp (FUSE passthrough: the kernel reads the backing file)."""
    lib = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(hp))), "lib")  # libfuse's build tree
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(filter(None, [lib, os.environ.get("LD_LIBRARY_PATH")])))
    d = tempfile.mkdtemp(prefix="qfs-pt-")
    subprocess.run([hp, src, d], check=True, capture_output=True, env=env)
    try:
        deadline = time.time() + 20
        while not os.path.ismount(d):
            assert time.time() < deadline
            time.sleep(0.02)
        p = os.path.join(d, model, fname)
        n, dt = read_file(p)
        warm = read_file(p)[1]
        mm = mmap_file(p)[1]
        fol = folios(p)
    finally:
        subprocess.run(["fusermount3", "-u", d], check=True)
        os.rmdir(d)
    return n / dt, n / warm, n / mm, fol


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

    small_dir = os.environ.get("SMALL", "/dev/shm")
    small = os.path.join(tempfile.mkdtemp(prefix="qfs-fp-", dir=small_dir), fname)
    shutil.copyfile(srcfile, small)
    before = os.environ.get("BEFORE")
    hp = os.environ.get("PASSTHROUGH_HP")
    fol = {}
    for _ in range(RUNS):
        n, dt = read_file(srcfile)
        add("native", n / dt)
        add("native par", parallel_read(srcfile, ncpu))
        add("native par map", parallel_map(srcfile, ncpu))
        n, dt = mmap_file(srcfile)
        add("native mmap", n / dt)
        n, dt = read_file(small)
        add("small", n / dt)
        n, dt = mmap_file(small)
        add("small mmap", n / dt)
        if hp:
            r, w, mm, fol["passthrough"] = passthrough(hp, src, model, fname)
            add("pt", r)
            add("pt warm", w)
            add("pt mmap", mm)
        n, dt, warm, st = cold(quantfs, src, model, fname, "f32", "warm")
        add("f32", n / dt)
        add("f32 busy", st["_busy"])
        add("f32 reader", st["_reader"])
        n, dt, _, st = cold(quantfs, src, model, fname, "f32", "2 readers")
        add("f32 2r", n / dt)
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
            fol["f32 view"] = folios(p)
        finally:
            m.close()
        for v in views:
            n, dt, _, st = cold(quantfs, src, model, fname, v)
            add(v, n / dt)
            add(v + " in", size / dt)
            add(v + " cores", st["_cores"])
            add(v + " busy", st["_busy"])
            add(v + " reader", st["_reader"])
            n, dt, _, st = cold(quantfs, src, model, fname, v, "2 readers")
            add(v + " 2r", n / dt)
            add(v + " 2r cores", st["_cores"])
            n, dt, _, st = cold(quantfs, src, model, fname, v, opts=["map_reads"])
            add(v + " mapped", n / dt)
            add(v + " mapped cores", st["_cores"])
            if before:
                n, dt, _, _ = cold(before, src, model, fname, v)
                add(v + " before", n / dt)
        for t in sorted({1, 4, ncpu}) if SCALING else ():
            # the daemon on cores 0..t-1 (its session threads convert too)
            n, dt, _, _ = cold(quantfs, src, model, fname, "q4_k_m", opts=["threads=%d" % t],
                               prefix=["taskset", "-c", "0-%d" % (t - 1)])
            add("q4_k_m t%d" % t, size / dt)
    fol["source"] = folios(srcfile)
    fol["tmpfs copy"] = folios(small)
    os.unlink(small)
    os.rmdir(os.path.dirname(small))
    med = {k: statistics.median(v) for k, v in res.items()}
    print("== %d CPUs, %s, %.0f MB source, median of %d runs" % (ncpu, fname, size / 1e6, RUNS))
    print("%-22s %10s %s" % ("", "MB/s", "ratio"))
    print("%-22s %10.0f" % ("native read", med["native"] / 1e6))
    print("%-22s %10.0f %6.2fx native read" % ("native mmap", med["native mmap"] / 1e6,
                                               med["native mmap"] / med["native"]))
    print("%-22s %10.0f %6.2fx native read (the workers' source reads)" % (
        "native read, %d threads" % ncpu, med["native par"] / 1e6, med["native par"] / med["native"]))
    print("%-22s %10.0f %6.2fx native read, %d threads (-o map_reads' source reads)" % (
        "native mapped, %d thr." % ncpu, med["native par map"] / 1e6, med["native par map"] / med["native par"], ncpu))
    print("%-22s %10.0f %6.2fx native (machine busy %.1f of %d cores)" % (
        "f32 view, read", med["f32"] / 1e6, med["f32"] / med["native"], med["f32 busy"], ncpu))
    print("%-22s %10.0f %6.2fx one reader (one reader's thread on %.2f cores%s)" % (
        "f32 view, 2 readers", med["f32 2r"] / 1e6, med["f32 2r"] / med["f32"], med["f32 reader"],
        ": its own kernel work bounds one reader" if med["f32 reader"] >= 0.9 else ""))
    print("%-22s %10.0f %6.2fx native (%.0f KiB requests)" % ("f32 view, before", med["f32 before"] / 1e6,
                                                             med["f32 before"] / med["native"], med["req before"] / 1024))
    print("%-22s %10.0f %6.2fx before" % ("f32 view, now", med["f32"] / 1e6, med["f32"] / med["f32 before"]))
    print("%-22s %10.0f %6.2fx its read, %.2fx native mmap" % ("f32 view, mmap", med["f32 mmap"] / 1e6,
                                                               med["f32 mmap"] / med["f32"],
                                                               med["f32 mmap"] / med["native mmap"]))
    print("%-22s %10.0f %6.2fx its read (pages all cached: no request)" % (
        "f32 view, mmap warm", med["f32 mmap warm"] / 1e6, med["f32 mmap warm"] / med["warm"]))
    print("%-22s %10.0f %6.2fx native" % ("f32 view, warm re-read", med["warm"] / 1e6, med["warm"] / med["native"]))
    print("%-22s %10.0f %6.2fx native read; f32 warm re-read %.2fx it" % (
        "tmpfs copy, read", med["small"] / 1e6, med["small"] / med["native"], med["warm"] / med["small"]))
    print("%-22s %10.0f %6.2fx native mmap; f32 mmap warm %.2fx it" % (
        "tmpfs copy, mmap", med["small mmap"] / 1e6, med["small mmap"] / med["native mmap"],
        med["f32 mmap warm"] / med["small mmap"]))
    if hp:
        print("%-22s %10.0f %6.2fx native (libfuse passthrough_hp)" % ("passthrough, read", med["pt"] / 1e6,
                                                                       med["pt"] / med["native"]))
        print("%-22s %10.0f %6.2fx native mmap, %.2fx its read" % ("passthrough, mmap", med["pt mmap"] / 1e6,
                                                                   med["pt mmap"] / med["native mmap"],
                                                                   med["pt mmap"] / med["pt"]))
        print("%-22s %10.0f %6.2fx native" % ("passthrough, warm", med["pt warm"] / 1e6,
                                              med["pt warm"] / med["native"]))
    for v in views:
        # the machine's CPU time per byte of output, times the f32 view's rate:
        # the cores this view would keep busy at that rate
        need = med[v + " busy"] / med[v] * med["f32"]
        print("%-22s %10.0f %6.2fx f32 output (F32 in: %.0f MB/s, daemon on %.1f cores, machine %.1f; "
              "at f32's rate: %.1f cores)%s" % (
            v + " view, read", med[v] / 1e6, med[v] / med["f32"], med[v + " in"] / 1e6, med[v + " cores"],
            med[v + " busy"], need,
            ", %.2fx BEFORE" % (med[v] / med[v + " before"]) if before else ""))
        print("%-22s %10.0f %6.2fx one reader, %.2fx the f32 view's one (one reader on %.2f cores; "
              "with two the daemon on %.1f)" % (
            v + ", 2 readers", med[v + " 2r"] / 1e6, med[v + " 2r"] / med[v], med[v + " 2r"] / med["f32"],
            med[v + " reader"], med[v + " 2r cores"]))
        print("%-22s %10.0f %6.2fx copied (-o map_reads; daemon on %.1f cores)" % (
            v + ", mapped", med[v + " mapped"] / 1e6, med[v + " mapped"] / med[v], med[v + " mapped cores"]))
    t1 = med.get("q4_k_m t1")
    for t in sorted({4, ncpu}) if SCALING else ():
        tn = med["q4_k_m t%d" % t]
        print("%-22s %10.0f %6.2fx 1 core (F32 in/s; 1 core: %.0f MB/s)" % ("q4_k_m on %d cores" % t,
                                                                           tn / 1e6, tn / t1, t1 / 1e6))
    print("kernel requests: %.0f KiB average read (f32 view)" % (med["req"] / 1024))
    for k, v in fol.items():
        print("page cache folios, %-12s %s" % (k + ":", "unreadable (not root)" if v is None else
                                               "%d of %d pages in large folios" % (v[0], v[0] + v[1])))


if __name__ == "__main__":
    main()
