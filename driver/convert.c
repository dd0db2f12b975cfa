/* convert.c - `mxc convert SPEC IN --weight-type T -o OUT.safetensors`.
 *
 * Stores a checkpoint's big matrices in the type a build of SPEC with --weight-type T reads
 * in place (zero-copy), so that opening it costs no conversion: the spec is lowered and run
 * through the passes to learn which tensors are matrices (the narrow-weights pass decides,
 * exactly as for a build) and which q8 cannot take (their last dimension is not a multiple
 * of the block; they become bf16 and convert says so). Every other tensor is copied as it is
 * stored. Input tensors may be of any float type or q8 themselves, in one file or in the
 * shards of an index (checkpoint.h). The output is planned first (names, types, shapes: the
 * header) and then written tensor by tensor, each converted when its turn comes, so a 7B
 * checkpoint needs the memory of its largest tensor, not of the output. It goes to a
 * temporary name renamed at the end (st_write_streamed); a failed or interrupted run never
 * leaves a half-written file. Progress goes to stderr when it is a terminal. */
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "driver/driver.h"
#include "frontend/spec.h"
#include "import/import.h"
#include "ir/lower.h"
#include "passes/passes.h"
#include "runtime/checkpoint.h"
#include "runtime/error.h"
#include "runtime/mxrt.h"
#include "runtime/narrow.h"
#include "runtime/safetensors.h"

static const char convert_usage[] =
    "usage: mxc convert SPEC IN --weight-type T -o OUT.safetensors\n"
    "       mxc convert DIR --weight-type T -o OUT.safetensors\n"
    "\n"
    "Store the checkpoint's projections and embedding as T (f32, bf16, f16 or q8), the type a\n"
    "build of SPEC with --weight-type T reads in place; other tensors are copied unchanged.\n"
    "IN is a safetensors file, a shard index (model.safetensors.index.json) or a folder holding\n"
    "either; SPEC may be a model folder (its config.json is imported), whose weights are then\n"
    "the default IN. The output is one file, written tensor by tensor (one tensor in memory at\n"
    "a time) under OUT.tmp and renamed at the end; progress shows when stderr is a terminal.\n"
    "\n"
    "options:\n"
    "  --weight-type T   f32, bf16, f16 or q8 (default: the spec's weight_type)\n"
    "  -o FILE           the output file (required)\n"
    "  --model NAME      the model to use when SPEC defines several\n"
    "  -h, --help        this text\n";

/* What one output tensor is made of. A q8 matrix gives two outputs, its scales (F32) and,
 * right after them, its values (I8): the scales are written first, the values they were
 * quantised with are kept until the next tensor is asked for. */
typedef enum { OUT_COPY, OUT_CONVERT, OUT_Q8_SCALES, OUT_Q8_VALUES } OutRole;

typedef struct OutTensor {
    StWriteTensor w;
    int64_t shape[ST_MAX_RANK];
    char *name;           /* owned: the scales' name when this run makes them */
    const StTensor *src;  /* the input tensor (for scales: the values they belong to) */
    OutRole role;
    DType to;             /* OUT_CONVERT: the build's type */
    int seq;              /* input order, for a stable sort */
} OutTensor;

typedef struct Converter {
    const StFile *f;
    OutTensor *out;
    int n, cap;
    void *buf;            /* the bytes of the tensor being written */
    int8_t *pending_q;    /* q8 values quantised with the scales just written */
    const StTensor *last_src; /* the input of the previous output, released when done */
    double bytes_done, bytes_total;
    int tensors_done, tensors_total;
    bool progress;
    struct timespec start;
} Converter;

static OutTensor *add_out(Converter *c, const StTensor *src, OutRole role, StDtype dtype)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        OutTensor *p = realloc(c->out, (size_t)c->cap * sizeof *p);
        if (!p) return NULL;
        c->out = p;
    }
    OutTensor *o = &c->out[c->n];
    memset(o, 0, sizeof *o);
    o->w.name = src->name;
    o->w.dtype = dtype;
    o->w.rank = src->rank;
    memcpy(o->shape, src->shape, sizeof o->shape);
    o->src = src;
    o->role = role;
    o->seq = c->n++;
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
static const Node *weight_for(const Graph *g, const char *name)
{
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

/* The scales stored beside an I8 tensor of the input, or NULL. */
static const StTensor *q8_scales_of(const StFile *f, const StTensor *t)
{
    char name[1024];
    snprintf(name, sizeof name, "%s%s", t->name, NARROW_Q8_SCALES_SUFFIX);
    return st_find(f, name);
}

/* The tensor's values as f32 (dequantised when it is q8: I8 with scales beside it). */
static float *input_f32(const StFile *f, const StTensor *t)
{
    float *x = NULL;
    if (t->dtype != ST_I8) return st_read_f32(t, &x) ? NULL : x;
    const StTensor *sc = q8_scales_of(f, t);
    size_t n = (size_t)st_numel(t);
    float *scales = NULL;
    if (!sc || sc->rank != t->rank || st_numel(sc) * NARROW_Q8_BLOCK != (int64_t)n ||
        st_read_f32(sc, &scales)) {
        mxrt_set_error("tensor '%s' is I8 without usable q8 scales '%s%s'", t->name, t->name,
                       NARROW_Q8_SCALES_SUFFIX);
        return NULL;
    }
    for (size_t i = 0; i < n / NARROW_Q8_BLOCK; i++)
        if (!(scales[i] >= 0 && scales[i] - scales[i] == 0)) {
            free(scales);
            mxrt_set_error("q8 scales '%s': scale %zu is not finite and >= 0", sc->name, i);
            return NULL;
        }
    x = malloc((n ? n : 1) * sizeof *x);
    if (x) narrow_q8_dequantise(t->data, scales, n, x);
    else mxrt_set_error("out of memory");
    free(scales);
    return x;
}

/* Scales of a q8 matrix of the build: written (or dropped) together with its values. */
static bool is_q8_scales(const Graph *g, const StFile *f, const StTensor *t)
{
    size_t len = strlen(t->name), sl = strlen(NARROW_Q8_SCALES_SUFFIX);
    if (len <= sl || strcmp(t->name + len - sl, NARROW_Q8_SCALES_SUFFIX) != 0) return false;
    char base[1024];
    snprintf(base, sizeof base, "%.*s", (int)(len - sl), t->name);
    const StTensor *v = st_find(f, base);
    return v && v->dtype == ST_I8 && weight_for(g, base);
}

/* Plan the outputs of input tensor t: copied, converted to `dt` (a matrix of the build), or
 * as q8 scales + values. Nothing is read yet. */
static int plan_tensor(Converter *c, const StTensor *t, const Node *w, DType dt)
{
    bool same = (dt == DT_F32 && t->dtype == ST_F32) || (dt == DT_BF16 && t->dtype == ST_BF16) ||
                (dt == DT_F16 && t->dtype == ST_F16);
    if (!w || same) /* not a matrix of the build, or already in its type: copied */
        return add_out(c, t, OUT_COPY, t->dtype) ? 0 : mxrt_set_error("out of memory");
    if (dt != DT_Q8) {
        OutTensor *o = add_out(c, t, OUT_CONVERT, dt == DT_F32 ? ST_F32 : dt == DT_BF16 ? ST_BF16 : ST_F16);
        if (!o) return mxrt_set_error("out of memory");
        o->to = dt;
        return 0;
    }
    OutTensor *s = add_out(c, t, OUT_Q8_SCALES, ST_F32);
    if (!s) return mxrt_set_error("out of memory");
    size_t len = strlen(t->name) + sizeof NARROW_Q8_SCALES_SUFFIX;
    if (!(s->name = malloc(len))) return mxrt_set_error("out of memory");
    snprintf(s->name, len, "%s%s", t->name, NARROW_Q8_SCALES_SUFFIX);
    s->w.name = s->name;
    s->shape[t->rank - 1] /= NARROW_Q8_BLOCK;
    return add_out(c, t, OUT_Q8_VALUES, ST_I8) ? 0 : mxrt_set_error("out of memory");
}

/* Writing order: wider elements first, so that every tensor is aligned to its element size;
 * a q8 pair counts as F32 and stays together (its I8 values are a multiple of 32 bytes, so
 * what follows stays aligned). */
static size_t order_width(const OutTensor *o)
{
    return o->role == OUT_Q8_VALUES ? 4 : st_dtype_size(o->w.dtype);
}

static int by_width(const void *a, const void *b)
{
    const OutTensor *x = a, *y = b;
    size_t wx = order_width(x), wy = order_width(y);
    if (wx != wy) return wx < wy ? 1 : -1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* st_write_streamed's producer: the bytes of output i, made when it is its turn. */
static const void *produce(void *ctx, int i)
{
    Converter *c = ctx;
    const OutTensor *o = &c->out[i];
    const StTensor *t = o->src;
    size_t n = (size_t)st_numel(t);
    free(c->buf);
    c->buf = NULL;
    if (c->last_src && c->last_src != t)
        st_release(c->f, c->last_src); /* written: its pages need not stay in this process */
    c->last_src = t;
    if (o->role == OUT_Q8_VALUES) { /* the scales came just before (by_width keeps the pair) */
        c->buf = c->pending_q;
        c->pending_q = NULL;
        c->tensors_done++;
        c->bytes_done += (double)t->nbytes;
        show_progress(c, false);
        return c->buf ? c->buf : t->data; /* NULL: the input was q8 already */
    }
    free(c->pending_q);
    c->pending_q = NULL;
    float *x = NULL;
    switch (o->role) {
    case OUT_COPY:
        c->tensors_done++;
        c->bytes_done += (double)t->nbytes;
        show_progress(c, false);
        return t->data;
    case OUT_CONVERT:
        if (!(x = input_f32(c->f, t))) return NULL;
        if (o->to == DT_F32) return c->buf = x;
        uint16_t *h = malloc((n ? n : 1) * sizeof *h);
        if (h)
            for (size_t k = 0; k < n; k++)
                h[k] = o->to == DT_BF16 ? narrow_f32_to_bf16(x[k]) : narrow_f32_to_f16(x[k]);
        free(x);
        if (!h) break;
        c->tensors_done++;
        c->bytes_done += (double)t->nbytes;
        show_progress(c, false);
        return c->buf = h;
    case OUT_Q8_SCALES: {
        if (!(x = input_f32(c->f, t))) return NULL; /* for a q8 input: validates its scales */
        if (t->dtype == ST_I8) { /* already q8: values and scales copied as stored */
            free(x);
            return q8_scales_of(c->f, t)->data;
        }
        int8_t *q = malloc(n ? n : 1);
        float *sc = malloc((n / NARROW_Q8_BLOCK + 1) * sizeof *sc);
        int64_t bad = q && sc ? narrow_q8_quantise(x, n, q, sc) : -1;
        free(x);
        if (!q || !sc || bad >= 0) {
            free(q);
            free(sc);
            if (!q || !sc) break;
            mxrt_set_error("tensor '%s': element %lld is not finite, so it cannot be "
                           "quantised to q8", t->name, (long long)bad);
            return NULL;
        }
        c->pending_q = q;
        return c->buf = sc;
    }
    case OUT_Q8_VALUES:
        break;
    }
    mxrt_set_error("out of memory converting tensor '%s'", t->name);
    return NULL;
}

/* A signal ends the run without leaving the temporary output behind. */
static char *tmp_to_remove;

static void remove_tmp_and_exit(int sig)
{
    if (tmp_to_remove) unlink(tmp_to_remove);
    signal(sig, SIG_DFL);
    raise(sig);
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
    if (spec_path && !in_path && import_is_folder(spec_path)) in_path = spec_path;
    if (!spec_path || !in_path || !out_path) {
        fprintf(stderr, "mxc convert: needs SPEC, IN and -o OUT.safetensors\n%s", convert_usage);
        return MXC_EXIT_USAGE;
    }

    int status = MXC_EXIT_ERROR;
    DiagSink diag;
    diag_init(&diag, stderr);
    SpecFile *file = driver_load_spec(spec_path, &diag);
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
    if (ckpt_open(in_path, &f) != 0) {
        fprintf(stderr, "mxc convert: error: %s\n", mxrt_last_error());
        goto out;
    }
    c.f = f;
    c.progress = isatty(2);
    for (int i = 0; i < st_count(f); i++) {
        const StTensor *t = st_at(f, i);
        if (is_q8_scales(g, f, t)) continue; /* planned with its values */
        c.tensors_total++;
        c.bytes_total += (double)t->nbytes;
        const Node *w = weight_for(g, t->name);
        /* a matrix takes the build's type; 1-D and other parameters stay as they are */
        DType dt = w ? w->type.dtype : DT_F32;
        if (w && g->weight_dtype == DT_Q8 && dt == DT_BF16)
            fprintf(stderr, "mxc convert: '%s': last dimension %lld is not a multiple of %d, "
                    "stored as bf16 instead of q8\n", t->name,
                    (long long)t->shape[t->rank - 1], NARROW_Q8_BLOCK);
        if (w && w->type.dtype == DT_F32 && g->weight_dtype != DT_F32) w = NULL; /* stays as stored */
        if (plan_tensor(&c, t, w, dt) != 0) {
            fprintf(stderr, "mxc convert: error: %s: %s\n", in_path, mxrt_last_error());
            goto out;
        }
    }
    qsort(c.out, (size_t)c.n, sizeof *c.out, by_width);
    StWriteTensor *list = malloc(((size_t)c.n + 1) * sizeof *list);
    if (!list) goto out;
    bool any_q8 = false;
    for (int i = 0; i < c.n; i++) { /* shapes point into c.out, which moved while it grew */
        list[i] = c.out[i].w;
        list[i].shape = c.out[i].shape;
        list[i].data = c.out[i].role == OUT_COPY && c.out[i].src->nbytes == 0 ? c.out[i].src->data : NULL;
        any_q8 |= c.out[i].w.dtype == ST_I8;
    }
    const char *q8_meta[] = {NARROW_META_FORMAT, "q8", NARROW_META_Q8_VERSION, "1",
                             NARROW_META_Q8_BLOCK, "32", NULL};
    size_t plen = strlen(out_path);
    tmp_to_remove = malloc(plen + sizeof ST_WRITE_TMP_SUFFIX);
    if (tmp_to_remove) {
        memcpy(tmp_to_remove, out_path, plen);
        memcpy(tmp_to_remove + plen, ST_WRITE_TMP_SUFFIX, sizeof ST_WRITE_TMP_SUFFIX);
        signal(SIGINT, remove_tmp_and_exit);
        signal(SIGTERM, remove_tmp_and_exit);
        signal(SIGHUP, remove_tmp_and_exit);
    }
    clock_gettime(CLOCK_MONOTONIC, &c.start);
    int rc = st_write_streamed(out_path, list, c.n, any_q8 ? q8_meta : NULL, produce, &c);
    free(list);
    if (rc == 0) show_progress(&c, true);
    else if (c.progress) fputc('\n', stderr);
    if (rc != 0) {
        fprintf(stderr, "mxc convert: error: %s: %s\n", in_path, mxrt_last_error());
        goto out;
    }
    status = MXC_EXIT_OK;
out:
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    free(tmp_to_remove);
    tmp_to_remove = NULL;
    for (int i = 0; i < c.n; i++) free(c.out[i].name);
    free(c.out);
    free(c.buf);
    free(c.pending_q);
    st_close(f);
    ir_graph_free(g);
    spec_free(file);
    return status;
}
