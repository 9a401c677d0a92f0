#!/usr/bin/python3
"""What the hardening costs, as ratios measured in one run:

1. the descriptor pool: reading the f32 and q8_0 views of every model of a
   store of N models with -o max_fds=4 (every read reopens its source and
   checks its identity) vs the default (no reopen);
2. timed source calls: the f32 and q8_0 views (336 MB synthetic model) of a
   model whose files are on another FUSE filesystem (a second quantfs
   serving the model's f32 view) read with source_timeout=30 (each call on
   a call thread, into its own buffer) vs source_timeout=0 (plain preads),
   over the same inner mount; medians of three alternating rounds.

    bench/hardening.py QUANTFS WORKDIR [N]   (default N = 200)"""
import os
import subprocess
import sys
import tempfile
import time

from benchutil import HERE, mount, store, umount


def read_tree(paths):
    t = time.perf_counter()
    n = 0
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                n += len(b)
    return time.perf_counter() - t, n


def drop(paths):
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def main():
    quantfs, work = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    src = store(os.path.join(work, "store%d" % n), n)
    print("== descriptor pool: %d models, f32 + q8_0 of each, cold mount" % n)
    res = {}
    for fds in (1024, 4):
        mnt = mount(quantfs, src, "max_fds=%d" % fds)
        try:
            files = [os.path.join(mnt, "m%04d" % i, v, "model.gguf") for i in range(n) for v in ("f32", "q8_0")]
            t, nb = read_tree(files)
            drop(files)
            t2, _ = read_tree(files)  # again: every source reopened when max_fds=4
            with open(os.path.join(mnt, ".quantfs", "stats")) as f:
                import json
                s = json.load(f)["source_fds"]
            res[fds] = (t, t2)
            print("max_fds=%-5d first read %.3f s, second %.3f s (%d MB), reopens %d, evictions %d" %
                  (fds, t, t2, nb >> 20, s["reopens"], s["evictions"]))
        finally:
            umount(mnt)
    print("ratio max_fds=4 / default: first read %.2fx, second read %.2fx" %
          (res[4][0] / res[1024][0], res[4][1] / res[1024][1]))

    print("== timed source calls: a model on another FUSE mount")
    big = os.path.join(work, "big", "synth")
    if not os.path.exists(os.path.join(big, "synth.gguf")):
        os.makedirs(big, exist_ok=True)
        subprocess.run([sys.executable, os.path.join(HERE, "make_model.py"), os.path.join(big, "synth.gguf"),
                        "--dim", "1024", "--ffn", "2816", "--layers", "4", "--vocab", "16000"], check=True)
    inner = mount(quantfs, os.path.dirname(big))
    outer_src = tempfile.mkdtemp(dir=work)
    os.symlink(os.path.join(inner, "synth", "f32"), os.path.join(outer_src, "remote"))
    try:
        out = {0: [[], []], 30: [[], []]}
        for rnd in range(3):  # alternating, the median of three of each
            for timeout in ((0, 30) if rnd % 2 == 0 else (30, 0)):
                mnt = mount(quantfs, outer_src, "follow_symlinks", "source_timeout=%d" % timeout)
                try:
                    for k, v in enumerate(("f32", "q8_0")):
                        p = os.path.join(mnt, "remote", v, "synth.gguf")
                        drop([p, os.path.join(inner, "synth", "f32", "synth.gguf")])
                        t, nb = read_tree([p])
                        out[timeout][k].append(t)
                finally:
                    umount(mnt)
        med = {k: [sorted(x)[1] for x in v] for k, v in out.items()}
        for timeout in (0, 30):
            print("source_timeout=%-2d f32 %.3f s, q8_0 %.3f s (medians of 3)" % (timeout, *med[timeout]))
        print("ratio timed / untimed: f32 %.2fx, q8_0 %.2fx" % (med[30][0] / med[0][0], med[30][1] / med[0][1]))
    finally:
        os.unlink(os.path.join(outer_src, "remote"))
        os.rmdir(outer_src)
        umount(inner)


if __name__ == "__main__":
    main()
