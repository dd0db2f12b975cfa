/* convert.c - `mxc convert SPEC IN.safetensors --weight-type T -o OUT.safetensors`.
 *
 * Stores a checkpoint's big matrices in the type a build of SPEC with --weight-type T reads
 * in place (zero-copy), so that opening it costs no conversion: the spec is lowered and run
 * through the passes to learn which tensors are matrices (the narrow-weights pass decides,
 * exactly as for a build) and which q8 cannot take (their last dimension is not a multiple
 * of the block; they become bf16 and convert says so). Every other tensor is copied as it is
 * stored. Input tensors may be of any float type or q8 themselves. The output is written
 * under a temporary name and renamed at the end (st_write), so a failed or interrupted run
 * never leaves a half-written file. Progress goes to stderr when it is a terminal. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "driver/driver.h"
#include "frontend/spec.h"
#include "ir/lower.h"
#include "passes/passes.h"
#include "runtime/error.h"
#include "runtime/mxrt.h"
#include "runtime/narrow.h"
#include "runtime/safetensors.h"

static const char convert_usage[] =
    "usage: mxc convert SPEC IN.safetensors --weight-type T -o OUT.safetensors\n"
    "\n"
    "Store the checkpoint's projections and embedding as T (f32, bf16, f16 or q8), the type a\n"
    "build of SPEC with --weight-type T reads in place; other tensors are copied unchanged.\n"
    "\n"
    "options:\n"
    "  --weight-type T   f32, bf16, f16 or q8 (default: the spec's weight_type)\n"
    "  -o FILE           the output file (required)\n"
    "  --model NAME      the model to use when SPEC defines several\n"
    "  -h, --help        this text\n";

/* One output tensor and the memory it owns (NULL when it points into the input mapping). */
typedef struct OutTensor {
    StWriteTensor w;
    int64_t shape[ST_MAX_RANK];
    char *name; /* owned copy for the scales' name */
    void *owned;
} OutTensor;

typedef struct Converter {
    OutTensor *out;
    int n, cap;
    double bytes_done, bytes_total;
    int tensors_done, tensors_total;
    bool progress;
    struct timespec start;
} Converter;

static OutTensor *add_out(Converter *c)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        OutTensor *p = realloc(c->out, (size_t)c->cap * sizeof *p);
        if (!p) return NULL;
        c->out = p;
    }
    OutTensor *o = &c->out[c->n++];
    memset(o, 0, sizeof *o);
    return o;
}

static void show_progress(Converter *c, bool last)
{
    if (!c->progress) return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double secs = (double)(now.tv_sec - c->start.tv_sec) + 1e-9 * (double)(now.tv_nsec - c->start.tv_nsec);
    fprintf(stderr, "\rconvert: %d/%d tensors, %.1f/%.1f MB, %.0f MB/s%s", c->tensors_done,
            c->tensors_total, c->bytes_done / 1e6, c->bytes_total / 1e6,
            secs > 0 ? c->bytes_done / 1e6 / secs : 0.0, last ? "\n" : "");
}

/* The graph's weight node stored under `name` or one of its alternative names (a tied head
 * stored under both names is converted under both), or NULL. */
static const Node *weight_for(const Graph *g, const StFile *f, const char *name)
{
    (void)f;
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *w = g->nodes[i];
        if (w->dead || w->op != OP_WEIGHT) continue;
        if (strcmp(w->attr.weight.name, name) == 0) return w;
        for (const char *alt = w->attr.weight.alt_name; alt && *alt;) { /* '\n'-separated */
            size_t len = strcspn(alt, "\n");
            if (strlen(name) == len && strncmp(alt, name, len) == 0) return w;
            alt += len + (alt[len] == '\n');
        }
    }
    return NULL;
}

/* The tensor's values as f32 (dequantised when it is q8: I8 with scales beside it). */
static float *input_f32(const StFile *f, const StTensor *t)
{
    float *x = NULL;
    if (t->dtype != ST_I8) return st_read_f32(t, &x) ? NULL : x;
    char name[1024];
    snprintf(name, sizeof name, "%s%s", t->name, NARROW_Q8_SCALES_SUFFIX);
    const StTensor *sc = st_find(f, name);
    size_t n = (size_t)st_numel(t);
    float *scales = NULL;
    if (!sc || sc->rank != t->rank || st_numel(sc) * NARROW_Q8_BLOCK != (int64_t)n ||
        st_read_f32(sc, &scales)) {
        mxrt_set_error("tensor '%s' is I8 without usable q8 scales '%s'", t->name, name);
        return NULL;
    }
    for (size_t i = 0; i < n / NARROW_Q8_BLOCK; i++)
        if (!(scales[i] >= 0 && scales[i] - scales[i] == 0)) {
            free(scales);
            mxrt_set_error("q8 scales '%s': scale %zu is not finite and >= 0", name, i);
            return NULL;
        }
    x = malloc((n ? n : 1) * sizeof *x);
    if (x) narrow_q8_dequantise(t->data, scales, n, x);
    else mxrt_set_error("out of memory");
    free(scales);
    return x;
}

static const Node *weight_for(const Graph *g, const StFile *f, const char *name);

/* Scales of a q8 matrix of the build: written (or dropped) together with its values. */
static bool is_q8_scales(const Graph *g, const StFile *f, const StTensor *t)
{
    size_t len = strlen(t->name), sl = strlen(NARROW_Q8_SCALES_SUFFIX);
    if (len <= sl || strcmp(t->name + len - sl, NARROW_Q8_SCALES_SUFFIX) != 0) return false;
    char base[1024];
    snprintf(base, sizeof base, "%.*s", (int)(len - sl), t->name);
    const StTensor *v = st_find(f, base);
    return v && v->dtype == ST_I8 && weight_for(g, f, base);
}

/* One input tensor into the output: converted to `dt` (a matrix of the build) or copied. */
static int convert_tensor(Converter *c, const StFile *f, const StTensor *t, const Node *w, DType dt)
{
    OutTensor *o = add_out(c);
    if (!o) return mxrt_set_error("out of memory");
    o->w.name = t->name;
    o->w.rank = t->rank;
    memcpy(o->shape, t->shape, sizeof o->shape);
    o->w.shape = o->shape;
    bool same = (dt == DT_F32 && t->dtype == ST_F32) || (dt == DT_BF16 && t->dtype == ST_BF16) ||
                (dt == DT_F16 && t->dtype == ST_F16);
    if (!w || same) { /* not a matrix of the build, or already in its type: copied */
        o->w.dtype = t->dtype;
        o->w.data = t->data;
        return 0;
    }
    size_t n = (size_t)st_numel(t);
    if (dt == DT_Q8 && t->dtype == ST_I8) { /* already q8: values and scales copied */
        char name[1024];
        snprintf(name, sizeof name, "%s%s", t->name, NARROW_Q8_SCALES_SUFFIX);
        const StTensor *sc = st_find(f, name);
        float *check = input_f32(f, t); /* validates the scales */
        if (!check) return -1;
        free(check);
        o->w.dtype = ST_I8;
        o->w.data = t->data;
        OutTensor *s = add_out(c);
        if (!s) return mxrt_set_error("out of memory");
        s->w.name = sc->name;
        s->w.rank = sc->rank;
        memcpy(s->shape, sc->shape, sizeof s->shape);
        s->w.shape = s->shape;
        s->w.dtype = ST_F32;
        s->w.data = sc->data;
        return 0;
    }
    float *x = input_f32(f, t);
    if (!x) return -1;
    switch (dt) {
    case DT_F32:
        o->w.dtype = ST_F32;
        o->w.data = o->owned = x;
        return 0;
    case DT_BF16: case DT_F16: {
        uint16_t *h = malloc((n ? n : 1) * sizeof *h);
        if (!h) break;
        for (size_t i = 0; i < n; i++) h[i] = dt == DT_BF16 ? narrow_f32_to_bf16(x[i]) : narrow_f32_to_f16(x[i]);
        free(x);
        o->w.dtype = dt == DT_BF16 ? ST_BF16 : ST_F16;
        o->w.data = o->owned = h;
        return 0;
    }
    case DT_Q8: {
        int8_t *q = malloc(n ? n : 1);
        float *sc = malloc((n / NARROW_Q8_BLOCK + 1) * sizeof *sc);
        int64_t bad = q && sc ? narrow_q8_quantise(x, n, q, sc) : -1;
        free(x);
        if (!q || !sc || bad >= 0) {
            free(q);
            free(sc);
            if (!q || !sc) return mxrt_set_error("out of memory");
            return mxrt_set_error("tensor '%s': element %lld is not finite, so it cannot be "
                                  "quantised to q8", t->name, (long long)bad);
        }
        o->w.dtype = ST_I8;
        o->w.data = o->owned = q;
        OutTensor *s = add_out(c);
        if (!s) {
            free(sc);
            return mxrt_set_error("out of memory");
        }
        size_t len = strlen(t->name) + sizeof NARROW_Q8_SCALES_SUFFIX;
        s->name = malloc(len);
        if (!s->name) {
            free(sc);
            return mxrt_set_error("out of memory");
        }
        snprintf(s->name, len, "%s%s", t->name, NARROW_Q8_SCALES_SUFFIX);
        s->w.name = s->name;
        s->w.rank = t->rank;
        memcpy(s->shape, t->shape, sizeof s->shape);
        s->shape[t->rank - 1] /= NARROW_Q8_BLOCK;
        s->w.shape = s->shape;
        s->w.dtype = ST_F32;
        s->w.data = s->owned = sc;
        return 0;
    }
    case DT_I32:
        break;
    }
    free(x);
    return mxrt_set_error("out of memory converting tensor '%s'", t->name);
}

/* Wider elements first, so every tensor of the output is aligned to its element size. */
static int by_width(const void *a, const void *b)
{
    size_t wa = st_dtype_size(((const OutTensor *)a)->w.dtype), wb = st_dtype_size(((const OutTensor *)b)->w.dtype);
    return wa < wb ? 1 : wa > wb ? -1 : 0;
}

int cmd_convert(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"weight-type", required_argument, 0, 'w'},
        {"model", required_argument, 0, 'm'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *spec_path = NULL, *in_path = NULL, *out_path = NULL, *model = NULL;
    int wtype = -1;
    int ch;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "+ho:", longopts, NULL)) != -1 || optind < argc) {
        if (ch == -1) {
            const char *arg = argv[optind++];
            if (!spec_path) spec_path = arg;
            else if (!in_path) in_path = arg;
            else {
                fprintf(stderr, "mxc convert: unexpected argument '%s'\n", arg);
                return MXC_EXIT_USAGE;
            }
            continue;
        }
        switch (ch) {
        case 'h': fputs(convert_usage, stdout); return MXC_EXIT_OK;
        case 'o': out_path = optarg; break;
        case 'm': model = optarg; break;
        case 'w': {
            WeightType t;
            if (!spec_weight_type_parse(optarg, &t)) {
                fprintf(stderr, "mxc convert: --weight-type takes f32, bf16, f16 or q8, not '%s'\n", optarg);
                return MXC_EXIT_USAGE;
            }
            wtype = (int)t;
            break;
        }
        default:
            fprintf(stderr, "mxc convert: option '%s' is unknown or lacks its argument\n%s",
                    argv[optind - 1], convert_usage);
            return MXC_EXIT_USAGE;
        }
    }
    if (!spec_path || !in_path || !out_path) {
        fprintf(stderr, "mxc convert: needs SPEC, IN.safetensors and -o OUT.safetensors\n%s", convert_usage);
        return MXC_EXIT_USAGE;
    }

    int status = MXC_EXIT_ERROR;
    DiagSink diag;
    diag_init(&diag, stderr);
    SpecFile *file = spec_load_file(spec_path, &diag);
    diag_free(&diag);
    const ModelSpec *m = file ? spec_find_model(file, model) : NULL;
    Graph *g = NULL;
    StFile *f = NULL;
    Converter c = {0};
    if (file && !m) fprintf(stderr, "mxc convert: error: %s: no model %s%s\n", spec_path,
                            model ? "named " : "chosen (use --model)", model ? model : "");
    if (!m) goto out;
    diag_init(&diag, stderr);
    g = ir_lower_model(m, 1, &diag);
    diag_free(&diag);
    if (!g) goto out;
    if (wtype >= 0) g->weight_dtype = ir_weight_dtype((WeightType)wtype);
    if (!passes_run(g, NULL)) goto out;
    if (st_open(in_path, &f) != 0) {
        fprintf(stderr, "mxc convert: error: %s\n", mxrt_last_error());
        goto out;
    }
    c.progress = isatty(2);
    clock_gettime(CLOCK_MONOTONIC, &c.start);
    c.tensors_total = st_count(f);
    for (int i = 0; i < st_count(f); i++) c.bytes_total += (double)st_at(f, i)->nbytes;
    for (int i = 0; i < st_count(f); i++) {
        const StTensor *t = st_at(f, i);
        c.tensors_done++;
        c.bytes_done += (double)t->nbytes;
        if (is_q8_scales(g, f, t)) continue; /* handled with its values */
        const Node *w = weight_for(g, f, t->name);
        /* a matrix takes the build's type; 1-D and other parameters stay as they are */
        DType dt = w ? w->type.dtype : DT_F32;
        if (w && g->weight_dtype == DT_Q8 && dt == DT_BF16)
            fprintf(stderr, "%smxc convert: '%s': last dimension %lld is not a multiple of %d, "
                    "stored as bf16 instead of q8\n", c.progress ? "\n" : "", t->name,
                    (long long)t->shape[t->rank - 1], NARROW_Q8_BLOCK);
        if (w && w->type.dtype == DT_F32 && g->weight_dtype != DT_F32) w = NULL; /* stays as stored */
        if (convert_tensor(&c, f, t, w, dt) != 0) {
            fprintf(stderr, "%smxc convert: error: %s: %s\n", c.progress ? "\n" : "", in_path,
                    mxrt_last_error());
            goto out;
        }
        show_progress(&c, false);
    }
    qsort(c.out, (size_t)c.n, sizeof *c.out, by_width);
    StWriteTensor *list = malloc(((size_t)c.n + 1) * sizeof *list);
    if (!list) goto out;
    for (int i = 0; i < c.n; i++) { /* shapes point into c.out, which moved while it grew */
        list[i] = c.out[i].w;
        list[i].shape = c.out[i].shape;
    }
    const char *q8_meta[] = {NARROW_META_FORMAT, "q8", NARROW_META_Q8_VERSION, "1",
                             NARROW_META_Q8_BLOCK, "32", NULL};
    bool any_q8 = false;
    for (int i = 0; i < c.n; i++) any_q8 |= c.out[i].w.dtype == ST_I8;
    int rc = st_write(out_path, list, c.n, any_q8 ? q8_meta : NULL);
    free(list);
    show_progress(&c, true);
    if (rc != 0) {
        fprintf(stderr, "mxc convert: error: %s\n", mxrt_last_error());
        goto out;
    }
    status = MXC_EXIT_OK;
out:
    for (int i = 0; i < c.n; i++) {
        free(c.out[i].owned);
        free(c.out[i].name);
    }
    free(c.out);
    st_close(f);
    ir_graph_free(g);
    spec_free(file);
    return status;
}
