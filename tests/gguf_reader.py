"""Independent GGUF reader for the mount tests (no code shared with codec/).

Parses a GGUF v2/v3 file from bytes: metadata as a dict, tensors with
absolute data offsets and byte sizes computed from ggml's published block
sizes (ggml-common.h)."""
import struct

# ggml type id -> (name, block size, bytes per block)
GGML_TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210), 20: ("IQ4_NL", 32, 18), 30: ("BF16", 1, 2),
}
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
           10: "<Q", 11: "<q", 12: "<d"}


class GGUF:
    def __init__(self, data):
        self.data = data
        self.pos = 0
        magic = data[:4]
        if magic != b"GGUF":
            raise ValueError("bad magic %r" % magic)
        self.pos = 4
        self.version = self._u("<I")
        n_tensors = self._u("<Q")
        n_kv = self._u("<Q")
        self.kv = {}
        self.kv_types = {}
        self.kv_raw = []  # (key, raw bytes of the whole KV pair), in file order
        for _ in range(n_kv):
            start = self.pos
            key = self._str()
            t = self._u("<I")
            if key in self.kv:
                raise ValueError("duplicate key " + key)
            self.kv_types[key] = t
            self.kv[key] = self._val(t)
            self.kv_raw.append((key, bytes(self.data[start:self.pos])))
        self.alignment = self.kv.get("general.alignment", 32)
        infos = []
        for _ in range(n_tensors):
            name = self._str()
            nd = self._u("<I")
            dims = [self._u("<Q") for _ in range(nd)]
            t = self._u("<I")
            off = self._u("<Q")
            infos.append((name, dims, t, off))
        a = self.alignment
        self.data_start = (self.pos + a - 1) // a * a
        self.tensors = {}
        self.order = []
        for name, dims, t, off in infos:
            n = 1
            for d in dims:
                n *= d
            _, blck, size = GGML_TYPES[t]
            assert n % blck == 0
            self.tensors[name] = dict(dims=dims, type=t, offset=self.data_start + off,
                                      nbytes=n // blck * size)
            self.order.append(name)

    def _u(self, fmt):
        v = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def _str(self):
        n = self._u("<Q")
        s = bytes(self.data[self.pos:self.pos + n]).decode("utf-8", "replace")
        self.pos += n
        return s

    def _val(self, t):
        if t == 8:
            return self._str()
        if t == 9:
            at = self._u("<I")
            n = self._u("<Q")
            return [self._val(at) for _ in range(n)]
        return self._u(_SCALAR[t])

    def tensor_bytes(self, name):
        t = self.tensors[name]
        return bytes(self.data[t["offset"]:t["offset"] + t["nbytes"]])


def load(path):
    with open(path, "rb") as f:
        return GGUF(f.read())


if __name__ == "__main__":
    # python3 tests/gguf_reader.py FILE...: one summary line per file
    import collections
    import sys
    for path in sys.argv[1:]:
        g = load(path)
        types = collections.Counter(GGML_TYPES[t["type"]][0] for t in g.tensors.values())
        print("%s: GGUF v%d, file_type %s, %d tensors (%s)" % (
            path, g.version, g.kv.get("general.file_type", "-"), len(g.tensors),
            ", ".join("%d %s" % (n, t) for t, n in sorted(types.items()))))
