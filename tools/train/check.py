"""check.py - check that mxc computes what the PyTorch training model computes.

    /usr/bin/python3 tools/train/check.py            # both demo models
    /usr/bin/python3 tools/train/check.py mamba

For each demo model: compile examples/kjv_KIND.mx with ./mxc, load the shared object with
ctypes (examples/generate.py), load examples/kjv_KIND.safetensors into the PyTorch model of
tools/train/models.py, run both on the same text, and compare the logits: the whole sequence
through forward, and the first tokens again one at a time through step. Fails if any logit
differs by more than 1e-4. CHECK_WEIGHTS_DIR=DIR takes the weights from DIR instead of
examples/ (to check freshly trained weights before they replace the shipped ones).
"""
import os
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "examples"))
import generate  # noqa: E402
import models  # noqa: E402
import train  # noqa: E402

TEXT = (b"And it came to pass, when men began to multiply on the face of the earth, and daughters "
        b"were born unto them, That the sons of God saw the daughters of men that they were fair; "
        b"and they took them wives of all which they chose.\nAnd the LORD said, My spirit shall not "
        b"always strive with man, for that he also is flesh: yet his days shall be an hundred and "
        b"twenty years.\n")
TOL = 1e-4


def check(kind):
    spec = os.path.join(ROOT, "examples", f"kjv_{kind}.mx")
    weights = os.environ.get("CHECK_WEIGHTS_DIR", os.path.join(ROOT, "examples")) + f"/kjv_{kind}.safetensors"
    with tempfile.TemporaryDirectory() as tmp:
        so = os.path.join(tmp, f"libkjv_{kind}.so")
        subprocess.run([os.path.join(ROOT, "mxc"), "build", spec, "-o", so], check=True)
        compiled = generate.Model(so, weights)
        ids = list(TEXT)
        ours = torch.tensor(compiled.forward(ids))                     # (L, V)
        compiled.reset()
        n_step = 48
        stepped = torch.tensor([compiled.step(t) for t in ids[:n_step]])
        compiled.close()

    ref_model = train.build(kind, 96)
    sd = models.load_safetensors(weights)
    if kind == "mamba":
        sd["lm_head.weight"] = sd["backbone.embedding.weight"]       # the tied head
    ref_model.load_state_dict(sd)
    ref_model.eval()
    with torch.no_grad():
        ref = ref_model(torch.tensor([ids]))[0]
    d_fwd = (ours - ref).abs().max().item()
    d_step = (stepped - ref[:n_step]).abs().max().item()
    print(f"kjv_{kind}: {len(ids)} tokens, max |logit| {ref.abs().max().item():.2f}; "
          f"max difference forward {d_fwd:.2e}, step {d_step:.2e} "
          f"({'match' if max(d_fwd, d_step) <= TOL else 'MISMATCH'})")
    return max(d_fwd, d_step) <= TOL


def main():
    torch.set_num_threads(1)
    kinds = sys.argv[1:] or ["mamba", "xlstm"]
    ok = all([check(k) for k in kinds])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
