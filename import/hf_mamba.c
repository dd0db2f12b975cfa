/* hf_mamba.c - the Hugging Face transformers MambaConfig (`"model_type": "mamba"`,
 * models/mamba/configuration_mamba.py), as the config.json of the `-hf` repositories holds it.
 *
 * MambaForCausalLM is the mamba_ssm model under other names: backbone.embeddings (not
 * backbone.embedding), the rest alike, lm_head.weight left out of the checkpoint when tied.
 * A compiled Mamba model accepts both spellings (ir/lower.c gives the embedding both names),
 * so the spec written here is an ordinary mamba-family spec. The modelling code reads
 * vocab_size as the embedding's row count (no padding), always uses RMSNorm, and SiLU unless
 * hidden_act says otherwise; what mxc cannot compile is refused, naming the key. */
#include <math.h>
#include <string.h>

#include "frontend/spec.h"
#include "import/cfg.h"

static const CfgKey hf_mamba_keys[] = {
    /* read */
    {"model_type", false}, {"architectures", false}, {"vocab_size", false},
    {"hidden_size", false}, {"state_size", false}, {"num_hidden_layers", false},
    {"layer_norm_epsilon", false}, {"expand", false}, {"conv_kernel", false},
    {"use_bias", false}, {"use_conv_bias", false}, {"hidden_act", false},
    {"time_step_rank", false}, {"tie_word_embeddings", false}, {"intermediate_size", false},
    {"d_model", false}, {"n_layer", false},
    /* mamba_ssm keys the conversion leaves in; the modelling code does not read them */
    {"rms_norm", true}, {"fused_add_norm", true}, {"residual_in_fp32", true},
    {"pad_vocab_size_multiple", true}, {"ssm_cfg", true},
    /* initialisation, kernel choice, generation, bookkeeping */
    {"time_step_scale", true}, {"time_step_min", true}, {"time_step_max", true},
    {"time_step_init_scheme", true}, {"time_step_floor", true}, {"initializer_range", true},
    {"rescale_prenorm_residual", true}, {"use_cache", true}, {"use_mambapy", true},
    {"use_associative_scan", true}, {"pad_token_id", true}, {"bos_token_id", true},
    {"eos_token_id", true}, {"torch_dtype", true}, {"dtype", true},
    {"transformers_version", true}, {"_name_or_path", true}, {"name_or_path", true},
    /* PretrainedConfig's own attributes, as save_pretrained may write them */
    {"return_dict", true}, {"output_hidden_states", true}, {"output_attentions", true},
    {"torchscript", true}, {"use_bfloat16", true}, {"tf_legacy_loss", true},
    {"pruned_heads", true}, {"chunk_size_feed_forward", true}, {"is_encoder_decoder", true},
    {"is_decoder", true}, {"add_cross_attention", true}, {"cross_attention_hidden_size", true},
    {"tie_encoder_decoder", true}, {"finetuning_task", true}, {"id2label", true},
    {"label2id", true}, {"num_labels", true}, {"tokenizer_class", true}, {"prefix", true},
    {"sep_token_id", true}, {"decoder_start_token_id", true}, {"task_specific_params", true},
    {"problem_type", true}, {"max_length", true}, {"min_length", true}, {"do_sample", true},
    {"early_stopping", true}, {"num_beams", true}, {"num_beam_groups", true},
    {"diversity_penalty", true}, {"temperature", true}, {"top_k", true}, {"top_p", true},
    {"typical_p", true}, {"repetition_penalty", true}, {"length_penalty", true},
    {"no_repeat_ngram_size", true}, {"encoder_no_repeat_ngram_size", true},
    {"bad_words_ids", true}, {"num_return_sequences", true}, {"output_scores", true},
    {"return_dict_in_generate", true}, {"forced_bos_token_id", true},
    {"forced_eos_token_id", true}, {"remove_invalid_values", true},
    {"exponential_decay_length_penalty", true}, {"suppress_tokens", true},
    {"begin_suppress_tokens", true},
    {NULL, false},
};

/* Any transformers config: they all name their model_type. The configs of the official code
 * have none; `hidden_size` and `state_size` alone are transformers Mamba spellings too. */
static bool detect(const CfgValue *c)
{
    return cfg_get(c, "model_type") || cfg_get(c, "hidden_size") || cfg_get(c, "state_size");
}

/* A legacy mamba_ssm key the conversion kept must agree with its transformers twin. */
static bool same_as(Importer *im, const CfgValue *c, const char *legacy, const char *key,
                    int64_t value)
{
    int64_t v;
    if (!cfg_int(im, c, legacy, value, 0, INT64_MAX, &v)) return false;
    if (v != value) {
        cfg_error(im, cfg_line_of(c, legacy), "'%s' is %lld but '%s' is %lld: the config "
                  "contradicts itself", legacy, (long long)v, key, (long long)value);
        return false;
    }
    return true;
}

static bool write_spec(Importer *im, const CfgValue *c, const char *name, FILE *out)
{
    char q[CFG_CLIP];
    const char *model_type = NULL, *act;
    const CfgValue *mt = cfg_get(c, "model_type");
    if (!cfg_string(im, c, "model_type", NULL, &model_type)) return false;
    if (!model_type || strcmp(model_type, "mamba") != 0) {
        cfg_error(im, mt ? mt->line : 0, "transformers model_type '%s' is not supported: of the "
                  "transformers configs, mxc imports model_type 'mamba' (MambaConfig), "
                  "'mamba2' (Mamba2Config) and 'xlstm' (xLSTMConfig)",
                  model_type ? cfg_clip(q, sizeof q, model_type) : "(none)");
        return false;
    }
    if (cfg_get(c, "quantization_config")) {
        cfg_error(im, cfg_line_of(c, "quantization_config"), "'quantization_config': quantised "
                  "transformers checkpoints are not supported; use the float weights");
        return false;
    }
    if (!cfg_check_keys(im, c, "the transformers MambaConfig", hf_mamba_keys)) return false;
    const CfgValue *arch = cfg_get(c, "architectures");
    if (cfg_present(arch)) {
        bool causal = false;
        if (arch->kind == CV_LIST)
            for (size_t i = 0; i < arch->count; i++)
                causal |= arch->items[i].kind == CV_STRING &&
                          strcmp(arch->items[i].s, "MambaForCausalLM") == 0;
        if (!causal) {
            cfg_error(im, arch->line, "'architectures' does not list MambaForCausalLM: mxc "
                      "compiles the language model (embedding, Mamba blocks, head)");
            return false;
        }
    }
    int64_t vocab, d_model, n_layer, d_state, d_conv, inter;
    double expand, eps;
    bool bias, conv_bias, tie;
    bool ok = cfg_int(im, c, "vocab_size", 50280, 1, SPEC_VOCAB_MAX, &vocab) &
              cfg_int(im, c, "hidden_size", 768, 1, SPEC_DIM_MAX, &d_model) &
              cfg_int(im, c, "num_hidden_layers", 32, 1, SPEC_BLOCKS_MAX, &n_layer) &
              cfg_int(im, c, "state_size", 16, 1, SPEC_DIM_MAX, &d_state) &
              cfg_int(im, c, "conv_kernel", 4, 1, SPEC_KERNEL_MAX, &d_conv) &
              cfg_number(im, c, "expand", 2, 0, SPEC_FACTOR_MAX, &expand) &
              cfg_number(im, c, "layer_norm_epsilon", 1e-5, 0, 1, &eps) &
              cfg_bool(im, c, "use_bias", false, &bias) &
              cfg_bool(im, c, "use_conv_bias", true, &conv_bias) &
              cfg_bool(im, c, "tie_word_embeddings", true, &tie) &
              cfg_string(im, c, "hidden_act", "silu", &act);
    if (!ok) return false;
    if (!same_as(im, c, "d_model", "hidden_size", d_model) ||
        !same_as(im, c, "n_layer", "num_hidden_layers", n_layer))
        return false;
    if (strcmp(act, "silu") != 0) {
        cfg_error(im, cfg_line_of(c, "hidden_act"), "'hidden_act' is '%s': the Mamba mixer mxc "
                  "compiles uses silu", cfg_clip(q, sizeof q, act));
        return false;
    }
    int64_t want_inter = (int64_t)floor(expand * (double)d_model);  /* int(expand * hidden_size) */
    if (!cfg_int(im, c, "intermediate_size", want_inter, 1, SPEC_DIM_MAX, &inter)) return false;
    if (inter != want_inter) {
        cfg_error(im, cfg_line_of(c, "intermediate_size"), "'intermediate_size' is %lld but "
                  "int(expand * hidden_size) is %lld: mxc derives the inner size from expand",
                  (long long)inter, (long long)want_inter);
        return false;
    }
    int64_t dt_rank = -1;
    const CfgValue *r = cfg_get(c, "time_step_rank");
    if (cfg_present(r) && !(r->kind == CV_STRING && strcmp(r->s, "auto") == 0) &&
        !cfg_int(im, c, "time_step_rank", -1, 1, SPEC_DIM_MAX, &dt_rank))
        return false;
    const CfgValue *ev = cfg_get(c, "expand");
    char expand_text[40], eps_text[40];
    if (!cfg_present(ev)) snprintf(expand_text, sizeof expand_text, "2");
    else if (ev->kind == CV_INT) snprintf(expand_text, sizeof expand_text, "%lld", (long long)ev->i);
    else cfg_format_number(expand_text, sizeof expand_text, expand);
    cfg_format_number(eps_text, sizeof eps_text, eps);

    fprintf(out, "model %s {\n", name);
    cfg_put(out, "# mamba_ssm and transformers names", "    family = mamba;");
    cfg_put(out, NULL, "    vocab_size = %lld;", (long long)vocab);
    cfg_put(out, "# transformers does not pad", "    pad_vocab_size_multiple = 1;");
    cfg_put(out, "# hidden_size", "    d_model = %lld;", (long long)d_model);
    cfg_put(out, "# num_hidden_layers", "    blocks = [mamba * %lld];", (long long)n_layer);
    cfg_put(out, "# MambaRMSNorm", "    norm = rmsnorm;");
    cfg_put(out, "# layer_norm_epsilon", "    norm_eps = %s;", eps_text);
    cfg_put(out, "# tie_word_embeddings", "    tie_weights = %s;", cfg_bool_text(tie));
    fprintf(out, "    mamba {\n");
    cfg_put(out, "# state_size", "        d_state = %lld;", (long long)d_state);
    cfg_put(out, "# conv_kernel", "        d_conv = %lld;", (long long)d_conv);
    fprintf(out, "        expand = %s;\n", expand_text);
    if (dt_rank < 0) cfg_put(out, "# time_step_rank", "        dt_rank = auto;");
    else cfg_put(out, "# time_step_rank", "        dt_rank = %lld;", (long long)dt_rank);
    cfg_put(out, "# use_conv_bias", "        conv_bias = %s;", cfg_bool_text(conv_bias));
    cfg_put(out, "# use_bias", "        bias = %s;", cfg_bool_text(bias));
    fprintf(out, "        d_intermediate = 0;\n");
    fprintf(out, "    }\n}\n");
    return true;
}

const ConfigFormat import_hf_mamba = {"a transformers MambaConfig", detect, write_spec};
