/* test_frontend.c - CUnit tests of the spec frontend: the examples (checked against the
 * golden configs and tensor shapes), defaults, the three block-stack forms, the spec_print
 * round trip, every class of diagnostic with its exact `file:line:col:` text, the bad-spec
 * golden files, and a mutation smoke test for robustness. */
#include <CUnit/Basic.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/spec.h"
#include "tests/testutil.h"

/* ---- helpers ------------------------------------------------------------------------- */

static char *read_file(const char *path, size_t *len_out)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len - 1, fp)) > 0) {
        len += got;
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(fp);
    if (buf)
        buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

static void example_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/../examples/%s", test_srcdir(), name);
}

/* Load an example; the test fails (and NULL is returned) if it does not check cleanly. */
static SpecFile *load_example(const char *name)
{
    char path[1024];
    example_path(path, sizeof path, name);
    DiagSink d;
    diag_init(&d, stderr);
    SpecFile *f = spec_load_file(path, &d);
    CU_ASSERT_PTR_NOT_NULL(f);
    CU_ASSERT_EQUAL(d.n_errors, 0);
    CU_ASSERT_EQUAL(d.n_warnings, 0);
    diag_free(&d);
    return f;
}

/* Load text that must check cleanly. */
static SpecFile *load_ok(const char *text)
{
    DiagSink d;
    diag_init(&d, NULL);
    SpecFile *f = spec_load_string("t.mx", text, &d);
    CU_ASSERT_PTR_NOT_NULL(f);
    CU_ASSERT_EQUAL(d.n_errors, 0);
    if (!f || d.n_errors)
        fprintf(stderr, "\nunexpected diagnostics:\n%s", d.collected ? d.collected : "");
    diag_free(&d);
    return f;
}

/* Load text that must fail; returns everything the sink printed (static buffer). */
static char diag_text[1 << 16];
static int diag_errors;
static const char *load_bad(const char *text)
{
    DiagSink d;
    diag_init(&d, NULL);
    SpecFile *f = spec_load_string("t.mx", text, &d);
    CU_ASSERT_PTR_NULL(f);
    CU_ASSERT(d.n_errors > 0);
    spec_free(f);
    snprintf(diag_text, sizeof diag_text, "%s", d.collected ? d.collected : "");
    diag_errors = d.n_errors;
    diag_free(&d);
    return diag_text;
}

static void check_has(const char *hay, const char *needle, int line)
{
    bool ok = strstr(hay, needle) != NULL;
    CU_assertImplementation(ok, (unsigned)line, "diagnostics contain the expected text", __FILE__,
                            "", CU_FALSE);
    if (!ok)
        fprintf(stderr, "\nline %d: expected to find:\n%s\nin:\n%s\n", line, needle, hay);
}
#define ASSERT_HAS(hay, needle) check_has(hay, needle, __LINE__)

static void check_starts(const char *hay, const char *prefix, int line)
{
    bool ok = strncmp(hay, prefix, strlen(prefix)) == 0;
    CU_assertImplementation(ok, (unsigned)line, "diagnostics start with the expected text",
                            __FILE__, "", CU_FALSE);
    if (!ok)
        fprintf(stderr, "\nline %d: expected to start with:\n%s\ngot:\n%s\n", line, prefix, hay);
}
#define ASSERT_STARTS(hay, prefix) check_starts(hay, prefix, __LINE__)

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* Every field but the locations. */
static void assert_same_spec(const ModelSpec *a, const ModelSpec *b)
{
    CU_ASSERT_STRING_EQUAL(a->name, b->name);
    CU_ASSERT_EQUAL(a->family, b->family);
    CU_ASSERT_EQUAL(a->vocab_size, b->vocab_size);
    CU_ASSERT_EQUAL(a->pad_vocab_size_multiple, b->pad_vocab_size_multiple);
    CU_ASSERT_EQUAL(a->vocab_padded, b->vocab_padded);
    CU_ASSERT_EQUAL(a->d_model, b->d_model);
    CU_ASSERT_EQUAL_FATAL(a->n_blocks, b->n_blocks);
    for (int i = 0; i < a->n_blocks; i++)
        CU_ASSERT_EQUAL(a->blocks[i], b->blocks[i]);
    CU_ASSERT_EQUAL(a->norm, b->norm);
    CU_ASSERT(a->norm_eps == b->norm_eps);
    CU_ASSERT_EQUAL(a->tie_weights, b->tie_weights);
    CU_ASSERT_EQUAL(a->context_length, b->context_length);
    CU_ASSERT_EQUAL(a->add_post_blocks_norm, b->add_post_blocks_norm);
    CU_ASSERT_EQUAL(a->bias, b->bias);

    const MambaSpec *ma = &a->mamba, *mb = &b->mamba;
    CU_ASSERT_EQUAL(ma->d_state, mb->d_state);
    CU_ASSERT_EQUAL(ma->d_conv, mb->d_conv);
    CU_ASSERT(ma->expand == mb->expand);
    CU_ASSERT_EQUAL(ma->dt_rank, mb->dt_rank);
    CU_ASSERT_EQUAL(ma->conv_bias, mb->conv_bias);
    CU_ASSERT_EQUAL(ma->bias, mb->bias);
    CU_ASSERT_EQUAL(ma->d_inner, mb->d_inner);
    CU_ASSERT_EQUAL(ma->d_intermediate, mb->d_intermediate);
    CU_ASSERT_EQUAL(ma->mlp_hidden, mb->mlp_hidden);

    const MlstmSpec *la = &a->mlstm, *lb = &b->mlstm;
    CU_ASSERT_EQUAL(la->num_heads, lb->num_heads);
    CU_ASSERT(la->proj_factor == lb->proj_factor);
    CU_ASSERT_EQUAL(la->conv1d_kernel_size, lb->conv1d_kernel_size);
    CU_ASSERT_EQUAL(la->qkv_proj_blocksize, lb->qkv_proj_blocksize);
    CU_ASSERT_EQUAL(la->round_proj_up_dim_up, lb->round_proj_up_dim_up);
    CU_ASSERT_EQUAL(la->round_proj_up_to_multiple_of, lb->round_proj_up_to_multiple_of);
    CU_ASSERT_EQUAL(la->inner_dim, lb->inner_dim);
    CU_ASSERT_EQUAL(la->head_dim, lb->head_dim);

    const SlstmSpec *sa = &a->slstm, *sb = &b->slstm;
    CU_ASSERT_EQUAL(sa->num_heads, sb->num_heads);
    CU_ASSERT_EQUAL(sa->conv1d_kernel_size, sb->conv1d_kernel_size);
    CU_ASSERT_EQUAL(sa->layout, sb->layout);
    CU_ASSERT_EQUAL(sa->feedforward, sb->feedforward);
    CU_ASSERT_EQUAL(sa->head_dim, sb->head_dim);
    CU_ASSERT(sa->ffn.proj_factor == sb->ffn.proj_factor);
    CU_ASSERT_EQUAL(sa->ffn.act_fn, sb->ffn.act_fn);
    CU_ASSERT_EQUAL(sa->ffn.bias, sb->ffn.bias);
    CU_ASSERT_EQUAL(sa->ffn.round_proj_up_dim_up, sb->ffn.round_proj_up_dim_up);
    CU_ASSERT_EQUAL(sa->ffn.round_proj_up_to_multiple_of, sb->ffn.round_proj_up_to_multiple_of);
    CU_ASSERT_EQUAL(sa->ffn.inner_dim, sb->ffn.inner_dim);
}

/* spec_print each model, load the text again, compare. */
static void assert_round_trip(const SpecFile *f)
{
    for (int i = 0; i < f->n_models; i++) {
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(mem);
        spec_print(mem, &f->models[i]);
        fclose(mem);
        DiagSink d;
        diag_init(&d, NULL);
        SpecFile *g = spec_load_string("printed.mx", text, &d);
        CU_ASSERT_PTR_NOT_NULL(g);
        CU_ASSERT_EQUAL(d.n_errors + d.n_warnings, 0);
        if (!g || d.n_errors + d.n_warnings)
            fprintf(stderr, "\nprinted:\n%s\ndiagnostics:\n%s", text, d.collected);
        if (g && g->n_models == 1)
            assert_same_spec(&f->models[i], &g->models[0]);
        spec_free(g);
        diag_free(&d);
        free(text);
    }
}

/* ---- golden configs and tensor shapes --------------------------------------------------- */

/* Shape of `tensor` in tests/golden/CASE/model.safetensors (8-byte little-endian header
 * length, then a JSON header). Returns the rank, or -1. */
static int golden_shape(const char *cas, const char *tensor, long dims[4])
{
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/%s/model.safetensors", test_srcdir(), cas);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return -1;
    unsigned char len8[8];
    uint64_t len = 0;
    if (fread(len8, 1, 8, fp) == 8)
        for (int i = 7; i >= 0; i--)
            len = len << 8 | len8[i];
    char *hdr = len > 0 && len < (1u << 24) ? malloc(len + 1) : NULL;
    int rank = -1;
    if (hdr && fread(hdr, 1, len, fp) == len) {
        hdr[len] = '\0';
        char key[256];
        snprintf(key, sizeof key, "\"%s\":", tensor);
        const char *p = strstr(hdr, key);
        const char *end = p ? strchr(p, '}') : NULL;
        p = p ? strstr(p, "\"shape\":[") : NULL;
        if (p && p < end) {
            p += strlen("\"shape\":[");
            rank = 0;
            while (*p != ']' && rank < 4) {
                char *next;
                dims[rank++] = strtol(p, &next, 10);
                p = *next == ',' ? next + 1 : next;
            }
        }
    }
    free(hdr);
    fclose(fp);
    return rank;
}

static void check_shape(const char *cas, const char *tensor, int rank, long d0, long d1, long d2,
                        int line)
{
    long dims[4] = {0}, want[3] = {d0, d1, d2};
    int r = golden_shape(cas, tensor, dims);
    bool ok = r == rank;
    for (int i = 0; ok && i < rank; i++)
        ok = dims[i] == want[i];
    CU_assertImplementation(ok, (unsigned)line, "derived size matches the golden tensor shape",
                            __FILE__, "", CU_FALSE);
    if (!ok)
        fprintf(stderr, "\nline %d: %s/%s: rank %d [%ld %ld %ld], want rank %d [%ld %ld %ld]\n",
                line, cas, tensor, r, dims[0], dims[1], dims[2], rank, d0, d1, d2);
}
#define SHAPE1(c, t, a) check_shape(c, t, 1, a, 0, 0, __LINE__)
#define SHAPE2(c, t, a, b) check_shape(c, t, 2, a, b, 0, __LINE__)
#define SHAPE3(c, t, a, b, d) check_shape(c, t, 3, a, b, d, __LINE__)

/* A flat integer of tests/golden/CASE/config.json, or -1. */
static long golden_config_int(const char *cas, const char *key)
{
    char path[1024], pat[128];
    snprintf(path, sizeof path, "%s/golden/%s/config.json", test_srcdir(), cas);
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    char *text = read_file(path, NULL);
    const char *p = text ? strstr(text, pat) : NULL;
    long v = p ? strtol(p + strlen(pat), NULL, 10) : -1;
    free(text);
    return v;
}

/* ---- examples ------------------------------------------------------------------------ */

static void test_example_mamba_tiny(void)
{
    SpecFile *f = load_example("mamba_tiny.mx");
    const ModelSpec *m = spec_find_model(f, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_STRING_EQUAL(m->name, "mamba_tiny");
    CU_ASSERT_EQUAL(m->family, FAMILY_MAMBA);
    CU_ASSERT_EQUAL(m->vocab_size, 128);
    CU_ASSERT_EQUAL(m->pad_vocab_size_multiple, 8);
    CU_ASSERT_EQUAL(m->vocab_padded, 128);
    CU_ASSERT_EQUAL(m->d_model, 64);
    CU_ASSERT_EQUAL_FATAL(m->n_blocks, 2);
    CU_ASSERT_EQUAL(m->blocks[0], BLOCK_MAMBA);
    CU_ASSERT_EQUAL(m->blocks[1], BLOCK_MAMBA);
    CU_ASSERT_EQUAL(m->norm, NORM_RMSNORM);
    CU_ASSERT_DOUBLE_EQUAL(m->norm_eps, 1e-5, 1e-12);
    CU_ASSERT_TRUE(m->tie_weights);
    CU_ASSERT_EQUAL(m->context_length, -1);
    CU_ASSERT_TRUE(m->add_post_blocks_norm);
    CU_ASSERT_FALSE(m->bias);
    CU_ASSERT_EQUAL(m->mamba.d_state, 16);
    CU_ASSERT_EQUAL(m->mamba.d_conv, 4);
    CU_ASSERT_DOUBLE_EQUAL(m->mamba.expand, 2.0, 0);
    CU_ASSERT_EQUAL(m->mamba.dt_rank, 4);
    CU_ASSERT_TRUE(m->mamba.conv_bias);
    CU_ASSERT_FALSE(m->mamba.bias);
    CU_ASSERT_EQUAL(m->mamba.d_inner, 128);
    CU_ASSERT_EQUAL(m->mamba.d_intermediate, 0);
    CU_ASSERT_EQUAL(m->mamba.mlp_hidden, 0);
    CU_ASSERT_EQUAL(m->mamba.loc.line, 16); /* the `mamba {` section */

    /* Against the golden config and the official tensor shapes. */
    const char *c = "mamba_tiny";
    const MambaSpec *mb = &m->mamba;
    CU_ASSERT_EQUAL(golden_config_int(c, "d_inner"), mb->d_inner);
    CU_ASSERT_EQUAL(golden_config_int(c, "dt_rank"), mb->dt_rank);
    CU_ASSERT_EQUAL(golden_config_int(c, "vocab_size_padded"), m->vocab_padded);
    SHAPE2(c, "backbone.embedding.weight", m->vocab_padded, m->d_model);
    SHAPE2(c, "backbone.layers.0.mixer.in_proj.weight", 2 * mb->d_inner, m->d_model);
    SHAPE3(c, "backbone.layers.0.mixer.conv1d.weight", mb->d_inner, 1, mb->d_conv);
    SHAPE2(c, "backbone.layers.1.mixer.x_proj.weight", mb->dt_rank + 2 * mb->d_state, mb->d_inner);
    SHAPE2(c, "backbone.layers.1.mixer.dt_proj.weight", mb->d_inner, mb->dt_rank);
    SHAPE2(c, "backbone.layers.1.mixer.A_log", mb->d_inner, mb->d_state);
    SHAPE2(c, "backbone.layers.1.mixer.out_proj.weight", m->d_model, mb->d_inner);
    SHAPE2(c, "lm_head.weight", m->vocab_padded, m->d_model);
    assert_round_trip(f);
    spec_free(f);
}

static void check_mlstm_shapes(const char *c, const ModelSpec *m, int block)
{
    const MlstmSpec *ml = &m->mlstm;
    int I = ml->inner_dim, E = m->d_model;
    char t[256];
#define T(suffix) (snprintf(t, sizeof t, "xlstm_block_stack.blocks.%d.xlstm.%s", block, suffix), t)
    SHAPE2(c, T("proj_up.weight"), 2 * I, E);
    SHAPE1(c, T("learnable_skip"), I);
    SHAPE3(c, T("q_proj.weight"), I / ml->qkv_proj_blocksize, ml->qkv_proj_blocksize,
           ml->qkv_proj_blocksize);
    SHAPE3(c, T("conv1d.conv.weight"), I, 1, ml->conv1d_kernel_size);
    SHAPE2(c, T("mlstm_cell.igate.weight"), ml->num_heads, 3 * I);
    SHAPE1(c, T("mlstm_cell.outnorm.weight"), ml->num_heads * ml->head_dim);
    SHAPE2(c, T("proj_down.weight"), E, I);
#undef T
}

static void check_slstm_shapes(const char *c, const ModelSpec *m, int block)
{
    const SlstmSpec *sl = &m->slstm;
    int E = m->d_model, NH = sl->num_heads, DH = sl->head_dim, F = sl->ffn.inner_dim;
    char t[256];
#define T(suffix) (snprintf(t, sizeof t, "xlstm_block_stack.blocks.%d.%s", block, suffix), t)
    SHAPE3(c, T("xlstm.conv1d.conv.weight"), E, 1, sl->conv1d_kernel_size);
    SHAPE3(c, T("xlstm.fgate.weight"), NH, DH, DH);
    SHAPE3(c, T("xlstm.slstm_cell._recurrent_kernel_"), NH, 4 * DH, DH); /* vanilla layout */
    SHAPE1(c, T("xlstm.slstm_cell._bias_"), 4 * E);
    SHAPE2(c, T("ffn.proj_up.weight"), 2 * F, E);
    SHAPE2(c, T("ffn.proj_down.weight"), E, F);
#undef T
}

static void test_example_xlstm_mixed(void)
{
    SpecFile *f = load_example("xlstm_mixed.mx");
    const ModelSpec *m = spec_find_model(f, "xlstm_mixed");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->family, FAMILY_XLSTM);
    CU_ASSERT_EQUAL(m->vocab_size, 128);
    CU_ASSERT_EQUAL(m->pad_vocab_size_multiple, 1);
    CU_ASSERT_EQUAL(m->vocab_padded, 128);
    CU_ASSERT_EQUAL(m->d_model, 64);
    CU_ASSERT_EQUAL_FATAL(m->n_blocks, 4);
    CU_ASSERT_EQUAL(m->blocks[0], BLOCK_MLSTM);
    CU_ASSERT_EQUAL(m->blocks[1], BLOCK_SLSTM);
    CU_ASSERT_EQUAL(m->blocks[2], BLOCK_MLSTM);
    CU_ASSERT_EQUAL(m->blocks[3], BLOCK_MLSTM);
    CU_ASSERT_EQUAL(m->norm, NORM_LAYERNORM);
    CU_ASSERT_DOUBLE_EQUAL(m->norm_eps, 1e-5, 1e-12);
    CU_ASSERT_FALSE(m->tie_weights);
    CU_ASSERT_EQUAL(m->context_length, 32);
    CU_ASSERT_TRUE(m->add_post_blocks_norm);
    CU_ASSERT_FALSE(m->bias);
    CU_ASSERT_EQUAL(m->mlstm.num_heads, 4);
    CU_ASSERT_DOUBLE_EQUAL(m->mlstm.proj_factor, 2.0, 0);
    CU_ASSERT_EQUAL(m->mlstm.conv1d_kernel_size, 4);
    CU_ASSERT_EQUAL(m->mlstm.qkv_proj_blocksize, 4);
    CU_ASSERT_TRUE(m->mlstm.round_proj_up_dim_up);
    CU_ASSERT_EQUAL(m->mlstm.round_proj_up_to_multiple_of, 64);
    CU_ASSERT_EQUAL(m->mlstm.inner_dim, 128);
    CU_ASSERT_EQUAL(m->mlstm.head_dim, 32);
    CU_ASSERT_EQUAL(m->slstm.num_heads, 4);
    CU_ASSERT_EQUAL(m->slstm.conv1d_kernel_size, 4);
    CU_ASSERT_EQUAL(m->slstm.layout, SLSTM_LAYOUT_VANILLA);
    CU_ASSERT_TRUE(m->slstm.feedforward);
    CU_ASSERT_EQUAL(m->slstm.head_dim, 16);
    CU_ASSERT_DOUBLE_EQUAL(m->slstm.ffn.proj_factor, 1.3, 0);
    CU_ASSERT_EQUAL(m->slstm.ffn.act_fn, ACT_GELU);
    CU_ASSERT_FALSE(m->slstm.ffn.bias);
    CU_ASSERT_EQUAL(m->slstm.ffn.inner_dim, 128);
    /* Sections the model does not use carry defaults and no derived sizes. */
    CU_ASSERT_EQUAL(m->mamba.d_inner, 0);
    CU_ASSERT_EQUAL(m->mamba.d_state, 16);

    const char *c = "xlstm_mixed";
    CU_ASSERT_EQUAL(golden_config_int(c, "mlstm_inner_embedding_dim"), m->mlstm.inner_dim);
    CU_ASSERT_EQUAL(golden_config_int(c, "mlstm_head_dim"), m->mlstm.head_dim);
    CU_ASSERT_EQUAL(golden_config_int(c, "mlstm_qkv_num_proj_heads"),
                    m->mlstm.inner_dim / m->mlstm.qkv_proj_blocksize);
    CU_ASSERT_EQUAL(golden_config_int(c, "slstm_head_dim"), m->slstm.head_dim);
    CU_ASSERT_EQUAL(golden_config_int(c, "ffn_proj_up_dim"), m->slstm.ffn.inner_dim);
    CU_ASSERT_EQUAL(golden_config_int(c, "num_blocks"), m->n_blocks);
    check_mlstm_shapes(c, m, 0);
    check_slstm_shapes(c, m, 1);
    check_mlstm_shapes(c, m, 3);
    SHAPE2(c, "token_embedding.weight", m->vocab_padded, m->d_model);
    SHAPE1(c, "xlstm_block_stack.post_blocks_norm.weight", m->d_model);
    assert_round_trip(f);
    spec_free(f);
}

static void test_example_mlstm_tiny(void)
{
    SpecFile *f = load_example("mlstm_tiny.mx");
    const ModelSpec *m = spec_find_model(f, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->family, FAMILY_XLSTM);
    CU_ASSERT_EQUAL_FATAL(m->n_blocks, 2);
    CU_ASSERT_EQUAL(m->blocks[0], BLOCK_MLSTM);
    CU_ASSERT_EQUAL(m->blocks[1], BLOCK_MLSTM);
    CU_ASSERT_EQUAL(m->mlstm.inner_dim, 128);
    CU_ASSERT_EQUAL(m->mlstm.head_dim, 32);
    CU_ASSERT_EQUAL(m->slstm.head_dim, 0); /* unused */
    const char *c = "mlstm_tiny";
    CU_ASSERT_EQUAL(golden_config_int(c, "mlstm_inner_embedding_dim"), m->mlstm.inner_dim);
    CU_ASSERT_EQUAL(golden_config_int(c, "mlstm_head_dim"), m->mlstm.head_dim);
    CU_ASSERT_EQUAL(golden_config_int(c, "embedding_dim"), m->d_model);
    CU_ASSERT_EQUAL(golden_config_int(c, "context_length"), m->context_length);
    check_mlstm_shapes(c, m, 0);
    check_mlstm_shapes(c, m, 1);
    SHAPE2(c, "lm_head.weight", m->vocab_size, m->d_model);
    assert_round_trip(f);
    spec_free(f);
}

static void test_example_slstm_tiny(void)
{
    SpecFile *f = load_example("slstm_tiny.mx");
    const ModelSpec *m = spec_find_model(f, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL_FATAL(m->n_blocks, 2);
    CU_ASSERT_EQUAL(m->blocks[0], BLOCK_SLSTM);
    CU_ASSERT_EQUAL(m->blocks[1], BLOCK_SLSTM);
    CU_ASSERT_EQUAL(m->slstm.head_dim, 16);
    CU_ASSERT_EQUAL(m->slstm.ffn.inner_dim, 128);
    CU_ASSERT_EQUAL(m->slstm.layout, SLSTM_LAYOUT_VANILLA);
    CU_ASSERT_EQUAL(m->mlstm.inner_dim, 0); /* unused */
    const char *c = "slstm_tiny";
    CU_ASSERT_EQUAL(golden_config_int(c, "slstm_head_dim"), m->slstm.head_dim);
    CU_ASSERT_EQUAL(golden_config_int(c, "ffn_proj_up_dim"), m->slstm.ffn.inner_dim);
    CU_ASSERT_EQUAL(golden_config_int(c, "slstm_num_heads"), m->slstm.num_heads);
    check_slstm_shapes(c, m, 0);
    check_slstm_shapes(c, m, 1);
    assert_round_trip(f);
    spec_free(f);
}

/* ---- defaults and forms -------------------------------------------------------------- */

static void test_defaults_mamba(void)
{
    SpecFile *f = load_ok("model m { vocab_size = 50277; d_model = 48; blocks = [mamba]; }");
    const ModelSpec *m = spec_find_model(f, "m");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->family, FAMILY_MAMBA); /* inferred from d_model */
    CU_ASSERT_EQUAL(m->pad_vocab_size_multiple, 8);
    CU_ASSERT_EQUAL(m->vocab_padded, 50280);
    CU_ASSERT_EQUAL(m->norm, NORM_RMSNORM);
    CU_ASSERT_TRUE(m->tie_weights);
    CU_ASSERT_EQUAL(m->context_length, -1);
    CU_ASSERT_EQUAL(m->mamba.d_state, 16);
    CU_ASSERT_EQUAL(m->mamba.d_conv, 4);
    CU_ASSERT_EQUAL(m->mamba.dt_rank, 3); /* ceil(48 / 16) */
    CU_ASSERT_EQUAL(m->mamba.d_inner, 96);
    CU_ASSERT_TRUE(m->mamba.conv_bias);
    CU_ASSERT_EQUAL(m->mamba.loc.line, m->loc.line); /* defaulted: the model header */
    spec_free(f);

    f = load_ok("model m { vocab_size = 10; d_model = 50; blocks = [mamba];\n"
                "  mamba { expand = 1.5; dt_rank = 7; d_intermediate = 130; } }");
    m = spec_find_model(f, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->mamba.d_inner, 75); /* int(1.5 * 50) */
    CU_ASSERT_EQUAL(m->mamba.dt_rank, 7);
    CU_ASSERT_EQUAL(m->mamba.mlp_hidden, 256);
    CU_ASSERT_EQUAL(m->vocab_padded, 16);
    assert_round_trip(f);
    spec_free(f);
}

static void test_defaults_xlstm(void)
{
    /* SEMANTICS B.2's example: E = 96, 3 blocks, sLSTM at 1. */
    SpecFile *f = load_ok("model x { vocab_size = 50; embedding_dim = 96; num_blocks = 3;"
                          " slstm_at = [1]; }");
    const ModelSpec *m = spec_find_model(f, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->family, FAMILY_XLSTM); /* inferred from embedding_dim */
    CU_ASSERT_EQUAL(m->pad_vocab_size_multiple, 1);
    CU_ASSERT_EQUAL(m->vocab_padded, 50);
    CU_ASSERT_EQUAL(m->norm, NORM_LAYERNORM);
    CU_ASSERT_FALSE(m->tie_weights);
    CU_ASSERT_TRUE(m->add_post_blocks_norm);
    CU_ASSERT_EQUAL_FATAL(m->n_blocks, 3);
    CU_ASSERT_EQUAL(m->blocks[0], BLOCK_MLSTM);
    CU_ASSERT_EQUAL(m->blocks[1], BLOCK_SLSTM);
    CU_ASSERT_EQUAL(m->blocks[2], BLOCK_MLSTM);
    CU_ASSERT_EQUAL(m->mlstm.inner_dim, 192);
    CU_ASSERT_EQUAL(m->mlstm.head_dim, 48);
    CU_ASSERT_EQUAL(m->slstm.head_dim, 24);
    CU_ASSERT_EQUAL(m->slstm.ffn.inner_dim, 128);
    CU_ASSERT_EQUAL(m->slstm.ffn.act_fn, ACT_GELU);
    CU_ASSERT_EQUAL(m->slstm.layout, SLSTM_LAYOUT_VANILLA);
    CU_ASSERT_TRUE(m->slstm.feedforward);
    assert_round_trip(f);
    spec_free(f);

    /* Rounding down, no feed-forward, other spellings. */
    f = load_ok("model x { family = xlstm; vocab_size = 50; d_model = 96; blocks = [slstm, mlstm];\n"
                "  tie_embeddings = true; norm = rmsnorm; bias = true; add_post_blocks_norm = false;\n"
                "  mlstm { round_proj_up_dim_up = false; proj_factor = 1.5; num_heads = 2; }\n"
                "  slstm { feedforward = false; layout = cuda; num_heads = 8; conv1d_kernel_size = 0; }\n"
                "}");
    m = spec_find_model(f, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_TRUE(m->tie_weights);
    CU_ASSERT_EQUAL(m->norm, NORM_RMSNORM);
    CU_ASSERT_TRUE(m->bias);
    CU_ASSERT_FALSE(m->add_post_blocks_norm);
    CU_ASSERT_EQUAL(m->mlstm.inner_dim, 128); /* floor(144 / 64) * 64 */
    CU_ASSERT_EQUAL(m->mlstm.head_dim, 64);
    CU_ASSERT_FALSE(m->slstm.feedforward);
    CU_ASSERT_EQUAL(m->slstm.ffn.inner_dim, 0);
    CU_ASSERT_EQUAL(m->slstm.layout, SLSTM_LAYOUT_CUDA);
    CU_ASSERT_EQUAL(m->slstm.conv1d_kernel_size, 0);
    CU_ASSERT_EQUAL(m->slstm.head_dim, 12);
    assert_round_trip(f);
    spec_free(f);

    f = load_ok("model x { embedding_dim = 64; vocab_size = 3; block_map = \"s\";\n"
                "  slstm { feedforward { act_fn = \"relu^2\"; proj_factor = 2; bias = true;\n"
                "    round_proj_up_to_multiple_of = 48; } } }");
    m = spec_find_model(f, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->slstm.ffn.act_fn, ACT_RELU2);
    CU_ASSERT_TRUE(m->slstm.ffn.bias);
    CU_ASSERT_EQUAL(m->slstm.ffn.inner_dim, 144); /* ceil(128 / 48) * 48 */
    assert_round_trip(f);
    spec_free(f);
}

static void test_block_forms(void)
{
    static const char *const forms[] = {
        "blocks = [mlstm, slstm, mlstm * 2];",
        "blocks = [mlstm, slstm, mlstm, mlstm,];",
        "block_map = \"msmm\";",
        "num_blocks = 4; slstm_at = [1];",
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        char text[256];
        snprintf(text, sizeof text, "model x { embedding_dim = 64; vocab_size = 9; %s }", forms[i]);
        SpecFile *f = load_ok(text);
        const ModelSpec *m = spec_find_model(f, NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        CU_ASSERT_EQUAL_FATAL(m->n_blocks, 4);
        CU_ASSERT_EQUAL(m->blocks[0], BLOCK_MLSTM);
        CU_ASSERT_EQUAL(m->blocks[1], BLOCK_SLSTM);
        CU_ASSERT_EQUAL(m->blocks[2], BLOCK_MLSTM);
        CU_ASSERT_EQUAL(m->blocks[3], BLOCK_MLSTM);
        spec_free(f);
    }
    SpecFile *f = load_ok("model x { embedding_dim = 64; vocab_size = 9; num_blocks = 3;"
                          " slstm_at = all; }");
    const ModelSpec *m = spec_find_model(f, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL_FATAL(m->n_blocks, 3);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(m->blocks[i], BLOCK_SLSTM);
    spec_free(f);

    f = load_ok("model x { embedding_dim = 64; vocab_size = 9; num_blocks = 2; }");
    m = spec_find_model(f, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->n_blocks, 2);
    CU_ASSERT_EQUAL(m->blocks[1], BLOCK_MLSTM);
    spec_free(f);

    /* Any mix in either family; the longest stack allowed. */
    f = load_ok("model x { d_model = 64; vocab_size = 9; blocks = [mamba, slstm * 4094, mlstm]; }");
    m = spec_find_model(f, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->n_blocks, SPEC_BLOCKS_MAX);
    CU_ASSERT_EQUAL(m->blocks[0], BLOCK_MAMBA);
    CU_ASSERT_EQUAL(m->blocks[SPEC_BLOCKS_MAX - 1], BLOCK_MLSTM);
    assert_round_trip(f);
    spec_free(f);
}

static void test_several_models(void)
{
    SpecFile *f = load_ok("# two models\n"
                          "model a { d_model = 32; vocab_size = 5; blocks = [mamba]; }\n"
                          "model b { embedding_dim = 64; vocab_size = 5; block_map = \"m\"; }\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(f->n_models, 2);
    CU_ASSERT_PTR_NULL(spec_find_model(f, NULL)); /* ambiguous */
    CU_ASSERT_PTR_NULL(spec_find_model(f, "c"));
    const ModelSpec *b = spec_find_model(f, "b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(b->loc.line, 3);
    CU_ASSERT_EQUAL(b->loc.col, 1);
    CU_ASSERT_STRING_EQUAL(b->loc.file, "t.mx");
    assert_round_trip(f);
    spec_free(f);
}

static void test_names(void)
{
    CU_ASSERT_STRING_EQUAL(spec_family_name(FAMILY_XLSTM), "xlstm");
    CU_ASSERT_STRING_EQUAL(spec_block_name(BLOCK_SLSTM), "slstm");
    CU_ASSERT_STRING_EQUAL(spec_norm_name(NORM_LAYERNORM), "layernorm");
    CU_ASSERT_STRING_EQUAL(spec_act_name(ACT_RELU2), "relu2");
    CU_ASSERT_STRING_EQUAL(spec_act_name(ACT_SWISH), "swish");
    CU_ASSERT_STRING_EQUAL(spec_layout_name(SLSTM_LAYOUT_CUDA), "cuda");
}

/* ---- diagnostics --------------------------------------------------------------------- */

#define MAMBA_OK "vocab_size = 8; d_model = 64; blocks = [mamba];"

/* Spec texts that must fail, each with the start of what the checker prints (`starts`, the
 * first diagnostic with its source line and caret where given), more lines it must contain
 * anywhere (`has`), and how many errors it counts (`errors`; 0: not checked). Grouped as in
 * docs/errors.md. */
typedef struct BadSpec {
    const char *group, *text, *starts;
    const char *has[4];
    int errors;
} BadSpec;

static const BadSpec bad_specs[] = {
    /* --- syntax */
    {"syntax",
     .text = "model m {\n    vocab_size = 8\n    d_model = 64;\n}\n",
     .starts = "t.mx:2:19: error: expected ';' after the value\n"
               "    vocab_size = 8\n"
               "                  ^\n",
     .errors = 1},
    {"syntax",
     .text = "model m {\n  d_model 64;\n}",
     .starts = "t.mx:2:11: error: unexpected number 64, expected '{' or '='\n"},
    {"syntax",
     .text = "model m { x = ; }",
     .starts = "t.mx:1:15: error: unexpected ';', expected a value\n"},
    {"syntax",
     .text = "model m { a = 1 2; b = 3 c = 4; }",
     .starts = "t.mx:1:17: error: unexpected number 2, expected ';'\n",
     .has = {"t.mx:1:26: error: unexpected identifier 'c', expected ';'\n"},
     .errors = 2},
    {"syntax",
     .text = "model { }",
     .starts = "t.mx:1:7: error: unexpected '{', expected identifier\n"},
    {"syntax",
     .text = "model m { blocks = [mamba mamba]; }",
     .starts = "t.mx:1:27: error: unexpected identifier 'mamba', expected ']', ',' or '*'\n"},
    {"syntax",
     .text = "model m { " MAMBA_OK " } }",
     .has = {"t.mx:1:61: error: unexpected '}', expected end of file or 'model'\n"}},
    /* --- unknown keys and sections */
    {"unknown keys and sections",
     .text = "model m {\n  vocab_size = 8;\n  d_modle = 64;\n  d_model = 64;\n"
             "  blocks = [mamba];\n}",
     .starts = "t.mx:3:3: error: unknown key 'd_modle' at model level; did you mean "
               "'d_model'?\n"
               "  d_modle = 64;\n"
               "  ^\n",
     .errors = 1},
    {"unknown keys and sections",
     .text = "model m { " MAMBA_OK " mamba { d_stat = 4; } }",
     .has = {"t.mx:1:67: error: unknown key 'd_stat' in section 'mamba'; did you mean "
             "'d_state'?\n"}},
    {"unknown keys and sections",
     .text = "model m { " MAMBA_OK " d_state = 4; }",
     .has = {"t.mx:1:59: error: unknown key 'd_state' at model level; it belongs in "
             "section 'mamba' or 'mamba2'\n"}},
    {"unknown keys and sections",
     .text = "model m { " MAMBA_OK " mamba { zzz = 1; } }",
     .has = {"error: unknown key 'zzz' in section 'mamba'; expected d_state, d_conv, "
             "expand, dt_rank, conv_bias, bias or d_intermediate\n"}},
    {"unknown keys and sections",
     .text = "model m { " MAMBA_OK " mamaba { } }",
     .has = {"t.mx:1:59: error: unknown section 'mamaba' at model level; did you mean "
             "'mamba'?\n"}},
    {"unknown keys and sections",
     .text = "model m { " MAMBA_OK " mamba = 1; }",
     .has = {"t.mx:1:59: error: 'mamba' is a section, not a key; write 'mamba { ... }'\n"}},
    /* --- duplicates and clashing aliases */
    {"duplicates and clashing aliases",
     .text = "model m {\n  d_model = 64;\n  vocab_size = 8;\n  d_model = 64;\n"
             "  blocks = [mamba];\n}",
     .starts = "t.mx:4:3: error: duplicate key 'd_model'\n"
               "  d_model = 64;\n"
               "  ^\n"
               "t.mx:2:3: note: 'd_model' was first given here\n"
               "  d_model = 64;\n"
               "  ^\n"},
    {"duplicates and clashing aliases",
     .text = "model m { " MAMBA_OK " }\nmodel m { " MAMBA_OK " }",
     .starts = "t.mx:2:7: error: duplicate model 'm'\n",
     .has = {"t.mx:1:7: note: 'm' was first defined here\n"}},
    {"duplicates and clashing aliases",
     .text = "model m { " MAMBA_OK " block_map = \"m\"; }",
     .has = {"t.mx:1:59: error: 'block_map' and 'blocks' both give the block stack; use "
             "only one of them\n"}},
    {"duplicates and clashing aliases",
     .text = "model m { vocab_size = 8; d_model = 64; embedding_dim = 32; blocks = [mamba]; }",
     .has = {"t.mx:1:41: error: 'embedding_dim' and 'd_model' are the same setting but "
             "are given different values\n"}},
    /* --- value types and ranges */
    {"value types and ranges",
     .text = "model m { vocab_size = \"many\"; d_model = 64; blocks = [mamba]; }",
     .starts = "t.mx:1:24: error: expected an integer for 'vocab_size', got a string\n"},
    {"value types and ranges",
     .text = "model m { vocab_size = 8; d_model = 2.0; blocks = [mamba]; }",
     .starts = "t.mx:1:37: error: expected an integer for 'd_model', got a float\n"},
    {"value types and ranges",
     .text = "model m { " MAMBA_OK " tie_weights = 1; }",
     .starts = "t.mx:1:73: error: expected true or false for 'tie_weights', got an " "integer\n"},
    {"value types and ranges",
     .text = "model m { " MAMBA_OK " norm_eps = yes; }",
     .starts = "t.mx:1:70: error: expected a number for 'norm_eps', got an identifier\n"},
    {"value types and ranges",
     .text = "model m { vocab_size = 8; d_model = 64; blocks = mamba; }",
     .starts = "t.mx:1:50: error: expected a list of blocks such as [mamba * 2] for "
               "'blocks', got an identifier\n"},
    {"value types and ranges",
     .text = "model m { " MAMBA_OK " mamba { dt_rank = 2.5; } }",
     .starts = "t.mx:1:77: error: expected 'auto' or an integer for 'dt_rank', got a " "float\n"},
    {"value types and ranges",
     .text = "model m { vocab_size = 0; d_model = 64; blocks = [mamba]; }",
     .starts = "t.mx:1:24: error: 'vocab_size' must be at least 1, got 0\n"},
    {"value types and ranges",
     .text = "model m { vocab_size = 8; d_model = 2000000; blocks = [mamba]; }",
     .starts = "t.mx:1:37: error: 'd_model' must be at most 1048576, got 2000000\n"},
    /* --- head counts and divisibility */
    {"head counts and divisibility",
     .text = "model x {\n  embedding_dim = 64; vocab_size = 8; blocks = [mlstm];\n"
             "  mlstm { num_heads = 3; }\n}",
     .starts = "t.mx:3:11: error: mLSTM num_heads (3) does not divide the inner dimension "
               "128 (embedding_dim 64 * proj_factor 2, rounded up to a multiple of 64)\n"
               "  mlstm { num_heads = 3; }\n"
               "          ^\n"},
    {"head counts and divisibility",
     .text = "model x {\n  embedding_dim = 64; vocab_size = 8; blocks = [slstm];\n"
             "  slstm { num_heads = 5; }\n}",
     .starts = "t.mx:3:11: error: sLSTM num_heads (5) does not divide embedding_dim 64\n"},
    /* The default 4 heads do not divide 50: the error points at the width. */
    {"head counts and divisibility",
     .text = "model x {\n  vocab_size = 8; blocks = [slstm];\n  embedding_dim = 50;\n}",
     .starts = "t.mx:3:3: error: sLSTM num_heads (4) does not divide embedding_dim 50\n"},
    {"head counts and divisibility",
     .text = "model x { embedding_dim = 64; vocab_size = 8; blocks = [mlstm];"
             " mlstm { qkv_proj_blocksize = 3; } }",
     .starts = "t.mx:1:73: error: qkv_proj_blocksize (3) does not divide the mLSTM inner "
               "dimension 128\n"},
    /* --- missing keys and models */
    {"missing keys and models",
     .text = "# header\nmodel m {\n  d_model = 64;\n  blocks = [mamba];\n}\n",
     .starts = "t.mx:2:1: error: missing required key 'vocab_size'\n"
               "model m {\n"
               "^\n",
     .errors = 1},
    {"missing keys and models",
     .text = "model m { vocab_size = 8; blocks = [mamba]; }",
     .starts = "t.mx:1:1: error: missing required key 'd_model' (or its alias "
               "'embedding_dim')\n"},
    {"missing keys and models",
     .text = "model m { vocab_size = 8; d_model = 8; }",
     .starts = "t.mx:1:1: error: missing block stack: set 'blocks', 'block_map' or "
               "'num_blocks'\n"},
    {"missing keys and models",
     .text = "",
     .starts = "t.mx:1:1: error: no model in this file; expected 'model NAME { ... }'\n"},
    {"missing keys and models",
     .text = "# only a comment\n",
     .starts = "t.mx:1:1: error: no model in this file; expected 'model NAME { ... }'\n"
               "# only a comment\n"
               "^\n"},
    /* --- enumerations and block stacks */
    {"enumerations and block stacks",
     .text = "model m { " MAMBA_OK " norm = batchnorm; }",
     .starts = "t.mx:1:66: error: invalid value 'batchnorm' for 'norm'; expected rmsnorm "
               "or layernorm\n"},
    {"enumerations and block stacks",
     .text = "model m { " MAMBA_OK " family = mambo; }",
     .starts = "t.mx:1:68: error: invalid value 'mambo' for 'family'; did you mean "
               "'mamba'? (expected mamba, xlstm or xlstm_large)\n"},
    {"enumerations and block stacks",
     .text = "model x { embedding_dim = 64; vocab_size = 8; blocks = [slstm];"
             " slstm { feedforward { act_fn = tanh; } } }",
     .has = {"error: invalid value 'tanh' for 'act_fn'; expected gelu, relu, relu2, "
             "sigmoid, swish or selu\n"}},
    {"enumerations and block stacks",
     .text = "model m { vocab_size = 8; d_model = 64; blocks = [mamba, lstm]; }",
     .starts = "t.mx:1:58: error: unknown block kind 'lstm'; did you mean 'mlstm'?\n"},
    {"enumerations and block stacks",
     .text = "model m { vocab_size = 8; d_model = 64; block_map = \"msx\"; }",
     .starts = "t.mx:1:56: error: invalid character 'x' in 'block_map'; expected 'm' "
               "(mLSTM) or 's' (sLSTM)\n"},
    {"enumerations and block stacks",
     .text = "model m { vocab_size = 8; d_model = 64; num_blocks = 2; slstm_at = [2]; }",
     .starts = "t.mx:1:69: error: block index 2 is out of range: num_blocks is 2, so "
               "indices go from 0 to 1\n"},
    {"enumerations and block stacks",
     .text = "model m { vocab_size = 8; d_model = 64; blocks = [mamba * 0]; }",
     .starts = "t.mx:1:59: error: repeat count must be between 1 and 4096, got 0\n"},
    {"enumerations and block stacks",
     .text = "model m { vocab_size = 8; d_model = 64; blocks = [mamba * 4096, mlstm]; }",
     .starts = "t.mx:1:65: error: too many blocks (at most 4096)\n"},
    /* --- several errors in one run */
    {"several errors in one run",
     .text = "model m {\n"
             "  vocab_size = -3;\n"
             "  d_model = 64;\n"
             "  blocks = [mamba];\n"
             "  norm = l2;\n"
             "  mamba { d_conv = 0; expnd = 2; }\n"
             "}\n",
     .has = {"t.mx:6:23: error: unknown key 'expnd' in section 'mamba'; did you mean "
             "'expand'?\n",
             "t.mx:2:16: error: 'vocab_size' must be at least 1, got -3\n",
             "t.mx:5:10: error: invalid value 'l2' for 'norm'",
             "t.mx:6:20: error: 'd_conv' must be at least 1, got 0\n"},
     .errors = 4},
    /* Several syntax errors, each reported once, in one run. */
    {"several errors in one run",
     .text = "model m {\n  a = 1\n  b 2;\n  c = [;\n  d = 4;\n}\n",
     .starts = "t.mx:2:8: error: expected ';' after the value\n",
     .has = {"t.mx:3:5: error: unexpected number 2, expected '{' or '='\n",
             "t.mx:4:8: error: unexpected ';', expected a value or ']'\n"},
     .errors = 3},
    /* Errors in two models. */
    {"several errors in one run",
     .text = "model a { vocab_size = 8; d_model = 64; blocks = [mamba]; bad = 1; }\n"
             "model b { vocab_size = 8; d_model = 64; blocks = [mamba]; worse = 1; }\n",
     .has = {"t.mx:1:59: error: unknown key 'bad'", "t.mx:2:59: error: unknown key 'worse'"},
     .errors = 2},
    /* --- characters and literals */
    {"characters and literals",
     .text = "model m {\n\tvocab_size = 8; @\n}",
     .starts = "t.mx:2:18: error: unexpected character '@'\n"
               "\tvocab_size = 8; @\n"
               "\t                ^\n",
     .errors = 1},
    {"characters and literals",
     .text = "model m { block_map = \"ms; }\n",
     .starts = "t.mx:1:23: error: unterminated string\n"},
    {"characters and literals",
     .text = "model m {\n  mamba {\n    d_state = 16;\n",
     .starts = "t.mx:3:18: error: unexpected end of file, expected identifier or '}'\n"
               "    d_state = 16;\n"
               "                 ^\n"
               "t.mx:2:9: note: unterminated section: this '{' is never closed\n",
     .errors = 1},
    {"characters and literals",
     .text = "model m { vocab_size = 99999999999999999999; }",
     .starts = "t.mx:1:24: error: integer literal is too large\n",
     .errors = 1},
    {"characters and literals",
     .text = "model m { vocab_size = -9223372036854775809; }",
     .starts = "t.mx:1:24: error: integer literal is too large\n"},
    {"characters and literals",
     .text = "model m { norm_eps = 1e999; }",
     .starts = "t.mx:1:22: error: float literal is out of range\n"},
    {"characters and literals",
     .text = "model m { d_model = 64x; }",
     .starts = "t.mx:1:21: error: malformed number '64x'\n"},
    {"characters and literals",
     .text = "model m { d_model = 1.2.3; }",
     .starts = "t.mx:1:21: error: malformed number '1.2.3'\n"},
    {"characters and literals",
     .text = "model m { \xc3\xa9 }",
     .starts = "t.mx:1:11: error: unexpected non-ASCII character (byte 0xc3)\n",
     .errors = 1},
    /* --- names */
    {"names",
     .text = "model m0123456789012345678901234567890123456789012345678901234567890123456789 {"
             " " MAMBA_OK " }",
     .starts = "t.mx:1:7: error: model name 'm01234567890123456789012345678901234567890123456789"
               "0123456789012...' is too long (71 characters): it is the default C prefix of the "
               "compiled API, at most 64 characters\n",
     .errors = 1},
    {"names",
     .text = "model m012345678901234567890123456789012345678901234567890123456789012 { " MAMBA_OK
             " }\nmodel z { " MAMBA_OK " }\nmodel y { }",
     .has = {"t.mx:3:1: error: missing required key"},
     .errors = 3},
};

static void test_error_table(void)
{
    for (size_t i = 0; i < sizeof bad_specs / sizeof bad_specs[0]; i++) {
        const BadSpec *c = &bad_specs[i];
        const char *out = load_bad(c->text);
        bool ok = !c->starts || strncmp(out, c->starts, strlen(c->starts)) == 0;
        for (int k = 0; k < 4 && c->has[k]; k++) ok = ok && strstr(out, c->has[k]) != NULL;
        ok = ok && (!c->errors || diag_errors == c->errors);
        CU_ASSERT(ok);
        if (!ok)
            fprintf(stderr, "\nbad_specs[%zu] (%s): %d errors (want %d) for:\n%s\nexpected to "
                    "start with:\n%s\nand contain:\n%s\n%s\ngot:\n%s\n", i, c->group,
                    diag_errors, c->errors, c->text, c->starts ? c->starts : "(anything)",
                    c->has[0] ? c->has[0] : "", c->has[1] ? c->has[1] : "", out);
    }
}

/* Unused block kinds are not held to their rules (only warned about). */
static void test_unused_sections_only_warn(void)
{
    DiagSink d;
    diag_init(&d, NULL);
    SpecFile *f = spec_load_string("t.mx", "model x { d_model = 50; vocab_size = 8; blocks = [mamba];"
                                   " slstm { num_heads = 3; } }", &d);
    CU_ASSERT_PTR_NOT_NULL(f);
    CU_ASSERT_EQUAL(d.n_warnings, 1);
    ASSERT_STARTS(d.collected, "t.mx:1:59: warning: section 'slstm' has no effect: the model has "
                               "no sLSTM block\n");
    if (f)
        CU_ASSERT_EQUAL(f->models[0].slstm.num_heads, 4);
    spec_free(f);
    diag_free(&d);
}

/* A NUL byte cannot go through spec_load_string: write a file. */
static void test_error_nul_byte(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/frontend_nul.mx", test_builddir());
    FILE *fp = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
    static const char text[] = "model m {\n  d_model = 64;\x00\n}\n";
    fwrite(text, 1, sizeof text - 1, fp);
    fclose(fp);
    DiagSink d;
    diag_init(&d, NULL);
    SpecFile *f = spec_load_file(path, &d);
    CU_ASSERT_PTR_NULL(f);
    char want[1200];
    snprintf(want, sizeof want, "%s:2:16: error: unexpected NUL byte\n  d_model = 64;?\n"
             "               ^\n", path);
    ASSERT_STARTS(d.collected ? d.collected : "", want);
    diag_free(&d);
    remove(path);

    diag_init(&d, NULL);
    f = spec_load_file("/nonexistent/dir/x.mx", &d);
    CU_ASSERT_PTR_NULL(f);
    ASSERT_STARTS(d.collected ? d.collected : "", "/nonexistent/dir/x.mx: error: cannot open: ");
    diag_free(&d);
}

static void test_limits(void)
{
    /* Deep nesting stops with one error. */
    char *deep = malloc(16 + 2 * 5000);
    char *p = deep + sprintf(deep, "model m {");
    for (int i = 0; i < 5000; i++) {
        *p++ = 'a';
        *p++ = '{';
    }
    *p = '\0';
    const char *out = load_bad(deep);
    CU_ASSERT_EQUAL(diag_errors, 1);
    ASSERT_STARTS(out, "t.mx:1:73: error: sections are nested too deeply (more than 32 levels)\n");
    free(deep);

    /* A huge identifier, and a huge line: no crash, the caret line is cut around the column. */
    size_t n = 200000;
    char *big = malloc(n + 64);
    memcpy(big, "model m { ", 10);
    memset(big + 10, 'k', n);
    strcpy(big + 10 + n, " = 1; }");
    out = load_bad(big);
    ASSERT_HAS(out, "t.mx:1:11: error: unknown key 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
                    "kkkkkkkkkkkkkkk...' at model level\n");
    CU_ASSERT(strlen(out) < 2000);
    free(big);

    /* After DIAG_MAX_ERRORS errors the sink falls silent but keeps counting. */
    size_t cap = 100 * 16 + 64;
    char *many = malloc(cap);
    strcpy(many, "model m {\n");
    for (int i = 0; i < 100; i++)
        strcat(many, "  bogus = 1;\n");
    strcat(many, "}\n");
    out = load_bad(many);
    CU_ASSERT_EQUAL(count_of(out, ": error: "), DIAG_MAX_ERRORS);
    ASSERT_HAS(out, "mxc: too many errors (50), the rest are not shown\n");
    free(many);

    /* Warnings have their own limit, and do not fail the load. */
    many = malloc(60 * 100);
    many[0] = '\0';
    for (int i = 0; i < 60; i++)
        sprintf(many + strlen(many), "model m%d { d_model = 8; vocab_size = 1; blocks = [mamba];"
                " mlstm { } }\n", i);
    DiagSink d;
    diag_init(&d, NULL);
    SpecFile *f = spec_load_string("t.mx", many, &d);
    CU_ASSERT_PTR_NOT_NULL(f);
    CU_ASSERT_EQUAL(d.n_warnings, 60);
    CU_ASSERT_EQUAL(count_of(d.collected, ": warning: "), DIAG_MAX_ERRORS);
    ASSERT_HAS(d.collected, "mxc: too many warnings (50), the rest are not shown\n");
    CU_ASSERT_EQUAL(f ? f->n_models : 0, 60);
    spec_free(f);
    diag_free(&d);
    free(many);
}

/* Diagnostics without source text, at unknown places, and with an explicit source. */
static void test_diag_sink(void)
{
    DiagSink d;
    diag_init(&d, NULL);
    diag_report(&d, DIAG_WARNING, (Loc){"a.mx", 3, 0}, "w %d", 1);
    diag_report(&d, DIAG_ERROR, (Loc){NULL, 0, 0}, "e");
    diag_set_source(&d, "line one\nline two\n");
    diag_report(&d, DIAG_NOTE, (Loc){"a.mx", 2, 6}, "n");
    diag_set_source_file(&d, "b.mx", "x\n", 2);
    diag_report(&d, DIAG_ERROR, (Loc){"a.mx", 1, 1}, "other file: no caret");
    diag_report(&d, DIAG_ERROR, (Loc){"b.mx", 9, 1}, "past the end: no caret");
    CU_ASSERT_STRING_EQUAL(d.collected, "a.mx:3: warning: w 1\n"
                                        "mxc: error: e\n"
                                        "a.mx:2:6: note: n\nline two\n     ^\n"
                                        "a.mx:1:1: error: other file: no caret\n"
                                        "b.mx:9:1: error: past the end: no caret\n");
    CU_ASSERT_EQUAL(d.n_errors, 3);
    CU_ASSERT_EQUAL(d.n_warnings, 1);
    diag_free(&d);
}

/* tests/specs/bad/NAME.mx gives exactly NAME.expected (what `mxc check` prints, run from
 * that directory as tests/run-golden.sh does), for every NAME.mx there. */
static void test_bad_spec_files(void)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/specs/bad", test_srcdir());
    DIR *d = opendir(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    int cases = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n < 4 || n > 200 || strcmp(e->d_name + n - 3, ".mx") != 0) continue;
        char spec[1300], expected_path[1300];
        snprintf(spec, sizeof spec, "%s/%s", dir, e->d_name);
        snprintf(expected_path, sizeof expected_path, "%s/%.*s.expected", dir, (int)(n - 3),
                 e->d_name);
        size_t len;
        char *text = read_file(spec, &len);
        char *expected = read_file(expected_path, NULL);
        CU_ASSERT_PTR_NOT_NULL(text);
        CU_ASSERT_PTR_NOT_NULL(expected);
        cases++;
        if (!text || !expected) {
            fprintf(stderr, "\n%s: missing .mx or .expected\n", e->d_name);
            free(text);
            free(expected);
            continue;
        }
        DiagSink sink;
        diag_init(&sink, NULL);
        SpecFile *f = spec_load_string(e->d_name, text, &sink);
        CU_ASSERT_PTR_NULL(f);
        const char *got = sink.collected ? sink.collected : "";
        bool same = strcmp(got, expected) == 0;
        CU_ASSERT(same);
        if (!same)
            fprintf(stderr, "\n%s: got:\n%s\nexpected:\n%s\n", e->d_name, got, expected);
        spec_free(f);
        diag_free(&sink);
        free(text);
        free(expected);
    }
    closedir(d);
    CU_ASSERT(cases >= 14);
}

/* Mutations of the examples: whatever comes out, the frontend must not crash, must fail
 * exactly when it reported errors, and what it accepts must survive the print round trip. */
static void test_mutations(void)
{
    static const char *const files[] = {"mamba_tiny.mx", "xlstm_mixed.mx", "slstm_tiny.mx"};
    static const char pieces[][12] = {
        "{", "}", "[", "]", ";", "=", ",", "*", "\"", "#", "\n", "\t", "\0", "-", ".", "e",
        "1", "0", "99999", "1e9", "2.5", "all", "auto", "mamba", "model", "true", "[]", "@",
        "\xff", "slstm", "m { }", "x = 1;",
    };
    uint32_t seed = 12345;
#define RAND() (seed = seed * 1103515245u + 12345u, (seed >> 8) & 0xffffff)
    int accepted = 0;
    for (size_t fi = 0; fi < sizeof files / sizeof files[0]; fi++) {
        char path[1024];
        example_path(path, sizeof path, files[fi]);
        size_t len;
        char *orig = read_file(path, &len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(orig);
        for (int iter = 0; iter < 700; iter++) {
            char *buf = malloc(len + 64 * 12 + 1);
            size_t n = len;
            memcpy(buf, orig, len);
            int edits = 1 + (int)(RAND() % 3);
            for (int e = 0; e < edits && n > 0; e++) {
                size_t at = RAND() % n;
                if (RAND() % 2) { /* delete a few bytes */
                    size_t k = 1 + RAND() % 8;
                    if (at + k > n)
                        k = n - at;
                    memmove(buf + at, buf + at + k, n - at - k);
                    n -= k;
                } else { /* insert a piece */
                    const char *p = pieces[RAND() % (sizeof pieces / sizeof pieces[0])];
                    size_t k = *p ? strlen(p) : 1;
                    memmove(buf + at + k, buf + at, n - at);
                    memcpy(buf + at, p, k);
                    n += k;
                }
            }
            buf[n] = '\0';
            /* Through a file, so that NUL bytes reach the scanner. */
            char tmp[1024];
            snprintf(tmp, sizeof tmp, "%s/frontend_mut.mx", test_builddir());
            FILE *fp = fopen(tmp, "wb");
            CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
            fwrite(buf, 1, n, fp);
            fclose(fp);
            DiagSink d;
            diag_init(&d, NULL);
            SpecFile *f = spec_load_file(tmp, &d);
            CU_ASSERT_EQUAL(f == NULL, d.n_errors > 0);
            if (f) {
                accepted++;
                assert_round_trip(f);
            }
            spec_free(f);
            diag_free(&d);
            free(buf);
            remove(tmp);
        }
        free(orig);
    }
    CU_ASSERT(accepted > 0);
#undef RAND
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("frontend", NULL, NULL);
    TEST_ADD(s, test_example_mamba_tiny);
    TEST_ADD(s, test_example_xlstm_mixed);
    TEST_ADD(s, test_example_mlstm_tiny);
    TEST_ADD(s, test_example_slstm_tiny);
    TEST_ADD(s, test_defaults_mamba);
    TEST_ADD(s, test_defaults_xlstm);
    TEST_ADD(s, test_block_forms);
    TEST_ADD(s, test_several_models);
    TEST_ADD(s, test_names);
    TEST_ADD(s, test_error_table);
    TEST_ADD(s, test_unused_sections_only_warn);
    TEST_ADD(s, test_error_nul_byte);
    TEST_ADD(s, test_limits);
    TEST_ADD(s, test_diag_sink);
    TEST_ADD(s, test_bad_spec_files);
    TEST_ADD(s, test_mutations);
    return test_run_all();
}
