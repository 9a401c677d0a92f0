# transformers + peft greedy tokens (float32, 24 after BOS) of the bases and base+adapter pairs
# of tests/refs/lora: peft_tokens.py BASES_DIR > peft_tokens.json
import json, os, sys, torch
from transformers import AutoModelForCausalLM
from peft import PeftModel
out = {}
for base, ad in [("stories260K", None), ("stories260K", "plain"), ("stories260K", "pattern"), ("gemma2s", None), ("gemma2s", "gemma")]:
    bdir = sys.argv[1] + "/" + base
    m = AutoModelForCausalLM.from_pretrained(bdir, dtype=torch.float32)
    if ad:
        m = PeftModel.from_pretrained(m, os.path.join(os.path.dirname(os.path.abspath(__file__)), base, "adapters", ad))
    m.eval()
    bos = m.config.bos_token_id if not ad else m.base_model.model.config.bos_token_id
    with torch.no_grad():
        g = m.generate(input_ids=torch.tensor([[bos]]), max_new_tokens=24, do_sample=False, min_new_tokens=24)
    out["%s+%s" % (base, ad)] = g[0, 1:].tolist()
    print(base, ad, out["%s+%s" % (base, ad)], file=sys.stderr)
print(json.dumps(out))
