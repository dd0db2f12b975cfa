/* bind.c - resolve, check and bind a model's weight slots (see bind.h).
 *
 * Two passes: the first resolves every slot to a tensor and collects every problem, so one
 * message can list them all; only if there are none does the second pass bind (and, where
 * needed, convert). A tensor bound to several slots (tied weights) is converted once.
 * Each slot has the dtype its kernels read (MxrtDtype): a tensor stored in it is used in
 * place; any other float tensor, or a q8 one, is converted once (through f32). */
#include "runtime/bind.h"
#include "runtime/error.h"
#include "runtime/narrow.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct BoundWeights {
    const float **slots; /* [n_weights]; each points at data of its slot's dtype */
    void **owned;        /* converted copies, freed with the binding */
    int n_owned;
    const char *label;   /* the file's, for errors of the second pass (valid while binding) */
};

/* What a slot was resolved to: a tensor, and for a q8-encoded (I8) one its scales. */
typedef struct Resolved {
    const StTensor *t;
    const StTensor *scales;
} Resolved;

/* Problems collected in the first pass: as many as fit in one error message. */
typedef struct BindProblems {
    char text[MXRT_ERROR_CAP];
    size_t len;
    size_t budget; /* room in `text` that the final message can afford */
    int count;     /* all problems found */
    int shown;     /* problems in `text` */
} BindProblems;

static void bind_problem(BindProblems *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void bind_problem(BindProblems *p, const char *fmt, ...)
{
    char one[MXRT_ERROR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(one, sizeof one, fmt, ap);
    va_end(ap);
    p->count++;
    size_t n = strlen(one), sep = p->shown ? 2 : 0;
    /* The first problem is always shown (cut if need be); later ones only if they fit. */
    if (p->shown && p->len + sep + n > p->budget)
        return;
    snprintf(p->text + p->len, sizeof p->text - p->len, "%s%s", sep ? "; " : "", one);
    p->len = strlen(p->text);
    p->shown++;
}

/* The type slot i is read in (MxrtModelDesc.weight_dtypes; none: every slot is F32). */
static int32_t slot_dtype(const MxrtModelDesc *desc, int i)
{
    return desc->weight_dtypes ? desc->weight_dtypes[i] : MXRT_DTYPE_F32;
}

/* Reject descriptor entries that no compiler should emit; these are bugs, not user errors. */
static int bind_check_spec(const MxrtModelDesc *desc, int i)
{
    const MxrtTensorSpec *s = &desc->weights[i];
    const char *model = desc->name ? desc->name : "?";
    char q[MXRT_QUOTE_CAP];
    if (!s->name)
        return mxrt_set_error("model '%s': weight slot %d has no name", model, i);
    mxrt_quote(q, sizeof q, s->name);
    if (s->rank < 1 || s->rank > MXRT_MAX_RANK)
        return mxrt_set_error("model '%s': weight '%s' has invalid rank %d", model, q, s->rank);
    for (int d = 0; d < s->rank; d++)
        if (s->dims[d] < 0)
            return mxrt_set_error("model '%s': weight '%s' has a negative dimension", model, q);
    if (s->transform == MXRT_XFORM_SWAP_MIDDLE) {
        int64_t stored = 1, seen = 1;
        for (int d = 0; d < s->rank; d++)
            stored *= s->dims[d];
        for (int d = 0; d < 4; d++)
            seen = s->xform_dims[d] > 0 ? seen * s->xform_dims[d] : -1;
        if (seen != stored)
            return mxrt_set_error("model '%s': weight '%s' has a layout transform that does "
                                  "not fit its shape", model, q);
    } else if (s->transform != MXRT_XFORM_NONE) {
        return mxrt_set_error("model '%s': weight '%s' asks for transform %d, which this "
                              "runtime does not know (runtime too old?)", model, q,
                              (int)s->transform);
    }
    int32_t dt = slot_dtype(desc, i);
    if (s->transform != MXRT_XFORM_NONE && dt != MXRT_DTYPE_F32)
        return mxrt_set_error("model '%s': weight '%s' asks for a layout transform of a "
                              "narrow dtype, which this runtime does not do", model, q);
    if (dt < MXRT_DTYPE_F32 || dt > MXRT_DTYPE_Q8_SCALES)
        return mxrt_set_error("model '%s': weight '%s' asks for dtype %d, which this runtime "
                              "does not know (runtime too old?)", model, q, (int)dt);
    if (dt == MXRT_DTYPE_Q8) {
        const MxrtTensorSpec *sc = i + 1 < desc->n_weights ? &desc->weights[i + 1] : NULL;
        int ok = s->dims[s->rank - 1] % NARROW_Q8_BLOCK == 0 && sc &&
                 slot_dtype(desc, i + 1) == MXRT_DTYPE_Q8_SCALES && sc->rank == s->rank &&
                 sc->name && strcmp(sc->name, s->name) == 0;
        for (int d = 0; ok && d < s->rank; d++)
            ok = sc->dims[d] == (d == s->rank - 1 ? s->dims[d] / NARROW_Q8_BLOCK : s->dims[d]);
        if (!ok)
            return mxrt_set_error("model '%s': q8 weight '%s' has no matching scales slot "
                                  "(blocks of %d)", model, q, NARROW_Q8_BLOCK);
    }
    if (dt == MXRT_DTYPE_Q8_SCALES && (i == 0 || slot_dtype(desc, i - 1) != MXRT_DTYPE_Q8))
        return mxrt_set_error("model '%s': scales slot '%s' does not follow a q8 weight", model, q);
    return 0;
}

/* The first of the '\n'-separated names in `alts` that `f` holds, or NULL. */
static const StTensor *bind_find_alt(const StFile *f, const char *alts)
{
    char one[1024];
    for (const char *at = alts; at && *at;) {
        size_t len = strcspn(at, "\n");
        if (len < sizeof one) {
            memcpy(one, at, len);
            one[len] = '\0';
            const StTensor *t = st_find(f, one);
            if (t)
                return t;
        }
        at += len + (at[len] == '\n');
    }
    return NULL;
}

/* 'a' or 'b' or 'c' for the names of `alts`, cut short to fit `cap`. */
static const char *bind_quote_alts(char *buf, size_t cap, const char *alts)
{
    char one[1024], q[MXRT_QUOTE_CAP];
    size_t o = 0;
    buf[0] = '\0';
    for (const char *at = alts; *at;) {
        size_t len = strcspn(at, "\n");
        size_t keep = len < sizeof one ? len : sizeof one - 1;
        memcpy(one, at, keep);
        one[keep] = '\0';
        int w = snprintf(buf + o, cap - o, "%s'%s'", o ? " or " : "", mxrt_quote(q, sizeof q, one));
        if (w < 0 || (size_t)w >= cap - o)
            break;
        o += (size_t)w;
        at += len + (at[len] == '\n');
    }
    return buf;
}

/* Is the file in the q8 format this runtime reads? NULL if so, else why not. */
static const char *q8_format_problem(const StFile *f)
{
    const char *fmt = st_metadata(f, NARROW_META_FORMAT);
    const char *ver = st_metadata(f, NARROW_META_Q8_VERSION);
    const char *blk = st_metadata(f, NARROW_META_Q8_BLOCK);
    if (!fmt || strcmp(fmt, "q8") != 0)
        return "the file's __metadata__ does not say \"" NARROW_META_FORMAT "\": \"q8\"";
    if (!ver || strcmp(ver, "1") != 0)
        return "the file's q8 version (__metadata__ \"" NARROW_META_Q8_VERSION "\") is not 1";
    if (!blk || strcmp(blk, "32") != 0)
        return "the file's q8 block (__metadata__ \"" NARROW_META_Q8_BLOCK "\") is not 32";
    return NULL;
}

/* The scales of q8 tensor t: present, F32, [..., K / 32], finite and >= 0. */
static const StTensor *q8_scales(const StTensor *t, const StFile *f, BindProblems *p)
{
    char qn[MXRT_QUOTE_CAP], have[MXRT_SHAPE_CAP], want[MXRT_SHAPE_CAP];
    char name[1024];
    mxrt_quote(qn, sizeof qn, t->name);
    const char *why = q8_format_problem(f);
    if (why) {
        bind_problem(p, "tensor '%s' has dtype I8, but %s (I8 weights must be q8 values)", qn, why);
        return NULL;
    }
    if (t->rank < 1 || t->shape[t->rank - 1] % NARROW_Q8_BLOCK != 0) {
        bind_problem(p, "q8 tensor '%s': the last dimension is not a multiple of the block (%d)",
                     qn, NARROW_Q8_BLOCK);
        return NULL;
    }
    if (strlen(t->name) + sizeof NARROW_Q8_SCALES_SUFFIX > sizeof name) {
        bind_problem(p, "q8 tensor '%s': name too long", qn);
        return NULL;
    }
    snprintf(name, sizeof name, "%s%s", t->name, NARROW_Q8_SCALES_SUFFIX);
    const StTensor *sc = st_find(f, name);
    char qs[MXRT_QUOTE_CAP];
    mxrt_quote(qs, sizeof qs, name);
    if (!sc) {
        bind_problem(p, "q8 tensor '%s' has no scales (missing tensor '%s')", qn, qs);
        return NULL;
    }
    if (sc->dtype != ST_F32) {
        bind_problem(p, "q8 scales '%s' have dtype %s, but must be F32", qs, st_dtype_name(sc->dtype));
        return NULL;
    }
    int64_t dims[ST_MAX_RANK];
    for (int d = 0; d < t->rank; d++)
        dims[d] = d == t->rank - 1 ? t->shape[d] / NARROW_Q8_BLOCK : t->shape[d];
    int same = sc->rank == t->rank;
    for (int d = 0; same && d < t->rank; d++)
        same = sc->shape[d] == dims[d];
    if (!same) {
        bind_problem(p, "q8 scales '%s' have shape %s but blocks of %d over '%s' need %s", qs,
                     mxrt_format_shape(have, sizeof have, sc->shape, sc->rank), NARROW_Q8_BLOCK,
                     qn, mxrt_format_shape(want, sizeof want, dims, t->rank));
        return NULL;
    }
    const unsigned char *b = sc->data;
    for (int64_t i = 0; i < st_numel(sc); i++) {
        uint32_t u = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 | (uint32_t)b[4 * i + 2] << 16 |
                     (uint32_t)b[4 * i + 3] << 24;
        float v;
        memcpy(&v, &u, sizeof v);
        if (!(v >= 0 && v - v == 0)) {
            bind_problem(p, "q8 scales '%s': scale %lld is %s (scales must be finite and >= 0)",
                         qs, (long long)i, v != v ? "NaN" : v < 0 && v - v == 0 ? "negative" : "infinite");
            return NULL;
        }
    }
    return sc;
}

/* Find the tensor for slot `s`, or record why it cannot be used. */
static Resolved bind_resolve(const MxrtTensorSpec *s, int32_t dtype, const StFile *f,
                             BindProblems *p)
{
    Resolved r = {NULL, NULL};
    if (dtype == MXRT_DTYPE_Q8_SCALES) /* bound with its q8 weight, the slot before */
        return r;
    char qn[2 * MXRT_QUOTE_CAP + 8], qa[MXRT_QUOTE_CAP], have[MXRT_SHAPE_CAP], want[MXRT_SHAPE_CAP];
    const StTensor *t = st_find(f, s->name);
    if (!t && s->alt_name)
        t = bind_find_alt(f, s->alt_name);
    if (!t) {
        mxrt_quote(qn, sizeof qn, s->name);
        if (s->alt_name)
            bind_problem(p, "missing tensor '%s' (also looked for %s)", qn,
                         bind_quote_alts(qa, sizeof qa, s->alt_name));
        else
            bind_problem(p, "missing tensor '%s'", qn);
        return r;
    }
    /* A tensor of a sharded checkpoint is named with its shard. */
    const char *in = st_tensor_file(f, t);
    mxrt_quote(qn, MXRT_QUOTE_CAP, t->name);
    if (strcmp(in, st_label(f)) != 0) {
        size_t at = strlen(qn);
        snprintf(qn + at, sizeof qn - at, "' in '");
        mxrt_quote(qn + at + 6, MXRT_QUOTE_CAP, in);
    }
    int same = t->rank == s->rank;
    for (int d = 0; same && d < s->rank; d++)
        same = t->shape[d] == s->dims[d];
    if (!same) {
        bind_problem(p, "tensor '%s' has shape %s but the model expects %s", qn,
                     mxrt_format_shape(have, sizeof have, t->shape, t->rank),
                     mxrt_format_shape(want, sizeof want, s->dims, s->rank));
        return r;
    }
    if (t->dtype == ST_I8 && s->rank < 2) {
        bind_problem(p, "tensor '%s' has dtype I8, but this parameter must be stored as floats "
                     "(q8 is for matrices)", qn);
        return r;
    }
    if (t->dtype == ST_I8) { /* q8 values; any matrix slot takes them (dequantised if need be) */
        r.scales = q8_scales(t, f, p);
        if (r.scales)
            r.t = t;
        return r;
    }
    if (!st_dtype_is_float(t->dtype)) {
        bind_problem(p, "tensor '%s' has dtype %s, but weights must be F32, F16, BF16 or F64 "
                     "(or q8: I8 with scales)", qn, st_dtype_name(t->dtype));
        return r;
    }
    r.t = t;
    return r;
}

/* The tensor as f32, in a fresh array: converted, or dequantised from q8. */
static float *read_f32(const Resolved *r)
{
    float *x;
    if (r->t->dtype != ST_I8)
        return st_read_f32(r->t, &x) ? NULL : x;
    char q[MXRT_QUOTE_CAP];
    size_t n = (size_t)st_numel(r->t);
    float *scales;
    if (st_read_f32(r->scales, &scales))
        return NULL;
    x = malloc((n ? n : 1) * sizeof *x);
    if (!x) {
        free(scales);
        mxrt_set_error("out of memory converting tensor '%s'", mxrt_quote(q, sizeof q, r->t->name));
        return NULL;
    }
    narrow_q8_dequantise(r->t->data, scales, n, x);
    free(scales);
    return x;
}

static int own(BoundWeights *b, void *p)
{
    b->owned[b->n_owned++] = p;
    return 0;
}

/* f32 -> bf16 or f16 into a fresh array the binding owns. */
static const void *to_half(BoundWeights *b, const Resolved *r, int32_t dtype)
{
    float *x = read_f32(r);
    if (!x)
        return NULL;
    size_t n = (size_t)st_numel(r->t);
    uint16_t *h = malloc((n ? n : 1) * sizeof *h);
    if (!h) {
        free(x);
        mxrt_set_error("out of memory converting a tensor to 16 bits");
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        h[i] = dtype == MXRT_DTYPE_BF16 ? narrow_f32_to_bf16(x[i]) : narrow_f32_to_f16(x[i]);
    free(x);
    own(b, h);
    return h;
}

/* A q8 slot (values, then scales at slot i + 1): in place from a q8 file, else quantised. */
static int bind_q8(BoundWeights *b, int i, const Resolved *r)
{
    char q[MXRT_QUOTE_CAP];
    if (r->t->dtype == ST_I8 && ((uintptr_t)r->scales->data & 3) == 0) {
        b->slots[i] = r->t->data;
        b->slots[i + 1] = r->scales->data;
        return 0;
    }
    float *x = read_f32(r);
    if (!x)
        return -1;
    size_t n = (size_t)st_numel(r->t);
    int8_t *qv = malloc(n ? n : 1);
    float *sc = malloc((n / NARROW_Q8_BLOCK + 1) * sizeof *sc);
    int64_t bad = qv && sc ? narrow_q8_quantise(x, n, qv, sc) : -1;
    free(x);
    if (!qv || !sc || bad >= 0) {
        free(qv);
        free(sc);
        mxrt_quote(q, sizeof q, r->t->name);
        if (!qv || !sc)
            return mxrt_set_error("out of memory quantising tensor '%s'", q);
        return mxrt_set_error("%s: tensor '%s': element %lld is not finite, so it cannot be "
                              "quantised to q8", b->label, q, (long long)bad);
    }
    own(b, qv);
    own(b, sc);
    b->slots[i] = (const float *)(const void *)qv;
    b->slots[i + 1] = sc;
    return 0;
}

static int host_le(void)
{
    uint16_t one = 1;
    unsigned char c;
    memcpy(&c, &one, 1);
    return c == 1;
}

/* MXRT_XFORM_SWAP_MIDDLE: from [a][b][c][d] to [a][c][b][d]. */
static void swap_middle(const float *from, float *to, const int64_t v[4])
{
    int64_t a = v[0], b = v[1], c = v[2], d = v[3];
    for (int64_t i = 0; i < a; i++)
        for (int64_t j = 0; j < b; j++)
            for (int64_t k = 0; k < c; k++)
                memcpy(to + ((i * c + k) * b + j) * d, from + ((i * b + j) * c + k) * d,
                       (size_t)d * sizeof *to);
}

/* An f32 slot: in place, or converted and/or rearranged (MXRT_XFORM_SWAP_MIDDLE). */
static int bind_f32(BoundWeights *b, const MxrtTensorSpec *s, int i, const Resolved *r)
{
    const StTensor *t = r->t;
    bool swap = s->transform == MXRT_XFORM_SWAP_MIDDLE;
    if (!swap && st_is_f32_in_place(t)) {
        b->slots[i] = t->data;
        return 0;
    }
    float *copy = NULL;
    if (!st_is_f32_in_place(t) && !(copy = read_f32(r)))
        return -1;
    if (swap) {
        const float *from = copy ? copy : t->data;
        size_t n = (size_t)st_numel(t);
        float *moved = malloc((n ? n : 1) * sizeof *moved);
        if (!moved) {
            free(copy);
            char q[MXRT_QUOTE_CAP];
            return mxrt_set_error("out of memory rearranging tensor '%s'",
                                  mxrt_quote(q, sizeof q, t->name));
        }
        swap_middle(from, moved, s->xform_dims);
        free(copy);
        copy = moved;
    }
    own(b, copy);
    b->slots[i] = copy;
    return 0;
}

/* Point slot i (of dtype `dtype`) at its tensor: in place, shared with an earlier slot of
 * the same tensor and dtype, or a converted copy. */
static int bind_slot(BoundWeights *b, const Resolved *src, const MxrtModelDesc *desc, int i)
{
    const Resolved *r = &src[i];
    int32_t dtype = slot_dtype(desc, i);
    if (dtype == MXRT_DTYPE_Q8_SCALES)
        return 0; /* bound by the q8 slot before it */
    for (int j = 0; j < i; j++)
        if (src[j].t == r->t && slot_dtype(desc, j) == dtype &&
            desc->weights[j].transform == desc->weights[i].transform) {
            b->slots[i] = b->slots[j];
            if (dtype == MXRT_DTYPE_Q8)
                b->slots[i + 1] = b->slots[j + 1];
            return 0;
        }
    const StTensor *t = r->t;
    switch (dtype) {
    case MXRT_DTYPE_F32:
        return bind_f32(b, &desc->weights[i], i, r);
    case MXRT_DTYPE_BF16:
    case MXRT_DTYPE_F16: {
        StDtype want = dtype == MXRT_DTYPE_BF16 ? ST_BF16 : ST_F16;
        const void *data = t->dtype == want && ((uintptr_t)t->data & 1) == 0 && host_le()
                               ? t->data : to_half(b, r, dtype);
        if (!data)
            return -1;
        b->slots[i] = data;
        return 0;
    }
    case MXRT_DTYPE_Q8:
        return bind_q8(b, i, r);
    }
    return mxrt_set_error("weight slot %d has an unknown dtype", i);
}

int bind_weights(const MxrtModelDesc *desc, const StFile *f, BoundWeights **out)
{
    if (!out)
        return mxrt_set_error("bind_weights: NULL output pointer");
    *out = NULL;
    if (!desc || !f)
        return mxrt_set_error("bind_weights: NULL argument");
    int n = desc->n_weights;
    if (n < 0 || (n > 0 && !desc->weights))
        return mxrt_set_error("model '%s': invalid weight table (%d weights)",
                              desc->name ? desc->name : "?", n);
    for (int i = 0; i < n; i++)
        if (bind_check_spec(desc, i))
            return -1;

    size_t slots = (size_t)(n ? n : 1);
    BoundWeights *b = calloc(1, sizeof *b);
    Resolved *src = calloc(slots, sizeof *src);
    if (b) {
        b->slots = calloc(slots, sizeof *b->slots);
        b->owned = calloc(2 * slots, sizeof *b->owned); /* a q8 slot owns values and scales */
    }
    if (!b || !src || !b->slots || !b->owned) {
        free(src);
        bind_free(b);
        return mxrt_set_error("%s: out of memory binding %d weights", st_label(f), n);
    }

    BindProblems p = {0};
    const char *model = desc->name ? desc->name : "?";
    size_t overhead = strlen(st_label(f)) + strlen(model) + 80;
    p.budget = overhead < sizeof p.text ? sizeof p.text - overhead : 0;
    for (int i = 0; i < n; i++)
        src[i] = bind_resolve(&desc->weights[i], slot_dtype(desc, i), f, &p);

    int rc = 0;
    if (p.count > 0) {
        char more[48] = "";
        if (p.count > p.shown)
            snprintf(more, sizeof more, "; and %d more", p.count - p.shown);
        rc = mxrt_set_error("%s: cannot bind the weights of model '%s' (%d problem%s): %s%s",
                            st_label(f), model, p.count, p.count == 1 ? "" : "s", p.text, more);
    }
    b->label = st_label(f);
    for (int i = 0; rc == 0 && i < n; i++)
        rc = bind_slot(b, src, desc, i);
    free(src);
    if (rc != 0) {
        bind_free(b);
        return -1;
    }
    *out = b;
    return 0;
}

const float *const *bind_slots(const BoundWeights *b)
{
    return b ? (const float *const *)b->slots : NULL;
}

int bind_copied_count(const BoundWeights *b)
{
    return b ? b->n_owned : 0;
}

void bind_free(BoundWeights *b)
{
    if (!b)
        return;
    for (int i = 0; i < b->n_owned; i++)
        free(b->owned[i]);
    free(b->owned);
    free(b->slots);
    free(b);
}
