/* codegen.h - private to backend/: the state of one LLVM module being generated and the
 * helpers the op emitters share (loops, row addressing, math).
 *
 * Generated kernels address a per-token value through its Storage (ir.h): row (b, t) of a
 * value starts at base + (b * T + t) * row_stride + col_offset. Loops are emitted with an
 * induction phi; scalars carried across iterations live in entry-block allocas, which
 * LLVM's SROA turns into registers. */
#ifndef MXC_CODEGEN_H
#define MXC_CODEGEN_H

#include <llvm-c/Core.h>

#include "backend/backend.h"

/* The function being generated: an op kernel, or a chunk function between kernels.
 * build_kernel (codegen.c) starts a fresh one for each kernel and returns to the chunk
 * function's afterwards, so emitters only ever see the function they write. */
typedef struct CgFn {
    LLVMValueRef fn;
    LLVMBasicBlockRef entry;  /* allocas collect here; it falls through to the body */
    LLVMValueRef batch, len;  /* i64: B, and T (a constant 1 in the step's code) */
    LLVMValueRef ith, nth;    /* i64: this thread's index and the thread count */
    LLVMValueRef tok_bstride, logit_bstride; /* i64: elements between sequences */
    LLVMValueRef state;       /* a kernel's slice of the state, for sequence 0 */
    LLVMValueRef *bound;      /* a kernel's operands: where each one's storage starts,
                                 indexed by node id (NULL for nodes it does not read) */
    LLVMValueRef *bound_scales; /* a kernel's q8 weights: their scales (bound: the values) */
} CgFn;

/* The module being generated. */
typedef struct Cg {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    LLVMTypeRef f32, i32, i64, i1, ptr, void_t;
    const Graph *g;
    const BackendOptions *opts;
    int vector_width;         /* floats per SIMD register of the target (4, 8 or 16) */
    bool has_f16c;            /* the target converts f16 in hardware (vcvtph2ps) */
    CgFn *f;                  /* the function being generated */
    struct Kernel { char *key; LLVMValueRef fn; } *kernels; /* built so far, for reuse */
    int n_kernels, cap_kernels;
} Cg;

typedef struct CgLoop {
    LLVMBasicBlockRef header, body, exit;
    LLVMValueRef iv, end;
    int64_t step;
} CgLoop;

/* --- loops.c: control flow, addressing, math ------------------------------------------- */
LLVMValueRef cg_i64(Cg *cg, int64_t v);
LLVMValueRef cg_f32(Cg *cg, double v);
/* for (iv = start; iv < end; iv++) — returns iv (i64); close with cg_loop_end. */
LLVMValueRef cg_loop_begin(Cg *cg, CgLoop *l, LLVMValueRef start, LLVMValueRef end,
                           const char *name);
void cg_loop_end(Cg *cg, CgLoop *l);
/* The same with a constant step > 0. */
LLVMValueRef cg_loop_begin_step(Cg *cg, CgLoop *l, LLVMValueRef start, LLVMValueRef end,
                                int64_t step, const char *name);
LLVMValueRef cg_entry_alloca(Cg *cg, LLVMTypeRef type, const char *name);
/* An f32 stack variable in the entry block (becomes a register after SROA). */
LLVMValueRef cg_var(Cg *cg, const char *name);

LLVMValueRef cg_gep(Cg *cg, LLVMTypeRef elem, LLVMValueRef base, LLVMValueRef index);
LLVMValueRef cg_load(Cg *cg, LLVMValueRef ptr, LLVMValueRef index);   /* f32 ptr[index] */
void cg_store(Cg *cg, LLVMValueRef value, LLVMValueRef ptr, LLVMValueRef index);
/* Vectors of the target's width (cg_vec_type) or any other: unaligned loads and stores of
 * consecutive floats at base[index], a broadcast scalar, a fused multiply-add a·b + c. */
LLVMTypeRef cg_vec_type(Cg *cg);
LLVMValueRef cg_vload(Cg *cg, LLVMTypeRef vt, LLVMValueRef base, LLVMValueRef index);
void cg_vstore(Cg *cg, LLVMValueRef v, LLVMValueRef base, LLVMValueRef index);
LLVMValueRef cg_vsplat(Cg *cg, LLVMTypeRef vt, LLVMValueRef scalar);
LLVMValueRef cg_fma(Cg *cg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c);
/* Arithmetic named for reading, so that emitters read like the equations they cite: float
 * (scalars or vectors alike) and i64 index arithmetic. */
LLVMValueRef cg_fadd(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_fsub(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_fmul(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_fdiv(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_iadd(Cg *cg, LLVMValueRef a, LLVMValueRef b);
/* Σ x[k] y[k] over k < n floats, reassociable so that it vectorises. */
LLVMValueRef cg_dot(Cg *cg, LLVMValueRef x, LLVMValueRef y, int64_t n);
/* a·k + b with k constant: the flat index of element (a, b) of rows of k elements. */
LLVMValueRef cg_index2(Cg *cg, LLVMValueRef a, int64_t k, LLVMValueRef b);
/* This thread's share [lo, hi) of `total` work items (contiguous, balanced). */
void cg_split(Cg *cg, LLVMValueRef total, LLVMValueRef *lo, LLVMValueRef *hi);
/* i1: is this the last thread? (Work that is not split, such as a tail, goes to exactly one
 * thread; a share's bounds cannot tell, since several shares may be empty.) */
LLVMValueRef cg_is_last_thread(Cg *cg);
/* Flat chunk row r = b·T + t back to (b, t). */
void cg_row_bt(Cg *cg, LLVMValueRef r, LLVMValueRef *b, LLVMValueRef *t);
/* Pointer to column 0 of row (b, t) of a per-token value. */
LLVMValueRef cg_row(Cg *cg, const Node *n, LLVMValueRef b, LLVMValueRef t);
/* Row (b, t + dt) of a float value from the pointer `row` to row (b, t): a constant offset,
 * so that loops over several positions address them all from one register. */
LLVMValueRef cg_row_later(Cg *cg, const Node *n, LLVMValueRef row, int64_t dt);
/* The same for flat row r = b·T + t; avoids the division where the storage allows. */
LLVMValueRef cg_row_flat(Cg *cg, const Node *n, LLVMValueRef r);
/* Pointer to a weight's data. */
LLVMValueRef cg_weight(Cg *cg, const Node *w);
/* A q8 weight's scales, one f32 per IR_Q8_BLOCK elements along the last dimension. */
LLVMValueRef cg_weight_scales(Cg *cg, const Node *w);
/* Pointer to the current kernel's state slot, for sequence b. */
LLVMValueRef cg_state(Cg *cg, int slot, LLVMValueRef b);

/* Reassociable arithmetic for reductions, so that the vectoriser may reorder sums. */
LLVMValueRef cg_fadd_reduce(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_fmul_reduce(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_call_intrinsic1(Cg *cg, const char *name, LLVMValueRef x);
LLVMValueRef cg_exp(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_sqrt(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_libm(Cg *cg, const char *name, LLVMValueRef x);
LLVMValueRef cg_log1p(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_tanh(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_erf(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_max(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_min(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_fabs(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_logsigmoid(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_sigmoid(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_silu(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_softplus(Cg *cg, LLVMValueRef x);
/* An elementwise unary op of the IR (silu, softplus, gelu, relu, relu2, sigmoid, selu). */
LLVMValueRef cg_unary(Cg *cg, Op op, LLVMValueRef x);
/* Can cg_unary take a vector of floats (no libm call inside)? */
bool cg_unary_vectorizes(Op op);

/* --- wload.c: weights in their stored type (f32, bf16, f16, q8), widened to f32 --------- */
LLVMTypeRef cg_weight_elem(Cg *cg, const Node *w);
/* Element `flat` (counted from the weight's start) as an f32. */
LLVMValueRef cg_wload(Cg *cg, const Node *w, LLVMValueRef flat);
/* Elements [flat, flat + width of vt) as a vector of f32; for q8, flat must be a multiple
 * of the width (a vector never crosses a block). */
LLVMValueRef cg_wvload(Cg *cg, const Node *w, LLVMTypeRef vt, LLVMValueRef flat);
/* Prefetch hint for weight element `flat` (software prefetch; see matmul.c). */
void cg_wprefetch(Cg *cg, const Node *w, LLVMValueRef flat);

/* --- matmul.c: register-tiled projections ---------------------------------------------- */
typedef struct MatmulPart {
    const Node *w;     /* [rows, K] */
    const Node *bias;  /* [rows] or NULL */
} MatmulPart;

/* out[row, :] = epilogue(x[row, :] · [W_0; W_1; ...]ᵀ (+ bias)): the parts' outputs sit side
 * by side in `out`. Epilogue: an optional unary op, then an optional residual add
 * (out = residual + value). */
typedef struct Matmul {
    const Node *x, *out, *residual;
    int n_parts;
    MatmulPart parts[IR_PROJ_MAX_PARTS];
    Op act;            /* OP_COUNT_ when none */
} Matmul;
void cg_emit_matmul(Cg *cg, const Matmul *mm);

/* --- gemm.c: projections of many rows (packed panels, outer-product register tiles) ---- */
enum { GEMM_MIN_ROWS = 32 }; /* below this, packing a panel costs more than it saves */
bool cg_gemm_applies(const Cg *cg, const MatmulPart *part);
/* Emits the packed kernel for the part's outputs [0, covered) and returns covered (a
 * multiple of the vector width); the caller does the rest. */
int64_t cg_emit_gemm_part(Cg *cg, const Matmul *mm, const MatmulPart *part, int64_t col0);

/* --- kernels.c: one emitter per op ----------------------------------------------------- */
/* Emits the node's loops; false when it needs no code (inputs, views). */
bool cg_emit_node(Cg *cg, const Node *n);

/* --- ssd.c: the Mamba-2 SSD scan, recurrent and chunked ------------------------------ */
void cg_emit_ssd_scan(Cg *cg, const Node *n);

/* --- cells.c: the xLSTM recurrent cells ------------------------------------------------ */
void cg_emit_mlstm_cell(Cg *cg, const Node *n);
/* mlstm_chunkwise.c: the cell's chunkwise form, for forward kernels */
void cg_emit_mlstm_chunkwise(Cg *cg, const Node *n);
/* An mLSTM gate pre-activation as the cell sees it: cap·tanh(x/cap) with a gate cap. */
LLVMValueRef cg_mlstm_gate(Cg *cg, const MlstmNumerics *num, LLVMValueRef x);
void cg_emit_slstm_cell(Cg *cg, const Node *n);

/* --- emit_desc.c: the model descriptor and the exported API ---------------------------- */
void cg_emit_descriptor(Cg *cg, LLVMValueRef forward_fn, LLVMValueRef step_fn,
                        LLVMValueRef trunk_fn, LLVMValueRef last_fn);

/* --- head.c: the ops a forward may skip for positions that need no logits ----------------- */
/* trunk[id]: the node feeds a recurrent op (or is one); gather[id]: a trunk value that the
 * head reads. Both calloc'd, indexed by node id. */
void cg_head_sets(const Graph *g, bool **trunk, bool **gather);
/* Copy row (b, T-1) of v's storage in the chunk's scratch (rowcap = B·T rows per block) to
 * row b of the compact area (B rows per block), for this thread's share of b. */
void cg_emit_gather(Cg *cg, const Node *v, LLVMValueRef scratch, LLVMValueRef rowcap,
                    LLVMValueRef compact);

/* --- target.c ---------------------------------------------------------------------------- */
bool cg_optimize_and_emit(Cg *cg, const char *obj_path);
void cg_set_target_attributes(Cg *cg, LLVMValueRef fn);
/* Floats per vector register of the target: 16 with AVX-512, 8 with AVX, else 4. */
int cg_target_vector_width(const BackendOptions *o);
/* Does the target convert f16 in hardware (F16C)? */
bool cg_target_has_f16c(const BackendOptions *o);

#endif
