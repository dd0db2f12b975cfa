/* lower_mamba.c - one Mamba (v1) block: x + mixer(norm(x)) (+ the optional GatedMLP).
 *
 * Follows mamba_ssm's Mamba.forward slow path (SEMANTICS A.5):
 *   xz = in_proj(u);  x, z = split(xz)
 *   x̂ = SiLU(conv1d(x) + conv_b)                        causal, depthwise
 *   dt_low, B, C = split(x_proj(x̂))
 *   Δ = softplus(dt_proj(dt_low) + dt_bias)
 *   y = scan(x̂, Δ, A = -exp(A_log), B, C) + D x̂          Euler B̄ = ΔB, ZOH Ā = exp(ΔA)
 *   out = out_proj(y * SiLU(z)) */
#include "ir/lower.h"

static Node *lower_mixer(Graph *g, const ModelSpec *m, const char *mixer, Node *u)
{
    const MambaSpec *s = &m->mamba;
    Loc loc = s->loc;
    int64_t d = m->d_model, di = s->d_inner, ns = s->d_state, r = s->dt_rank;

    Node *in_w = lower_param(g, loc, mixer, "in_proj.weight", 2, (int64_t[]){2 * di, d});
    Node *in_b = s->bias ? lower_param(g, loc, mixer, "in_proj.bias", 1, (int64_t[]){2 * di}) : NULL;
    Node *xz = ir_linear(g, loc, u, in_w, in_b);
    Node *x = ir_slice(g, loc, xz, 0, di);
    Node *z = ir_slice(g, loc, xz, di, di);

    Node *conv_w = lower_param(g, loc, mixer, "conv1d.weight", 3, (int64_t[]){di, 1, s->d_conv});
    Node *conv_b = s->conv_bias ? lower_param(g, loc, mixer, "conv1d.bias", 1, &di) : NULL;
    Node *xc = ir_conv1d(g, loc, x, conv_w, conv_b, ir_strfmt(g, "%s conv window", mixer));
    Node *xs = ir_unary(g, loc, OP_SILU, xc);

    Node *xproj_w = lower_param(g, loc, mixer, "x_proj.weight", 2, (int64_t[]){r + 2 * ns, di});
    Node *dbl = ir_linear(g, loc, xs, xproj_w, NULL);
    Node *dt_low = ir_slice(g, loc, dbl, 0, r);
    Node *bm = ir_slice(g, loc, dbl, r, ns);
    Node *cm = ir_slice(g, loc, dbl, r + ns, ns);

    Node *dt_w = lower_param(g, loc, mixer, "dt_proj.weight", 2, (int64_t[]){di, r});
    Node *dt_b = lower_param(g, loc, mixer, "dt_proj.bias", 1, &di);
    Node *delta = ir_unary(g, loc, OP_SOFTPLUS, ir_linear(g, loc, dt_low, dt_w, dt_b));

    Node *a_log = lower_param(g, loc, mixer, "A_log", 2, (int64_t[]){di, ns});
    Node *dskip = lower_param(g, loc, mixer, "D", 1, &di);
    Node *y = ir_selective_scan(g, loc, xs, delta, a_log, bm, cm, dskip,
                                ir_strfmt(g, "%s ssm state", mixer));
    Node *gated = ir_binary(g, loc, OP_MUL, y, ir_unary(g, loc, OP_SILU, z));

    Node *out_w = lower_param(g, loc, mixer, "out_proj.weight", 2, (int64_t[]){d, di});
    Node *out_b = s->bias ? lower_param(g, loc, mixer, "out_proj.bias", 1, &d) : NULL;
    return ir_linear(g, loc, gated, out_w, out_b);
}

/* mamba_ssm GatedMLP: fc2(y * SiLU(gate)) with [y, gate] = fc1(x); no biases. */
static Node *lower_gated_mlp(Graph *g, const ModelSpec *m, const char *mlp, Node *x)
{
    Loc loc = m->mamba.loc;
    int64_t d = m->d_model, h = m->mamba.mlp_hidden;
    Node *fc1 = lower_param(g, loc, mlp, "fc1.weight", 2, (int64_t[]){2 * h, d});
    Node *u = ir_linear(g, loc, x, fc1, NULL);
    Node *y = ir_slice(g, loc, u, 0, h);
    Node *gate = ir_slice(g, loc, u, h, h);
    Node *fc2 = lower_param(g, loc, mlp, "fc2.weight", 2, (int64_t[]){d, h});
    return ir_linear(g, loc, ir_binary(g, loc, OP_MUL, y, ir_unary(g, loc, OP_SILU, gate)), fc2,
                     NULL);
}

Node *lower_mamba_block(Graph *g, const ModelSpec *m, const char *prefix, Node *x)
{
    Node *normed = lower_block_norm(g, m, ir_strfmt(g, "%s.norm", prefix), x);
    x = ir_binary(g, m->mamba.loc, OP_ADD, x,
                  lower_mixer(g, m, ir_strfmt(g, "%s.mixer", prefix), normed));
    if (m->mamba.mlp_hidden > 0) {
        Node *normed2 = lower_block_norm(g, m, ir_strfmt(g, "%s.norm2", prefix), x);
        x = ir_binary(g, m->mamba.loc, OP_ADD, x,
                      lower_gated_mlp(g, m, ir_strfmt(g, "%s.mlp", prefix), normed2));
    }
    return x;
}
