#!/usr/bin/env bash
# Regenerates tests/refs/hf/sampling.json: llama.cpp v0.5.0's converter
# (convert_hf_to_gguf.py from npm node-llama-cpp 3.22.1's gitRelease.bundle)
# run with --outtype f32 on stories260K's checkpoint with each
# generation_config.json of sampling_inputs.json, recorded by record.py.
# The converter fails on samplede and sampledf (a float top_k, a string
# temperature: struct.error), which quantfs refuses. Needs torch and
# transformers (the device machine). Not run by the tests.
#
# usage: make_sampling.sh LLAMA_SRC STORIES_HF OUT.json
set -euo pipefail
src=$1 stories=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
export PYTHONPATH=$src/gguf-py:$src
python3 - "$here/sampling_inputs.json" "$stories" "$work" <<'PY'
import json, shutil, sys
inputs, stories, work = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
for name, text in inputs.items():
    shutil.copytree(stories, "%s/%s" % (work, name))
    open("%s/%s/generation_config.json" % (work, name), "w").write(text)
PY
for d in "$work"/*/; do
  m=$(basename "$d")
  python3 "$src/convert_hf_to_gguf.py" "$d" --outtype f32 --outfile "$work/$m.conv-f32.gguf" > "$work/$m.log" 2>&1 ||
    { echo "$m: the converter failed: $(tail -1 "$work/$m.log")"; rm -f "$work/$m.conv-f32.gguf"; }
done
python3 "$here/record.py" "$work"/*.gguf > "$out"
