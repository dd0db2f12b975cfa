"""PyTorch eager baselines of the benchmark models, written the way the official eager
code computes them (../../shared/SEMANTICS.md, SEMANTICS-mamba2.md, SEMANTICS-xlstm-large.md),
and their timing.

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
M2-130 (mamba_ssm MambaLMHeadModel with the Mamba2 mixer, pure-PyTorch paths):
  prefill = the unfused branch of Mamba2.forward (in_proj, F.conv1d over xBC, SiLU) with the
            scan as `ssd_minimal_discrete` (modules/ssd_minimal.py) computes it: chunks of
            chunk_size 256, the masked `segsum` decays, the intra-chunk products, chunk states
            passed between chunks (the four-operand einsums written as pairwise products, so
            that no [chunk, chunk, d_state] intermediate is built); then D, the gated RMSNorm,
            out_proj; a sequence that is not a multiple of 256 is padded with dt = 0 (exact);
  decode  = Mamba2.step, its pure-PyTorch branch (no causal_conv1d_update, no
            selective_state_update).
XL-125 (xlstm.xlstm_large xLSTMLarge with the native mlstm_kernels):
  prefill = the native chunkwise kernel (`chunkwise--native_autograd`, chunk_size 64): states
            at chunk boundaries by a loop over chunks, then every chunk's outputs at once;
            a remainder shorter than a chunk runs through the native step (as the
            `native_sequence__native` kernel does);
  decode  = the native step kernel (`native`), model in inference mode.
Weights are used as given (float32), inside torch.inference_mode().

usage: torch_ref.py MODEL WEIGHTS JOB...   (prints one JSON line per job)
  decode:B:REPS:SECONDS     time per decode step of B sequences (3 warm-up steps first)
  prefill:T:REPS:SECONDS    time of a T-token forward (after a 64-token warm-up)
  dump:TOKENS:L:S:OUT       logits of forward(tokens[:L]) then S steps, float32 to OUT (for
                            X125 the S step rows come from L + S steps from the zero state,
                            since upstream's parallel forward returns no mLSTM state; the other
                            models continue from the forward's state)
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


# ---- Mamba-2 ---------------------------------------------------------------------------

def segsum(x):
    """ssd_minimal.segsum: out[..., i, j] = sum_{j < r <= i} x[..., r], -inf above the
    diagonal; summing masked values directly (no differences of a cumsum)."""
    T = x.size(-1)
    x = x[..., None].expand(*x.shape, T)                                     # [..., r, j] = x_r
    x = x.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool), -1), 0)
    x = torch.cumsum(x, dim=-2)
    return x.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool), 0), -float("inf"))


def ssd_minimal_discrete(X, A, B, C, block_len, initial_states=None):
    """ssd_minimal_discrete (C.7): X (b, l, h, p) = x * dt, A (b, l, h) = dt * A_h, B and C
    (b, l, h, n) (the groups already expanded to heads); l a multiple of block_len.
    Returns Y (b, l, h, p) and the final state (b, h, p, n)."""
    b, l, h, p = X.shape
    c = l // block_len
    X, B, C = (t.reshape(b, c, block_len, h, -1) for t in (X, B, C))
    A = A.reshape(b, c, block_len, h).permute(0, 3, 1, 2)                   # (b, h, c, l)
    A_cumsum = torch.cumsum(A, dim=-1)
    # 1. intra-chunk (diagonal blocks): (C_i . B_j) * exp(segsum) * X_j
    L = torch.exp(segsum(A))                                                  # (b, h, c, l, s)
    CB = torch.einsum("bclhn,bcshn->bhcls", C, B)
    Y_diag = torch.einsum("bhcls,bcshp->bclhp", CB * L, X)
    # 2. each chunk's own end state
    decay_states = torch.exp(A_cumsum[..., -1:] - A_cumsum)                 # (b, h, c, l)
    states = torch.einsum("bclhn,bclhp->bchpn", B * decay_states.permute(0, 2, 3, 1)[..., None], X)
    # 3. states passed between chunks
    if initial_states is None:
        initial_states = torch.zeros_like(states[:, :1])
    states = torch.cat([initial_states, states], dim=1)
    decay_chunk = torch.exp(segsum(F.pad(A_cumsum[..., -1], (1, 0))))       # (b, h, c+1, c+1)
    new_states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)
    states, final_state = new_states[:, :-1], new_states[:, -1]
    # 4. state -> output within each chunk
    Y_off = torch.einsum("bclhn,bchpn->bclhp", C * torch.exp(A_cumsum).permute(0, 2, 3, 1)[..., None], states)
    return (Y_diag + Y_off).reshape(b, l, h, p), final_state


def gated_rms_norm(y, z, w, groups, eps=1e-5):
    """layernorm_gated.rms_norm_ref, norm_before_gate=False (C.5): norm(y * SiLU(z)) over
    groups of d_ssm / G channels, times the gain."""
    v = y * F.silu(z)
    g = v.view(*v.shape[:-1], groups, -1)
    g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + eps)
    return g.reshape(v.shape) * w


class Mamba2Torch:
    def __init__(self, cfg, w):
        self.c = cfg
        self.emb = _t(w["backbone.embedding.weight"])
        self.norm_f = _t(w["backbone.norm_f.weight"])
        self.layers = []
        for l in range(cfg.n_layer):
            p = f"backbone.layers.{l}."
            g = lambda n: _t(w[p + n])
            self.layers.append(dict(
                norm=g("norm.weight"), dt_bias=g("mixer.dt_bias"), A_log=g("mixer.A_log"),
                D=g("mixer.D"), in_w=g("mixer.in_proj.weight"), conv_w=g("mixer.conv1d.weight"),
                conv_b=g("mixer.conv1d.bias"), gnorm=g("mixer.norm.weight"),
                out_w=g("mixer.out_proj.weight")))

    def new_state(self, batch):
        c = self.c
        return [(torch.zeros(batch, c.conv_dim, c.d_conv),
                 torch.zeros(batch, c.nheads, c.headdim, c.d_state)) for _ in self.layers]

    def _split(self, zxbcdt):
        c = self.c
        return torch.split(zxbcdt, [c.d_inner, c.conv_dim, c.nheads], dim=-1)  # d_mlp = 0

    def _heads(self, t):
        """(..., G*N) -> (..., H, N): head h reads group h // (H / G)."""
        c = self.c
        t = t.view(*t.shape[:-1], c.ngroups, 1, c.d_state)
        return t.expand(*t.shape[:-3], c.ngroups, c.nheads // c.ngroups, c.d_state).reshape(
            *t.shape[:-3], c.nheads, c.d_state)

    def _mixer(self, p, u, state, chunk=256):
        """Mamba2.forward, unfused branch (C.4), with the prompt's cache filled (C.6)."""
        c = self.c
        b, L, _ = u.shape
        z, xBC, dt = self._split(F.linear(u, p["in_w"]))
        xBC_t = xBC.transpose(1, 2)                                           # (b, conv_dim, L)
        state[0].copy_(F.pad(xBC_t, (c.d_conv - L, 0)) if L < c.d_conv else xBC_t[:, :, -c.d_conv:])
        xBC = F.silu(F.conv1d(xBC_t, p["conv_w"], p["conv_b"], padding=c.d_conv - 1,
                              groups=c.conv_dim)[..., :L]).transpose(1, 2)
        x, B, C = torch.split(xBC, [c.d_inner, c.ngroups * c.d_state, c.ngroups * c.d_state], dim=-1)
        A = -torch.exp(p["A_log"].float())
        dt = F.softplus(dt + p["dt_bias"])                                    # (b, L, H)
        x = x.reshape(b, L, c.nheads, c.headdim)
        pad = -L % chunk                                                      # dt = 0: decay 1, no input
        X, Ad, Bh, Ch = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in
                         (x * dt[..., None], dt * A, self._heads(B), self._heads(C)))
        y, last = ssd_minimal_discrete(X, Ad, Bh, Ch, chunk)
        state[1].copy_(last)
        y = y[:, :L] + x * p["D"][:, None]
        y = gated_rms_norm(y.reshape(b, L, c.d_inner), z, p["gnorm"], c.ngroups)
        return F.linear(y, p["out_w"])

    def _mixer_step(self, p, u, state):
        """Mamba2.step, pure-PyTorch branch (C.6)."""
        c = self.c
        conv_state, ssm_state = state
        z, xBC, dt = self._split(F.linear(u, p["in_w"]))
        conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
        conv_state[:, :, -1] = xBC
        xBC = F.silu(torch.sum(conv_state * p["conv_w"][:, 0, :], dim=-1) + p["conv_b"])
        x, B, C = torch.split(xBC, [c.d_inner, c.ngroups * c.d_state, c.ngroups * c.d_state], dim=-1)
        A = -torch.exp(p["A_log"].float())
        dt = F.softplus(dt + p["dt_bias"])                                    # (b, H)
        dA = torch.exp(dt * A)
        x = x.view(-1, c.nheads, c.headdim)
        dBx = torch.einsum("bh,bn,bhp->bhpn", dt, B, x)                       # G = 1 (asserted upstream)
        ssm_state.copy_(ssm_state * dA[:, :, None, None] + dBx)
        y = torch.einsum("bhpn,bn->bhp", ssm_state, C) + p["D"][:, None] * x
        y = gated_rms_norm(y.reshape(-1, c.d_inner), z, p["gnorm"], c.ngroups)
        return F.linear(y, p["out_w"])

    def forward(self, ids, state):
        h = F.embedding(ids, self.emb)
        for p, s in zip(self.layers, state):
            h = h + self._mixer(p, rms_norm(h, p["norm"], self.c.eps), s)
        return F.linear(rms_norm(h, self.norm_f, self.c.eps), self.emb)

    def step(self, ids, state):
        h = F.embedding(ids, self.emb)
        for p, s in zip(self.layers, state):
            h = h + self._mixer_step(p, rms_norm(h, p["norm"], self.c.eps), s)
        return F.linear(rms_norm(h, self.norm_f, self.c.eps), self.emb)


# ---- xLSTM-large -------------------------------------------------------------------------

def soft_cap(x, cap):
    return x if cap is None else cap * torch.tanh(x / cap)


def mlstm_step_native(C, n, m, q, k, v, i, f, eps):
    """mlstm_kernels native_step (D.6): q, k (B, NH, DHqk), v (B, NH, DHv), i, f (B, NH, 1)."""
    lf = F.logsigmoid(f)
    m_new = torch.max(lf + m, i)
    f_act = torch.exp(lf + m - m_new)
    i_act = torch.exp(i - m_new)
    q = q * (q.shape[-1] ** -0.5)
    C_new = f_act[..., None] * C + i_act[..., None] * (k[..., :, None] @ v[..., None, :])
    n_new = f_act * n + i_act * k
    num = (q[..., None, :] @ C_new)[..., 0, :]
    den = torch.maximum((q * n_new).sum(-1, keepdim=True).abs(), torch.exp(-m_new)) + eps
    return num / den, (C_new, n_new, m_new)


def mlstm_chunkwise_native(q, k, v, i, f, state, L, eps):
    """mlstm_kernels chunkwise/native/fw.py (D.7): q, k (B, NH, S, DHqk), v (B, NH, S, DHv),
    i, f (B, NH, S), S a multiple of L; state (C, n, m) in, the last one out. First the
    states at the chunk boundaries (a loop over chunks), then all chunks' outputs at once."""
    B, NH, S, DK = q.shape
    NC = S // L
    q, k, v = (t.reshape(B, NH, NC, L, -1) for t in (q, k, v))
    i, lf = i.reshape(B, NH, NC, L), F.logsigmoid(f).reshape(B, NH, NC, L)
    b = torch.cumsum(lf, dim=-1)                                              # within-chunk
    G = b[..., -1]
    a = G[..., None] - b + i
    C, n, m = state
    Cs, ns, ms = [], [], []
    for c in range(NC):                                                       # recurrent_fw_C
        Cs.append(C), ns.append(n), ms.append(m)
        m_new = torch.maximum(G[:, :, c, None] + m, a[:, :, c].max(-1, keepdim=True)[0])
        w = torch.exp(a[:, :, c] - m_new)[..., None]                          # (B, NH, L, 1)
        decay = torch.exp(G[:, :, c, None] + m - m_new)
        C = decay[..., None] * C + (k[:, :, c] * w).transpose(-1, -2) @ v[:, :, c]
        n = decay * n + (k[:, :, c] * w).sum(-2)
        m = m_new
    Cp, np_, mp = torch.stack(Cs, 2), torch.stack(ns, 2), torch.stack(ms, 2)  # incoming states
    causal = torch.tril(torch.ones(L, L, dtype=torch.bool))                   # parallel_fw_H
    logD = torch.where(causal, b[..., :, None] - b[..., None, :] + i[..., None, :], -float("inf"))
    m_t = torch.maximum(b + mp, logD.max(-1)[0])                              # (B, NH, NC, L)
    qs = q * (DK ** -0.5)
    M = (qs @ k.transpose(-1, -2)) * torch.exp(logD - m_t[..., None])
    g = torch.exp(b + mp - m_t)[..., None]
    num = g * (qs @ Cp) + M @ v
    den = g[..., 0] * (qs @ np_[..., None])[..., 0] + M.sum(-1)
    h = num / (torch.maximum(den.abs(), torch.exp(-m_t)) + eps)[..., None]
    return h.reshape(B, NH, S, -1), (C, n, m)


class XLSTMLargeTorch:
    def __init__(self, cfg, w, chunk=64):
        self.c, self.chunk = cfg, chunk
        self.emb = _t(w["embedding.weight"])
        self.out_norm = _t(w["backbone.out_norm.weight"])
        self.head = _t(w["lm_head.weight"])
        self.blocks = []
        for b in range(cfg.n_blocks):
            P = f"backbone.blocks.{b}."
            g = lambda n: _t(w[P + n])
            self.blocks.append(dict(
                norm=g("norm_mlstm.weight"), q=g("mlstm_layer.q.weight"), k=g("mlstm_layer.k.weight"),
                v=g("mlstm_layer.v.weight"), o=g("mlstm_layer.ogate_preact.weight"),
                ig_w=g("mlstm_layer.igate_preact.weight"), ig_b=g("mlstm_layer.igate_preact.bias"),
                fg_w=g("mlstm_layer.fgate_preact.weight"), fg_b=g("mlstm_layer.fgate_preact.bias"),
                mhn=g("mlstm_layer.multihead_norm.weight"), out=g("mlstm_layer.out_proj.weight"),
                ffn_norm=g("norm_ffn.weight"), up_gate=g("ffn.proj_up_gate.weight"),
                up=g("ffn.proj_up.weight"), down=g("ffn.proj_down.weight")))

    def new_state(self, batch):
        c = self.c
        dk, dv = c.qk // c.heads, c.v // c.heads
        return [[torch.zeros(batch, c.heads, dk, dv), torch.zeros(batch, c.heads, dk),
                 torch.zeros(batch, c.heads, 1)] for _ in self.blocks]

    def _cell(self, q, k, v, i, f, state):
        """The inference-mode backend on a whole sequence: whole chunks chunkwise, the rest
        step by step (native_sequence__native); S = 1 is the step kernel."""
        eps, S, L = self.c.eps, q.shape[2], self.chunk
        hs, st_ = [], tuple(state)
        whole = S // L * L
        if whole:
            h, st_ = mlstm_chunkwise_native(q[:, :, :whole], k[:, :, :whole], v[:, :, :whole],
                                            i[:, :, :whole], f[:, :, :whole], st_, L, eps)
            hs.append(h)
        for t in range(whole, S):
            h, st_ = mlstm_step_native(*st_, q[:, :, t], k[:, :, t], v[:, :, t],
                                       i[:, :, t, None], f[:, :, t, None], eps)
            hs.append(h[:, :, None])
        state[:] = st_
        return torch.cat(hs, 2)

    def _mlstm(self, p, x, state):
        """mLSTMLayer.forward (D.5)."""
        c = self.c
        B, S, _ = x.shape
        heads = lambda t: t.view(B, S, c.heads, -1).transpose(1, 2)
        q, k, v = heads(F.linear(x, p["q"])), heads(F.linear(x, p["k"])), heads(F.linear(x, p["v"]))
        o = F.linear(x, p["o"])
        i = soft_cap(F.linear(x, p["ig_w"], p["ig_b"]), c.gate_cap).transpose(1, 2)  # (B, NH, S)
        f = soft_cap(F.linear(x, p["fg_w"], p["fg_b"]), c.gate_cap).transpose(1, 2)
        h = self._cell(q, k, v, i, f, state).transpose(1, 2)                  # (B, S, NH, DHv)
        h = F.layer_norm(h, (h.shape[-1],), eps=c.eps).reshape(B, S, -1) * p["mhn"]  # MultiHeadLayerNorm
        return F.linear(torch.sigmoid(o) * h, p["out"])

    def _ffn(self, p, x):
        return F.linear(F.silu(F.linear(x, p["up_gate"])) * F.linear(x, p["up"]), p["down"])

    def forward(self, ids, state):
        c = self.c
        x = F.embedding(ids, self.emb)
        for p, s in zip(self.blocks, state):
            x = x + self._mlstm(p, rms_norm(x, p["norm"], c.eps), s)
            x = x + self._ffn(p, rms_norm(x, p["ffn_norm"], c.eps))
        return soft_cap(F.linear(rms_norm(x, self.out_norm, c.eps), self.head), c.logit_cap)

    def step(self, ids, state):
        return self.forward(ids[:, None], state)[:, 0]


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
    model = {"mamba": MambaTorch, "xlstm": XLSTMTorch, "mamba2": Mamba2Torch,
             "xlstm_large": XLSTMLargeTorch}[cfg.family](cfg, w)
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
                if cfg.family == "xlstm":  # no state from the parallel forward: step from zero
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
