"""Write the benchmark's random weights as F32 safetensors under the official names.

usage: gen_weights.py OUTDIR [m130] [x125]

OUTDIR/NAME.safetensors is rewritten only when it is missing or was made by another
generator version / seed (recorded in the file's __metadata__), so re-runs are cheap.
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


def generate(model, path):
    specs = [(n, s) for n, s, _ in model.params()]
    inits = {n: i for n, _, i in model.params()}
    tmp = path + ".tmp"
    st.write(tmp, specs, lambda n, s: models.make_tensor(model, n, s, inits[n]),
             {"seed": models.SEED, "gen_version": models.GEN_VERSION, "model": model.name})
    os.replace(tmp, path)


def main():
    out = sys.argv[1]
    names = sys.argv[2:] or list(models.MODELS)
    os.makedirs(out, exist_ok=True)
    for name in names:
        model = models.MODELS[name]
        path = os.path.join(out, name + ".safetensors")
        if up_to_date(path):
            print(f"{path}: up to date")
            continue
        t = time.time()
        generate(model, path)
        print(f"{path}: {models.n_params(model) / 1e6:.1f} M parameters, "
              f"{os.path.getsize(path) / 1e6:.0f} MB, {time.time() - t:.1f} s")


if __name__ == "__main__":
    main()
