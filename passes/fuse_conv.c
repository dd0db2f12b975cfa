/* fuse_conv.c - causal conv + bias + activation in one loop.
 *
 * The conv already adds its bias; an activation whose only input is a conv read by nothing
 * else is folded into the conv's store, so the conv output never goes through memory twice
 * (Mamba's and xLSTM's SiLU(conv(x) + b)). */
#include "passes/passes.h"

void pass_fuse_conv(Graph *g)
{
    ir_count_uses(g);
    for (int i = 0; i < g->n_nodes; i++) {
        Node *act = g->nodes[i];
        if (act->dead) continue;
        ir_resolve_sources(act);
        if (!ir_op_is_activation(act->op)) continue;
        Node *conv = act->src[0];
        if (conv->op != OP_CONV1D || conv->n_uses != 1 || conv->attr.rec.act != OP_COUNT_)
            continue;
        conv->attr.rec.act = act->op;
        conv->n_uses = act->n_uses; /* the activation's readers are now the conv's */
        ir_replace_uses(g, act, conv);
        act->dead = true;
    }
    ir_count_uses(g);
}
