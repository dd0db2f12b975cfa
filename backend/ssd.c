/* ssd.c - the Mamba-2 SSD scan (OP_SSD_SCAN) in its two forms.
 *
 * Per sequence b and head h (SEMANTICS-mamba2.md C.4 step 6), with g = h / (H/G) the head's
 * B/C group and the state h_t [P][N] in the state slot (upstream's ssm_state layout):
 *   Δ_t = clamp(softplus(dt_t + dt_bias), dt_min, dt_max),  A = -exp(A_log)
 *   h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t ⊗ B_t,   y_t = h_t C_t + D x_t
 * The recurrent form runs exactly this, token by token (the step kernel, and every kernel
 * when the ssd-chunked pass is off). The chunked form (C.7) cuts the call's T tokens into
 * blocks of Q: inside a block the output is the masked, decayed product
 *   y_i = Σ_{j≤i} (C_i·B_j) exp(s_i - s_j) Δ_j x_j + exp(s_i) C_i h_prev + D x_i
 * with s the block-local running sum of Δ A, and only the state passes between blocks:
 *   h = exp(s_last) h_prev + Σ_j exp(s_last - s_j) Δ_j x_j ⊗ B_j.
 * Both forms leave the same state, so calls and forms mix freely. Exponents are differences
 * of a block-local sum, never a sum over the sequence (C.8).
 *
 * Work is split by (sequence, head) pairs; each pair is one thread's, in a fixed order, so
 * results do not depend on the thread count. */
#include <math.h>

#include "backend/codegen.h"

typedef struct Ssd {
    const Node *n, *x, *dt, *bm, *cm;
    LLVMValueRef dt_bias, a_log, dskip;
    int64_t heads, groups, hd, ns; /* H, G, P, N */
    bool d_per_channel;
    LLVMValueRef b, h;             /* this pair's sequence and head */
    LLVMValueRef state;            /* h [P][N] of this pair */
    LLVMValueRef a;                /* -exp(A_log[h]) */
} Ssd;

static LLVMValueRef mul(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildMul(cg->b, a, b, ""); }
static LLVMValueRef add(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(cg->b, a, b, ""); }
static LLVMValueRef fmulv(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(cg->b, a, b, ""); }

/* Δ of token t for this pair's head. */
static LLVMValueRef ssd_delta(Cg *cg, const Ssd *s, LLVMValueRef t)
{
    LLVMValueRef raw = cg_load(cg, cg_row(cg, s->dt, s->b, t), s->h);
    LLVMValueRef d = cg_softplus(cg, LLVMBuildFAdd(cg->b, raw, cg_load(cg, s->dt_bias, s->h), ""));
    if (s->n->attr.rec.dt_min > 0) d = cg_max(cg, d, cg_f32(cg, s->n->attr.rec.dt_min));
    if (isfinite(s->n->attr.rec.dt_max)) d = cg_min(cg, d, cg_f32(cg, s->n->attr.rec.dt_max));
    return d;
}

/* Pointers to this pair's channels of x (or y) and its group's B or C in row (b, t). */
static LLVMValueRef head_row(Cg *cg, const Ssd *s, const Node *v, LLVMValueRef t)
{
    return cg_gep(cg, cg->f32, cg_row(cg, v, s->b, t), mul(cg, s->h, cg_i64(cg, s->hd)));
}

static LLVMValueRef group_row(Cg *cg, const Ssd *s, const Node *v, LLVMValueRef t)
{
    LLVMValueRef g = LLVMBuildSDiv(cg->b, s->h, cg_i64(cg, s->heads / s->groups), "g");
    return cg_gep(cg, cg->f32, cg_row(cg, v, s->b, t), mul(cg, g, cg_i64(cg, s->ns)));
}

/* D for channel p of this pair's head. */
static LLVMValueRef ssd_d(Cg *cg, const Ssd *s, LLVMValueRef p)
{
    if (!s->d_per_channel) return cg_load(cg, s->dskip, s->h);
    return cg_load(cg, s->dskip, add(cg, mul(cg, s->h, cg_i64(cg, s->hd)), p));
}


/* dst[k] += coef * src[k] over n floats. */
static void ssd_axpy(Cg *cg, LLVMValueRef dst, LLVMValueRef coef, LLVMValueRef src, int64_t n)
{
    CgLoop l;
    LLVMValueRef k = cg_loop_begin(cg, &l, cg_i64(cg, 0), cg_i64(cg, n), "k");
    cg_store(cg, cg_fma(cg, coef, cg_load(cg, src, k), cg_load(cg, dst, k)), dst, k);
    cg_loop_end(cg, &l);
}

/* Token by token: h ← exp(ΔA) h + Δ x ⊗ B; y = h C + D x. */
static void ssd_recurrent(Cg *cg, const Ssd *s)
{
    LLVMBuilderRef B = cg->b;
    CgLoop lt, lp, ln;
    LLVMValueRef t = cg_loop_begin(cg, &lt, cg_i64(cg, 0), cg->f->len, "t");
    LLVMValueRef delta = ssd_delta(cg, s, t);
    LLVMValueRef decay = cg_exp(cg, fmulv(cg, delta, s->a));
    LLVMValueRef xr = head_row(cg, s, s->x, t), yr = head_row(cg, s, s->n, t);
    LLVMValueRef br = group_row(cg, s, s->bm, t), cr = group_row(cg, s, s->cm, t);
    LLVMValueRef p = cg_loop_begin(cg, &lp, cg_i64(cg, 0), cg_i64(cg, s->hd), "p");
    LLVMValueRef xp = cg_load(cg, xr, p);
    LLVMValueRef coef = fmulv(cg, delta, xp);
    LLVMValueRef hrow = cg_gep(cg, cg->f32, s->state, mul(cg, p, cg_i64(cg, s->ns)));
    LLVMValueRef acc = cg_var(cg, "yacc");
    LLVMBuildStore(B, cg_f32(cg, 0.0), acc);
    LLVMValueRef n = cg_loop_begin(cg, &ln, cg_i64(cg, 0), cg_i64(cg, s->ns), "n");
    LLVMValueRef hv = cg_fma(cg, decay, cg_load(cg, hrow, n), fmulv(cg, coef, cg_load(cg, br, n)));
    cg_store(cg, hv, hrow, n);
    LLVMValueRef prod = cg_fmul_reduce(cg, hv, cg_load(cg, cr, n));
    LLVMBuildStore(B, cg_fadd_reduce(cg, LLVMBuildLoad2(B, cg->f32, acc, ""), prod), acc);
    cg_loop_end(cg, &ln);
    LLVMValueRef y = cg_fma(cg, ssd_d(cg, s, p), xp, LLVMBuildLoad2(B, cg->f32, acc, ""));
    cg_store(cg, y, yr, p);
    cg_loop_end(cg, &lp);
    cg_loop_end(cg, &lt);
}

/* Blocks of Q tokens; the block's Δ, running sums s and decayed products L[i][j] live in
 * entry-block arrays (Q is at most SSD_CHUNK_MAX, so at most 16 KiB of stack). */
static void ssd_chunked(Cg *cg, const Ssd *s, int64_t q_max)
{
    LLVMBuilderRef B = cg->b;
    LLVMValueRef dl = cg_entry_alloca(cg, LLVMArrayType2(cg->f32, (uint64_t)q_max), "delta");
    LLVMValueRef cs = cg_entry_alloca(cg, LLVMArrayType2(cg->f32, (uint64_t)q_max), "cumsum");
    LLVMValueRef ws = cg_entry_alloca(cg, LLVMArrayType2(cg->f32, (uint64_t)q_max), "w");
    LLVMValueRef es = cg_entry_alloca(cg, LLVMArrayType2(cg->f32, (uint64_t)q_max), "exp_s");
    LLVMValueRef lm = cg_entry_alloca(cg, LLVMArrayType2(cg->f32, (uint64_t)(q_max * q_max)), "L");
    LLVMValueRef run = cg_var(cg, "run");
    LLVMValueRef qm = cg_i64(cg, q_max);

    CgLoop lc;
    LLVMValueRef t0 = cg_loop_begin_step(cg, &lc, cg_i64(cg, 0), cg->f->len, q_max, "t0");
    LLVMValueRef left = LLVMBuildSub(B, cg->f->len, t0, "");
    LLVMValueRef q = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, left, qm, ""), left, qm, "q");

    /* 1. Δ_i and s_i = Σ_{r≤i} Δ_r A */
    CgLoop li;
    LLVMBuildStore(B, cg_f32(cg, 0.0), run);
    LLVMValueRef i = cg_loop_begin(cg, &li, cg_i64(cg, 0), q, "i");
    LLVMValueRef delta = ssd_delta(cg, s, add(cg, t0, i));
    cg_store(cg, delta, dl, i);
    LLVMValueRef sum = LLVMBuildFAdd(B, LLVMBuildLoad2(B, cg->f32, run, ""), fmulv(cg, delta, s->a), "");
    LLVMBuildStore(B, sum, run);
    cg_store(cg, sum, cs, i);
    cg_store(cg, cg_exp(cg, sum), es, i);
    cg_loop_end(cg, &li);

    /* 2. L[i][j] = (C_i · B_j) exp(s_i - s_j) Δ_j for j ≤ i */
    CgLoop li2, lj2;
    i = cg_loop_begin(cg, &li2, cg_i64(cg, 0), q, "i");
    LLVMValueRef si = cg_load(cg, cs, i), ci = group_row(cg, s, s->cm, add(cg, t0, i));
    LLVMValueRef lrow = cg_gep(cg, cg->f32, lm, mul(cg, i, qm));
    LLVMValueRef j = cg_loop_begin(cg, &lj2, cg_i64(cg, 0), add(cg, i, cg_i64(cg, 1)), "j");
    LLVMValueRef cb = cg_dot(cg, ci, group_row(cg, s, s->bm, add(cg, t0, j)), s->ns);
    LLVMValueRef w = cg_exp(cg, LLVMBuildFSub(B, si, cg_load(cg, cs, j), ""));
    cg_store(cg, fmulv(cg, fmulv(cg, cb, w), cg_load(cg, dl, j)), lrow, j);
    cg_loop_end(cg, &lj2);
    cg_loop_end(cg, &li2);

    /* 3. y_i = exp(s_i) (h_prev C_i) + D x_i, one state row p at a time (it stays in
     *    cache across the block's tokens), then y_i += Σ_{j≤i} L[i][j] x_j */
    CgLoop lp3, li3, li4, lj4;
    LLVMValueRef p = cg_loop_begin(cg, &lp3, cg_i64(cg, 0), cg_i64(cg, s->hd), "p");
    LLVMValueRef hrow = cg_gep(cg, cg->f32, s->state, mul(cg, p, cg_i64(cg, s->ns)));
    LLVMValueRef dp = ssd_d(cg, s, p);
    i = cg_loop_begin(cg, &li3, cg_i64(cg, 0), q, "i");
    LLVMValueRef ti = add(cg, t0, i);
    LLVMValueRef off = fmulv(cg, cg_load(cg, es, i),
                             cg_dot(cg, hrow, group_row(cg, s, s->cm, ti), s->ns));
    cg_store(cg, cg_fma(cg, dp, cg_load(cg, head_row(cg, s, s->x, ti), p), off),
             head_row(cg, s, s->n, ti), p);
    cg_loop_end(cg, &li3);
    cg_loop_end(cg, &lp3);
    i = cg_loop_begin(cg, &li4, cg_i64(cg, 0), q, "i");
    LLVMValueRef yr = head_row(cg, s, s->n, add(cg, t0, i));
    lrow = cg_gep(cg, cg->f32, lm, mul(cg, i, qm));
    j = cg_loop_begin(cg, &lj4, cg_i64(cg, 0), add(cg, i, cg_i64(cg, 1)), "j");
    ssd_axpy(cg, yr, cg_load(cg, lrow, j), head_row(cg, s, s->x, add(cg, t0, j)), s->hd);
    cg_loop_end(cg, &lj4);
    cg_loop_end(cg, &li4);

    /* 4. h = exp(s_last) h_prev + Σ_j exp(s_last - s_j) Δ_j x_j ⊗ B_j, again by state rows:
     *    w_j first, then row p gets its q rank-one updates while it is in cache */
    LLVMValueRef slast = cg_load(cg, cs, LLVMBuildSub(B, q, cg_i64(cg, 1), ""));
    LLVMValueRef elast = cg_exp(cg, slast);
    CgLoop lw, lp5, lj5;
    j = cg_loop_begin(cg, &lw, cg_i64(cg, 0), q, "j");
    LLVMValueRef wj = fmulv(cg, cg_exp(cg, LLVMBuildFSub(B, slast, cg_load(cg, cs, j), "")),
                            cg_load(cg, dl, j));
    cg_store(cg, wj, ws, j);
    cg_loop_end(cg, &lw);
    CgLoop ln5;
    p = cg_loop_begin(cg, &lp5, cg_i64(cg, 0), cg_i64(cg, s->hd), "p");
    hrow = cg_gep(cg, cg->f32, s->state, mul(cg, p, cg_i64(cg, s->ns)));
    LLVMValueRef n = cg_loop_begin(cg, &ln5, cg_i64(cg, 0), cg_i64(cg, s->ns), "n");
    cg_store(cg, fmulv(cg, cg_load(cg, hrow, n), elast), hrow, n);
    cg_loop_end(cg, &ln5);
    j = cg_loop_begin(cg, &lj5, cg_i64(cg, 0), q, "j");
    LLVMValueRef tj = add(cg, t0, j);
    LLVMValueRef coef = fmulv(cg, cg_load(cg, ws, j), cg_load(cg, head_row(cg, s, s->x, tj), p));
    ssd_axpy(cg, hrow, coef, group_row(cg, s, s->bm, tj), s->ns);
    cg_loop_end(cg, &lj5);
    cg_loop_end(cg, &lp5);

    cg_loop_end(cg, &lc);
}

void cg_emit_ssd_scan(Cg *cg, const Node *n)
{
    LLVMBuilderRef B = cg->b;
    const Node *bm = n->src[4];
    Ssd s = {.n = n, .x = n->src[0], .dt = n->src[1], .bm = bm, .cm = n->src[5],
             .dt_bias = cg_weight(cg, n->src[2]), .a_log = cg_weight(cg, n->src[3]),
             .dskip = cg_weight(cg, n->src[6]), .heads = n->attr.rec.heads,
             .groups = n->attr.rec.groups};
    s.hd = ir_type_cols(&n->type) / s.heads;
    s.ns = ir_type_cols(&bm->type) / s.groups;
    s.d_per_channel = ir_type_cols(&n->src[6]->type) != s.heads;
    /* The step kernel (T the constant 1) always takes the recurrent form. */
    bool chunked = n->attr.rec.chunk > 0 && !LLVMIsAConstantInt(cg->f->len);

    LLVMValueRef lo, hi;
    cg_split(cg, mul(cg, cg->f->batch, cg_i64(cg, s.heads)), &lo, &hi);
    CgLoop lw;
    LLVMValueRef w = cg_loop_begin(cg, &lw, lo, hi, "pair");
    s.b = LLVMBuildSDiv(B, w, cg_i64(cg, s.heads), "b");
    s.h = LLVMBuildSRem(B, w, cg_i64(cg, s.heads), "h");
    s.state = cg_gep(cg, cg->f32, cg_state(cg, n->attr.rec.state, s.b),
                     mul(cg, s.h, cg_i64(cg, s.hd * s.ns)));
    s.a = LLVMBuildFNeg(B, cg_exp(cg, cg_load(cg, s.a_log, s.h)), "A");
    if (chunked) { /* by blocks when the call is long enough, else token by token */
        LLVMBasicBlockRef blocks = LLVMAppendBasicBlockInContext(cg->ctx, cg->f->fn, "ssd_blocks");
        LLVMBasicBlockRef tokens = LLVMAppendBasicBlockInContext(cg->ctx, cg->f->fn, "ssd_tokens");
        LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->ctx, cg->f->fn, "ssd_join");
        LLVMValueRef long_call = LLVMBuildICmp(B, LLVMIntSGE, cg->f->len, cg_i64(cg, SSD_CHUNK_MIN), "");
        LLVMBuildCondBr(B, long_call, blocks, tokens);
        LLVMPositionBuilderAtEnd(B, blocks);
        ssd_chunked(cg, &s, n->attr.rec.chunk);
        LLVMBuildBr(B, join);
        LLVMPositionBuilderAtEnd(B, tokens);
        ssd_recurrent(cg, &s);
        LLVMBuildBr(B, join);
        LLVMPositionBuilderAtEnd(B, join);
    } else {
        ssd_recurrent(cg, &s);
    }
    cg_loop_end(cg, &lw);
}
