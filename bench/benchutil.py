"""Helpers shared by the benchmark scripts: mounts and synthetic stores."""
import os
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
GGUF = os.path.join(HERE, "..", "..", "shared", "models", "stories260K", "gguf", "stories260K.gguf")


def mount(quantfs, src, *opts):
    """Mounts src on a fresh temporary directory (daemonized); its path."""
    mnt = tempfile.mkdtemp()
    args = [quantfs, src, mnt]
    for o in opts:
        args += ["-o", o]
    subprocess.run(args, check=True)
    return mnt


def umount(mnt):
    subprocess.run(["fusermount3", "-u", mnt], check=True)
    os.rmdir(mnt)


def store(src, n, gguf=GGUF, name="model.gguf"):
    """A source root of n model directories m0000.. holding hard links of
    one GGUF (made once)."""
    if not os.path.isdir(src):
        for i in range(n):
            os.makedirs(os.path.join(src, "m%04d" % i))
            os.link(gguf, os.path.join(src, "m%04d" % i, name))
    return src


def timed_read(path):
    """One sequential read of path with 1 MiB reads: (seconds, bytes, sha256)."""
    import hashlib
    import time
    h = hashlib.sha256()
    n = 0
    t = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            n += len(b)
            h.update(b)
    return time.perf_counter() - t, n, h.hexdigest()
