/* test_narrow.c - narrow weights (bf16, f16, q8) end to end, and the q8 loader's checks.
 *
 * For each golden case and weight type T: `mxc convert` stores the golden weights in T, then
 * the F32 build and the T build both run on that file. The F32 build widens (or dequantises)
 * the file's matrices exactly at open, so it computes with the very values the T build reads
 * in place: the two must agree to 1e-5 (activations stay f32 in every path). The T build
 * is also run on the original F32 file (rounded or quantised once at open, the same way
 * convert does: identical logits), checked for step = forward = forward in pieces, and for
 * identical bits on 1, 2 and 3 threads. Its distance to the official F32 logits is printed
 * (the accuracy the docs quote). Some cases are also built for x86-64 (4 lanes) and
 * x86-64-v3 (8 lanes) besides the host. The q8 loader tests write hostile files with
 * st_write and check that open refuses each with the tensor's name. */
#include <dlfcn.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model_api.h"
#include "runtime/bind.h"
#include "runtime/mxrt.h"
#include "runtime/narrow.h"
#include "runtime/safetensors.h"
#include "testutil.h"

#define SELF_TOL 1e-5

/* max_abs_diff: model_api.c (NaN counts as an infinite difference) */

static const char *out_dir(void)
{
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/out", test_builddir());
    mkdir(dir, 0777);
    return dir;
}

static int build(const char *spec, const char *prefix, const char *flags, char *so, size_t len)
{
    char cmd[2048];
    snprintf(so, len, "%s/lib%s.so", out_dir(), prefix);
    snprintf(cmd, sizeof cmd, "'%s' build '%s' -o '%s' --prefix %s %s", mxc_path(), spec, so,
             prefix, flags ? flags : "");
    return run_command(cmd);
}

/* A loaded model and one state. */
typedef struct Loaded {
    Api a;
    void *m, *s;
} Loaded;

static bool load(Loaded *l, const char *so, const char *prefix, const char *weights, int batch)
{
    memset(l, 0, sizeof *l);
    if (!api_load(&l->a, so, prefix)) return false;
    if (l->a.open(weights, &l->m) != 0) {
        fprintf(stderr, "%s: open %s: %s\n", prefix, weights, l->a.last_error());
        return false;
    }
    return l->a.state_new(l->m, batch, &l->s) == 0;
}

static void unload(Loaded *l)
{
    if (l->a.so) {
        l->a.state_free(l->s);
        l->a.close(l->m);
        dlclose(l->a.so);
    }
}

static float *forward(Loaded *l, const Golden *g)
{
    float *out = malloc(sizeof *out * (size_t)g->batch * g->len * g->vocab);
    l->a.state_reset(l->s);
    CU_ASSERT_EQUAL(l->a.forward(l->m, l->s, g->ids, g->len, out), 0);
    return out;
}

/* Token by token, re-packed as [batch][len][vocab]. */
static float *stepwise(Loaded *l, const Golden *g)
{
    float *out = malloc(sizeof *out * (size_t)g->batch * g->len * g->vocab);
    float *lg = malloc(sizeof *lg * (size_t)g->batch * g->vocab);
    int32_t *tok = malloc(sizeof *tok * (size_t)g->batch);
    l->a.state_reset(l->s);
    for (int t = 0; t < g->len; t++) {
        for (int b = 0; b < g->batch; b++) tok[b] = g->ids[b * g->len + t];
        CU_ASSERT_EQUAL(l->a.step(l->m, l->s, tok, lg), 0);
        for (int b = 0; b < g->batch; b++)
            memcpy(out + ((size_t)b * g->len + t) * g->vocab, lg + (size_t)b * g->vocab,
                   sizeof *lg * (size_t)g->vocab);
    }
    free(lg);
    free(tok);
    return out;
}

/* Forward in three pieces (cut after 1 and len/2 positions), re-packed. */
static float *in_pieces(Loaded *l, const Golden *g)
{
    size_t v = (size_t)g->vocab;
    float *out = malloc(sizeof *out * (size_t)g->batch * g->len * v);
    int cuts[4] = {0, 1, g->len / 2, g->len};
    l->a.state_reset(l->s);
    for (int c = 0; c < 3; c++) {
        int from = cuts[c], n = cuts[c + 1] - cuts[c];
        if (n <= 0) continue;
        int32_t *tok = malloc(sizeof *tok * (size_t)g->batch * n);
        float *lg = malloc(sizeof *lg * (size_t)g->batch * n * v);
        for (int b = 0; b < g->batch; b++) memcpy(tok + b * n, g->ids + b * g->len + from, sizeof *tok * (size_t)n);
        CU_ASSERT_EQUAL(l->a.forward(l->m, l->s, tok, n, lg), 0);
        for (int b = 0; b < g->batch; b++)
            memcpy(out + ((size_t)b * g->len + from) * v, lg + (size_t)b * n * v, sizeof *lg * (size_t)n * v);
        free(tok);
        free(lg);
    }
    return out;
}

/* Has this run built `prefix` already? (The f32 build of a case serves every type.) */
static bool built_here(const char *prefix)
{
    static char seen[64][160];
    static int n;
    for (int i = 0; i < n; i++)
        if (strcmp(seen[i], prefix) == 0) return true;
    if (n < 64) snprintf(seen[n++], sizeof seen[0], "%s", prefix);
    return false;
}

/* One golden case at weight type `type`, built with extra flags `cpu` (a --target-cpu, or
 * ""); `tag` keeps the prefixes of the widths apart. Returns the largest |T - official|. */
static double check_case(const char *name, const char *type, const char *cpu, const char *tag)
{
    char dir[512], spec[600], orig[600], conv[600], cmd[3000], so_f[1024], so_n[1024];
    char pf[160], pn[160], flags[300];
    snprintf(dir, sizeof dir, "%s/golden/%s", test_srcdir(), name);
    snprintf(spec, sizeof spec, "%s/model.mx", dir);
    snprintf(orig, sizeof orig, "%s/model.safetensors", dir);
    snprintf(conv, sizeof conv, "%s/%s_%s.safetensors", out_dir(), name, type);
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' '%s' --weight-type %s -o '%s' 2>/dev/null",
             mxc_path(), spec, orig, type, conv);
    if (run_command(cmd) != 0) {
        CU_FAIL("mxc convert failed");
        return INFINITY;
    }
    snprintf(pf, sizeof pf, "n_%s_f32%s", name, tag);
    snprintf(pn, sizeof pn, "n_%s_%s%s", name, type, tag);
    snprintf(flags, sizeof flags, "%s", cpu);
    if (!built_here(pf) && build(spec, pf, flags, so_f, sizeof so_f) != 0) {
        CU_FAIL("f32 build failed");
        return INFINITY;
    }
    snprintf(so_f, sizeof so_f, "%s/lib%s.so", out_dir(), pf);
    snprintf(flags, sizeof flags, "%s --weight-type %s", cpu, type);
    if (build(spec, pn, flags, so_n, sizeof so_n) != 0) {
        CU_FAIL("narrow build failed");
        return INFINITY;
    }
    Golden g;
    CU_ASSERT_FATAL(golden_load(&g, dir));
    size_t n = (size_t)g.batch * g.len * g.vocab;
    Loaded ref, nar, nar_orig;
    CU_ASSERT_FATAL(load(&ref, so_f, pf, conv, g.batch));
    CU_ASSERT_FATAL(load(&nar, so_n, pn, conv, g.batch));
    CU_ASSERT_FATAL(load(&nar_orig, so_n, pn, orig, g.batch));

    float *want = forward(&ref, &g);
    float *got = forward(&nar, &g);
    float *got_orig = forward(&nar_orig, &g);
    float *stp = stepwise(&nar, &g);
    float *pieces = in_pieces(&nar, &g);
    double d_ref = max_abs_diff(got, want, n), d_orig = max_abs_diff(got_orig, got, n);
    double d_step = max_abs_diff(stp, got, n), d_pieces = max_abs_diff(pieces, got, n);
    double d_official = max_abs_diff(got, g.logits, n);
    for (int threads = 1; threads <= 3; threads++) {
        CU_ASSERT_EQUAL(nar.a.set_threads(nar.s, threads), 0);
        float *again = forward(&nar, &g);
        CU_ASSERT_EQUAL(memcmp(again, got, n * sizeof *got), 0);
        free(again);
        float *again_step = stepwise(&nar, &g);
        CU_ASSERT_EQUAL(memcmp(again_step, stp, n * sizeof *stp), 0);
        free(again_step);
    }
    printf("\n    %s %s%s: |%s - f32 on the same weights| %.2e, |converted at open - stored| "
           "%.2e, |step - forward| %.2e, |pieces - forward| %.2e, |%s - official f32| %.2e ",
           name, type, tag, type, d_ref, d_orig, d_step, d_pieces, type, d_official);
    CU_ASSERT(d_ref <= SELF_TOL);
    CU_ASSERT(d_orig == 0);
    CU_ASSERT(d_step <= SELF_TOL);
    CU_ASSERT(d_pieces <= SELF_TOL);
    free(want); free(got); free(got_orig); free(stp); free(pieces);
    unload(&ref);
    unload(&nar);
    unload(&nar_orig);
    st_close(g.io);
    return d_official;
}

static const char *const cases[] = {"mamba_tiny", "mamba_odd", "mamba_ln_mlp", "mamba_long",
                                    "mamba2_tiny", "mamba2_odd", "mamba2_long", "xlstm_large_tiny",
                                    "mlstm_tiny", "mlstm_small", "mlstm_2h", "slstm_tiny",
                                    "slstm_all", "xlstm_mixed", "xlstm_smmsm"};
enum { N_CASES = sizeof cases / sizeof cases[0] };

/* $MXC_NARROW_ONLY=CASE limits the golden suite to one case (while debugging). */
static bool selected(const char *name)
{
    const char *only = getenv("MXC_NARROW_ONLY");
    return !only || !*only || strcmp(only, name) == 0;
}

static void check_all(const char *type)
{
    for (int i = 0; i < N_CASES; i++)
        if (selected(cases[i])) check_case(cases[i], type, "", "");
}

static void test_bf16_golden(void) { check_all("bf16"); }

/* Checkpoints the official code stored in BF16 (tests/golden/mamba2_bf16, xlstm_large_bf16:
 * every tensor BF16, the logits computed in f32 from exactly those values): the bf16 build
 * reads the matrices in place and must match the official logits like the f32 build, which
 * widens everything. */
static void check_stored_bf16(const char *name)
{
    char dir[512], spec[600], weights[600], so_f[1024], so_b[1024], pf[160], pb[160];
    snprintf(dir, sizeof dir, "%s/golden/%s", test_srcdir(), name);
    snprintf(spec, sizeof spec, "%s/model.mx", dir);
    snprintf(weights, sizeof weights, "%s/model.safetensors", dir);
    snprintf(pf, sizeof pf, "n_%s_f32", name);
    snprintf(pb, sizeof pb, "n_%s_bf16", name);
    if (!selected(name)) return;
    CU_ASSERT_EQUAL_FATAL(build(spec, pf, "", so_f, sizeof so_f), 0);
    CU_ASSERT_EQUAL_FATAL(build(spec, pb, "--weight-type bf16", so_b, sizeof so_b), 0);
    Golden g;
    CU_ASSERT_FATAL(golden_load(&g, dir));
    size_t n = (size_t)g.batch * g.len * g.vocab;
    Loaded f, b;
    CU_ASSERT_FATAL(load(&f, so_f, pf, weights, g.batch));
    CU_ASSERT_FATAL(load(&b, so_b, pb, weights, g.batch));
    float *lf = forward(&f, &g), *lb = forward(&b, &g), *sb = stepwise(&b, &g);
    double d_f = max_abs_diff(lf, g.logits, n), d_b = max_abs_diff(lb, g.logits, n);
    double d_fb = max_abs_diff(lb, lf, n), d_step = max_abs_diff(sb, lb, n);
    printf("\n    %s stored BF16: |f32 build - official| %.2e, |bf16 build - official| %.2e, "
           "|bf16 - f32 build| %.2e, |step - forward| %.2e ", name, d_f, d_b, d_fb, d_step);
    CU_ASSERT(d_b <= SELF_TOL);
    CU_ASSERT(d_fb <= SELF_TOL);
    CU_ASSERT(d_step <= SELF_TOL);
    free(lf); free(lb); free(sb);
    unload(&f);
    unload(&b);
    st_close(g.io);
}

static void test_stored_bf16_golden(void)
{
    check_stored_bf16("mamba2_bf16");
    check_stored_bf16("xlstm_large_bf16");
}

static void test_f16_golden(void) { check_all("f16"); }
static void test_q8_golden(void) { check_all("q8"); }

/* The portable paths: 4 and 8 lanes (f16 without F16C at 4 lanes). */
static void test_vector_widths(void)
{
    const char *types[] = {"bf16", "f16", "q8"};
    for (int t = 0; t < 3; t++)
        for (int c = 0; c < 2; c++) {
            /* mamba_odd's odd sizes exercise every tail, but no q8 fits its blocks */
            const char *some[] = {t == 2 ? "mamba_long" : "mamba_odd", "xlstm_mixed"};
            if (!selected(some[c])) continue;
            check_case(some[c], types[t], "--target-cpu x86-64", "_v1");
            check_case(some[c], types[t], "--target-cpu x86-64-v3", "_v3");
        }
}

/* --- the q8 loader, through bind_weights on a hand-made descriptor --------------------- */

static const MxrtTensorSpec q8_specs[] = {
    {.name = "w", .rank = 2, .dims = {4, 64}},
    {.name = "w", .rank = 2, .dims = {4, 2}},
    {.name = "g", .rank = 1, .dims = {64}},
    {.name = "h", .rank = 2, .dims = {4, 64}},
};
static const int32_t q8_dtypes[] = {MXRT_DTYPE_Q8, MXRT_DTYPE_Q8_SCALES, MXRT_DTYPE_F32,
                                    MXRT_DTYPE_BF16};
static const MxrtModelDesc q8_desc = {.abi_version = MXRT_ABI_VERSION, .n_weights = 4,
                                      .name = "q8test", .weights = q8_specs,
                                      .weight_dtypes = q8_dtypes};

typedef struct Q8File {
    int8_t q[256];
    float scales[8];
    float g[64];
    uint16_t h[256];
    int64_t wshape[2], sshape[2], gshape[1];
    const char *meta[7];
    StWriteTensor t[4];
    int n;
} Q8File;

static void q8_file_init(Q8File *f)
{
    memset(f, 0, sizeof *f);
    for (int i = 0; i < 256; i++) {
        f->q[i] = (int8_t)((i * 37) % 255 - 127);
        f->h[i] = narrow_f32_to_bf16((float)i / 64.0f);
    }
    for (int i = 0; i < 8; i++) f->scales[i] = 0.01f * (float)(i + 1);
    for (int i = 0; i < 64; i++) f->g[i] = 1.0f;
    f->wshape[0] = 4; f->wshape[1] = 64;
    f->sshape[0] = 4; f->sshape[1] = 2;
    f->gshape[0] = 64;
    const char *meta[7] = {NARROW_META_FORMAT, "q8", NARROW_META_Q8_VERSION, "1", NARROW_META_Q8_BLOCK, "32", NULL};
    memcpy(f->meta, meta, sizeof meta);
    f->t[0] = (StWriteTensor){"g", ST_F32, 1, f->gshape, f->g};
    f->t[1] = (StWriteTensor){"w.q8_scales", ST_F32, 2, f->sshape, f->scales};
    f->t[2] = (StWriteTensor){"h", ST_BF16, 2, f->wshape, f->h};
    f->t[3] = (StWriteTensor){"w", ST_I8, 2, f->wshape, f->q};
    f->n = 4;
}

/* Write f, bind it; returns bind's status and leaves the message for the caller. */
static int q8_bind(const Q8File *f, BoundWeights **b)
{
    char path[600];
    snprintf(path, sizeof path, "%s/q8test.safetensors", out_dir());
    CU_ASSERT_EQUAL_FATAL(st_write(path, f->t, f->n, f->meta[0] ? f->meta : NULL), 0);
    StFile *sf = NULL;
    *b = NULL;
    if (st_open(path, &sf) != 0) return -1;
    int rc = bind_weights(&q8_desc, sf, b);
    if (rc != 0) st_close(sf);
    else st_close(sf); /* the test only looks at the slots' addresses and copies below */
    return rc;
}

static void expect_refused(const Q8File *f, const char *needle)
{
    BoundWeights *b;
    int rc = q8_bind(f, &b);
    CU_ASSERT(rc != 0);
    if (!strstr(mxrt_last_error(), needle))
        fprintf(stderr, "\nexpected '%s' in: %s\n", needle, mxrt_last_error());
    CU_ASSERT_PTR_NOT_NULL(strstr(mxrt_last_error(), needle));
    bind_free(b);
}

static void test_q8_file_in_place(void)
{
    Q8File f;
    q8_file_init(&f);
    char path[600];
    snprintf(path, sizeof path, "%s/q8ok.safetensors", out_dir());
    CU_ASSERT_EQUAL_FATAL(st_write(path, f.t, f.n, f.meta), 0);
    StFile *sf;
    CU_ASSERT_EQUAL_FATAL(st_open(path, &sf), 0);
    BoundWeights *b;
    CU_ASSERT_EQUAL_FATAL(bind_weights(&q8_desc, sf, &b), 0);
    /* q8 values and scales, the bf16 matrix and the f32 gain: all zero-copy */
    CU_ASSERT_EQUAL(bind_copied_count(b), 0);
    CU_ASSERT_PTR_EQUAL(bind_slots(b)[0], st_find(sf, "w")->data);
    CU_ASSERT_PTR_EQUAL(bind_slots(b)[1], st_find(sf, "w.q8_scales")->data);
    CU_ASSERT_PTR_EQUAL(bind_slots(b)[3], st_find(sf, "h")->data);
    bind_free(b);
    st_close(sf);
}

/* An f32 file opened by a q8 / bf16 build: quantised and rounded once, values as convert's. */
static void test_f32_file_converted_at_open(void)
{
    float w[256], h[256], g[64];
    for (int i = 0; i < 256; i++) w[i] = h[i] = sinf((float)i);
    for (int i = 0; i < 64; i++) g[i] = 1;
    int64_t ws[2] = {4, 64}, gs[1] = {64};
    StWriteTensor t[3] = {{"w", ST_F32, 2, ws, w}, {"h", ST_F32, 2, ws, h}, {"g", ST_F32, 1, gs, g}};
    char path[600];
    snprintf(path, sizeof path, "%s/q8f32.safetensors", out_dir());
    CU_ASSERT_EQUAL_FATAL(st_write(path, t, 3, NULL), 0);
    StFile *sf;
    CU_ASSERT_EQUAL_FATAL(st_open(path, &sf), 0);
    BoundWeights *b;
    CU_ASSERT_EQUAL_FATAL(bind_weights(&q8_desc, sf, &b), 0);
    CU_ASSERT_EQUAL(bind_copied_count(b), 3); /* q8 values + scales, bf16 copy */
    int8_t q[256];
    float sc[8];
    CU_ASSERT_EQUAL(narrow_q8_quantise(w, 256, q, sc), -1);
    CU_ASSERT_EQUAL(memcmp(bind_slots(b)[0], q, sizeof q), 0);
    CU_ASSERT_EQUAL(memcmp(bind_slots(b)[1], sc, sizeof sc), 0);
    const uint16_t *hb = (const void *)bind_slots(b)[3];
    for (int i = 0; i < 256; i++) CU_ASSERT_EQUAL(hb[i], narrow_f32_to_bf16(h[i]));
    /* the quantisation error is at most half a step of each block */
    for (int i = 0; i < 256; i++) CU_ASSERT(fabsf((float)q[i] * sc[i / 32] - w[i]) <= 0.5f * sc[i / 32] * 1.0001f);
    bind_free(b);
    st_close(sf);

    /* a weight that q8 cannot hold: refused with the file and the tensor */
    w[200] = INFINITY;
    CU_ASSERT_EQUAL_FATAL(st_write(path, t, 3, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(st_open(path, &sf), 0);
    CU_ASSERT(bind_weights(&q8_desc, sf, &b) != 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(mxrt_last_error(), "q8f32.safetensors: tensor 'w': element 200 is not finite"));
    st_close(sf);
}

static void test_q8_hostile_files(void)
{
    Q8File f;
    q8_file_init(&f);
    f.scales[3] = NAN;
    expect_refused(&f, "'w.q8_scales': scale 3 is NaN");
    q8_file_init(&f);
    f.scales[5] = INFINITY;
    expect_refused(&f, "'w.q8_scales': scale 5 is infinite");
    q8_file_init(&f);
    f.scales[0] = -1;
    expect_refused(&f, "'w.q8_scales': scale 0 is negative");
    q8_file_init(&f); /* scales of the wrong shape */
    f.sshape[0] = 2; f.sshape[1] = 4;
    expect_refused(&f, "q8 scales 'w.q8_scales' have shape [2, 4] but blocks of 32 over 'w' need [4, 2]");
    q8_file_init(&f); /* scales missing */
    f.t[1] = f.t[3];
    f.n = 3;
    expect_refused(&f, "q8 tensor 'w' has no scales (missing tensor 'w.q8_scales')");
    q8_file_init(&f); /* scales of another dtype */
    f.t[1].dtype = ST_I32;
    expect_refused(&f, "q8 scales 'w.q8_scales' have dtype I32, but must be F32");
    q8_file_init(&f); /* I8 in a file that is not q8 */
    f.meta[0] = NULL;
    expect_refused(&f, "tensor 'w' has dtype I8, but the file's __metadata__ does not say");
    q8_file_init(&f); /* another version */
    f.meta[3] = "2";
    expect_refused(&f, "tensor 'w' has dtype I8, but the file's q8 version");
    q8_file_init(&f); /* another block size */
    f.meta[5] = "64";
    expect_refused(&f, "tensor 'w' has dtype I8, but the file's q8 block");
    q8_file_init(&f); /* an I8 tensor where an f32 parameter is needed */
    int8_t gi[64] = {0};
    f.t[0] = (StWriteTensor){"g", ST_I8, 1, f.gshape, gi};
    expect_refused(&f, "tensor 'g' has dtype I8, but this parameter must be stored as floats");
    q8_file_init(&f); /* a q8 matrix whose rows are not whole blocks */
    int64_t odd[2] = {8, 32};
    f.t[3].shape = odd; /* same bytes, other shape: the slot's shape check names it first */
    expect_refused(&f, "tensor 'w' has shape [8, 32] but the model expects [4, 64]");
}

/* A file cut short: refused by st_open with the tensor whose data runs past the end. */
static void test_q8_truncated_file(void)
{
    Q8File f;
    q8_file_init(&f);
    char path[600];
    snprintf(path, sizeof path, "%s/q8cut.safetensors", out_dir());
    CU_ASSERT_EQUAL_FATAL(st_write(path, f.t, f.n, f.meta), 0);
    struct stat st;
    CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
    CU_ASSERT_EQUAL_FATAL(truncate(path, st.st_size - 100), 0);
    StFile *sf = NULL;
    CU_ASSERT(st_open(path, &sf) != 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(mxrt_last_error(), "tensor 'w'"));
    CU_ASSERT_PTR_NOT_NULL(strstr(mxrt_last_error(), "past the end"));
    st_close(sf);
}

static void test_conversions_round_to_nearest_even(void)
{
    CU_ASSERT_EQUAL(narrow_f32_to_bf16(1.0f), 0x3F80);
    CU_ASSERT_EQUAL(narrow_f32_to_bf16(1.00390625f), 0x3F80);   /* tie: to even */
    CU_ASSERT_EQUAL(narrow_f32_to_bf16(1.01171875f), 0x3F82);   /* tie: to even (up) */
    CU_ASSERT_EQUAL(narrow_f32_to_bf16(3.4e38f), 0x7F80);      /* overflow: inf */
    CU_ASSERT(isnan(narrow_bf16_to_f32(narrow_f32_to_bf16(NAN))));
    CU_ASSERT_EQUAL(narrow_f32_to_f16(1.0f), 0x3C00);
    CU_ASSERT_EQUAL(narrow_f32_to_f16(65504.0f), 0x7BFF);
    CU_ASSERT_EQUAL(narrow_f32_to_f16(65520.0f), 0x7C00);
    CU_ASSERT_EQUAL(narrow_f32_to_f16(-2.0f), 0xC000);
    CU_ASSERT_EQUAL(narrow_f32_to_f16(0x1p-24f), 0x0001);       /* smallest subnormal */
    CU_ASSERT_EQUAL(narrow_f32_to_f16(0x1p-25f), 0x0000);       /* tie: to even (zero) */
    CU_ASSERT_EQUAL(narrow_f32_to_f16(0x1.8p-24f), 0x0002);     /* tie: to even (up) */
    CU_ASSERT(isnan(narrow_f16_to_f32(narrow_f32_to_f16(NAN))));
    /* every half survives f16 -> f32 -> f16 */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF)) continue; /* NaNs: quietened */
        CU_ASSERT_EQUAL_FATAL(narrow_f32_to_f16(narrow_f16_to_f32((uint16_t)h)), h);
    }
}

/* mxc convert: q8 falls back to bf16 where blocks do not fit (and says so), no progress
 * when stderr is not a terminal, and a failed conversion leaves no file behind. */
static void test_convert_tool(void)
{
    char spec[600], in[600], out[600], err[600], cmd[3000];
    snprintf(spec, sizeof spec, "%s/golden/mamba_tiny/model.mx", test_srcdir());
    snprintf(in, sizeof in, "%s/golden/mamba_tiny/model.safetensors", test_srcdir());
    snprintf(out, sizeof out, "%s/conv_q8.safetensors", out_dir());
    snprintf(err, sizeof err, "%s/conv_q8.err", out_dir());
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' '%s' --weight-type q8 -o '%s' 2>'%s'", mxc_path(),
             spec, in, out, err);
    CU_ASSERT_EQUAL_FATAL(run_command(cmd), 0);
    StFile *f;
    CU_ASSERT_EQUAL_FATAL(st_open(out, &f), 0);
    const StTensor *ip = st_find(f, "backbone.layers.0.mixer.in_proj.weight");
    const StTensor *dt = st_find(f, "backbone.layers.0.mixer.dt_proj.weight");
    const StTensor *dd = st_find(f, "backbone.layers.0.mixer.D");
    CU_ASSERT(ip && ip->dtype == ST_I8 && st_find(f, "backbone.layers.0.mixer.in_proj.weight.q8_scales"));
    CU_ASSERT(dt && dt->dtype == ST_BF16); /* K = dt_rank = 4: not whole blocks */
    CU_ASSERT(dd && dd->dtype == ST_F32);
    CU_ASSERT_STRING_EQUAL(st_metadata(f, NARROW_META_FORMAT), "q8");
    st_close(f);
    FILE *e = fopen(err, "r");
    char text[8192] = "";
    size_t got = e ? fread(text, 1, sizeof text - 1, e) : 0;
    text[got] = 0;
    if (e) fclose(e);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "'backbone.layers.0.mixer.dt_proj.weight': last dimension 4 "
                                        "is not a multiple of 32, stored as bf16 instead of q8"));
    CU_ASSERT_PTR_NULL(strstr(text, "tensors,")); /* no progress line: not a terminal */

    /* a weight that cannot be quantised: refused, and neither OUT nor OUT.tmp is left */
    float w[128 * 64];
    for (int i = 0; i < 128 * 64; i++) w[i] = 0.5f;
    w[77] = NAN;
    char bad[600], bad_out[600], tmp[700];
    snprintf(bad, sizeof bad, "%s/conv_bad.safetensors", out_dir());
    snprintf(bad_out, sizeof bad_out, "%s/conv_bad_q8.safetensors", out_dir());
    snprintf(tmp, sizeof tmp, "%s.tmp", bad_out);
    unlink(bad_out);
    int64_t shape[2] = {128, 64};
    StWriteTensor t = {"backbone.embedding.weight", ST_F32, 2, shape, w};
    CU_ASSERT_EQUAL_FATAL(st_write(bad, &t, 1, NULL), 0);
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' '%s' --weight-type q8 -o '%s' 2>'%s'", mxc_path(),
             spec, bad, bad_out, err);
    CU_ASSERT_EQUAL(run_command(cmd), 1);
    CU_ASSERT(access(bad_out, F_OK) != 0);
    CU_ASSERT(access(tmp, F_OK) != 0);
    e = fopen(err, "r");
    got = e ? fread(text, 1, sizeof text - 1, e) : 0;
    text[got] = 0;
    if (e) fclose(e);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "tensor 'backbone.embedding.weight': element 77 is not finite"));
}

/* Every tensor of a equals the one of the same name in b: dtype, shape and bytes. */
static bool same_tensors(const StFile *a, const StFile *b)
{
    if (st_count(a) != st_count(b)) return false;
    for (int i = 0; i < st_count(a); i++) {
        const StTensor *x = st_at(a, i), *y = st_find(b, x->name);
        if (!y || x->dtype != y->dtype || x->rank != y->rank || x->nbytes != y->nbytes ||
            memcmp(x->shape, y->shape, sizeof x->shape) != 0 || memcmp(x->data, y->data, x->nbytes) != 0)
            return false;
    }
    return true;
}

/* mxc convert reads a sharded checkpoint (its index, or the folder holding it) exactly as
 * the single file, and takes a model folder as SPEC with its own weights as the input. */
static void test_convert_shards_and_folders(void)
{
    char spec[600], in[600], dir[600], path[700], cmd[3000], whole[700], out[700];
    snprintf(spec, sizeof spec, "%s/golden/mamba_tiny/model.mx", test_srcdir());
    snprintf(in, sizeof in, "%s/golden/mamba_tiny/model.safetensors", test_srcdir());
    snprintf(dir, sizeof dir, "%s/conv_shards", out_dir());
    mkdir(dir, 0755);
    StFile *f;
    CU_ASSERT_EQUAL_FATAL(st_open(in, &f), 0);
    int n = st_count(f), half = n / 2;
    StWriteTensor *w = calloc((size_t)n, sizeof *w);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    FILE *idx = NULL;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    idx = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(idx);
    fputs("{\"metadata\": {}, \"weight_map\": {", idx);
    for (int i = 0; i < n; i++) {
        const StTensor *t = st_at(f, i);
        w[i] = (StWriteTensor){t->name, t->dtype, t->rank, t->shape, t->data};
        fprintf(idx, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "", t->name,
                i < half ? 1 : 2);
    }
    fputs("}}\n", idx);
    fclose(idx);
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    CU_ASSERT_EQUAL_FATAL(st_write(path, w, half, NULL), 0);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    CU_ASSERT_EQUAL_FATAL(st_write(path, w + half, n - half, NULL), 0);
    free(w);
    st_close(f);

    snprintf(whole, sizeof whole, "%s/conv_whole_q8.safetensors", out_dir());
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' '%s' --weight-type q8 -o '%s' 2>/dev/null",
             mxc_path(), spec, in, whole);
    CU_ASSERT_EQUAL_FATAL(run_command(cmd), 0);
    StFile *ref;
    CU_ASSERT_EQUAL_FATAL(st_open(whole, &ref), 0);
    const char *inputs[2] = {"/model.safetensors.index.json", ""}; /* the index, the folder */
    for (int k = 0; k < 2; k++) {
        snprintf(out, sizeof out, "%s/conv_sharded_q8_%d.safetensors", out_dir(), k);
        snprintf(cmd, sizeof cmd, "'%s' convert '%s' '%s%s' --weight-type q8 -o '%s' 2>/dev/null",
                 mxc_path(), spec, dir, inputs[k], out);
        CU_ASSERT_EQUAL(run_command(cmd), 0);
        StFile *g;
        CU_ASSERT_EQUAL_FATAL(st_open(out, &g), 0);
        CU_ASSERT(same_tensors(ref, g));
        st_close(g);
    }
    st_close(ref);

    /* a Hugging Face folder as SPEC: its config imported, its weights converted */
    snprintf(dir, sizeof dir, "%s/conv_hf_folder", out_dir());
    CU_ASSERT_FATAL(write_hf_mamba_folder("mamba_tiny", dir));
    snprintf(out, sizeof out, "%s/conv_hf_bf16.safetensors", out_dir());
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' --weight-type bf16 -o '%s'", mxc_path(), dir, out);
    CU_ASSERT_EQUAL_FATAL(run_command(cmd), 0);
    CU_ASSERT_EQUAL_FATAL(st_open(out, &f), 0);
    const StTensor *e = st_find(f, "backbone.embeddings.weight");
    const StTensor *ip = st_find(f, "backbone.layers.0.mixer.in_proj.weight");
    const StTensor *d = st_find(f, "backbone.layers.0.mixer.D");
    CU_ASSERT(e && e->dtype == ST_BF16);
    CU_ASSERT(ip && ip->dtype == ST_BF16);
    CU_ASSERT(d && d->dtype == ST_F32);
    st_close(f);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    CU_pSuite fmt = CU_add_suite("formats", NULL, NULL);
    TEST_ADD(fmt, test_conversions_round_to_nearest_even);
    TEST_ADD(fmt, test_q8_file_in_place);
    TEST_ADD(fmt, test_f32_file_converted_at_open);
    TEST_ADD(fmt, test_q8_hostile_files);
    TEST_ADD(fmt, test_q8_truncated_file);
    TEST_ADD(fmt, test_convert_tool);
    TEST_ADD(fmt, test_convert_shards_and_folders);
    CU_pSuite golden = CU_add_suite("golden", NULL, NULL);
    TEST_ADD(golden, test_bf16_golden);
    TEST_ADD(golden, test_stored_bf16_golden);
    TEST_ADD(golden, test_f16_golden);
    TEST_ADD(golden, test_q8_golden);
    TEST_ADD(golden, test_vector_widths);
    return test_run_all();
}
