/* run.c - `mxc run SPEC|LIB.so`: generate text with a compiled model.
 *
 * A spec is first compiled by running `mxc build` (this same executable) in a child process, into
 * the compile cache (driver/cache.h; a later run of the same spec loads it at once) or, with
 * --no-cache, into a temporary directory. The shared object is then loaded with dlopen and driven through its
 * exported C API (docs/c-api.md): the prompt is run through P_forward in one call (prefill),
 * then tokens are sampled one at a time from the logits (driver/sampler.h: repetition penalty,
 * temperature, top-k, top-p, a seeded generator, so a seed always gives the same text) and fed
 * back with P_step (decode), until -n tokens, an end-of-sequence token of the folder's configs
 * (driver/gen_config.h) or a --stop string (driver/stop.h). Text streams to stdout; the timings
 * of both phases go to stderr.
 *
 * With a tokenizer (--tokenizer, or the tokenizer.json of a model folder) text goes through it;
 * without one tokens are bytes: token id = byte value, the convention of the demo models in
 * examples/ (vocab_size 256). --prompt-ids and --ids drive a model with ids. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "driver/cache.h"
#include "driver/driver.h"
#include "driver/gen_config.h"
#include "driver/prompt_cache.h"
#include "driver/sampler.h"
#include "driver/stop.h"
#include "runtime/pool.h" /* MXRT_MAX_THREADS: the one thread range */
#include "tokenizer/mxc_tokenizer.h"

#define RUN_PREFIX "mxc_run_model" /* C prefix of models that `mxc run` compiles itself */

static const char run_usage[] =
    "usage: mxc run SPEC|DIR|LIB.so [options]\n"
    "\n"
    "Generate text with a model: a spec is compiled first (as by `mxc build`), a shared object\n"
    "from `mxc build` is loaded as it is; a model folder DIR is compiled from DIR/config.json\n"
    "and uses DIR/tokenizer.json when there is one. Without a tokenizer, tokens are bytes\n"
    "(token id = byte value).\n"
    "\n"
    "options:\n"
    "  --weights FILE      safetensors weights (default: the spec's name with .safetensors,\n"
    "                      for a folder DIR its model.safetensors or sharded index)\n"
    "  --prompt TEXT       text to start from (default: a newline)\n"
    "  --prompt-ids LIST   token ids to start from instead, e.g. \"1 2 3\"\n"
    "  --prompt-cache FILE keep the state after the prompt in FILE; a later run whose prompt\n"
    "                      starts with that prompt loads it and reads only the rest\n"
    "  -n N                tokens to generate (default 200)\n"
    "  --temperature T     sampling temperature (default 0.8; 0 picks the likeliest token)\n"
    "  --top-k K           sample among the K likeliest tokens (default 40; 0 = all)\n"
    "  --top-p P           then among the fewest likeliest tokens whose probability adds up\n"
    "                      to P (nucleus sampling; default 1 = off)\n"
    "  --repeat-penalty R  divide the positive logits of tokens seen in the last N tokens\n"
    "                      by R, multiply the negative ones (default 1 = off)\n"
    "  --repeat-last-n N   the N of --repeat-penalty, prompt included (default 64)\n"
    "  --stop STRING       end when the generated text contains STRING (not printed);\n"
    "                      may be given several times\n"
    "  --ignore-eos        go on past the end-of-sequence token of the folder's configs\n"
    "                      (generation_config.json, config.json, tokenizer_config.json)\n"
    "  --seed S            seed of the sampler (default: from the clock; printed at the end)\n"
    "  --tokenizer FILE    a tokenizer.json (or a folder holding one): the prompt is encoded with\n"
    "                      it and the generated tokens are printed as text (docs/tokenizer.md)\n"
    "  --ids               print token ids instead of text\n"
    "  --dump-logits FILE  write the logits of every prompt position to FILE: float32,\n"
    "                      little-endian, [prompt tokens][padded vocabulary]\n"
    "  --no-echo           do not print the prompt before the generated text\n"
    "  --threads N         threads per call, 1-256 (default: $MXC_THREADS, else 1)\n"
    "  --prefix NAME       C prefix of LIB.so's API (default: NAME of libNAME.so)\n"
    "  --model NAME        the model to use when SPEC defines several\n"
    "  --runtime FILE      runtime archive for compiling SPEC (as for `mxc build`)\n"
    "  --no-cache          compile SPEC afresh into a temporary folder (default: reuse the\n"
    "                      object a run of the same spec kept; `mxc cache list|clear`)\n"
    "  --weight-type T     compile SPEC for f32, bf16, f16 or q8 weights (as `mxc build`);\n"
    "                      any weights file opens, converted once if stored otherwise\n"
    "  -h, --help          this text\n";

typedef struct RunOptions {
    const char *input;        /* spec or shared object */
    const char *weights;
    const char *prompt;
    const char *prompt_ids;
    const char *prefix;
    const char *model;
    const char *runtime;
    const char *prompt_cache;
    const char *tokenizer;    /* --tokenizer: text in and out through it */
    const char *weight_type;  /* --weight-type, passed to `mxc build` */
    const char *dump_logits;
    const char **stops;       /* --stop, in argv */
    int n_stops;
    long n;
    SamplerOptions sampling;
    uint64_t seed;
    bool seed_given, print_ids, echo, no_cache, ignore_eos;
    long threads;
} RunOptions;

/* The C API of a compiled model, looked up by name in the shared object. */
typedef struct ModelApi {
    void *lib;
    int (*open)(const char *, void **);
    void (*close)(void *);
    int (*state_new)(void *, int, void **);
    void (*state_free)(void *);
    int (*state_set_threads)(void *, int); /* optional: older models lack it */
    int (*forward)(void *, void *, const int32_t *, int, float *);
    int (*step)(void *, void *, const int32_t *, float *);
    const char *(*last_error)(void);
    int32_t (*vocab_size)(void);
    int32_t (*vocab_padded)(void);
    PromptCacheApi cache; /* optional: models before ABI 5 lack it */
} ModelApi;

/* Print "mxc run: <lead>MESSAGE\n" with MESSAGE cut at about 1 KB: arguments are echoed in
 * messages, and a 100 000-character one must not flood the terminal. */
static void report(const char *lead, const char *fmt, va_list ap)
{
    char msg[1024];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n >= (int)sizeof msg) memcpy(msg + sizeof msg - 4, "...", 4);
    fprintf(stderr, "mxc run: %s%s\n", lead, msg);
}

static int run_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report("error: ", fmt, ap);
    va_end(ap);
    return MXC_EXIT_ERROR;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* A shared object is recognised by its ELF magic, so that any file name works. */
static bool is_elf(const char *path)
{
    unsigned char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && magic[0] == 0x7f && magic[1] == 'E' && magic[2] == 'L' && magic[3] == 'F';
}

/* ---------------------------------------------------------------------------------------
 * Compiling a spec: `mxc build SPEC -o DIR/libmxc_run_model.so --prefix mxc_run_model`. */

static int build_spec(const RunOptions *o, const char *dir, char *so, size_t so_len)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return run_error("cannot find the mxc executable: %s", strerror(errno));
    exe[n] = 0;
    snprintf(so, so_len, "%s/lib%s.so", dir, RUN_PREFIX);
    const char *argv[16];
    int k = 0;
    argv[k++] = exe;
    argv[k++] = "build";
    argv[k++] = o->input;
    argv[k++] = "-o";
    argv[k++] = so;
    argv[k++] = "--prefix";
    argv[k++] = RUN_PREFIX;
    if (o->model) {
        argv[k++] = "--model";
        argv[k++] = o->model;
    }
    if (o->runtime) {
        argv[k++] = "--runtime";
        argv[k++] = o->runtime;
    }
    if (o->weight_type) {
        argv[k++] = "--weight-type";
        argv[k++] = o->weight_type;
    }
    argv[k] = NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return run_error("fork: %s", strerror(errno));
    if (pid == 0) {
        execv(exe, (char *const *)argv);
        fprintf(stderr, "mxc run: error: cannot run %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return run_error("waitpid: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "mxc run: error: could not compile %s (see above)\n", o->input);
        return MXC_EXIT_ERROR;
    }
    return MXC_EXIT_OK;
}

static int build_into(void *ctx, const char *dir, char *so, size_t so_len)
{
    return build_spec(ctx, dir, so, so_len);
}

/* The object for the spec: from the cache, or compiled into it. */
static int cached_build(const RunOptions *o, char *so, size_t so_len)
{
    const char *options[8]; /* every build option: part of the cache key */
    int k = 0;
    if (o->model) options[k++] = "--model", options[k++] = o->model;
    if (o->runtime) options[k++] = "--runtime", options[k++] = o->runtime;
    if (o->weight_type) options[k++] = "--weight-type", options[k++] = o->weight_type;
    options[k] = NULL;
    CacheKey key;
    if (!cache_key_make(&key, o->input, options)) return MXC_EXIT_ERROR;
    if (cache_find(&key, so, so_len)) {
        fprintf(stderr, "mxc run: using the compiled %s from the cache\n", o->input);
        return MXC_EXIT_OK;
    }
    double t0 = now_seconds();
    int rc = cache_build(&key, build_into, (void *)o, so, so_len);
    if (rc == MXC_EXIT_OK)
        fprintf(stderr, "mxc run: compiled %s in %.1f s (kept in the cache)\n", o->input,
                now_seconds() - t0);
    return rc;
}

/* Remove what build_spec made (nothing when dir is empty); a loaded object stays mapped. */
static void remove_build(char *dir, const char *so)
{
    if (!*dir) return;
    char header[PATH_MAX + 32];
    snprintf(header, sizeof header, "%s/%s.h", dir, RUN_PREFIX);
    if (*so) unlink(so);
    unlink(header);
    rmdir(dir);
    *dir = 0;
}

/* ---------------------------------------------------------------------------------------
 * Loading the shared object. */

static void *need(ModelApi *api, const char *prefix, const char *fn, bool *ok)
{
    char name[320];
    snprintf(name, sizeof name, "%.256s_%s", prefix, fn);
    void *p = dlsym(api->lib, name);
    if (!p && ok) *ok = false;
    return p;
}

static int load_api(const char *path, const char *prefix, ModelApi *api)
{
    char full[PATH_MAX + 80];
    /* a name without '/' would be searched for in the library path, not here */
    snprintf(full, sizeof full, "%s%s", strchr(path, '/') ? "" : "./", path);
    api->lib = dlopen(full, RTLD_NOW | RTLD_LOCAL);
    if (!api->lib) return run_error("cannot load %s: %s", path, dlerror());
    bool ok = true;
    *(void **)&api->open = need(api, prefix, "open", &ok);
    *(void **)&api->close = need(api, prefix, "close", &ok);
    *(void **)&api->state_new = need(api, prefix, "state_new", &ok);
    *(void **)&api->state_free = need(api, prefix, "state_free", &ok);
    *(void **)&api->forward = need(api, prefix, "forward", &ok);
    *(void **)&api->step = need(api, prefix, "step", &ok);
    *(void **)&api->last_error = need(api, prefix, "last_error", &ok);
    *(void **)&api->vocab_size = need(api, prefix, "vocab_size", &ok);
    *(void **)&api->vocab_padded = need(api, prefix, "vocab_padded", &ok);
    *(void **)&api->state_set_threads = need(api, prefix, "state_set_threads", NULL);
    *(void **)&api->cache.save_size = need(api, prefix, "state_save_size", NULL);
    *(void **)&api->cache.save = need(api, prefix, "state_save", NULL);
    *(void **)&api->cache.load = need(api, prefix, "state_load", NULL);
    api->cache.last_error = api->last_error;
    if (!ok) {
        dlclose(api->lib);
        api->lib = NULL; /* not closed again on the way out */
        return run_error("%s does not export the API of a model with prefix '%s' (use --prefix)",
                         path, prefix);
    }
    return MXC_EXIT_OK;
}

/* The prefix of libNAME.so (any directory, any suffix after ".so"). */
static bool prefix_from_name(const char *path, char *out, size_t len)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strncmp(base, "lib", 3) != 0) return false;
    const char *dot = strstr(base, ".so");
    if (!dot || dot == base + 3) return false;
    snprintf(out, len, "%.*s", (int)(dot - base - 3), base + 3);
    return true;
}

static int write_error(void)
{
    int e = errno ? errno : EIO;
    fprintf(stderr, "\nmxc run: error: cannot write the generated text to stdout: %s\n",
            strerror(e));
    return MXC_EXIT_ERROR;
}

/* The CPUs this process may run on (its affinity mask), as the runtime counts them. */
static int cpus_available(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) >= 1)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

/* A thread count as the runtime takes it (pool_parse_threads: 1..MXRT_MAX_THREADS). */
static bool parse_threads(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!(*s >= '0' && *s <= '9') || *end || errno || v < 1 || v > MXRT_MAX_THREADS) return false;
    *out = v;
    return true;
}

/* ---------------------------------------------------------------------------------------
 * Options. */

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!(*s >= '0' && *s <= '9') || *end || errno || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* A number in [lo, hi] (NaN refused). */
static bool parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report("", fmt, ap);
    fprintf(stderr, "(run `mxc run --help` for usage)\n");
    va_end(ap);
    return MXC_EXIT_USAGE;
}

static int parse_options(int argc, char **argv, RunOptions *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(run_usage, stdout);
            return -1;
        } else if (strcmp(a, "--ids") == 0) {
            o->print_ids = true;
        } else if (strcmp(a, "--no-echo") == 0) {
            o->echo = false;
        } else if (strcmp(a, "--no-cache") == 0) {
            o->no_cache = true;
        } else if (strcmp(a, "--ignore-eos") == 0) {
            o->ignore_eos = true;
        } else if (a[0] == '-' && a[1]) {
            if (!v) return usage("option '%s' needs an argument", a);
            i++;
            if (strcmp(a, "--weights") == 0 || strcmp(a, "-w") == 0) o->weights = v;
            else if (strcmp(a, "--prompt") == 0 || strcmp(a, "-p") == 0) o->prompt = v;
            else if (strcmp(a, "--prompt-ids") == 0) o->prompt_ids = v;
            else if (strcmp(a, "--tokenizer") == 0) o->tokenizer = v;
            else if (strcmp(a, "--prefix") == 0) o->prefix = v;
            else if (strcmp(a, "--model") == 0) o->model = v;
            else if (strcmp(a, "--runtime") == 0) o->runtime = v;
            else if (strcmp(a, "--prompt-cache") == 0) o->prompt_cache = v;
            else if (strcmp(a, "--weight-type") == 0) o->weight_type = v; /* checked by build */
            else if (strcmp(a, "--dump-logits") == 0) o->dump_logits = v;
            else if (strcmp(a, "--stop") == 0) {
                if (!*v) return usage("--stop takes a non-empty string");
                o->stops[o->n_stops++] = v;
            } else if (strcmp(a, "--top-p") == 0) {
                if (!parse_double(v, 0, 1, &o->sampling.top_p))
                    return usage("--top-p takes a number from 0 to 1, not '%s'", v);
            } else if (strcmp(a, "--repeat-penalty") == 0) {
                if (!parse_double(v, 1e-3, 1e3, &o->sampling.repeat_penalty))
                    return usage("--repeat-penalty takes a number from 0.001 to 1000, not '%s'", v);
            } else if (strcmp(a, "--repeat-last-n") == 0) {
                if (!parse_long(v, 0, 1000000, &o->sampling.repeat_last_n))
                    return usage("--repeat-last-n takes a count of tokens (0 to 1000000), not '%s'", v);
            }
            else if (strcmp(a, "-n") == 0) {
                if (!parse_long(v, 0, 100000000, &o->n))
                    return usage("-n takes a count of tokens, not '%s'", v);
            } else if (strcmp(a, "--top-k") == 0) {
                if (!parse_long(v, 0, INT32_MAX, &o->sampling.top_k))
                    return usage("--top-k takes a number >= 0, not '%s'", v);
            } else if (strcmp(a, "--threads") == 0) {
                if (!parse_threads(v, &o->threads))
                    return usage("--threads: " MXRT_THREADS_RANGE_MSG ", got '%s'", v);
            } else if (strcmp(a, "--seed") == 0) {
                char *end;
                errno = 0;
                o->seed = strtoull(v, &end, 10);
                if (!*v || *end || errno || v[0] == '-')
                    return usage("--seed takes a number >= 0, not '%s'", v);
                o->seed_given = true;
            } else if (strcmp(a, "--temperature") == 0 || strcmp(a, "-t") == 0) {
                if (!parse_double(v, 0, 1e6, &o->sampling.temperature))
                    return usage("--temperature takes a number >= 0, not '%s'", v);
            } else {
                return usage("unknown option '%s'", a);
            }
        } else if (!o->input) {
            o->input = a;
        } else {
            return usage("unexpected argument '%s'", a);
        }
    }
    if (!o->input) return usage("needs a spec or a shared object");
    if (o->prompt && o->prompt_ids) return usage("give --prompt or --prompt-ids, not both");
    if (o->n_stops && o->print_ids)
        return usage("--stop looks for text in the generated text; it does not apply with --ids");
    return 0;
}

/* The prompt through the tokenizer: with the BOS/EOS of its post-processor, or those of
 * tokenizer_config.json's add_bos_token/add_eos_token when it has them (gen_config.h). */
static int32_t *prompt_tokens_tok(const RunOptions *o, MxcTokenizer *tok, const GenConfig *g,
                                  int32_t vocab, int *len)
{
    const char *text = o->prompt && *o->prompt ? o->prompt : "\n";
    int32_t *ids;
    size_t n;
    MxcTokError err;
    if (mxc_tokenizer_encode(tok, text, strlen(text), !g->template_from_config, &ids, &n, &err) != 0) {
        fprintf(stderr, "mxc run: error: --prompt: %s\n", err.msg);
        return NULL;
    }
    if (g->template_from_config) {
        int32_t *all = malloc(sizeof *all * (n + 2));
        if (!all) {
            free(ids);
            fprintf(stderr, "mxc run: error: out of memory\n");
            return NULL;
        }
        size_t k = 0;
        if (g->prompt_bos >= 0) all[k++] = g->prompt_bos;
        if (n) memcpy(all + k, ids, sizeof *ids * n);
        k += n;
        if (g->prompt_eos >= 0) all[k++] = g->prompt_eos;
        free(ids);
        ids = all;
        n = k;
    }
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= vocab) {
            fprintf(stderr, "mxc run: error: the tokenizer gives the prompt token %d, past this model's "
                    "vocab_size %d\n", ids[i], vocab);
            free(ids);
            return NULL;
        }
    if (!n) {
        fprintf(stderr, "mxc run: error: the prompt encodes to no tokens\n");
        free(ids);
        return NULL;
    }
    *len = (int)n;
    return ids;
}

/* Where tokens are printed: as ids, through a tokenizer's stream, or as bytes; the generated
 * text also through the --stop filter. */
typedef struct Output {
    bool ids, first;      /* first: no id printed yet */
    MxcTokStream *stream; /* NULL: a token is its byte (or <id> past 255) */
    StopFilter *stop;     /* NULL: no --stop, or the prompt */
    bool stopped;         /* a stop string appeared */
} Output;

/* 0, -1 for a tokenizer error (reported here), EMIT_WRITE_FAILED if stdout failed. */
enum { EMIT_WRITE_FAILED = -2 };

static int write_text(Output *out, const char *text, size_t len)
{
    if (out->stop && !out->stopped) out->stopped = stop_put(out->stop, text, len, &text, &len);
    else if (out->stopped) len = 0;
    fwrite(text, 1, len, stdout);
    return fflush(stdout) == 0 && !ferror(stdout) ? 0 : EMIT_WRITE_FAILED;
}

static int emit_token(Output *out, int32_t t)
{
    if (out->ids) {
        printf(out->first ? "%d" : " %d", t);
        out->first = false;
        return fflush(stdout) == 0 && !ferror(stdout) ? 0 : EMIT_WRITE_FAILED;
    }
    char byte[16];
    const char *text = byte;
    size_t len;
    if (out->stream) {
        MxcTokError err;
        if (mxc_tokenizer_stream_put(out->stream, t, &text, &len, &err) != 0) {
            fprintf(stderr, "\nmxc run: error: %s\n", err.msg);
            return -1;
        }
    } else if (t < 256) {
        byte[0] = (char)t;
        len = 1;
    } else {
        len = (size_t)snprintf(byte, sizeof byte, "<%d>", (int)t);
    }
    return write_text(out, text, len);
}

/* The text held back (an incomplete character, a tail of a possible stop string). */
static int emit_rest(Output *out)
{
    const char *text;
    size_t len;
    int rc = 0;
    if (out->stream && mxc_tokenizer_stream_flush(out->stream, &text, &len) == 0)
        rc = write_text(out, text, len);
    if (rc == 0 && out->stop && !out->stopped) {
        stop_flush(out->stop, &text, &len);
        fwrite(text, 1, len, stdout);
        rc = fflush(stdout) == 0 && !ferror(stdout) ? 0 : EMIT_WRITE_FAILED;
    }
    return rc;
}

static bool is_eos(const GenConfig *g, int32_t t)
{
    for (int i = 0; i < g->n_eos; i++)
        if (g->eos[i] == t) return true;
    return false;
}

/* --dump-logits: rows [0, n) of `padded` floats, as they are in memory (little-endian here). */
static bool dump_logits(const char *path, const float *logits, int n, int32_t padded)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "mxc run: error: --dump-logits %s: %s\n", path, strerror(errno));
        return false;
    }
    size_t count = (size_t)n * (size_t)padded;
    bool ok = fwrite(logits, sizeof *logits, count, f) == count;
    ok = fclose(f) == 0 && ok;
    if (!ok) fprintf(stderr, "mxc run: error: --dump-logits %s: %s\n", path, strerror(errno ? errno : EIO));
    return ok;
}

/* The prompt as tokens. */
static int32_t *prompt_tokens(const RunOptions *o, int32_t vocab, int *len)
{
    if (o->prompt_ids) {
        size_t cap = strlen(o->prompt_ids) / 2 + 1;
        int32_t *t = malloc(sizeof *t * cap);
        int n = 0;
        const char *p = o->prompt_ids;
        while (t) {
            while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
            if (!*p) break;
            char *end;
            errno = 0;
            long v = strtol(p, &end, 10);
            if (end == p || errno || v < 0 || v >= vocab) {
                fprintf(stderr, "mxc run: error: --prompt-ids: '%.20s' is not a token id in [0, %d)\n",
                        p, vocab);
                free(t);
                return NULL;
            }
            t[n++] = (int32_t)v;
            p = end;
        }
        if (t && n == 0) {
            fprintf(stderr, "mxc run: error: --prompt-ids is empty\n");
            free(t);
            return NULL;
        }
        *len = n;
        return t;
    }
    const char *text = o->prompt && *o->prompt ? o->prompt : "\n";
    size_t n = strlen(text);
    int32_t *t = malloc(sizeof *t * n);
    for (size_t i = 0; t && i < n; i++) {
        t[i] = (unsigned char)text[i];
        if (t[i] >= vocab) {
            fprintf(stderr, "mxc run: error: the prompt's byte 0x%02x at offset %zu is not a token of "
                    "this model (vocab_size %d); use --prompt-ids\n", (unsigned)t[i], i, vocab);
            free(t);
            return NULL;
        }
    }
    *len = (int)n;
    return t;
}

static double rate(double count, double seconds) { return seconds > 0 ? count / seconds : 0; }

static int run_model(const RunOptions *op);

int cmd_run(int argc, char **argv)
{
    RunOptions o = {.n = 200, .echo = true,
                    .sampling = {.temperature = 0.8, .top_k = 40, .top_p = 1, .repeat_penalty = 1,
                                 .repeat_last_n = 64}};
    o.stops = calloc((size_t)argc, sizeof *o.stops);
    if (!o.stops) return run_error("out of memory");
    int rc = parse_options(argc, argv, &o);
    if (rc) {
        free(o.stops);
        return rc < 0 ? MXC_EXIT_OK : rc;
    }
    rc = run_model(&o);
    free(o.stops);
    return rc;
}

/* Compile or load the model, open it, read the prompt through it, generate. */
static int run_model(const RunOptions *op)
{
    RunOptions o = *op; /* a copy: a folder's tokenizer and weights are filled in */
    int rc;
    if (!o.seed_given) o.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);

    /* $MXC_THREADS is read by the model's runtime; the same range, checked here first. */
    const char *env_threads = getenv("MXC_THREADS");
    long env_count = 0;
    if (env_threads && *env_threads && !parse_threads(env_threads, &env_count)) {
        fprintf(stderr, "mxc run: error: $MXC_THREADS: " MXRT_THREADS_RANGE_MSG ", got '%.40s%s'\n",
                env_threads, strlen(env_threads) > 40 ? "..." : "");
        return MXC_EXIT_ERROR;
    }
    struct stat st;
    if (stat(o.input, &st) != 0) return run_error("cannot open %s: %s", o.input, strerror(errno));
    bool shared = is_elf(o.input);
    char so[PATH_MAX] = "", dir[PATH_MAX] = "", prefix[256], weights_buf[PATH_MAX];
    char cached_so[PATH_MAX + 64];
    const char *so_path = o.input;
    int status = MXC_EXIT_ERROR;
    ModelApi api = {0};
    void *model = NULL, *state = NULL;
    int32_t *tokens = NULL;
    float *logits = NULL;
    Sampler *sampler = NULL;
    StopFilter *stop = NULL;
    GenConfig gen = {.prompt_bos = -1, .prompt_eos = -1};
    bool dir_input = S_ISDIR(st.st_mode);
    float *cached = NULL; /* --prompt-cache: the logits of the prompt's last position */
    MxcTokenizer *tkz = NULL;
    MxcTokStream *stream = NULL, *echo_stream = NULL;

    if (!o.weights && S_ISDIR(st.st_mode)) { /* a model folder: P_open reads its weights */
        char index[PATH_MAX];
        snprintf(weights_buf, sizeof weights_buf, "%s/model.safetensors", o.input);
        snprintf(index, sizeof index, "%s/model.safetensors.index.json", o.input);
        if (access(weights_buf, R_OK) == 0 || access(index, R_OK) == 0) o.weights = o.input;
    } else if (!o.weights && !shared) { /* beside the spec: NAME.mx -> NAME.safetensors */
        snprintf(weights_buf, sizeof weights_buf, "%.*s.safetensors",
                 (int)(ends_with(o.input, ".mx") ? strlen(o.input) - 3 : strlen(o.input)), o.input);
        if (access(weights_buf, R_OK) == 0) o.weights = weights_buf;
    }
    if (!o.weights && S_ISDIR(st.st_mode))
        return run_error("no weights: %s has no model.safetensors nor "
                         "model.safetensors.index.json; give --weights FILE", o.input);
    if (!o.weights) return run_error("no weights: give --weights FILE");
    if (shared && o.weight_type)
        return run_error("--weight-type %s applies to a spec; %s was built for its own type",
                         o.weight_type, o.input);

    if (shared) {
        if (o.prefix) snprintf(prefix, sizeof prefix, "%s", o.prefix);
        else if (!prefix_from_name(o.input, prefix, sizeof prefix))
            return run_error("cannot tell the C prefix of %s from its name (not libNAME.so): "
                             "give --prefix", o.input);
    } else if (!o.no_cache) {
        if (cached_build(&o, cached_so, sizeof cached_so) != MXC_EXIT_OK) goto out;
        so_path = cached_so; /* the cache keeps it */
        snprintf(prefix, sizeof prefix, "%s", RUN_PREFIX);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/mxc-run-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir))
            return run_error("cannot create a temporary directory %s: %s", dir, strerror(errno));
        double t0 = now_seconds();
        if (build_spec(&o, dir, so, sizeof so) != MXC_EXIT_OK) goto out;
        fprintf(stderr, "mxc run: compiled %s in %.1f s\n", o.input, now_seconds() - t0);
        so_path = so;
        snprintf(prefix, sizeof prefix, "%s", RUN_PREFIX);
    }
    rc = load_api(so_path, prefix, &api);
    remove_build(dir, so); /* loaded (or failed): the files are no longer needed */
    if (rc != MXC_EXIT_OK) goto out;

    if (api.open(o.weights, &model) != 0) {
        fprintf(stderr, "mxc run: error: %s\n", api.last_error());
        goto out;
    }
    if (api.state_new(model, 1, &state) != 0) {
        fprintf(stderr, "mxc run: error: %s\n", api.last_error());
        goto out;
    }
    /* Small models: one step is too short to share among threads (the pool's barriers cost
     * more than they save), so `mxc run` uses one thread unless told otherwise. */
    if (o.threads == 0 && !(env_threads && *env_threads) && api.state_set_threads)
        api.state_set_threads(state, 1);
    if (o.threads > 0) {
        if (!api.state_set_threads)
            fprintf(stderr, "mxc run: warning: this model has no thread setting; --threads ignored\n");
        else if (api.state_set_threads(state, (int)o.threads) != 0) {
            fprintf(stderr, "mxc run: error: %s\n", api.last_error());
            goto out;
        }
    }
    long threads = o.threads > 0 ? o.threads : env_threads && *env_threads ? env_count : 1;
    if (threads > cpus_available())
        fprintf(stderr, "mxc run: warning: %ld threads but this process may run on %d CPUs: the "
                "threads of a call wait for each other, so this is slower than %d threads\n",
                threads, cpus_available(), cpus_available());
    int32_t vocab = api.vocab_size(), padded = api.vocab_padded();
    int len;
    char folder_tok[PATH_MAX + 32];
    snprintf(folder_tok, sizeof folder_tok, "%s/tokenizer.json", o.input);
    if (!o.tokenizer && dir_input && access(folder_tok, R_OK) == 0) o.tokenizer = o.input;
    struct stat tst;
    bool tok_dir = o.tokenizer && stat(o.tokenizer, &tst) == 0 && S_ISDIR(tst.st_mode);
    if (o.tokenizer) {
        MxcTokError err;
        if (mxc_tokenizer_open(o.tokenizer, &tkz, &err) != 0) {
            fprintf(stderr, "mxc run: error: %s\n", err.msg);
            goto out;
        }
        /* ids past the tokenizer's (a model's padded vocabulary) must never be sampled */
        if (mxc_tokenizer_vocab_size(tkz) < vocab) vocab = mxc_tokenizer_vocab_size(tkz);
    }
    if (gen_config_read(&gen, dir_input ? o.input : NULL, tok_dir ? o.tokenizer : NULL, tkz) != 0)
        goto out;
    if (o.ignore_eos) gen.n_eos = 0;
    if (tkz) {
        unsigned flags = MXC_TOK_SKIP_SPECIAL | (gen.clean_up ? MXC_TOK_CLEAN_UP_SPACES : 0);
        stream = mxc_tokenizer_stream_new_flags(tkz, flags);
        echo_stream = mxc_tokenizer_stream_new_flags(tkz, flags);
        if (!stream || !echo_stream) {
            fprintf(stderr, "mxc run: error: out of memory\n");
            goto out;
        }
    }
    tokens = tkz && !o.prompt_ids ? prompt_tokens_tok(&o, tkz, &gen, vocab, &len)
                                  : prompt_tokens(&o, vocab, &len);
    if (!tokens) goto out;
    logits = malloc(sizeof *logits * (size_t)len * (size_t)padded);
    sampler = sampler_new(&o.sampling, vocab, o.seed);
    stop = o.n_stops ? stop_new(o.stops, o.n_stops) : NULL;
    if (!logits || !sampler || (o.n_stops && !stop)) {
        fprintf(stderr, "mxc run: error: out of memory\n");
        goto out;
    }
    for (int i = 0; i < len; i++) sampler_accept(sampler, tokens[i]);
    Output echo = {.ids = o.print_ids, .first = true, .stream = echo_stream};
    if (o.echo) {
        int e = 0;
        for (int i = 0; i < len && !e; i++) e = emit_token(&echo, tokens[i]);
        if (!e) e = emit_rest(&echo);
        if (e) {
            if (e == EMIT_WRITE_FAILED) status = write_error();
            goto out;
        }
    }
    Output gen_out = {.ids = o.print_ids, .first = echo.first, .stream = stream, .stop = stop};

    double t0 = now_seconds();
    int skip = 0; /* prompt tokens the cache covers */
    if (o.prompt_cache) {
        if (!api.cache.save_size || !api.cache.save || !api.cache.load) {
            fprintf(stderr, "\nmxc run: error: --prompt-cache: this model has no state API "
                    "(rebuild it with this mxc)\n");
            goto out;
        }
        cached = malloc(sizeof *cached * (size_t)padded);
        if (!cached) {
            fprintf(stderr, "mxc run: error: out of memory\n");
            goto out;
        }
        skip = prompt_cache_load(o.prompt_cache, &api.cache, state, tokens, len, padded, cached);
    }
    if (skip < len && api.forward(model, state, tokens + skip, len - skip, logits) != 0) {
        fprintf(stderr, "\nmxc run: error: %s\n", api.last_error());
        goto out;
    }
    double t_prefill = now_seconds() - t0;
    if (o.dump_logits) {
        if (skip) {
            fprintf(stderr, "mxc run: error: --dump-logits: the prompt cache covered the prompt; "
                    "give no --prompt-cache\n");
            goto out;
        }
        if (!dump_logits(o.dump_logits, logits, len, padded)) goto out;
    }
    const float *row = skip < len ? logits + (size_t)(len - skip - 1) * (size_t)padded : cached;
    if (o.prompt_cache) {
        fprintf(stderr, "mxc run: prompt cache %s: skipped %d of %d prompt tokens\n",
                o.prompt_cache, skip, len);
        if (skip < len) {
            memcpy(cached, row, sizeof *cached * (size_t)padded);
            row = cached;
            prompt_cache_save(o.prompt_cache, &api.cache, state, tokens, len, padded, cached);
        }
    }
    double t_decode = 0;
    long generated = 0, steps = 0;
    const char *ended = NULL; /* why generation ended before -n tokens */
    for (long i = 0; i < o.n; i++) {
        int32_t tok = sampler_pick(sampler, row);
        if (tok < 0) {
            fprintf(stderr, "\nmxc run: error: the model produced NaN logits\n");
            goto out;
        }
        if (is_eos(&gen, tok)) {
            ended = "the end-of-sequence token";
            break;
        }
        generated++;
        int e = emit_token(&gen_out, tok);
        if (e) {
            if (e == EMIT_WRITE_FAILED) status = write_error();
            goto out;
        }
        if (gen_out.stopped) {
            ended = "a --stop string";
            break;
        }
        sampler_accept(sampler, tok);
        double t1 = now_seconds();
        if (api.step(model, state, &tok, logits) != 0) {
            fprintf(stderr, "\nmxc run: error: %s\n", api.last_error());
            goto out;
        }
        t_decode += now_seconds() - t1;
        steps++;
        row = logits;
    }
    int e = emit_rest(&gen_out);
    if (e) {
        if (e == EMIT_WRITE_FAILED) status = write_error();
        goto out;
    }
    putchar('\n');
    if (fflush(stdout) != 0 || ferror(stdout)) {
        status = write_error();
        goto out;
    }
    if (ended) fprintf(stderr, "mxc run: stopped after %ld tokens at %s\n", generated, ended);
    fprintf(stderr, "mxc run: prefill %d tokens in %.2f ms (%.0f tokens/s); decode %ld tokens in "
            "%.2f ms (%.0f tokens/s); seed %llu\n", len - skip, 1e3 * t_prefill,
            rate(len - skip, t_prefill), generated,
            1e3 * t_decode, rate((double)steps, t_decode), (unsigned long long)o.seed);
    status = MXC_EXIT_OK;
out:
    free(cached);
    sampler_free(sampler);
    stop_free(stop);
    mxc_tokenizer_stream_free(echo_stream);
    mxc_tokenizer_stream_free(stream);
    mxc_tokenizer_close(tkz);
    free(logits);
    free(tokens);
    if (state) api.state_free(state);
    if (model) api.close(model);
    if (api.lib) dlclose(api.lib);
    remove_build(dir, so);
    return status;
}
