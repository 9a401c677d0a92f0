#!/usr/bin/python3
"""GGUF q4_k_m views of an MoE checkpoint vs a dense one of the same size,
and vs llama-quantize producing the same file, all in one run on the same
cores.

    bench/moe.py QUANTFS WORKDIR LLAMA_QUANTIZE [VIEW]

1. Two BF16 checkpoints made by tests/hfmodels.py (~180 MB each): a
   Qwen3-MoE (hidden 1024, 4 layers, 8 experts of 768 per layer, 2 used) and
   a dense Qwen3 with the same attention and an MLP of 8 x 768 = 6144, so
   both hold the same number of weights. For each, a cold sequential read
   of MODEL/VIEW/MODEL.gguf (default q4_k_m) from a fresh mount, sources in
   the page cache; the per-byte ratio MoE / dense.
2. The pipeline quantfs replaces, estimated from its second half alone:
   llama-quantize (2 threads) of the converter's F32 file (the MoE model's
   f32 view, which tests/test_hf_archs.py holds byte-identical to
   convert_hf_to_gguf.py's output) into tmpfs, best of 2, checked
   byte-identical with the view; ratio = llama-quantize time / view read
   time. The converter's own time (not run here: it needs torch) would
   only add to the pipeline."""
import hashlib
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import hfmodels  # noqa: E402
from benchutil import mount, timed_read, umount  # noqa: E402

COMMON = dict(tok="spm", dtype="BF16", hidden=1024, layers=4, heads=8, kv=4, head_dim=128, vocab=512, tied=False,
              shards=2, rope_theta=1000000.0, ctx=32768, eps=1e-6, bos=1, eos=2, qk_norm=True)
MODELS = {
    "moe": dict(COMMON, arch="Qwen3MoeForCausalLM", model_type="qwen3_moe", ffn=6144, experts=8, experts_used=2,
                moe_ffn=768),
    "dense": dict(COMMON, arch="Qwen3ForCausalLM", model_type="qwen3", ffn=6144),
}


def main():
    quantfs, work, lq = sys.argv[1:4]
    view = sys.argv[4] if len(sys.argv) > 4 else "q4_k_m"
    src = os.path.join(work, "src")
    for name, p in MODELS.items():
        if not os.path.isdir(os.path.join(src, name)):
            hfmodels.EXTRA[name] = p
            hfmodels.make(name, src)
    for root, _, files in os.walk(src):  # sources in the page cache: measure conversion, not the disk
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                while fh.read(1 << 24):
                    pass
    res = {}
    for name in MODELS:
        m = mount(quantfs, src)
        os.stat(os.path.join(m, name, view, name + ".gguf"))
        res[name] = timed_read(os.path.join(m, name, view, name + ".gguf"))
        umount(m)
    (tm, nm, hm), (td, nd, _) = res["moe"], res["dense"]
    print("%s view, cold, 1 MiB reads: MoE %d MB in %.2f s (%.0f MB/s), dense %d MB in %.2f s (%.0f MB/s); "
          "MoE/dense time per byte %.2fx" % (view, nm >> 20, tm, nm / tm / 1e6, nd >> 20, td, nd / td / 1e6,
                                              (tm / nm) / (td / nd)))
    shm = "/dev/shm/quantfs-bench-moe"
    os.makedirs(shm, exist_ok=True)
    f32 = os.path.join(shm, "moe.f32.gguf")
    m = mount(quantfs, src)
    subprocess.run(["cp", os.path.join(m, "moe", "f32", "moe.gguf"), f32], check=True)
    umount(m)
    out = os.path.join(shm, "out.gguf")
    best = 1e9
    for _ in range(2):
        t0 = time.perf_counter()
        subprocess.run([lq, f32, out, view.upper().replace("-PURE", ""), "2"] if not view.endswith("-pure") else
                       [lq, "--pure", f32, out, view[:-5].upper(), "2"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t0)
        with open(out, "rb") as f:
            same = hashlib.sha256(f.read()).hexdigest() == hm
        os.unlink(out)
    os.unlink(f32)
    os.rmdir(shm)
    print("llama-quantize F32 -> %s, 2 threads: %.2f s (%s the view's bytes); llama-quantize / view read: %.2fx" %
          (view, best, "same as" if same else "DIFFERENT from", best / tm))


if __name__ == "__main__":
    main()
