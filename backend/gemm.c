/* gemm.c - projections of many rows: packed weight panels and an outer-product kernel.
 *
 * The dot-product tiles of matmul.c read every weight once, but each output needs a
 * horizontal sum and each k step loads as many vectors as it multiplies; with hundreds of
 * rows the FMA units starve. Here a thread takes a panel of 2 vectors' worth of outputs
 * (NR = 32 with AVX-512), copies a stretch of KC of their weight rows into a stack buffer,
 * transposed so that each k holds NR consecutive outputs (32 KB: it stays in L1), and then,
 * MR rows at a time, keeps MR x 2 vector accumulators in registers: each k step loads two
 * weight vectors and broadcasts MR inputs for 2·MR fused multiply-adds. Partial sums of a
 * stretch wait in the output rows (plan_memory never lets a node's output share memory
 * with its sources); bias, activation and residual follow the last stretch, in the same
 * order as in the tiles. Each output is summed in k order by one accumulator, so the
 * result depends on the shapes only, never on the thread count. */
#include "backend/codegen.h"

enum {
    PACK_FLOATS = 8192, /* packed panel: 32 KB of the kernel's stack */
    MAX_MR = 12,
    MAX_NV = 2,
};

typedef struct Gemm {
    const Matmul *mm;
    const MatmulPart *part;
    int64_t k, col0, kc; /* kc: k per packed stretch */
    int vw, nv;          /* vector width; vectors per panel row (2, or 1 for a last half panel) */
    LLVMTypeRef vt;
    LLVMValueRef buf;                /* the packed stretch: [kc][nv·vw] floats */
    LLVMValueRef n0;                 /* the panel's first output inside the part */
    LLVMValueRef kc0, kcl;           /* this stretch: k in [kc0, kc0 + kcl) */
    LLVMValueRef first, last, rows;  /* i1: first / last stretch; i64: rows of the chunk */
} Gemm;

/* Rows per register tile: 2·MR accumulators + 2 weight vectors + a broadcast must fit the
 * vector registers (32 with AVX-512, 16 otherwise). */
static int micro_rows(const Cg *cg) { return cg->vector_width >= 16 ? MAX_MR : 6; }

static LLVMBasicBlockRef if_begin(Cg *cg, LLVMValueRef cond, const char *name)
{
    LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(cg->ctx, cg->f->fn, name);
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->ctx, cg->f->fn, "endif");
    LLVMBuildCondBr(cg->b, cond, then, join);
    LLVMPositionBuilderAtEnd(cg->b, then);
    return join;
}

static void if_end(Cg *cg, LLVMBasicBlockRef join)
{
    LLVMBuildBr(cg->b, join);
    LLVMPositionBuilderAtEnd(cg->b, join);
}

/* Transposes the w × w block held in v[0..w) (v[r] lane c = element (r, c)). Stage m swaps
 * bit m of the row index with bit m of the lane index, pairing rows r and r | m; after
 * log2(w) stages element (r, c) sits at (c, r). */
static void transpose(Cg *cg, LLVMValueRef *v, int w)
{
    for (int m = 1; m < w; m <<= 1) {
        LLVMValueRef lo_mask[64], hi_mask[64];
        for (int c = 0; c < w; c++) {
            lo_mask[c] = LLVMConstInt(cg->i32, (unsigned)((c & m) ? w + (c & ~m) : c), 0);
            hi_mask[c] = LLVMConstInt(cg->i32, (unsigned)((c & m) ? w + c : (c | m)), 0);
        }
        LLVMValueRef lo_m = LLVMConstVector(lo_mask, (unsigned)w), hi_m = LLVMConstVector(hi_mask, (unsigned)w);
        for (int r = 0; r < w; r++) {
            if (r & m) continue;
            LLVMValueRef lo = v[r], hi = v[r | m];
            v[r] = LLVMBuildShuffleVector(cg->b, lo, hi, lo_m, "");
            v[r | m] = LLVMBuildShuffleVector(cg->b, lo, hi, hi_m, "");
        }
    }
}

/* buf[kk][j] = W[n0 + j][kc0 + kk] for kk < kcl, j < nv·vw: vw × vw blocks go through the
 * registers transposed, the k tail (a stretch not a multiple of vw) element by element.
 * (Software prefetch of the next stretch here made no measurable difference; at chunk 64
 * the copy did wait on memory, which the longer default chunk amortises instead.) */
static void emit_pack(Cg *cg, const Gemm *g)
{
    LLVMBuilderRef B = cg->b;
    int vw = g->vw, width = g->nv * vw;
    const Node *w = g->part->w;
    LLVMValueRef kfull = LLVMBuildAnd(B, g->kcl, cg_i64(cg, ~(int64_t)(vw - 1)), "kfull");
    for (int jb = 0; jb < g->nv; jb++) {
        LLVMValueRef row[64]; /* element offsets of the rows' stretch; narrow weights widen here */
        for (int j = 0; j < vw; j++) {
            LLVMValueRef n = LLVMBuildAdd(B, g->n0, cg_i64(cg, jb * vw + j), "");
            row[j] = LLVMBuildAdd(B, LLVMBuildMul(B, n, cg_i64(cg, g->k), ""), g->kc0, "");
        }
        CgLoop lk;
        LLVMValueRef kk = cg_loop_begin_step(cg, &lk, cg_i64(cg, 0), kfull, vw, "pack.k");
        LLVMValueRef v[64];
        for (int j = 0; j < vw; j++) v[j] = cg_wvload(cg, w, g->vt, LLVMBuildAdd(B, row[j], kk, ""));
        transpose(cg, v, vw);
        for (int c = 0; c < vw; c++) {
            LLVMValueRef at = LLVMBuildMul(B, LLVMBuildAdd(B, kk, cg_i64(cg, c), ""), cg_i64(cg, width), "");
            cg_vstore(cg, v[c], g->buf, LLVMBuildAdd(B, at, cg_i64(cg, jb * vw), ""));
        }
        cg_loop_end(cg, &lk);
        CgLoop lt;
        kk = cg_loop_begin(cg, &lt, kfull, g->kcl, "pack.tail");
        LLVMValueRef at = LLVMBuildAdd(B, LLVMBuildMul(B, kk, cg_i64(cg, width), ""), cg_i64(cg, jb * vw), "");
        for (int j = 0; j < vw; j++)
            cg_store(cg, cg_wload(cg, w, LLVMBuildAdd(B, row[j], kk, "")), g->buf, LLVMBuildAdd(B, at, cg_i64(cg, j), ""));
        cg_loop_end(cg, &lt);
    }
}

/* The activation of the epilogue on a vector: whole, or lane by lane when it calls libm. */
static LLVMValueRef apply_act(Cg *cg, Op act, LLVMValueRef v, int vw)
{
    if (cg_unary_vectorizes(act)) return cg_unary(cg, act, v);
    for (int l = 0; l < vw; l++) {
        LLVMValueRef lane = LLVMConstInt(cg->i32, (unsigned)l, 0);
        v = LLVMBuildInsertElement(cg->b, v, cg_unary(cg, act, LLVMBuildExtractElement(cg->b, v, lane, "")),
                                   lane, "");
    }
    return v;
}

/* Rows [r0, r0 + mr) × the panel's outputs, over the current stretch. */
static void emit_micro(Cg *cg, const Gemm *g, LLVMValueRef r0, int mr)
{
    LLVMBuilderRef B = cg->b;
    const Matmul *mm = g->mm;
    int vw = g->vw, nv = g->nv, width = nv * vw;
    LLVMValueRef xrow[MAX_MR], orow[MAX_MR], acc[MAX_MR * MAX_NV], col[MAX_NV];
    for (int i = 0; i < mr; i++) {
        LLVMValueRef r = LLVMBuildAdd(B, r0, cg_i64(cg, i), "");
        xrow[i] = cg_gep(cg, cg->f32, cg_row_flat(cg, mm->x, r), g->kc0);
        orow[i] = cg_row_flat(cg, mm->out, r);
    }
    for (int h = 0; h < nv; h++)
        col[h] = LLVMBuildAdd(B, g->n0, cg_i64(cg, g->col0 + h * vw), "col");
    for (int a = 0; a < mr * nv; a++) {
        acc[a] = cg_entry_alloca(cg, g->vt, "acc");
        LLVMBuildStore(B, LLVMConstNull(g->vt), acc[a]);
    }
    LLVMBasicBlockRef join = if_begin(cg, LLVMBuildNot(B, g->first, ""), "resume");
    for (int i = 0; i < mr; i++)
        for (int h = 0; h < nv; h++) LLVMBuildStore(B, cg_vload(cg, g->vt, orow[i], col[h]), acc[i * nv + h]);
    if_end(cg, join);

    CgLoop lk;
    LLVMValueRef kk = cg_loop_begin(cg, &lk, cg_i64(cg, 0), g->kcl, "k");
    LLVMValueRef w[MAX_NV];
    LLVMValueRef at = LLVMBuildMul(B, kk, cg_i64(cg, width), "");
    for (int h = 0; h < nv; h++) w[h] = cg_vload(cg, g->vt, g->buf, LLVMBuildAdd(B, at, cg_i64(cg, h * vw), ""));
    for (int i = 0; i < mr; i++) {
        LLVMValueRef xs = cg_vsplat(cg, g->vt, cg_load(cg, xrow[i], kk));
        for (int h = 0; h < nv; h++) {
            LLVMValueRef a = acc[i * nv + h];
            LLVMBuildStore(B, cg_fma(cg, xs, w[h], LLVMBuildLoad2(B, g->vt, a, "")), a);
        }
    }
    cg_loop_end(cg, &lk);

    /* partial sums wait in the output; the last stretch finishes them */
    join = if_begin(cg, LLVMBuildNot(B, g->last, ""), "park");
    for (int i = 0; i < mr; i++)
        for (int h = 0; h < nv; h++)
            cg_vstore(cg, LLVMBuildLoad2(B, g->vt, acc[i * nv + h], ""), orow[i], col[h]);
    if_end(cg, join);
    join = if_begin(cg, g->last, "epilogue");
    for (int h = 0; h < nv; h++) {
        LLVMValueRef n = LLVMBuildAdd(B, g->n0, cg_i64(cg, h * vw), "");
        LLVMValueRef bias = g->part->bias ? cg_vload(cg, g->vt, cg_weight(cg, g->part->bias), n) : NULL;
        for (int i = 0; i < mr; i++) {
            LLVMValueRef v = LLVMBuildLoad2(B, g->vt, acc[i * nv + h], "");
            if (bias) v = LLVMBuildFAdd(B, v, bias, "");
            if (mm->act != OP_COUNT_) v = apply_act(cg, mm->act, v, vw);
            if (mm->residual) {
                LLVMValueRef r = LLVMBuildAdd(B, r0, cg_i64(cg, i), "");
                v = LLVMBuildFAdd(B, cg_vload(cg, g->vt, cg_row_flat(cg, mm->residual, r), col[h]), v, "");
            }
            cg_vstore(cg, v, orow[i], col[h]);
        }
    }
    if_end(cg, join);
}

/* Every row of the chunk against the packed stretch: tiles of MR rows, then 4, then 1. */
static void emit_panel_rows(Cg *cg, const Gemm *g)
{
    LLVMBuilderRef B = cg->b;
    int tiers[3] = {micro_rows(cg), 4, 1};
    LLVMValueRef start = cg_i64(cg, 0);
    for (int t = 0; t < 3; t++) {
        int mr = tiers[t];
        LLVMValueRef left = LLVMBuildSub(B, g->rows, start, "");
        LLVMValueRef end = LLVMBuildAdd(B, start, LLVMBuildMul(B, LLVMBuildUDiv(B, left, cg_i64(cg, mr), ""),
                                                             cg_i64(cg, mr), ""), "");
        CgLoop lr;
        LLVMValueRef r0 = cg_loop_begin_step(cg, &lr, start, end, mr, "rows");
        emit_micro(cg, g, r0, mr);
        cg_loop_end(cg, &lr);
        start = end;
    }
}

/* One panel: stretch by stretch, pack then run every row. */
static void emit_panel(Cg *cg, Gemm *g)
{
    LLVMBuilderRef B = cg->b;
    CgLoop ls;
    g->kc0 = cg_loop_begin_step(cg, &ls, cg_i64(cg, 0), cg_i64(cg, g->k), g->kc, "stretch");
    LLVMValueRef left = LLVMBuildSub(B, cg_i64(cg, g->k), g->kc0, "");
    g->last = LLVMBuildICmp(B, LLVMIntSLE, left, cg_i64(cg, g->kc), "last");
    g->kcl = LLVMBuildSelect(B, g->last, left, cg_i64(cg, g->kc), "kcl");
    g->first = LLVMBuildICmp(B, LLVMIntEQ, g->kc0, cg_i64(cg, 0), "first");
    emit_pack(cg, g);
    emit_panel_rows(cg, g);
    cg_loop_end(cg, &ls);
}

/* A part narrower than one vector is left to the tiles; the transposes hold at most 64 lanes. */
bool cg_gemm_applies(const Cg *cg, const MatmulPart *part)
{
    return part->w->type.dim[0] >= cg->vector_width && cg->vector_width <= 64;
}

int64_t cg_emit_gemm_part(Cg *cg, const Matmul *mm, const MatmulPart *part, int64_t col0)
{
    LLVMBuilderRef B = cg->b;
    int vw = cg->vector_width, nr = 2 * vw;
    int64_t n = part->w->type.dim[0], panels = n / nr;
    bool half = n - panels * nr >= vw;
    Gemm g = {.mm = mm, .part = part, .k = ir_type_cols(&mm->x->type), .col0 = col0,
              .kc = PACK_FLOATS / nr, .vw = vw, .vt = cg_vec_type(cg)};
    g.rows = LLVMBuildMul(B, cg->f->batch, cg->f->len, "rows");
    g.buf = cg_entry_alloca(cg, LLVMArrayType2(cg->f32, PACK_FLOATS), "pack");
    LLVMSetAlignment(g.buf, 64);
    if (panels > 0) {
        LLVMValueRef lo, hi;
        cg_split(cg, cg_i64(cg, panels), &lo, &hi);
        CgLoop lp;
        LLVMValueRef p = cg_loop_begin(cg, &lp, lo, hi, "panel");
        g.n0 = LLVMBuildMul(B, p, cg_i64(cg, nr), "n0");
        g.nv = 2;
        emit_panel(cg, &g);
        cg_loop_end(cg, &lp);
    }
    if (half) { /* one vector's worth of outputs left: the last thread takes it */
        CgLoop lh;
        LLVMValueRef start = LLVMBuildSelect(B, cg_is_last_thread(cg), cg_i64(cg, panels), cg_i64(cg, panels + 1), "");
        LLVMValueRef p = cg_loop_begin(cg, &lh, start, cg_i64(cg, panels + 1), "half");
        g.n0 = LLVMBuildMul(B, p, cg_i64(cg, nr), "n0");
        g.nv = 1;
        emit_panel(cg, &g);
        cg_loop_end(cg, &lh);
    }
    return panels * nr + (half ? vw : 0);
}
