"""general.sampling.* from generation_config.json: the f32 GGUF view of a
Hugging Face checkpoint against llama.cpp's converter, run on the same
checkpoint with each generation_config.json of
refs/hf/sampling_inputs.json (refs/hf/make_sampling.sh): values, types,
order and bytes of every KV; the converter's crashes are refusals."""
import json
import os
import shutil

from conftest import SHARED
from test_hf import NAMING, diff, record  # record: refs/hf/record.py

HERE = os.path.dirname(os.path.abspath(__file__))
REFS = os.path.join(HERE, "refs", "hf")
INPUTS = json.load(open(os.path.join(REFS, "sampling_inputs.json")))
RECORDS = json.load(open(os.path.join(REFS, "sampling.json")))


def test_sampling_kvs_equal_the_converters(mount_factory, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name, text in INPUTS.items():
        shutil.copytree(os.path.join(SHARED, "models", "stories260K", "hf"), src / name)
        (src / name / "generation_config.json").write_text(text)
    m = mount_factory(src)
    m.expect_log(r"generation_config\.json: (top_k is not a 32-bit integer|temperature is not a number)")
    for name in INPUTS:
        key = name + ".conv-f32.gguf"
        if key not in RECORDS:  # the converter failed: no GGUF views, the safetensors ones stay
            assert not [f for f in os.listdir(m.path(name, "f32")) if f.endswith(".gguf")], name
            assert "int4" in os.listdir(m.path(name)) and "q4_k_m" not in os.listdir(m.path(name)), name
            continue
        got = record(m.path(name, "f32", name + ".gguf"))
        assert not diff(got, RECORDS[key]), (name, diff(got, RECORDS[key]))
        want = [k["key"] for k in RECORDS[key]["kvs"] if k["key"].startswith("general.sampling.")]
        assert [k["key"] for k in got["kvs"] if k["key"].startswith("general.sampling.")] == want
        # llama-quantize copies them: a mix view has the same pairs
        q = record(m.path(name, "q4_k_m", name + ".gguf"))
        assert [(k["key"], k["sha256"]) for k in q["kvs"] if k["key"].startswith("general.sampling.")] == \
            [(k["key"], k["sha256"]) for k in got["kvs"] if k["key"].startswith("general.sampling.")]
    # the reference itself holds what the test is about
    assert len([k for k in RECORDS["sampled.conv-f32.gguf"]["kvs"] if k["key"].startswith("general.sampling.")]) == 12
    assert not any(k.startswith("general.sampling.") for k in NAMING)
