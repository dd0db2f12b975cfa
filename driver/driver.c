/* driver.c - the `mxc` command: parse the command line, then run the pipeline
 * spec -> check -> lower -> passes -> LLVM -> object -> shared object + header. */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/backend.h"
#include "config.h"
#include "driver/cache.h"
#include "driver/driver.h"
#include "frontend/spec.h"
#include "import/import.h"
#include "ir/lower.h"
#include "passes/passes.h"

enum { DEFAULT_CHUNK = 128, MAX_CHUNK = 4096 };

typedef struct Options {
    const char *command;
    const char *spec_path;
    const char *model;       /* --model: which model of the file */
    const char *out;         /* -o: shared object path */
    const char *header;      /* --header: header path (default: next to -o, PREFIX.h) */
    const char *prefix;      /* --prefix: C prefix (default: model name) */
    const char *runtime;     /* --runtime: libmxcrt.a to link */
    const char *keep_obj;    /* --emit-obj: keep the object file here */
    const char *embed;       /* --embed-weights: safetensors file to build into the object */
    int chunk;
    int weight_type;         /* --weight-type: a WeightType, or -1 for the spec's */
    PassOptions passes;
    BackendOptions backend;
} Options;

static const char usage_text[] =
    "usage: mxc COMMAND [options] SPEC|DIR\n"
    "\n"
    "commands:\n"
    "  build SPEC     compile a model into a shared object and a C header\n"
    "  run SPEC|SO    generate text with a model (see `mxc run --help`)\n"
    "  import CONFIG  write a spec for an upstream config (see `mxc import --help`)\n"
    "  tokenize TOKENIZER FILE  the token ids of a text (see `mxc tokenize --help`)\n"
    "  ir SPEC        print the IR graph (after all passes, or --dump-after PASS)\n"
    "  check SPEC     parse and check a spec; --resolved prints it with all defaults\n"
    "  passes         list the passes in pipeline order\n"
    "  convert SPEC IN.safetensors --weight-type T -o OUT.safetensors\n"
    "                 store a checkpoint's matrices in a build's weight type\n"
    "SPEC may be a model folder DIR: the spec is imported from DIR/config.json.\n"
    "\n"
    "options:\n"
    "  -o FILE              shared object to write (build; default: libMODEL.so)\n"
    "  --header FILE        C header to write (default: PREFIX.h beside the shared object)\n"
    "  --model NAME         the model to use when SPEC defines several\n"
    "  --prefix NAME        C prefix of the exported API (default: the model name)\n"
    "  --target-cpu CPU     generate code for CPU (default: this machine's CPU)\n"
    "  -O LEVEL             LLVM optimisation level 0-3 (default 3)\n"
    "  --chunk N            positions per forward kernel call (default 128)\n"
    "  --weight-type T      store and read the projections and the embedding as f32, bf16,\n"
    "                       f16 or q8 (default: the spec's weight_type, else f32)\n"
    "  --disable-pass NAME  skip a pass (repeatable; see `mxc passes`)\n"
    "  --dump-after NAME    print the IR after pass NAME ('lower' = before any, 'all')\n"
    "  --emit-llvm FILE     write the optimised LLVM IR\n"
    "  --emit-obj FILE      keep the object file\n"
    "  --embed-weights FILE build the weights into the shared object; P_open(NULL, &m)\n"
    "                       then uses them (one file to deploy)\n"
    "  --runtime FILE       runtime archive to link (default: libmxcrt.a beside mxc, then\n"
    "                       the installed one; or $MXC_RUNTIME)\n"
    "  --resolved           (check) print the model with every default made explicit\n"
    "  -h, --help           this text\n"
    "  --version            the version\n";

/* `s` cut to at most 80 bytes with "..." (arguments and names are echoed in messages; a
 * 100 000-character one must not flood the terminal). Returns buf. */
static const char *clip(const char *s, char buf[96])
{
    size_t n = strlen(s);
    if (n <= 80) return s;
    size_t keep = 77;
    while (keep > 0 && ((unsigned char)s[keep] & 0xC0) == 0x80) keep--; /* whole UTF-8 */
    snprintf(buf, 96, "%.*s...", (int)keep, s);
    return buf;
}

static int usage_error(const char *fmt, const char *arg)
{
    char shown[96];
    fprintf(stderr, "mxc: ");
    fprintf(stderr, fmt, clip(arg, shown));
    fprintf(stderr, "\n(run `mxc --help` for usage)\n");
    return MXC_EXIT_USAGE;
}

/* The runtime archive: --runtime, $MXC_RUNTIME, beside the mxc binary, installed copy. */
static const char *find_runtime(const Options *o, char *buf, size_t len)
{
    if (o->runtime) return o->runtime;
    const char *env = getenv("MXC_RUNTIME");
    if (env && *env) return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        snprintf(buf, len, "%s/libmxcrt.a", dirname(exe));
        if (access(buf, R_OK) == 0) return buf;
    }
    snprintf(buf, len, "%s/libmxcrt.a", MXC_PKGLIBDIR);
    return buf;
}

SpecFile *driver_load_spec(const char *path, DiagSink *diag)
{
    if (!import_is_folder(path)) return spec_load_file(path, diag);
    char *text = import_spec(path, NULL);
    SpecFile *file = text ? spec_load_string(path, text, diag) : NULL;
    free(text);
    return file;
}

static const ModelSpec *load_model(const Options *o, SpecFile **file)
{
    DiagSink diag;
    diag_init(&diag, stderr);
    *file = driver_load_spec(o->spec_path, &diag);
    diag_free(&diag);
    if (!*file) return NULL;
    const ModelSpec *m = spec_find_model(*file, o->model);
    if (!m) {
        char shown[96];
        if (o->model)
            fprintf(stderr, "mxc: error: %s defines no model named '%s'\n", o->spec_path,
                    clip(o->model, shown));
        else
            fprintf(stderr, "mxc: error: %s defines %d models; choose one with --model\n",
                    o->spec_path, (*file)->n_models);
    }
    return m;
}

static Graph *compile_graph(const Options *o, const ModelSpec *m)
{
    DiagSink diag;
    diag_init(&diag, stderr);
    Graph *g = ir_lower_model(m, o->chunk, &diag);
    diag_free(&diag);
    if (!g) return NULL;
    if (o->weight_type >= 0) g->weight_dtype = ir_weight_dtype((WeightType)o->weight_type);
    if (!passes_run(g, &o->passes)) {
        ir_graph_free(g);
        return NULL;
    }
    return g;
}

/* `path` made absolute and canonical: realpath() of the file, or of its directory when the
 * file does not exist yet (an output); the path itself when neither resolves. */
static void canonical_path(const char *path, char out[PATH_MAX])
{
    if (realpath(path, out)) return;
    char dir[PATH_MAX], base[PATH_MAX], real_dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    snprintf(base, sizeof base, "%s", path);
    if (realpath(dirname(dir), real_dir) &&
        (size_t)snprintf(out, PATH_MAX, "%s/%s", real_dir, basename(base)) < PATH_MAX)
        return;
    snprintf(out, PATH_MAX, "%s", path);
}

/* Do two paths name one file? The same inode when both exist (hard links, symlinks
 * included), else the same canonical path (outputs not written yet). */
static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    char ca[PATH_MAX], cb[PATH_MAX];
    canonical_path(a, ca);
    canonical_path(b, cb);
    return strcmp(ca, cb) == 0;
}

/* A build must never write over what it reads, nor two of its outputs over each other (as
 * `cc -o x.c x.c` refuses to). */
static bool check_build_paths(const Options *o, const char *header, const char *runtime)
{
    const struct { const char *what, *path; } out[] = {
        {"-o", o->out}, {o->header ? "--header" : "the header", header},
        {"--emit-obj", o->keep_obj}, {"--emit-llvm", o->backend.emit_llvm}};
    const struct { const char *what, *path; } in[] = {
        {"the spec", o->spec_path}, {"the weights to embed", o->embed}, {"the runtime", runtime}};
    char s1[96], s2[96];
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) {
        if (!out[i].path) continue;
        for (size_t k = 0; k < sizeof in / sizeof in[0]; k++)
            if (in[k].path && same_file(out[i].path, in[k].path)) {
                fprintf(stderr, "mxc: error: %s '%s' is %s; refusing to overwrite it\n",
                        out[i].what, clip(out[i].path, s1), in[k].what);
                return false;
            }
        for (size_t k = i + 1; k < sizeof out / sizeof out[0]; k++)
            if (out[k].path && same_file(out[i].path, out[k].path)) {
                fprintf(stderr, "mxc: error: %s '%s' and %s '%s' are the same file; one would "
                        "replace the other\n", out[i].what, clip(out[i].path, s1), out[k].what,
                        clip(out[k].path, s2));
                return false;
            }
    }
    return true;
}

/* --embed-weights: load the shared object just built and open its embedded weights with
 * PREFIX_open(NULL, ...), so that the file is validated and bound by the very code, and
 * from the very bytes, that the shipped library will use; a file P_open would refuse fails
 * the build with P_open's message. */
static bool check_embedded_weights(const char *so, const char *prefix)
{
    char path[PATH_MAX + 2], name[160];
    snprintf(path, sizeof path, "%s%s", strchr(so, '/') ? "" : "./", so);
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "mxc: error: cannot load %s to check its embedded weights: %s\n", so,
                dlerror());
        return false;
    }
    int (*open_fn)(const char *, void **);
    void (*close_fn)(void *);
    const char *(*error_fn)(void);
    snprintf(name, sizeof name, "%s_open", prefix);
    *(void **)&open_fn = dlsym(lib, name);
    snprintf(name, sizeof name, "%s_close", prefix);
    *(void **)&close_fn = dlsym(lib, name);
    snprintf(name, sizeof name, "%s_last_error", prefix);
    *(void **)&error_fn = dlsym(lib, name);
    bool ok = open_fn && close_fn && error_fn;
    void *model = NULL;
    if (!ok) {
        fprintf(stderr, "mxc: internal error: %s lacks %s_open\n", so, prefix);
    } else if (open_fn(NULL, &model) != 0) {
        fprintf(stderr, "mxc: error: the weights to embed do not fit the model: %s\n",
                error_fn());
        ok = false;
    } else {
        close_fn(model);
    }
    dlclose(lib);
    return ok;
}

static int cmd_build(Options *o)
{
    SpecFile *file;
    const ModelSpec *m = load_model(o, &file);
    if (!m) {
        spec_free(file);
        return MXC_EXIT_ERROR;
    }
    int status = MXC_EXIT_ERROR;
    Graph *g = NULL;
    char default_out[PATH_MAX], header[PATH_MAX], obj[PATH_MAX + 16], rt_buf[PATH_MAX];
    const char *prefix = o->prefix ? o->prefix : m->name;
    if (!backend_prefix_ok(prefix)) {
        char shown[96];
        fprintf(stderr, "mxc: error: '%s' is not usable as a C prefix (use --prefix)\n",
                clip(prefix, shown));
        goto out;
    }
    if (!o->out) {
        snprintf(default_out, sizeof default_out, "lib%s.so", prefix);
        o->out = default_out;
    }
    if (o->header) {
        snprintf(header, sizeof header, "%s", o->header);
    } else {
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof tmp, "%s", o->out);
        snprintf(header, sizeof header, "%s/%s.h", dirname(tmp), prefix);
    }
    char embed_path[PATH_MAX];
    if (o->embed) { /* the assembler reads it later: resolve it now, and fail early */
        struct stat st;
        if (!realpath(o->embed, embed_path) || stat(embed_path, &st) != 0 || !S_ISREG(st.st_mode)) {
            char shown[96];
            fprintf(stderr, "mxc: error: cannot read weights to embed '%s': %s\n",
                    clip(o->embed, shown), strerror(errno ? errno : EINVAL));
            goto out;
        }
        o->backend.embed_weights = embed_path;
        o->backend.embed_size = (int64_t)st.st_size;
    }
    const char *runtime = find_runtime(o, rt_buf, sizeof rt_buf);
    if (!check_build_paths(o, header, runtime)) goto out;
    if (!backend_target_cpu_ok(o->backend.target_cpu)) goto out;
    g = compile_graph(o, m);
    if (!g) goto out;
    o->backend.prefix = prefix;
    if (o->keep_obj) {
        snprintf(obj, sizeof obj, "%s", o->keep_obj);
    } else {
        snprintf(obj, sizeof obj, "%s.XXXXXX", o->out);
        int fd = mkstemp(obj);
        if (fd < 0) {
            fprintf(stderr, "mxc: error: cannot create %s: %s\n", obj, strerror(errno));
            goto out;
        }
        close(fd);
    }
    const char *link_flags = getenv("MXC_LINK_FLAGS");
    bool ok = backend_emit_object(g, &o->backend, obj) &&
              backend_link(obj, runtime, prefix, o->out,
                           link_flags ? link_flags : MXC_SAN_FLAGS);
    if (!o->keep_obj) unlink(obj);
    if (ok && o->embed && !check_embedded_weights(o->out, prefix)) {
        unlink(o->out); /* never leave a library whose P_open(NULL) must fail */
        ok = false;
    }
    ok = ok && backend_write_header(g, prefix, header);
    if (ok) status = MXC_EXIT_OK;
out:
    ir_graph_free(g);
    spec_free(file);
    return status;
}

static int cmd_ir(Options *o)
{
    SpecFile *file;
    const ModelSpec *m = load_model(o, &file);
    Graph *g = NULL;
    int status = MXC_EXIT_ERROR;
    bool dump_final = !o->passes.dump_after;
    if (m && (g = compile_graph(o, m))) {
        if (dump_final) ir_print(g, stdout);
        status = MXC_EXIT_OK;
    }
    ir_graph_free(g);
    spec_free(file);
    return status;
}

static int cmd_check(Options *o, bool resolved)
{
    SpecFile *file;
    DiagSink diag;
    diag_init(&diag, stderr);
    file = driver_load_spec(o->spec_path, &diag);
    diag_free(&diag);
    if (!file) return MXC_EXIT_ERROR;
    if (resolved)
        for (int i = 0; i < file->n_models; i++) spec_print(stdout, &file->models[i]);
    spec_free(file);
    return MXC_EXIT_OK;
}

static int cmd_passes(void)
{
    int n;
    const Pass *p = passes_list(&n);
    for (int i = 0; i < n; i++)
        printf("%-14s %s%s\n", p[i].name, p[i].summary, p[i].required ? " (required)" : "");
    return MXC_EXIT_OK;
}

static int mxc_dispatch(int argc, char **argv);

/* Output that cannot be written (a full disk, /dev/full) is an error, not a silent loss:
 * stdout is flushed and closed here and a failure turns a success into exit status 1. */
int mxc_main(int argc, char **argv)
{
    int status = mxc_dispatch(argc, argv);
    if (fflush(stdout) != 0 || ferror(stdout) || fclose(stdout) != 0) {
        if (status == MXC_EXIT_OK)
            fprintf(stderr, "mxc: error: cannot write to stdout: %s\n", strerror(errno ? errno : EIO));
        return status == MXC_EXIT_OK ? MXC_EXIT_ERROR : status;
    }
    return status;
}

static int mxc_dispatch(int argc, char **argv)
{
    enum { OPT_HEADER = 256, OPT_MODEL, OPT_PREFIX, OPT_CPU, OPT_CHUNK, OPT_DISABLE, OPT_DUMP,
           OPT_LLVM, OPT_OBJ, OPT_RUNTIME, OPT_RESOLVED, OPT_VERSION, OPT_EMBED, OPT_WTYPE };
    static const struct option longopts[] = {
        {"header", required_argument, 0, OPT_HEADER},
        {"model", required_argument, 0, OPT_MODEL},
        {"prefix", required_argument, 0, OPT_PREFIX},
        {"target-cpu", required_argument, 0, OPT_CPU},
        {"chunk", required_argument, 0, OPT_CHUNK},
        {"disable-pass", required_argument, 0, OPT_DISABLE},
        {"dump-after", required_argument, 0, OPT_DUMP},
        {"emit-llvm", required_argument, 0, OPT_LLVM},
        {"emit-obj", required_argument, 0, OPT_OBJ},
        {"embed-weights", required_argument, 0, OPT_EMBED},
        {"weight-type", required_argument, 0, OPT_WTYPE},
        {"runtime", required_argument, 0, OPT_RUNTIME},
        {"resolved", no_argument, 0, OPT_RESOLVED},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, OPT_VERSION},
        {0, 0, 0, 0},
    };
    if (argc > 1 && strcmp(argv[1], "run") == 0) return cmd_run(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "import") == 0) return cmd_import(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "cache") == 0) return cmd_cache(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "tokenize") == 0) return cmd_tokenize(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "convert") == 0) return cmd_convert(argc - 1, argv + 1);
    Options o = {.chunk = DEFAULT_CHUNK, .weight_type = -1};
    o.backend.opt_level = 3;
    bool resolved = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+ho:O:", longopts, NULL)) != -1 || optind < argc) {
        if (c == -1) { /* a positional argument: the command, then the spec */
            const char *arg = argv[optind++];
            if (!o.command) o.command = arg;
            else if (!o.spec_path) o.spec_path = arg;
            else return usage_error("unexpected argument '%s'", arg);
            continue;
        }
        switch (c) {
        case 'h': fputs(usage_text, stdout); return MXC_EXIT_OK;
        case OPT_VERSION: printf("mxc %s (LLVM %s)\n", PACKAGE_VERSION, MXC_LLVM_VERSION); return 0;
        case 'o': o.out = optarg; break;
        case 'O':
            if (strlen(optarg) != 1 || optarg[0] < '0' || optarg[0] > '3')
                return usage_error("-O takes 0, 1, 2 or 3, not '%s'", optarg);
            o.backend.opt_level = optarg[0] - '0';
            break;
        case OPT_HEADER: o.header = optarg; break;
        case OPT_MODEL: o.model = optarg; break;
        case OPT_PREFIX: o.prefix = optarg; break;
        case OPT_CPU: o.backend.target_cpu = optarg; break;
        case OPT_CHUNK: {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > MAX_CHUNK)
                return usage_error("--chunk takes a number from 1 to 4096, not '%s'", optarg);
            o.chunk = (int)v;
            break;
        }
        case OPT_DISABLE:
            if (o.passes.n_disabled == PASSES_MAX_DISABLED)
                return usage_error("too many --disable-pass options%s", "");
            o.passes.disabled[o.passes.n_disabled++] = optarg;
            break;
        case OPT_DUMP: o.passes.dump_after = optarg; break;
        case OPT_LLVM: o.backend.emit_llvm = optarg; break;
        case OPT_OBJ: o.keep_obj = optarg; break;
        case OPT_EMBED: o.embed = optarg; break;
        case OPT_WTYPE: {
            WeightType t;
            if (!spec_weight_type_parse(optarg, &t))
                return usage_error("--weight-type takes f32, bf16, f16 or q8, not '%s'", optarg);
            o.weight_type = (int)t;
            break;
        }
        case OPT_RUNTIME: o.runtime = optarg; break;
        case OPT_RESOLVED: resolved = true; break;
        case '?':
        default:
            if (optopt) {
                char s[2] = {(char)optopt, 0};
                return usage_error("option -%s is unknown or lacks its argument", s);
            }
            return usage_error("option '%s' is unknown or lacks its argument", argv[optind - 1]);
        }
    }
    if (!o.command) return usage_error("no command given%s", "");
    if (strcmp(o.command, "passes") == 0) return cmd_passes();
    bool known = strcmp(o.command, "build") == 0 || strcmp(o.command, "ir") == 0 ||
                 strcmp(o.command, "check") == 0;
    if (!known) return usage_error("unknown command '%s'", o.command);
    if (!o.spec_path) return usage_error("'%s' needs a spec file", o.command);
    if (strcmp(o.command, "build") == 0) return cmd_build(&o);
    if (strcmp(o.command, "ir") == 0) return cmd_ir(&o);
    return cmd_check(&o, resolved);
}
