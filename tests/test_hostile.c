/* test_hostile.c - hostile input, round 2 (issue 17): one regression test per finding.
 *
 * Three suites:
 *   api     - compiled models (the golden mamba_odd and xlstm_mixed, loaded with dlopen) given
 *             a tokens buffer that overlaps the logits or is rewritten by another thread during
 *             the call, and one state driven by two threads at once: an error naming the
 *             problem, never a crash or a hang (each runs in a child with an alarm, since the
 *             unfixed runtime crashes);
 *   runtime - the runtime's pieces directly: the thread range and $MXC_THREADS, the default
 *             thread count under a CPU affinity mask, the barrier with more threads than CPUs,
 *             a state too large for the memory;
 *   driver  - the mxc binary: outputs that would overwrite inputs, --embed-weights files that
 *             P_open would refuse, headers of prefixes that differ in case (or look like a
 *             system header's) in one translation unit, output to /dev/full, a bad
 *             --target-cpu and the vector width of named CPUs, `mxc run --threads`, long
 *             names echoed in messages. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_getaffinity, sched_getcpu */
#endif
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "model_api.h"
#include "runtime/error.h"
#include "runtime/mxrt.h"
#include "runtime/pool.h"
#include "testutil.h"

/* ---- files and commands ------------------------------------------------------------------ */

/* builddir/out/hostile, created on first use. */
static const char *out_dir(void)
{
    static char dir[420];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%.400s/out", test_builddir());
        mkdir(dir, 0777);
        strcat(dir, "/hostile");
        mkdir(dir, 0777);
    }
    return dir;
}

/* out/hostile/NAME, in one of 64 rotating buffers (a test holds fewer at once). */
static const char *out_path(const char *name)
{
    static char buf[64][700];
    static int next;
    char *p = buf[next++ % 64];
    snprintf(p, sizeof buf[0], "%s/%s", out_dir(), name);
    return p;
}

static const char *golden(const char *rel)
{
    static char buf[4][700];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/golden/%s", test_srcdir(), rel);
    return p;
}

static bool write_file(const char *path, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(bytes, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + len, 1, cap - len - 1, f)) > 0)
        if ((len += got) + 1 == cap) buf = realloc(buf, cap *= 2);
    if (buf) buf[len] = 0;
    fclose(f);
    return buf;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Where mxc's stderr goes: out/hostile/last.err (its own buffer, not out_path's). */
static const char *err_path(void)
{
    static char path[700];
    if (!path[0]) snprintf(path, sizeof path, "%s/last.err", out_dir());
    return path;
}

/* Run `mxc ARGS` with stderr into out/hostile/last.err; the exit status, or -1 when mxc did
 * not exit normally (a crash: SIGABRT, SIGSEGV). */
static int mxc(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int mxc(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    size_t cap = (size_t)n + strlen(mxc_path()) + strlen(err_path()) + 16;
    char *args = malloc((size_t)n + 1), *cmd = malloc(cap);
    va_start(ap, fmt);
    vsnprintf(args, (size_t)n + 1, fmt, ap);
    va_end(ap);
    snprintf(cmd, cap, "'%s' %s 2>'%s'", mxc_path(), args, err_path());
    int rc = run_command(cmd);
    free(args);
    free(cmd);
    return rc;
}

/* Does mxc's last stderr contain `needle`? Prints it when not. */
static bool err_has(const char *needle)
{
    char *text = read_file(err_path());
    bool ok = text && strstr(text, needle);
    if (!ok) fprintf(stderr, "\n    expected '%s' in mxc's stderr, got: %s\n", needle, text ? text : "(none)");
    free(text);
    return ok;
}

static size_t err_len(void)
{
    char *text = read_file(err_path());
    size_t n = text ? strlen(text) : 0;
    free(text);
    return n;
}

/* Run fn(arg) in a child process with an alarm; true when it exited with status 0. A crash
 * or a hang of the code under test then fails the test instead of ending the program. */
static bool in_child(int (*fn)(void *), void *arg, unsigned seconds)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        alarm(seconds);
        int rc = fn(arg);
        fflush(stdout);
        _exit(rc);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (WIFSIGNALED(status))
        fprintf(stderr, "\n    the child died of signal %d (%s)\n", WTERMSIG(status),
                WTERMSIG(status) == SIGALRM ? "a hang" : "a crash");
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* ---- suite: api ------------------------------------------------------------------------- */

static Api mm, xm; /* mamba_odd as "hm", xlstm_mixed as "hx" */
static const char *mm_w, *xm_w;
static char mm_so[700];

static int api_init(void)
{
    static int status = -1;
    if (status >= 0) return status;
    status = 1;
    char so[700];
    snprintf(mm_so, sizeof mm_so, "%s", out_path("libhm.so"));
    if (mxc("build '%s' -o '%s' --prefix hm", golden("mamba_odd/model.mx"), mm_so) != 0 ||
        !api_load(&mm, mm_so, "hm"))
        return 1;
    snprintf(so, sizeof so, "%s", out_path("libhx.so"));
    if (mxc("build '%s' -o '%s' --prefix hx", golden("xlstm_mixed/model.mx"), so) != 0 ||
        !api_load(&xm, so, "hx"))
        return 1;
    static char mw[700], xw[700];
    snprintf(mw, sizeof mw, "%s", golden("mamba_odd/model.safetensors"));
    snprintf(xw, sizeof xw, "%s", golden("xlstm_mixed/model.safetensors"));
    mm_w = mw;
    xm_w = xw;
    return status = 0;
}

static int api_clean(void)
{
    api_unload(&mm);
    api_unload(&xm);
    return 0;
}

typedef struct Case {
    const Api *a;
    const char *weights;
} Case;

/* Tokens at the start of the logits buffer (`tok = (int32_t *)logits`): the kernels write the
 * first chunk's logits over the ids of the next chunks. Before the fix: SIGSEGV in the embed
 * kernel for len > chunk (129). Now refused up front, and nothing runs. */
static int overlap_child(void *arg)
{
    const Case *c = arg;
    const Api *a = c->a;
    void *m = NULL, *s = NULL;
    if (a->open(c->weights, &m) || a->state_new(m, 1, &s)) return 3;
    size_t V = (size_t)a->vocab_padded();
    const int lens[] = {129, 300, 1};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        float *logits = calloc((size_t)lens[i] * V, sizeof *logits);
        int32_t *tok = (int32_t *)logits; /* ids 0: valid */
        if (a->forward(m, s, tok, lens[i], logits) == 0) return 4;
        if (!strstr(a->last_error(), "tokens and logits buffers overlap")) return 5;
        if (a->step(m, s, tok, logits) == 0) return 6;
        /* tokens inside the logits, not at its start */
        int32_t *mid = (int32_t *)(logits + V / 2);
        if (lens[i] > 1 && a->forward(m, s, mid, lens[i] / 2, logits) == 0) return 7;
        free(logits);
    }
    /* adjacent buffers are fine */
    float *both = calloc(300 * V + 300, sizeof(float));
    if (a->forward(m, s, (int32_t *)(both + 300 * V), 300, both) != 0) return 8;
    free(both);
    a->state_free(s);
    a->close(m);
    return 0;
}

static void test_tokens_overlapping_logits(void)
{
    Case mc = {&mm, mm_w}, xc = {&xm, xm_w};
    CU_ASSERT(in_child(overlap_child, &mc, 60));
    CU_ASSERT(in_child(overlap_child, &xc, 60));
}

/* Another thread rewrites the tokens during forward calls: once a call has started (and has
 * checked every id), it writes INT32_MAX at a position of the last chunk, and puts the valid
 * id back after the call. The embed must read only ids that were checked: each call runs or
 * stops with a message, and never indexes the embedding out of range (before the fix: a
 * SIGSEGV in the embed kernel). */
enum { RW_LEN = 1024, RW_AT = 1000, RW_ROUNDS = 200, RW_HITS = 3 };

typedef struct Rewriter {
    int32_t *tok;
    atomic_int calling; /* round number of the call in progress, 0 between calls */
    atomic_int stop;
    int delay_us;
} Rewriter;

static void *rewrite_work(void *arg)
{
    Rewriter *r = arg;
    int last = 0;
    while (!atomic_load(&r->stop)) {
        int round = atomic_load(&r->calling);
        if (!round || round == last) {
            sched_yield();
            continue;
        }
        last = round;
        usleep((useconds_t)(r->delay_us * (round % 8)));
        ((volatile int32_t *)r->tok)[RW_AT] = INT32_MAX;
        while (atomic_load(&r->calling) == round) sched_yield();
        ((volatile int32_t *)r->tok)[RW_AT] = 1;
    }
    return NULL;
}

static int rewrite_child(void *arg)
{
    const Case *c = arg;
    const Api *a = c->a;
    void *m = NULL, *s = NULL;
    if (a->open(c->weights, &m) || a->state_new(m, 1, &s)) return 3;
    Rewriter r = {calloc(RW_LEN, sizeof(int32_t)), 0, 0, 0};
    float *logits = malloc(sizeof(float) * RW_LEN * (size_t)a->vocab_padded());
    /* how long one call takes, to aim the rewrite inside it */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (a->forward(m, s, r.tok, RW_LEN, logits) != 0) return 3;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = 1e6 * (double)(t1.tv_sec - t0.tv_sec) + 1e-3 * (double)(t1.tv_nsec - t0.tv_nsec);
    r.delay_us = (int)(us / 64) + 1; /* 0 to 7/64 of a call: inside the first chunks */
    pthread_t th;
    if (pthread_create(&th, NULL, rewrite_work, &r)) return 3;
    int ok = 0, refused = 0, changed = 0, other = 0;
    for (int i = 1; i <= RW_ROUNDS && changed < RW_HITS; i++) { /* until the race is hit */
        atomic_store(&r.calling, i);
        int rc = a->forward(m, s, r.tok, RW_LEN, logits);
        atomic_store(&r.calling, 0);
        while (((volatile int32_t *)r.tok)[RW_AT] != 1) sched_yield(); /* restored */
        if (rc == 0) ok++;
        else if (strstr(a->last_error(), "during the call (the tokens buffer changed)")) changed++;
        else if (strstr(a->last_error(), "out of range")) refused++;
        else other++;
    }
    atomic_store(&r.stop, 1);
    pthread_join(th, NULL);
    printf("\n    %s (a call takes %.0f us): %d ran, %d refused up front, %d stopped at the "
           "changed id ", a == &mm ? "mamba" : "xlstm", us, ok, refused, changed);
    a->state_free(s);
    a->close(m);
    free(r.tok);
    free(logits);
    if (other) return 4;
    return changed > 0 ? 0 : 5; /* the race was hit at least once */
}

static void test_tokens_rewritten_during_forward(void)
{
    Case mc = {&mm, mm_w}, xc = {&xm, xm_w};
    CU_ASSERT(in_child(rewrite_child, &mc, 120));
    CU_ASSERT(in_child(rewrite_child, &xc, 120));
}

/* One state, two threads: long forwards on one, steps on the other. Before: a crash or a hang
 * in the shared pool. Now the second caller gets "in use by another thread" naming the state,
 * and the state still works afterwards. */
typedef struct Sharer {
    const Api *a;
    void *m, *s;
    atomic_int done;
    int errors, in_use, other;
} Sharer;

static void *share_forwards(void *arg)
{
    Sharer *sh = arg;
    size_t V = (size_t)sh->a->vocab_padded();
    int32_t *tok = calloc(512, sizeof *tok);
    float *lg = malloc(sizeof *lg * 512 * V);
    for (int ran = 0; ran < 10;) /* ten forwards that got the state, however many tries */
        if (sh->a->forward(sh->m, sh->s, tok, 512, lg) == 0) {
            ran++;
        } else {
            sh->errors++;
            if (strstr(sh->a->last_error(), "in use by another thread")) sh->in_use++;
            else sh->other++;
            sched_yield();
        }
    atomic_store(&sh->done, 1);
    free(tok);
    free(lg);
    return NULL;
}

static int share_child(void *arg)
{
    const Api *a = arg;
    Sharer sh = {.a = a};
    if (a->open(a == &mm ? mm_w : xm_w, &sh.m) || a->state_new(sh.m, 1, &sh.s)) return 3;
    if (a->set_threads(sh.s, 2)) return 3;
    char name[32];
    snprintf(name, sizeof name, "%p", sh.s);
    pthread_t th;
    if (pthread_create(&th, NULL, share_forwards, &sh)) return 3;
    int32_t tok[1] = {1};
    float lg[256];
    int named = 0, steps_in_use = 0, other = 0;
    while (!atomic_load(&sh.done)) {
        int rc = a->step(sh.m, sh.s, tok, lg);
        sched_yield(); /* let the forwards in too */
        if (rc == 0) continue;
        if (strstr(a->last_error(), "in use by another thread")) steps_in_use++;
        else other++;
        named += strstr(a->last_error(), name) != NULL;
    }
    pthread_join(th, NULL);
    printf("\n    %d steps and %d forwards refused as in use ", steps_in_use, sh.in_use);
    bool works = a->step(sh.m, sh.s, tok, lg) == 0;
    a->state_free(sh.s);
    a->close(sh.m);
    if (other || sh.other || !works) return 4;
    if (steps_in_use + sh.in_use == 0) return 5; /* never overlapped: nothing detected */
    return named == steps_in_use ? 0 : 6;
}

static void test_state_used_by_two_threads(void)
{
    CU_ASSERT(in_child(share_child, &mm, 120));
    CU_ASSERT(in_child(share_child, &xm, 120));
}

static void test_thread_range_of_the_api(void)
{
    void *m = NULL, *s = NULL;
    CU_ASSERT_EQUAL_FATAL(mm.open(mm_w, &m), 0);
    CU_ASSERT_EQUAL_FATAL(mm.state_new(m, 1, &s), 0);
    const int bad[] = {0, -1, 257, 1000, 100000};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CU_ASSERT_NOT_EQUAL(mm.set_threads(s, bad[i]), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(mm.last_error(), "thread count must be in [1, 256], got"));
    }
    CU_ASSERT_EQUAL(mm.set_threads(s, 256), 0); /* the top of the range, oversubscribed */
    int32_t tok[1] = {1};
    float lg[104];
    CU_ASSERT_EQUAL(mm.step(m, s, tok, lg), 0);
    mm.state_free(s);

    /* $MXC_THREADS: the same range; anything else makes state_new fail, naming it */
    const char *bad_env[] = {"0", "-1", "abc", "100000", "2x", " 2"};
    for (size_t i = 0; i < sizeof bad_env / sizeof bad_env[0]; i++) {
        setenv("MXC_THREADS", bad_env[i], 1);
        s = (void *)8;
        CU_ASSERT_NOT_EQUAL(mm.state_new(m, 1, &s), 0);
        CU_ASSERT_PTR_NULL(s);
        char want[96];
        snprintf(want, sizeof want, "$MXC_THREADS: thread count must be in [1, 256], got '%s'",
                 bad_env[i]);
        const char *msg = mm.last_error();
        if (!strstr(msg, want)) fprintf(stderr, "\n    got: %s\n", msg);
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, want));
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, "hm_state_new"));
    }
    setenv("MXC_THREADS", "3", 1);
    CU_ASSERT_EQUAL(mm.state_new(m, 1, &s), 0);
    mm.state_free(s);
    setenv("MXC_THREADS", "", 1); /* empty: unset */
    CU_ASSERT_EQUAL(mm.state_new(m, 1, &s), 0);
    mm.state_free(s);
    unsetenv("MXC_THREADS");
    mm.close(m);
}

/* Weights files changing under an open model (docs/c-api.md): replacing the file by rename
 * leaves the model as it was; rewriting it in place changes what the model computes (the F32
 * tensors are read from the mapped file) - pinned here as the documented hazard. */
static bool copy_file(const char *from, const char *to, bool corrupt)
{
    FILE *in = fopen(from, "rb");
    if (!in) return false;
    uint64_t hdr = 0;
    bool ok = fread(&hdr, 8, 1, in) == 1;
    rewind(in);
    char tmp[800];
    snprintf(tmp, sizeof tmp, "%s.tmp", to);
    FILE *out = fopen(tmp, "wb");
    char buf[65536];
    size_t n, at = 0;
    while (ok && out && (n = fread(buf, 1, sizeof buf, in)) > 0) {
        for (size_t i = 0; corrupt && i < n; i++)
            if (at + i >= 8 + hdr) buf[i] = (char)0x7f; /* every float becomes NaN */
        ok = fwrite(buf, 1, n, out) == n;
        at += n;
    }
    fclose(in);
    ok = out && fclose(out) == 0 && ok;
    return ok && rename(tmp, to) == 0;
}

static void test_weights_replaced_while_open(void)
{
    char path[800];
    snprintf(path, sizeof path, "%s", out_path("replaced.safetensors"));
    CU_ASSERT_FATAL(copy_file(mm_w, path, false));
    void *m = NULL, *s = NULL;
    CU_ASSERT_EQUAL_FATAL(mm.open(path, &m), 0);
    CU_ASSERT_EQUAL_FATAL(mm.state_new(m, 1, &s), 0);
    int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float before[8 * 104], after[8 * 104];
    CU_ASSERT_EQUAL(mm.forward(m, s, tok, 8, before), 0);
    /* a corrupt file renamed over it: the open model keeps the old one */
    CU_ASSERT_FATAL(copy_file(mm_w, path, true));
    mm.state_reset(s);
    CU_ASSERT_EQUAL(mm.forward(m, s, tok, 8, after), 0);
    CU_ASSERT_EQUAL(memcmp(before, after, sizeof before), 0);
    mm.state_free(s);
    mm.close(m);
    /* rewritten in place: the open model computes with the new bytes */
    CU_ASSERT_FATAL(copy_file(mm_w, path, false));
    CU_ASSERT_EQUAL_FATAL(mm.open(path, &m), 0);
    CU_ASSERT_EQUAL_FATAL(mm.state_new(m, 1, &s), 0);
    FILE *f = fopen(path, "r+b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    uint64_t hdr = 0;
    CU_ASSERT_FATAL(fread(&hdr, 8, 1, f) == 1);
    fseek(f, (long)(8 + hdr), SEEK_SET);
    char junk[4096];
    memset(junk, 0x7f, sizeof junk);
    CU_ASSERT(fwrite(junk, 1, sizeof junk, f) == sizeof junk);
    fclose(f);
    CU_ASSERT_EQUAL(mm.forward(m, s, tok, 8, after), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(before, after, sizeof before), 0);
    mm.state_free(s);
    mm.close(m);
}

/* ---- suite: runtime ---------------------------------------------------------------------- */

static void noop_chunk(const float *const *w, float *state, float *scratch, const int32_t *tok,
                       int64_t tb, float *logits, int64_t lb, int32_t batch, int32_t len,
                       MxrtExec *e)
{
    (void)w, (void)state, (void)scratch, (void)tok, (void)tb, (void)logits, (void)lb;
    (void)batch, (void)len, (void)e;
}

/* A model of no weights whose state is `state_floats` per sequence, opened on a file with
 * an empty header. */
static MxrtModel *open_empty_model(MxrtModelDesc *d, int64_t state_floats)
{
    static const char empty_st[] = "\x02\0\0\0\0\0\0\0{}";
    const char *path = out_path("empty.safetensors");
    if (!write_file(path, empty_st, 10)) return NULL;
    *d = (MxrtModelDesc){.abi_version = MXRT_ABI_VERSION, .name = "big", .vocab_size = 4,
                         .vocab_padded = 4, .d_model = 1, .chunk_len = 4,
                         .state_floats = state_floats, .scratch_floats_per_row = 1,
                         .forward_chunk = noop_chunk, .step = noop_chunk,
                         .forward_trunk = noop_chunk, .forward_last = noop_chunk};
    MxrtModel *m = NULL;
    return mxrt_open(d, path, &m) == 0 ? m : NULL;
}

/* A state that needs more memory than is available is refused with a message that says so
 * (the allocation itself could succeed under overcommit, and the first touch of its pages
 * would get the process killed). */
static void test_state_too_large_for_memory(void)
{
    MxrtModelDesc d;
    MxrtModel *m = open_empty_model(&d, (int64_t)1 << 22); /* 16 MiB per sequence */
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    MxrtState *s = (MxrtState *)8;
    CU_ASSERT_NOT_EQUAL(mxrt_state_new(m, 65536, &s), 0); /* 1 TiB */
    CU_ASSERT_PTR_NULL(s);
    const char *msg = mxrt_last_error();
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "big_state_new: out of memory: the state of batch 65536 "
                                       "needs 1048576 MiB, more than the"));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "MiB of memory available"));
    CU_ASSERT_EQUAL(mxrt_state_new(m, 2, &s), 0); /* 32 MiB is fine */
    mxrt_state_free(s);
    mxrt_close(m);
}

/* The default thread count counts the CPUs of the affinity mask, not the machine's. */
static int affinity_child(void *arg)
{
    (void)arg;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu() < 0 ? 0 : sched_getcpu(), &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0) return 3;
    if (pool_cpus() != 1) return 4;
    int n = 0;
    unsetenv("MXC_THREADS");
    if (pool_default_threads((int64_t)1 << 30, &n) != 0 || n != 1) return 5;
    return 0;
}

static void test_default_threads_follow_affinity(void)
{
    cpu_set_t set;
    CU_ASSERT_EQUAL_FATAL(sched_getaffinity(0, sizeof set, &set), 0);
    CU_ASSERT_EQUAL(pool_cpus(), CPU_COUNT(&set));
    int n = 0;
    unsetenv("MXC_THREADS");
    CU_ASSERT_EQUAL(pool_default_threads((int64_t)1 << 30, &n), 0);
    CU_ASSERT_EQUAL(n, CPU_COUNT(&set) < 256 ? CPU_COUNT(&set) : 256);
    CU_ASSERT_EQUAL(pool_default_threads(1000, &n), 0);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT(in_child(affinity_child, NULL, 30));
}

/* More threads than CPUs: each barrier needs every thread scheduled in turn, so a waiter
 * that spins or only yields keeps the others off the CPU. On one CPU, 4 threads through
 * 1000 barriers cost ~300 ms of CPU before (spinning, then sched_yield) and ~20 ms now (a
 * short spin, then sleeping until the last thread arrives). The bound is CPU time, which
 * the load of the machine barely changes. */
enum { BARRIERS = 200 };

static void barrier_chunk(const float *const *w, float *state, float *scratch,
                          const int32_t *tok, int64_t tb, float *logits, int64_t lb,
                          int32_t batch, int32_t len, MxrtExec *e)
{
    (void)w, (void)scratch, (void)tok, (void)tb, (void)logits, (void)lb, (void)batch, (void)len;
    for (int i = 0; i < BARRIERS; i++) {
        if (e->ith == i % e->nth) state[0] += 1; /* one writer per phase, ordered by barriers */
        mxrt_barrier(e);
    }
}

static int oversubscribed_child(void *arg)
{
    (void)arg;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu() < 0 ? 0 : sched_getcpu(), &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0) return 3;
    MxrtPool *p;
    if (pool_create(4, &p) != 0) return 3;
    float state[1] = {0};
    PoolJob job = {.fn = barrier_chunk, .state = state};
    clock_t c0 = clock();
    for (int r = 0; r < 5; r++) pool_run(p, &job);
    double cpu_ms = 1e3 * (double)(clock() - c0) / CLOCKS_PER_SEC;
    pool_destroy(p);
    printf("\n    4 threads on 1 CPU, %d barriers: %.1f ms of CPU ", 5 * BARRIERS, cpu_ms);
    if (state[0] != 5 * BARRIERS) return 4; /* the barrier still orders the phases */
    return cpu_ms < 150 ? 0 : 5;
}

static void test_barrier_when_oversubscribed(void)
{
    CU_ASSERT(in_child(oversubscribed_child, NULL, 60));
}

/* ---- suite: driver ---------------------------------------------------------------------- */

static const char small_spec[] =
    "model hsmall { vocab_size = 16; d_model = 8; blocks = [mamba]; mamba { d_state = 4; } }\n";

static void test_outputs_never_overwrite_inputs(void)
{
    const char *spec = out_path("clobber.mx");
    CU_ASSERT_FATAL(write_file(spec, small_spec, strlen(small_spec)));
    CU_ASSERT_EQUAL(mxc("build '%s' -o '%s'", spec, spec), 1);
    CU_ASSERT(err_has("-o '"));
    CU_ASSERT(err_has("' is the spec; refusing to overwrite it"));
    CU_ASSERT_EQUAL(mxc("build '%s' -o '%s' --header '%s'", spec, out_path("libc.so"), spec), 1);
    CU_ASSERT(err_has("--header '"));
    CU_ASSERT(err_has("is the spec"));
    /* another spelling of the same path, and a hard link */
    char other[800];
    snprintf(other, sizeof other, "%s/../hostile/./clobber.mx", out_dir());
    CU_ASSERT_EQUAL(mxc("build '%s' -o '%s'", spec, other), 1);
    unlink(out_path("clobber_link.mx"));
    CU_ASSERT_EQUAL_FATAL(link(spec, out_path("clobber_link.mx")), 0);
    CU_ASSERT_EQUAL(mxc("build '%s' -o '%s'", out_path("clobber_link.mx"), spec), 1);
    /* -o and --header the same (existing or not) */
    unlink(out_path("both"));
    CU_ASSERT_EQUAL(mxc("build '%s' -o '%s' --header '%s'", spec, out_path("both"),
                        out_path("both")), 1);
    CU_ASSERT(err_has("and --header '"));
    CU_ASSERT(err_has("are the same file"));
    CU_ASSERT(!exists(out_path("both")));
    /* the weights to embed */
    CU_ASSERT_FATAL(write_file(out_path("w.st"), "", 0));
    CU_ASSERT_EQUAL(mxc("build '%s' -o '%s' --embed-weights '%s'", spec, out_path("w.st"),
                        out_path("w.st")), 1);
    CU_ASSERT(err_has("is the weights to embed; refusing to overwrite it"));
    char *text = read_file(spec);
    CU_ASSERT(text && strcmp(text, small_spec) == 0); /* the spec survived all of it */
    free(text);
    /* distinct paths still build */
    CU_ASSERT_EQUAL(mxc("build '%s' -o '%s' -O0", spec, out_path("libhsmall.so")), 0);
    CU_ASSERT(exists(out_path("libhsmall.so")) && exists(out_path("hsmall.h")));
}

/* The header of a safetensors file whose two tensors share bytes 4..8 of its 12. */
static const char overlapping_header[] =
    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";

static void test_embedded_weights_validated_at_build(void)
{
    const char *spec = golden("mamba_odd/model.mx"), *so = out_path("libhemb.so");
    const char *empty = out_path("empty.bin"), *overlap = out_path("overlap.safetensors");
    CU_ASSERT_FATAL(write_file(empty, "", 0));
    char bytes[200] = {0};
    size_t hdr = strlen(overlapping_header);
    bytes[0] = (char)hdr; /* little-endian u64 header length, < 256 */
    memcpy(bytes + 8, overlapping_header, hdr);
    CU_ASSERT_FATAL(write_file(overlap, bytes, 8 + hdr + 12));
    const struct { const char *file, *message; } bad[] = {
        {empty, "file is empty, not a safetensors file"},
        {overlap, "overlap"},
        {golden("xlstm_mixed/model.safetensors"), "missing tensor 'backbone.embedding.weight'"},
        {golden("mamba_tiny/model.safetensors"), "but the model expects [104, 51]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unlink(so);
        CU_ASSERT_EQUAL(mxc("build '%s' -O0 -o '%s' --prefix hemb --embed-weights '%s'", spec,
                            so, bad[i].file), 1);
        CU_ASSERT(err_has("mxc: error: the weights to embed do not fit the model: "
                          "<embedded weights>"));
        CU_ASSERT(err_has(bad[i].message));
        CU_ASSERT(!exists(so)); /* no library whose P_open(NULL) must fail */
    }
    /* the right file builds, and opens */
    CU_ASSERT_EQUAL(mxc("build '%s' -O0 -o '%s' --prefix hemb --embed-weights '%s'", spec, so,
                        golden("mamba_odd/model.safetensors")), 0);
    Api a;
    CU_ASSERT_FATAL(api_load(&a, so, "hemb"));
    void *m = NULL;
    CU_ASSERT_EQUAL(a.open(NULL, &m), 0);
    if (m) a.close(m);
    api_unload(&a);
}

/* Models `foo` and `Foo` (and `_stdint`, whose upper-cased guard was glibc's _STDINT_H)
 * included in one translation unit, as C and as C++, with their own sizes. */
static void test_headers_of_similar_prefixes(void)
{
    const char *names[] = {"foo", "Foo", "_stdint"};
    const int vocab[] = {11, 12, 13};
    for (int i = 0; i < 3; i++) {
        char spec_text[200], so[40];
        snprintf(spec_text, sizeof spec_text,
                 "model %s { vocab_size = %d; d_model = 8; blocks = [mamba]; }\n", names[i],
                 vocab[i]);
        const char *spec = out_path("similar.mx");
        CU_ASSERT_FATAL(write_file(spec, spec_text, strlen(spec_text)));
        snprintf(so, sizeof so, "lib%s.so", names[i]);
        CU_ASSERT_EQUAL_FATAL(mxc("build '%s' -O0 -o '%s'", spec, out_path(so)), 0);
    }
    static const char tu[] =
        "#include \"_stdint.h\"\n#include \"foo.h\"\n#include \"Foo.h\"\n#include <stdint.h>\n"
        "#ifdef __cplusplus\n#define STATIC_ASSERT static_assert\n#else\n"
        "#define STATIC_ASSERT _Static_assert\n#endif\n"
        "STATIC_ASSERT(foo_VOCAB_SIZE == 11 && Foo_VOCAB_SIZE == 12 && _stdint_VOCAB_SIZE == 13,"
        " \"each model its own sizes\");\n"
        "int32_t (*const fns[3])(void) = {foo_vocab_size, Foo_vocab_size, _stdint_vocab_size};\n"
        "int main(void) { foo_model *a = 0; Foo_model *b = 0; return a == 0 && b == 0 ? 0 : 1; }\n";
    const char *c = out_path("similar_tu.c");
    CU_ASSERT_FATAL(write_file(c, tu, strlen(tu)));
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "cc -std=c11 -Wall -Wextra -Werror -I'%s' -c '%s' -o '%s' 2>&1",
             out_dir(), c, out_path("similar_c.o"));
    CU_ASSERT_EQUAL(run_command(cmd), 0);
    snprintf(cmd, sizeof cmd, "c++ -std=c++11 -Wall -Wextra -Werror -I'%s' -x c++ -c '%s' -o '%s' 2>&1",
             out_dir(), c, out_path("similar_cc.o"));
    CU_ASSERT_EQUAL(run_command(cmd), 0);
    char *h = read_file(out_path("_stdint.h"));
    CU_ASSERT(h && strstr(h, "#ifndef MXC_MODEL__stdint_H") && !strstr(h, "_STDINT_H"));
    free(h);
}

static void test_output_to_a_full_device(void)
{
    if (!exists("/dev/full")) {
        printf("(no /dev/full on this system) ");
        CU_FAIL("the test needs /dev/full");
        return;
    }
    char cmd[3000];
    snprintf(cmd, sizeof cmd, "'%s' run '%s' --prefix hm --weights '%s' -n 20 --prompt-ids '1 2' "
             "--seed 1 > /dev/full 2>'%s'", mxc_path(), mm_so, mm_w, err_path());
    CU_ASSERT_EQUAL(run_command(cmd), 1);
    CU_ASSERT(err_has("mxc run: error: cannot write the generated text to stdout: No space left"));
    snprintf(cmd, sizeof cmd, "'%s' check --resolved '%s' > /dev/full 2>'%s'", mxc_path(),
             golden("mamba_odd/model.mx"), err_path());
    CU_ASSERT_EQUAL(run_command(cmd), 1);
    CU_ASSERT(err_has("mxc: error: cannot write to stdout: No space left"));
    snprintf(cmd, sizeof cmd, "'%s' --help > /dev/full 2>'%s'", mxc_path(), err_path());
    CU_ASSERT_EQUAL(run_command(cmd), 1);
    /* to a working stdout both succeed */
    snprintf(cmd, sizeof cmd, "'%s' run '%s' --prefix hm --weights '%s' -n 20 --prompt-ids '1 2' "
             "--seed 1 > /dev/null 2>&1", mxc_path(), mm_so, mm_w);
    CU_ASSERT_EQUAL(run_command(cmd), 0);
}

static void test_bad_target_cpu(void)
{
    const char *spec = out_path("target.mx");
    CU_ASSERT_FATAL(write_file(spec, small_spec, strlen(small_spec)));
    const char *so = out_path("libhtarget.so");
    CU_ASSERT_EQUAL(mxc("build '%s' -o '%s' --target-cpu skylake-avx51", spec, so), 1);
    CU_ASSERT(err_has("mxc: error: unknown --target-cpu 'skylake-avx51'; did you mean "
                      "'skylake-avx512'?"));
    CU_ASSERT(err_len() < 400); /* one message, not LLVM's warnings */
    CU_ASSERT_EQUAL(mxc("build '%s' -o '%s' --target-cpu foo", spec, so), 1);
    CU_ASSERT(err_has("mxc: error: unknown --target-cpu 'foo' (LLVM knows"));
    CU_ASSERT_EQUAL(mxc("build '%s' -o '%s' --target-cpu znver", spec, so), 1);
    CU_ASSERT(err_has("did you mean 'znver1'"));
    /* a known CPU without 64-bit mode made LLVM abort the compiler */
    CU_ASSERT_EQUAL(mxc("build '%s' -o '%s' --target-cpu i386", spec, so), 1);
    CU_ASSERT(err_has("'i386' cannot run 64-bit x86 code"));
    CU_ASSERT_EQUAL(mxc("build '%s' -o '%s' --target-cpu ''", spec, so), 1);
    CU_ASSERT(!exists(out_path("htarget.h")));
}

/* The vector width the kernels are generated with, from LLVM's code for each CPU: AVX-512
 * CPUs whose names the old substring rules missed (cascadelake, znver5) get 16 lanes. */
static void test_vector_width_of_named_cpus(void)
{
    const char *spec = out_path("width.mx");
    CU_ASSERT_FATAL(write_file(spec, small_spec, strlen(small_spec)));
    const struct { const char *cpu; int width; } cases[] = {
        {"cascadelake", 16}, {"znver5", 16}, {"x86-64-v4", 16}, {"x86-64-v3", 8},
        {"sandybridge", 8}, {"x86-64", 4}, {"core2", 4}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *ll = out_path("width.ll");
        unlink(ll);
        CU_ASSERT_EQUAL(mxc("build '%s' -O0 -o '%s' --emit-llvm '%s' --target-cpu %s", spec,
                            out_path("libhwidth.so"), ll, cases[i].cpu), 0);
        char *ir = read_file(ll);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ir);
        int got = strstr(ir, "<16 x float>") ? 16 : strstr(ir, "<8 x float>") ? 8 : 4;
        if (got != cases[i].width)
            fprintf(stderr, "\n    %s: %d lanes, expected %d\n", cases[i].cpu, got, cases[i].width);
        CU_ASSERT_EQUAL(got, cases[i].width);
        free(ir);
    }
}

static void test_run_thread_range(void)
{
    char base[2000];
    snprintf(base, sizeof base, "run '%s' --prefix hm --weights '%s' -n 3 --prompt-ids '1 2' "
             "--seed 1", mm_so, mm_w);
    const char *bad[] = {"0", "-1", "257", "1000", "4096", "abc"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CU_ASSERT_EQUAL(mxc("%s --threads '%s'", base, bad[i]), 2);
        char want[96];
        snprintf(want, sizeof want, "--threads: thread count must be in [1, 256], got '%s'", bad[i]);
        CU_ASSERT(err_has(want));
    }
    const char *bad_env[] = {"0", "-1", "abc", "100000"};
    for (size_t i = 0; i < sizeof bad_env / sizeof bad_env[0]; i++) {
        char cmd[4000];
        snprintf(cmd, sizeof cmd, "MXC_THREADS='%s' '%s' %s > /dev/null 2>'%s'", bad_env[i],
                 mxc_path(), base, err_path());
        CU_ASSERT_EQUAL(run_command(cmd), 1);
        char want[96];
        snprintf(want, sizeof want, "$MXC_THREADS: thread count must be in [1, 256], got '%s'",
                 bad_env[i]);
        CU_ASSERT(err_has(want));
    }
    /* above the CPUs: runs, with a warning */
    CU_ASSERT_EQUAL(mxc("%s --threads 256 > /dev/null", base), 0);
    CU_ASSERT(err_has("mxc run: warning: 256 threads but this process may run on"));
    CU_ASSERT_EQUAL(mxc("%s --threads 1 > /dev/null", base), 0);
}

/* Names and arguments are echoed clipped, not whole. */
static void test_long_names_are_clipped(void)
{
    size_t n = 100000;
    char *name = malloc(n + 1);
    memset(name, 'x', n);
    name[n] = 0;
    char *args = malloc(n + 200);
    const char *spec = golden("mamba_odd/model.mx");
    snprintf(args, n + 200, "build '%s' --model %s", spec, name);
    CU_ASSERT_EQUAL(mxc("%s", args), 1);
    CU_ASSERT(err_has("defines no model named 'xxxx"));
    CU_ASSERT(err_len() < 400);
    snprintf(args, n + 200, "build '%s' --prefix %s", spec, name);
    CU_ASSERT_EQUAL(mxc("%s", args), 1);
    CU_ASSERT(err_has("is not usable as a C prefix"));
    CU_ASSERT(err_len() < 400);
    snprintf(args, n + 200, "%s", name);
    CU_ASSERT_EQUAL(mxc("%s", args), 2);
    CU_ASSERT(err_has("unknown command 'xxx"));
    CU_ASSERT(err_len() < 400);
    snprintf(args, n + 200, "run '%s' --%s", spec, name);
    CU_ASSERT_EQUAL(mxc("%s", args), 2);
    CU_ASSERT(err_has("option '--xxx"));
    CU_ASSERT(err_len() < 1200);
    free(args);
    free(name);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    CU_pSuite api = CU_add_suite("api", api_init, NULL);
    TEST_ADD(api, test_tokens_overlapping_logits);
    TEST_ADD(api, test_tokens_rewritten_during_forward);
    TEST_ADD(api, test_state_used_by_two_threads);
    TEST_ADD(api, test_thread_range_of_the_api);
    TEST_ADD(api, test_weights_replaced_while_open);
    CU_pSuite runtime = CU_add_suite("runtime", NULL, NULL);
    TEST_ADD(runtime, test_state_too_large_for_memory);
    TEST_ADD(runtime, test_default_threads_follow_affinity);
    TEST_ADD(runtime, test_barrier_when_oversubscribed);
    CU_pSuite driver = CU_add_suite("driver", api_init, api_clean);
    TEST_ADD(driver, test_outputs_never_overwrite_inputs);
    TEST_ADD(driver, test_embedded_weights_validated_at_build);
    TEST_ADD(driver, test_headers_of_similar_prefixes);
    TEST_ADD(driver, test_output_to_a_full_device);
    TEST_ADD(driver, test_bad_target_cpu);
    TEST_ADD(driver, test_vector_width_of_named_cpus);
    TEST_ADD(driver, test_run_thread_range);
    TEST_ADD(driver, test_long_names_are_clipped);
    return test_run_all();
}
