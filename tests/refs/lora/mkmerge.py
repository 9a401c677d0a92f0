# On the device (torch, transformers, peft): the adapters of quantfs' merge tests and
# PEFT's own merge of each, as fingerprints.
#   mkmerge.py BASES OUT > merges.json
# BASES holds stories260K (../shared/models/stories260K/hf) and tests/hfmodels.py's llama3s
# and qwen2s. Writes OUT/BASE/adapters/NAME (save_pretrained, README.md removed; random A, B,
# DoRA magnitudes and modules_to_save copies, so that each feature changes the weights), then
# for each: merge_and_unload() of the base loaded in float32 on the CPU, and for every tensor
# of the merged state dict that differs from the base: shape, float64 sum and sum of squares,
# and 97 elements at flat indices i * n // 97 (i < 97); plus transformers + peft's greedy
# tokens (24 after BOS, the adapter unmerged).
import json, os, sys, shutil, torch
from transformers import AutoModelForCausalLM
from peft import LoraConfig, PeftModel, get_peft_model

bases, out = sys.argv[1], sys.argv[2]
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
specs = {
    # rank and alpha patterns (regex keys, first match wins), with rsLoRA: s = alpha_i / sqrt(r_i)
    "alpha": ("stories260K", dict(r=8, lora_alpha=16, use_rslora=True, target_modules=ALL,
                                  rank_pattern={"q_proj": 2, "model.layers.1.mlp.down_proj": 4},
                                  alpha_pattern={"v_proj": 4, r"layers\.[23]\..*o_proj": 32, "o_proj": 3})),
    # DoRA with magnitudes away from the merged norms
    "dora2": ("stories260K", dict(r=4, lora_alpha=8, use_dora=True, target_modules=ALL)),
    # modules_to_save: the final norm and every layer's input_layernorm replaced
    "mts": ("stories260K", dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                modules_to_save=["model.norm", "input_layernorm"])),
    # a Llama-3-shaped BF16 base, untied: DoRA with an alpha pattern
    "l3": ("llama3s", dict(r=4, lora_alpha=8, use_dora=True, target_modules=ALL, alpha_pattern={"down_proj": 2})),
    # a Qwen2-shaped BF16 base, tied, q/k/v biases: plain LoRA with a rank pattern
    "q2": ("qwen2s", dict(r=4, lora_alpha=16, target_modules=ALL, rank_pattern={"k_proj": 2})),
    # fine-tune-sized deltas (PEFT's own init, then B ~ N(0, 0.01)): the model still reads well,
    # so a quantized merged view keeps PEFT's greedy tokens; plain, and DoRA (magnitudes x U(0.95, 1.05))
    "gentle": ("stories260K", dict(r=8, lora_alpha=16, target_modules=ALL, init_lora_weights=True)),
    "gdora": ("stories260K", dict(r=8, lora_alpha=16, use_dora=True, target_modules=ALL, init_lora_weights=True)),
}
res = {"merged": {}, "tokens": {}}
for name, (base, kw) in specs.items():
    torch.manual_seed(1000 + sum(map(ord, name)))
    bdir = os.path.join(bases, base)
    m = AutoModelForCausalLM.from_pretrained(bdir, dtype=torch.float32)
    gentle = kw.get("init_lora_weights") is True
    p = get_peft_model(m, LoraConfig(**dict(dict(init_lora_weights=False), **kw)))
    with torch.no_grad():
        for n, t in p.named_parameters():
            if "lora_magnitude_vector" in n:
                t.mul_(torch.empty_like(t).uniform_(0.95, 1.05) if gentle else torch.empty_like(t).uniform_(0.5, 1.5))
            elif ".modules_to_save." in n:
                t.add_(torch.randn_like(t) * 0.1)
            elif gentle and "lora_B" in n:
                t.normal_(0, 0.01)
    d = os.path.join(out, base, "adapters", name)
    p.save_pretrained(d)
    if os.path.exists(os.path.join(d, "README.md")):
        os.unlink(os.path.join(d, "README.md"))
    ref = {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(bdir, dtype=torch.float32).state_dict().items()}
    pm = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(bdir, dtype=torch.float32), d).eval()
    bos = pm.base_model.model.config.bos_token_id
    with torch.no_grad():
        g = pm.generate(input_ids=torch.tensor([[bos]]), max_new_tokens=24, do_sample=False, min_new_tokens=24)
    res["tokens"][base + "+" + name] = g[0, 1:].tolist()
    merged = pm.merge_and_unload().state_dict()
    fp = {}
    for k, v in merged.items():
        if k in ref and torch.equal(ref[k], v):
            continue
        f = v.detach().double().flatten()
        n = f.numel()
        fp[k] = {"shape": list(v.shape), "sum": float(f.sum()), "sumsq": float((f * f).sum()),
                 "samples": [float(f[i * n // 97]) for i in range(97)]}
    res["merged"][base + "+" + name] = fp
    print(name, sorted(os.listdir(d)), len(fp), "tensors changed", res["tokens"][base + "+" + name], file=sys.stderr)
print(json.dumps(res, indent=1, sort_keys=True))
