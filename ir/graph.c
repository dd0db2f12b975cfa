/* graph.c - graph construction: the arena, node builders, and the type rules of every op. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

/* A chain of big blocks; nodes, strings and tables of one graph are freed together. */
struct Arena {
    struct ArenaBlock *head;
};
struct ArenaBlock {
    struct ArenaBlock *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
};

enum { ARENA_BLOCK = 64 * 1024 };

void *ir_alloc(Graph *g, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    struct ArenaBlock *b = g->arena->head;
    if (!b || b->size - b->used < size) {
        size_t want = size > ARENA_BLOCK ? size : ARENA_BLOCK;
        b = malloc(sizeof *b + want);
        if (!b) mxc_die("out of memory (%zu bytes)", want);
        b->next = g->arena->head;
        b->used = 0;
        b->size = want;
        g->arena->head = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    memset(p, 0, size);
    return p;
}

char *ir_strdup(Graph *g, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = ir_alloc(g, n);
    memcpy(p, s, n);
    return p;
}

char *ir_strfmt(Graph *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = ir_alloc(g, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

Graph *ir_graph_new(const IrModel *model, int chunk_len)
{
    Graph *g = calloc(1, sizeof *g);
    Arena *a = calloc(1, sizeof *a);
    if (!g || !a) mxc_die("out of memory");
    g->arena = a;
    g->chunk_len = chunk_len;
    if (model) g->model = *model;
    g->model.name = ir_strdup(g, model && model->name ? model->name : "graph");
    g->weight_dtype = DT_F32; /* ir_lower_model sets the spec's */
    return g;
}

void ir_graph_free(Graph *g)
{
    if (!g) return;
    struct ArenaBlock *b = g->arena->head;
    while (b) {
        struct ArenaBlock *next = b->next;
        free(b);
        b = next;
    }
    free(g->arena);
    free(g->nodes);
    free(g->states);
    free(g);
}

int ir_add_state(Graph *g, const char *what, int64_t floats)
{
    if (g->n_states == g->cap_states) {
        g->cap_states = g->cap_states ? 2 * g->cap_states : 16;
        g->states = realloc(g->states, (size_t)g->cap_states * sizeof *g->states);
        if (!g->states) mxc_die("out of memory");
    }
    StateSlot *s = &g->states[g->n_states];
    s->what = ir_strdup(g, what);
    s->floats = floats;
    s->offset = g->state_floats;
    g->state_floats += floats;
    return g->n_states++;
}

/* --- op facts --------------------------------------------------------------------------- */

static const struct {
    const char *name;
    int min_src, max_src;
    OpKind kind;
    int flags;
} op_info[] = {
#define IR_OP_INFO(name, str, min_src, max_src, kind, flags, doc) {str, min_src, max_src, kind, flags},
    IR_OPS(IR_OP_INFO)
#undef IR_OP_INFO
};
_Static_assert(sizeof op_info / sizeof op_info[0] == OP_COUNT_, "op table out of sync");

const char *ir_op_name(Op op) { return op_info[op].name; }
int ir_op_min_src(Op op) { return op_info[op].min_src; }
int ir_op_max_src(Op op) { return op_info[op].max_src; }
OpKind ir_op_kind(Op op) { return op_info[op].kind; }
bool ir_op_is_recurrent(Op op) { return op_info[op].kind == OPK_RECURRENT; }
bool ir_op_is_activation(Op op) { return op < OP_COUNT_ && op_info[op].kind == OPK_UNARY; }
bool ir_op_has_code(Op op) { return (op_info[op].flags & OPF_CODE) != 0; }
bool ir_op_needs_scratch(Op op) { return (op_info[op].flags & OPF_SCRATCH) != 0; }

/* --- types ------------------------------------------------------------------------------ */

bool ir_type_equal(const Type *a, const Type *b)
{
    if (a->dtype != b->dtype || a->seq != b->seq || a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dim[i] != b->dim[i]) return false;
    return true;
}

int64_t ir_type_elems(const Type *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= t->dim[i];
    return n;
}

int64_t ir_type_cols(const Type *t) { return ir_type_elems(t); }

const char *ir_dtype_name(DType d)
{
    switch (d) {
    case DT_F32: return "f32";
    case DT_I32: return "i32";
    case DT_BF16: return "bf16";
    case DT_F16: return "f16";
    case DT_Q8: return "q8";
    }
    return "?";
}

int ir_dtype_slots(DType d) { return d == DT_Q8 ? 2 : 1; }

/* The dtype is part of the text, so kernel keys (codegen.c) tell narrow weights apart. */
void ir_type_format(const Type *t, char *buf, size_t len)
{
    size_t at = (size_t)snprintf(buf, len, "%s[", ir_dtype_name(t->dtype));
    const char *sep = "";
    if (t->seq) {
        at += (size_t)snprintf(buf + at, at < len ? len - at : 0, "B,T");
        sep = ",";
    }
    for (int i = 0; i < t->rank; i++) {
        at += (size_t)snprintf(buf + at, at < len ? len - at : 0, "%s%lld", sep,
                               (long long)t->dim[i]);
        sep = ",";
    }
    snprintf(buf + at, at < len ? len - at : 0, "]");
}

static Type seq_type(int64_t cols)
{
    Type t = {.dtype = DT_F32, .seq = true, .rank = 1, .dim = {cols}};
    return t;
}

static bool is_seq_f32(const Node *n) { return n->type.seq && n->type.dtype == DT_F32; }

static bool is_vector(const Node *n, int64_t len)
{
    return !n->type.seq && n->type.dtype == DT_F32 && n->type.rank == 1 && n->type.dim[0] == len;
}

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return false; } while (0)

bool ir_infer_type(const Node *n, Type *out, char *err, size_t errlen)
{
    if (n->n_src < ir_op_min_src(n->op) || n->n_src > ir_op_max_src(n->op))
        FAIL("%s takes %d to %d sources, has %d", ir_op_name(n->op), ir_op_min_src(n->op),
             ir_op_max_src(n->op), n->n_src);
    for (int i = 0; i < n->n_src; i++)
        if (!n->src[i]) FAIL("source %d is missing", i);
    const Node *x = n->n_src > 0 ? n->src[0] : NULL;
    int64_t cols = x ? ir_type_cols(&x->type) : 0;

    switch (n->op) {
    case OP_TOKENS:
        *out = (Type){.dtype = DT_I32, .seq = true, .rank = 0};
        return true;
    case OP_WEIGHT:
        *out = n->type; /* declared by the builder */
        return true;
    case OP_EMBED: {
        const Node *table = n->src[1];
        if (!(x->type.seq && x->type.dtype == DT_I32 && x->type.rank == 0))
            FAIL("embed expects token ids i32[B,T]");
        if (table->type.seq || table->type.rank != 2) FAIL("embed table must be [V, D]");
        *out = seq_type(table->type.dim[1]);
        return true;
    }
    case OP_RMSNORM:
    case OP_LAYERNORM:
        if (!is_seq_f32(x)) FAIL("%s input must be f32[B,T,...]", ir_op_name(n->op));
        if ((n->op == OP_LAYERNORM && n->attr.norm.groups < 1) || n->attr.norm.groups < 0 ||
            (n->attr.norm.groups > 1 && cols % n->attr.norm.groups != 0))
            FAIL("%s groups %d do not divide %lld columns", ir_op_name(n->op),
                 n->attr.norm.groups, (long long)cols);
        if (!is_vector(n->src[1], cols)) FAIL("norm gain must be f32[%lld]", (long long)cols);
        if (n->n_src > 2 && !is_vector(n->src[2], cols))
            FAIL("norm bias must be f32[%lld]", (long long)cols);
        *out = seq_type(cols);
        return true;
    case OP_LINEAR: {
        if (!is_seq_f32(x)) FAIL("linear input must be f32[B,T,K]");
        int parts = n->attr.proj.parts;
        if (parts < 1 || n->n_src != ir_proj_residual(n) + (n->attr.proj.residual ? 1 : 0))
            FAIL("linear with %d parts has %d sources", parts, n->n_src);
        int64_t total = 0;
        for (int p = 0; p < parts; p++) {
            const Node *w = n->src[ir_proj_weight(n, p)];
            if (w->type.seq || w->type.rank != 2 || w->type.dim[1] != cols)
                FAIL("linear weight must be [N, %lld]", (long long)cols);
            if (n->attr.proj.bias && !is_vector(n->src[ir_proj_bias(n, p)], w->type.dim[0]))
                FAIL("linear bias must be f32[%lld]", (long long)w->type.dim[0]);
            total += w->type.dim[0];
        }
        *out = seq_type(total);
        if (n->attr.proj.residual && !ir_type_equal(&n->src[ir_proj_residual(n)]->type, out))
            FAIL("linear residual must be f32[B,T,%lld]", (long long)total);
        return true;
    }
    case OP_HEADWISE: {
        if (!is_seq_f32(x)) FAIL("headwise input must be f32[B,T,K]");
        int parts = n->attr.proj.parts;
        if (parts < 1 || n->attr.proj.residual || n->attr.proj.act != OP_COUNT_ ||
            n->n_src != ir_proj_residual(n))
            FAIL("headwise with %d parts has %d sources", parts, n->n_src);
        int64_t total = 0;
        for (int p = 0; p < parts; p++) {
            const Node *w = n->src[ir_proj_weight(n, p)];
            if (w->type.seq || w->type.rank != 3 || w->type.dim[0] * w->type.dim[2] != cols)
                FAIL("headwise weight must be [heads, out, in] with heads * in = %lld",
                     (long long)cols);
            int64_t part_cols = w->type.dim[0] * w->type.dim[1];
            if (n->attr.proj.bias && !is_vector(n->src[ir_proj_bias(n, p)], part_cols))
                FAIL("headwise bias must be f32[%lld]", (long long)part_cols);
            total += part_cols;
        }
        *out = seq_type(total);
        return true;
    }
    case OP_CONCAT: {
        int64_t total = 0;
        for (int i = 0; i < n->n_src; i++) {
            if (!is_seq_f32(n->src[i])) FAIL("concat sources must be f32[B,T,...]");
            total += ir_type_cols(&n->src[i]->type);
        }
        *out = seq_type(total);
        return true;
    }
    case OP_SCALE:
        if (!is_seq_f32(x) || !is_vector(n->src[1], cols))
            FAIL("scale needs f32[B,T,C] and a weight f32[C]");
        *out = seq_type(cols);
        return true;
    case OP_SLICE:
        if (!is_seq_f32(x)) FAIL("slice input must be f32[B,T,...]");
        if (n->attr.slice.start < 0 || n->attr.slice.len <= 0 ||
            n->attr.slice.start + n->attr.slice.len > cols)
            FAIL("slice [%lld, +%lld) outside %lld columns", (long long)n->attr.slice.start,
                 (long long)n->attr.slice.len, (long long)cols);
        *out = seq_type(n->attr.slice.len);
        return true;
    case OP_SILU:
    case OP_SOFTPLUS:
    case OP_GELU:
    case OP_RELU:
    case OP_RELU2:
    case OP_SIGMOID:
    case OP_SELU:
        if (!is_seq_f32(x)) FAIL("%s input must be f32[B,T,...]", ir_op_name(n->op));
        *out = seq_type(cols);
        return true;
    case OP_SOFTCAP:
        if (!is_seq_f32(x)) FAIL("softcap input must be f32[B,T,...]");
        if (!(n->attr.softcap.cap > 0)) FAIL("softcap needs a cap > 0");
        *out = seq_type(cols);
        return true;
    case OP_MUL:
    case OP_ADD:
        if (!is_seq_f32(x) || !ir_type_equal(&x->type, &n->src[1]->type))
            FAIL("%s needs two f32[B,T,...] values of one shape", ir_op_name(n->op));
        *out = seq_type(cols);
        return true;
    case OP_CONV1D: {
        const Node *w = n->src[1];
        if (!is_seq_f32(x)) FAIL("conv input must be f32[B,T,C]");
        if (w->type.seq || w->type.rank != 3 || w->type.dim[0] != cols || w->type.dim[1] != 1 ||
            w->type.dim[2] < 1)
            FAIL("conv weight must be [%lld, 1, K]", (long long)cols);
        if (n->n_src > 2 && !is_vector(n->src[2], cols))
            FAIL("conv bias must be f32[%lld]", (long long)cols);
        *out = seq_type(cols);
        return true;
    }
    case OP_SELECTIVE_SCAN: {
        /* x [B,T,C], delta [B,T,C], A_log [C,N], B [B,T,N], C [B,T,N], D [C] */
        const Node *delta = n->src[1], *a_log = n->src[2], *bm = n->src[3], *cm = n->src[4];
        if (!is_seq_f32(x) || !ir_type_equal(&x->type, &delta->type))
            FAIL("scan x and delta must be f32[B,T,C] of one shape");
        if (a_log->type.seq || a_log->type.rank != 2 || a_log->type.dim[0] != cols)
            FAIL("scan A_log must be [%lld, N]", (long long)cols);
        int64_t ns = a_log->type.dim[1];
        if (!is_seq_f32(bm) || ir_type_cols(&bm->type) != ns || !is_seq_f32(cm) ||
            ir_type_cols(&cm->type) != ns)
            FAIL("scan B and C must be f32[B,T,%lld]", (long long)ns);
        if (!is_vector(n->src[5], cols)) FAIL("scan D must be f32[%lld]", (long long)cols);
        bool gated = n->attr.rec.act == OP_SILU;
        if (n->n_src != (gated ? 7 : 6) || (!gated && n->attr.rec.act != OP_COUNT_))
            FAIL("scan gate and sources disagree");
        if (gated && !ir_type_equal(&n->src[6]->type, &x->type))
            FAIL("scan gate z must be f32[B,T,%lld]", (long long)cols);
        *out = seq_type(cols);
        return true;
    }
    case OP_SSD_SCAN: {
        /* x [B,T,H*P], dt [B,T,H], dt_bias [H], A_log [H], B, C [B,T,G*N], D [H] or [H*P] */
        int heads = n->attr.rec.heads, groups = n->attr.rec.groups;
        if (heads < 1 || groups < 1 || heads % groups != 0 || cols % heads != 0)
            FAIL("ssd heads %d and groups %d do not fit %lld channels", heads, groups,
                 (long long)cols);
        if (!is_seq_f32(x)) FAIL("ssd x must be f32[B,T,%lld]", (long long)cols);
        if (!is_seq_f32(n->src[1]) || ir_type_cols(&n->src[1]->type) != heads)
            FAIL("ssd dt must be f32[B,T,%d]", heads);
        if (!is_vector(n->src[2], heads) || !is_vector(n->src[3], heads))
            FAIL("ssd dt_bias and A_log must be f32[%d]", heads);
        const Node *bm = n->src[4], *cm = n->src[5];
        int64_t gn = ir_type_cols(&bm->type);
        if (!is_seq_f32(bm) || !is_seq_f32(cm) || gn % groups != 0 || gn < groups ||
            ir_type_cols(&cm->type) != gn)
            FAIL("ssd B and C must be f32[B,T,groups*N] of one shape");
        if (!is_vector(n->src[6], heads) && !is_vector(n->src[6], cols))
            FAIL("ssd D must be f32[%d] or f32[%lld]", heads, (long long)cols);
        if (n->attr.rec.chunk < 0) FAIL("ssd chunk %d", n->attr.rec.chunk);
        *out = seq_type(cols);
        return true;
    }
    case OP_MLSTM_CELL: {
        /* q, k [B,T,NH*DHqk]; v [B,T,NH*DHv]; igate, fgate [B,T,NH] */
        int heads = n->attr.rec.heads;
        const MlstmNumerics *num = &n->attr.rec.mlstm;
        int64_t vcols = is_seq_f32(n->src[2]) ? ir_type_cols(&n->src[2]->type) : 0;
        if (heads < 1 || cols % heads != 0 || vcols % heads != 0 || vcols == 0)
            FAIL("mlstm heads %d do not divide %lld and %lld", heads, (long long)cols,
                 (long long)vcols);
        for (int i = 0; i < 2; i++)
            if (!is_seq_f32(n->src[i]) || !ir_type_equal(&n->src[i]->type, &x->type))
                FAIL("mlstm q, k must be f32[B,T,%lld]", (long long)cols);
        for (int i = 3; i < 5; i++)
            if (!is_seq_f32(n->src[i]) || ir_type_cols(&n->src[i]->type) != heads)
                FAIL("mlstm gates must be f32[B,T,%d]", heads);
        if (!(num->eps >= 0) || !(num->q_scale > 0) || !(num->k_scale > 0) ||
            !(num->gate_cap >= 0) || num->chunk < 0)
            FAIL("mlstm numerics out of range");
        *out = seq_type(vcols);
        return true;
    }
    case OP_SLSTM_CELL: {
        /* i, f, z, o [B,T,E]; R [NH, 4DH, DH]; bias [4E], gate-major */
        int heads = n->attr.rec.heads;
        if (heads < 1 || cols % heads != 0) FAIL("slstm heads %d do not divide %lld", heads,
                                                 (long long)cols);
        int64_t dh = cols / heads;
        for (int i = 0; i < 4; i++)
            if (!is_seq_f32(n->src[i]) || !ir_type_equal(&n->src[i]->type, &x->type))
                FAIL("slstm gate inputs must be f32[B,T,%lld]", (long long)cols);
        const Node *r = n->src[4];
        int64_t want1 = 4 * dh, want2 = dh;
        if (r->type.seq || r->type.rank != 3 || r->type.dim[0] != heads ||
            r->type.dim[1] != want1 || r->type.dim[2] != want2)
            FAIL("slstm recurrent kernel must be [%d, %lld, %lld]", heads, (long long)want1,
                 (long long)want2);
        if (!is_vector(n->src[5], 4 * cols)) FAIL("slstm bias must be f32[%lld]", (long long)(4 * cols));
        *out = seq_type(cols);
        return true;
    }
    case OP_OUTPUT:
        if (!is_seq_f32(x)) FAIL("output must be f32[B,T,V]");
        *out = x->type;
        return true;
    case OP_COUNT_:
        break;
    }
    FAIL("unknown op %d", (int)n->op);
}

#undef FAIL

/* --- builders --------------------------------------------------------------------------- */

static Node *node_new(Graph *g, Op op, Loc loc, int n_src, Node *const *src)
{
    Node *n = ir_alloc(g, sizeof *n);
    n->op = op;
    n->loc = loc;
    n->n_src = 0;
    for (int i = 0; i < n_src; i++)
        if (src[i]) n->src[n->n_src++] = src[i]; /* optional sources come last */
    if (g->n_nodes == g->cap_nodes) {
        g->cap_nodes = g->cap_nodes ? 2 * g->cap_nodes : 256;
        g->nodes = realloc(g->nodes, (size_t)g->cap_nodes * sizeof *g->nodes);
        if (!g->nodes) mxc_die("out of memory");
    }
    n->id = g->n_nodes;
    g->nodes[g->n_nodes++] = n;
    return n;
}

/* Infer the type of a freshly built node; a failure is a bug in the lowering. */
static Node *typed(Node *n)
{
    char err[256];
    if (!ir_infer_type(n, &n->type, err, sizeof err))
        mxc_die("building %%%d (%s): %s", n->id, ir_op_name(n->op), err);
    return n;
}

Node *ir_tokens(Graph *g, Loc loc)
{
    g->tokens = typed(node_new(g, OP_TOKENS, loc, 0, NULL));
    return g->tokens;
}

/* Each parameter is created once by the lowering (a tied head reuses the embedding's
 * node), so no lookup by name is needed here: that would make lowering quadratic in depth. */
Node *ir_weight(Graph *g, Loc loc, const char *name, const char *alt_name, int rank,
                const int64_t *dims)
{
    if (rank < 1 || rank > IR_MAX_RANK) mxc_die("weight %s: rank %d", name, rank);
    Node *n = node_new(g, OP_WEIGHT, loc, 0, NULL);
    n->attr.weight.name = ir_strdup(g, name);
    n->attr.weight.alt_name = alt_name ? ir_strdup(g, alt_name) : NULL;
    n->attr.weight.slot = -1;
    n->type.dtype = DT_F32;
    n->type.rank = rank;
    for (int i = 0; i < rank; i++) n->type.dim[i] = dims[i];
    return n;
}

void ir_weight_stored_swapped(Node *w, int stored_rank, const int64_t *stored_dims,
                              const int64_t view[4])
{
    int64_t stored = 1, seen = 1;
    for (int i = 0; i < stored_rank; i++) stored *= stored_dims[i];
    for (int i = 0; i < 4; i++) seen *= view[i];
    if (w->op != OP_WEIGHT || stored_rank < 1 || stored_rank > IR_MAX_RANK ||
        stored != ir_type_elems(&w->type) || seen != stored)
        mxc_die("weight layout does not fit %%%d", w->id);
    w->attr.weight.layout = WEIGHT_SWAP_MIDDLE;
    w->attr.weight.stored_rank = stored_rank;
    for (int i = 0; i < stored_rank; i++) w->attr.weight.stored_dim[i] = stored_dims[i];
    for (int i = 0; i < 4; i++) w->attr.weight.view[i] = view[i];
}

Node *ir_embed(Graph *g, Loc loc, Node *tokens, Node *table)
{
    return typed(node_new(g, OP_EMBED, loc, 2, (Node *[]){tokens, table}));
}

Node *ir_rmsnorm(Graph *g, Loc loc, Node *x, Node *gain, Node *bias, double eps)
{
    Node *n = node_new(g, OP_RMSNORM, loc, 3, (Node *[]){x, gain, bias});
    n->attr.norm.eps = eps;
    return typed(n);
}

Node *ir_rmsnorm_grouped(Graph *g, Loc loc, Node *x, Node *gain, double eps, int groups)
{
    Node *n = node_new(g, OP_RMSNORM, loc, 2, (Node *[]){x, gain});
    n->attr.norm.eps = eps;
    n->attr.norm.groups = groups;
    return typed(n);
}

Node *ir_layernorm(Graph *g, Loc loc, Node *x, Node *gain, Node *bias, double eps,
                   bool gain_offset, int groups)
{
    Node *n = node_new(g, OP_LAYERNORM, loc, 3, (Node *[]){x, gain, bias});
    n->attr.norm.eps = eps;
    n->attr.norm.gain_offset = gain_offset;
    n->attr.norm.groups = groups;
    return typed(n);
}

static Node *projection(Graph *g, Op op, Loc loc, Node *x, Node *w, Node *bias)
{
    Node *n = node_new(g, op, loc, 3, (Node *[]){x, w, bias});
    n->attr.proj.parts = 1;
    n->attr.proj.bias = bias != NULL;
    n->attr.proj.act = OP_COUNT_;
    return typed(n);
}

Node *ir_headwise(Graph *g, Loc loc, Node *x, Node *w, Node *bias)
{
    return projection(g, OP_HEADWISE, loc, x, w, bias);
}

Node *ir_concat(Graph *g, Loc loc, Node *a, Node *b, Node *c)
{
    return typed(node_new(g, OP_CONCAT, loc, 3, (Node *[]){a, b, c}));
}

Node *ir_linear(Graph *g, Loc loc, Node *x, Node *w, Node *bias)
{
    return projection(g, OP_LINEAR, loc, x, w, bias);
}

Node *ir_slice(Graph *g, Loc loc, Node *x, int64_t start, int64_t len)
{
    Node *n = node_new(g, OP_SLICE, loc, 1, (Node *[]){x});
    n->attr.slice.start = start;
    n->attr.slice.len = len;
    return typed(n);
}

Node *ir_unary(Graph *g, Loc loc, Op op, Node *x)
{
    return typed(node_new(g, op, loc, 1, (Node *[]){x}));
}

Node *ir_binary(Graph *g, Loc loc, Op op, Node *a, Node *b)
{
    return typed(node_new(g, op, loc, 2, (Node *[]){a, b}));
}

Node *ir_conv1d(Graph *g, Loc loc, Node *x, Node *w, Node *bias, const char *what)
{
    Node *n = node_new(g, OP_CONV1D, loc, 3, (Node *[]){x, w, bias});
    n->attr.rec.act = OP_COUNT_;
    typed(n);
    /* The window holds the last K-1 inputs, time-major: [K-1][C]. */
    int64_t k = w->type.dim[2];
    n->attr.rec.state = ir_add_state(g, what, (k - 1) * ir_type_cols(&x->type));
    return n;
}

Node *ir_selective_scan(Graph *g, Loc loc, Node *x, Node *delta, Node *a_log, Node *b,
                        Node *c, Node *d, const char *what)
{
    Node *n = node_new(g, OP_SELECTIVE_SCAN, loc, 6, (Node *[]){x, delta, a_log, b, c, d});
    n->attr.rec.act = OP_COUNT_;
    typed(n);
    /* h [C][N] */
    n->attr.rec.state = ir_add_state(g, what, ir_type_elems(&a_log->type));
    return n;
}

Node *ir_ssd_scan(Graph *g, Loc loc, Node *const src[7], int heads, int groups, double dt_min,
                  double dt_max, int block, const char *what)
{
    Node *n = node_new(g, OP_SSD_SCAN, loc, 7, src);
    n->attr.rec.act = OP_COUNT_;
    n->attr.rec.heads = heads;
    n->attr.rec.groups = groups;
    n->attr.rec.dt_min = dt_min;
    n->attr.rec.dt_max = dt_max;
    n->attr.rec.block = block;
    typed(n);
    /* h [H][P][N], as upstream's ssm_state (B, H, P, N) */
    int64_t gn = ir_type_cols(&src[4]->type);
    n->attr.rec.state = ir_add_state(g, what, ir_type_cols(&src[0]->type) * (gn / groups));
    return n;
}

Node *ir_mlstm_cell(Graph *g, Loc loc, Node *q, Node *k, Node *v, Node *igate, Node *fgate,
                    int heads, const MlstmNumerics *num, const char *what)
{
    Node *n = node_new(g, OP_MLSTM_CELL, loc, 5, (Node *[]){q, k, v, igate, fgate});
    n->attr.rec.heads = heads;
    n->attr.rec.mlstm = *num;
    typed(n);
    /* Per head: C [DHqk][DHv] (key x value), n [DHqk], m; laid out as all C, all n, all m. */
    int64_t qk = ir_type_cols(&q->type), dk = qk / heads, dv = ir_type_cols(&v->type) / heads;
    n->attr.rec.state = ir_add_state(g, what, heads * dk * dv + qk + heads);
    return n;
}

Node *ir_softcap(Graph *g, Loc loc, Node *x, double cap)
{
    Node *n = node_new(g, OP_SOFTCAP, loc, 1, (Node *[]){x});
    n->attr.softcap.cap = cap;
    return typed(n);
}

Node *ir_slstm_cell(Graph *g, Loc loc, Node *const gates[4], Node *r, Node *bias, int heads,
                    const char *what)
{
    Node *n = node_new(g, OP_SLSTM_CELL, loc, 6,
                       (Node *[]){gates[0], gates[1], gates[2], gates[3], r, bias});
    n->attr.rec.heads = heads;
    typed(n);
    /* (y, c, n, m), each [E] */
    n->attr.rec.state = ir_add_state(g, what, 4 * ir_type_cols(&gates[0]->type));
    return n;
}

Node *ir_output(Graph *g, Loc loc, Node *logits)
{
    g->output = typed(node_new(g, OP_OUTPUT, loc, 1, (Node *[]){logits}));
    return g->output;
}

void ir_count_uses(Graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) g->nodes[i]->n_uses = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        Node *n = g->nodes[i];
        if (n->dead) continue;
        for (int s = 0; s < n->n_src; s++) n->src[s]->n_uses++;
    }
}

void ir_move_before(Graph *g, Node *n, Node *pos)
{
    int from = n->id, to = pos->id;
    if (from < to) mxc_die("ir_move_before: %%%d would move later", from);
    memmove(&g->nodes[to + 1], &g->nodes[to], (size_t)(from - to) * sizeof *g->nodes);
    g->nodes[to] = n;
    for (int i = to; i <= from; i++) g->nodes[i]->id = i;
}

void ir_replace_uses(Graph *g, Node *old, Node *new)
{
    old->forward = new;
    if (g->output && g->output->src[0] == old) g->output->src[0] = new;
}

static Node *resolve(Node *n)
{
    while (n->forward) n = n->forward;
    return n;
}

void ir_resolve_sources(Node *n)
{
    for (int s = 0; s < n->n_src; s++) n->src[s] = resolve(n->src[s]);
}

void ir_resolve_all(Graph *g)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i]->dead) ir_resolve_sources(g->nodes[i]);
}
