/* lower_xlstm.c - the mLSTM and sLSTM blocks of NX-AI xlstm (SEMANTICS B.5-B.11).
 *
 * Every xLSTM norm is a bias-free LayerNorm whose stored weight is an offset (gain 1 + w),
 * eps = norm_eps (1e-5 upstream). Parameter names are those of xLSTMBlockStack, under the
 * block prefix the frame hands in (e.g. "xlstm_block_stack.blocks.2"). */
#include <math.h>

#include "ir/lower.h"

static Node *offset_norm(Graph *g, Loc loc, const ModelSpec *m, const char *prefix,
                         int64_t cols, Node *x, int groups)
{
    Node *w = lower_param(g, loc, prefix, "weight", 1, &cols);
    return ir_layernorm(g, loc, x, w, NULL, m->norm_eps, true, groups);
}

/* SiLU(causal_conv1d(x) + bias) with the conv at prefix.conv; K = 0 means no conv. */
static Node *conv_silu(Graph *g, Loc loc, const char *prefix, int64_t ch, int kernel, Node *x)
{
    if (kernel == 0) return x;
    Node *w = lower_param(g, loc, prefix, "conv.weight", 3, (int64_t[]){ch, 1, kernel});
    Node *b = lower_param(g, loc, prefix, "conv.bias", 1, &ch);
    return ir_unary(g, loc, OP_SILU,
                    ir_conv1d(g, loc, x, w, b, ir_strfmt(g, "%s window", prefix)));
}

/* mLSTM block (B.7.1, B.8):
 *   [x_m, z] = proj_up(LN(x));  x_c = SiLU(conv(x_m))
 *   q = q_proj(x_c), k = k_proj(x_c), v = v_proj(x_m)       headwise, blocks of qkv_proj_blocksize
 *   ĩ, f̃ = igate/fgate(concat(q, k, v))                     one value per head
 *   h = (MultiHeadLN(cell(q, k, v, ĩ, f̃)) + skip ⊙ x_c) ⊙ SiLU(z)
 *   x + proj_down(h) */
Node *lower_mlstm_block(Graph *g, const ModelSpec *m, const char *prefix, Node *x)
{
    const MlstmSpec *s = &m->mlstm;
    Loc loc = s->loc;
    int64_t e = m->d_model, in = s->inner_dim, nh = s->num_heads, bs = s->qkv_proj_blocksize;
    const char *layer = ir_strfmt(g, "%s.xlstm", prefix);

    Node *xn = offset_norm(g, loc, m, ir_strfmt(g, "%s.xlstm_norm", prefix), e, x, 1);
    Node *up_w = lower_param(g, loc, layer, "proj_up.weight", 2, (int64_t[]){2 * in, e});
    Node *up_b = m->bias ? lower_param(g, loc, layer, "proj_up.bias", 1, (int64_t[]){2 * in}) : NULL;
    Node *up = ir_linear(g, loc, xn, up_w, up_b);
    Node *xm = ir_slice(g, loc, up, 0, in);
    Node *z = ir_slice(g, loc, up, in, in);
    Node *xc = conv_silu(g, loc, ir_strfmt(g, "%s.conv1d", layer), in, s->conv1d_kernel_size, xm);

    int64_t qkv_dims[3] = {in / bs, bs, bs};
    Node *qkv[3];
    const char *names[3] = {"q_proj", "k_proj", "v_proj"};
    for (int i = 0; i < 3; i++) {
        Node *w = lower_param(g, loc, layer, ir_strfmt(g, "%s.weight", names[i]), 3, qkv_dims);
        Node *b = m->bias ? lower_param(g, loc, layer, ir_strfmt(g, "%s.bias", names[i]), 1, &in)
                          : NULL;
        qkv[i] = ir_headwise(g, loc, i < 2 ? xc : xm, w, b);
    }

    const char *cell = ir_strfmt(g, "%s.mlstm_cell", layer);
    Node *gin = ir_concat(g, loc, qkv[0], qkv[1], qkv[2]);
    Node *ig = ir_linear(g, loc, gin, lower_param(g, loc, cell, "igate.weight", 2, (int64_t[]){nh, 3 * in}),
                         lower_param(g, loc, cell, "igate.bias", 1, &nh));
    Node *fg = ir_linear(g, loc, gin, lower_param(g, loc, cell, "fgate.weight", 2, (int64_t[]){nh, 3 * in}),
                         lower_param(g, loc, cell, "fgate.bias", 1, &nh));
    /* B.8.2: k enters the state scaled by 1/sqrt(DH), eps 1e-6, no gate cap; the form of a
     * forward's cell is the pass's choice (the classic spec has no chunk_size) */
    MlstmNumerics num = {.eps = 1e-6, .q_scale = 1.0, .k_scale = 1.0 / sqrt((double)(in / nh)),
                         .chunk_request = SPEC_CHUNK_AUTO};
    Node *h = ir_mlstm_cell(g, loc, qkv[0], qkv[1], qkv[2], ig, fg, (int)nh, &num,
                            ir_strfmt(g, "%s state (C, n, m)", cell));
    h = offset_norm(g, loc, m, ir_strfmt(g, "%s.outnorm", cell), in, h, (int)nh);

    Node *skip = ir_binary(g, loc, OP_SCALE, xc, lower_param(g, loc, layer, "learnable_skip", 1, &in));
    h = ir_binary(g, loc, OP_MUL, ir_binary(g, loc, OP_ADD, h, skip), ir_unary(g, loc, OP_SILU, z));
    Node *down_w = lower_param(g, loc, layer, "proj_down.weight", 2, (int64_t[]){e, in});
    Node *down_b = m->bias ? lower_param(g, loc, layer, "proj_down.bias", 1, &e) : NULL;
    return ir_binary(g, loc, OP_ADD, x, ir_linear(g, loc, h, down_w, down_b));
}

static Op activation_op(ActFn a)
{
    switch (a) {
    case ACT_GELU: return OP_GELU;
    case ACT_RELU: return OP_RELU;
    case ACT_RELU2: return OP_RELU2;
    case ACT_SIGMOID: return OP_SIGMOID;
    case ACT_SWISH: return OP_SILU;
    case ACT_SELU: return OP_SELU;
    }
    mxc_die("bad activation %d", (int)a);
}

/* Gated feed-forward (B.11): proj_down(act(g) ⊙ u), [g, u] = proj_up(LN(x)). */
static Node *lower_ffn(Graph *g, const ModelSpec *m, const char *prefix, Node *x)
{
    const FfnSpec *f = &m->slstm.ffn;
    Loc loc = f->loc;
    int64_t e = m->d_model, ff = f->inner_dim;
    Node *xn = offset_norm(g, loc, m, ir_strfmt(g, "%s.ffn_norm", prefix), e, x, 1);
    const char *ffn = ir_strfmt(g, "%s.ffn", prefix);
    Node *up = ir_linear(g, loc, xn, lower_param(g, loc, ffn, "proj_up.weight", 2, (int64_t[]){2 * ff, e}),
                         f->bias ? lower_param(g, loc, ffn, "proj_up.bias", 1, (int64_t[]){2 * ff}) : NULL);
    Node *gate = ir_unary(g, loc, activation_op(f->act_fn), ir_slice(g, loc, up, 0, ff));
    Node *h = ir_binary(g, loc, OP_MUL, gate, ir_slice(g, loc, up, ff, ff));
    Node *down = ir_linear(g, loc, h, lower_param(g, loc, ffn, "proj_down.weight", 2, (int64_t[]){e, ff}),
                           f->bias ? lower_param(g, loc, ffn, "proj_down.bias", 1, &e) : NULL);
    return ir_binary(g, loc, OP_ADD, x, down);
}

/* sLSTM block (B.9, B.10): x + GroupNorm(cell(i, f, z, o)), then the FFN.
 * Upstream quirk: the module named `fgate` drives the input gate, `igate` the forget gate,
 * and only those two see the convolved input. */
Node *lower_slstm_block(Graph *g, const ModelSpec *m, const char *prefix, Node *x)
{
    const SlstmSpec *s = &m->slstm;
    Loc loc = s->loc;
    int64_t e = m->d_model, nh = s->num_heads, dh = s->head_dim;
    const char *layer = ir_strfmt(g, "%s.xlstm", prefix);

    Node *xn = offset_norm(g, loc, m, ir_strfmt(g, "%s.xlstm_norm", prefix), e, x, 1);
    Node *xc = conv_silu(g, loc, ir_strfmt(g, "%s.conv1d", layer), e, s->conv1d_kernel_size, xn);
    int64_t gate_dims[3] = {nh, dh, dh};
    const char *module[4] = {"fgate", "igate", "zgate", "ogate"}; /* feeding i, f, z, o */
    Node *gates[4];
    for (int i = 0; i < 4; i++) {
        Node *w = lower_param(g, loc, layer, ir_strfmt(g, "%s.weight", module[i]), 3, gate_dims);
        gates[i] = ir_headwise(g, loc, i < 2 ? xc : xn, w, NULL);
    }
    const char *cell = ir_strfmt(g, "%s.slstm_cell", layer);
    /* The kernels read R as [NH][4DH][DH] and the bias gate-major [4][NH][DH]; checkpoints
     * of the CUDA backend store R as [NH][DH][4DH] and the bias head-major [NH][4][DH]. */
    Node *r = lower_param(g, loc, cell, "_recurrent_kernel_", 3, (int64_t[]){nh, 4 * dh, dh});
    Node *bias = lower_param(g, loc, cell, "_bias_", 1, (int64_t[]){4 * e});
    if (s->layout == SLSTM_LAYOUT_CUDA) {
        ir_weight_stored_swapped(r, 3, (int64_t[]){nh, dh, 4 * dh}, (int64_t[]){nh, dh, 4 * dh, 1});
        ir_weight_stored_swapped(bias, 1, (int64_t[]){4 * e}, (int64_t[]){1, nh, 4, dh});
    }
    Node *y = ir_slstm_cell(g, loc, gates, r, bias, (int)nh,
                            ir_strfmt(g, "%s state (y, c, n, m)", cell));
    y->attr.rec.m_from_input = true;
    y = offset_norm(g, loc, m, ir_strfmt(g, "%s.group_norm", layer), e, y, (int)nh);
    x = ir_binary(g, loc, OP_ADD, x, y);
    return s->feedforward ? lower_ffn(g, m, prefix, x) : x;
}

/* The bias-free, offset-gain LayerNorm before the head (post_blocks_norm). */
Node *lower_xlstm_final_norm(Graph *g, const ModelSpec *m, const char *prefix, Node *x)
{
    return offset_norm(g, m->loc, m, prefix, m->d_model, x, 1);
}
