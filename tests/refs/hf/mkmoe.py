#!/usr/bin/python3
"""A small Mixtral checkpoint made from stories260K's (tokenizer, attention,
norms, embeddings), with 4 experts per layer whose matrices are fixed
functions of stories260K's MLP (no random numbers: the same bytes wherever
numpy runs), BF16, two shards with an index (layer 0's experts split across
them). The references in archs.json were made from it on the device.

    mkmoe.py STORIES_HF OUTDIR/NAME"""
import json
import os
import shutil
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from hfmodels import write_safetensors  # noqa: E402

N_EXPERT = 4


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(t["shape"])
    return out


def main():
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(src):
        if f not in ("model.safetensors", "config.json"):
            shutil.copyfile(os.path.join(src, f), os.path.join(out, f))
    cfg = json.load(open(os.path.join(src, "config.json")))
    cfg.update({"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "num_local_experts": N_EXPERT,
                "num_experts_per_tok": 2, "num_hidden_layers": 2, "tie_word_embeddings": False,
                "rope_theta": 1000000.0, "torch_dtype": "bfloat16"})
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
    w = read_safetensors(os.path.join(src, "model.safetensors"))
    shards = [[], []]
    shards[0] += [("model.embed_tokens.weight", w["model.embed_tokens.weight"]),
                  ("lm_head.weight", w["model.embed_tokens.weight"][::-1].copy()),
                  ("model.norm.weight", w["model.norm.weight"])]
    for l in range(2):
        p = "model.layers.%d." % l
        for k in ("input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
                  "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight"):
            shards[l] += [(p + k, w[p + k])]
        h = w[p + "self_attn.q_proj.weight"].shape[1]
        gate = np.sin(np.arange(N_EXPERT * h, dtype=np.float32).reshape(N_EXPERT, h) * 0.37).astype(np.float32)
        shards[l] += [(p + "block_sparse_moe.gate.weight", gate)]
        for e in range(N_EXPERT):
            s = np.float32(1 + 0.25 * e)
            for wid, k in (("w1", "mlp.gate_proj.weight"), ("w2", "mlp.down_proj.weight"), ("w3", "mlp.up_proj.weight")):
                a = (w[p + k] * s + np.float32(0.01 * e)).astype(np.float32)
                # layer 0's experts 2 and 3 live in the second shard
                shards[1 if (l == 0 and e >= 2) else l] += [(p + "block_sparse_moe.experts.%d.%s.weight" % (e, wid), a)]
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    weight_map = {}
    for fn, ts in zip(names, shards):
        write_safetensors(os.path.join(out, fn), ts, "BF16")
        weight_map.update({n: fn for n, _ in ts})
    json.dump({"metadata": {}, "weight_map": dict(sorted(weight_map.items()))},
              open(os.path.join(out, "model.safetensors.index.json"), "w"), indent=2)


if __name__ == "__main__":
    main()
