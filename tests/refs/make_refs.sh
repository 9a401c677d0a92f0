#!/usr/bin/env bash
# Regenerates tests/refs/mixes.json: what llama.cpp's own llama-quantize
# (v0.5.0, built from the npm node-llama-cpp 3.22.1 bundle, CPU, no -march)
# writes for synthetic models, recorded as sha256 + size of every output
# file, sha256 of its header (everything before the tensor data) and its
# tensor types. The tests regenerate the same inputs with
# ../shared/refs/mixes/mkmodel_lq.py, check their sha256, and compare the
# quantfs views with these records. Not run by the tests: it needs a
# llama-quantize binary (build it from the bundle: see tests/refs/README.md).
#
# usage: tests/refs/make_refs.sh /path/to/llama-quantize [WORKDIR]
#        MODELS="t1 g8t" ... regenerates only those (records of the others are
#        kept from WORKDIR/records.txt)
set -euo pipefail
lq=$1
work=${2:-$(mktemp -d)}
here=$(cd "$(dirname "$0")" && pwd)
shared=$(cd "$here/../../../shared" && pwd)
py=/usr/bin/python3
mk="$py $shared/refs/mixes/mkmodel_lq.py"
# name | mkmodel_lq.py arguments
models=(
  "t1|--dim 256 --layers 1 --ffn 512 --vocab 256 --heads 2 --kv-heads 1 --tied --name t1"
  "g8t|--dim 256 --layers 8 --ffn 96 --vocab 320 --heads 4 --kv-heads 1 --tied --name g8t"
  "h16|--dim 256 --layers 16 --ffn 256 --vocab 256 --heads 4 --kv-heads 2 --name h16"
  "l33|--dim 256 --layers 33 --ffn 256 --vocab 256 --heads 4 --tied --sparse --name l33"
  "l80|--dim 256 --layers 80 --ffn 256 --vocab 256 --heads 4 --kv-heads 1 --sparse --name l80"
  "m80|--dim 256 --layers 80 --ffn 256 --vocab 256 --heads 4 --sparse --name m80"
  "e8|--dim 256 --layers 4 --ffn 256 --vocab 256 --heads 4 --kv-heads 1 --experts 8 --sparse --name e8"
  "llama8b|--dim 4096 --layers 32 --ffn 14336 --vocab 128256 --heads 32 --kv-heads 8 --vocab-size-kv --sparse --name llama8b"
)
mixes="Q8_0 Q6_K Q5_K_M Q5_K_S Q5_1 Q5_0 Q4_K_M Q4_K_S Q4_1 Q4_0 Q3_K_L Q3_K_M Q3_K_S Q2_K F16 BF16"
pures="Q8_0 Q6_K Q5_K Q5_1 Q5_0 Q4_K Q4_1 Q4_0 Q3_K Q2_K"
out="$work/records.txt"
touch "$out"
for m in "${models[@]}"; do
  name=${m%%|*}; args=${m#*|}
  if [ -n "${MODELS:-}" ] && [[ " $MODELS " != *" $name "* ]]; then continue; fi
  grep -v "^[a-z]* $name " "$out" > "$out.tmp" || true; mv "$out.tmp" "$out"
  $mk "$work/$name.gguf" $args
  # inputs are identified by size and the sha256 of their first 256 MiB
  # (all of the small ones; the header and a hole for the sparse ones)
  echo "model $name $(stat -c %s "$work/$name.gguf"):$(head -c 256M "$work/$name.gguf" | sha256sum | cut -d' ' -f1) $args" >> "$out"
  for t in $mixes; do
    v=$(echo "$t" | tr A-Z a-z); [ "$v" = f16 ] && v=fp16
    "$lq" "$work/$name.gguf" "$work/o.gguf" "$t" 2 > "$work/log.txt" 2>&1 || { echo "refused $name $v" >> "$out"; continue; }
    echo "view $name $v $($py "$here/header_info.py" "$work/o.gguf")" >> "$out"
    rm -f "$work/o.gguf"
  done
  for t in $pures; do
    v=$(echo "$t" | tr A-Z a-z)-pure
    "$lq" --pure "$work/$name.gguf" "$work/o.gguf" "$t" 2 > "$work/log.txt" 2>&1 || { echo "refused $name $v" >> "$out"; continue; }
    echo "view $name $v $($py "$here/header_info.py" "$work/o.gguf")" >> "$out"
    rm -f "$work/o.gguf"
  done
  rm -f "$work/$name.gguf"
done
$py "$here/header_info.py" --manifest "$out" > "$here/mixes.json"
echo "wrote $here/mixes.json"
