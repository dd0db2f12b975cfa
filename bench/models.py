"""The benchmark shapes, M130 (Mamba), X125 (xLSTM), M2-130 (Mamba-2), XL-125 (xLSTM-large)
and XL-7B (xLSTM-7B, run on its own): sizes, the official parameter list with an
official-like random initialisation, and the cost model (FLOPs per token, bytes read per
decoded token, the GEMM shapes of a prefill) used for the rooflines.

Sizes and names follow ../../shared/SEMANTICS.md (A.1-A.2 for Mamba, B.1-B.2 for xLSTM),
SEMANTICS-mamba2.md (C.1-C.2) and SEMANTICS-xlstm-large.md (D.1-D.2); the initialisation
follows A.8 item 7, B.13 item 11, C.9 items 1-2 and D.10 (the training init), plus a small
N(0, NOISE^2) on the parameters whose official init is a constant (norm gains, zero gate
weights, the zero sLSTM recurrent kernel, D, the skip), so that every parameter takes part in
the logit check.
"""
import math
import zlib

import numpy as np

SEED = 20250611  # the benchmark weights are a function of this seed and this file
NOISE = 0.02
GEN_VERSION = 1  # bump when the initialisation changes (the weight files are cached)


class Mamba:
    title = "M130"
    name = "m130"
    family = "mamba"
    d_model = 768
    n_layer = 24
    vocab_size = 50280
    vocab = 50280  # padded to a multiple of 8: already one
    d_state = 16
    d_conv = 4
    expand = 2
    d_inner = expand * d_model                  # 1536
    dt_rank = math.ceil(d_model / 16)           # 48
    tied = True
    eps = 1e-5
    embedding_name = "backbone.embedding.weight"
    decode_target, batch8_target = 1.25, 4.0      # issue 5

    def params(self):
        """[(name, shape, init)] in state_dict order; tied head stored once (embedding)."""
        D, I, N, K, R = self.d_model, self.d_inner, self.d_state, self.d_conv, self.dt_rank
        p = [("backbone.embedding.weight", (self.vocab, D), ("normal", 0.02))]
        for l in range(self.n_layer):
            m = f"backbone.layers.{l}.mixer."
            p += [
                (f"backbone.layers.{l}.norm.weight", (D,), ("const+", 1.0)),
                (m + "in_proj.weight", (2 * I, D), ("uniform", 1 / math.sqrt(D))),
                (m + "conv1d.weight", (I, 1, K), ("uniform", 1 / math.sqrt(K))),
                (m + "conv1d.bias", (I,), ("uniform", 1 / math.sqrt(K))),
                (m + "x_proj.weight", (R + 2 * N, I), ("uniform", 1 / math.sqrt(I))),
                (m + "dt_proj.weight", (I, R), ("uniform", R ** -0.5)),
                (m + "dt_proj.bias", (I,), ("dt_bias",)),
                (m + "A_log", (I, N), ("a_log",)),
                (m + "D", (I,), ("const+", 1.0)),
                (m + "out_proj.weight", (D, I),
                 ("uniform", 1 / math.sqrt(I) / math.sqrt(self.n_layer))),
            ]
        p.append(("backbone.norm_f.weight", (D,), ("const+", 1.0)))
        return p

    def state_floats(self):
        """Recurrent state per sequence: conv window (d_conv - 1) + scan state, per layer."""
        return self.n_layer * self.d_inner * (self.d_conv - 1 + self.d_state)

    def flops_per_token(self):
        """Multiply-adds count 2; the scan counts 6 per (channel, state) (exp(dA) 2,
        h = a h + (d B) x 3 ... y += h C 2, rounded to 6); norms and activations are left out."""
        D, I, N, K, R = self.d_model, self.d_inner, self.d_state, self.d_conv, self.dt_rank
        layer = 2 * D * 2 * I + 2 * I * K + 2 * I * (R + 2 * N) + 2 * R * I + 6 * I * N + 2 * I * D
        return self.n_layer * layer + 2 * D * self.vocab

    def gemms(self, T):
        """(M, N, K, count) of the dense matmuls of a T-token prefill (y[M,N] = x[M,K] W[N,K]^T)."""
        D, I, N, R = self.d_model, self.d_inner, self.d_state, self.dt_rank
        L = self.n_layer
        return [(T, 2 * I, D, L), (T, R + 2 * N, I, L), (T, I, R, L), (T, D, I, L),
                (T, self.vocab, D, 1)]


class XLSTM:
    title = "X125"
    name = "x125"
    family = "xlstm"
    d_model = 768                                # embedding_dim E
    n_blocks = 24
    slstm_at = (3, 11, 19)
    vocab_size = 50304
    vocab = 50304                                # xLSTM does not pad
    tied = False
    eps = 1e-5
    embedding_name = "token_embedding.weight"
    decode_target, batch8_target = 1.25, 4.0      # issue 5
    # mLSTM
    m_heads = 4
    inner = 1536                                 # ceil(2.0 * 768 / 64) * 64
    m_dh = inner // m_heads                      # 384
    qkv_bs = 4
    conv_k = 4
    # sLSTM
    s_heads = 4
    s_dh = d_model // s_heads                    # 192
    ffn = 1024                                   # ceil(1.3 * 768 / 64) * 64

    def params(self):
        E, I, NH, K, bs = self.d_model, self.inner, self.m_heads, self.conv_k, self.qkv_bs
        SH, SD, F = self.s_heads, self.s_dh, self.ffn
        small = math.sqrt(2 / (5 * E))
        wang = 2 / (self.n_blocks * math.sqrt(E))
        p = []
        for b in range(self.n_blocks):
            P = f"xlstm_block_stack.blocks.{b}."
            if b in self.slstm_at:
                p += [
                    (P + "xlstm_norm.weight", (E,), ("const+", 0.0)),
                    (P + "xlstm.conv1d.conv.weight", (E, 1, K), ("uniform", 1 / math.sqrt(K))),
                    (P + "xlstm.conv1d.conv.bias", (E,), ("uniform", 1 / math.sqrt(K))),
                    (P + "xlstm.fgate.weight", (SH, SD, SD), ("normal", small)),
                    (P + "xlstm.igate.weight", (SH, SD, SD), ("normal", small)),
                    (P + "xlstm.zgate.weight", (SH, SD, SD), ("normal", small)),
                    (P + "xlstm.ogate.weight", (SH, SD, SD), ("normal", small)),
                    (P + "xlstm.slstm_cell._recurrent_kernel_", (SH, 4 * SD, SD), ("const+", 0.0)),
                    (P + "xlstm.slstm_cell._bias_", (4 * E,), ("slstm_bias", b)),
                    (P + "xlstm.group_norm.weight", (E,), ("const+", 0.0)),
                    (P + "ffn_norm.weight", (E,), ("const+", 0.0)),
                    (P + "ffn.proj_up.weight", (2 * F, E), ("normal", small)),
                    (P + "ffn.proj_down.weight", (E, F), ("normal", wang)),
                ]
            else:
                p += [
                    (P + "xlstm_norm.weight", (E,), ("const+", 0.0)),
                    (P + "xlstm.learnable_skip", (I,), ("const+", 1.0)),
                    (P + "xlstm.proj_up.weight", (2 * I, E), ("normal", small)),
                    (P + "xlstm.q_proj.weight", (I // bs, bs, bs), ("normal", small)),
                    (P + "xlstm.k_proj.weight", (I // bs, bs, bs), ("normal", small)),
                    (P + "xlstm.v_proj.weight", (I // bs, bs, bs), ("normal", small)),
                    (P + "xlstm.conv1d.conv.weight", (I, 1, K), ("uniform", 1 / math.sqrt(K))),
                    (P + "xlstm.conv1d.conv.bias", (I,), ("uniform", 1 / math.sqrt(K))),
                    (P + "xlstm.mlstm_cell.igate.weight", (NH, 3 * I), ("const+", 0.0)),
                    (P + "xlstm.mlstm_cell.igate.bias", (NH,), ("normal", 0.1)),
                    (P + "xlstm.mlstm_cell.fgate.weight", (NH, 3 * I), ("const+", 0.0)),
                    (P + "xlstm.mlstm_cell.fgate.bias", (NH,), ("linspace", 3.0, 6.0)),
                    (P + "xlstm.mlstm_cell.outnorm.weight", (I,), ("const+", 0.0)),
                    (P + "xlstm.proj_down.weight", (E, I), ("normal", wang)),
                ]
        p += [
            ("xlstm_block_stack.post_blocks_norm.weight", (E,), ("const+", 0.0)),
            ("token_embedding.weight", (self.vocab, E), ("normal", small)),
            ("lm_head.weight", (self.vocab, E), ("normal", small)),
        ]
        return p

    def n_m(self):
        return self.n_blocks - len(self.slstm_at)

    def state_floats(self):
        """mLSTM: C [NH,DH,DH], n [NH,DH], m [NH], conv window (K-1) x I; sLSTM: y, c, n, m
        (4E) and its conv window (K-1) x E."""
        NH, DH = self.m_heads, self.m_dh
        m = NH * DH * DH + NH * DH + NH + (self.conv_k - 1) * self.inner
        s = 4 * self.d_model + (self.conv_k - 1) * self.d_model
        return self.n_m() * m + len(self.slstm_at) * s

    def flops_per_token(self):
        """Matmuls 2 per multiply-add (headwise ones at their block size); the mLSTM cell in
        its recurrent form (what both compiled forward and step run): 5 DH^2 + 5 DH per head
        (C = f C + i k v^T: 3 DH^2; q^T C: 2 DH^2; n and q.n: 5 DH); the sLSTM recurrent
        matvec at 2 x DH x 4DH per head. Norms, gates and activations are left out."""
        E, I, NH, DH, K, bs = self.d_model, self.inner, self.m_heads, self.m_dh, self.conv_k, self.qkv_bs
        SH, SD, F = self.s_heads, self.s_dh, self.ffn
        m = (2 * E * 2 * I + 2 * I * K + 3 * 2 * I * bs + 2 * 2 * 3 * I * NH
             + NH * (5 * DH * DH + 5 * DH) + 2 * I * E)
        s = (2 * E * K + 4 * SH * 2 * SD * SD + SH * 2 * SD * 4 * SD
             + 2 * E * 2 * F + 2 * F * E)
        return self.n_m() * m + len(self.slstm_at) * s + 2 * E * self.vocab

    def gemms(self, T):
        """Dense matmuls of a T-token prefill; the sLSTM's 4 headwise gates as one
        [T,DH] x [DH,4DH] per head. The mLSTM gates (N = 2 NH = 8) are included as a GEMM."""
        E, I, NH = self.d_model, self.inner, self.m_heads
        SH, SD, F = self.s_heads, self.s_dh, self.ffn
        nm, ns = self.n_m(), len(self.slstm_at)
        return [(T, 2 * I, E, nm), (T, 2 * NH, 3 * I, nm), (T, E, I, nm),
                (T, 4 * SD, SD, ns * SH), (T, 2 * F, E, ns), (T, E, F, ns),
                (T, self.vocab, E, 1)]


class Mamba2:
    """The mamba2-130m shape: MambaLMHeadModel with the Mamba2 mixer (SEMANTICS-mamba2.md C.1),
    upstream defaults otherwise (d_conv 4, chunk_size 256, no biases, conv bias, rmsnorm)."""
    title = "M2-130"
    name = "m2_130"
    family = "mamba2"
    d_model = 768
    n_layer = 24
    vocab_size = 50280
    vocab = 50280
    d_state = 128                                # N
    d_conv = 4                                   # K
    expand = 2
    headdim = 64                                 # P
    ngroups = 1                                  # G
    d_inner = expand * d_model                   # 1536 (= d_ssm)
    nheads = d_inner // headdim                  # H = 24
    conv_dim = d_inner + 2 * ngroups * d_state   # 1792
    d_in_proj = 2 * d_inner + 2 * ngroups * d_state + nheads  # 3352
    tied = True
    eps = 1e-5
    embedding_name = "backbone.embedding.weight"
    decode_target, batch8_target = 1.3, 4.5       # issue 13

    def params(self):
        D, I, K, H = self.d_model, self.d_inner, self.d_conv, self.nheads
        p = [("backbone.embedding.weight", (self.vocab, D), ("normal", 0.02))]
        for l in range(self.n_layer):
            m = f"backbone.layers.{l}.mixer."
            p += [
                (f"backbone.layers.{l}.norm.weight", (D,), ("const+", 1.0)),
                (m + "dt_bias", (H,), ("dt_bias",)),
                (m + "A_log", (H,), ("log_uniform", 1.0, 16.0)),
                (m + "D", (H,), ("const+", 1.0)),
                (m + "in_proj.weight", (self.d_in_proj, D), ("uniform", 1 / math.sqrt(D))),
                (m + "conv1d.weight", (self.conv_dim, 1, K), ("uniform", 1 / math.sqrt(K))),
                (m + "conv1d.bias", (self.conv_dim,), ("uniform", 1 / math.sqrt(K))),
                (m + "norm.weight", (I,), ("const+", 1.0)),
                (m + "out_proj.weight", (D, I),
                 ("uniform", 1 / math.sqrt(I) / math.sqrt(self.n_layer))),
            ]
        p.append(("backbone.norm_f.weight", (D,), ("const+", 1.0)))
        return p

    def state_floats(self):
        """Per layer: the conv window (d_conv - 1 past xBC columns) and the SSM state
        [H, P, N] (C.6)."""
        return self.n_layer * (self.conv_dim * (self.d_conv - 1) +
                               self.nheads * self.headdim * self.d_state)

    def flops_per_token(self):
        """Matmuls 2 per multiply-add; the conv 2 per tap; the recurrence 5 per state entry
        (h = a h + (dt x) B: 3, y += h C: 2). The chunked form the compiled prefill runs costs
        about the same here (Q = 64: 2 Q P + 4 P N + 2 Q N / H per head and token = 41.6 k
        against 5 P N = 41.0 k). Norms, gates and activations are left out."""
        D, I, N, K, H, P = self.d_model, self.d_inner, self.d_state, self.d_conv, self.nheads, self.headdim
        layer = 2 * D * self.d_in_proj + 2 * self.conv_dim * K + 5 * H * P * N + 2 * I * D
        return self.n_layer * layer + 2 * D * self.vocab

    def gemms(self, T):
        """The dense matmuls of a T-token prefill (the SSD chunk products are left out)."""
        D, I, L = self.d_model, self.d_inner, self.n_layer
        return [(T, self.d_in_proj, D, L), (T, D, I, L), (T, self.vocab, D, 1)]


def ffn_width(e, factor, multiple):
    """FeedForward.__init__ of xlstm_large (D.1), on Python floats."""
    return int(((e * factor + multiple - 1) // multiple) * multiple)


class XLSTMLarge:
    """xlstm.xlstm_large xLSTMLarge (SEMANTICS-xlstm-large.md D.1), xLSTMLargeConfig defaults
    except the sizes: single weights, no biases, soft caps 15 and 30, norm_eps and eps 1e-6."""
    title = "XL-125"
    name = "xl125"
    family = "xlstm_large"
    d_model = 768                                # embedding_dim E
    n_blocks = 12
    heads = 4
    vocab_size = 50304
    vocab = 50304
    qk_dim_factor, v_dim_factor = 0.5, 1.0
    ffn_proj_factor, ffn_multiple = 2.6667, 64
    gate_cap, logit_cap = 15.0, 30.0
    tied = False
    eps = 1e-6                                   # norm_eps and the cell's eps
    embedding_name = "embedding.weight"
    decode_target, batch8_target = 1.3, None      # issue 14 (no batch-8 target)

    @property
    def qk(self):
        return int(self.d_model * self.qk_dim_factor)

    @property
    def v(self):
        return int(self.d_model * self.v_dim_factor)

    @property
    def ffn(self):
        return ffn_width(self.d_model, self.ffn_proj_factor, self.ffn_multiple)

    def params(self):
        """State-dict order of D.2 (single weight mode); init D.10: small init for the
        embedding and projections, Wang init for out_proj and proj_down, zero (+ noise) for
        every Linear with 'gate' in its name, input-gate bias -10, forget-gate bias
        linspace(3, 6, NH), norm weights 1 (+ noise)."""
        E, NH, QK, V, F = self.d_model, self.heads, self.qk, self.v, self.ffn
        small = ("normal", math.sqrt(2 / (5 * E)))
        p = [("embedding.weight", (self.vocab, E), small)]
        for b in range(self.n_blocks):
            P = f"backbone.blocks.{b}."
            L = P + "mlstm_layer."
            p += [
                (P + "norm_mlstm.weight", (E,), ("const+", 1.0)),
                (L + "q.weight", (QK, E), small),
                (L + "k.weight", (QK, E), small),
                (L + "v.weight", (V, E), small),
                (L + "ogate_preact.weight", (V, E), ("const+", 0.0)),
                (L + "igate_preact.weight", (NH, E), ("const+", 0.0)),
                (L + "igate_preact.bias", (NH,), ("const+", -10.0)),
                (L + "fgate_preact.weight", (NH, E), ("const+", 0.0)),
                (L + "fgate_preact.bias", (NH,), ("linspace", 3.0, 6.0)),
                (L + "multihead_norm.weight", (V,), ("const+", 1.0)),
                (L + "out_proj.weight", (E, V), ("normal", 2 / (self.n_blocks * math.sqrt(E)))),
                (P + "norm_ffn.weight", (E,), ("const+", 1.0)),
                (P + "ffn.proj_up_gate.weight", (F, E), ("const+", 0.0)),
                (P + "ffn.proj_up.weight", (F, E), small),
                (P + "ffn.proj_down.weight", (E, F), ("normal", 2 / (self.n_blocks * math.sqrt(F)))),
            ]
        p += [("backbone.out_norm.weight", (E,), ("const+", 1.0)),
              ("lm_head.weight", (self.vocab, E), small)]
        return p

    def state_floats(self):
        """Per block and head: C [DHqk, DHv], n [DHqk], m (D.6); no conv state."""
        dk, dv = self.qk // self.heads, self.v // self.heads
        return self.n_blocks * self.heads * (dk * dv + dk + 1)

    def flops_per_token(self):
        """Matmuls 2 per multiply-add; the cell 5 DHqk DHv + 5 DHqk per head (C = f C + i k v^T:
        3, q^T C: 2; n and q.n likewise), the same in its recurrent and, up to a few per cent
        at chunk 64, its chunkwise form. Norms, gates and activations are left out."""
        E, NH, QK, V, F = self.d_model, self.heads, self.qk, self.v, self.ffn
        dk, dv = QK // NH, V // NH
        block = (2 * E * (2 * QK + 2 * V) + 2 * E * 2 * NH + NH * (5 * dk * dv + 5 * dk)
                 + 2 * V * E + 2 * E * 2 * F + 2 * F * E)
        return self.n_blocks * block + 2 * E * self.vocab

    def gemms(self, T):
        E, NH, QK, V, F, nb = self.d_model, self.heads, self.qk, self.v, self.ffn, self.n_blocks
        return [(T, QK, E, 2 * nb), (T, V, E, 2 * nb), (T, NH, E, 2 * nb), (T, E, V, nb),
                (T, F, E, 2 * nb), (T, E, F, nb), (T, self.vocab, E, 1)]


class XLSTM7B(XLSTMLarge):
    """The NX-AI/xLSTM-7b shape (its config: embedding 4096, 32 blocks, 8 heads, vocabulary
    50304, qk_dim_factor 0.5, v_dim_factor 1, ffn_proj_factor 2.667 rounded up to 64, caps 15
    and 30). Weights in BF16 (and q8), never F32: `bench.py --models xl7b`."""
    title = "XL-7B"
    name = "xl7b"
    d_model = 4096
    n_blocks = 32
    heads = 8
    ffn_proj_factor = 2.667
    weight_dtype = "BF16"


MODELS = {"m130": Mamba(), "x125": XLSTM(), "m2_130": Mamba2(), "xl125": XLSTMLarge(), "xl7b": XLSTM7B()}
DEFAULT = "m130,x125,m2_130,xl125"  # what `make bench` runs; xl7b only when asked for


def n_params(model):
    return sum(int(np.prod(s)) for _, s, _ in model.params())


def decode_bytes(model, batch=1):
    """Bytes a decode step must move: every weight once (the embedding only as one row per
    sequence, unless it is also the tied head), plus each sequence's state read and written."""
    total = 0
    for name, shape, _ in model.params():
        n = int(np.prod(shape))
        if name == model.embedding_name and not model.tied:
            n = batch * shape[1]
        total += 4 * n
    return total + batch * 2 * 4 * model.state_floats()


def decode_bytes_of_file(model, path, batch=1):
    """decode_bytes for the tensors as a weights file stores them (any dtype, q8 scales
    included): the whole data section, less the embedding table (and its q8 scales) but one
    row of it per sequence when the head is not tied, plus the state read and written."""
    import st  # noqa: E402 (numpy-only helper beside this file)
    h = st.header(path)
    h.pop("__metadata__", None)
    total = sum(v["data_offsets"][1] - v["data_offsets"][0] for v in h.values())
    if not model.tied:
        emb = sum(v["data_offsets"][1] - v["data_offsets"][0] for n, v in h.items()
                  if n == model.embedding_name or n.startswith(model.embedding_name + "."))
        total += batch * emb // model.vocab - emb
    return total + batch * 2 * 4 * model.state_floats()


def make_tensor(model, name, shape, init):
    """Deterministic per tensor (seeded by SEED and the name), independent of file order."""
    rng = np.random.default_rng([SEED, GEN_VERSION, zlib.crc32(name.encode())])
    kind = init[0]
    if kind == "normal":
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(init[1])
    if kind == "uniform":
        return (rng.random(shape, dtype=np.float32) * 2 - 1) * np.float32(init[1])
    if kind == "const+":
        return np.float32(init[1]) + rng.standard_normal(shape, dtype=np.float32) * np.float32(NOISE)
    if kind == "linspace":
        return np.linspace(init[1], init[2], shape[0], dtype=np.float32)
    if kind == "dt_bias":  # softplus^-1 of dt ~ exp(U[log 1e-3, log 1e-1]), dt >= 1e-4 (A.8 item 2)
        dt = np.exp(rng.random(shape) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        dt = np.maximum(dt, 1e-4)
        return (dt + np.log(-np.expm1(-dt))).astype(np.float32)
    if kind == "log_uniform":  # Mamba-2's A_log: log(U[lo, hi]) per head (C.9 item 2)
        return np.log(rng.uniform(init[1], init[2], shape)).astype(np.float32)
    if kind == "a_log":  # S4D-real: log(1..d_state) for every channel, plus noise
        a = np.log(np.arange(1, shape[1] + 1, dtype=np.float32))[None, :].repeat(shape[0], 0)
        return a + rng.standard_normal(shape, dtype=np.float32) * np.float32(NOISE)
    if kind == "slstm_bias":  # vanilla layout [gate, head, j]; f: powerlaw_blockdependent (B.10)
        b = init[1]
        E, NH, DH = model.d_model, model.s_heads, model.s_dh
        r = b / (model.n_blocks - 1)
        j = np.arange(DH, dtype=np.float64) / (DH - 1)
        bias = np.zeros((4, NH, DH), dtype=np.float32)
        bias[1] = -(-5.0 + 12.0 * j ** (0.3 + 1.3 * r))
        return bias.reshape(4 * E) + rng.standard_normal(4 * E, dtype=np.float32) * np.float32(NOISE)
    raise ValueError(kind)
