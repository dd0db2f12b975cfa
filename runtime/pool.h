/* pool.h - the persistent worker threads of one state.
 *
 * Generated kernels are written SPMD-style: every thread calls the same chunk kernel with
 * its own MxrtExec (thread index and count), takes its share of each op's loop, and meets
 * the others at mxrt_barrier() between ops. A pool runs one such call on all its threads and
 * returns when every thread has finished. Each state owns its pool, so states used by
 * different threads never share workers. */
#ifndef MXC_RUNTIME_POOL_H
#define MXC_RUNTIME_POOL_H

#include <stdint.h>

#include "runtime/mxrt.h"

typedef struct MxrtPool MxrtPool;

/* One kernel call: the arguments of MxrtChunkFn except the exec. */
typedef struct PoolJob {
    MxrtChunkFn fn;
    const float *const *weights;
    float *state, *scratch;
    const int32_t *tokens;
    int64_t tokens_bstride;
    float *logits;
    int64_t logits_bstride;
    int32_t batch, len;
} PoolJob;

/* Start n - 1 workers (the caller is thread 0). Returns 0, or -1 with an error set. */
int pool_create(int n, MxrtPool **out);
void pool_destroy(MxrtPool *p); /* NULL is fine */
int pool_threads(const MxrtPool *p);

/* Run the job on every thread of the pool (or inline when p is NULL). */
void pool_run(MxrtPool *p, const PoolJob *job);

/* Threads a new state uses: $MXC_THREADS if set (1..MXRT_MAX_THREADS; anything else is an
 * error, -1 with the message set); otherwise one thread per POOL_FLOATS_PER_THREAD weights,
 * at most the CPUs the process may run on. A model that small does a few microseconds of
 * work between two barriers, where waking a second thread costs more than it saves (a
 * 300k-parameter model decodes ~20x faster on one thread of a busy machine). */
int pool_default_threads(int64_t weight_floats, int *out);

/* The CPUs this process may run on (its affinity mask: taskset, cgroup cpusets), >= 1. */
int pool_cpus(void);

/* A thread count written in decimal, in [1, MXRT_MAX_THREADS]: 0 and *out set, else -1. */
int pool_parse_threads(const char *text, int *out);

#define POOL_FLOATS_PER_THREAD ((int64_t)4 << 20)

#define MXRT_MAX_THREADS 256
/* The one wording of the range, for the API, $MXC_THREADS and `mxc run --threads`. */
#define MXRT_THREADS_RANGE_MSG "thread count must be in [1, 256]"

#endif
