/* loops.c - small builders shared by the op emitters: loops, addresses, scalar math. */
#include <string.h>

#include "backend/codegen.h"

LLVMValueRef cg_i64(Cg *cg, int64_t v) { return LLVMConstInt(cg->i64, (unsigned long long)v, 1); }
LLVMValueRef cg_f32(Cg *cg, double v) { return LLVMConstReal(cg->f32, v); }

LLVMValueRef cg_loop_begin(Cg *cg, CgLoop *l, LLVMValueRef start, LLVMValueRef end,
                           const char *name)
{
    return cg_loop_begin_step(cg, l, start, end, 1, name);
}

LLVMValueRef cg_loop_begin_step(Cg *cg, CgLoop *l, LLVMValueRef start, LLVMValueRef end,
                                int64_t step, const char *name)
{
    l->step = step;
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(cg->b);
    l->header = LLVMAppendBasicBlockInContext(cg->ctx, cg->f->fn, name);
    l->body = LLVMAppendBasicBlockInContext(cg->ctx, cg->f->fn, "body");
    l->exit = LLVMAppendBasicBlockInContext(cg->ctx, cg->f->fn, "exit");
    l->end = end;
    LLVMBuildBr(cg->b, l->header);
    LLVMPositionBuilderAtEnd(cg->b, l->header);
    l->iv = LLVMBuildPhi(cg->b, cg->i64, name);
    LLVMAddIncoming(l->iv, &start, &pre, 1);
    LLVMValueRef more = LLVMBuildICmp(cg->b, LLVMIntSLT, l->iv, end, "more");
    LLVMBuildCondBr(cg->b, more, l->body, l->exit);
    LLVMPositionBuilderAtEnd(cg->b, l->body);
    return l->iv;
}

void cg_loop_end(Cg *cg, CgLoop *l)
{
    LLVMValueRef next = LLVMBuildNSWAdd(cg->b, l->iv, cg_i64(cg, l->step), "next");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(cg->b);
    LLVMAddIncoming(l->iv, &next, &latch, 1);
    LLVMBuildBr(cg->b, l->header);
    LLVMPositionBuilderAtEnd(cg->b, l->exit);
}

/* Allocas go at the top of the entry block, where SROA can promote them to registers
 * (an alloca inside a loop would grow the stack on every iteration). */
LLVMValueRef cg_entry_alloca(Cg *cg, LLVMTypeRef type, const char *name)
{
    LLVMBuilderRef eb = LLVMCreateBuilderInContext(cg->ctx);
    LLVMValueRef first = LLVMGetFirstInstruction(cg->f->entry);
    if (first)
        LLVMPositionBuilderBefore(eb, first);
    else
        LLVMPositionBuilderAtEnd(eb, cg->f->entry);
    LLVMValueRef v = LLVMBuildAlloca(eb, type, name);
    LLVMDisposeBuilder(eb);
    return v;
}

LLVMValueRef cg_var(Cg *cg, const char *name) { return cg_entry_alloca(cg, cg->f32, name); }

LLVMValueRef cg_gep(Cg *cg, LLVMTypeRef elem, LLVMValueRef base, LLVMValueRef index)
{
    return LLVMBuildInBoundsGEP2(cg->b, elem, base, &index, 1, "");
}

LLVMValueRef cg_load(Cg *cg, LLVMValueRef ptr, LLVMValueRef index)
{
    return LLVMBuildLoad2(cg->b, cg->f32, cg_gep(cg, cg->f32, ptr, index), "");
}

void cg_store(Cg *cg, LLVMValueRef value, LLVMValueRef ptr, LLVMValueRef index)
{
    LLVMBuildStore(cg->b, value, cg_gep(cg, cg->f32, ptr, index));
}

LLVMTypeRef cg_vec_type(Cg *cg) { return LLVMVectorType(cg->f32, (unsigned)cg->vector_width); }

/* Vector loads and stores promise only float alignment: rows and weights start anywhere. */
LLVMValueRef cg_vload(Cg *cg, LLVMTypeRef vt, LLVMValueRef base, LLVMValueRef index)
{
    LLVMValueRef v = LLVMBuildLoad2(cg->b, vt, cg_gep(cg, cg->f32, base, index), "");
    LLVMSetAlignment(v, 4);
    return v;
}

void cg_vstore(Cg *cg, LLVMValueRef v, LLVMValueRef base, LLVMValueRef index)
{
    LLVMSetAlignment(LLVMBuildStore(cg->b, v, cg_gep(cg, cg->f32, base, index)), 4);
}

LLVMValueRef cg_vsplat(Cg *cg, LLVMTypeRef vt, LLVMValueRef scalar)
{
    unsigned n = LLVMGetVectorSize(vt);
    LLVMValueRef one = LLVMBuildInsertElement(cg->b, LLVMGetUndef(vt), scalar,
                                              LLVMConstInt(cg->i32, 0, 0), "");
    LLVMValueRef zeros[64];
    for (unsigned i = 0; i < n; i++) zeros[i] = LLVMConstInt(cg->i32, 0, 0);
    return LLVMBuildShuffleVector(cg->b, one, LLVMGetUndef(vt), LLVMConstVector(zeros, n), "");
}

LLVMValueRef cg_fma(Cg *cg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
    LLVMTypeRef t = LLVMTypeOf(a);
    unsigned id = LLVMLookupIntrinsicID("llvm.fma", 8);
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->mod, id, &t, 1);
    LLVMValueRef args[3] = {a, b, c};
    return LLVMBuildCall2(cg->b, LLVMIntrinsicGetType(cg->ctx, id, &t, 1), fn, args, 3, "");
}

LLVMValueRef cg_fadd(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(cg->b, a, b, ""); }
LLVMValueRef cg_fsub(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(cg->b, a, b, ""); }
LLVMValueRef cg_fmul(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(cg->b, a, b, ""); }
LLVMValueRef cg_fdiv(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFDiv(cg->b, a, b, ""); }
LLVMValueRef cg_iadd(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(cg->b, a, b, ""); }

LLVMValueRef cg_index2(Cg *cg, LLVMValueRef a, int64_t k, LLVMValueRef b)
{
    return LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, a, cg_i64(cg, k), ""), b, "");
}

LLVMValueRef cg_dot(Cg *cg, LLVMValueRef x, LLVMValueRef y, int64_t n)
{
    LLVMValueRef acc = cg_var(cg, "dot");
    LLVMBuildStore(cg->b, cg_f32(cg, 0.0), acc);
    CgLoop l;
    LLVMValueRef k = cg_loop_begin(cg, &l, cg_i64(cg, 0), cg_i64(cg, n), "k");
    LLVMValueRef p = cg_fmul_reduce(cg, cg_load(cg, x, k), cg_load(cg, y, k));
    LLVMBuildStore(cg->b, cg_fadd_reduce(cg, LLVMBuildLoad2(cg->b, cg->f32, acc, ""), p), acc);
    cg_loop_end(cg, &l);
    return LLVMBuildLoad2(cg->b, cg->f32, acc, "");
}

void cg_split(Cg *cg, LLVMValueRef total, LLVMValueRef *lo, LLVMValueRef *hi)
{
    LLVMBuilderRef B = cg->b;
    *lo = LLVMBuildSDiv(B, LLVMBuildMul(B, cg->f->ith, total, ""), cg->f->nth, "lo");
    *hi = LLVMBuildSDiv(B, LLVMBuildMul(B, LLVMBuildAdd(B, cg->f->ith, cg_i64(cg, 1), ""), total, ""),
                        cg->f->nth, "hi");
}

LLVMValueRef cg_is_last_thread(Cg *cg)
{
    return LLVMBuildICmp(cg->b, LLVMIntEQ, cg->f->ith,
                         LLVMBuildSub(cg->b, cg->f->nth, cg_i64(cg, 1), ""), "last");
}

void cg_row_bt(Cg *cg, LLVMValueRef r, LLVMValueRef *b, LLVMValueRef *t)
{
    *b = LLVMBuildUDiv(cg->b, r, cg->f->len, "b");
    *t = LLVMBuildSub(cg->b, r, LLVMBuildMul(cg->b, *b, cg->f->len, ""), "t");
}

/* Inside an op kernel, operand n starts at bound[n->id]; row (b, t) of it is at
 *   scratch: start + (b·T + t)·row_stride     logits: start + b·logit_bstride + t·row_stride
 *   tokens:  start + b·tok_bstride + t */
LLVMValueRef cg_row(Cg *cg, const Node *n, LLVMValueRef b, LLVMValueRef t)
{
    const Storage *s = &n->store;
    LLVMBuilderRef B = cg->b;
    LLVMValueRef start = cg->f->bound[n->id];
    if (!start) mxc_die("%%%d (%s) is not an operand of this kernel", n->id, ir_op_name(n->op));
    switch (s->kind) {
    case STORE_TOKENS: {
        LLVMValueRef at = LLVMBuildAdd(B, LLVMBuildMul(B, b, cg->f->tok_bstride, ""), t, "");
        return cg_gep(cg, cg->i32, start, at);
    }
    case STORE_LOGITS: {
        LLVMValueRef at = LLVMBuildAdd(B, LLVMBuildMul(B, b, cg->f->logit_bstride, ""),
                                       LLVMBuildMul(B, t, cg_i64(cg, s->row_stride), ""), "");
        return cg_gep(cg, cg->f32, start, at);
    }
    case STORE_SCRATCH: {
        LLVMValueRef row = LLVMBuildAdd(B, LLVMBuildMul(B, b, cg->f->len, ""), t, "row");
        return cg_gep(cg, cg->f32, start, LLVMBuildMul(B, row, cg_i64(cg, s->row_stride), ""));
    }
    case STORE_NONE:
        break;
    }
    mxc_die("%%%d (%s) has no storage", n->id, ir_op_name(n->op));
}

LLVMValueRef cg_row_later(Cg *cg, const Node *n, LLVMValueRef row, int64_t dt)
{
    if (n->store.kind != STORE_SCRATCH && n->store.kind != STORE_LOGITS)
        mxc_die("%%%d (%s): rows are not a fixed stride apart", n->id, ir_op_name(n->op));
    return cg_gep(cg, cg->f32, row, cg_i64(cg, dt * n->store.row_stride));
}

LLVMValueRef cg_row_flat(Cg *cg, const Node *n, LLVMValueRef r)
{
    if (n->store.kind == STORE_SCRATCH) { /* rows are consecutive: no (b, t) needed */
        LLVMValueRef start = cg->f->bound[n->id];
        if (!start) mxc_die("%%%d (%s) is not an operand of this kernel", n->id, ir_op_name(n->op));
        return cg_gep(cg, cg->f32, start, LLVMBuildMul(cg->b, r, cg_i64(cg, n->store.row_stride), ""));
    }
    LLVMValueRef b, t;
    cg_row_bt(cg, r, &b, &t);
    return cg_row(cg, n, b, t);
}

LLVMValueRef cg_weight(Cg *cg, const Node *w)
{
    if (w->op != OP_WEIGHT || !cg->f->bound[w->id]) mxc_die("%%%d is not a weight operand", w->id);
    return cg->f->bound[w->id];
}

LLVMValueRef cg_weight_scales(Cg *cg, const Node *w)
{
    if (w->op != OP_WEIGHT || w->type.dtype != DT_Q8 || !cg->f->bound_scales ||
        !cg->f->bound_scales[w->id])
        mxc_die("%%%d is not a q8 weight operand", w->id);
    return cg->f->bound_scales[w->id];
}

LLVMValueRef cg_state(Cg *cg, int slot, LLVMValueRef b)
{
    (void)slot; /* the kernel's state pointer already points at its slot */
    LLVMValueRef at = LLVMBuildMul(cg->b, b, cg_i64(cg, cg->g->state_floats), "");
    return cg_gep(cg, cg->f32, cg->f->state, at);
}

static LLVMValueRef with_reassoc(LLVMValueRef inst)
{
    LLVMSetFastMathFlags(inst, LLVMFastMathAllowReassoc | LLVMFastMathAllowContract);
    return inst;
}

LLVMValueRef cg_fadd_reduce(Cg *cg, LLVMValueRef a, LLVMValueRef b)
{
    return with_reassoc(LLVMBuildFAdd(cg->b, a, b, ""));
}

LLVMValueRef cg_fmul_reduce(Cg *cg, LLVMValueRef a, LLVMValueRef b)
{
    return with_reassoc(LLVMBuildFMul(cg->b, a, b, ""));
}

LLVMValueRef cg_call_intrinsic1(Cg *cg, const char *name, LLVMValueRef x)
{
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    if (!id) mxc_die("LLVM has no intrinsic %s", name);
    LLVMTypeRef ty = LLVMTypeOf(x);
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->mod, id, &ty, 1);
    LLVMTypeRef fty = LLVMIntrinsicGetType(cg->ctx, id, &ty, 1);
    return LLVMBuildCall2(cg->b, fty, fn, &x, 1, "");
}

/* A constant of x's type: a float, or a vector of floats all equal to v. */
static LLVMValueRef splat_like(Cg *cg, LLVMValueRef x, double v)
{
    LLVMTypeRef ty = LLVMTypeOf(x);
    if (LLVMGetTypeKind(ty) != LLVMVectorTypeKind) return LLVMConstReal(ty, v);
    unsigned n = LLVMGetVectorSize(ty);
    LLVMValueRef lanes[64];
    for (unsigned i = 0; i < n && i < 64; i++) lanes[i] = LLVMConstReal(cg->f32, v);
    return LLVMConstVector(lanes, n);
}

/* The integer type with x's shape (i32 or <n x i32>). */
static LLVMTypeRef int_like(Cg *cg, LLVMValueRef x)
{
    LLVMTypeRef ty = LLVMTypeOf(x);
    if (LLVMGetTypeKind(ty) != LLVMVectorTypeKind) return cg->i32;
    return LLVMVectorType(cg->i32, LLVMGetVectorSize(ty));
}

static LLVMValueRef int_splat_like(Cg *cg, LLVMValueRef x, int v)
{
    LLVMTypeRef ty = int_like(cg, x);
    if (LLVMGetTypeKind(ty) != LLVMVectorTypeKind) return LLVMConstInt(ty, (unsigned long long)v, 1);
    unsigned n = LLVMGetVectorSize(ty);
    LLVMValueRef lanes[64];
    for (unsigned i = 0; i < n && i < 64; i++) lanes[i] = LLVMConstInt(cg->i32, (unsigned long long)v, 1);
    return LLVMConstVector(lanes, n);
}

/* Horner evaluation of c[0] x^(n-1) + ... + c[n-1], one fused multiply-add per term. */
static LLVMValueRef horner(Cg *cg, LLVMValueRef x, const double *c, int n)
{
    LLVMValueRef p = splat_like(cg, x, c[0]);
    for (int i = 1; i < n; i++) p = cg_fma(cg, p, x, splat_like(cg, x, c[i]));
    return p;
}

/* exp(x) in plain arithmetic, so that loops using it vectorise (libm's expf would be a
 * scalar call per element). Range reduction x = k ln2 + r with ln2 split in two parts, a
 * degree-6 polynomial for e^r on |r| <= ln2/2 (the Cephes expf coefficients), and 2^k built
 * in the exponent bits. Error about 1 ulp. The input is clamped to [-87.3, 88]: below,
 * results under FLT_MIN come out as ~1e-38 instead of denormals or 0; above, as 1.65e38
 * instead of inf - neither matters where the models use exp. Works on floats and on
 * vectors of floats. */
LLVMValueRef cg_exp(Cg *cg, LLVMValueRef x)
{
    static const double poly[] = {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3,
                                  4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1};
    LLVMBuilderRef B = cg->b;
    LLVMValueRef input = x;
    /* Clamp with compares, not minnum/maxnum, so that a NaN stays a NaN. */
    LLVMValueRef lo = splat_like(cg, x, -87.33654475), hi = splat_like(cg, x, 88.0);
    x = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOLT, x, lo, ""), lo, x, "");
    x = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, x, hi, ""), hi, x, "");
    LLVMValueRef k = cg_call_intrinsic1(
        cg, "llvm.rint", LLVMBuildFMul(B, x, splat_like(cg, x, 1.44269504088896341), ""));
    LLVMValueRef r = cg_fma(cg, k, splat_like(cg, x, -0.693359375), x);
    r = cg_fma(cg, k, splat_like(cg, x, 2.12194440e-4), r);
    LLVMValueRef r2 = LLVMBuildFMul(B, r, r, "");
    LLVMValueRef e = cg_fma(cg, horner(cg, r, poly, 6), r2, r);
    e = LLVMBuildFAdd(B, e, splat_like(cg, x, 1.0), "");
    LLVMValueRef ki = LLVMBuildFPToSI(B, k, int_like(cg, x), "");
    LLVMValueRef bits = LLVMBuildShl(B, LLVMBuildAdd(B, ki, int_splat_like(cg, x, 127), ""),
                                     int_splat_like(cg, x, 23), "");
    LLVMValueRef y = LLVMBuildFMul(B, e, LLVMBuildBitCast(B, bits, LLVMTypeOf(x), ""), "");
    /* A NaN lane made k NaN and its exponent bits poison: give the NaN back. */
    LLVMValueRef nan = LLVMBuildFCmp(B, LLVMRealUNO, input, input, "");
    return LLVMBuildSelect(B, nan, input, y, "exp");
}

/* log(x) for finite x > 0 (Cephes logf): x = m 2^e with m in [sqrt(1/2), sqrt 2), then a
 * degree-9 polynomial in m - 1. */
static LLVMValueRef cg_log(Cg *cg, LLVMValueRef x)
{
    static const double poly[] = {7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1,
                                  -1.2420140846E-1, 1.4249322787E-1, -1.6668057665E-1,
                                  2.0000714765E-1, -2.4999993993E-1, 3.3333331174E-1};
    LLVMBuilderRef B = cg->b;
    LLVMValueRef bits = LLVMBuildBitCast(B, x, int_like(cg, x), "");
    LLVMValueRef e = LLVMBuildSub(B, LLVMBuildLShr(B, bits, int_splat_like(cg, x, 23), ""),
                                  int_splat_like(cg, x, 126), "");
    LLVMValueRef mbits = LLVMBuildOr(B, LLVMBuildAnd(B, bits, int_splat_like(cg, x, 0x007fffff), ""),
                                     int_splat_like(cg, x, 0x3f000000), ""); /* m in [0.5, 1) */
    LLVMValueRef m = LLVMBuildBitCast(B, mbits, LLVMTypeOf(x), "");
    LLVMValueRef ef = LLVMBuildSIToFP(B, e, LLVMTypeOf(x), "");
    /* m < sqrt(1/2): use 2m and e - 1 so that m - 1 is small */
    LLVMValueRef small = LLVMBuildFCmp(B, LLVMRealOLT, m, splat_like(cg, x, 0.707106781186547524), "");
    ef = LLVMBuildSelect(B, small, LLVMBuildFSub(B, ef, splat_like(cg, x, 1.0), ""), ef, "");
    m = LLVMBuildSelect(B, small, LLVMBuildFAdd(B, m, m, ""), m, "");
    LLVMValueRef f = LLVMBuildFSub(B, m, splat_like(cg, x, 1.0), "");
    LLVMValueRef z = LLVMBuildFMul(B, f, f, "");
    LLVMValueRef y = LLVMBuildFMul(B, LLVMBuildFMul(B, horner(cg, f, poly, 9), f, ""), z, "");
    y = LLVMBuildFAdd(B, y, LLVMBuildFMul(B, ef, splat_like(cg, x, -2.12194440e-4), ""), "");
    y = LLVMBuildFSub(B, y, LLVMBuildFMul(B, z, splat_like(cg, x, 0.5), ""), "");
    LLVMValueRef r = LLVMBuildFAdd(B, f, y, "");
    return LLVMBuildFAdd(B, r, LLVMBuildFMul(B, ef, splat_like(cg, x, 0.693359375), ""), "log");
}

LLVMValueRef cg_sqrt(Cg *cg, LLVMValueRef x) { return cg_call_intrinsic1(cg, "llvm.sqrt", x); }

/* A float function of libm (the shared object links libm). */
LLVMValueRef cg_libm(Cg *cg, const char *name, LLVMValueRef x)
{
    LLVMTypeRef fty = LLVMFunctionType(cg->f32, &cg->f32, 1, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(cg->mod, name);
    if (!fn) fn = LLVMAddFunction(cg->mod, name, fty);
    return LLVMBuildCall2(cg->b, fty, fn, &x, 1, "");
}

/* log1p(u) for u > -1 without losing small u: with v = 1 + u rounded,
 * log1p(u) = log(v) · u / (v - 1), exact in the limit; u itself when v rounds to 1. */
LLVMValueRef cg_log1p(Cg *cg, LLVMValueRef u)
{
    LLVMBuilderRef B = cg->b;
    LLVMValueRef one = splat_like(cg, u, 1.0);
    LLVMValueRef v = LLVMBuildFAdd(B, one, u, "");
    LLVMValueRef vm1 = LLVMBuildFSub(B, v, one, "");
    LLVMValueRef is_one = LLVMBuildFCmp(B, LLVMRealOEQ, vm1, splat_like(cg, u, 0.0), "");
    LLVMValueRef safe = LLVMBuildSelect(B, is_one, one, vm1, "");
    LLVMValueRef scaled = LLVMBuildFDiv(B, LLVMBuildFMul(B, cg_log(cg, v), u, ""), safe, "");
    return LLVMBuildSelect(B, is_one, u, scaled, "log1p");
}

/* tanh and erf have no LLVM intrinsic in LLVM 19: libm. */
LLVMValueRef cg_tanh(Cg *cg, LLVMValueRef x) { return cg_libm(cg, "tanhf", x); }
LLVMValueRef cg_erf(Cg *cg, LLVMValueRef x) { return cg_libm(cg, "erff", x); }

static LLVMValueRef call_intrinsic2(Cg *cg, const char *name, LLVMValueRef a, LLVMValueRef b)
{
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    if (!id) mxc_die("LLVM has no intrinsic %s", name);
    LLVMTypeRef ty = LLVMTypeOf(a);
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->mod, id, &ty, 1);
    LLVMTypeRef fty = LLVMIntrinsicGetType(cg->ctx, id, &ty, 1);
    LLVMValueRef args[2] = {a, b};
    return LLVMBuildCall2(cg->b, fty, fn, args, 2, "");
}

/* NaN-propagating, like torch.maximum / torch.minimum. */
LLVMValueRef cg_max(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return call_intrinsic2(cg, "llvm.maximum", a, b); }
LLVMValueRef cg_min(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return call_intrinsic2(cg, "llvm.minimum", a, b); }
LLVMValueRef cg_fabs(Cg *cg, LLVMValueRef x) { return cg_call_intrinsic1(cg, "llvm.fabs", x); }

/* log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), stable for large |x| (as torch's). */
LLVMValueRef cg_logsigmoid(Cg *cg, LLVMValueRef x)
{
    LLVMValueRef e = cg_exp(cg, LLVMBuildFNeg(cg->b, cg_fabs(cg, x), ""));
    return LLVMBuildFSub(cg->b, cg_min(cg, x, cg_f32(cg, 0.0)), cg_log1p(cg, e), "");
}

/* 1 / (1 + exp(-x)) */
LLVMValueRef cg_sigmoid(Cg *cg, LLVMValueRef x)
{
    LLVMValueRef e = cg_exp(cg, LLVMBuildFNeg(cg->b, x, ""));
    LLVMValueRef one = splat_like(cg, x, 1.0);
    return LLVMBuildFDiv(cg->b, one, LLVMBuildFAdd(cg->b, one, e, ""), "");
}

/* x * sigmoid(x), as torch's F.silu */
LLVMValueRef cg_silu(Cg *cg, LLVMValueRef x)
{
    return LLVMBuildFMul(cg->b, x, cg_sigmoid(cg, x), "");
}

/* torch's F.softplus with beta 1, threshold 20: x > 20 ? x : log1p(exp(x)) */
LLVMValueRef cg_softplus(Cg *cg, LLVMValueRef x)
{
    LLVMValueRef big = LLVMBuildFCmp(cg->b, LLVMRealOGT, x, splat_like(cg, x, 20.0), "");
    LLVMValueRef soft = cg_log1p(cg, cg_exp(cg, x));
    return LLVMBuildSelect(cg->b, big, x, soft, "");
}

bool cg_unary_vectorizes(Op op)
{
    return ir_op_is_activation(op) && op != OP_GELU; /* gelu calls libm's erff */
}

LLVMValueRef cg_unary(Cg *cg, Op op, LLVMValueRef x)
{
    LLVMBuilderRef B = cg->b;
    switch (op) {
    case OP_SILU: return cg_silu(cg, x);
    case OP_SOFTPLUS: return cg_softplus(cg, x);
    case OP_GELU: /* exact (erf) form, as F.gelu's default */
        return LLVMBuildFMul(B, LLVMBuildFMul(B, splat_like(cg, x, 0.5), x, ""),
                             LLVMBuildFAdd(B, splat_like(cg, x, 1.0),
                                           cg_erf(cg, LLVMBuildFMul(B, x, splat_like(cg, x, 0.70710678118654752440), "")),
                                           ""), "");
    case OP_RELU: return cg_max(cg, x, splat_like(cg, x, 0.0));
    case OP_RELU2: {
        LLVMValueRef p = cg_max(cg, x, splat_like(cg, x, 0.0));
        return LLVMBuildFMul(B, p, p, "");
    }
    case OP_SIGMOID: return cg_sigmoid(cg, x);
    case OP_SELU: { /* torch's constants */
        LLVMValueRef neg = LLVMBuildFMul(B, splat_like(cg, x, 1.6732632423543772848170429916717),
                                         LLVMBuildFSub(B, cg_exp(cg, x), splat_like(cg, x, 1.0), ""), "");
        LLVMValueRef pos = LLVMBuildFCmp(B, LLVMRealOGT, x, splat_like(cg, x, 0.0), "");
        return LLVMBuildFMul(B, splat_like(cg, x, 1.0507009873554804934193349852946),
                             LLVMBuildSelect(B, pos, x, neg, ""), "");
    }
    case OP_TOKENS: case OP_WEIGHT: case OP_EMBED: case OP_RMSNORM: case OP_LAYERNORM:
    case OP_LINEAR: case OP_HEADWISE: case OP_SLICE: case OP_CONCAT: case OP_SCALE: case OP_MUL:
    case OP_ADD: case OP_CONV1D: case OP_SELECTIVE_SCAN: case OP_SSD_SCAN: case OP_MLSTM_CELL:
    case OP_SLSTM_CELL: case OP_SOFTCAP:
    case OP_OUTPUT: case OP_COUNT_:
        break;
    }
    mxc_die("%s is not a unary op", ir_op_name(op));
}
