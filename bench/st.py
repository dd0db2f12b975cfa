"""Minimal safetensors writer (F32 or BF16) and reader (F32), numpy only.

The writer streams tensors one by one so that a 650 MB file never sits in memory twice
(and a 14 GB BF16 one is written with one F32 tensor in memory at a time).
Format: 8-byte little-endian header length, JSON header (padded with spaces to a multiple
of 8), then the raw little-endian data at the header's data_offsets.
"""
import json
import struct

import numpy as np


def to_bf16(a):
    """float32 -> bfloat16 bits, rounded to nearest even (finite inputs), in slices of 4 M
    values so that the temporaries stay small."""
    flat = np.ascontiguousarray(a, dtype="<f4").reshape(-1)
    out = np.empty(flat.size, dtype="<u2")
    for i in range(0, flat.size, 1 << 22):
        u = flat[i:i + (1 << 22)].view(np.uint32)
        out[i:i + (1 << 22)] = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    return out


def write(path, specs, make, metadata=None, dtype="F32"):
    """specs: list of (name, shape); make(name, shape) -> float32 array of that shape, stored
    as dtype (F32, or BF16 rounded to nearest even)."""
    assert dtype in ("F32", "BF16"), dtype
    width = 4 if dtype == "F32" else 2
    header, off = {}, 0
    for name, shape in specs:
        n = width * int(np.prod(shape, dtype=np.int64))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + n]}
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
            (a if dtype == "F32" else to_bf16(a)).tofile(f)
            del a


def header(path):
    """The JSON header (name -> dtype, shape, data_offsets; and __metadata__)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


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
