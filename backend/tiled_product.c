/* tiled_product.c - register-tiled products of small matrices that sit in memory already
 * (a kernel's stack scratch, rows of per-token values, a state slice), for kernels whose
 * inner work is matrix products of a few dozen to a few hundred rows (the chunkwise mLSTM
 * cell).
 *
 * The output is walked MR rows by NR vectors at a time; each k step broadcasts MR elements
 * of A and loads NR vectors of B for MR·NR fused multiply-adds into accumulators that stay
 * in registers, so B is read once per MR rows and A once per NR vectors instead of once
 * per output. Nothing is packed: the operands are small enough to stay in L1/L2, and their
 * rows are already contiguous along the dimension the vectors run over. Columns that do
 * not fill a vector of the target's width are done in narrower vectors, then one by one.
 * Each output is summed in k order by one accumulator, so the result depends on the shapes
 * only (never on the thread count or on which tile an output falls in). */
#include "backend/codegen.h"

enum { MAX_NR = 4, MAX_MR = 4 };

/* One column group: nv vectors of type vt starting at column col0. */
typedef struct ColGroup {
    int64_t col0;
    int nv;
    LLVMTypeRef vt;
} ColGroup;

static LLVMValueRef splat(Cg *cg, LLVMTypeRef vt, LLVMValueRef s)
{
    return LLVMGetTypeKind(vt) == LLVMVectorTypeKind ? cg_vsplat(cg, vt, s) : s;
}

static LLVMValueRef zero_of(Cg *cg, LLVMTypeRef vt)
{
    return splat(cg, vt, cg_f32(cg, 0.0));
}

/* Rows [i0, i0 + mr) x one column group: acc = init; acc += A·B over k; acc *= row scale. */
static void micro(Cg *cg, const CgProduct *p, LLVMValueRef i0, int mr, const ColGroup *g)
{
    LLVMBuilderRef B = cg->b;
    LLVMValueRef acc[MAX_MR][MAX_NR], arow[MAX_MR], orow[MAX_MR];
    for (int r = 0; r < mr; r++) {
        LLVMValueRef i = cg_iadd(cg, i0, cg_i64(cg, r));
        arow[r] = cg_gep(cg, cg->f32, p->a, LLVMBuildMul(B, i, p->lda, ""));
        orow[r] = cg_gep(cg, cg->f32, p->out, LLVMBuildMul(B, i, p->ldo, ""));
        for (int c = 0; c < g->nv; c++) {
            LLVMValueRef col = cg_i64(cg, g->col0 + (int64_t)c * (LLVMGetTypeKind(g->vt) == LLVMVectorTypeKind
                                                                 ? LLVMGetVectorSize(g->vt) : 1));
            LLVMValueRef v = zero_of(cg, g->vt);
            if (p->accumulate) {
                v = cg_vload(cg, g->vt, orow[r], col);
                if (p->out_scale) v = cg_fmul(cg, v, splat(cg, g->vt, p->out_scale));
            }
            acc[r][c] = cg_entry_alloca(cg, g->vt, "acc");
            LLVMBuildStore(B, v, acc[r][c]);
        }
    }
    int w = LLVMGetTypeKind(g->vt) == LLVMVectorTypeKind ? (int)LLVMGetVectorSize(g->vt) : 1;
    LLVMValueRef k_end = p->k;
    if (p->lower_a) { /* a[i, k] = 0 for k > i: the tile's rows need k < i0 + mr only */
        LLVMValueRef lim = cg_iadd(cg, i0, cg_i64(cg, mr));
        k_end = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, lim, p->k, ""), lim, p->k, "k_end");
    }
    CgLoop lk;
    LLVMValueRef k = cg_loop_begin(cg, &lk, cg_i64(cg, 0), k_end, "k");
    LLVMValueRef brow = cg_gep(cg, cg->f32, p->b, LLVMBuildMul(B, k, p->ldb, ""));
    LLVMValueRef bv[MAX_NR];
    for (int c = 0; c < g->nv; c++)
        bv[c] = cg_vload(cg, g->vt, brow, cg_i64(cg, g->col0 + (int64_t)c * w));
    for (int r = 0; r < mr; r++) {
        LLVMValueRef a = splat(cg, g->vt, cg_load(cg, arow[r], k));
        for (int c = 0; c < g->nv; c++)
            LLVMBuildStore(B, cg_fma(cg, a, bv[c], LLVMBuildLoad2(B, g->vt, acc[r][c], "")), acc[r][c]);
    }
    cg_loop_end(cg, &lk);
    for (int r = 0; r < mr; r++) {
        LLVMValueRef s = NULL;
        if (p->row_scale)
            s = splat(cg, g->vt, cg_load(cg, p->row_scale, cg_iadd(cg, i0, cg_i64(cg, r))));
        for (int c = 0; c < g->nv; c++) {
            LLVMValueRef v = LLVMBuildLoad2(B, g->vt, acc[r][c], "");
            if (s) v = cg_fmul(cg, v, s);
            cg_vstore(cg, v, orow[r], cg_i64(cg, g->col0 + (int64_t)c * w));
        }
    }
}

/* The columns [0, n) as groups: NR full vectors at a time, the vectors left, then
 * narrower vectors (8, 4 floats) and single floats for the tail. */
static int col_groups(Cg *cg, int64_t n, ColGroup *out, int cap)
{
    int vw = cg->vector_width, nr = vw >= 16 ? MAX_NR : 2, count = 0;
    int64_t col = 0, nvec = n / vw;
    while (nvec > 0 && count < cap) {
        int nv = nvec >= nr ? nr : (int)nvec;
        out[count++] = (ColGroup){col, nv, cg_vec_type(cg)};
        col += (int64_t)nv * vw;
        nvec -= nv;
    }
    for (int width = vw / 2; width >= 4 && count < cap; width /= 2)
        if (n - col >= width) {
            out[count++] = (ColGroup){col, 1, LLVMVectorType(cg->f32, (unsigned)width)};
            col += width;
        }
    while (col < n && count < cap) {
        int nv = n - col >= MAX_NR ? MAX_NR : (int)(n - col);
        out[count++] = (ColGroup){col, nv, cg->f32};
        col += nv;
    }
    if (col < n) mxc_die("tiled product: %lld columns are too many", (long long)n);
    return count;
}

void cg_tiled_product(Cg *cg, const CgProduct *p)
{
    LLVMBuilderRef B = cg->b;
    ColGroup groups[256];
    int ng = col_groups(cg, p->n, groups, 256);
    LLVMValueRef m_full = LLVMBuildSub(B, p->m, LLVMBuildSRem(B, p->m, cg_i64(cg, MAX_MR), ""), "m_full");
    for (int gi = 0; gi < ng; gi++) {
        CgLoop lr, lt;
        /* lower_out: rows above the group's first column need none of its columns */
        int64_t first = p->lower_out ? groups[gi].col0 / MAX_MR * MAX_MR : 0;
        LLVMValueRef i0 = cg_loop_begin_step(cg, &lr, cg_i64(cg, first), m_full, MAX_MR, "i0");
        micro(cg, p, i0, MAX_MR, &groups[gi]);
        cg_loop_end(cg, &lr);
        LLVMValueRef i = cg_loop_begin(cg, &lt, m_full, p->m, "i");
        micro(cg, p, i, 1, &groups[gi]);
        cg_loop_end(cg, &lt);
    }
}
