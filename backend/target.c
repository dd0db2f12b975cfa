/* target.c - the target machine, the optimisation pipeline, and object emission.
 *
 * The CPU is the host's (with the features LLVM detects) unless --target-cpu names one. A
 * named CPU is checked against the CPUs LLVM knows before anything is compiled, and the
 * vector width of the generated kernels is what LLVM's code generator makes of that CPU: a
 * probe function on 16 floats is compiled for it and its assembly read (zmm registers: 16
 * lanes, ymm: 8, else 4). The LLVM C API can list neither the CPUs nor a named CPU's
 * features, hence the two indirections below; both ask LLVM itself, so a new CPU works as
 * soon as LLVM knows it. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "backend/codegen.h"

/* The CPU named by the options, or NULL for the host ("native" is the host too). */
static const char *named_cpu(const BackendOptions *o)
{
    if (!o || !o->target_cpu || strcmp(o->target_cpu, "native") == 0) return NULL;
    return o->target_cpu;
}

/* The CPU and features code is generated for: the host's unless --target-cpu names one. */
static void target_cpu(const Cg *cg, char **cpu, char **features)
{
    const char *named = named_cpu(cg->opts);
    if (named) {
        *cpu = strdup(named);
        *features = strdup("");
        if (!*cpu || !*features) mxc_die("out of memory");
    } else {
        *cpu = LLVMGetHostCPUName();
        *features = LLVMGetHostCPUFeatures();
    }
}

static void free_cpu(char *cpu, char *features, bool from_llvm)
{
    if (from_llvm) {
        LLVMDisposeMessage(cpu);
        LLVMDisposeMessage(features);
    } else {
        free(cpu);
        free(features);
    }
}

static bool target_init(void)
{
    static bool initialised;
    if (!initialised) {
        /* The asm parser assembles module inline asm (the embedded weights). */
        if (LLVMInitializeNativeTarget() || LLVMInitializeNativeAsmPrinter() ||
            LLVMInitializeNativeAsmParser()) {
            fprintf(stderr, "mxc: error: LLVM has no native target for this machine\n");
            return false;
        }
        initialised = true;
    }
    return true;
}

static LLVMTargetMachineRef create_machine(const char *cpu, const char *features, int level)
{
    char *triple = LLVMGetDefaultTargetTriple(), *msg = NULL;
    LLVMTargetRef target;
    LLVMTargetMachineRef tm = NULL;
    if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
        fprintf(stderr, "mxc: error: no LLVM target for %s: %s\n", triple, msg);
        LLVMDisposeMessage(msg);
    } else {
        tm = LLVMCreateTargetMachine(target, triple, cpu, features,
                                     level >= 3 ? LLVMCodeGenLevelAggressive
                                     : level > 0 ? LLVMCodeGenLevelDefault
                                                 : LLVMCodeGenLevelNone,
                                     LLVMRelocPIC, LLVMCodeModelDefault);
    }
    LLVMDisposeMessage(triple);
    return tm;
}

/* Is `name` one of the comma-separated "+feature" entries LLVM reports? */
static bool has_feature(const char *features, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = features; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n + 1 && p[0] == '+' && strncmp(p + 1, name, n) == 0) return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

/* --- the CPUs LLVM knows ----------------------------------------------------------------- */

static char **cpu_names;
static int n_cpu_names = -1; /* -1: not read yet; 0: could not be read */

/* The subtarget prints its CPU table to stderr for the CPU "help" (once per process), which
 * is how `llc -mcpu=help` lists them; stderr goes to a temporary file meanwhile. Lines:
 * "  NAME - Select the NAME processor." between "Available CPUs" and "Available features". */
static void read_cpu_names(void)
{
    if (n_cpu_names >= 0) return;
    n_cpu_names = 0;
    FILE *tmp = tmpfile();
    if (!tmp) return;
    fflush(stderr);
    int saved = dup(2);
    if (saved < 0 || dup2(fileno(tmp), 2) < 0) {
        if (saved >= 0) close(saved);
        fclose(tmp);
        return;
    }
    LLVMTargetMachineRef tm = create_machine("help", "", 0);
    if (tm) LLVMDisposeTargetMachine(tm);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    char line[512];
    bool in_cpus = false;
    int cap = 0;
    while (fgets(line, sizeof line, tmp)) {
        if (strncmp(line, "Available CPUs", 14) == 0) { in_cpus = true; continue; }
        if (strncmp(line, "Available features", 18) == 0) break;
        char name[128];
        if (!in_cpus || sscanf(line, " %127s - Select", name) != 1 || !strstr(line, " - ")) continue;
        if (n_cpu_names == cap) {
            cap = cap ? 2 * cap : 128;
            cpu_names = realloc(cpu_names, sizeof *cpu_names * (size_t)cap);
            if (!cpu_names) mxc_die("out of memory");
        }
        if (!(cpu_names[n_cpu_names++] = strdup(name))) mxc_die("out of memory");
    }
    fclose(tmp);
}

/* Edit distance (insertions, deletions, substitutions), for the "did you mean" hint. */
static int edit_distance(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (na > 64 || nb > 64) return 1000;
    int row[65];
    for (size_t j = 0; j <= nb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int up = row[j];
            int sub = diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            int best = up + 1 < row[j - 1] + 1 ? up + 1 : row[j - 1] + 1;
            row[j] = sub < best ? sub : best;
            diag = up;
        }
    }
    return row[nb];
}

/* "unknown CPU" with the nearest names LLVM knows (up to three at the smallest distance). */
static void report_unknown_cpu(const char *cpu)
{
    int best = 1000;
    for (int i = 0; i < n_cpu_names; i++) {
        int d = edit_distance(cpu, cpu_names[i]);
        if (d < best) best = d;
    }
    size_t len = strlen(cpu);
    fprintf(stderr, "mxc: error: unknown --target-cpu '%.80s%s'", cpu, len > 80 ? "..." : "");
    if (best <= 2 || (size_t)best * 3 <= len) {
        int shown = 0;
        for (int i = 0; i < n_cpu_names && shown < 3; i++)
            if (edit_distance(cpu, cpu_names[i]) == best)
                fprintf(stderr, "%s'%s'", shown++ ? " or " : "; did you mean ", cpu_names[i]);
        fprintf(stderr, "?");
    }
    fprintf(stderr, " (LLVM knows %d CPUs for this target, listed by `llc -mcpu=help`; "
            "e.g. x86-64, x86-64-v3, x86-64-v4, or 'native' for this machine)\n", n_cpu_names);
}

/* --- the vector width of a named CPU ------------------------------------------------------ */

/* Lanes of the widest float vector LLVM generates for `cpu` (16, 8 or 4), or 0 when it
 * cannot generate 64-bit code for it (an i386-class CPU: LLVM aborts the process with
 * "64-bit code requested on a subtarget that doesn't support it"). The probe therefore runs
 * in a child process. */
static int probe_vector_width(const char *cpu)
{
    int fds[2];
    if (pipe(fds) != 0) return 0;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return 0;
    }
    if (pid == 0) {
        close(fds[0]);
        if (!freopen("/dev/null", "w", stderr)) _exit(3);
        unsigned char width = 0;
        LLVMTargetMachineRef tm = create_machine(cpu, "", 2);
        LLVMContextRef ctx = LLVMContextCreate();
        LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("mxc_probe", ctx);
        LLVMTypeRef ptr = LLVMPointerTypeInContext(ctx, 0);
        LLVMTypeRef vec = LLVMVectorType(LLVMFloatTypeInContext(ctx), 16);
        LLVMValueRef fn = LLVMAddFunction(mod, "probe", LLVMFunctionType(LLVMVoidTypeInContext(ctx), &ptr, 1, 0));
        LLVMAddTargetDependentFunctionAttr(fn, "target-cpu", cpu);
        LLVMAddTargetDependentFunctionAttr(fn, "min-legal-vector-width", "512");
        LLVMAddTargetDependentFunctionAttr(fn, "prefer-vector-width", "512");
        LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
        LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(ctx, fn, "entry"));
        LLVMValueRef v = LLVMBuildLoad2(b, vec, LLVMGetParam(fn, 0), "v");
        LLVMBuildStore(b, LLVMBuildFAdd(b, v, v, "w"), LLVMGetParam(fn, 0));
        LLVMBuildRetVoid(b);
        LLVMMemoryBufferRef buf = NULL;
        char *msg = NULL;
        if (tm && !LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMAssemblyFile, &msg, &buf)) {
            size_t n = LLVMGetBufferSize(buf);
            char *text = malloc(n + 1);
            if (text) {
                memcpy(text, LLVMGetBufferStart(buf), n);
                text[n] = 0;
                width = strstr(text, "%zmm") ? 16 : strstr(text, "%ymm") ? 8 : 4;
            }
        }
        if (write(fds[1], &width, 1) != 1) _exit(3);
        _exit(0);
    }
    close(fds[1]);
    unsigned char width = 0;
    ssize_t got = read(fds[0], &width, 1);
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0) {}
    return got == 1 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? width : 0;
}

/* The width of `cpu`, probed once per process. */
static int named_cpu_width(const char *cpu)
{
    static char *probed;
    static int width;
    if (!probed || strcmp(probed, cpu) != 0) {
        free(probed);
        if (!(probed = strdup(cpu))) mxc_die("out of memory");
        width = target_init() ? probe_vector_width(cpu) : 0;
    }
    return width;
}

bool backend_target_cpu_ok(const char *cpu)
{
    BackendOptions o = {.target_cpu = cpu};
    const char *named = named_cpu(&o);
    if (!named) return true;
    if (!target_init()) return false;
    read_cpu_names();
    bool known = n_cpu_names == 0; /* the list could not be read: let the probe decide */
    for (int i = 0; i < n_cpu_names && !known; i++) known = strcmp(cpu_names[i], named) == 0;
    if (!known) {
        report_unknown_cpu(named);
        return false;
    }
    if (named_cpu_width(named) == 0) {
        fprintf(stderr, "mxc: error: --target-cpu '%s' cannot run 64-bit x86 code (LLVM refuses "
                "to generate it); choose an x86-64 CPU such as x86-64 or x86-64-v3\n", named);
        return false;
    }
    return true;
}

int cg_target_vector_width(const BackendOptions *o)
{
    const char *named = named_cpu(o);
    if (named) {
        int width = named_cpu_width(named);
        return width ? width : 4; /* refused by cg_optimize_and_emit */
    }
    char *features = LLVMGetHostCPUFeatures();
    int width = has_feature(features, "avx512f") ? 16 : has_feature(features, "avx") ? 8 : 4;
    LLVMDisposeMessage(features);
    return width;
}

/* Every CPU that cg_target_vector_width gives 8 or 16 lanes by name (x86-64-v3 and later,
 * haswell, znver, skylake, ...) has F16C; the host says so in its features. */
bool cg_target_has_f16c(const BackendOptions *o)
{
    if (o && o->target_cpu) return cg_target_vector_width(o) >= 8;
    char *features = LLVMGetHostCPUFeatures();
    bool has = strstr(features, "+f16c") != NULL;
    LLVMDisposeMessage(features);
    return has;
}

void cg_set_target_attributes(Cg *cg, LLVMValueRef fn)
{
    char *cpu, *features;
    target_cpu(cg, &cpu, &features);
    LLVMAddTargetDependentFunctionAttr(fn, "target-cpu", cpu);
    if (*features) LLVMAddTargetDependentFunctionAttr(fn, "target-features", features);
    /* LLVM tunes some AVX-512 CPUs to prefer 256-bit vectors in loops it vectorises itself;
     * our loops are long and regular, so use the full width we generate for by hand. */
    if (cg->vector_width >= 16) LLVMAddTargetDependentFunctionAttr(fn, "prefer-vector-width", "512");
    free_cpu(cpu, features, !named_cpu(cg->opts));
}

static bool write_ir(Cg *cg, const char *path)
{
    char *msg = NULL;
    if (LLVMPrintModuleToFile(cg->mod, path, &msg)) {
        fprintf(stderr, "mxc: error: cannot write LLVM IR to %s: %s\n", path, msg);
        LLVMDisposeMessage(msg);
        return false;
    }
    return true;
}

bool cg_optimize_and_emit(Cg *cg, const char *obj_path)
{
    if (!target_init() || !backend_target_cpu_ok(cg->opts ? cg->opts->target_cpu : NULL))
        return false;
    bool ok = false;
    char *msg = NULL;
    char *triple = LLVMGetDefaultTargetTriple();
    char *cpu, *features;
    target_cpu(cg, &cpu, &features);
    LLVMTargetMachineRef tm = NULL;
    LLVMTargetDataRef layout = NULL;
    LLVMPassBuilderOptionsRef pbo = NULL;

    int level = cg->opts ? cg->opts->opt_level : 3;
    tm = create_machine(cpu, features, level);
    if (!tm) {
        fprintf(stderr, "mxc: error: cannot create a target machine for CPU '%s'\n", cpu);
        goto out;
    }
    layout = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(cg->mod, layout);
    LLVMSetTarget(cg->mod, triple);

    pbo = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(pbo, level >= 2);
    LLVMPassBuilderOptionsSetSLPVectorization(pbo, level >= 2);
    LLVMPassBuilderOptionsSetLoopUnrolling(pbo, level >= 2);
    char pipeline[32];
    snprintf(pipeline, sizeof pipeline, "default<O%d>", level < 0 ? 0 : level > 3 ? 3 : level);
    LLVMErrorRef err = LLVMRunPasses(cg->mod, pipeline, tm, pbo);
    if (err) {
        char *em = LLVMGetErrorMessage(err);
        fprintf(stderr, "mxc: internal error: LLVM pass pipeline failed: %s\n", em);
        LLVMDisposeErrorMessage(em);
        goto out;
    }
    if (cg->opts && cg->opts->emit_llvm && !write_ir(cg, cg->opts->emit_llvm)) goto out;
    if (LLVMTargetMachineEmitToFile(tm, cg->mod, (char *)obj_path, LLVMObjectFile, &msg)) {
        fprintf(stderr, "mxc: error: cannot write object file %s: %s\n", obj_path, msg);
        goto out;
    }
    ok = true;
out:
    if (msg) LLVMDisposeMessage(msg);
    if (pbo) LLVMDisposePassBuilderOptions(pbo);
    if (layout) LLVMDisposeTargetData(layout);
    if (tm) LLVMDisposeTargetMachine(tm);
    LLVMDisposeMessage(triple);
    free_cpu(cpu, features, !named_cpu(cg->opts));
    return ok;
}
