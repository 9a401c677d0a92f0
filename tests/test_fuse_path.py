"""The read path (issue 22): source bytes spliced into replies, and the
kernel's readahead for the mount. Spliced or copied, every byte of the f32
view and of a passed-through file is the source's, at any offset and size
(reads that start in the view's header and end in spliced tensor data, and
the reverse); the mount's read_ahead_kb is set after the first request
(root only), left alone with read_ahead_kb=0, and a value out of range is
refused. Speed is bench/fuse_path.py's, not a test's."""
import os
import random
import shutil
import stat
import subprocess
import sys
import time

import pytest

from conftest import QUANTFS, STORIES_GGUF, drop_page_cache, read_all

HF = os.path.join(os.path.dirname(STORIES_GGUF), "..", "hf")


@pytest.fixture
def src(tmp_path):
    s = tmp_path / "src"
    (s / "m").mkdir(parents=True)
    shutil.copy(STORIES_GGUF, s / "m" / "stories260K.gguf")
    shutil.copytree(HF, s / "hfm")
    return s


def bdi_read_ahead(path):
    dev = os.stat(path).st_dev
    with open("/sys/class/bdi/%d:%d/read_ahead_kb" % (os.major(dev), os.minor(dev))) as f:
        return int(f.read())


def check_bytes(m, src):
    ref = read_all(src / "m" / "stories260K.gguf")
    rng = random.Random(7)
    path = m.path("m", "f32", "stories260K.gguf")
    assert read_all(path) == ref
    with open(path, "rb", buffering=0) as f:
        for _ in range(300):
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)  # each read from the daemon
            off = rng.randrange(0, len(ref))
            n = rng.choice([1, 7, 4096, 65536, 131072 + 5, 1 << 20])
            f.seek(off)
            assert f.read(n) == ref[off:off + n], (off, n)
    # a Hugging Face model's f32 view: its shard and config passed through
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert read_all(m.path("hfm", "f32", name)) == read_all(src / "hfm" / name), name


@pytest.mark.parametrize("opts", [(), ("no_splice",), ("read_ahead_kb=0",)])
def test_every_byte_is_the_sources(mount_factory, src, opts):
    m = mount_factory(src, *opts)
    check_bytes(m, src)
    st = m.stats()
    assert st["reads"] > 0 and st["errors"] == 0, st


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may set a mount's read_ahead_kb")
def test_the_mounts_readahead(mount_factory, src, tmp_path):
    m = mount_factory(src, "read_ahead_kb=3968")
    os.listdir(m.mnt)  # the first request after INIT sets it
    assert bdi_read_ahead(m.mnt) == 3968
    assert "kernel readahead for the mount: 3968 KiB" in m.output()
    m2 = mount_factory(src, "read_ahead_kb=0")
    os.listdir(m2.mnt)
    read_all(m2.path("m", "f32", "stories260K.gguf"))
    assert bdi_read_ahead(m2.mnt) != 3968
    assert "kernel readahead" not in m2.output()
    # the default
    m3 = mount_factory(src)
    os.listdir(m3.mnt)
    assert bdi_read_ahead(m3.mnt) == 7936


def test_out_of_range_is_refused(tmp_path, src):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for v in ("2000000", "-1"):
        r = subprocess.run([QUANTFS, str(src), str(mnt), "-o", "read_ahead_kb=" + v], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 1 and "read_ahead_kb" in r.stderr, (v, r.stderr)
        assert not os.path.ismount(mnt)
    assert stat.S_ISDIR(os.stat(mnt).st_mode)


def test_sequential_reads_queue_the_chunks_after_them(mount_factory, tmp_path):
    """The kernel's readahead sends several requests at once and they finish
    in any order: every one of a sequential read's requests is taken for the
    stream and queues the chunks after it for the workers (22% were, when a
    read had to start where the last one finished), reads far apart are not
    taken for one, and a second pass from the start is a stream again."""
    src = tmp_path / "big"
    (src / "m").mkdir(parents=True)
    bench = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "make_model.py")
    subprocess.run([sys.executable, bench, str(src / "m" / "m.gguf"), "--dim", "512", "--ffn", "1536",
                    "--layers", "2", "--vocab", "4000"], check=True, capture_output=True)
    m = mount_factory(src, "readahead=4")
    read_all(m.path("m", "q8_0", "m.gguf"))
    st = m.stats()
    assert st["errors"] == 0 and st["reads"] > 8, st
    assert st["readaheads"] == st["reads"], st
    # each chunk queued once in the pass (a read may offer again the chunk
    # it starts in), not once per read whose window covers it
    assert 0 < st["readahead_chunks"] <= st["blocks_computed"] + st["reads"], st
    # reads more than both read-ahead windows apart (4 MiB + 2 x 7936 KiB),
    # with the kernel's own readahead off, are not a stream
    path = m.path("m", "f32", "m.gguf")
    size = os.path.getsize(path)
    assert size > 40_000_000
    with open(path, "rb", buffering=0) as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
        for off in (size - 4096, size - 4096 - 21_000_000):
            os.pread(f.fileno(), 4096, off)
    st2 = m.stats()
    assert st2["reads"] == st["reads"] + 2, (st, st2)
    assert st2["readaheads"] == st["readaheads"], (st, st2)
    # a second pass through one descriptor (of a file larger than the
    # windows) is a stream again from its start
    path = m.path("m", "f32", "m.gguf")
    with open(path, "rb", buffering=0) as f:
        for _ in range(2):
            drop_page_cache(path)  # both passes reach the daemon
            before = m.stats()
            f.seek(0)
            while f.read(1 << 20):
                pass
            after = m.stats()
            reads, ras = after["reads"] - before["reads"], after["readaheads"] - before["readaheads"]
            assert reads > 8 and ras >= reads - 1, (before, after)
    # what a read queues, the workers make. Not asserted on the pass above:
    # with the kernel's 7936 KiB readahead it asks for this whole small file
    # at once, and the FUSE threads may claim every queued chunk before a
    # worker wakes (CI saw it once). With the kernel's 128 KiB, the chunks
    # queued 4 MiB ahead of a first read wait for the workers alone.
    w = mount_factory(src, "readahead=4", "read_ahead_kb=0")
    with open(w.path("m", "q8_0", "m.gguf"), "rb", buffering=0) as f:
        assert len(f.read(1 << 17)) == 1 << 17
        deadline = time.time() + 30
        while w.stats()["prefetched"] == 0:
            assert time.time() < deadline, w.stats()
            time.sleep(0.01)
        assert w.stats()["readahead_chunks"] > 1, w.stats()


def test_readahead_of_unstored_chunks_fits_the_hot_tier(mount_factory, tmp_path):
    """Chunks converted ahead wait as idle hot blocks. fp16's are never
    stored, so past what the hot tier holds they were evicted unread and
    converted again (3.4x the chunks with hot_size=8M, readahead=16): now
    they go no further ahead than fits, and the daemon says so."""
    src = tmp_path / "big"
    (src / "m").mkdir(parents=True)
    bench = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "make_model.py")
    subprocess.run([sys.executable, bench, str(src / "m" / "m.gguf"), "--dim", "512", "--ffn", "1536",
                    "--layers", "2", "--vocab", "4000"], check=True, capture_output=True)
    ref = mount_factory(src)
    read_all(ref.path("m", "fp16", "m.gguf"))
    chunks = ref.stats()["blocks_computed"]
    assert chunks > 40, ref.stats()
    m = mount_factory(src, "hot_size=8M", "readahead=16")
    assert "converted at most 0 MB ahead" in m.output(), m.output()
    read_all(m.path("m", "fp16", "m.gguf"))
    st = m.stats()
    assert st["errors"] == 0 and st["blocks_computed"] <= chunks + chunks // 10, (chunks, st)


def test_max_background_reaches_the_kernel(mount_factory, tmp_path):
    """-o max_background goes to the kernel in the INIT reply, with a
    congestion threshold of 3/4 of it; without it the kernel keeps its own
    (12 and 9). Read back from the FUSE control filesystem."""
    conn = "/sys/fs/fuse/connections"
    if not os.path.ismount(conn) and subprocess.run(["mount", "-t", "fusectl", "fusectl", conn],
                                                    capture_output=True).returncode:
        pytest.skip("no FUSE control filesystem at %s (mounting it needs root)" % conn)
    src = tmp_path / "src"
    (src / "m").mkdir(parents=True)
    shutil.copy(STORIES_GGUF, src / "m" / "stories260K.gguf")

    def limits(m):
        d = os.path.join(conn, str(os.minor(os.stat(m.path()).st_dev)))
        return tuple(int(open(os.path.join(d, k)).read()) for k in ("max_background", "congestion_threshold"))
    assert limits(mount_factory(src)) == (12, 9)
    assert limits(mount_factory(src, "max_background=40")) == (40, 30)
