#!/usr/bin/python3
"""The namespace of a large store, in one run: mount time, `ls -l` of the
root and of every model's directory, and how long a model copied in takes
to appear, with N model directories (hard links of stories260K.gguf).

    bench/namespace.py QUANTFS WORKDIR [N]   (default N = 500)"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchutil import GGUF, store


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    quantfs, work = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    src = store(os.path.join(work, "src%d" % n), n)
    mnt = tempfile.mkdtemp()
    t = time.perf_counter()
    subprocess.run([quantfs, src, mnt], check=True)
    t_mount = time.perf_counter() - t
    try:
        t_root = timed("ls -l %s" % mnt)
        t_root2 = timed("ls -l %s" % mnt)
        t_models = timed("ls -l %s/*/ " % mnt)
        t_views = timed("ls -l %s/*/q4_k_m/" % mnt)
        t_views2 = timed("ls -l %s/*/q4_k_m/" % mnt)
        new = os.path.join(src, "zz-new")
        os.makedirs(new)
        t = time.perf_counter()
        shutil.copyfile(GGUF, os.path.join(new, "model.gguf"))
        while not os.path.isdir(os.path.join(mnt, "zz-new")):
            time.sleep(0.01)
        t_appear = time.perf_counter() - t
        shutil.rmtree(new)
    finally:
        subprocess.run(["fusermount3", "-u", mnt], check=True)
        os.rmdir(mnt)
    print("%d models: mount %.3f s; ls -l of the root %.3f s (again %.3f s); of every model %.3f s; of every "
          "model's q4_k_m/ %.3f s (again %.3f s); a model copied in appeared after %.2f s (settle 1 s)" %
          (n, t_mount, t_root, t_root2, t_models, t_views, t_views2, t_appear))


if __name__ == "__main__":
    main()
