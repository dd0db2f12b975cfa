/* fuzz_st.c - libFuzzer target: the safetensors reader and weight binding.
 *
 * Input: arbitrary bytes as a safetensors file, opened with st_open_memory, then bound
 * against the fixed descriptor of fuzz_desc.h. Properties checked beyond "no crash, no
 * sanitizer report, no leak":
 *   - a refused file leaves a non-empty message and a NULL handle;
 *   - after a successful open every tensor lies inside the input, its byte count is
 *     numel * dtype size, st_find finds it under its own name, and float dtypes convert;
 *   - after a successful bind every slot points at numel(spec) readable floats (read here,
 *     so that ASan checks the range). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/bind.h"
#include "runtime/safetensors.h"
#include "tests/fuzz/fuzz_desc.h"

static volatile float sink;

static void check_tensors(const StFile *f, const uint8_t *data, size_t size)
{
    for (int i = 0; i < st_count(f); i++) {
        const StTensor *t = st_at(f, i);
        const uint8_t *p = t->data;
        if (t->nbytes && (p < data || p + t->nbytes > data + size))
            abort();
        if ((uint64_t)st_numel(t) * st_dtype_size(t->dtype) != t->nbytes)
            abort();
        if (st_find(f, t->name) != t)
            abort();
        if (st_dtype_is_float(t->dtype)) {
            float *copy = NULL;
            if (st_read_f32(t, &copy) != 0 || !copy)
                abort();
            float s = 0;
            for (int64_t k = 0; k < st_numel(t); k++)
                s += copy[k];
            sink = s;
            free(copy);
        }
    }
    if (st_at(f, st_count(f)) != NULL || st_at(f, -1) != NULL)
        abort();
    (void)st_metadata(f, "format");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    StFile *f = (StFile *)1;
    if (st_open_memory(data, size, "fuzz.safetensors", &f) != 0) {
        if (f != NULL || mxrt_last_error()[0] == '\0')
            abort();
        return 0;
    }
    check_tensors(f, data, size);

    BoundWeights *b = (BoundWeights *)1;
    if (bind_weights(&fuzz_desc, f, &b) == 0) {
        const float *const *slots = bind_slots(b);
        float s = 0;
        for (int i = 0; i < fuzz_desc.n_weights; i++) {
            const MxrtTensorSpec *w = &fuzz_desc.weights[i];
            int64_t n = 1;
            for (int d = 0; d < w->rank; d++)
                n *= w->dims[d];
            for (int64_t k = 0; k < n; k++)
                s += slots[i][k];
        }
        sink = s;
        bind_free(b);
    } else if (b != NULL || mxrt_last_error()[0] == '\0') {
        abort();
    }
    st_close(f);
    return 0;
}
