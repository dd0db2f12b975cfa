/* fuse_elementwise.c - elementwise gates folded into their producer.
 *
 * - act(linear(x)) with one reader: the activation is applied as the projection stores
 *   (Mamba's softplus(dt_proj(...))).
 * - add(r, linear(x)) with one reader: the residual is added as the projection stores
 *   (every block's residual connection; the projection then writes the new stream).
 * - mul(scan(...), silu(z)) with one reader each: the scan gates its own output (Mamba's
 *   y · SiLU(z)).
 * The arithmetic and its order are those of the unfused ops, only the trips through memory
 * go. */
#include "passes/passes.h"

static bool single_plain_linear(const Node *n)
{
    return n->op == OP_LINEAR && n->n_uses == 1 && !n->attr.proj.residual && n->attr.proj.parts == 1;
}

/* `old`'s readers become `replacement`'s, which had `old` as its only reader. */
static void retire(Graph *g, Node *old, Node *replacement)
{
    replacement->n_uses = old->n_uses;
    ir_replace_uses(g, old, replacement);
    old->dead = true;
}

static bool fuse_activation(Graph *g, Node *act)
{
    Node *lin = act->src[0];
    if (!ir_op_is_activation(act->op) || !single_plain_linear(lin) || lin->attr.proj.act != OP_COUNT_)
        return false;
    lin->attr.proj.act = act->op;
    retire(g, act, lin);
    return true;
}

static bool fuse_residual(Graph *g, Node *add)
{
    for (int side = 0; side < 2; side++) {
        Node *lin = add->src[side], *res = add->src[1 - side];
        if (!single_plain_linear(lin) || res->id > lin->id || res == lin) continue;
        lin->src[lin->n_src++] = res;
        lin->attr.proj.residual = true;
        retire(g, add, lin);
        return true;
    }
    return false;
}

static bool fuse_scan_gate(Graph *g, Node *mul)
{
    for (int side = 0; side < 2; side++) {
        Node *scan = mul->src[side], *gate = mul->src[1 - side];
        if (scan->op != OP_SELECTIVE_SCAN || scan->n_uses != 1 || scan->attr.rec.act != OP_COUNT_ ||
            gate->op != OP_SILU || gate->n_uses != 1 || gate->src[0]->id > scan->id)
            continue;
        scan->src[scan->n_src++] = gate->src[0];
        scan->attr.rec.act = OP_SILU;
        retire(g, mul, scan);
        gate->dead = true;
        return true;
    }
    return false;
}

void pass_fuse_elementwise(Graph *g)
{
    ir_count_uses(g);
    for (int i = 0; i < g->n_nodes; i++) {
        Node *n = g->nodes[i];
        if (n->dead) continue;
        ir_resolve_sources(n);
        /* Use counts are kept up to date by retire(), so each node is looked at once. */
        (void)((n->op == OP_ADD && fuse_residual(g, n)) ||
               (n->op == OP_MUL && fuse_scan_gate(g, n)) ||
               (ir_op_is_activation(n->op) && fuse_activation(g, n)));
    }
    ir_count_uses(g);
}
