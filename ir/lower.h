/* lower.h - lowering a checked ModelSpec to the IR graph.
 *
 * lower.c builds the language-model frame (embedding, the block stack, final norm, head) and
 * hands each block to the lowering of its kind (lower_mamba.c, ...). Weight names are the
 * official ones of the spec's family, so that upstream checkpoints load unchanged. */
#ifndef MXC_LOWER_H
#define MXC_LOWER_H

#include "frontend/spec.h"
#include "ir/ir.h"

/* Lower one model; every checked spec lowers, so this never fails (`diag` is unused, kept for
 * refusals of future features). `chunk_len` is the longest chunk the generated forward
 * kernel takes. */
Graph *ir_lower_model(const ModelSpec *spec, int chunk_len, DiagSink *diag);

/* The spec's weight_type as the dtype of the graph's matrices (Graph.weight_dtype). */
DType ir_weight_dtype(WeightType t);

/* Shared by the block lowerings: a weight named prefix + "." + suffix. */
Node *lower_param(Graph *g, Loc loc, const char *prefix, const char *suffix, int rank,
                  const int64_t *dims);

/* The model's pre-block norm (`norm` key): RMSNorm, or LayerNorm with a bias, with gain
 * (and bias) stored at prefix.weight (prefix.bias). */
Node *lower_block_norm(Graph *g, const ModelSpec *m, const char *prefix, Node *x);

/* One block each: reads the residual stream x [B,T,d_model], returns the new stream.
 * `prefix` is the block's parameter prefix, e.g. "backbone.layers.3". */
Node *lower_mamba_block(Graph *g, const ModelSpec *m, const char *prefix, Node *x);
Node *lower_mamba2_block(Graph *g, const ModelSpec *m, const char *prefix, Node *x);
Node *lower_mlstm_block(Graph *g, const ModelSpec *m, const char *prefix, Node *x);
Node *lower_slstm_block(Graph *g, const ModelSpec *m, const char *prefix, Node *x);
Node *lower_mlstm_large_block(Graph *g, const ModelSpec *m, const char *prefix, Node *x);

/* xLSTM-large's out_norm: RMSNorm, gain stored directly, bias with the model's bias. */
Node *lower_xlstm_large_final_norm(Graph *g, const ModelSpec *m, const char *prefix, Node *x);

/* xLSTM's post_blocks_norm: bias-free LayerNorm with offset gain, weight at prefix.weight. */
Node *lower_xlstm_final_norm(Graph *g, const ModelSpec *m, const char *prefix, Node *x);

#endif
