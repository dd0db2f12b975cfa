/* narrow_weights.c - store the big matrices in the graph's weight type.
 *
 * With a narrow weight type (bf16, f16, q8) every weight that is only ever read as a matrix
 * by a kernel that widens narrow data (the weights of LINEAR and HEADWISE, the EMBED table,
 * which is also the tied head, and the sLSTM recurrent matrix R) takes that dtype.
 * Everything else stays f32: 1-D parameters (norm gains, biases, A_log's companions D and
 * the dt bias), conv weights, A_log, a weight rearranged at open (R of a CUDA-layout
 * checkpoint), and of course all values and state. q8 needs the last dimension to be a
 * multiple of IR_Q8_BLOCK; a matrix that is not falls back to bf16 (narrow_weights_why
 * tells the driver so). */
#include <stdlib.h>

#include "passes/passes.h"

/* May node n read source s as a narrow matrix? The projections' weights (their kernels,
 * matmul.c, gemm.c and the head-wise loop, read through wload.c), the embedding table and
 * the sLSTM cell's R (cells.c); nothing else, so that a new op reads f32 until its kernel
 * learns otherwise. */
static bool reads_narrow(const Node *n, int s)
{
    if (n->op == OP_EMBED) return s == 1;
    if (n->op == OP_SLSTM_CELL) return s == 4;
    if (ir_op_kind(n->op) == OPK_PROJ) return s >= 1 && s <= n->attr.proj.parts;
    return false;
}

DType narrow_weight_dtype(DType want, const Type *t)
{
    if (want == DT_Q8 && (t->rank < 2 || t->dim[t->rank - 1] % IR_Q8_BLOCK != 0)) return DT_BF16;
    return want;
}

void pass_narrow_weights(Graph *g)
{
    if (g->weight_dtype == DT_F32) return;
    bool *ok = malloc((size_t)g->n_nodes + 1);
    bool *used = calloc((size_t)g->n_nodes + 1, 1);
    if (!ok || !used) mxc_die("out of memory");
    for (int i = 0; i < g->n_nodes; i++) ok[i] = true;
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *n = g->nodes[i];
        if (n->dead) continue;
        for (int s = 0; s < n->n_src; s++) {
            const Node *w = n->src[s];
            if (w->op != OP_WEIGHT) continue;
            used[w->id] = true;
            if (!reads_narrow(n, s)) ok[w->id] = false;
        }
    }
    for (int i = 0; i < g->n_nodes; i++) {
        Node *w = g->nodes[i];
        if (w->dead || w->op != OP_WEIGHT || !used[i] || !ok[i] || w->type.rank < 2) continue;
        if (w->attr.weight.layout != WEIGHT_AS_STORED) continue; /* rearranged at open, in f32 */
        w->type.dtype = narrow_weight_dtype(g->weight_dtype, &w->type);
    }
    free(ok);
    free(used);
}
