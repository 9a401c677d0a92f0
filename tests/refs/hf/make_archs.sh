#!/usr/bin/env bash
# Regenerates tests/refs/hf/archs.json: llama.cpp v0.5.0's converter
# (--outtype f32, f16, bf16, q8_0) and llama-quantize (every mix and --pure
# type, 2 threads) on stories260K's checkpoint with each config.json change
# of arch_inputs.json (or the checkpoint its maker script writes), recorded
# by record.py. Needs torch and transformers
# (the device machine) and a llama-quantize built from the same bundle
# (cmake -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF, target llama-quantize).
# Not run by the tests.
#
# usage: make_archs.sh LLAMA_SRC LLAMA_QUANTIZE STORIES_HF OUT.json
set -euo pipefail
src=$1 lq=$2 stories=$3 out=$4
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
export PYTHONPATH=$src/gguf-py:$src
python3 - "$here/arch_inputs.json" "$stories" "$work/models" <<'PY'
import json, os, shutil, sys
inputs, stories, work = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
for name, ch in inputs.items():
    import subprocess
    if ch.get("hfmodels"):  # tests/hfmodels.py (needs QUANTFS_TOKENIZERS or tests/node's npm tokenizers)
        subprocess.run([sys.executable, os.path.join(os.path.dirname(sys.argv[1]), "..", "..", "hfmodels.py"), work,
                        name], check=True)
        continue
    if "maker" in ch:  # its own checkpoint (mkmoe.py: Mixtral experts)
        subprocess.run([sys.executable, os.path.join(os.path.dirname(sys.argv[1]), ch["maker"]), stories,
                        os.path.join(work, name)], check=True)
        continue
    shutil.copytree(stories, os.path.join(work, name))
    cfg = json.load(open(os.path.join(stories, "config.json")))
    cfg.update(ch["set"])
    for k in ch["drop"]:
        cfg.pop(k)
    json.dump(cfg, open(os.path.join(work, name, "config.json"), "w"), indent=2)
PY
mixes="Q8_0 Q6_K Q5_K_M Q5_K_S Q5_1 Q5_0 Q4_K_M Q4_K_S Q4_1 Q4_0 Q3_K_L Q3_K_M Q3_K_S Q2_K F16 BF16"
pures="Q8_0 Q6_K Q5_K Q5_1 Q5_0 Q4_K Q4_1 Q4_0 Q3_K Q2_K"
for d in "$work"/models/*/; do
  m=$(basename "$d")
  for t in f32 f16 bf16 q8_0; do
    python3 "$src/convert_hf_to_gguf.py" "$d" --outtype $t --outfile "$work/$m.conv-$t.gguf" > "$work/$m.log" 2>&1
  done
  for t in $mixes; do "$lq" "$work/$m.conv-f32.gguf" "$work/$m.lq-${t,,}.gguf" $t 2 > /dev/null 2>&1; done
  for t in $pures; do "$lq" --pure "$work/$m.conv-f32.gguf" "$work/$m.lq-${t,,}-pure.gguf" $t 2 > /dev/null 2>&1; done
done
python3 "$here/record.py" "$work"/*.gguf > "$out"
