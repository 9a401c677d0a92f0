#!/usr/bin/env python3
"""Content-addressed cache keys (issue 23), as ratios measured in one run.

    bench/fleet.py QUANTFS MODEL.gguf WORKDIR [VIEW...]

MODEL.gguf: an F32 GGUF (bench/make_model.py). For each view (default q8_0
q4_k_m), three daemons share one fresh cache_dir, one after the other:
  first    node A over its copy of the model: hashes every input range and
           converts every block
  copy     node B over its own copy (another inode, as another machine's
           copy or an rsync'd store): hashes its copy, converts nothing
  restart  node A again (same inode and times): finds the hashes and the
           blocks in cache_dir, reads no source byte to name a block
It prints the time the daemon spent hashing (xxh3 alone) against converting
(the key's cost per cold read), and each node's read time against the
first's, with the block and hash counts that say what was shared. With
BEFORE=/path/to/an/older/quantfs (place-keyed cache, e.g. built from
d7ab338), the first node's cold read is also timed against that binary's,
alternating, median of 3. The sources stay in the
page cache (the view files are fresh per mount)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from read_views import read_file  # noqa: E402


def mount(qfs, src, opts):
    mnt = tempfile.mkdtemp()
    subprocess.run([qfs, src, mnt, "-o", opts], check=True, stderr=subprocess.DEVNULL)
    return mnt


def stats(mnt):
    with open(os.path.join(mnt, ".quantfs", "stats")) as f:
        return json.load(f)


def umount(mnt):
    subprocess.run(["fusermount3", "-u", mnt], check=True)
    os.rmdir(mnt)


def node(qfs, src, cache, view):
    mnt = mount(qfs, src, "cache_dir=%s,hot_size=0" % cache)
    path = os.path.join(mnt, "m", view, "model.gguf")
    t = time.perf_counter()
    read_file(path)
    dt = time.perf_counter() - t
    time.sleep(0.5)
    s = stats(mnt)
    umount(mnt)  # finishes the queued stores
    return dt, s


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    qfs, model, work = sys.argv[1:4]
    views = sys.argv[4:] or ["q8_0", "q4_k_m"]
    srcs = []
    for n in ("a", "b"):
        d = os.path.join(work, "src-" + n, "m")
        if not os.path.exists(os.path.join(d, "model.gguf")):
            os.makedirs(d, exist_ok=True)
            shutil.copy(model, os.path.join(d, "model.gguf"))
        read_file(os.path.join(d, "model.gguf"))  # into the page cache
        srcs.append(os.path.dirname(d))
    print("%-8s %-8s %9s %9s %8s %8s %8s" % ("view", "node", "read/1st", "hash/conv", "blocks", "hashes", "hits"))
    print("(read/1st: the view's read time against the first node's; hash/conv: the daemon's time hashing input")
    print(" ranges against converting them; blocks, hashes: computed by that node; hits: cache_dir hits)")
    for v in views:
        cache = os.path.join(work, "cache-" + v)
        shutil.rmtree(cache, ignore_errors=True)
        first = None
        for name, src in (("first", srcs[0]), ("copy", srcs[1]), ("restart", srcs[0])):
            dt, s = node(qfs, src, cache, v)
            first = first or dt
            conv = s["quantize_seconds"]
            ih = s["input_hashes"]
            blocks = s["blocks_computed"] - s["blocks_transient"]
            print("%-8s %-8s %8.2fx %9s %8d %8d %8d" % (
                v, name, dt / first, "%.3f" % (ih["seconds"] / conv) if conv and blocks else "-", blocks, ih["computed"],
                s["disk"]["hits"]))
    if os.environ.get("BEFORE"):
        before(qfs, os.environ["BEFORE"], srcs[0], views)


def before(qfs, old, src, views):
    """Cold read time of each view: this binary against an older one."""
    import statistics
    for v in views:
        t = {qfs: [], old: []}
        for _ in range(3):
            for b in (old, qfs):
                mnt = mount(b, src, "hot_size=0")
                t0 = time.perf_counter()
                read_file(os.path.join(mnt, "m", v, "model.gguf"))
                t[b].append(time.perf_counter() - t0)
                umount(mnt)
        print("%-8s cold read, this binary / BEFORE: %.2fx" % (v, statistics.median(t[qfs]) / statistics.median(t[old])))


if __name__ == "__main__":
    main()
