/* test_robust.c - hostile use of compiled models (issue 6).
 *
 * Every model here is compiled from a spec with the real mxc binary and loaded with dlopen,
 * as a user would. Four suites:
 *   misuse   - the C API given NULL pointers, foreign, stale or closed handles, bad sizes,
 *              token ids outside the vocabulary, weights of another spec: an error with a
 *              message, never a crash, and a failed call leaves the state as it was;
 *   threads  - one model shared by several threads, one state each, gives bit-identical
 *              results to the same work done sequentially; any pool size; small stacks;
 *   numerics - 100,000 recurrent steps per block kind with adversarial but finite weights
 *              stay finite and match the chunked forward; the stabilisers of the exponential
 *              gates are what makes this hold (gate shifts far past exp's float range leave
 *              the output unchanged); NaN/inf in weights: what happens;
 *   edges    - every spec in tests/specs/edge/ either builds and runs correctly (finite,
 *              step == forward == chunked forward) or is refused with a message naming the
 *              offending key, as its `# expect:` line says; endless spec input; compile
 *              time linear in the depth of the stack.
 *
 * Weights for specs without golden files are random (seeded, so runs are repeatable), with
 * the tensor names and shapes read from `mxc ir SPEC`. */
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model_api.h"
#include "runtime/safetensors.h"
#include "testutil.h"

/* ---- running mxc ------------------------------------------------------------------------ */

/* builddir/out/robust, created on first use. */
static const char *out_dir(void)
{
    static char dir[420];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%.400s/out", test_builddir());
        mkdir(dir, 0777);
        strcat(dir, "/robust");
        mkdir(dir, 0777);
    }
    return dir;
}

/* Write `text` to out/robust/<name>.mx; returns the path in `path`. */
static bool write_spec(const char *name, const char *text, char *path, size_t len)
{
    snprintf(path, len, "%s/%s.mx", out_dir(), name);
    FILE *f = fopen(path, "w");
    if (!f)
        return false;
    fputs(text, f);
    return fclose(f) == 0;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    fclose(f);
    return buf;
}

/* Does the last error contain `needle`? Prints the message when not, to ease debugging. */
static bool error_has(const Api *a, const char *needle)
{
    const char *msg = a->last_error();
    if (msg && strstr(msg, needle))
        return true;
    fprintf(stderr, "\n    expected '%s' in the error, got: %s\n", needle, msg ? msg : "(NULL)");
    return false;
}

/* ---- deterministic pseudo-random numbers (splitmix64, model_api.c) ---------------------- */

static void random_tokens(uint64_t *r, int32_t *tok, size_t n, int vocab)
{
    for (size_t i = 0; i < n; i++)
        tok[i] = (int32_t)(splitmix64(r) % (uint64_t)vocab);
}

/* ---- random weights for a spec, named and shaped by `mxc ir` ---------------------------- */

typedef struct Weight {
    char name[200];
    int rank;
    int64_t dims[4];
    int64_t numel;
    float *data;
} Weight;

typedef struct Weights {
    Weight *w;
    int n;
} Weights;

/* The weight table of `spec`, from lines `%N = weight "NAME" [| "ALT"] : f32[D0,D1] @wK`
 * (or the `{stored=[D0,D1]...}` shape of a weight stored in another layout).
 * A tied head is listed once, under its first name. */
static bool ir_weights(const char *spec, Weights *out)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s' ir '%s' 2>/dev/null", mxc_path(), spec);
    FILE *p = popen(cmd, "r");
    memset(out, 0, sizeof *out);
    if (!p)
        return false;
    char line[4096];
    int cap = 0;
    while (fgets(line, sizeof line, p)) {
        char *q = strstr(line, "= weight \"");
        if (!q)
            continue;
        q += strlen("= weight \"");
        char *end = strchr(q, '"');
        /* a weight the checkpoint stores in another layout: {stored=[D0,D1,...], swapped=...} */
        char *stored = strstr(line, "{stored=["), *shape = strstr(line, ": f32[");
        char *d = stored ? stored + strlen("{stored=[") : shape ? shape + strlen(": f32[") : NULL;
        if (!end || !d || (size_t)(end - q) >= sizeof out->w[0].name)
            continue;
        if (out->n == cap)
            out->w = realloc(out->w, sizeof *out->w * (size_t)(cap = cap ? 2 * cap : 64));
        Weight *w = &out->w[out->n++];
        memset(w, 0, sizeof *w);
        memcpy(w->name, q, (size_t)(end - q));
        w->numel = 1;
        while (w->rank < 4 && *d != ']') {
            w->dims[w->rank] = strtoll(d, &d, 10);
            w->numel *= w->dims[w->rank++];
            if (*d == ',')
                d++;
        }
    }
    return pclose(p) == 0 && out->n > 0;
}

static void weights_free(Weights *ws)
{
    for (int i = 0; i < ws->n; i++)
        free(ws->w[i].data);
    free(ws->w);
    memset(ws, 0, sizeof *ws);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Plausible values by role, close to the upstream initialisations: norm gains near their
 * neutral value, Mamba's A_log = log(1..d_state), D = 1, dt biases for dt in [1e-3, 0.1],
 * mLSTM forget biases 3..6, matrices uniform with scale 1/sqrt(fan_in). */
static void weight_init(Weight *w, uint64_t *r)
{
    bool mamba = strncmp(w->name, "backbone.", 9) == 0;
    int64_t last = w->dims[w->rank - 1];
    for (int64_t k = 0; k < w->numel; k++) {
        float u = uniform_pm1(r), v;
        if (ends_with(w->name, "A_log"))
            v = logf((float)(k % last + 1));
        else if (ends_with(w->name, "mixer.D") || ends_with(w->name, "learnable_skip"))
            v = 1.0f;
        else if (ends_with(w->name, "dt_proj.bias")) {
            float dt = expf(logf(1e-3f) + (u + 1) * 0.5f * (logf(0.1f) - logf(1e-3f)));
            v = logf(expm1f(dt));
        } else if (ends_with(w->name, "mlstm_cell.fgate.bias"))
            v = 3.0f + 3.0f * (float)k / (float)(last > 1 ? last - 1 : 1);
        else if (strstr(w->name, "norm") && ends_with(w->name, "weight") && w->rank == 1)
            v = (mamba ? 1.0f : 0.0f) + 0.1f * u;
        else if (w->rank == 1)
            v = 0.1f * u;
        else if (strstr(w->name, "embedding"))
            v = u;
        else
            v = u / sqrtf((float)last);
        w->data[k] = v;
    }
}

/* Called on every weight after the default init, to make it adversarial. */
typedef void (*WeightHook)(Weight *w, void *ctx);

static bool write_weights(const Weights *ws, const char *path)
{
    StWriteTensor *t = calloc(ws->n > 0 ? (size_t)ws->n : 1, sizeof *t);
    for (int i = 0; i < ws->n; i++)
        t[i] = (StWriteTensor){ws->w[i].name, ST_F32, ws->w[i].rank, ws->w[i].dims, ws->w[i].data};
    int rc = st_write(path, t, ws->n, NULL);
    free(t);
    return rc == 0;
}

/* Random weights for `spec` into `path`; `hook` (may be NULL) then edits them. */
static bool make_weights(const char *spec, const char *path, uint64_t seed, WeightHook hook,
                         void *ctx)
{
    Weights ws;
    if (!ir_weights(spec, &ws))
        return false;
    uint64_t r = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (int i = 0; i < ws.n; i++) {
        ws.w[i].data = malloc(sizeof(float) * (size_t)(ws.w[i].numel ? ws.w[i].numel : 1));
        weight_init(&ws.w[i], &r);
        if (hook)
            hook(&ws.w[i], ctx);
    }
    bool ok = write_weights(&ws, path);
    weights_free(&ws);
    return ok;
}

/* ---- comparing logits ------------------------------------------------------------------- */

static bool all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}

/* A model compiled from spec text, with random weights, open. */
typedef struct TinyModel {
    Api api;
    void *m;
    char spec[1024], weights[1024];
} TinyModel;

/* Compile spec text `text` as `name` (with `mxc build` options `extra`, or NULL) and open it
 * with weights from `hook`. */
static bool tiny_open_with(TinyModel *t, const char *name, const char *text, const char *extra,
                           uint64_t seed, WeightHook hook, void *ctx)
{
    char so[1024];
    memset(t, 0, sizeof *t);
    if (!write_spec(name, text, t->spec, sizeof t->spec))
        return false;
    if (model_build(t->spec, name, extra, out_dir(), so, sizeof so) != 0 ||
        !api_load(&t->api, so, name))
        return false;
    snprintf(t->weights, sizeof t->weights, "%s/%s.safetensors", out_dir(), name);
    if (!make_weights(t->spec, t->weights, seed, hook, ctx))
        return false;
    if (t->api.open(t->weights, &t->m) != 0) {
        fprintf(stderr, "open %s: %s\n", t->weights, t->api.last_error());
        return false;
    }
    return true;
}

static bool tiny_open(TinyModel *t, const char *name, const char *text, uint64_t seed,
                      WeightHook hook, void *ctx)
{
    return tiny_open_with(t, name, text, NULL, seed, hook, ctx);
}

static void tiny_close(TinyModel *t)
{
    if (t->m)
        t->api.close(t->m);
    api_unload(&t->api);
}

/* ---- suite: misuse ---------------------------------------------------------------------- */

/* Two compiled models: `rbm` (Mamba, vocabulary 100 padded to 104) and `rbx` (xLSTM, both
 * cell kinds), with their golden weights. */
static Api mm, xm;
static char mm_weights[600], xm_weights[600], odd_weights[600];

/* Shared by the misuse and threads suites; builds once. */
static int misuse_init(void)
{
    static int status = -1;
    if (status >= 0)
        return status;
    status = 1;
    char spec[600], so[600];
    snprintf(spec, sizeof spec, "%s/golden/mamba_odd/model.mx", test_srcdir());
    if (model_build(spec, "rbm", NULL, out_dir(), so, sizeof so) != 0 || !api_load(&mm, so, "rbm"))
        return 1;
    snprintf(spec, sizeof spec, "%s/golden/xlstm_mixed/model.mx", test_srcdir());
    if (model_build(spec, "rbx", NULL, out_dir(), so, sizeof so) != 0 || !api_load(&xm, so, "rbx"))
        return 1;
    snprintf(mm_weights, sizeof mm_weights, "%s/golden/mamba_odd/model.safetensors",
             test_srcdir());
    snprintf(xm_weights, sizeof xm_weights, "%s/golden/xlstm_mixed/model.safetensors",
             test_srcdir());
    snprintf(odd_weights, sizeof odd_weights, "%s/golden/mamba_tiny/model.safetensors",
             test_srcdir());
    return status = 0;
}

static int misuse_clean(void)
{
    api_unload(&mm);
    api_unload(&xm);
    return 0;
}

static void test_null_pointers(void)
{
    Api *a = &mm;
    void *m = (void *)8, *s = (void *)8;
    int32_t tok[2] = {1, 2};
    float lg[2 * 104];

    CU_ASSERT_PTR_NOT_NULL_FATAL(a->last_error());
    CU_ASSERT_NOT_EQUAL(a->open(NULL, &m), 0);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT(error_has(a, "NULL"));
    CU_ASSERT_NOT_EQUAL(a->open(mm_weights, NULL), 0);
    CU_ASSERT(error_has(a, "NULL"));
    CU_ASSERT_NOT_EQUAL(a->open("", &m), 0);
    CU_ASSERT(strlen(a->last_error()) > 0);

    CU_ASSERT_NOT_EQUAL(a->state_new(NULL, 1, &s), 0);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT(error_has(a, "model is NULL"));
    CU_ASSERT_EQUAL_FATAL(a->open(mm_weights, &m), 0);
    CU_ASSERT_NOT_EQUAL(a->state_new(m, 1, NULL), 0);
    CU_ASSERT(error_has(a, "NULL"));
    CU_ASSERT_EQUAL_FATAL(a->state_new(m, 2, &s), 0);

    CU_ASSERT_NOT_EQUAL(a->forward(NULL, s, tok, 1, lg), 0);
    CU_ASSERT(error_has(a, "model is NULL"));
    CU_ASSERT_NOT_EQUAL(a->forward(m, NULL, tok, 1, lg), 0);
    CU_ASSERT(error_has(a, "state is NULL"));
    CU_ASSERT_NOT_EQUAL(a->forward(m, s, NULL, 1, lg), 0);
    CU_ASSERT(error_has(a, "tokens is NULL"));
    CU_ASSERT_NOT_EQUAL(a->forward(m, s, tok, 1, NULL), 0);
    CU_ASSERT(error_has(a, "logits is NULL"));
    CU_ASSERT_NOT_EQUAL(a->forward(NULL, NULL, NULL, 0, NULL), 0);
    CU_ASSERT_NOT_EQUAL(a->step(NULL, s, tok, lg), 0);
    CU_ASSERT_NOT_EQUAL(a->step(m, NULL, tok, lg), 0);
    CU_ASSERT(error_has(a, "state is NULL"));
    CU_ASSERT_NOT_EQUAL(a->step(m, s, NULL, lg), 0);
    CU_ASSERT(error_has(a, "tokens is NULL"));
    CU_ASSERT_NOT_EQUAL(a->step(m, s, tok, NULL), 0);
    CU_ASSERT(error_has(a, "logits is NULL"));

    CU_ASSERT_NOT_EQUAL(a->state_copy(NULL, s), 0);
    CU_ASSERT(error_has(a, "NULL"));
    CU_ASSERT_NOT_EQUAL(a->state_copy(s, NULL), 0);
    CU_ASSERT(error_has(a, "NULL"));
    CU_ASSERT_NOT_EQUAL(a->state_copy(NULL, NULL), 0);
    CU_ASSERT_EQUAL(a->state_batch(NULL), 0);
    CU_ASSERT_EQUAL(a->state_batch(s), 2);
    CU_ASSERT_NOT_EQUAL(a->set_threads(NULL, 2), 0);
    CU_ASSERT(error_has(a, "state is NULL"));
    const int bad_threads[] = {0, -1, 257, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof bad_threads / sizeof bad_threads[0]; i++) {
        CU_ASSERT_NOT_EQUAL(a->set_threads(s, bad_threads[i]), 0);
        CU_ASSERT(error_has(a, "thread count must be in [1, 256]"));
    }
    a->state_reset(NULL);
    a->state_free(NULL);
    a->close(NULL);

    /* after all that, the model and state still work */
    CU_ASSERT_EQUAL(a->forward(m, s, tok, 1, lg), 0);
    CU_ASSERT(all_finite(lg, 2 * 104));
    a->state_free(s);
    a->close(m);
}

/* A state is tied to the model handle that made it: another handle of the same compiled
 * model, or a model of another shared object, is refused, and nothing is run. */
static void test_state_of_another_model(void)
{
    void *m1 = NULL, *m2 = NULL, *mx = NULL, *s1 = NULL, *sx = NULL;
    int32_t tok[1] = {3};
    float lg[128];
    CU_ASSERT_EQUAL_FATAL(mm.open(mm_weights, &m1), 0);
    CU_ASSERT_EQUAL_FATAL(mm.open(mm_weights, &m2), 0);
    CU_ASSERT_EQUAL_FATAL(xm.open(xm_weights, &mx), 0);
    CU_ASSERT_EQUAL_FATAL(mm.state_new(m1, 1, &s1), 0);
    CU_ASSERT_EQUAL_FATAL(xm.state_new(mx, 1, &sx), 0);

    CU_ASSERT_NOT_EQUAL(mm.step(m2, s1, tok, lg), 0);
    CU_ASSERT(error_has(&mm, "state belongs to another model"));
    CU_ASSERT_NOT_EQUAL(mm.forward(m2, s1, tok, 1, lg), 0);
    /* the xLSTM state (and model) handed to the Mamba model's functions */
    CU_ASSERT_NOT_EQUAL(mm.step(m1, sx, tok, lg), 0);
    CU_ASSERT(error_has(&mm, "another model"));
    CU_ASSERT_NOT_EQUAL(xm.forward(mx, s1, tok, 1, lg), 0);
    CU_ASSERT(error_has(&xm, "another model"));
    void *s2 = NULL;
    CU_ASSERT_EQUAL(mm.state_new(m2, 1, &s2), 0);
    CU_ASSERT_NOT_EQUAL(mm.state_copy(s2, s1), 0);
    CU_ASSERT(error_has(&mm, "different models"));
    CU_ASSERT_NOT_EQUAL(xm.state_copy(sx, s1), 0);
    CU_ASSERT_EQUAL(mm.state_copy(s1, s1), 0);

    /* the right pairs still work */
    CU_ASSERT_EQUAL(mm.step(m1, s1, tok, lg), 0);
    CU_ASSERT_EQUAL(xm.step(mx, sx, tok, lg), 0);
    mm.state_free(s2);
    mm.state_free(s1);
    xm.state_free(sx);
    mm.close(m1);
    mm.close(m2);
    xm.close(mx);
}

static void test_bad_batch_and_len(void)
{
    Api *a = &mm;
    void *m = NULL, *s = (void *)8;
    int32_t tok[4] = {1, 2, 3, 4};
    float lg[4 * 104];
    CU_ASSERT_EQUAL_FATAL(a->open(mm_weights, &m), 0);
    const int bad_batch[] = {0, -1, INT_MIN, 65537, INT_MAX};
    for (size_t i = 0; i < sizeof bad_batch / sizeof bad_batch[0]; i++) {
        s = (void *)8;
        CU_ASSERT_NOT_EQUAL(a->state_new(m, bad_batch[i], &s), 0);
        CU_ASSERT_PTR_NULL(s);
        CU_ASSERT(error_has(a, "batch must be in [1, 65536]"));
    }
    CU_ASSERT_EQUAL_FATAL(a->state_new(m, 1, &s), 0);
    const int bad_len[] = {0, -1, -64, INT_MIN};
    for (size_t i = 0; i < sizeof bad_len / sizeof bad_len[0]; i++) {
        CU_ASSERT_NOT_EQUAL(a->forward(m, s, tok, bad_len[i], lg), 0);
        CU_ASSERT(error_has(a, "len must be >= 1"));
    }
    a->state_free(s);
    a->close(m);
}

/* Token ids outside [0, vocab_size) are refused wherever they are, the padding rows of the
 * vocabulary included, and the refused call leaves the state as it was. */
static void test_tokens_outside_the_vocabulary(void)
{
    Api *a = &mm;
    int V = a->vocab_padded(), vs = a->vocab_size();
    CU_ASSERT_EQUAL_FATAL(vs, 100);
    CU_ASSERT_EQUAL_FATAL(V, 104);
    void *m = NULL, *s = NULL, *ref = NULL;
    CU_ASSERT_EQUAL_FATAL(a->open(mm_weights, &m), 0);
    CU_ASSERT_EQUAL_FATAL(a->state_new(m, 2, &s), 0);
    CU_ASSERT_EQUAL_FATAL(a->state_new(m, 2, &ref), 0);
    int32_t tok[2][5] = {{1, 2, 3, 4, 5}, {6, 7, 8, 9, 10}};
    float lg[2 * 5 * 104], lg_ref[2 * 5 * 104];
    CU_ASSERT_EQUAL(a->forward(m, s, &tok[0][0], 5, lg), 0);
    CU_ASSERT_EQUAL(a->forward(m, ref, &tok[0][0], 5, lg_ref), 0);

    const int32_t bad[] = {-1, 100, 103, 104, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t t2[2][5];
        memcpy(t2, tok, sizeof t2);
        t2[1][4] = bad[i]; /* the very last token checked */
        CU_ASSERT_NOT_EQUAL(a->forward(m, s, &t2[0][0], 5, lg), 0);
        CU_ASSERT(error_has(a, "out of range [0, 100)"));
        CU_ASSERT(error_has(a, "batch 1, position 4"));
        int32_t col[2] = {bad[i], 0};
        CU_ASSERT_NOT_EQUAL(a->step(m, s, col, lg), 0);
        CU_ASSERT(error_has(a, "batch 0, position 0"));
    }
    /* nothing ran: both states continue identically */
    CU_ASSERT_EQUAL(a->forward(m, s, &tok[0][0], 5, lg), 0);
    CU_ASSERT_EQUAL(a->forward(m, ref, &tok[0][0], 5, lg_ref), 0);
    CU_ASSERT_EQUAL(memcmp(lg, lg_ref, sizeof lg), 0);
    /* the largest valid id works */
    int32_t last[2] = {99, 0};
    CU_ASSERT_EQUAL(a->step(m, s, last, lg), 0);
    CU_ASSERT(all_finite(lg, 2 * 104));
    a->state_free(s);
    a->state_free(ref);
    a->close(m);
}

/* Write `n` bytes of `bytes` to out/robust/<name>; returns the path. */
static const char *write_bytes(const char *name, const void *bytes, size_t n)
{
    static char path[700];
    snprintf(path, sizeof path, "%s/%s", out_dir(), name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(bytes, 1, n, f);
        fclose(f);
    }
    return path;
}

static void test_weights_of_another_spec(void)
{
    void *m = (void *)8;
    /* xLSTM weights for a Mamba model: the tensors are missing, named */
    CU_ASSERT_NOT_EQUAL(mm.open(xm_weights, &m), 0);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT(error_has(&mm, "missing tensor 'backbone.embedding.weight'"));
    CU_ASSERT(error_has(&mm, "problems"));
    /* the other way round */
    CU_ASSERT_NOT_EQUAL(xm.open(mm_weights, &m), 0);
    CU_ASSERT(error_has(&xm, "missing tensor 'token_embedding.weight'"));
    /* Mamba weights of another size: same names, other shapes */
    CU_ASSERT_NOT_EQUAL(mm.open(odd_weights, &m), 0);
    CU_ASSERT(error_has(&mm, "has shape [128, 64] but the model expects [104, 51]"));

    /* not weights at all */
    char spec[600];
    snprintf(spec, sizeof spec, "%s/golden/mamba_odd/model.mx", test_srcdir());
    CU_ASSERT_NOT_EQUAL(mm.open(spec, &m), 0);
    CU_ASSERT(error_has(&mm, spec));
    CU_ASSERT_NOT_EQUAL(mm.open(test_srcdir(), &m), 0); /* a directory */
    CU_ASSERT(error_has(&mm, "holds neither model.safetensors nor")); /* a folder without weights */
    CU_ASSERT_NOT_EQUAL(mm.open(write_bytes("empty.safetensors", "", 0), &m), 0);
    CU_ASSERT(strlen(mm.last_error()) > 0);
    static const unsigned char huge_header[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
                                                  '{', '}'};
    CU_ASSERT_NOT_EQUAL(mm.open(write_bytes("huge.safetensors", huge_header, 16), &m), 0);
    CU_ASSERT(strlen(mm.last_error()) > 0);
    static const char json_only[] = "\x02\0\0\0\0\0\0\0{}";
    CU_ASSERT_NOT_EQUAL(mm.open(write_bytes("nothing.safetensors", json_only, 10), &m), 0);
    CU_ASSERT(error_has(&mm, "missing tensor"));
    CU_ASSERT_PTR_NULL(m);
}

/* A state outlives its model's P_close (it may be freed afterwards). If the caller then
 * opens another compiled model, malloc tends to hand it the closed model's address, and a
 * check that compares only the model pointer accepts the stale state: the other model's
 * kernels then run on a state (and scratch) sized for the first one - a heap overflow when
 * the second model is larger. The state must be refused. Nothing freed is read: the state is
 * alive and its model pointer is only compared.
 *
 * The address reuse is made certain rather than hoped for: the runtime frees the model
 * handle last in close and callocs it first in open, so a LIFO free list hands the same block
 * back - if the allocator lets it. glibc's calloc never takes from the per-thread cache that
 * free fills first (so with the defaults the block is not reused at all), and ASan holds
 * freed blocks in a quarantine. The scenario therefore runs in a fresh process of this
 * program, started with the thread cache off (GLIBC_TUNABLES=glibc.malloc.tcache_count=0)
 * and ASan's quarantines off (quarantine_size_mb=0, thread_local_quarantine_size_kb=0: with
 * the first alone ASan still does not reuse a block); both are read at start-up. It runs in a
 * child anyway, as the unfixed runtime corrupts memory. No reuse is a failure. */
#define STALE_CHILD_ARG "--stale-state-child"

/* The child: argv = {self, STALE_CHILD_ARG, rbm.so, rbx.so, mamba weights, xlstm weights}.
 * Its exit status is one of these (not 1, which ASan uses for its own reports). Everything is
 * freed on every path, so that LeakSanitizer has nothing to say about the child. */
enum { STALE_REFUSED = 10, STALE_ACCEPTED, STALE_NO_REUSE, STALE_SETUP };

static int stale_state_child(char **argv)
{
    Api m_api, x_api;
    int result = STALE_SETUP;
    void *mx = NULL, *sx = NULL, *m = NULL;
    int32_t tok[1] = {1};
    float lg[128];
    if (!api_load(&m_api, argv[2], "rbm") || !api_load(&x_api, argv[3], "rbx") ||
        x_api.open(argv[5], &mx) || x_api.state_new(mx, 1, &sx))
        goto out;
    x_api.close(mx); /* sx stays valid; its model pointer is now stale */
    /* the Mamba model is the smaller: if the check is fooled, nothing overflows here */
    for (int tries = 0; tries < 8 && m != mx; tries++) {
        if (m)
            m_api.close(m);
        m = NULL;
        if (m_api.open(argv[4], &m))
            goto out;
    }
    if (m != mx) {
        result = STALE_NO_REUSE;
        goto out;
    }
    int rc = m_api.step(m, sx, tok, lg);
    bool named = strstr(m_api.last_error(), "another model") != NULL;
    result = rc != 0 && named ? STALE_REFUSED : STALE_ACCEPTED;
out:
    if (sx)
        x_api.state_free(sx);
    if (m)
        m_api.close(m);
    api_unload(&m_api);
    api_unload(&x_api);
    return result;
}

static void test_stale_state_after_reopen(void)
{
    char mso[600], xso[600], asan[1200], tunables[1200];
    snprintf(mso, sizeof mso, "%s/librbm.so", out_dir());
    snprintf(xso, sizeof xso, "%s/librbx.so", out_dir());
    const char *a = getenv("ASAN_OPTIONS"), *t = getenv("GLIBC_TUNABLES");
    snprintf(asan, sizeof asan, "%s%squarantine_size_mb=0:thread_local_quarantine_size_kb=0",
             a ? a : "", a && *a ? ":" : "");
    snprintf(tunables, sizeof tunables, "%s%sglibc.malloc.tcache_count=0", t ? t : "",
             t && *t ? ":" : "");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        char *argv[] = {"test_robust", STALE_CHILD_ARG, mso, xso, mm_weights, xm_weights, NULL};
        setenv("ASAN_OPTIONS", asan, 1);
        setenv("GLIBC_TUNABLES", tunables, 1);
        execv("/proc/self/exe", argv);
        _exit(STALE_SETUP);
    }
    int status;
    CU_ASSERT_EQUAL_FATAL(waitpid(pid, &status, 0), pid);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code != STALE_REFUSED)
        fprintf(stderr, "\n    stale state of a closed model: %s (child status %d)\n",
                code == STALE_ACCEPTED   ? "accepted"
                : code == STALE_NO_REUSE ? "the allocator did not reuse the model's address"
                : code == STALE_SETUP    ? "the child could not set up the models"
                : code == -1             ? "the child crashed"
                                         : "the child failed (a sanitizer report?)",
                code);
    CU_ASSERT_EQUAL(code, STALE_REFUSED);
}

/* Handles carry a magic number that close/free overwrite, so in ordinary builds a closed
 * model or freed state is refused and a second close/free is a no-op. This reads freed
 * memory, which is exactly what ASan and valgrind exist to report, so the test is not
 * registered in those builds (main) rather than run to print "skipped": there it would have
 * no outcome. A reused address cannot be told apart (docs/hostile-input.md). */
static bool checking_memory(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return true;
#else
    const char *v = getenv("MXC_UNDER_VALGRIND");
    return v && *v;
#endif
}

static void test_use_after_close(void)
{
    Api *a = &mm;
    void *m = NULL, *s = NULL;
    int32_t tok[1] = {1};
    float lg[104];
    CU_ASSERT_EQUAL_FATAL(a->open(mm_weights, &m), 0);
    CU_ASSERT_EQUAL_FATAL(a->state_new(m, 1, &s), 0);
    a->close(m);
    CU_ASSERT_NOT_EQUAL(a->step(m, s, tok, lg), 0);
    CU_ASSERT(error_has(a, "invalid model handle"));
    a->close(m); /* double close: refused, no double free */
    a->state_free(s); /* a state may outlive its model */
    a->state_free(s);
    CU_ASSERT_EQUAL(a->state_batch(s), 0);
}

/* Each thread has its own last error; successful calls keep it, like errno. */
static void *error_thread(void *arg)
{
    Api *a = arg;
    void *m = NULL;
    bool ok = a->last_error()[0] == '\0';
    ok = ok && a->open("/nonexistent/thread.safetensors", &m) != 0;
    ok = ok && strstr(a->last_error(), "/nonexistent/thread.safetensors") != NULL;
    return (void *)(intptr_t)ok;
}

static void test_errors_are_per_thread(void)
{
    Api *a = &mm;
    void *m = NULL;
    CU_ASSERT_NOT_EQUAL(a->open("/nonexistent/main.safetensors", &m), 0);
    pthread_t th;
    void *ok = NULL;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, error_thread, a), 0);
    pthread_join(th, &ok);
    CU_ASSERT(ok != NULL);
    CU_ASSERT(error_has(a, "/nonexistent/main.safetensors"));
    CU_ASSERT_EQUAL(a->open(mm_weights, &m), 0);
    CU_ASSERT(error_has(a, "/nonexistent/main.safetensors"));
    a->close(m);
}

/* ---- suite: threads --------------------------------------------------------------------- */

/* TH_N threads share one model, each with its own states (which run on 1 to 3 pool threads
 * of their own), and do the same work as a sequential reference run on one thread with one
 * pool thread: forward, state copies, steps. The results must be bit-identical. */

enum { TH_N = 4, TH_BATCH = 2, TH_LEN = 150, TH_STEPS = 40, TH_ROUNDS = 3 };

typedef struct ThreadJob {
    const Api *a;
    void *m;
    int32_t tok[TH_BATCH * TH_LEN];
    int32_t steps[TH_STEPS][TH_BATCH];
    float *out; /* [TH_BATCH * TH_LEN * V] forward, then [TH_STEPS * TH_BATCH * V] steps */
    pthread_barrier_t *go;
    int threads; /* of the job's states: results must not depend on it */
    int rc;
} ThreadJob;

static size_t job_floats(const Api *a)
{
    return (size_t)(TH_BATCH * TH_LEN + TH_STEPS * TH_BATCH) * (size_t)a->vocab_padded();
}

/* The work of one thread: a new state, a forward, steps; then a state copy continues. */
static void *thread_work(void *arg)
{
    ThreadJob *j = arg;
    const Api *a = j->a;
    size_t V = (size_t)a->vocab_padded();
    void *s = NULL, *c = NULL;
    if (j->go)
        pthread_barrier_wait(j->go);
    j->rc = a->state_new(j->m, TH_BATCH, &s) || a->set_threads(s, j->threads);
    if (j->rc == 0)
        j->rc = a->forward(j->m, s, j->tok, TH_LEN, j->out);
    if (j->rc == 0)
        j->rc = a->state_new(j->m, TH_BATCH, &c) || a->set_threads(c, j->threads) ||
                a->state_copy(c, s);
    float *o = j->out + (size_t)TH_BATCH * TH_LEN * V;
    for (int t = 0; t < TH_STEPS && j->rc == 0; t++, o += TH_BATCH * V)
        j->rc = a->step(j->m, t % 2 ? s : c, j->steps[t], o) ||
                a->state_copy(t % 2 ? c : s, t % 2 ? s : c);
    a->state_free(c);
    a->state_free(s);
    return NULL;
}

static void check_threads_on(const Api *a, const char *weights)
{
    void *m = NULL;
    CU_ASSERT_EQUAL_FATAL(a->open(weights, &m), 0);
    ThreadJob *seq = calloc(TH_N, sizeof *seq), *par = calloc(TH_N, sizeof *par);
    uint64_t r = 42;
    for (int i = 0; i < TH_N; i++) {
        random_tokens(&r, seq[i].tok, TH_BATCH * TH_LEN, a->vocab_size());
        random_tokens(&r, &seq[i].steps[0][0], TH_STEPS * TH_BATCH, a->vocab_size());
        seq[i].a = a;
        seq[i].m = m;
        seq[i].out = malloc(sizeof(float) * job_floats(a));
        seq[i].threads = 1;
        thread_work(&seq[i]); /* the reference: one after another, on this thread */
        CU_ASSERT_EQUAL(seq[i].rc, 0);
        CU_ASSERT(all_finite(seq[i].out, job_floats(a)));
    }
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, TH_N);
    for (int round = 0; round < TH_ROUNDS; round++) {
        pthread_t th[TH_N];
        for (int i = 0; i < TH_N; i++) {
            par[i] = seq[i];
            par[i].out = calloc(job_floats(a), sizeof(float));
            par[i].go = &go;
            par[i].threads = 1 + (i + round) % 3;
            par[i].rc = -1;
            CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, thread_work, &par[i]), 0);
        }
        for (int i = 0; i < TH_N; i++) {
            pthread_join(th[i], NULL);
            CU_ASSERT_EQUAL(par[i].rc, 0);
            CU_ASSERT_EQUAL(memcmp(par[i].out, seq[i].out, sizeof(float) * job_floats(a)), 0);
            free(par[i].out);
        }
    }
    pthread_barrier_destroy(&go);
    for (int i = 0; i < TH_N; i++)
        free(seq[i].out);
    free(seq);
    free(par);
    a->close(m);
}

static void test_threads_share_a_mamba_model(void)
{
    check_threads_on(&mm, mm_weights);
}

static void test_threads_share_an_xlstm_model(void)
{
    check_threads_on(&xm, xm_weights);
}

/* A Mamba mixer narrower than one vector of channels (d_inner 6 < 8 or 16 lanes): the scan
 * has no full vector group, only the scalar tail, and exactly one pool thread may run it.
 * Found by the edge specs: with the tail given to every thread whose share "ends last"
 * (all of them when there are no groups), the threads raced on the scan state and the
 * logits depended on the thread count (backend/kernels.c, emit_selective_scan). */
static void test_threads_narrow_mamba_scan(void)
{
    TinyModel t;
    CU_ASSERT_FATAL(tiny_open(&t, "rnarrow",
                              "model rnarrow { vocab_size = 8; d_model = 3; blocks = [mamba * 2];"
                              " mamba { d_state = 5; } }",
                              21, NULL, NULL));
    const Api *A = &t.api;
    enum { LEN = 40 };
    size_t n = (size_t)2 * LEN * (size_t)A->vocab_padded();
    int32_t tok[2 * LEN];
    uint64_t r = 5;
    random_tokens(&r, tok, 2 * LEN, A->vocab_size());
    float *one = malloc(sizeof *one * n), *many = malloc(sizeof *many * n);
    void *s = NULL;
    CU_ASSERT_EQUAL_FATAL(A->state_new(t.m, 2, &s), 0);
    CU_ASSERT_EQUAL(A->set_threads(s, 1), 0);
    CU_ASSERT_EQUAL(A->forward(t.m, s, tok, LEN, one), 0);
    for (int threads = 2; threads <= 4; threads++) {
        A->state_reset(s);
        CU_ASSERT_EQUAL(A->set_threads(s, threads), 0);
        CU_ASSERT_EQUAL(A->forward(t.m, s, tok, LEN, many), 0);
        double d = max_rel_diff(many, one, n);
        if (d != 0)
            printf("\n    %d threads: max rel diff %.2e to one thread ", threads, d);
        CU_ASSERT_EQUAL(memcmp(many, one, sizeof *one * n), 0);
    }
    free(one);
    free(many);
    A->state_free(s);
    tiny_close(&t);
}

/* A compiled model runs on the caller's thread (it is thread 0 of the state's pool), and
 * host applications run it on threads with small stacks: the generated code must not need
 * stack in proportion to the model's sizes. One forward and a few steps on a 128 KiB stack
 * must give the main thread's results. */
enum { SMALL_STACK = 128 * 1024, SS_LEN = 64 };

typedef struct StackJob {
    const Api *a;
    void *m;
    float *out; /* [SS_LEN + 4] rows of vocab_padded */
    int rc;
} StackJob;

static void *small_stack_work(void *arg)
{
    StackJob *j = arg;
    const Api *a = j->a;
    size_t V = (size_t)a->vocab_padded();
    int32_t tok[SS_LEN];
    for (int t = 0; t < SS_LEN; t++)
        tok[t] = (int32_t)((t * 37 + 11) % a->vocab_size());
    void *s = NULL;
    j->rc = a->state_new(j->m, 1, &s);
    for (int k = 1; k <= 2 && j->rc == 0; k++) { /* on 1 thread, then on 2 */
        a->state_reset(s);
        j->rc = a->set_threads(s, k) || a->forward(j->m, s, tok, SS_LEN, j->out);
        for (int t = 0; t < 4 && j->rc == 0; t++)
            j->rc = a->step(j->m, s, &tok[t], j->out + (SS_LEN + t) * V);
    }
    a->state_free(s);
    return NULL;
}

static void check_small_stack(const Api *a, const char *weights)
{
    void *m = NULL;
    CU_ASSERT_EQUAL_FATAL(a->open(weights, &m), 0);
    size_t n = (size_t)(SS_LEN + 4) * (size_t)a->vocab_padded();
    StackJob ref = {a, m, calloc(n, sizeof(float)), -1}, small = {a, m, calloc(n, sizeof(float)), -1};
    small_stack_work(&ref);
    CU_ASSERT_EQUAL(ref.rc, 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    CU_ASSERT_EQUAL(pthread_attr_setstacksize(&attr, SMALL_STACK), 0);
    pthread_t th;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th, &attr, small_stack_work, &small), 0);
    pthread_join(th, NULL);
    pthread_attr_destroy(&attr);
    CU_ASSERT_EQUAL(small.rc, 0);
    CU_ASSERT_EQUAL(memcmp(small.out, ref.out, n * sizeof(float)), 0);
    free(ref.out);
    free(small.out);
    a->close(m);
}

static void test_threads_with_small_stacks(void)
{
    check_small_stack(&mm, mm_weights);
    check_small_stack(&xm, xm_weights);
}

/* Threads that open and close their own models of one shared object at the same time. */
static void *open_close_work(void *arg)
{
    const Api *a = arg;
    int bad = 0;
    for (int i = 0; i < 20; i++) {
        void *m = NULL, *s = NULL, *none = (void *)8;
        int32_t tok[1] = {i};
        float lg[104];
        bad += a->open(mm_weights, &m) != 0;
        bad += a->state_new(m, 1, &s) != 0;
        bad += a->step(m, s, tok, lg) != 0;
        bad += a->open("/nonexistent", &none) == 0 || none != NULL;
        a->state_free(s);
        a->close(m);
    }
    return (void *)(intptr_t)bad;
}

static void test_threads_open_and_close(void)
{
    pthread_t th[TH_N];
    for (int i = 0; i < TH_N; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, open_close_work, &mm), 0);
    for (int i = 0; i < TH_N; i++) {
        void *bad = (void *)1;
        pthread_join(th[i], &bad);
        CU_ASSERT_PTR_NULL(bad);
    }
}

/* ---- suite: numerics -------------------------------------------------------------------- */

/* Steps in the long runs; MXC_ROBUST_STEPS overrides (e.g. smaller under valgrind). */
static int long_steps(void)
{
    const char *e = getenv("MXC_ROBUST_STEPS");
    int n = e && *e ? atoi(e) : 100000;
    return n > 0 ? n : 100000;
}

/* Adversarial weights: every gate pre-activation pushed far out. */
typedef struct Adversary {
    float igate_shift; /* added to the exponential input gate biases (mLSTM, sLSTM) */
    float fgate_bias;  /* mLSTM / sLSTM forget biases: alternately +b and -b per unit */
    float scale;       /* factor on every matrix */
} Adversary;

static void adversarial_hook(Weight *w, void *ctx)
{
    const Adversary *adv = ctx;
    if (ends_with(w->name, "mlstm_cell.igate.bias")) {
        for (int64_t k = 0; k < w->numel; k++)
            w->data[k] += adv->igate_shift;
    } else if (ends_with(w->name, "mlstm_cell.fgate.bias")) {
        for (int64_t k = 0; k < w->numel; k++)
            w->data[k] = k % 2 ? -adv->fgate_bias : adv->fgate_bias;
    } else if (ends_with(w->name, "slstm_cell._bias_")) {
        /* vanilla layout: gate-major [i | f | z | o], E each */
        int64_t E = w->numel / 4;
        for (int64_t k = 0; k < E; k++) {
            w->data[k] += adv->igate_shift;
            w->data[E + k] = k % 2 ? -adv->fgate_bias : adv->fgate_bias;
        }
    } else if (ends_with(w->name, "dt_proj.bias")) {
        for (int64_t k = 0; k < w->numel; k++) /* dt from softplus' linear range to ~0 */
            w->data[k] = k % 3 == 0 ? 30.0f : k % 3 == 1 ? -30.0f : w->data[k];
    } else if (ends_with(w->name, "A_log")) {
        for (int64_t k = 0; k < w->numel; k++) /* A = -exp(A_log) from -e^-8 to -e^4 */
            w->data[k] = k % 2 ? -8.0f : 4.0f;
    } else if (w->rank >= 2 && !strstr(w->name, "embedding")) {
        for (int64_t k = 0; k < w->numel; k++)
            w->data[k] *= adv->scale;
    } else if (strstr(w->name, "embedding")) {
        for (int64_t k = 0; k < w->numel; k++)
            w->data[k] *= 10.0f;
    }
}

static const char spec_long_mamba[] =
    "model rlong_mamba { vocab_size = 32; d_model = 16; blocks = [mamba * 2];\n"
    "  mamba { d_state = 4; d_conv = 3; expand = 2; } }\n";
static const char spec_long_mlstm[] =
    "model rlong_mlstm { vocab_size = 32; embedding_dim = 16; blocks = [mlstm * 2];\n"
    "  mlstm { num_heads = 2; proj_factor = 2.0; round_proj_up_to_multiple_of = 8; } }\n";
static const char spec_long_slstm[] =
    "model rlong_slstm { vocab_size = 32; embedding_dim = 16; blocks = [slstm * 2];\n"
    "  slstm { num_heads = 2; feedforward { round_proj_up_to_multiple_of = 8; } } }\n";

/* `steps` tokens through step() on one state and through forward() in pieces of assorted
 * lengths on another, compared piece by piece; both stay finite.
 * Built with --chunk 16, so that a forward call never reaches the packed projection
 * kernel (32 rows and more): both sides then do the same arithmetic in each projection and
 * any difference comes from the recurrences and the chunking, which is what this tests.
 * (With the packed kernel the projections round differently, ~1 ulp; these adversarial
 * weights amplify that, and the forget gates near 1 keep it alive: over 100,000 steps the
 * runs drift apart by up to 1e-4 (Mamba) and 2e-2 (mLSTM) of the logits. The two kernels
 * are compared on the golden models in test_e2e.) */
static void check_long_run(const char *name, const char *text, const Adversary *adv,
                           const char *flags, double bound)
{
    TinyModel t;
    Adversary a = *adv;
    CU_ASSERT_FATAL(tiny_open_with(&t, name, text, flags, 7, adversarial_hook, &a));
    const Api *A = &t.api;
    const int n = long_steps(), V = A->vocab_padded();
    const int pieces[] = {1000, 1, 63, 64, 65, 7, 500};
    const int n_pieces = (int)(sizeof pieces / sizeof pieces[0]);
    void *s_step = NULL, *s_fwd = NULL;
    CU_ASSERT_EQUAL_FATAL(A->state_new(t.m, 1, &s_step), 0);
    CU_ASSERT_EQUAL_FATAL(A->state_new(t.m, 1, &s_fwd), 0);
    /* tiny models: a pool's barriers would cost more than the work */
    CU_ASSERT_EQUAL(A->set_threads(s_step, 1), 0);
    CU_ASSERT_EQUAL(A->set_threads(s_fwd, 1), 0);
    int32_t *tok = malloc(sizeof *tok * 1000);
    float *lg_step = malloc(sizeof *lg_step * 1000 * (size_t)V);
    float *lg_fwd = malloc(sizeof *lg_fwd * 1000 * (size_t)V);
    uint64_t r = 12345;
    double worst = 0, biggest = 0;
    bool finite = true;
    int rc = 0, done = 0;
    for (int p = 0; done < n && rc == 0; p++) {
        int len = pieces[p % n_pieces];
        if (len > n - done)
            len = n - done;
        random_tokens(&r, tok, (size_t)len, A->vocab_size());
        rc |= step_all(A, t.m, s_step, tok, 1, len, lg_step);
        rc |= A->forward(t.m, s_fwd, tok, len, lg_fwd);
        size_t k = (size_t)len * (size_t)V;
        finite = finite && all_finite(lg_step, k) && all_finite(lg_fwd, k);
        double d = max_rel_diff(lg_step, lg_fwd, k);
        if (d > worst)
            worst = d;
        for (size_t i = 0; i < k; i++)
            if (fabs(lg_fwd[i]) > biggest)
                biggest = fabs(lg_fwd[i]);
        done += len;
    }
    printf("\n    %s: %d steps, max |step - forward| / (1 + |forward|) %.2e, max |logit| %.3g ",
           name, done, worst, biggest);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(done, n);
    CU_ASSERT(finite);
    CU_ASSERT(worst <= bound);
    free(tok);
    free(lg_step);
    free(lg_fwd);
    A->state_free(s_step);
    A->state_free(s_fwd);
    tiny_close(&t);
}

static void test_long_run_mamba(void)
{
    Adversary adv = {.igate_shift = 0, .fgate_bias = 0, .scale = 4};
    check_long_run("rlong_mamba", spec_long_mamba, &adv, "--chunk 16", 1e-4);
}

static void test_long_run_mlstm(void)
{
    Adversary adv = {.igate_shift = 200, .fgate_bias = 40, .scale = 4};
    /* the recurrent form in forwards: the same arithmetic as the steps */
    check_long_run("rlong_mlstm", spec_long_mlstm, &adv, "--chunk 16 --disable-pass mlstm-chunkwise", 1e-4);
    /* The chunkwise form (what the cost rule picks at these heads) sums each piece's terms
     * in another order. With forget gates of exactly 1 in f32 (bias 40) nothing is ever
     * forgotten, so C and n are sums over all 100,000 steps and the two orders may part by
     * up to ~N ulp of them: 1.4e-3 was measured; a wrong gate or stabiliser shows as O(1). */
    check_long_run("rlong_mlstm_cw", spec_long_mlstm, &adv, "--chunk 16", 1e-2);
}

static void test_long_run_slstm(void)
{
    Adversary adv = {.igate_shift = 200, .fgate_bias = 40, .scale = 4};
    check_long_run("rlong_slstm", spec_long_slstm, &adv, "--chunk 16", 1e-4);
}

/* The exponential input gate of both cells is stabilised: (C, n) or (c, n) are kept scaled
 * by exp(-m) with m the running maximum of the log gates. Adding a constant to every input
 * gate pre-activation then cancels in the output (exactly for the sLSTM's c / n; for the
 * mLSTM up to the max(|q.n|, 1) floor, negligible once the gates are large). Shifts of 30
 * and 300 must therefore give the same logits - and exp(300) is far beyond float range
 * (exp(89) already is), so an unstabilised cell would produce inf and then NaN. */
static void check_gate_shift(const char *name, const char *text)
{
    char name_lo[64], name_hi[64];
    snprintf(name_lo, sizeof name_lo, "%s_lo", name);
    snprintf(name_hi, sizeof name_hi, "%s_hi", name);
    Adversary lo = {.igate_shift = 30, .fgate_bias = 3, .scale = 1};
    Adversary hi = {.igate_shift = 300, .fgate_bias = 3, .scale = 1};
    CU_ASSERT_FATAL(300 > logf(3.4e38f)); /* the premise: exp(300) overflows a float */
    TinyModel a, b;
    CU_ASSERT_FATAL(tiny_open(&a, name_lo, text, 11, adversarial_hook, &lo));
    CU_ASSERT_FATAL(tiny_open(&b, name_hi, text, 11, adversarial_hook, &hi));
    const int len = 300, V = a.api.vocab_padded();
    int32_t tok[300];
    uint64_t r = 99;
    random_tokens(&r, tok, len, a.api.vocab_size());
    float *la = malloc(sizeof *la * len * (size_t)V), *lb = malloc(sizeof *lb * len * (size_t)V);
    float *lb_step = malloc(sizeof *lb_step * len * (size_t)V);
    void *sa = NULL, *sb = NULL;
    CU_ASSERT_EQUAL_FATAL(a.api.state_new(a.m, 1, &sa), 0);
    CU_ASSERT_EQUAL_FATAL(b.api.state_new(b.m, 1, &sb), 0);
    CU_ASSERT_EQUAL(a.api.forward(a.m, sa, tok, len, la), 0);
    CU_ASSERT_EQUAL(b.api.forward(b.m, sb, tok, len, lb), 0);
    b.api.state_reset(sb);
    CU_ASSERT_EQUAL(step_all(&b.api, b.m, sb, tok, 1, len, lb_step), 0);
    size_t n = (size_t)len * (size_t)V;
    double d = max_rel_diff(lb, la, n), d_step = max_rel_diff(lb_step, lb, n);
    printf("\n    %s: input gates +30 vs +300: max rel diff %.2e (step vs forward %.2e) ", name,
           d, d_step);
    CU_ASSERT(all_finite(la, n));
    CU_ASSERT(all_finite(lb, n));
    CU_ASSERT(all_finite(lb_step, n));
    CU_ASSERT(d <= 1e-4);
    CU_ASSERT(d_step <= 1e-4);
    free(la);
    free(lb);
    free(lb_step);
    a.api.state_free(sa);
    b.api.state_free(sb);
    tiny_close(&a);
    tiny_close(&b);
}

static void test_mlstm_stabiliser(void)
{
    check_gate_shift("rstab_mlstm", spec_long_mlstm);
}

static void test_slstm_stabiliser(void)
{
    check_gate_shift("rstab_slstm", spec_long_slstm);
}

/* NaN and inf in weights are not looked for at load time (the file is mapped, not read:
 * docs/hostile-input.md). They load, and they show up in the logits - nothing crashes, and
 * the logits of tokens that do not touch them stay finite. */
static void nan_hook(Weight *w, void *ctx)
{
    float bad = *(const float *)ctx;
    if (strcmp(w->name, "backbone.embedding.weight") == 0)
        for (int64_t k = 0; k < w->dims[1]; k++)
            w->data[5 * w->dims[1] + k] = bad; /* the row of token 5 */
}

static void check_bad_weight_value(float bad, const char *name)
{
    TinyModel t;
    char text[200];
    snprintf(text, sizeof text,
             "model %s { vocab_size = 16; d_model = 8; blocks = [mamba]; tie_weights = false; }",
             name);
    CU_ASSERT_FATAL(tiny_open(&t, name, text, 3, nan_hook, &bad));
    const Api *A = &t.api;
    int V = A->vocab_padded();
    void *s = NULL;
    CU_ASSERT_EQUAL_FATAL(A->state_new(t.m, 2, &s), 0);
    int32_t tok[2][3] = {{1, 2, 3}, {1, 5, 3}}; /* only sequence 1 meets token 5 */
    float *lg = malloc(sizeof *lg * 2 * 3 * (size_t)V);
    CU_ASSERT_EQUAL(A->forward(t.m, s, &tok[0][0], 3, lg), 0);
    CU_ASSERT(all_finite(lg, 3 * (size_t)V));                      /* sequence 0 */
    CU_ASSERT(all_finite(lg + 3 * (size_t)V, (size_t)V));          /* sequence 1, token 1 */
    CU_ASSERT(!all_finite(lg + 4 * (size_t)V, 2 * (size_t)V));     /* from token 5 on */
    /* the state is poisoned for sequence 1 only; a reset cures it */
    A->state_reset(s);
    int32_t ok[2][3] = {{1, 2, 3}, {1, 2, 3}};
    CU_ASSERT_EQUAL(A->forward(t.m, s, &ok[0][0], 3, lg), 0);
    CU_ASSERT(all_finite(lg, 2 * 3 * (size_t)V));
    free(lg);
    A->state_free(s);
    tiny_close(&t);
}

static void test_nan_in_weights(void)
{
    check_bad_weight_value(NAN, "rnan");
}

static void test_inf_in_weights(void)
{
    check_bad_weight_value(INFINITY, "rinf");
}

/* ---- suite: edges ----------------------------------------------------------------------- */

/* What the `# expect:` line of an edge spec asks for. */
typedef struct Expect {
    enum { EXPECT_RUN, EXPECT_ERROR, EXPECT_BUILD } kind;
    char key[64];     /* EXPECT_ERROR: the key the message must name */
    char flags[128];  /* `# flags:` extra mxc options */
    int len;          /* `# len:` sequence length to run (default 37) */
} Expect;

static bool parse_expect(const char *text, Expect *e)
{
    memset(e, 0, sizeof *e);
    e->len = 37;
    bool found = false;
    for (const char *line = text; line && *line; line = strchr(line, '\n'), line += !!line) {
        if (sscanf(line, "# expect: error %63s", e->key) == 1) {
            e->kind = EXPECT_ERROR;
            found = true;
        } else if (strncmp(line, "# expect: run", 13) == 0) {
            e->kind = EXPECT_RUN;
            found = true;
        } else if (strncmp(line, "# expect: build", 15) == 0) {
            e->kind = EXPECT_BUILD;
            found = true;
        } else if (strncmp(line, "# flags: ", 9) == 0) {
            const char *end = strchr(line, '\n');
            size_t n = end ? (size_t)(end - line - 9) : strlen(line + 9);
            snprintf(e->flags, sizeof e->flags, "%.*s", (int)n, line + 9);
        } else {
            sscanf(line, "# len: %d", &e->len);
        }
    }
    return found;
}

/* A model that builds must run: finite logits, forward == step == forward in pieces, for a
 * batch of 2 sequences; on 1, 2 and 3 threads, which split odd sizes unevenly. */
static bool edge_run(const char *spec, const char *prefix, const char *so, int len)
{
    Api a;
    bool ok = api_load(&a, so, prefix);
    char weights[1024];
    snprintf(weights, sizeof weights, "%s/%s.safetensors", out_dir(), prefix);
    ok = ok && make_weights(spec, weights, 5, NULL, NULL);
    void *m = NULL, *s = NULL;
    if (ok && a.open(weights, &m) != 0) {
        fprintf(stderr, "\n    %s: open: %s\n", prefix, a.last_error());
        ok = false;
    }
    ok = ok && a.state_new(m, 2, &s) == 0;
    if (!ok) {
        if (a.so)
            api_unload(&a);
        return false;
    }
    int V = a.vocab_padded();
    size_t n = (size_t)2 * len * V;
    int32_t *tok = malloc(sizeof *tok * 2 * (size_t)len);
    float *fwd = malloc(sizeof *fwd * n), *stp = malloc(sizeof *stp * n),
          *pcs = malloc(sizeof *pcs * n);
    uint64_t r = 77;
    random_tokens(&r, tok, 2 * (size_t)len, a.vocab_size());
    tok[0] = a.vocab_size() - 1;
    int cuts[] = {1, 5, 2, 17};
    ok = a.set_threads(s, 2) == 0 && a.forward(m, s, tok, len, fwd) == 0;
    a.state_reset(s);
    ok = ok && a.set_threads(s, 1) == 0 && step_all(&a, m, s, tok, 2, len, stp) == 0;
    a.state_reset(s);
    ok = ok && a.set_threads(s, 3) == 0 && forward_pieces(&a, m, s, tok, 2, len, cuts, 4, pcs) == 0;
    double d_step = max_rel_diff(stp, fwd, n), d_pieces = max_rel_diff(pcs, fwd, n);
    bool finite = all_finite(fwd, n) && all_finite(stp, n);
    printf("\n    %s: V %d, |step - forward| %.1e, |pieces - forward| %.1e%s ", prefix, V,
           d_step, d_pieces, finite ? "" : ", NOT FINITE");
    /* 1e-4 for both: pieces of fewer than 32 rows take the dot-product projections, a
     * whole forward the packed ones, which sum in another order */
    ok = ok && finite && d_step <= 1e-4 && d_pieces <= 1e-4;
    free(tok);
    free(fwd);
    free(stp);
    free(pcs);
    a.state_free(s);
    a.close(m);
    api_unload(&a);
    return ok;
}

/* edge_run in a child process, so that a model that crashes fails its spec (with the
 * signal) instead of killing the whole test program. */
static bool edge_run_isolated(const char *spec, const char *prefix, const char *so, int len)
{
    if (getenv("MXC_UNDER_VALGRIND")) /* it would leak-check the child's copy of our heap */
        return edge_run(spec, prefix, so, len);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0)
        _exit(edge_run(spec, prefix, so, len) ? 0 : 1);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        ;
    if (WIFSIGNALED(status))
        fprintf(stderr, "\n    %s: the model CRASHED (signal %d)\n", prefix, WTERMSIG(status));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int edge_filter(const struct dirent *d)
{
    return ends_with(d->d_name, ".mx");
}

static bool is_ident_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Does the text hold `key` as a whole word? */
static bool has_word(const char *text, size_t len, const char *key)
{
    size_t k = strlen(key);
    for (size_t i = 0; i + k <= len; i++)
        if (memcmp(text + i, key, k) == 0 && (i == 0 || !is_ident_char(text[i - 1])) &&
            (i + k == len || !is_ident_char(text[i + k])))
            return true;
    return false;
}

/* The first error of `diag` (mxc's stderr for `spec`) names `key`: the message says it, or
 * the error's position lies in the `key = value;` item of the spec (the caret line shows it:
 * `block index 2 is out of range` under `slstm_at = [2]`). */
static bool names_key(const char *diag, const char *spec, const char *key)
{
    const char *err = strstr(diag, ": error: ");
    if (!err)
        return false;
    const char *eol = strchr(err, '\n');
    size_t len = eol ? (size_t)(eol - err) : strlen(err);
    if (has_word(err, len, key))
        return true;
    /* FILE:LINE:COL: error: - read LINE and COL back from before the message */
    const char *p = err;
    while (p > diag && p[-1] != '\n')
        p--;
    size_t plen = strlen(spec);
    int line = 0, col = 0;
    if (strncmp(p, spec, plen) != 0 || sscanf(p + plen, ":%d:%d", &line, &col) != 2)
        return false;
    char *text = read_text(spec);
    const char *l = text;
    for (int i = 1; l && i < line; i++)
        if ((l = strchr(l, '\n')))
            l++;
    bool ok = false;
    if (l && col >= 1 && (size_t)col <= strcspn(l, "\n") + 1) {
        /* the last occurrence of the key before the column, with no ';' in between */
        for (int i = col - 1; i >= 0 && l[i] != ';' && !ok; i--)
            ok = strncmp(l + i, key, strlen(key)) == 0 && !is_ident_char(l[i + strlen(key)]) &&
                 (i == 0 || !is_ident_char(l[i - 1]));
    }
    free(text);
    return ok;
}

static void test_edge_specs(void)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/specs/edge", test_srcdir());
    struct dirent **list;
    int n = scandir(dir, &list, edge_filter, by_name);
    CU_ASSERT_FATAL(n > 0);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        char spec[1200], prefix[128], so[1024], err[1024];
        snprintf(spec, sizeof spec, "%s/%s", dir, list[i]->d_name);
        snprintf(prefix, sizeof prefix, "edge_%.*s", (int)(strlen(list[i]->d_name) - 3),
                 list[i]->d_name);
        char *text = read_text(spec);
        Expect e;
        bool ok = text && parse_expect(text, &e);
        free(text);
        if (!ok) {
            fprintf(stderr, "\n    %s: no '# expect:' line\n", spec);
            failed++;
            continue;
        }
        int rc = model_build(spec, prefix, e.flags, out_dir(), so, sizeof so);
        /* before anything is allocated here: under valgrind the child's exit is checked
         * for leaks too */
        bool ran = e.kind == EXPECT_RUN && rc == 0 && edge_run_isolated(spec, prefix, so, e.len);
        snprintf(err, sizeof err, "%s/%s.err", out_dir(), prefix);
        char *diag = read_text(err);
        switch (e.kind) {
        case EXPECT_ERROR:
            ok = rc == 1 && diag && access(so, F_OK) != 0 && names_key(diag, spec, e.key);
            printf("\n    %s: refused, naming '%s' ", prefix, e.key);
            break;
        case EXPECT_BUILD:
            ok = rc == 0 && access(so, R_OK) == 0;
            printf("\n    %s: builds ", prefix);
            break;
        case EXPECT_RUN:
            ok = ran;
            break;
        }
        if (!ok) {
            fprintf(stderr, "\n    %s: FAILED (mxc exit %d)\n%s", spec, rc, diag ? diag : "");
            failed++;
        }
        free(diag);
        unlink(so);
    }
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
    CU_ASSERT_EQUAL(failed, 0);
}

/* A spec "file" that never ends (/dev/zero) or is far too large is refused after reading
 * one byte past the 64 MiB limit. mxc used to read on to 128 MiB, in a buffer grown to
 * 256 MiB, before saying so (frontend/spec.c). */
static void test_endless_spec_input(void)
{
    char err[1024];
    snprintf(err, sizeof err, "%s/endless.err", out_dir());
    fflush(stdout);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (fd >= 0)
            dup2(fd, 2);
        execl(mxc_path(), "mxc", "check", "/dev/zero", (char *)NULL);
        _exit(127);
    }
    int status;
    struct rusage ru;
    CU_ASSERT_EQUAL_FATAL(wait4(pid, &status, 0, &ru), pid);
    char *msg = read_text(err);
    printf("\n    mxc check /dev/zero: exit %d, peak RSS %ld MiB ",
           WIFEXITED(status) ? WEXITSTATUS(status) : -1, ru.ru_maxrss / 1024);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    CU_ASSERT(msg && strstr(msg, "/dev/zero: error: file is too large (more than 67108864 bytes)"));
#ifdef __SANITIZE_ADDRESS__
    /* ASan's shadow and quarantine add ~80 MiB to the 64 MiB buffer and the binary */
    CU_ASSERT(ru.ru_maxrss < 400 * 1024); /* KiB; it was 850 MiB under ASan */
#else
    CU_ASSERT(ru.ru_maxrss < 256 * 1024); /* KiB; it was 560 MiB */
#endif
    free(msg);
}

/* CPU seconds of `mxc ir SPEC`, or -1 if it failed or ran past `cap` CPU seconds. */
static double mxc_ir_cpu_seconds(const char *spec, int cap)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        struct rlimit lim = {(rlim_t)cap, (rlim_t)cap + 1};
        setrlimit(RLIMIT_CPU, &lim);
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(mxc_path(), "mxc", "ir", spec, (char *)NULL);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -1;
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* The deepest stack the language allows (4096 blocks) compiles in time linear in the depth.
 * Lowering and the passes looked weights up, and replaced uses, by scanning every node of
 * the graph, so `mxc ir` took 0.5 s for 512 Mamba blocks and 53 s for 4096 (ir/graph.c
 * ir_weight, ir_replace_uses, passes/fuse_projections.c fusable). */
static void test_deep_stack_compile_time(void)
{
    char spec[1024];
    double t[2];
    const int depth[2] = {512, 4096};
    for (int i = 0; i < 2; i++) {
        char name[64], text[200];
        snprintf(name, sizeof name, "deep%d", depth[i]);
        snprintf(text, sizeof text,
                 "model deep { vocab_size = 4; d_model = 4; blocks = [mamba * %d]; }\n", depth[i]);
        CU_ASSERT_FATAL(write_spec(name, text, spec, sizeof spec));
        t[i] = mxc_ir_cpu_seconds(spec, 30);
    }
    printf("\n    mxc ir: 512 blocks %.2f s, 4096 blocks %.2f s CPU%s ", t[0], t[1],
           t[1] < 0 ? " (failed or killed after 30 s)" : "");
    CU_ASSERT(t[0] > 0);
    CU_ASSERT(t[1] > 0);
    CU_ASSERT(t[1] < 24 * (t[0] > 0.05 ? t[0] : 0.05)); /* 8x the blocks: linear is 8x */
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], STALE_CHILD_ARG) == 0)
        return stale_state_child(argv);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite misuse = CU_add_suite("misuse", misuse_init, NULL);
    TEST_ADD(misuse, test_null_pointers);
    TEST_ADD(misuse, test_state_of_another_model);
    TEST_ADD(misuse, test_bad_batch_and_len);
    TEST_ADD(misuse, test_tokens_outside_the_vocabulary);
    TEST_ADD(misuse, test_weights_of_another_spec);
    if (!checking_memory())
        TEST_ADD(misuse, test_use_after_close);
    TEST_ADD(misuse, test_stale_state_after_reopen);
    TEST_ADD(misuse, test_errors_are_per_thread);
    CU_pSuite threads = CU_add_suite("threads", misuse_init, misuse_clean);
    TEST_ADD(threads, test_threads_share_a_mamba_model);
    TEST_ADD(threads, test_threads_share_an_xlstm_model);
    TEST_ADD(threads, test_threads_open_and_close);
    TEST_ADD(threads, test_threads_narrow_mamba_scan);
    TEST_ADD(threads, test_threads_with_small_stacks);
    CU_pSuite numerics = CU_add_suite("numerics", NULL, NULL);
    TEST_ADD(numerics, test_long_run_mamba);
    TEST_ADD(numerics, test_long_run_mlstm);
    TEST_ADD(numerics, test_long_run_slstm);
    TEST_ADD(numerics, test_mlstm_stabiliser);
    TEST_ADD(numerics, test_slstm_stabiliser);
    TEST_ADD(numerics, test_nan_in_weights);
    TEST_ADD(numerics, test_inf_in_weights);
    CU_pSuite edges = CU_add_suite("edges", NULL, NULL);
    TEST_ADD(edges, test_edge_specs);
    TEST_ADD(edges, test_endless_spec_input);
    TEST_ADD(edges, test_deep_stack_compile_time);
    return test_run_all();
}
