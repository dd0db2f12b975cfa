/* test_mamba2.c - Mamba-2 blocks end to end (issue 13).
 *
 * The golden cases tests/golden/mamba2_tiny and mamba2_bf16 (official mamba_ssm Mamba2,
 * float32 logits; BF16 weights in the second) are compiled with the real mxc binary and
 * checked against the official forward and step logits, and against themselves: the
 * chunked SSD form vs the recurrent one (--disable-pass ssd-chunked), forward in pieces,
 * forward vs step, batch 3 and batch 1 vs batch 2, 1 to 3 threads bit for bit, long
 * sequences (40 and 515 tokens, not multiples of the block length). Checkpoints under
 * Hugging Face names (Mamba2ForCausalLM) open through the binding; missing and misshapen
 * Mamba-2 tensors are named in the error. */
#include <dlfcn.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model_api.h"
#include "runtime/safetensors.h"
#include "testutil.h"

#define GOLDEN_TOL 1e-5
#define SELF_TOL 1e-5

/* A compiled model with its weights open. */
typedef struct Model {
    Api a;
    void *m;
} Model;

static bool model_open(Model *md, const char *name, const char *prefix, const char *flags,
                       const char *weights)
{
    char spec[600], w[600];
    snprintf(spec, sizeof spec, "%s/golden/%s/model.mx", test_srcdir(), name);
    snprintf(w, sizeof w, "%s/golden/%s/model.safetensors", test_srcdir(), name);
    md->m = NULL;
    if (!model_load(&md->a, spec, prefix, flags)) return false;
    if (md->a.open(weights ? weights : w, &md->m) != 0) {
        fprintf(stderr, "%s: open: %s\n", prefix, md->a.last_error());
        return false;
    }
    return true;
}

static void model_close(Model *md)
{
    md->a.close(md->m);
    dlclose(md->a.so);
}

/* Logits [batch][len][V] of a forward over `ids` [batch][len] from a fresh state, in calls
 * of the given lengths (cuts: positions where a new call starts; none = one call). */
static float *run_forward(Model *md, const int32_t *ids, int batch, int len, const int *cuts,
                          int n_cuts, int threads)
{
    int v = md->a.vocab_padded();
    void *s = NULL;
    CU_ASSERT_EQUAL_FATAL(md->a.state_new(md->m, batch, &s), 0);
    CU_ASSERT_EQUAL(md->a.set_threads(s, threads), 0);
    float *out = malloc(sizeof *out * (size_t)batch * len * v);
    int from = 0;
    for (int c = 0; c <= n_cuts; c++) {
        int to = c < n_cuts ? cuts[c] : len, n = to - from;
        int32_t *tok = malloc(sizeof *tok * (size_t)batch * n);
        float *lg = malloc(sizeof *lg * (size_t)batch * n * v);
        for (int b = 0; b < batch; b++) memcpy(tok + b * n, ids + b * len + from, sizeof *tok * n);
        CU_ASSERT_EQUAL(md->a.forward(md->m, s, tok, n, lg), 0);
        for (int b = 0; b < batch; b++)
            memcpy(out + ((size_t)b * len + from) * v, lg + (size_t)b * n * v, sizeof *lg * n * v);
        free(tok);
        free(lg);
        from = to;
    }
    md->a.state_free(s);
    return out;
}

/* The same token by token with step. */
static float *run_steps(Model *md, const int32_t *ids, int batch, int len, int threads)
{
    int v = md->a.vocab_padded();
    void *s = NULL;
    CU_ASSERT_EQUAL_FATAL(md->a.state_new(md->m, batch, &s), 0);
    CU_ASSERT_EQUAL(md->a.set_threads(s, threads), 0);
    float *out = malloc(sizeof *out * (size_t)batch * len * v);
    int32_t *tok = malloc(sizeof *tok * (size_t)batch);
    float *lg = malloc(sizeof *lg * (size_t)batch * v);
    for (int t = 0; t < len; t++) {
        for (int b = 0; b < batch; b++) tok[b] = ids[b * len + t];
        CU_ASSERT_EQUAL(md->a.step(md->m, s, tok, lg), 0);
        for (int b = 0; b < batch; b++)
            memcpy(out + ((size_t)b * len + t) * v, lg + (size_t)b * v, sizeof *lg * v);
    }
    free(tok);
    free(lg);
    md->a.state_free(s);
    return out;
}

/* Everything a golden case must satisfy, for one build of it. */
static void check_golden(const char *name, const char *prefix, const char *flags)
{
    Golden g;
    Model md;
    CU_ASSERT_FATAL(golden_load_case(&g, name));
    CU_ASSERT_FATAL(model_open(&md, name, prefix, flags, NULL));
    size_t n = (size_t)g.batch * g.len * g.vocab;
    float *fwd = run_forward(&md, g.ids, g.batch, g.len, NULL, 0, 1);
    float *stp = run_steps(&md, g.ids, g.batch, g.len, 1);
    int cuts[4] = {1, 8, 10, 17}; /* calls of 1, 7, 2, 7 and 7 tokens */
    float *pieces = run_forward(&md, g.ids, g.batch, g.len, cuts, 4, 1);
    double d_fwd = max_abs_diff(fwd, g.logits, n), d_step = max_abs_diff(stp, g.step_logits, n);
    double d_self = max_abs_diff(stp, fwd, n), d_pieces = max_abs_diff(pieces, fwd, n);
    for (int threads = 2; threads <= 3; threads++) {
        float *f = run_forward(&md, g.ids, g.batch, g.len, NULL, 0, threads);
        float *s = run_steps(&md, g.ids, g.batch, g.len, threads);
        CU_ASSERT_EQUAL(memcmp(f, fwd, n * sizeof *f), 0);
        CU_ASSERT_EQUAL(memcmp(s, stp, n * sizeof *s), 0);
        free(f);
        free(s);
    }
    /* batch 3 (sequences 1, 0, 1) and batch 1 give each sequence's batch-2 logits */
    size_t row = (size_t)g.len * g.vocab;
    int32_t *ids3 = malloc(sizeof *ids3 * 3 * g.len);
    int order[3] = {1, 0, 1};
    for (int b = 0; b < 3; b++) memcpy(ids3 + b * g.len, g.ids + order[b] * g.len, sizeof *ids3 * g.len);
    float *f3 = run_forward(&md, ids3, 3, g.len, cuts, 4, 2);
    float *s1 = run_steps(&md, g.ids + g.len, 1, g.len, 1);
    double d_batch = max_abs_diff(s1, stp + row, row);
    for (int b = 0; b < 3; b++) {
        double d = max_abs_diff(f3 + b * row, fwd + order[b] * row, row);
        if (d > d_batch) d_batch = d;
    }
    printf("\n    %s: |forward - golden| %.2e, |step - golden| %.2e, |step - forward| %.2e, "
           "|pieces - forward| %.2e, |batch 3/1 - batch 2| %.2e ", prefix, d_fwd, d_step, d_self,
           d_pieces, d_batch);
    CU_ASSERT(d_fwd <= GOLDEN_TOL);
    CU_ASSERT(d_step <= GOLDEN_TOL);
    CU_ASSERT(d_self <= SELF_TOL);
    CU_ASSERT(d_pieces <= SELF_TOL);
    CU_ASSERT(d_batch <= SELF_TOL);
    free(ids3); free(f3); free(s1);
    free(fwd); free(stp); free(pieces);
    model_close(&md);
    st_close(g.io);
}

static void test_mamba2_tiny(void) { check_golden("mamba2_tiny", "mamba2_tiny", NULL); }
static void test_mamba2_bf16(void) { check_golden("mamba2_bf16", "mamba2_bf16", NULL); }
/* Cases from tools/mamba2_ref (our float64 reference of Part C, checked there against the
 * official golden cases to ~1e-6): shapes the official cases do not have. */
static void test_mamba2_odd(void) { check_golden("mamba2_odd", "mamba2_odd", NULL); }
static void test_mamba2_long(void) { check_golden("mamba2_long", "mamba2_long", NULL); }
static void test_mamba2_nonorm(void) { check_golden("mamba2_nonorm", "mamba2_nonorm", NULL); }
static void test_mamba2_odd_recurrent(void)
{
    check_golden("mamba2_odd", "mamba2_odd_rec", "--disable-pass ssd-chunked --chunk 7");
}

static void test_mamba2_recurrent_only(void)
{
    check_golden("mamba2_tiny", "mamba2_tiny_rec", "--disable-pass ssd-chunked");
}
static void test_mamba2_small_chunks(void)
{
    check_golden("mamba2_tiny", "mamba2_tiny_c5", "--chunk 5 -O1");
}

/* Deterministic pseudo-random tokens in [0, vocab). */
static int32_t *random_tokens(int batch, int len, int vocab, unsigned seed)
{
    int32_t *ids = malloc(sizeof *ids * (size_t)batch * len);
    for (int i = 0; i < batch * len; i++) {
        seed = seed * 1103515245u + 12345u;
        ids[i] = (int32_t)((seed >> 16) % (unsigned)vocab);
    }
    return ids;
}

/* Chunked vs recurrent form on the same long sequences (40 and 515 tokens, batch 3; not
 * multiples of the block length or of the call length 128), for the shapes of three cases
 * (tiny: block 8; odd: ngroups 2, headdim 24, d_state 24, block 16; long: ngroups 2, headdim 8,
 * chunk_size 48, so blocks of 16): forward of each build, the step of the recurrent one, the chunked build in
 * pieces, and the chunked forward bit for bit the same with 1, 2 and 3 threads. */
static void forms_agree(const char *name)
{
    Model ch, rec;
    char p_ch[64], p_rec[64];
    snprintf(p_ch, sizeof p_ch, "%s_lch", name);
    snprintf(p_rec, sizeof p_rec, "%s_lrec", name);
    CU_ASSERT_FATAL(model_open(&ch, name, p_ch, NULL, NULL));
    CU_ASSERT_FATAL(model_open(&rec, name, p_rec, "--disable-pass ssd-chunked", NULL));
    int lens[2] = {40, 515};
    for (int k = 0; k < 2; k++) {
        int len = lens[k], v = ch.a.vocab_padded();
        size_t n = (size_t)3 * len * v;
        int32_t *ids = random_tokens(3, len, ch.a.vocab_size(), 7u + (unsigned)k);
        float *a = run_forward(&ch, ids, 3, len, NULL, 0, 2);
        float *b = run_forward(&rec, ids, 3, len, NULL, 0, 1);
        float *s = run_steps(&rec, ids, 3, len, 3);
        int cuts[2] = {3, len / 2 + 1};
        float *p = run_forward(&ch, ids, 3, len, cuts, 2, 1);
        double d_form = max_abs_diff(a, b, n), d_step = max_abs_diff(a, s, n);
        double d_pieces = max_abs_diff(a, p, n);
        for (int threads = 1; threads <= 3; threads += 2) {
            float *t = run_forward(&ch, ids, 3, len, NULL, 0, threads);
            CU_ASSERT_EQUAL(memcmp(t, a, n * sizeof *t), 0);
            free(t);
        }
        printf("\n    %s, %d tokens: |chunked - recurrent| %.2e, |chunked - step| %.2e, "
               "|pieces - whole| %.2e ", name, len, d_form, d_step, d_pieces);
        CU_ASSERT(d_form <= SELF_TOL);
        CU_ASSERT(d_step <= SELF_TOL);
        CU_ASSERT(d_pieces <= SELF_TOL);
        free(ids); free(a); free(b); free(s); free(p);
    }
    model_close(&ch);
    model_close(&rec);
}

static void test_mamba2_long_forms_agree(void) { forms_agree("mamba2_tiny"); }
static void test_mamba2_odd_forms_agree(void) { forms_agree("mamba2_odd"); }
static void test_mamba2_long_case_forms_agree(void) { forms_agree("mamba2_long"); }

/* The chunked form's tiles at each vector width (--target-cpu x86-64: 4 floats, x86-64-v3:
 * 8, this machine's: 16 with AVX-512): column panels, narrow edge vectors (headdim 24 and 8)
 * and the register transposes differ. The golden forward (40 tokens of mamba2_odd, 512 of
 * mamba2_long), whole and in pieces, to 1e-5; 3 threads bit for bit as 1. */
static void test_mamba2_chunked_vector_widths(void)
{
    static const char *const cases[2] = {"mamba2_odd", "mamba2_long"};
    static const char *const cpus[3] = {"x86-64", "x86-64-v3", NULL};
    for (int c = 0; c < 2; c++)
        for (int w = 0; w < 3; w++) {
            Golden g;
            Model md;
            char prefix[64], flags[64] = "";
            snprintf(prefix, sizeof prefix, "%s_w%d", cases[c], w);
            if (cpus[w]) snprintf(flags, sizeof flags, "--target-cpu %s", cpus[w]);
            CU_ASSERT_FATAL(golden_load_case(&g, cases[c]));
            CU_ASSERT_FATAL(model_open(&md, cases[c], prefix, flags, NULL));
            size_t n = (size_t)g.batch * g.len * g.vocab;
            int cuts[3] = {5, 21, 37}; /* calls of 5, 16, 16 and the rest */
            float *f = run_forward(&md, g.ids, g.batch, g.len, NULL, 0, 1);
            float *p = run_forward(&md, g.ids, g.batch, g.len, cuts, 3, 1);
            float *t = run_forward(&md, g.ids, g.batch, g.len, NULL, 0, 3);
            double d_fwd = max_abs_diff(f, g.logits, n), d_pieces = max_abs_diff(p, g.logits, n);
            printf("\n    %s at %s: |forward - golden| %.2e, |pieces - golden| %.2e ", cases[c],
                   cpus[w] ? cpus[w] : "native", d_fwd, d_pieces);
            CU_ASSERT(d_fwd <= GOLDEN_TOL);
            CU_ASSERT(d_pieces <= GOLDEN_TOL);
            CU_ASSERT_EQUAL(memcmp(t, f, n * sizeof *t), 0);
            free(f); free(p); free(t);
            model_close(&md);
            st_close(g.io);
        }
}

/* The golden weights rewritten: `rename` maps old -> new names (NULL new = drop); `reshape`
 * gets its first two dims swapped (1-D: one element short). */
static void write_weights(const char *name, const char *out, const char *const (*rename)[2],
                          int n_rename, const char *reshape)
{
    char w[600];
    snprintf(w, sizeof w, "%s/golden/%s/model.safetensors", test_srcdir(), name);
    StFile *f;
    CU_ASSERT_EQUAL_FATAL(st_open(w, &f), 0);
    int n = st_count(f), k = 0;
    StWriteTensor *t = calloc((size_t)n, sizeof *t);
    int64_t (*shapes)[ST_MAX_RANK] = calloc((size_t)n, sizeof *shapes);
    for (int i = 0; i < n; i++) {
        const StTensor *src = st_at(f, i);
        const char *to = src->name;
        bool drop = false;
        for (int r = 0; r < n_rename; r++)
            if (strcmp(src->name, rename[r][0]) == 0) {
                to = rename[r][1];
                drop = !to;
            }
        if (drop) continue;
        memcpy(shapes[k], src->shape, sizeof shapes[k]);
        if (reshape && strcmp(src->name, reshape) == 0) {
            if (src->rank >= 2) {
                int64_t tmp = shapes[k][0];
                shapes[k][0] = shapes[k][1];
                shapes[k][1] = tmp;
            } else {
                shapes[k][0]--;
            }
        }
        t[k++] = (StWriteTensor){to, src->dtype, src->rank, shapes[k - 1], src->data};
    }
    CU_ASSERT_EQUAL(st_write(out, t, k, NULL), 0);
    free(t);
    free(shapes);
    st_close(f);
}

/* A checkpoint saved by transformers' Mamba2ForCausalLM: `backbone.embeddings.weight`, the
 * tied head not stored. It opens and gives the official logits. */
static void test_mamba2_hf_names(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/out/mamba2_hf.safetensors", test_builddir());
    static const char *const hf[2][2] = {{"backbone.embedding.weight", "backbone.embeddings.weight"},
                                         {"lm_head.weight", NULL}};
    write_weights("mamba2_tiny", path, hf, 2, NULL);
    Golden g;
    Model md;
    CU_ASSERT_FATAL(golden_load_case(&g, "mamba2_tiny"));
    CU_ASSERT_FATAL(model_open(&md, "mamba2_tiny", "mamba2_hf", NULL, path));
    size_t n = (size_t)g.batch * g.len * g.vocab;
    float *fwd = run_forward(&md, g.ids, g.batch, g.len, NULL, 0, 1);
    double d = max_abs_diff(fwd, g.logits, n);
    printf("\n    HF names: |forward - official| %.2e ", d);
    CU_ASSERT(d <= GOLDEN_TOL);
    free(fwd);
    model_close(&md);
    st_close(g.io);
    unlink(path);
}

/* Each Mamba-2 tensor missing, and misshapen, is named in the error with both shapes. */
static void test_mamba2_tensor_errors_are_named(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/out/mamba2_variant.safetensors", test_builddir());
    Model md;
    CU_ASSERT_FATAL(model_open(&md, "mamba2_tiny", "mamba2_errs", NULL, NULL));
    static const char *const names[] = {
        "backbone.layers.1.mixer.dt_bias", "backbone.layers.0.mixer.A_log",
        "backbone.layers.1.mixer.D", "backbone.layers.0.mixer.in_proj.weight",
        "backbone.layers.1.mixer.conv1d.weight", "backbone.layers.0.mixer.conv1d.bias",
        "backbone.layers.1.mixer.norm.weight", "backbone.layers.0.mixer.out_proj.weight",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *const drop[1][2] = {{names[i], NULL}};
        void *m = NULL;
        write_weights("mamba2_tiny", path, drop, 1, NULL);
        CU_ASSERT_NOT_EQUAL(md.a.open(path, &m), 0);
        CU_ASSERT_PTR_NULL(m);
        CU_ASSERT_PTR_NOT_NULL(strstr(md.a.last_error(), names[i]));
        CU_ASSERT_PTR_NOT_NULL(strstr(md.a.last_error(), "missing"));
        write_weights("mamba2_tiny", path, NULL, 0, names[i]);
        CU_ASSERT_NOT_EQUAL(md.a.open(path, &m), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(md.a.last_error(), names[i]));
        CU_ASSERT_PTR_NOT_NULL(strstr(md.a.last_error(), "shape"));
    }
    CU_ASSERT_PTR_NOT_NULL(strstr(md.a.last_error(), "[64, 128]"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md.a.last_error(), "[128, 64]"));
    unlink(path);
    model_close(&md);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    CU_pSuite golden = CU_add_suite("mamba2", NULL, NULL);
    TEST_ADD(golden, test_mamba2_tiny);
    TEST_ADD(golden, test_mamba2_bf16);
    TEST_ADD(golden, test_mamba2_recurrent_only);
    TEST_ADD(golden, test_mamba2_odd);
    TEST_ADD(golden, test_mamba2_odd_recurrent);
    TEST_ADD(golden, test_mamba2_long);
    TEST_ADD(golden, test_mamba2_nonorm);
    TEST_ADD(golden, test_mamba2_small_chunks);
    TEST_ADD(golden, test_mamba2_long_forms_agree);
    TEST_ADD(golden, test_mamba2_odd_forms_agree);
    TEST_ADD(golden, test_mamba2_long_case_forms_agree);
    TEST_ADD(golden, test_mamba2_chunked_vector_widths);
    TEST_ADD(golden, test_mamba2_hf_names);
    TEST_ADD(golden, test_mamba2_tensor_errors_are_named);
    return test_run_all();
}
