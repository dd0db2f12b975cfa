/* mamba_ssm.c - the mamba_ssm MambaConfig (models/config_mamba.py), as the config.json of the
 * state-spaces repositories holds it, and the Mamba mixer's arguments under ssm_cfg. */
#include <string.h>

#include "frontend/spec.h"
#include "import/cfg.h"

static const CfgKey mamba_keys[] = {
    {"d_model", false}, {"d_intermediate", false}, {"n_layer", false}, {"vocab_size", false},
    {"ssm_cfg", false}, {"attn_layer_idx", false}, {"attn_cfg", true}, {"rms_norm", false},
    {"residual_in_fp32", true}, {"fused_add_norm", true}, {"pad_vocab_size_multiple", false},
    {"tie_embeddings", false}, {NULL, false},
};

static const CfgKey ssm_keys[] = {
    {"layer", false}, {"d_state", false}, {"d_conv", false}, {"expand", false},
    {"dt_rank", false}, {"dt_min", true}, {"dt_max", true}, {"dt_init", true},
    {"dt_scale", true}, {"dt_init_floor", true}, {"conv_bias", false}, {"bias", false},
    {"use_fast_path", true}, {"layer_idx", true}, {NULL, false},
};

static bool detect(const CfgValue *c)
{
    return cfg_get(c, "d_model") || cfg_get(c, "n_layer") || cfg_get(c, "ssm_cfg");
}

static bool write_spec(Importer *im, const CfgValue *c, const char *name, FILE *out)
{
    if (!cfg_check_keys(im, c, "the MambaConfig", mamba_keys)) return false;
    const CfgValue *attn = cfg_get(c, "attn_layer_idx");
    if (cfg_present(attn) && (attn->kind != CV_LIST || attn->count > 0)) {
        cfg_error(im, attn->line, "'attn_layer_idx' lists attention layers: mxc compiles Mamba "
                  "and Mamba-2 blocks only (hybrid Mamba + attention models are not supported)");
        return false;
    }
    int64_t d_model, n_layer, vocab, d_inter, pad;
    bool rms, tie;
    const char *what = "the MambaConfig";
    bool ok = cfg_require_int(im, c, "d_model", what, 1, SPEC_DIM_MAX, &d_model) &
              cfg_require_int(im, c, "n_layer", what, 1, SPEC_BLOCKS_MAX, &n_layer) &
              cfg_require_int(im, c, "vocab_size", what, 1, SPEC_VOCAB_MAX, &vocab) &
              cfg_int(im, c, "d_intermediate", 0, 0, SPEC_DIM_MAX, &d_inter) &
              cfg_int(im, c, "pad_vocab_size_multiple", 8, 1, SPEC_DIM_MAX, &pad) &
              cfg_bool(im, c, "rms_norm", true, &rms) &
              cfg_bool(im, c, "tie_embeddings", true, &tie);
    if (!ok) return false;
    const CfgValue *ssm;
    if (!cfg_map(im, c, "ssm_cfg", &ssm)) return false;
    int64_t d_state = 16, d_conv = 4, dt_rank = -1;
    double expand = 2;
    bool conv_bias = true, bias = false;
    const char *layer = "Mamba1";
    if (ssm) {
        if (!cfg_string(im, ssm, "layer", "Mamba1", &layer)) return false;
        if (strcmp(layer, "Mamba2") == 0) {
            MambaLmSettings lm = {d_model, n_layer, vocab, d_inter, pad, rms, tie};
            return import_mamba2_ssm(im, ssm, &lm, name, out);
        }
        if (strcmp(layer, "Mamba1") != 0) {
            char q[CFG_CLIP];
            cfg_error(im, cfg_line_of(ssm, "layer"), "'ssm_cfg.layer' is '%s': mxc compiles the "
                      "mixers 'Mamba1' and 'Mamba2'", cfg_clip(q, sizeof q, layer));
            return false;
        }
        if (!cfg_check_keys(im, ssm, "ssm_cfg (the Mamba mixer's arguments)", ssm_keys)) return false;
        ok = cfg_int(im, ssm, "d_state", 16, 1, SPEC_DIM_MAX, &d_state) &
             cfg_int(im, ssm, "d_conv", 4, 1, SPEC_KERNEL_MAX, &d_conv) &
             cfg_number(im, ssm, "expand", 2, 0, SPEC_FACTOR_MAX, &expand) &
             cfg_bool(im, ssm, "conv_bias", true, &conv_bias) &
             cfg_bool(im, ssm, "bias", false, &bias);
        if (!ok) return false;
        const CfgValue *r = cfg_get(ssm, "dt_rank");
        if (cfg_present(r) && !(r->kind == CV_STRING && strcmp(r->s, "auto") == 0)) {
            if (!cfg_int(im, ssm, "dt_rank", -1, 1, SPEC_DIM_MAX, &dt_rank)) return false;
        }
    }
    const CfgValue *ev = ssm ? cfg_get(ssm, "expand") : NULL;
    char expand_text[40];
    if (!cfg_present(ev)) snprintf(expand_text, sizeof expand_text, "2");
    else if (ev->kind == CV_INT) snprintf(expand_text, sizeof expand_text, "%lld", (long long)ev->i);
    else cfg_format_number(expand_text, sizeof expand_text, expand);

    fprintf(out, "model %s {\n", name);
    cfg_put(out, "# mamba_ssm MambaLMHeadModel parameter names", "    family = mamba;");
    cfg_put(out, NULL, "    vocab_size = %lld;", (long long)vocab);
    cfg_put(out, NULL, "    pad_vocab_size_multiple = %lld;", (long long)pad);
    cfg_put(out, NULL, "    d_model = %lld;", (long long)d_model);
    cfg_put(out, "# n_layer", "    blocks = [mamba * %lld];", (long long)n_layer);
    cfg_put(out, rms ? "# rms_norm = true" : "# rms_norm = false", "    norm = %s;",
            rms ? "rmsnorm" : "layernorm");
    cfg_put(out, "# MixerModel's norm_epsilon (not in the config)", "    norm_eps = 1e-5;");
    cfg_put(out, "# tie_embeddings", "    tie_weights = %s;", cfg_bool_text(tie));
    fprintf(out, "    mamba {\n");
    fprintf(out, "        d_state = %lld;\n", (long long)d_state);
    fprintf(out, "        d_conv = %lld;\n", (long long)d_conv);
    fprintf(out, "        expand = %s;\n", expand_text);
    if (dt_rank < 0) fprintf(out, "        dt_rank = auto;\n");
    else fprintf(out, "        dt_rank = %lld;\n", (long long)dt_rank);
    fprintf(out, "        conv_bias = %s;\n", cfg_bool_text(conv_bias));
    fprintf(out, "        bias = %s;\n", cfg_bool_text(bias));
    fprintf(out, "        d_intermediate = %lld;\n", (long long)d_inter);
    fprintf(out, "    }\n}\n");
    return true;
}

const ConfigFormat import_mamba_ssm = {"a mamba_ssm MambaConfig", detect, write_spec};
