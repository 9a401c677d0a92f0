"""GGUF views against llama-quantize's own output (llama.cpp v0.5.0), whole
files read through the kernel: ../shared/refs/mixes (files, compared byte
for byte) and tests/refs/mixes.json (sha256 of llama-quantize's output for
synthetic models of several shapes, inputs made by
../shared/refs/mixes/mkmodel_lq.py; see tests/refs/README.md)."""
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from conftest import ALL_VIEWS, LISTED_VIEWS, SHARED, STORIES_GGUF
from gguf_reader import GGML_TYPES, GGUF

HERE = os.path.dirname(os.path.abspath(__file__))
MIXES = os.path.join(SHARED, "refs", "mixes")
RECORDS = json.load(open(os.path.join(HERE, "refs", "mixes.json")))
GGUF_VIEWS = ALL_VIEWS
# under ASan whole-file hashes of the bigger synthetic models take minutes:
# there only their headers and sizes are compared (the plain build does all)
ASAN = os.environ.get("QUANTFS_ASAN") == "1"


def sha256_file(path, limit=None):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if limit is not None:  # no kernel read-ahead past the bytes asked for
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
        left = limit
        while left is None or left > 0:
            b = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not b:
                break
            h.update(b)
            if left is not None:
                left -= len(b)
    return h.hexdigest()


def make_model(dst, name):
    rec = RECORDS[name]
    subprocess.run(["/usr/bin/python3", os.path.join(MIXES, "mkmodel_lq.py"), str(dst)] + rec["args"], check=True)
    assert os.path.getsize(dst) == rec["size"] and sha256_file(dst, 256 << 20) == rec["head_sha256"], \
        "mkmodel_lq.py no longer makes the input the records were made from"


@pytest.fixture(scope="module")
def synth_src(tmp_path_factory):
    src = tmp_path_factory.mktemp("mixsrc")
    for name in RECORDS:
        (src / name).mkdir()
        make_model(src / name / (name + ".gguf"), name)
    (src / "stories260K").mkdir()
    shutil.copy(STORIES_GGUF, src / "stories260K" / "stories260K.gguf")
    (src / "synth-m2u").mkdir()
    subprocess.run(["/usr/bin/python3", os.path.join(MIXES, "mkmodel_lq.py"), str(src / "synth-m2u" / "synth-m2u.gguf"),
                    "--dim", "256", "--layers", "2", "--ffn", "256", "--vocab", "256", "--heads", "4",
                    "--name", "synth-m2u"], check=True)
    return src


def test_listing_and_aliases(mount_factory, synth_src):
    m = mount_factory(synth_src)
    assert sorted(os.listdir(m.path("stories260K"))) == sorted(LISTED_VIEWS)
    # llama-quantize's aliases and quantfs' int8/int4 resolve without being listed
    for alias, view in [("q3_k", "q3_k_m"), ("q4_k", "q4_k_m"), ("q5_k", "q5_k_m"), ("int8", "q8_0"),
                        ("int4", "q4_k_m"), ("f16", "fp16")]:
        a = open(m.path("synth-m2u", alias, "synth-m2u.gguf"), "rb").read()
        assert a == open(m.path("synth-m2u", view, "synth-m2u.gguf"), "rb").read(), alias
    assert not os.path.exists(m.path("synth-m2u", "q4_K_M"))
    assert not os.path.exists(m.path("synth-m2u", "fp8"))  # safetensors only


@pytest.mark.parametrize("model,opts", [("stories260K", ()), ("synth-m2u", ()), ("stories260K", ("map_reads",))])
def test_cmp_with_llama_quantize_files(mount_factory, synth_src, model, opts):
    """Every reference file llama-quantize wrote, cmp'd with the view (the
    source copied out, the default, and read mapped)."""
    m = mount_factory(synth_src, *opts)
    refs = sorted(f for f in os.listdir(MIXES) if f.startswith(model + ".") and f.endswith(".gguf"))
    assert len(refs) >= 14
    for f in refs:
        t = f[len(model) + 1:-5]
        view = "fp16" if t == "f16" else t
        path = m.path(model, view, model + ".gguf")
        assert os.stat(path).st_size == os.stat(os.path.join(MIXES, f)).st_size, view
        r = subprocess.run(["cmp", os.path.join(MIXES, f), path], capture_output=True, text=True)
        assert r.returncode == 0, "%s %s: %s" % (model, view, r.stdout)
    st = m.stats()
    assert (st["source_bytes_mapped"] > 0) == ("map_reads" in opts), st["source_bytes_mapped"]


def view_types(path, header_size):
    """(tensor names in file order, their types) from the view's header"""
    with open(path, "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
        g = GGUF(f.read(header_size))
    return g.order, ",".join(GGML_TYPES[g.tensors[n]["type"]][0] for n in g.order)


@pytest.mark.parametrize("model", sorted(RECORDS))
def test_synthetic_models_match_llama_quantize(mount_factory, synth_src, model):
    """Per view: stat size, tensor types and order, header bytes and (but
    for the 8B-shaped sparse file) the whole file's sha256 equal
    llama-quantize's output."""
    rec = RECORDS[model]
    m = mount_factory(synth_src)
    whole = model != "llama8b" and not (ASAN and model in ("l33", "l80", "m80", "e8", "h16"))
    assert sorted(rec["views"]) == sorted(v for v in GGUF_VIEWS if v != "f32")
    # sizes come from the source header alone: stat converts nothing
    for view, want in sorted(rec["views"].items()):
        assert os.stat(m.path(model, view, model + ".gguf")).st_size == want["size"], view
    assert m.stats()["blocks_computed"] == 0
    for view, want in sorted(rec["views"].items()):
        path = m.path(model, view, model + ".gguf")
        assert os.stat(path).st_size == want["size"], view
        order, types = view_types(path, want["header_size"])
        assert order == rec["tensors"], view
        if types != want["types"]:
            diff = [(n, a, b) for n, a, b in zip(order, types.split(","), want["types"].split(",")) if a != b]
            pytest.fail("%s %s: tensor types differ from llama-quantize's (tensor, ours, theirs): %s" %
                        (model, view, diff[:8]))
        assert sha256_file(path, want["header_size"]) == want["header_sha256"], view
        if whole:
            assert sha256_file(path) == want["sha256"], view


def test_refused_inputs_have_no_views(mount_factory, tmp_path, synth_src):
    """Where llama-quantize refuses an input, the views are absent and the
    log says why, once."""
    src = tmp_path / "src"
    src.mkdir()
    base = open(synth_src / "synth-m2u" / "synth-m2u.gguf", "rb").read()
    # an architecture quantfs does not reproduce (same length: offsets hold)
    g = base.replace(b"llama", b"gpt2x", 1)
    (src / "otherarch.gguf").write_bytes(g)
    # no block_count
    (src / "nolayers.gguf").write_bytes(base.replace(b"llama.block_count", b"llama.block_cnt__"))
    m = mount_factory(src)
    m.expect_log(r"architecture 'gpt2x'")
    m.expect_log(r"key not found in model: llama.block_count")
    for name in ("otherarch", "nolayers"):
        assert os.listdir(m.path(name)) == ["f32"], name
        assert not os.path.exists(m.path(name, "q4_k_m"))
        assert open(m.path(name, "f32", name + ".gguf"), "rb").read() == (src / (name + ".gguf")).read_bytes()
    out = m.output()
    assert out.count("architecture 'gpt2x'") == 1, out
    assert out.count("llama.block_count") == 1, out


def test_nan_in_source_fails_reads(mount_factory, tmp_path, synth_src):
    """llama-quantize refuses a file with NaN/Inf; a view read fails (EIO)
    rather than serving a file it would never write."""
    src = tmp_path / "src"
    (src / "m").mkdir(parents=True)
    data = bytearray(open(synth_src / "synth-m2u" / "synth-m2u.gguf", "rb").read())
    g = GGUF(bytes(data))
    t = g.tensors["blk.1.ffn_up.weight"]
    data[t["offset"] + 4096:t["offset"] + 4100] = b"\x00\x00\xc0\x7f"  # NaN
    (src / "m" / "m.gguf").write_bytes(bytes(data))
    m = mount_factory(src)
    m.expect_log(r"NaN or Inf")
    for view in ("q4_k_m", "fp16", "bf16"):  # fp16/bf16: checked as they are converted
        with pytest.raises(OSError) as e:
            open(m.path("m", view, "m.gguf"), "rb").read()
        assert e.value.errno == 5, view
    assert open(m.path("m", "f32", "m.gguf"), "rb").read() == bytes(data)


def test_views_option_takes_every_name(mount_factory, synth_src):
    m = mount_factory(synth_src, "views=q4_k,q8_0-pure,f16,int8")
    # an alias offers its view under its canonical name too
    assert sorted(os.listdir(m.path("synth-m2u"))) == ["fp16", "q4_k_m", "q8_0", "q8_0-pure"]
    assert os.path.exists(m.path("synth-m2u", "q4_k", "synth-m2u.gguf"))
    assert not os.path.exists(m.path("synth-m2u", "q6_k"))
