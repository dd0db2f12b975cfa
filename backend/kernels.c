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
    cg_split(cg, LLVMBuildMul(cg->b, cg->batch, cg->len, "rows"), &lo, &hi);
    LLVMValueRef row = cg_loop_begin(cg, &r->lr, lo, hi, "r");
    cg_row_bt(cg, row, &r->b, &r->t);
}

static void rows_end(Cg *cg, Rows *r) { cg_loop_end(cg, &r->lr); }

/* Σ_k x[k] * w[k] over n elements, reassociable so that it vectorises. */
static LLVMValueRef emit_dot(Cg *cg, LLVMValueRef x, LLVMValueRef w, int64_t n)
{
    LLVMValueRef acc = cg_var(cg, "acc");
    LLVMBuildStore(cg->b, cg_f32(cg, 0.0), acc);
    CgLoop lk;
    LLVMValueRef k = cg_loop_begin(cg, &lk, cg_i64(cg, 0), cg_i64(cg, n), "k");
    LLVMValueRef prod = cg_fmul_reduce(cg, cg_load(cg, x, k), cg_load(cg, w, k));
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
    LLVMValueRef src = cg_gep(cg, cg->f32, cg_weight(cg, table), base);
    LLVMValueRef dst = cg_row(cg, n, r.b, r.t);
    CgLoop lc;
    LLVMValueRef c = cg_loop_begin(cg, &lc, cg_i64(cg, 0), cg_i64(cg, d), "c");
    cg_store(cg, cg_load(cg, src, c), dst, c);
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
    int64_t groups = layer ? n->attr.norm.groups : 1, gs = d / groups;
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

/* y = x Wᵀ (+ bias): see matmul.c. */
static void emit_linear(Cg *cg, const Node *n)
{
    Matmul mm = {.x = n->src[0], .out = n, .n_parts = 1, .act = OP_COUNT_};
    mm.parts[0] = (MatmulPart){n->src[1], n->n_src > 2 ? n->src[2] : NULL};
    cg_emit_matmul(cg, &mm);
}

/* Block-diagonal linear (xLSTM LinearHeadwiseExpand): head h maps columns
 * [h*in, (h+1)*in) to [h*out, (h+1)*out) with its own W[h] [out, in] (+ bias). */
static void emit_headwise(Cg *cg, const Node *n)
{
    const Node *w = n->src[1];
    int64_t heads = w->type.dim[0], out = w->type.dim[1], in = w->type.dim[2];
    LLVMValueRef wp = cg_weight(cg, w);
    LLVMValueRef bias = n->n_src > 2 ? cg_weight(cg, n->src[2]) : NULL;
    Rows r;
    rows_begin(cg, &r);
    LLVMValueRef x = cg_row(cg, n->src[0], r.b, r.t), y = cg_row(cg, n, r.b, r.t);
    CgLoop lh, lo;
    LLVMValueRef h = cg_loop_begin(cg, &lh, cg_i64(cg, 0), cg_i64(cg, heads), "h");
    LLVMValueRef xh = cg_gep(cg, cg->f32, x, LLVMBuildMul(cg->b, h, cg_i64(cg, in), ""));
    LLVMValueRef o = cg_loop_begin(cg, &lo, cg_i64(cg, 0), cg_i64(cg, out), "o");
    LLVMValueRef col = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, h, cg_i64(cg, out), ""), o, "col");
    LLVMValueRef wrow = cg_gep(cg, cg->f32, wp, LLVMBuildMul(cg->b, col, cg_i64(cg, in), ""));
    LLVMValueRef acc = emit_dot(cg, xh, wrow, in);
    if (bias) acc = LLVMBuildFAdd(cg->b, acc, cg_load(cg, bias, col), "");
    cg_store(cg, acc, y, col);
    cg_loop_end(cg, &lo);
    cg_loop_end(cg, &lh);
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
    LLVMValueRef x = cg_load(cg, a, c), v = NULL;
    switch (n->op) {
    case OP_SCALE:
    case OP_MUL: v = LLVMBuildFMul(cg->b, x, cg_load(cg, bsrc, c), ""); break;
    case OP_ADD: v = LLVMBuildFAdd(cg->b, x, cg_load(cg, bsrc, c), ""); break;
    case OP_SILU: case OP_SOFTPLUS: case OP_GELU: case OP_RELU: case OP_RELU2: case OP_SIGMOID:
    case OP_SELU:
        v = cg_unary(cg, n->op, x);
        break;
    case OP_TOKENS: case OP_WEIGHT: case OP_EMBED: case OP_RMSNORM: case OP_LAYERNORM:
    case OP_LINEAR: case OP_HEADWISE: case OP_SLICE: case OP_CONCAT: case OP_CONV1D:
    case OP_SELECTIVE_SCAN: case OP_MLSTM_CELL: case OP_SLSTM_CELL: case OP_OUTPUT:
    case OP_COUNT_:
        mxc_die("%s is not elementwise", ir_op_name(n->op));
    }
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
    LLVMValueRef b = cg_loop_begin(cg, &lb, cg_i64(cg, 0), cg->batch, "b");
    LLVMValueRef win = cg_state(cg, n->attr.rec.state, b);
    LLVMValueRef t = cg_loop_begin(cg, &lt, cg_i64(cg, 0), cg->len, "t");
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
    cg_store(cg, acc, y, c);
    cg_loop_end(cg, &lc);
    cg_loop_end(cg, &lt);
    free(tap);

    /* Window row j becomes element T + j of [window, chunk inputs]; ascending j only reads
     * rows above the one it writes. */
    CgLoop lj, lc2;
    LLVMValueRef j = cg_loop_begin(cg, &lj, cg_i64(cg, 0), cg_i64(cg, kw - 1), "j");
    LLVMValueRef pos = LLVMBuildAdd(B, LLVMBuildAdd(B, cg->len, j, ""), cg_i64(cg, -(kw - 1)), "");
    LLVMValueRef in_chunk = LLVMBuildICmp(B, LLVMIntSGE, pos, cg_i64(cg, 0), "");
    LLVMValueRef safe_pos = LLVMBuildSelect(B, in_chunk, pos, cg_i64(cg, 0), "");
    LLVMValueRef wsrc = LLVMBuildSelect(B, in_chunk, cg_i64(cg, 0),
                                        LLVMBuildAdd(B, cg->len, j, ""), "");
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
 *   h ← exp(Δ_t A[c,n]) h + Δ_t B_t[n] x_t,   A = -exp(A_log)
 *   y_t = Σ_n h C_t[n] + D[c] x_t
 * The state h[c][n] lives in the state slot. The loop order (c, n outer, t inner) keeps
 * one h in a register across the whole chunk; y is accumulated over n in order. */
static void emit_selective_scan(Cg *cg, const Node *n)
{
    const Node *x = n->src[0], *delta = n->src[1], *a_log = n->src[2];
    const Node *bm = n->src[3], *cm = n->src[4], *dskip = n->src[5];
    int64_t ch = a_log->type.dim[0], ns = a_log->type.dim[1];
    LLVMValueRef alog_p = cg_weight(cg, a_log), d_p = cg_weight(cg, dskip);
    LLVMBuilderRef B = cg->b;

    LLVMValueRef clo, chi;
    cg_split(cg, cg_i64(cg, ch), &clo, &chi);
    CgLoop lb, lc, ln, lt, lt2;
    LLVMValueRef b = cg_loop_begin(cg, &lb, cg_i64(cg, 0), cg->batch, "b");
    LLVMValueRef hbase = cg_state(cg, n->attr.rec.state, b);
    LLVMValueRef c = cg_loop_begin(cg, &lc, clo, chi, "c");
    /* y starts at 0; each state n adds its h·C in turn. */
    LLVMValueRef t = cg_loop_begin(cg, &lt, cg_i64(cg, 0), cg->len, "t");
    cg_store(cg, cg_f32(cg, 0.0), cg_row(cg, n, b, t), c);
    cg_loop_end(cg, &lt);

    LLVMValueRef h = cg_var(cg, "h");
    LLVMValueRef k = cg_loop_begin(cg, &ln, cg_i64(cg, 0), cg_i64(cg, ns), "n");
    LLVMValueRef cn = LLVMBuildAdd(B, LLVMBuildMul(B, c, cg_i64(cg, ns), ""), k, "cn");
    LLVMValueRef a = LLVMBuildFNeg(B, cg_exp(cg, cg_load(cg, alog_p, cn)), "A");
    LLVMBuildStore(B, cg_load(cg, hbase, cn), h);
    t = cg_loop_begin(cg, &lt2, cg_i64(cg, 0), cg->len, "t");
    LLVMValueRef dt = cg_load(cg, cg_row(cg, delta, b, t), c);
    LLVMValueRef xv = cg_load(cg, cg_row(cg, x, b, t), c);
    LLVMValueRef bv = cg_load(cg, cg_row(cg, bm, b, t), k);
    LLVMValueRef cv = cg_load(cg, cg_row(cg, cm, b, t), k);
    LLVMValueRef decay = cg_exp(cg, LLVMBuildFMul(B, dt, a, ""));
    LLVMValueRef input = LLVMBuildFMul(B, LLVMBuildFMul(B, dt, bv, ""), xv, "");
    LLVMValueRef hv = LLVMBuildFAdd(B, LLVMBuildFMul(B, decay, LLVMBuildLoad2(B, cg->f32, h, ""), ""),
                                    input, "h");
    LLVMBuildStore(B, hv, h);
    LLVMValueRef yp = cg_row(cg, n, b, t);
    cg_store(cg, LLVMBuildFAdd(B, cg_load(cg, yp, c), LLVMBuildFMul(B, hv, cv, ""), ""), yp, c);
    cg_loop_end(cg, &lt2);
    cg_store(cg, LLVMBuildLoad2(B, cg->f32, h, ""), hbase, cn);
    cg_loop_end(cg, &ln);

    LLVMValueRef dv = cg_load(cg, d_p, c);
    LLVMValueRef t3 = cg_loop_begin(cg, &lt, cg_i64(cg, 0), cg->len, "t");
    LLVMValueRef yp3 = cg_row(cg, n, b, t3);
    LLVMValueRef xv3 = cg_load(cg, cg_row(cg, x, b, t3), c);
    cg_store(cg, LLVMBuildFAdd(B, cg_load(cg, yp3, c), LLVMBuildFMul(B, dv, xv3, ""), ""), yp3, c);
    cg_loop_end(cg, &lt);
    cg_loop_end(cg, &lc);
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
    case OP_SELU: case OP_SCALE: case OP_MUL: case OP_ADD:
        emit_elementwise(cg, n);
        return true;
    case OP_CONV1D: emit_conv1d(cg, n); return true;
    case OP_SELECTIVE_SCAN: emit_selective_scan(cg, n); return true;
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
