/* roofline.c - the machine's limits that the benchmark compares mxc with.
 *
 *   roofline bandwidth THREADS MBYTES PASSES
 *       read bandwidth: THREADS threads sum disjoint parts of one MBYTES buffer (touched
 *       first, transparent huge pages requested), PASSES times; prints the best pass in GB/s
 *       (1 GB = 1e9 bytes).
 *   roofline filebw THREADS PASSES PATH
 *       the same reading loop over a file mapped the way the runtime maps weights (read-only,
 *       2 MiB-aligned, MADV_HUGEPAGE): the rate a decode step could stream its weights at.
 *   roofline sgemm M,N,K,COUNT ...
 *       OpenBLAS cblas_sgemm on each shape, y[M,N] = x[M,K] * W[N,K]^T (the layout of a
 *       model projection: weights stored [out, in]); best time of several reps per shape;
 *       prints each shape's GFLOPS and the FLOP-weighted total (COUNT = times the shape occurs
 *       in the model), i.e. the rate OpenBLAS would sustain on the model's GEMMs.
 *       Threads: OPENBLAS_NUM_THREADS.
 * Output: one JSON line per result.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* From cblas.h (OpenBLAS), declared here so that no include path is needed. */
enum { CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112 };
void cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- read bandwidth ----------------------------------------------------------------- */

typedef float Vec __attribute__((vector_size(64))); /* 16 floats; the compiler splits it
                                                       to the target's vector width */
typedef struct {
    const Vec *p;
    size_t n; /* vectors */
    int passes;
    pthread_barrier_t *start, *stop;
    float sink;
} Part;

static void *reader(void *arg)
{
    Part *w = arg;
    for (int pass = 0; pass < w->passes; pass++) {
        pthread_barrier_wait(w->start);
        Vec a[8] = {{0}};
        for (size_t i = 0; i + 8 <= w->n; i += 8) {
            __builtin_prefetch(w->p + i + 64); /* 4 KB ahead */
            for (int j = 0; j < 8; j++)
                a[j] += w->p[i + j];
        }
        Vec s = a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
        for (int j = 0; j < 16; j++)
            w->sink += s[j];
        pthread_barrier_wait(w->stop);
    }
    return NULL;
}

/* Best time of `passes` reads of buf[0, nvec) by `threads` threads, each summing its part. */
static double stream(const Vec *buf, size_t nvec, int threads, int passes, float *checksum)
{
    pthread_barrier_t start, stop;
    pthread_barrier_init(&start, NULL, threads + 1);
    pthread_barrier_init(&stop, NULL, threads + 1);
    Part *parts = calloc(threads, sizeof *parts);
    pthread_t *tid = calloc(threads, sizeof *tid);
    size_t per = nvec / threads;
    for (int t = 0; t < threads; t++) {
        parts[t] = (Part){buf + t * per, per, passes, &start, &stop, 0};
        pthread_create(&tid[t], NULL, reader, &parts[t]);
    }
    double best = 1e30;
    for (int pass = 0; pass < passes; pass++) {
        pthread_barrier_wait(&start);
        double t0 = now_s();
        pthread_barrier_wait(&stop);
        double dt = now_s() - t0;
        if (dt < best)
            best = dt;
    }
    *checksum = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        *checksum += parts[t].sink;
    }
    free(parts);
    free(tid);
    return best;
}

static int bandwidth(int threads, size_t mbytes, int passes)
{
    size_t nvec = mbytes * 1000000 / sizeof(Vec);
    nvec -= nvec % (size_t)(8 * threads);
    Vec *buf;
    if (posix_memalign((void **)&buf, 1 << 21, nvec * sizeof(Vec)))
        return 1;
    /* Transparent huge pages where the kernel allows them: fewer TLB misses, the best case. */
    int huge = madvise(buf, nvec * sizeof(Vec), MADV_HUGEPAGE) == 0;
    float *f = (float *)buf;
    for (size_t i = 0; i < nvec * 16; i++)
        f[i] = (float)(i & 1023) * 1e-3f;
    float sink;
    double best = stream(buf, nvec, threads, passes, &sink);
    double bytes = (double)(nvec / threads * threads) * sizeof(Vec);
    printf("{\"bandwidth_gbs\": %.3f, \"threads\": %d, \"mbytes\": %.0f, \"passes\": %d, "
           "\"best_ms\": %.3f, \"hugepages\": %s, \"checksum\": %g}\n",
           bytes / best / 1e9, threads, bytes / 1e6, passes, best * 1e3, huge ? "true" : "false", sink);
    free(buf);
    return 0;
}

/* The runtime's mapping (runtime/safetensors.c: st_map_aligned), written again here so
 * that the bench needs no runtime headers. */
static int file_bandwidth(int threads, int passes, const char *path)
{
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        fprintf(stderr, "roofline: cannot open %s\n", path);
        return 1;
    }
    const size_t huge = (size_t)2 << 20;
    size_t size = (size_t)sb.st_size;
    char *area = mmap(NULL, size + huge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *start = (char *)(((uintptr_t)area + huge - 1) & ~(uintptr_t)(huge - 1));
    if (area == MAP_FAILED ||
        mmap(start, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0) == MAP_FAILED) {
        fprintf(stderr, "roofline: cannot map %s\n", path);
        return 1;
    }
    close(fd);
    madvise(start, size, MADV_HUGEPAGE);
    size_t nvec = size / sizeof(Vec);
    nvec -= nvec % (size_t)(8 * threads);
    float sink;
    double best = stream((const Vec *)start, nvec, threads, passes, &sink);
    double bytes = (double)(nvec / threads * threads) * sizeof(Vec);
    /* no checksum: weights of real size sum to inf, which is not JSON */
    (void)sink;
    printf("{\"file_bandwidth_gbs\": %.3f, \"threads\": %d, \"mbytes\": %.0f, \"passes\": %d, "
           "\"best_ms\": %.3f}\n",
           bytes / best / 1e9, threads, bytes / 1e6, passes, best * 1e3);
    munmap(area, size + huge);
    return 0;
}

/* ---- sgemm ---------------------------------------------------------------------------- */

static double gemm_time(int m, int n, int k)
{
    float *x = malloc((size_t)m * k * sizeof *x), *w = malloc((size_t)n * k * sizeof *w);
    float *y = malloc((size_t)m * n * sizeof *y);
    if (!x || !w || !y) {
        fprintf(stderr, "roofline: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < (size_t)m * k; i++)
        x[i] = (float)((i * 7) % 13) * 0.01f - 0.06f;
    for (size_t i = 0; i < (size_t)n * k; i++)
        w[i] = (float)((i * 5) % 11) * 0.01f - 0.05f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1, x, k, w, k, 0, y, n);
    double best = 1e30, spent = 0;
    for (int rep = 0; rep < 20 && (rep < 3 || spent < 0.5); rep++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1, x, k, w, k, 0, y, n);
        double dt = now_s() - t0;
        spent += dt;
        if (dt < best)
            best = dt;
    }
    free(x);
    free(w);
    free(y);
    return best;
}

static int sgemm(int nshapes, char **shapes)
{
    double flops = 0, secs = 0;
    for (int i = 0; i < nshapes; i++) {
        int m, n, k, count;
        if (sscanf(shapes[i], "%d,%d,%d,%d", &m, &n, &k, &count) != 4) {
            fprintf(stderr, "roofline: bad shape '%s' (want M,N,K,COUNT)\n", shapes[i]);
            return 2;
        }
        double t = gemm_time(m, n, k), f = 2.0 * m * n * k;
        printf("{\"gemm\": [%d, %d, %d], \"count\": %d, \"gflops\": %.2f, \"best_ms\": %.3f}\n",
               m, n, k, count, f / t / 1e9, t * 1e3);
        flops += f * count;
        secs += t * count;
    }
    printf("{\"sgemm_gflops\": %.2f, \"gemm_flops\": %.0f, \"gemm_ms\": %.3f}\n",
           flops / secs / 1e9, flops, secs * 1e3);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && !strcmp(argv[1], "bandwidth"))
        return bandwidth(atoi(argv[2]), (size_t)atol(argv[3]), atoi(argv[4]));
    if (argc >= 5 && !strcmp(argv[1], "filebw"))
        return file_bandwidth(atoi(argv[2]), atoi(argv[3]), argv[4]);
    if (argc >= 3 && !strcmp(argv[1], "sgemm"))
        return sgemm(argc - 2, argv + 2);
    fprintf(stderr, "usage: roofline bandwidth THREADS MBYTES PASSES\n"
                    "       roofline filebw THREADS PASSES PATH\n"
                    "       roofline sgemm M,N,K,COUNT ...\n");
    return 2;
}
