/* bench_model.c - time one compiled mxc model (a shared object loaded with dlopen).
 *
 *   bench_model LIB PREFIX WEIGHTS decode  BATCH REPS [SECONDS]
 *   bench_model LIB PREFIX WEIGHTS prefill LEN   REPS [SECONDS]
 *   bench_model LIB PREFIX WEIGHTS dump    TOKENS_FILE LEN STEPS OUT_FILE
 *   bench_model LIB PREFIX WEIGHTS prefill_last LEN REPS [SECONDS]
 *   bench_model LIB PREFIX WEIGHTS saveload LEN REPS [SECONDS]
 *   bench_model LIB PREFIX WEIGHTS spec     TOKENS REPS [SECONDS]
 *
 * decode:  BATCH sequences, primed with an 8-token forward, 3 warm-up steps, then REPS timed
 *          P_step calls (one token per sequence each): time per step.
 * prefill: one sequence of LEN tokens: a warm-up forward of min(LEN, 64) tokens (maps the
 *          weights, starts the threads) and a touch of the logits buffer, then REPS x
 *          (P_state_reset + P_forward).
 * dump:    P_forward on the first LEN int32 tokens of TOKENS_FILE, then STEPS P_step calls on
 *          the next ones; writes the (LEN + STEPS) x VOCAB_PADDED float32 logits to OUT_FILE
 *          (the benchmark compares them with its PyTorch model).
 * prefill_last: as prefill, with PREFIX_forward_last (the head for the last position only).
 * saveload: a state after a LEN-token prompt; REPS x (PREFIX_state_save into a buffer +
 *          PREFIX_state_load into another state), and REPS x re-running the prompt with
 *          PREFIX_prefill (no logits) for comparison ("rerun_ms").
 * spec:    greedy decoding of TOKENS tokens after a 64-token prompt, two ways: the plain loop
 *          (one PREFIX_step per token; "median_ms" per token), and a speculative-decoding
 *          style loop ("spec_ms" per token): each round runs PREFIX_forward_snapshots on 4
 *          tokens (the model's own next token and 3 draft tokens, each the plain loop's token
 *          with probability 0.7, else a wrong one) with a snapshot after each, accepts the
 *          draft tokens the model agrees with and rolls back to the snapshot after the last
 *          accepted one. "same_tokens" says whether both loops produced the same tokens.
 *          A third loop ("rerun_ms", "rerun_same_tokens") takes no snapshots: it copies the
 *          state before the round, runs the 4 tokens as one PREFIX_forward (one chunk), and on
 *          a rejection restores the copy and re-runs the accepted tokens with PREFIX_prefill.
 * Timed loops stop early once SECONDS (default 60) have passed (at least one rep runs).
 *
 * Prints one JSON line: median and min in ms, reps, the thread count, the wall time of
 * PREFIX_open ("open_ms": map, validate, bind; the 7B rows report it), and the process's peak
 * RSS (getrusage ru_maxrss; one process per measurement, so it is that measurement's peak)
 * together with the size of the caller's logits buffer, which is part of that RSS.
 *
 * Threads: $MXC_THREADS (default 2) is passed to PREFIX_state_set_threads(state, n) on every
 * state (or to PREFIX_set_threads(n), an earlier form of the API); if the model exports
 * neither, it is taken to run single-threaded and the output says so.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef int (*OpenFn)(const char *, void **);
typedef int (*StateNewFn)(void *, int, void **);
typedef void (*StateResetFn)(void *);
typedef int (*ForwardFn)(void *, void *, const int32_t *, int, float *);
typedef int (*StepFn)(void *, void *, const int32_t *, float *);
typedef const char *(*ErrorFn)(void);
typedef int32_t (*SizeFn)(void);
typedef int (*SetThreadsFn)(int);
typedef int (*StateSetThreadsFn)(void *, int);
typedef int64_t (*SaveSizeFn)(const void *);
typedef int (*SaveFn)(const void *, void *, int64_t);
typedef int (*LoadFn)(void *, const void *, int64_t);
typedef int (*PrefillFn)(void *, void *, const int32_t *, int);
typedef int (*SnapshotsFn)(void *, void *, const int32_t *, int, float *, const int32_t *, int,
                           int, void *const *);
typedef int (*CopyFn)(void *, const void *);

static struct {
    OpenFn open;
    StateNewFn state_new;
    StateResetFn state_reset;
    ForwardFn forward;
    StepFn step;
    ErrorFn last_error;
    SizeFn vocab_size, vocab_padded;
    SetThreadsFn set_threads;
    StateSetThreadsFn state_set_threads;
    ForwardFn forward_last;
    SaveSizeFn save_size;
    SaveFn save;
    LoadFn load;
    PrefillFn prefill;
    SnapshotsFn forward_snapshots;
    CopyFn state_copy;
} api;

static int threads = 1;
static double open_ms = -1; /* wall time of PREFIX_open */

static void die(const char *what)
{
    fprintf(stderr, "bench_model: %s: %s\n", what, api.last_error ? api.last_error() : "");
    exit(1);
}

static void *sym(void *lib, const char *prefix, const char *name, int required)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s_%s", prefix, name);
    void *p = dlsym(lib, buf);
    if (!p && required) {
        fprintf(stderr, "bench_model: symbol %s not found\n", buf);
        exit(1);
    }
    return p;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A fixed pseudo-random token stream (LCG), the same for every run. */
static uint32_t lcg = 12345;
static int32_t next_token(int32_t vocab)
{
    lcg = lcg * 1664525u + 1013904223u;
    return (int32_t)((lcg >> 8) % (uint32_t)vocab);
}

static int32_t argmax_of(const float *logits, int32_t vocab)
{
    int32_t best = 0;
    for (int32_t i = 1; i < vocab; i++)
        if (logits[i] > logits[best])
            best = i;
    return best;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench_model: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* A zeroed state for `batch` sequences running on `threads` threads. */
static void *new_state(void *m, int batch)
{
    void *s = NULL;
    if (api.state_new(m, batch, &s))
        die("state_new");
    if (api.state_set_threads && api.state_set_threads(s, threads))
        die("state_set_threads");
    return s;
}

static void report(const char *mode, int batch, int len, double *t, int reps,
                   size_t logits_bytes)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    qsort(t, reps, sizeof *t, cmp_double);
    double median = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    printf("{\"mode\": \"%s\", \"batch\": %d, \"len\": %d, \"median_ms\": %.4f, "
           "\"min_ms\": %.4f, \"reps\": %d, \"threads\": %d, \"threads_api\": \"%s\", "
           "\"maxrss_kb\": %ld, \"logits_bytes\": %zu, \"open_ms\": %.3f}\n",
           mode, batch, len, median, t[0], reps, threads,
           api.state_set_threads ? "state_set_threads" : api.set_threads ? "set_threads" : "none",
           ru.ru_maxrss, logits_bytes, open_ms);
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: bench_model LIB PREFIX WEIGHTS decode|prefill N REPS [SECONDS]\n"
                        "       bench_model LIB PREFIX WEIGHTS dump TOKENS_FILE LEN STEPS OUT\n");
        return 2;
    }
    const char *lib_path = argv[1], *prefix = argv[2], *weights = argv[3], *mode = argv[4];
    void *lib = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "bench_model: %s\n", dlerror());
        return 1;
    }
    api.open = (OpenFn)sym(lib, prefix, "open", 1);
    api.state_new = (StateNewFn)sym(lib, prefix, "state_new", 1);
    api.state_reset = (StateResetFn)sym(lib, prefix, "state_reset", 1);
    api.forward = (ForwardFn)sym(lib, prefix, "forward", 1);
    api.step = (StepFn)sym(lib, prefix, "step", 1);
    api.last_error = (ErrorFn)sym(lib, prefix, "last_error", 1);
    api.vocab_size = (SizeFn)sym(lib, prefix, "vocab_size", 1);
    api.vocab_padded = (SizeFn)sym(lib, prefix, "vocab_padded", 1);
    api.set_threads = (SetThreadsFn)sym(lib, prefix, "set_threads", 0);
    api.state_set_threads = (StateSetThreadsFn)sym(lib, prefix, "state_set_threads", 0);
    int serving = !strcmp(mode, "prefill_last") || !strcmp(mode, "saveload") || !strcmp(mode, "spec");
    api.forward_last = (ForwardFn)sym(lib, prefix, "forward_last", serving);
    api.save_size = (SaveSizeFn)sym(lib, prefix, "state_save_size", serving);
    api.save = (SaveFn)sym(lib, prefix, "state_save", serving);
    api.load = (LoadFn)sym(lib, prefix, "state_load", serving);
    api.prefill = (PrefillFn)sym(lib, prefix, "prefill", serving);
    api.forward_snapshots = (SnapshotsFn)sym(lib, prefix, "forward_snapshots", serving);
    api.state_copy = (CopyFn)sym(lib, prefix, "state_copy", serving);

    const char *env = getenv("MXC_THREADS");
    if (api.state_set_threads || api.set_threads) {
        threads = env && atoi(env) > 0 ? atoi(env) : 2;
        if (api.set_threads && api.set_threads(threads))
            die("set_threads");
    } else {
        fprintf(stderr, "bench_model: neither %s_state_set_threads nor %s_set_threads is "
                        "exported: single-threaded\n", prefix, prefix);
    }

    void *m = NULL, *s = NULL;
    double t_open = now_ms();
    if (api.open(weights, &m))
        die("open");
    open_ms = now_ms() - t_open;
    int32_t vocab = api.vocab_size();
    size_t vp = (size_t)api.vocab_padded();

    if (!strcmp(mode, "dump")) {
        if (argc < 9)
            return 2;
        int len = atoi(argv[6]), steps = atoi(argv[7]);
        int32_t *tok = xmalloc((size_t)(len + steps) * sizeof *tok);
        FILE *f = fopen(argv[5], "rb");
        if (!f || fread(tok, sizeof *tok, len + steps, f) != (size_t)(len + steps)) {
            fprintf(stderr, "bench_model: cannot read %d tokens from %s\n", len + steps, argv[5]);
            return 1;
        }
        fclose(f);
        float *logits = xmalloc((size_t)(len + steps) * vp * sizeof *logits);
        s = new_state(m, 1);
        if (api.forward(m, s, tok, len, logits))
            die("forward");
        for (int i = 0; i < steps; i++)
            if (api.step(m, s, tok + len + i, logits + (size_t)(len + i) * vp))
                die("step");
        f = fopen(argv[8], "wb");
        if (!f || fwrite(logits, sizeof *logits * vp, len + steps, f) != (size_t)(len + steps)) {
            fprintf(stderr, "bench_model: cannot write %s\n", argv[8]);
            return 1;
        }
        fclose(f);
        double t = 0;
        report("dump", 1, len, &t, 1, (size_t)(len + steps) * vp * sizeof *logits);
        return 0;
    }

    int n = atoi(argv[5]), reps = atoi(argv[6]);
    double budget = argc > 7 ? atof(argv[7]) * 1e3 : 60e3;
    if (n < 1 || reps < 1)
        return 2;
    double *t = xmalloc((size_t)reps * sizeof *t);
    int done = 0;
    double start;

    if (!strcmp(mode, "decode")) {
        int batch = n, prime = 8;
        int32_t *tok = xmalloc((size_t)batch * prime * sizeof *tok);
        float *logits = xmalloc((size_t)batch * prime * vp * sizeof *logits);
        s = new_state(m, batch);
        for (int i = 0; i < batch * prime; i++)
            tok[i] = next_token(vocab);
        if (api.forward(m, s, tok, prime, logits))
            die("forward (prime)");
        for (int w = 0; w < 3; w++) {
            for (int b = 0; b < batch; b++)
                tok[b] = next_token(vocab);
            if (api.step(m, s, tok, logits))
                die("step");
        }
        start = now_ms();
        while (done < reps && (done < 1 || now_ms() - start < budget)) {
            for (int b = 0; b < batch; b++)
                tok[b] = next_token(vocab);
            double t0 = now_ms();
            if (api.step(m, s, tok, logits))
                die("step");
            t[done++] = now_ms() - t0;
        }
        report("decode", batch, 1, t, done, (size_t)batch * prime * vp * sizeof *logits);
    } else if (!strcmp(mode, "prefill")) {
        int len = n;
        int32_t *tok = xmalloc((size_t)len * sizeof *tok);
        float *logits = xmalloc((size_t)len * vp * sizeof *logits);
        for (int i = 0; i < len; i++)
            tok[i] = next_token(vocab);
        s = new_state(m, 1);
        if (api.forward(m, s, tok, len < 64 ? len : 64, logits))
            die("forward (warm-up)");
        memset(logits, 0, (size_t)len * vp * sizeof *logits);
        start = now_ms();
        while (done < reps && (done < 1 || now_ms() - start < budget)) {
            api.state_reset(s);
            double t0 = now_ms();
            if (api.forward(m, s, tok, len, logits))
                die("forward");
            t[done++] = now_ms() - t0;
        }
        report("prefill", 1, len, t, done, (size_t)len * vp * sizeof *logits);
    } else if (!strcmp(mode, "prefill_last")) {
        int len = n;
        int32_t *tok = xmalloc((size_t)len * sizeof *tok);
        float *logits = xmalloc(vp * sizeof *logits);
        for (int i = 0; i < len; i++)
            tok[i] = next_token(vocab);
        s = new_state(m, 1);
        if (api.forward_last(m, s, tok, len < 64 ? len : 64, logits))
            die("forward_last (warm-up)");
        start = now_ms();
        while (done < reps && (done < 1 || now_ms() - start < budget)) {
            api.state_reset(s);
            double t0 = now_ms();
            if (api.forward_last(m, s, tok, len, logits))
                die("forward_last");
            t[done++] = now_ms() - t0;
        }
        report("prefill_last", 1, len, t, done, vp * sizeof *logits);
    } else if (!strcmp(mode, "saveload")) {
        int len = n;
        int32_t *tok = xmalloc((size_t)len * sizeof *tok);
        for (int i = 0; i < len; i++)
            tok[i] = next_token(vocab);
        s = new_state(m, 1);
        void *r = new_state(m, 1);
        if (api.prefill(m, s, tok, len))
            die("prefill");
        int64_t bytes = api.save_size(s);
        unsigned char *buf = xmalloc((size_t)bytes);
        double *rerun = xmalloc((size_t)reps * sizeof *rerun);
        start = now_ms();
        while (done < reps && (done < 1 || now_ms() - start < budget)) {
            double t0 = now_ms();
            if (api.save(s, buf, bytes) || api.load(r, buf, bytes))
                die("save/load");
            t[done++] = now_ms() - t0;
        }
        int reruns = 0;
        start = now_ms();
        while (reruns < reps && (reruns < 1 || now_ms() - start < budget)) {
            api.state_reset(r);
            double t0 = now_ms();
            if (api.prefill(m, r, tok, len))
                die("prefill");
            rerun[reruns++] = now_ms() - t0;
        }
        qsort(rerun, (size_t)reruns, sizeof *rerun, cmp_double);
        printf("{\"rerun_ms\": %.4f, \"rerun_reps\": %d, \"state_bytes\": %lld}\n",
               reruns % 2 ? rerun[reruns / 2] : 0.5 * (rerun[reruns / 2 - 1] + rerun[reruns / 2]),
               reruns, (long long)bytes);
        report("saveload", 1, len, t, done, 0);
    } else if (!strcmp(mode, "spec")) {
        enum { DRAFT = 4, PROMPT = 64 };
        int total = n;
        int32_t prompt[PROMPT];
        for (int i = 0; i < PROMPT; i++)
            prompt[i] = next_token(vocab);
        int32_t *plain = xmalloc((size_t)(total + DRAFT) * sizeof *plain);
        int32_t *spec = xmalloc((size_t)(total + DRAFT) * sizeof *spec);
        float *logits = xmalloc(DRAFT * vp * sizeof *logits), *first = xmalloc(vp * sizeof *first);
        s = new_state(m, 1);
        void *start_state = new_state(m, 1), *snaps[DRAFT];
        for (int i = 0; i < DRAFT; i++)
            snaps[i] = new_state(m, 1);
        if (api.forward_last(m, s, prompt, PROMPT, first) || api.state_copy(start_state, s))
            die("prompt");
        double *ts = xmalloc((size_t)reps * sizeof *ts), *tr = xmalloc((size_t)reps * sizeof *tr);
        long accepted = 0, rounds = 0;
        int same = 1, rerun_same = 1;
        for (int rep = 0; rep < reps; rep++) {
            /* the plain loop */
            if (api.state_copy(s, start_state))
                die("state_copy");
            int32_t next = argmax_of(first, vocab);
            double t0 = now_ms();
            for (int i = 0; i < total; i++) {
                plain[i] = next;
                if (api.step(m, s, &next, logits))
                    die("step");
                next = argmax_of(logits, vocab);
            }
            t[rep] = (now_ms() - t0) / total;
            /* the speculative loop: drafts from the plain tokens, some of them spoiled */
            if (api.state_copy(s, start_state))
                die("state_copy");
            next = argmax_of(first, vocab);
            uint32_t rng = 777u + (uint32_t)rep;
            int made = 0;
            const int32_t after[DRAFT] = {1, 2, 3, 4};
            t0 = now_ms();
            while (made < total) {
                int32_t draft[DRAFT];
                draft[0] = next;
                for (int i = 1; i < DRAFT; i++) {
                    rng = rng * 1664525u + 1013904223u;
                    int32_t truth = made + i < total ? plain[made + i] : 0;
                    draft[i] = (rng >> 8) % 10 < 7 ? truth : (truth + 1) % vocab;
                }
                if (api.forward_snapshots(m, s, draft, DRAFT, logits, after, 0, DRAFT, snaps))
                    die("forward_snapshots");
                int acc = 1;
                while (acc < DRAFT && draft[acc] == argmax_of(logits + (size_t)(acc - 1) * vp, vocab))
                    acc++;
                for (int i = 0; i < acc; i++)
                    spec[made + i] = draft[i];
                made += acc;
                next = argmax_of(logits + (size_t)(acc - 1) * vp, vocab);
                /* roll back: the state after the last accepted token */
                if (acc < DRAFT) {
                    void *tmp = s;
                    s = snaps[acc - 1];
                    snaps[acc - 1] = tmp;
                }
                accepted += acc;
                rounds++;
            }
            ts[rep] = (now_ms() - t0) / total;
            same = same && memcmp(plain, spec, (size_t)total * sizeof *plain) == 0;
            /* the same rounds without snapshots: copy before, re-run the accepted part */
            if (api.state_copy(s, start_state))
                die("state_copy");
            next = argmax_of(first, vocab);
            rng = 777u + (uint32_t)rep;
            made = 0;
            t0 = now_ms();
            while (made < total) {
                int32_t draft[DRAFT];
                draft[0] = next;
                for (int i = 1; i < DRAFT; i++) {
                    rng = rng * 1664525u + 1013904223u;
                    int32_t truth = made + i < total ? plain[made + i] : 0;
                    draft[i] = (rng >> 8) % 10 < 7 ? truth : (truth + 1) % vocab;
                }
                if (api.state_copy(snaps[0], s) || api.forward(m, s, draft, DRAFT, logits))
                    die("forward");
                int acc = 1;
                while (acc < DRAFT && draft[acc] == argmax_of(logits + (size_t)(acc - 1) * vp, vocab))
                    acc++;
                for (int i = 0; i < acc; i++)
                    spec[made + i] = draft[i];
                made += acc;
                next = argmax_of(logits + (size_t)(acc - 1) * vp, vocab);
                if (acc < DRAFT && (api.state_copy(s, snaps[0]) || api.prefill(m, s, draft, acc)))
                    die("re-run");
            }
            tr[rep] = (now_ms() - t0) / total;
            rerun_same = rerun_same && memcmp(plain, spec, (size_t)total * sizeof *plain) == 0;
        }
        qsort(tr, (size_t)reps, sizeof *tr, cmp_double);
        printf("{\"rerun_ms\": %.4f, \"rerun_same_tokens\": %s}\n",
               reps % 2 ? tr[reps / 2] : 0.5 * (tr[reps / 2 - 1] + tr[reps / 2]),
               rerun_same ? "true" : "false");
        qsort(ts, (size_t)reps, sizeof *ts, cmp_double);
        printf("{\"spec_ms\": %.4f, \"same_tokens\": %s, \"tokens_per_round\": %.3f}\n",
               reps % 2 ? ts[reps / 2] : 0.5 * (ts[reps / 2 - 1] + ts[reps / 2]),
               same ? "true" : "false", (double)accepted / (double)rounds);
        report("spec", 1, total, t, reps, DRAFT * vp * sizeof *logits);
    } else {
        fprintf(stderr, "bench_model: unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
