/* lower_xlstm_large.c - the block of NX-AI xlstm.xlstm_large, the xLSTM-7B architecture
 * (SEMANTICS-xlstm-large D.2-D.6).
 *
 *   x = x + out_proj( σ(o) ⊙ MultiHeadLayerNorm( cell(q, k, v, cap(ĩ), cap(f̃)) ) )
 *       where q, k, v, o, ĩ, f̃ are dense projections of xn = RMSNorm_mlstm(x)
 *   x = x + proj_down( SiLU(proj_up_gate(xn2)) ⊙ proj_up(xn2) ),  xn2 = RMSNorm_ffn(x)
 *
 * Gains are stored directly (not 1 + w); every norm, and every Linear but the gates, has a
 * bias only with the model's `bias` (use_bias); the i/f gates always have one. In
 * weight_mode `fused` the checkpoint holds the row-wise concatenations qkv_opreact = [q; k;
 * v; ogate], ifgate_preact = [i; f], proj_up_gate_z = [gate; up]: they are read as one
 * projection each and its output sliced, so nothing is split or copied at load time.
 * Transformers' older module names query/key/value are accepted for q/k/v. */
#include <math.h>

#include "ir/lower.h"

static Node *param(Graph *g, Loc loc, const char *prefix, const char *suffix, const char *alt,
                   int rank, const int64_t *dims)
{
    const char *alt_name = alt ? ir_strfmt(g, "%s.%s", prefix, alt) : NULL;
    return ir_weight(g, loc, ir_strfmt(g, "%s.%s", prefix, suffix), alt_name, rank, dims);
}

/* RMSNorm with gain (and bias with use_bias) at prefix.weight (prefix.bias). */
static Node *rms(Graph *g, Loc loc, const ModelSpec *m, const char *prefix, int64_t d, Node *x)
{
    Node *w = param(g, loc, prefix, "weight", NULL, 1, &d);
    Node *b = m->bias ? param(g, loc, prefix, "bias", NULL, 1, &d) : NULL;
    return ir_rmsnorm(g, loc, x, w, b, m->norm_eps);
}

/* Linear prefix.{name}: weight [out, in], bias [out] when `bias` (alt: transformers' name). */
static Node *dense(Graph *g, Loc loc, const char *prefix, const char *name, const char *alt,
                   int64_t out, int64_t in, bool bias, Node *x)
{
    Node *w = param(g, loc, prefix, ir_strfmt(g, "%s.weight", name),
                    alt ? ir_strfmt(g, "%s.weight", alt) : NULL, 2, (int64_t[]){out, in});
    Node *b = bias ? param(g, loc, prefix, ir_strfmt(g, "%s.bias", name),
                           alt ? ir_strfmt(g, "%s.bias", alt) : NULL, 1, &out)
                   : NULL;
    return ir_linear(g, loc, x, w, b);
}

Node *lower_mlstm_large_block(Graph *g, const ModelSpec *m, const char *prefix, Node *x)
{
    const MlstmLargeSpec *s = &m->mlstm_large;
    Loc loc = s->loc;
    int64_t e = m->d_model, qk = s->qk_dim, v = s->v_dim, nh = s->num_heads, ff = s->ffn_dim;
    bool fused = s->weight_mode == WEIGHT_MODE_FUSED;
    const char *layer = ir_strfmt(g, "%s.mlstm_layer", prefix);

    Node *xn = rms(g, loc, m, ir_strfmt(g, "%s.norm_mlstm", prefix), e, x);
    Node *q, *k, *val, *o, *ig, *fg;
    if (fused) {
        Node *p = dense(g, loc, layer, "qkv_opreact", NULL, 2 * qk + 2 * v, e, m->bias, xn);
        q = ir_slice(g, loc, p, 0, qk);
        k = ir_slice(g, loc, p, qk, qk);
        val = ir_slice(g, loc, p, 2 * qk, v);
        o = ir_slice(g, loc, p, 2 * qk + v, v);
        Node *gates = dense(g, loc, layer, "ifgate_preact", NULL, 2 * nh, e, true, xn);
        ig = ir_slice(g, loc, gates, 0, nh);
        fg = ir_slice(g, loc, gates, nh, nh);
    } else {
        q = dense(g, loc, layer, "q", "query", qk, e, m->bias, xn);
        k = dense(g, loc, layer, "k", "key", qk, e, m->bias, xn);
        val = dense(g, loc, layer, "v", "value", v, e, m->bias, xn);
        o = dense(g, loc, layer, "ogate_preact", NULL, v, e, m->bias, xn);
        ig = dense(g, loc, layer, "igate_preact", NULL, nh, e, true, xn);
        fg = dense(g, loc, layer, "fgate_preact", NULL, nh, e, true, xn);
    }
    /* D.6: q carries 1/sqrt(DHqk), the state holds unscaled k vᵀ; gates capped first */
    MlstmNumerics num = {.eps = s->eps, .q_scale = 1.0 / sqrt((double)s->qk_head_dim),
                         .k_scale = 1.0, .gate_cap = s->gate_soft_cap,
                         .chunk_request = s->chunk_size};
    Node *h = ir_mlstm_cell(g, loc, q, k, val, ig, fg, (int)nh, &num,
                            ir_strfmt(g, "%s state (C, n, m)", layer));
    const char *mh = ir_strfmt(g, "%s.multihead_norm", layer);
    Node *mh_w = param(g, loc, mh, "weight", NULL, 1, &v);
    Node *mh_b = m->bias ? param(g, loc, mh, "bias", NULL, 1, &v) : NULL;
    h = ir_layernorm(g, loc, h, mh_w, mh_b, m->norm_eps, false, (int)nh);
    h = ir_binary(g, loc, OP_MUL, ir_unary(g, loc, OP_SIGMOID, o), h);
    x = ir_binary(g, loc, OP_ADD, x, dense(g, loc, layer, "out_proj", NULL, e, v, m->bias, h));

    /* D.4: SwiGLU feed-forward, the gate (first half when fused) through SiLU */
    const char *ffn = ir_strfmt(g, "%s.ffn", prefix);
    Node *xn2 = rms(g, loc, m, ir_strfmt(g, "%s.norm_ffn", prefix), e, x);
    Node *gate, *up;
    if (fused) {
        Node *p = dense(g, loc, ffn, "proj_up_gate_z", NULL, 2 * ff, e, m->bias, xn2);
        gate = ir_slice(g, loc, p, 0, ff);
        up = ir_slice(g, loc, p, ff, ff);
    } else {
        gate = dense(g, loc, ffn, "proj_up_gate", NULL, ff, e, m->bias, xn2);
        up = dense(g, loc, ffn, "proj_up", NULL, ff, e, m->bias, xn2);
    }
    Node *hf = ir_binary(g, loc, OP_MUL, ir_unary(g, loc, OP_SILU, gate), up);
    return ir_binary(g, loc, OP_ADD, x, dense(g, loc, ffn, "proj_down", NULL, e, ff, m->bias, hf));
}

Node *lower_xlstm_large_final_norm(Graph *g, const ModelSpec *m, const char *prefix, Node *x)
{
    return rms(g, m->loc, m, prefix, m->d_model, x);
}
