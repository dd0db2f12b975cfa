/* test_kernels.c - kernel sharing: nodes that differ in one attribute never share a kernel.
 *
 * The backend generates one kernel per distinct key (backend/codegen.c) and lets every node
 * with that key call it. For each attribute of each op that has one, the tests here build
 * a graph whose two nodes A and B differ only in that attribute, both reading the same
 * input, with the logits = concat(A, B). The graph is compiled, linked with the runtime and
 * run; its two halves must equal the outputs of graphs holding A alone and B alone, A and B
 * must differ (the attribute matters), and the LLVM module must hold two kernels of the op.
 * A key that forgot the attribute makes B run A's kernel and fails the first check. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "model_api.h"
#include "passes/passes.h"
#include "testutil.h"

enum { D = 16, VOCAB = 11, B = 2, T = 5 };

/* One experiment: `make` adds a node of the op under test reading `x` [B,T,W] (W = the
 * width of the embedding, wide enough for every op's inputs), in variant 0 or 1. */
typedef struct Variant {
    const char *what;
    const char *kernel;  /* the kernel name prefix in the LLVM module, e.g. "mxc_linear_" */
    int width;           /* embedding width */
    Node *(*make)(Graph *g, Node *x, int variant, int tag);
} Variant;

static const Loc here = {0};

static Node *weight(Graph *g, int tag, const char *what, int rank, int64_t d0, int64_t d1,
                    int64_t d2)
{
    int64_t dims[3] = {d0, d1, d2};
    return ir_weight(g, here, ir_strfmt(g, "n%d.%s", tag, what), NULL, rank, dims);
}

static Node *cols(Graph *g, Node *x, int64_t start, int64_t len)
{
    return ir_slice(g, here, x, start, len);
}

/* --- the variants ----------------------------------------------------------------------- */

static Node *linear_act(Graph *g, Node *x, int v, int tag)
{
    Node *n = ir_linear(g, here, x, weight(g, tag, "w", 2, D, D, 0), NULL);
    n->attr.proj.act = v ? OP_SILU : OP_COUNT_; /* as fuse-elementwise folds it */
    return n;
}

static Node *linear_act_kind(Graph *g, Node *x, int v, int tag)
{
    Node *n = ir_linear(g, here, x, weight(g, tag, "w", 2, D, D, 0), NULL);
    n->attr.proj.act = v ? OP_RELU2 : OP_SIGMOID;
    return n;
}

static Node *linear_bias(Graph *g, Node *x, int v, int tag)
{
    return ir_linear(g, here, x, weight(g, tag, "w", 2, D, D, 0),
                     v ? weight(g, tag, "b", 1, D, 0, 0) : NULL);
}

static Node *linear_residual(Graph *g, Node *x, int v, int tag)
{
    Node *n = ir_linear(g, here, x, weight(g, tag, "w", 2, D, D, 0), NULL);
    if (v) { /* as fuse-elementwise folds `x + linear(x)` */
        n->src[n->n_src++] = x;
        n->attr.proj.residual = true;
    }
    return n;
}

static Node *headwise_bias(Graph *g, Node *x, int v, int tag)
{
    return ir_headwise(g, here, x, weight(g, tag, "w", 3, 4, D / 4, D / 4),
                       v ? weight(g, tag, "b", 1, D, 0, 0) : NULL);
}

static Node *rmsnorm_eps(Graph *g, Node *x, int v, int tag)
{
    return ir_rmsnorm(g, here, x, weight(g, tag, "g", 1, D, 0, 0), NULL, v ? 0.5 : 1e-5);
}

static Node *layernorm_offset(Graph *g, Node *x, int v, int tag)
{
    return ir_layernorm(g, here, x, weight(g, tag, "g", 1, D, 0, 0), NULL, 1e-5, v, 1);
}

static Node *layernorm_groups(Graph *g, Node *x, int v, int tag)
{
    return ir_layernorm(g, here, x, weight(g, tag, "g", 1, D, 0, 0), NULL, 1e-5, false,
                        v ? 4 : 1);
}

static Node *conv_act(Graph *g, Node *x, int v, int tag)
{
    Node *n = ir_conv1d(g, here, x, weight(g, tag, "w", 3, D, 1, 4), NULL, "conv");
    n->attr.rec.act = v ? OP_SILU : OP_COUNT_; /* as fuse-conv folds it */
    return n;
}

/* x and delta [B,T,D], B and C [B,T,4], z [B,T,D] from columns of the input. */
static Node *scan_gate(Graph *g, Node *x, int v, int tag)
{
    Node *z = cols(g, x, 40, D);
    Node *n = ir_selective_scan(g, here, cols(g, x, 0, D), cols(g, x, D, D),
                                weight(g, tag, "A_log", 2, D, 4, 0), cols(g, x, 2 * D, 4),
                                cols(g, x, 2 * D + 4, 4), weight(g, tag, "D", 1, D, 0, 0), "scan");
    if (v) { /* as fuse-elementwise folds `y * silu(z)` */
        n->src[n->n_src++] = z;
        n->attr.rec.act = OP_SILU;
    }
    return n;
}

static Node *mlstm_heads(Graph *g, Node *x, int v, int tag)
{
    int heads = v ? 4 : 2;
    MlstmNumerics num = {.eps = 1e-6, .q_scale = 1.0, .k_scale = 0.25};
    Node *n = ir_mlstm_cell(g, here, cols(g, x, 0, D), cols(g, x, D, D), cols(g, x, 2 * D, D),
                            cols(g, x, 3 * D, heads), cols(g, x, 3 * D + 4, heads), heads, &num,
                            "mlstm");
    (void)tag;
    return n;
}

/* The mLSTM cell's numeric attributes (issue 14): each must reach the kernel key. */
static Node *mlstm_num(Graph *g, Node *x, const MlstmNumerics *num)
{
    return ir_mlstm_cell(g, here, cols(g, x, 0, D), cols(g, x, D, D), cols(g, x, 2 * D, D),
                         cols(g, x, 3 * D, 2), cols(g, x, 3 * D + 4, 2), 2, num, "mlstm");
}

static Node *mlstm_gate_cap(Graph *g, Node *x, int v, int tag)
{
    (void)tag;
    MlstmNumerics num = {.eps = 1e-6, .q_scale = 1.0, .k_scale = 0.25, .gate_cap = v ? 0.5 : 0};
    return mlstm_num(g, x, &num);
}

static Node *mlstm_scale(Graph *g, Node *x, int v, int tag)
{
    (void)tag;
    /* the placement alone gives the same outputs (only the state differs): change the product too */
    MlstmNumerics num = {.eps = 1e-6, .q_scale = v ? 0.5 : 1.0, .k_scale = v ? 0.25 : 0.5};
    return mlstm_num(g, x, &num);
}

static Node *mlstm_eps(Graph *g, Node *x, int v, int tag)
{
    (void)tag;
    MlstmNumerics num = {.eps = v ? 0.5 : 1e-6, .q_scale = 1.0, .k_scale = 0.25};
    return mlstm_num(g, x, &num);
}

static Node *softcap_cap(Graph *g, Node *x, int v, int tag)
{
    (void)tag;
    return ir_softcap(g, here, x, v ? 0.5 : 2.0);
}

static Node *slstm_heads(Graph *g, Node *x, int v, int tag)
{
    int heads = v ? 4 : 2;
    Node *gates[4];
    for (int i = 0; i < 4; i++) gates[i] = cols(g, x, i * D, D);
    return ir_slstm_cell(g, here, gates, weight(g, tag, "R", 3, heads, 4 * (D / heads), D / heads),
                         weight(g, tag, "bias", 1, 4 * D, 0, 0), heads, "slstm");
}

static const Variant variants[] = {
    {"linear act none/silu", "mxc_linear_", D, linear_act},
    {"linear act sigmoid/relu2", "mxc_linear_", D, linear_act_kind},
    {"linear bias", "mxc_linear_", D, linear_bias},
    {"linear residual", "mxc_linear_", D, linear_residual},
    {"headwise bias", "mxc_headwise_", D, headwise_bias},
    {"rmsnorm eps", "mxc_rmsnorm_", D, rmsnorm_eps},
    {"layernorm gain offset", "mxc_layernorm_", D, layernorm_offset},
    {"layernorm groups", "mxc_layernorm_", D, layernorm_groups},
    {"conv act", "mxc_causal_conv1d_", D, conv_act},
    {"scan gate", "mxc_selective_scan_", 40 + D, scan_gate},
    {"mlstm heads", "mxc_mlstm_cell_", 3 * D + 8, mlstm_heads},
    {"slstm heads", "mxc_slstm_cell_", 4 * D, slstm_heads},
    {"mlstm gate cap", "mxc_mlstm_cell_", 3 * D + 8, mlstm_gate_cap},
    {"mlstm q/k scale", "mxc_mlstm_cell_", 3 * D + 8, mlstm_scale},
    {"mlstm eps", "mxc_mlstm_cell_", 3 * D + 8, mlstm_eps},
    {"softcap cap", "mxc_softcap_", D, softcap_cap},
};

/* --- building and running a graph ---------------------------------------------------------- */

/* logits = concat(node(variant a), node(variant b)); a == b builds one variant twice. */
static Graph *build(const Variant *v, int a, int b)
{
    IrModel facts = {"kern", VOCAB, 2 * D, v->width, 1};
    Graph *g = ir_graph_new(&facts, 16);
    Node *tokens = ir_tokens(g, here);
    Node *x = ir_embed(g, here, tokens, weight(g, 0, "emb", 2, 2 * D, v->width, 0));
    Node *ya = v->make(g, x, a, 1), *yb = v->make(g, x, b, 2);
    ir_output(g, here, ir_concat(g, here, ya, yb, NULL));
    pass_plan_memory(g);
    CU_ASSERT_EQUAL(ir_verify(g, stderr), 0);
    return g;
}

/* Weights of every weight node, values in [-0.5, 0.5) from the name (so the same name gets
 * the same values in every graph), as a safetensors file. */
static bool write_weights(const Graph *g, const char *path)
{
    char header[8192];
    size_t hl = (size_t)snprintf(header, sizeof header, "{");
    int64_t offset = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *w = g->nodes[i];
        if (w->dead || w->op != OP_WEIGHT) continue;
        int64_t n = ir_type_elems(&w->type);
        hl += (size_t)snprintf(header + hl, sizeof header - hl, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[",
                               offset ? "," : "", w->attr.weight.name);
        for (int d = 0; d < w->type.rank; d++)
            hl += (size_t)snprintf(header + hl, sizeof header - hl, "%s%lld", d ? "," : "",
                                   (long long)w->type.dim[d]);
        hl += (size_t)snprintf(header + hl, sizeof header - hl, "],\"data_offsets\":[%lld,%lld]}",
                               (long long)offset, (long long)(offset + 4 * n));
        offset += 4 * n;
    }
    hl += (size_t)snprintf(header + hl, sizeof header - hl, "}");
    while (hl % 8) header[hl++] = ' ';
    if (hl >= sizeof header) return false;
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    uint64_t len = hl;
    fwrite(&len, 8, 1, f);
    fwrite(header, 1, hl, f);
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *w = g->nodes[i];
        if (w->dead || w->op != OP_WEIGHT) continue;
        uint64_t seed = 1469598103934665603u;
        for (const char *c = w->attr.weight.name; *c; c++) seed = (seed ^ (uint8_t)*c) * 1099511628211u;
        for (int64_t k = 0; k < ir_type_elems(&w->type); k++) {
            float x = (float)((double)(splitmix64(&seed) >> 11) / 9007199254740992.0 - 0.5);
            fwrite(&x, 4, 1, f);
        }
    }
    return fclose(f) == 0;
}

/* Kernels of the forward whose name starts with `prefix`, in the module's LLVM text. */
static int count_kernels(const char *ll_path, const char *prefix)
{
    FILE *f = fopen(ll_path, "r");
    if (!f) return -1;
    char line[4096], want[128];
    snprintf(want, sizeof want, "@%s", prefix);
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "define internal ", 16) == 0) {
            const char *at = strstr(line, want);
            if (at && strncmp(at + strlen(want), "step", 4) != 0) n++;
        }
    fclose(f);
    return n;
}

/* Compile, link, open and run graph g on fixed tokens: logits [B][T][2D] into `out`. Also
 * returns the number of the op's forward kernels. */
static bool run_graph(Graph *g, const Variant *v, const char *tag, float *out, int *kernels)
{
    char obj[512], so[512], ll[512], st[512];
    const char *dir = test_builddir();
    snprintf(obj, sizeof obj, "%s/kern_%s.o", dir, tag);
    snprintf(so, sizeof so, "%s/libkern_%s.so", dir, tag);
    snprintf(ll, sizeof ll, "%s/kern_%s.ll", dir, tag);
    snprintf(st, sizeof st, "%s/kern_%s.safetensors", dir, tag);
    BackendOptions o = {.prefix = "kern", .opt_level = 2, .emit_llvm = ll};
    const char *rt = getenv("MXC_RUNTIME");
    const char *flags = getenv("MXC_LINK_FLAGS");
    bool ok = backend_emit_object(g, &o, obj) &&
              backend_link(obj, rt ? rt : "libmxcrt.a", "kern", so, flags ? flags : "") &&
              write_weights(g, st);
    CU_ASSERT_FATAL(ok);
    *kernels = count_kernels(ll, v->kernel);
    Api api;
    CU_ASSERT_FATAL(api_load(&api, so, "kern"));
    void *m = NULL, *s = NULL;
    int32_t tokens[B * T];
    for (int i = 0; i < B * T; i++) tokens[i] = (int32_t)((i * 7 + 3) % VOCAB);
    ok = api.open(st, &m) == 0 && api.state_new(m, B, &s) == 0 &&
         api.forward(m, s, tokens, T, out) == 0;
    if (!ok) fprintf(stderr, "%s: %s\n", v->what, api.last_error());
    CU_ASSERT(ok);
    api.state_free(s);
    api.close(m);
    api_unload(&api);
    unlink(obj), unlink(so), unlink(ll), unlink(st);
    return ok;
}

static double max_diff_half(const float *x, const float *y, int half)
{
    double worst = 0;
    for (int r = 0; r < B * T; r++)
        for (int c = 0; c < D; c++) {
            double d = fabs((double)x[r * 2 * D + half * D + c] - y[r * 2 * D + half * D + c]);
            if (!(d <= worst)) worst = d; /* NaN counts as the worst */
        }
    return worst;
}

static void check_variant(const Variant *v)
{
    static float both[B * T * 2 * D], only_a[B * T * 2 * D], only_b[B * T * 2 * D];
    int k_both, k_a, k_b;
    Graph *g = build(v, 0, 1);
    bool ok = run_graph(g, v, "both", both, &k_both);
    ir_graph_free(g);
    g = build(v, 0, 0);
    ok = ok && run_graph(g, v, "a", only_a, &k_a);
    ir_graph_free(g);
    g = build(v, 1, 1);
    ok = ok && run_graph(g, v, "b", only_b, &k_b);
    ir_graph_free(g);
    if (!ok) return;
    double da = max_diff_half(both, only_a, 0), db = max_diff_half(both, only_b, 1);
    double ab = max_diff_half(only_a, only_b, 0);
    if (da > 1e-6 || db > 1e-6 || ab < 1e-3 || k_both != 2 || k_a != 1 || k_b != 1)
        fprintf(stderr, "%s: |both-A| %g, |both-B| %g, |A-B| %g, kernels %d (A alone %d, B alone %d)\n",
                v->what, da, db, ab, k_both, k_a, k_b);
    CU_ASSERT(da <= 1e-6);
    CU_ASSERT(db <= 1e-6);
    CU_ASSERT(ab >= 1e-3);  /* the attribute changes the numbers */
    CU_ASSERT_EQUAL(k_both, 2);
    CU_ASSERT_EQUAL(k_a, 1); /* two identical nodes still share one kernel */
    CU_ASSERT_EQUAL(k_b, 1);
}

#define VARIANT_TEST(i)                                                                   \
    static void test_variant_##i(void) { check_variant(&variants[i]); }
VARIANT_TEST(0) VARIANT_TEST(1) VARIANT_TEST(2) VARIANT_TEST(3) VARIANT_TEST(4) VARIANT_TEST(5)
VARIANT_TEST(6) VARIANT_TEST(7) VARIANT_TEST(8) VARIANT_TEST(9) VARIANT_TEST(10) VARIANT_TEST(11)
VARIANT_TEST(12) VARIANT_TEST(13) VARIANT_TEST(14) VARIANT_TEST(15)
_Static_assert(sizeof variants / sizeof variants[0] == 16, "one VARIANT_TEST per variant");

static void (*const variant_tests[])(void) = {
    test_variant_0, test_variant_1, test_variant_2, test_variant_3, test_variant_4,
    test_variant_5, test_variant_6, test_variant_7, test_variant_8, test_variant_9,
    test_variant_10, test_variant_11, test_variant_12, test_variant_13, test_variant_14,
    test_variant_15,
};

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite("kernel sharing", NULL, NULL);
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
        CU_add_test(s, variants[i].what, variant_tests[i]);
    return test_run_all();
}
