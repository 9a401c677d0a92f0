"""Integration tests: real FUSE mounts, reads through the kernel, bytes
compared with ggml's own quantizer output (../shared/refs)."""
import errno
import json
import mmap
import os
import random
import shutil
import struct
import subprocess
import time

import numpy as np
import pytest

from conftest import ALL_VIEWS, LISTED_VIEWS, MIXES, QUANTFS, STORIES_GGUF, read_all
import gguf_reader
from gguf_writer import llama_kvs, write_gguf

# llama.cpp's llama_ftype for each view (general.file_type)
FTYPE = {"fp16": 1, "bf16": 32, "q8_0": 7, "q4_0": 2, "q4_1": 3, "q5_0": 8, "q5_1": 9, "q2_k": 10, "q3_k_s": 11,
         "q3_k_m": 12, "q3_k_l": 13, "q4_k_s": 14, "q4_k_m": 15, "q5_k_s": 16, "q5_k_m": 17, "q6_k": 18,
         "q4_k-pure": 15, "q2_k-pure": 10}


def ref_file(view):
    return os.path.join(MIXES, "stories260K.%s.gguf" % ("f16" if view == "fp16" else view))


def test_views_and_files(mount):
    assert sorted(os.listdir(mount.mnt)) == [".quantfs", "kernels", "stories260K"]
    assert sorted(os.listdir(mount.path("stories260K"))) == sorted(LISTED_VIEWS)
    for v in ALL_VIEWS:
        assert sorted(os.listdir(mount.path("stories260K", v))) == ["README.md", "stories260K.gguf", "tok512.bin"]
    # kernels.gguf has no architecture: llama-quantize refuses it, so only f32
    assert os.listdir(mount.path("kernels")) == ["f32"]
    mount.expect_log(r"model 'kernels': kernels.gguf: no .* view: llama-quantize refuses it: "
                     r"key not found in model: llama.context_length")
    assert not os.path.exists(mount.path("stories260K", "q9_9"))
    assert not os.path.exists(mount.path("nosuchmodel"))


@pytest.mark.parametrize("view", sorted(FTYPE))
def test_view_header_semantics(mount, view):
    """Read with an independent parser: the source's metadata in its order
    minus general.file_type/quantization_version, which come last (in that
    order: quantization_version, then file_type), tensors sorted by layer
    then name, aligned, the file ending at the last tensor's padding; and
    the whole file equals llama-quantize's where there is a reference."""
    path = mount.path("stories260K", view, "stories260K.gguf")
    size = os.stat(path).st_size
    data = read_all(path)
    assert len(data) == size
    got = gguf_reader.GGUF(data)
    src = gguf_reader.load(STORIES_GGUF)
    assert got.version == 3
    keys = [k for k, _ in got.kv_raw]
    assert keys[-2:] == ["general.quantization_version", "general.file_type"]
    assert got.kv["general.file_type"] == FTYPE[view]
    assert got.kv["general.quantization_version"] == 2
    assert got.kv_raw[:-2] == [kv for kv in src.kv_raw
                               if kv[0] not in ("general.file_type", "general.quantization_version")]

    def layer(n):
        return int(n.split(".")[1]) if n.startswith("blk.") else -1
    assert got.order == sorted(src.order, key=lambda n: (layer(n), n))
    for name in got.order:
        assert got.tensors[name]["offset"] % 32 == 0
        assert got.tensors[name]["dims"] == src.tensors[name]["dims"]
    last = got.tensors[got.order[-1]]
    assert size == (last["offset"] + last["nbytes"] + 31) // 32 * 32
    if os.path.exists(ref_file(view)):
        assert data == read_all(ref_file(view))


def test_f32_view_and_passthrough_files(mount, stories_src):
    for v in ALL_VIEWS:
        assert read_all(mount.path("stories260K", v, "README.md")) == \
            read_all(stories_src / "stories260K" / "README.md")
        assert read_all(mount.path("stories260K", v, "tok512.bin")) == \
            read_all(stories_src / "stories260K" / "tok512.bin")
    assert read_all(mount.path("stories260K", "f32", "stories260K.gguf")) == read_all(STORIES_GGUF)
    assert subprocess.run(["cmp", mount.path("stories260K", "f32", "stories260K.gguf"), STORIES_GGUF]).returncode == 0


def test_aliases_are_identical(mount):
    assert read_all(mount.path("stories260K", "int8", "stories260K.gguf")) == \
        read_all(mount.path("stories260K", "q8_0", "stories260K.gguf"))
    assert read_all(mount.path("stories260K", "int4", "stories260K.gguf")) == \
        read_all(mount.path("stories260K", "q4_k_m", "stories260K.gguf"))


@pytest.mark.parametrize("view", ["fp16", "q4_k_m", "q3_k_m", "q8_0"])
def test_random_and_straddling_reads(mount, view):
    path = mount.path("stories260K", view, "stories260K.gguf")
    full = read_all(path)
    g = gguf_reader.GGUF(full)
    # offsets around every boundary: header end, tensor starts and ends
    marks = [0, g.data_start, len(full)]
    for t in g.tensors.values():
        marks += [t["offset"], t["offset"] + t["nbytes"]]
    rnd = random.Random(7)
    fd = os.open(path, os.O_RDONLY)
    try:
        for m in marks:
            for delta in (-33, -1, 0, 1, 17):
                off = max(0, min(len(full), m + delta))
                for n in (1, 31, 4096, 70000):
                    assert os.pread(fd, n, off) == full[off:off + n]
        for _ in range(400):
            off = rnd.randrange(len(full))
            n = rnd.choice([1, 2, 3, 100, 4096, 65536, 300000, 2 << 20])
            assert os.pread(fd, n, off) == full[off:off + n]
        assert os.pread(fd, 100, len(full)) == b""
        assert os.pread(fd, 100, len(full) + 12345) == b""
    finally:
        os.close(fd)


def test_mmap(mount):
    path = mount.path("stories260K", "q6_k", "stories260K.gguf")
    with open(path, "rb") as f:
        full = f.read()
        f.seek(0)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            rnd = random.Random(3)
            for _ in range(200):
                off = rnd.randrange(len(full))
                n = rnd.randrange(1, 9000)
                assert mm[off:off + n] == full[off:off + n]
            assert mm[:] == full


def test_readonly(mount):
    f = mount.path("stories260K", "q8_0", "stories260K.gguf")
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC):
        with pytest.raises(OSError) as e:
            os.open(f, flags)
        assert e.value.errno in (errno.EROFS, errno.EACCES)
    for fn in (lambda: open(mount.path("stories260K", "q8_0", "new"), "w"),
               lambda: os.unlink(f),
               lambda: os.mkdir(mount.path("stories260K", "q9")),
               lambda: os.rename(f, f + ".x"),
               lambda: os.chmod(f, 0o644),
               lambda: os.setxattr(f, "user.x", b"1")):
        with pytest.raises(OSError) as e:
            fn()
        assert e.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
    st = os.stat(f)
    assert st.st_mode & 0o222 == 0


def test_xattrs_and_stats(mount, stories_src):
    f = mount.path("stories260K", "q5_k_m", "stories260K.gguf")
    assert os.getxattr(f, "user.quantfs.view") == b"q5_k_m"
    assert os.getxattr(f, "user.quantfs.source") == str(stories_src / "stories260K" / "stories260K.gguf").encode()
    assert set(os.listxattr(f)) == {"user.quantfs.source", "user.quantfs.view", "user.quantfs.cache"}
    assert os.getxattr(mount.path("stories260K", "int8"), "user.quantfs.view") == b"int8"
    before = mount.stats()
    read_all(f)
    after = mount.stats()
    assert after["bytes_quantized"] > before["bytes_quantized"]
    assert after["reads"] > before["reads"]
    assert after["models"] == 2 and after["errors"] == 0
    for k in ("blocks_computed", "prefetched", "fill_errors"):
        assert isinstance(after[k], int)
    assert after["quantize_seconds"] > 0
    for tier in ("memory", "disk"):
        for k in ("hits", "misses", "bytes_in", "bytes_stored", "bytes_out", "evictions", "checksum_failures",
                  "bytes", "entries"):
            assert isinstance(after[tier][k], int), (tier, k)
    # a second read is served without converting again
    read_all(f)
    assert mount.stats()["bytes_quantized"] == after["bytes_quantized"]


def test_views_option(mount_factory, stories_src):
    m = mount_factory(stories_src, "views=fp16,q4_k_m,q6_k-pure")
    assert sorted(os.listdir(m.path("stories260K"))) == ["fp16", "q4_k_m", "q6_k-pure"]
    assert not os.path.exists(m.path("stories260K", "q8_0"))


def test_unknown_view_is_an_error(tmp_path, stories_src):
    mnt = tmp_path / "m"
    mnt.mkdir()
    r = subprocess.run([QUANTFS, str(stories_src), str(mnt), "-f", "-o", "views=fp16,q9_9"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    assert "unknown view 'q9_9'" in r.stderr
    assert not os.path.ismount(mnt)


def test_bad_source_is_an_error(tmp_path):
    mnt = tmp_path / "m"
    mnt.mkdir()
    r = subprocess.run([QUANTFS, str(tmp_path / "missing"), str(mnt), "-f"], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode != 0 and "missing" in r.stderr
    r = subprocess.run([QUANTFS, str(tmp_path), str(mnt), "-o", "cache_size=lots"], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode != 0 and "cache_size" in r.stderr


def test_self_test_and_version():
    r = subprocess.run([QUANTFS, "--self-test"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "self-test passed" in r.stdout
    r = subprocess.run([QUANTFS, "--version"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and "quantfs" in r.stdout


def make_big_model(path, gib):
    """A sparse F32 GGUF of about gib GiB: one 2-D tensor of zeros (a hole)
    plus a small tensor with real data at the start."""
    rows = int(gib * (1 << 30) / (4096 * 4))
    head = np.linspace(-1, 1, 4096 * 8, dtype=np.float32).tobytes()
    return write_gguf(path, llama_kvs(4096),
                      [("a_first.weight", [4096, 8], 0, head), ("big.weight", [4096, rows], 0, None)])


def test_lazy_conversion_of_a_big_view(mount_factory, tmp_path):
    """Reading the first MiB of a 1 GiB view converts a few chunks, not the
    file, and the daemon's memory stays small."""
    src = tmp_path / "bigsrc"
    src.mkdir()
    make_big_model(src / "big.gguf", 2.05)
    m = mount_factory(src, "cache_size=64M")
    path = m.path("big", "fp16", "big.gguf")
    size = os.stat(path).st_size
    assert size > 1 << 30
    t0 = m.stats()["bytes_quantized"]
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    g = gguf_reader.GGUF(head)
    first = g.tensors["a_first.weight"]
    want = np.linspace(-1, 1, 4096 * 8, dtype=np.float32).astype(np.float16).tobytes()
    assert head[first["offset"]:first["offset"] + first["nbytes"]] == want
    time.sleep(0.5)  # let read-ahead settle
    done = m.stats()["bytes_quantized"] - t0
    assert 0 < done < 64 << 20, done
    # the tail of the file too, without converting what lies between
    with open(path, "rb") as f:
        f.seek(size - 4096)
        assert f.read() == b"\0" * 4096
    time.sleep(0.5)
    assert m.stats()["bytes_quantized"] - t0 < 128 << 20
    with open("/proc/%d/status" % m.proc.pid) as f:
        rss_kb = int([l for l in f if l.startswith("VmRSS")][0].split()[1])
    assert rss_kb < 400 * 1024, rss_kb


def _copy_stories(dst):
    shutil.copy(STORIES_GGUF, dst)
    os.chmod(dst, 0o644)


def test_malformed_models(mount_factory, tmp_path):
    """Each broken model gets one log line saying why and only the f32 view
    (or, for a file that is not GGUF at all, f32 that passes it through);
    the good model next to them keeps working."""
    src = tmp_path / "src"
    src.mkdir()
    good = open(STORIES_GGUF, "rb").read()
    (src / "good").mkdir()
    (src / "good" / "m.gguf").write_bytes(good)
    (src / "badmagic.gguf").write_bytes(b"GGUX" + good[4:])
    (src / "truncated.gguf").write_bytes(good[:5000])
    (src / "shorttensors.gguf").write_bytes(good[:len(good) - 1000])
    absurd = bytearray(good)
    absurd[8:16] = struct.pack("<Q", 1 << 60)
    (src / "absurd.gguf").write_bytes(bytes(absurd))
    write_gguf(src / "prequant.gguf", llama_kvs(256),
               [("w.weight", [256, 2], 12, b"\x01" * 288)])
    overflow = bytearray(good)
    g = gguf_reader.GGUF(good)
    # make token_embd's dims multiply past 2^63
    at = good.index(b"token_embd.weight") + len("token_embd.weight") + 4
    overflow[at:at + 16] = struct.pack("<QQ", 1 << 40, 1 << 40)
    (src / "overflow.gguf").write_bytes(bytes(overflow))
    m = mount_factory(src)
    m.expect_log(r"model 'prequant': prequant\.gguf: no .* view: llama-quantize refuses it: "
                 r"tensor 'w.weight': requantizing from type q4_K is disabled")
    for name, why in [("badmagic", "not a GGUF file"), ("truncated", "truncated"),
                      ("shorttensors", "beyond the end"), ("absurd", "tensor count"),
                      ("prequant", None), ("overflow", r"limit of 2\^48 elements")]:
        if why:
            m.expect_log(r"model '%s': %s\.gguf: .*%s.*; only the f32 view is offered" % (name, name, why))
        # a q4_K tensor: llama-quantize copies it where the view's type is
        # q4_K (q4_k_m, q4_k_s, q4_k-pure) and refuses to requantize it
        # for every other type
        want = ["f32", "q4_k-pure", "q4_k_m", "q4_k_s"] if name == "prequant" else ["f32"]
        assert sorted(os.listdir(m.path(name))) == want, name
        assert read_all(m.path(name, "f32", name + ".gguf")) == read_all(src / (name + ".gguf"))
        assert not os.path.exists(m.path(name, "q8_0"))
    pq = gguf_reader.GGUF(read_all(m.path("prequant", "q4_k_m", "prequant.gguf")))
    assert pq.tensor_bytes("w.weight") == b"\x01" * 288
    assert len(os.listdir(m.path("good"))) == len(LISTED_VIEWS)
    assert read_all(m.path("good", "q8_0", "m.gguf")) == read_all(ref_file("q8_0"))
    log = m.output()
    for name in ("badmagic", "truncated", "shorttensors", "absurd", "prequant", "overflow"):
        assert len([l for l in log.splitlines() if "model '%s'" % name in l]) == 1, log
    assert m.stats()["models"] == 7


def test_source_changes_while_mounted(mount_factory, tmp_path):
    src = tmp_path / "src"
    (src / "m").mkdir(parents=True)
    f = src / "m" / "m.gguf"
    _copy_stories(f)
    m = mount_factory(src)
    m.expect_log(r"changed or vanished while in use")
    view = m.path("m", "q8_0", "m.gguf")
    before = read_all(view)
    fd = os.open(view, os.O_RDONLY)
    assert os.pread(fd, 4096, 0) == before[:4096]
    # rewrite one tensor in place (same size, new mtime)
    g = gguf_reader.load(str(f))
    t = g.tensors["blk.0.attn_q.weight"]
    time.sleep(0.01)
    with open(f, "r+b") as w:
        w.seek(t["offset"])
        w.write(np.full(t["nbytes"] // 4, 0.5, dtype=np.float32).tobytes())
    ti = gguf_reader.GGUF(before).tensors["blk.0.attn_q.weight"]
    time.sleep(0.3)  # inotify -> invalidation of the kernel's cached pages
    with pytest.raises(OSError) as e:
        os.pread(fd, 65536, ti["offset"] - 100)
    assert e.value.errno == errno.EIO
    os.close(fd)
    # a new open sees the new version, never the old bytes; until the
    # kernel's (asynchronous) release of fd reaches the daemon or the
    # rescan shows the changed model (settle, 1 s), opens get EIO
    deadline = time.time() + 10
    while True:
        try:
            data = read_all(view)
            break
        except OSError as e:
            assert e.errno == errno.EIO and time.time() < deadline, e
            time.sleep(0.1)
    after = gguf_reader.GGUF(data)
    q = after.tensor_bytes("blk.0.attn_q.weight")
    block = struct.pack("<e", 0.5 / 127) + bytes([127]) * 32
    assert q == block * (len(q) // 34)
    assert after.tensor_bytes("blk.0.attn_k.weight") == gguf_reader.GGUF(before).tensor_bytes("blk.0.attn_k.weight")
    # the source vanishes: open handles fail, the file is gone from the view
    fd = os.open(view, os.O_RDONLY)
    os.unlink(f)
    time.sleep(0.3)
    with pytest.raises(OSError) as e:
        os.pread(fd, 100, 0)
    assert e.value.errno == errno.EIO
    os.close(fd)
    time.sleep(1.2)  # attribute/entry cache timeout
    assert not os.path.exists(view)


def test_concurrent_readers(mount):
    """Many threads reading overlapping views at once get the right bytes
    (single-flight conversion, shared cache)."""
    import concurrent.futures as cf
    ref = {v: read_all(ref_file(v)) for v in ("q4_k_m", "q6_k")}

    def work(i):
        v = ("q4_k_m", "q6_k")[i % 2]
        return read_all(mount.path("stories260K", v, "stories260K.gguf")) == ref[v]

    with cf.ThreadPoolExecutor(8) as ex:
        assert all(ex.map(work, range(32)))
