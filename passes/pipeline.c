/* pipeline.c - the pass list and the driver loop that runs it with checks in between. */
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

static const Pass pipeline[] = {
    {"infer-shapes", "recompute every type from the sources and check it", pass_infer_shapes, true},
    {"fuse-projections", "merge projections of the same input into one multi-part matmul",
     pass_fuse_projections, false},
    {"fuse-conv", "fold the activation after a causal conv into the conv loop", pass_fuse_conv, false},
    {"fuse-elementwise", "fold activations, residual adds and the scan's SiLU gate into their producer",
     pass_fuse_elementwise, false},
    {"ssd-chunked", "give Mamba-2 scans the chunked (block-quadratic) form for long forward calls",
     pass_ssd_chunked, false},
    {"mlstm-chunkwise", "the chunkwise mLSTM cell in forwards, where the spec's chunk_size asks",
     pass_mlstm_chunkwise, false},
    {"dce", "remove nodes the output does not depend on", pass_dce, false},
    {"narrow-weights", "store the projections and the embedding in the build's weight type",
     pass_narrow_weights, false},
    {"plan-memory", "weight slots, scratch offsets with reuse, views and output buffer",
     pass_plan_memory, true},
};

const Pass *passes_list(int *n)
{
    *n = (int)(sizeof pipeline / sizeof pipeline[0]);
    return pipeline;
}

const Pass *passes_find(const char *name)
{
    int n;
    const Pass *p = passes_list(&n);
    for (int i = 0; i < n; i++)
        if (strcmp(p[i].name, name) == 0) return &p[i];
    return NULL;
}

static bool is_disabled(const PassOptions *o, const char *name)
{
    for (int i = 0; o && i < o->n_disabled; i++)
        if (strcmp(o->disabled[i], name) == 0) return true;
    return false;
}

static void dump_if_asked(const Graph *g, const PassOptions *o, const char *stage)
{
    if (!o || !o->dump_after) return;
    if (strcmp(o->dump_after, "all") != 0 && strcmp(o->dump_after, stage) != 0) return;
    FILE *out = o->dump_out ? o->dump_out : stdout;
    fprintf(out, "# after %s\n", stage);
    ir_print(g, out);
}

static void verify_or_die(const Graph *g, const char *stage)
{
    if (ir_verify(g, stderr) == 0) return;
    fprintf(stderr, "internal error: the IR is broken after %s:\n", stage);
    ir_print(g, stderr);
    abort();
}

bool passes_run(Graph *g, const PassOptions *o)
{
    int n;
    const Pass *p = passes_list(&n);
    for (int i = 0; o && i < o->n_disabled; i++) {
        const Pass *d = passes_find(o->disabled[i]);
        if (!d) {
            fprintf(stderr, "mxc: error: no pass named '%s' (see `mxc passes`)\n", o->disabled[i]);
            return false;
        }
        if (d->required) {
            fprintf(stderr, "mxc: error: pass '%s' is required and cannot be disabled\n", d->name);
            return false;
        }
    }
    if (o && o->dump_after && strcmp(o->dump_after, "all") != 0 &&
        strcmp(o->dump_after, "lower") != 0 && !passes_find(o->dump_after)) {
        fprintf(stderr, "mxc: error: no pass named '%s' to dump after (see `mxc passes`)\n",
                o->dump_after);
        return false;
    }
    verify_or_die(g, "lowering");
    dump_if_asked(g, o, "lower");
    for (int i = 0; i < n; i++) {
        if (is_disabled(o, p[i].name)) continue;
        p[i].run(g);
        ir_resolve_all(g);
        verify_or_die(g, p[i].name);
        dump_if_asked(g, o, p[i].name);
    }
    return true;
}
