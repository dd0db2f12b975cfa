/* backend.h - from a planned IR graph to a shared object and its C header.
 *
 * backend_emit_object lowers the graph to an LLVM module (codegen.c, kernels.c,
 * emit_desc.c), verifies it, optimises it with the new pass manager and writes an object
 * file for the chosen CPU (target.c). backend_link turns that object and the runtime
 * archive into a position-independent shared object exporting only the prefixed API
 * (link.c); backend_write_header writes the matching C header (header.c). */
#ifndef MXC_BACKEND_H
#define MXC_BACKEND_H

#include <stdbool.h>

#include "ir/ir.h"

typedef struct BackendOptions {
    const char *prefix;      /* C prefix of every exported symbol */
    const char *target_cpu;  /* NULL: the host CPU with its features */
    int opt_level;           /* 0..3; 3 runs "default<O3>" */
    const char *emit_llvm;   /* if set, write the optimised LLVM IR text here */
    const char *embed_weights; /* absolute path of a safetensors file to build in, or NULL */
    int64_t embed_size;        /* its size in bytes */
} BackendOptions;

/* Each returns true on success; on failure it prints `mxc: error: ...` to stderr. */
bool backend_emit_object(const Graph *g, const BackendOptions *o, const char *obj_path);
bool backend_link(const char *obj_path, const char *runtime_archive, const char *prefix,
                  const char *so_path, const char *extra_flags);
bool backend_write_header(const Graph *g, const char *prefix, const char *header_path);

/* Is `cpu` (--target-cpu; NULL or "native": the host) one LLVM can generate x86-64 code for?
 * If not, prints `mxc: error: unknown --target-cpu ...` with the nearest known names (or why
 * it cannot be used) and returns false. */
bool backend_target_cpu_ok(const char *cpu);

/* A C identifier usable as a prefix (letters, digits, underscores; not starting with a
 * digit). */
bool backend_prefix_ok(const char *prefix);

#endif
