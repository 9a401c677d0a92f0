"""Importance-matrix views (MODEL/<mix>-imat/) and the IQ4 views against
llama-quantize's own output (llama.cpp v0.5.0), whole files read through
the kernel. tests/refs/imatrix.json holds the sha256 of
`llama-quantize [--imatrix FILE] MODEL.gguf OUT TYPE` run inside each
model's directory (tests/refs/imatrix/make_refs.sh): stories260K with the
imatrix llama-imatrix made from story.txt (both file formats), and
synthetic models (../shared/refs/mixes/mkmodel_lq.py) with imatrices
tests/mkimatrix.py writes: GGUF and legacy, entries missing and extra, no
trailer, 3-D expert tensors with an expert that saw no rows; and the
Hugging Face checkpoint of stories260K (the converter's F32 file, then
llama-quantize --imatrix)."""
import hashlib
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import IMAT_ONLY, IMAT_VIEWS, IQ4_VIEWS, LISTED_VIEWS, QUANTFS, SHARED, STORIES_GGUF, llama_generate
from test_check import CHECK
from test_hf import have_node, need

HERE = os.path.dirname(os.path.abspath(__file__))
REFS = os.path.join(HERE, "refs", "imatrix")
REC = json.load(open(os.path.join(HERE, "refs", "imatrix.json")))
MKMODEL = os.path.join(SHARED, "refs", "mixes", "mkmodel_lq.py")
ASAN = os.environ.get("QUANTFS_ASAN") == "1"
PY = "/usr/bin/python3"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def gguf_name(model):
    if model == "stories260K-hf":
        return model + ".gguf"  # the converter's file is named after the directory
    return ("stories260K" if model.startswith("stories260K") else model) + ".gguf"


@pytest.fixture(scope="module")
def imat_src(tmp_path_factory):
    src = tmp_path_factory.mktemp("imatsrc")
    for model, m in REC["models"].items():
        d = src / model
        d.mkdir()
        if m.get("hf"):
            d.rmdir()
            shutil.copytree(os.path.join(SHARED, "models", "stories260K", "hf"), d)
            shutil.copy(os.path.join(REFS, "stories260K", m["imatrix"]), d / m["imatrix"])
            continue
        if model.startswith("stories260K"):
            shutil.copy(STORIES_GGUF, d / gguf_name(model))
            shutil.copy(os.path.join(REFS, "stories260K", m["imatrix"]), d / m["imatrix"])
            continue
        subprocess.run([PY, MKMODEL, str(d / gguf_name(model))] + m["args"] + ["--name", model], check=True)
        subprocess.run([PY, os.path.join(HERE, "mkimatrix.py"), str(d / gguf_name(model)), str(d / m["imatrix"])] +
                       m["imatrix_args"], check=True)
        assert sha256_file(d / gguf_name(model)) == m["model_sha256"], "mkmodel_lq.py no longer makes the input"
        assert sha256_file(d / m["imatrix"]) == m["imatrix_sha256"], "mkimatrix.py no longer makes the input"
    # t1 with each broken imatrix llama-quantize refuses
    for bad, r in REC["refused"].items():
        d = src / ("t1-" + bad)
        d.mkdir()
        shutil.copy(src / "t1" / "t1.gguf", d / "t1.gguf")
        subprocess.run([PY, os.path.join(HERE, "mkimatrix.py"), str(d / "t1.gguf"), str(d / "imatrix.gguf")] +
                       r["imatrix_args"], check=True)
        if "truncate" in r:
            os.truncate(d / "imatrix.gguf", r["truncate"])
    # and one without any
    (src / "plain").mkdir()
    shutil.copy(STORIES_GGUF, src / "plain" / "stories260K.gguf")
    return src


def mount_store(mount_factory, imat_src):
    """The store mounted; what it holds on purpose that llama-quantize
    refuses is said in the log, and expected there."""
    m = mount_factory(imat_src)
    for model, views in REC["refused_views"].items():
        m.expect_log(r"model '%s': .*no (%s) view" % (model, "|".join(views)))
    for bad in REC["refused"]:
        m.expect_log(r"model 't1-%s'" % bad)
    return m


def test_views_equal_llama_quantize(mount_factory, imat_src):
    m = mount_store(mount_factory, imat_src)
    bad = {}
    for model, views in sorted(REC["views"].items()):
        for view, want in sorted(views.items()):
            # under ASan (a slow daemon) the 16-layer model's K views are sampled
            if ASAN and model in ("h16", "g8t") and view not in ("q4_k_m-imat", "q2_k-imat", "iq4_xs-imat",
                                                                  "q4_0-imat", "iq4_xs"):
                continue
            got = sha256_file(m.path(model, view, gguf_name(model)))
            if got != want:
                bad["%s/%s" % (model, view)] = got
    assert not bad, bad


def test_listing(mount_factory, imat_src):
    """-imat views exist where the model has an imatrix; the IQ4 views for
    every GGUF model. The imatrix file itself is in no view."""
    m = mount_store(mount_factory, imat_src)
    for model in REC["views"]:
        st = ["int8", "int4", "fp8"] if REC["models"][model].get("hf") else []  # safetensors views too
        refused = list(REC["refused_views"].get(model, {}))  # llama-quantize fails part-way: no view
        assert sorted(os.listdir(m.path(model))) == sorted(set(LISTED_VIEWS + IMAT_VIEWS + st) - set(refused)), model
        assert gguf_name(model) in os.listdir(m.path(model, "q4_k_m-imat"))
    assert sorted(os.listdir(m.path("plain"))) == sorted(LISTED_VIEWS)
    assert not os.path.exists(m.path("plain", "q4_k_m-imat"))
    assert os.listdir(m.path("stories260K", "f32")) == ["stories260K.gguf"]


def test_refused_imatrices_are_said_and_leave_no_view(mount_factory, imat_src):
    """What llama-quantize refuses (a size that does not fit a tensor, a
    non-finite weight, a GGUF imatrix without its metadata, a truncated
    file) is one log line, in llama-quantize's words where it has them,
    and the model's -imat views are absent; its other views stay."""
    m = mount_factory(imat_src)
    for bad, r in sorted(REC["refused"].items()):
        name = "t1-" + bad
        assert not os.path.exists(m.path(name, "q4_k_m-imat", "t1.gguf")), bad
        assert sha256_file(m.path(name, "iq4_xs", "t1.gguf")) == REC["views"]["t1"]["iq4_xs"]
        words = r["llama_quantize"] if bad != "trunc" else "not a readable GGUF imatrix"
        m.require_log(r"model '%s': .*%s" % (name, words.replace("(", r"\(").replace(")", r"\)")))
    for model, views in REC["refused_views"].items():  # a tensor IQ3_XXS or IQ2_S needs has no entry
        for view in views:
            assert not os.path.exists(m.path(model, view))
        for words in set(views.values()):  # one line per reason, naming one of its views
            m.require_log(r"model '%s': .*no (%s) view: .*%s" % (model, "|".join(v for v in views if views[v] == words),
                                                                 words))
    log = m.output()
    for bad in REC["refused"]:  # said once, not once per view
        assert sum(("model 't1-%s'" % bad) in line for line in log.splitlines()) == 1, (bad, log)


def test_llama_cpp_runs_the_new_views(mount_factory, imat_src):
    need(have_node(), "node-llama-cpp")
    m = mount_store(mount_factory, imat_src)
    views = IMAT_VIEWS + IQ4_VIEWS if not ASAN else ["q4_k_m-imat", "iq4_xs-imat", "iq4_nl"]
    # (the synthetic models have no tokenizer: llama.cpp cannot load them)
    paths = [m.path("stories260K", v, "stories260K.gguf") for v in views]
    got = llama_generate(paths, 8)
    for p in paths:
        assert p in got and "error" not in got[p] and got[p]["tokens"], (p, got.get(p))


def test_check_ranks_imat_views_no_worse_than_their_twins(mount_factory, imat_src):
    """quantfs-check runs every -imat view; on stories260K's own text (the
    kind the imatrix was made from) each is at least as close to the F32
    model as its plain twin (within 5%: q5_0's are equal to 1%), and the
    low-bit ones are closer."""
    m = mount_store(mount_factory, imat_src)
    views = IMAT_VIEWS + [v[:-5] for v in IMAT_VIEWS if v not in IMAT_ONLY] + IQ4_VIEWS
    r = subprocess.run([CHECK, "--json", "--tokens=128", "--views=" + ",".join(["f32"] + views),
                        m.path("stories260K")], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    res = {d["view"]: d for d in map(json.loads, r.stdout.splitlines())}
    assert set(views) <= set(res)
    assert all(res[v]["pass"] for v in views)
    kl = {v: res[v]["kl_mean"] for v in views}
    for v in IMAT_VIEWS:
        if v not in IMAT_ONLY:  # no plain twin: these mixes need the imatrix
            assert kl[v] <= kl[v[:-5]] * 1.05, (v, kl[v], kl[v[:-5]])
    for v in ("q2_k", "q3_k_m", "q4_1", "iq4_nl", "iq4_xs"):
        assert kl[v + "-imat"] < kl[v], (v, kl[v + "-imat"], kl[v])
    # the IQ3 mixes sit between the 3- and 4-bit K mixes; the imatrix-only
    # IQ3_XS mix passes too
    assert kl["iq3_s-imat"] < kl["q3_k_s-imat"] and kl["iq3_xs-imat"] < kl["q2_k-imat"]


def test_plan_names_the_imatrix_rules(imat_src):
    """quantfs-check --plan reads the imatrix beside the GGUF as a mount
    would: q4_0-imat lifts the first eighth of ffn_down to Q4_1 (16 layers:
    blk.0 and blk.1) and weights the rest; without an imatrix there is no
    such view."""
    def plan(view, path):
        r = subprocess.run([CHECK, "--plan=" + view, "--json", str(path)], capture_output=True, text=True, timeout=60)
        return r, {d["tensor"]: d for d in map(json.loads, r.stdout.splitlines())}
    r, p = plan("q4_0-imat", imat_src / "h16" / "h16.gguf")
    assert r.returncode == 0, r.stderr
    assert [p["blk.%d.ffn_down.weight" % i]["type"] for i in range(3)] == ["q4_1", "q4_1", "q4_0"]
    assert "with an imatrix" in p["blk.0.ffn_down.weight"]["why"]
    assert p["blk.5.attn_q.weight"]["why"].endswith("imatrix-weighted")
    r, p = plan("q4_0", imat_src / "h16" / "h16.gguf")
    assert p["blk.0.ffn_down.weight"]["type"] == "q4_0" and "imatrix" not in p["blk.5.attn_q.weight"]["why"]
    r, _ = plan("q4_0-imat", imat_src / "plain" / "stories260K.gguf")
    assert r.returncode == 2 and "no imatrix" in r.stderr


def test_a_new_imatrix_is_a_new_version_of_the_views(mount_factory, tmp_path):
    """Replacing a model's imatrix while mounted: its -imat views show the
    new one (as llama-quantize with it would write them) without a
    remount; removing it removes them."""
    src = tmp_path / "src"
    (src / "m").mkdir(parents=True)
    shutil.copy(STORIES_GGUF, src / "m" / "stories260K.gguf")
    shutil.copy(os.path.join(REFS, "stories260K", "imatrix.gguf"), src / "m" / "imatrix.gguf")
    m = mount_factory(src)
    view = m.path("m", "q4_k_m-imat", "stories260K.gguf")
    assert sha256_file(view) == REC["views"]["stories260K"]["q4_k_m-imat"]
    # FUSE's RELEASE comes after close() returns: the rescan may meet a
    # handle the daemon still counts
    m.expect_log(r"changed or vanished while in use")
    shutil.copy(os.path.join(REFS, "stories260K", "imatrix.dat"), src / "m" / "imatrix.dat.tmp")
    os.rename(src / "m" / "imatrix.dat.tmp", src / "m" / "imatrix.dat")
    os.unlink(src / "m" / "imatrix.gguf")
    want = REC["views"]["stories260K-dat"]["q4_k_m-imat"]
    for _ in range(100):
        if os.path.exists(view) and sha256_file(view) == want:
            break
        time.sleep(0.05)
    assert sha256_file(view) == want
    os.unlink(src / "m" / "imatrix.dat")
    for _ in range(100):
        if "q4_k_m-imat" not in os.listdir(m.path("m")):
            break
        time.sleep(0.05)
    assert sorted(os.listdir(m.path("m"))) == sorted(LISTED_VIEWS)


def test_the_imatrix_option_names_another_file(mount_factory, tmp_path):
    """-o imatrix=NAME: each model directory's file NAME is its imatrix
    (here a GGUF one, which would otherwise be taken for a model file); the
    view records that name as llama-quantize --imatrix NAME does."""
    rec = REC["option"]
    src = tmp_path / "src"
    (src / "m").mkdir(parents=True)
    shutil.copy(STORIES_GGUF, src / "m" / "stories260K.gguf")
    shutil.copy(os.path.join(REFS, "stories260K", "imatrix.gguf"), src / "m" / rec["imatrix"])
    m = mount_factory(src, "imatrix=" + rec["imatrix"])
    assert sha256_file(m.path("m", rec["view"], "stories260K.gguf")) == rec["sha256"]
    assert os.listdir(m.path("m", "f32")) == ["stories260K.gguf"]  # the imatrix is in no view
    (tmp_path / "mnt").mkdir()
    r = subprocess.run([QUANTFS, str(src), str(tmp_path / "mnt"), "-o", "imatrix=../x"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0 and "a file name in each model directory" in r.stderr
