/* import_xlstm_large.c - spec text from an xLSTMLargeConfig or a transformers xLSTMConfig
 * (SEMANTICS-xlstm-large D.1).
 *
 * The official config's keys are checked strictly (unknown keys are refused, as upstream's
 * dataclass would); a transformers config carries PretrainedConfig's generic keys as well,
 * so there only the keys that change the model are read. Kernel choices (chunkwise_kernel,
 * mode, chunk_size, autocast dtypes, ...) select how upstream computes, not what: they are
 * accepted and ignored. Defaults are those of the respective config class. */
#include "driver/import_xlstm_large.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct Reader {
    const char *path;
    const JsonValue *cfg;
    int errors;
} Reader;

static void error(Reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void error(Reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: error: ", r->path);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    r->errors++;
}

static const JsonValue *get(const Reader *r, const char *key)
{
    const JsonValue *v = json_get(r->cfg, key);
    return v && v->kind != JSON_NULL ? v : NULL;
}

static bool is_null(const Reader *r, const char *key)
{
    const JsonValue *v = json_get(r->cfg, key);
    return v && v->kind == JSON_NULL;
}

static int64_t get_int(Reader *r, const char *key, int64_t def)
{
    const JsonValue *v = get(r, key);
    if (!v) return def;
    if (v->kind == JSON_NUMBER && v->is_int) return v->u.n.i;
    error(r, "'%s' must be an integer", key);
    return def;
}

static double get_num(Reader *r, const char *key, double def)
{
    const JsonValue *v = get(r, key);
    if (!v) return def;
    if (v->kind == JSON_NUMBER) return v->u.n.num;
    error(r, "'%s' must be a number", key);
    return def;
}

static bool get_bool(Reader *r, const char *key, bool def)
{
    const JsonValue *v = get(r, key);
    if (!v) return def;
    if (v->kind == JSON_TRUE || v->kind == JSON_FALSE) return v->kind == JSON_TRUE;
    error(r, "'%s' must be true or false", key);
    return def;
}

static const char *get_str(Reader *r, const char *key, const char *def)
{
    const JsonValue *v = get(r, key);
    if (!v) return def;
    if (v->kind == JSON_STRING) return v->u.s.str;
    error(r, "'%s' must be a string", key);
    return def;
}

/* The first of two spellings that is present (transformers: hidden_size or embedding_dim). */
static const char *either(const Reader *r, const char *a, const char *b)
{
    return get(r, a) || !get(r, b) ? a : b;
}

static bool is_transformers(const JsonValue *cfg)
{
    const JsonValue *t = json_get(cfg, "model_type");
    return t && t->kind == JSON_STRING && strcmp(t->u.s.str, "xlstm") == 0;
}

const JsonValue *xlarge_config_find(const JsonValue *root)
{
    if (!root || root->kind != JSON_OBJECT) return NULL;
    const JsonValue *inner = json_get(root, "official_config");
    const JsonValue *cfg = inner && inner->kind == JSON_OBJECT ? inner : root;
    if (is_transformers(cfg)) return cfg;
    /* keys only xLSTMLargeConfig has (xLSTMLMModelConfig nests its blocks) */
    if (json_get(cfg, "gate_soft_cap") || json_get(cfg, "weight_mode") ||
        json_get(cfg, "output_logit_soft_cap") || json_get(cfg, "qk_dim_factor"))
        return cfg;
    return NULL;
}

/* Keys of xLSTMLargeConfig; `ignored` ones choose kernels or dtypes only. */
static const struct { const char *name; bool ignored; } official_keys[] = {
    {"embedding_dim", false}, {"num_heads", false}, {"num_blocks", false},
    {"vocab_size", false}, {"use_bias", false}, {"norm_eps", false},
    {"norm_reduction_force_float32", true}, {"add_out_norm", false},
    {"qk_dim_factor", false}, {"v_dim_factor", false}, {"chunkwise_kernel", true},
    {"sequence_kernel", true}, {"step_kernel", true}, {"mode", true}, {"chunk_size", true},
    {"return_last_states", true}, {"autocast_kernel_dtype", true}, {"eps", false},
    {"inference_state_dtype", true}, {"ffn_proj_factor", false},
    {"ffn_round_up_to_multiple_of", false}, {"gate_soft_cap", false},
    {"output_logit_soft_cap", false}, {"weight_mode", false},
};

static void put_num(FILE *out, const char *key, double v)
{
    char buf[40];
    if (v == floor(v) && fabs(v) < 1e15) { /* 30.0, not the shortest 3e+01 */
        fprintf(out, "%s = %.1f;\n", key, v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eEn")) strcat(buf, ".0");
    fprintf(out, "%s = %s;\n", key, buf);
}

/* A cap: a number, or null (transformers and upstream use None for "no cap"). */
static void put_cap(Reader *r, FILE *out, const char *indent, const char *key, double def)
{
    fputs(indent, out);
    if (is_null(r, key)) {
        fprintf(out, "%s = none;\n", key);
        return;
    }
    put_num(out, key, get_num(r, key, def));
}

bool xlarge_config_import(const char *path, const JsonValue *cfg, const char *name, FILE *out)
{
    Reader r = {.path = path, .cfg = cfg};
    bool hf = is_transformers(cfg);
    if (!hf) {
        for (size_t i = 0; i < cfg->u.c.count; i++) {
            const char *key = cfg->u.c.items[i].key;
            bool known = false;
            for (size_t k = 0; k < sizeof official_keys / sizeof official_keys[0]; k++)
                known |= strcmp(official_keys[k].name, key) == 0;
            if (!known) error(&r, "unknown key '%s' in an xLSTMLargeConfig", key);
        }
        static const char *const required[] = {"embedding_dim", "num_heads", "num_blocks", "vocab_size"};
        for (int i = 0; i < 4; i++)
            if (!get(&r, required[i])) error(&r, "missing required key '%s'", required[i]);
    }
    /* transformers' defaults are those of NX-AI/xLSTM-7b (D.1) */
    int64_t vocab = get_int(&r, "vocab_size", 50304);
    int64_t dim = get_int(&r, hf ? either(&r, "hidden_size", "embedding_dim") : "embedding_dim", 4096);
    int64_t blocks = get_int(&r, hf ? either(&r, "num_hidden_layers", "num_blocks") : "num_blocks", 32);
    int64_t heads = get_int(&r, "num_heads", 8);
    bool bias = get_bool(&r, "use_bias", false), out_norm = get_bool(&r, "add_out_norm", true);
    bool tie = hf && get_bool(&r, "tie_word_embeddings", false);
    double norm_eps = get_num(&r, "norm_eps", 1e-6), eps = get_num(&r, "eps", 1e-6);
    double qk = get_num(&r, "qk_dim_factor", 0.5), v = get_num(&r, "v_dim_factor", 1.0);
    double ffn = get_num(&r, "ffn_proj_factor", hf ? 2.667 : 2.6667);
    int64_t round = get_int(&r, "ffn_round_up_to_multiple_of", 64);
    const char *mode = get_str(&r, "weight_mode", "single");
    if (strcmp(mode, "single") != 0 && strcmp(mode, "fused") != 0)
        error(&r, "'weight_mode' must be \"single\" or \"fused\", got \"%s\"", mode);
    if (!get_bool(&r, "norm_reduction_force_float32", true))
        error(&r, "'norm_reduction_force_float32' false (norms in the weights' dtype) is not "
              "supported: mxc computes in float32");
    if (r.errors) return false;

    fprintf(out, "model %s {\n", name);
    fprintf(out, "    family = xlstm_large;                # NX-AI xlstm_large parameter names\n");
    fprintf(out, "    vocab_size = %lld;\n", (long long)vocab);
    fprintf(out, "    embedding_dim = %lld;\n", (long long)dim);
    fprintf(out, "    num_blocks = %lld;\n", (long long)blocks);
    fprintf(out, "    use_bias = %s;\n", bias ? "true" : "false");
    fputs("    ", out);
    put_num(out, "norm_eps", norm_eps);
    fprintf(out, "    add_out_norm = %s;\n", out_norm ? "true" : "false");
    if (tie) fprintf(out, "    tie_weights = true;\n");
    put_cap(&r, out, "    ", "output_logit_soft_cap", 30.0);
    fprintf(out, "    mlstm_large {\n");
    fprintf(out, "        num_heads = %lld;\n", (long long)heads);
    fputs("        ", out);
    put_num(out, "qk_dim_factor", qk);
    fputs("        ", out);
    put_num(out, "v_dim_factor", v);
    put_cap(&r, out, "        ", "gate_soft_cap", 15.0);
    fputs("        ", out);
    put_num(out, "eps", eps);
    fputs("        ", out);
    put_num(out, "ffn_proj_factor", ffn);
    fprintf(out, "        ffn_round_up_to_multiple_of = %lld;\n", (long long)round);
    fprintf(out, "        weight_mode = %s;\n", mode);
    fprintf(out, "    }\n}\n");
    return r.errors == 0;
}
