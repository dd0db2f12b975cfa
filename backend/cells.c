/* cells.c - the xLSTM recurrent cells, generated per model for its head count and size.
 *
 * Both cells walk the chunk's positions in order inside each sequence and keep their state
 * in the state slot between calls, so a forward costs time linear in the sequence length
 * and memory independent of it (SEMANTICS B.8.2 and B.10). */
#include <math.h>

#include "backend/codegen.h"

/* Loop over this thread's share of the B × heads (sequence, head) pairs. */
static void cell_items_begin(Cg *cg, CgLoop *l, int64_t heads, LLVMValueRef *b, LLVMValueRef *h)
{
    LLVMValueRef lo, hi;
    cg_split(cg, LLVMBuildMul(cg->b, cg->f->batch, cg_i64(cg, heads), ""), &lo, &hi);
    LLVMValueRef item = cg_loop_begin(cg, l, lo, hi, "item");
    *b = LLVMBuildSDiv(cg->b, item, cg_i64(cg, heads), "b");
    *h = LLVMBuildSub(cg->b, item, LLVMBuildMul(cg->b, *b, cg_i64(cg, heads), ""), "h");
}

/* mLSTM, recurrent stabilised form (SEMANTICS B.8.2, D.6), per sequence and head:
 *   ĩ, f̃ ← cap·tanh(ĩ/cap), cap·tanh(f̃/cap)   (only with a gate cap: xLSTM-large)
 *   lf = logσ(f̃);  m_t = max(lf + m, ĩ);  f' = exp(lf + m - m_t);  i' = exp(ĩ - m_t)
 *   C ← f' C + i' k' vᵀ,  n ← f' n + i' k',  k' = k · k_scale,  q' = q · q_scale
 *   h = q'ᵀC / (max(|q'·n|, exp(-m_t)) + eps)
 * The numerics (eps, scales, cap) are the node's attributes (ir.h MlstmNumerics): the classic
 * block scales k by 1/sqrt(DH), xLSTM-large scales q by 1/sqrt(DHqk). State per head:
 * C [DHqk key][DHv value], n [DHqk], m; stored as all C, then all n, then all m.
 *
 * C (DH² floats: 576 KB at DH 384) does not fit in L1, so a pass over it per position is
 * bound by cache bandwidth. The positions are therefore taken MLSTM_STEPS at a time: m and
 * the gates of the block first (they do not depend on C), then n, then one pass over C that
 * carries each C element through all the block's steps in registers while accumulating
 * every step's qᵀC. Each element sees the same operations in the same order as in a
 * one-position block, so a step and a forward give the same bits. */
enum { MLSTM_STEPS = 8 };

typedef struct MlstmBlock {
    int steps;                         /* positions in this block */
    LLVMValueRef q[MLSTM_STEPS], k[MLSTM_STEPS], v[MLSTM_STEPS], out[MLSTM_STEPS]; /* rows */
    LLVMValueRef fgate[MLSTM_STEPS];   /* f' */
    LLVMValueRef kscale[MLSTM_STEPS];  /* i' · k_scale */
    LLVMValueRef denom[MLSTM_STEPS];   /* max(|q·n|, exp(-m)) + eps */
    LLVMValueRef cmat, nvec;
    int64_t dk, dv;                    /* key (q, k) and value head sizes */
    double q_scale;
} MlstmBlock;

/* q'[d] of step p: q · q_scale (no multiply when the scale is 1, so the classic cell keeps
 * its bits). */
static LLVMValueRef mlstm_q(Cg *cg, const MlstmBlock *m, int p, LLVMValueRef d)
{
    LLVMValueRef q = cg_load(cg, m->q[p], d);
    return m->q_scale == 1.0 ? q : LLVMBuildFMul(cg->b, q, cg_f32(cg, m->q_scale), "q'");
}

static LLVMValueRef splat_or_scalar(Cg *cg, LLVMTypeRef vt, LLVMValueRef x)
{
    return LLVMGetTypeKind(vt) == LLVMVectorTypeKind ? cg_vsplat(cg, vt, x) : x;
}

/* Value columns [j0, j0 + width of vt) of C through the block's steps; vt is a vector type
 * or f32 (for the columns a vector does not fill). */
static void mlstm_columns(Cg *cg, const MlstmBlock *m, LLVMTypeRef vt, LLVMValueRef j0)
{
    LLVMBuilderRef B = cg->b;
    LLVMValueRef vs[MLSTM_STEPS], acc[MLSTM_STEPS];
    for (int p = 0; p < m->steps; p++) {
        vs[p] = LLVMBuildFMul(B, cg_vload(cg, vt, m->v[p], j0), splat_or_scalar(cg, vt, m->kscale[p]), "");
        acc[p] = cg_entry_alloca(cg, vt, "qc");
        LLVMBuildStore(B, LLVMConstNull(vt), acc[p]);
    }
    CgLoop ld;
    LLVMValueRef d = cg_loop_begin(cg, &ld, cg_i64(cg, 0), cg_i64(cg, m->dk), "d");
    LLVMValueRef at = LLVMBuildAdd(B, LLVMBuildMul(B, d, cg_i64(cg, m->dv), ""), j0, "");
    LLVMValueRef c = cg_vload(cg, vt, m->cmat, at);
    for (int p = 0; p < m->steps; p++) {
        LLVMValueRef kv = LLVMBuildFMul(B, splat_or_scalar(cg, vt, cg_load(cg, m->k[p], d)), vs[p], "");
        c = cg_fma(cg, splat_or_scalar(cg, vt, m->fgate[p]), c, kv);
        LLVMValueRef qd = splat_or_scalar(cg, vt, mlstm_q(cg, m, p, d));
        LLVMBuildStore(B, cg_fma(cg, qd, c, LLVMBuildLoad2(B, vt, acc[p], "")), acc[p]);
    }
    cg_vstore(cg, c, m->cmat, at);
    cg_loop_end(cg, &ld);
    for (int p = 0; p < m->steps; p++) {
        LLVMValueRef h = LLVMBuildFDiv(B, LLVMBuildLoad2(B, vt, acc[p], ""),
                                       splat_or_scalar(cg, vt, m->denom[p]), "");
        cg_vstore(cg, h, m->out[p], j0);
    }
}

/* A one-position block (a decode step, the end of a chunk): with no steps to share a load
 * of C, C is walked row by row (its memory order, which the prefetchers follow from DRAM)
 * and qᵀC accumulates in the output row. Per element these are the operations of
 * mlstm_columns, in the same order, so the results are the same bits. */
static void mlstm_rows(Cg *cg, const MlstmBlock *m)
{
    LLVMBuilderRef B = cg->b;
    int vw = cg->vector_width;
    int64_t full = m->dv / vw * vw;
    LLVMTypeRef vt = cg_vec_type(cg);
    CgLoop lz, ld, lj, lj1, lo, lo1;
    LLVMValueRef j = cg_loop_begin(cg, &lz, cg_i64(cg, 0), cg_i64(cg, m->dv), "j");
    cg_store(cg, cg_f32(cg, 0.0), m->out[0], j);
    cg_loop_end(cg, &lz);
    LLVMValueRef d = cg_loop_begin(cg, &ld, cg_i64(cg, 0), cg_i64(cg, m->dk), "d");
    LLVMValueRef crow = cg_gep(cg, cg->f32, m->cmat, LLVMBuildMul(B, d, cg_i64(cg, m->dv), ""));
    LLVMValueRef kd = cg_load(cg, m->k[0], d), qd = mlstm_q(cg, m, 0, d);
    for (int pass = 0; pass < 2; pass++) { /* vectors of columns, then the rest one by one */
        LLVMTypeRef t = pass == 0 ? vt : cg->f32;
        if (pass == 0 ? full == 0 : full == m->dv) continue;
        LLVMValueRef jj = pass == 0 ? cg_loop_begin_step(cg, &lj, cg_i64(cg, 0), cg_i64(cg, full), vw, "j")
                                    : cg_loop_begin(cg, &lj1, cg_i64(cg, full), cg_i64(cg, m->dv), "j1");
        LLVMValueRef vs = LLVMBuildFMul(B, cg_vload(cg, t, m->v[0], jj), splat_or_scalar(cg, t, m->kscale[0]), "");
        LLVMValueRef kv = LLVMBuildFMul(B, splat_or_scalar(cg, t, kd), vs, "");
        LLVMValueRef c = cg_fma(cg, splat_or_scalar(cg, t, m->fgate[0]), cg_vload(cg, t, crow, jj), kv);
        cg_vstore(cg, c, crow, jj);
        cg_vstore(cg, cg_fma(cg, splat_or_scalar(cg, t, qd), c, cg_vload(cg, t, m->out[0], jj)), m->out[0], jj);
        cg_loop_end(cg, pass == 0 ? &lj : &lj1);
    }
    cg_loop_end(cg, &ld);
    for (int pass = 0; pass < 2; pass++) {
        LLVMTypeRef t = pass == 0 ? vt : cg->f32;
        if (pass == 0 ? full == 0 : full == m->dv) continue;
        LLVMValueRef jj = pass == 0 ? cg_loop_begin_step(cg, &lo, cg_i64(cg, 0), cg_i64(cg, full), vw, "j")
                                    : cg_loop_begin(cg, &lo1, cg_i64(cg, full), cg_i64(cg, m->dv), "j1");
        LLVMValueRef h = LLVMBuildFDiv(B, cg_vload(cg, t, m->out[0], jj), splat_or_scalar(cg, t, m->denom[0]), "");
        cg_vstore(cg, h, m->out[0], jj);
        cg_loop_end(cg, pass == 0 ? &lo : &lo1);
    }
}

/* Positions [t0, t0 + steps) of sequence b, head h. */
/* A gate pre-activation as the cell sees it: capped when the node says so. */
LLVMValueRef cg_mlstm_gate(Cg *cg, const MlstmNumerics *num, LLVMValueRef x)
{
    if (!(num->gate_cap > 0)) return x;
    LLVMValueRef cap = cg_f32(cg, num->gate_cap);
    return LLVMBuildFMul(cg->b, cap, cg_tanh(cg, LLVMBuildFDiv(cg->b, x, cap, "")), "capped");
}

static void mlstm_block(Cg *cg, const Node *n, MlstmBlock *m, LLVMValueRef b, LLVMValueRef h,
                        LLVMValueRef hk, LLVMValueRef hv, LLVMValueRef mptr, LLVMValueRef t0)
{
    LLVMBuilderRef B = cg->b;
    const Node *q = n->src[0], *k = n->src[1], *v = n->src[2], *ig = n->src[3], *fg = n->src[4];
    const MlstmNumerics *num = &n->attr.rec.mlstm;
    LLVMValueRef mval = LLVMBuildLoad2(B, cg->f32, mptr, "m_prev");
    LLVMValueRef floor[MLSTM_STEPS], qn[MLSTM_STEPS];
    LLVMValueRef q0 = cg_gep(cg, cg->f32, cg_row(cg, q, b, t0), hk), k0 = cg_gep(cg, cg->f32, cg_row(cg, k, b, t0), hk);
    LLVMValueRef v0 = cg_gep(cg, cg->f32, cg_row(cg, v, b, t0), hv), o0 = cg_gep(cg, cg->f32, cg_row(cg, n, b, t0), hv);
    LLVMValueRef i0 = cg_row(cg, ig, b, t0), f0 = cg_row(cg, fg, b, t0);
    for (int p = 0; p < m->steps; p++) {
        m->q[p] = cg_row_later(cg, q, q0, p);
        m->k[p] = cg_row_later(cg, k, k0, p);
        m->v[p] = cg_row_later(cg, v, v0, p);
        m->out[p] = cg_row_later(cg, n, o0, p);
        LLVMValueRef i_pre = cg_mlstm_gate(cg, num, cg_load(cg, cg_row_later(cg, ig, i0, p), h));
        LLVMValueRef f_pre = cg_mlstm_gate(cg, num, cg_load(cg, cg_row_later(cg, fg, f0, p), h));
        LLVMValueRef lf_m = LLVMBuildFAdd(B, cg_logsigmoid(cg, f_pre), mval, "");
        LLVMValueRef m_new = cg_max(cg, lf_m, i_pre);
        m->fgate[p] = cg_exp(cg, LLVMBuildFSub(B, lf_m, m_new, ""));
        m->kscale[p] = cg_exp(cg, LLVMBuildFSub(B, i_pre, m_new, ""));
        if (num->k_scale != 1.0)
            m->kscale[p] = LLVMBuildFMul(B, m->kscale[p], cg_f32(cg, num->k_scale), "");
        floor[p] = cg_exp(cg, LLVMBuildFNeg(B, m_new, ""));
        qn[p] = cg_var(cg, "qn");
        LLVMBuildStore(B, cg_f32(cg, 0.0), qn[p]);
        mval = m_new;
    }
    LLVMBuildStore(B, mval, mptr);

    /* n through the block's steps, and each step's q·n */
    CgLoop ld;
    LLVMValueRef d = cg_loop_begin(cg, &ld, cg_i64(cg, 0), cg_i64(cg, m->dk), "d");
    LLVMValueRef nd = cg_load(cg, m->nvec, d);
    for (int p = 0; p < m->steps; p++) {
        nd = cg_fma(cg, m->fgate[p], nd, LLVMBuildFMul(B, m->kscale[p], cg_load(cg, m->k[p], d), ""));
        LLVMBuildStore(B, cg_fma(cg, mlstm_q(cg, m, p, d), nd, LLVMBuildLoad2(B, cg->f32, qn[p], "")), qn[p]);
    }
    cg_store(cg, nd, m->nvec, d);
    cg_loop_end(cg, &ld);
    for (int p = 0; p < m->steps; p++)
        m->denom[p] = LLVMBuildFAdd(B, cg_max(cg, cg_fabs(cg, LLVMBuildLoad2(B, cg->f32, qn[p], "")), floor[p]),
                                    cg_f32(cg, num->eps), "denom");

    if (m->steps == 1) {
        mlstm_rows(cg, m);
        return;
    }
    /* C, a vector of value columns at a time, then the columns left over */
    int vw = cg->vector_width;
    int64_t full = m->dv / vw * vw;
    if (full > 0) {
        CgLoop lj;
        LLVMValueRef j0 = cg_loop_begin_step(cg, &lj, cg_i64(cg, 0), cg_i64(cg, full), vw, "j");
        mlstm_columns(cg, m, cg_vec_type(cg), j0);
        cg_loop_end(cg, &lj);
    }
    if (full < m->dv) {
        CgLoop lj;
        LLVMValueRef j = cg_loop_begin(cg, &lj, cg_i64(cg, full), cg_i64(cg, m->dv), "j1");
        mlstm_columns(cg, m, cg->f32, j);
        cg_loop_end(cg, &lj);
    }
}

void cg_emit_mlstm_cell(Cg *cg, const Node *n)
{
    /* A forward kernel (T not the constant 1 of a step) may take the chunkwise form. */
    if (n->attr.rec.mlstm.chunk > 1 && !LLVMIsConstant(cg->f->len)) {
        cg_emit_mlstm_chunkwise(cg, n);
        return;
    }
    int64_t heads = n->attr.rec.heads, qk = ir_type_cols(&n->src[0]->type);
    int64_t dk = qk / heads, dv = ir_type_cols(&n->type) / heads;
    LLVMBuilderRef B = cg->b;

    /* Threads split the (sequence, head) pairs; each pair runs through the chunk alone. */
    CgLoop li, lt, lt1;
    LLVMValueRef b, h;
    cell_items_begin(cg, &li, heads, &b, &h);
    LLVMValueRef st = cg_state(cg, n->attr.rec.state, b);
    LLVMValueRef hk = LLVMBuildMul(B, h, cg_i64(cg, dk), "");
    LLVMValueRef hv = LLVMBuildMul(B, h, cg_i64(cg, dv), "");
    MlstmBlock m = {.dk = dk, .dv = dv, .q_scale = n->attr.rec.mlstm.q_scale};
    m.cmat = cg_gep(cg, cg->f32, st, LLVMBuildMul(B, h, cg_i64(cg, dk * dv), ""));
    m.nvec = cg_gep(cg, cg->f32, st, LLVMBuildAdd(B, cg_i64(cg, heads * dk * dv), hk, ""));
    LLVMValueRef mptr = cg_gep(cg, cg->f32, st, LLVMBuildAdd(B, cg_i64(cg, heads * dk * dv + qk), h, ""));

    LLVMValueRef blocks_end = LLVMBuildMul(B, LLVMBuildSDiv(B, cg->f->len, cg_i64(cg, MLSTM_STEPS), ""),
                                           cg_i64(cg, MLSTM_STEPS), "");
    LLVMValueRef t0 = cg_loop_begin_step(cg, &lt, cg_i64(cg, 0), blocks_end, MLSTM_STEPS, "t");
    m.steps = MLSTM_STEPS;
    mlstm_block(cg, n, &m, b, h, hk, hv, mptr, t0);
    cg_loop_end(cg, &lt);
    t0 = cg_loop_begin(cg, &lt1, blocks_end, cg->f->len, "t1");
    m.steps = 1;
    mlstm_block(cg, n, &m, b, h, hk, hv, mptr, t0);
    cg_loop_end(cg, &lt1);
    cg_loop_end(cg, &li);
}

/* R_ext[h, d, g, j] (SEMANTICS B.10) at [h][g·DH + j][d], the layout the kernel reads;
 * runtime/bind.c rearranges a CUDA-layout checkpoint, [h][d][g·DH + j], into it at open. */
static LLVMValueRef r_index(Cg *cg, int64_t dh, LLVMValueRef h, LLVMValueRef d, LLVMValueRef gj)
{
    LLVMBuilderRef B = cg->b;
    LLVMValueRef head = LLVMBuildMul(B, h, cg_i64(cg, 4 * dh * dh), "");
    return LLVMBuildAdd(B, head, LLVMBuildAdd(B, LLVMBuildMul(B, gj, cg_i64(cg, dh), ""), d, ""), "");
}

/* Index of the bias b[g, h, j], gate-major [4][NH][DH]. */
static LLVMValueRef bias_index(Cg *cg, int64_t e, int64_t dh, LLVMValueRef h, int g, LLVMValueRef j)
{
    LLVMBuilderRef B = cg->b;
    LLVMValueRef base = LLVMBuildAdd(B, cg_i64(cg, g * e), LLVMBuildMul(B, h, cg_i64(cg, dh), ""), "");
    return LLVMBuildAdd(B, base, j, "");
}

/* sLSTM cell (SEMANTICS B.10), per sequence, position and head:
 *   raw_g = Wx_g + Σ_d y_{t-1}[d] R[h, d, g, :] + b_g           g ∈ (i, f, z, o)
 *   logfm = m + logσ(raw_f);  m_t = max(raw_i, logfm), but raw_i on a first step (n == 0)
 *   when the op says so (attr.rec.m_from_input, upstream's rule)
 *   i = min(exp(raw_i - m_t), 1);  f = min(exp(logfm - m_t), 1);  o = σ(raw_o);  z = tanh(raw_z)
 *   c ← f c + i z;  n ← f n + i;  y = o c / n
 * State (y, c, n, m), each [E]. Each head reads only its own previous y, so a head's y is
 * overwritten as soon as its gates are computed. */
void cg_emit_slstm_cell(Cg *cg, const Node *n)
{
    int64_t e = ir_type_cols(&n->type), heads = n->attr.rec.heads, dh = e / heads;
    const Node *rw = n->src[4]; /* R: f32, or the build's narrow type (wload.c widens it) */
    LLVMValueRef bw = cg_weight(cg, n->src[5]);
    LLVMBuilderRef B = cg->b;

    /* Heads are independent (R is block-diagonal), so threads split the (sequence, head)
     * pairs and each pair runs through the chunk's positions alone. */
    CgLoop li, lt, lj, ld, lc;
    LLVMValueRef b, h;
    cell_items_begin(cg, &li, heads, &b, &h);
    LLVMValueRef st = cg_state(cg, n->attr.rec.state, b);
    LLVMValueRef ys = st, cs = cg_gep(cg, cg->f32, st, cg_i64(cg, e));
    LLVMValueRef ns = cg_gep(cg, cg->f32, st, cg_i64(cg, 2 * e));
    LLVMValueRef ms = cg_gep(cg, cg->f32, st, cg_i64(cg, 3 * e));
    LLVMValueRef hd = LLVMBuildMul(B, h, cg_i64(cg, dh), "");
    LLVMValueRef yh = cg_gep(cg, cg->f32, ys, hd);
    LLVMValueRef t = cg_loop_begin(cg, &lt, cg_i64(cg, 0), cg->f->len, "t");
    LLVMValueRef out = cg_row(cg, n, b, t);

    /* Unit j of the head: its four gate pre-activations from the input side, the bias and
     * the head's block of R applied to y_{t-1}; then the pointwise update. The new y goes to
     * the output row first, since the other units still read the old one. */
    LLVMValueRef j = cg_loop_begin(cg, &lj, cg_i64(cg, 0), cg_i64(cg, dh), "j");
    LLVMValueRef idx = cg_iadd(cg, hd, j);
    LLVMValueRef raw[4];
    for (int g = 0; g < 4; g++) {
        LLVMValueRef wx = cg_load(cg, cg_row(cg, n->src[g], b, t), idx);
        LLVMValueRef bv = cg_load(cg, bw, bias_index(cg, e, dh, h, g, j));
        LLVMValueRef gj = cg_iadd(cg, cg_i64(cg, g * dh), j);
        LLVMValueRef acc = cg_var(cg, "ry");
        LLVMBuildStore(B, cg_f32(cg, 0.0), acc);
        LLVMValueRef d = cg_loop_begin(cg, &ld, cg_i64(cg, 0), cg_i64(cg, dh), "d");
        LLVMValueRef prod = cg_fmul_reduce(cg, cg_load(cg, yh, d), cg_wload(cg, rw, r_index(cg, dh, h, d, gj)));
        LLVMBuildStore(B, cg_fadd_reduce(cg, LLVMBuildLoad2(B, cg->f32, acc, ""), prod), acc);
        cg_loop_end(cg, &ld);
        raw[g] = cg_fadd(cg, cg_fadd(cg, wx, bv), LLVMBuildLoad2(B, cg->f32, acc, ""));
    }
    LLVMValueRef ri = raw[0], rf = raw[1], rz = raw[2], ro = raw[3];
    LLVMValueRef m_prev = cg_load(cg, ms, idx), n_prev = cg_load(cg, ns, idx);
    LLVMValueRef c_prev = cg_load(cg, cs, idx);
    LLVMValueRef logfm = cg_fadd(cg, m_prev, cg_logsigmoid(cg, rf));
    LLVMValueRef m_new = cg_max(cg, ri, logfm);
    if (n->attr.rec.m_from_input) {
        LLVMValueRef first = LLVMBuildFCmp(B, LLVMRealOEQ, n_prev, cg_f32(cg, 0.0), "first");
        m_new = LLVMBuildSelect(B, first, ri, m_new, "m");
    }
    LLVMValueRef one = cg_f32(cg, 1.0);
    LLVMValueRef ig = cg_min(cg, cg_exp(cg, cg_fsub(cg, ri, m_new)), one);
    LLVMValueRef fg = cg_min(cg, cg_exp(cg, cg_fsub(cg, logfm, m_new)), one);
    LLVMValueRef og = cg_sigmoid(cg, ro);
    LLVMValueRef zg = cg_tanh(cg, rz);
    LLVMValueRef c_new = cg_fadd(cg, cg_fmul(cg, fg, c_prev), cg_fmul(cg, ig, zg)); /* c ← f c + i z */
    LLVMValueRef n_new = cg_fadd(cg, cg_fmul(cg, fg, n_prev), ig);                  /* n ← f n + i */
    LLVMValueRef y = cg_fdiv(cg, cg_fmul(cg, og, c_new), n_new);                     /* y = o c / n */
    cg_store(cg, c_new, cs, idx);
    cg_store(cg, n_new, ns, idx);
    cg_store(cg, m_new, ms, idx);
    cg_store(cg, y, out, idx);
    cg_loop_end(cg, &lj);

    /* the head's new y becomes the state */
    LLVMValueRef jc = cg_loop_begin(cg, &lc, cg_i64(cg, 0), cg_i64(cg, dh), "j");
    LLVMValueRef at = cg_iadd(cg, hd, jc);
    cg_store(cg, cg_load(cg, out, at), ys, at);
    cg_loop_end(cg, &lc);

    cg_loop_end(cg, &lt);
    cg_loop_end(cg, &li);
}
