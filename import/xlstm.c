/* xlstm.c - the xlstm xLSTMLMModelConfig (xlstm_lm_model.py, xlstm_block_stack.py, the blocks
 * and components folders), as YAML (the README, the experiment files) or as a JSON dump of
 * the dataclass. */
#include <string.h>

#include "frontend/spec.h"
#include "import/cfg.h"

static const CfgKey xlstm_keys[] = {
    {"vocab_size", false}, {"tie_weights", false}, {"weight_decay_on_embedding", true},
    {"add_embedding_dropout", true}, {"mlstm_block", false}, {"slstm_block", false},
    {"context_length", false}, {"num_blocks", false}, {"embedding_dim", false},
    {"add_post_blocks_norm", false}, {"bias", false}, {"dropout", true}, {"slstm_at", false},
    {"_block_map", true}, {NULL, false},
};
static const CfgKey mlstm_block_keys[] = {
    {"mlstm", false}, {"_num_blocks", true}, {"_block_idx", true}, {NULL, false},
};
static const CfgKey mlstm_keys[] = {
    {"proj_factor", false}, {"round_proj_up_dim_up", false}, {"round_proj_up_to_multiple_of", false},
    {"_proj_up_dim", true}, {"conv1d_kernel_size", false}, {"qkv_proj_blocksize", false},
    {"num_heads", false}, {"embedding_dim", true}, {"bias", true}, {"dropout", true},
    {"context_length", true}, {"_num_blocks", true}, {"_inner_embedding_dim", true}, {NULL, false},
};
static const CfgKey slstm_block_keys[] = {
    {"slstm", false}, {"feedforward", false}, {"_num_blocks", true}, {"_block_idx", true}, {NULL, false},
};
static const CfgKey slstm_keys[] = {
    {"hidden_size", true}, {"num_heads", false}, {"num_states", true}, {"backend", false},
    {"function", false}, {"bias_init", true}, {"recurrent_weight_init", true}, {"_block_idx", true},
    {"_num_blocks", true}, {"num_gates", true}, {"gradient_recurrent_cut", true},
    {"gradient_recurrent_clipval", true}, {"forward_clipval", false}, {"batch_size", true},
    {"input_shape", true}, {"internal_input_shape", true}, {"output_shape", true},
    {"constants", true}, {"dtype", true}, {"dtype_b", true}, {"dtype_r", true}, {"dtype_w", true},
    {"dtype_g", true}, {"dtype_s", true}, {"dtype_a", true},
    {"enable_automatic_mixed_precision", true}, {"initial_val", false}, {"embedding_dim", true},
    {"conv1d_kernel_size", false}, {"group_norm_weight", false}, {"dropout", true}, {NULL, false},
};
static const CfgKey ffn_keys[] = {
    {"proj_factor", false}, {"round_proj_up_dim_up", false}, {"round_proj_up_to_multiple_of", false},
    {"_proj_up_dim", true}, {"act_fn", false}, {"embedding_dim", true}, {"dropout", true},
    {"bias", false}, {"ff_type", false}, {"_num_blocks", true}, {NULL, false},
};

static bool write_spec(Importer *im, const CfgValue *c, const char *name, FILE *out)
{
    if (!cfg_check_keys(im, c, "the xLSTMLMModelConfig", xlstm_keys)) return false;
    int64_t vocab, ctx, num_blocks, emb;
    bool tie, post_norm, bias;
    const CfgValue *mb, *sb;
    bool ok = cfg_int(im, c, "vocab_size", -1, -1, SPEC_VOCAB_MAX, &vocab) & cfg_int(im, c, "context_length", -1, -1, INT32_MAX, &ctx) &
              cfg_int(im, c, "num_blocks", 1, 1, SPEC_BLOCKS_MAX, &num_blocks) & cfg_int(im, c, "embedding_dim", 128, 1, SPEC_DIM_MAX, &emb) &
              cfg_bool(im, c, "tie_weights", false, &tie) &
              cfg_bool(im, c, "add_post_blocks_norm", true, &post_norm) &
              cfg_bool(im, c, "bias", false, &bias) &
              cfg_map(im, c, "mlstm_block", &mb) & cfg_map(im, c, "slstm_block", &sb);
    if (!ok) return false;
    if (vocab < 1) {
        cfg_error(im, cfg_line_of(c, "vocab_size"), "the config has no vocab_size (upstream's default -1 "
                  "means unset); it is needed for the embedding and the head");
        return false;
    }
    if (!mb && !sb) {
        cfg_error(im, 0, "the config has neither an mlstm_block nor an slstm_block");
        return false;
    }
    /* The stack (xLSTMBlockStackConfig.__post_init__): without an mlstm_block every block is sLSTM. */
    bool all_slstm = !mb;
    char *is_slstm = cfg_alloc(im, (size_t)num_blocks);
    const CfgValue *at = cfg_get(c, "slstm_at");
    if (all_slstm) {
        memset(is_slstm, 1, (size_t)num_blocks);
    } else if (cfg_present(at) && at->kind == CV_STRING && strcmp(at->s, "all") == 0) {
        all_slstm = true;
        memset(is_slstm, 1, (size_t)num_blocks);
    } else if (cfg_present(at)) {
        if (at->kind != CV_LIST) {
            cfg_error(im, at->line, "'slstm_at' must be a list of block indices or \"all\"");
            return false;
        }
        for (size_t i = 0; i < at->count; i++) {
            const CfgValue *e = &at->items[i];
            if (e->kind != CV_INT || e->i < 0 || e->i >= num_blocks) {
                cfg_error(im, e->line, "'slstm_at' element %zu is not a block index in 0 .. %lld",
                             i, (long long)num_blocks - 1);
                return false;
            }
            if (is_slstm[e->i]) {
                cfg_error(im, e->line, "'slstm_at' lists block %lld twice", (long long)e->i);
                return false;
            }
            is_slstm[e->i] = 1;
        }
    }
    bool any_m = false, any_s = false;
    for (int64_t i = 0; i < num_blocks; i++) {
        if (is_slstm[i]) any_s = true;
        else any_m = true;
    }
    if (any_s && !sb) {
        cfg_error(im, cfg_line_of(c, "slstm_at"), "'slstm_at' places sLSTM blocks but the config has no "
                  "slstm_block");
        return false;
    }

    /* mLSTM layer (mLSTMLayerConfig) */
    const CfgValue *ml = NULL;
    int64_t m_heads = 4, m_conv = 4, m_qkv = 4, m_round_to = 64;
    double m_pf = 2.0;
    bool m_round_up = true;
    if (mb) {
        if (!cfg_check_keys(im, mb, "mlstm_block", mlstm_block_keys) || !cfg_map(im, mb, "mlstm", &ml))
            return false;
        if (ml) {
            if (!cfg_check_keys(im, ml, "mlstm_block.mlstm", mlstm_keys)) return false;
            ok = cfg_int(im, ml, "num_heads", 4, 1, SPEC_DIM_MAX, &m_heads) &
                 cfg_int(im, ml, "conv1d_kernel_size", 4, 0, SPEC_KERNEL_MAX, &m_conv) &
                 cfg_int(im, ml, "qkv_proj_blocksize", 4, 1, SPEC_DIM_MAX, &m_qkv) &
                 cfg_number(im, ml, "proj_factor", 2.0, 0, SPEC_FACTOR_MAX, &m_pf) &
                 cfg_bool(im, ml, "round_proj_up_dim_up", true, &m_round_up) &
                 cfg_int(im, ml, "round_proj_up_to_multiple_of", 64, 1, SPEC_DIM_MAX, &m_round_to);
            if (!ok) return false;
        }
    }

    /* sLSTM layer (sLSTMLayerConfig) and its feed-forward (FeedForwardConfig) */
    const CfgValue *sl = NULL, *ff = NULL;
    int64_t s_heads = 4, s_conv = 4, f_round_to = 64;
    const char *backend = "cuda", *function = "slstm", *act = "gelu", *ff_type = "ffn_gated";
    bool has_ffn = true, f_round_up = true, f_bias = false, gn_weight = true;
    double f_pf = 1.3, init_val = 0;
    char q[CFG_CLIP];
    if (sb) {
        if (!cfg_check_keys(im, sb, "slstm_block", slstm_block_keys) || !cfg_map(im, sb, "slstm", &sl) ||
            !cfg_map(im, sb, "feedforward", &ff))
            return false;
        const CfgValue *ffv = cfg_get(sb, "feedforward");
        has_ffn = !(ffv && ffv->kind == CV_NULL);  /* absent: the default FeedForwardConfig() */
        if (sl) {
            if (!cfg_check_keys(im, sl, "slstm_block.slstm", slstm_keys)) return false;
            ok = cfg_int(im, sl, "num_heads", 4, 1, SPEC_DIM_MAX, &s_heads) &
                 cfg_int(im, sl, "conv1d_kernel_size", 4, 0, SPEC_KERNEL_MAX, &s_conv) &
                 cfg_string(im, sl, "backend", "cuda", &backend) &
                 cfg_string(im, sl, "function", "slstm", &function) &
                 cfg_bool(im, sl, "group_norm_weight", true, &gn_weight) &
                 cfg_number(im, sl, "initial_val", 0.0, -1e300, 1e300, &init_val);
            if (!ok) return false;
            if (strcmp(backend, "cuda") != 0 && strcmp(backend, "vanilla") != 0) {
                cfg_error(im, cfg_line_of(sl, "backend"),
                             "unknown sLSTM backend '%s' (expected cuda or vanilla)",
                      cfg_clip(q, sizeof q, backend));
                return false;
            }
            if (strcmp(function, "slstm") != 0) {
                cfg_error(im, cfg_line_of(sl, "function"), "sLSTM cell function '%s' is not supported "
                             "(only 'slstm')", cfg_clip(q, sizeof q, function));
                return false;
            }
            if (cfg_present(cfg_get(sl, "forward_clipval"))) {
                cfg_error(im, cfg_line_of(sl, "forward_clipval"), "'forward_clipval' clips the sLSTM "
                             "cell in forward; mxc does not implement it (leave it null)");
                return false;
            }
            if (!gn_weight) {
                cfg_error(im, cfg_line_of(sl, "group_norm_weight"), "'group_norm_weight: false' is not "
                             "supported (mxc expects the group norm's weight)");
                return false;
            }
            if (init_val != 0) {
                cfg_error(im, cfg_line_of(sl, "initial_val"), "a non-zero 'initial_val' (initial sLSTM "
                             "state) is not supported");
                return false;
            }
        }
        if (ff) {
            if (!cfg_check_keys(im, ff, "slstm_block.feedforward", ffn_keys)) return false;
            ok = cfg_number(im, ff, "proj_factor", 1.3, 0, SPEC_FACTOR_MAX, &f_pf) &
                 cfg_string(im, ff, "act_fn", "gelu", &act) &
                 cfg_bool(im, ff, "bias", false, &f_bias) &
                 cfg_string(im, ff, "ff_type", "ffn_gated", &ff_type) &
                 cfg_bool(im, ff, "round_proj_up_dim_up", true, &f_round_up) &
                 cfg_int(im, ff, "round_proj_up_to_multiple_of", 64, 1, SPEC_DIM_MAX, &f_round_to);
            if (!ok) return false;
            if (strcmp(ff_type, "ffn_gated") != 0) {
                cfg_error(im, cfg_line_of(ff, "ff_type"), "feed-forward type '%s' is not supported "
                             "(only 'ffn_gated')", cfg_clip(q, sizeof q, ff_type));
                return false;
            }
            static const char *const acts[] = {"gelu", "relu", "relu^2", "relu2", "sigmoid",
                                               "swish", "selu", NULL};
            bool known = false;
            for (const char *const *a = acts; *a; a++) known |= strcmp(act, *a) == 0;
            if (!known) {
                cfg_error(im, cfg_line_of(ff, "act_fn"), "feed-forward activation '%s' is not "
                          "supported (gelu, relu, relu^2, sigmoid, swish or selu)",
                          cfg_clip(q, sizeof q, act));
                return false;
            }
        }
    }

    char num[40];
    fprintf(out, "model %s {\n", name);
    cfg_put(out, "# xlstm xLSTMLMModel parameter names", "    family = xlstm;");
    fprintf(out, "    vocab_size = %lld;\n", (long long)vocab);
    fprintf(out, "    embedding_dim = %lld;\n", (long long)emb);
    fprintf(out, "    context_length = %lld;\n", (long long)ctx);
    fprintf(out, "    num_blocks = %lld;\n", (long long)num_blocks);
    if (all_slstm) {
        fprintf(out, "    slstm_at = all;\n");
    } else {
        fprintf(out, "    slstm_at = [");
        bool first = true;
        for (int64_t i = 0; i < num_blocks; i++)
            if (is_slstm[i]) {
                fprintf(out, "%s%lld", first ? "" : ", ", (long long)i);
                first = false;
            }
        fprintf(out, "];\n");
    }
    fprintf(out, "    tie_weights = %s;\n", cfg_bool_text(tie));
    fprintf(out, "    add_post_blocks_norm = %s;\n", cfg_bool_text(post_norm));
    fprintf(out, "    bias = %s;\n", cfg_bool_text(bias));
    if (any_m) {
        cfg_format_number(num, sizeof num, m_pf);
        fprintf(out, "    mlstm {\n");
        fprintf(out, "        num_heads = %lld;\n", (long long)m_heads);
        fprintf(out, "        proj_factor = %s;\n", num);
        fprintf(out, "        conv1d_kernel_size = %lld;\n", (long long)m_conv);
        fprintf(out, "        qkv_proj_blocksize = %lld;\n", (long long)m_qkv);
        fprintf(out, "        round_proj_up_dim_up = %s;\n", cfg_bool_text(m_round_up));
        fprintf(out, "        round_proj_up_to_multiple_of = %lld;\n", (long long)m_round_to);
        fprintf(out, "    }\n");
    }
    if (any_s) {
        fprintf(out, "    slstm {\n");
        fprintf(out, "        num_heads = %lld;\n", (long long)s_heads);
        fprintf(out, "        conv1d_kernel_size = %lld;\n", (long long)s_conv);
        cfg_put(out, cfg_present(cfg_get(sl, "backend")) ? "# the layout of checkpoints of this sLSTM backend"
                                                  : "# backend: cuda, upstream's default",
            "        layout = %s;", backend);
        if (!has_ffn) {
            fprintf(out, "        feedforward = false;\n");
        } else {
            const char *act_spelled = strcmp(act, "relu^2") == 0 ? "relu2" : act;
            cfg_format_number(num, sizeof num, f_pf);
            fprintf(out, "        feedforward {\n");
            fprintf(out, "            proj_factor = %s;\n", num);
            fprintf(out, "            act_fn = \"%s\";\n", act_spelled);
            fprintf(out, "            bias = %s;\n", cfg_bool_text(f_bias));
            fprintf(out, "            round_proj_up_dim_up = %s;\n", cfg_bool_text(f_round_up));
            fprintf(out, "            round_proj_up_to_multiple_of = %lld;\n", (long long)f_round_to);
            fprintf(out, "        }\n");
        }
        fprintf(out, "    }\n");
    }
    fprintf(out, "}\n");
    return true;
}


static bool detect(const CfgValue *c)
{
    return cfg_get(c, "embedding_dim") || cfg_get(c, "num_blocks") || cfg_get(c, "mlstm_block") ||
           cfg_get(c, "slstm_block") || cfg_get(c, "slstm_at");
}

const ConfigFormat import_xlstm = {"an xlstm xLSTMLMModelConfig", detect, write_spec};
