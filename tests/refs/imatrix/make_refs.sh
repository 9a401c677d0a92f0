#!/bin/bash
# Regenerates the llama-quantize --imatrix references of tests/refs/imatrix.json
# (and stories260K/imatrix.{gguf,dat}, with REGEN_IMATRIX=1).
#   LQ=/path/to/build/bin bash tests/refs/imatrix/make_refs.sh OUTDIR
# LQ: llama-quantize and llama-imatrix of llama.cpp v0.5.0, built from
# node-llama-cpp 3.22.1's llama/gitRelease.bundle (cmake -DGGML_NATIVE=OFF
# --target llama-quantize llama-imatrix). Each run is inside the model's
# directory with the imatrix named as it lies there, as a user would type it.
# Prints one line per run: CASE TYPE SHA256 SIZE, or CASE TYPE REFUSED ...
set -u
R=$(cd "$(dirname "$0")/../../.." && pwd); O=${1:?OUTDIR}; W=$O/work
lq=$LQ/llama-quantize; li=$LQ/llama-imatrix
PY=/usr/bin/python3; MK="$PY $R/../shared/refs/mixes/mkmodel_lq.py"; MI="$PY $R/tests/mkimatrix.py"
mkdir -p $W/stories260K $W/stories260K-dat
cp $R/../shared/models/stories260K/gguf/stories260K.gguf $W/stories260K/
cp $W/stories260K/stories260K.gguf $W/stories260K-dat/
if [ "${REGEN_IMATRIX:-0}" = 1 ]; then
  ( cd $W/stories260K && $li -m stories260K.gguf -f $R/tests/refs/imatrix/story.txt -o imatrix.gguf -c 128 &&
    $li -m stories260K.gguf -f $R/tests/refs/imatrix/story.txt -o imatrix.dat --output-format dat -c 128 ) > $O/imatrix.log 2>&1
  cp $W/stories260K/imatrix.gguf $W/stories260K/imatrix.dat $O/
else
  cp $R/tests/refs/imatrix/stories260K/imatrix.gguf $W/stories260K/
fi
cp $R/tests/refs/imatrix/stories260K/imatrix.dat $W/stories260K-dat/ 2>/dev/null || cp $W/stories260K/imatrix.dat $W/stories260K-dat/
mkm() { mkdir -p $W/$1; $MK $W/$1/$1.gguf "${@:2}" --name $1 > /dev/null; }
mkm h16 --dim 256 --layers 16 --ffn 256 --vocab 256 --heads 4 --kv-heads 2
mkm g8t --dim 256 --layers 8 --ffn 96 --vocab 320 --heads 4 --kv-heads 1 --tied
mkm t1 --dim 256 --layers 1 --ffn 512 --vocab 256 --heads 2 --kv-heads 1 --tied
mkm x4 --dim 256 --layers 2 --ffn 256 --vocab 256 --heads 4 --kv-heads 1 --experts 4
$MI $W/h16/h16.gguf $W/h16/imatrix.gguf --format gguf
$MI $W/g8t/g8t.gguf $W/g8t/imatrix.dat --format dat --skip blk.3. --extra blk.99.attn_q.weight:256
$MI $W/t1/t1.gguf $W/t1/t1.imatrix --format dat --no-trailer
$MI $W/x4/x4.gguf $W/x4/imatrix.gguf --format gguf --zero-expert 1
$MI $W/t1/t1.gguf $W/t1/badsize.gguf --format gguf --bad-size blk.0.attn_q.weight
$MI $W/t1/t1.gguf $W/t1/inf.gguf --format gguf --nonfinite blk.0.ffn_up.weight
$MI $W/t1/t1.gguf $W/t1/nometa.gguf --format gguf --no-meta
head -c 3000 $W/t1/badsize.gguf > $W/t1/trunc.gguf
rec() { # CASE MODEL-DIR GGUF IMATRIX TYPE
  local out=$O/out.gguf; rm -f $out
  ( cd $W/$2 && $lq ${4:+--imatrix $4} $3 $out $5 > $O/lq.log 2>&1 ); local rc=$?
  if [ $rc = 0 ]; then echo "$1 $5 $(sha256sum < $out | cut -c1-64) $(stat -c %s $out)"
  else echo "$1 $5 REFUSED rc=$rc partial=$([ -f $out ] && echo yes || echo no) $(grep -iE 'error|fail|missing' $O/lq.log | tail -1)"; fi
}
T="Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K IQ4_NL IQ4_XS IQ3_S IQ3_M IQ3_XS IQ3_XXS IQ2_M"
for t in $T; do
  rec st-gguf stories260K stories260K.gguf imatrix.gguf $t; rec st-dat stories260K-dat stories260K.gguf imatrix.dat $t
  rec h16 h16 h16.gguf imatrix.gguf $t; rec g8t g8t g8t.gguf imatrix.dat $t
  rec t1 t1 t1.gguf t1.imatrix $t; rec x4 x4 x4.gguf imatrix.gguf $t
done
for t in IQ4_NL IQ4_XS IQ3_S IQ3_M; do for m in stories260K h16 g8t t1 x4; do rec $m-none $m $m.gguf "" $t; done; done
for b in badsize inf nometa trunc; do rec t1-$b t1 t1.gguf $b.gguf Q4_K_M; done
# stories260K-hf: the Hugging Face checkpoint, through the converter's F32 file. CONVERTED: that
# file (convert_hf_to_gguf.py --outtype f32 of ../shared's hf/ in a directory named stories260K-hf,
# or a mount's stories260K-hf/f32/stories260K-hf.gguf, which test_hf.py holds equal to it).
if [ -n "${CONVERTED:-}" ]; then
  mkdir -p $W/stories260K-hf; cp "$CONVERTED" $W/stories260K-hf/stories260K-hf.gguf
  cp $R/tests/refs/imatrix/stories260K/imatrix.gguf $W/stories260K-hf/
  for t in $T; do rec st-hf stories260K-hf stories260K-hf.gguf imatrix.gguf $t; done
  for t in IQ4_NL IQ4_XS IQ3_S IQ3_M; do rec st-hf-none stories260K-hf stories260K-hf.gguf "" $t; done
fi
