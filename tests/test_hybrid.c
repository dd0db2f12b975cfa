/* test_hybrid.c - hybrid stacks: Mamba, mLSTM and sLSTM blocks in one model.
 *
 * No official implementation builds such models, so there are no golden logits to compare
 * with. The specs in tests/hybrid/ are compiled with the real mxc binary and checked by:
 *
 *  1. golden reproduction through a zero block: a residual block whose output projection is
 *     zero adds exactly 0 to the stream, so a golden model with such a block inserted must
 *     still give the official logits (forward and step). The inserted block has random
 *     weights everywhere else, and a control run with its output projection left random
 *     must change the logits - so the block is really in the stream. One case also renames
 *     the golden xLSTM model into the other family's frame (backbone.*);
 *  2. self-consistency on random weights: forward over the whole sequence vs token-by-token
 *     step vs forward in uneven pieces vs each sequence alone, and bit-identical results
 *     for 1 and 3 threads;
 *  3. layout mismatches: sLSTM weights of the other checkpoint layout are refused by P_open
 *     with a message that names the tensor and both shapes.
 *
 * The weights a model expects (names and shapes) are read from `mxc ir SPEC`, so the test
 * follows the naming rules of ir/lower.c without restating every tensor. */
#include <dlfcn.h>
#include <math.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model_api.h"
#include "runtime/safetensors.h"
#include "testutil.h"

extern char **environ;

/* A zero block adds exactly 0, so the only difference to the official logits is the
 * golden models' own, ~1e-6 (logits of order 1); the bar leaves a margin of 10. */
#define ZERO_BLOCK_TOL 1e-5
/* forward, step and chunked forward run the same arithmetic per position, but the chunk
 * kernel and the step kernel are separately generated and optimised code (reductions are
 * reassociable, so LLVM may sum in another order), which may cost a few float32 ulps per
 * reduction: ~1e-6 on logits of order 1 after five blocks. In practice they agree bit for
 * bit today; the bar allows a legitimate change of summation order, not a wrong state. */
#define SELF_TOL 1e-5
/* The control run (zero block made non-zero) must move the logits by far more than that. */
#define CONTROL_MIN 1e-3

#define BATCH 3
#define LEN 40

/* --- builds: every model is compiled once, all of them at once, before the tests --------- */

typedef struct Build {
    const char *spec;   /* relative to the test source directory */
    const char *prefix; /* C prefix, also the name of the shared object */
    const char *chunk;  /* --chunk, or NULL for the default (64) */
    char so[600];
    int status;         /* mxc's exit status, -1 if it did not run */
} Build;

/* mix5_mamba is built with chunks of 16 positions, so that forward's own splitting of the
 * 40-token sequence (and of the 26-token piece) is crossed too. */
static Build builds[] = {
    {"hybrid/xlstm_mamba_at1.mx", "hy_xlstm_mamba_at1", NULL, "", -1},
    {"hybrid/mamba_mlstm_at1.mx", "hy_mamba_mlstm_at1", NULL, "", -1},
    {"hybrid/mamba_slstm_at1.mx", "hy_mamba_slstm_at1", NULL, "", -1},
    {"hybrid/mamba_named_xlstm.mx", "hy_mamba_named_xlstm", NULL, "", -1},
    {"hybrid/mix5_xlstm.mx", "hy_mix5_xlstm", NULL, "", -1},
    {"hybrid/mix5_mamba.mx", "hy_mix5_mamba", "16", "", -1},
    {"hybrid/mamba2_mamba_at1.mx", "hy_mamba2_mamba_at1", NULL, "", -1},
    {"hybrid/mamba_mamba2_at1.mx", "hy_mamba_mamba2_at1", NULL, "", -1},
    {"hybrid/mix5_mamba2.mx", "hy_mix5_mamba2", "16", "", -1},
    {"golden/slstm_tiny/model.mx", "hy_slstm_vanilla", NULL, "", -1},
    {"golden/slstm_tiny/model_cuda.mx", "hy_slstm_cuda", NULL, "", -1},
};
#define N_BUILDS (int)(sizeof builds / sizeof builds[0])

/* Start every `mxc build` as its own process and wait for all: the builds dominate the
 * test's time and are independent. */
static int build_all(void)
{
    char dir[512], spec[N_BUILDS][600];
    pid_t pid[N_BUILDS];
    snprintf(dir, sizeof dir, "%s/out", test_builddir());
    mkdir(dir, 0777);
    for (int i = 0; i < N_BUILDS; i++) {
        Build *b = &builds[i];
        snprintf(spec[i], sizeof spec[i], "%s/%s", test_srcdir(), b->spec);
        snprintf(b->so, sizeof b->so, "%s/lib%s.so", dir, b->prefix);
        char *argv[] = {(char *)mxc_path(), "build", spec[i], "-o", b->so, "--prefix",
                        (char *)b->prefix, b->chunk ? "--chunk" : NULL, (char *)b->chunk, NULL};
        if (posix_spawnp(&pid[i], argv[0], NULL, NULL, argv, environ) != 0) pid[i] = -1;
    }
    for (int i = 0; i < N_BUILDS; i++) {
        int ws;
        if (pid[i] > 0 && waitpid(pid[i], &ws, 0) == pid[i] && WIFEXITED(ws))
            builds[i].status = WEXITSTATUS(ws);
        if (builds[i].status != 0)
            fprintf(stderr, "mxc build %s: status %d\n", spec[i], builds[i].status);
    }
    return 0; /* a failed build fails the tests that use it, not the others */
}

static const Build *build_of(const char *prefix)
{
    for (int i = 0; i < N_BUILDS; i++)
        if (strcmp(builds[i].prefix, prefix) == 0) return &builds[i];
    return NULL;
}

/* Load the compiled model `prefix`; false (and a failure) if it did not build. */
static bool load_built(Api *a, const char *prefix)
{
    const Build *b = build_of(prefix);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(b->status, 0);
    if (b->status != 0) return false;
    bool ok = api_load(a, b->so, prefix);
    CU_ASSERT(ok);
    return ok;
}

/* --- the weights a model expects, from `mxc ir` -------------------------------------------- */

typedef struct Weight {
    char name[200];
    int rank;
    int64_t shape[ST_MAX_RANK];
    const float *data; /* golden data (not owned) or `own` */
    float *own;
} Weight;

typedef struct WeightList {
    Weight *w;
    int n;
} WeightList;

static int64_t weight_numel(const Weight *w)
{
    int64_t n = 1;
    for (int d = 0; d < w->rank; d++) n *= w->shape[d];
    return n;
}

/* Parse the lines `%N = weight "NAME" [| "ALIAS"] : f32[d0,d1,...]  @wK` of the IR dump. The
 * alias of a tied head is not a tensor of its own and is skipped. */
static bool parse_weight_line(const char *line, Weight *w)
{
    const char *p = strstr(line, " = weight \"");
    if (!p) return false;
    p += strlen(" = weight \"");
    const char *q = strchr(p, '"');
    const char *dims = strstr(line, ": f32[");
    if (!q || !dims || (size_t)(q - p) >= sizeof w->name) return false;
    memset(w, 0, sizeof *w);
    memcpy(w->name, p, (size_t)(q - p));
    dims += strlen(": f32[");
    while (*dims != ']' && w->rank < ST_MAX_RANK) {
        char *end;
        w->shape[w->rank++] = strtoll(dims, &end, 10);
        if (end == dims) return false;
        dims = *end == ',' ? end + 1 : end;
    }
    return *dims == ']';
}

static bool weights_expected(const char *spec_rel, WeightList *out)
{
    char cmd[1400], line[1024];
    snprintf(cmd, sizeof cmd, "'%s' ir '%s/%s'", mxc_path(), test_srcdir(), spec_rel);
    memset(out, 0, sizeof *out);
    FILE *f = popen(cmd, "r");
    if (!f) return false;
    int cap = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, " = weight \"")) continue;
        if (out->n == cap) {
            cap = cap ? 2 * cap : 64;
            out->w = realloc(out->w, sizeof *out->w * (size_t)cap);
        }
        if (!parse_weight_line(line, &out->w[out->n])) {
            fprintf(stderr, "cannot parse IR line: %s", line);
            pclose(f);
            return false;
        }
        out->n++;
    }
    return pclose(f) == 0 && out->n > 0;
}

static void weights_free(WeightList *l)
{
    for (int i = 0; i < l->n; i++) free(l->w[i].own);
    free(l->w);
    memset(l, 0, sizeof *l);
}

static bool weights_write(const WeightList *l, const char *path)
{
    StWriteTensor *t = calloc((size_t)l->n, sizeof *t);
    for (int i = 0; i < l->n; i++)
        t[i] = (StWriteTensor){l->w[i].name, ST_F32, l->w[i].rank, l->w[i].shape, l->w[i].data};
    bool ok = st_write(path, t, l->n, NULL) == 0;
    free(t);
    return ok;
}

/* --- seeded random weights ------------------------------------------------------------------- */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Fill `w` with values of the scale an official init gives (the values depend only on the
 * name and the seed). Mamba norms (.norm, .norm2, norm_f) use the weight as the gain; every
 * xLSTM norm stores an offset (gain 1 + w); A_log = log(1 .. d_state) and D = 1 as mamba_ssm
 * initialises them; dt_proj.bias around -4 (Δ ≈ 0.02); the mLSTM forget-gate bias in 3 .. 6;
 * matrices uniform with scale 1/sqrt(fan-in) (the last dimension); the embedding scaled
 * so that a tied head gives logits of order 1. */
static void weight_init_random(Weight *w, uint64_t seed)
{
    uint64_t s = seed ^ fnv1a(w->name);
    int64_t n = weight_numel(w);
    w->own = malloc(sizeof *w->own * (size_t)(n ? n : 1));
    w->data = w->own;
    const char *name = w->name;
    bool gain = ends_with(name, ".norm.weight") || ends_with(name, ".norm2.weight") ||
                ends_with(name, ".norm_f.weight");
    for (int64_t i = 0; i < n; i++) {
        float u = uniform_pm1(&s), v;
        if (ends_with(name, ".A_log") && w->rank == 1) /* Mamba-2: one A per head */
            v = logf((float)(i % 16 + 1));
        else if (ends_with(name, ".A_log"))
            v = logf((float)(i % w->shape[1] + 1));
        else if (ends_with(name, ".mixer.dt_bias")) /* Mamba-2 */
            v = -4.0f + 0.5f * u;
        else if (ends_with(name, ".D"))
            v = 1.0f;
        else if (ends_with(name, ".dt_proj.bias"))
            v = -4.0f + 0.5f * u;
        else if (ends_with(name, ".learnable_skip"))
            v = 1.0f + 0.1f * u;
        else if (ends_with(name, ".mlstm_cell.fgate.bias"))
            v = 4.5f + 1.5f * u;
        else if (gain)
            v = 1.0f + 0.1f * u;
        else if (strstr(name, "embedding"))
            v = 0.3f * u;
        else if (w->rank == 1)
            v = 0.1f * u;
        else
            v = u / sqrtf((float)w->shape[w->rank - 1]);
        w->own[i] = v;
    }
}

/* --- helpers on logits ----------------------------------------------------------------------- */

static double max_abs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)a[i]) <= m)) m = fabs((double)a[i]);
    return m;
}

/* --- 1. golden reproduction through a zero block ------------------------------------------ */

/* Set every element of the inserted block's tensor whose name ends in `suffix` to `value`. */
typedef struct Override {
    const char *suffix;
    float value;
} Override;

/* A frame tensor of the hybrid taken from another name of the golden file: the golden tensor
 * plus `add` elementwise, or (golden NULL) `add` everywhere. */
typedef struct FrameMap {
    const char *name, *golden;
    float add;
} FrameMap;

/* A golden model with a block of another kind inserted at `at`. Golden blocks keep their
 * order; those from `at` on move up by one. `stack`/`golden_stack` are the block prefixes
 * ("xlstm_block_stack.blocks." or "backbone.layers.") of the hybrid and of the golden file;
 * frame tensors not listed in `frame` keep their names. */
typedef struct ZeroCase {
    const char *spec, *prefix, *golden;
    const char *stack, *golden_stack;
    int at;
    const Override *ov;
    int n_ov;
    const FrameMap *frame;
    int n_frame;
} ZeroCase;

/* The block index of `name` if it lies in the stack, else -1; `rest` gets what follows the
 * index (".mixer.D"). */
static int block_index(const char *name, const char *stack, const char **rest)
{
    size_t k = strlen(stack);
    if (strncmp(name, stack, k) != 0) return -1;
    char *end;
    long i = strtol(name + k, &end, 10);
    if (end == name + k || *end != '.') return -1;
    *rest = end;
    return (int)i;
}

/* Where the hybrid's weight `w` comes from: fills `old` with the golden name (or "" when it
 * is made of `*add` alone) and returns the FrameMap offset to add. */
static float golden_source(const ZeroCase *c, const Weight *w, char *old, size_t len)
{
    const char *rest = NULL;
    int b = block_index(w->name, c->stack, &rest);
    if (b >= 0) {
        snprintf(old, len, "%s%d%s", c->golden_stack, b > c->at ? b - 1 : b, rest);
        return 0;
    }
    for (int k = 0; k < c->n_frame; k++)
        if (strcmp(w->name, c->frame[k].name) == 0) {
            snprintf(old, len, "%s", c->frame[k].golden ? c->frame[k].golden : "");
            return c->frame[k].add;
        }
    snprintf(old, len, "%s", w->name);
    return 0;
}

/* Write the hybrid's weights to `out`: golden tensors under their new names, the inserted
 * block random with the overrides `c->ov` (or, with apply_ov false, all random: the
 * control). */
static bool zero_block_weights(const ZeroCase *c, bool apply_ov, StFile *gf, const char *out)
{
    WeightList l;
    CU_ASSERT_FATAL(weights_expected(c->spec, &l));
    int used = 0, inserted = 0, ov_hits[8] = {0};
    CU_ASSERT_FATAL(c->n_ov <= 8);
    bool ok = true, head_expected = false;
    for (int i = 0; i < l.n; i++) {
        Weight *w = &l.w[i];
        const char *rest;
        head_expected |= strcmp(w->name, "lm_head.weight") == 0;
        if (block_index(w->name, c->stack, &rest) == c->at) { /* the inserted block */
            inserted++;
            weight_init_random(w, 7);
            for (int k = 0; apply_ov && k < c->n_ov; k++)
                if (ends_with(w->name, c->ov[k].suffix)) {
                    for (int64_t j = 0; j < weight_numel(w); j++) w->own[j] = c->ov[k].value;
                    ov_hits[k]++;
                }
            continue;
        }
        char old[sizeof w->name];
        float add = golden_source(c, w, old, sizeof old);
        const StTensor *t = *old ? st_find(gf, old) : NULL;
        if (*old && !t) {
            fprintf(stderr, "%s: golden %s has no tensor '%s' (for '%s')\n", c->spec, c->golden,
                    old, w->name);
            ok = false;
            continue;
        }
        if (t) {
            bool same = t->dtype == ST_F32 && t->rank == w->rank;
            for (int d = 0; same && d < w->rank; d++) same = t->shape[d] == w->shape[d];
            if (!same) {
                fprintf(stderr, "%s: golden '%s' does not fit '%s'\n", c->spec, old, w->name);
                ok = false;
                continue;
            }
            used++;
        }
        if (!t || add != 0) { /* made or shifted: a copy */
            int64_t n = weight_numel(w);
            w->own = malloc(sizeof *w->own * (size_t)(n ? n : 1));
            for (int64_t j = 0; j < n; j++) w->own[j] = (t ? ((const float *)t->data)[j] : 0) + add;
            w->data = w->own;
        } else {
            w->data = t->data;
        }
    }
    /* The hybrid holds the whole golden model: only a tied head's second name is left. */
    int unused = st_count(gf) - used;
    CU_ASSERT(unused == 0 || (unused == 1 && !head_expected && st_find(gf, "lm_head.weight")));
    CU_ASSERT(inserted > 0);
    for (int k = 0; apply_ov && k < c->n_ov; k++) {
        if (ov_hits[k] != 1)
            fprintf(stderr, "%s: override '%s' hit %d tensors\n", c->spec, c->ov[k].suffix, ov_hits[k]);
        CU_ASSERT_EQUAL(ov_hits[k], 1);
    }
    CU_ASSERT(ok);
    ok = ok && weights_write(&l, out);
    weights_free(&l);
    return ok;
}

/* The hybrid with a zero block gives the official logits, forward and step; with the block
 * not zeroed (the control) it does not. */
static void check_zero_block(const ZeroCase *c)
{
    char dir[600], path[800], weights[800], control[800];
    snprintf(dir, sizeof dir, "%s/golden/%s", test_srcdir(), c->golden);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(weights, sizeof weights, "%s/out/%s_zero.safetensors", test_builddir(), c->prefix);
    snprintf(control, sizeof control, "%s/out/%s_control.safetensors", test_builddir(), c->prefix);
    StFile *gf, *io;
    CU_ASSERT_EQUAL_FATAL(st_open(path, &gf), 0);
    snprintf(path, sizeof path, "%s/io.safetensors", dir);
    CU_ASSERT_EQUAL_FATAL(st_open(path, &io), 0);
    const StTensor *ids = st_find(io, "input_ids"), *lg = st_find(io, "logits"),
                   *sl = st_find(io, "step_logits");
    CU_ASSERT_FATAL(ids && lg && sl && ids->dtype == ST_I32 && lg->rank == 3);
    int batch = (int)lg->shape[0], len = (int)lg->shape[1], vocab = (int)lg->shape[2];
    CU_ASSERT_FATAL(zero_block_weights(c, true, gf, weights));
    CU_ASSERT_FATAL(zero_block_weights(c, false, gf, control));

    Api a;
    if (!load_built(&a, c->prefix)) goto out;
    CU_ASSERT_EQUAL(a.vocab_padded(), vocab);
    void *m = NULL, *s = NULL;
    if (a.open(weights, &m) != 0) fprintf(stderr, "%s: open: %s\n", c->prefix, a.last_error());
    CU_ASSERT_FATAL(m != NULL);
    CU_ASSERT_EQUAL_FATAL(a.state_new(m, batch, &s), 0);
    size_t n = (size_t)batch * len * vocab;
    float *fwd = malloc(n * sizeof *fwd), *stp = malloc(n * sizeof *stp);
    CU_ASSERT_EQUAL(a.forward(m, s, ids->data, len, fwd), 0);
    double d_fwd = max_abs_diff(fwd, lg->data, n);
    a.state_reset(s);
    CU_ASSERT_EQUAL(step_all(&a, m, s, ids->data, batch, len, stp), 0);
    double d_step = max_abs_diff(stp, sl->data, n);
    a.state_free(s);
    a.close(m);

    /* control: the same block with its output projection random must show in the logits */
    m = NULL;
    if (a.open(control, &m) != 0) fprintf(stderr, "%s: open: %s\n", c->prefix, a.last_error());
    CU_ASSERT_FATAL(m != NULL);
    CU_ASSERT_EQUAL_FATAL(a.state_new(m, batch, &s), 0);
    CU_ASSERT_EQUAL(a.forward(m, s, ids->data, len, fwd), 0);
    double d_control = max_abs_diff(fwd, lg->data, n);
    a.state_free(s);
    a.close(m);

    printf("\n    %s (%s + zero block at %d): |forward - official| %.2e, |step - official step| "
           "%.2e; control (block not zeroed) %.2e ",
           c->prefix, c->golden, c->at, d_fwd, d_step, d_control);
    CU_ASSERT(d_fwd <= ZERO_BLOCK_TOL);
    CU_ASSERT(d_step <= ZERO_BLOCK_TOL);
    CU_ASSERT(d_control >= CONTROL_MIN);
    free(fwd);
    free(stp);
    dlclose(a.so);
out:
    unlink(weights);
    unlink(control);
    st_close(io);
    st_close(gf);
}

static const Override zero_mamba[] = {{".mixer.out_proj.weight", 0.0f}};
static const Override zero_mlstm[] = {{".xlstm.proj_down.weight", 0.0f}};
/* group-norm gain 1 + w = 0 scales the cell's output to zero; the feed-forward adds 0 */
static const Override zero_slstm[] = {{".xlstm.group_norm.weight", -1.0f},
                                      {".ffn.proj_down.weight", 0.0f}};

/* xlstm_mixed "msmm" + a Mamba block at 1 (LayerNorm with bias: the xlstm family's norm). */
static void test_xlstm_stack_with_zero_mamba_block(void)
{
    ZeroCase c = {"hybrid/xlstm_mamba_at1.mx", "hy_xlstm_mamba_at1", "xlstm_mixed",
                  "xlstm_block_stack.blocks.", "xlstm_block_stack.blocks.", 1, zero_mamba, 1,
                  NULL, 0};
    check_zero_block(&c);
}

/* mamba_tiny + an mLSTM block at 1. */
static void test_mamba_stack_with_zero_mlstm_block(void)
{
    ZeroCase c = {"hybrid/mamba_mlstm_at1.mx", "hy_mamba_mlstm_at1", "mamba_tiny",
                  "backbone.layers.", "backbone.layers.", 1, zero_mlstm, 1, NULL, 0};
    check_zero_block(&c);
}

/* mamba_tiny + an sLSTM block at 1. */
static void test_mamba_stack_with_zero_slstm_block(void)
{
    ZeroCase c = {"hybrid/mamba_slstm_at1.mx", "hy_mamba_slstm_at1", "mamba_tiny",
                  "backbone.layers.", "backbone.layers.", 1, zero_slstm, 2, NULL, 0};
    check_zero_block(&c);
}

/* mamba2_tiny + a Mamba (v1) block at 1, and mamba_tiny + a Mamba-2 block at 1. */
static void test_mamba2_stack_with_zero_mamba_block(void)
{
    ZeroCase c = {"hybrid/mamba2_mamba_at1.mx", "hy_mamba2_mamba_at1", "mamba2_tiny",
                  "backbone.layers.", "backbone.layers.", 1, zero_mamba, 1, NULL, 0};
    check_zero_block(&c);
}

static void test_mamba_stack_with_zero_mamba2_block(void)
{
    ZeroCase c = {"hybrid/mamba_mamba2_at1.mx", "hy_mamba_mamba2_at1", "mamba_tiny",
                  "backbone.layers.", "backbone.layers.", 1, zero_mamba, 1, NULL, 0};
    check_zero_block(&c);
}

/* xlstm_mixed under mamba_ssm naming, with a zero Mamba block at 1: the xLSTM blocks keep
 * their own (offset, bias-free) norms in either family, and the family's final LayerNorm
 * with gain 1 + w and bias 0 is xLSTM's post_blocks_norm. */
static void test_xlstm_blocks_under_mamba_naming(void)
{
    static const FrameMap frame[] = {
        {"backbone.embedding.weight", "token_embedding.weight", 0.0f},
        {"backbone.norm_f.weight", "xlstm_block_stack.post_blocks_norm.weight", 1.0f},
        {"backbone.norm_f.bias", NULL, 0.0f},
    };
    ZeroCase c = {"hybrid/mamba_named_xlstm.mx", "hy_mamba_named_xlstm", "xlstm_mixed",
                  "backbone.layers.", "xlstm_block_stack.blocks.", 1, zero_mamba, 1, frame, 3};
    check_zero_block(&c);
}

/* --- 2. self-consistency on random weights ------------------------------------------------- */

static void check_self_consistency(const char *spec, const char *prefix)
{
    char weights[800];
    snprintf(weights, sizeof weights, "%s/out/%s_random.safetensors", test_builddir(), prefix);
    WeightList l;
    CU_ASSERT_FATAL(weights_expected(spec, &l));
    for (int i = 0; i < l.n; i++) weight_init_random(&l.w[i], 11);
    CU_ASSERT_FATAL(weights_write(&l, weights));
    weights_free(&l);

    Api a;
    if (!load_built(&a, prefix)) {
        unlink(weights);
        return;
    }
    void *m = NULL, *s = NULL;
    if (a.open(weights, &m) != 0) fprintf(stderr, "%s: open: %s\n", prefix, a.last_error());
    CU_ASSERT_FATAL(m != NULL);
    CU_ASSERT_EQUAL_FATAL(a.state_new(m, BATCH, &s), 0);
    int vocab = a.vocab_padded();
    int32_t ids[BATCH * LEN];
    uint64_t seed = 5;
    for (int i = 0; i < BATCH * LEN; i++)
        ids[i] = (int32_t)(splitmix64(&seed) % (uint64_t)a.vocab_size());
    size_t n = (size_t)BATCH * LEN * vocab;
    float *fwd = malloc(n * sizeof *fwd), *stp = malloc(n * sizeof *stp),
          *pcs = malloc(n * sizeof *pcs), *again = malloc(n * sizeof *again);
    static const int pieces[] = {1, 13, 26};

    CU_ASSERT_EQUAL(a.set_threads(s, 1), 0);
    CU_ASSERT_EQUAL(a.forward(m, s, ids, LEN, fwd), 0);
    a.state_reset(s);
    CU_ASSERT_EQUAL(step_all(&a, m, s, ids, BATCH, LEN, stp), 0);
    a.state_reset(s);
    CU_ASSERT_EQUAL(forward_pieces(&a, m, s, ids, BATCH, LEN, pieces, 3, pcs), 0);
    double d_step = max_abs_diff(stp, fwd, n), d_pieces = max_abs_diff(pcs, fwd, n);
    double scale = max_abs(fwd, n);

    /* 3 threads: the same bits for forward, step and the pieces */
    CU_ASSERT_EQUAL(a.set_threads(s, 3), 0);
    a.state_reset(s);
    CU_ASSERT_EQUAL(a.forward(m, s, ids, LEN, again), 0);
    bool same_fwd = memcmp(again, fwd, n * sizeof *fwd) == 0;
    a.state_reset(s);
    CU_ASSERT_EQUAL(step_all(&a, m, s, ids, BATCH, LEN, again), 0);
    bool same_step = memcmp(again, stp, n * sizeof *stp) == 0;
    a.state_reset(s);
    CU_ASSERT_EQUAL(forward_pieces(&a, m, s, ids, BATCH, LEN, pieces, 3, again), 0);
    bool same_pieces = memcmp(again, pcs, n * sizeof *pcs) == 0;

    /* each sequence alone (batch 1) as in the batch: per-sequence state and rows are not
     * mixed up between blocks of different kinds */
    double d_rows = 0;
    size_t row = (size_t)LEN * vocab;
    for (int b = 0; b < BATCH; b++) {
        void *s1 = NULL;
        CU_ASSERT_EQUAL_FATAL(a.state_new(m, 1, &s1), 0);
        CU_ASSERT_EQUAL(a.set_threads(s1, 1), 0);
        CU_ASSERT_EQUAL(a.forward(m, s1, ids + b * LEN, LEN, again), 0);
        double d = max_abs_diff(again, fwd + b * row, row);
        if (!(d <= d_rows)) d_rows = d;
        a.state_free(s1);
    }

    printf("\n    %s: max |logit| %.2f, |step - forward| %.2e, |pieces 1+13+26 - forward| %.2e, "
           "|batch 1 - batch 3| %.2e, 1 vs 3 threads: %s ",
           prefix, scale, d_step, d_pieces, d_rows,
           same_fwd && same_step && same_pieces ? "identical" : "DIFFERENT");
    CU_ASSERT(d_rows <= SELF_TOL);
    CU_ASSERT(scale >= 0.1 && scale <= 100); /* logits of order 1, finite */
    CU_ASSERT(d_step <= SELF_TOL);
    CU_ASSERT(d_pieces <= SELF_TOL);
    CU_ASSERT(same_fwd);
    CU_ASSERT(same_step);
    CU_ASSERT(same_pieces);

    free(fwd);
    free(stp);
    free(pcs);
    free(again);
    a.state_free(s);
    a.close(m);
    dlclose(a.so);
    unlink(weights);
}

static void test_self_xlstm_mamba_at1(void) { check_self_consistency("hybrid/xlstm_mamba_at1.mx", "hy_xlstm_mamba_at1"); }
static void test_self_mamba_mlstm_at1(void) { check_self_consistency("hybrid/mamba_mlstm_at1.mx", "hy_mamba_mlstm_at1"); }
static void test_self_mamba_slstm_at1(void) { check_self_consistency("hybrid/mamba_slstm_at1.mx", "hy_mamba_slstm_at1"); }
static void test_self_mix5_mamba2(void) { check_self_consistency("hybrid/mix5_mamba2.mx", "hy_mix5_mamba2"); }
static void test_self_mix5_xlstm(void) { check_self_consistency("hybrid/mix5_xlstm.mx", "hy_mix5_xlstm"); }
static void test_self_mix5_mamba(void) { check_self_consistency("hybrid/mix5_mamba.mx", "hy_mix5_mamba"); }

/* --- 3. sLSTM layout mismatches -------------------------------------------------------------- */

/* P_open of `weights` must fail naming _recurrent_kernel_, the file's shape and the model's. */
static void expect_layout_error(Api *a, const char *weights, const char *have, const char *want)
{
    void *m = (void *)1;
    CU_ASSERT_NOT_EQUAL(a->open(weights, &m), 0);
    CU_ASSERT_PTR_NULL(m);
    const char *e = a->last_error();
    printf("\n    %s ", e);
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "_recurrent_kernel_"));
    const char *h = strstr(e, have), *w = strstr(e, want);
    CU_ASSERT_PTR_NOT_NULL(h);
    CU_ASSERT_PTR_NOT_NULL(w);
    CU_ASSERT(h && w && h < w); /* "has shape HAVE but the model expects WANT" */
    if (m && m != (void *)1) a->close(m);
}

static void test_slstm_layout_mismatch(void)
{
    char vanilla[800], cuda[800];
    snprintf(vanilla, sizeof vanilla, "%s/golden/slstm_tiny/model.safetensors", test_srcdir());
    snprintf(cuda, sizeof cuda, "%s/out/hy_slstm_cuda_layout.safetensors", test_builddir());
    char golden[800];
    snprintf(golden, sizeof golden, "%s/golden/slstm_tiny", test_srcdir());
    CU_ASSERT_FATAL(write_cuda_layout_weights(golden, cuda));
    static const char vanilla_shape[] = "[4, 64, 16]", cuda_shape[] = "[4, 16, 64]";
    Api v, c;
    void *m = NULL;
    if (load_built(&c, "hy_slstm_cuda")) {
        /* layout = cuda spec, vanilla file: refused; its own layout: accepted */
        expect_layout_error(&c, vanilla, vanilla_shape, cuda_shape);
        CU_ASSERT_EQUAL(c.open(cuda, &m), 0);
        c.close(m);
        dlclose(c.so);
    }
    if (load_built(&v, "hy_slstm_vanilla")) {
        /* vanilla spec, cuda-layout file: refused; its own layout: accepted */
        expect_layout_error(&v, cuda, cuda_shape, vanilla_shape);
        m = NULL;
        CU_ASSERT_EQUAL(v.open(vanilla, &m), 0);
        v.close(m);
        dlclose(v.so);
    }
    unlink(cuda);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    CU_pSuite golden = CU_add_suite("hybrid-zero-block", build_all, NULL);
    TEST_ADD(golden, test_xlstm_stack_with_zero_mamba_block);
    TEST_ADD(golden, test_mamba_stack_with_zero_mlstm_block);
    TEST_ADD(golden, test_mamba_stack_with_zero_slstm_block);
    TEST_ADD(golden, test_xlstm_blocks_under_mamba_naming);
    TEST_ADD(golden, test_mamba2_stack_with_zero_mamba_block);
    TEST_ADD(golden, test_mamba_stack_with_zero_mamba2_block);
    CU_pSuite self = CU_add_suite("hybrid-self-consistency", NULL, NULL);
    TEST_ADD(self, test_self_xlstm_mamba_at1);
    TEST_ADD(self, test_self_mamba_mlstm_at1);
    TEST_ADD(self, test_self_mamba_slstm_at1);
    TEST_ADD(self, test_self_mix5_xlstm);
    TEST_ADD(self, test_self_mix5_mamba);
    TEST_ADD(self, test_self_mix5_mamba2);
    CU_pSuite layout = CU_add_suite("hybrid-layout-errors", NULL, NULL);
    TEST_ADD(layout, test_slstm_layout_mismatch);
    return test_run_all();
}
