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
 * and the work inside a piece is four register-tiled matrix products (tile.c): W = Q Kᵀ
 * [L x L] over DHqk (lower triangle), W·V [L x DHv], Q·C [L x DHqk]x[DHqk x DHv] and the
 * update Kᵀ (w ⊙ V). Scratch is O(L²), independent of the call's length; each (sequence,
 * head) is one thread's, so the result does not depend on the thread count. The numerics
 * (q/k scales, gate cap, eps) are the node's attributes, as in the recurrent form. */
#include <math.h>

#include "backend/tile.h"

/* Loop over this thread's share of the B × heads (sequence, head) pairs. */
static void items_begin(Cg *cg, CgLoop *l, int64_t heads, LLVMValueRef *b, LLVMValueRef *h)
{
    LLVMValueRef lo, hi;
    cg_split(cg, LLVMBuildMul(cg->b, cg->f->batch, cg_i64(cg, heads), ""), &lo, &hi);
    LLVMValueRef item = cg_loop_begin(cg, l, lo, hi, "item");
    *b = LLVMBuildSDiv(cg->b, item, cg_i64(cg, heads), "b");
    *h = LLVMBuildSub(cg->b, item, LLVMBuildMul(cg->b, *b, cg_i64(cg, heads), ""), "h");
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
    LLVMValueRef inter = farray(cg, L, "inter"), norm = farray(cg, L, "norm"), wk = farray(cg, L, "wk");
    LLVMValueRef inter_norm = farray(cg, L, "inter_norm");
    /* W's rows padded to whole vectors: its product with Kᵀ writes up to there */
    int64_t lw_pad = (L + cg->vector_width - 1) / cg->vector_width * cg->vector_width;
    LLVMValueRef wmat = farray(cg, L * lw_pad, "W");
    LLVMValueRef den = cg_var(cg, "den"), runmax = cg_var(cg, "runmax");
    LLVMValueRef lq = cg_i64(cg, q->store.row_stride), lk = cg_i64(cg, k->store.row_stride), lv = cg_i64(cg, v->store.row_stride);
    LLVMValueRef lo = cg_i64(cg, n->store.row_stride), lW = cg_i64(cg, lw_pad), one = cg_i64(cg, 1);
    LLVMValueRef cdk = cg_i64(cg, dk), cdv = cg_i64(cg, dv), lL = cg_i64(cg, L);

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
    LLVMValueRef cnt = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, rest, lL, ""), rest, lL, "n");
    LLVMValueRef m_prev = LLVMBuildLoad2(B, cg->f32, mptr, "m_prev");
    LLVMValueRef q0 = ROW(q, c0, hk), k0 = ROW(k, c0, hk), v0 = ROW(v, c0, hv), out0 = ROW(n, c0, hv);

    /* gates: b_t, a_t, m_t, and the incoming state's weight g_t q_scale */
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
    LLVMValueRef gt = cg_exp(cg, LLVMBuildFSub(B, LLVMBuildFAdd(B, bt, m_prev, ""), mt, ""));
    cg_store(cg, LLVMBuildFMul(B, gt, q_scale, ""), inter, t);
    cg_loop_end(cg, &lg);

    /* W = Q Kᵀ (a tiled product), then W[t, j] *= q_scale k_scale exp(b_t + a_j - m_t) for
     * j ≤ t, 0 above the diagonal; the normaliser of row t from W's row sum */
    cg_emit_tile_product(cg, &(TileProduct){.a = {q0, lq, one}, .b = {k0, lk, one}, .c = {wmat, lW, one},
                                            .m = cnt, .n = cnt, .k = cdk, .n_max = L, .k_max = dk,
                                            .b_transposed = true, .lower_c = true, .pad_n = true});
    CgLoop lt, lj, lz;
    t = cg_loop_begin(cg, &lt, cg_i64(cg, 0), cnt, "t");
    LLVMValueRef bt2 = cg_load(cg, bbuf, t), mt2 = cg_load(cg, mbuf, t);
    LLVMValueRef wrow = cg_gep(cg, cg->f32, wmat, LLVMBuildMul(B, t, lW, ""));
    LLVMValueRef tp1 = LLVMBuildAdd(B, t, cg_i64(cg, 1), "");
    LLVMBuildStore(B, cg_f32(cg, 0.0), den);
    LLVMValueRef j = cg_loop_begin(cg, &lj, cg_i64(cg, 0), tp1, "j");
    LLVMValueRef dcy = cg_exp(cg, LLVMBuildFSub(B, LLVMBuildFAdd(B, bt2, cg_load(cg, abuf, j), ""), mt2, ""));
    LLVMValueRef w = LLVMBuildFMul(B, LLVMBuildFMul(B, cg_load(cg, wrow, j), qk_scale, ""), dcy, "w");
    cg_store(cg, w, wrow, j);
    LLVMBuildStore(B, cg_fadd_reduce(cg, ld(cg, den), w), den);
    cg_loop_end(cg, &lj);
    j = cg_loop_begin(cg, &lz, tp1, cnt, "jz");
    cg_store(cg, cg_f32(cg, 0.0), wrow, j);
    cg_loop_end(cg, &lz);
    LLVMValueRef qrow = cg_gep(cg, cg->f32, q0, LLVMBuildMul(B, t, lq, ""));
    LLVMValueRef dn = LLVMBuildFAdd(B, LLVMBuildFMul(B, cg_load(cg, inter, t), cg_dot(cg, qrow, nvec, dk), ""),
                                    ld(cg, den), "");
    LLVMValueRef floor_t = cg_exp(cg, LLVMBuildFNeg(B, mt2, ""));
    LLVMValueRef denom = LLVMBuildFAdd(B, cg_max(cg, cg_fabs(cg, dn), floor_t), cg_f32(cg, num->eps), "");
    LLVMValueRef nt = LLVMBuildFDiv(B, cg_f32(cg, 1.0), denom, "");
    cg_store(cg, nt, norm, t);
    cg_store(cg, LLVMBuildFMul(B, cg_load(cg, inter, t), nt, ""), inter_norm, t);
    cg_loop_end(cg, &lt);

    /* h = norm ⊙ (W V) + (inter ⊙ norm) ⊙ (Q C_prev): two tiled products into the output rows */
    cg_emit_tile_product(cg, &(TileProduct){.a = {wmat, lW, one}, .b = {v0, lv, one}, .c = {out0, lo, one},
                                            .m = cnt, .n = cdv, .k = cnt, .n_max = dv, .k_max = L,
                                            .lower_a = true, .row_scale = norm});
    cg_emit_tile_product(cg, &(TileProduct){.a = {q0, lq, one}, .b = {cmat, cdv, one}, .c = {out0, lo, one},
                                            .m = cnt, .n = cdv, .k = cdk, .n_max = dv, .k_max = dk,
                                            .accumulate = true, .row_scale = inter_norm});

    /* the state at the end of the piece (G = b_{L-1}), with w_j = exp(G + a_j - m') k_scale:
     * n' = decay n + Σ_j w_j k_j and C' = decay C + Kᵀ (w ⊙ V) */
    LLVMValueRef last = LLVMBuildSub(B, cnt, cg_i64(cg, 1), "");
    LLVMValueRef G = cg_load(cg, bbuf, last);
    LLVMValueRef m_new = LLVMBuildFAdd(B, G, cg_max(cg, m_prev, ld(cg, runmax)), "m_new");
    LLVMValueRef decay = cg_exp(cg, LLVMBuildFSub(B, LLVMBuildFAdd(B, G, m_prev, ""), m_new, ""));
    CgLoop lw, ld3, lj3, ld4;
    j = cg_loop_begin(cg, &lw, cg_i64(cg, 0), cnt, "j");
    LLVMValueRef e = cg_exp(cg, LLVMBuildFSub(B, LLVMBuildFAdd(B, G, cg_load(cg, abuf, j), ""), m_new, ""));
    cg_store(cg, LLVMBuildFMul(B, e, k_scale, ""), wk, j);
    cg_loop_end(cg, &lw);
    LLVMValueRef d = cg_loop_begin(cg, &ld3, cg_i64(cg, 0), cdk, "d");
    cg_store(cg, LLVMBuildFMul(B, cg_load(cg, nvec, d), decay, ""), nvec, d);
    cg_loop_end(cg, &ld3);
    j = cg_loop_begin(cg, &lj3, cg_i64(cg, 0), cnt, "j");
    LLVMValueRef wj = cg_load(cg, wk, j), krow = cg_gep(cg, cg->f32, k0, LLVMBuildMul(B, j, lk, ""));
    d = cg_loop_begin(cg, &ld4, cg_i64(cg, 0), cdk, "d");
    cg_store(cg, cg_fma(cg, wj, cg_load(cg, krow, d), cg_load(cg, nvec, d)), nvec, d);
    cg_loop_end(cg, &ld4);
    cg_loop_end(cg, &lj3);
    cg_emit_tile_product(cg, &(TileProduct){.a = {k0, one, lk}, .b = {v0, lv, one}, .c = {cmat, cdv, one},
                                            .m = cdk, .n = cdv, .k = cnt, .n_max = dv, .k_max = L,
                                            .accumulate = true, .c_scale = decay, .k_scale = wk});
    LLVMBuildStore(B, m_new, mptr);
#undef ROW
    cg_loop_end(cg, &lc);
    cg_loop_end(cg, &li);
}
