/* lower.c - the language-model frame around the block stack.
 *
 *   x = embedding[tokens];  x = block_i(x) for each block;  logits = head(final_norm(x))
 *
 * The family picks the parameter names of the frame and of each block's prefix:
 *   mamba (mamba_ssm MambaLMHeadModel, SEMANTICS A.4): backbone.embedding, backbone.layers.{i},
 *     backbone.norm_f (RMSNorm, or LayerNorm with bias), lm_head; vocabulary padded to
 *     pad_vocab_size_multiple with the padding logits kept;
 *   xlstm (NX-AI xLSTMLMModel, B.4): token_embedding, xlstm_block_stack.blocks.{i},
 *     xlstm_block_stack.post_blocks_norm (optional, offset gain), lm_head;
 *   xlstm_large (NX-AI xLSTMLarge, SEMANTICS-xlstm-large D.4): embedding (or transformers'
 *     backbone.embeddings), backbone.blocks.{i}, backbone.out_norm (optional RMSNorm), lm_head.
 * Any family may cap its logits (output_logit_soft_cap; the default of xlstm_large only).
 * The block kind picks the names inside a block, so hybrid stacks read naturally, e.g. a
 * Mamba block of an xLSTM stack lives at xlstm_block_stack.blocks.{i}.mixer.*. */
#include <string.h>

#include "ir/lower.h"

Node *lower_param(Graph *g, Loc loc, const char *prefix, const char *suffix, int rank,
                  const int64_t *dims)
{
    return ir_weight(g, loc, ir_strfmt(g, "%s.%s", prefix, suffix), NULL, rank, dims);
}

Node *lower_block_norm(Graph *g, const ModelSpec *m, const char *prefix, Node *x)
{
    int64_t d = m->d_model;
    Node *gain = lower_param(g, m->loc, prefix, "weight", 1, &d);
    if (m->norm == NORM_RMSNORM) return ir_rmsnorm(g, m->loc, x, gain, NULL, m->norm_eps);
    Node *bias = lower_param(g, m->loc, prefix, "bias", 1, &d);
    return ir_layernorm(g, m->loc, x, gain, bias, m->norm_eps, false, 1);
}

typedef struct FrameNames {
    const char *embedding, *block_fmt, *final_norm;
    const char *hf_embedding; /* the embedding's Hugging Face name, if it differs */
} FrameNames;

static const FrameNames mamba_names = {"backbone.embedding.weight", "backbone.layers.%d",
                                       "backbone.norm_f", "backbone.embeddings.weight"};
static const FrameNames xlstm_names = {"token_embedding.weight", "xlstm_block_stack.blocks.%d",
                                       "xlstm_block_stack.post_blocks_norm", NULL};
static const FrameNames xlstm_large_names = {"embedding.weight", "backbone.blocks.%d",
                                             "backbone.out_norm", "backbone.embeddings.weight"};

DType ir_weight_dtype(WeightType t)
{
    switch (t) {
    case WEIGHT_F32: return DT_F32;
    case WEIGHT_BF16: return DT_BF16;
    case WEIGHT_F16: return DT_F16;
    case WEIGHT_Q8: return DT_Q8;
    }
    return DT_F32;
}

Graph *ir_lower_model(const ModelSpec *m, int chunk_len, DiagSink *diag)
{
    (void)diag; /* every checked spec lowers; kept for refusals of future features */
    const FrameNames *names = m->family == FAMILY_MAMBA   ? &mamba_names
                              : m->family == FAMILY_XLSTM ? &xlstm_names
                                                          : &xlstm_large_names;
    IrModel facts = {m->name, m->vocab_size, m->vocab_padded, m->d_model, m->n_blocks};
    Graph *g = ir_graph_new(&facts, chunk_len);
    g->weight_dtype = ir_weight_dtype(m->weight_type);
    int64_t emb_dims[2] = {m->vocab_padded, m->d_model};
    Node *tokens = ir_tokens(g, m->loc);
    /* A tied head may be stored under either name; the embedding's is canonical. Hugging
     * Face's MambaForCausalLM / Mamba2ForCausalLM / xLSTMForCausalLM call the embedding
     * backbone.embeddings. */
    const char *alt = names->hf_embedding;
    if (m->tie_weights)
        alt = alt ? ir_strfmt(g, "%s\nlm_head.weight", alt) : "lm_head.weight";
    Node *emb = ir_weight(g, m->loc, names->embedding, alt, 2, emb_dims);
    Node *x = ir_embed(g, m->loc, tokens, emb);
    for (int i = 0; i < m->n_blocks; i++) {
        const char *prefix = ir_strfmt(g, names->block_fmt, i);
        switch (m->blocks[i]) {
        case BLOCK_MAMBA: x = lower_mamba_block(g, m, prefix, x); break;
        case BLOCK_MLSTM: x = lower_mlstm_block(g, m, prefix, x); break;
        case BLOCK_SLSTM: x = lower_slstm_block(g, m, prefix, x); break;
        case BLOCK_MAMBA2: x = lower_mamba2_block(g, m, prefix, x); break;
        case BLOCK_MLSTM_LARGE: x = lower_mlstm_large_block(g, m, prefix, x); break;
        }
    }
    if (m->family == FAMILY_MAMBA)
        x = lower_block_norm(g, m, names->final_norm, x);
    else if (m->add_post_blocks_norm && m->family == FAMILY_XLSTM)
        x = lower_xlstm_final_norm(g, m, names->final_norm, x);
    else if (m->add_post_blocks_norm)
        x = lower_xlstm_large_final_norm(g, m, names->final_norm, x);
    Node *head = m->tie_weights ? emb : ir_weight(g, m->loc, "lm_head.weight", NULL, 2, emb_dims);
    Node *logits = ir_linear(g, m->loc, x, head, NULL);
    if (m->logit_soft_cap > 0) logits = ir_softcap(g, m->loc, logits, m->logit_soft_cap);
    ir_output(g, m->loc, logits);
    return g;
}
