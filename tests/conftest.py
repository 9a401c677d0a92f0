"""Mount fixtures: real quantfs mounts through the kernel.

A mount waits for the mount point to appear, unmounts with fusermount3,
requires the daemon to exit 0, and fails the test if the daemon printed an
error or warning the test did not declare (sshfs test/util.py style)."""
import ctypes
import json
import mmap
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

SHARED = os.path.abspath(os.environ.get("QUANTFS_SHARED",
                                        os.path.join(os.path.dirname(__file__), "..", "..", "shared")))
QUANTFS = os.environ.get("QUANTFS_BIN", os.path.join(os.path.dirname(__file__), "..", "build", "fs", "quantfs"))
STORIES_GGUF = os.path.join(SHARED, "models", "stories260K", "gguf", "stories260K.gguf")
REFS = os.path.join(SHARED, "refs")

MIXES = os.path.join(REFS, "mixes")  # llama-quantize's own output
# the views a GGUF model lists (llama-quantize's names; aliases are not listed)
ALL_VIEWS = ["f32", "fp16", "bf16", "q8_0", "q6_k", "q5_k_m", "q5_k_s", "q5_1", "q5_0", "q4_k_m", "q4_k_s",
             "q4_1", "q4_0", "q3_k_l", "q3_k_m", "q3_k_s", "q2_k", "q8_0-pure", "q6_k-pure", "q5_k-pure",
             "q5_1-pure", "q5_0-pure", "q4_k-pure", "q4_1-pure", "q4_0-pure", "q3_k-pure", "q2_k-pure"]
# listed beside them for every GGUF model (their references: tests/refs/imatrix.json)
IQ4_VIEWS = ["iq4_xs", "iq4_nl", "iq3_m", "iq3_s"]
LISTED_VIEWS = ALL_VIEWS + IQ4_VIEWS
# listed for a model with an imatrix file (llama-quantize --imatrix)
IMAT_VIEWS = ["q8_0-imat", "q6_k-imat", "q5_k_m-imat", "q5_k_s-imat", "q5_1-imat", "q5_0-imat", "q4_k_m-imat",
              "q4_k_s-imat", "q4_1-imat", "q4_0-imat", "iq4_xs-imat", "iq4_nl-imat", "q3_k_l-imat", "q3_k_m-imat",
              "q3_k_s-imat", "q2_k-imat", "iq3_m-imat", "iq3_s-imat", "iq3_xs-imat", "iq3_xxs-imat", "iq2_m-imat"]
# the mixes llama-quantize makes only with an imatrix (IQ3_XXS and IQ2_S tensors need one)
IMAT_ONLY = ["iq3_xs-imat", "iq3_xxs-imat", "iq2_m-imat"]


def pytest_configure(config):
    # every mount test reads ../shared: without it, say so and report
    # "skipped" to meson (exit 77) rather than fail
    if not os.path.isdir(os.path.join(SHARED, "models", "stories260K")):
        pytest.exit("skipped: %s is absent (QUANTFS_SHARED or ../shared)" % SHARED, returncode=77)


def pytest_collection_modifyitems(config, items):
    if not os.path.exists("/dev/fuse"):
        skip = pytest.mark.skip(reason="/dev/fuse is missing")
        for it in items:
            if "mount" in it.fixturenames or "mount_factory" in it.fixturenames:
                it.add_marker(skip)


class Mount:
    def __init__(self, source, mnt, opts, log, prefix=()):
        self.source, self.mnt, self.log_path = source, mnt, log
        args = [*prefix, QUANTFS, source, mnt, "-f"]
        for o in opts:
            args += ["-o", o]
        self.log = open(log, "w+")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + (20 if not prefix else 180)
        while not os.path.ismount(mnt):
            if self.proc.poll() is not None:
                raise RuntimeError("quantfs exited with %d:\n%s" % (self.proc.returncode, self.output()))
            if time.time() > deadline:
                self.proc.kill()
                raise RuntimeError("mount did not appear:\n" + self.output())
            time.sleep(0.02)
        self.allowed = []

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def path(self, *parts):
        return os.path.join(self.mnt, *parts)

    def stats(self):
        import json
        with open(self.path(".quantfs", "stats")) as f:
            return json.load(f)

    def expect_log(self, pattern):
        """Declare a log line this test expects (it is then not a failure)."""
        self.allowed.append(re.compile(pattern))

    def require_log(self, pattern, timeout=5.0):
        """A log line this test expects, which must have been written (or be
        within timeout seconds)."""
        self.expect_log(pattern)
        end = time.time() + timeout
        while not re.search(pattern, self.output()):
            assert time.time() < end, "no log line matches %r:\n%s" % (pattern, self.output())
            time.sleep(0.05)

    def umount(self):
        if self.log.closed:  # unmounted already
            return
        if os.path.ismount(self.mnt):
            # the kernel's asynchronous read-ahead of a file just closed may
            # still be in flight (a slow, sanitized daemon converting it):
            # give it a few seconds before calling the mount busy
            for _ in range(50):
                if subprocess.run(["fusermount3", "-u", self.mnt], stderr=subprocess.DEVNULL).returncode == 0:
                    break
                time.sleep(0.2)
            if os.path.ismount(self.mnt):
                # busy (a failed test left a file open): detach, then fail
                subprocess.run(["fusermount3", "-u", "-z", self.mnt])
                self.proc.wait(timeout=20)
                raise RuntimeError("mount point was busy at unmount")
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        out = self.output()
        self.log.close()
        assert rc == 0, "quantfs exited with %d:\n%s" % (rc, out)
        for line in out.splitlines():
            if re.search(r"error|warning|sanitizer|runtime error", line, re.I) and \
                    not any(p.search(line) for p in self.allowed):
                pytest.fail("unexpected daemon output: " + line)


def read_all(path):
    with open(path, "rb") as f:
        return f.read()


def llama_generate(paths, tokens=24, lora=None, timeout=600):
    """Each GGUF in paths loaded by llama.cpp (tests/node/generate.mjs) and
    run greedily from BOS for `tokens` tokens: {path: {"tokens": [...],
    "text": ...} or {"error": ...}}. generate.mjs runs one model at a time on
    one thread, so the paths are dealt to one process per CPU (at most 4):
    the loads through the mount and the daemon's conversions overlap. Every
    process must exit 0."""
    node_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
    env = dict(os.environ, GEN_TOKENS=str(tokens), GEN_LORA=lora or "")
    k = max(1, min(len(paths), os.cpu_count() or 1, 4))
    outs = [(tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")) for _ in range(k)]  # no pipe to fill
    procs = [subprocess.Popen(["node", os.path.join(node_dir, "generate.mjs")] + paths[i::k], cwd=node_dir, env=env,
                              stdout=outs[i][0], stderr=outs[i][1], text=True) for i in range(k)]
    got = {}
    try:
        deadline = time.time() + timeout
        for p, (out, err) in zip(procs, outs):
            p.wait(max(1, deadline - time.time()))
            err.seek(0)
            assert p.returncode == 0, err.read()
            out.seek(0)
            for line in out:
                if line.startswith("{"):
                    r = json.loads(line)
                    got[r["path"]] = r
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for o in outs:
            o[0].close()
            o[1].close()
    return got


def cached_pages(path):
    """How many of path's pages are in the kernel page cache (mincore(2))."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    size = os.path.getsize(path)
    if not size:
        return 0
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)  # private: writable for ctypes, never written
    view = ctypes.c_char.from_buffer(m)
    try:
        addr = ctypes.addressof(view)
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vec = ctypes.create_string_buffer(pages)
        if libc.mincore(addr, size, vec):
            raise OSError(ctypes.get_errno(), "mincore")
        return sum(b & 1 for b in vec.raw)
    finally:
        del view  # the buffer export, before close
        m.close()


def drop_page_cache(path):
    """Evict a file's pages from the kernel page cache, so the next read
    reaches the daemon again. FADV_DONTNEED skips pages that are busy at
    that moment (seen once in CI: a re-read converted nothing), so it is
    repeated until mincore shows none left."""
    deadline = time.time() + 10
    while True:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        left = cached_pages(path)
        if not left:
            return
        if time.time() > deadline:
            pytest.fail("%d pages of %s stayed in the page cache" % (left, path))
        time.sleep(0.05)


@pytest.fixture
def mount_factory(tmp_path):
    mounts = []

    def make(source, *opts, prefix=()):
        """prefix: a command the daemon runs under (prlimit, valgrind)."""
        mnt = tmp_path / ("mnt%d" % len(mounts))
        mnt.mkdir()
        m = Mount(str(source), str(mnt), list(opts), str(tmp_path / ("log%d.txt" % len(mounts))), prefix)
        mounts.append(m)
        return m

    yield make
    errors = []
    for m in mounts:
        try:
            m.umount()
        except BaseException as e:  # report all, then fail
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def stories_src(tmp_path):
    """Source root: model 'stories260K' (a directory with the GGUF and two
    non-GGUF files) and a loose 'kernels.gguf'."""
    src = tmp_path / "src"
    d = src / "stories260K"
    d.mkdir(parents=True)
    shutil.copy(STORIES_GGUF, d / "stories260K.gguf")
    (d / "README.md").write_text("# stories260K\nTinyStories model.\n")
    shutil.copy(os.path.join(SHARED, "models", "stories260K", "tok512.bin"), d / "tok512.bin")
    shutil.copy(os.path.join(REFS, "kernels.gguf"), src / "kernels.gguf")
    return src


@pytest.fixture
def mount(mount_factory, stories_src):
    return mount_factory(stories_src)
