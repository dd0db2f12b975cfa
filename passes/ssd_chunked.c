/* ssd_chunked.c - choose the chunked form of the Mamba-2 scans.
 *
 * The lowering emits every OP_SSD_SCAN in its recurrent form, with the spec's chunk_size as
 * its preferred block. This pass gives each the chunked form (backend/ssd.c) with blocks of
 * Q = min(chunk_size, SSD_CHUNK_MAX, chunk_len)
 * tokens; the forward kernel then runs calls of SSD_CHUNK_MIN tokens or more by blocks and
 * shorter ones (and every step) token by token. Both forms compute the same function
 * (SEMANTICS-mamba2.md C.7); with the pass off (--disable-pass ssd-chunked) only the
 * recurrence is generated, which the tests compare against. */
#include "passes/passes.h"

void pass_ssd_chunked(Graph *g)
{
    if (g->chunk_len < SSD_CHUNK_MIN) return; /* no forward call is long enough */
    for (int i = 0; i < g->n_nodes; i++) {
        Node *n = g->nodes[i];
        if (n->dead || n->op != OP_SSD_SCAN) continue;
        int q = n->attr.rec.block;
        if (q > SSD_CHUNK_MAX) q = SSD_CHUNK_MAX;
        if (q > g->chunk_len) q = g->chunk_len;
        if (q >= 2) n->attr.rec.chunk = q; /* blocks of 1 are the recurrence */
    }
}
