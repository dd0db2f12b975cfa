/* mlstm_chunkwise.c - the form of each mLSTM cell in forwards: chunkwise or recurrent.
 *
 * The chunkwise form (backend/mlstm_chunkwise.c, SEMANTICS-xlstm-large D.7) runs a forward
 * in pieces of L positions: inside a piece the gated q·k products and their weighted sums of
 * v as register-tiled matrix products, between pieces only (C, n, m). A step always runs the
 * recurrent form. The spec's chunk_size decides: >= 2 asks for pieces of that many positions
 * (at most the forward's chunk length), 0 or 1 for the recurrent form, auto (the classic
 * block always) leaves it to the cost rule below. Disabling the pass gives the recurrent
 * form everywhere, which is how the two are tested against each other. */
#include "passes/passes.h"

/* auto: pieces of up to AUTO_PIECE positions, and none shorter than AUTO_MIN_PIECE (a short
 * forward chunk leaves little to tile). Per position and head both forms do the same
 * 4·DHqk·DHv multiply-adds on the state, at matrix-product speed in the chunkwise form (about
 * 1.5× the recurrent form's rate, docs/performance.md); the chunkwise form adds about
 * L·(DHqk + DHv) for its within-piece products (half of them masked). So it is chosen where
 * that addition stays below half the state's work: L·(DHqk + DHv) <= 2·DHqk·DHv. */
enum { AUTO_PIECE = 64, AUTO_MIN_PIECE = 16 };

static int auto_chunk(const Node *n, int chunk_len)
{
    int64_t heads = n->attr.rec.heads;
    int64_t dk = ir_type_cols(&n->src[0]->type) / heads, dv = ir_type_cols(&n->type) / heads;
    int piece = AUTO_PIECE < chunk_len ? AUTO_PIECE : chunk_len;
    if (piece < AUTO_MIN_PIECE) return 0;
    return (int64_t)piece * (dk + dv) <= 2 * dk * dv ? piece : 0;
}

void pass_mlstm_chunkwise(Graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        Node *n = g->nodes[i];
        if (n->dead || n->op != OP_MLSTM_CELL) continue;
        MlstmNumerics *num = &n->attr.rec.mlstm;
        int chunk = num->chunk_request < 0 ? auto_chunk(n, g->chunk_len)
                  : num->chunk_request < g->chunk_len ? num->chunk_request : g->chunk_len;
        num->chunk = chunk >= 2 ? chunk : 0;
    }
}
