#!/usr/bin/env python3
"""xlstm_large_ref.py - an independent float64 NumPy reference of xLSTM-large
(../shared/SEMANTICS-xlstm-large.md, Part D), written from the semantics text, not from the
upstream code, to make test vectors for dimensions and options the official golden cases do
not cover.

    python3 tools/xlstm_large_ref.py OUTDIR CASE

writes OUTDIR/{model.safetensors, io.safetensors, reference.json} for one of the CASES below:
seeded random weights under the official names (D.2, in the case's weight mode), token
inputs, and the logits of the recurrent form (D.6) run token by token in float64. Only
NumPy is needed (it is not needed to build or test mxc: the outputs are committed)."""
import json
import math
import struct
import sys

import numpy as np

CASES = {
    # embedding 96, 3 heads (qk head 16, v head 32), 3 blocks, vocabulary 97, biases, fused
    # weights, gate cap 10, logit cap 20, FFN factor 1.3 (F = 128)
    "xlstm_large_odd": dict(embedding_dim=96, num_heads=3, num_blocks=3, vocab_size=97,
                            use_bias=True, norm_eps=1e-6, add_out_norm=True, qk_dim_factor=0.5,
                            v_dim_factor=1.0, eps=1e-6, ffn_proj_factor=1.3,
                            ffn_round_up_to_multiple_of=64, gate_soft_cap=10.0,
                            output_logit_soft_cap=20.0, weight_mode="fused",
                            shapes=[("", 3, 40), ("long_", 2, 512)], seed=9001),
    # single weights, no caps, qk wider than v, no out_norm, FFN rounded to 32
    "xlstm_large_odd_single": dict(embedding_dim=96, num_heads=3, num_blocks=2, vocab_size=97,
                                   use_bias=False, norm_eps=1e-5, add_out_norm=False,
                                   qk_dim_factor=1.0, v_dim_factor=0.5, eps=1e-5,
                                   ffn_proj_factor=2.0, ffn_round_up_to_multiple_of=32,
                                   gate_soft_cap=None, output_logit_soft_cap=None,
                                   weight_mode="single", shapes=[("", 3, 40)], seed=9002),
}


def ffn_dim(e, pf, m):
    # D.1: int(((E * pf + m - 1) // m) * m) on Python floats
    return int(((e * pf + m - 1) // m) * m)


def make_weights(c, rng):
    e, nh, v = c["embedding_dim"], c["num_heads"], c["vocab_size"]
    qk, vd = int(e * c["qk_dim_factor"]), int(e * c["v_dim_factor"])
    f = ffn_dim(e, c["ffn_proj_factor"], c["ffn_round_up_to_multiple_of"])
    bias = c["use_bias"]
    w = {}

    def lin(name, out, inp, with_bias=bias, scale=None):
        s = scale if scale is not None else 1.0 / math.sqrt(inp)
        w[name + ".weight"] = rng.uniform(-s, s, (out, inp))
        if with_bias:
            w[name + ".bias"] = rng.uniform(-0.2, 0.2, (out,))

    def norm(name, d):
        w[name + ".weight"] = 1.0 + rng.normal(0, 0.1, (d,))
        if bias:
            w[name + ".bias"] = rng.normal(0, 0.05, (d,))

    w["embedding.weight"] = rng.normal(0, 1, (v, e))
    for l in range(c["num_blocks"]):
        p = f"backbone.blocks.{l}"
        norm(p + ".norm_mlstm", e)
        parts = {}
        for nm, out in (("q", qk), ("k", qk), ("v", vd), ("ogate_preact", vd)):
            lin(p + ".mlstm_layer." + nm, out, e)
        # gates always have a bias; spread so that the input gate spans several e-folds
        w[p + ".mlstm_layer.igate_preact.weight"] = rng.normal(0, 0.35, (nh, e))
        w[p + ".mlstm_layer.igate_preact.bias"] = rng.normal(0, 1, (nh,))
        w[p + ".mlstm_layer.fgate_preact.weight"] = rng.normal(0, 0.15, (nh, e))
        w[p + ".mlstm_layer.fgate_preact.bias"] = np.linspace(3, 6, nh) + rng.normal(0, 0.05, (nh,))
        norm(p + ".mlstm_layer.multihead_norm", vd)
        lin(p + ".mlstm_layer.out_proj", e, vd)
        norm(p + ".norm_ffn", e)
        lin(p + ".ffn.proj_up_gate", f, e)
        lin(p + ".ffn.proj_up", f, e)
        lin(p + ".ffn.proj_down", e, f)
        del parts
    if c["add_out_norm"]:
        norm("backbone.out_norm", e)
    lin("lm_head", v, e, with_bias=False)
    return w, qk, vd, f


def fuse(w, c):
    """D.2: the fused tensors are the row-wise concatenations of the single ones."""
    out = {}
    for name, t in w.items():
        out[name] = t
    for l in range(c["num_blocks"]):
        p = f"backbone.blocks.{l}"
        groups = [(".mlstm_layer.qkv_opreact", ["q", "k", "v", "ogate_preact"], ".mlstm_layer."),
                  (".mlstm_layer.ifgate_preact", ["igate_preact", "fgate_preact"], ".mlstm_layer."),
                  (".ffn.proj_up_gate_z", ["proj_up_gate", "proj_up"], ".ffn.")]
        for fused, parts, mid in groups:
            for kind in ("weight", "bias"):
                names = [f"{p}{mid}{x}.{kind}" for x in parts]
                if names[0] not in out:
                    continue
                out[f"{p}{fused}.{kind}"] = np.concatenate([out.pop(n) for n in names], axis=0)
    return out


def rms(x, w, b, eps):
    y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w
    return y + b if b is not None else y


def logsigmoid(x):
    return -np.logaddexp(0.0, -x)


def cap(x, c):
    return x if c is None else c * np.tanh(x / c)


def forward(w, c, qk, vd, ids):
    """Token by token from the zero state (m = 0), D.4-D.6, float64."""
    e, nh, eps, neps = c["embedding_dim"], c["num_heads"], c["eps"], c["norm_eps"]
    dk, dv = qk // nh, vd // nh
    B, T = ids.shape
    g = lambda n: w.get(n)
    lin = lambda x, n: x @ w[n + ".weight"].T + (w[n + ".bias"] if n + ".bias" in w else 0.0)
    nb = c["num_blocks"]
    C = np.zeros((nb, B, nh, dk, dv))
    N = np.zeros((nb, B, nh, dk))
    M = np.zeros((nb, B, nh))
    logits = np.zeros((B, T, c["vocab_size"]))
    for t in range(T):
        x = w["embedding.weight"][ids[:, t]]
        for l in range(nb):
            p = f"backbone.blocks.{l}"
            xn = rms(x, w[p + ".norm_mlstm.weight"], g(p + ".norm_mlstm.bias"), neps)
            q = lin(xn, p + ".mlstm_layer.q").reshape(B, nh, dk)
            k = lin(xn, p + ".mlstm_layer.k").reshape(B, nh, dk)
            v = lin(xn, p + ".mlstm_layer.v").reshape(B, nh, dv)
            o = lin(xn, p + ".mlstm_layer.ogate_preact")
            ig = cap(lin(xn, p + ".mlstm_layer.igate_preact"), c["gate_soft_cap"])
            fg = cap(lin(xn, p + ".mlstm_layer.fgate_preact"), c["gate_soft_cap"])
            lf = logsigmoid(fg)
            m_new = np.maximum(lf + M[l], ig)
            fp = np.exp(lf + M[l] - m_new)[..., None]
            ip = np.exp(ig - m_new)[..., None]
            C[l] = fp[..., None] * C[l] + ip[..., None] * k[..., :, None] * v[..., None, :]
            N[l] = fp * N[l] + ip * k
            M[l] = m_new
            qs = q / math.sqrt(dk)
            num = np.einsum("bhd,bhdj->bhj", qs, C[l])
            den = np.maximum(np.abs(np.einsum("bhd,bhd->bh", qs, N[l])), np.exp(-m_new)) + eps
            h = num / den[..., None]
            mu = h.mean(-1, keepdims=True)
            var = ((h - mu) ** 2).mean(-1, keepdims=True)
            hn = ((h - mu) / np.sqrt(var + neps)).reshape(B, vd) * w[p + ".mlstm_layer.multihead_norm.weight"]
            if g(p + ".mlstm_layer.multihead_norm.bias") is not None:
                hn = hn + w[p + ".mlstm_layer.multihead_norm.bias"]
            x = x + lin(1.0 / (1.0 + np.exp(-o)) * hn, p + ".mlstm_layer.out_proj")
            xn = rms(x, w[p + ".norm_ffn.weight"], g(p + ".norm_ffn.bias"), neps)
            gate = lin(xn, p + ".ffn.proj_up_gate")
            x = x + lin(gate / (1.0 + np.exp(-gate)) * lin(xn, p + ".ffn.proj_up"), p + ".ffn.proj_down")
        if c["add_out_norm"]:
            x = rms(x, w["backbone.out_norm.weight"], g("backbone.out_norm.bias"), neps)
        logits[:, t] = cap(x @ w["lm_head.weight"].T, c["output_logit_soft_cap"])
    return logits


def st_write(path, tensors):
    header, blobs, off = {}, [], 0
    for name, (dtype, arr) in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as fp:
        fp.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    outdir, case = sys.argv[1], sys.argv[2]
    c = CASES[case]
    rng = np.random.default_rng(c["seed"])
    w, qk, vd, f = make_weights(c, rng)
    w32 = {n: t.astype(np.float32).astype(np.float64) for n, t in w.items()}  # what mxc reads
    stored = fuse(w32, c) if c["weight_mode"] == "fused" else w32
    st_write(f"{outdir}/model.safetensors", {n: ("F32", t.astype(np.float32)) for n, t in stored.items()})
    io = {}
    for prefix, b, t in c["shapes"]:
        ids = rng.integers(0, c["vocab_size"], (b, t)).astype(np.int32)
        io[prefix + "input_ids"] = ("I32", ids)
        io[prefix + "logits"] = ("F32", forward(w32, c, qk, vd, ids).astype(np.float32))
    st_write(f"{outdir}/io.safetensors", io)
    cfg = {k: v for k, v in c.items() if k not in ("shapes", "seed")}
    cfg.update(case=case, seed=c["seed"], qk_dim=qk, v_dim=vd, ffn_dim=f,
               reference="tools/xlstm_large_ref.py: float64 NumPy, recurrent form (D.6) token by token",
               io={p + "input_ids": [b, t] for p, b, t in c["shapes"]})
    with open(f"{outdir}/reference.json", "w") as fp:
        json.dump(cfg, fp, indent=2)
        fp.write("\n")


if __name__ == "__main__":
    main()
