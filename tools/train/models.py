"""models.py - small Mamba (v1) and xLSTM language models in plain PyTorch, for training the
demo models that mxc ships.

The modules are laid out so that `state_dict()` gives exactly the parameter names and shapes of
the official implementations (state-spaces `mamba_ssm` MambaLMHeadModel, NX-AI `xlstm`
xLSTMLMModel with the sLSTM "vanilla" layout), and the arithmetic follows
shared/SEMANTICS.md (section numbers in the comments), so that `mxc build` of the matching spec
loads the saved weights and computes the same logits.

Also here: a minimal safetensors writer (F32 only) and the byte-level tokeniser convention
(token id = byte value, vocab_size 256) that `mxc run` and examples/generate.py use.
"""
import json
import math
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------------------------
# safetensors: 8-byte little-endian header length, JSON header, then the raw tensor bytes.

def save_safetensors(path, tensors, metadata=None):
    """Write `tensors` (name -> tensor) as F32, in the given order, to `path`."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        data = t.detach().to(torch.float32).contiguous().cpu().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # pad so the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    """Read an F32 safetensors file written by save_safetensors (name -> tensor)."""
    import numpy as np
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", name
        b, end = e["data_offsets"]
        arr = np.frombuffer(data[b:end], dtype="<f4").reshape(e["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


# --------------------------------------------------------------------------------------------
# Shared pieces.

class Weight(nn.Module):
    """A module holding just `weight`, for names like `...xlstm_norm.weight`."""

    def __init__(self, *shape, init=0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.full(shape, float(init)))


def causal_conv(x, weight, bias):
    """Depthwise causal convolution, zero history (SEMANTICS A.5 step 2, B.7.3).
    x (B, L, C), weight (C, 1, K), bias (C,) -> (B, L, C)."""
    K = weight.shape[-1]
    L = x.shape[1]
    y = F.conv1d(x.transpose(1, 2), weight, bias, padding=K - 1, groups=x.shape[2])
    return y[:, :, :L].transpose(1, 2)


# --------------------------------------------------------------------------------------------
# Mamba (v1) language model, mamba_ssm naming (SEMANTICS part A).

class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):  # A.3
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class MambaMixer(nn.Module):
    def __init__(self, d_model, d_state=16, d_conv=4, expand=2, n_layer=1):
        super().__init__()
        d_inner = int(expand * d_model)
        dt_rank = math.ceil(d_model / 16)
        self.d_inner, self.d_state, self.dt_rank = d_inner, d_state, dt_rank
        # registration order = state_dict order: in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        # A.8 item 2: dt_proj init; bias = softplus^-1(dt), dt log-uniform in [1e-3, 1e-1]
        nn.init.uniform_(self.dt_proj.weight, -dt_rank ** -0.5, dt_rank ** -0.5)
        dt = torch.exp(torch.rand(d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        dt = dt.clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        # A.8 item 3: S4D-real A
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        with torch.no_grad():
            self.out_proj.weight /= math.sqrt(n_layer)

    def forward(self, u):
        """u (B, L, d_model) -> (B, L, d_model); SEMANTICS A.5."""
        Bsz, L, _ = u.shape
        x, z = self.in_proj(u).chunk(2, dim=-1)                       # 1.
        xc = F.silu(causal_conv(x, self.conv1d.weight, self.conv1d.bias))  # 2.
        dt_low, Bt, Ct = torch.split(self.x_proj(xc), [self.dt_rank, self.d_state, self.d_state], -1)  # 3.
        delta = F.softplus(dt_low @ self.dt_proj.weight.t() + self.dt_proj.bias)  # 4., 6. softplus(. + bias)
        A = -torch.exp(self.A_log)                                    # 5.
        dA = torch.exp(delta.unsqueeze(-1) * A)                       # (B, L, D, N)
        dBu = (delta * xc).unsqueeze(-1) * Bt.unsqueeze(2)            # Euler B: delta * B * x
        h = torch.zeros(Bsz, self.d_inner, self.d_state, dtype=u.dtype)
        hs = []
        for a_t, b_t in zip(dA.unbind(1), dBu.unbind(1)):  # unbind: one backward copy, not L
            h = a_t * h + b_t
            hs.append(h)
        H = torch.stack(hs, dim=1)                                    # (B, L, D, N)
        y = torch.einsum("bldn,bln->bld", H, Ct) + self.D * xc        # C^T h + D x
        y = y * F.silu(z)
        return self.out_proj(y)                                       # 7.


class MambaBlock(nn.Module):
    def __init__(self, d_model, n_layer, **kw):
        super().__init__()
        self.norm = RMSNorm(d_model)
        self.mixer = MambaMixer(d_model, n_layer=n_layer, **kw)


class MambaBackbone(nn.Module):
    def __init__(self, vocab_padded, d_model, n_layer, **kw):
        super().__init__()
        self.embedding = nn.Embedding(vocab_padded, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.layers = nn.ModuleList(MambaBlock(d_model, n_layer, **kw) for _ in range(n_layer))
        self.norm_f = RMSNorm(d_model)


class MambaLM(nn.Module):
    """MambaLMHeadModel with a tied head (A.4): x_l = x_{l-1} + mixer(norm(x_{l-1}))."""

    def __init__(self, vocab_size=256, d_model=128, n_layer=4, pad_vocab_size_multiple=8, **kw):
        super().__init__()
        m = pad_vocab_size_multiple
        padded = vocab_size + (m - vocab_size % m) % m
        self.backbone = MambaBackbone(padded, d_model, n_layer, **kw)
        self.lm_head = nn.Linear(d_model, padded, bias=False)
        self.lm_head.weight = self.backbone.embedding.weight  # tie_embeddings = true

    def forward(self, ids):
        x = self.backbone.embedding(ids)
        for layer in self.backbone.layers:
            x = x + layer.mixer(layer.norm(x))
        return self.lm_head(self.backbone.norm_f(x))

    def export(self):
        """The state dict to save; the tied head is stored once, as upstream checkpoints often do."""
        sd = self.state_dict()
        del sd["lm_head.weight"]
        return sd


# --------------------------------------------------------------------------------------------
# xLSTM language model, NX-AI xlstm naming (SEMANTICS part B).

def offset_layer_norm(x, w, eps=1e-5):
    """xlstm LayerNorm: gain 1 + w, no bias (B.3)."""
    return F.layer_norm(x, (x.shape[-1],), weight=1.0 + w, bias=None, eps=eps)


def multihead_norm(x, w, eps=1e-5):
    """MultiHeadLayerNorm (B.3): x (B, S, NH, DH), per-head normalisation, gain 1 + w (NH*DH,)."""
    Bsz, S, NH, DH = x.shape
    y = F.layer_norm(x, (DH,), eps=eps)
    return y.reshape(Bsz, S, NH * DH) * (1.0 + w)


def headwise(x, weight):
    """LinearHeadwiseExpand (B.6): x (..., NH*din), weight (NH, dout, din) -> (..., NH*dout)."""
    # the same sums as y[..., h, o] = sum_d x[..., h, d] W[h, o, d], as one dense matmul with the
    # block-diagonal matrix (faster on a CPU than many tiny per-head products)
    return x @ torch.block_diag(*weight.transpose(1, 2))


def small_init_(w, dim):
    nn.init.normal_(w, std=math.sqrt(2.0 / (5.0 * dim)))


class Conv(nn.Module):
    """`conv1d.conv` in xlstm's CausalConv1d."""

    def __init__(self, channels, k):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, k, groups=channels, padding=k - 1, bias=True)


class MLSTMCell(nn.Module):
    def __init__(self, inner, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.igate = nn.Linear(3 * inner, num_heads)
        self.fgate = nn.Linear(3 * inner, num_heads)
        self.outnorm = Weight(inner)
        nn.init.zeros_(self.igate.weight)
        nn.init.normal_(self.igate.bias, std=0.1)
        nn.init.zeros_(self.fgate.weight)
        with torch.no_grad():
            self.fgate.bias.copy_(torch.linspace(3.0, 6.0, num_heads))

    def forward(self, q, k, v):
        """Parallel stabilised form (B.8.1), then the multi-head output norm (B.8.3)."""
        Bsz, S, I = q.shape
        NH, DH = self.num_heads, I // self.num_heads
        g = torch.cat([q, k, v], dim=-1)
        ig = self.igate(g).transpose(1, 2).unsqueeze(-1)               # (B, NH, S, 1)
        fg = self.fgate(g).transpose(1, 2).unsqueeze(-1)
        q, k, v = (t.reshape(Bsz, S, NH, DH).transpose(1, 2) for t in (q, k, v))
        lf = F.logsigmoid(fg)
        cum = torch.cat([torch.zeros(Bsz, NH, 1, 1), torch.cumsum(lf, dim=-2)], dim=-2)  # (B, NH, S+1, 1)
        log_fg = (cum - cum.transpose(-2, -1))[:, :, 1:, 1:]           # [t, j] = cum_t - cum_j
        mask = torch.tril(torch.ones(S, S, dtype=torch.bool))
        log_fg = torch.where(mask, log_fg, torch.tensor(-float("inf")))
        log_D = log_fg + ig.transpose(-2, -1)
        m = torch.max(log_D, dim=-1, keepdim=True).values
        Dm = torch.exp(log_D - m)
        C = (q @ (k / math.sqrt(DH)).transpose(-2, -1)) * Dm
        n = torch.maximum(C.sum(-1, keepdim=True).abs(), torch.exp(-m))
        h = (C / (n + 1e-6)) @ v                                       # (B, NH, S, DH)
        return multihead_norm(h.transpose(1, 2), self.outnorm.weight)  # (B, S, I)


class MLSTMLayer(nn.Module):
    def __init__(self, E, inner, num_heads=4, conv=4, blocksize=4, num_blocks=1):
        super().__init__()
        nb = inner // blocksize
        self.proj_up = nn.Linear(E, 2 * inner, bias=False)
        self.q_proj = Weight(nb, blocksize, blocksize)
        self.k_proj = Weight(nb, blocksize, blocksize)
        self.v_proj = Weight(nb, blocksize, blocksize)
        self.conv1d = Conv(inner, conv)
        self.mlstm_cell = MLSTMCell(inner, num_heads)
        self.learnable_skip = nn.Parameter(torch.ones(inner))
        self.proj_down = nn.Linear(inner, E, bias=False)
        small_init_(self.proj_up.weight, E)
        for p in (self.q_proj, self.k_proj, self.v_proj):
            small_init_(p.weight, E)
        nn.init.normal_(self.proj_down.weight, std=2.0 / num_blocks / math.sqrt(E))

    def forward(self, x):  # B.7.1
        x_m, z = self.proj_up(x).chunk(2, dim=-1)
        x_c = F.silu(causal_conv(x_m, self.conv1d.conv.weight, self.conv1d.conv.bias))
        q = headwise(x_c, self.q_proj.weight)
        k = headwise(x_c, self.k_proj.weight)
        v = headwise(x_m, self.v_proj.weight)
        h = self.mlstm_cell(q, k, v)
        h = (h + self.learnable_skip * x_c) * F.silu(z)
        return self.proj_down(h)


class SLSTMCell(nn.Module):
    """Vanilla layout: _recurrent_kernel_ (NH, 4*DH, DH), _bias_ (4E,) gate-major (B.10)."""

    def __init__(self, E, num_heads, block_idx=0, num_blocks=1):
        super().__init__()
        DH = E // num_heads
        self.E, self.NH, self.DH = E, num_heads, DH
        self._recurrent_kernel_ = nn.Parameter(torch.zeros(num_heads, 4 * DH, DH))
        bias = torch.zeros(4, num_heads, DH)
        r = block_idx / (num_blocks - 1) if num_blocks > 1 else 0.0
        j = torch.arange(DH, dtype=torch.float32) / max(DH - 1, 1)
        bias[1] = -(-5.0 + 12.0 * j ** (0.3 + 1.3 * r))   # powerlaw_blockdependent forget bias
        self._bias_ = nn.Parameter(bias.reshape(4 * E))

    def forward(self, wx):
        """wx (B, S, 4E) gate-major [i, f, z, o] -> y (B, S, E)."""
        Bsz, S, _ = wx.shape
        E, NH, DH = self.E, self.NH, self.DH
        # R as a dense (E, 4E) block-diagonal matrix with gate-major columns:
        # R[h*DH + d, g*E + h*DH + j] = _recurrent_kernel_[h, g*DH + j, d]
        R = torch.block_diag(*self._recurrent_kernel_.transpose(1, 2))   # (E, NH*4*DH), [h, g, j]
        R = R.reshape(E, NH, 4, DH).transpose(1, 2).reshape(E, 4 * E)
        wxb = wx + self._bias_
        y = c = n = m = torch.zeros(Bsz, E)
        ys = []
        for t, wx_t in enumerate(wxb.unbind(1)):
            raw = wx_t + y @ R
            ri, rf, rz, ro = raw.split(E, dim=-1)
            logfm = m + F.logsigmoid(rf)
            m_new = ri if t == 0 else torch.maximum(ri, logfm)   # first step from zero state: m = i
            i = torch.clamp(torch.exp(ri - m_new), max=1.0)
            f = torch.clamp(torch.exp(logfm - m_new), max=1.0)
            c = f * c + i * torch.tanh(rz)
            n = f * n + i
            y = torch.sigmoid(ro) * c / n
            m = m_new
            ys.append(y)
        return torch.stack(ys, dim=1)


class SLSTMLayer(nn.Module):
    def __init__(self, E, num_heads=4, conv=4, block_idx=0, num_blocks=1):
        super().__init__()
        DH = E // num_heads
        self.NH = num_heads
        self.conv1d = Conv(E, conv)
        self.fgate = Weight(num_heads, DH, DH)
        self.igate = Weight(num_heads, DH, DH)
        self.zgate = Weight(num_heads, DH, DH)
        self.ogate = Weight(num_heads, DH, DH)
        for g in (self.fgate, self.igate, self.zgate, self.ogate):
            small_init_(g.weight, E)
        self.slstm_cell = SLSTMCell(E, num_heads, block_idx, num_blocks)
        self.group_norm = Weight(E)

    def forward(self, x):  # B.9
        x_c = F.silu(causal_conv(x, self.conv1d.conv.weight, self.conv1d.conv.bias))
        # the official swap: `fgate` feeds the input gate, `igate` the forget gate
        wx = torch.cat([headwise(x_c, self.fgate.weight), headwise(x_c, self.igate.weight),
                        headwise(x, self.zgate.weight), headwise(x, self.ogate.weight)], dim=-1)
        y = self.slstm_cell(wx)
        Bsz, S, E = y.shape
        return multihead_norm(y.reshape(Bsz, S, self.NH, E // self.NH), self.group_norm.weight)


class FeedForward(nn.Module):
    def __init__(self, E, F_, num_blocks=1):
        super().__init__()
        self.F_ = F_
        self.proj_up = nn.Linear(E, 2 * F_, bias=False)
        self.proj_down = nn.Linear(F_, E, bias=False)
        small_init_(self.proj_up.weight, E)
        nn.init.normal_(self.proj_down.weight, std=2.0 / num_blocks / math.sqrt(E))

    def forward(self, x):  # B.11: gelu on the first half
        g, u = self.proj_up(x).split(self.F_, dim=-1)
        return self.proj_down(F.gelu(g) * u)


class XBlock(nn.Module):
    def __init__(self, kind, E, inner, ffn_dim, mlstm_heads, slstm_heads, idx, num_blocks):
        super().__init__()
        self.xlstm_norm = Weight(E)
        if kind == "m":
            self.xlstm = MLSTMLayer(E, inner, mlstm_heads, num_blocks=num_blocks)
            self.ffn = None
        else:
            self.xlstm = SLSTMLayer(E, slstm_heads, block_idx=idx, num_blocks=num_blocks)
            self.ffn_norm = Weight(E)
            self.ffn = FeedForward(E, ffn_dim, num_blocks)

    def forward(self, x):  # B.5
        x = x + self.xlstm(offset_layer_norm(x, self.xlstm_norm.weight))
        if self.ffn is not None:
            x = x + self.ffn(offset_layer_norm(x, self.ffn_norm.weight))
        return x


class XStack(nn.Module):
    def __init__(self, blocks, E):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.post_blocks_norm = Weight(E)


def round_up(x, m=64):
    return int(math.ceil(x / m) * m)


class XLSTMLM(nn.Module):
    """xLSTMLMModel (B.4), untied head, block_map like "msmm"."""

    def __init__(self, vocab_size=256, E=128, block_map="msmm", mlstm_heads=4, slstm_heads=4):
        super().__init__()
        inner, ffn_dim = round_up(2.0 * E), round_up(1.3 * E)
        nb = len(block_map)
        self.token_embedding = nn.Embedding(vocab_size, E)
        self.xlstm_block_stack = XStack(
            [XBlock(k, E, inner, ffn_dim, mlstm_heads, slstm_heads, i, nb) for i, k in enumerate(block_map)], E)
        self.lm_head = nn.Linear(E, vocab_size, bias=False)
        small_init_(self.token_embedding.weight, E)
        small_init_(self.lm_head.weight, E)

    def forward(self, ids):
        x = self.token_embedding(ids)
        for b in self.xlstm_block_stack.blocks:
            x = b(x)
        return self.lm_head(offset_layer_norm(x, self.xlstm_block_stack.post_blocks_norm.weight))

    def export(self):
        return self.state_dict()
