#!/usr/bin/env python3
"""Runs llama.cpp v0.5.0's own llama3 rope-factor code (conversion/llama.py,
LlamaModel.generate_extra_tensors, in torch float32) over a grid of
(theta, head_dim, factor, low, high, original context), for the C
reimplementation's test. Needs torch and the bundle's conversion package.

    rope_grid.py LLAMA_SRC > rope_grid.json"""
import json
import sys
import types

sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[1] + "/gguf-py")
from conversion.llama import LlamaModel  # noqa: E402

out = []
for theta in (10000.0, 500000.0, 1000000.0, 150000.0):
    for dim in (64, 80, 96, 128, 256):
        for factor, low, high, orig in ((8.0, 1.0, 4.0, 8192), (32.0, 1.0, 4.0, 8192), (16.0, 2.0, 8.0, 4096),
                                        (4.0, 1.0, 4.0, 2048)):
            rp = {"rope_type": "llama3", "rope_theta": theta, "factor": factor, "low_freq_factor": low,
                  "high_freq_factor": high, "original_max_position_embeddings": orig}
            self = types.SimpleNamespace(rope_parameters=rp, hparams={"head_dim": dim},
                                         format_tensor_name=lambda t: "rope_freqs.weight")
            (name, t), = list(LlamaModel.generate_extra_tensors(self))
            out.append({"params": rp, "head_dim": dim, "f32le": t.numpy().astype("<f4").tobytes().hex()})
json.dump(out, sys.stdout, indent=0)
sys.stdout.write("\n")
