/* pool.c - worker threads and the barrier that generated kernels call between ops.
 *
 * Waiting spins for a short while first (a decode step is a few milliseconds, and a
 * condition variable's wake-up would cost more than the work between two barriers), then
 * falls back to sleeping (in the pool) or yielding (in the barrier), so a busy machine or
 * valgrind still makes progress. A pool with more threads than the CPUs the process may run
 * on is oversubscribed by construction: a spinning waiter then only keeps the thread it
 * waits for off its CPU, so such a pool spins briefly and sleeps, in the barrier too. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#endif
#include "runtime/pool.h"
#include "runtime/error.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

_Static_assert(MXRT_MAX_THREADS == 256, "MXRT_THREADS_RANGE_MSG spells out the range");

enum { SPIN_LIMIT = 4000, SPIN_LIMIT_OVERSUBSCRIBED = 100 };

struct MxrtPool {
    int n;
    int spin_limit;         /* SPIN_LIMIT, or SPIN_LIMIT_OVERSUBSCRIBED above the CPUs */
    bool oversubscribed;    /* n > the CPUs: barrier waiters sleep instead of yielding */
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
    atomic_int sleepers;    /* barrier: waiters asleep on bar_cv (oversubscribed pools) */
    pthread_mutex_t bar_mu;
    pthread_cond_t bar_cv;
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
        /* Sequentially consistent with the sleeper's increment-then-check below: either it
         * sees the new phase, or this sees it counted and wakes it under the mutex. */
        if (atomic_load(&p->sleepers) > 0) {
            pthread_mutex_lock(&p->bar_mu);
            pthread_cond_broadcast(&p->bar_cv);
            pthread_mutex_unlock(&p->bar_mu);
        }
        return;
    }
    for (int spins = 0; atomic_load(&p->phase) == phase; spins++) {
        if (spins < p->spin_limit) {
            cpu_relax();
        } else if (!p->oversubscribed) {
            sched_yield();
        } else {
            pthread_mutex_lock(&p->bar_mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->phase) == phase) pthread_cond_wait(&p->bar_cv, &p->bar_mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->bar_mu);
            return;
        }
    }
}

static void *worker_main(void *arg)
{
    Worker *w = arg;
    MxrtPool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        for (int i = 0; i < p->spin_limit && atomic_load(&p->generation) == seen &&
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
        return mxrt_set_error(MXRT_THREADS_RANGE_MSG ", got %d", n);
    MxrtPool *p = calloc(1, sizeof *p);
    if (!p) return mxrt_set_error("out of memory for a thread pool");
    p->n = n;
    p->oversubscribed = n > pool_cpus();
    p->spin_limit = p->oversubscribed ? SPIN_LIMIT_OVERSUBSCRIBED : SPIN_LIMIT;
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->bar_mu, NULL);
    pthread_cond_init(&p->bar_cv, NULL);
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
    pthread_mutex_destroy(&p->bar_mu);
    pthread_cond_destroy(&p->bar_cv);
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
    for (int i = 0; i < p->spin_limit && atomic_load(&p->pending) > 0; i++) cpu_relax();
    if (atomic_load(&p->pending) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done_cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

int pool_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n >= 1) return n;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN); /* more CPUs than a cpu_set_t holds */
    return cpus < 1 ? 1 : cpus > INT32_MAX ? INT32_MAX : (int)cpus;
}

int pool_parse_threads(const char *text, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (!(*text >= '0' && *text <= '9') || *end || errno || v < 1 || v > MXRT_MAX_THREADS) return -1;
    *out = (int)v;
    return 0;
}

int pool_default_threads(int64_t weight_floats, int *out)
{
    const char *env = getenv("MXC_THREADS");
    if (env && *env) {
        if (pool_parse_threads(env, out) == 0) return 0;
        char shown[MXRT_QUOTE_CAP];
        return mxrt_set_error("$MXC_THREADS: " MXRT_THREADS_RANGE_MSG ", got '%s'",
                              mxrt_quote(shown, sizeof shown, env));
    }
    int cpus = pool_cpus();
    if (cpus > MXRT_MAX_THREADS) cpus = MXRT_MAX_THREADS;
    int64_t useful = weight_floats / POOL_FLOATS_PER_THREAD;
    if (useful < 1) useful = 1;
    *out = useful < cpus ? (int)useful : cpus;
    return 0;
}
