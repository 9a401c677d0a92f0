"""quantfs-check: its forward pass against an independent numpy one, the
published greedy sample, the ordering of views, the CLI contract (exit
codes, --json, --ref, --prompt), non-llama models, broken views, and the
daemon's -o check."""
import json
import os
import shutil
import struct
import subprocess
import time

import numpy as np
import pytest

import gguf_reader
from conftest import ALL_VIEWS, IQ4_VIEWS, QUANTFS, STORIES_GGUF, SHARED

CHECK = os.environ.get("QUANTFS_CHECK_BIN", os.path.join(os.path.dirname(QUANTFS), "..", "check", "quantfs-check"))
# Greedy decoding from BOS, published with the model (../shared/models/README.md)
PUBLISHED = [403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337,
             410, 408, 419, 292]


def run(*args, check_rc=None):
    r = subprocess.run([CHECK, *args], capture_output=True, text=True, timeout=300)
    if check_rc is not None:
        assert r.returncode == check_rc, (r.returncode, r.stdout, r.stderr)
    return r


def numpy_llama_logits(path, tokens):
    """A straightforward numpy llama forward pass (float64) over a F32 GGUF,
    written from the llama architecture, sharing no code with check/."""
    g = gguf_reader.load(path)
    kv = g.kv

    def w(name):
        t = g.tensors[name]
        a = np.frombuffer(g.tensor_bytes(name), dtype="<f4").astype(np.float64)
        dims = t["dims"]
        return a.reshape(dims[::-1]) if len(dims) > 1 else a

    d = kv["llama.embedding_length"]
    nl = kv["llama.block_count"]
    nh = kv["llama.attention.head_count"]
    nkv = kv["llama.attention.head_count_kv"]
    eps = kv.get("llama.attention.layer_norm_rms_epsilon", 1e-5)
    base = kv.get("llama.rope.freq_base", 10000.0)
    hd = d // nh
    T = len(tokens)
    emb = w("token_embd.weight")
    x = emb[tokens]

    def norm(v, wt):
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + eps) * wt

    pos = np.arange(T)[:, None]
    freqs = base ** (-np.arange(0, hd, 2) / hd)
    ang = pos * freqs[None, :]
    cos, sin = np.cos(ang), np.sin(ang)

    def rope(v, n):  # pairs (2i, 2i+1), llama.cpp's normal mode
        v = v.reshape(T, n, hd // 2, 2)
        a, b = v[..., 0], v[..., 1]
        c, s = cos[:, None, :], sin[:, None, :]
        return np.stack([a * c - b * s, a * s + b * c], -1).reshape(T, n * hd)

    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(nl):
        p = "blk.%d." % l
        h = norm(x, w(p + "attn_norm.weight"))
        q = rope(h @ w(p + "attn_q.weight").T, nh)
        k = rope(h @ w(p + "attn_k.weight").T, nkv)
        v = h @ w(p + "attn_v.weight").T
        out = np.zeros((T, d))
        for hh in range(nh):
            kh = hh // (nh // nkv)
            qh, kk, vv = q[:, hh * hd:(hh + 1) * hd], k[:, kh * hd:(kh + 1) * hd], v[:, kh * hd:(kh + 1) * hd]
            s = qh @ kk.T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            out[:, hh * hd:(hh + 1) * hd] = s @ vv
        x = x + out @ w(p + "attn_output.weight").T
        h = norm(x, w(p + "ffn_norm.weight"))
        gt = h @ w(p + "ffn_gate.weight").T
        x = x + (gt / (1 + np.exp(-gt)) * (h @ w(p + "ffn_up.weight").T)) @ w(p + "ffn_down.weight").T
    x = norm(x, w("output_norm.weight"))
    out_w = w("output.weight") if "output.weight" in g.tensors else emb
    return x @ out_w.T


def test_forward_pass_matches_numpy_and_published_sample(tmp_path):
    dump = tmp_path / "ref.bin"
    run("--ref", STORIES_GGUF, "--tokens=40", "--dump-reference=%s" % dump, "-q", STORIES_GGUF, check_rc=0)
    raw = dump.read_bytes()
    n, nv = struct.unpack_from("<ii", raw)
    tokens = list(struct.unpack_from("<%di" % n, raw, 8))
    logits = np.frombuffer(raw, dtype="<f4", offset=8 + 4 * n).reshape(n, nv)
    assert n == 41 and nv == 512
    assert tokens[0] == 1 and tokens[1:25] == PUBLISHED  # BOS, then the published greedy sample
    ref = numpy_llama_logits(STORIES_GGUF, tokens)
    err = np.abs(logits - ref).max()
    assert err < 1e-3 * np.abs(ref).max(), err
    assert (logits.argmax(-1) == ref.argmax(-1)).all()
    # and greedy really is greedy: each next token is the argmax of the previous position
    assert tokens[2:] == list(ref.argmax(-1)[1:-1])


@pytest.fixture
def stories_mount(mount_factory, tmp_path):
    src = tmp_path / "src"
    (src / "stories260K").mkdir(parents=True)
    shutil.copy(STORIES_GGUF, src / "stories260K" / "stories260K.gguf")
    shutil.copytree(os.path.join(SHARED, "models", "stories260K", "hf"), src / "hf")
    shutil.copy(os.path.join(SHARED, "refs", "kernels.gguf"), src / "kernels.gguf")
    return mount_factory(src)


def results(r):
    return {d["view"]: d for d in map(json.loads, r.stdout.splitlines())}


def test_all_views_of_a_mount(stories_mount):
    t0 = time.time()
    r = run("--json", stories_mount.path("stories260K"), check_rc=0)
    took = time.time() - t0
    res = results(r)
    assert set(res) == set(ALL_VIEWS + IQ4_VIEWS)
    assert all(v["pass"] and v["loads"] and v["runs"] and v["positions"] == 64 for v in res.values())
    assert res["f32"]["top1"] == 1.0 and res["f32"]["kl_mean"] == 0.0
    kl = {k: v["kl_mean"] for k, v in res.items()}
    # precision ordering (this model's rows of 64 and 172 send the K types
    # to llama.cpp's fallbacks: q6_k is q8_0's tensors)
    assert kl["fp16"] < kl["bf16"] < kl["q8_0"] <= kl["q6_k"] < kl["q5_k_m"] < kl["q4_k_m"] < kl["q3_k_m"] < kl["q2_k"]
    assert kl["q8_0"] < kl["q4_0"] and kl["q4_k_m"] < kl["q4_0"]
    # a mix beats its uniform (-pure) counterpart: that is what mixes are for
    assert kl["q4_k_m"] < kl["q4_k-pure"] and kl["q5_k_m"] < kl["q5_k-pure"] and kl["q3_k_m"] < kl["q3_k-pure"]
    assert res["fp16"]["top1"] >= res["q8_0"]["top1"] >= res["q4_k_m"]["top1"] >= res["q4_0"]["top1"]
    assert res["q4_0"]["bits_per_weight"] < res["q8_0"]["bits_per_weight"] < res["fp16"]["bits_per_weight"] == 16
    assert res["fp16"]["sample"].startswith(" Once upon a time, there was a little girl named Lily")
    assert took < 30
    # the human table
    r = run(stories_mount.path("stories260K"), "--views=f32,q4_0", check_rc=0)
    assert "view" in r.stdout and "PASS" in r.stdout and "greedy samples" in r.stdout


def test_hf_views_and_rope_layout(stories_mount):
    """The HF checkpoint (rotate-half q/k layout) gives the same FP32
    perplexity as the GGUF, and its int8/int4/fp8 layouts dequantize."""
    gg = results(run("--json", "--views=f32", stories_mount.path("stories260K"), check_rc=0))["f32"]
    res = results(run("--json", stories_mount.path("hf"), check_rc=0))
    # the safetensors views, and the GGUF-only views of the converter's file
    # checked against the HF f32 weights (q/k rows in the other rope layout)
    assert set(res) == {"f32", "fp16", "bf16", "int8", "int4", "fp8"} | (set(ALL_VIEWS + IQ4_VIEWS) - {"f32", "fp16", "bf16"})
    for v in ("q8_0", "q6_k", "q4_k_m"):
        assert res[v]["kl_mean"] < res["int4"]["kl_mean"] and res[v]["top1"] >= 0.9, (v, res[v])
    assert abs(res["f32"]["ppl"] - gg["ppl"]) < 1e-3
    assert res["int8"]["kl_mean"] < res["fp8"]["kl_mean"] < res["int4"]["kl_mean"]
    assert all(v["pass"] for v in res.values())


def test_one_view_prompt_and_thresholds(stories_mount):
    v = stories_mount.path("stories260K", "q4_0")
    res = results(run("--json", "--prompt=Once upon a time there was", v, check_rc=0))["q4_0"]
    assert "Once upon a time there was" in res["sample"]
    # an override the view cannot meet: FAIL, exit 1, with the reason
    r = run("--json", "--threshold-top1=0.999", v, check_rc=1)
    d = results(r)["q4_0"]
    assert not d["pass"] and "top-1" in d["reason"]


def test_bad_usage_and_paths(stories_mount, tmp_path):
    assert run(check_rc=2).stderr
    run("--tokens=0", stories_mount.path("stories260K"), check_rc=2)
    run(str(tmp_path / "missing"), check_rc=2)
    shutil.copy(STORIES_GGUF, tmp_path / "loose.gguf")
    r = run(str(tmp_path / "loose.gguf"), check_rc=2)  # outside a mount, no --ref
    assert "--ref" in r.stderr
    run("--views=nonesuch", stories_mount.path("stories260K"), check_rc=2)


def test_outside_a_mount_and_broken_views(stories_mount, tmp_path):
    q8 = tmp_path / "q8.gguf"
    shutil.copy(stories_mount.path("stories260K", "q8_0", "stories260K.gguf"), q8)
    res = results(run("--json", "--ref", STORIES_GGUF, str(q8), check_rc=0))
    assert res["q8.gguf"]["pass"]
    data = q8.read_bytes()
    # truncated: does not load
    (tmp_path / "trunc.gguf").write_bytes(data[:len(data) // 2])
    d = results(run("--json", "--ref", STORIES_GGUF, str(tmp_path / "trunc.gguf"), check_rc=1))["trunc.gguf"]
    assert not d["loads"] and "GGUF" in d["reason"]
    # garbage in the tensor data (scales become inf/nan): loads, then fails
    g = gguf_reader.GGUF(data)
    t = g.tensors["blk.0.attn_q.weight"]
    bad = bytearray(data)
    for off in range(t["offset"], t["offset"] + t["nbytes"], 34):
        bad[off:off + 2] = b"\x00\x7c"  # f16 +inf block scale
    (tmp_path / "bad.gguf").write_bytes(bytes(bad))
    d = results(run("--json", "--ref", STORIES_GGUF, str(tmp_path / "bad.gguf"), check_rc=1))["bad.gguf"]
    assert not d["pass"] and "non-finite" in d["reason"]


def test_other_architecture_reports_sqnr(tmp_path):
    """refs/kernels.gguf is not a runnable model (and llama-quantize refuses
    it, so a mount offers only f32): checked outside a mount against ggml's
    own output, tensor by tensor. Its special_256 holds 2.9e20, beyond f16:
    ggml's block scales (and fp16 itself) overflow to inf there, and the
    check must say so."""
    refs = os.path.join(SHARED, "refs")
    files = [os.path.join(refs, "kernels.%s.gguf" % t) for t in ("f16", "q8_0", "q4_0")]
    res = results(run("--json", "--ref", os.path.join(refs, "kernels.gguf"), *files, check_rc=1))
    assert all("top1" not in v for v in res.values())
    for t in ("f16", "q8_0", "q4_0"):
        v = res["kernels.%s.gguf" % t]
        assert not v["pass"] and "special_256" in v["reason"] and "non-finite" in v["reason"]


def test_plan_explains_types(stories_mount):
    """--plan: the codec's plan for a view, from the header alone."""
    r = run("--json", "--plan=q4_k_m", STORIES_GGUF, check_rc=0)
    plan = {d["tensor"]: d for d in map(json.loads, r.stdout.splitlines())}
    assert list(plan)[0] == "output.weight"
    assert plan["blk.4.ffn_down.weight"]["type"] == "f16" and plan["blk.4.ffn_down.weight"]["fallback"]
    assert "use_more_bits" in plan["blk.4.ffn_down.weight"]["why"]
    assert plan["blk.0.attn_norm.weight"]["type"] == "f32"
    # the plan is what the mount serves: offsets and types of the q4_k_m view
    with open(stories_mount.path("stories260K", "q4_k_m", "stories260K.gguf"), "rb") as f:
        g = gguf_reader.GGUF(f.read())
    for name, t in g.tensors.items():
        assert plan[name]["offset"] == t["offset"] and gguf_reader.GGML_TYPES[t["type"]][0].lower() == \
            plan[name]["type"].lower()
    r = run("--plan=q4_k_m", os.path.join(SHARED, "refs", "kernels.gguf"), check_rc=2)
    assert "llama-quantize refuses it" in r.stderr
    run("--plan=q9_9", STORIES_GGUF, check_rc=2)


def test_daemon_option_check(mount_factory, tmp_path):
    src = tmp_path / "src"
    (src / "stories260K").mkdir(parents=True)
    shutil.copy(STORIES_GGUF, src / "stories260K" / "stories260K.gguf")
    env_bin = os.path.dirname(os.path.abspath(QUANTFS))
    m = mount_factory(src, "check")
    m.expect_log(r"check of model")
    assert ".check.json" in os.listdir(m.path("stories260K"))  # first access starts it
    deadline = time.time() + 60
    while True:
        d = json.load(open(m.path("stories260K", ".check.json")))
        if d["status"] != "running":
            break
        assert time.time() < deadline, d
        time.sleep(0.2)
    assert d["status"] == "done" and d["pass"] and d["failed"] == [] and d["exit_status"] == 0
    assert {v["view"] for v in d["views"]} >= {"f32", "fp16", "q4_0", "q2_k", "q4_k_m"}
    assert all(v["pass"] for v in d["views"])
    assert env_bin


def test_non_llama_checkpoint_sqnr_ordering(mount_factory, tmp_path):
    """A safetensors model whose config names another architecture: no
    forward pass, per-tensor SQNR against FP32, ordered by precision."""
    d = tmp_path / "src" / "other"
    shutil.copytree(os.path.join(SHARED, "models", "stories260K", "hf"), d)
    cfg = json.load(open(d / "config.json"))
    cfg["architectures"] = ["SomethingElseForCausalLM"]
    json.dump(cfg, open(d / "config.json", "w"))
    m = mount_factory(tmp_path / "src")
    res = results(run("--json", m.path("other"), check_rc=0))
    assert all("top1" not in v and v["pass"] for v in res.values())
    s = {k: v["sqnr_min_db"] for k, v in res.items()}
    assert s["f32"] == 200 and s["fp16"] > s["bf16"] > s["int8"] > s["int4"]
    assert s["int8"] > s["fp8"] > s["int4"]


def test_daemon_checks_queue_on_a_few_threads(mount_factory, tmp_path):
    """-o check with many models looked up at once: the checks wait in a
    queue for check_jobs workers; the daemon's threads do not grow with the
    models (they did: one waiting thread per model), and every check ends."""
    src = tmp_path / "src"
    for i in range(24):
        (src / ("m%02d" % i)).mkdir(parents=True)
        shutil.copy(STORIES_GGUF, src / ("m%02d" % i) / "stories260K.gguf")
    m = mount_factory(src, "check", "check_jobs=2", "views=f32,q8_0")
    m.expect_log(r"check of model")

    def threads():
        return len(os.listdir("/proc/%d/task" % m.proc.pid))

    os.listdir(m.mnt)
    base = threads()
    for i in range(24):
        os.listdir(m.path("m%02d" % i))  # each lookup queues its model's check
    # 2 checkers, and at most libfuse's 10 session threads more (the
    # checkers' reads of the views keep them busy); one per model before
    assert threads() <= base + 2 + 10, (base, threads())
    deadline = time.time() + 240
    for i in range(24):
        while json.load(open(m.path("m%02d" % i, ".check.json")))["status"] == "running":
            assert time.time() < deadline, i
            time.sleep(0.2)
        d = json.load(open(m.path("m%02d" % i, ".check.json")))
        assert d["status"] == "done" and d["pass"], d
