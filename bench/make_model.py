#!/usr/bin/env python3
"""Writes a synthetic llama-shaped F32 GGUF for benchmarks.

    bench/make_model.py OUT.gguf [--dim 2048] [--ffn 5632] [--layers 2] [--vocab 16000]

Weights are N(0, 0.02) from a fixed seed (real-looking magnitudes matter to
the k-quant search loops); norms are ones. Default: about 670 MB."""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from gguf_writer import write_gguf  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--ffn", type=int, default=5632)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=16000)
    a = ap.parse_args()
    rng = np.random.default_rng(1234)

    def w(*shape):  # ggml dims are [cols, rows]; numpy wants rows first
        return rng.normal(0, 0.02, size=(shape[1], shape[0])).astype(np.float32).tobytes()

    t = [("token_embd.weight", [a.dim, a.vocab], 0, w(a.dim, a.vocab))]
    for i in range(a.layers):
        p = "blk.%d." % i
        t += [(p + "attn_norm.weight", [a.dim], 0, np.ones(a.dim, np.float32).tobytes()),
              (p + "attn_q.weight", [a.dim, a.dim], 0, w(a.dim, a.dim)),
              (p + "attn_k.weight", [a.dim, a.dim], 0, w(a.dim, a.dim)),
              (p + "attn_v.weight", [a.dim, a.dim], 0, w(a.dim, a.dim)),
              (p + "attn_output.weight", [a.dim, a.dim], 0, w(a.dim, a.dim)),
              (p + "ffn_norm.weight", [a.dim], 0, np.ones(a.dim, np.float32).tobytes()),
              (p + "ffn_gate.weight", [a.dim, a.ffn], 0, w(a.dim, a.ffn)),
              (p + "ffn_down.weight", [a.ffn, a.dim], 0, w(a.ffn, a.dim)),
              (p + "ffn_up.weight", [a.dim, a.ffn], 0, w(a.dim, a.ffn))]
    t += [("output_norm.weight", [a.dim], 0, np.ones(a.dim, np.float32).tobytes()),
          ("output.weight", [a.dim, a.vocab], 0, w(a.dim, a.vocab))]
    kv = [("general.architecture", "llama"), ("general.name", "synthetic"), ("llama.context_length", 2048),
          ("llama.block_count", a.layers),
          ("llama.embedding_length", a.dim), ("llama.feed_forward_length", a.ffn), ("general.file_type", 0),
          ("llama.attention.head_count", max(1, a.dim // 64)), ("llama.attention.head_count_kv", max(1, a.dim // 64)),
          ("llama.attention.layer_norm_rms_epsilon", 1e-5), ("llama.rope.freq_base", 10000.0)]
    size = write_gguf(a.out, kv, t)
    print("%s: %d bytes" % (a.out, size))


if __name__ == "__main__":
    main()
