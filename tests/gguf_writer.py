"""Minimal GGUF v3 writer for test and benchmark inputs.

Tensors are given as (name, dims, ggml_type, data) where data is bytes, or
None for an all-zero tensor that is left as a hole in a sparse file (so a
multi-GB source costs no disk)."""
import struct

from gguf_reader import GGML_TYPES


def _str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def _kv(key, value):
    if isinstance(value, str):
        return _str(key) + struct.pack("<I", 8) + _str(value)
    if isinstance(value, float):
        return _str(key) + struct.pack("<If", 6, value)
    if isinstance(value, bool):
        return _str(key) + struct.pack("<I?", 7, value)
    if isinstance(value, int):
        return _str(key) + struct.pack("<II", 4, value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return _str(key) + struct.pack("<IIQ", 9, 8, len(value)) + b"".join(_str(v) for v in value)
    if isinstance(value, list):
        return _str(key) + struct.pack("<IIQ", 9, 6, len(value)) + struct.pack("<%df" % len(value), *value)
    raise TypeError(key)


def write_gguf(path, kvs, tensors, alignment=32):
    def pad(n):
        return (n + alignment - 1) // alignment * alignment
    parts = [b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))]
    parts += [_kv(k, v) for k, v in kvs]
    off = 0
    offsets = []
    for name, dims, t, _ in tensors:
        n = 1
        for d in dims:
            n *= d
        _, blck, size = GGML_TYPES[t]
        nbytes = n // blck * size
        parts.append(_str(name) + struct.pack("<I", len(dims)) + struct.pack("<%dQ" % len(dims), *dims))
        parts.append(struct.pack("<IQ", t, off))
        offsets.append((off, nbytes))
        off += pad(nbytes)
    head = b"".join(parts)  # joined once: a header of many tensors is not rebuilt per tensor
    data_start = pad(len(head))
    with open(path, "wb") as f:
        f.write(head + b"\0" * (data_start - len(head)))
        for (o, nbytes), (_, _, _, data) in zip(offsets, tensors):
            if data is not None:
                assert len(data) == nbytes
                f.seek(data_start + o)
                f.write(data)
        f.truncate(data_start + off)
    return data_start + off


def llama_kvs(n_embd, n_layer=1, n_head=1):
    """The hyper-parameters llama-quantize needs to load a llama GGUF."""
    return [("general.architecture", "llama"), ("llama.context_length", 128),
            ("llama.embedding_length", n_embd), ("llama.block_count", n_layer),
            ("llama.attention.head_count", n_head), ("llama.attention.layer_norm_rms_epsilon", 1e-5)]
