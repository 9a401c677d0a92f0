"""PEFT LoRA adapters of Hugging Face models (MODEL/adapters/NAME/): the
lora view's NAME.gguf against llama.cpp v0.5.0's convert_lora_to_gguf.py
--outtype f32 (refs/lora/records.json, made on the device from adapters
PEFT 0.21 wrote there: refs/lora/*/adapters/), byte for byte but for
general.name; what the converter refuses or would mis-scale is absent with
a log line; llama.cpp applies the file to the base's f32 view and generates
PEFT's own greedy tokens (refs/lora/peft_tokens.json: transformers + peft,
float32)."""
import json
import os
import shutil
import subprocess
import time

from conftest import QUANTFS, SHARED, llama_generate
from test_hf import diff, have_node, need, record

HERE = os.path.dirname(os.path.abspath(__file__))
REFS = os.path.join(HERE, "refs", "lora")
RECORDS = json.load(open(os.path.join(REFS, "records.json")))
PEFT = json.load(open(os.path.join(REFS, "peft_tokens.json")))


def store(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copytree(os.path.join(SHARED, "models", "stories260K", "hf"), src / "stories260K")
    for a in ("plain", "pattern", "rslora", "dora"):  # the merge tests' adapters are merge_store's
        shutil.copytree(os.path.join(REFS, "stories260K", "adapters", a), src / "stories260K" / "adapters" / a)
    subprocess.run(["/usr/bin/python3", os.path.join(HERE, "hfmodels.py"), str(src), "gemma2s"], check=True,
                   capture_output=True)
    shutil.copytree(os.path.join(REFS, "gemma2s", "adapters"), src / "gemma2s" / "adapters")
    # a model without adapters, and an adapter directory missing its weights
    shutil.copytree(os.path.join(SHARED, "models", "stories260K", "hf"), src / "bare")
    (src / "bare" / "adapters" / "half").mkdir(parents=True)
    shutil.copy(os.path.join(REFS, "stories260K", "adapters", "plain", "adapter_config.json"),
                src / "bare" / "adapters" / "half")
    return src


def generate(paths, lora):
    got = llama_generate(paths, 24, lora)
    assert sorted(got) == sorted(paths) and all("error" not in g for g in got.values()), got
    return [got[p]["tokens"] for p in paths]


def test_adapter_files_equal_the_converters(mount_factory, tmp_path):
    m = mount_factory(store(tmp_path))
    assert sorted(os.listdir(m.path("stories260K", "lora"))) == ["pattern.gguf", "plain.gguf"]
    assert os.listdir(m.path("gemma2s", "lora")) == ["gemma.gguf"]
    for model, name in (("stories260K", "plain"), ("stories260K", "pattern"), ("gemma2s", "gemma")):
        d = diff(record(m.path(model, "lora", name + ".gguf")), RECORDS[name + ".lora.gguf"])
        assert not d, (name, d)
    # the adapters' inputs are no model files: no view shows them
    for v in ("f32", "q8_0", "bf16"):
        assert not any(f.startswith("adapter") for f in os.listdir(m.path("stories260K", v))), v
    # no adapters (or none complete): no lora view
    assert "lora" not in os.listdir(m.path("bare")) and "q4_k_m" in os.listdir(m.path("bare"))
    # DoRA: the converter's sys.exit; rsLoRA: it would scale by alpha/r
    m.require_log(r"model 'stories260K': dora.gguf is not offered: .*lora_magnitude_vector.*not a lora_A or lora_B")
    m.require_log(r"model 'stories260K': rslora.gguf is not offered: rsLoRA")
    # quantfs-check checks the model's views and leaves its adapters alone
    from test_check import run as check
    r = check("--json", "-q", "--views=f32,q8_0,lora", m.path("stories260K"), check_rc=0)
    assert sorted(json.loads(line)["view"] for line in r.stdout.splitlines()) == ["f32", "q8_0"], r.stdout


def test_llama_cpp_applies_the_adapter_as_peft(mount_factory, tmp_path):
    need(have_node(), "node-llama-cpp")
    m = mount_factory(store(tmp_path))
    m.expect_log(r"is not offered")
    base = m.path("stories260K", "f32", "stories260K.gguf")
    for name in ("plain", "pattern"):
        toks = generate([base], m.path("stories260K", "lora", name + ".gguf"))[0]
        assert toks == PEFT["stories260K+" + name], name
        assert toks != PEFT["stories260K+None"], name  # the adapter changes the model
    # Gemma 2: llama.cpp loads the adapter onto the base's views (its greedy
    # tokens on this random model differ from transformers' with or
    # without an adapter, so only loading and running is asserted)
    generate([m.path("gemma2s", v, "gemma2s.gguf") for v in ("f32", "q8_0")], m.path("gemma2s", "lora", "gemma.gguf"))


def test_tree_shows_the_lora_view(mount_factory, tmp_path):
    """quantfs-check --tree lists the lora view as the mount does, with the
    mount's sizes, from the same codec rows and without FUSE."""
    from test_check import run as check
    src = store(tmp_path)
    m = mount_factory(src)
    m.expect_log(r"is not offered")
    out = check("--tree", str(src), check_rc=0).stdout
    lines = out.splitlines()
    at = lines.index("stories260K/")
    at = lines.index("  lora/", at)
    listed = {}
    for line in lines[at + 1:]:
        if not line.startswith("    "):
            break
        listed[line.split()[0]] = int(line.split()[1])
    want = {f: os.path.getsize(m.path("stories260K", "lora", f)) for f in os.listdir(m.path("stories260K", "lora"))}
    assert listed == want, (listed, want)
    # and the merged model, as a model of its own
    base = lines.index("stories260K+plain/")
    for view in ("q4_k_m", "f32", "int8"):
        at = lines.index("  %s/" % view, base)
        listed = {}
        for line in lines[at + 1:]:
            if not line.startswith("    "):
                break
            listed[line.split()[0]] = int(line.split()[1])
        d = m.path("stories260K+plain", view)
        assert listed == {f: os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)}, (view, listed)


def test_adapters_come_and_go_with_the_live_store(mount_factory, tmp_path):
    """An adapter copied into (or removed from) MODEL/adapters/ while
    mounted appears (goes) without a remount: inotify watches adapters/."""
    src = store(tmp_path)
    shutil.rmtree(src / "stories260K" / "adapters")
    m = mount_factory(src)
    assert "lora" not in os.listdir(m.path("stories260K"))
    staging = tmp_path / "staging"
    shutil.copytree(os.path.join(REFS, "stories260K", "adapters", "plain"), staging)
    (src / "stories260K" / "adapters").mkdir()
    os.rename(staging, src / "stories260K" / "adapters" / "plain")  # complete at once, as a careful copy is
    for _ in range(100):
        if "lora" in os.listdir(m.path("stories260K")):
            break
        time.sleep(0.05)
    d = diff(record(m.path("stories260K", "lora", "plain.gguf")), RECORDS["plain.lora.gguf"])
    assert not d, d
    # a listing while the directory is half removed may try the old version once
    m.expect_log(r"plain.gguf is not offered: adapters/plain/adapter_\w+\.\w+: No such file")
    # the kernel sends FUSE's RELEASE after close() returns: the daemon may
    # still count record()'s handle as open when the adapter goes
    m.expect_log(r"plain\.gguf \(from .*\) changed or vanished while in use")
    shutil.rmtree(src / "stories260K" / "adapters" / "plain")
    for _ in range(100):
        if "lora" not in os.listdir(m.path("stories260K")):
            break
        time.sleep(0.05)
    assert "lora" not in os.listdir(m.path("stories260K"))


def test_adapters_at_the_store_root_pair_with_their_base(mount_factory, tmp_path):
    """An adapter directory at the source root is no model: it joins the
    model its base_model_name_or_path names (by directory name), and one
    that names no model of the store is said and left out."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copytree(os.path.join(SHARED, "models", "stories260K", "hf"), src / "stories260K")
    shutil.copytree(os.path.join(REFS, "stories260K", "adapters", "plain"), src / "myft")
    shutil.copytree(os.path.join(REFS, "gemma2s", "adapters", "gemma"), src / "orphan")  # base gemma2s: absent
    m = mount_factory(src)
    m.require_log(r"adapter 'orphan' at the source root: base_model_name_or_path '.*gemma2s' names no model")
    assert sorted(os.listdir(m.path())) == [".quantfs", "stories260K", "stories260K+myft"]  # and its merge
    assert os.listdir(m.path("stories260K", "lora")) == ["myft.gguf"]
    d = diff(record(m.path("stories260K", "lora", "myft.gguf")), RECORDS["plain.lora.gguf"])
    assert not d, d


def read_st(path):
    """A safetensors file's F32 tensors (numpy), independent of quantfs."""
    import struct
    import numpy as np
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name != "__metadata__":
            a, b = t["data_offsets"]
            assert t["dtype"] == "F32", name
            out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(t["shape"]).astype(np.float64)
    return out


def write_st(path, tensors):
    """numpy arrays as an F32 safetensors file (names sorted, as safetensors writes them)."""
    import struct
    import numpy as np
    header, data = {}, b""
    for name in sorted(tensors):
        b = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def test_merged_models_are_the_base_with_the_adapter_merged(mount_factory, tmp_path):
    """MODEL+NAME/ is the base with the adapter merged in as PEFT's
    merge_and_unload does (W + alpha/r B A; alpha/sqrt(r) with rsLoRA),
    then converted: its f32 GGUF holds every merged tensor within 1e-6
    (relative, max-norm) of that formula in float64 (q/k rows in llama.cpp's
    order), llama.cpp generates PEFT's own greedy tokens from it, and the
    mixes derive from it; what is not a plain merge, or a pattern quantfs
    cannot read as PEFT does, is refused with a log line."""
    import numpy as np
    import gguf_reader
    from test_check import run as check
    src = store(tmp_path)
    for name, change in (("fifo", {"fan_in_fan_out": True}), ("pissa", {"init_lora_weights": "pissa_niter_4"}),
                         ("pyre", {"alpha_pattern": {r"layers\.\d\.q_proj": 3}}), ("emb", {})):
        d = src / "stories260K" / "adapters" / name
        shutil.copytree(src / "stories260K" / "adapters" / "plain", d)
        ac = json.load(open(d / "adapter_config.json"))
        ac.update(change)
        json.dump(ac, open(d / "adapter_config.json", "w"))
    # emb: an embedding in modules_to_save of a tied model
    w = read_st(str(src / "stories260K" / "adapters" / "plain" / "adapter_model.safetensors"))
    w["base_model.model.model.embed_tokens.weight"] = read_st(os.path.join(
        SHARED, "models", "stories260K", "hf", "model.safetensors"))["model.embed_tokens.weight"]
    write_st(str(src / "stories260K" / "adapters" / "emb" / "adapter_model.safetensors"), w)
    m = mount_factory(src)
    m.expect_log(r"is not offered")
    names = os.listdir(m.path())
    assert {"stories260K+plain", "stories260K+pattern", "stories260K+rslora", "gemma2s+gemma"} <= set(names), names
    assert {"q4_k_m", "int8", "fp8"} <= set(os.listdir(m.path("stories260K+plain")))
    base = read_st(os.path.join(SHARED, "models", "stories260K", "hf", "model.safetensors"))
    cfg = json.load(open(os.path.join(SHARED, "models", "stories260K", "hf", "config.json")))
    gguf_names = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
                  "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
    for name in ("plain", "pattern", "rslora"):
        ad = os.path.join(REFS, "stories260K", "adapters", name)
        ac = json.load(open(os.path.join(ad, "adapter_config.json")))
        lw = read_st(os.path.join(ad, "adapter_model.safetensors"))
        g = gguf_reader.load(m.path("stories260K+" + name, "f32", "stories260K+%s.gguf" % name))
        pairs = 0
        for k, a in lw.items():
            if not k.endswith(".lora_A.weight"):
                continue
            mod = k[len("base_model.model."):-len(".lora_A.weight")]
            b = lw[k.replace("lora_A", "lora_B")]
            r = a.shape[0]
            s = ac["lora_alpha"] / (np.sqrt(r) if ac.get("use_rslora") else r)
            want = base[mod + ".weight"] + s * (b @ a)
            layer, proj = mod.split(".")[2], mod.split(".")[-1]
            if proj in ("q_proj", "k_proj"):  # llama.cpp's row order (LlamaModel.permute)
                heads = cfg["num_attention_heads"] if proj == "q_proj" else cfg["num_key_value_heads"]
                want = want.reshape(heads, 2, want.shape[0] // heads // 2, -1).swapaxes(1, 2).reshape(want.shape)
            t = "blk.%s.%s.weight" % (layer, gguf_names[proj])
            got = np.frombuffer(g.tensor_bytes(t), dtype="<f4").reshape(want.shape)
            assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max(), (name, t)
            pairs += 1
        assert pairs >= 10, name
        # an untouched tensor is the base's
        assert g.tensor_bytes("output_norm.weight") == base["model.norm.weight"].astype("<f4").tobytes()
    need(have_node(), "node-llama-cpp")
    for name in ("plain", "pattern"):
        got = generate([m.path("stories260K+" + name, "f32", "stories260K+%s.gguf" % name)], "")[0]
        assert got == PEFT["stories260K+" + name], name
    # quantfs-check takes it as a model: its views against its own f32
    r = check("--json", "-q", "--views=f32,fp16", m.path("stories260K+plain"), check_rc=0)
    assert len(r.stdout.splitlines()) == 2
    # fan_in_fan_out on nn.Linear targets: PEFT sets it back to false, so the merge is plain's
    gp = gguf_reader.load(m.path("stories260K+plain", "f32", "stories260K+plain.gguf"))
    gf = gguf_reader.load(m.path("stories260K+fifo", "f32", "stories260K+fifo.gguf"))
    assert list(gp.tensors) == list(gf.tensors) and all(gp.tensor_bytes(t) == gf.tensor_bytes(t) for t in gp.tensors)
    # what PEFT's merge would not give as W + sBA, or quantfs cannot read as PEFT does: refused
    for name, why in (("pissa", r"init_lora_weights pissa_niter_4 changed the base"),
                      ("pyre", r"alpha_pattern key 'layers\\.\\d\\.q_proj'.*Python-only"),
                      ("emb", r"replaces an embedding of a model with tied .*embeddings")):
        os.listdir(m.path("stories260K+" + name, "f32"))
        m.require_log(r"model 'stories260K\+%s': no GGUF views: .*%s" % (name, why))


MERGES = json.load(open(os.path.join(REFS, "merges.json")))
GGUF_NAMES = {"embed_tokens": "token_embd", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
              "q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
              "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}


def gguf_name(hf):
    """A Llama/Qwen2 checkpoint tensor's GGUF name (the converter's map, for the names these tests use)."""
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    p = hf.split(".")
    if p[1] == "embed_tokens":
        return "token_embd." + p[-1]
    return "blk.%s.%s.%s" % (p[2], GGUF_NAMES[p[-2]], p[-1])


def like_peft(got, fp, what):
    """got (numpy, the checkpoint's shape and order) against PEFT's merge_and_unload fingerprint:
    97 elements within 1e-6 of the tensor's largest, sum and sum of squares within 1e-6 relative."""
    import numpy as np
    assert list(got.shape) == fp["shape"], what
    f = got.astype(np.float64).ravel()
    n = f.size
    want = np.array(fp["samples"])
    have = f[[i * n // 97 for i in range(97)]]
    tol = 1e-6 * max(np.abs(want).max(), np.abs(f).max())
    assert np.abs(have - want).max() <= tol, (what, np.abs(have - want).max(), tol)
    assert abs(f.sum() - fp["sum"]) <= 1e-6 * np.sqrt(n * fp["sumsq"]), what
    assert abs((f * f).sum() - fp["sumsq"]) <= 1e-6 * fp["sumsq"], what


def merge_store(tmp_path):
    src = tmp_path / "msrc"
    src.mkdir()
    shutil.copytree(os.path.join(SHARED, "models", "stories260K", "hf"), src / "stories260K")
    subprocess.run(["/usr/bin/python3", os.path.join(HERE, "hfmodels.py"), str(src), "llama3s", "qwen2s"], check=True,
                   capture_output=True)
    for b in ("stories260K", "llama3s", "qwen2s"):
        shutil.copytree(os.path.join(REFS, b, "adapters"), src / b / "adapters")
    return src


def test_merged_views_equal_peft_merge_and_unload(mount_factory, tmp_path):
    """Every tensor PEFT's merge_and_unload (float32, CPU) changed, for rank and
    alpha patterns with rsLoRA, DoRA, modules_to_save, on a tied F32 Llama
    (stories260K), an untied BF16 Llama-3 and a tied BF16 Qwen2 with biases
    (refs/lora/merges.json, mkmerge.py on the device), is in the merged f32
    GGUF within 1e-6, in llama.cpp's q/k row order; llama.cpp generates
    PEFT's own greedy tokens from the merged f32 GGUF, and from the merged
    q8_0 GGUF for fine-tune-sized adapters."""
    import numpy as np
    import gguf_reader
    m = mount_factory(merge_store(tmp_path))
    m.expect_log(r"is not offered")
    for model, fps in sorted(MERGES["merged"].items()):
        base = model.split("+")[0]
        cfg = json.load(open(os.path.join(m.source, base, "config.json")))
        path = m.path(model, "f32", model + ".gguf")
        g = gguf_reader.load(path)
        for hf, fp in sorted(fps.items()):
            got = np.frombuffer(g.tensor_bytes(gguf_name(hf)), dtype="<f4").reshape(fp["shape"])
            proj = hf.split(".")[-2]
            if proj in ("q_proj", "k_proj") and cfg["model_type"] == "llama":  # undo LlamaModel.permute
                heads = cfg["num_attention_heads"] if proj == "q_proj" else cfg["num_key_value_heads"]
                got = got.reshape(heads, got.shape[0] // heads // 2, 2, -1).swapaxes(1, 2).reshape(got.shape)
            like_peft(got, fp, (model, hf))
        need(have_node(), "node-llama-cpp")
        # the synthetic bases have random weights, so nearly flat logits: llama.cpp's float
        # order meets a near-tie within 24 tokens (qwen2s+q2: token 22); their first 16 must agree
        n = 24 if base == "stories260K" else 16
        assert generate([path], "")[0][:n] == MERGES["tokens"][model][:n], model
    # fine-tune-sized adapters (plain and DoRA) keep PEFT's tokens through q8_0 too; they
    # leave the base's own greedy tokens at token 20
    assert MERGES["tokens"]["stories260K+gentle"][:20] == PEFT["stories260K+None"][:20] != \
        MERGES["tokens"]["stories260K+gentle"] != PEFT["stories260K+None"]
    for model in ("stories260K+gentle", "stories260K+gdora"):
        assert generate([m.path(model, "q8_0", model + ".gguf")], "")[0] == MERGES["tokens"][model], model


def test_merged_safetensors_views_are_the_merged_checkpoints(mount_factory, tmp_path):
    """MODEL+NAME/f32/ holds the merged checkpoint as safetensors (the base's
    shards, every tensor a merge changed in F32, within 1e-6 of PEFT's
    merge_and_unload); each safetensors view of MODEL+NAME (fp16, bf16,
    int8, int4, fp8: files and generated JSON) is byte for byte that view
    of a store holding that f32 checkpoint as a plain model."""
    import numpy as np
    src = merge_store(tmp_path)
    m = mount_factory(src)
    m.expect_log(r"is not offered")
    copies = tmp_path / "copies"
    copies.mkdir()
    for model, fps in sorted(MERGES["merged"].items()):
        base = model.split("+")[0]
        f32 = m.path(model, "f32")
        shards = sorted(f for f in os.listdir(f32) if f.endswith(".safetensors"))
        assert shards == sorted(f for f in os.listdir(src / base) if f.endswith(".safetensors")), model
        got = {}
        for sh in shards:
            with open(os.path.join(f32, sh), "rb") as f:
                import struct
                n = struct.unpack("<Q", f.read(8))[0]
                header = json.loads(f.read(n))
                data = f.read()
            for name, t in header.items():
                if name == "__metadata__":
                    continue
                a, b = t["data_offsets"]
                if name in fps:
                    assert t["dtype"] == "F32", (model, name)
                    got[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(t["shape"])
        assert sorted(got) == sorted(fps), model
        for name, fp in fps.items():
            like_peft(got[name], fp, (model, name))
        # the merged checkpoint as a plain model of another store
        shutil.copytree(f32, copies / model, ignore=shutil.ignore_patterns("*.gguf"))
        for f in os.listdir(src / base):
            if f.startswith("tokenizer") and not os.path.exists(copies / model / f):
                shutil.copy(src / base / f, copies / model / f)
    c = mount_factory(copies)
    for model in sorted(MERGES["merged"]):
        for v in ("fp16", "bf16", "int8", "int4", "fp8"):
            want = sorted(f for f in os.listdir(c.path(model, v)) if not f.endswith(".gguf"))
            have = sorted(f for f in os.listdir(m.path(model, v)) if not f.endswith(".gguf"))
            assert have == want, (model, v)
            for f in want:
                with open(m.path(model, v, f), "rb") as x, open(c.path(model, v, f), "rb") as y:
                    assert x.read() == y.read(), (model, v, f)
            # read, so cached (the xattr of a derived file once failed with a stray errno)
            assert os.getxattr(m.path(model, v, want[-1]), "user.quantfs.cache") == b"1.0000", (model, v)


def test_adapters_option_pairs_root_adapters(mount_factory, tmp_path):
    """-o adapters=ADAPTER=MODEL (or the config file's adapters line) pairs an
    adapter at the source root with a model whatever its
    base_model_name_or_path says; a pairing with no such model is said and
    left out; a malformed list stops the mount with a message."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copytree(os.path.join(SHARED, "models", "stories260K", "hf"), src / "stories260K")
    shutil.copytree(os.path.join(SHARED, "models", "stories260K", "hf"), src / "other")
    for name in ("ft", "lost"):
        shutil.copytree(os.path.join(REFS, "stories260K", "adapters", "plain"), src / name)
        ac = json.load(open(src / name / "adapter_config.json"))
        ac["base_model_name_or_path"] = "nowhere/none"
        json.dump(ac, open(src / name / "adapter_config.json", "w"))
    m = mount_factory(src, "adapters=ft=other:lost=gone")
    m.require_log(r"adapter 'lost' at the source root: -o adapters= pairs it with 'gone', which is no Hugging Face")
    assert sorted(os.listdir(m.path())) == [".quantfs", "other", "other+ft", "stories260K"]
    d = diff(record(m.path("other", "lora", "ft.gguf")), RECORDS["plain.lora.gguf"])
    assert not d, d
    conf = tmp_path / "q.conf"
    conf.write_text("adapters = ft=stories260K, lost=other\n")
    c = mount_factory(src, "config=%s" % conf)
    assert sorted(os.listdir(c.path())) == [".quantfs", "other", "other+lost", "stories260K", "stories260K+ft"]
    for bad in ("ft", "ft=", "=x", "ft=../x", "ft=a:", "a=b=c"):
        r = subprocess.run([QUANTFS, str(src), str(tmp_path), "-o", "adapters=" + bad],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and "adapters=%s: a list of ADAPTER=MODEL pairs" % bad in r.stderr, (bad, r.stderr)
