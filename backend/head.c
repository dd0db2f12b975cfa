/* head.c - which ops a forward may skip for positions that need no logits.
 *
 * The trunk of a graph is every node that a recurrent op depends on (and the recurrent ops):
 * it must run for every position, since the state after the chunk depends on it. The rest,
 * the head (the final norm and LM head, and whatever follows the last recurrent op of the
 * last block, such as its output projection and FFN), only produces logits. The
 * forward_last chunk function runs the trunk for all T positions and then the head for the
 * last position of each sequence only, in a compact area of B rows behind the chunk's
 * scratch (the layout of a step call), into which each trunk value the head reads is
 * gathered right after it is computed. */
#include <stdlib.h>

#include "backend/codegen.h"

static const Node *storage_producer(const Node *v)
{
    while (v->op == OP_SLICE) v = v->src[0];
    return v;
}

void cg_head_sets(const Graph *g, bool **trunk_out, bool **gather_out)
{
    bool *trunk = calloc((size_t)g->n_nodes + 1, sizeof *trunk);
    bool *gather = calloc((size_t)g->n_nodes + 1, sizeof *gather);
    if (!trunk || !gather) mxc_die("out of memory");
    /* Nodes are in topological order: walking backwards reaches a node's users first. */
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const Node *n = g->nodes[i];
        if (n->dead) continue;
        if (ir_op_is_recurrent(n->op)) trunk[n->id] = true;
        if (!trunk[n->id]) continue;
        for (int s = 0; s < n->n_src; s++) trunk[n->src[s]->id] = true;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *n = g->nodes[i];
        if (n->dead || trunk[n->id]) continue;
        for (int s = 0; s < n->n_src; s++) {
            const Node *p = storage_producer(n->src[s]);
            if (p->op == OP_WEIGHT || !trunk[p->id]) continue;
            if (p->store.kind != STORE_SCRATCH)
                mxc_die("%%%d (%s) feeds the head but is not in scratch", p->id,
                        ir_op_name(p->op));
            gather[p->id] = true;
        }
    }
    *trunk_out = trunk;
    *gather_out = gather;
}

void cg_emit_gather(Cg *cg, const Node *v, LLVMValueRef scratch, LLVMValueRef rowcap,
                    LLVMValueRef compact)
{
    LLVMBuilderRef B = cg->b;
    int64_t rs = v->store.row_stride;
    LLVMValueRef lo, hi;
    cg_split(cg, cg->f->batch, &lo, &hi);
    LLVMValueRef from = cg_gep(cg, cg->f32, scratch,
                               LLVMBuildMul(B, cg_i64(cg, v->store.offset), rowcap, ""));
    LLVMValueRef to = cg_gep(cg, cg->f32, compact,
                             LLVMBuildMul(B, cg_i64(cg, v->store.offset), cg->f->batch, ""));
    CgLoop l;
    LLVMValueRef b = cg_loop_begin(cg, &l, lo, hi, "gather");
    LLVMValueRef last_row = LLVMBuildSub(B, LLVMBuildMul(B, LLVMBuildAdd(B, b, cg_i64(cg, 1), ""),
                                                         cg->f->len, ""), cg_i64(cg, 1), "");
    LLVMValueRef src = cg_gep(cg, cg->f32, from, LLVMBuildMul(B, last_row, cg_i64(cg, rs), ""));
    LLVMValueRef dst = cg_gep(cg, cg->f32, to, LLVMBuildMul(B, b, cg_i64(cg, rs), ""));
    LLVMBuildMemCpy(B, dst, 4, src, 4, cg_i64(cg, rs * 4));
    cg_loop_end(cg, &l);
}
