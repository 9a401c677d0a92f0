import json, os, sys, traceback
import torch, transformers
src, views = sys.argv[1], sys.argv[2]
ids = torch.tensor([[1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 200]])
out = {}
def run(mod, dev):
    with torch.no_grad():
        return mod(input_ids=ids.to(dev)).logits.float().cpu()
for m in sorted(os.listdir(src)):
    cfg = transformers.AutoConfig.from_pretrained(os.path.join(src, m))
    cls = getattr(transformers, cfg.architectures[0])
    kw = {"pad_token_id": 0} if cfg.model_type == "phi3" else {}  # Phi3Config's default pad id 32000 > vocab
    try:
        ref = cls.from_pretrained(os.path.join(src, m), dtype=torch.float32, **kw).eval()
        lr = run(ref, "cpu")
    except Exception as ex:
        out[m] = {"error": "".join(traceback.format_exception_only(type(ex), ex))[-800:]}
        print(m, json.dumps(out[m]), file=sys.stderr, flush=True)
        continue
    for v in ("fp16", "bf16", "int8", "int4", "fp8"):
        d = os.path.join(views, m + "." + v)
        if not os.path.isdir(d):
            continue
        e = {}
        try:
            extra = {}
            try:
                mod, info = cls.from_pretrained(d, output_loading_info=True, device_map="cuda", **kw)
                e["device"] = "cuda"
                lv = run(mod, "cuda")
            except Exception as ex:
                e["first_error"] = "".join(traceback.format_exception_only(type(ex), ex))[-300:]
                if v == "fp8":  # no fp8 kernels here: transformers' own dequantizing load
                    extra["quantization_config"] = transformers.FineGrainedFP8Config(weight_block_size=[128, 128], dequantize=True)
                mod, info = cls.from_pretrained(d, output_loading_info=True, device_map="cpu", **kw, **extra)
                e["device"] = "cpu" + (" dequantize" if extra else "")
                lv = run(mod, "cpu")
            e["class"] = type(mod).__name__
            e["missing"] = sorted(info.get("missing_keys", []))[:20]
            e["unexpected"] = sorted(info.get("unexpected_keys", []))[:20]
            e["mismatched"] = [str(x) for x in info.get("mismatched_keys", [])][:20]
            e["param_dtypes"] = sorted({str(p.dtype) for p in mod.parameters()})
            e["max_abs_err"] = float((lv - lr).abs().max())
            e["ref_max_abs"] = float(lr.abs().max())
            e["cos"] = float(torch.nn.functional.cosine_similarity(lv.flatten(), lr.flatten(), dim=0))
            e["argmax_agree"] = float((lv.argmax(-1) == lr.argmax(-1)).float().mean())
        except Exception as ex:
            e["error"] = "".join(traceback.format_exception_only(type(ex), ex))[-800:]
        out[m + "." + v] = e
        print(m, v, json.dumps(e), file=sys.stderr, flush=True)
print(json.dumps(out, indent=1))
