/* fuzz_state.c - libFuzzer target: the saved-state loader (mxrt_state_load).
 *
 * Input: arbitrary bytes as a saved state, loaded into states of batch 1, 2 and 3 of the model
 * of fuzz_state_desc.h. Properties beyond "no crash, no sanitizer report, no leak":
 *   - a refused blob leaves a non-empty message and the state bit-identical (its saved bytes
 *     are compared before and after);
 *   - an accepted blob saves back to exactly the input bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz_state_desc.h"

static MxrtModel *model;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!model && mxrt_open(&fuzz_state_desc, NULL, &model) != 0)
        abort();
    for (int batch = 1; batch <= 3; batch++) {
        MxrtState *s;
        if (mxrt_state_new(model, batch, &s) != 0)
            abort();
        int64_t n = mxrt_state_save_size(s);
        unsigned char *before = malloc((size_t)n), *after = malloc((size_t)n);
        if (!before || !after || mxrt_state_save(s, before, n) != 0)
            abort();
        if (mxrt_state_load(s, data, (int64_t)size) != 0) {
            if (mxrt_last_error()[0] == '\0')
                abort();
            if (mxrt_state_save(s, after, n) != 0 || memcmp(before, after, (size_t)n) != 0)
                abort();
        } else {
            if ((size_t)n != size || mxrt_state_save(s, after, n) != 0 ||
                memcmp(after, data, size) != 0)
                abort();
        }
        free(before);
        free(after);
        mxrt_state_free(s);
    }
    return 0;
}
