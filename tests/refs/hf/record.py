#!/usr/bin/python3
"""Records what a set of GGUF files holds, for the HF -> GGUF tests.

    tests/refs/hf/record.py FILE.gguf... > records.json

Per file: size, sha256, header sha256 (everything before the data section),
every KV in order (key, type, sha256 of the pair's bytes, and the value when
it is short), and every tensor in order (name, type, dims, offset from the
data section, sha256 of its bytes). Independent of quantfs' code: it uses
tests/gguf_reader.py."""
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from gguf_reader import GGUF  # noqa: E402


def record(path):
    data = open(path, "rb").read()
    g = GGUF(data)
    kvs = []
    for key, raw in g.kv_raw:
        v = g.kv[key]
        e = {"key": key, "type": g.kv_types[key], "sha256": hashlib.sha256(raw).hexdigest()}
        if isinstance(v, (int, float, bool)) or (isinstance(v, str) and len(v) <= 200):
            e["value"] = v
        elif isinstance(v, list):
            e["n"] = len(v)
        kvs.append(e)
    ts = []
    for name in g.order:
        t = g.tensors[name]
        ts.append({"name": name, "type": t["type"], "dims": t["dims"], "offset": t["offset"] - g.data_start,
                   "sha256": hashlib.sha256(data[t["offset"]:t["offset"] + t["nbytes"]]).hexdigest()})
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "header_sha256": hashlib.sha256(data[:g.data_start]).hexdigest(), "data_start": g.data_start,
            "kvs": kvs, "tensors": ts}


def main():
    out = {}
    for p in sys.argv[1:]:
        out[os.path.basename(p)] = record(p)
    json.dump(out, sys.stdout, indent=0, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
