"""PyTorch eager baselines of the two benchmark models, written the way the official eager
code computes them (../../shared/SEMANTICS.md), and their timing.

M130 (mamba_ssm MambaLMHeadModel, pure-PyTorch paths):
  prefill = the slow path of Mamba.forward: in_proj GEMM, F.conv1d, x_proj, dt_proj, then
            `selective_scan_ref` (deltaA / deltaB_u for all steps at once, then a python loop
            over time), out_proj;
  decode  = Mamba.step without the CUDA/Triton helpers (conv_state roll, ssm_state update).
X125 (NX-AI xlstm xLSTMLMModel, sLSTM vanilla backend):
  prefill = mLSTMCell.forward, i.e. `parallel_stabilized_simple` (the parallel S x S form, the
            only one upstream's mLSTM cell uses for forward), and the vanilla sLSTM (a python
            loop over time, `slstm_forward`);
  decode  = xLSTMLMModel.step: `recurrent_step_stabilized_simple`, conv1d.step, sLSTM step.
Weights are used as given (float32), inside torch.inference_mode().

usage: torch_ref.py MODEL WEIGHTS JOB...   (prints one JSON line per job)
  decode:B:REPS:SECONDS     time per decode step of B sequences (3 warm-up steps first)
  prefill:T:REPS:SECONDS    time of a T-token forward (after a 64-token warm-up)
  dump:TOKENS:L:S:OUT       logits of forward(tokens[:L]) then S steps, float32 to OUT (for
                            X125 the S step rows come from L + S steps from the zero state,
                            since upstream's parallel forward returns no mLSTM state)
Threads: torch.set_num_threads($TORCH_THREADS, default 2); OMP_* and OPENBLAS_* come from the
environment (the benchmark sets OMP_WAIT_POLICY=PASSIVE, PyTorch's best setting here).
"""
import json
import math
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import models
import st


def _t(a):
    return torch.from_numpy(a)


# ---- Mamba ---------------------------------------------------------------------------

def rms_norm(x, w, eps):
    """rms_norm_ref: x * rsqrt(mean(x^2) + eps) * w (A.3)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, return_last_state):
    """mamba_ssm.ops.selective_scan_interface.selective_scan_ref (real A, B/C (b, n, l),
    softplus on delta) as upstream writes it: all exp(delta A) at once, a loop over time."""
    delta = F.softplus(delta + delta_bias[..., None])
    b, d, l = u.shape
    x = A.new_zeros((b, d, A.shape[1]))
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    deltaB_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    ys = []
    for i in range(l):
        x = deltaA[:, :, i] * x + deltaB_u[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", x, C[:, :, i]))
    y = torch.stack(ys, dim=2)
    out = (y + u * D[:, None]) * F.silu(z)
    return (out, x) if return_last_state else out


class MambaTorch:
    def __init__(self, cfg, w):
        self.c = cfg
        self.emb = _t(w["backbone.embedding.weight"])
        self.norm_f = _t(w["backbone.norm_f.weight"])
        self.layers = []
        for l in range(cfg.n_layer):
            p = f"backbone.layers.{l}."
            g = lambda n: _t(w[p + n])
            self.layers.append(dict(
                norm=g("norm.weight"), in_w=g("mixer.in_proj.weight"),
                conv_w=g("mixer.conv1d.weight"), conv_b=g("mixer.conv1d.bias"),
                xp_w=g("mixer.x_proj.weight"), dt_w=g("mixer.dt_proj.weight"),
                dt_b=g("mixer.dt_proj.bias"), A_log=g("mixer.A_log"), D=g("mixer.D"),
                out_w=g("mixer.out_proj.weight")))

    def new_state(self, batch):
        c = self.c
        return [(torch.zeros(batch, c.d_inner, c.d_conv), torch.zeros(batch, c.d_inner, c.d_state))
                for _ in self.layers]

    def _mixer(self, p, u, state):
        """Mamba.forward, slow path (A.5); fills the layer's (conv_state, ssm_state) as the
        prefill of upstream's generation does (A.6)."""
        c = self.c
        b, L, _ = u.shape
        xz = (p["in_w"] @ u.reshape(b * L, -1).t()).reshape(-1, b, L).permute(1, 0, 2)  # (b, 2I, L)
        A = -torch.exp(p["A_log"].float())
        x, z = xz.chunk(2, dim=1)
        state[0].copy_(F.pad(x, (c.d_conv - L, 0)) if L < c.d_conv else x[:, :, -c.d_conv:])
        x = F.silu(F.conv1d(x, p["conv_w"], p["conv_b"], padding=c.d_conv - 1, groups=c.d_inner)[..., :L])
        x_dbl = F.linear(x.transpose(1, 2).reshape(b * L, -1), p["xp_w"])  # ((b l), R + 2N)
        dt, B, C = torch.split(x_dbl, [c.dt_rank, c.d_state, c.d_state], dim=-1)
        dt = (p["dt_w"] @ dt.t()).reshape(-1, b, L).permute(1, 0, 2)        # (b, I, L)
        B = B.reshape(b, L, -1).transpose(1, 2).contiguous()                # (b, N, L)
        C = C.reshape(b, L, -1).transpose(1, 2).contiguous()
        y, last = selective_scan_ref(x, dt, A, B, C, p["D"].float(), z, p["dt_b"].float(), True)
        state[1].copy_(last)
        return F.linear(y.transpose(1, 2), p["out_w"])

    def _mixer_step(self, p, u, state):
        """Mamba.step without causal_conv1d_update / selective_state_update (A.6)."""
        c = self.c
        conv_state, ssm_state = state
        xz = F.linear(u, p["in_w"])                                         # (b, 2I)
        x, z = xz.chunk(2, dim=-1)
        conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
        conv_state[:, :, -1] = x
        x = torch.sum(conv_state * p["conv_w"][:, 0, :], dim=-1) + p["conv_b"]
        x = F.silu(x)
        x_db = F.linear(x, p["xp_w"])
        dt, B, C = torch.split(x_db, [c.dt_rank, c.d_state, c.d_state], dim=-1)
        dt = F.linear(dt, p["dt_w"])
        A = -torch.exp(p["A_log"].float())
        dt = F.softplus(dt + p["dt_b"])
        dA = torch.exp(torch.einsum("bd,dn->bdn", dt, A))
        dB = torch.einsum("bd,bn->bdn", dt, B)
        ssm_state.copy_(ssm_state * dA + x.unsqueeze(-1) * dB)
        y = torch.einsum("bdn,bn->bd", ssm_state, C)
        y = (y + p["D"] * x) * F.silu(z)
        return F.linear(y, p["out_w"])

    def forward(self, ids, state):
        """ids (b, L) -> logits (b, L, V); the pre-norm residual form of A.4."""
        h = F.embedding(ids, self.emb)
        for p, s in zip(self.layers, state):
            h = h + self._mixer(p, rms_norm(h, p["norm"], self.c.eps), s)
        return F.linear(rms_norm(h, self.norm_f, self.c.eps), self.emb)

    def step(self, ids, state):
        """ids (b,) -> logits (b, V)."""
        h = F.embedding(ids, self.emb)
        for p, s in zip(self.layers, state):
            h = h + self._mixer_step(p, rms_norm(h, p["norm"], self.c.eps), s)
        return F.linear(rms_norm(h, self.norm_f, self.c.eps), self.emb)


# ---- xLSTM ---------------------------------------------------------------------------

def layer_norm(x, w1, eps=1e-5):
    """xlstm LayerNorm: F.layer_norm with gain 1 + w (w1 holds 1 + w), no bias (B.3)."""
    return F.layer_norm(x, (x.shape[-1],), weight=w1, bias=None, eps=eps)


def mh_layer_norm(h, w1, eps=1e-5):
    """MultiHeadLayerNorm: (B, NH, S, DH) -> per-head group norm -> (B, S, NH * DH) (B.3)."""
    B, NH, S, DH = h.shape
    x = h.transpose(1, 2).reshape(B * S, NH * DH)
    return F.group_norm(x, num_groups=NH, weight=w1, bias=None, eps=eps).view(B, S, NH * DH)


def headwise(x, w):
    """LinearHeadwiseExpand (B.6): y[..., h, o] = sum_d x[..., h, d] W[h, o, d]."""
    shape = x.shape
    x = x.view(*shape[:-1], w.shape[0], -1)
    return torch.einsum("...hd,hod->...ho", x, w).reshape(*shape[:-1], -1)


def causal_conv(x, w, b):
    """CausalConv1d.forward (B.7.3): x (B, S, F) -> (B, S, F)."""
    K = w.shape[-1]
    y = F.conv1d(x.transpose(1, 2), w, b, padding=K - 1, groups=w.shape[0])
    return y[:, :, :-(K - 1)].transpose(1, 2)


def conv_step(x, conv_state, w, b):
    """conv1d_step (B.7.4): conv_state (B, K, F) rolled left, x (B, 1, F) written last."""
    conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=1))
    conv_state[:, -1:, :] = x
    return (torch.sum(conv_state * w[:, 0, :].transpose(0, 1), dim=1, keepdim=True) + b)


def parallel_stabilized_simple(q, k, v, igate, fgate, eps=1e-6):
    """xlstm.blocks.mlstm.backends.parallel_stabilized_simple (B.8.1), q/k/v (B, NH, S, DH),
    gates (B, NH, S, 1)."""
    B, NH, S, DH = q.shape
    log_fgates = F.logsigmoid(fgate)
    ltr = torch.tril(torch.ones((S, S), dtype=torch.bool))
    cs = torch.cat([q.new_zeros((B, NH, 1, 1)), torch.cumsum(log_fgates, dim=-2)], dim=-2)
    rep = cs.repeat(1, 1, 1, S + 1)
    log_fg = torch.where(ltr, (rep - rep.transpose(-2, -1))[:, :, 1:, 1:], -float("inf"))
    log_D = log_fg + igate.transpose(-2, -1)
    max_log_D, _ = torch.max(log_D, dim=-1, keepdim=True)
    D = torch.exp(log_D - max_log_D)
    C = (q @ (k / math.sqrt(DH)).transpose(-2, -1)) * D
    normalizer = torch.maximum(C.sum(dim=-1, keepdim=True).abs(), torch.exp(-max_log_D))
    return (C / (normalizer + eps)) @ v


def recurrent_step_stabilized_simple(c, n, m, q, k, v, igate, fgate, eps=1e-6):
    """xlstm.blocks.mlstm.backends.recurrent_step_stabilized_simple (B.8.2); q/k/v
    (B, NH, 1, DH), gates (B, NH, 1, 1)."""
    DH = q.shape[-1]
    q, k, v = q.squeeze(2).unsqueeze(-1), k.squeeze(2).unsqueeze(-1), v.squeeze(2).unsqueeze(-1)
    log_f = F.logsigmoid(fgate)
    m_new = torch.max(log_f + m, igate)
    f_act = torch.exp(log_f + m - m_new)
    i_act = torch.exp(igate - m_new)
    k = k / math.sqrt(DH)
    c_new = f_act * c + i_act * (k @ v.transpose(-1, -2))
    n_new = f_act * n + i_act * k
    h_num = q.transpose(-1, -2) @ c_new
    qn = q.transpose(-1, -2) @ n_new
    h = h_num / (torch.maximum(qn.abs(), torch.exp(-m_new)) + eps)
    return h, (c_new, n_new, m_new)


def slstm_pointwise(Wx, Ry, b, states):
    """vanilla slstm_forward_pointwise (B.10); states (4, B, E) = (y, c, n, m)."""
    raw = Wx + Ry + b
    y, c, n, m = torch.unbind(states, dim=0)
    iraw, fraw, zraw, oraw = torch.unbind(raw.view(raw.shape[0], 4, -1), dim=1)
    logfplusm = m + F.logsigmoid(fraw)
    mnew = iraw if torch.all(n == 0.0) else torch.max(iraw, logfplusm)
    ogate = torch.sigmoid(oraw)
    igate = torch.minimum(torch.exp(iraw - mnew), torch.ones_like(iraw))
    fgate = torch.minimum(torch.exp(logfplusm - mnew), torch.ones_like(iraw))
    cnew = fgate * c + igate * torch.tanh(zraw)
    nnew = fgate * n + igate
    return torch.stack((ogate * cnew / nnew, cnew, nnew, mnew), dim=0)


def slstm_forward(x, states, R, b):
    """vanilla slstm_forward: x (S, B, 4E) gate-major, R the stored kernel (NH, 4 DH, DH);
    returns every step's y (S, B, E) and the last state."""
    S, B, _ = x.shape
    NH, DH = R.shape[0], R.shape[2]
    Rt = R.transpose(1, 2).reshape(1, NH, DH, 4 * DH)
    ys = []
    for Wx in x.unbind(dim=0):
        Ry = (states[0].reshape(B, NH, 1, -1).matmul(Rt).reshape(B, NH, 4, -1)
              .transpose(1, 2).reshape(B, -1))
        states = slstm_pointwise(Wx, Ry, b, states)
        ys.append(states[0])
    return torch.stack(ys, 0), states


class XLSTMTorch:
    def __init__(self, cfg, w):
        self.c = cfg
        self.emb = _t(w["token_embedding.weight"])
        self.head = _t(w["lm_head.weight"])
        self.post = 1 + _t(w["xlstm_block_stack.post_blocks_norm.weight"])
        self.blocks = []
        for i in range(cfg.n_blocks):
            P = f"xlstm_block_stack.blocks.{i}."
            g = lambda n: _t(w[P + n])
            if i in cfg.slstm_at:
                self.blocks.append(dict(
                    kind="s", norm=1 + g("xlstm_norm.weight"),
                    conv_w=g("xlstm.conv1d.conv.weight"), conv_b=g("xlstm.conv1d.conv.bias"),
                    fgate=g("xlstm.fgate.weight"), igate=g("xlstm.igate.weight"),
                    zgate=g("xlstm.zgate.weight"), ogate=g("xlstm.ogate.weight"),
                    R=g("xlstm.slstm_cell._recurrent_kernel_"), b=g("xlstm.slstm_cell._bias_"),
                    gn=1 + g("xlstm.group_norm.weight"), ffn_norm=1 + g("ffn_norm.weight"),
                    up=g("ffn.proj_up.weight"), down=g("ffn.proj_down.weight")))
            else:
                self.blocks.append(dict(
                    kind="m", norm=1 + g("xlstm_norm.weight"), skip=g("xlstm.learnable_skip"),
                    up=g("xlstm.proj_up.weight"), q=g("xlstm.q_proj.weight"),
                    k=g("xlstm.k_proj.weight"), v=g("xlstm.v_proj.weight"),
                    conv_w=g("xlstm.conv1d.conv.weight"), conv_b=g("xlstm.conv1d.conv.bias"),
                    ig_w=g("xlstm.mlstm_cell.igate.weight"), ig_b=g("xlstm.mlstm_cell.igate.bias"),
                    fg_w=g("xlstm.mlstm_cell.fgate.weight"), fg_b=g("xlstm.mlstm_cell.fgate.bias"),
                    outnorm=1 + g("xlstm.mlstm_cell.outnorm.weight"), down=g("xlstm.proj_down.weight")))

    def new_state(self, batch):
        c = self.c
        st_ = []
        for p in self.blocks:
            if p["kind"] == "m":
                st_.append(dict(conv=torch.zeros(batch, c.conv_k, c.inner),
                                C=torch.zeros(batch, c.m_heads, c.m_dh, c.m_dh),
                                n=torch.zeros(batch, c.m_heads, c.m_dh, 1),
                                m=torch.zeros(batch, c.m_heads, 1, 1)))
            else:
                st_.append(dict(conv=torch.zeros(batch, c.conv_k, c.d_model),
                                s=torch.zeros(4, batch, c.d_model)))
        return st_

    # mLSTM layer (B.7.1) -- forward over S positions, or one step
    def _mlstm(self, p, x, state=None):
        c = self.c
        B, S, _ = x.shape
        x_m, z = torch.split(F.linear(x, p["up"]), c.inner, dim=-1)
        if state is None:
            x_c = F.silu(causal_conv(x_m, p["conv_w"], p["conv_b"]))
        else:
            x_c = F.silu(conv_step(x_m, state["conv"], p["conv_w"], p["conv_b"]))
        q, k, v = headwise(x_c, p["q"]), headwise(x_c, p["k"]), headwise(x_m, p["v"])
        gin = torch.cat([q, k, v], dim=-1)
        ig = F.linear(gin, p["ig_w"], p["ig_b"]).transpose(-1, -2).unsqueeze(-1)  # (B, NH, S, 1)
        fg = F.linear(gin, p["fg_w"], p["fg_b"]).transpose(-1, -2).unsqueeze(-1)
        heads = lambda t: t.view(B, S, c.m_heads, -1).transpose(1, 2)
        if state is None:
            h = parallel_stabilized_simple(heads(q), heads(k), heads(v), ig, fg)
        else:
            h, (state["C"], state["n"], state["m"]) = recurrent_step_stabilized_simple(
                state["C"], state["n"], state["m"], heads(q), heads(k), heads(v), ig, fg)
        h = mh_layer_norm(h, p["outnorm"])
        h = (h + p["skip"] * x_c) * F.silu(z)
        return F.linear(h, p["down"])

    # sLSTM layer (B.9) + gated FFN (B.11)
    def _slstm(self, p, x, state):
        c = self.c
        B, S, _ = x.shape
        if S == 1:
            x_c = F.silu(conv_step(x, state["conv"], p["conv_w"], p["conv_b"]))
        else:
            x_c = F.silu(causal_conv(x, p["conv_w"], p["conv_b"]))
        Wx = torch.cat([headwise(x_c, p["fgate"]), headwise(x_c, p["igate"]),
                        headwise(x, p["zgate"]), headwise(x, p["ogate"])], dim=-1)
        ys, state["s"] = slstm_forward(Wx.transpose(0, 1), state["s"], p["R"], p["b"])
        y = ys.view(S, B, c.s_heads, c.s_dh).permute(1, 2, 0, 3)                # (B, NH, S, DH)
        return mh_layer_norm(y, p["gn"])

    def _ffn(self, p, x):
        g, u = torch.split(F.linear(x, p["up"]), self.c.ffn, dim=-1)
        return F.linear(F.gelu(g) * u, p["down"])

    def _run(self, x, state, step):
        for p, s in zip(self.blocks, state):
            if p["kind"] == "m":
                x = x + self._mlstm(p, layer_norm(x, p["norm"]), s if step else None)
            else:
                x = x + self._slstm(p, layer_norm(x, p["norm"]), s)
                x = x + self._ffn(p, layer_norm(x, p["ffn_norm"]))
        return F.linear(layer_norm(x, self.post), self.head)

    def forward(self, ids, state):
        return self._run(F.embedding(ids, self.emb), state, False)

    def step(self, ids, state):
        return self._run(F.embedding(ids, self.emb).unsqueeze(1), state, True)[:, 0]


# ---- timing ----------------------------------------------------------------------------

def tokens(n, vocab, seed=1):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, vocab, n).astype(np.int64))


def timed(fn, reps, seconds):
    t, start = [], time.perf_counter()
    while len(t) < reps and (len(t) < 1 or time.perf_counter() - start < seconds):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e3)
    return t


def report(**kw):
    kw["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(kw), flush=True)


def main():
    name, weights, jobs = sys.argv[1], sys.argv[2], sys.argv[3:]
    threads = int(os.environ.get("TORCH_THREADS", "2"))
    torch.set_num_threads(threads)
    cfg = models.MODELS[name]
    w = st.read(weights)
    model = (MambaTorch if cfg.family == "mamba" else XLSTMTorch)(cfg, w)
    del w
    V = cfg.vocab_size
    with torch.inference_mode():
        for job in jobs:
            kind, *a = job.split(":")
            if kind == "decode":
                B, reps, secs = int(a[0]), int(a[1]), float(a[2])
                state = model.new_state(B)
                stream = iter(tokens(B * (reps + 3), V).view(-1, B))
                for _ in range(3):
                    model.step(next(stream), state)
                t = timed(lambda: model.step(next(stream), state), reps, secs)
                report(mode="decode", batch=B, len=1, median_ms=statistics.median(t),
                       min_ms=min(t), reps=len(t), threads=threads)
            elif kind == "prefill":
                T, reps, secs = int(a[0]), int(a[1]), float(a[2])
                ids = tokens(T, V).view(1, T)
                model.forward(ids[:, :64], model.new_state(1))  # warm-up, as bench_model.c
                t = timed(lambda: model.forward(ids, model.new_state(1)), reps, secs)
                report(mode="prefill", batch=1, len=T, median_ms=statistics.median(t),
                       min_ms=min(t), reps=len(t), threads=threads)
            elif kind == "dump":
                path, L, S, out = a[0], int(a[1]), int(a[2]), a[3]
                ids = torch.from_numpy(np.fromfile(path, dtype=np.int32)[:L + S].astype(np.int64))
                state = model.new_state(1)
                rows = [model.forward(ids[:L].view(1, L), state)[0]]
                if cfg.family != "mamba":  # no state from the parallel forward: step from zero
                    state = model.new_state(1)
                    for i in range(L):
                        model.step(ids[i:i + 1], state)
                for i in range(L, L + S):
                    rows.append(model.step(ids[i:i + 1], state))
                torch.cat(rows, 0).numpy().astype(np.float32).tofile(out)
                report(mode="dump", len=L, steps=S)
            else:
                raise SystemExit(f"unknown job {job}")


if __name__ == "__main__":
    main()
