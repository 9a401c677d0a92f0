"""safetensors views through real mounts, read with an independent numpy
reader: exact fp16/bf16 against numpy, hand-computed int8/int4/fp8 vectors
(ties, zeros, NaN/Inf), dequantization error bounds on the real model,
config.json / index rewrites, sharding, malformed files."""
import json
import os
import shutil
import struct

import numpy as np
import pytest

from conftest import LISTED_VIEWS, SHARED

HF = os.path.join(SHARED, "models", "stories260K", "hf")
ST_VIEWS = ["bf16", "f32", "fp16", "fp8", "int4", "int8"]
# a llama checkpoint also lists the GGUF views of the converter's file (test_hf.py)
HF_VIEWS = sorted(set(ST_VIEWS) | set(LISTED_VIEWS))
NP = {"F32": np.float32, "F16": np.float16, "I8": np.int8, "I32": np.int32, "I64": np.int64, "U8": np.uint8,
      "BF16": np.uint16, "F8_E4M3": np.uint8}


def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + n])
    assert (8 + n) % 8 == 0
    meta = hdr.pop("__metadata__", {})
    out, end = {}, 0
    for name, t in hdr.items():
        s, e = t["data_offsets"]
        assert s == end, "tensors must be contiguous"
        end = e
        a = np.frombuffer(b[8 + n + s:8 + n + e], dtype=NP[t["dtype"]]).reshape(t["shape"])
        out[name] = (t["dtype"], a)
    assert 8 + n + end == len(b)
    return meta, out


def write_st(path, tensors, metadata=None):
    hdr, blobs, off = {}, [], 0
    if metadata is not None:
        hdr["__metadata__"] = metadata
    for name, (dtype, arr) in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        hdr[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def bf16_to_f32(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


def bf16_nearest(x):
    """Independent bf16 rounding: the two bf16 neighbours by truncation, the
    nearer one in float64, ties to the even one."""
    u = x.astype(np.float32).view(np.uint32)
    lo = (u >> 16).astype(np.uint32)
    hi = lo + 1
    dlo = np.abs(x.astype(np.float64) - bf16_to_f32(lo.astype(np.uint16)).astype(np.float64))
    dhi = np.abs(bf16_to_f32(hi.astype(np.uint16)).astype(np.float64) - x.astype(np.float64))
    pick_hi = (dhi < dlo) | ((dhi == dlo) & (lo % 2 == 1))
    return np.where(pick_hi, hi, lo).astype(np.uint16)


def e4m3_table():
    t = np.zeros(256, dtype=np.float64)
    for c in range(256):
        s, e, m = c >> 7, (c >> 3) & 15, c & 7
        v = (m / 8) * 2.0 ** -6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7)
        if e == 15 and m == 7:
            v = np.nan
        t[c] = -v if s else v
    return t


E4M3 = e4m3_table()


def unpack_int8(words, cols):
    """compressed-tensors pack_to_int32 with 8 bits: value i of a word at
    bits 8i, stored as q + 128."""
    w = words.view(np.uint32)
    vals = np.stack([(w >> (8 * i)) & 255 for i in range(4)], axis=-1).reshape(w.shape[0], -1)
    return vals[:, :cols].astype(np.int32) - 128


def unpack_int4(words, cols):
    w = words.view(np.uint32)
    vals = np.stack([(w >> (4 * i)) & 15 for i in range(8)], axis=-1).reshape(w.shape[0], -1)
    return vals[:, :cols].astype(np.int32) - 8


def dequant(view, tensors, stem):
    """Dequantized f32 weight of module stem in a view, per its convention."""
    if view == "int8":
        rows, cols = tensors[stem + "weight_shape"][1]
        q = unpack_int8(tensors[stem + "weight_packed"][1], cols).astype(np.float32)
        s = bf16_to_f32(tensors[stem + "weight_scale"][1])
        return q * s, np.broadcast_to(s, q.shape)
    if view == "int4":
        rows, cols = tensors[stem + "weight_shape"][1]
        q = unpack_int4(tensors[stem + "weight_packed"][1], cols).astype(np.float32)
        s = bf16_to_f32(tensors[stem + "weight_scale"][1])
        s = np.repeat(s, cols // s.shape[1], axis=1)
        return q * s, s
    if view == "fp8":
        q = E4M3[tensors[stem + "weight"][1]]
        si = tensors[stem + "weight_scale_inv"][1].astype(np.float64)
        s = np.repeat(np.repeat(si, 128, axis=0), 128, axis=1)[:q.shape[0], :q.shape[1]]
        return q * s, s
    raise ValueError(view)


@pytest.fixture
def hf_src(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copytree(HF, src / "stories-hf")
    return src


def test_views_listed(mount_factory, hf_src):
    m = mount_factory(hf_src)
    assert sorted(os.listdir(m.path("stories-hf"))) == HF_VIEWS
    files = sorted(os.listdir(HF))
    for v in ST_VIEWS:
        gguf = ["stories-hf.gguf"] if v in ("f32", "fp16", "bf16") else []
        assert sorted(os.listdir(m.path("stories-hf", v))) == sorted(files + gguf)
        for f in files:  # passed through, except what the view rewrites
            if f not in ("model.safetensors", "config.json") or v == "f32":
                assert open(m.path("stories-hf", v, f), "rb").read() == open(os.path.join(HF, f), "rb").read()


def test_float_views_exact(mount_factory, hf_src):
    m = mount_factory(hf_src)
    _, src = read_st(os.path.join(HF, "model.safetensors"))
    for view in ("fp16", "bf16"):
        meta, out = read_st(m.path("stories-hf", view, "model.safetensors"))
        assert meta.get("format") == "pt"
        assert list(out) == list(src)
        for name, (dt, a) in src.items():
            odt, o = out[name]
            assert o.shape == a.shape
            if view == "fp16":
                assert odt == "F16" and np.array_equal(o.view(np.uint16), a.astype(np.float16).view(np.uint16))
            else:
                assert odt == "BF16" and np.array_equal(o, bf16_nearest(a))
        cfg = json.load(open(m.path("stories-hf", view, "config.json")))
        assert cfg["torch_dtype"] == {"fp16": "float16", "bf16": "bfloat16"}[view]
        assert "quantization_config" not in cfg
    assert open(m.path("stories-hf", "f32", "model.safetensors"), "rb").read() == \
        open(os.path.join(HF, "model.safetensors"), "rb").read()


@pytest.mark.parametrize("view", ["int8", "int4", "fp8"])
def test_quantized_views_real_model(mount_factory, hf_src, view):
    m = mount_factory(hf_src)
    _, src = read_st(os.path.join(HF, "model.safetensors"))
    meta, out = read_st(m.path("stories-hf", view, "model.safetensors"))
    assert meta.get("format") == "pt"
    cfg = json.load(open(m.path("stories-hf", view, "config.json")))
    qc = cfg["quantization_config"]
    assert cfg["torch_dtype"] == "bfloat16"
    linear = [n for n, (dt, a) in src.items() if a.ndim == 2 and n.endswith(".weight") and
              not any(w in n for w in ("embed", "norm", "lm_head"))]
    assert len(linear) == 35
    for n, (dt, a) in src.items():
        if n in linear:
            continue
        assert out[n][0] == "BF16" and np.array_equal(out[n][1], bf16_nearest(a)), n
    targets = []
    if view == "fp8":
        assert qc == {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128],
                      "modules_to_not_convert": ["lm_head"]}
    else:
        assert qc["quant_method"] == "compressed-tensors" and qc["quantization_status"] == "compressed"
        # pack-quantized for both: the format vLLM loads weight-only int schemes from
        assert qc["format"] == "pack-quantized"
        for g in qc["config_groups"].values():
            w = g["weights"]
            assert w["type"] == "int" and w["symmetric"] is True and w["num_bits"] == (8 if view == "int8" else 4)
            # rows of 64 and 172: group 128 does not divide, so per channel
            assert w["strategy"] == "channel"
            targets += g["targets"]
        assert sorted(targets) == sorted(n[:-len(".weight")] for n in linear)
    for n in linear:
        x = src[n][1].astype(np.float64)
        stem = n[:-len("weight")]
        deq, s = dequant(view, out, stem)
        err = np.abs(x - deq)
        if view == "fp8":
            bound = np.maximum(np.abs(x) * 2.0 ** -4, 2.0 ** -10 * s) * (1 + 1e-6)
        else:
            bound = s / 2 * (1 + 1e-6)
        assert np.all(err <= bound), (n, float((err - bound).max()))
        if view == "int8":
            amax = np.abs(x).max(axis=1, keepdims=True)
            sc = bf16_to_f32(out[stem + "weight_scale"][1]).astype(np.float64)
            assert out[stem + "weight_scale"][1].shape == (x.shape[0], 1)
            assert np.all(sc >= amax / 127.5) and np.all(sc <= amax / 127.5 * (1 + 2 ** -7))
        if view in ("int4", "int8"):
            per_word = 8 if view == "int4" else 4
            assert out[stem + "weight_shape"][0] == "I64"
            assert list(out[stem + "weight_shape"][1]) == list(x.shape)
            assert out[stem + "weight_packed"][0] == "I32"
            assert out[stem + "weight_packed"][1].shape == (x.shape[0], -(-x.shape[1] // per_word))


def test_hand_vectors(mount_factory, tmp_path):
    """Exact expected codes for ties, zeros, NaN and Inf, computed by hand
    from each convention."""
    src = tmp_path / "src" / "hand"
    src.mkdir(parents=True)
    r8 = np.zeros((4, 256), np.float32)
    r8[0, :6] = [127.5, -127.5, 0.5, 1.5, 2.5, -0.5]        # scale 1.0 exactly
    r8[2, :4] = [np.nan, np.inf, -np.inf, 63.75]            # amax over finite: 63.75 -> scale 0.5
    r8[3, :] = np.linspace(-1, 1, 256)
    # row 1 stays zero
    fp = np.zeros((128, 128), np.float32)
    fp[0, :8] = [448, 1.0, 1.0625, 1.1875, -2.0, 2.0 ** -9, 2.0 ** -10, 3 * 2.0 ** -10]
    write_st(src / "model.safetensors", {"model.layers.0.mlp.up_proj.weight": ("F32", r8),
                                         "model.layers.0.mlp.down_proj.weight": ("F32", fp)},
             metadata={"format": "pt"})
    (src / "config.json").write_text('{"model_type": "llama"}')
    m = mount_factory(src.parent)
    _, o8 = read_st(m.path("hand", "int8", "model.safetensors"))
    q = unpack_int8(o8["model.layers.0.mlp.up_proj.weight_packed"][1], 256)
    # the raw bytes are q + 128, four per little-endian int32
    assert o8["model.layers.0.mlp.up_proj.weight_packed"][1].view(np.uint8)[0, :6].tolist() == \
        [255, 0, 128, 130, 130, 128]
    s = bf16_to_f32(o8["model.layers.0.mlp.up_proj.weight_scale"][1])[:, 0]
    assert s[0] == 1.0 and list(q[0, :6]) == [127, -128, 0, 2, 2, 0]
    assert s[1] == bf16_to_f32(bf16_nearest(np.array([np.finfo(np.float32).eps], np.float32)))[0]
    assert not q[1].any()
    assert s[2] == 0.5 and list(q[2, :4]) == [0, 127, -128, 127]
    _, o4 = read_st(m.path("hand", "int4", "model.safetensors"))
    q4 = unpack_int4(o4["model.layers.0.mlp.up_proj.weight_packed"][1], 256)
    s4 = bf16_to_f32(o4["model.layers.0.mlp.up_proj.weight_scale"][1])
    assert s4.shape == (4, 2)   # group 128
    assert s4[0, 0] == 127.5 / 7.5 and s4[0, 1] == bf16_to_f32(bf16_nearest(np.array([np.finfo(np.float32).eps],
                                                                                          np.float32)))[0]
    # 127.5/17 = 7.5 -> clamp 7; -7.5 -> -8 (ties to even); 0.5/17 -> 0; 1.5/17 -> 0; 2.5/17 -> 0
    assert list(q4[0, :6]) == [7, -8, 0, 0, 0, 0]
    assert list(o4["model.layers.0.mlp.up_proj.weight_shape"][1]) == [4, 256]
    cfg = json.load(open(m.path("hand", "int4", "config.json")))
    g = cfg["quantization_config"]["config_groups"]
    assert g["group_0"]["weights"]["strategy"] == "group" and g["group_0"]["weights"]["group_size"] == 128
    # both weights have rows of 128 or 256: one group-128 config group
    assert sorted(g["group_0"]["targets"]) == ["model.layers.0.mlp.down_proj", "model.layers.0.mlp.up_proj"]
    assert list(g) == ["group_0"]
    _, o8f = read_st(m.path("hand", "fp8", "model.safetensors"))
    qf = o8f["model.layers.0.mlp.down_proj.weight"][1]
    si = o8f["model.layers.0.mlp.down_proj.weight_scale_inv"][1]
    assert si.shape == (1, 1) and si[0, 0] == 1.0
    # 448, 1.0, tie 1.0625 -> 1.0 (even), tie 1.1875 -> 1.25, -2, 2^-9 (smallest subnormal),
    # 2^-10 -> 0 (tie to even), 3*2^-10 -> 2*2^-9 (tie to even)
    assert list(qf[0, :8]) == [0x7e, 0x38, 0x38, 0x3a, 0xc0, 0x01, 0x00, 0x02]
    assert not qf[1:].any()


def test_sharded_model(mount_factory, tmp_path):
    """Two shards with an index: every view rewrites the index (new tensor
    names in the shard that holds their weight, total size)."""
    _, src = read_st(os.path.join(HF, "model.safetensors"))
    d = tmp_path / "src" / "sharded"
    d.mkdir(parents=True)
    names = list(src)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    wmap = {}
    for fn, ns in shards.items():
        write_st(d / fn, {n: src[n] for n in ns}, metadata={"format": "pt"})
        wmap.update({n: fn for n in ns})
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 1044992},
                                                                "weight_map": wmap}))
    shutil.copy(os.path.join(HF, "config.json"), d / "config.json")
    m = mount_factory(tmp_path / "src")
    m.expect_log(r"model 'sharded': no GGUF views: no tokenizer")
    assert sorted(os.listdir(m.path("sharded"))) == ST_VIEWS
    for v in ("fp16", "int8", "int4", "fp8"):
        idx = json.load(open(m.path("sharded", v, "model.safetensors.index.json")))
        total = 0
        seen = {}
        for fn in shards:
            _, t = read_st(m.path("sharded", v, fn))
            for n, (dt, a) in t.items():
                seen[n] = fn
                total += a.nbytes
        assert idx["weight_map"] == seen
        assert idx["metadata"]["total_size"] == total
        # the same bytes on every read
        assert open(m.path("sharded", v, "model.safetensors.index.json"), "rb").read() == \
            open(m.path("sharded", v, "model.safetensors.index.json"), "rb").read()


def test_malformed_safetensors(mount_factory, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    good = open(os.path.join(HF, "model.safetensors"), "rb").read()
    n = struct.unpack("<Q", good[:8])[0]
    hdr = json.loads(good[8:8 + n])

    def with_header(h, pad_to=None):
        b = json.dumps(h).encode()
        b += b" " * (-len(b) % 8)
        return struct.pack("<Q", len(b)) + b + good[8 + n:]

    cases = {}
    cases["badjson"] = struct.pack("<Q", 16) + b'{"a": [1, 2,,]} ' + good[24:]
    cases["hugelen"] = struct.pack("<Q", 1 << 40) + good[8:]
    h = json.loads(json.dumps(hdr))
    first = next(k for k in h if k != "__metadata__")
    h[first]["data_offsets"] = [0, h[first]["data_offsets"][1] + 4]
    cases["overlap"] = with_header(h)
    h = json.loads(json.dumps(hdr))
    h[first]["data_offsets"] = [0, 1 << 40]
    cases["outofrange"] = with_header(h)
    h = json.loads(json.dumps(hdr))
    h[first]["dtype"] = "F7"
    cases["dtype"] = with_header(h)
    cases["truncated"] = good[:len(good) - 100]
    reasons = {"badjson": "not valid JSON", "hugelen": "exceeds the file", "overlap": "bytes for shape",
               "outofrange": "out of range", "dtype": "unknown dtype", "truncated": "out of range"}
    for name, data in cases.items():
        d = src / name
        d.mkdir()
        (d / "model.safetensors").write_bytes(data)
        shutil.copy(os.path.join(HF, "config.json"), d / "config.json")
    # an index naming a shard that is not there
    d = src / "missingshard"
    d.mkdir()
    shutil.copy(os.path.join(HF, "model.safetensors"), d / "model-00001-of-00002.safetensors")
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"a.weight": "model-00001-of-00002.safetensors",
                                        "b.weight": "model-00002-of-00002.safetensors"}}))
    shutil.copytree(HF, src / "good")
    m = mount_factory(src)
    # (not shown at all: it may still be being copied; test_live.py)
    m.expect_log(r"model 'missingshard' not shown yet: shard model-00002-of-00002.safetensors of its index is missing")
    assert not os.path.exists(m.path("missingshard"))
    for name, why in reasons.items():
        m.expect_log(r"model '%s': .*%s.*; only the f32 view is offered" % (name, why))
    for name in reasons:
        assert os.listdir(m.path(name)) == ["f32"], name
    assert sorted(os.listdir(m.path("good"))) == HF_VIEWS
    _, t = read_st(m.path("good", "int8", "model.safetensors"))
    assert "model.layers.0.mlp.up_proj.weight_scale" in t and "model.layers.0.mlp.up_proj.weight_packed" in t
    log = m.output()
    for name in reasons:
        assert len([l for l in log.splitlines() if "model '%s'" % name in l]) == 1, log


def test_random_reads_and_stat(mount_factory, hf_src):
    import random
    m = mount_factory(hf_src)
    rnd = random.Random(11)
    for v in ("fp16", "int8", "int4", "fp8"):
        p = m.path("stories-hf", v, "model.safetensors")
        full = open(p, "rb").read()
        assert os.stat(p).st_size == len(full)
        fd = os.open(p, os.O_RDONLY)
        try:
            for _ in range(150):
                off = rnd.randrange(len(full))
                n = rnd.choice([1, 7, 4096, 100000])
                assert os.pread(fd, n, off) == full[off:off + n]
        finally:
            os.close(fd)


def test_f16_and_bf16_sources(mount_factory, tmp_path):
    """F16 and BF16 source tensors are read and converted as the view asks."""
    d = tmp_path / "src" / "half"
    d.mkdir(parents=True)
    rng = np.random.default_rng(5)
    w = rng.normal(0, 0.05, (8, 128)).astype(np.float32)
    bf = bf16_nearest(w)
    write_st(d / "model.safetensors", {"model.layers.0.mlp.up_proj.weight": ("BF16", bf),
                                       "model.layers.0.mlp.down_proj.weight": ("F16", w.astype(np.float16))},
             metadata={"format": "pt"})
    m = mount_factory(tmp_path / "src")
    _, o = read_st(m.path("half", "fp16", "model.safetensors"))
    up = o["model.layers.0.mlp.up_proj.weight"]
    assert up[0] == "F16"
    assert np.array_equal(up[1].view(np.uint16), bf16_to_f32(bf).astype(np.float16).view(np.uint16))
    assert o["model.layers.0.mlp.down_proj.weight"][1].tobytes() == w.astype(np.float16).tobytes()
    _, o = read_st(m.path("half", "bf16", "model.safetensors"))
    assert o["model.layers.0.mlp.up_proj.weight"][1].tobytes() == bf.tobytes()  # already bf16: copied
    assert np.array_equal(o["model.layers.0.mlp.down_proj.weight"][1], bf16_nearest(w.astype(np.float16).astype(np.float32)))
    _, o = read_st(m.path("half", "int8", "model.safetensors"))
    deq, s = dequant("int8", o, "model.layers.0.mlp.up_proj.")
    assert np.all(np.abs(bf16_to_f32(bf) - deq) <= s / 2 * (1 + 1e-6))


def test_views_say_format_pt(mount_factory, tmp_path):
    """A source whose __metadata__ says "tf" (or has other keys): every
    converted view says "format": "pt", as transformers needs to load it as
    the PyTorch weights it is, and keeps the other keys; f32 is the source."""
    src = tmp_path / "src" / "tfmeta"
    src.mkdir(parents=True)
    a = np.linspace(-1, 1, 256 * 4, dtype=np.float32).reshape(4, 256)
    write_st(src / "model.safetensors", {"model.layers.0.mlp.up_proj.weight": ("F32", a)},
             metadata={"format": "tf", "note": "kept"})
    (src / "config.json").write_text('{"model_type": "llama"}')
    m = mount_factory(src.parent)
    for v in ("fp16", "bf16", "int8", "int4", "fp8"):
        meta, _ = read_st(m.path("tfmeta", v, "model.safetensors"))
        assert meta == {"format": "pt", "note": "kept"}, (v, meta)
    meta, _ = read_st(m.path("tfmeta", "f32", "model.safetensors"))
    assert meta == {"format": "tf", "note": "kept"}


def test_rows_over_the_limit_leave_the_quantized_views_out(mount_factory, tmp_path):
    """A Linear weight whose rows exceed the row-wise quantizers' limit
    (131,072 values): int8, int4 and fp8 are absent, each with one log line
    saying why; fp16 and bf16 are there."""
    src = tmp_path / "src" / "wide"
    src.mkdir(parents=True)
    a = np.zeros((2, 131200), np.float32)
    write_st(src / "model.safetensors", {"model.layers.0.mlp.up_proj.weight": ("F32", a)},
             metadata={"format": "pt"})
    (src / "config.json").write_text('{"model_type": "llama"}')
    m = mount_factory(src.parent)
    m.expect_log(r"rows of 131200 values exceed quantfs' limit of 131072")
    assert sorted(os.listdir(m.path("wide"))) == ["bf16", "f32", "fp16"]
    for v in ("int8", "int4", "fp8"):
        assert not os.path.exists(m.path("wide", v)), v
    assert read_st(m.path("wide", "fp16", "model.safetensors"))[1]["model.layers.0.mlp.up_proj.weight"][0] == "F16"
    log = m.output()
    for v in ("int8", "int4", "fp8"):
        assert len([l for l in log.splitlines() if "exceed quantfs' limit" in l and " for %s" % v in l]) == 1, log
