/* infer_shapes.c - recompute the type of every live node from its sources.
 *
 * Builders already type each node as it is made; this pass re-derives the types after
 * lowering (and after rewrites) so that a node whose sources changed can never keep a stale
 * type. A node whose sources do not fit its op is a compiler bug and aborts. */
#include "passes/passes.h"

void pass_infer_shapes(Graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        Node *n = g->nodes[i];
        if (n->dead) continue;
        char err[256];
        if (!ir_infer_type(n, &n->type, err, sizeof err))
            mxc_die("infer-shapes: %%%d (%s): %s", n->id, ir_op_name(n->op), err);
    }
}
