#!/usr/bin/env bash
# quantfs demo: installs the dependencies (Debian 12), builds, mounts the
# bundled example model (stories260K from ../shared/models, as GGUF and as
# safetensors) and shows its views; if llama.cpp's npm client is installed (tests/node), generates text
# from the 4-bit view. KEEP=1 leaves the mount up.
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
cd "$root"
bash packaging/install-deps.sh
[ -d build ] || meson setup build >/dev/null
meson compile -C build >/dev/null
shared=$(cd "${QUANTFS_SHARED:-$root/../shared}" && pwd)
work=$(mktemp -d /tmp/quantfs-demo.XXXXXX)
mkdir -p "$work/models/stories260K" "$work/mnt"
# copies, not symlinks: quantfs serves no link that leads outside the source
# root unless told to (-o follow_symlinks), and says so when it mounts
cp "$shared/models/stories260K/gguf/stories260K.gguf" "$shared/models/README.md" "$work/models/stories260K/"
cp -r "$shared/models/stories260K/hf" "$work/models/stories260K-hf"   # the same model as safetensors
# a fine-tune of it: a PEFT LoRA adapter (tests/refs/lora, made with peft) beside the base
mkdir -p "$work/models/stories260K-hf/adapters"
cp -r tests/refs/lora/stories260K/adapters/plain "$work/models/stories260K-hf/adapters/tiny-lora"
# what a mount will show, from the sources alone (no FUSE)
./build/check/quantfs-check --tree "$work/models" --views=f32,q4_k_m,int4
./build/fs/quantfs "$work/models" "$work/mnt" -o cache_size=64M
[ "${KEEP:-0}" = 1 ] || trap 'fusermount3 -u "$work/mnt"' EXIT
set -x
ls "$work/mnt/stories260K"
ls -l "$work/mnt/stories260K/q8_0" "$work/mnt/stories260K/q4_k_m"
du -b --apparent-size "$work"/mnt/stories260K/*/stories260K.gguf
python3 tests/gguf_reader.py "$work/mnt/stories260K/q4_k_m/stories260K.gguf" "$work/mnt/stories260K/fp16/stories260K.gguf"
getfattr -d "$work/mnt/stories260K/q4_k_m/stories260K.gguf" 2>/dev/null || true
ls "$work/mnt/stories260K-hf"
ls -l "$work/mnt/stories260K-hf/int4"
ls -l "$work/mnt/stories260K-hf/q4_k_m"   # the GGUF llama.cpp's converter + llama-quantize would write
ls -l "$work/mnt/stories260K-hf/lora"     # the adapter as convert_lora_to_gguf.py writes it
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); q=c["quantization_config"]; print("int4 config.json:", c["torch_dtype"], q["quant_method"], q["format"], {k: g["weights"]["strategy"] for k, g in q["config_groups"].items()})' "$work/mnt/stories260K-hf/int4/config.json"
./build/check/quantfs-check "$work/mnt/stories260K"   # every view vs f32: forward pass, KL, top-1
cat "$work/mnt/.quantfs/stats"
cat "$work/mnt/.quantfs/log"   # what the daemon said (refusals, checks, changes)
set +x
if [ -d tests/node/node_modules/node-llama-cpp ]; then
    echo "llama.cpp reading the q4_k_m view through the mount:"
    (cd tests/node && node generate.mjs "$work/mnt/stories260K/q4_k_m/stories260K.gguf")
    echo "llama.cpp with the fine-tune: the base's q8_0 view + lora/tiny-lora.gguf (llama-cli --lora):"
    (cd tests/node && GEN_LORA="$work/mnt/stories260K-hf/lora/tiny-lora.gguf" \
        node generate.mjs "$work/mnt/stories260K-hf/q8_0/stories260K-hf.gguf")
fi
[ "${KEEP:-0}" = 1 ] && echo "mounted at $work/mnt (unmount: fusermount3 -u $work/mnt)"
exit 0
