#!/usr/bin/python3
"""Synthetic importance matrices for a GGUF model, in the two file formats
llama-quantize v0.5.0 reads (../shared/docs/imatrix.md §2): the GGUF one
llama-imatrix writes by default and the legacy .dat. Deterministic from
--seed, so the tests make the very files the references were made from.

  mkimatrix.py MODEL.gguf OUT --format gguf|dat [options]

Entries: every blk.*.weight matmul tensor (2-D, or 3-D experts: one slice
per expert), named as in the model. Values are sums of squares over a
random number of rows per entry (per expert), spread over decades so the
weighting matters.

--skip S         leave out entries whose name contains S (repeatable)
--extra NAME:N   add an entry the model does not have, N values
--bad-size NAME  give NAME's entry one value too many
--nonfinite NAME put an Inf into NAME's entry
--zero-expert K  expert K of every expert entry saw no rows (count 0)
--no-meta        GGUF: leave out the imatrix.* KVs (llama-quantize refuses)
--no-trailer     dat: no chunk count / dataset trailer
--dataset S      the dataset name (default: synthetic.txt)
--chunks N       chunk count (default 7); chunk size 512
"""
import argparse
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_reader import GGUF  # noqa: E402

SKIP = ("_norm.weight", "ffn_gate_inp.weight")


def entries(model):
    g = GGUF(open(model, "rb").read())
    out = []
    for name in g.order:
        dims = g.tensors[name]["dims"]
        if not name.startswith("blk.") or not name.endswith(".weight") or len(dims) < 2 or \
                any(s in name for s in SKIP):
            continue
        out.append((name, dims[0], dims[2] if len(dims) > 2 else 1))
    return out


def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def write_gguf(path, ents, a):
    kv = [(gguf_str("general.type"), struct.pack("<I", 8) + gguf_str("imatrix"))]
    if not a.no_meta:
        kv.append((gguf_str("imatrix.datasets"),
                   struct.pack("<IIQ", 9, 8, 1) + gguf_str(a.dataset)))
        kv.append((gguf_str("imatrix.chunk_count"), struct.pack("<II", 4, a.chunks)))
        kv.append((gguf_str("imatrix.chunk_size"), struct.pack("<II", 4, 512)))
    tensors = []  # (name, dims, bytes)
    for name, sums, counts in sorted(ents, key=lambda e: e[0]):
        nmat = len(counts)
        ne0 = len(sums) // nmat
        dims = [len(sums)] if nmat == 1 else [ne0, nmat]
        tensors.append((name + ".in_sum2", dims, sums.astype("<f4").tobytes()))
        tensors.append((name + ".counts", [1] if nmat == 1 else [1, nmat], counts.astype("<f4").tobytes()))
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for k, v in kv:
        head += k + v
    off = 0
    for name, dims, data in tensors:
        head += gguf_str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        head += struct.pack("<IQ", 0, off)
        off += (len(data) + 31) // 32 * 32
    head += b"\0" * (-len(head) % 32)
    with open(path, "wb") as f:
        f.write(head)
        for _, _, data in tensors:
            f.write(data + b"\0" * (-len(data) % 32))


def write_dat(path, ents, a):
    with open(path, "wb") as f:
        f.write(struct.pack("<i", len(ents)))
        for name, sums, counts in sorted(ents, key=lambda e: e[0]):
            nmat = len(counts)
            ne0 = len(sums) // nmat
            ncall = int(np.ceil(counts.max() / 512))
            vals = np.empty_like(sums)
            for j in range(nmat):  # the legacy writer: (sum / count) * ncall, 1 where no rows
                s = sums[j * ne0:(j + 1) * ne0]
                vals[j * ne0:(j + 1) * ne0] = s / np.float32(counts[j]) * np.float32(ncall) if counts[j] else 1.0
            b = name.encode()
            f.write(struct.pack("<i", len(b)) + b + struct.pack("<ii", ncall, len(vals)))
            f.write(vals.astype("<f4").tobytes())
        if not a.no_trailer:
            d = a.dataset.encode()
            f.write(struct.pack("<ii", a.chunks, len(d)) + d)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--format", choices=["gguf", "dat"], required=True)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--skip", action="append", default=[])
    p.add_argument("--extra", action="append", default=[])
    p.add_argument("--bad-size")
    p.add_argument("--nonfinite")
    p.add_argument("--zero-expert", type=int)
    p.add_argument("--no-meta", action="store_true")
    p.add_argument("--no-trailer", action="store_true")
    p.add_argument("--dataset", default="synthetic.txt")
    p.add_argument("--chunks", type=int, default=7)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    ents = []
    todo = [(n, ne0, nmat) for n, ne0, nmat in entries(a.model) if not any(s in n for s in a.skip)]
    todo += [(x.split(":")[0], int(x.split(":")[1]), 1) for x in a.extra]
    for name, ne0, nmat in todo:
        n = ne0 + (name == a.bad_size)
        counts = rng.integers(64, 4096, size=nmat).astype(np.float32)
        if a.zero_expert is not None and nmat > 1:
            counts[a.zero_expert] = 0
        # mean squares over ~4 decades, times the rows seen
        ms = np.exp(rng.normal(0.0, 2.0, size=n * nmat)).astype(np.float32)
        sums = (ms * np.repeat(counts, n)).astype(np.float32)
        sums[np.repeat(counts, n) == 0] = 0
        if name == a.nonfinite:
            sums[n // 2] = np.inf
        ents.append((name, sums, counts))
    (write_gguf if a.format == "gguf" else write_dat)(a.out, ents, a)


if __name__ == "__main__":
    main()
