/* pool.c - worker threads and the barrier that generated kernels call between ops.
 *
 * Waiting spins for a short while first (a decode step is a few milliseconds, and a
 * condition variable's wake-up would cost more than the work between two barriers), then
 * falls back to sleeping (in the pool) or yielding (in the barrier), so an oversubscribed
 * machine or valgrind still makes progress. */
#include "runtime/pool.h"
#include "runtime/error.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

enum { SPIN_LIMIT = 4000 };

struct MxrtPool {
    int n;
    pthread_t *threads;
    struct Worker *workers;
    pthread_mutex_t mu;
    pthread_cond_t start_cv, done_cv;
    atomic_uint generation; /* bumped for every job */
    atomic_int pending;     /* workers still running the current job */
    atomic_int quit;
    PoolJob job;
    atomic_int arrived;     /* barrier: threads arrived in this phase */
    atomic_uint phase;      /* barrier: bumped when all have arrived */
};

typedef struct Worker {
    MxrtPool *pool;
    int index;
} Worker;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_share(MxrtPool *p, const PoolJob *j, int ith)
{
    MxrtExec exec = {.ith = ith, .nth = p ? p->n : 1, .pool = p};
    j->fn(j->weights, j->state, j->scratch, j->tokens, j->tokens_bstride, j->logits,
          j->logits_bstride, j->batch, j->len, &exec);
}

void mxrt_barrier(MxrtExec *e)
{
    if (!e || e->nth <= 1) return;
    MxrtPool *p = e->pool;
    unsigned phase = atomic_load(&p->phase);
    if (atomic_fetch_add(&p->arrived, 1) == e->nth - 1) {
        atomic_store(&p->arrived, 0);
        atomic_fetch_add(&p->phase, 1);
        return;
    }
    for (int spins = 0; atomic_load(&p->phase) == phase; spins++) {
        if (spins < SPIN_LIMIT)
            cpu_relax();
        else
            sched_yield();
    }
}

static void *worker_main(void *arg)
{
    Worker *w = arg;
    MxrtPool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        for (int i = 0; i < SPIN_LIMIT && atomic_load(&p->generation) == seen &&
                        !atomic_load(&p->quit); i++)
            cpu_relax();
        if (atomic_load(&p->generation) == seen) {
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->quit))
                pthread_cond_wait(&p->start_cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) return NULL;
        seen = atomic_load(&p->generation);
        run_share(p, &p->job, w->index);
        if (atomic_fetch_sub(&p->pending, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

int pool_create(int n, MxrtPool **out)
{
    *out = NULL;
    if (n < 1 || n > MXRT_MAX_THREADS)
        return mxrt_set_error("thread count must be in [1, %d], got %d", MXRT_MAX_THREADS, n);
    MxrtPool *p = calloc(1, sizeof *p);
    if (!p) return mxrt_set_error("out of memory for a thread pool");
    p->n = n;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    if (n > 1) {
        p->threads = calloc((size_t)n, sizeof *p->threads);
        p->workers = calloc((size_t)n, sizeof *p->workers);
        if (!p->threads || !p->workers) {
            pool_destroy(p);
            return mxrt_set_error("out of memory for %d threads", n);
        }
        for (int i = 1; i < n; i++) {
            p->workers[i] = (Worker){p, i};
            if (pthread_create(&p->threads[i], NULL, worker_main, &p->workers[i]) != 0) {
                p->n = i; /* join only what started */
                pool_destroy(p);
                return mxrt_set_error("cannot start thread %d of %d", i, n);
            }
        }
    }
    *out = p;
    return 0;
}

void pool_destroy(MxrtPool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n && p->threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start_cv);
    pthread_cond_destroy(&p->done_cv);
    free(p->threads);
    free(p->workers);
    free(p);
}

int pool_threads(const MxrtPool *p) { return p ? p->n : 1; }

void pool_run(MxrtPool *p, const PoolJob *job)
{
    if (!p || p->n == 1) {
        run_share(p, job, 0);
        return;
    }
    p->job = *job;
    atomic_store(&p->pending, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->generation, 1);
    pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    run_share(p, &p->job, 0);
    for (int i = 0; i < SPIN_LIMIT && atomic_load(&p->pending) > 0; i++) cpu_relax();
    if (atomic_load(&p->pending) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done_cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

int pool_default_threads(int64_t weight_floats)
{
    const char *env = getenv("MXC_THREADS");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == 0 && v >= 1 && v <= MXRT_MAX_THREADS) return (int)v;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1) cpus = 1;
    if (cpus > MXRT_MAX_THREADS) cpus = MXRT_MAX_THREADS;
    int64_t useful = weight_floats / POOL_FLOATS_PER_THREAD;
    if (useful < 1) useful = 1;
    return useful < cpus ? (int)useful : (int)cpus;
}
