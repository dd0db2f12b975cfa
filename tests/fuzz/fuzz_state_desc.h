/* fuzz_state_desc.h - the model that fuzz_state loads fuzzed state blobs into, and that
 * state_seeds writes valid blobs for: no weights (an embedded safetensors file with no
 * tensors), 6 floats of state per sequence, a fixed fingerprint. Its kernels are never
 * called. */
#ifndef MXC_FUZZ_STATE_DESC_H
#define MXC_FUZZ_STATE_DESC_H

#include "runtime/mxrt.h"

/* An empty safetensors file: header length 8, header "{}" padded with spaces. */
static const unsigned char fuzz_state_weights[16] = {8, 0, 0, 0, 0, 0, 0, 0,
                                                     '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};

static void fuzz_state_kernel(const float *const *w, float *state, float *scratch,
                              const int32_t *tokens, int64_t tb, float *logits, int64_t lb,
                              int32_t batch, int32_t len, MxrtExec *exec)
{
    (void)w, (void)state, (void)scratch, (void)tokens, (void)tb, (void)logits, (void)lb;
    (void)batch, (void)len, (void)exec;
}

static const MxrtModelDesc fuzz_state_desc = {
    .abi_version = MXRT_ABI_VERSION,
    .name = "fuzz_state_model",
    .vocab_size = 4,
    .vocab_padded = 4,
    .d_model = 2,
    .chunk_len = 4,
    .state_floats = 6,
    .scratch_floats_per_row = 2,
    .forward_chunk = fuzz_state_kernel,
    .step = fuzz_state_kernel,
    .embedded_weights = fuzz_state_weights,
    .embedded_size = sizeof fuzz_state_weights,
    .fingerprint = 0x0123456789abcdefull,
    .mxc_version = "fuzz",
    .forward_trunk = fuzz_state_kernel,
    .forward_last = fuzz_state_kernel,
};

#endif
