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
#include "runtime/state_blob.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    int32_t *tokens;       /* [scratch_rows]: the ids of the running chunk, copied as checked */
    size_t scratch_rows;   /* batch at first (a step's rows); grown by the first longer call */
    atomic_int busy;       /* a call is running on this state (one thread at a time) */
    int threads;           /* threads the next call runs on */
    MxrtPool *pool;        /* started on first use with `threads` threads; NULL before */
    int64_t *positions;    /* [batch] tokens each sequence has processed since its reset */
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

/* Bytes this process can still get without the kernel's OOM killer stepping in: the
 * MemAvailable of /proc/meminfo, or less under a cgroup (v2) memory limit; SIZE_MAX when
 * unknown. Read only for large allocations, where overcommit would let malloc succeed and the
 * first touch of the pages kill the process. */
static size_t rt_memory_available(void)
{
    size_t avail = SIZE_MAX;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[128];
        unsigned long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
                if (kb < SIZE_MAX / 1024) avail = (size_t)kb * 1024;
                break;
            }
        fclose(f);
    }
    f = fopen("/sys/fs/cgroup/memory.max", "r");
    unsigned long long max = 0, cur = 0;
    if (f) {
        if (fscanf(f, "%llu", &max) == 1) { /* "max" means no limit */
            FILE *c = fopen("/sys/fs/cgroup/memory.current", "r");
            if (c && fscanf(c, "%llu", &cur) == 1 && cur < max && max - cur < avail)
                avail = (size_t)(max - cur);
            if (c) fclose(c);
        }
        fclose(f);
    }
    return avail;
}

enum { RT_CHECK_MEMORY_ABOVE = 256 << 20 }; /* smaller allocations are not worth the read */

/* Refuse `bytes` more when they would not fit in the memory available. */
static int rt_check_memory(size_t bytes, const char *where, const char *what)
{
    if (bytes < RT_CHECK_MEMORY_ABOVE)
        return 0;
    size_t avail = rt_memory_available();
    if (bytes <= avail)
        return 0;
    return mxrt_set_error("%s: out of memory: %s needs %zu MiB, more than the %zu MiB of memory "
                          "available", where, what, bytes >> 20, avail >> 20);
}

/* Take the state for one call; fails when another thread is inside a call on it. A state
 * holds the scratch and the pool of its calls, so two at once would corrupt both. */
static int rt_acquire(const MxrtState *cs, const char *where)
{
    MxrtState *s = (MxrtState *)cs; /* the flag is the one mutable part of a const state */
    if (atomic_exchange_explicit(&s->busy, 1, memory_order_acquire))
        return mxrt_set_error("%s: state %p is in use by another thread (a state must be used "
                              "by one thread at a time)", where, (const void *)s);
    return 0;
}

static void rt_release(const MxrtState *cs)
{
    atomic_store_explicit(&((MxrtState *)cs)->busy, 0, memory_order_release);
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
    else if (!d->forward_chunk || !d->step || !d->forward_trunk || !d->forward_last)
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

    size_t state_n, rows, scratch_n, bytes;
    if (rt_mul((size_t)batch, (size_t)d->state_floats, &state_n) ||
        rt_mul((size_t)batch, (size_t)d->chunk_len, &rows) ||
        rt_mul(rows, (size_t)d->scratch_floats_per_row + 1, &scratch_n) ||
        rt_mul(state_n + scratch_n, sizeof(float), &bytes))
        return mxrt_set_error("%s: state for batch %d is too large", where, batch);
    scratch_n = (size_t)batch * (size_t)d->scratch_floats_per_row; /* a step's; see rt_scratch */
    char what[96];
    snprintf(what, sizeof what, "the state of batch %d", batch);
    if (rt_check_memory((state_n + scratch_n + (size_t)batch) * sizeof(float), where, what))
        return -1;
    int threads;
    if (pool_default_threads(rt_weight_floats(d), &threads)) {
        char msg[MXRT_ERROR_CAP];
        snprintf(msg, sizeof msg, "%s", mxrt_last_error());
        return mxrt_set_error("%s: %s", where, msg);
    }

    MxrtState *s = calloc(1, sizeof *s);
    if (s) {
        s->state = rt_alloc_floats(state_n);
        s->scratch = rt_alloc_floats(scratch_n);
        s->tokens = malloc(sizeof *s->tokens * (size_t)batch);
        s->scratch_rows = (size_t)batch;
        s->positions = calloc((size_t)batch, sizeof *s->positions);
    }
    if (!s || !s->state || !s->scratch || !s->tokens || !s->positions) {
        if (s) {
            free(s->state);
            free(s->scratch);
            free(s->tokens);
            free(s->positions);
        }
        free(s);
        return mxrt_set_error("%s: out of memory for batch %d (%zu state floats, %zu scratch "
                              "floats)", where, batch, state_n, scratch_n);
    }
    s->magic = RT_STATE_MAGIC;
    s->model = m;
    s->desc = d;
    s->batch = batch;
    s->threads = threads;
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
    if (rt_acquire(s, "state_free"))
        return; /* freeing it under a running call would crash that call: leave it */
    s->magic = RT_DEAD_MAGIC;
    pool_destroy(s->pool);
    free(s->state);
    free(s->scratch);
    free(s->tokens);
    free(s->positions);
    free(s);
}

void mxrt_state_reset(MxrtState *s)
{
    if (rt_check_state(s, "state_reset", "state") || rt_acquire(s, "state_reset"))
        return;
    memset(s->state, 0, s->state_floats * sizeof(float));
    memset(s->positions, 0, (size_t)s->batch * sizeof *s->positions);
    rt_release(s);
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
    if (dst == src)
        return 0;
    if (rt_acquire(dst, "state_copy"))
        return -1;
    if (rt_acquire(src, "state_copy")) {
        rt_release(dst);
        return -1;
    }
    memcpy(dst->state, src->state, src->state_floats * sizeof(float));
    memcpy(dst->positions, src->positions, (size_t)src->batch * sizeof *src->positions);
    rt_release(src);
    rt_release(dst);
    return 0;
}

int mxrt_state_set_threads(MxrtState *s, int n)
{
    if (rt_check_state(s, "set_threads", "state"))
        return -1;
    if (n < 1 || n > MXRT_MAX_THREADS)
        return mxrt_set_error("set_threads: " MXRT_THREADS_RANGE_MSG ", got %d", n);
    if (rt_acquire(s, "set_threads"))
        return -1;
    if (s->pool && pool_threads(s->pool) != n) {
        pool_destroy(s->pool);
        s->pool = NULL;
    }
    s->threads = n;
    rt_release(s);
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
                        const float *logits, int logit_rows, const char *op)
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
    /* The kernels write logits while later chunks' tokens are still to be read. Only the
     * rows a call writes count: logit_rows per sequence (len, 1 for a step or the last
     * position, 0 for none). */
    uintptr_t t_lo = (uintptr_t)tokens, t_hi = t_lo + rows * sizeof *tokens;
    uintptr_t l_lo = (uintptr_t)logits;
    uintptr_t l_hi = l_lo + (size_t)s->batch * (size_t)logit_rows * (size_t)d->vocab_padded *
                                sizeof *logits; /* <= total, checked above */
    if (logit_rows > 0 && t_lo < l_hi && l_lo < t_hi)
        return mxrt_set_error("%s: the tokens and logits buffers overlap (logits are written "
                              "while tokens are read); pass separate buffers", where);
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
    size_t rows = (size_t)s->batch * (size_t)len, floats;
    if (rows <= s->scratch_rows)
        return 0;
    if (rt_mul(rows, (size_t)s->desc->scratch_floats_per_row, &floats))
        return mxrt_set_error("%s: the scratch of %d positions x batch %d is too large", op, len,
                              s->batch);
    char what[96];
    snprintf(what, sizeof what, "the scratch of %d positions x batch %d", len, s->batch);
    if (rt_check_memory((floats + rows) * sizeof(float), op, what))
        return -1;
    float *bigger = rt_alloc_floats(floats);
    int32_t *tokens = malloc(sizeof *tokens * rows);
    if (!bigger || !tokens) {
        free(bigger);
        free(tokens);
        return mxrt_set_error("%s: out of memory for the scratch of %d positions x batch %d",
                              op, len, s->batch);
    }
    free(s->scratch);
    free(s->tokens);
    s->scratch = bigger;
    s->tokens = tokens;
    s->scratch_rows = rows;
    return 0;
}

/* Copy positions [t0, t0 + n) of every sequence into s->tokens ([batch][n]), checking each id
 * as it is copied: the kernels index the embedding with what was checked, never with the
 * caller's buffer, which another thread may rewrite during the call. Only such a race can
 * fail here (rt_check_run checked every id); the state then holds the first t0 positions. */
static int rt_take_tokens(MxrtState *s, const int32_t *tokens, int len, int t0, int n,
                          const char *where)
{
    const MxrtModelDesc *d = s->desc;
    for (int b = 0; b < s->batch; b++)
        for (int t = 0; t < n; t++) {
            int32_t tok = tokens[(size_t)b * (size_t)len + (size_t)(t0 + t)];
            if (tok < 0 || tok >= d->vocab_size)
                return mxrt_set_error("%s: token %d at batch %d, position %d became out of range "
                                      "[0, %d) during the call (the tokens buffer changed); the "
                                      "state has advanced by %d positions", where, (int)tok, b,
                                      t0 + t, (int)d->vocab_size, t0);
            s->tokens[(size_t)b * (size_t)n + (size_t)t] = tok;
        }
    return 0;
}

int mxrt_forward(MxrtModel *m, MxrtState *s, const int32_t *tokens, int len, float *logits)
{
    if (rt_check_run(m, s, tokens, len, logits, len, "forward"))
        return -1;
    char where[96];
    rt_where(where, m, "forward");
    if (rt_acquire(s, where))
        return -1;
    int rc = -1, done = 0; /* positions the state has advanced by */
    MxrtPool *pool;
    const MxrtModelDesc *d = m->desc;
    if (rt_scratch(s, len < d->chunk_len ? len : d->chunk_len, where) || rt_pool(s, &pool))
        goto out;
    PoolJob job = {.fn = d->forward_chunk, .weights = bind_slots(m->weights), .state = s->state,
                   .scratch = s->scratch, .tokens = s->tokens,
                   .logits_bstride = (int64_t)len * d->vocab_padded, .batch = s->batch};
    /* Consecutive chunks of at most chunk_len positions; the state carries over. */
    for (int t0 = 0; t0 < len;) {
        int n = len - t0 < d->chunk_len ? len - t0 : d->chunk_len;
        if (rt_take_tokens(s, tokens, len, t0, n, where))
            goto out;
        job.tokens_bstride = n;
        job.logits = logits + (size_t)t0 * (size_t)d->vocab_padded;
        job.len = n;
        pool_run(pool, &job);
        t0 += n;
        done = t0;
    }
    rc = 0;
out:
    for (int b = 0; b < s->batch; b++) s->positions[b] += done;
    rt_release(s);
    return rc;
}

int mxrt_step(MxrtModel *m, MxrtState *s, const int32_t *tokens, float *logits)
{
    if (rt_check_run(m, s, tokens, 1, logits, 1, "step"))
        return -1;
    char where[96];
    rt_where(where, m, "step");
    if (rt_acquire(s, where))
        return -1;
    int rc = -1;
    MxrtPool *pool;
    if (rt_pool(s, &pool) || rt_take_tokens(s, tokens, 1, 0, 1, where))
        goto out;
    const MxrtModelDesc *d = m->desc;
    PoolJob job = {.fn = d->step, .weights = bind_slots(m->weights), .state = s->state,
                   .scratch = s->scratch, .tokens = s->tokens, .tokens_bstride = 1,
                   .logits = logits, .logits_bstride = d->vocab_padded, .batch = s->batch,
                   .len = 1};
    pool_run(pool, &job);
    for (int b = 0; b < s->batch; b++) s->positions[b] += 1;
    rc = 0;
out:
    rt_release(s);
    return rc;
}

/* --- stateful serving: logits where asked, snapshots ---------------------------------------- */

enum { RUN_ALL, RUN_LAST, RUN_NONE }; /* which positions get logits */

/* Snapshot i is taken after this many tokens. */
static int rt_snap_at(const int32_t *after, int every, int i)
{
    return after ? after[i] : (i + 1) * every;
}

static int rt_check_snaps(const MxrtState *s, int len, const int32_t *after, int every, int n,
                          MxrtState *const *snaps, const char *where)
{
    if (n < 0)
        return mxrt_set_error("%s: snapshot count must be >= 0, got %d", where, n);
    if (n == 0)
        return 0;
    if (!snaps)
        return mxrt_set_error("%s: snaps is NULL", where);
    if (!after && (every < 1 || every > len / n))
        return mxrt_set_error("%s: %d snapshots every %d tokens do not fit in %d tokens", where,
                              n, every, len);
    for (int i = 0; i < n; i++) {
        int at = rt_snap_at(after, every, i);
        if (at < 1 || at > len || (i > 0 && at <= rt_snap_at(after, every, i - 1)))
            return mxrt_set_error("%s: snapshot %d after %d tokens: positions must increase "
                                  "strictly and lie in [1, %d]", where, i, at, len);
        char what[32];
        snprintf(what, sizeof what, "snapshot %d", i);
        if (rt_check_state(snaps[i], where, what))
            return -1;
        if (snaps[i] == s)
            return mxrt_set_error("%s: snapshot %d is the state being advanced", where, i);
        if (snaps[i]->desc != s->desc || snaps[i]->model != s->model)
            return mxrt_set_error("%s: snapshot %d belongs to another model", where, i);
        if (snaps[i]->batch != s->batch)
            return mxrt_set_error("%s: snapshot %d has batch %d, the state %d", where, i,
                                  snaps[i]->batch, s->batch);
    }
    return 0;
}

/* The whole of src's state and positions into dst (same model and batch, checked). */
static void rt_copy_state(MxrtState *dst, const MxrtState *src)
{
    if (dst == src)
        return;
    memcpy(dst->state, src->state, src->state_floats * sizeof(float));
    memcpy(dst->positions, src->positions, (size_t)src->batch * sizeof *src->positions);
}

/* forward_chunk, forward_last or forward_trunk over consecutive chunks; a chunk also ends at
 * every snapshot position, where the state is copied out. Every check runs first. */
static int rt_run(MxrtModel *m, MxrtState *s, const int32_t *tokens, int len, float *logits,
                  int mode, const int32_t *after, int every, int n_snaps,
                  MxrtState *const *snaps, const char *op)
{
    static float no_logits; /* rt_check_run wants a buffer; RUN_NONE writes none */
    if (rt_check_run(m, s, tokens, len, mode == RUN_NONE ? &no_logits : logits,
                     mode == RUN_ALL ? len : mode == RUN_LAST ? 1 : 0, op))
        return -1;
    char where[96];
    rt_where(where, m, op);
    if (rt_check_snaps(s, len, after, every, n_snaps, snaps, where))
        return -1;
    const MxrtModelDesc *d = m->desc;
    int longest = len < d->chunk_len ? len : d->chunk_len;
    if (rt_acquire(s, where))
        return -1;
    MxrtPool *pool;
    if (rt_scratch(s, mode == RUN_LAST ? longest + 1 : longest, where) || rt_pool(s, &pool)) {
        rt_release(s);
        return -1;
    }
    PoolJob job = {.weights = bind_slots(m->weights), .state = s->state, .scratch = s->scratch,
                   .tokens = s->tokens, .batch = s->batch};
    int k = 0, rc = 0; /* next snapshot */
    for (int t0 = 0; t0 < len;) {
        int n = len - t0 < d->chunk_len ? len - t0 : d->chunk_len;
        if (k < n_snaps && rt_snap_at(after, every, k) - t0 < n)
            n = rt_snap_at(after, every, k) - t0;
        bool last = t0 + n == len;
        /* the kernels read the checked copy, never the caller's buffer (rt_take_tokens) */
        if (rt_take_tokens(s, tokens, len, t0, n, where)) {
            rc = -1;
            break;
        }
        job.tokens_bstride = n;
        job.len = n;
        if (mode == RUN_ALL) {
            job.fn = d->forward_chunk;
            job.logits = logits + (size_t)t0 * (size_t)d->vocab_padded;
            job.logits_bstride = (int64_t)len * d->vocab_padded;
        } else {
            job.fn = mode == RUN_LAST && last ? d->forward_last : d->forward_trunk;
            job.logits = mode == RUN_LAST && last ? logits : NULL;
            job.logits_bstride = d->vocab_padded;
        }
        pool_run(pool, &job);
        t0 += n;
        for (int b = 0; b < s->batch; b++) s->positions[b] += n;
        if (k < n_snaps && rt_snap_at(after, every, k) == t0) {
            rt_copy_state(snaps[k], s); /* checked above: same model and batch */
            k++;
        }
    }
    rt_release(s);
    return rc;
}

int mxrt_forward_last(MxrtModel *m, MxrtState *s, const int32_t *tokens, int len, float *logits)
{
    return rt_run(m, s, tokens, len, logits, RUN_LAST, NULL, 0, 0, NULL, "forward_last");
}

int mxrt_prefill(MxrtModel *m, MxrtState *s, const int32_t *tokens, int len)
{
    return rt_run(m, s, tokens, len, NULL, RUN_NONE, NULL, 0, 0, NULL, "prefill");
}

int mxrt_forward_snapshots(MxrtModel *m, MxrtState *s, const int32_t *tokens, int len,
                           float *logits, const int32_t *after, int every, int n,
                           MxrtState *const *snaps)
{
    return rt_run(m, s, tokens, len, logits, logits ? RUN_ALL : RUN_NONE, after, every, n, snaps,
                  "forward_snapshots");
}

/* --- stateful serving: slots -------------------------------------------------------------- */

static const char *rt_state_where(char buf[96], const MxrtState *s, const char *op)
{
    snprintf(buf, 96, "%.60s_%s", s->desc->name, op);
    return buf;
}

static int rt_check_slot(const MxrtState *s, int slot, const char *where, const char *what)
{
    if (slot < 0 || slot >= s->batch)
        return mxrt_set_error("%s: %s %d is out of range [0, %d)", where, what, slot, s->batch);
    return 0;
}

int mxrt_state_copy_slot(MxrtState *dst, int dst_slot, const MxrtState *src, int src_slot)
{
    char where[96];
    if (rt_check_state(dst, "state_copy_slot", "destination state") ||
        rt_check_state(src, "state_copy_slot", "source state"))
        return -1;
    rt_state_where(where, dst, "state_copy_slot");
    if (dst->model != src->model || dst->desc != src->desc)
        return mxrt_set_error("%s: the two states belong to different models", where);
    if (rt_check_slot(dst, dst_slot, where, "destination slot") ||
        rt_check_slot(src, src_slot, where, "source slot"))
        return -1;
    if (rt_acquire(dst, where))
        return -1;
    if (src != dst && rt_acquire(src, where)) {
        rt_release(dst);
        return -1;
    }
    size_t f = (size_t)dst->desc->state_floats;
    if (dst != src || dst_slot != src_slot)
        memcpy(dst->state + (size_t)dst_slot * f, src->state + (size_t)src_slot * f,
               f * sizeof(float));
    dst->positions[dst_slot] = src->positions[src_slot];
    if (src != dst)
        rt_release(src);
    rt_release(dst);
    return 0;
}

int mxrt_state_reset_slot(MxrtState *s, int slot)
{
    char where[96];
    if (rt_check_state(s, "state_reset_slot", "state"))
        return -1;
    if (rt_check_slot(s, slot, rt_state_where(where, s, "state_reset_slot"), "slot"))
        return -1;
    if (rt_acquire(s, where))
        return -1;
    size_t f = (size_t)s->desc->state_floats;
    memset(s->state + (size_t)slot * f, 0, f * sizeof(float));
    s->positions[slot] = 0;
    rt_release(s);
    return 0;
}

int64_t mxrt_state_positions(const MxrtState *s, int slot)
{
    char where[96];
    if (rt_check_state(s, "state_positions", "state"))
        return -1;
    if (rt_check_slot(s, slot, rt_state_where(where, s, "state_positions"), "slot"))
        return -1;
    return s->positions[slot];
}

/* --- stateful serving: save and load ----------------------------------------------------- */

int64_t mxrt_state_save_size(const MxrtState *s)
{
    if (rt_check_state(s, "state_save_size", "state"))
        return 0;
    uint64_t n = state_blob_size(s->desc, s->batch);
    if (n == 0 || n > (uint64_t)INT64_MAX || n > SIZE_MAX) {
        mxrt_set_error("%.60s_state_save_size: the state is too large to save", s->desc->name);
        return 0;
    }
    return (int64_t)n;
}

int mxrt_state_save(const MxrtState *s, void *buf, int64_t size)
{
    char where[96];
    int64_t need = mxrt_state_save_size(s);
    if (need == 0)
        return -1;
    rt_state_where(where, s, "state_save");
    if (!buf)
        return mxrt_set_error("%s: buffer is NULL", where);
    if (size < need)
        return mxrt_set_error("%s: buffer of %lld bytes is too small, the state needs %lld "
                              "(see state_save_size)", where, (long long)size, (long long)need);
    if (rt_acquire(s, where))
        return -1;
    state_blob_write(s->desc, s->batch, s->positions, s->state, buf);
    rt_release(s);
    return 0;
}

/* Validated blob -> state; nothing changes unless all of it is valid. */
static int rt_load(MxrtState *s, const unsigned char *buf, size_t size, const char *where)
{
    const unsigned char *pos, *st;
    if (state_blob_check(s->desc, s->batch, buf, size, where, &pos, &st) || rt_acquire(s, where))
        return -1;
    for (int b = 0; b < s->batch; b++) s->positions[b] = state_blob_position(pos, b);
    state_blob_read_floats(st, s->state, s->state_floats);
    rt_release(s);
    return 0;
}

int mxrt_state_load(MxrtState *s, const void *buf, int64_t size)
{
    char where[96];
    if (rt_check_state(s, "state_load", "state"))
        return -1;
    rt_state_where(where, s, "state_load");
    if (!buf)
        return mxrt_set_error("%s: buffer is NULL", where);
    if (size < 0 || (uint64_t)size > SIZE_MAX)
        return mxrt_set_error("%s: size %lld is invalid", where, (long long)size);
    return rt_load(s, buf, (size_t)size, where);
}

int mxrt_state_save_file(const MxrtState *s, const char *path)
{
    char where[96];
    int64_t need = mxrt_state_save_size(s);
    if (need == 0)
        return -1;
    rt_state_where(where, s, "state_save_file");
    if (!path)
        return mxrt_set_error("%s: path is NULL", where);
    unsigned char *buf = malloc((size_t)need);
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!buf || !tmp) {
        free(buf);
        free(tmp);
        return mxrt_set_error("%s: out of memory for %lld bytes", where, (long long)need);
    }
    if (rt_acquire(s, where)) {
        free(buf);
        free(tmp);
        return -1;
    }
    state_blob_write(s->desc, s->batch, s->positions, s->state, buf);
    rt_release(s);
    /* Written beside and renamed over: a reader never sees half a file. */
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    int rc = 0;
    if (!f) {
        rc = mxrt_set_error("%s: cannot create %s: %s", path, tmp, strerror(errno));
    } else {
        size_t put = fwrite(buf, 1, (size_t)need, f);
        int err = put == (size_t)need ? 0 : errno;
        if (fclose(f) != 0 && !err)
            err = errno;
        if (put != (size_t)need || err) {
            rc = mxrt_set_error("%s: cannot write %s: %s", path, tmp,
                                strerror(err ? err : EIO));
            unlink(tmp);
        } else if (rename(tmp, path) != 0) {
            rc = mxrt_set_error("%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
            unlink(tmp);
        }
    }
    free(buf);
    free(tmp);
    return rc;
}

int mxrt_state_load_file(MxrtState *s, const char *path)
{
    char where[96];
    if (rt_check_state(s, "state_load_file", "state"))
        return -1;
    rt_state_where(where, s, "state_load_file");
    if (!path)
        return mxrt_set_error("%s: path is NULL", where);
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return mxrt_set_error("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    unsigned char head[STATE_BLOB_HEADER], *buf = NULL;
    int rc = -1;
    if (fstat(fd, &st) != 0) {
        mxrt_set_error("%s: cannot stat: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        mxrt_set_error("%s: not a regular file", path);
        goto out;
    }
    /* The header first: a blob of another model or batch is named as such, and the whole file
     * is read only when its size is the one this state needs. */
    size_t got = 0, want = st.st_size < STATE_BLOB_HEADER ? (size_t)st.st_size : STATE_BLOB_HEADER;
    while (got < want) {
        ssize_t r = read(fd, head + got, want - got);
        if (r <= 0) {
            mxrt_set_error("%s: read error: %s", path, r < 0 ? strerror(errno) : "file shrank");
            goto out;
        }
        got += (size_t)r;
    }
    char what[400];
    snprintf(what, sizeof what, "%s: %s", where, path);
    if (state_blob_check_header(s->desc, s->batch, head, (uint64_t)st.st_size, what))
        goto out;
    size_t size = (size_t)st.st_size;
    buf = malloc(size);
    if (!buf) {
        mxrt_set_error("%s: out of memory for %zu bytes", what, size);
        goto out;
    }
    memcpy(buf, head, STATE_BLOB_HEADER);
    got = STATE_BLOB_HEADER;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r <= 0) {
            mxrt_set_error("%s: read error: %s", what, r < 0 ? strerror(errno) : "file shrank");
            goto out;
        }
        got += (size_t)r;
    }
    rc = rt_load(s, buf, size, what);
out:
    free(buf);
    close(fd);
    return rc;
}
