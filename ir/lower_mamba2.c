/* lower_mamba2.c - one Mamba-2 block: x + mixer(norm(x)).
 *
 * Follows mamba_ssm's Mamba2.forward (unfused branch) and Mamba2.step (SEMANTICS-mamba2.md
 * C.4-C.6):
 *   [z0 | x0 | z | xBC | dt] = in_proj(u)               z0, x0: gated-MLP part (d_mlp)
 *   [x | B | C] = SiLU(conv1d(xBC) + conv_b)             B and C are convolved too
 *   y = ssd(x, Δ = clamp(softplus(dt + dt_bias)), A = -exp(A_log), B, C) + D x
 *   y = rmsnorm_G(y * SiLU(z)) * w   (or rmsnorm_G(y) * w * SiLU(z), or y * SiLU(z))
 *   out = out_proj([SiLU(z0) * x0 | y])
 * The gated norm has eps 1e-5 (fixed by Mamba2, not norm_eps) and G = ngroups groups. */
#include "ir/lower.h"

static Node *lower_mixer(Graph *g, const ModelSpec *m, const char *mixer, Node *u)
{
    const Mamba2Spec *s = &m->mamba2;
    Loc loc = s->loc;
    int64_t d = m->d_model, di = s->d_inner, ds = s->d_ssm, dm = s->d_mlp, h = s->nheads;
    int64_t gn = (int64_t)s->ngroups * s->d_state, cd = s->conv_dim, np = s->d_in_proj;

    Node *in_w = lower_param(g, loc, mixer, "in_proj.weight", 2, (int64_t[]){np, d});
    Node *in_b = s->bias ? lower_param(g, loc, mixer, "in_proj.bias", 1, &np) : NULL;
    Node *zxbcdt = ir_linear(g, loc, u, in_w, in_b);
    Node *z = ir_slice(g, loc, zxbcdt, 2 * dm, ds);
    Node *xbc = ir_slice(g, loc, zxbcdt, 2 * dm + ds, cd);
    Node *dt = ir_slice(g, loc, zxbcdt, 2 * dm + ds + cd, h);

    Node *conv_w = lower_param(g, loc, mixer, "conv1d.weight", 3, (int64_t[]){cd, 1, s->d_conv});
    Node *conv_b = s->conv_bias ? lower_param(g, loc, mixer, "conv1d.bias", 1, &cd) : NULL;
    Node *xbc_c = ir_conv1d(g, loc, xbc, conv_w, conv_b, ir_strfmt(g, "%s conv window", mixer));
    Node *xbc_a = ir_unary(g, loc, OP_SILU, xbc_c);
    Node *x = ir_slice(g, loc, xbc_a, 0, ds);
    Node *bm = ir_slice(g, loc, xbc_a, ds, gn);
    Node *cm = ir_slice(g, loc, xbc_a, ds + gn, gn);

    Node *dt_bias = lower_param(g, loc, mixer, "dt_bias", 1, &h);
    Node *a_log = lower_param(g, loc, mixer, "A_log", 1, &h);
    Node *dskip = lower_param(g, loc, mixer, "D", 1, s->D_has_hdim ? &ds : &h);
    Node *y = ir_ssd_scan(g, loc, (Node *[]){x, dt, dt_bias, a_log, bm, cm, dskip}, s->nheads,
                          s->ngroups, s->dt_limit[0], s->dt_limit[1], s->chunk_size,
                          ir_strfmt(g, "%s ssm state", mixer));

    Node *gate = ir_unary(g, loc, OP_SILU, z);
    if (!s->rmsnorm) {
        y = ir_binary(g, loc, OP_MUL, y, gate);
    } else {
        Node *nw = lower_param(g, loc, mixer, "norm.weight", 1, &ds);
        if (s->norm_before_gate)
            y = ir_binary(g, loc, OP_MUL, ir_rmsnorm_grouped(g, loc, y, nw, 1e-5, s->ngroups), gate);
        else
            y = ir_rmsnorm_grouped(g, loc, ir_binary(g, loc, OP_MUL, y, gate), nw, 1e-5, s->ngroups);
    }
    if (dm > 0) { /* the MLP branch comes first in out_proj's input */
        Node *z0 = ir_slice(g, loc, zxbcdt, 0, dm), *x0 = ir_slice(g, loc, zxbcdt, dm, dm);
        Node *mlp = ir_binary(g, loc, OP_MUL, ir_unary(g, loc, OP_SILU, z0), x0);
        y = ir_concat(g, loc, mlp, y, NULL);
    }

    Node *out_w = lower_param(g, loc, mixer, "out_proj.weight", 2, (int64_t[]){d, di});
    Node *out_b = s->bias ? lower_param(g, loc, mixer, "out_proj.bias", 1, &d) : NULL;
    return ir_linear(g, loc, y, out_w, out_b);
}

Node *lower_mamba2_block(Graph *g, const ModelSpec *m, const char *prefix, Node *x)
{
    Node *normed = lower_block_norm(g, m, ir_strfmt(g, "%s.norm", prefix), x);
    return ir_binary(g, m->mamba2.loc, OP_ADD, x,
                     lower_mixer(g, m, ir_strfmt(g, "%s.mixer", prefix), normed));
}
