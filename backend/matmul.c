/* matmul.c - projections as register-tiled, explicitly vectorised loops.
 *
 * out[r, n] = Σ_k x[r, k] · W[n, k]: both operands are contiguous along k, so each output is
 * a dot product. A tile of RT rows × NT outputs keeps RT·NT vector accumulators in
 * registers; every step over k loads RT + NT vectors for RT·NT fused multiply-adds. The
 * output tiles are the outer loop, so a tile's weight rows (NT·K floats) stay in L1 while
 * every row of the chunk streams past them, and each weight is read from memory once per
 * chunk whatever B and T are. Tails (rows, outputs, k not multiples of the tile) fall back
 * to 1-row, 1-output and scalar pieces of the same code. These tiles serve decode steps and
 * short chunks; a call of GEMM_MIN_ROWS rows or more goes to the packed kernel of gemm.c. */
#include <string.h>

#include "backend/codegen.h"

enum { MAX_RT = 4, MAX_NT = 4 };

typedef struct Tile {
    int rt, nt;               /* rows and outputs in this tile */
    LLVMValueRef row0;        /* first flat row index r = b·T + t */
    LLVMValueRef n0;          /* first output inside the part */
    int64_t col0;             /* the part's first column in `out` */
    const MatmulPart *part;
} Tile;

/* Horizontal sums of n vectors of width W (n <= W) into n scalars, with a shuffle tree that
 * reduces all of them together: each level pairs vectors a, b and adds [a.lo, b.lo] to
 * [a.hi, b.hi], halving the partial sums per vector and the number of vectors. After
 * log2(W) levels one vector holds every sum (lane_of[i]: the lane of input i). About
 * 3 instructions per vector instead of ~2·log2(W) for separate reductions: it matters when
 * K is small (Mamba's dt_proj has K = dt_rank = 48, three vector steps per dot product). */
static LLVMValueRef reduce_all(Cg *cg, LLVMValueRef *v, int n, int *lane_of)
{
    LLVMBuilderRef B = cg->b;
    int w = cg->vector_width;
    int count = w;                     /* vectors at this level (padded with zeros) */
    int owner[MAX_RT * MAX_NT * 2][64]; /* owner[vec][lane]: which input the partial sum is of */
    LLVMValueRef cur[64];
    for (int i = 0; i < count; i++) {
        cur[i] = i < n ? v[i] : LLVMConstNull(cg_vec_type(cg));
        for (int l = 0; l < w; l++) owner[i][l] = i;
    }
    for (int width = w; width > 1; width /= 2) {
        int half = width / 2;
        LLVMValueRef lo_mask[64], hi_mask[64];
        /* lanes [0, half) of each of a's `w/width` groups, then b's; likewise the upper halves */
        int groups = w / width;
        for (int g = 0; g < groups; g++)
            for (int l = 0; l < half; l++) {
                lo_mask[g * half + l] = LLVMConstInt(cg->i32, (unsigned)(g * width + l), 0);
                hi_mask[g * half + l] = LLVMConstInt(cg->i32, (unsigned)(g * width + half + l), 0);
                lo_mask[w / 2 + g * half + l] = LLVMConstInt(cg->i32, (unsigned)(w + g * width + l), 0);
                hi_mask[w / 2 + g * half + l] = LLVMConstInt(cg->i32, (unsigned)(w + g * width + half + l), 0);
            }
        int next_owner[64][64];
        for (int i = 0; i < count / 2; i++) {
            LLVMValueRef a = cur[2 * i], b = cur[2 * i + 1];
            LLVMValueRef lo = LLVMBuildShuffleVector(B, a, b, LLVMConstVector(lo_mask, (unsigned)w), "");
            LLVMValueRef hi = LLVMBuildShuffleVector(B, a, b, LLVMConstVector(hi_mask, (unsigned)w), "");
            cur[i] = LLVMBuildFAdd(B, lo, hi, "");
            for (int g = 0; g < groups; g++)
                for (int l = 0; l < half; l++) {
                    next_owner[i][g * half + l] = owner[2 * i][g * width + l];
                    next_owner[i][w / 2 + g * half + l] = owner[2 * i + 1][g * width + l];
                }
        }
        count /= 2;
        for (int i = 0; i < count; i++)
            for (int l = 0; l < w; l++) owner[i][l] = next_owner[i][l];
    }
    for (int l = 0; l < w; l++)
        if (owner[0][l] < n) lane_of[owner[0][l]] = l;
    return cur[0];
}

/* Software prefetch of the weights ahead of a tile's k loop. A tile's NT rows are one
 * contiguous region of NT·K elements, and the tiles of a thread follow each other in memory,
 * so the bytes a thread reads form one long stream; the tile loop, though, walks it as NT
 * interleaved short streams (a 1.5 KB row of in_proj in bf16), which the hardware
 * prefetchers follow poorly: without this, a core streamed 11 GB/s where a plain read loop
 * gets 20. At vector step kk, the tile reads NT·vw elements, so it prefetches the same
 * number of bytes of the stream PREFETCH_AHEAD bytes further on (one hint per 64-byte line,
 * or one per step when a step reads less than a line), into L2 (prefetcht1): hints into L1
 * (prefetcht0) hold its few miss buffers while DRAM answers and gained only 5-10 %; into L2
 * the step took 40-55 % less time. 8 KB ahead or less was slower, 32 KB best for f32. */
enum { PREFETCH_AHEAD = 32768, LINE = 64 };

static int weight_bytes(const Node *w)
{
    switch (w->type.dtype) {
    case DT_BF16: case DT_F16: return 2;
    case DT_Q8: return 1;
    default: return 4;
    }
}

static void prefetch_ahead(Cg *cg, const Tile *t, LLVMValueRef tile_start, LLVMValueRef kk)
{
    LLVMBuilderRef B = cg->b;
    const Node *w = t->part->w;
    int esize = weight_bytes(w);
    int step_bytes = t->nt * cg->vector_width * esize;
    int lines = step_bytes > LINE ? step_bytes / LINE : 1;
    LLVMValueRef at = LLVMBuildAdd(B, tile_start, LLVMBuildMul(B, kk, cg_i64(cg, t->nt), ""), "");
    at = LLVMBuildAdd(B, at, cg_i64(cg, PREFETCH_AHEAD / esize), "pf");
    for (int i = 0; i < lines; i++)
        cg_wprefetch(cg, w, LLVMBuildAdd(B, at, cg_i64(cg, i * LINE / esize), ""));
}

/* The tile's dot products, RT·NT of them (row-major index i·NT + j): as one vector with
 * lane_of[index] (returned) when k is a multiple of the vector width, else NULL and the
 * scalars in `sums`. */
static LLVMValueRef emit_tile_dots(Cg *cg, const Tile *t, LLVMValueRef *xrow, LLVMValueRef *wofs,
                                   int64_t k, LLVMValueRef *sums, int *lane_of)
{
    LLVMBuilderRef B = cg->b;
    int vw = cg->vector_width;
    int64_t kv = k / vw;
    LLVMValueRef acc[MAX_RT * MAX_NT];
    for (int i = 0; i < t->rt * t->nt; i++) {
        acc[i] = cg_entry_alloca(cg, cg_vec_type(cg), "acc");
        LLVMBuildStore(B, LLVMConstNull(cg_vec_type(cg)), acc[i]);
    }
    if (kv > 0) {
        CgLoop lk;
        LLVMValueRef kk = cg_loop_begin_step(cg, &lk, cg_i64(cg, 0), cg_i64(cg, kv * vw), vw, "k");
        LLVMValueRef xv[MAX_RT], wv[MAX_NT];
        for (int i = 0; i < t->rt; i++) xv[i] = cg_vload(cg, cg_vec_type(cg), xrow[i], kk);
        for (int j = 0; j < t->nt; j++)
            wv[j] = cg_wvload(cg, t->part->w, cg_vec_type(cg), LLVMBuildAdd(B, wofs[j], kk, ""));
        prefetch_ahead(cg, t, wofs[0], kk);
        for (int i = 0; i < t->rt; i++)
            for (int j = 0; j < t->nt; j++) {
                LLVMValueRef a = acc[i * t->nt + j];
                LLVMBuildStore(B, cg_fma(cg, xv[i], wv[j], LLVMBuildLoad2(B, cg_vec_type(cg), a, "")), a);
            }
        cg_loop_end(cg, &lk);
    }
    /* All RT·NT horizontal sums at once (see reduce_all), then the k tail. */
    LLVMValueRef vecs[MAX_RT * MAX_NT];
    for (int i = 0; i < t->rt * t->nt; i++) vecs[i] = LLVMBuildLoad2(B, cg_vec_type(cg), acc[i], "");
    LLVMValueRef all = reduce_all(cg, vecs, t->rt * t->nt, lane_of);
    if (kv * vw == k) return all;
    for (int i = 0; i < t->rt * t->nt; i++)
        sums[i] = LLVMBuildExtractElement(B, all, LLVMConstInt(cg->i32, (unsigned)lane_of[i], 0), "");
    for (int i = 0; i < t->rt; i++)
        for (int j = 0; j < t->nt; j++) {
            LLVMValueRef s = sums[i * t->nt + j];
            for (int64_t kk = kv * vw; kk < k; kk++) { /* fewer than vw steps, unrolled */
                LLVMValueRef p = LLVMBuildFMul(B, cg_load(cg, xrow[i], cg_i64(cg, kk)),
                                               cg_wload(cg, t->part->w, LLVMBuildAdd(B, wofs[j], cg_i64(cg, kk), "")), "");
                s = LLVMBuildFAdd(B, s, p, "");
            }
            sums[i * t->nt + j] = s;
        }
    return NULL;
}

static void emit_tile(Cg *cg, const Matmul *mm, const Tile *t, int64_t k)
{
    LLVMBuilderRef B = cg->b;
    LLVMValueRef xrow[MAX_RT], orow[MAX_RT], rrow[MAX_RT], wofs[MAX_NT];
    for (int i = 0; i < t->rt; i++) {
        LLVMValueRef r = LLVMBuildAdd(B, t->row0, cg_i64(cg, i), "");
        xrow[i] = cg_row_flat(cg, mm->x, r);
        orow[i] = cg_row_flat(cg, mm->out, r);
        rrow[i] = mm->residual ? cg_row_flat(cg, mm->residual, r) : NULL;
    }
    for (int j = 0; j < t->nt; j++) { /* weight rows, as element offsets (wload.c) */
        LLVMValueRef n = LLVMBuildAdd(B, t->n0, cg_i64(cg, j), "");
        wofs[j] = LLVMBuildMul(B, n, cg_i64(cg, k), "");
    }
    LLVMValueRef sums[MAX_RT * MAX_NT];
    int lane_of[MAX_RT * MAX_NT];
    LLVMValueRef all = emit_tile_dots(cg, t, xrow, wofs, k, sums, lane_of);
    if (all && (mm->act == OP_COUNT_ || cg_unary_vectorizes(mm->act))) {
        /* bias and activation on every sum of the tile at once */
        if (t->part->bias) {
            LLVMValueRef bias = LLVMGetUndef(cg_vec_type(cg));
            for (int l = 0; l < cg->vector_width; l++) bias = LLVMBuildInsertElement(B, bias, cg_f32(cg, 0.0), LLVMConstInt(cg->i32, (unsigned)l, 0), "");
            for (int i = 0; i < t->rt * t->nt; i++) {
                LLVMValueRef n = LLVMBuildAdd(B, t->n0, cg_i64(cg, i % t->nt), "");
                bias = LLVMBuildInsertElement(B, bias, cg_load(cg, cg_weight(cg, t->part->bias), n),
                                              LLVMConstInt(cg->i32, (unsigned)lane_of[i], 0), "");
            }
            all = LLVMBuildFAdd(B, all, bias, "");
        }
        if (mm->act != OP_COUNT_) all = cg_unary(cg, mm->act, all);
        for (int i = 0; i < t->rt; i++)
            for (int j = 0; j < t->nt; j++) {
                LLVMValueRef col = LLVMBuildAdd(B, LLVMBuildAdd(B, t->n0, cg_i64(cg, j), ""), cg_i64(cg, t->col0), "col");
                LLVMValueRef v = LLVMBuildExtractElement(B, all, LLVMConstInt(cg->i32, (unsigned)lane_of[i * t->nt + j], 0), "");
                if (rrow[i]) v = LLVMBuildFAdd(B, cg_load(cg, rrow[i], col), v, "");
                cg_store(cg, v, orow[i], col);
            }
        return;
    }
    if (all)
        for (int i = 0; i < t->rt * t->nt; i++)
            sums[i] = LLVMBuildExtractElement(B, all, LLVMConstInt(cg->i32, (unsigned)lane_of[i], 0), "");
    for (int j = 0; j < t->nt; j++) {
        LLVMValueRef n = LLVMBuildAdd(B, t->n0, cg_i64(cg, j), "");
        LLVMValueRef col = LLVMBuildAdd(B, n, cg_i64(cg, t->col0), "col");
        LLVMValueRef bias = t->part->bias ? cg_load(cg, cg_weight(cg, t->part->bias), n) : NULL;
        for (int i = 0; i < t->rt; i++) {
            LLVMValueRef v = sums[i * t->nt + j];
            if (bias) v = LLVMBuildFAdd(B, v, bias, "");
            if (mm->act != OP_COUNT_) v = cg_unary(cg, mm->act, v);
            if (rrow[i]) v = LLVMBuildFAdd(B, cg_load(cg, rrow[i], col), v, "");
            cg_store(cg, v, orow[i], col);
        }
    }
}

/* All rows for outputs [n0, n0 + nt): full row tiles, then single rows. */
static void emit_rows(Cg *cg, const Matmul *mm, Tile t, int rt, int64_t k)
{
    LLVMBuilderRef B = cg->b;
    LLVMValueRef rows = LLVMBuildMul(B, cg->f->batch, cg->f->len, "rows");
    LLVMValueRef full = LLVMBuildMul(B, LLVMBuildUDiv(B, rows, cg_i64(cg, rt), ""), cg_i64(cg, rt), "");
    CgLoop lr, lr1;
    t.rt = rt;
    t.row0 = cg_loop_begin_step(cg, &lr, cg_i64(cg, 0), full, rt, "r");
    emit_tile(cg, mm, &t, k);
    cg_loop_end(cg, &lr);
    if (rt > 1) {
        t.rt = 1;
        t.row0 = cg_loop_begin(cg, &lr1, full, rows, "r1");
        emit_tile(cg, mm, &t, k);
        cg_loop_end(cg, &lr1);
    }
}

/* Outputs [first, n) of one part as dot-product tiles. Threads split the output tiles: a
 * thread reads only its own weight rows, which is what decode (bound by memory bandwidth)
 * needs. The partial last tile, if any, goes to the last thread, whose share always reaches
 * the end. */
static void emit_dot_part(Cg *cg, const Matmul *mm, const MatmulPart *part, int64_t col0,
                          int64_t first)
{
    LLVMBuilderRef B = cg->b;
    int64_t k = ir_type_cols(&mm->x->type);
    int nt = cg->vector_width >= 16 ? 4 : 2; /* accumulators must fit the register file */
    int rt = cg->vector_width / nt < MAX_RT ? cg->vector_width / nt : MAX_RT; /* rt·nt <= vw */
    int64_t n = part->w->type.dim[0], full_tiles = (n - first) / nt, tiles = (n - first + nt - 1) / nt;
    LLVMValueRef lo, hi;
    cg_split(cg, cg_i64(cg, tiles), &lo, &hi);
    Tile t = {.nt = nt, .col0 = col0, .part = part};
    if (full_tiles > 0) {
        CgLoop ln;
        LLVMValueRef end = LLVMBuildSelect(
            B, LLVMBuildICmp(B, LLVMIntSLT, hi, cg_i64(cg, full_tiles), ""), hi,
            cg_i64(cg, full_tiles), "");
        LLVMValueRef tile = cg_loop_begin(cg, &ln, lo, end, "tile");
        t.n0 = LLVMBuildAdd(B, LLVMBuildMul(B, tile, cg_i64(cg, nt), ""), cg_i64(cg, first), "n0");
        emit_rows(cg, mm, t, rt, k);
        cg_loop_end(cg, &ln);
    }
    if (full_tiles < tiles) {
        CgLoop ln1;
        LLVMValueRef mine = cg_is_last_thread(cg);
        LLVMValueRef start = LLVMBuildSelect(B, mine, cg_i64(cg, first + full_tiles * nt), cg_i64(cg, n), "");
        t.nt = 1;
        t.n0 = cg_loop_begin(cg, &ln1, start, cg_i64(cg, n), "n1");
        emit_rows(cg, mm, t, rt, k);
        cg_loop_end(cg, &ln1);
    }
}

/* A chunk of at least GEMM_MIN_ROWS rows goes to the packed kernel of gemm.c, which leaves
 * the last few outputs of a part (fewer than a vector) to the dot-product tiles; decode
 * steps and short chunks use the tiles alone, which read every weight exactly once. */
void cg_emit_matmul(Cg *cg, const Matmul *mm)
{
    LLVMBuilderRef B = cg->b;
    LLVMValueRef rows = LLVMBuildMul(B, cg->f->batch, cg->f->len, "rows");
    int64_t col0 = 0;
    for (int p = 0; p < mm->n_parts; p++) {
        const MatmulPart *part = &mm->parts[p];
        int64_t n = part->w->type.dim[0];
        if (cg_gemm_applies(cg, part)) {
            LLVMBasicBlockRef packed = LLVMAppendBasicBlockInContext(cg->ctx, cg->f->fn, "gemm");
            LLVMBasicBlockRef tiles = LLVMAppendBasicBlockInContext(cg->ctx, cg->f->fn, "dots");
            LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(cg->ctx, cg->f->fn, "matmul.done");
            LLVMBuildCondBr(B, LLVMBuildICmp(B, LLVMIntSGE, rows, cg_i64(cg, GEMM_MIN_ROWS), ""),
                            packed, tiles);
            LLVMPositionBuilderAtEnd(B, packed);
            int64_t covered = cg_emit_gemm_part(cg, mm, part, col0);
            if (covered < n) emit_dot_part(cg, mm, part, col0, covered);
            LLVMBuildBr(B, done);
            LLVMPositionBuilderAtEnd(B, tiles);
            emit_dot_part(cg, mm, part, col0, 0);
            LLVMBuildBr(B, done);
            LLVMPositionBuilderAtEnd(B, done);
        } else {
            emit_dot_part(cg, mm, part, col0, 0);
        }
        col0 += n;
    }
}
