/* codegen.c - the chunk kernels of a model: one LLVM function that runs every live node of
 * the graph in order, generated twice — once for any T (forward) and once with T fixed to 1
 * (step), so that LLVM specialises the decode path. */
#include <stdlib.h>

#include <llvm-c/Analysis.h>

#include "backend/codegen.h"

static void cg_init_types(Cg *cg)
{
    cg->f32 = LLVMFloatTypeInContext(cg->ctx);
    cg->i32 = LLVMInt32TypeInContext(cg->ctx);
    cg->i64 = LLVMInt64TypeInContext(cg->ctx);
    cg->i1 = LLVMInt1TypeInContext(cg->ctx);
    cg->ptr = LLVMPointerTypeInContext(cg->ctx, 0);
    cg->void_t = LLVMVoidTypeInContext(cg->ctx);
}

/* Mark pointer arguments noalias where the runtime guarantees distinct buffers. */
static void add_noalias(Cg *cg, LLVMValueRef fn, unsigned index)
{
    unsigned kind = LLVMGetEnumAttributeKindForName("noalias", 7);
    LLVMAddAttributeAtIndex(fn, index, LLVMCreateEnumAttribute(cg->ctx, kind, 0));
}

/* ith and nth from the MxrtExec argument; a NULL exec means one thread. */
static void load_thread_share(Cg *cg, LLVMValueRef exec)
{
    LLVMBuilderRef B = cg->b;
    cg->exec = exec;
    LLVMValueRef is_null = LLVMBuildICmp(B, LLVMIntEQ, exec, LLVMConstNull(cg->ptr), "");
    LLVMBasicBlockRef from = LLVMGetInsertBlock(B);
    LLVMBasicBlockRef load = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "exec");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "share");
    LLVMBuildCondBr(B, is_null, join, load);
    LLVMPositionBuilderAtEnd(B, load);
    LLVMValueRef ith = LLVMBuildLoad2(B, cg->i32, exec, "ith");
    LLVMValueRef nth = LLVMBuildLoad2(B, cg->i32, cg_gep(cg, cg->i32, exec, cg_i64(cg, 1)), "nth");
    LLVMBuildBr(B, join);
    LLVMPositionBuilderAtEnd(B, join);
    LLVMValueRef ith_phi = LLVMBuildPhi(B, cg->i32, "ith");
    LLVMValueRef nth_phi = LLVMBuildPhi(B, cg->i32, "nth");
    LLVMValueRef zero = LLVMConstInt(cg->i32, 0, 0), one = LLVMConstInt(cg->i32, 1, 0);
    LLVMAddIncoming(ith_phi, (LLVMValueRef[]){zero, ith}, (LLVMBasicBlockRef[]){from, load}, 2);
    LLVMAddIncoming(nth_phi, (LLVMValueRef[]){one, nth}, (LLVMBasicBlockRef[]){from, load}, 2);
    cg->ith = LLVMBuildSExt(B, ith_phi, cg->i64, "ith64");
    cg->nth = LLVMBuildSExt(B, nth_phi, cg->i64, "nth64");
}

static void emit_barrier(Cg *cg)
{
    LLVMTypeRef fty = LLVMFunctionType(cg->void_t, &cg->ptr, 1, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(cg->mod, "mxrt_barrier");
    if (!fn) fn = LLVMAddFunction(cg->mod, "mxrt_barrier", fty);
    LLVMBuildCall2(cg->b, fty, fn, &cg->exec, 1, "");
}

/* void kernel(ptr weights, ptr state, ptr scratch, ptr tokens, i64 tok_bstride,
 *             ptr logits, i64 logit_bstride, i32 batch, i32 len, ptr exec) */
static LLVMValueRef emit_chunk_function(Cg *cg, const char *name, bool step)
{
    LLVMTypeRef params[] = {cg->ptr, cg->ptr, cg->ptr, cg->ptr, cg->i64,
                            cg->ptr, cg->i64, cg->i32, cg->i32, cg->ptr};
    LLVMTypeRef fty = LLVMFunctionType(cg->void_t, params, 10, 0);
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, fty);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    for (unsigned i = 2; i <= 3; i++) add_noalias(cg, fn, i); /* state, scratch */
    add_noalias(cg, fn, 6);                                   /* logits */
    cg_set_target_attributes(cg, fn);
    cg->fn = fn;
    cg->entry = LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry");
    LLVMPositionBuilderAtEnd(cg->b, cg->entry);

    cg->arg_weights = LLVMGetParam(fn, 0);
    cg->arg_state = LLVMGetParam(fn, 1);
    cg->arg_scratch = LLVMGetParam(fn, 2);
    cg->arg_tokens = LLVMGetParam(fn, 3);
    cg->arg_tok_bstride = LLVMGetParam(fn, 4);
    cg->arg_logits = LLVMGetParam(fn, 5);
    cg->arg_logit_bstride = LLVMGetParam(fn, 6);
    cg->batch = LLVMBuildSExt(cg->b, LLVMGetParam(fn, 7), cg->i64, "B");
    cg->len = step ? cg_i64(cg, 1) : LLVMBuildSExt(cg->b, LLVMGetParam(fn, 8), cg->i64, "T");
    cg->rowcap = LLVMBuildMul(cg->b, cg->batch, cg_i64(cg, cg->g->chunk_len), "rowcap");
    load_thread_share(cg, LLVMGetParam(fn, 9));

    /* Weight pointers are loaded once; the table is read-only for the whole call. */
    for (int i = 0; i < cg->g->n_weight_slots; i++) {
        LLVMValueRef slot = cg_gep(cg, cg->ptr, cg->arg_weights, cg_i64(cg, i));
        cg->weight_ptr[i] = LLVMBuildLoad2(cg->b, cg->ptr, slot, "w");
    }
    /* The entry block ends here; allocas made by cg_var are inserted before this point. */
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(cg->ctx, fn, "ops");
    LLVMBuildBr(cg->b, body);
    LLVMPositionBuilderAtEnd(cg->b, body);

    /* Every thread runs every op on its share; an op may read what any thread wrote in the
     * ops before it, so threads meet after each op that computes something. */
    for (int i = 0; i < cg->g->n_nodes; i++) {
        const Node *n = cg->g->nodes[i];
        if (n->dead || !cg_emit_node(cg, n)) continue;
        emit_barrier(cg);
    }
    LLVMBuildRetVoid(cg->b);
    return fn;
}

bool backend_emit_object(const Graph *g, const BackendOptions *o, const char *obj_path)
{
    Cg cg = {0};
    cg.g = g;
    cg.opts = o;
    cg.ctx = LLVMContextCreate();
    cg.mod = LLVMModuleCreateWithNameInContext(g->name, cg.ctx);
    cg.b = LLVMCreateBuilderInContext(cg.ctx);
    cg_init_types(&cg);
    cg.weight_ptr = calloc((size_t)g->n_weight_slots + 1, sizeof *cg.weight_ptr);
    cg.vector_width = cg_target_vector_width(o);
    if (!cg.weight_ptr) mxc_die("out of memory");

    LLVMValueRef forward = emit_chunk_function(&cg, "mxc_forward_chunk", false);
    LLVMValueRef step = emit_chunk_function(&cg, "mxc_step", true);
    cg_emit_descriptor(&cg, forward, step);

    bool ok = true;
    char *msg = NULL;
    if (LLVMVerifyModule(cg.mod, LLVMReturnStatusAction, &msg)) {
        fprintf(stderr, "mxc: internal error: generated LLVM module is invalid:\n%s\n", msg);
        ok = false;
    }
    LLVMDisposeMessage(msg);
    if (ok) ok = cg_optimize_and_emit(&cg, obj_path);

    free(cg.weight_ptr);
    LLVMDisposeBuilder(cg.b);
    LLVMDisposeModule(cg.mod);
    LLVMContextDispose(cg.ctx);
    return ok;
}
