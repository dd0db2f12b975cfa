/* passes.h - the pass pipeline over the IR graph.
 *
 * Passes run in a fixed, straight-line order (pipeline.c). ir_verify runs after each one;
 * any pass but the required ones can be switched off by name, and the graph can be dumped
 * after any pass. */
#ifndef MXC_PASSES_H
#define MXC_PASSES_H

#include <stdbool.h>
#include <stdio.h>

#include "ir/ir.h"

typedef struct Pass {
    const char *name;    /* as given to --disable-pass / --dump-after */
    const char *summary; /* one line for `mxc passes` */
    void (*run)(Graph *g);
    bool required;       /* the backend cannot do without it; refuses --disable-pass */
} Pass;

#define PASSES_MAX_DISABLED 32

typedef struct PassOptions {
    const char *disabled[PASSES_MAX_DISABLED];
    int n_disabled;
    const char *dump_after; /* a pass name, "lower" (before the first pass), "all", or NULL */
    FILE *dump_out;         /* where dumps go (stdout when NULL) */
} PassOptions;

/* The passes in pipeline order; *n receives their count. */
const Pass *passes_list(int *n);
const Pass *passes_find(const char *name);

/* Run the pipeline. Returns false (after printing why to stderr) if a disabled pass is
 * required or unknown; internal verification failures abort. */
bool passes_run(Graph *g, const PassOptions *opts);

/* The passes, one file each. */
void pass_infer_shapes(Graph *g);  /* infer_shapes.c */
void pass_fuse_projections(Graph *g); /* fuse_projections.c */
void pass_fuse_conv(Graph *g);     /* fuse_conv.c */
void pass_fuse_elementwise(Graph *g); /* fuse_elementwise.c */
void pass_ssd_chunked(Graph *g);   /* ssd_chunked.c */
void pass_dce(Graph *g);           /* dce.c */
void pass_narrow_weights(Graph *g); /* narrow_weights.c */
void pass_plan_memory(Graph *g);   /* plan_memory.c */
void pass_mlstm_chunkwise(Graph *g); /* mlstm_chunkwise.c */
/* The dtype a matrix of type t gets when the graph's weight type is `want`: want itself, or
 * bf16 for a q8 matrix whose last dimension is not a multiple of IR_Q8_BLOCK. */
DType narrow_weight_dtype(DType want, const Type *t);

#endif
