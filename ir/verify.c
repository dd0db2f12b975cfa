/* verify.c - graph invariants, checked between passes.
 *
 * A failure here is a compiler bug, never a user error: the pass pipeline aborts with the
 * list of problems and the offending graph dump. */
#include <string.h>

#include "ir/ir.h"

#define PROBLEM(...) do { fprintf(out, "ir_verify: " __VA_ARGS__); fputc('\n', out); \
                          problems++; } while (0)

int ir_verify(const Graph *g, FILE *out)
{
    int problems = 0;
    if (!g->tokens) PROBLEM("graph has no tokens input");
    if (!g->output || g->output->dead) PROBLEM("graph has no live output");
    else if (g->model.vocab_padded && ir_type_cols(&g->output->type) != g->model.vocab_padded)
        PROBLEM("output has %lld columns, the model's padded vocabulary is %d",
                (long long)ir_type_cols(&g->output->type), g->model.vocab_padded);
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *n = g->nodes[i];
        if (n->id != i) PROBLEM("%%%d stored at index %d", n->id, i);
        if (n->dead) continue;
        if ((unsigned)n->op >= OP_COUNT_) {
            PROBLEM("%%%d has bad op %d", n->id, (int)n->op);
            continue;
        }
        for (int s = 0; s < n->n_src; s++) {
            const Node *src = n->src[s];
            if (!src) { PROBLEM("%%%d source %d is NULL", n->id, s); continue; }
            if (src->dead) PROBLEM("%%%d uses dead %%%d", n->id, src->id);
            if (src->id >= n->id) PROBLEM("%%%d uses %%%d, which comes later", n->id, src->id);
        }
        Type t;
        char err[256];
        if (!ir_infer_type(n, &t, err, sizeof err)) {
            PROBLEM("%%%d (%s): %s", n->id, ir_op_name(n->op), err);
        } else if (!ir_type_equal(&t, &n->type)) {
            char want[64], have[64];
            ir_type_format(&t, want, sizeof want);
            ir_type_format(&n->type, have, sizeof have);
            PROBLEM("%%%d (%s) has type %s, its sources give %s", n->id, ir_op_name(n->op),
                    have, want);
        }
        if (n->op == OP_WEIGHT && (!n->attr.weight.name || !*n->attr.weight.name))
            PROBLEM("%%%d weight without a name", n->id);
        if (ir_op_is_recurrent(n->op) &&
            (n->attr.rec.state < 0 || n->attr.rec.state >= g->n_states))
            PROBLEM("%%%d (%s) has no state slot", n->id, ir_op_name(n->op));
        if (n->op == OP_OUTPUT && n != g->output) PROBLEM("%%%d is a second output", n->id);
        if (n->op == OP_TOKENS && n != g->tokens) PROBLEM("%%%d is a second tokens input", n->id);
    }
    return problems;
}
