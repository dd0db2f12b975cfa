/* mlstm_chunkwise.c - the chunkwise form of the mLSTM cell for the forward path, where the
 * spec asks for it (mlstm_large chunk_size >= 2).
 *
 * A forward then runs the cell in pieces of chunk_size positions (at most the forward's
 * chunk length; backend/mlstm_chunkwise.c, SEMANTICS-xlstm-large D.7): inside a piece the
 * gated q·k products and their weighted sums of v, between pieces only (C, n, m). A step
 * always runs the recurrent form. It is not the default: at the sizes measured so far
 * (docs/performance.md) the blocked recurrent form is faster. Disabling the pass gives the
 * recurrent form everywhere, which is how the two are tested against each other. */
#include "passes/passes.h"

void pass_mlstm_chunkwise(Graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        Node *n = g->nodes[i];
        if (n->dead || n->op != OP_MLSTM_CELL) continue;
        MlstmNumerics *num = &n->attr.rec.mlstm;
        int chunk = num->chunk_request < g->chunk_len ? num->chunk_request : g->chunk_len;
        num->chunk = chunk >= 2 ? chunk : 0;
    }
}
