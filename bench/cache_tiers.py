#!/usr/bin/env python3
"""Cache tiers: cold conversion vs. memory-tier hit vs. persistent-tier hit.

    bench/cache_tiers.py QUANTFS SRC_ROOT MODEL FILE WORKDIR [VIEW...]

For each view (default fp16 q8_0 q4_k), in one run:
  f32     the f32 view of the same mount (the FUSE path without conversion)
  cold    first read: every block converted (empty cache_dir)
  memory  the same mount after dropping the kernel's pages: blocks come from
          the zstd memory tier (hot tier off, so each block is decoded)
  disk    a fresh mount on the same cache_dir, all page caches dropped
          (echo 3 > /proc/sys/vm/drop_caches where permitted): blocks come
          from entry files
Reports time ratios to the f32 read of the same run, the zstd ratio of the
view's blocks, and the daemon's peak RSS against its memory budget."""
import json
import os
import shutil
import subprocess
import sys
import time

from read_views import drop_cache as drop_file, read_file


def drop_all():
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


class Mount:
    def __init__(self, qfs, src, mnt, opts):
        self.mnt = mnt
        self.p = subprocess.Popen([qfs, src, mnt, "-f", "-o", opts], stderr=subprocess.DEVNULL)
        while not os.path.ismount(mnt):
            if self.p.poll() is not None:
                sys.exit("quantfs exited")
            time.sleep(0.02)

    def stats(self):
        with open(os.path.join(self.mnt, ".quantfs", "stats")) as f:
            return json.load(f)

    def hwm_mb(self):
        with open("/proc/%d/status" % self.p.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0

    def wait_stored(self):
        while True:
            s = self.stats()
            if s["disk"]["bytes_in"] >= s["bytes_quantized"] or not s["disk"]["storing"]:
                return s
            time.sleep(0.05)

    def close(self):
        subprocess.run(["fusermount3", "-u", self.mnt], check=True)
        self.p.wait()


def main():
    qfs, src, model, fname, work = sys.argv[1:6]
    views = sys.argv[6:] or ["fp16", "q8_0", "q4_k"]
    mnt = os.path.join(work, "mnt-cache")
    os.makedirs(mnt, exist_ok=True)
    cache_size = 2 << 30
    opts = "cache_size=%d,hot_size=0,cache_dir=%s" % (cache_size, os.path.join(work, "cachedir"))
    print("%-6s %9s %9s %9s %9s %9s %9s %8s %10s" % ("view", "MiB", "f32", "cold", "memory", "disk", "disk/mem",
                                                   "zstd", "peak RSS"))
    dropped = True
    for v in views:
        shutil.rmtree(os.path.join(work, "cachedir"), ignore_errors=True)
        m = Mount(qfs, src, mnt, opts)
        f32 = os.path.join(mnt, model, "f32", fname)
        path = os.path.join(mnt, model, v, fname)
        read_file(f32)  # source pages in the page cache: the conversion is measured, not the disk
        drop_file(f32)
        _, t_f32 = read_file(f32)
        n, t_cold = read_file(path)
        s = m.wait_stored()
        ratio = s["memory"]["compression_ratio"]
        drop_file(path)
        _, t_mem = read_file(path)
        rss = m.hwm_mb()
        s2 = m.stats()
        assert s2["blocks_computed"] == s["blocks_computed"], "memory pass converted again"
        m.close()
        m = Mount(qfs, src, mnt, opts)
        read_file(os.path.join(mnt, model, "f32", fname))
        dropped = drop_all() and dropped
        _, t_disk = read_file(path)
        s3 = m.stats()
        assert s3["blocks_computed"] == 0 and s3["disk"]["hits"] > 0, s3
        m.close()
        budget = (cache_size >> 20)
        print("%-6s %9.0f %8.2fx %8.2fx %8.2fx %8.2fx %8.2fx %7.2fx %5.0f MB (%d)" %
              (v, n / 2**20, 1.0, t_cold / t_f32, t_mem / t_f32, t_disk / t_f32, t_disk / t_mem, ratio, rss,
               budget))
    print("ratios are read times relative to the f32 view's read in the same run (lower is faster);")
    print("zstd = plain/stored bytes of the view's blocks; peak RSS (memory budget MB) of the daemon")
    if not dropped:
        print("note: could not drop page caches: the disk pass read entry files from the page cache")


if __name__ == "__main__":
    main()
