#!/usr/bin/python3
"""Cold full reads of GGUF mix views through a mount vs llama-quantize of
the same type, both in one run on the same cores.

    bench/mixes.py QUANTFS SRC_DIR MODEL FILE LLAMA_QUANTIZE TMPFS_DIR [TYPE...]

A TYPE ending in -imat (q4_k_m-imat, iq4_xs-imat) is the -imat view, against
`llama-quantize --imatrix IMATRIX` run in the model's directory; the model
directory must then hold its imatrix.gguf (bench/imatrix.sh makes one).
THREADS (environment, default 2): llama-quantize's thread count.

For each type: llama-quantize SRC OUT TYPE with 2 threads writing to
TMPFS_DIR (whole-process wall time, best of 2), then a fresh mount (no
cache_dir, so nothing is cached) and one sequential read of the view with
1 MiB reads. Ratios: llama-quantize time / view read time (the speed-up), and
view read time / the f32 view's read time (the cost of converting)."""
import os
import subprocess
import sys
import tempfile
import time

TYPES = ["q8_0", "q6_k", "q5_k_m", "q5_k_s", "q5_1", "q5_0", "q4_k_m", "q4_k_s", "q4_1", "q4_0", "q3_k_l",
         "q3_k_m", "q3_k_s", "q2_k", "fp16", "bf16"]


def read_file(path):
    fd = os.open(path, os.O_RDONLY)
    t = time.perf_counter()
    n = 0
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            break
        n += len(b)
    dt = time.perf_counter() - t
    os.close(fd)
    return n, dt


def view_read(quantfs, src, model, fname, view):
    mnt = tempfile.mkdtemp()
    subprocess.run([quantfs, src, mnt], check=True)
    try:
        return read_file(os.path.join(mnt, model, view, fname))
    finally:
        subprocess.run(["fusermount3", "-u", mnt], check=True)
        os.rmdir(mnt)


def lq_time(lq, src_file, out, t):
    best = 1e9
    imat = ["--imatrix", "imatrix.gguf"] if t.endswith("-imat") else []
    t = t[:-5] if imat else t
    for _ in range(2):
        t0 = time.perf_counter()
        subprocess.run([lq] + imat + [src_file, out, "F16" if t == "fp16" else t.upper(),
                                      os.environ.get("THREADS", "2")], check=True, cwd=os.path.dirname(src_file),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t0)
        os.unlink(out)
    return best


def main():
    quantfs, src, model, fname, lq, tmpfs = sys.argv[1:7]
    types = sys.argv[7:] or TYPES
    src_file = os.path.abspath(os.path.join(src, model, fname))
    subprocess.run(["cat", src_file], stdout=subprocess.DEVNULL, check=True)  # page cache
    _, f32 = view_read(quantfs, src, model, fname, "f32")
    gb = os.path.getsize(src_file) / 1e9
    print("source %.0f MB F32; f32 view read %.2f s (%.2f GB/s)" % (gb * 1e3, f32, gb / f32))
    print("%-12s %10s %10s %12s %12s %10s %10s" % ("type", "lq s", "view s", "lq GB/s in", "view GB/s in",
                                                   "speed-up", "view/f32"))
    for t in types:
        lqs = lq_time(lq, src_file, os.path.join(tmpfs, "bench-out.gguf"), t)
        n, vs = view_read(quantfs, src, model, fname, t)
        print("%-12s %10.2f %10.2f %12.3f %12.3f %9.2fx %9.2fx" % (t, lqs, vs, gb / lqs, gb / vs, lqs / vs, vs / f32))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
