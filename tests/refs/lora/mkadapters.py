# On the device: PEFT adapters for quantfs' LoRA tests (saved without README.md)
import os, sys, shutil, torch
from transformers import AutoModelForCausalLM
from peft import LoraConfig, get_peft_model
out = sys.argv[1]
bases = {"stories260K": sys.argv[2], "gemma2s": sys.argv[3]}
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
specs = {
    "plain": ("stories260K", dict(r=4, lora_alpha=8, target_modules=ALL)),
    "pattern": ("stories260K", dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"],
                                     rank_pattern={"q_proj": 2}, alpha_pattern={})),
    "rslora": ("stories260K", dict(r=4, lora_alpha=8, use_rslora=True, target_modules=["q_proj", "v_proj"])),
    "dora": ("stories260K", dict(r=4, lora_alpha=8, use_dora=True, target_modules=["q_proj", "v_proj"])),
    "gemma": ("gemma2s", dict(r=4, lora_alpha=4, target_modules=["q_proj", "k_proj", "down_proj"])),
}
for name, (base, kw) in specs.items():
    torch.manual_seed(hash(name) % 1000)
    m = AutoModelForCausalLM.from_pretrained(bases[base], dtype=torch.float32)
    p = get_peft_model(m, LoraConfig(init_lora_weights=False, **kw))
    d = os.path.join(out, base, "adapters", name)
    p.save_pretrained(d)
    if os.path.exists(os.path.join(d, "README.md")):
        os.unlink(os.path.join(d, "README.md"))
    print(name, sorted(os.listdir(d)))
