"""Write the benchmark's random weights as safetensors under the official names.

usage: gen_weights.py OUTDIR [NAME...]      (names of bench/models.py; default: all but xl7b)

OUTDIR/NAME.safetensors (F32), or OUTDIR/NAME.bf16.safetensors for a model with
weight_dtype BF16 (xl7b: 13.7 GB, never made in F32, which would be 27.5 GB), is rewritten
only when it is missing or was made by another generator version / seed (recorded in the
file's __metadata__), so re-runs are cheap.
"""
import json
import os
import struct
import sys
import time

import models
import st


def up_to_date(path):
    try:
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            meta = json.loads(f.read(n)).get("__metadata__", {})
    except (OSError, ValueError, struct.error):
        return False
    return meta.get("seed") == str(models.SEED) and meta.get("gen_version") == str(models.GEN_VERSION)


def weights_path(out, model):
    dtype = getattr(model, "weight_dtype", "F32")
    return os.path.join(out, model.name + ("" if dtype == "F32" else "." + dtype.lower()) + ".safetensors")


def generate(model, path):
    specs = [(n, s) for n, s, _ in model.params()]
    inits = {n: i for n, _, i in model.params()}
    tmp = path + ".tmp"
    st.write(tmp, specs, lambda n, s: models.make_tensor(model, n, s, inits[n]),
             {"seed": models.SEED, "gen_version": models.GEN_VERSION, "model": model.name},
             dtype=getattr(model, "weight_dtype", "F32"))
    os.replace(tmp, path)


def main():
    out = sys.argv[1]
    names = sys.argv[2:] or models.DEFAULT.split(",")
    os.makedirs(out, exist_ok=True)
    for name in names:
        model = models.MODELS[name]
        path = weights_path(out, model)
        if up_to_date(path):
            print(f"{path}: up to date")
            continue
        t = time.time()
        generate(model, path)
        print(f"{path}: {models.n_params(model) / 1e6:.1f} M parameters, "
              f"{os.path.getsize(path) / 1e6:.0f} MB, {time.time() - t:.1f} s")


if __name__ == "__main__":
    main()
