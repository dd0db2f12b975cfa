"""Minimal safetensors writer and reader (F32 only), numpy only.

The writer streams tensors one by one so that a 650 MB file never sits in memory twice.
Format: 8-byte little-endian header length, JSON header (padded with spaces to a multiple
of 8), then the raw little-endian data at the header's data_offsets.
"""
import json
import struct

import numpy as np


def write(path, specs, make, metadata=None):
    """specs: list of (name, shape); make(name, shape) -> float32 array of that shape."""
    header, off = {}, 0
    for name, shape in specs:
        n = 4 * int(np.prod(shape, dtype=np.int64))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for name, shape in specs:
            a = np.ascontiguousarray(make(name, shape), dtype="<f4")
            assert a.shape == tuple(shape), (name, a.shape, shape)
            f.write(a.tobytes())


def read(path):
    """name -> float32 array (a private copy: safe to hand to torch.from_numpy)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    mm = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, v in header.items():
        assert v["dtype"] == "F32", (name, v["dtype"])
        s, e = v["data_offsets"]
        out[name] = np.array(mm[s:e].view("<f4").reshape(v["shape"]))
    return out
