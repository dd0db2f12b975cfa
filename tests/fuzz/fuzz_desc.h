/* fuzz_desc.h - the fixed model descriptor that fuzz_st binds fuzzed files against, and
 * that st_seeds writes valid files for.
 *
 * It resembles a real compiled model at toy sizes (so that fuzzed files can satisfy it):
 * a one-layer Mamba block with a tied head (alt_name), plus an sLSTM cell's rank-3
 * recurrent kernel and an mLSTM headwise projection, as the xLSTM layouts have them. Only
 * the weight table matters here; bind_weights never calls the kernels. */
#ifndef MXC_FUZZ_DESC_H
#define MXC_FUZZ_DESC_H

#include "runtime/mxrt.h"

static const MxrtTensorSpec fuzz_weights[] = {
    {"backbone.embedding.weight", "lm_head.weight", 2, 0, {8, 4}},
    {"backbone.layers.0.norm.weight", NULL, 1, 0, {4}},
    {"backbone.layers.0.mixer.in_proj.weight", NULL, 2, 0, {16, 4}},
    {"backbone.layers.0.mixer.conv1d.weight", NULL, 3, 0, {8, 1, 2}},
    {"backbone.layers.0.mixer.conv1d.bias", NULL, 1, 0, {8}},
    {"backbone.layers.0.mixer.x_proj.weight", NULL, 2, 0, {5, 8}},
    {"backbone.layers.0.mixer.dt_proj.weight", NULL, 2, 0, {8, 1}},
    {"backbone.layers.0.mixer.dt_proj.bias", NULL, 1, 0, {8}},
    {"backbone.layers.0.mixer.A_log", NULL, 2, 0, {8, 2}},
    {"backbone.layers.0.mixer.D", NULL, 1, 0, {8}},
    {"backbone.layers.0.mixer.out_proj.weight", NULL, 2, 0, {4, 8}},
    {"xlstm_block_stack.blocks.1.xlstm.slstm_cell._recurrent_kernel_", NULL, 3, 0, {2, 8, 2}},
    {"xlstm_block_stack.blocks.2.xlstm.q_proj.weight", NULL, 3, 0, {2, 2, 2}},
    {"backbone.norm_f.weight", NULL, 1, 0, {4}},
    {"lm_head.weight", "backbone.embedding.weight", 2, 0, {8, 4}},
};

static const MxrtModelDesc fuzz_desc = {
    .abi_version = MXRT_ABI_VERSION,
    .n_weights = (int32_t)(sizeof fuzz_weights / sizeof fuzz_weights[0]),
    .name = "fuzz_model",
    .weights = fuzz_weights,
    .vocab_size = 8,
    .vocab_padded = 8,
    .d_model = 4,
    .chunk_len = 4,
};

#endif
