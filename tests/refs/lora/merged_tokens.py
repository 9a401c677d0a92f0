# On the device: transformers' greedy tokens (float32, 24 after BOS) from merged checkpoints
# that quantfs serves as MODEL+ADAPTER/f32/ (copied off a mount): merged_tokens.py DIR > JSON
import json, os, sys, torch
from transformers import AutoModelForCausalLM
out = {}
for m in sorted(os.listdir(sys.argv[1])):
    mod = AutoModelForCausalLM.from_pretrained(os.path.join(sys.argv[1], m), dtype=torch.float32).eval()
    with torch.no_grad():
        g = mod.generate(input_ids=torch.tensor([[mod.config.bos_token_id]]), max_new_tokens=24, do_sample=False,
                         min_new_tokens=24)
    out[m] = g[0, 1:].tolist()
print(json.dumps(out))
