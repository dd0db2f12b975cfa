#!/usr/bin/env python3
"""mamba2_ref.py - an independent float64 numpy reference of a Mamba-2 language model.

Written from ../shared/SEMANTICS-mamba2.md Part C (not from mxc's code, and not the
official mamba_ssm, which needs CUDA/Triton and is not available here). It makes test
vectors for shapes the official golden cases do not cover (odd d_model, ngroups > 1,
headdim 8/24, d_state 24, d_conv 3, d_ssm < d_inner, untied or padded heads, long
sequences): seeded random weights under mamba_ssm's names, and the logits of the
sequence forward computed twice, by the chunked SSD form (C.7) and by the token-by-token
recurrence (C.6); the script checks that the two agree to 1e-10 before writing anything.

    python3 tools/mamba2_ref/mamba2_ref.py CASE OUTDIR     # CASE: one of CASES below
    python3 tools/mamba2_ref/mamba2_ref.py --check tests/golden/mamba2_tiny

writes OUTDIR/model.safetensors, OUTDIR/io.safetensors (input_ids I32 [B,L], logits F32
from the chunked form, step_logits F32 from the recurrence) and OUTDIR/config.json (the
settings, with a MambaConfig-style official_config for `mxc import`). dt_limit is applied
on both paths (upstream's step ignores it, C.9 item 8). Needs only numpy. """
import json
import math
import struct
import sys

import numpy as np

CASES = {
    # odd d_model, d_ssm < d_inner (gated-MLP part), 2 groups, headdim 24, d_state 24,
    # d_conv 3, D per channel, biases, no conv bias, finite dt_limit, untied padded head
    "mamba2_odd": dict(d_model=37, n_layer=2, vocab_size=50, pad_vocab_size_multiple=8,
                       d_state=24, d_conv=3, expand=2, headdim=24, ngroups=2, d_ssm=48,
                       chunk_size=16, rmsnorm=True, norm_before_gate=False, D_has_hdim=True,
                       conv_bias=False, bias=True, dt_limit=(0.002, 0.08),
                       tie_embeddings=False, batch=3, seq_len=40, seed=1301),
    # headdim 8, 2 groups, the norm before the gate, 512 tokens (blocks of 48: not a multiple)
    "mamba2_long": dict(d_model=32, n_layer=2, vocab_size=40, pad_vocab_size_multiple=8,
                        d_state=16, d_conv=4, expand=2, headdim=8, ngroups=2, d_ssm=None,
                        chunk_size=48, rmsnorm=True, norm_before_gate=True, D_has_hdim=False,
                        conv_bias=True, bias=False, dt_limit=(0.0, math.inf),
                        tie_embeddings=True, batch=2, seq_len=512, seed=1302),
    # no gated norm (y * SiLU(z)), 4 groups of 1 head, d_state 8
    "mamba2_nonorm": dict(d_model=20, n_layer=3, vocab_size=31, pad_vocab_size_multiple=1,
                          d_state=8, d_conv=4, expand=1.6, headdim=8, ngroups=4, d_ssm=None,
                          chunk_size=8, rmsnorm=False, norm_before_gate=False,
                          D_has_hdim=False, conv_bias=True, bias=False,
                          dt_limit=(0.0, math.inf), tie_embeddings=True, batch=3, seq_len=40,
                          seed=1303),
}


def dims(c):
    d_inner = int(c["expand"] * c["d_model"])
    d_ssm = c["d_ssm"] or d_inner
    h = d_ssm // c["headdim"]
    assert h * c["headdim"] == d_ssm and h % c["ngroups"] == 0 and d_ssm <= d_inner
    gn = c["ngroups"] * c["d_state"]
    v = c["vocab_size"]
    m = c["pad_vocab_size_multiple"]
    vp = v + (m - v % m) % m
    return dict(d_inner=d_inner, d_ssm=d_ssm, nheads=h, d_mlp=d_inner - d_ssm, gn=gn,
                conv_dim=d_ssm + 2 * gn, d_in_proj=2 * d_inner + 2 * gn + h, vocab_padded=vp)


def make_weights(c, dm, rng):
    """Official-style init (C.9 items 1-2) plus noise, so that no term is trivial."""
    d, h = c["d_model"], dm["nheads"]
    w = {}
    w["backbone.embedding.weight"] = rng.normal(0, 0.2, (dm["vocab_padded"], d))
    for l in range(c["n_layer"]):
        p = f"backbone.layers.{l}."
        w[p + "norm.weight"] = 1 + rng.normal(0, 0.1, d)
        dt = np.exp(rng.uniform(math.log(1e-3), math.log(1e-1), h))
        w[p + "mixer.dt_bias"] = dt + np.log(-np.expm1(-dt)) + rng.normal(0, 0.05, h)
        w[p + "mixer.A_log"] = np.log(rng.uniform(1, 16, h))
        w[p + "mixer.D"] = 1 + rng.normal(0, 0.1, dm["d_ssm"] if c["D_has_hdim"] else h)
        w[p + "mixer.in_proj.weight"] = rng.normal(0, 1 / math.sqrt(d), (dm["d_in_proj"], d))
        if c["bias"]:
            w[p + "mixer.in_proj.bias"] = rng.normal(0, 0.1, dm["d_in_proj"])
        bound = 1 / math.sqrt(c["d_conv"])
        w[p + "mixer.conv1d.weight"] = rng.uniform(-bound, bound, (dm["conv_dim"], 1, c["d_conv"]))
        if c["conv_bias"]:
            w[p + "mixer.conv1d.bias"] = rng.uniform(-bound, bound, dm["conv_dim"])
        if c["rmsnorm"]:
            w[p + "mixer.norm.weight"] = 1 + rng.normal(0, 0.1, dm["d_ssm"])
        w[p + "mixer.out_proj.weight"] = rng.normal(0, 1 / math.sqrt(dm["d_inner"]),
                                                    (d, dm["d_inner"]))
        if c["bias"]:
            w[p + "mixer.out_proj.bias"] = rng.normal(0, 0.1, d)
    w["backbone.norm_f.weight"] = 1 + rng.normal(0, 0.1, d)
    if not c["tie_embeddings"]:
        w["lm_head.weight"] = rng.normal(0, 0.2, (dm["vocab_padded"], d))
    # the model is evaluated with the float32 values that are stored
    return {k: v.astype(np.float32) for k, v in w.items()}


def silu(x):
    return x / (1 + np.exp(-x))


def softplus(x):
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))


def rmsnorm(x, w, eps, groups=1):
    shp = x.shape
    xg = x.reshape(shp[:-1] + (groups, shp[-1] // groups))
    xg = xg / np.sqrt(np.mean(xg * xg, axis=-1, keepdims=True) + eps)
    return xg.reshape(shp) * w


def ssd_recurrent(x, dt, A, B, C, D, G):
    """x [L,H,P], dt [L,H], A [H], B/C [L,G,N], D [H] or [H,P] -> y [L,H,P] (C.4 step 6)."""
    L, H, P = x.shape
    N = B.shape[-1]
    g = np.arange(H) // (H // G)
    h = np.zeros((H, P, N))
    y = np.zeros_like(x)
    for t in range(L):
        a = np.exp(dt[t] * A)
        h = a[:, None, None] * h + (dt[t][:, None] * x[t])[:, :, None] * B[t, g][:, None, :]
        y[t] = np.einsum("hpn,hn->hp", h, C[t, g])
    return y + x * (D[:, None] if D.ndim == 1 else D)


def ssd_chunked(x, dt, A, B, C, D, G, Q):
    """The same by blocks of Q (C.7): quadratic inside a block, states passed between."""
    L, H, P = x.shape
    N = B.shape[-1]
    g = np.arange(H) // (H // G)
    h = np.zeros((H, P, N))
    y = np.zeros_like(x)
    for c0 in range(0, L, Q):
        sl = slice(c0, min(c0 + Q, L))
        xs, dts, Bs, Cs = x[sl], dt[sl], B[sl][:, g], C[sl][:, g]  # [q,H,...]
        q = xs.shape[0]
        s = np.cumsum(dts * A, axis=0)  # [q,H]
        seg = s[:, None, :] - s[None, :, :]  # [i,j,H]
        mask = np.tril(np.ones((q, q), bool))[:, :, None]
        decay = np.where(mask, np.exp(np.where(mask, seg, 0.0)), 0.0)
        cb = np.einsum("ihn,jhn->ijh", Cs, Bs)
        lmat = cb * decay * dts[None, :, :]
        y[sl] = np.einsum("ijh,jhp->ihp", lmat, xs)
        y[sl] += np.exp(s)[:, :, None] * np.einsum("hpn,ihn->ihp", h, Cs)
        wj = np.exp(s[-1][None, :] - s) * dts  # [q,H]
        h = np.exp(s[-1])[:, None, None] * h + np.einsum("jh,jhp,jhn->hpn", wj, xs, Bs)
    return y + x * (D[:, None] if D.ndim == 1 else D)


def forward(c, dm, w, ids, chunked):
    """Logits [B,L,V] of MambaLMHeadModel with Mamba2 mixers (C.3-C.5), float64."""
    f = {k: v.astype(np.float64) for k, v in w.items()}
    Bsz, L = ids.shape
    G, N, H, P, K = c["ngroups"], c["d_state"], dm["nheads"], c["headdim"], c["d_conv"]
    ds, dml, cd = dm["d_ssm"], dm["d_mlp"], dm["conv_dim"]
    out = np.zeros((Bsz, L, dm["vocab_padded"]))
    for b in range(Bsz):
        xres = f["backbone.embedding.weight"][ids[b]]
        for l in range(c["n_layer"]):
            p = f"backbone.layers.{l}."
            u = rmsnorm(xres, f[p + "norm.weight"], 1e-5)
            zx = u @ f[p + "mixer.in_proj.weight"].T
            if c["bias"]:
                zx += f[p + "mixer.in_proj.bias"]
            z0, x0 = zx[:, :dml], zx[:, dml:2 * dml]
            z = zx[:, 2 * dml:2 * dml + ds]
            xbc = zx[:, 2 * dml + ds:2 * dml + ds + cd]
            dt = zx[:, 2 * dml + ds + cd:]
            cw = f[p + "mixer.conv1d.weight"][:, 0, :]  # [cd, K]
            pad = np.concatenate([np.zeros((K - 1, cd)), xbc])
            conv = sum(cw[:, k] * pad[k:k + L] for k in range(K))
            if c["conv_bias"]:
                conv += f[p + "mixer.conv1d.bias"]
            xbc = silu(conv)
            xs = xbc[:, :ds].reshape(L, H, P)
            Bm = xbc[:, ds:ds + G * N].reshape(L, G, N)
            Cm = xbc[:, ds + G * N:].reshape(L, G, N)
            delta = softplus(dt + f[p + "mixer.dt_bias"])
            delta = np.clip(delta, c["dt_limit"][0], c["dt_limit"][1])
            A = -np.exp(f[p + "mixer.A_log"])
            D = f[p + "mixer.D"]
            D = D.reshape(H, P) if c["D_has_hdim"] else D
            if chunked:
                y = ssd_chunked(xs, delta, A, Bm, Cm, D, G, c["chunk_size"])
            else:
                y = ssd_recurrent(xs, delta, A, Bm, Cm, D, G)
            y = y.reshape(L, ds)
            if not c["rmsnorm"]:
                y = y * silu(z)
            elif c["norm_before_gate"]:
                y = rmsnorm(y, f[p + "mixer.norm.weight"], 1e-5, G) * silu(z)
            else:
                y = rmsnorm(y * silu(z), f[p + "mixer.norm.weight"], 1e-5, G)
            if dml > 0:
                y = np.concatenate([silu(z0) * x0, y], axis=1)
            o = y @ f[p + "mixer.out_proj.weight"].T
            if c["bias"]:
                o += f[p + "mixer.out_proj.bias"]
            xres = xres + o
        hf = rmsnorm(xres, f["backbone.norm_f.weight"], 1e-5)
        head = f["backbone.embedding.weight" if c["tie_embeddings"] else "lm_head.weight"]
        out[b] = hf @ head.T
    return out


def write_safetensors(path, tensors):
    """A minimal safetensors writer: 8-byte header length, JSON header, raw data."""
    header, blobs, at = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        dtype = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}[arr.dtype]
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as fp:
        fp.write(struct.pack("<Q", len(text)))
        fp.write(text)
        for raw in blobs:
            fp.write(raw)


def read_safetensors(path):
    """F32, BF16 and I32 tensors of a safetensors file, as numpy arrays."""
    with open(path, "rb") as fp:
        n = struct.unpack("<Q", fp.read(8))[0]
        header = json.loads(fp.read(n))
        data = fp.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        raw = data[t["data_offsets"][0]:t["data_offsets"][1]]
        if t["dtype"] == "BF16":
            bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(raw, {"F32": "<f4", "I32": "<i4"}[t["dtype"]])
        out[name] = arr.reshape(t["shape"])
    return out


def check_golden(case_dir):
    """The reference against an official golden case (mamba2_tiny, mamba2_bf16)."""
    cfg = json.load(open(f"{case_dir}/config.json"))
    oc = cfg["official_config"]
    sc = oc["ssm_cfg"]
    lim = cfg["dt_limit"]
    c = dict(d_model=oc["d_model"], n_layer=oc["n_layer"], vocab_size=oc["vocab_size"],
             pad_vocab_size_multiple=oc["pad_vocab_size_multiple"], d_state=sc["d_state"],
             d_conv=sc["d_conv"], expand=sc["expand"], headdim=sc["headdim"],
             ngroups=sc["ngroups"], d_ssm=sc["d_ssm"], chunk_size=sc["chunk_size"],
             rmsnorm=sc["rmsnorm"], norm_before_gate=sc["norm_before_gate"],
             D_has_hdim=sc["D_has_hdim"], conv_bias=sc["conv_bias"], bias=sc["bias"],
             dt_limit=(float(lim[0]), float(lim[1])), tie_embeddings=oc["tie_embeddings"])
    dm = dims(c)
    w = read_safetensors(f"{case_dir}/model.safetensors")
    io = read_safetensors(f"{case_dir}/io.safetensors")
    for chunked, key in ((True, "logits"), (False, "step_logits")):
        got = forward(c, dm, w, io["input_ids"], chunked)
        print(f"{case_dir}: {'chunked' if chunked else 'recurrent'} vs official {key}: "
              f"{np.max(np.abs(got - io[key])):.2e}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check_golden(sys.argv[2])
        return
    if len(sys.argv) != 3 or sys.argv[1] not in CASES:
        sys.exit("usage: mamba2_ref.py CASE OUTDIR; CASE one of " + ", ".join(CASES))
    name, outdir = sys.argv[1], sys.argv[2]
    c = CASES[name]
    dm = dims(c)
    rng = np.random.default_rng(c["seed"])
    w = make_weights(c, dm, rng)
    ids = rng.integers(0, c["vocab_size"], (c["batch"], c["seq_len"])).astype(np.int32)
    chunked = forward(c, dm, w, ids, True)
    recurrent = forward(c, dm, w, ids, False)
    gap = float(np.max(np.abs(chunked - recurrent)))
    if not gap < 1e-10:
        sys.exit(f"{name}: chunked and recurrent forms differ by {gap:g}")
    if c["tie_embeddings"]:
        w["lm_head.weight"] = w["backbone.embedding.weight"]  # both names, as state_dict()
    write_safetensors(f"{outdir}/model.safetensors", w)
    write_safetensors(f"{outdir}/io.safetensors", {
        "input_ids": ids, "logits": chunked.astype(np.float32),
        "step_logits": recurrent.astype(np.float32)})
    lim = [c["dt_limit"][0], "inf" if math.isinf(c["dt_limit"][1]) else c["dt_limit"][1]]
    ssm_cfg = {"layer": "Mamba2", "d_state": c["d_state"], "d_conv": c["d_conv"],
               "expand": c["expand"], "headdim": c["headdim"], "d_ssm": c["d_ssm"],
               "ngroups": c["ngroups"], "D_has_hdim": c["D_has_hdim"], "rmsnorm": c["rmsnorm"],
               "norm_before_gate": c["norm_before_gate"], "bias": c["bias"],
               "conv_bias": c["conv_bias"], "chunk_size": c["chunk_size"]}
    if lim != [0.0, "inf"]:
        ssm_cfg["dt_limit"] = lim
    cfg = {"architecture": "mamba2", "case": name,
           "source": "tools/mamba2_ref/mamba2_ref.py (independent float64 numpy reference of "
                     "SEMANTICS-mamba2.md Part C; not the official code)",
           **{k: v for k, v in c.items() if k != "dt_limit"}, "dt_limit": lim, **dm,
           "max_abs_diff_chunked_vs_recurrent_f64": gap,
           "official_config": {"d_model": c["d_model"], "d_intermediate": 0,
                               "n_layer": c["n_layer"], "vocab_size": c["vocab_size"],
                               "ssm_cfg": ssm_cfg, "attn_layer_idx": [], "attn_cfg": {},
                               "rms_norm": True, "residual_in_fp32": True,
                               "fused_add_norm": False,
                               "pad_vocab_size_multiple": c["pad_vocab_size_multiple"],
                               "tie_embeddings": c["tie_embeddings"]}}
    with open(f"{outdir}/config.json", "w") as fp:
        json.dump(cfg, fp, indent=2)
        fp.write("\n")
    print(f"{name}: chunked vs recurrent {gap:.1e}, max |logit| {np.max(np.abs(chunked)):.2f}")


if __name__ == "__main__":
    main()
