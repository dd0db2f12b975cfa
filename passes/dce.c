/* dce.c - dead-node removal: keep only what the output depends on.
 *
 * Marks from the output backwards (nodes are in topological order, so one reverse sweep
 * suffices). The tokens input is always kept. State slots of removed recurrent nodes stay
 * allocated; they are never read. */
#include <stdlib.h>

#include "passes/passes.h"

void pass_dce(Graph *g)
{
    bool *live = calloc((size_t)g->n_nodes, sizeof *live);
    if (!live) mxc_die("out of memory");
    live[g->output->id] = true;
    live[g->tokens->id] = true;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        Node *n = g->nodes[i];
        if (!live[i] || n->dead) continue;
        for (int s = 0; s < n->n_src; s++) live[n->src[s]->id] = true;
    }
    for (int i = 0; i < g->n_nodes; i++)
        if (!live[i]) g->nodes[i]->dead = true;
    free(live);
    ir_count_uses(g);
}
