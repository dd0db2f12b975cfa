/* print.c - the textual IR dump (`mxc ir`, `--dump-after`).
 *
 * One line per live node: `%id = op sources {attributes} : type`, then the state slots and,
 * once memory is planned, where each value lives. The format is documented in docs/ir.md
 * and checked by golden files, so change both together. */
#include <stdarg.h>
#include <string.h>

#include "ir/ir.h"

/* A bounded text buffer: appends past the end are counted, not written. */
typedef struct AttrText {
    char *buf;
    size_t len, at;
    const char *sep;
} AttrText;

static void attr(AttrText *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void attr(AttrText *t, const char *fmt, ...)
{
    size_t room = t->at < t->len ? t->len - t->at : 0;
    t->at += (size_t)snprintf(room ? t->buf + t->at : NULL, room, "%s", t->sep);
    room = t->at < t->len ? t->len - t->at : 0;
    va_list ap;
    va_start(ap, fmt);
    t->at += (size_t)vsnprintf(room ? t->buf + t->at : NULL, room, fmt, ap);
    va_end(ap);
    t->sep = ", ";
}

static const char *act_name(Op act) { return act == OP_COUNT_ ? "none" : ir_op_name(act); }

bool ir_format_attrs(const Node *n, bool exact, char *buf, size_t len)
{
    AttrText t = {buf, len, 0, ""};
    if (len) buf[0] = 0;
    switch (n->op) {
    case OP_RMSNORM:
    case OP_LAYERNORM:
        if (exact)
            attr(&t, "eps=%a", n->attr.norm.eps);
        else
            attr(&t, "eps=%g", n->attr.norm.eps);
        if (n->attr.norm.gain_offset) attr(&t, "gain=1+w");
        if (n->attr.norm.groups > 1) attr(&t, "groups=%d", n->attr.norm.groups);
        break;
    case OP_SLICE:
        attr(&t, "start=%lld", (long long)n->attr.slice.start);
        attr(&t, "len=%lld", (long long)n->attr.slice.len);
        break;
    case OP_LINEAR:
    case OP_HEADWISE:
        if (n->attr.proj.parts > 1) attr(&t, "parts=%d", n->attr.proj.parts);
        if (n->attr.proj.bias) attr(&t, "bias");
        if (n->attr.proj.act != OP_COUNT_) attr(&t, "act=%s", act_name(n->attr.proj.act));
        if (n->attr.proj.residual) attr(&t, "residual");
        break;
    case OP_CONV1D:
        if (n->attr.rec.act != OP_COUNT_) attr(&t, "act=%s", act_name(n->attr.rec.act));
        break;
    case OP_SELECTIVE_SCAN:
        if (n->attr.rec.act != OP_COUNT_) attr(&t, "gate=%s", act_name(n->attr.rec.act));
        break;
    case OP_SSD_SCAN:
        attr(&t, "heads=%d", n->attr.rec.heads);
        attr(&t, "groups=%d", n->attr.rec.groups);
        if (exact)
            attr(&t, "dt_limit=[%a, %a]", n->attr.rec.dt_min, n->attr.rec.dt_max);
        else
            attr(&t, "dt_limit=[%g, %g]", n->attr.rec.dt_min, n->attr.rec.dt_max);
        if (n->attr.rec.chunk)
            attr(&t, "chunk=%d", n->attr.rec.chunk);
        else
            attr(&t, "recurrent");
        break;
    case OP_MLSTM_CELL: {
        const MlstmNumerics *num = &n->attr.rec.mlstm;
        attr(&t, "heads=%d", n->attr.rec.heads);
        if (exact) {
            attr(&t, "eps=%a", num->eps);
            attr(&t, "q_scale=%a", num->q_scale);
            attr(&t, "k_scale=%a", num->k_scale);
        } else {
            attr(&t, "eps=%g", num->eps);
            attr(&t, "q_scale=%g", num->q_scale);
            attr(&t, "k_scale=%g", num->k_scale);
        }
        if (num->gate_cap > 0) {
            if (exact)
                attr(&t, "gate_cap=%a", num->gate_cap);
            else
                attr(&t, "gate_cap=%g", num->gate_cap);
        }
        if (num->chunk > 1) attr(&t, "chunk=%d", num->chunk);
        break;
    }
    case OP_SOFTCAP:
        if (exact)
            attr(&t, "cap=%a", n->attr.softcap.cap);
        else
            attr(&t, "cap=%g", n->attr.softcap.cap);
        break;
    case OP_SLSTM_CELL:
        attr(&t, "heads=%d", n->attr.rec.heads);
        if (n->attr.rec.m_from_input) attr(&t, "m0=input");
        break;
    case OP_TOKENS: case OP_WEIGHT: case OP_EMBED: case OP_CONCAT:
    case OP_SILU: case OP_SOFTPLUS: case OP_GELU: case OP_RELU: case OP_RELU2: case OP_SIGMOID:
    case OP_SELU: case OP_SCALE: case OP_MUL: case OP_ADD: case OP_OUTPUT: case OP_COUNT_:
        break;
    }
    return t.at < len;
}

/* The dump adds what identifies a node rather than shapes its code: a weight's name, a
 * recurrent op's state slot. */
static void print_attrs(const Node *n, FILE *out)
{
    if (n->op == OP_WEIGHT) {
        fprintf(out, " \"%s\"", n->attr.weight.name);
        for (const char *a = n->attr.weight.alt_name; a && *a;) { /* '\n'-separated */
            int len = (int)strcspn(a, "\n");
            fprintf(out, " | \"%.*s\"", len, a);
            a += len + (a[len] == '\n');
        }
        if (n->attr.weight.layout == WEIGHT_SWAP_MIDDLE) { /* the checkpoint's shape */
            fprintf(out, " {stored=[");
            for (int d = 0; d < n->attr.weight.stored_rank; d++)
                fprintf(out, "%s%lld", d ? "," : "", (long long)n->attr.weight.stored_dim[d]);
            const int64_t *v = n->attr.weight.view;
            fprintf(out, "], swapped=[%lld][%lld][%lld][%lld]}", (long long)v[0],
                    (long long)v[1], (long long)v[2], (long long)v[3]);
        }
        return;
    }
    char text[512];
    if (!ir_format_attrs(n, false, text, sizeof text)) mxc_die("attributes of %%%d too long", n->id);
    bool rec = ir_op_is_recurrent(n->op);
    if (!text[0] && !rec) return;
    fprintf(out, " {%s", text);
    if (rec) fprintf(out, "%sstate=%d", text[0] ? ", " : "", n->attr.rec.state);
    fprintf(out, "}");
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
    fprintf(out, "graph %s {chunk=%d, state=%lld floats/seq", g->model.name, g->chunk_len,
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
