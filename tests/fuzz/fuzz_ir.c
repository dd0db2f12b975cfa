/* fuzz_ir.c - libFuzzer target: spec text through the frontend and into the IR.
 *
 * Every model the frontend accepts must lower to a graph that passes ir_verify and prints;
 * a spec the checker let through may not make the IR builder fail, abort or overflow (the
 * sizes reach their bounds here: 2^20 dims, 2^24 vocabularies, 4096 blocks). The chunk
 * length, which the graph's shapes also depend on, comes from the input's length. The
 * passes and LLVM are not run (they need the whole compiler; tests/test_robust.c compiles
 * the edge specs instead). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/spec.h"
#include "ir/ir.h"
#include "ir/lower.h"

static FILE *devnull;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!devnull && !(devnull = fopen("/dev/null", "w")))
        abort();
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    DiagSink d;
    diag_init(&d, NULL);
    SpecFile *f = spec_load_string("fuzz.mx", text, &d);
    for (int i = 0; f && i < f->n_models; i++) {
        int chunk = 1 + (int)(size % 97);
        DiagSink dl;
        diag_init(&dl, NULL);
        Graph *g = ir_lower_model(&f->models[i], chunk, &dl);
        if (!g) {
            if (dl.n_errors == 0)
                abort(); /* refused without saying why */
        } else {
            if (ir_verify(g, stderr) != 0)
                abort();
            ir_print(g, devnull);
            ir_graph_free(g);
        }
        diag_free(&dl);
    }
    spec_free(f);
    diag_free(&d);
    free(text);
    return 0;
}
