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

#include "backend/tile.h"

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
static LLVMValueRef round_up(Cg *cg, LLVMValueRef v, int64_t m)
{
    return LLVMBuildAnd(cg->b, add(cg, v, cg_i64(cg, m - 1)), cg_i64(cg, ~(m - 1)), "");
}
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

/* Floats between consecutive tokens' rows of a per-token value (the chunked form addresses a
 * block's rows as a matrix). */
static LLVMValueRef row_stride(Cg *cg, const Node *v)
{
    if (v->store.kind != STORE_SCRATCH)
        mxc_die("%%%d (%s): the chunked SSD form needs its rows in scratch", v->id, ir_op_name(v->op));
    return cg_i64(cg, v->store.row_stride);
}

/* h[p][n] <-> hT[n][p]: the blocks work on the state transposed, so that both of its products
 * (C hT and the update Bᵀ (w ⊙ X)) read and write contiguous rows of P. */
static void ssd_transpose_state(Cg *cg, const Ssd *s, LLVMValueRef ht, bool in)
{
    LLVMValueRef one = cg_i64(cg, 1);
    TileMat h = {s->state, cg_i64(cg, s->ns), one}, t = {ht, cg_i64(cg, s->hd), one};
    if (in) cg_emit_tile_transpose(cg, t, h, cg_i64(cg, s->hd), cg_i64(cg, s->ns));
    else cg_emit_tile_transpose(cg, h, t, cg_i64(cg, s->ns), cg_i64(cg, s->hd));
}

/* Blocks of Q tokens. Per block the four products run as register-tiled matrix products
 * (tile.c) on the block's rows in place and on stack arrays of block size (Q is at most
 * SSD_CHUNK_MAX; the transposed state hT [N][P] stays on the stack for the whole call):
 *   G  = C Bᵀ                      [q x q] over N, lower triangle only
 *   L  = G ⊙ exp(s_i - s_j) Δ_j    masked (j <= i), elementwise
 *   Y  = D X + exp(s) ⊙ (C hT) + L X
 *   hT = exp(s_last) hT + Bᵀ (w ⊙ X),  w_j = exp(s_last - s_j) Δ_j */
static void ssd_chunked(Cg *cg, const Ssd *s, int64_t q_max)
{
    LLVMBuilderRef B = cg->b;
    int vw = cg->vector_width;
    int64_t q_pad = (q_max + vw - 1) / vw * vw;
    LLVMValueRef dl = cg_entry_alloca(cg, LLVMArrayType2(cg->f32, (uint64_t)q_pad), "delta");
    LLVMValueRef cs = cg_entry_alloca(cg, LLVMArrayType2(cg->f32, (uint64_t)q_pad), "cumsum");
    LLVMValueRef ws = cg_entry_alloca(cg, LLVMArrayType2(cg->f32, (uint64_t)q_pad), "w");
    LLVMValueRef es = cg_entry_alloca(cg, LLVMArrayType2(cg->f32, (uint64_t)q_pad), "exp_s");
    LLVMValueRef lm = cg_entry_alloca(cg, LLVMArrayType2(cg->f32, (uint64_t)(q_max * q_pad)), "L");
    LLVMValueRef ht = cg_entry_alloca(cg, LLVMArrayType2(cg->f32, (uint64_t)(s->ns * s->hd)), "hT");
    LLVMSetAlignment(lm, 64);
    LLVMSetAlignment(ht, 64);
    LLVMValueRef run = cg_var(cg, "run");
    LLVMValueRef qm = cg_i64(cg, q_max), one = cg_i64(cg, 1), zero = cg_i64(cg, 0);
    LLVMValueRef xs = row_stride(cg, s->x), ys = row_stride(cg, s->n);
    LLVMValueRef bs = row_stride(cg, s->bm), css = row_stride(cg, s->cm);

    ssd_transpose_state(cg, s, ht, true);
    CgLoop lc;
    LLVMValueRef t0 = cg_loop_begin_step(cg, &lc, zero, cg->f->len, q_max, "t0");
    LLVMValueRef left = LLVMBuildSub(B, cg->f->len, t0, "");
    LLVMValueRef q = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, left, qm, ""), left, qm, "q");
    LLVMValueRef x0 = head_row(cg, s, s->x, t0), y0 = head_row(cg, s, s->n, t0);
    LLVMValueRef b0 = group_row(cg, s, s->bm, t0), c0 = group_row(cg, s, s->cm, t0);

    /* 1. Δ_i and s_i = Σ_{r≤i} Δ_r A */
    CgLoop li;
    LLVMBuildStore(B, cg_f32(cg, 0.0), run);
    LLVMValueRef i = cg_loop_begin(cg, &li, zero, q, "i");
    LLVMValueRef delta = ssd_delta(cg, s, add(cg, t0, i));
    cg_store(cg, delta, dl, i);
    LLVMValueRef sum = LLVMBuildFAdd(B, LLVMBuildLoad2(B, cg->f32, run, ""), fmulv(cg, delta, s->a), "");
    LLVMBuildStore(B, sum, run);
    cg_store(cg, sum, cs, i);
    cg_store(cg, cg_exp(cg, sum), es, i);
    cg_loop_end(cg, &li);
    i = cg_loop_begin(cg, &li, q, cg_i64(cg, q_pad), "i"); /* read (masked) by step 2's vectors */
    cg_store(cg, cg_f32(cg, 0.0), dl, i);
    cg_store(cg, cg_f32(cg, 0.0), cs, i);
    cg_loop_end(cg, &li);

    /* 2. G = C Bᵀ into L, then L[i][j] = G[i][j] exp(s_i - s_j) Δ_j for j <= i, 0 above
     *    (the product Y += L X reads up to the end of each row tile) */
    TileProduct g = {.a = {c0, css, one}, .b = {b0, bs, one}, .c = {lm, cg_i64(cg, q_pad), one},
                     .m = q, .n = q, .k = cg_i64(cg, s->ns), .n_max = q_max, .k_max = s->ns,
                     .b_transposed = true, .lower_c = true, .pad_n = true};
    cg_emit_tile_product(cg, &g);
    LLVMTypeRef vt = cg_vec_type(cg);
    LLVMValueRef lanes[64];
    for (int l = 0; l < vw; l++) lanes[l] = LLVMConstInt(cg->i64, (unsigned)l, 0);
    LLVMValueRef lane = LLVMConstVector(lanes, (unsigned)vw);
    CgLoop li2, lj2;
    i = cg_loop_begin(cg, &li2, zero, q, "i");
    LLVMValueRef si = cg_vsplat(cg, vt, cg_load(cg, cs, i)), lrow = cg_gep(cg, cg->f32, lm, mul(cg, i, cg_i64(cg, q_pad)));
    LLVMValueRef diag = round_up(cg, add(cg, i, one), vw);
    LLVMValueRef j = cg_loop_begin_step(cg, &lj2, zero, diag, vw, "j");
    LLVMValueRef w = fmulv(cg, cg_exp(cg, LLVMBuildFSub(B, si, cg_vload(cg, vt, cs, j), "")), cg_vload(cg, vt, dl, j));
    LLVMValueRef jv = LLVMBuildAdd(B, cg_vsplat(cg, LLVMVectorType(cg->i64, (unsigned)vw), j), lane, "");
    LLVMValueRef below = LLVMBuildICmp(B, LLVMIntSLE, jv, cg_vsplat(cg, LLVMVectorType(cg->i64, (unsigned)vw), i), "");
    LLVMValueRef lv = fmulv(cg, cg_vload(cg, vt, lrow, j), w);
    cg_vstore(cg, LLVMBuildSelect(B, below, lv, LLVMConstNull(vt), ""), lrow, j);
    cg_loop_end(cg, &lj2);
    j = cg_loop_begin_step(cg, &lj2, diag, round_up(cg, q, vw), vw, "j");
    cg_vstore(cg, LLVMConstNull(vt), lrow, j);
    cg_loop_end(cg, &lj2);
    cg_loop_end(cg, &li2);

    /* 3. Y = D X, then += exp(s_i) (C hT), then += L X */
    CgLoop li3, lp3;
    i = cg_loop_begin(cg, &li3, zero, q, "i");
    LLVMValueRef xr = cg_gep(cg, cg->f32, x0, mul(cg, i, xs)), yr = cg_gep(cg, cg->f32, y0, mul(cg, i, ys));
    LLVMValueRef p = cg_loop_begin(cg, &lp3, zero, cg_i64(cg, s->hd), "p");
    cg_store(cg, fmulv(cg, ssd_d(cg, s, p), cg_load(cg, xr, p)), yr, p);
    cg_loop_end(cg, &lp3);
    cg_loop_end(cg, &li3);
    TileProduct ch = {.a = {c0, css, one}, .b = {ht, cg_i64(cg, s->hd), one}, .c = {y0, ys, one},
                      .m = q, .n = cg_i64(cg, s->hd), .k = cg_i64(cg, s->ns), .n_max = s->hd,
                      .k_max = s->ns, .accumulate = true, .row_scale = es};
    cg_emit_tile_product(cg, &ch);
    TileProduct lx = {.a = {lm, cg_i64(cg, q_pad), one}, .b = {x0, xs, one}, .c = {y0, ys, one},
                      .m = q, .n = cg_i64(cg, s->hd), .k = q, .n_max = s->hd, .k_max = q_max,
                      .accumulate = true, .lower_a = true};
    cg_emit_tile_product(cg, &lx);

    /* 4. hT = exp(s_last) hT + Bᵀ (w ⊙ X) */
    LLVMValueRef slast = cg_load(cg, cs, LLVMBuildSub(B, q, one, ""));
    CgLoop lw;
    j = cg_loop_begin(cg, &lw, zero, q, "j");
    LLVMValueRef wj = fmulv(cg, cg_exp(cg, LLVMBuildFSub(B, slast, cg_load(cg, cs, j), "")), cg_load(cg, dl, j));
    cg_store(cg, wj, ws, j);
    cg_loop_end(cg, &lw);
    TileProduct up = {.a = {b0, one, bs}, .b = {x0, xs, one}, .c = {ht, cg_i64(cg, s->hd), one},
                      .m = cg_i64(cg, s->ns), .n = cg_i64(cg, s->hd), .k = q, .n_max = s->hd,
                      .k_max = q_max, .accumulate = true, .c_scale = cg_exp(cg, slast), .k_scale = ws};
    cg_emit_tile_product(cg, &up);

    cg_loop_end(cg, &lc);
    ssd_transpose_state(cg, s, ht, false);
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
