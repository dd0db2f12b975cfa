/* tile.h - register-tiled products of small matrices (chunk-sized, in scratch or in a
 * kernel's per-token rows), for the within-chunk products of the chunked scans.
 *
 *   C[M x N] (= | +=) A[M x K] · B[K x N]
 *
 * Operands are addressed by strides in floats: element (i, j) of X is X.base[i·rs + j·cs].
 * A may have any strides (its elements are broadcast one at a time), so Aᵀ is "given
 * transposed by strides". B and C must have contiguous rows (cs 1) unless b_transposed: then
 * b describes the stored Bᵀ [N x K] (element (j, k) at base[j·rs + k·cs]) and the product
 * first copies it, transposed, into a stack panel of k_max x round_up(n_max, vector width).
 *
 * Each C element is summed by one accumulator in k order, then the epilogue
 *   v = acc · row_scale[i];  C = accumulate ? (c_scale · C_old + v) : v
 * so results depend on the shapes only, never on the thread count. The emitter does not
 * split work between threads; callers call it inside their own share of the work.
 *
 * Hooks for the causal (masked) products: lower_a (A[i][k] = 0 for k > i: the k loop of a row
 * tile stops after its last row) and lower_c (only C[i][j], j <= i, is wanted: column panels
 * wholly above the diagonal are skipped; elements above it inside computed panels are
 * written with whatever the product gives). k_scale[k] scales the k-th term, A[i][k] B[k][j]
 * (applied to B's row k). */
#ifndef MXC_TILE_H
#define MXC_TILE_H

#include "backend/codegen.h"

typedef struct TileMat {
    LLVMValueRef base;   /* f32 pointer to element (0, 0) */
    LLVMValueRef rs, cs; /* i64 strides in floats; cs must be the constant 1 for B and C */
} TileMat;

typedef struct TileProduct {
    TileMat a, b, c;
    LLVMValueRef m, n, k;  /* i64 sizes, constants or run-time values */
    int64_t n_max, k_max;  /* bounds of n and k (b_transposed's panel size) */
    bool b_transposed;     /* b describes Bᵀ (see above) */
    bool accumulate;       /* C += (or c_scale · C +) the product; else C = it */
    LLVMValueRef c_scale;  /* f32 or NULL (accumulate only) */
    LLVMValueRef row_scale;/* f32 pointer [M] or NULL */
    LLVMValueRef k_scale;  /* f32 pointer [K] or NULL */
    bool lower_a, lower_c;
    bool pad_n;            /* C (and B) may be written (read) up to n rounded up to the vector
                              width; required when n is not a constant, and with lower_c */
} TileProduct;

void cg_emit_tile_product(Cg *cg, const TileProduct *p);

/* dst[j][i] = src[i][j] for i < rows, j < cols (dst and src must not overlap); whole vector
 * blocks go through the registers when both have contiguous rows (cs the constant 1). */
void cg_emit_tile_transpose(Cg *cg, TileMat dst, TileMat src, LLVMValueRef rows, LLVMValueRef cols);

#endif
