/* bind.c - resolve, check and bind a model's weight slots (see bind.h).
 *
 * Two passes: the first resolves every slot to a tensor and collects every problem, so one
 * message can list them all; only if there are none does the second pass bind (and, where
 * needed, convert). A tensor bound to several slots (tied weights) is converted once. */
#include "runtime/bind.h"
#include "runtime/error.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct BoundWeights {
    const float **slots; /* [n_weights] */
    float **owned;       /* converted copies, freed with the binding */
    int n_owned;
};

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

/* Find the tensor for slot `s`, or record why it cannot be used. */
static const StTensor *bind_resolve(const MxrtTensorSpec *s, const StFile *f, BindProblems *p)
{
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
        return NULL;
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
        return NULL;
    }
    if (!st_dtype_is_float(t->dtype)) {
        bind_problem(p, "tensor '%s' has dtype %s, but weights must be F32, F16, BF16 or F64",
                     qn, st_dtype_name(t->dtype));
        return NULL;
    }
    return t;
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

/* Point slot i (spec s) at tensor t: in place, shared with an earlier slot that reads t the
 * same way, or a fresh copy (converted, rearranged, or both). */
static int bind_slot(BoundWeights *b, const StTensor **src, const MxrtModelDesc *desc, int i,
                     const StTensor *t)
{
    const MxrtTensorSpec *s = &desc->weights[i];
    src[i] = t;
    for (int j = 0; j < i; j++)
        if (src[j] == t && desc->weights[j].transform == s->transform) {
            b->slots[i] = b->slots[j];
            return 0;
        }
    bool swap = s->transform == MXRT_XFORM_SWAP_MIDDLE;
    if (!swap && st_is_f32_in_place(t)) {
        b->slots[i] = t->data;
        return 0;
    }
    float *copy = NULL;
    if (!st_is_f32_in_place(t) && st_read_f32(t, &copy))
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
    b->owned[b->n_owned++] = copy;
    b->slots[i] = copy;
    return 0;
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
    const StTensor **src = calloc(slots, sizeof *src);
    if (b) {
        b->slots = calloc(slots, sizeof *b->slots);
        b->owned = calloc(slots, sizeof *b->owned);
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
        src[i] = bind_resolve(&desc->weights[i], f, &p);

    int rc = 0;
    if (p.count > 0) {
        char more[48] = "";
        if (p.count > p.shown)
            snprintf(more, sizeof more, "; and %d more", p.count - p.shown);
        rc = mxrt_set_error("%s: cannot bind the weights of model '%s' (%d problem%s): %s%s",
                            st_label(f), model, p.count, p.count == 1 ? "" : "s", p.text, more);
    }
    for (int i = 0; rc == 0 && i < n; i++)
        rc = bind_slot(b, src, desc, i, src[i]);
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
