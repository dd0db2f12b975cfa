/* lower.c - the language-model frame around the block stack.
 *
 * Mamba family (mamba_ssm MambaLMHeadModel, SEMANTICS A.4):
 *   x = embedding[tokens]; per block x = x + mixer(norm(x)); logits = lm_head(norm_f(x)).
 * The vocabulary is padded to pad_vocab_size_multiple and the padding logits are kept. */
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
    if (m->norm == NORM_RMSNORM) return ir_rmsnorm(g, m->loc, x, gain, m->norm_eps);
    Node *bias = lower_param(g, m->loc, prefix, "bias", 1, &d);
    return ir_layernorm(g, m->loc, x, gain, bias, m->norm_eps, false);
}

static Graph *lower_mamba_lm(const ModelSpec *m, int chunk_len)
{
    Graph *g = ir_graph_new(m, chunk_len);
    int64_t emb_dims[2] = {m->vocab_padded, m->d_model};
    Node *tokens = ir_tokens(g, m->loc);
    /* A tied head may be stored under either name; the embedding's is canonical. */
    Node *emb = ir_weight(g, m->loc, "backbone.embedding.weight",
                          m->tie_weights ? "lm_head.weight" : NULL, 2, emb_dims);
    Node *x = ir_embed(g, m->loc, tokens, emb);
    for (int i = 0; i < m->n_blocks; i++) {
        const char *prefix = ir_strfmt(g, "backbone.layers.%d", i);
        x = lower_mamba_block(g, m, prefix, x);
    }
    Node *normed = lower_block_norm(g, m, "backbone.norm_f", x);
    Node *head = m->tie_weights ? emb : ir_weight(g, m->loc, "lm_head.weight", NULL, 2, emb_dims);
    ir_output(g, m->loc, ir_linear(g, m->loc, normed, head, NULL));
    return g;
}

Graph *ir_lower_model(const ModelSpec *m, int chunk_len, DiagSink *diag)
{
    for (int i = 0; i < m->n_blocks; i++) {
        if (m->blocks[i] != BLOCK_MAMBA) {
            diag_report(diag, DIAG_ERROR, m->loc,
                        "model '%s': block %d is %s, which this version of mxc cannot compile "
                        "yet (supported: mamba)", m->name, i, spec_block_name(m->blocks[i]));
            return NULL;
        }
    }
    if (m->family != FAMILY_MAMBA) {
        diag_report(diag, DIAG_ERROR, m->loc,
                    "model '%s': family %s cannot be compiled yet (supported: mamba)", m->name,
                    spec_family_name(m->family));
        return NULL;
    }
    return lower_mamba_lm(m, chunk_len);
}

