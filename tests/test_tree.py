"""quantfs-check --tree SRC lists, from codec's source kinds alone (no
FUSE), the tree a mount of SRC shows: the same models, views, files and
sizes, read here through a real mount; absent views say why."""
import json
import os
import re
import shutil
import subprocess

from conftest import QUANTFS, SHARED, STORIES_GGUF

CHECK = os.environ.get("QUANTFS_CHECK_BIN", os.path.join(os.path.dirname(QUANTFS), "..", "check", "quantfs-check"))
HF = os.path.join(SHARED, "models", "stories260K", "hf")


def parse_tree(text):
    tree, absent, model, view = {}, {}, None, None
    for line in text.splitlines():
        if re.match(r"^\S.*/$", line):
            model = line[:-1]
            tree[model] = {}
        elif m := re.match(r"^  (\S+)/  \(absent: (.*)\)$", line):
            absent[(model, m.group(1))] = m.group(2)
        elif m := re.match(r"^  (\S+)/$", line):
            view = m.group(1)
            tree[model][view] = {}
        elif m := re.match(r"^    (\S+)\s+(\d+)$", line):
            tree[model][view][m.group(1)] = int(m.group(2))
        else:
            raise AssertionError("unexpected --tree line: %r" % line)
    return tree, absent


def mount_tree(root):
    tree = {}
    for model in sorted(os.listdir(root)):
        if model == ".quantfs":
            continue
        tree[model] = {}
        for view in os.listdir(os.path.join(root, model)):
            d = os.path.join(root, model, view)
            tree[model][view] = {f: os.stat(os.path.join(d, f)).st_size for f in os.listdir(d)}
    return tree


def test_tree_is_what_the_mount_shows(mount_factory, tmp_path):
    src = tmp_path / "src"
    (src / "gg").mkdir(parents=True)
    shutil.copyfile(STORIES_GGUF, src / "gg" / "gg.gguf")
    (src / "gg" / "README.md").write_text("readme\n")
    shutil.copytree(HF, src / "hfm")                       # HF checkpoint: safetensors + GGUF views
    shutil.copytree(HF, src / "other")                     # an architecture without GGUF views
    cfg = json.loads((src / "other" / "config.json").read_text())
    cfg["architectures"] = ["SomethingElseForCausalLM"]
    (src / "other" / "config.json").write_text(json.dumps(cfg))
    shutil.copyfile(os.path.join(HF, "model.safetensors"), src / "loose.safetensors")
    (src / "bad.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)  # malformed: f32 only
    r = subprocess.run([CHECK, "--tree", str(src)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    tree, absent = parse_tree(r.stdout)
    m = mount_factory(src)
    m.expect_log(r"bad\.gguf")
    want = mount_tree(m.mnt)
    assert tree == want
    assert sorted(tree) == ["bad", "gg", "hfm", "loose", "other"]
    assert list(tree["bad"]) == ["f32"] and ("bad", "q4_k_m") in absent
    assert "hfm.gguf" in tree["hfm"]["q4_k_m"] and "q4_k_m" not in tree["other"]
    assert "int4" in tree["other"] and "config.json" in tree["other"]["int4"]
