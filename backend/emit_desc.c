/* emit_desc.c - the constant MxrtModelDesc of a model and its exported C API.
 *
 * The descriptor's LLVM struct mirrors runtime/mxrt.h field by field (natural C layout on
 * the targets LLVM gives us); MXRT_ABI_VERSION guards the pairing. Each exported P_xxx is a
 * one-call wrapper around mxrt_xxx with the descriptor or the arguments passed through. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#include "backend/codegen.h"
#include "runtime/mxrt.h"

static LLVMValueRef const_string(Cg *cg, const char *s)
{
    if (!s) return LLVMConstNull(cg->ptr);
    LLVMValueRef init = LLVMConstStringInContext(cg->ctx, s, (unsigned)strlen(s), 0);
    LLVMValueRef gv = LLVMAddGlobal(cg->mod, LLVMTypeOf(init), "str");
    LLVMSetInitializer(gv, init);
    LLVMSetLinkage(gv, LLVMPrivateLinkage);
    LLVMSetGlobalConstant(gv, 1);
    LLVMSetUnnamedAddress(gv, LLVMGlobalUnnamedAddr);
    return gv;
}

static LLVMValueRef const_i32(Cg *cg, int64_t v) { return LLVMConstInt(cg->i32, (unsigned long long)v, 1); }

static int32_t mxrt_dtype(DType d)
{
    switch (d) {
    case DT_BF16: return MXRT_DTYPE_BF16;
    case DT_F16: return MXRT_DTYPE_F16;
    case DT_Q8: return MXRT_DTYPE_Q8;
    case DT_F32: case DT_I32: break;
    }
    return MXRT_DTYPE_F32;
}

/* MxrtTensorSpec { ptr name; ptr alt_name; i32 rank; i32 transform; i64 dims[4];
 *                  i64 xform_dims[4]; }, and the slots' dtypes beside it (*dtypes_out,
 * i32[n_weights], or NULL when every slot is f32, as in every build before narrow weights) */
static LLVMValueRef emit_weight_table(Cg *cg, LLVMTypeRef *out_type, LLVMValueRef *dtypes_out)
{
    LLVMTypeRef dims_t = LLVMArrayType2(cg->i64, MXRT_MAX_RANK);
    LLVMTypeRef fields[] = {cg->ptr, cg->ptr, cg->i32, cg->i32, dims_t, dims_t};
    LLVMTypeRef spec_t = LLVMStructTypeInContext(cg->ctx, fields, 6, 0);
    *out_type = spec_t;
    const Graph *g = cg->g;
    int n = g->n_weight_slots;
    LLVMValueRef *rows = calloc((size_t)n + 1, sizeof *rows);
    LLVMValueRef *dtypes = calloc((size_t)n + 1, sizeof *dtypes);
    if (!rows || !dtypes) mxc_die("out of memory");
    bool narrow = false;
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *w = g->nodes[i];
        if (w->dead || w->op != OP_WEIGHT) continue;
        /* The table holds the shape as the checkpoint stores it. */
        bool swapped = w->attr.weight.layout == WEIGHT_SWAP_MIDDLE;
        int rank = swapped ? w->attr.weight.stored_rank : w->type.rank;
        const int64_t *shape = swapped ? w->attr.weight.stored_dim : w->type.dim;
        LLVMValueRef dims[MXRT_MAX_RANK], view[4];
        for (int d = 0; d < MXRT_MAX_RANK; d++) dims[d] = cg_i64(cg, d < rank ? shape[d] : 0);
        for (int d = 0; d < 4; d++) view[d] = cg_i64(cg, swapped ? w->attr.weight.view[d] : 0);
        bool q8 = w->type.dtype == DT_Q8; /* narrow weights are never swapped (narrow-weights) */
        LLVMValueRef vals[] = {const_string(cg, w->attr.weight.name),
                               const_string(cg, w->attr.weight.alt_name), const_i32(cg, rank),
                               const_i32(cg, swapped ? MXRT_XFORM_SWAP_MIDDLE : MXRT_XFORM_NONE),
                               LLVMConstArray2(cg->i64, dims, MXRT_MAX_RANK),
                               LLVMConstArray2(cg->i64, view, 4)};
        rows[w->attr.weight.slot] = LLVMConstNamedStruct(spec_t, vals, 6);
        dtypes[w->attr.weight.slot] = const_i32(cg, mxrt_dtype(w->type.dtype));
        narrow |= w->type.dtype != DT_F32;
        if (q8) { /* the scales' slot: same name (the runtime appends the suffix), K / block */
            dims[rank - 1] = cg_i64(cg, shape[rank - 1] / IR_Q8_BLOCK);
            LLVMValueRef svals[] = {vals[0], vals[1], vals[2], vals[3],
                                    LLVMConstArray2(cg->i64, dims, MXRT_MAX_RANK), vals[5]};
            rows[w->attr.weight.slot + 1] = LLVMConstNamedStruct(spec_t, svals, 6);
            dtypes[w->attr.weight.slot + 1] = const_i32(cg, MXRT_DTYPE_Q8_SCALES);
        }
    }
    LLVMValueRef init = LLVMConstArray2(spec_t, rows, (uint64_t)n);
    free(rows);
    *dtypes_out = LLVMConstNull(cg->ptr);
    if (narrow) {
        LLVMValueRef arr = LLVMConstArray2(cg->i32, dtypes, (uint64_t)n);
        LLVMValueRef dg = LLVMAddGlobal(cg->mod, LLVMTypeOf(arr), "mxc_weight_dtypes");
        LLVMSetInitializer(dg, arr);
        LLVMSetLinkage(dg, LLVMPrivateLinkage);
        LLVMSetGlobalConstant(dg, 1);
        *dtypes_out = dg;
    }
    free(dtypes);
    LLVMValueRef gv = LLVMAddGlobal(cg->mod, LLVMTypeOf(init), "mxc_weight_table");
    LLVMSetInitializer(gv, init);
    LLVMSetLinkage(gv, LLVMPrivateLinkage);
    LLVMSetGlobalConstant(gv, 1);
    return gv;
}

/* A runtime entry point, declared on first use. */
static LLVMValueRef runtime_fn(Cg *cg, const char *name, LLVMTypeRef ret, LLVMTypeRef *params,
                               unsigned n, LLVMTypeRef *fty)
{
    *fty = LLVMFunctionType(ret, params, n, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(cg->mod, name);
    if (!fn) fn = LLVMAddFunction(cg->mod, name, *fty);
    return fn;
}

/* P_<api>(args...) { return mxrt_<api>([desc,] args...); } */
static void emit_wrapper(Cg *cg, const char *api, LLVMTypeRef ret, LLVMTypeRef *params,
                         unsigned n, LLVMValueRef desc)
{
    const char *prefix = cg->opts->prefix;
    char name[256], target[64];
    snprintf(name, sizeof name, "%s_%s", prefix, api);
    snprintf(target, sizeof target, "mxrt_%s", api);

    LLVMTypeRef rt_params[12];
    unsigned rn = 0;
    if (desc) rt_params[rn++] = cg->ptr;
    for (unsigned i = 0; i < n; i++) rt_params[rn++] = params[i];
    LLVMTypeRef rt_fty;
    LLVMValueRef rt = runtime_fn(cg, target, ret, rt_params, rn, &rt_fty);

    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(ret, params, n, 0));
    LLVMSetVisibility(fn, LLVMDefaultVisibility);
    LLVMBuilderRef b = LLVMCreateBuilderInContext(cg->ctx);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
    LLVMValueRef args[12];
    unsigned an = 0;
    if (desc) args[an++] = desc;
    for (unsigned i = 0; i < n; i++) args[an++] = LLVMGetParam(fn, i);
    LLVMValueRef r = LLVMBuildCall2(b, rt_fty, rt, args, an, "");
    if (LLVMGetTypeKind(ret) == LLVMVoidTypeKind)
        LLVMBuildRetVoid(b);
    else
        LLVMBuildRet(b, r);
    LLVMDisposeBuilder(b);
}

/* int32_t P_<what>(void) { return value; } */
static void emit_constant_fn(Cg *cg, const char *what, int64_t value)
{
    char name[256];
    snprintf(name, sizeof name, "%s_%s", cg->opts->prefix, what);
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->i32, NULL, 0, 0));
    LLVMBuilderRef b = LLVMCreateBuilderInContext(cg->ctx);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
    LLVMBuildRet(b, const_i32(cg, value));
    LLVMDisposeBuilder(b);
}

/* The weights file, assembled into read-only data with .incbin (the bytes never pass through
 * LLVM's memory), under a hidden symbol the descriptor points at. */
static LLVMValueRef emit_embedded_weights(Cg *cg)
{
    const char *path = cg->opts->embed_weights;
    if (!path) return LLVMConstNull(cg->ptr);
    char sym[128];
    snprintf(sym, sizeof sym, "mxc_embedded_weights_%s", cg->opts->prefix);
    size_t cap = strlen(path) * 2 + 512, at = 0;
    char *asm_text = malloc(cap);
    if (!asm_text) mxc_die("out of memory");
    at += (size_t)snprintf(asm_text + at, cap - at,
                           "\t.section .rodata.mxc_weights,\"a\",@progbits\n\t.balign 64\n"
                           "\t.globl %s\n\t.hidden %s\n%s:\n\t.incbin \"", sym, sym, sym);
    for (const char *p = path; *p; p++) { /* quote for the assembler's string syntax */
        if (*p == '"' || *p == '\\') asm_text[at++] = '\\';
        asm_text[at++] = *p;
    }
    at += (size_t)snprintf(asm_text + at, cap - at, "\"\n\t.text\n");
    LLVMAppendModuleInlineAsm(cg->mod, asm_text, at);
    free(asm_text);
    LLVMValueRef gv = LLVMAddGlobal(cg->mod, LLVMArrayType2(LLVMInt8TypeInContext(cg->ctx), 0), sym);
    LLVMSetVisibility(gv, LLVMHiddenVisibility);
    return gv;
}

/* What a saved state must agree with: the graph as printed (ops, attributes, types, weights,
 * state slots; the first line, which carries the chunk length, left out: a state does not
 * depend on it) and the compiler's version. FNV-1a, 64 bits. */
static uint64_t model_fingerprint(const Graph *g)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) mxc_die("out of memory");
    ir_print(g, f);
    fprintf(f, "mxc %s\n", PACKAGE_VERSION);
    fclose(f);
    const char *p = strchr(text, '\n');
    p = p ? p + 1 : text;
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    free(text);
    return h;
}

void cg_emit_descriptor(Cg *cg, LLVMValueRef forward_fn, LLVMValueRef step_fn,
                        LLVMValueRef trunk_fn, LLVMValueRef last_fn)
{
    const Graph *g = cg->g;
    const IrModel *m = &g->model;
    LLVMTypeRef spec_t;
    LLVMValueRef dtypes;
    LLVMValueRef table = emit_weight_table(cg, &spec_t, &dtypes);

    /* MxrtModelDesc: i32 abi, i32 n_weights, ptr name, ptr weights, i32 vocab_size,
     * i32 vocab_padded, i32 d_model, i32 chunk_len, i64 state_floats,
     * i64 scratch_floats_per_row, ptr forward_chunk, ptr step, ptr embedded_weights,
     * i64 embedded_size, i64 fingerprint, ptr mxc_version, ptr forward_trunk,
     * ptr forward_last, ptr weight_dtypes */
    LLVMTypeRef fields[] = {cg->i32, cg->i32, cg->ptr, cg->ptr, cg->i32, cg->i32, cg->i32,
                            cg->i32, cg->i64, cg->i64, cg->ptr, cg->ptr, cg->ptr, cg->i64,
                            cg->i64, cg->ptr, cg->ptr, cg->ptr, cg->ptr};
    LLVMTypeRef desc_t = LLVMStructTypeInContext(cg->ctx, fields, 19, 0);
    LLVMValueRef vals[] = {const_i32(cg, MXRT_ABI_VERSION), const_i32(cg, g->n_weight_slots),
                           const_string(cg, cg->opts->prefix), table,
                           const_i32(cg, m->vocab_size), const_i32(cg, m->vocab_padded),
                           const_i32(cg, m->d_model), const_i32(cg, g->chunk_len),
                           cg_i64(cg, g->state_floats), cg_i64(cg, g->scratch_per_row),
                           forward_fn, step_fn, emit_embedded_weights(cg),
                           cg_i64(cg, cg->opts->embed_weights ? cg->opts->embed_size : 0),
                           LLVMConstInt(cg->i64, model_fingerprint(g), 0),
                           const_string(cg, PACKAGE_VERSION), trunk_fn, last_fn, dtypes};
    LLVMValueRef desc = LLVMAddGlobal(cg->mod, desc_t, "mxc_model_desc");
    LLVMSetInitializer(desc, LLVMConstNamedStruct(desc_t, vals, 19));
    LLVMSetLinkage(desc, LLVMPrivateLinkage);
    LLVMSetGlobalConstant(desc, 1);

    LLVMTypeRef p = cg->ptr, i = cg->i32, v = cg->void_t;
    emit_wrapper(cg, "open", i, (LLVMTypeRef[]){p, p}, 2, desc);
    emit_wrapper(cg, "close", v, (LLVMTypeRef[]){p}, 1, NULL);
    emit_wrapper(cg, "state_new", i, (LLVMTypeRef[]){p, i, p}, 3, NULL);
    emit_wrapper(cg, "state_free", v, (LLVMTypeRef[]){p}, 1, NULL);
    emit_wrapper(cg, "state_reset", v, (LLVMTypeRef[]){p}, 1, NULL);
    emit_wrapper(cg, "state_copy", i, (LLVMTypeRef[]){p, p}, 2, NULL);
    emit_wrapper(cg, "state_batch", i, (LLVMTypeRef[]){p}, 1, NULL);
    emit_wrapper(cg, "state_set_threads", i, (LLVMTypeRef[]){p, i}, 2, NULL);
    emit_wrapper(cg, "forward", i, (LLVMTypeRef[]){p, p, p, i, p}, 5, NULL);
    emit_wrapper(cg, "step", i, (LLVMTypeRef[]){p, p, p, p}, 4, NULL);
    emit_wrapper(cg, "last_error", p, NULL, 0, NULL);
    /* stateful serving (ABI 5) */
    LLVMTypeRef l = cg->i64;
    emit_wrapper(cg, "state_save_size", l, (LLVMTypeRef[]){p}, 1, NULL);
    emit_wrapper(cg, "state_save", i, (LLVMTypeRef[]){p, p, l}, 3, NULL);
    emit_wrapper(cg, "state_load", i, (LLVMTypeRef[]){p, p, l}, 3, NULL);
    emit_wrapper(cg, "state_save_file", i, (LLVMTypeRef[]){p, p}, 2, NULL);
    emit_wrapper(cg, "state_load_file", i, (LLVMTypeRef[]){p, p}, 2, NULL);
    emit_wrapper(cg, "state_copy_slot", i, (LLVMTypeRef[]){p, i, p, i}, 4, NULL);
    emit_wrapper(cg, "state_reset_slot", i, (LLVMTypeRef[]){p, i}, 2, NULL);
    emit_wrapper(cg, "state_positions", l, (LLVMTypeRef[]){p, i}, 2, NULL);
    emit_wrapper(cg, "forward_last", i, (LLVMTypeRef[]){p, p, p, i, p}, 5, NULL);
    emit_wrapper(cg, "prefill", i, (LLVMTypeRef[]){p, p, p, i}, 4, NULL);
    emit_wrapper(cg, "forward_snapshots", i, (LLVMTypeRef[]){p, p, p, i, p, p, i, i, p}, 9, NULL);
    emit_constant_fn(cg, "vocab_size", m->vocab_size);
    emit_constant_fn(cg, "vocab_padded", m->vocab_padded);
    emit_constant_fn(cg, "d_model", m->d_model);
    emit_constant_fn(cg, "n_blocks", m->n_blocks);
}
