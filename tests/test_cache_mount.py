"""The block cache through real mounts: the zstd memory tier, the persistent
tier (cache_dir) across mounts and shared by two daemons, damaged entries,
a full disk, source changes, stats and the user.quantfs.cache xattr."""
import glob
import os
import shutil
import subprocess
import time

import pytest

from conftest import QUANTFS, STORIES_GGUF, drop_page_cache, read_all

VIEWS = ["q8_0", "q4_k", "q6_k", "q4_0"]


def gguf(m, view):
    return m.path("stories260K", view, "stories260K.gguf")


def computed(s):
    """Blocks converted that a tier may hold (f32/f16/bf16 output is
    converted again instead of stored: QC_TRANSIENT)."""
    return s["blocks_computed"] - s["blocks_transient"]


def wait_stored(m, tier, timeout=20):
    """Stores run on worker threads after the reply: wait until every
    computed block is in the tier (or the tier gave up)."""
    deadline = time.time() + timeout
    while True:
        s = m.stats()
        if s[tier]["bytes_in"] >= s["bytes_quantized"] - s["bytes_transient"] or (tier == "disk" and not s["disk"]["storing"]):
            return s
        if time.time() > deadline:
            pytest.fail("blocks were not stored in %s: %r" % (tier, s))
        time.sleep(0.05)


@pytest.fixture
def src(tmp_path):
    """A source root with a private copy of stories260K (tests change it)."""
    d = tmp_path / "src" / "stories260K"
    d.mkdir(parents=True)
    shutil.copy(STORIES_GGUF, d / "stories260K.gguf")
    return tmp_path / "src"


@pytest.fixture
def reference(mount_factory, src):
    """Every view's bytes from a mount without a persistent tier."""
    m = mount_factory(src, "hot_size=0")
    out = {v: read_all(gguf(m, v)) for v in VIEWS}
    m.umount()
    return out


def test_memory_tier_serves_after_page_cache_drop(mount_factory, src, reference):
    m = mount_factory(src, "hot_size=0")  # no idle plain blocks: repeats must come from zstd frames
    for v in VIEWS:
        assert read_all(gguf(m, v)) == reference[v]
    s1 = wait_stored(m, "memory")
    assert s1["memory"]["entries"] > 0
    # quantized frames compress a little (the scales): the ratio is above 1
    assert s1["memory"]["compression_ratio"] > 1.0
    for v in VIEWS:
        drop_page_cache(gguf(m, v))
        assert read_all(gguf(m, v)) == reference[v]
    s2 = m.stats()
    assert computed(s2) == computed(s1)
    # every block again from a frame (the entries also hold the source ranges' hashes)
    assert s2["memory"]["hits"] >= computed(s1)
    assert s2["memory"]["bytes_out"] > 0 and s2["memory"]["checksum_failures"] == 0
    assert os.getxattr(gguf(m, "q8_0"), "user.quantfs.cache") == b"1.0000"


def wait_released(m):
    """Waits until the hot tier holds nothing (hot_size=0: no idle block
    is kept). A FUSE thread releases a reply's blocks after it sends it, so a
    re-read can come first and find the last reply's blocks still held: all
    48 of this small fp16 view's were, once in a clean-clone run, and the
    re-read converted none (the same with a 300 ms delay before the release:
    checked)."""
    deadline = time.time() + 10
    while m.stats()["hot"]["bytes"]:
        assert time.time() < deadline, m.stats()
        time.sleep(0.01)


def test_f16_output_is_converted_again_not_stored(mount_factory, src, tmp_path):
    """fp16/bf16 blocks cost less to convert than to keep (QC_TRANSIENT):
    no tier holds them, a re-read converts them again, the bytes are the
    same, and the cache xattr counts only what a tier would hold."""
    m = mount_factory(src, "hot_size=0", "cache_dir=%s" % (tmp_path / "cache"))
    first = read_all(gguf(m, "fp16"))
    s1 = m.stats()
    assert s1["blocks_transient"] > 0 and s1["blocks_transient"] == s1["blocks_computed"]
    assert s1["bytes_transient"] == s1["bytes_quantized"]
    assert s1["memory"]["entries"] == 0 and s1["disk"]["bytes_in"] == 0
    assert os.getxattr(gguf(m, "fp16"), "user.quantfs.cache") == b"1.0000"  # nothing a tier would hold
    drop_page_cache(gguf(m, "fp16"))
    wait_released(m)
    assert read_all(gguf(m, "fp16")) == first
    s2 = m.stats()
    assert s2["blocks_transient"] > s1["blocks_transient"]  # converted again (what the page cache lost)
    assert s2["memory"]["hits"] == s1["memory"]["hits"] and s2["memory"]["entries"] == 0
    # a mix view's quantized tensors are stored, its f32 norms are not
    wait_released(m)  # (the fp16 view's norms are the same blocks)
    read_all(gguf(m, "q4_0"))
    s3 = wait_stored(m, "memory")
    assert s3["memory"]["entries"] > 0 and s3["blocks_transient"] > s2["blocks_transient"]


def test_second_mount_serves_from_cache_dir(mount_factory, src, reference, tmp_path):
    cache = tmp_path / "cache"
    a = mount_factory(src, "cache_dir=%s" % cache)
    assert os.getxattr(gguf(a, "q8_0"), "user.quantfs.cache") == b"0.0000"
    for v in VIEWS:
        assert read_all(gguf(a, v)) == reference[v]
    sa = wait_stored(a, "disk")
    assert sa["disk"]["entries"] > 0 and sa["disk"]["dir"] == str(cache)
    assert computed(sa) > 0
    a.umount()
    entries = glob.glob(str(cache / "qfs1" / "??" / "*"))
    # each block stored once, and the hash of each source range it was made
    # from (content addressing: cache/FORMAT.md)
    assert sa["input_hashes"]["computed"] > 0
    assert len(entries) == computed(sa) + sa["input_hashes"]["computed"]
    assert not os.listdir(cache / "qfs1" / "tmp")  # no temp file left behind

    b = mount_factory(src, "cache_dir=%s" % cache, "hot_size=0")
    assert os.getxattr(gguf(b, "q4_k"), "user.quantfs.cache") == b"1.0000"
    for v in VIEWS:
        assert read_all(gguf(b, v)) == reference[v]
    sb = b.stats()
    assert computed(sb) == 0, sb  # nothing quantized again
    assert sb["input_hashes"]["computed"] == 0, sb  # nor a source range hashed again
    assert sb["disk"]["hits"] == computed(sa)
    assert sb["disk"]["checksum_failures"] == 0


def test_two_daemons_share_cache_dir(mount_factory, src, reference, tmp_path):
    cache = tmp_path / "cache"
    a = mount_factory(src, "cache_dir=%s" % cache, "hot_size=0")
    b = mount_factory(src, "cache_dir=%s" % cache, "hot_size=0")
    # both at once, same blocks: each daemon serves right bytes whatever the other writes
    procs = [subprocess.Popen(["sh", "-c", "for i in 1 2 3; do cat %s >/dev/null; done" % gguf(m, v)])
             for m in (a, b) for v in VIEWS]
    assert all(p.wait() == 0 for p in procs)
    for m in (a, b):
        for v in VIEWS:
            drop_page_cache(gguf(m, v))
            assert read_all(gguf(m, v)) == reference[v]
    # what a stored, b reads: a view only a has read is served to b from disk
    wait_stored(a, "disk")
    wait_stored(b, "disk")
    assert read_all(gguf(a, "q5_0")) == read_all(gguf(a, "q5_0"))
    wait_stored(a, "disk")
    before = computed(b.stats())
    q5 = read_all(gguf(b, "q5_0"))
    assert computed(b.stats()) == before
    assert q5 == read_all(gguf(a, "q5_0"))
    for m in (a, b):
        assert m.stats()["disk"]["checksum_failures"] == 0


def test_damaged_entries_are_recomputed(mount_factory, src, reference, tmp_path):
    cache = tmp_path / "cache"
    a = mount_factory(src, "cache_dir=%s" % cache)
    for v in VIEWS:
        read_all(gguf(a, v))
    wait_stored(a, "disk")
    a.umount()
    entries = sorted(glob.glob(str(cache / "qfs1" / "??" / "*")))
    assert len(entries) >= 8
    # every third entry: a flipped payload byte, a truncation, a bad header
    damaged = 0
    for i, e in enumerate(entries):
        if i % 3:
            continue
        data = bytearray(open(e, "rb").read())
        kind = (i // 3) % 3
        if kind == 0:
            data[-7] ^= 0x10
        elif kind == 1:
            data = data[:len(data) // 2]
        else:
            data[3] ^= 0xFF
        open(e, "wb").write(bytes(data))
        damaged += 1
    b = mount_factory(src, "cache_dir=%s" % cache, "hot_size=0")
    b.expect_log(r"entry [0-9a-f]{32} is corrupt or truncated; deleted and recomputed")
    for v in VIEWS:
        assert read_all(gguf(b, v)) == reference[v]
    s = b.stats()
    assert s["disk"]["checksum_failures"] == damaged
    # each damaged entry made again: a block, or the hash of a source range
    assert computed(s) + s["input_hashes"]["computed"] == damaged
    assert s["errors"] == 0


def test_full_cache_dir_keeps_serving(mount_factory, src, reference, tmp_path):
    cache = tmp_path / "tiny"
    cache.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(cache)]).returncode:
        pytest.skip("cannot mount a tmpfs (not root?)")
    try:
        m = mount_factory(src, "cache_dir=%s" % cache, "cache_dir_size=1G", "hot_size=0")
        m.expect_log(r"cache_dir .*: cannot store blocks \(No space left on device\)")
        for v in VIEWS:
            assert read_all(gguf(m, v)) == reference[v]
        s = wait_stored(m, "disk")
        assert not s["disk"]["storing"] and s["disk"]["store_errors"] >= 1
        assert s["errors"] == 0
        m.umount()
        assert len([ln for ln in m.output().splitlines() if "cannot store" in ln]) == 1  # logged once
    finally:
        subprocess.run(["umount", "-l", str(cache)])


def changed_under_cache_dir(mount_factory, src, cache, change):
    """Fills cache_dir from one mount, lets change(path, data) write a
    version with the same size (new bytes in the last tensor's data), then
    returns a fresh mount on the same cache_dir and the new version's q8_0
    bytes as a mount without a cache_dir gives them. Blocks are keyed by
    the bytes they are made from: the unchanged tensors' blocks serve the
    new version too, the changed tensor's are made again."""
    path = src / "stories260K" / "stories260K.gguf"
    a = mount_factory(src, "cache_dir=%s" % cache)
    old = read_all(gguf(a, "q8_0"))
    wait_stored(a, "disk")
    a.umount()
    data = bytearray(path.read_bytes())
    for i in range(len(data) - 4096, len(data) - 4):
        data[i] = 0x3C if i % 4 == 3 else 0
    change(path, bytes(data))
    expected = read_all(gguf(mount_factory(src), "q8_0"))
    assert expected != old
    return mount_factory(src, "cache_dir=%s" % cache), expected


def test_source_change_makes_entries_unreachable(mount_factory, src, tmp_path):
    def replace(path, data):  # atomically, as most tools do
        tmp = path.with_suffix(".new")
        tmp.write_bytes(data)
        os.rename(tmp, path)
    b, expected = changed_under_cache_dir(mount_factory, src, tmp_path / "cache", replace)
    # a new version's ranges are not hashed yet: nothing is known cached
    assert os.getxattr(gguf(b, "q8_0"), "user.quantfs.cache") == b"0.0000"
    assert read_all(gguf(b, "q8_0")) == expected
    s = b.stats()
    assert s["disk"]["hits"] > 0 and computed(s) > 0  # unchanged tensors shared, the changed one made again
    assert s["input_hashes"]["computed"] > 0  # the new version's ranges hashed from its bytes


def test_in_place_rewrite_keeping_size_and_mtime(mount_factory, src, tmp_path):
    """cp -p / rsync --inplace -t: the same inode, size and mtime, new bytes.
    A remount on the same cache_dir may not take the old version's input
    hashes (ctime moved: it is part of their keys), so the changed tensor's
    blocks are made again from the new bytes."""
    def rewrite(path, data):
        st = os.stat(path)
        with open(path, "r+b") as f:  # in place: same inode
            f.write(data)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        st2 = os.stat(path)
        assert (st2.st_ino, st2.st_size, st2.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)
    b, expected = changed_under_cache_dir(mount_factory, src, tmp_path / "cache", rewrite)
    assert read_all(gguf(b, "q8_0")) == expected
    s = b.stats()
    assert s["disk"]["hits"] > 0 and computed(s) > 0
    assert s["input_hashes"]["computed"] > 0


def test_cache_options_are_checked(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for opt, word in (("cache_dir=/proc/version/x", "cache_dir"), ("cache_dir_size=big", "cache_dir_size"),
                      ("hot_size=x", "hot_size")):
        r = subprocess.run([QUANTFS, str(tmp_path), str(mnt), "-f", "-o", opt], capture_output=True, text=True,
                           timeout=20)
        assert r.returncode != 0 and word in r.stderr, (opt, r.stderr)
        assert not os.path.ismount(mnt)
