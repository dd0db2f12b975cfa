/* mamba2.c - Mamba-2: the ssm_cfg of a mamba_ssm MambaConfig whose layer is "Mamba2" (handed
 * over by mamba_ssm.c), and the transformers Mamba2Config (`"model_type": "mamba2"`), both
 * written as a spec with `mamba2` blocks.
 *
 * Mamba2ForCausalLM's checkpoints differ from mamba_ssm's only in backbone.embeddings.weight,
 * which the binding accepts; vocab_size is used as is (already padded). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/spec.h"
#include "import/cfg.h"

enum { MAMBA2_IMPORT_NOTES = 8 };

/* The settings of one model, from the upstream defaults on (SEMANTICS-mamba2.md C.1). */
typedef struct Mamba2Import {
    /* the language model (MambaConfig / the transformers config's top level) */
    int64_t d_model, n_layer, vocab_size, pad_vocab_size_multiple;
    bool rms_norm, tie_embeddings;
    double norm_eps;
    /* the mixer (mamba_ssm Mamba2.__init__ arguments) */
    int64_t d_state, d_conv, headdim, ngroups, d_ssm; /* d_ssm 0: None (= d_inner) */
    int64_t chunk_size;
    double expand;
    char expand_text[40];  /* as written in the config ("2", "1.5") */
    bool rmsnorm, norm_before_gate, D_has_hdim, conv_bias, bias;
    double dt_limit[2];
    /* comments for the top of the spec: settings read differently upstream, keys ignored */
    const char *notes[MAMBA2_IMPORT_NOTES];
    int n_notes;
} Mamba2Import;

static void mamba2_import_defaults(Mamba2Import *s)
{
    *s = (Mamba2Import){.d_model = -1, .n_layer = -1, .vocab_size = -1,
                        .pad_vocab_size_multiple = 8, .rms_norm = true, .tie_embeddings = true,
                        .norm_eps = 1e-5, .d_state = 128, .d_conv = 4, .headdim = 64,
                        .ngroups = 1, .chunk_size = 256, .expand = 2, .expand_text = "2",
                        .rmsnorm = true, .conv_bias = true, .dt_limit = {0.0, INFINITY}};
}

static void mamba2_import_note(Mamba2Import *s, const char *note)
{
    if (s->n_notes < MAMBA2_IMPORT_NOTES) s->notes[s->n_notes++] = note;
}

/* Shortest text that reads back as v, as a spec float ("inf" for infinity). */
static void print_float(FILE *out, double v)
{
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eEn")) strcat(buf, ".0");
    fputs(buf, out);
}

static const char *yes(bool b) { return b ? "true" : "false"; }

static void mamba2_import_print(FILE *out, const char *name, const Mamba2Import *s)
{
    for (int i = 0; i < s->n_notes; i++) fprintf(out, "# %s\n", s->notes[i]);
    fprintf(out, "model %s {\n", name);
    fprintf(out, "    family = mamba;                 # mamba_ssm MambaLMHeadModel parameter names\n");
    fprintf(out, "    vocab_size = %lld;\n", (long long)s->vocab_size);
    fprintf(out, "    pad_vocab_size_multiple = %lld;\n", (long long)s->pad_vocab_size_multiple);
    fprintf(out, "    d_model = %lld;\n", (long long)s->d_model);
    fprintf(out, "    blocks = [mamba2 * %lld];\n", (long long)s->n_layer);
    fprintf(out, "    norm = %s;\n", s->rms_norm ? "rmsnorm" : "layernorm");
    fputs("    norm_eps = ", out);
    print_float(out, s->norm_eps);
    fputs(";\n", out);
    fprintf(out, "    tie_weights = %s;\n", yes(s->tie_embeddings));
    fprintf(out, "    mamba2 {\n");
    fprintf(out, "        d_state = %lld;\n", (long long)s->d_state);
    fprintf(out, "        d_conv = %lld;\n", (long long)s->d_conv);
    fprintf(out, "        expand = %s;\n", s->expand_text);
    fprintf(out, "        headdim = %lld;\n", (long long)s->headdim);
    fprintf(out, "        ngroups = %lld;\n", (long long)s->ngroups);
    if (s->d_ssm > 0) fprintf(out, "        d_ssm = %lld;\n", (long long)s->d_ssm);
    else fprintf(out, "        d_ssm = auto;                # = d_inner\n");
    fprintf(out, "        chunk_size = %lld;\n", (long long)s->chunk_size);
    fprintf(out, "        rmsnorm = %s;\n", yes(s->rmsnorm));
    fprintf(out, "        norm_before_gate = %s;\n", yes(s->norm_before_gate));
    fprintf(out, "        D_has_hdim = %s;\n", yes(s->D_has_hdim));
    fprintf(out, "        conv_bias = %s;\n", yes(s->conv_bias));
    fprintf(out, "        bias = %s;\n", yes(s->bias));
    fputs("        dt_limit = [", out);
    print_float(out, s->dt_limit[0]);
    fputs(", ", out);
    print_float(out, s->dt_limit[1]);
    fputs("];\n    }\n}\n", out);
}

void import_python_json_infinity(char *text, size_t len)
{
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\' && i + 1 < len) i++;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == 'I' && len - i >= 8 && memcmp(text + i, "Infinity", 8) == 0) {
            memcpy(text + i, "1e999   ", 8); /* a leading '-' stays: -1e999 */
            i += 7;
        }
    }
}

/* The mixer's arguments as written: an integer stays "2", a float its shortest form. */
static void number_text(const CfgValue *v, double value, char *buf, size_t len)
{
    if (!cfg_present(v)) return; /* the default's text stays */
    if (v->kind == CV_INT) snprintf(buf, len, "%lld", (long long)v->i);
    else cfg_format_number(buf, len, value);
}

/* One bound of a dt_limit / time_step_limit pair: a number, or transformers 5's
 * {"__float__": "Infinity"}. The only place a config may say infinity. */
static bool limit_bound(Importer *im, const CfgValue *v, const char *key, double *out)
{
    if (v->kind == CV_INT || v->kind == CV_FLOAT) {
        *out = v->f;
        return true;
    }
    const CfgValue *f = v->kind == CV_MAP ? cfg_get(v, "__float__") : NULL;
    if (v->kind == CV_STRING || (f && f->kind == CV_STRING)) {
        const char *t = v->kind == CV_STRING ? v->s : f->s;
        if (strcmp(t, "Infinity") == 0 || strcmp(t, "inf") == 0) {
            *out = INFINITY;
            return true;
        }
    }
    cfg_error(im, v->line, "'%s' must hold two numbers (the upper one may be Infinity)", key);
    return false;
}

static bool get_limit(Importer *im, const CfgValue *map, const char *key, double out[2])
{
    const CfgValue *v = cfg_get(map, key);
    if (!cfg_present(v)) return true;
    if (v->kind != CV_LIST || v->count != 2) {
        cfg_error(im, v->line, "'%s' must be a list of two numbers, got %s", key,
                  cfg_kind_name(v->kind));
        return false;
    }
    return limit_bound(im, &v->items[0], key, &out[0]) && limit_bound(im, &v->items[1], key, &out[1]);
}

static const CfgKey mamba2_ssm_keys[] = {
    {"layer", false}, {"d_state", false}, {"d_conv", false}, {"expand", false},
    {"headdim", false}, {"d_ssm", false}, {"ngroups", false}, {"D_has_hdim", false},
    {"rmsnorm", false}, {"norm_before_gate", false}, {"dt_limit", false}, {"bias", false},
    {"conv_bias", false}, {"chunk_size", false}, {"conv_init", true}, {"A_init_range", true},
    {"dt_min", true}, {"dt_max", true}, {"dt_init_floor", true}, {"use_mem_eff_path", true},
    {"layer_idx", true}, {"sequence_parallel", true}, {"process_group", true}, {NULL, false},
};

bool import_mamba2_ssm(Importer *im, const CfgValue *ssm, const MambaLmSettings *lm,
                       const char *name, FILE *out)
{
    if (!cfg_check_keys(im, ssm, "ssm_cfg (the Mamba2 mixer's arguments)", mamba2_ssm_keys))
        return false;
    if (lm->d_intermediate != 0) {
        cfg_error(im, cfg_line_of(ssm, "layer"), "'d_intermediate' is %lld: mxc compiles Mamba-2 "
                  "blocks without the GatedMLP (the released Mamba-2 models have 0)",
                  (long long)lm->d_intermediate);
        return false;
    }
    Mamba2Import s;
    mamba2_import_defaults(&s);
    s.d_model = lm->d_model;
    s.n_layer = lm->n_layer;
    s.vocab_size = lm->vocab_size;
    s.pad_vocab_size_multiple = lm->pad_vocab_size_multiple;
    s.rms_norm = lm->rms_norm;
    s.tie_embeddings = lm->tie_embeddings;
    bool ok = cfg_int(im, ssm, "d_state", 128, 1, SPEC_DIM_MAX, &s.d_state) &
              cfg_int(im, ssm, "d_conv", 4, 1, SPEC_KERNEL_MAX, &s.d_conv) &
              cfg_number(im, ssm, "expand", 2, 0, SPEC_FACTOR_MAX, &s.expand) &
              cfg_int(im, ssm, "headdim", 64, 1, SPEC_DIM_MAX, &s.headdim) &
              cfg_int(im, ssm, "d_ssm", 0, 0, SPEC_DIM_MAX, &s.d_ssm) &
              cfg_int(im, ssm, "ngroups", 1, 1, SPEC_DIM_MAX, &s.ngroups) &
              cfg_int(im, ssm, "chunk_size", 256, 1, SPEC_DIM_MAX, &s.chunk_size) &
              cfg_bool(im, ssm, "D_has_hdim", false, &s.D_has_hdim) &
              cfg_bool(im, ssm, "rmsnorm", true, &s.rmsnorm) &
              cfg_bool(im, ssm, "norm_before_gate", false, &s.norm_before_gate) &
              cfg_bool(im, ssm, "bias", false, &s.bias) &
              cfg_bool(im, ssm, "conv_bias", true, &s.conv_bias);
    if (!ok || !get_limit(im, ssm, "dt_limit", s.dt_limit)) return false;
    number_text(cfg_get(ssm, "expand"), s.expand, s.expand_text, sizeof s.expand_text);
    mamba2_import_print(out, name, &s);
    return true;
}

/* ---------------------------------------------------------------------------------------
 * transformers Mamba2Config (model_type "mamba2"). */

static const CfgKey hf_mamba2_read[] = {
    {"model_type", false}, {"hidden_size", false}, {"num_hidden_layers", false},
    {"vocab_size", false}, {"state_size", false}, {"conv_kernel", false}, {"expand", false},
    {"head_dim", false}, {"num_heads", false}, {"n_groups", false}, {"chunk_size", false},
    {"time_step_limit", false}, {"use_bias", false}, {"use_conv_bias", false},
    {"layer_norm_epsilon", false}, {"rms_norm", false}, {"tie_word_embeddings", false},
    {"hidden_act", false}, {"intermediate_size", false}, {"norm_before_gate", false},
    {NULL, false},
};

static bool hf_mamba2_detect(const CfgValue *c)
{
    const CfgValue *mt = cfg_get(c, "model_type");
    return mt && mt->kind == CV_STRING && strcmp(mt->s, "mamba2") == 0;
}

static bool hf_mamba2_write(Importer *im, const CfgValue *c, const char *name, FILE *out)
{
    Mamba2Import s;
    mamba2_import_defaults(&s);
    int64_t heads = 128, inter = -1;
    const char *act = "silu", *what = "the Mamba2Config";
    bool gate_first = false;
    s.pad_vocab_size_multiple = 1;
    s.tie_embeddings = false; /* Mamba2Config's default */
    s.headdim = 64;
    s.ngroups = 8;
    bool ok = cfg_require_int(im, c, "hidden_size", what, 1, SPEC_DIM_MAX, &s.d_model) &
              cfg_require_int(im, c, "num_hidden_layers", what, 1, SPEC_BLOCKS_MAX, &s.n_layer) &
              cfg_require_int(im, c, "vocab_size", what, 1, SPEC_VOCAB_MAX, &s.vocab_size) &
              cfg_int(im, c, "state_size", 128, 1, SPEC_DIM_MAX, &s.d_state) &
              cfg_int(im, c, "conv_kernel", 4, 1, SPEC_KERNEL_MAX, &s.d_conv) &
              cfg_number(im, c, "expand", 2, 0, SPEC_FACTOR_MAX, &s.expand) &
              cfg_int(im, c, "head_dim", 64, 1, SPEC_DIM_MAX, &s.headdim) &
              cfg_int(im, c, "num_heads", 128, 1, SPEC_DIM_MAX, &heads) &
              cfg_int(im, c, "n_groups", 8, 1, SPEC_DIM_MAX, &s.ngroups) &
              cfg_int(im, c, "chunk_size", 256, 1, SPEC_DIM_MAX, &s.chunk_size) &
              cfg_int(im, c, "intermediate_size", -1, -1, SPEC_DIM_MAX, &inter) &
              cfg_bool(im, c, "use_bias", false, &s.bias) &
              cfg_bool(im, c, "use_conv_bias", true, &s.conv_bias) &
              cfg_number(im, c, "layer_norm_epsilon", 1e-5, 0, 1, &s.norm_eps) &
              cfg_bool(im, c, "rms_norm", true, &s.rmsnorm) &
              cfg_bool(im, c, "tie_word_embeddings", false, &s.tie_embeddings) &
              cfg_string(im, c, "hidden_act", "silu", &act) &
              cfg_bool(im, c, "norm_before_gate", false, &gate_first);
    if (!ok || !get_limit(im, c, "time_step_limit", s.dt_limit)) return false;
    if (strcmp(act, "silu") != 0) {
        char q[CFG_CLIP];
        cfg_error(im, cfg_line_of(c, "hidden_act"), "'hidden_act' is '%s': the Mamba-2 mixer "
                  "computes SiLU", cfg_clip(q, sizeof q, act));
        return false;
    }
    double d_inner = floor(s.expand * (double)s.d_model);
    if ((double)heads * (double)s.headdim != d_inner || (inter >= 0 && (double)inter != d_inner)) {
        cfg_error(im, cfg_line_of(c, "num_heads"), "num_heads * head_dim = %lld * %lld must equal "
                  "int(expand * hidden_size) = %.0f%s", (long long)heads, (long long)s.headdim,
                  d_inner, inter >= 0 ? " and intermediate_size" : "");
        return false;
    }
    number_text(cfg_get(c, "expand"), s.expand, s.expand_text, sizeof s.expand_text);
    if (gate_first) /* SEMANTICS-mamba2.md C.2: not a field transformers' Mamba2 reads */
        mamba2_import_note(&s, "norm_before_gate = true is not read by transformers' Mamba2, which "
                           "gates before the norm: so does this spec.");
    if (s.ngroups > 1) /* C.9 item 6 */
        mamba2_import_note(&s, "The gated norm is grouped (n_groups) as in mamba_ssm, which the "
                           "checkpoint comes from; transformers normalises over all channels.");
    if (s.norm_eps != 1e-5)
        mamba2_import_note(&s, "layer_norm_epsilon sets the block norms; the gated norm keeps "
                           "mamba_ssm's 1e-5.");
    /* PretrainedConfig carries many keys of its own (token ids, dtype, ...): not refused */
    bool other = false;
    for (size_t i = 0; i < c->count; i++) {
        bool read = false;
        for (const CfgKey *k = hf_mamba2_read; k->name; k++)
            if (strcmp(k->name, c->items[i].key) == 0) read = true;
        other |= !read;
    }
    if (other)
        mamba2_import_note(&s, "The config's other keys (token ids, init, training, dtype) do not "
                           "change the function.");
    mamba2_import_print(out, name, &s);
    return true;
}

const ConfigFormat import_hf_mamba2 = {"a transformers Mamba2Config", hf_mamba2_detect,
                                       hf_mamba2_write};
