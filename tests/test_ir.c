/* test_ir.c - the IR graph, the pass pipeline and object emission, on hand-built specs
 * (independent of the frontend's parser). */
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "ir/lower.h"
#include "passes/passes.h"
#include "testutil.h"

static BlockKind mamba_blocks[8] = {BLOCK_MAMBA, BLOCK_MAMBA, BLOCK_MAMBA, BLOCK_MAMBA,
                                    BLOCK_MAMBA, BLOCK_MAMBA, BLOCK_MAMBA, BLOCK_MAMBA};

/* The mamba_tiny golden model's settings, with n_blocks layers. */
static ModelSpec mamba_spec(int n_blocks)
{
    ModelSpec m = {0};
    m.name = "tiny";
    m.family = FAMILY_MAMBA;
    m.vocab_size = 128;
    m.pad_vocab_size_multiple = 8;
    m.vocab_padded = 128;
    m.d_model = 64;
    m.n_blocks = n_blocks;
    m.blocks = mamba_blocks;
    m.norm = NORM_RMSNORM;
    m.norm_eps = 1e-5;
    m.tie_weights = true;
    m.mamba = (MambaSpec){.d_state = 16, .d_conv = 4, .expand = 2, .dt_rank = 4,
                          .conv_bias = true, .d_inner = 128};
    return m;
}

static Graph *lowered(const ModelSpec *m)
{
    DiagSink d;
    diag_init(&d, NULL);
    Graph *g = ir_lower_model(m, 16, &d);
    diag_free(&d);
    return g;
}

static const Node *find_weight(const Graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->op == OP_WEIGHT && strcmp(g->nodes[i]->attr.weight.name, name) == 0)
            return g->nodes[i];
    return NULL;
}

static void test_lower_mamba_names_and_shapes(void)
{
    ModelSpec m = mamba_spec(2);
    Graph *g = lowered(&m);
    CU_ASSERT_FATAL(g != NULL);
    CU_ASSERT_EQUAL(ir_verify(g, stderr), 0);
    const Node *w = find_weight(g, "backbone.layers.1.mixer.x_proj.weight");
    CU_ASSERT_FATAL(w != NULL);
    CU_ASSERT_EQUAL(w->type.rank, 2);
    CU_ASSERT_EQUAL(w->type.dim[0], 4 + 2 * 16);
    CU_ASSERT_EQUAL(w->type.dim[1], 128);
    const Node *conv = find_weight(g, "backbone.layers.0.mixer.conv1d.weight");
    CU_ASSERT_FATAL(conv != NULL);
    CU_ASSERT_EQUAL(conv->type.rank, 3);
    CU_ASSERT_EQUAL(conv->type.dim[2], 4);
    /* Tied head: one node for both names, and no separate lm_head node. */
    const Node *emb = find_weight(g, "backbone.embedding.weight");
    CU_ASSERT_FATAL(emb != NULL);
    CU_ASSERT_STRING_EQUAL(emb->attr.weight.alt_name, "backbone.embeddings.weight\nlm_head.weight");
    CU_ASSERT_PTR_NULL(find_weight(g, "lm_head.weight"));
    int weights = 0;
    for (int i = 0; i < g->n_nodes; i++) weights += g->nodes[i]->op == OP_WEIGHT;
    CU_ASSERT_EQUAL(weights, 1 + 2 * 10 + 1); /* embedding, 10 per layer, norm_f */
    /* Two recurrent states per layer: conv window (K-1)*d_inner and h d_inner*d_state. */
    CU_ASSERT_EQUAL(g->n_states, 4);
    CU_ASSERT_EQUAL(g->state_floats, 2 * (3 * 128 + 128 * 16));
    ir_graph_free(g);
}

static void test_untied_head_and_bias_flags(void)
{
    ModelSpec m = mamba_spec(1);
    m.tie_weights = false;
    m.mamba.bias = true;
    m.mamba.conv_bias = false;
    m.norm = NORM_LAYERNORM;
    Graph *g = lowered(&m);
    CU_ASSERT_FATAL(g != NULL);
    CU_ASSERT_PTR_NOT_NULL(find_weight(g, "lm_head.weight"));
    CU_ASSERT_PTR_NOT_NULL(find_weight(g, "backbone.layers.0.mixer.in_proj.bias"));
    CU_ASSERT_PTR_NOT_NULL(find_weight(g, "backbone.layers.0.mixer.out_proj.bias"));
    CU_ASSERT_PTR_NULL(find_weight(g, "backbone.layers.0.mixer.conv1d.bias"));
    CU_ASSERT_PTR_NOT_NULL(find_weight(g, "backbone.norm_f.bias"));
    CU_ASSERT_EQUAL(ir_verify(g, stderr), 0);
    ir_graph_free(g);
}

/* xLSTM "msm" with the golden sizes: names, shapes and state of both cell kinds. */
static ModelSpec xlstm_spec(BlockKind *blocks, int n, bool cuda)
{
    ModelSpec m = mamba_spec(n);
    m.family = FAMILY_XLSTM;
    m.blocks = blocks;
    m.norm = NORM_LAYERNORM;
    m.tie_weights = false;
    m.add_post_blocks_norm = true;
    m.mlstm = (MlstmSpec){.num_heads = 4, .proj_factor = 2, .conv1d_kernel_size = 4,
                          .qkv_proj_blocksize = 4, .inner_dim = 128, .head_dim = 32};
    m.slstm = (SlstmSpec){.num_heads = 4, .conv1d_kernel_size = 4, .feedforward = true,
                          .head_dim = 16, .layout = cuda ? SLSTM_LAYOUT_CUDA : SLSTM_LAYOUT_VANILLA};
    m.slstm.ffn = (FfnSpec){.proj_factor = 1.3, .act_fn = ACT_GELU, .inner_dim = 128};
    return m;
}

static void test_lower_xlstm_names_and_shapes(void)
{
    BlockKind blocks[3] = {BLOCK_MLSTM, BLOCK_SLSTM, BLOCK_MLSTM};
    ModelSpec m = xlstm_spec(blocks, 3, false);
    Graph *g = lowered(&m);
    CU_ASSERT_FATAL(g != NULL);
    CU_ASSERT_EQUAL(ir_verify(g, stderr), 0);
    const Node *q = find_weight(g, "xlstm_block_stack.blocks.0.xlstm.q_proj.weight");
    CU_ASSERT_FATAL(q != NULL);
    CU_ASSERT(q->type.rank == 3 && q->type.dim[0] == 32 && q->type.dim[1] == 4);
    const Node *ig = find_weight(g, "xlstm_block_stack.blocks.2.xlstm.mlstm_cell.igate.weight");
    CU_ASSERT_FATAL(ig != NULL);
    CU_ASSERT(ig->type.dim[0] == 4 && ig->type.dim[1] == 3 * 128);
    const Node *r = find_weight(g, "xlstm_block_stack.blocks.1.xlstm.slstm_cell._recurrent_kernel_");
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT(r->type.dim[0] == 4 && r->type.dim[1] == 64 && r->type.dim[2] == 16);
    CU_ASSERT_PTR_NOT_NULL(find_weight(g, "xlstm_block_stack.blocks.1.ffn.proj_up.weight"));
    CU_ASSERT_PTR_NOT_NULL(find_weight(g, "xlstm_block_stack.post_blocks_norm.weight"));
    CU_ASSERT_PTR_NOT_NULL(find_weight(g, "lm_head.weight"));
    CU_ASSERT_PTR_NOT_NULL(find_weight(g, "xlstm_block_stack.blocks.1.xlstm.conv1d.conv.bias"));
    /* mLSTM: conv window 3*128 + cell 4*(32*32) + 128 + 4; sLSTM: conv window 3*64 + 4*64 */
    CU_ASSERT_EQUAL(g->state_floats, 2 * (3 * 128 + 4 * 32 * 32 + 128 + 4) + 3 * 64 + 4 * 64);
    ir_graph_free(g);

    m = xlstm_spec(blocks, 3, true);
    g = lowered(&m);
    r = find_weight(g, "xlstm_block_stack.blocks.1.xlstm.slstm_cell._recurrent_kernel_");
    CU_ASSERT_FATAL(r != NULL);
    /* The kernels read the vanilla layout; the checkpoint's is rearranged at load time. */
    CU_ASSERT(r->type.dim[1] == 64 && r->type.dim[2] == 16);
    CU_ASSERT_EQUAL(r->attr.weight.layout, WEIGHT_SWAP_MIDDLE);
    CU_ASSERT(r->attr.weight.stored_rank == 3 && r->attr.weight.stored_dim[1] == 16 &&
              r->attr.weight.stored_dim[2] == 64);
    ir_graph_free(g);
}

/* Scratch blocks of values alive at the same time must not overlap. */
static void test_plan_memory_reuses_without_overlap(void)
{
    ModelSpec m = mamba_spec(6);
    Graph *g = lowered(&m);
    CU_ASSERT_FATAL(g && passes_run(g, NULL));
    int n = g->n_nodes;
    int *first = calloc((size_t)n, sizeof *first), *last = calloc((size_t)n, sizeof *last);
    int64_t naive = 0;
    for (int i = 0; i < n; i++) {
        first[i] = last[i] = i;
        if (g->nodes[i]->store.kind == STORE_SCRATCH && g->nodes[i]->op != OP_SLICE)
            naive += ir_type_cols(&g->nodes[i]->type);
    }
    for (int i = 0; i < n; i++) {
        const Node *u = g->nodes[i];
        if (u->dead) continue;
        for (int s = 0; s < u->n_src; s++) {
            const Node *r = u->src[s];
            while (r->op == OP_SLICE) r = r->src[0];
            if (last[r->id] < i) last[r->id] = i;
        }
    }
    int overlaps = 0;
    for (int i = 0; i < n; i++) {
        const Node *a = g->nodes[i];
        if (a->dead || a->store.kind != STORE_SCRATCH || a->op == OP_SLICE) continue;
        for (int j = i + 1; j < n; j++) {
            const Node *b = g->nodes[j];
            if (b->dead || b->store.kind != STORE_SCRATCH || b->op == OP_SLICE) continue;
            bool live_together = first[j] <= last[i];
            int64_t a0 = a->store.offset, a1 = a0 + ir_type_cols(&a->type);
            int64_t b0 = b->store.offset, b1 = b0 + ir_type_cols(&b->type);
            if (live_together && a0 < b1 && b0 < a1) overlaps++;
            CU_ASSERT(b1 <= g->scratch_per_row);
        }
    }
    CU_ASSERT_EQUAL(overlaps, 0);
    /* Six layers fit in far less than the sum of all their values. */
    CU_ASSERT(g->scratch_per_row * 4 < naive);
    /* The head writes straight into the caller's logits. */
    CU_ASSERT_EQUAL(g->output->src[0]->store.kind, STORE_LOGITS);
    /* Weight slots are dense. */
    int slots = 0;
    for (int i = 0; i < n; i++)
        if (!g->nodes[i]->dead && g->nodes[i]->op == OP_WEIGHT) {
            CU_ASSERT(g->nodes[i]->attr.weight.slot >= 0 &&
                      g->nodes[i]->attr.weight.slot < g->n_weight_slots);
            slots++;
        }
    CU_ASSERT_EQUAL(slots, g->n_weight_slots);
    free(first);
    free(last);
    ir_graph_free(g);
}

static void test_dce_removes_unused_nodes(void)
{
    ModelSpec m = mamba_spec(1);
    Graph *g = lowered(&m);
    CU_ASSERT_FATAL(g != NULL);
    /* A value nobody reads, built on a live one. */
    Node *live = g->output->src[0];
    Node *extra = ir_unary(g, m.loc, OP_SILU, live);
    PassOptions keep = {.disabled = {"dce"}, .n_disabled = 1};
    CU_ASSERT_TRUE(passes_run(g, &keep));
    CU_ASSERT_FALSE(extra->dead);
    ir_graph_free(g);

    g = lowered(&m);
    extra = ir_unary(g, m.loc, OP_SILU, g->output->src[0]);
    CU_ASSERT_TRUE(passes_run(g, NULL));
    CU_ASSERT_TRUE(extra->dead);
    CU_ASSERT_FALSE(g->output->src[0]->dead);
    CU_ASSERT_EQUAL(ir_verify(g, stderr), 0);
    ir_graph_free(g);
}

static void test_pass_options_are_checked(void)
{
    ModelSpec m = mamba_spec(1);
    Graph *g = lowered(&m);
    PassOptions unknown = {.disabled = {"no-such-pass"}, .n_disabled = 1};
    CU_ASSERT_FALSE(passes_run(g, &unknown));
    PassOptions required = {.disabled = {"plan-memory"}, .n_disabled = 1};
    CU_ASSERT_FALSE(passes_run(g, &required));
    PassOptions bad_dump = {.dump_after = "nope"};
    CU_ASSERT_FALSE(passes_run(g, &bad_dump));
    ir_graph_free(g);
}

static void test_verify_catches_broken_graphs(void)
{
    ModelSpec m = mamba_spec(1);
    Graph *g = lowered(&m);
    FILE *sink = fopen("/dev/null", "w");
    /* A stale type. */
    Node *n = g->output->src[0];
    n->type.dim[0] += 1;
    CU_ASSERT(ir_verify(g, sink) > 0);
    n->type.dim[0] -= 1;
    CU_ASSERT_EQUAL(ir_verify(g, sink), 0);
    /* A use of a dead node. */
    n->dead = true;
    CU_ASSERT(ir_verify(g, sink) > 0);
    n->dead = false;
    /* A source that comes later than its user. */
    Node *first_real = NULL;
    for (int i = 0; i < g->n_nodes && !first_real; i++)
        if (g->nodes[i]->op == OP_RMSNORM) first_real = g->nodes[i];
    Node *saved = first_real->src[0];
    first_real->src[0] = g->output->src[0];
    CU_ASSERT(ir_verify(g, sink) > 0);
    first_real->src[0] = saved;
    CU_ASSERT_EQUAL(ir_verify(g, sink), 0);
    fclose(sink);
    ir_graph_free(g);
}

static void test_print_dump(void)
{
    ModelSpec m = mamba_spec(1);
    Graph *g = lowered(&m);
    CU_ASSERT_FATAL(g && passes_run(g, NULL));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ir_print(g, f);
    fclose(f);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "graph tiny {chunk=16"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "selective_scan"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "weight \"backbone.embedding.weight\" | \"backbone.embeddings.weight\" | \"lm_head.weight\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, ": f32[B,T,128]"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "@logits"));
    free(buf);
    ir_graph_free(g);
}

static void test_backend_emits_object(void)
{
    ModelSpec m = mamba_spec(2);
    Graph *g = lowered(&m);
    CU_ASSERT_FATAL(g && passes_run(g, NULL));
    char path[] = "/tmp/mxc-test-obj-XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    BackendOptions o = {.prefix = "tiny", .opt_level = 2};
    CU_ASSERT_TRUE(backend_emit_object(g, &o, path));
    FILE *f = fopen(path, "rb");
    unsigned char magic[4] = {0};
    CU_ASSERT_EQUAL(fread(magic, 1, 4, f), 4);
    fclose(f);
    CU_ASSERT(magic[0] == 0x7f && magic[1] == 'E' && magic[2] == 'L' && magic[3] == 'F');
    unlink(path);
    CU_ASSERT_TRUE(backend_prefix_ok("tiny_2"));
    CU_ASSERT_FALSE(backend_prefix_ok("2tiny"));
    CU_ASSERT_FALSE(backend_prefix_ok("a-b"));
    ir_graph_free(g);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    CU_pSuite s = CU_add_suite("ir", NULL, NULL);
    TEST_ADD(s, test_lower_mamba_names_and_shapes);
    TEST_ADD(s, test_untied_head_and_bias_flags);
    TEST_ADD(s, test_lower_xlstm_names_and_shapes);
    TEST_ADD(s, test_plan_memory_reuses_without_overlap);
    TEST_ADD(s, test_dce_removes_unused_nodes);
    TEST_ADD(s, test_pass_options_are_checked);
    TEST_ADD(s, test_verify_catches_broken_graphs);
    TEST_ADD(s, test_print_dump);
    TEST_ADD(s, test_backend_emits_object);
    return test_run_all();
}
