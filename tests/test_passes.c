/* test_passes.c - each rewrite pass on its own, on small graphs built with the ir_* builders.
 *
 * Every test builds a graph, runs one pass (as the pipeline does: the pass, then
 * ir_resolve_all, then ir_verify), and asserts the graph after it: which nodes are live, their
 * ops, sources and attributes. Each pass also gets the cases where it must not fire: a use
 * that blocks the fusion, different sources, an epilogue already there, too many parts. */
#include <string.h>

#include "ir/ir.h"
#include "passes/passes.h"
#include "testutil.h"

enum { D = 8, V = 16 }; /* model width and vocabulary of the test graphs */

static const Loc L = {"t.mx", 1, 1};

/* A graph with its tokens and an embedded input row x: f32[B,T,D]. */
static Graph *graph_with_input(Node **x)
{
    Graph *g = ir_graph_new(NULL, 16); /* no model facts: outputs of any width */
    Node *tok = ir_tokens(g, L);
    Node *table = ir_weight(g, L, "embedding", NULL, 2, (int64_t[]){V, D});
    *x = ir_embed(g, L, tok, table);
    return g;
}

static Node *weight2(Graph *g, const char *name, int64_t rows, int64_t cols)
{
    return ir_weight(g, L, name, NULL, 2, (int64_t[]){rows, cols});
}

static Node *vec(Graph *g, const char *name, int64_t n)
{
    return ir_weight(g, L, name, NULL, 1, (int64_t[]){n});
}

static Node *linear(Graph *g, Node *x, const char *w, int64_t rows, bool bias)
{
    char b[64];
    snprintf(b, sizeof b, "%s.bias", w);
    return ir_linear(g, L, x, weight2(g, w, rows, ir_type_cols(&x->type)),
                     bias ? vec(g, b, rows) : NULL);
}

/* The graph's logits: a projection of `x` to the vocabulary. */
static void finish(Graph *g, Node *x)
{
    ir_output(g, L, linear(g, x, "head", V, false));
}

/* Run one pass the way passes_run does, and check the IR is still well formed. */
static void run_pass(Graph *g, void (*pass)(Graph *))
{
    pass(g);
    ir_resolve_all(g);
    CU_ASSERT_EQUAL(ir_verify(g, stderr), 0);
}

static int live_count(const Graph *g, Op op)
{
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++) n += !g->nodes[i]->dead && g->nodes[i]->op == op;
    return n;
}

/* The only live node of `op` (NULL, and a failure, if there is not exactly one). */
static Node *only(const Graph *g, Op op)
{
    Node *found = NULL;
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i]->dead && g->nodes[i]->op == op) {
            found = g->nodes[i];
            n++;
        }
    CU_ASSERT_EQUAL(n, 1);
    return n == 1 ? found : NULL;
}

static bool is_weight(const Node *n, const char *name)
{
    return n->op == OP_WEIGHT && strcmp(n->attr.weight.name, name) == 0;
}

/* The linear node (not the head) whose first weight is `w`. */
static Node *linear_of(const Graph *g, const char *w)
{
    for (int i = 0; i < g->n_nodes; i++) {
        Node *n = g->nodes[i];
        if (!n->dead && n->op == OP_LINEAR && is_weight(n->src[1], w)) return n;
    }
    return NULL;
}

/* --- fuse-projections ------------------------------------------------------------------- */

/* q = x Wqᵀ + bq, k = x Wkᵀ + bk, both read by one add: one node with two parts, sources
 * x, Wq, Wk, bq, bk, and each old node's reader takes a slice of it. */
static void test_projections_fuse_same_input(void)
{
    Node *x;
    Graph *g = graph_with_input(&x);
    Node *q = linear(g, x, "q", 12, true), *k = linear(g, x, "k", 4, true);
    Node *cat = ir_concat(g, L, q, k, NULL);
    finish(g, ir_linear(g, L, cat, weight2(g, "down", D, 16), NULL));
    run_pass(g, pass_fuse_projections);

    CU_ASSERT_TRUE(q->dead);
    CU_ASSERT_TRUE(k->dead);
    Node *fused = linear_of(g, "q");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fused);
    CU_ASSERT_EQUAL(fused->attr.proj.parts, 2);
    CU_ASSERT_TRUE(fused->attr.proj.bias);
    CU_ASSERT_FALSE(fused->attr.proj.residual);
    CU_ASSERT_EQUAL(fused->attr.proj.act, OP_COUNT_);
    CU_ASSERT_EQUAL_FATAL(fused->n_src, 5);
    CU_ASSERT_PTR_EQUAL(fused->src[0], x);
    CU_ASSERT_TRUE(is_weight(fused->src[1], "q"));
    CU_ASSERT_TRUE(is_weight(fused->src[2], "k"));
    CU_ASSERT_TRUE(is_weight(fused->src[3], "q.bias"));
    CU_ASSERT_TRUE(is_weight(fused->src[4], "k.bias"));
    CU_ASSERT_EQUAL(ir_type_cols(&fused->type), 16);

    Node *c = only(g, OP_CONCAT);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    for (int i = 0; i < 2; i++) {
        Node *s = c->src[i];
        CU_ASSERT_EQUAL_FATAL(s->op, OP_SLICE);
        CU_ASSERT_PTR_EQUAL(s->src[0], fused);
        CU_ASSERT_EQUAL(s->attr.slice.start, i ? 12 : 0);
        CU_ASSERT_EQUAL(s->attr.slice.len, i ? 4 : 12);
        CU_ASSERT(s->id > fused->id && s->id < c->id);
    }
    CU_ASSERT_EQUAL(live_count(g, OP_SLICE), 2);
    CU_ASSERT_EQUAL(live_count(g, OP_LINEAR), 3); /* fused, down, head */
    ir_graph_free(g);
}

/* Two projections of different inputs, and two of one input where only one has a bias, stay
 * as they are. */
static void test_projections_need_same_input_and_bias(void)
{
    Node *x;
    Graph *g = graph_with_input(&x);
    Node *y = ir_unary(g, L, OP_SILU, x);
    Node *a = linear(g, x, "a", D, false), *b = linear(g, y, "b", D, false);
    Node *c = linear(g, x, "c", D, true);
    Node *sum = ir_binary(g, L, OP_ADD, ir_binary(g, L, OP_ADD, a, b), c);
    finish(g, sum);
    /* a and c read x, but only c has a bias */
    run_pass(g, pass_fuse_projections);
    CU_ASSERT_FALSE(a->dead);
    CU_ASSERT_FALSE(b->dead);
    CU_ASSERT_FALSE(c->dead);
    CU_ASSERT_EQUAL(a->attr.proj.parts, 1);
    CU_ASSERT_EQUAL(c->attr.proj.parts, 1);
    CU_ASSERT_EQUAL(live_count(g, OP_SLICE), 0);
    ir_graph_free(g);
}

/* a = x Waᵀ is read before b = x Wbᵀ is computed: the fused node would take b's place,
 * after that reader, so nothing is fused. */
static void test_projections_blocked_by_early_use(void)
{
    Node *x;
    Graph *g = graph_with_input(&x);
    Node *a = linear(g, x, "a", D, false);
    Node *act = ir_unary(g, L, OP_SILU, a);
    Node *b = linear(g, x, "b", D, false);
    finish(g, ir_binary(g, L, OP_MUL, act, b));
    run_pass(g, pass_fuse_projections);
    CU_ASSERT_FALSE(a->dead);
    CU_ASSERT_FALSE(b->dead);
    CU_ASSERT_PTR_EQUAL(act->src[0], a);
    CU_ASSERT_EQUAL(live_count(g, OP_SLICE), 0);
    ir_graph_free(g);
}

/* A projection with an epilogue (a folded activation, a residual) is not a part. */
static void test_projections_skip_epilogues(void)
{
    Node *x;
    Graph *g = graph_with_input(&x);
    Node *a = linear(g, x, "a", D, false), *b = linear(g, x, "b", D, false);
    b->attr.proj.act = OP_SILU;
    Node *c = ir_linear(g, L, x, weight2(g, "c", D, D), NULL);
    c->src[c->n_src++] = x; /* c = x + x Wcᵀ */
    c->attr.proj.residual = true;
    finish(g, ir_binary(g, L, OP_ADD, ir_binary(g, L, OP_ADD, a, b), c));
    run_pass(g, pass_fuse_projections);
    CU_ASSERT_FALSE(a->dead);
    CU_ASSERT_FALSE(b->dead);
    CU_ASSERT_FALSE(c->dead);
    CU_ASSERT_EQUAL(a->attr.proj.parts, 1);
    CU_ASSERT_EQUAL(b->attr.proj.act, OP_SILU);
    CU_ASSERT_TRUE(c->attr.proj.residual);
    CU_ASSERT_EQUAL(live_count(g, OP_SLICE), 0);
    ir_graph_free(g);
}

/* One more projection of x than a node takes: the first IR_PROJ_MAX_PARTS become one node, the
 * last stays alone. */
static void test_projections_at_most_max_parts(void)
{
    enum { N = IR_PROJ_MAX_PARTS + 1 };
    Node *x;
    Graph *g = graph_with_input(&x);
    Node *p[N], *sum = NULL;
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        p[i] = linear(g, x, name, D, false);
    }
    for (int i = 0; i < N; i++) sum = sum ? ir_binary(g, L, OP_ADD, sum, p[i]) : p[i];
    finish(g, sum);
    run_pass(g, pass_fuse_projections);
    Node *fused = linear_of(g, "p0");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fused);
    CU_ASSERT_EQUAL(fused->attr.proj.parts, IR_PROJ_MAX_PARTS);
    CU_ASSERT_EQUAL(fused->n_src, 1 + IR_PROJ_MAX_PARTS);
    for (int i = 0; i < IR_PROJ_MAX_PARTS; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        CU_ASSERT_TRUE(is_weight(fused->src[1 + i], name));
        CU_ASSERT_TRUE(p[i]->dead);
    }
    CU_ASSERT_FALSE(p[N - 1]->dead);
    CU_ASSERT_EQUAL(p[N - 1]->attr.proj.parts, 1);
    CU_ASSERT_EQUAL(live_count(g, OP_SLICE), IR_PROJ_MAX_PARTS);
    ir_graph_free(g);
}

/* Headwise projections fuse with their own kind only, and only with the same heads and
 * input width per head; a linear of the same input is not a partner. */
static void test_projections_headwise(void)
{
    Node *x;
    Graph *g = graph_with_input(&x);
    /* x has 8 columns: 4 heads of 2, or 2 heads of 4 */
    Node *q = ir_headwise(g, L, x, ir_weight(g, L, "q", NULL, 3, (int64_t[]){4, 2, 2}), NULL);
    Node *k = ir_headwise(g, L, x, ir_weight(g, L, "k", NULL, 3, (int64_t[]){4, 3, 2}), NULL);
    Node *o = ir_headwise(g, L, x, ir_weight(g, L, "o", NULL, 3, (int64_t[]){2, 4, 4}), NULL);
    Node *l = linear(g, x, "l", 4, false);
    Node *cat = ir_concat(g, L, q, k, o);
    finish(g, ir_concat(g, L, cat, l, NULL));
    run_pass(g, pass_fuse_projections);
    CU_ASSERT_TRUE(q->dead);
    CU_ASSERT_TRUE(k->dead);
    CU_ASSERT_FALSE(o->dead);
    CU_ASSERT_FALSE(l->dead);
    Node *fused = NULL;
    for (int i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i]->dead && g->nodes[i]->op == OP_HEADWISE && g->nodes[i] != o)
            fused = g->nodes[i];
    CU_ASSERT_PTR_NOT_NULL_FATAL(fused);
    CU_ASSERT_EQUAL(fused->attr.proj.parts, 2);
    CU_ASSERT_EQUAL_FATAL(fused->n_src, 3);
    CU_ASSERT_TRUE(is_weight(fused->src[1], "q"));
    CU_ASSERT_TRUE(is_weight(fused->src[2], "k"));
    CU_ASSERT_EQUAL(ir_type_cols(&fused->type), 8 + 12);
    CU_ASSERT_EQUAL(o->attr.proj.parts, 1);
    CU_ASSERT_EQUAL(l->attr.proj.parts, 1);
    ir_graph_free(g);
}

/* --- fuse-conv ------------------------------------------------------------------------- */

static Node *conv(Graph *g, Node *x, bool bias)
{
    int64_t c = ir_type_cols(&x->type);
    return ir_conv1d(g, L, x, ir_weight(g, L, "conv.weight", NULL, 3, (int64_t[]){c, 1, 4}),
                     bias ? vec(g, "conv.bias", c) : NULL, "conv window");
}

/* silu(conv(x) + b) with the conv read only by the SiLU: the conv applies it as it stores,
 * and the SiLU's reader reads the conv. */
static void test_conv_takes_its_activation(void)
{
    Node *x;
    Graph *g = graph_with_input(&x);
    Node *c = conv(g, x, true);
    Node *act = ir_unary(g, L, OP_SILU, c);
    Node *user = ir_binary(g, L, OP_MUL, act, x);
    finish(g, user);
    run_pass(g, pass_fuse_conv);
    CU_ASSERT_TRUE(act->dead);
    CU_ASSERT_FALSE(c->dead);
    CU_ASSERT_EQUAL(c->attr.rec.act, OP_SILU);
    CU_ASSERT_EQUAL(c->n_src, 3);
    CU_ASSERT_PTR_EQUAL(user->src[0], c);
    CU_ASSERT_EQUAL(c->n_uses, 1);
    CU_ASSERT_EQUAL(live_count(g, OP_SILU), 0);
    ir_graph_free(g);
}

/* Not fused: a conv with a second reader (it needs its plain output), a conv that already
 * has an activation, and an activation of something else than a conv. */
static void test_conv_must_not_fuse(void)
{
    Node *x;
    Graph *g = graph_with_input(&x);
    Node *c = conv(g, x, false);
    Node *act = ir_unary(g, L, OP_GELU, c);
    finish(g, ir_binary(g, L, OP_ADD, act, c));
    run_pass(g, pass_fuse_conv);
    CU_ASSERT_FALSE(act->dead);
    CU_ASSERT_EQUAL(c->attr.rec.act, OP_COUNT_);
    CU_ASSERT_PTR_EQUAL(act->src[0], c);
    ir_graph_free(g);

    g = graph_with_input(&x);
    c = conv(g, x, true);
    c->attr.rec.act = OP_SILU;
    act = ir_unary(g, L, OP_SILU, c);
    finish(g, act);
    run_pass(g, pass_fuse_conv);
    CU_ASSERT_FALSE(act->dead);
    CU_ASSERT_EQUAL(c->attr.rec.act, OP_SILU);
    ir_graph_free(g);

    g = graph_with_input(&x);
    Node *lin = linear(g, x, "a", D, false);
    act = ir_unary(g, L, OP_SILU, lin);
    finish(g, act);
    run_pass(g, pass_fuse_conv);
    CU_ASSERT_FALSE(act->dead);
    CU_ASSERT_EQUAL(lin->attr.proj.act, OP_COUNT_);
    ir_graph_free(g);
}

/* --- fuse-elementwise ------------------------------------------------------------------ */

/* softplus(x Wᵀ + b), read once: the linear applies the softplus as it stores. */
static void test_elementwise_activation_into_linear(void)
{
    Node *x;
    Graph *g = graph_with_input(&x);
    Node *lin = linear(g, x, "dt", D, true);
    Node *act = ir_unary(g, L, OP_SOFTPLUS, lin);
    Node *user = ir_binary(g, L, OP_MUL, x, act);
    finish(g, user);
    run_pass(g, pass_fuse_elementwise);
    CU_ASSERT_TRUE(act->dead);
    CU_ASSERT_EQUAL(lin->attr.proj.act, OP_SOFTPLUS);
    CU_ASSERT_FALSE(lin->attr.proj.residual);
    CU_ASSERT_PTR_EQUAL(user->src[1], lin);
    ir_graph_free(g);
}

/* Not fused: a linear read twice (the other reader wants the value before the activation). */
static void test_elementwise_activation_blocked_by_second_reader(void)
{
    Node *x;
    Graph *g = graph_with_input(&x);
    Node *lin = linear(g, x, "a", D, false);
    Node *act = ir_unary(g, L, OP_SILU, lin);
    finish(g, ir_binary(g, L, OP_MUL, act, lin));
    run_pass(g, pass_fuse_elementwise);
    CU_ASSERT_FALSE(act->dead);
    CU_ASSERT_EQUAL(lin->attr.proj.act, OP_COUNT_);
    ir_graph_free(g);
}

/* r + x Wᵀ (either order of the add's sources): the linear adds the residual as it stores,
 * with r as its last source. */
static void test_elementwise_residual_into_linear(void)
{
    for (int side = 0; side < 2; side++) {
        Node *x;
        Graph *g = graph_with_input(&x);
        Node *r = ir_unary(g, L, OP_RELU, x);
        Node *lin = linear(g, x, "out", D, false);
        Node *add = side ? ir_binary(g, L, OP_ADD, lin, r) : ir_binary(g, L, OP_ADD, r, lin);
        Node *user = ir_unary(g, L, OP_SIGMOID, add);
        finish(g, user);
        run_pass(g, pass_fuse_elementwise);
        CU_ASSERT_TRUE(add->dead);
        CU_ASSERT_TRUE(lin->attr.proj.residual);
        CU_ASSERT_EQUAL_FATAL(lin->n_src, 3);
        CU_ASSERT_PTR_EQUAL(lin->src[ir_proj_residual(lin)], r);
        CU_ASSERT_PTR_EQUAL(user->src[0], lin);
        /* the activation after the add must not go into the linear: it would run before
         * the residual add */
        CU_ASSERT_FALSE(user->dead);
        CU_ASSERT_EQUAL(lin->attr.proj.act, OP_COUNT_);
        ir_graph_free(g);
    }
}

/* An activation, then the residual: both in the linear, in that order of application. */
static void test_elementwise_activation_then_residual(void)
{
    Node *x;
    Graph *g = graph_with_input(&x);
    Node *lin = linear(g, x, "up", D, true);
    Node *act = ir_unary(g, L, OP_GELU, lin);
    Node *add = ir_binary(g, L, OP_ADD, x, act);
    finish(g, add);
    run_pass(g, pass_fuse_elementwise);
    CU_ASSERT_TRUE(act->dead);
    CU_ASSERT_TRUE(add->dead);
    CU_ASSERT_EQUAL(lin->attr.proj.act, OP_GELU);
    CU_ASSERT_TRUE(lin->attr.proj.residual);
    CU_ASSERT_PTR_EQUAL(lin->src[ir_proj_residual(lin)], x);
    CU_ASSERT_EQUAL(live_count(g, OP_ADD), 0);
    ir_graph_free(g);
}

/* Not fused: the residual is computed after the linear (the fused node could not read it),
 * and a linear that has another reader. */
static void test_elementwise_residual_must_not_fuse(void)
{
    Node *x;
    Graph *g = graph_with_input(&x);
    Node *lin = linear(g, x, "a", D, false);
    Node *later = ir_unary(g, L, OP_RELU, x);
    Node *add = ir_binary(g, L, OP_ADD, lin, later);
    finish(g, add);
    run_pass(g, pass_fuse_elementwise);
    CU_ASSERT_FALSE(add->dead);
    CU_ASSERT_FALSE(lin->attr.proj.residual);
    ir_graph_free(g);

    g = graph_with_input(&x);
    lin = linear(g, x, "a", D, false);
    add = ir_binary(g, L, OP_ADD, x, lin);
    finish(g, ir_binary(g, L, OP_MUL, add, lin));
    run_pass(g, pass_fuse_elementwise);
    CU_ASSERT_FALSE(add->dead);
    CU_ASSERT_FALSE(lin->attr.proj.residual);
    CU_ASSERT_EQUAL(lin->n_src, 2);
    ir_graph_free(g);
}

enum { N_STATE = 4 };

/* A selective scan of x (C = D channels, N_STATE states) with its B and C from slices. */
static Node *scan(Graph *g, Node *x)
{
    Node *bc = linear(g, x, "x_proj", 2 * N_STATE, false);
    Node *b = ir_slice(g, L, bc, 0, N_STATE), *c = ir_slice(g, L, bc, N_STATE, N_STATE);
    Node *delta = ir_unary(g, L, OP_SOFTPLUS, x);
    return ir_selective_scan(g, L, x, delta,
                             ir_weight(g, L, "A_log", NULL, 2, (int64_t[]){D, N_STATE}), b, c,
                             vec(g, "D", D), "scan state");
}

/* y · silu(z), each read once, z computed before the scan: the scan takes z as its 7th
 * source and gates its own output. */
static void test_elementwise_scan_gate(void)
{
    for (int side = 0; side < 2; side++) {
        Node *x;
        Graph *g = graph_with_input(&x);
        Node *z = ir_unary(g, L, OP_RELU, x); /* not a linear: the SiLU would go into it */
        Node *y = scan(g, x);
        Node *gate = ir_unary(g, L, OP_SILU, z);
        Node *mul = side ? ir_binary(g, L, OP_MUL, gate, y) : ir_binary(g, L, OP_MUL, y, gate);
        Node *user = ir_unary(g, L, OP_RELU, mul);
        finish(g, user);
        run_pass(g, pass_fuse_elementwise);
        CU_ASSERT_TRUE(mul->dead);
        CU_ASSERT_TRUE(gate->dead);
        CU_ASSERT_EQUAL(y->attr.rec.act, OP_SILU);
        CU_ASSERT_EQUAL_FATAL(y->n_src, 7);
        CU_ASSERT_PTR_EQUAL(y->src[6], z);
        CU_ASSERT_PTR_EQUAL(user->src[0], y);
        ir_graph_free(g);
    }
}

/* Not fused: a gate with another reader, a gate of something other than SiLU, a z computed
 * after the scan. */
static void test_elementwise_scan_gate_must_not_fuse(void)
{
    for (int variant = 0; variant < 3; variant++) {
        Node *x;
        Graph *g = graph_with_input(&x);
        Node *z = variant == 2 ? NULL : ir_unary(g, L, OP_RELU, x);
        Node *y = scan(g, x);
        if (variant == 2) z = ir_unary(g, L, OP_RELU, x);
        Node *gate = ir_unary(g, L, variant == 1 ? OP_SIGMOID : OP_SILU, z);
        Node *mul = ir_binary(g, L, OP_MUL, y, gate);
        finish(g, variant == 0 ? ir_binary(g, L, OP_ADD, mul, gate) : mul);
        run_pass(g, pass_fuse_elementwise);
        CU_ASSERT_FALSE(mul->dead);
        CU_ASSERT_FALSE(gate->dead);
        CU_ASSERT_EQUAL(y->attr.rec.act, OP_COUNT_);
        CU_ASSERT_EQUAL(y->n_src, 6);
        ir_graph_free(g);
    }
}

/* --- dce ------------------------------------------------------------------------------- */

/* Only what the output depends on stays, the tokens always; a recurrent node nobody reads
 * goes too. */
static void test_dce_keeps_what_the_output_needs(void)
{
    Node *x;
    Graph *g = graph_with_input(&x);
    Node *used = ir_unary(g, L, OP_SILU, x);
    Node *unused = linear(g, x, "unused", D, false);
    Node *unused_w = unused->src[1];
    Node *unused_user = ir_unary(g, L, OP_RELU, unused);
    Node *unused_conv = conv(g, x, true);
    finish(g, used);
    Node *head = g->output->src[0];
    run_pass(g, pass_dce);
    CU_ASSERT_FALSE(used->dead);
    CU_ASSERT_FALSE(head->dead);
    CU_ASSERT_FALSE(x->dead);
    CU_ASSERT_FALSE(g->tokens->dead);
    CU_ASSERT_FALSE(g->output->dead);
    CU_ASSERT_TRUE(unused->dead);
    CU_ASSERT_TRUE(unused_w->dead);
    CU_ASSERT_TRUE(unused_user->dead);
    CU_ASSERT_TRUE(unused_conv->dead);
    CU_ASSERT_EQUAL(live_count(g, OP_CONV1D), 0);
    CU_ASSERT_EQUAL(live_count(g, OP_WEIGHT), 2); /* embedding, head */
    CU_ASSERT_EQUAL(used->n_uses, 1);
    ir_graph_free(g);
}

/* A graph where everything feeds the output loses nothing. */
static void test_dce_leaves_a_clean_graph(void)
{
    Node *x;
    Graph *g = graph_with_input(&x);
    Node *c = conv(g, x, true);
    finish(g, ir_binary(g, L, OP_MUL, c, ir_unary(g, L, OP_SILU, x)));
    int before = g->n_nodes;
    run_pass(g, pass_dce);
    int after = 0;
    for (int i = 0; i < g->n_nodes; i++) after += !g->nodes[i]->dead;
    CU_ASSERT_EQUAL(after, before);
    ir_graph_free(g);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    CU_pSuite p = CU_add_suite("fuse-projections", NULL, NULL);
    TEST_ADD(p, test_projections_fuse_same_input);
    TEST_ADD(p, test_projections_need_same_input_and_bias);
    TEST_ADD(p, test_projections_blocked_by_early_use);
    TEST_ADD(p, test_projections_skip_epilogues);
    TEST_ADD(p, test_projections_at_most_max_parts);
    TEST_ADD(p, test_projections_headwise);
    CU_pSuite c = CU_add_suite("fuse-conv", NULL, NULL);
    TEST_ADD(c, test_conv_takes_its_activation);
    TEST_ADD(c, test_conv_must_not_fuse);
    CU_pSuite e = CU_add_suite("fuse-elementwise", NULL, NULL);
    TEST_ADD(e, test_elementwise_activation_into_linear);
    TEST_ADD(e, test_elementwise_activation_blocked_by_second_reader);
    TEST_ADD(e, test_elementwise_residual_into_linear);
    TEST_ADD(e, test_elementwise_activation_then_residual);
    TEST_ADD(e, test_elementwise_residual_must_not_fuse);
    TEST_ADD(e, test_elementwise_scan_gate);
    TEST_ADD(e, test_elementwise_scan_gate_must_not_fuse);
    CU_pSuite d = CU_add_suite("dce", NULL, NULL);
    TEST_ADD(d, test_dce_keeps_what_the_output_needs);
    TEST_ADD(d, test_dce_leaves_a_clean_graph);
    return test_run_all();
}
