/* fuse_projections.c - projections that read the same input become one.
 *
 * Linear (or headwise) nodes with the same input, the same bias presence and no epilogue are
 * merged into one node with several weights side by side in its output; each old node's
 * users read a slice of it instead. The weights stay separate tensors (nothing is copied at
 * load time), but the input is read once and the threads split one larger set of output
 * tiles. Examples: the mLSTM q and k projections (both of the conv output) and its i and f
 * gate projections (both of concat(q, k, v)); the sLSTM i/f and z/o gate projections.
 *
 * The merged node takes the place of the last of the group (all its sources exist by then);
 * a group whose earlier members have users before that place is left alone. */
#include "passes/passes.h"

/* How far after a projection its partners are looked for: a block's worth of nodes. Keeps
 * the pass linear in the depth of the stack. */
enum { FUSE_WINDOW = 256 };

static bool fusable(const Node *n)
{
    return !n->dead && (n->op == OP_LINEAR || n->op == OP_HEADWISE) && n->attr.proj.parts == 1 &&
           !n->attr.proj.residual && n->attr.proj.act == OP_COUNT_;
}

static bool same_kind(const Node *a, const Node *b)
{
    if (a->op != b->op || a->src[0] != b->src[0] || a->attr.proj.bias != b->attr.proj.bias)
        return false;
    if (a->op == OP_HEADWISE) { /* same heads and input width per head */
        const Type *wa = &a->src[1]->type, *wb = &b->src[1]->type;
        return wa->dim[0] == wb->dim[0] && wa->dim[2] == wb->dim[2];
    }
    return true;
}

/* Is every live use of `n` placed after node index `after`? (Users come after n, so only
 * the nodes between the two can be one: a local look, not a scan of the graph.) */
static bool used_only_after(Graph *g, const Node *n, int after)
{
    for (int i = n->id + 1; i <= after; i++) {
        Node *u = g->nodes[i];
        if (u->dead) continue;
        ir_resolve_sources(u);
        for (int s = 0; s < u->n_src; s++)
            if (u->src[s] == n) return false;
    }
    return true;
}

static void fuse_group(Graph *g, Node **group, int n)
{
    Node *last = group[n - 1];
    for (int i = 0; i < n - 1; i++)
        if (!used_only_after(g, group[i], last->id)) return;

    Node *src[IR_MAX_SRC];
    int k = 0;
    src[k++] = group[0]->src[0];
    for (int i = 0; i < n; i++) src[k++] = group[i]->src[1];
    if (group[0]->attr.proj.bias)
        for (int i = 0; i < n; i++) src[k++] = group[i]->src[2];

    /* Build through the single-part builder, then widen it. */
    Node *fused = group[0]->op == OP_LINEAR
                      ? ir_linear(g, last->loc, src[0], src[1], group[0]->attr.proj.bias ? src[1 + n] : NULL)
                      : ir_headwise(g, last->loc, src[0], src[1], group[0]->attr.proj.bias ? src[1 + n] : NULL);
    for (int i = 0; i < k; i++) fused->src[i] = src[i];
    fused->n_src = k;
    fused->attr.proj.parts = n;
    char err[256];
    if (!ir_infer_type(fused, &fused->type, err, sizeof err)) mxc_die("fuse-projections: %s", err);
    ir_move_before(g, fused, last);

    int64_t start = 0;
    for (int i = 0; i < n; i++) {
        int64_t cols = ir_type_cols(&group[i]->type);
        Node *part = ir_slice(g, group[i]->loc, fused, start, cols);
        ir_move_before(g, part, last);
        ir_replace_uses(g, group[i], part);
        group[i]->dead = true;
        start += cols;
    }
}

void pass_fuse_projections(Graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        Node *first = g->nodes[i];
        ir_resolve_sources(first);
        if (!fusable(first)) continue;
        Node *group[IR_PROJ_MAX_PARTS] = {first};
        int n = 1;
        /* Partners read the same input, so they come after it and before its last reader;
         * the input's readers are close by in practice, and the search stops at a window. */
        for (int j = i + 1; j < g->n_nodes && j < i + FUSE_WINDOW && n < IR_PROJ_MAX_PARTS; j++) {
            ir_resolve_sources(g->nodes[j]);
            if (fusable(g->nodes[j]) && same_kind(first, g->nodes[j])) group[n++] = g->nodes[j];
        }
        if (n > 1) fuse_group(g, group, n);
    }
    ir_count_uses(g);
}
