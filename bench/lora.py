#!/usr/bin/python3
"""A merged fine-tune's GGUF view vs its base's, in one run.

    bench/lora.py QUANTFS WORKDIR [VIEW] [RANK] [SHAPE]

A llama-shaped BF16 checkpoint (SHAPE "small", the default: hidden 2048,
MLP 5632, 4 layers, 16 heads, the npm llama2 tokenizer, ~400 MB; "8b":
Llama-3-8B's layers, hidden 4096, MLP 14336, 32 heads of which 8 for k/v,
16 of its 32 layers, ~7.5 GB) and a rank-RANK (default 16) PEFT-layout adapter
on every projection of every layer (random A and B, written by this script),
in MODEL/adapters/ft/. Cold sequential reads (1 MiB) of MODEL/VIEW/ and
MODEL+ft/VIEW/ (default q4_k_m) from fresh mounts, sources in the page cache;
ratio = base read time / merged read time (1.0: merging is free)."""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import hfmodels  # noqa: E402
from benchutil import mount, timed_read, umount  # noqa: E402

PROJ = {"self_attn.q_proj": ("h", "h"), "self_attn.k_proj": ("kv", "h"), "self_attn.v_proj": ("kv", "h"),
        "self_attn.o_proj": ("h", "h"), "mlp.gate_proj": ("f", "h"), "mlp.up_proj": ("f", "h"),
        "mlp.down_proj": ("h", "f")}


def main():
    quantfs, work = sys.argv[1], sys.argv[2]
    view = sys.argv[3] if len(sys.argv) > 3 else "q4_k_m"
    rank = int(sys.argv[4]) if len(sys.argv) > 4 else 16
    shape = sys.argv[5] if len(sys.argv) > 5 else "small"
    src = os.path.join(work, "src")
    H, F, L, NH, KV = (4096, 14336, 16, 32, 8) if shape == "8b" else (2048, 5632, 4, 16, 16)
    if not os.path.isdir(os.path.join(src, "big")):
        hfmodels.EXTRA["big"] = dict(arch="LlamaForCausalLM", model_type="llama", tok="llama2", dtype="BF16",
                                     hidden=H, layers=L, heads=NH, kv=KV, ffn=F, vocab=32000, tied=False,
                                     shards=2 if shape != "8b" else 8, rope_theta=10000.0, ctx=4096, eps=1e-5, bos=1,
                                     eos=2)
        hfmodels.make("big", src)
    ad = os.path.join(src, "big", "adapters", "ft")
    if not os.path.isdir(ad):
        os.makedirs(ad)
        rng = np.random.default_rng(1)
        dims = {"h": H, "f": F, "kv": H // NH * KV}
        ts = []
        for i in range(L):
            for p, (o, n) in PROJ.items():
                pre = "base_model.model.model.layers.%d.%s." % (i, p)
                ts.append((pre + "lora_A.weight", rng.standard_normal((rank, dims[n]), dtype=np.float32) * 0.01))
                ts.append((pre + "lora_B.weight", rng.standard_normal((dims[o], rank), dtype=np.float32) * 0.01))
        hfmodels.write_safetensors(os.path.join(ad, "adapter_model.safetensors"), ts, "F32")
        json.dump({"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": sorted(
            p.split(".")[1] for p in PROJ), "base_model_name_or_path": "big"}, open(os.path.join(ad, "adapter_config.json"), "w"))
    for root, _, files in os.walk(src):  # in the page cache: measure conversion, not the disk
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                while fh.read(1 << 24):
                    pass
    res = {}
    for model in ("big", "big+ft"):
        m = mount(quantfs, src)
        p = os.path.join(m, model, view, model + ".gguf")
        os.stat(p)
        res[model] = timed_read(p)[:2]
        umount(m)
    (tb, nb), (tm, nm) = res["big"], res["big+ft"]
    print("%s, rank %d on all %d projections: base %d MB in %.2f s, merged %d MB in %.2f s; base/merged time %.2fx"
          % (view, rank, 7 * L, nb >> 20, tb, nm >> 20, tm, tb / tm))


if __name__ == "__main__":
    main()
