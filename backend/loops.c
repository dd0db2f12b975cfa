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
    l->header = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, name);
    l->body = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "body");
    l->exit = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "exit");
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
    LLVMValueRef first = LLVMGetFirstInstruction(cg->entry);
    if (first)
        LLVMPositionBuilderBefore(eb, first);
    else
        LLVMPositionBuilderAtEnd(eb, cg->entry);
    LLVMValueRef v = LLVMBuildAlloca(eb, type, name);
    LLVMDisposeBuilder(eb);
    return v;
}

LLVMValueRef cg_var(Cg *cg, const char *name) { return cg_entry_alloca(cg, cg->f32, name); }

LLVMValueRef cg_array(Cg *cg, int64_t n, const char *name)
{
    LLVMValueRef v = cg_entry_alloca(cg, LLVMArrayType2(cg->f32, (uint64_t)n), name);
    LLVMSetAlignment(v, 64);
    return v;
}

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

void cg_split(Cg *cg, LLVMValueRef total, LLVMValueRef *lo, LLVMValueRef *hi)
{
    LLVMBuilderRef B = cg->b;
    *lo = LLVMBuildSDiv(B, LLVMBuildMul(B, cg->ith, total, ""), cg->nth, "lo");
    *hi = LLVMBuildSDiv(B, LLVMBuildMul(B, LLVMBuildAdd(B, cg->ith, cg_i64(cg, 1), ""), total, ""),
                        cg->nth, "hi");
}

void cg_row_bt(Cg *cg, LLVMValueRef r, LLVMValueRef *b, LLVMValueRef *t)
{
    *b = LLVMBuildUDiv(cg->b, r, cg->len, "b");
    *t = LLVMBuildSub(cg->b, r, LLVMBuildMul(cg->b, *b, cg->len, ""), "t");
}

LLVMValueRef cg_row(Cg *cg, const Node *n, LLVMValueRef b, LLVMValueRef t)
{
    const Storage *s = &n->store;
    LLVMBuilderRef B = cg->b;
    switch (s->kind) {
    case STORE_TOKENS: {
        LLVMValueRef at = LLVMBuildAdd(B, LLVMBuildMul(B, b, cg->arg_tok_bstride, ""), t, "");
        return cg_gep(cg, cg->i32, cg->arg_tokens, at);
    }
    case STORE_LOGITS: {
        LLVMValueRef at = LLVMBuildAdd(B, LLVMBuildMul(B, b, cg->arg_logit_bstride, ""),
                                       LLVMBuildMul(B, t, cg_i64(cg, s->row_stride), ""), "");
        at = LLVMBuildAdd(B, at, cg_i64(cg, s->col_offset), "");
        return cg_gep(cg, cg->f32, cg->arg_logits, at);
    }
    case STORE_SCRATCH: {
        LLVMValueRef row = LLVMBuildAdd(B, LLVMBuildMul(B, b, cg->len, ""), t, "row");
        LLVMValueRef at = LLVMBuildMul(B, cg_i64(cg, s->offset), cg->rowcap, "");
        at = LLVMBuildAdd(B, at, LLVMBuildMul(B, row, cg_i64(cg, s->row_stride), ""), "");
        at = LLVMBuildAdd(B, at, cg_i64(cg, s->col_offset), "");
        return cg_gep(cg, cg->f32, cg->arg_scratch, at);
    }
    case STORE_NONE:
        break;
    }
    mxc_die("%%%d (%s) has no storage", n->id, ir_op_name(n->op));
}

LLVMValueRef cg_weight(Cg *cg, const Node *w)
{
    if (w->op != OP_WEIGHT || w->attr.weight.slot < 0)
        mxc_die("%%%d is not a bound weight", w->id);
    return cg->weight_ptr[w->attr.weight.slot];
}

LLVMValueRef cg_state(Cg *cg, int slot, LLVMValueRef b)
{
    const Graph *g = cg->g;
    LLVMValueRef at = LLVMBuildMul(cg->b, b, cg_i64(cg, g->state_floats), "");
    at = LLVMBuildAdd(cg->b, at, cg_i64(cg, g->states[slot].offset), "");
    return cg_gep(cg, cg->f32, cg->arg_state, at);
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

LLVMValueRef cg_exp(Cg *cg, LLVMValueRef x) { return cg_call_intrinsic1(cg, "llvm.exp", x); }
LLVMValueRef cg_sqrt(Cg *cg, LLVMValueRef x) { return cg_call_intrinsic1(cg, "llvm.sqrt", x); }

/* A float function of libm (the shared object links libm). */
LLVMValueRef cg_libm(Cg *cg, const char *name, LLVMValueRef x)
{
    LLVMTypeRef fty = LLVMFunctionType(cg->f32, &cg->f32, 1, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(cg->mod, name);
    if (!fn) fn = LLVMAddFunction(cg->mod, name, fty);
    return LLVMBuildCall2(cg->b, fty, fn, &x, 1, "");
}

/* log1p, tanh and erf have no LLVM intrinsic in LLVM 19. */
LLVMValueRef cg_log1p(Cg *cg, LLVMValueRef x) { return cg_libm(cg, "log1pf", x); }
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

LLVMValueRef cg_max(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return call_intrinsic2(cg, "llvm.maxnum", a, b); }
LLVMValueRef cg_min(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return call_intrinsic2(cg, "llvm.minnum", a, b); }
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
    return LLVMBuildFDiv(cg->b, cg_f32(cg, 1.0), LLVMBuildFAdd(cg->b, cg_f32(cg, 1.0), e, ""), "");
}

/* x * sigmoid(x), as torch's F.silu */
LLVMValueRef cg_silu(Cg *cg, LLVMValueRef x)
{
    return LLVMBuildFMul(cg->b, x, cg_sigmoid(cg, x), "");
}

/* torch's F.softplus with beta 1, threshold 20: x > 20 ? x : log1p(exp(x)) */
LLVMValueRef cg_softplus(Cg *cg, LLVMValueRef x)
{
    LLVMValueRef big = LLVMBuildFCmp(cg->b, LLVMRealOGT, x, cg_f32(cg, 20.0), "");
    LLVMValueRef soft = cg_log1p(cg, cg_exp(cg, x));
    return LLVMBuildSelect(cg->b, big, x, soft, "");
}

bool cg_op_is_unary(Op op)
{
    switch (op) {
    case OP_SILU: case OP_SOFTPLUS: case OP_GELU: case OP_RELU: case OP_RELU2: case OP_SIGMOID:
    case OP_SELU:
        return true;
    case OP_TOKENS: case OP_WEIGHT: case OP_EMBED: case OP_RMSNORM: case OP_LAYERNORM:
    case OP_LINEAR: case OP_HEADWISE: case OP_SLICE: case OP_CONCAT: case OP_SCALE: case OP_MUL:
    case OP_ADD: case OP_CONV1D: case OP_SELECTIVE_SCAN: case OP_MLSTM_CELL: case OP_SLSTM_CELL:
    case OP_OUTPUT: case OP_COUNT_:
        return false;
    }
    return false;
}

LLVMValueRef cg_unary(Cg *cg, Op op, LLVMValueRef x)
{
    LLVMBuilderRef B = cg->b;
    switch (op) {
    case OP_SILU: return cg_silu(cg, x);
    case OP_SOFTPLUS: return cg_softplus(cg, x);
    case OP_GELU: /* exact (erf) form, as F.gelu's default */
        return LLVMBuildFMul(B, LLVMBuildFMul(B, cg_f32(cg, 0.5), x, ""),
                             LLVMBuildFAdd(B, cg_f32(cg, 1.0),
                                           cg_erf(cg, LLVMBuildFMul(B, x, cg_f32(cg, 0.70710678118654752440), "")),
                                           ""), "");
    case OP_RELU: return cg_max(cg, x, cg_f32(cg, 0.0));
    case OP_RELU2: {
        LLVMValueRef p = cg_max(cg, x, cg_f32(cg, 0.0));
        return LLVMBuildFMul(B, p, p, "");
    }
    case OP_SIGMOID: return cg_sigmoid(cg, x);
    case OP_SELU: { /* torch's constants */
        LLVMValueRef neg = LLVMBuildFMul(B, cg_f32(cg, 1.6732632423543772848170429916717),
                                         LLVMBuildFSub(B, cg_exp(cg, x), cg_f32(cg, 1.0), ""), "");
        LLVMValueRef pos = LLVMBuildFCmp(B, LLVMRealOGT, x, cg_f32(cg, 0.0), "");
        return LLVMBuildFMul(B, cg_f32(cg, 1.0507009873554804934193349852946),
                             LLVMBuildSelect(B, pos, x, neg, ""), "");
    }
    case OP_TOKENS: case OP_WEIGHT: case OP_EMBED: case OP_RMSNORM: case OP_LAYERNORM:
    case OP_LINEAR: case OP_HEADWISE: case OP_SLICE: case OP_CONCAT: case OP_SCALE: case OP_MUL:
    case OP_ADD: case OP_CONV1D: case OP_SELECTIVE_SCAN: case OP_MLSTM_CELL: case OP_SLSTM_CELL:
    case OP_OUTPUT: case OP_COUNT_:
        break;
    }
    mxc_die("%s is not a unary op", ir_op_name(op));
}
