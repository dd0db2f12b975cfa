/* mlstm_chunkwise.c - the chunkwise form of the mLSTM cell, for the forward (sequence) path
 * (SEMANTICS-xlstm-large D.7; the same function as the recurrent form of cells.c, up to
 * rounding).
 *
 * The positions of a call are taken L = attr.rec.mlstm.chunk at a time (the last piece may be
 * shorter). Per (sequence, head) and piece, with the incoming state (C, n, m) and
 * b_t = Σ_{s≤t} logσ(f̃_s) inside the piece, a_j = ĩ_j - b_j:
 *   m_t = b_t + max(m, max_{j≤t} a_j),  g_t = exp(b_t + m - m_t)
 *   W[t, j] = (q'_t · k'_j) exp(b_t + a_j - m_t)                       j ≤ t
 *   h_t = (g_t q'_tᵀC + Σ_j W[t, j] v_j) / (max(|g_t q'_t·n + Σ_j W[t, j]|, exp(-m_t)) + eps)
 * and only then the state moves to the end of the piece (G = b_{L-1}):
 *   m' = G + max(m, max_j a_j);  C' = exp(G + m - m') C + Σ_j exp(G + a_j - m') k'_j v_jᵀ
 * (n' likewise). So C is read twice and written once per piece instead of once per position,
 * and the work inside a piece is dot products and row updates over contiguous rows. The
 * numerics (q/k scales, gate cap, eps) are the node's attributes, as in the recurrent form. */
#include <math.h>

#include "backend/codegen.h"

/* Loop over this thread's share of the B × heads (sequence, head) pairs. */
static void items_begin(Cg *cg, CgLoop *l, int64_t heads, LLVMValueRef *b, LLVMValueRef *h)
{
    LLVMValueRef lo, hi;
    cg_split(cg, LLVMBuildMul(cg->b, cg->f->batch, cg_i64(cg, heads), ""), &lo, &hi);
    LLVMValueRef item = cg_loop_begin(cg, l, lo, hi, "item");
    *b = LLVMBuildSDiv(cg->b, item, cg_i64(cg, heads), "b");
    *h = LLVMBuildSub(cg->b, item, LLVMBuildMul(cg->b, *b, cg_i64(cg, heads), ""), "h");
}

/* y[0, n) = y * s + a * x (s = NULL: y + a x); vectors, then the rest one by one. */
static void axpby(Cg *cg, LLVMValueRef y, LLVMValueRef x, LLVMValueRef a, LLVMValueRef s, int64_t n)
{
    int vw = cg->vector_width;
    int64_t full = n / vw * vw;
    for (int pass = 0; pass < 2; pass++) {
        LLVMTypeRef t = pass == 0 ? cg_vec_type(cg) : cg->f32;
        if (pass == 0 ? full == 0 : full == n) continue;
        CgLoop l;
        LLVMValueRef j = pass == 0 ? cg_loop_begin_step(cg, &l, cg_i64(cg, 0), cg_i64(cg, full), vw, "j")
                                   : cg_loop_begin(cg, &l, cg_i64(cg, full), cg_i64(cg, n), "j1");
        LLVMValueRef yv = cg_vload(cg, t, y, j);
        if (s) yv = LLVMBuildFMul(cg->b, yv, pass == 0 ? cg_vsplat(cg, t, s) : s, "");
        if (x) {
            LLVMValueRef av = pass == 0 ? cg_vsplat(cg, t, a) : a;
            yv = cg_fma(cg, av, cg_vload(cg, t, x, j), yv);
        }
        cg_vstore(cg, yv, y, j);
        cg_loop_end(cg, &l);
    }
}


static LLVMValueRef farray(Cg *cg, int64_t n, const char *name)
{
    return cg_entry_alloca(cg, LLVMArrayType2(cg->f32, (uint64_t)n), name);
}

static LLVMValueRef ld(Cg *cg, LLVMValueRef var) { return LLVMBuildLoad2(cg->b, cg->f32, var, ""); }

void cg_emit_mlstm_chunkwise(Cg *cg, const Node *n)
{
    LLVMBuilderRef B = cg->b;
    const Node *q = n->src[0], *k = n->src[1], *v = n->src[2], *ig = n->src[3], *fg = n->src[4];
    const MlstmNumerics *num = &n->attr.rec.mlstm;
    int64_t heads = n->attr.rec.heads, qk = ir_type_cols(&q->type);
    int64_t dk = qk / heads, dv = ir_type_cols(&n->type) / heads, L = num->chunk;
    LLVMValueRef qk_scale = cg_f32(cg, num->q_scale * num->k_scale);
    LLVMValueRef q_scale = cg_f32(cg, num->q_scale), k_scale = cg_f32(cg, num->k_scale);
    LLVMValueRef bbuf = farray(cg, L, "b"), abuf = farray(cg, L, "a"), mbuf = farray(cg, L, "m");
    LLVMValueRef gbuf = farray(cg, L, "g"), wk = farray(cg, L, "wk"), wmat = farray(cg, L * L, "W");
    LLVMValueRef qn = cg_var(cg, "qn"), den = cg_var(cg, "den"), runmax = cg_var(cg, "runmax");

    CgLoop li, lc;
    LLVMValueRef b, h;
    items_begin(cg, &li, heads, &b, &h);
    LLVMValueRef st = cg_state(cg, n->attr.rec.state, b);
    LLVMValueRef hk = LLVMBuildMul(B, h, cg_i64(cg, dk), ""), hv = LLVMBuildMul(B, h, cg_i64(cg, dv), "");
    LLVMValueRef cmat = cg_gep(cg, cg->f32, st, LLVMBuildMul(B, h, cg_i64(cg, dk * dv), ""));
    LLVMValueRef nvec = cg_gep(cg, cg->f32, st, LLVMBuildAdd(B, cg_i64(cg, heads * dk * dv), hk, ""));
    LLVMValueRef mptr = cg_gep(cg, cg->f32, st, LLVMBuildAdd(B, cg_i64(cg, heads * dk * dv + qk), h, ""));
#define ROW(node, t, off) cg_gep(cg, cg->f32, cg_row(cg, node, b, t), off)

    LLVMValueRef c0 = cg_loop_begin_step(cg, &lc, cg_i64(cg, 0), cg->f->len, L, "c0");
    LLVMValueRef rest = LLVMBuildSub(B, cg->f->len, c0, "");
    LLVMValueRef cnt = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, rest, cg_i64(cg, L), ""), rest,
                                       cg_i64(cg, L), "n");
    LLVMValueRef m_prev = LLVMBuildLoad2(B, cg->f32, mptr, "m_prev");

    /* gates: b_t, a_t, m_t, g_t */
    LLVMValueRef acc = cg_var(cg, "bsum");
    LLVMBuildStore(B, cg_f32(cg, 0.0), acc);
    LLVMBuildStore(B, cg_f32(cg, -INFINITY), runmax);
    CgLoop lg;
    LLVMValueRef t = cg_loop_begin(cg, &lg, cg_i64(cg, 0), cnt, "t");
    LLVMValueRef pos = LLVMBuildAdd(B, c0, t, "");
    LLVMValueRef ipre = cg_mlstm_gate(cg, num, cg_load(cg, cg_row(cg, ig, b, pos), h));
    LLVMValueRef fpre = cg_mlstm_gate(cg, num, cg_load(cg, cg_row(cg, fg, b, pos), h));
    LLVMValueRef bt = LLVMBuildFAdd(B, ld(cg, acc), cg_logsigmoid(cg, fpre), "b_t");
    LLVMBuildStore(B, bt, acc);
    LLVMValueRef at = LLVMBuildFSub(B, ipre, bt, "a_t");
    LLVMValueRef rm = cg_max(cg, ld(cg, runmax), at);
    LLVMBuildStore(B, rm, runmax);
    LLVMValueRef mt = LLVMBuildFAdd(B, bt, cg_max(cg, m_prev, rm), "m_t");
    cg_store(cg, bt, bbuf, t);
    cg_store(cg, at, abuf, t);
    cg_store(cg, mt, mbuf, t);
    cg_store(cg, cg_exp(cg, LLVMBuildFSub(B, LLVMBuildFAdd(B, bt, m_prev, ""), mt, "")), gbuf, t);
    cg_loop_end(cg, &lg);

    /* W[t, j] = (q_t · k_j) q_scale k_scale exp(b_t + a_j - m_t), j ≤ t */
    CgLoop lt, lj;
    t = cg_loop_begin(cg, &lt, cg_i64(cg, 0), cnt, "t");
    LLVMValueRef qrow = ROW(q, LLVMBuildAdd(B, c0, t, ""), hk);
    LLVMValueRef bt2 = cg_load(cg, bbuf, t), mt2 = cg_load(cg, mbuf, t);
    LLVMValueRef j = cg_loop_begin(cg, &lj, cg_i64(cg, 0), LLVMBuildAdd(B, t, cg_i64(cg, 1), ""), "j");
    LLVMValueRef s = LLVMBuildFMul(B, cg_dot(cg, qrow, ROW(k, LLVMBuildAdd(B, c0, j, ""), hk), dk), qk_scale, "");
    LLVMValueRef dcy = cg_exp(cg, LLVMBuildFSub(B, LLVMBuildFAdd(B, bt2, cg_load(cg, abuf, j), ""), mt2, ""));
    cg_store(cg, LLVMBuildFMul(B, s, dcy, "w"), wmat, LLVMBuildAdd(B, LLVMBuildMul(B, t, cg_i64(cg, L), ""), j, ""));
    cg_loop_end(cg, &lj);
    cg_loop_end(cg, &lt);

    /* h_t: the incoming state seen from t, then the piece's own positions */
    CgLoop lt2, ld2, lj2;
    t = cg_loop_begin(cg, &lt2, cg_i64(cg, 0), cnt, "t");
    LLVMValueRef tp = LLVMBuildAdd(B, c0, t, "");
    LLVMValueRef out = ROW(n, tp, hv);
    qrow = ROW(q, tp, hk);
    LLVMValueRef gt = cg_load(cg, gbuf, t);
    axpby(cg, out, NULL, NULL, cg_f32(cg, 0.0), dv); /* out = 0 */
    LLVMBuildStore(B, cg_f32(cg, 0.0), qn);
    LLVMValueRef d = cg_loop_begin(cg, &ld2, cg_i64(cg, 0), cg_i64(cg, dk), "d");
    LLVMValueRef qd = LLVMBuildFMul(B, LLVMBuildFMul(B, cg_load(cg, qrow, d), q_scale, ""), gt, "");
    LLVMBuildStore(B, cg_fma(cg, qd, cg_load(cg, nvec, d), ld(cg, qn)), qn);
    axpby(cg, out, cg_gep(cg, cg->f32, cmat, LLVMBuildMul(B, d, cg_i64(cg, dv), "")), qd, NULL, dv);
    cg_loop_end(cg, &ld2);
    LLVMBuildStore(B, ld(cg, qn), den);
    j = cg_loop_begin(cg, &lj2, cg_i64(cg, 0), LLVMBuildAdd(B, t, cg_i64(cg, 1), ""), "j");
    LLVMValueRef w = cg_load(cg, wmat, LLVMBuildAdd(B, LLVMBuildMul(B, t, cg_i64(cg, L), ""), j, ""));
    LLVMBuildStore(B, LLVMBuildFAdd(B, ld(cg, den), w, ""), den);
    axpby(cg, out, ROW(v, LLVMBuildAdd(B, c0, j, ""), hv), w, NULL, dv);
    cg_loop_end(cg, &lj2);
    LLVMValueRef floor_t = cg_exp(cg, LLVMBuildFNeg(B, cg_load(cg, mbuf, t), ""));
    LLVMValueRef denom = LLVMBuildFAdd(B, cg_max(cg, cg_fabs(cg, ld(cg, den)), floor_t), cg_f32(cg, num->eps), "");
    axpby(cg, out, NULL, NULL, LLVMBuildFDiv(B, cg_f32(cg, 1.0), denom, ""), dv);
    cg_loop_end(cg, &lt2);

    /* the state at the end of the piece */
    LLVMValueRef last = LLVMBuildSub(B, cnt, cg_i64(cg, 1), "");
    LLVMValueRef G = cg_load(cg, bbuf, last);
    LLVMValueRef m_new = LLVMBuildFAdd(B, G, cg_max(cg, m_prev, ld(cg, runmax)), "m_new");
    LLVMValueRef decay = cg_exp(cg, LLVMBuildFSub(B, LLVMBuildFAdd(B, G, m_prev, ""), m_new, ""));
    CgLoop lw, ld3, lj3;
    j = cg_loop_begin(cg, &lw, cg_i64(cg, 0), cnt, "j");
    LLVMValueRef e = cg_exp(cg, LLVMBuildFSub(B, LLVMBuildFAdd(B, G, cg_load(cg, abuf, j), ""), m_new, ""));
    cg_store(cg, LLVMBuildFMul(B, e, k_scale, ""), wk, j);
    cg_loop_end(cg, &lw);
    d = cg_loop_begin(cg, &ld3, cg_i64(cg, 0), cg_i64(cg, dk), "d");
    LLVMValueRef crow = cg_gep(cg, cg->f32, cmat, LLVMBuildMul(B, d, cg_i64(cg, dv), ""));
    axpby(cg, crow, NULL, NULL, decay, dv); /* C row *= decay */
    LLVMBuildStore(B, LLVMBuildFMul(B, cg_load(cg, nvec, d), decay, ""), qn);
    j = cg_loop_begin(cg, &lj3, cg_i64(cg, 0), cnt, "j");
    LLVMValueRef jp = LLVMBuildAdd(B, c0, j, "");
    LLVMValueRef kd = LLVMBuildFMul(B, cg_load(cg, wk, j), cg_load(cg, ROW(k, jp, hk), d), "");
    LLVMBuildStore(B, LLVMBuildFAdd(B, ld(cg, qn), kd, ""), qn);
    axpby(cg, crow, ROW(v, jp, hv), kd, NULL, dv);
    cg_loop_end(cg, &lj3);
    cg_store(cg, ld(cg, qn), nvec, d);
    cg_loop_end(cg, &ld3);
    LLVMBuildStore(B, m_new, mptr);
#undef ROW
    cg_loop_end(cg, &lc);
    cg_loop_end(cg, &li);
}
