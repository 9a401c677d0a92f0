#!/usr/bin/python3
"""Reads a GGUF file written by llama-quantize and prints one JSON record:
file size, sha256 of the whole file and of its header (the bytes before the
tensor data), and each tensor's type. With --manifest RECORDS, turns the
lines make_refs.sh collected into tests/refs/mixes.json."""
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from gguf_reader import GGUF, GGML_TYPES  # noqa: E402


def info(path):
    with open(path, "rb") as f:
        g = GGUF(f.read(64 << 20))  # the header only
    h = hashlib.sha256()
    with open(path, "rb") as f:
        head = f.read(g.data_start)
        h.update(head)
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"size": os.path.getsize(path), "sha256": h.hexdigest(),
            "header_sha256": hashlib.sha256(head).hexdigest(), "header_size": g.data_start,
            "tensors": g.order, "types": ",".join(GGML_TYPES[g.tensors[n]["type"]][0] for n in g.order)}


def manifest(records):
    out = {}
    for line in open(records):
        kind, rest = line.split(" ", 1)
        if kind == "model":
            name, ident, args = rest.strip().split(" ", 2)
            size, sha = ident.split(":")
            out[name] = {"args": args.split(), "size": int(size), "head_sha256": sha, "views": {}, "refused": []}
        elif kind == "view":
            name, view, js = rest.split(" ", 2)
            v = json.loads(js)
            # one tensor order per model (llama-quantize's is the same for every type)
            order = v.pop("tensors")
            assert out[name].setdefault("tensors", order) == order
            out[name]["views"][view] = v
        elif kind == "refused":
            name, view = rest.split()
            out[name]["refused"].append(view)
    return json.dumps(out, indent=1, sort_keys=True)


if __name__ == "__main__":
    if sys.argv[1] == "--manifest":
        print(manifest(sys.argv[2]))
    else:
        print(json.dumps(info(sys.argv[1]), sort_keys=True))
