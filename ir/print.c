/* print.c - the textual IR dump (`mxc ir`, `--dump-after`).
 *
 * One line per live node: `%id = op sources {attributes} : type`, then the state slots and,
 * once memory is planned, where each value lives. The format is documented in docs/ir.md
 * and checked by golden files, so change both together. */
#include "ir/ir.h"

static void print_attrs(const Node *n, FILE *out)
{
    switch (n->op) {
    case OP_WEIGHT:
        fprintf(out, " \"%s\"", n->attr.weight.name);
        if (n->attr.weight.alt_name) fprintf(out, " | \"%s\"", n->attr.weight.alt_name);
        break;
    case OP_RMSNORM:
        fprintf(out, " {eps=%g}", n->attr.norm.eps);
        break;
    case OP_LAYERNORM:
        fprintf(out, " {eps=%g%s", n->attr.norm.eps, n->attr.norm.gain_offset ? ", gain=1+w" : "");
        if (n->attr.norm.groups > 1) fprintf(out, ", groups=%d", n->attr.norm.groups);
        fprintf(out, "}");
        break;
    case OP_SLICE:
        fprintf(out, " {start=%lld, len=%lld}", (long long)n->attr.slice.start,
                (long long)n->attr.slice.len);
        break;
    case OP_CONV1D:
    case OP_SELECTIVE_SCAN:
        fprintf(out, " {state=%d", n->attr.rec.state);
        if (n->attr.rec.act != OP_COUNT_)
            fprintf(out, n->op == OP_CONV1D ? ", act=%s" : ", gate=%s", ir_op_name(n->attr.rec.act));
        fprintf(out, "}");
        break;
    case OP_MLSTM_CELL: {
        const MlstmNumerics *num = &n->attr.rec.mlstm;
        fprintf(out, " {heads=%d, eps=%g, q_scale=%g, k_scale=%g", n->attr.rec.heads, num->eps,
                num->q_scale, num->k_scale);
        if (num->gate_cap > 0) fprintf(out, ", gate_cap=%g", num->gate_cap);
        if (num->chunk > 1) fprintf(out, ", chunk=%d", num->chunk);
        fprintf(out, ", state=%d}", n->attr.rec.state);
        break;
    }
    case OP_SOFTCAP:
        fprintf(out, " {cap=%g}", n->attr.softcap.cap);
        break;
    case OP_SLSTM_CELL:
        fprintf(out, " {heads=%d, layout=%s, state=%d}", n->attr.rec.heads,
                n->attr.rec.cuda_layout ? "cuda" : "vanilla", n->attr.rec.state);
        break;
    case OP_LINEAR:
    case OP_HEADWISE: {
        const char *sep = " {";
        if (n->attr.proj.parts > 1) { fprintf(out, "%sparts=%d", sep, n->attr.proj.parts); sep = ", "; }
        if (n->attr.proj.act != OP_COUNT_) { fprintf(out, "%sact=%s", sep, ir_op_name(n->attr.proj.act)); sep = ", "; }
        if (n->attr.proj.residual) { fprintf(out, "%sresidual", sep); sep = ", "; }
        if (*sep == ',') fprintf(out, "}");
        break;
    }
    case OP_TOKENS: case OP_EMBED: case OP_CONCAT:
    case OP_SILU: case OP_SOFTPLUS: case OP_GELU: case OP_RELU: case OP_RELU2: case OP_SIGMOID:
    case OP_SELU: case OP_SCALE: case OP_MUL: case OP_ADD: case OP_OUTPUT: case OP_COUNT_:
        break;
    }
}

static void print_storage(const Node *n, FILE *out)
{
    switch (n->store.kind) {
    case STORE_NONE:
        break;
    case STORE_SCRATCH:
        fprintf(out, "  @scratch+%lld", (long long)n->store.offset);
        if (n->store.col_offset || n->store.row_stride != ir_type_cols(&n->type))
            fprintf(out, "[+%lld/%lld]", (long long)n->store.col_offset,
                    (long long)n->store.row_stride);
        break;
    case STORE_TOKENS:
        fprintf(out, "  @tokens");
        break;
    case STORE_LOGITS:
        fprintf(out, "  @logits");
        break;
    }
}

void ir_print(const Graph *g, FILE *out)
{
    fprintf(out, "graph %s {chunk=%d, state=%lld floats/seq", g->name, g->chunk_len,
            (long long)g->state_floats);
    if (g->scratch_per_row) fprintf(out, ", scratch=%lld floats/row", (long long)g->scratch_per_row);
    fprintf(out, "}\n");
    for (int i = 0; i < g->n_states; i++)
        fprintf(out, "  state %d: %lld floats at %lld  # %s\n", i, (long long)g->states[i].floats,
                (long long)g->states[i].offset, g->states[i].what);
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *n = g->nodes[i];
        if (n->dead) continue;
        char type[64];
        ir_type_format(&n->type, type, sizeof type);
        if (n->op == OP_OUTPUT)
            fprintf(out, "  %s", ir_op_name(n->op));
        else
            fprintf(out, "  %%%d = %s", n->id, ir_op_name(n->op));
        for (int s = 0; s < n->n_src; s++) fprintf(out, "%s%%%d", s ? ", " : " ", n->src[s]->id);
        print_attrs(n, out);
        fprintf(out, " : %s", type);
        if (n->op == OP_WEIGHT && n->attr.weight.slot >= 0)
            fprintf(out, "  @w%d", n->attr.weight.slot);
        print_storage(n, out);
        fputc('\n', out);
    }
}
