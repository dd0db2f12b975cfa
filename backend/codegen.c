/* codegen.c - the chunk kernels of a model.
 *
 * The model's chunk function runs the live nodes in order, each as a call to an op kernel
 * followed by a barrier. An op kernel is an LLVM function specialised for one op with its
 * shapes, strides and attributes; it gets the base pointers of its operands as arguments, so
 * the 24 identical layers of a stack share one set of kernels and LLVM optimises each once.
 * The chunk function is generated twice — for any T (forward) and with T fixed to 1 (step) —
 * and so are the kernels, so the decode path is specialised throughout.
 *
 * Kernel signature: void k(i64 B, i64 T, i64 ith, i64 nth, i64 tok_bstride,
 *                          i64 logit_bstride, ptr state, ptr operand..., ptr result)
 * where each operand pointer is where its storage starts (see cg_row). */
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>

#include "backend/codegen.h"

enum { KERNEL_FIXED_PARAMS = 7 };

static void cg_init_types(Cg *cg)
{
    cg->f32 = LLVMFloatTypeInContext(cg->ctx);
    cg->i32 = LLVMInt32TypeInContext(cg->ctx);
    cg->i64 = LLVMInt64TypeInContext(cg->ctx);
    cg->i1 = LLVMInt1TypeInContext(cg->ctx);
    cg->ptr = LLVMPointerTypeInContext(cg->ctx, 0);
    cg->void_t = LLVMVoidTypeInContext(cg->ctx);
}

static void add_attribute(Cg *cg, LLVMValueRef fn, unsigned index, const char *name)
{
    unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
    LLVMAddAttributeAtIndex(fn, index, LLVMCreateEnumAttribute(cg->ctx, kind, 0));
}

/* --- op kernels -------------------------------------------------------------------------- */

/* Everything an op's code depends on, as text: two nodes with the same key share a kernel.
 * That is the op and whether it is the step's copy, every attribute that shapes its result
 * (ir_format_attrs, the same text the IR dump shows, with exact reals), the vector width,
 * and the type (element type included) and storage kind and row stride of each operand.
 * Storage offsets are not part of it: they arrive as pointers. */
static void kernel_key(const Cg *cg, const Node *n, bool step, char *key, size_t len)
{
    char attrs[512];
    if (!ir_format_attrs(n, true, attrs, sizeof attrs))
        mxc_die("attributes of %%%d (%s) do not fit the kernel key", n->id, ir_op_name(n->op));
    size_t at = (size_t)snprintf(key, len, "%s%s{%s}v%d", ir_op_name(n->op), step ? ".step" : "",
                                 attrs, cg->vector_width);
    for (int i = 0; i <= n->n_src && at < len; i++) {
        const Node *v = i < n->n_src ? n->src[i] : n;
        char type[64];
        ir_type_format(&v->type, type, sizeof type);
        at += (size_t)snprintf(key + at, len - at, "|%s:%d:%lld", type, (int)v->store.kind,
                               (long long)v->store.row_stride);
    }
    /* A truncated key could make two different kernels look alike. */
    if (at >= len) mxc_die("kernel key of %%%d (%s) exceeds %zu bytes", n->id, ir_op_name(n->op), len);
}

/* The chunk function's own arguments, beside its CgFn (see emit_chunk_function). */
typedef struct Chunk {
    CgFn f;
    LLVMValueRef weights, state, scratch, tokens, logits; /* the caller's arrays */
    LLVMValueRef rowcap;      /* i64: B * T, rows of every scratch block in this call */
    LLVMValueRef exec;        /* MxrtExec * of this thread */
    LLVMValueRef *weight_ptr; /* per weight slot, loaded once in the entry block */
} Chunk;

/* Where a node's storage starts, in the chunk function. */
static LLVMValueRef operand_base(Cg *cg, const Chunk *c, const Node *v)
{
    const Storage *s = &v->store;
    switch (v->op == OP_WEIGHT ? STORE_NONE : s->kind) {
    case STORE_NONE:
        if (v->op != OP_WEIGHT) break;
        /* a q8 weight is two slots (values, scales): its kernel gets the address of the pair */
        if (v->type.dtype == DT_Q8)
            return cg_gep(cg, cg->ptr, c->weights, cg_i64(cg, v->attr.weight.slot));
        return c->weight_ptr[v->attr.weight.slot];
    case STORE_TOKENS:
        return c->tokens;
    case STORE_LOGITS:
        return cg_gep(cg, cg->f32, c->logits, cg_i64(cg, s->col_offset));
    case STORE_SCRATCH: {
        LLVMValueRef at = LLVMBuildMul(cg->b, cg_i64(cg, s->offset), c->rowcap, "");
        at = LLVMBuildAdd(cg->b, at, cg_i64(cg, s->col_offset), "");
        return cg_gep(cg, cg->f32, c->scratch, at);
    }
    }
    mxc_die("%%%d (%s) has no storage", v->id, ir_op_name(v->op));
}

/* Build the kernel of node n: a function of its own whose body is the op's emitter, run
 * with the operands bound to the kernel's parameters. */
static LLVMValueRef build_kernel(Cg *cg, const Node *n, bool step, const char *name)
{
    unsigned nparams = KERNEL_FIXED_PARAMS + (unsigned)n->n_src + 1;
    LLVMTypeRef params[KERNEL_FIXED_PARAMS + IR_MAX_SRC + 1];
    for (unsigned i = 0; i < nparams; i++) params[i] = i < 6 ? cg->i64 : cg->ptr;
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->void_t, params, nparams, 0));
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    cg_set_target_attributes(cg, fn);
    add_attribute(cg, fn, LLVMAttributeFunctionIndex, "nounwind");
    /* Inlined into the chunk function, 24 layers' worth of copies would be optimised again
     * each (and make compile time grow with depth); a call per op costs nothing. */
    add_attribute(cg, fn, LLVMAttributeFunctionIndex, "noinline");

    CgFn *outer = cg->f;
    LLVMBasicBlockRef resume = LLVMGetInsertBlock(cg->b);
    CgFn k = {
        .fn = fn,
        .entry = LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"),
        .batch = LLVMGetParam(fn, 0),
        .len = step ? cg_i64(cg, 1) : LLVMGetParam(fn, 1),
        .ith = LLVMGetParam(fn, 2),
        .nth = LLVMGetParam(fn, 3),
        .tok_bstride = LLVMGetParam(fn, 4),
        .logit_bstride = LLVMGetParam(fn, 5),
        .state = LLVMGetParam(fn, 6),
        .bound = outer->bound,
    };
    cg->f = &k;
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(cg->ctx, fn, "body");
    LLVMPositionBuilderAtEnd(cg->b, body);
    for (int i = 0; i < n->n_src; i++) k.bound[n->src[i]->id] = LLVMGetParam(fn, KERNEL_FIXED_PARAMS + (unsigned)i);
    k.bound[n->id] = LLVMGetParam(fn, nparams - 1);
    k.bound_scales = calloc((size_t)cg->g->n_nodes + 1, sizeof *k.bound_scales);
    if (!k.bound_scales) mxc_die("out of memory");
    LLVMPositionBuilderAtEnd(cg->b, k.entry);
    for (int i = 0; i < n->n_src; i++) { /* q8: the values and scales pointers, loaded once */
        const Node *w = n->src[i];
        if (w->op != OP_WEIGHT || w->type.dtype != DT_Q8 || k.bound_scales[w->id]) continue;
        LLVMValueRef pair = k.bound[w->id];
        k.bound[w->id] = LLVMBuildLoad2(cg->b, cg->ptr, pair, "q8.values");
        k.bound_scales[w->id] = LLVMBuildLoad2(cg->b, cg->ptr, cg_gep(cg, cg->ptr, pair, cg_i64(cg, 1)), "q8.scales");
    }
    LLVMPositionBuilderAtEnd(cg->b, body);

    if (!cg_emit_node(cg, n)) mxc_die("%s has no kernel", ir_op_name(n->op));
    LLVMBuildRetVoid(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, k.entry);
    LLVMBuildBr(cg->b, body);

    for (int i = 0; i < n->n_src; i++) k.bound[n->src[i]->id] = NULL;
    k.bound[n->id] = NULL;
    free(k.bound_scales);
    cg->f = outer;
    LLVMPositionBuilderAtEnd(cg->b, resume);
    return fn;
}

/* The kernel for node n: an existing one with the same key, or a new one. */
static LLVMValueRef kernel_for(Cg *cg, const Node *n, bool step)
{
    char key[1024];
    kernel_key(cg, n, step, key, sizeof key);
    for (int i = 0; i < cg->n_kernels; i++)
        if (strcmp(cg->kernels[i].key, key) == 0) return cg->kernels[i].fn;
    if (cg->n_kernels == cg->cap_kernels) {
        cg->cap_kernels = cg->cap_kernels ? 2 * cg->cap_kernels : 32;
        cg->kernels = realloc(cg->kernels, (size_t)cg->cap_kernels * sizeof *cg->kernels);
        if (!cg->kernels) mxc_die("out of memory");
    }
    char name[64];
    snprintf(name, sizeof name, "mxc_%s%s_%d", ir_op_name(n->op), step ? "_step" : "", cg->n_kernels);
    LLVMValueRef fn = build_kernel(cg, n, step, name);
    cg->kernels[cg->n_kernels].key = strdup(key);
    cg->kernels[cg->n_kernels].fn = fn;
    cg->n_kernels++;
    return fn;
}

/* The output has no kernel when its source already wrote the logits. */
static bool node_has_code(const Node *n)
{
    if (n->op == OP_OUTPUT) return n->src[0]->store.kind != STORE_LOGITS;
    return ir_op_has_code(n->op);
}

/* --- the chunk function ------------------------------------------------------------------- */

/* ith and nth from the MxrtExec argument; a NULL exec means one thread. */
static void load_thread_share(Cg *cg, Chunk *c, LLVMValueRef exec)
{
    LLVMBuilderRef B = cg->b;
    c->exec = exec;
    LLVMValueRef is_null = LLVMBuildICmp(B, LLVMIntEQ, exec, LLVMConstNull(cg->ptr), "");
    LLVMBasicBlockRef from = LLVMGetInsertBlock(B);
    LLVMBasicBlockRef load = LLVMAppendBasicBlockInContext(cg->ctx, c->f.fn, "exec");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->ctx, c->f.fn, "share");
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
    c->f.ith = LLVMBuildSExt(B, ith_phi, cg->i64, "ith64");
    c->f.nth = LLVMBuildSExt(B, nth_phi, cg->i64, "nth64");
}

static void emit_barrier(Cg *cg, const Chunk *c)
{
    LLVMTypeRef fty = LLVMFunctionType(cg->void_t, &cg->ptr, 1, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(cg->mod, "mxrt_barrier");
    if (!fn) fn = LLVMAddFunction(cg->mod, "mxrt_barrier", fty);
    LLVMValueRef exec = c->exec;
    LLVMBuildCall2(cg->b, fty, fn, &exec, 1, "");
}

/* One op: call its kernel on this thread's share, then wait for the other threads (the next
 * op may read anything this one wrote). */
static void emit_node_call(Cg *cg, const Chunk *c, const Node *n, bool step)
{
    LLVMValueRef fn = kernel_for(cg, n, step);
    LLVMValueRef args[KERNEL_FIXED_PARAMS + IR_MAX_SRC + 1];
    unsigned k = 0;
    args[k++] = c->f.batch;
    args[k++] = c->f.len;
    args[k++] = c->f.ith;
    args[k++] = c->f.nth;
    args[k++] = c->f.tok_bstride;
    args[k++] = c->f.logit_bstride;
    args[k++] = ir_op_is_recurrent(n->op)
                    ? cg_gep(cg, cg->f32, c->state, cg_i64(cg, cg->g->states[n->attr.rec.state].offset))
                    : LLVMConstNull(cg->ptr);
    for (int i = 0; i < n->n_src; i++) args[k++] = operand_base(cg, c, n->src[i]);
    args[k++] = operand_base(cg, c, n);
    LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(fn), fn, args, k, "");
    emit_barrier(cg, c);
}

/* The trunk (head.c) for all positions; with_head: then the head for the last position of
 * each sequence, on step kernels in the compact area behind the chunk's scratch. */
static void emit_partial_nodes(Cg *cg, Chunk *c, bool with_head)
{
    bool *trunk, *gather;
    cg_head_sets(cg->g, &trunk, &gather);
    LLVMValueRef compact = cg_gep(cg, cg->f32, c->scratch,
                                  LLVMBuildMul(cg->b, c->rowcap, cg_i64(cg, cg->g->scratch_per_row), ""));
    for (int i = 0; i < cg->g->n_nodes; i++) {
        const Node *n = cg->g->nodes[i];
        if (n->dead) continue;
        if (trunk[n->id]) {
            if (node_has_code(n)) emit_node_call(cg, c, n, false);
            if (with_head && gather[n->id]) {
                cg_emit_gather(cg, n, c->scratch, c->rowcap, compact);
                emit_barrier(cg, c);
            }
        } else if (with_head && node_has_code(n)) {
            LLVMValueRef scratch = c->scratch, rowcap = c->rowcap, len = c->f.len;
            c->scratch = compact; /* the layout of a step call: B rows */
            c->rowcap = c->f.batch;
            c->f.len = cg_i64(cg, 1);
            emit_node_call(cg, c, n, true);
            c->scratch = scratch;
            c->rowcap = rowcap;
            c->f.len = len;
        }
    }
    free(trunk);
    free(gather);
}

enum { CHUNK_ALL, CHUNK_TRUNK, CHUNK_LAST }; /* which nodes a forward chunk function runs */

/* void chunk(ptr weights, ptr state, ptr scratch, ptr tokens, i64 tok_bstride,
 *            ptr logits, i64 logit_bstride, i32 batch, i32 len, ptr exec) */
static LLVMValueRef emit_chunk_function(Cg *cg, const char *name, bool step, int part,
                                        LLVMValueRef *bound)
{
    LLVMTypeRef params[] = {cg->ptr, cg->ptr, cg->ptr, cg->ptr, cg->i64,
                            cg->ptr, cg->i64, cg->i32, cg->i32, cg->ptr};
    LLVMTypeRef fty = LLVMFunctionType(cg->void_t, params, 10, 0);
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, fty);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    for (unsigned i = 2; i <= 3; i++) add_attribute(cg, fn, i, "noalias"); /* state, scratch */
    add_attribute(cg, fn, 6, "noalias");                                  /* logits */
    cg_set_target_attributes(cg, fn);

    Chunk c = {
        .f = {.fn = fn, .entry = LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"),
              .tok_bstride = LLVMGetParam(fn, 4), .logit_bstride = LLVMGetParam(fn, 6),
              .bound = bound},
        .weights = LLVMGetParam(fn, 0),
        .state = LLVMGetParam(fn, 1),
        .scratch = LLVMGetParam(fn, 2),
        .tokens = LLVMGetParam(fn, 3),
        .logits = LLVMGetParam(fn, 5),
        .weight_ptr = calloc((size_t)cg->g->n_weight_slots + 1, sizeof *c.weight_ptr),
    };
    if (!c.weight_ptr) mxc_die("out of memory");
    cg->f = &c.f;
    LLVMPositionBuilderAtEnd(cg->b, c.f.entry);
    c.f.batch = LLVMBuildSExt(cg->b, LLVMGetParam(fn, 7), cg->i64, "B");
    c.f.len = step ? cg_i64(cg, 1) : LLVMBuildSExt(cg->b, LLVMGetParam(fn, 8), cg->i64, "T");
    c.rowcap = LLVMBuildMul(cg->b, c.f.batch, c.f.len, "rowcap"); /* rows of this call */
    for (int i = 0; i < cg->g->n_weight_slots; i++) {
        LLVMValueRef slot = cg_gep(cg, cg->ptr, c.weights, cg_i64(cg, i));
        c.weight_ptr[i] = LLVMBuildLoad2(cg->b, cg->ptr, slot, "w");
    }
    load_thread_share(cg, &c, LLVMGetParam(fn, 9));

    if (part != CHUNK_ALL) emit_partial_nodes(cg, &c, part == CHUNK_LAST);
    for (int i = 0; part == CHUNK_ALL && i < cg->g->n_nodes; i++) {
        const Node *n = cg->g->nodes[i];
        if (!n->dead && node_has_code(n)) emit_node_call(cg, &c, n, step);
    }
    LLVMBuildRetVoid(cg->b);
    free(c.weight_ptr);
    cg->f = NULL;
    return fn;
}

bool backend_emit_object(const Graph *g, const BackendOptions *o, const char *obj_path)
{
    Cg cg = {0};
    cg.g = g;
    cg.opts = o;
    cg.ctx = LLVMContextCreate();
    cg.mod = LLVMModuleCreateWithNameInContext(g->model.name, cg.ctx);
    cg.b = LLVMCreateBuilderInContext(cg.ctx);
    cg_init_types(&cg);
    LLVMValueRef *bound = calloc((size_t)g->n_nodes + 1, sizeof *bound);
    if (!bound) mxc_die("out of memory");
    cg.vector_width = cg_target_vector_width(o);
    cg.has_f16c = cg_target_has_f16c(o);

    LLVMValueRef forward = emit_chunk_function(&cg, "mxc_forward_chunk", false, CHUNK_ALL, bound);
    LLVMValueRef step = emit_chunk_function(&cg, "mxc_step", true, CHUNK_ALL, bound);
    LLVMValueRef trunk = emit_chunk_function(&cg, "mxc_forward_trunk", false, CHUNK_TRUNK, bound);
    LLVMValueRef last = emit_chunk_function(&cg, "mxc_forward_last", false, CHUNK_LAST, bound);
    cg_emit_descriptor(&cg, forward, step, trunk, last);

    bool ok = true;
    char *msg = NULL;
    if (LLVMVerifyModule(cg.mod, LLVMReturnStatusAction, &msg)) {
        fprintf(stderr, "mxc: internal error: generated LLVM module is invalid:\n%s\n", msg);
        ok = false;
    }
    LLVMDisposeMessage(msg);
    if (ok) ok = cg_optimize_and_emit(&cg, obj_path);

    for (int i = 0; i < cg.n_kernels; i++) free(cg.kernels[i].key);
    free(cg.kernels);
    free(bound);
    LLVMDisposeBuilder(cg.b);
    LLVMDisposeModule(cg.mod);
    LLVMContextDispose(cg.ctx);
    return ok;
}
