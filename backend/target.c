/* target.c - the target machine, the optimisation pipeline, and object emission. */
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "backend/codegen.h"

/* The CPU and features code is generated for: the host's unless --target-cpu names one. */
static void target_cpu(const Cg *cg, char **cpu, char **features)
{
    if (cg->opts && cg->opts->target_cpu) {
        *cpu = strdup(cg->opts->target_cpu);
        *features = strdup("");
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

int cg_target_vector_width(const BackendOptions *o)
{
    Cg probe = {.opts = o};
    char *cpu, *features;
    target_cpu(&probe, &cpu, &features);
    bool named = o && o->target_cpu;
    int width = 4;
    if (strstr(features, "+avx512f"))
        width = 16;
    else if (strstr(features, "+avx") || (named && strstr(cpu, "x86-64-v3")))
        width = 8;
    if (named && (strstr(cpu, "x86-64-v4") || strstr(cpu, "sapphirerapids") ||
                  strstr(cpu, "icelake") || strstr(cpu, "skylake-avx512") || strstr(cpu, "znver4")))
        width = 16;
    else if (named && width == 4 && (strstr(cpu, "haswell") || strstr(cpu, "znver") ||
                                     strstr(cpu, "skylake") || strstr(cpu, "alderlake")))
        width = 8;
    free_cpu(cpu, features, !named);
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
    free_cpu(cpu, features, !(cg->opts && cg->opts->target_cpu));
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
    bool ok = false;
    char *msg = NULL;
    char *triple = LLVMGetDefaultTargetTriple();
    char *cpu, *features;
    target_cpu(cg, &cpu, &features);
    LLVMTargetRef target;
    LLVMTargetMachineRef tm = NULL;
    LLVMTargetDataRef layout = NULL;
    LLVMPassBuilderOptionsRef pbo = NULL;

    if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
        fprintf(stderr, "mxc: error: no LLVM target for %s: %s\n", triple, msg);
        goto out;
    }
    int level = cg->opts ? cg->opts->opt_level : 3;
    tm = LLVMCreateTargetMachine(target, triple, cpu, features,
                                 level >= 3 ? LLVMCodeGenLevelAggressive
                                 : level > 0 ? LLVMCodeGenLevelDefault
                                             : LLVMCodeGenLevelNone,
                                 LLVMRelocPIC, LLVMCodeModelDefault);
    if (!tm) {
        fprintf(stderr, "mxc: error: cannot create a target machine for CPU '%s'\n", cpu);
        goto out;
    }
    layout = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(cg->mod, layout);
    LLVMSetTarget(cg->mod, triple);

    if (cg->opts && cg->opts->emit_llvm_unoptimized && !write_ir(cg, cg->opts->emit_llvm_unoptimized))
        goto out;
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
    free_cpu(cpu, features, !(cg->opts && cg->opts->target_cpu));
    return ok;
}
