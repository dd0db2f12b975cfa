/* kernels.c - one LLVM emitter per IR op.
 *
 * Every emitter writes loops specialised for the node's fixed sizes; only B and T are
 * run-time values. Per-token ops loop over (b, t) rows; recurrent ops loop over t in order
 * inside each sequence and keep their state in the state slot between calls. */
#include <stdlib.h>

#include "backend/codegen.h"

/* Loop over this thread's share of the chunk's rows (b, t); the body is emitted by the
 * caller between rows_begin and rows_end. */
typedef struct Rows {
    CgLoop lr;
    LLVMValueRef b, t;
} Rows;

static void rows_begin(Cg *cg, Rows *r)
{
    LLVMValueRef lo, hi;
    cg_split(cg, LLVMBuildMul(cg->b, cg->f->batch, cg->f->len, "rows"), &lo, &hi);
    LLVMValueRef row = cg_loop_begin(cg, &r->lr, lo, hi, "r");
    cg_row_bt(cg, row, &r->b, &r->t);
}

static void rows_end(Cg *cg, Rows *r) { cg_loop_end(cg, &r->lr); }

/* Σ_k x[k] * w[wofs + k] over n elements of weight w (any stored type), reassociable so
 * that it vectorises. */
static LLVMValueRef emit_dot(Cg *cg, LLVMValueRef x, const Node *w, LLVMValueRef wofs, int64_t n)
{
    LLVMValueRef acc = cg_var(cg, "acc");
    LLVMBuildStore(cg->b, cg_f32(cg, 0.0), acc);
    CgLoop lk;
    LLVMValueRef k = cg_loop_begin(cg, &lk, cg_i64(cg, 0), cg_i64(cg, n), "k");
    LLVMValueRef prod = cg_fmul_reduce(cg, cg_load(cg, x, k), cg_wload(cg, w, LLVMBuildAdd(cg->b, wofs, k, "")));
    LLVMValueRef sum = cg_fadd_reduce(cg, LLVMBuildLoad2(cg->b, cg->f32, acc, ""), prod);
    LLVMBuildStore(cg->b, sum, acc);
    cg_loop_end(cg, &lk);
    return LLVMBuildLoad2(cg->b, cg->f32, acc, "dot");
}

/* Σ_k f(x[k]) where f is x or x^2, or (x - mean)^2 when mean is given. */
static LLVMValueRef emit_row_sum(Cg *cg, LLVMValueRef x, int64_t n, bool square, LLVMValueRef mean)
{
    LLVMValueRef acc = cg_var(cg, "sum");
    LLVMBuildStore(cg->b, cg_f32(cg, 0.0), acc);
    CgLoop lk;
    LLVMValueRef k = cg_loop_begin(cg, &lk, cg_i64(cg, 0), cg_i64(cg, n), "k");
    LLVMValueRef v = cg_load(cg, x, k);
    if (mean) v = LLVMBuildFSub(cg->b, v, mean, "");
    if (square) v = cg_fmul_reduce(cg, v, v);
    LLVMBuildStore(cg->b, cg_fadd_reduce(cg, LLVMBuildLoad2(cg->b, cg->f32, acc, ""), v), acc);
    cg_loop_end(cg, &lk);
    return LLVMBuildLoad2(cg->b, cg->f32, acc, "");
}

/* out[b,t,:] = table[tokens[b,t], :] */
static void emit_embed(Cg *cg, const Node *n)
{
    const Node *table = n->src[1];
    int64_t d = table->type.dim[1];
    Rows r;
    rows_begin(cg, &r);
    LLVMValueRef tok = LLVMBuildLoad2(cg->b, cg->i32, cg_row(cg, n->src[0], r.b, r.t), "tok");
    LLVMValueRef base = LLVMBuildMul(cg->b, LLVMBuildSExt(cg->b, tok, cg->i64, ""), cg_i64(cg, d), "");
    LLVMValueRef dst = cg_row(cg, n, r.b, r.t);
    CgLoop lc;
    LLVMValueRef c = cg_loop_begin(cg, &lc, cg_i64(cg, 0), cg_i64(cg, d), "c");
    cg_store(cg, cg_wload(cg, table, LLVMBuildAdd(cg->b, base, c, "")), dst, c); /* widened */
    cg_loop_end(cg, &lc);
    rows_end(cg, &r);
}

/* RMSNorm: y = x * rsqrt(mean(x^2) + eps) * w
 * LayerNorm: y = (x - mean) * rsqrt(var + eps) * g (+ bias), g = w or 1 + w; with groups > 1
 * each group of columns has its own mean and variance (xLSTM's multi-head norm). */
static void emit_norm(Cg *cg, const Node *n)
{
    int64_t d = ir_type_cols(&n->type);
    bool layer = n->op == OP_LAYERNORM;
    int64_t groups = n->attr.norm.groups > 1 ? n->attr.norm.groups : 1, gs = d / groups;
    LLVMValueRef gain = cg_weight(cg, n->src[1]);
    LLVMValueRef bias = n->n_src > 2 ? cg_weight(cg, n->src[2]) : NULL;
    LLVMValueRef inv_d = cg_f32(cg, 1.0 / (double)gs);
    Rows r;
    rows_begin(cg, &r);
    CgLoop lg;
    LLVMValueRef grp = cg_loop_begin(cg, &lg, cg_i64(cg, 0), cg_i64(cg, groups), "group");
    LLVMValueRef first = LLVMBuildMul(cg->b, grp, cg_i64(cg, gs), "");
    LLVMValueRef x = cg_gep(cg, cg->f32, cg_row(cg, n->src[0], r.b, r.t), first);
    LLVMValueRef y = cg_gep(cg, cg->f32, cg_row(cg, n, r.b, r.t), first);
    LLVMValueRef gp = cg_gep(cg, cg->f32, gain, first);
    LLVMValueRef bp = bias ? cg_gep(cg, cg->f32, bias, first) : NULL;
    LLVMValueRef mean = NULL;
    if (layer) mean = LLVMBuildFMul(cg->b, emit_row_sum(cg, x, gs, false, NULL), inv_d, "mean");
    LLVMValueRef var = LLVMBuildFMul(cg->b, emit_row_sum(cg, x, gs, true, mean), inv_d, "var");
    LLVMValueRef rstd = LLVMBuildFDiv(
        cg->b, cg_f32(cg, 1.0), cg_sqrt(cg, LLVMBuildFAdd(cg->b, var, cg_f32(cg, n->attr.norm.eps), "")),
        "rstd");
    CgLoop lc;
    LLVMValueRef c = cg_loop_begin(cg, &lc, cg_i64(cg, 0), cg_i64(cg, gs), "c");
    LLVMValueRef v = cg_load(cg, x, c);
    if (mean) v = LLVMBuildFSub(cg->b, v, mean, "");
    LLVMValueRef g = cg_load(cg, gp, c);
    if (n->attr.norm.gain_offset) g = LLVMBuildFAdd(cg->b, g, cg_f32(cg, 1.0), "");
    v = LLVMBuildFMul(cg->b, LLVMBuildFMul(cg->b, v, rstd, ""), g, "");
    if (bp) v = LLVMBuildFAdd(cg->b, v, cg_load(cg, bp, c), "");
    cg_store(cg, v, y, c);
    cg_loop_end(cg, &lc);
    cg_loop_end(cg, &lg);
    rows_end(cg, &r);
}

/* y = [residual +] act(x [W_1; W_2; ...]ᵀ (+ bias)): see matmul.c. */
static void emit_linear(Cg *cg, const Node *n)
{
    const int parts = n->attr.proj.parts;
    if (parts > IR_PROJ_MAX_PARTS) mxc_die("linear with %d parts", parts);
    Matmul mm = {.x = n->src[0], .out = n, .n_parts = parts, .act = n->attr.proj.act,
                 .residual = n->attr.proj.residual ? n->src[ir_proj_residual(n)] : NULL};
    for (int p = 0; p < parts; p++)
        mm.parts[p] = (MatmulPart){n->src[ir_proj_weight(n, p)],
                                   n->attr.proj.bias ? n->src[ir_proj_bias(n, p)] : NULL};
    cg_emit_matmul(cg, &mm);
}

/* Block-diagonal linear (xLSTM LinearHeadwiseExpand): head h maps columns
 * [h*in, (h+1)*in) to [h*out, (h+1)*out) with its own W[h] [out, in] (+ bias). */
static void emit_headwise(Cg *cg, const Node *n)
{
    Rows r;
    rows_begin(cg, &r);
    LLVMValueRef x = cg_row(cg, n->src[0], r.b, r.t), y = cg_row(cg, n, r.b, r.t);
    int64_t col0 = 0;
    for (int p = 0; p < n->attr.proj.parts; p++) { /* fused parts sit side by side */
        const Node *w = n->src[ir_proj_weight(n, p)];
        int64_t heads = w->type.dim[0], out = w->type.dim[1], in = w->type.dim[2];
        LLVMValueRef bias = n->attr.proj.bias ? cg_weight(cg, n->src[ir_proj_bias(n, p)]) : NULL;
        LLVMValueRef yp = cg_gep(cg, cg->f32, y, cg_i64(cg, col0));
        CgLoop lh, lo;
        LLVMValueRef h = cg_loop_begin(cg, &lh, cg_i64(cg, 0), cg_i64(cg, heads), "h");
        LLVMValueRef xh = cg_gep(cg, cg->f32, x, LLVMBuildMul(cg->b, h, cg_i64(cg, in), ""));
        LLVMValueRef o = cg_loop_begin(cg, &lo, cg_i64(cg, 0), cg_i64(cg, out), "o");
        LLVMValueRef col = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, h, cg_i64(cg, out), ""), o, "col");
        LLVMValueRef acc = emit_dot(cg, xh, w, LLVMBuildMul(cg->b, col, cg_i64(cg, in), ""), in);
        if (bias) acc = LLVMBuildFAdd(cg->b, acc, cg_load(cg, bias, col), "");
        cg_store(cg, acc, yp, col);
        cg_loop_end(cg, &lo);
        cg_loop_end(cg, &lh);
        col0 += heads * out;
    }
    rows_end(cg, &r);
}

/* Sources copied side by side into one row. */
static void emit_concat(Cg *cg, const Node *n)
{
    Rows r;
    rows_begin(cg, &r);
    LLVMValueRef y = cg_row(cg, n, r.b, r.t);
    int64_t at = 0;
    for (int i = 0; i < n->n_src; i++) {
        int64_t cols = ir_type_cols(&n->src[i]->type);
        LLVMValueRef x = cg_row(cg, n->src[i], r.b, r.t);
        LLVMValueRef dst = cg_gep(cg, cg->f32, y, cg_i64(cg, at));
        CgLoop lc;
        LLVMValueRef c = cg_loop_begin(cg, &lc, cg_i64(cg, 0), cg_i64(cg, cols), "c");
        cg_store(cg, cg_load(cg, x, c), dst, c);
        cg_loop_end(cg, &lc);
        at += cols;
    }
    rows_end(cg, &r);
}

/* Elementwise ops, one or two inputs of the same shape (or a per-column weight). */
static void emit_elementwise(Cg *cg, const Node *n)
{
    int64_t d = ir_type_cols(&n->type);
    Rows r;
    rows_begin(cg, &r);
    LLVMValueRef a = cg_row(cg, n->src[0], r.b, r.t);
    LLVMValueRef bsrc = n->op == OP_SCALE ? cg_weight(cg, n->src[1])
                        : n->n_src > 1 ? cg_row(cg, n->src[1], r.b, r.t) : NULL;
    LLVMValueRef y = cg_row(cg, n, r.b, r.t);
    CgLoop lc;
    LLVMValueRef c = cg_loop_begin(cg, &lc, cg_i64(cg, 0), cg_i64(cg, d), "c");
    LLVMValueRef x = cg_load(cg, a, c), v;
    if (ir_op_is_activation(n->op))
        v = cg_unary(cg, n->op, x);
    else if (n->op == OP_SOFTCAP) { /* divide, tanh, multiply: torch's cap * tanh(x / cap) */
        LLVMValueRef cap = cg_f32(cg, n->attr.softcap.cap);
        v = LLVMBuildFMul(cg->b, cap, cg_tanh(cg, LLVMBuildFDiv(cg->b, x, cap, "")), "");
    } else if (n->op == OP_ADD)
        v = LLVMBuildFAdd(cg->b, x, cg_load(cg, bsrc, c), "");
    else /* OP_MUL, OP_SCALE */
        v = LLVMBuildFMul(cg->b, x, cg_load(cg, bsrc, c), "");
    cg_store(cg, v, y, c);
    cg_loop_end(cg, &lc);
    rows_end(cg, &r);
}

/* Causal depthwise conv (SEMANTICS A.5 step 2, B.7.3):
 *   y[t, c] = bias[c] + Σ_k w[c, k] · x[t - (K-1) + k, c]
 * where positions before the chunk come from the state window [K-1][C] holding the last
 * K-1 inputs of the previous call (zeros initially). After the chunk the window is moved
 * forward by T inputs. */
static void emit_conv1d(Cg *cg, const Node *n)
{
    const Node *xin = n->src[0], *w = n->src[1];
    int64_t ch = ir_type_cols(&n->type), kw = w->type.dim[2];
    LLVMValueRef wp = cg_weight(cg, w);
    LLVMValueRef bias = n->n_src > 2 ? cg_weight(cg, n->src[2]) : NULL;
    LLVMBuilderRef B = cg->b;

    /* Channels are independent: each thread takes a range of them. */
    LLVMValueRef clo, chi;
    cg_split(cg, cg_i64(cg, ch), &clo, &chi);
    CgLoop lb, lt;
    LLVMValueRef b = cg_loop_begin(cg, &lb, cg_i64(cg, 0), cg->f->batch, "b");
    LLVMValueRef win = cg_state(cg, n->attr.rec.state, b);
    LLVMValueRef t = cg_loop_begin(cg, &lt, cg_i64(cg, 0), cg->f->len, "t");
    /* One source row per tap: the input at t - (K-1) + k, or the window row K-1 + that. */
    LLVMValueRef *tap = malloc(sizeof *tap * (size_t)kw);
    if (!tap) mxc_die("out of memory");
    for (int64_t k = 0; k < kw; k++) {
        LLVMValueRef pos = LLVMBuildAdd(B, t, cg_i64(cg, k - (kw - 1)), "pos");
        LLVMValueRef in_chunk = LLVMBuildICmp(B, LLVMIntSGE, pos, cg_i64(cg, 0), "");
        LLVMValueRef safe_pos = LLVMBuildSelect(B, in_chunk, pos, cg_i64(cg, 0), "");
        LLVMValueRef from_x = cg_row(cg, xin, b, safe_pos);
        LLVMValueRef wrow = LLVMBuildAdd(B, pos, cg_i64(cg, kw - 1), "");
        LLVMValueRef safe_wrow = LLVMBuildSelect(B, in_chunk, cg_i64(cg, 0), wrow, "");
        LLVMValueRef from_win = cg_gep(cg, cg->f32, win, LLVMBuildMul(B, safe_wrow, cg_i64(cg, ch), ""));
        tap[k] = LLVMBuildSelect(B, in_chunk, from_x, from_win, "tap");
    }
    LLVMValueRef y = cg_row(cg, n, b, t);
    CgLoop lc;
    LLVMValueRef c = cg_loop_begin(cg, &lc, clo, chi, "c");
    LLVMValueRef wbase = LLVMBuildMul(B, c, cg_i64(cg, kw), "");
    LLVMValueRef acc = cg_f32(cg, 0.0);
    for (int64_t k = 0; k < kw; k++) {
        LLVMValueRef wk = cg_load(cg, wp, LLVMBuildAdd(B, wbase, cg_i64(cg, k), ""));
        acc = LLVMBuildFAdd(B, acc, LLVMBuildFMul(B, wk, cg_load(cg, tap[k], c), ""), "");
    }
    if (bias) acc = LLVMBuildFAdd(B, acc, cg_load(cg, bias, c), "");
    if (n->attr.rec.act != OP_COUNT_) acc = cg_unary(cg, n->attr.rec.act, acc); /* fused */
    cg_store(cg, acc, y, c);
    cg_loop_end(cg, &lc);
    cg_loop_end(cg, &lt);
    free(tap);

    /* Window row j becomes element T + j of [window, chunk inputs]; ascending j only reads
     * rows above the one it writes. */
    CgLoop lj, lc2;
    LLVMValueRef j = cg_loop_begin(cg, &lj, cg_i64(cg, 0), cg_i64(cg, kw - 1), "j");
    LLVMValueRef pos = LLVMBuildAdd(B, LLVMBuildAdd(B, cg->f->len, j, ""), cg_i64(cg, -(kw - 1)), "");
    LLVMValueRef in_chunk = LLVMBuildICmp(B, LLVMIntSGE, pos, cg_i64(cg, 0), "");
    LLVMValueRef safe_pos = LLVMBuildSelect(B, in_chunk, pos, cg_i64(cg, 0), "");
    LLVMValueRef wsrc = LLVMBuildSelect(B, in_chunk, cg_i64(cg, 0),
                                        LLVMBuildAdd(B, cg->f->len, j, ""), "");
    LLVMValueRef src = LLVMBuildSelect(
        B, in_chunk, cg_row(cg, xin, b, safe_pos),
        cg_gep(cg, cg->f32, win, LLVMBuildMul(B, wsrc, cg_i64(cg, ch), "")), "");
    LLVMValueRef dst = cg_gep(cg, cg->f32, win, LLVMBuildMul(B, j, cg_i64(cg, ch), ""));
    c = cg_loop_begin(cg, &lc2, clo, chi, "c");
    cg_store(cg, cg_load(cg, src, c), dst, c);
    cg_loop_end(cg, &lc2);
    cg_loop_end(cg, &lj);
    cg_loop_end(cg, &lb);
}

/* Mamba selective scan (SEMANTICS A.5 step 6), per sequence b, channel c, state n:
 *   h ← exp(Δ_t A[c,n]) h + Δ_t x_t B_t[n],   A = -exp(A_log)
 *   y_t = Σ_n h C_t[n] + D[c] x_t            (fused multiply-adds; see SCAN_PARTIALS)
 * The state h lives in the state slot as [N][C], so that a vector of channels is contiguous.
 * Channels are independent: the main path takes one vector of channels at a time, keeps its
 * N state vectors in registers across the whole chunk and needs no horizontal sums; the
 * channels left over (C not a multiple of the vector width) take the scalar path. */
typedef struct ScanArgs {
    const Node *n, *x, *delta, *bm, *cm;
    const Node *z;                /* fused SiLU gate (y · SiLU(z)), or NULL */
    LLVMValueRef alog, dskip, h;  /* weights and this sequence's state */
    int64_t ch, ns;
    LLVMValueRef b;
} ScanArgs;

/* A[n] of a vector of channels: -exp(A_log[c0 .. c0+vw, n]), gathered from the [C][N] weight. */
static LLVMValueRef scan_a_vector(Cg *cg, const ScanArgs *a, LLVMTypeRef vt, LLVMValueRef c0,
                                  LLVMValueRef n)
{
    LLVMBuilderRef B = cg->b;
    LLVMValueRef lanes = LLVMGetUndef(vt);
    for (unsigned l = 0; l < LLVMGetVectorSize(vt); l++) {
        LLVMValueRef c = cg_iadd(cg, c0, cg_i64(cg, l));
        LLVMValueRef v = cg_load(cg, a->alog, cg_index2(cg, c, a->ns, n));
        lanes = LLVMBuildInsertElement(B, lanes, v, LLVMConstInt(cg->i32, l, 0), "");
    }
    return LLVMBuildFNeg(B, cg_exp(cg, lanes), "A");
}

/* Up to SCAN_REGISTER_STATES states (Mamba uses 16) the group's A and h vectors live in
 * registers (entry-block arrays that SROA promotes) across the chunk. Beyond, h is read and
 * written in the state slot and A recomputed per step: slower, but with no stack in
 * proportion to d_state (the calling thread's stack is the host application's). */
enum { SCAN_REGISTER_STATES = 64, SCAN_PARTIALS = 4 };

static void scan_vector_group(Cg *cg, const ScanArgs *a, LLVMValueRef c0)
{
    LLVMBuilderRef B = cg->b;
    int vw = cg->vector_width;
    int64_t ns = a->ns;
    LLVMTypeRef vt = LLVMVectorType(cg->f32, (unsigned)vw);
    bool in_registers = ns <= SCAN_REGISTER_STATES;
    LLVMTypeRef arr_t = LLVMArrayType2(vt, (uint64_t)(in_registers ? ns : 1));
    LLVMValueRef abuf = in_registers ? cg_entry_alloca(cg, arr_t, "A") : NULL;
    LLVMValueRef hbuf = in_registers ? cg_entry_alloca(cg, arr_t, "h") : NULL;

    if (in_registers) { /* A[n] and h[n] for this group of channels */
        CgLoop ln;
        LLVMValueRef n = cg_loop_begin(cg, &ln, cg_i64(cg, 0), cg_i64(cg, ns), "n");
        LLVMValueRef idx[2] = {LLVMConstInt(cg->i64, 0, 0), n};
        LLVMBuildStore(B, scan_a_vector(cg, a, vt, c0, n), LLVMBuildInBoundsGEP2(B, arr_t, abuf, idx, 2, ""));
        LLVMBuildStore(B, cg_vload(cg, vt, a->h, cg_index2(cg, n, a->ch, c0)),
                       LLVMBuildInBoundsGEP2(B, arr_t, hbuf, idx, 2, ""));
        cg_loop_end(cg, &ln);
    }

    LLVMValueRef dv = cg_vload(cg, vt, a->dskip, c0);
    CgLoop lt;
    LLVMValueRef t = cg_loop_begin(cg, &lt, cg_i64(cg, 0), cg->f->len, "t");
    LLVMValueRef dt = cg_vload(cg, vt, cg_row(cg, a->delta, a->b, t), c0);
    LLVMValueRef xv = cg_vload(cg, vt, cg_row(cg, a->x, a->b, t), c0);
    LLVMValueRef dtx = cg_fmul(cg, dt, xv);
    LLVMValueRef brow = cg_row(cg, a->bm, a->b, t), crow = cg_row(cg, a->cm, a->b, t);
    /* Σ_n h C[n] in SCAN_PARTIALS interleaved partial sums: one chain of fused
     * multiply-adds would make each position wait 16 FMA latencies for the previous. */
    LLVMValueRef yacc[SCAN_PARTIALS];
    int partials = in_registers ? SCAN_PARTIALS : 1;
    for (int i = 0; i < partials; i++) {
        yacc[i] = cg_entry_alloca(cg, vt, "y");
        LLVMBuildStore(B, LLVMConstNull(vt), yacc[i]);
    }
    CgLoop ln2;
    int64_t unrolled = in_registers ? ns : 1;
    LLVMValueRef nloop = in_registers ? NULL : cg_loop_begin(cg, &ln2, cg_i64(cg, 0), cg_i64(cg, ns), "n");
    for (int64_t k = 0; k < unrolled; k++) {
        LLVMValueRef nn = in_registers ? cg_i64(cg, k) : nloop;
        LLVMValueRef at[2] = {LLVMConstInt(cg->i64, 0, 0), nn};
        LLVMValueRef hidx = cg_index2(cg, nn, a->ch, c0);
        LLVMValueRef av = in_registers
                              ? LLVMBuildLoad2(B, vt, LLVMBuildInBoundsGEP2(B, arr_t, abuf, at, 2, ""), "")
                              : scan_a_vector(cg, a, vt, c0, nn);
        LLVMValueRef hprev = in_registers
                                 ? LLVMBuildLoad2(B, vt, LLVMBuildInBoundsGEP2(B, arr_t, hbuf, at, 2, ""), "")
                                 : cg_vload(cg, vt, a->h, hidx);
        /* h ← exp(Δ A) h + Δ x B[n] */
        LLVMValueRef decay = cg_exp(cg, cg_fmul(cg, dt, av));
        LLVMValueRef h = cg_fma(cg, decay, hprev, cg_fmul(cg, dtx, cg_vsplat(cg, vt, cg_load(cg, brow, nn))));
        if (in_registers)
            LLVMBuildStore(B, h, LLVMBuildInBoundsGEP2(B, arr_t, hbuf, at, 2, ""));
        else
            cg_vstore(cg, h, a->h, hidx);
        LLVMValueRef ya = yacc[k % partials];
        LLVMBuildStore(B, cg_fma(cg, h, cg_vsplat(cg, vt, cg_load(cg, crow, nn)), LLVMBuildLoad2(B, vt, ya, "")), ya);
    }
    if (!in_registers) cg_loop_end(cg, &ln2);
    LLVMValueRef y = LLVMBuildLoad2(B, vt, yacc[0], "");
    for (int i = 1; i < partials; i++) y = cg_fadd(cg, y, LLVMBuildLoad2(B, vt, yacc[i], ""));
    y = cg_fma(cg, dv, xv, y); /* y = Σ_n h C[n] + D x */
    if (a->z) y = cg_fmul(cg, y, cg_silu(cg, cg_vload(cg, vt, cg_row(cg, a->z, a->b, t), c0)));
    cg_vstore(cg, y, cg_row(cg, a->n, a->b, t), c0);
    cg_loop_end(cg, &lt);

    if (in_registers) { /* h back to the state slot */
        CgLoop ln3;
        LLVMValueRef n = cg_loop_begin(cg, &ln3, cg_i64(cg, 0), cg_i64(cg, ns), "n");
        LLVMValueRef at[2] = {LLVMConstInt(cg->i64, 0, 0), n};
        LLVMValueRef hv = LLVMBuildLoad2(B, vt, LLVMBuildInBoundsGEP2(B, arr_t, hbuf, at, 2, ""), "");
        cg_vstore(cg, hv, a->h, cg_index2(cg, n, a->ch, c0));
        cg_loop_end(cg, &ln3);
    }
}

/* One channel at a time, for the channels a vector does not fill. */
static void scan_scalar_channel(Cg *cg, const ScanArgs *a, LLVMValueRef c)
{
    LLVMBuilderRef B = cg->b;
    CgLoop ln, lt;
    LLVMValueRef y = cg_var(cg, "y_acc");
    LLVMValueRef t = cg_loop_begin(cg, &lt, cg_i64(cg, 0), cg->f->len, "t");
    LLVMValueRef dt = cg_load(cg, cg_row(cg, a->delta, a->b, t), c);
    LLVMValueRef xv = cg_load(cg, cg_row(cg, a->x, a->b, t), c);
    LLVMValueRef dtx = cg_fmul(cg, dt, xv);
    LLVMValueRef brow = cg_row(cg, a->bm, a->b, t), crow = cg_row(cg, a->cm, a->b, t);
    LLVMBuildStore(B, cg_f32(cg, 0.0), y);
    LLVMValueRef n = cg_loop_begin(cg, &ln, cg_i64(cg, 0), cg_i64(cg, a->ns), "n");
    LLVMValueRef aval = LLVMBuildFNeg(B, cg_exp(cg, cg_load(cg, a->alog, cg_index2(cg, c, a->ns, n))), "A");
    LLVMValueRef hidx = cg_index2(cg, n, a->ch, c);
    /* h ← exp(Δ A) h + Δ x B[n] */
    LLVMValueRef decay = cg_exp(cg, cg_fmul(cg, dt, aval));
    LLVMValueRef h = cg_fma(cg, decay, cg_load(cg, a->h, hidx), cg_fmul(cg, dtx, cg_load(cg, brow, n)));
    cg_store(cg, h, a->h, hidx);
    LLVMBuildStore(B, cg_fma(cg, h, cg_load(cg, crow, n), LLVMBuildLoad2(B, cg->f32, y, "")), y);
    cg_loop_end(cg, &ln);
    LLVMValueRef out = cg_fma(cg, cg_load(cg, a->dskip, c), xv, LLVMBuildLoad2(B, cg->f32, y, ""));
    if (a->z) out = cg_fmul(cg, out, cg_silu(cg, cg_load(cg, cg_row(cg, a->z, a->b, t), c)));
    cg_store(cg, out, cg_row(cg, a->n, a->b, t), c);
    cg_loop_end(cg, &lt);
}

static void emit_selective_scan(Cg *cg, const Node *n)
{
    LLVMBuilderRef B = cg->b;
    const Node *a_log = n->src[2];
    ScanArgs a = {.n = n, .x = n->src[0], .delta = n->src[1], .bm = n->src[3], .cm = n->src[4],
                  .z = n->attr.rec.act == OP_SILU ? n->src[6] : NULL,
                  .alog = cg_weight(cg, a_log), .dskip = cg_weight(cg, n->src[5]),
                  .ch = a_log->type.dim[0], .ns = a_log->type.dim[1]};
    int vw = cg->vector_width;
    int64_t groups = a.ch / vw;
    LLVMValueRef lo, hi;
    cg_split(cg, cg_i64(cg, groups), &lo, &hi);
    CgLoop lb, lg, lc;
    a.b = cg_loop_begin(cg, &lb, cg_i64(cg, 0), cg->f->batch, "b");
    a.h = cg_state(cg, n->attr.rec.state, a.b);
    if (groups > 0) {
        LLVMValueRef g = cg_loop_begin(cg, &lg, lo, hi, "group");
        scan_vector_group(cg, &a, LLVMBuildMul(B, g, cg_i64(cg, vw), "c0"));
        cg_loop_end(cg, &lg);
    }
    if (groups * vw < a.ch) { /* the last thread takes the channels left over */
        LLVMValueRef mine = cg_is_last_thread(cg);
        LLVMValueRef start = LLVMBuildSelect(B, mine, cg_i64(cg, groups * vw), cg_i64(cg, a.ch), "");
        LLVMValueRef c = cg_loop_begin(cg, &lc, start, cg_i64(cg, a.ch), "c");
        scan_scalar_channel(cg, &a, c);
        cg_loop_end(cg, &lc);
    }
    cg_loop_end(cg, &lb);
}

/* The logits already sit in the caller's buffer unless their producer had other readers;
 * then they are copied. */
static void emit_output(Cg *cg, const Node *n)
{
    const Node *src = n->src[0];
    if (src->store.kind == STORE_LOGITS) return;
    int64_t v = ir_type_cols(&n->type);
    Rows r;
    rows_begin(cg, &r);
    LLVMValueRef from = cg_row(cg, src, r.b, r.t), to = cg_row(cg, n, r.b, r.t);
    CgLoop lc;
    LLVMValueRef c = cg_loop_begin(cg, &lc, cg_i64(cg, 0), cg_i64(cg, v), "c");
    cg_store(cg, cg_load(cg, from, c), to, c);
    cg_loop_end(cg, &lc);
    rows_end(cg, &r);
}

bool cg_emit_node(Cg *cg, const Node *n)
{
    switch (n->op) {
    case OP_TOKENS: case OP_WEIGHT: case OP_SLICE:
        return false; /* inputs and views generate no code */
    case OP_EMBED: emit_embed(cg, n); return true;
    case OP_RMSNORM: case OP_LAYERNORM: emit_norm(cg, n); return true;
    case OP_LINEAR: emit_linear(cg, n); return true;
    case OP_HEADWISE: emit_headwise(cg, n); return true;
    case OP_CONCAT: emit_concat(cg, n); return true;
    case OP_SILU: case OP_SOFTPLUS: case OP_GELU: case OP_RELU: case OP_RELU2: case OP_SIGMOID:
    case OP_SELU: case OP_SCALE: case OP_MUL: case OP_ADD: case OP_SOFTCAP:
        emit_elementwise(cg, n);
        return true;
    case OP_CONV1D: emit_conv1d(cg, n); return true;
    case OP_SELECTIVE_SCAN: emit_selective_scan(cg, n); return true;
    case OP_SSD_SCAN: cg_emit_ssd_scan(cg, n); return true;
    case OP_MLSTM_CELL: cg_emit_mlstm_cell(cg, n); return true;
    case OP_SLSTM_CELL: cg_emit_slstm_cell(cg, n); return true;
    case OP_OUTPUT:
        if (n->src[0]->store.kind == STORE_LOGITS) return false;
        emit_output(cg, n);
        return true;
    case OP_COUNT_: break;
    }
    mxc_die("cannot generate code for op %d", (int)n->op);
}
