/* runtime.c - the mxrt_* entry points behind a compiled model's P_* API (see mxrt.h).
 *
 * A model is an open weights file plus the binding of its tensors to the kernels' weight slots;
 * it is read-only after mxrt_open, so any number of threads may run it, each with its own
 * state. A state holds the recurrent memory of `batch` sequences and the kernels' scratch.
 * Every argument is checked before the first kernel call, so a failing call changes nothing.
 *
 * Handles carry a magic number that close/free overwrite. This catches most double frees and
 * uses of closed handles, but only best effort: reading a freed handle is itself undefined, so
 * a sanitizer will (rightly) still report it. */
#include "runtime/mxrt.h"
#include "runtime/bind.h"
#include "runtime/checkpoint.h"
#include "runtime/error.h"
#include "runtime/pool.h"
#include "runtime/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RT_MODEL_MAGIC 0x4D58524Du /* "MXRM" */
#define RT_STATE_MAGIC 0x4D585253u /* "MXRS" */
#define RT_DEAD_MAGIC 0xDEADDEADu
#define RT_ALIGN 64                /* state and scratch alignment, one cache line */
#define RT_MAX_BATCH 65536         /* sanity cap on sequences per state */

struct MxrtModel {
    uint32_t magic;
    const MxrtModelDesc *desc;
    StFile *file;          /* keeps the mapping the weights point into */
    BoundWeights *weights;
};

struct MxrtState {
    uint32_t magic;
    const MxrtModel *model;
    const MxrtModelDesc *desc; /* the model's, kept: the model may be closed before the state */
    int batch;
    size_t state_floats;   /* batch * desc->state_floats */
    float *state;          /* [batch][state_floats], 64-byte aligned */
    float *scratch;        /* [scratch_rows * scratch_floats_per_row], 64-byte aligned */
    size_t scratch_rows;   /* batch at first (a step's rows); grown by the first longer call */
    int threads;           /* threads the next call runs on */
    MxrtPool *pool;        /* started on first use with `threads` threads; NULL before */
};

/* User-facing name of an entry point, "<model>_<op>" like the exported wrapper. */
static const char *rt_where(char buf[96], const MxrtModel *m, const char *op)
{
    snprintf(buf, 96, "%.60s_%s", m->desc->name, op);
    return buf;
}

static int rt_check_model(const MxrtModel *m, const char *op)
{
    if (!m)
        return mxrt_set_error("%s: model is NULL", op);
    if (m->magic != RT_MODEL_MAGIC)
        return mxrt_set_error("%s: invalid model handle (already closed?)", op);
    return 0;
}

static int rt_check_state(const MxrtState *s, const char *where, const char *what)
{
    if (!s)
        return mxrt_set_error("%s: %s is NULL", where, what);
    if (s->magic != RT_STATE_MAGIC)
        return mxrt_set_error("%s: invalid %s handle (already freed?)", where, what);
    return 0;
}

/* a * b into *out, failing on size_t overflow. */
static int rt_mul(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return -1;
    *out = a * b;
    return 0;
}

/* --- models -------------------------------------------------------------------------------- */

/* The descriptor comes from our own compiler; a bad one is a compiler/runtime mismatch. */
static int rt_check_desc(const MxrtModelDesc *d)
{
    if (d->abi_version != MXRT_ABI_VERSION)
        return mxrt_set_error("open: the model was compiled for runtime ABI %d but this runtime "
                              "implements ABI %d; recompile it with a matching mxc",
                              (int)d->abi_version, MXRT_ABI_VERSION);
    if (!d->name)
        return mxrt_set_error("open: invalid model descriptor: no name");
    const char *why = NULL;
    if (d->n_weights < 0 || (d->n_weights > 0 && !d->weights))
        why = "bad weight table";
    else if (d->vocab_size < 1 || d->vocab_padded < d->vocab_size)
        why = "bad vocabulary size";
    else if (d->chunk_len < 1)
        why = "chunk_len < 1";
    else if (d->state_floats < 0 || d->scratch_floats_per_row < 0 || d->d_model < 0)
        why = "negative size";
    else if (!d->forward_chunk || !d->step)
        why = "missing kernel";
    if (why)
        return mxrt_set_error("%.60s_open: invalid model descriptor: %s", d->name, why);
    return 0;
}

int mxrt_open(const MxrtModelDesc *desc, const char *weights_path, MxrtModel **out)
{
    if (!out)
        return mxrt_set_error("open: NULL output pointer");
    *out = NULL;
    if (!desc)
        return mxrt_set_error("open: model descriptor is NULL");
    if (rt_check_desc(desc))
        return -1;
    if (!weights_path && !desc->embedded_weights)
        return mxrt_set_error("%.60s_open: weights path is NULL and the model has no embedded "
                              "weights (build it with --embed-weights)", desc->name);

    MxrtModel *m = calloc(1, sizeof *m);
    if (!m)
        return mxrt_set_error("%.60s_open: out of memory", desc->name);
    m->desc = desc;
    /* Embedded weights are validated and bound exactly like a file's, in place. */
    int opened = weights_path
                     ? ckpt_open(weights_path, &m->file)
                     : st_open_memory(desc->embedded_weights, (size_t)desc->embedded_size,
                                      "<embedded weights>", &m->file);
    if (opened || bind_weights(desc, m->file, &m->weights)) {
        st_close(m->file);
        free(m);
        return -1;
    }
    m->magic = RT_MODEL_MAGIC;
    *out = m;
    return 0;
}

void mxrt_close(MxrtModel *m)
{
    if (!m)
        return;
    if (rt_check_model(m, "close"))
        return; /* double close: leave it alone rather than free twice */
    m->magic = RT_DEAD_MAGIC;
    bind_free(m->weights);
    st_close(m->file);
    free(m);
}

/* --- states -------------------------------------------------------------------------------- */

/* 64-byte aligned, zeroed floats; at least one cache line so that the pointer is unique. */
static float *rt_alloc_floats(size_t n)
{
    size_t bytes;
    void *p;
    if (rt_mul(n, sizeof(float), &bytes))
        return NULL;
    if (bytes < RT_ALIGN)
        bytes = RT_ALIGN;
    if (posix_memalign(&p, RT_ALIGN, bytes) != 0)
        return NULL;
    memset(p, 0, bytes);
    return p;
}

/* Floats of weights a step reads: the size of the work, for the default thread count. */
static int64_t rt_weight_floats(const MxrtModelDesc *d)
{
    int64_t total = 0;
    for (int i = 0; i < d->n_weights; i++) {
        int64_t n = 1;
        for (int r = 0; r < d->weights[i].rank; r++) n *= d->weights[i].dims[r];
        total += n;
    }
    return total;
}

int mxrt_state_new(MxrtModel *m, int batch, MxrtState **out)
{
    char where[96];
    if (!out)
        return mxrt_set_error("state_new: NULL output pointer");
    *out = NULL;
    if (rt_check_model(m, "state_new"))
        return -1;
    const MxrtModelDesc *d = m->desc;
    rt_where(where, m, "state_new");
    if (batch < 1 || batch > RT_MAX_BATCH)
        return mxrt_set_error("%s: batch must be in [1, %d], got %d", where, RT_MAX_BATCH,
                              batch);

    size_t state_n, rows, scratch_n;
    if (rt_mul((size_t)batch, (size_t)d->state_floats, &state_n) ||
        rt_mul((size_t)batch, (size_t)d->chunk_len, &rows) ||
        rt_mul(rows, (size_t)d->scratch_floats_per_row, &scratch_n))
        return mxrt_set_error("%s: state for batch %d is too large", where, batch);
    scratch_n = (size_t)batch * (size_t)d->scratch_floats_per_row; /* a step's; see rt_scratch */

    MxrtState *s = calloc(1, sizeof *s);
    if (s) {
        s->state = rt_alloc_floats(state_n);
        s->scratch = rt_alloc_floats(scratch_n);
        s->scratch_rows = (size_t)batch;
    }
    if (!s || !s->state || !s->scratch) {
        if (s) {
            free(s->state);
            free(s->scratch);
        }
        free(s);
        return mxrt_set_error("%s: out of memory for batch %d (%zu state floats, %zu scratch "
                              "floats)", where, batch, state_n, scratch_n);
    }
    s->magic = RT_STATE_MAGIC;
    s->model = m;
    s->desc = d;
    s->batch = batch;
    s->threads = pool_default_threads(rt_weight_floats(d));
    s->state_floats = state_n;
    *out = s;
    return 0;
}

/* Does not touch s->model: states may be freed after their model is closed. */
void mxrt_state_free(MxrtState *s)
{
    if (!s)
        return;
    if (rt_check_state(s, "state_free", "state"))
        return;
    s->magic = RT_DEAD_MAGIC;
    pool_destroy(s->pool);
    free(s->state);
    free(s->scratch);
    free(s);
}

void mxrt_state_reset(MxrtState *s)
{
    if (rt_check_state(s, "state_reset", "state"))
        return;
    memset(s->state, 0, s->state_floats * sizeof(float));
}

int mxrt_state_copy(MxrtState *dst, const MxrtState *src)
{
    if (rt_check_state(dst, "state_copy", "destination state") ||
        rt_check_state(src, "state_copy", "source state"))
        return -1;
    if (dst->model != src->model || dst->desc != src->desc)
        return mxrt_set_error("state_copy: the two states belong to different models");
    if (dst->batch != src->batch)
        return mxrt_set_error("state_copy: batch sizes differ (destination %d, source %d)",
                              dst->batch, src->batch);
    if (dst != src)
        memcpy(dst->state, src->state, src->state_floats * sizeof(float));
    return 0;
}

int mxrt_state_set_threads(MxrtState *s, int n)
{
    if (rt_check_state(s, "set_threads", "state"))
        return -1;
    if (n < 1 || n > MXRT_MAX_THREADS)
        return mxrt_set_error("set_threads: thread count must be in [1, %d], got %d",
                              MXRT_MAX_THREADS, n);
    if (s->pool && pool_threads(s->pool) != n) {
        pool_destroy(s->pool);
        s->pool = NULL;
    }
    s->threads = n;
    return 0;
}

/* The state's pool, started with its thread count on first use. */
static int rt_pool(MxrtState *s, MxrtPool **out)
{
    if (!s->pool && s->threads > 1 && pool_create(s->threads, &s->pool) != 0)
        return -1;
    *out = s->pool;
    return 0;
}

int mxrt_state_batch(const MxrtState *s)
{
    if (rt_check_state(s, "state_batch", "state"))
        return 0;
    return s->batch;
}

/* --- running ------------------------------------------------------------------------------- */

/* Everything forward and step check before touching the state: handles, ownership, buffers,
 * sizes, and that every token id is in range. */
static int rt_check_run(const MxrtModel *m, const MxrtState *s, const int32_t *tokens, int len,
                        const float *logits, const char *op)
{
    char where[96];
    if (rt_check_model(m, op))
        return -1;
    rt_where(where, m, op);
    if (rt_check_state(s, where, "state"))
        return -1;
    /* The descriptor too: a model opened after the state's was closed may get its address,
     * and a state sized for another compiled model must never reach these kernels. */
    if (s->model != m || s->desc != m->desc)
        return mxrt_set_error("%s: state belongs to another model", where);
    if (len < 1)
        return mxrt_set_error("%s: len must be >= 1, got %d", where, len);
    if (!tokens)
        return mxrt_set_error("%s: tokens is NULL", where);
    if (!logits)
        return mxrt_set_error("%s: logits is NULL", where);

    const MxrtModelDesc *d = m->desc;
    size_t rows, total;
    if (rt_mul((size_t)s->batch, (size_t)len, &rows) ||
        rt_mul(rows, (size_t)d->vocab_padded, &total) ||
        total > SIZE_MAX / sizeof(float) || total > (size_t)INT64_MAX)
        return mxrt_set_error("%s: batch %d x len %d x vocab %d logits is too large", where,
                              s->batch, len, (int)d->vocab_padded);
    for (int b = 0; b < s->batch; b++)
        for (int t = 0; t < len; t++) {
            int32_t tok = tokens[(size_t)b * (size_t)len + (size_t)t];
            if (tok < 0 || tok >= d->vocab_size)
                return mxrt_set_error("%s: token %d at batch %d, position %d is out of range "
                                      "[0, %d)", where, (int)tok, b, t, (int)d->vocab_size);
        }
    return 0;
}

/* A kernel call of T positions uses batch * T scratch rows. A state starts with a step's
 * (T = 1) and grows to what its longest forward chunk needs, so that a decoding state does
 * not carry the scratch of a prefill it never runs. The size was checked by state_new. */
static int rt_scratch(MxrtState *s, int len, const char *op)
{
    size_t rows = (size_t)s->batch * (size_t)len;
    if (rows <= s->scratch_rows)
        return 0;
    float *bigger = rt_alloc_floats(rows * (size_t)s->desc->scratch_floats_per_row);
    if (!bigger)
        return mxrt_set_error("%s: out of memory for the scratch of %d positions x batch %d",
                              op, len, s->batch);
    free(s->scratch);
    s->scratch = bigger;
    s->scratch_rows = rows;
    return 0;
}

int mxrt_forward(MxrtModel *m, MxrtState *s, const int32_t *tokens, int len, float *logits)
{
    if (rt_check_run(m, s, tokens, len, logits, "forward"))
        return -1;
    char where[96];
    if (rt_scratch(s, len < m->desc->chunk_len ? len : m->desc->chunk_len,
                   rt_where(where, m, "forward")))
        return -1;
    MxrtPool *pool;
    if (rt_pool(s, &pool))
        return -1;
    const MxrtModelDesc *d = m->desc;
    PoolJob job = {.fn = d->forward_chunk, .weights = bind_slots(m->weights), .state = s->state,
                   .scratch = s->scratch, .tokens_bstride = len,
                   .logits_bstride = (int64_t)len * d->vocab_padded, .batch = s->batch};
    /* Consecutive chunks of at most chunk_len positions; the state carries over. */
    for (int t0 = 0; t0 < len;) {
        int n = len - t0 < d->chunk_len ? len - t0 : d->chunk_len;
        job.tokens = tokens + t0;
        job.logits = logits + (size_t)t0 * (size_t)d->vocab_padded;
        job.len = n;
        pool_run(pool, &job);
        t0 += n;
    }
    return 0;
}

int mxrt_step(MxrtModel *m, MxrtState *s, const int32_t *tokens, float *logits)
{
    if (rt_check_run(m, s, tokens, 1, logits, "step"))
        return -1;
    MxrtPool *pool;
    if (rt_pool(s, &pool))
        return -1;
    const MxrtModelDesc *d = m->desc;
    PoolJob job = {.fn = d->step, .weights = bind_slots(m->weights), .state = s->state,
                   .scratch = s->scratch, .tokens = tokens, .tokens_bstride = 1, .logits = logits,
                   .logits_bstride = d->vocab_padded, .batch = s->batch, .len = 1};
    pool_run(pool, &job);
    return 0;
}
