/* tile.c - register-tiled products of small matrices (tile.h).
 *
 * A row tile of MR rows of C against a column panel of up to NV vectors is kept in MR x NV
 * vector accumulators; each k step loads the panel's NV vectors of B's row k, broadcasts
 * MR elements of A's column k and issues MR·NV fused multiply-adds (an outer product, as in
 * gemm.c, but on operands that are already in cache: no weight packing, run-time sizes, and
 * the causal and scaling hooks of the chunked scans). Column panels narrower than a vector
 * at a constant edge use narrower vectors (8, 4, 2, 1 floats), so no element outside C's
 * n columns is touched unless the caller allows it (pad_n). */
#include "backend/tile.h"

enum { MAX_MR = 12, MAX_NV = 8 };

typedef struct Panel {
    int nv;
    int width[MAX_NV];  /* floats of each vector; offsets follow from the widths */
} Panel;

typedef struct Tp {
    const TileProduct *p;
    int vw;
    LLVMValueRef b, brs;  /* B as the kernel reads it: row k at b + k·brs (packed or given) */
    LLVMValueRef one;     /* i64 1 */
} Tp;

static LLVMValueRef imin(Cg *cg, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, a, b, ""), a, b, "");
}

static LLVMValueRef imul(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildMul(cg->b, a, b, ""); }

static LLVMValueRef round_up(Cg *cg, LLVMValueRef v, int64_t m)
{
    return LLVMBuildAnd(cg->b, cg_iadd(cg, v, cg_i64(cg, m - 1)), cg_i64(cg, ~(m - 1)), "");
}

/* Registers: MR·NV accumulators + NV B vectors + a broadcast. */
static int vector_regs(const Tp *t) { return t->vw >= 16 ? 32 : 16; }
static int panel_vectors(const Tp *t) { return t->vw >= 16 ? 4 : 2; }
static int micro_rows(const Tp *t)
{
    int nv = panel_vectors(t), mr = (vector_regs(t) - nv - 1) / nv;
    return mr > MAX_MR ? MAX_MR : mr;
}

/* Transposes the vw x vw block v[0..vw) (v[r] lane c = element (r, c)) in registers: at the
 * stage of distance d, rows r and r + d (r's bit d clear) exchange their lanes with bit d
 * set / clear, so after log2(vw) stages lane c of row r holds the old (c, r). */
static void transpose_block(Cg *cg, LLVMValueRef *v, int vw)
{
    for (int d = 1; d < vw; d *= 2) {
        LLVMValueRef lo[64], hi[64];
        for (int c = 0; c < vw; c++) {
            /* lane c of the new row r: from r if c's bit d is clear, else from r + d */
            lo[c] = LLVMConstInt(cg->i32, (unsigned)((c & d) ? vw + c - d : c), 0);
            hi[c] = LLVMConstInt(cg->i32, (unsigned)((c & d) ? vw + c : c + d), 0);
        }
        LLVMValueRef mlo = LLVMConstVector(lo, (unsigned)vw), mhi = LLVMConstVector(hi, (unsigned)vw);
        for (int r = 0; r < vw; r++) {
            if (r & d) continue;
            LLVMValueRef x = v[r], y = v[r + d];
            v[r] = LLVMBuildShuffleVector(cg->b, x, y, mlo, "");
            v[r + d] = LLVMBuildShuffleVector(cg->b, x, y, mhi, "");
        }
    }
}

void cg_emit_tile_transpose(Cg *cg, TileMat dst, TileMat src, LLVMValueRef rows, LLVMValueRef cols)
{
    LLVMBuilderRef B = cg->b;
    int vw = cg->vector_width;
    LLVMValueRef zero = cg_i64(cg, 0), mask = cg_i64(cg, ~(int64_t)(vw - 1));
    bool unit = LLVMIsAConstantInt(src.cs) && LLVMConstIntGetSExtValue(src.cs) == 1 &&
                LLVMIsAConstantInt(dst.cs) && LLVMConstIntGetSExtValue(dst.cs) == 1 && vw <= 64;
    LLVMValueRef rfull = unit ? LLVMBuildAnd(B, rows, mask, "") : zero;
    LLVMValueRef cfull = unit ? LLVMBuildAnd(B, cols, mask, "") : zero;
    CgLoop li, lj;
    if (unit) { /* whole vw x vw blocks through the registers */
        LLVMTypeRef vt = cg_vec_type(cg);
        LLVMValueRef i0 = cg_loop_begin_step(cg, &li, zero, rfull, vw, "tr.i");
        LLVMValueRef j0 = cg_loop_begin_step(cg, &lj, zero, cfull, vw, "tr.j");
        LLVMValueRef v[64];
        for (int r = 0; r < vw; r++)
            v[r] = cg_vload(cg, vt, cg_gep(cg, cg->f32, src.base, imul(cg, cg_iadd(cg, i0, cg_i64(cg, r)), src.rs)), j0);
        transpose_block(cg, v, vw);
        for (int c = 0; c < vw; c++)
            cg_vstore(cg, v[c], cg_gep(cg, cg->f32, dst.base, imul(cg, cg_iadd(cg, j0, cg_i64(cg, c)), dst.rs)), i0);
        cg_loop_end(cg, &lj);
        cg_loop_end(cg, &li);
    }
    /* the edges element by element: columns past cfull of the block rows, then the rows past rfull */
    for (int part = 0; part < 2; part++) {
        LLVMValueRef i = cg_loop_begin(cg, &li, part ? rfull : zero, part ? rows : rfull, "tr.ei");
        LLVMValueRef j = cg_loop_begin(cg, &lj, part ? zero : cfull, cols, "tr.ej");
        LLVMValueRef e = cg_load(cg, src.base, cg_iadd(cg, imul(cg, i, src.rs), imul(cg, j, src.cs)));
        cg_store(cg, e, dst.base, cg_iadd(cg, imul(cg, j, dst.rs), imul(cg, i, dst.cs)));
        cg_loop_end(cg, &lj);
        cg_loop_end(cg, &li);
    }
}

/* pack[k][j] = Bᵀ[j][k] for k < K, j < n; zeros in [n, round_up(n, vw)) so that padded
 * columns compute finite values from initialised memory. With Bᵀ's rows contiguous (cs 1)
 * vw x vw blocks go through the registers transposed (scatters or scalar stores would cost
 * as much as the product), the k tail and strided rows element by element. */
static void pack_transposed(Cg *cg, Tp *t)
{
    LLVMBuilderRef B = cg->b;
    const TileProduct *p = t->p;
    int vw = t->vw;
    int64_t width = (p->n_max + vw - 1) / vw * vw;
    LLVMValueRef buf = cg_entry_alloca(cg, LLVMArrayType2(cg->f32, (uint64_t)(width * p->k_max)), "tile.pack");
    LLVMSetAlignment(buf, 64);
    LLVMValueRef npad = round_up(cg, p->n, vw), zero = cg_i64(cg, 0);
    LLVMValueRef last_row = LLVMBuildSub(B, p->n, t->one, "");
    bool blocks = LLVMIsAConstantInt(p->b.cs) && LLVMConstIntGetSExtValue(p->b.cs) == 1 && vw <= 64;
    LLVMValueRef kfull = blocks ? LLVMBuildAnd(B, p->k, cg_i64(cg, ~(int64_t)(vw - 1)), "") : zero;
    CgLoop lj, lk, lt;
    LLVMValueRef j0 = cg_loop_begin_step(cg, &lj, zero, npad, vw, "pack.j");
    LLVMValueRef src[64], inside[64];
    for (int r = 0; r < vw; r++) {
        LLVMValueRef j = cg_iadd(cg, j0, cg_i64(cg, r));
        inside[r] = LLVMBuildICmp(B, LLVMIntSLT, j, p->n, "");
        src[r] = cg_gep(cg, cg->f32, p->b.base, imul(cg, imin(cg, j, last_row), p->b.rs));
    }
    if (blocks) {
        LLVMTypeRef vt = cg_vec_type(cg);
        LLVMValueRef k0 = cg_loop_begin_step(cg, &lk, zero, kfull, vw, "pack.k");
        LLVMValueRef v[64];
        for (int r = 0; r < vw; r++)
            v[r] = LLVMBuildSelect(B, inside[r], cg_vload(cg, vt, src[r], k0), LLVMConstNull(vt), "");
        transpose_block(cg, v, vw);
        for (int c = 0; c < vw; c++)
            cg_vstore(cg, v[c], buf, cg_index2(cg, cg_iadd(cg, k0, cg_i64(cg, c)), width, j0));
        cg_loop_end(cg, &lk);
    }
    LLVMValueRef k = cg_loop_begin(cg, &lt, kfull, p->k, "pack.kt");
    for (int r = 0; r < vw; r++) {
        LLVMValueRef e = LLVMBuildSelect(B, inside[r], cg_load(cg, src[r], imul(cg, k, p->b.cs)), cg_f32(cg, 0.0), "");
        cg_store(cg, e, buf, cg_iadd(cg, cg_index2(cg, k, width, j0), cg_i64(cg, r)));
    }
    cg_loop_end(cg, &lt);
    cg_loop_end(cg, &lj);
    t->b = buf;
    t->brs = cg_i64(cg, width);
}

/* Rows [i0, i0 + mr) x columns [n0, n0 + panel) of C over k < k_end. */
static void emit_micro(Cg *cg, const Tp *t, LLVMValueRef i0, int mr, LLVMValueRef n0,
                       const Panel *pn, LLVMValueRef k_end)
{
    LLVMBuilderRef B = cg->b;
    const TileProduct *p = t->p;
    LLVMTypeRef vt[MAX_NV];
    LLVMValueRef acc[MAX_MR][MAX_NV], arow[MAX_MR], crow[MAX_MR], col[MAX_NV];
    int64_t off = 0;
    for (int h = 0; h < pn->nv; h++) {
        vt[h] = LLVMVectorType(cg->f32, (unsigned)pn->width[h]);
        col[h] = cg_iadd(cg, n0, cg_i64(cg, off));
        off += pn->width[h];
    }
    for (int i = 0; i < mr; i++) {
        LLVMValueRef r = cg_iadd(cg, i0, cg_i64(cg, i));
        arow[i] = cg_gep(cg, cg->f32, p->a.base, imul(cg, r, p->a.rs));
        crow[i] = cg_gep(cg, cg->f32, p->c.base, imul(cg, r, p->c.rs));
        for (int h = 0; h < pn->nv; h++) {
            acc[i][h] = cg_entry_alloca(cg, vt[h], "tile.acc");
            LLVMBuildStore(B, LLVMConstNull(vt[h]), acc[i][h]);
        }
    }
    CgLoop lk;
    LLVMValueRef k = cg_loop_begin(cg, &lk, cg_i64(cg, 0), k_end, "tile.k");
    LLVMValueRef brow = cg_gep(cg, cg->f32, t->b, imul(cg, k, t->brs));
    LLVMValueRef bv[MAX_NV];
    LLVMValueRef ks = p->k_scale ? cg_load(cg, p->k_scale, k) : NULL;
    for (int h = 0; h < pn->nv; h++) { /* the scale on B's row: NV products, not MR */
        bv[h] = cg_vload(cg, vt[h], brow, col[h]);
        if (ks) bv[h] = cg_fmul(cg, bv[h], cg_vsplat(cg, vt[h], ks));
    }
    LLVMValueRef acol = imul(cg, k, p->a.cs);
    for (int i = 0; i < mr; i++) {
        LLVMValueRef a = cg_load(cg, arow[i], acol);
        for (int h = 0; h < pn->nv; h++) {
            LLVMValueRef s = cg_vsplat(cg, vt[h], a);
            LLVMBuildStore(B, cg_fma(cg, s, bv[h], LLVMBuildLoad2(B, vt[h], acc[i][h], "")), acc[i][h]);
        }
    }
    cg_loop_end(cg, &lk);

    for (int i = 0; i < mr; i++) {
        LLVMValueRef rsc = p->row_scale ? cg_load(cg, p->row_scale, cg_iadd(cg, i0, cg_i64(cg, i))) : NULL;
        for (int h = 0; h < pn->nv; h++) {
            LLVMValueRef v = LLVMBuildLoad2(B, vt[h], acc[i][h], "");
            if (rsc) v = cg_fmul(cg, v, cg_vsplat(cg, vt[h], rsc));
            if (p->accumulate) {
                LLVMValueRef old = cg_vload(cg, vt[h], crow[i], col[h]);
                v = p->c_scale ? cg_fma(cg, cg_vsplat(cg, vt[h], p->c_scale), old, v) : cg_fadd(cg, old, v);
            }
            cg_vstore(cg, v, crow[i], col[h]);
        }
    }
}

/* A loop over column panels [start, end) in steps of one panel. */
static LLVMValueRef panels(Cg *cg, const Tp *t, LLVMValueRef i0, int mr, LLVMValueRef start,
                           LLVMValueRef end, const Panel *pn, LLVMValueRef k_end)
{
    int64_t w = 0;
    for (int h = 0; h < pn->nv; h++) w += pn->width[h];
    LLVMValueRef full = cg_iadd(cg, start, imul(cg, LLVMBuildSDiv(cg->b, LLVMBuildSub(cg->b, end, start, ""),
                                                              cg_i64(cg, w), ""), cg_i64(cg, w)));
    CgLoop l;
    LLVMValueRef n0 = cg_loop_begin_step(cg, &l, start, full, w, "tile.n");
    emit_micro(cg, t, i0, mr, n0, pn, k_end);
    cg_loop_end(cg, &l);
    return full;
}

/* All of C's columns for rows [i0, i0 + mr). */
static void emit_row_tile(Cg *cg, const Tp *t, LLVMValueRef i0, int mr)
{
    const TileProduct *p = t->p;
    int vw = t->vw, nv = panel_vectors(t);
    LLVMValueRef last = cg_iadd(cg, i0, cg_i64(cg, mr)); /* one past the tile's last row */
    LLVMValueRef k_end = p->lower_a ? imin(cg, p->k, last) : p->k;
    Panel wide = {.nv = nv}, one = {.nv = 1, .width = {vw}};
    for (int h = 0; h < nv; h++) wide.width[h] = vw;
    if (p->pad_n || p->lower_c || !LLVMIsAConstantInt(p->n)) {
        LLVMValueRef n = p->lower_c ? imin(cg, p->n, last) : p->n;
        LLVMValueRef npad = round_up(cg, n, vw);
        LLVMValueRef at = panels(cg, t, i0, mr, cg_i64(cg, 0), npad, &wide, k_end);
        panels(cg, t, i0, mr, at, npad, &one, k_end);
        return;
    }
    /* constant n: whole panels, then one panel of the rest, narrower vectors at the edge */
    int64_t n = LLVMConstIntGetSExtValue(p->n), step = (int64_t)nv * vw, whole = n / step * step;
    if (whole > 0) panels(cg, t, i0, mr, cg_i64(cg, 0), cg_i64(cg, whole), &wide, k_end);
    Panel rest = {.nv = 0};
    int64_t left = n - whole;
    for (int w = vw; w >= 1; w /= 2)
        while (left >= w && rest.nv < MAX_NV) {
            rest.width[rest.nv++] = w;
            left -= w;
        }
    if (rest.nv > 0) emit_micro(cg, t, i0, mr, cg_i64(cg, whole), &rest, k_end);
}

void cg_emit_tile_product(Cg *cg, const TileProduct *p)
{
    Tp t = {.p = p, .vw = cg->vector_width, .b = p->b.base, .brs = p->b.rs, .one = cg_i64(cg, 1)};
    if (!p->pad_n && (p->lower_c || !LLVMIsAConstantInt(p->n)))
        mxc_die("tile product: a run-time column count or lower_c needs pad_n");
    if (p->b_transposed) pack_transposed(cg, &t);
    int tiers[3] = {micro_rows(&t), 4, 1};
    LLVMValueRef start = cg_i64(cg, 0);
    for (int r = 0; r < 3; r++) {
        int mr = tiers[r];
        if (r > 0 && mr >= tiers[r - 1]) continue;
        LLVMValueRef left = LLVMBuildSub(cg->b, p->m, start, "");
        LLVMValueRef end = cg_iadd(cg, start, imul(cg, LLVMBuildSDiv(cg->b, left, cg_i64(cg, mr), ""), cg_i64(cg, mr)));
        CgLoop l;
        LLVMValueRef i0 = cg_loop_begin_step(cg, &l, start, end, mr, "tile.i");
        emit_row_tile(cg, &t, i0, mr);
        cg_loop_end(cg, &l);
        start = end;
    }
}
