/* check.c - from syntax tree to ModelSpec: keys, types, ranges, defaults and derived sizes.
 *
 * Each place (the model, and the sections mamba, mlstm, slstm, feedforward) has a table of
 * the keys valid there. scope_collect() sorts a place's items into slots of that table,
 * reporting unknown keys (with a suggestion) and duplicates; then the want_* readers read one
 * slot each with its type and range, leaving the default when the key is absent or wrong.
 * Checking goes on after an error, so one run reports as much as it can. The rules and
 * defaults follow the upstream configs (docs/spec-language.md, SEMANTICS.md A.1 and B.1). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/ast.h"
#include "frontend/spec.h"

/* ---- key tables --------------------------------------------------------------------- */

enum { FORM_VALUE = 1, FORM_SECTION = 2 };

typedef struct KeyDef {
    const char *name;
    unsigned forms; /* FORM_VALUE: `key = value;`, FORM_SECTION: `key { ... }` */
} KeyDef;

typedef struct ScopeDef {
    const char *name; /* "model" or the section's name */
    const KeyDef *keys;
    int n_keys;
} ScopeDef;

enum {
    M_FAMILY, M_VOCAB_SIZE, M_PAD_VOCAB, M_D_MODEL, M_EMBEDDING_DIM, M_BLOCKS, M_BLOCK_MAP,
    M_NUM_BLOCKS, M_SLSTM_AT, M_NORM, M_NORM_EPS, M_TIE_WEIGHTS, M_TIE_EMBEDDINGS,
    M_CONTEXT_LENGTH, M_ADD_POST_NORM, M_BIAS, M_WEIGHT_TYPE, M_MAMBA, M_MLSTM, M_SLSTM, M_MAMBA2,
    M_ADD_OUT_NORM, M_USE_BIAS, M_LOGIT_CAP, M_MLSTM_LARGE, M_NKEYS
};
static const KeyDef model_keys[M_NKEYS] = {
    [M_FAMILY] = {"family", FORM_VALUE},
    [M_VOCAB_SIZE] = {"vocab_size", FORM_VALUE},
    [M_PAD_VOCAB] = {"pad_vocab_size_multiple", FORM_VALUE},
    [M_D_MODEL] = {"d_model", FORM_VALUE},
    [M_EMBEDDING_DIM] = {"embedding_dim", FORM_VALUE},
    [M_BLOCKS] = {"blocks", FORM_VALUE},
    [M_BLOCK_MAP] = {"block_map", FORM_VALUE},
    [M_NUM_BLOCKS] = {"num_blocks", FORM_VALUE},
    [M_SLSTM_AT] = {"slstm_at", FORM_VALUE},
    [M_NORM] = {"norm", FORM_VALUE},
    [M_NORM_EPS] = {"norm_eps", FORM_VALUE},
    [M_TIE_WEIGHTS] = {"tie_weights", FORM_VALUE},
    [M_TIE_EMBEDDINGS] = {"tie_embeddings", FORM_VALUE},
    [M_CONTEXT_LENGTH] = {"context_length", FORM_VALUE},
    [M_ADD_POST_NORM] = {"add_post_blocks_norm", FORM_VALUE},
    [M_BIAS] = {"bias", FORM_VALUE},
    [M_WEIGHT_TYPE] = {"weight_type", FORM_VALUE},
    [M_MAMBA] = {"mamba", FORM_SECTION},
    [M_MLSTM] = {"mlstm", FORM_SECTION},
    [M_SLSTM] = {"slstm", FORM_SECTION},
    [M_MAMBA2] = {"mamba2", FORM_SECTION},
    [M_ADD_OUT_NORM] = {"add_out_norm", FORM_VALUE},
    [M_USE_BIAS] = {"use_bias", FORM_VALUE},
    [M_LOGIT_CAP] = {"output_logit_soft_cap", FORM_VALUE},
    [M_MLSTM_LARGE] = {"mlstm_large", FORM_SECTION},
};

enum { MB_D_STATE, MB_D_CONV, MB_EXPAND, MB_DT_RANK, MB_CONV_BIAS, MB_BIAS, MB_D_INTER, MB_NKEYS };
static const KeyDef mamba_keys[MB_NKEYS] = {
    [MB_D_STATE] = {"d_state", FORM_VALUE},
    [MB_D_CONV] = {"d_conv", FORM_VALUE},
    [MB_EXPAND] = {"expand", FORM_VALUE},
    [MB_DT_RANK] = {"dt_rank", FORM_VALUE},
    [MB_CONV_BIAS] = {"conv_bias", FORM_VALUE},
    [MB_BIAS] = {"bias", FORM_VALUE},
    [MB_D_INTER] = {"d_intermediate", FORM_VALUE},
};

enum {
    M2_D_STATE, M2_D_CONV, M2_EXPAND, M2_HEADDIM, M2_NGROUPS, M2_D_SSM, M2_CHUNK, M2_RMSNORM,
    M2_NORM_BEFORE_GATE, M2_D_HAS_HDIM, M2_CONV_BIAS, M2_BIAS, M2_DT_LIMIT, M2_NKEYS
};
static const KeyDef mamba2_keys[M2_NKEYS] = {
    [M2_D_STATE] = {"d_state", FORM_VALUE},
    [M2_D_CONV] = {"d_conv", FORM_VALUE},
    [M2_EXPAND] = {"expand", FORM_VALUE},
    [M2_HEADDIM] = {"headdim", FORM_VALUE},
    [M2_NGROUPS] = {"ngroups", FORM_VALUE},
    [M2_D_SSM] = {"d_ssm", FORM_VALUE},
    [M2_CHUNK] = {"chunk_size", FORM_VALUE},
    [M2_RMSNORM] = {"rmsnorm", FORM_VALUE},
    [M2_NORM_BEFORE_GATE] = {"norm_before_gate", FORM_VALUE},
    [M2_D_HAS_HDIM] = {"D_has_hdim", FORM_VALUE},
    [M2_CONV_BIAS] = {"conv_bias", FORM_VALUE},
    [M2_BIAS] = {"bias", FORM_VALUE},
    [M2_DT_LIMIT] = {"dt_limit", FORM_VALUE},
};

enum { ML_NUM_HEADS, ML_PROJ_FACTOR, ML_CONV, ML_QKV_BLOCK, ML_ROUND_UP, ML_ROUND_TO, ML_NKEYS };
static const KeyDef mlstm_keys[ML_NKEYS] = {
    [ML_NUM_HEADS] = {"num_heads", FORM_VALUE},
    [ML_PROJ_FACTOR] = {"proj_factor", FORM_VALUE},
    [ML_CONV] = {"conv1d_kernel_size", FORM_VALUE},
    [ML_QKV_BLOCK] = {"qkv_proj_blocksize", FORM_VALUE},
    [ML_ROUND_UP] = {"round_proj_up_dim_up", FORM_VALUE},
    [ML_ROUND_TO] = {"round_proj_up_to_multiple_of", FORM_VALUE},
};

enum { SL_NUM_HEADS, SL_CONV, SL_LAYOUT, SL_FEEDFORWARD, SL_NKEYS };
static const KeyDef slstm_keys[SL_NKEYS] = {
    [SL_NUM_HEADS] = {"num_heads", FORM_VALUE},
    [SL_CONV] = {"conv1d_kernel_size", FORM_VALUE},
    [SL_LAYOUT] = {"layout", FORM_VALUE},
    [SL_FEEDFORWARD] = {"feedforward", FORM_VALUE | FORM_SECTION},
};

enum { FF_PROJ_FACTOR, FF_ACT_FN, FF_BIAS, FF_ROUND_UP, FF_ROUND_TO, FF_NKEYS };
static const KeyDef ffn_keys[FF_NKEYS] = {
    [FF_PROJ_FACTOR] = {"proj_factor", FORM_VALUE},
    [FF_ACT_FN] = {"act_fn", FORM_VALUE},
    [FF_BIAS] = {"bias", FORM_VALUE},
    [FF_ROUND_UP] = {"round_proj_up_dim_up", FORM_VALUE},
    [FF_ROUND_TO] = {"round_proj_up_to_multiple_of", FORM_VALUE},
};

enum { XL_NUM_HEADS, XL_QK_FACTOR, XL_V_FACTOR, XL_GATE_CAP, XL_EPS, XL_FFN_FACTOR, XL_FFN_ROUND,
       XL_WEIGHT_MODE, XL_CHUNK, XL_NKEYS };
static const KeyDef mlstm_large_keys[XL_NKEYS] = {
    [XL_NUM_HEADS] = {"num_heads", FORM_VALUE},
    [XL_QK_FACTOR] = {"qk_dim_factor", FORM_VALUE},
    [XL_V_FACTOR] = {"v_dim_factor", FORM_VALUE},
    [XL_GATE_CAP] = {"gate_soft_cap", FORM_VALUE},
    [XL_EPS] = {"eps", FORM_VALUE},
    [XL_FFN_FACTOR] = {"ffn_proj_factor", FORM_VALUE},
    [XL_FFN_ROUND] = {"ffn_round_up_to_multiple_of", FORM_VALUE},
    [XL_WEIGHT_MODE] = {"weight_mode", FORM_VALUE},
    [XL_CHUNK] = {"chunk_size", FORM_VALUE},
};

static const ScopeDef scope_model = {"model", model_keys, M_NKEYS};
static const ScopeDef scope_mamba = {"mamba", mamba_keys, MB_NKEYS};
static const ScopeDef scope_mamba2 = {"mamba2", mamba2_keys, M2_NKEYS};
static const ScopeDef scope_mlstm = {"mlstm", mlstm_keys, ML_NKEYS};
static const ScopeDef scope_slstm = {"slstm", slstm_keys, SL_NKEYS};
static const ScopeDef scope_ffn = {"feedforward", ffn_keys, FF_NKEYS};
static const ScopeDef scope_mlstm_large = {"mlstm_large", mlstm_large_keys, XL_NKEYS};
static const ScopeDef *const all_scopes[] = {
    &scope_model, &scope_mamba, &scope_mamba2, &scope_mlstm, &scope_slstm, &scope_ffn,
    &scope_mlstm_large,
};
#define N_SCOPES (int)(sizeof all_scopes / sizeof all_scopes[0])

enum { MAX_KEYS = M_NKEYS };

/* The items of one place, sorted into the slots of its table (NULL = not given). */
typedef struct Scope {
    const ScopeDef *def;
    const Item *slot[MAX_KEYS];
} Scope;

/* Enumerations as spelled in the language; `alias` entries are accepted but not offered. */
typedef struct EnumName {
    const char *name;
    int value;
    bool alias;
} EnumName;

static const EnumName family_names[] = {{"mamba", FAMILY_MAMBA, false},
                                        {"xlstm", FAMILY_XLSTM, false},
                                        {"xlstm_large", FAMILY_XLSTM_LARGE, false}};
static const EnumName weight_mode_names[] = {{"single", WEIGHT_MODE_SINGLE, false},
                                             {"fused", WEIGHT_MODE_FUSED, false}};
static const EnumName norm_names[] = {{"rmsnorm", NORM_RMSNORM, false},
                                      {"layernorm", NORM_LAYERNORM, false}};
static const EnumName weight_type_names[] = {{"f32", WEIGHT_F32, false},
                                             {"bf16", WEIGHT_BF16, false},
                                             {"f16", WEIGHT_F16, false},
                                             {"q8", WEIGHT_Q8, false}};
static const EnumName layout_names[] = {{"vanilla", SLSTM_LAYOUT_VANILLA, false},
                                        {"cuda", SLSTM_LAYOUT_CUDA, false}};
static const EnumName block_names[] = {{"mamba", BLOCK_MAMBA, false},
                                       {"mlstm", BLOCK_MLSTM, false},
                                       {"slstm", BLOCK_SLSTM, false},
                                       {"mamba2", BLOCK_MAMBA2, false},
                                       {"mlstm_large", BLOCK_MLSTM_LARGE, false}};
static const EnumName act_names[] = {
    {"gelu", ACT_GELU, false},       {"relu", ACT_RELU, false},   {"relu2", ACT_RELU2, false},
    {"relu^2", ACT_RELU2, true},     {"sigmoid", ACT_SIGMOID, false},
    {"swish", ACT_SWISH, false},     {"selu", ACT_SELU, false},
};
#define N_OF(a) (int)(sizeof(a) / sizeof(a)[0])

/* One held-back message: those of a model are printed together, in source order. */
typedef struct Pending {
    DiagLevel level;
    Loc loc;
    char *text;
    Loc head_loc; /* of the error or warning a note belongs to (its own for those) */
    int head_seq, seq;
} Pending;

typedef struct Checker {
    DiagSink *diag;
    const char *dim_key;  /* "d_model" or "embedding_dim", as the model spells it */
    const Item *dim_item;
    unsigned suggested;   /* model keys offered as "did you mean": not reported missing too */
    Pending *pending;
    int n_pending, cap_pending;
} Checker;

/* ---- messages ------------------------------------------------------------------------ */

static void pend(Checker *c, DiagLevel level, Loc loc, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    char *text = ast_alloc((size_t)(n > 0 ? n : 0) + 1);
    vsnprintf(text, (size_t)(n > 0 ? n : 0) + 1, fmt, ap);
    if (c->n_pending == c->cap_pending) {
        c->cap_pending = c->cap_pending ? 2 * c->cap_pending : 16;
        c->pending = realloc(c->pending, (size_t)c->cap_pending * sizeof *c->pending);
        if (!c->pending)
            mxc_die("out of memory");
    }
    Pending *p = &c->pending[c->n_pending];
    *p = (Pending){level, loc, text, loc, c->n_pending, c->n_pending};
    if (level == DIAG_NOTE && c->n_pending > 0) {
        p->head_loc = p[-1].head_loc;
        p->head_seq = p[-1].head_seq;
    }
    c->n_pending++;
}

static int cmp_pending(const void *pa, const void *pb)
{
    const Pending *a = pa, *b = pb;
    if (a->head_loc.line != b->head_loc.line)
        return a->head_loc.line < b->head_loc.line ? -1 : 1;
    if (a->head_loc.col != b->head_loc.col)
        return a->head_loc.col < b->head_loc.col ? -1 : 1;
    if (a->head_seq != b->head_seq)
        return a->head_seq < b->head_seq ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Print the held-back messages, sorted by where their error is. */
static void flush(Checker *c)
{
    if (c->n_pending == 0)
        return;
    qsort(c->pending, (size_t)c->n_pending, sizeof *c->pending, cmp_pending);
    for (int i = 0; i < c->n_pending; i++) {
        diag_report(c->diag, c->pending[i].level, c->pending[i].loc, "%s", c->pending[i].text);
        free(c->pending[i].text);
    }
    c->n_pending = 0;
}

static void error_at(Checker *c, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void error_at(Checker *c, Loc loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pend(c, DIAG_ERROR, loc, fmt, ap);
    va_end(ap);
}

static void warn_at(Checker *c, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void warn_at(Checker *c, Loc loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pend(c, DIAG_WARNING, loc, fmt, ap);
    va_end(ap);
}

static void note_at(Checker *c, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void note_at(Checker *c, Loc loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pend(c, DIAG_NOTE, loc, fmt, ap);
    va_end(ap);
}

/* Optimal string alignment distance (Levenshtein plus adjacent swaps): d_modle -> d_model
 * is 1. Gives up (returns a large number) on very different lengths. */
static int edit_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > m + 3 || m > n + 3 || m > 62)
        return 1000;
    int d[64][64];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++) {
            int cost = a[i - 1] != b[j - 1];
            int best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < best)
                best = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[n][m];
}

/* The candidate closest to `word`, if it is close enough to be a likely typo. */
static const char *closest(const char *word, const char *const *cands, int n)
{
    const char *best = NULL;
    int best_d = 1000;
    for (int i = 0; i < n; i++) {
        int dist = edit_distance(word, cands[i]);
        int allowed = strlen(cands[i]) >= 6 ? 2 : 1;
        if (dist <= allowed && dist < best_d) {
            best = cands[i];
            best_d = dist;
        }
    }
    return best;
}

static const char *closest_key(const char *word, const ScopeDef *def, unsigned forms)
{
    const char *names[MAX_KEYS];
    int n = 0;
    for (int i = 0; i < def->n_keys; i++)
        if (def->keys[i].forms & forms)
            names[n++] = def->keys[i].name;
    return closest(word, names, n);
}

/* User text echoed in a message, cut short: a megabyte-long identifier is still one line. */
enum { CLIP_MAX = 64 };
typedef struct Clip {
    char s[CLIP_MAX + 4];
} Clip;

static Clip clip(const char *text)
{
    Clip c;
    size_t n = strlen(text);
    if (n <= CLIP_MAX) {
        memcpy(c.s, text, n + 1);
    } else {
        memcpy(c.s, text, CLIP_MAX);
        memcpy(c.s + CLIP_MAX, "...", 4);
    }
    return c;
}

/* "a, b or c" into buf. */
static void join_names(char *buf, size_t size, const char *const *names, int n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        const char *sep = i == 0 ? "" : i == n - 1 ? " or " : ", ";
        int w = snprintf(buf + len, size - len, "%s%s", sep, names[i]);
        if (w < 0 || (size_t)w >= size - len)
            return;
        len += (size_t)w;
    }
}

static void join_enum(char *buf, size_t size, const EnumName *names, int n)
{
    const char *list[16];
    int k = 0;
    for (int i = 0; i < n && k < 16; i++)
        if (!names[i].alias)
            list[k++] = names[i].name;
    join_names(buf, size, list, k);
}

static const char *scope_label(const ScopeDef *def, char *buf, size_t size)
{
    if (def == &scope_model)
        snprintf(buf, size, "at model level");
    else
        snprintf(buf, size, "in section '%s'", def->name);
    return buf;
}

/* An unknown name: suggest a close one from this place, else say where it does belong. */
static void report_unknown(Checker *c, const ScopeDef *def, const Item *it)
{
    bool section = it->kind == ITEM_SECTION;
    const char *what = section ? "section" : "key";
    char here[64];
    Clip key = clip(it->key);
    scope_label(def, here, sizeof here);
    const char *near = closest_key(it->key, def, section ? FORM_SECTION : FORM_VALUE);
    if (near) {
        error_at(c, it->loc, "unknown %s '%s' %s; did you mean '%s'?", what, key.s, here, near);
        for (int k = 0; def == &scope_model && k < M_NKEYS; k++)
            if (model_keys[k].name == near)
                c->suggested |= 1u << k;
        return;
    }
    const char *homes[N_SCOPES];
    int n_homes = 0;
    for (int s = 0; s < N_SCOPES; s++) {
        const ScopeDef *other = all_scopes[s];
        if (other == def)
            continue;
        for (int k = 0; k < other->n_keys; k++)
            if (strcmp(other->keys[k].name, it->key) == 0 &&
                (other->keys[k].forms & (section ? FORM_SECTION : FORM_VALUE)))
                homes[n_homes++] = other->name;
    }
    if (n_homes > 0) {
        char list[128];
        join_names(list, sizeof list, homes, n_homes);
        if (n_homes == 1 && homes[0] == scope_model.name)
            error_at(c, it->loc, "unknown %s '%s' %s; it belongs at model level", what, key.s,
                     here);
        else if (n_homes == 1)
            error_at(c, it->loc, "unknown %s '%s' %s; it belongs in section '%s'", what,
                     key.s, here, list);
        else { /* e.g. d_state: sections mamba and mamba2 */
            char quoted[N_SCOPES][40];
            const char *q[N_SCOPES];
            for (int h = 0; h < n_homes; h++) {
                snprintf(quoted[h], sizeof quoted[h], "'%s'", homes[h]);
                q[h] = quoted[h];
            }
            join_names(list, sizeof list, q, n_homes);
            error_at(c, it->loc, "unknown %s '%s' %s; it belongs in section %s", what, key.s,
                     here, list);
        }
        return;
    }
    if (def == &scope_model || section) {
        error_at(c, it->loc, "unknown %s '%s' %s", what, key.s, here);
        return;
    }
    const char *names[MAX_KEYS];
    int n = 0;
    for (int i = 0; i < def->n_keys; i++)
        names[n++] = def->keys[i].name;
    char list[512];
    join_names(list, sizeof list, names, n);
    error_at(c, it->loc, "unknown key '%s' %s; expected %s", key.s, here, list);
}

/* Sort the items of one place into the scope's slots. */
static void scope_collect(Checker *c, Scope *s, const Item *items)
{
    for (const Item *it = items; it; it = it->next) {
        int k = -1;
        for (int i = 0; i < s->def->n_keys; i++)
            if (strcmp(s->def->keys[i].name, it->key) == 0)
                k = i;
        if (k < 0) {
            report_unknown(c, s->def, it);
            continue;
        }
        unsigned forms = s->def->keys[k].forms;
        if (it->kind == ITEM_SECTION && !(forms & FORM_SECTION)) {
            error_at(c, it->loc, "'%s' is a key, not a section; write '%s = value;'", it->key,
                     it->key);
            continue;
        }
        if (it->kind == ITEM_SET && !(forms & FORM_VALUE)) {
            error_at(c, it->loc, "'%s' is a section, not a key; write '%s { ... }'", it->key,
                     it->key);
            continue;
        }
        if (s->slot[k]) {
            bool sec = it->kind == ITEM_SECTION && s->slot[k]->kind == ITEM_SECTION;
            error_at(c, it->loc, "duplicate %s '%s'", sec ? "section" : "key", it->key);
            note_at(c, s->slot[k]->loc, "'%s' was first given here", it->key);
            continue;
        }
        s->slot[k] = it;
    }
}

static bool loc_before(Loc a, Loc b)
{
    return a.line < b.line || (a.line == b.line && a.col < b.col);
}

/* Where to point for a rule broken by a value: the key if the user wrote it, else `dflt`. */
static Loc where(const Item *it, Loc dflt)
{
    return it ? it->loc : dflt;
}

/* ---- typed readers: each reads one slot; absent or wrong leaves *out alone ------------- */

static void type_error(Checker *c, const Item *it, const char *expected)
{
    error_at(c, it->value->loc, "expected %s for '%s', got %s", expected, it->key,
             ast_value_kind_name(it->value->kind));
}

static bool want_int(Checker *c, const Item *it, int64_t lo, int64_t hi, int *out)
{
    if (!it || it->value->kind == VAL_BAD)
        return false;
    const Value *v = it->value;
    if (v->kind != VAL_INT) {
        type_error(c, it, "an integer");
        return false;
    }
    if (v->i < lo) {
        error_at(c, v->loc, "'%s' must be at least %lld, got %lld", it->key, (long long)lo,
                 (long long)v->i);
        return false;
    }
    if (v->i > hi) {
        error_at(c, v->loc, "'%s' must be at most %lld, got %lld", it->key, (long long)hi,
                 (long long)v->i);
        return false;
    }
    *out = (int)v->i;
    return true;
}

/* A positive real number; integers are fine too (`expand = 2`). */
static bool want_number(Checker *c, const Item *it, double hi, double *out)
{
    if (!it || it->value->kind == VAL_BAD)
        return false;
    const Value *v = it->value;
    double f;
    if (v->kind == VAL_INT)
        f = (double)v->i;
    else if (v->kind == VAL_FLOAT)
        f = v->f;
    else {
        type_error(c, it, "a number");
        return false;
    }
    if (!(f > 0)) {
        error_at(c, v->loc, "'%s' must be greater than 0, got %g", it->key, f);
        return false;
    }
    if (f > hi) {
        error_at(c, v->loc, "'%s' must be at most %g, got %g", it->key, hi, f);
        return false;
    }
    *out = f;
    return true;
}

static bool want_bool(Checker *c, const Item *it, bool *out)
{
    if (!it || it->value->kind == VAL_BAD)
        return false;
    if (it->value->kind != VAL_BOOL) {
        type_error(c, it, "true or false");
        return false;
    }
    *out = it->value->i != 0;
    return true;
}

/* An enumeration value: an identifier (or a string, for spellings such as "relu^2"). */
static bool want_enum(Checker *c, const Item *it, const EnumName *names, int n, int *out)
{
    if (!it || it->value->kind == VAL_BAD)
        return false;
    const Value *v = it->value;
    char list[256];
    join_enum(list, sizeof list, names, n);
    if (v->kind != VAL_IDENT && v->kind != VAL_STRING) {
        type_error(c, it, list);
        return false;
    }
    for (int i = 0; i < n; i++) {
        if (strcmp(v->s, names[i].name) == 0) {
            *out = names[i].value;
            return true;
        }
    }
    const char *cands[16];
    int k = 0;
    for (int i = 0; i < n && k < 16; i++)
        if (!names[i].alias)
            cands[k++] = names[i].name;
    const char *near = closest(v->s, cands, k);
    if (near)
        error_at(c, v->loc, "invalid value '%s' for '%s'; did you mean '%s'? (expected %s)",
                 clip(v->s).s, it->key, near, list);
    else
        error_at(c, v->loc, "invalid value '%s' for '%s'; expected %s", clip(v->s).s, it->key,
                 list);
    return false;
}

static int enum_lookup(const EnumName *names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i].name) == 0)
            return names[i].value;
    return -1;
}

/* ---- the block stack ----------------------------------------------------------------- */

typedef struct Stack {
    BlockKind *kinds;
    int n;
} Stack;

static void stack_push(Stack *st, BlockKind k, int count)
{
    st->kinds = realloc(st->kinds, (size_t)(st->n + count) * sizeof *st->kinds);
    if (!st->kinds)
        mxc_die("out of memory");
    for (int i = 0; i < count; i++)
        st->kinds[st->n++] = k;
}

/* blocks = [mlstm, slstm, mlstm * 2] */
static bool read_block_list(Checker *c, const Item *it, Stack *st)
{
    const Value *v = it->value;
    if (v->kind == VAL_BAD)
        return false;
    if (v->kind != VAL_LIST) {
        type_error(c, it, "a list of blocks such as [mamba * 2]");
        return false;
    }
    if (v->n_elems == 0) {
        error_at(c, v->loc, "'blocks' is empty; a model needs at least one block");
        return false;
    }
    bool ok = true;
    for (int i = 0; i < v->n_elems; i++) {
        const Value *e = v->elems[i];
        if (e->kind == VAL_BAD) {
            ok = false;
            continue;
        }
        if (e->kind != VAL_IDENT && e->kind != VAL_REPEAT) {
            error_at(c, e->loc, "expected a block kind (mamba, mamba2, mlstm, slstm or "
                     "mlstm_large), got %s",
                     ast_value_kind_name(e->kind));
            ok = false;
            continue;
        }
        int kind = enum_lookup(block_names, N_OF(block_names), e->s);
        if (kind < 0) {
            const char *cands[] = {"mamba", "mamba2", "mlstm", "slstm", "mlstm_large"};
            const char *near = closest(e->s, cands, 5);
            if (near)
                error_at(c, e->loc, "unknown block kind '%s'; did you mean '%s'?", clip(e->s).s,
                         near);
            else
                error_at(c, e->loc, "unknown block kind '%s'; expected mamba, mamba2, mlstm, "
                         "slstm or mlstm_large",
                         clip(e->s).s);
            ok = false;
        }
        int64_t count = 1;
        if (e->kind == VAL_REPEAT) {
            count = e->i;
            if (count < 1 || count > SPEC_BLOCKS_MAX) {
                error_at(c, e->count_loc, "repeat count must be between 1 and %d, got %lld",
                         SPEC_BLOCKS_MAX, (long long)count);
                ok = false;
                continue;
            }
        }
        if (!ok)
            continue;
        if (st->n + count > SPEC_BLOCKS_MAX) {
            error_at(c, e->loc, "too many blocks (at most %d)", SPEC_BLOCKS_MAX);
            return false;
        }
        stack_push(st, (BlockKind)kind, (int)count);
    }
    return ok;
}

/* block_map = "msmm" (the xLSTM shorthand: m = mLSTM, s = sLSTM). */
static bool read_block_map(Checker *c, const Item *it, Stack *st)
{
    const Value *v = it->value;
    if (v->kind == VAL_BAD)
        return false;
    if (v->kind != VAL_STRING) {
        type_error(c, it, "a string of 'm' and 's' such as \"msmm\"");
        return false;
    }
    size_t n = strlen(v->s);
    if (n == 0) {
        error_at(c, v->loc, "'block_map' is empty; a model needs at least one block");
        return false;
    }
    if (n > SPEC_BLOCKS_MAX) {
        error_at(c, v->loc, "too many blocks (at most %d)", SPEC_BLOCKS_MAX);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = v->s[i];
        if (ch != 'm' && ch != 's') {
            Loc at = {v->loc.file, v->loc.line, v->loc.col + 1 + (int)i};
            if (ch > 0x20 && ch < 0x7f)
                error_at(c, at, "invalid character '%c' in 'block_map'; expected 'm' (mLSTM) or "
                         "'s' (sLSTM)", ch);
            else
                error_at(c, at, "invalid character in 'block_map'; expected 'm' (mLSTM) or "
                         "'s' (sLSTM)");
            return false;
        }
    }
    for (size_t i = 0; i < n; i++)
        stack_push(st, v->s[i] == 's' ? BLOCK_SLSTM : BLOCK_MLSTM, 1);
    return true;
}

/* num_blocks = 4; slstm_at = [1] (or `all`): block i is sLSTM iff i is listed. */
static bool read_num_blocks(Checker *c, const Item *nb, const Item *at, BlockKind plain,
                            Stack *st)
{
    int n = 0;
    if (!want_int(c, nb, 1, SPEC_BLOCKS_MAX, &n))
        return false;
    bool *is_s = ast_alloc((size_t)n * sizeof *is_s);
    bool ok = true;
    if (at && at->value->kind == VAL_BAD) {
        ok = false;
    } else if (at && at->value->kind == VAL_IDENT) {
        if (strcmp(at->value->s, "all") == 0) {
            for (int i = 0; i < n; i++)
                is_s[i] = true;
        } else {
            error_at(c, at->value->loc, "invalid value '%s' for 'slstm_at'; expected a list of "
                     "block indices or 'all'", clip(at->value->s).s);
            ok = false;
        }
    } else if (at && at->value->kind != VAL_LIST) {
        type_error(c, at, "a list of block indices or 'all'");
        ok = false;
    } else if (at) {
        const Value *v = at->value;
        for (int i = 0; i < v->n_elems; i++) {
            const Value *e = v->elems[i];
            if (e->kind == VAL_BAD) {
                ok = false;
            } else if (e->kind != VAL_INT) {
                error_at(c, e->loc, "expected a block index (an integer), got %s",
                         ast_value_kind_name(e->kind));
                ok = false;
            } else if (e->i < 0 || e->i >= n) {
                error_at(c, e->loc, "block index %lld is out of range: num_blocks is %d, so "
                         "indices go from 0 to %d", (long long)e->i, n, n - 1);
                ok = false;
            } else if (is_s[e->i]) {
                error_at(c, e->loc, "block index %lld is listed twice", (long long)e->i);
                ok = false;
            } else {
                is_s[e->i] = true;
            }
        }
    }
    if (ok)
        for (int i = 0; i < n; i++)
            stack_push(st, is_s[i] ? BLOCK_SLSTM : plain, 1);
    free(is_s);
    return ok;
}

/* Exactly one of the three forms gives the stack. */
static bool check_blocks(Checker *c, const Scope *s, ModelSpec *m)
{
    static const int form_keys[] = {M_BLOCKS, M_BLOCK_MAP, M_NUM_BLOCKS};
    const Item *first = NULL;
    bool ok = true;
    for (int i = 0; i < 3; i++) {
        const Item *it = s->slot[form_keys[i]];
        if (!it)
            continue;
        if (!first) {
            first = it;
            continue;
        }
        /* Report the later of the two in source order. */
        const Item *a = first, *b = it;
        if (loc_before(b->loc, a->loc)) {
            a = it;
            b = first;
        }
        error_at(c, b->loc, "'%s' and '%s' both give the block stack; use only one of them",
                 b->key, a->key);
        note_at(c, a->loc, "'%s' is set here", a->key);
        ok = false;
    }
    const Item *at = s->slot[M_SLSTM_AT];
    /* xLSTM-large stacks are all mLSTM-large blocks: num_blocks alone gives them. */
    bool large = m->family == FAMILY_XLSTM_LARGE;
    if (at && large) {
        error_at(c, at->loc, "'slstm_at' does not apply to family xlstm_large (its blocks are all "
                 "mlstm_large); use 'blocks' for a mixed stack");
        ok = false;
    } else if (at && !s->slot[M_NUM_BLOCKS]) {
        error_at(c, at->loc, "'slstm_at' needs 'num_blocks' (the block stack is then num_blocks "
                 "mLSTM blocks, with sLSTM at the listed indices)");
        ok = false;
    }
    if (!first && (c->suggested & (1u << M_BLOCKS | 1u << M_BLOCK_MAP | 1u << M_NUM_BLOCKS)))
        return false;
    if (!first) {
        error_at(c, m->loc, "missing block stack: set 'blocks', 'block_map' or 'num_blocks'");
        return false;
    }
    if (!ok)
        return false;

    Stack st = {0};
    if (first == s->slot[M_BLOCKS])
        ok = read_block_list(c, first, &st);
    else if (first == s->slot[M_BLOCK_MAP])
        ok = read_block_map(c, first, &st);
    else
        ok = read_num_blocks(c, first, at, large ? BLOCK_MLSTM_LARGE : BLOCK_MLSTM, &st);
    if (!ok) {
        free(st.kinds);
        return false;
    }
    m->blocks = st.kinds;
    m->n_blocks = st.n;
    return true;
}

/* ---- sections ------------------------------------------------------------------------ */

/* Upstream's rounding of an up-projection (xlstm utils: _set_proj_up_dim):
 * (int)(ceil_or_floor(factor * d / multiple) * multiple). -1 when over SPEC_DIM_MAX. */
static int64_t proj_up_dim(double factor, int d, int multiple, bool up)
{
    double q = factor * (double)d / (double)multiple;
    q = up ? ceil(q) : floor(q);
    double r = q * (double)multiple;
    if (!(r <= SPEC_DIM_MAX))
        return -1;
    return (int64_t)r;
}

static void mamba_defaults(MambaSpec *mb, Loc loc)
{
    *mb = (MambaSpec){.d_state = 16, .d_conv = 4, .expand = 2.0, .conv_bias = true, .loc = loc};
}

static void mlstm_defaults(MlstmSpec *ml, Loc loc)
{
    *ml = (MlstmSpec){.num_heads = 4, .proj_factor = 2.0, .conv1d_kernel_size = 4,
                      .qkv_proj_blocksize = 4, .round_proj_up_dim_up = true,
                      .round_proj_up_to_multiple_of = 64, .loc = loc};
}

static void ffn_defaults(FfnSpec *ff, Loc loc)
{
    *ff = (FfnSpec){.proj_factor = 1.3, .act_fn = ACT_GELU, .round_proj_up_dim_up = true,
                    .round_proj_up_to_multiple_of = 64, .loc = loc};
}

static void slstm_defaults(SlstmSpec *sl, Loc loc)
{
    *sl = (SlstmSpec){.num_heads = 4, .conv1d_kernel_size = 4, .layout = SLSTM_LAYOUT_VANILLA,
                      .feedforward = true, .loc = loc};
    ffn_defaults(&sl->ffn, loc);
}

static void warn_unused(Checker *c, const Item *sec, const char *kind)
{
    if (sec)
        warn_at(c, sec->loc, "section '%s' has no effect: the model has no %s block", sec->key,
                kind);
}

static void check_mamba(Checker *c, const Item *sec, ModelSpec *m, bool used)
{
    MambaSpec *mb = &m->mamba;
    Scope s = {.def = &scope_mamba};
    mamba_defaults(mb, sec ? sec->loc : m->loc);
    if (sec)
        scope_collect(c, &s, sec->body);
    want_int(c, s.slot[MB_D_STATE], 1, SPEC_DIM_MAX, &mb->d_state);
    want_int(c, s.slot[MB_D_CONV], 1, SPEC_KERNEL_MAX, &mb->d_conv);
    want_number(c, s.slot[MB_EXPAND], SPEC_FACTOR_MAX, &mb->expand);
    want_bool(c, s.slot[MB_CONV_BIAS], &mb->conv_bias);
    want_bool(c, s.slot[MB_BIAS], &mb->bias);
    want_int(c, s.slot[MB_D_INTER], 0, SPEC_DIM_MAX, &mb->d_intermediate);
    const Item *dt = s.slot[MB_DT_RANK];
    int dt_rank = 0; /* 0 = auto */
    if (dt && dt->value->kind == VAL_IDENT) {
        if (strcmp(dt->value->s, "auto") != 0)
            error_at(c, dt->value->loc, "invalid value '%s' for 'dt_rank'; expected 'auto' or a "
                     "positive integer", clip(dt->value->s).s);
    } else if (dt && dt->value->kind != VAL_INT && dt->value->kind != VAL_BAD) {
        type_error(c, dt, "'auto' or an integer");
    } else {
        want_int(c, dt, 1, SPEC_DIM_MAX, &dt_rank);
    }

    if (!used) {
        warn_unused(c, sec, "Mamba");
        mamba_defaults(mb, m->loc);
        return;
    }
    if (m->d_model <= 0)
        return; /* already reported */
    double inner = floor(mb->expand * (double)m->d_model); /* Python int(): truncation */
    if (inner < 1 || inner > SPEC_DIM_MAX) {
        error_at(c, where(s.slot[MB_EXPAND], mb->loc), "d_inner = int(expand * %s) = %.0f is out "
                 "of range (1 to %d)", c->dim_key, inner, SPEC_DIM_MAX);
        return;
    }
    mb->d_inner = (int)inner;
    mb->dt_rank = dt_rank > 0 ? dt_rank : (m->d_model + 15) / 16;
    mb->mlp_hidden = (mb->d_intermediate + 127) / 128 * 128;
}

static void mamba2_defaults(Mamba2Spec *m2, Loc loc)
{
    *m2 = (Mamba2Spec){.d_state = 128, .d_conv = 4, .expand = 2.0, .headdim = 64, .ngroups = 1,
                       .chunk_size = 256, .rmsnorm = true, .conv_bias = true,
                       .dt_limit = {0.0, INFINITY}, .loc = loc};
}

/* One bound of dt_limit: a number >= 0, or `inf`. */
static bool want_limit(Checker *c, const Value *v, double *out)
{
    if (v->kind == VAL_BAD)
        return false;
    double f;
    if (v->kind == VAL_INT)
        f = (double)v->i;
    else if (v->kind == VAL_FLOAT)
        f = v->f;
    else if (v->kind == VAL_IDENT && strcmp(v->s, "inf") == 0)
        f = INFINITY;
    else {
        error_at(c, v->loc, "expected a number or 'inf' in 'dt_limit', got %s",
                 ast_value_kind_name(v->kind));
        return false;
    }
    if (!(f >= 0)) {
        error_at(c, v->loc, "the bounds of 'dt_limit' must be at least 0, got %g", f);
        return false;
    }
    *out = f;
    return true;
}

/* dt_limit = [lo, hi]: the clamp of Δ after softplus (upstream's tuple). */
static void want_dt_limit(Checker *c, const Item *it, double out[2])
{
    if (!it || it->value->kind == VAL_BAD)
        return;
    const Value *v = it->value;
    if (v->kind != VAL_LIST || v->n_elems != 2) {
        error_at(c, v->loc, "expected a list of two bounds such as [0.0, inf] for 'dt_limit', "
                 "got %s", v->kind == VAL_LIST ? "a list of another length" :
                 ast_value_kind_name(v->kind));
        return;
    }
    double lim[2];
    if (!want_limit(c, v->elems[0], &lim[0]) || !want_limit(c, v->elems[1], &lim[1]))
        return;
    if (!(lim[0] < lim[1])) {
        error_at(c, v->loc, "'dt_limit' must have its lower bound below its upper bound, got "
                 "[%g, %g]", lim[0], lim[1]);
        return;
    }
    out[0] = lim[0];
    out[1] = lim[1];
}

/* The rules of Mamba2.__init__ and of its kernels (SEMANTICS-mamba2.md C.1): d_ssm <=
 * d_inner, headdim divides d_ssm, ngroups divides the heads. */
static void check_mamba2(Checker *c, const Item *sec, ModelSpec *m, bool used)
{
    Mamba2Spec *m2 = &m->mamba2;
    Scope s = {.def = &scope_mamba2};
    mamba2_defaults(m2, sec ? sec->loc : m->loc);
    if (sec)
        scope_collect(c, &s, sec->body);
    want_int(c, s.slot[M2_D_STATE], 1, SPEC_DIM_MAX, &m2->d_state);
    want_int(c, s.slot[M2_D_CONV], 1, SPEC_KERNEL_MAX, &m2->d_conv);
    want_number(c, s.slot[M2_EXPAND], SPEC_FACTOR_MAX, &m2->expand);
    want_int(c, s.slot[M2_HEADDIM], 1, SPEC_DIM_MAX, &m2->headdim);
    want_int(c, s.slot[M2_NGROUPS], 1, SPEC_DIM_MAX, &m2->ngroups);
    const Item *dssm = s.slot[M2_D_SSM];
    if (dssm && dssm->value->kind == VAL_IDENT) {
        if (strcmp(dssm->value->s, "auto") != 0)
            error_at(c, dssm->value->loc, "invalid value '%s' for 'd_ssm'; expected 'auto' (= "
                     "d_inner) or a positive integer", clip(dssm->value->s).s);
    } else if (dssm && dssm->value->kind != VAL_INT && dssm->value->kind != VAL_BAD) {
        type_error(c, dssm, "'auto' or an integer");
    } else {
        want_int(c, dssm, 1, SPEC_DIM_MAX, &m2->d_ssm_arg);
    }
    want_int(c, s.slot[M2_CHUNK], 1, SPEC_DIM_MAX, &m2->chunk_size);
    want_bool(c, s.slot[M2_RMSNORM], &m2->rmsnorm);
    want_bool(c, s.slot[M2_NORM_BEFORE_GATE], &m2->norm_before_gate);
    want_bool(c, s.slot[M2_D_HAS_HDIM], &m2->D_has_hdim);
    want_bool(c, s.slot[M2_CONV_BIAS], &m2->conv_bias);
    want_bool(c, s.slot[M2_BIAS], &m2->bias);
    want_dt_limit(c, s.slot[M2_DT_LIMIT], m2->dt_limit);

    if (!used) {
        warn_unused(c, sec, "Mamba-2");
        mamba2_defaults(m2, m->loc);
        return;
    }
    if (m->d_model <= 0)
        return;
    double inner = floor(m2->expand * (double)m->d_model); /* Python int(): truncation */
    if (inner < 1 || inner > SPEC_DIM_MAX) {
        error_at(c, where(s.slot[M2_EXPAND], m2->loc), "d_inner = int(expand * %s) = %.0f is "
                 "out of range (1 to %d)", c->dim_key, inner, SPEC_DIM_MAX);
        return;
    }
    int di = (int)inner;
    int d_ssm = m2->d_ssm_arg > 0 ? m2->d_ssm_arg : di;
    if (d_ssm > di) {
        error_at(c, where(dssm, m2->loc), "d_ssm (%d) must be at most d_inner = int(expand * "
                 "%s) = %d", d_ssm, c->dim_key, di);
        return;
    }
    if (d_ssm % m2->headdim != 0) {
        error_at(c, where(s.slot[M2_HEADDIM], m2->loc), "Mamba-2 headdim (%d) does not divide "
                 "d_ssm %d%s", m2->headdim, d_ssm, m2->d_ssm_arg > 0 ? "" : " (= d_inner)");
        return;
    }
    int heads = d_ssm / m2->headdim;
    if (heads % m2->ngroups != 0) {
        error_at(c, where(s.slot[M2_NGROUPS], m2->loc), "Mamba-2 ngroups (%d) does not divide "
                 "the %d heads (d_ssm %d / headdim %d)", m2->ngroups, heads, d_ssm, m2->headdim);
        return;
    }
    int64_t gn = (int64_t)m2->ngroups * m2->d_state;
    int64_t conv_dim = d_ssm + 2 * gn, in_proj = 2 * (int64_t)di + 2 * gn + heads;
    if (in_proj > SPEC_DIM_MAX) {
        error_at(c, where(s.slot[M2_D_STATE], m2->loc), "the Mamba-2 in_proj width 2 d_inner + "
                 "2 ngroups d_state + heads = %lld is too large (at most %d)",
                 (long long)in_proj, SPEC_DIM_MAX);
        return;
    }
    m2->d_inner = di;
    m2->d_ssm = d_ssm;
    m2->nheads = heads;
    m2->d_mlp = di - d_ssm;
    m2->conv_dim = (int)conv_dim;
    m2->d_in_proj = (int)in_proj;
}

static void check_mlstm(Checker *c, const Item *sec, ModelSpec *m, bool used)
{
    MlstmSpec *ml = &m->mlstm;
    Scope s = {.def = &scope_mlstm};
    mlstm_defaults(ml, sec ? sec->loc : m->loc);
    if (sec)
        scope_collect(c, &s, sec->body);
    want_int(c, s.slot[ML_NUM_HEADS], 1, SPEC_DIM_MAX, &ml->num_heads);
    want_number(c, s.slot[ML_PROJ_FACTOR], SPEC_FACTOR_MAX, &ml->proj_factor);
    want_int(c, s.slot[ML_CONV], 1, SPEC_KERNEL_MAX, &ml->conv1d_kernel_size);
    want_int(c, s.slot[ML_QKV_BLOCK], 1, SPEC_DIM_MAX, &ml->qkv_proj_blocksize);
    want_bool(c, s.slot[ML_ROUND_UP], &ml->round_proj_up_dim_up);
    want_int(c, s.slot[ML_ROUND_TO], 1, SPEC_DIM_MAX, &ml->round_proj_up_to_multiple_of);

    if (!used) {
        warn_unused(c, sec, "mLSTM");
        mlstm_defaults(ml, m->loc);
        return;
    }
    if (m->d_model <= 0)
        return;
    int64_t inner = proj_up_dim(ml->proj_factor, m->d_model, ml->round_proj_up_to_multiple_of,
                                ml->round_proj_up_dim_up);
    Loc factor_loc = where(s.slot[ML_PROJ_FACTOR], ml->loc);
    if (inner < 0) {
        error_at(c, factor_loc, "the mLSTM inner dimension proj_factor * %s is too large (at "
                 "most %d)", c->dim_key, SPEC_DIM_MAX);
        return;
    }
    if (inner == 0) {
        error_at(c, factor_loc, "the mLSTM inner dimension floor(%g * %d / %d) * %d is 0",
                 ml->proj_factor, m->d_model, ml->round_proj_up_to_multiple_of,
                 ml->round_proj_up_to_multiple_of);
        return;
    }
    ml->inner_dim = (int)inner;
    bool ok = true;
    if (ml->inner_dim % ml->num_heads != 0) {
        error_at(c, where(s.slot[ML_NUM_HEADS], factor_loc), "mLSTM num_heads (%d) does not "
                 "divide the inner dimension %d (%s %d * proj_factor %g, rounded %s to a "
                 "multiple of %d)", ml->num_heads, ml->inner_dim, c->dim_key, m->d_model,
                 ml->proj_factor, ml->round_proj_up_dim_up ? "up" : "down",
                 ml->round_proj_up_to_multiple_of);
        ok = false;
    }
    if (ml->inner_dim % ml->qkv_proj_blocksize != 0) {
        error_at(c, where(s.slot[ML_QKV_BLOCK], factor_loc), "qkv_proj_blocksize (%d) does not "
                 "divide the mLSTM inner dimension %d", ml->qkv_proj_blocksize, ml->inner_dim);
        ok = false;
    }
    if (ok)
        ml->head_dim = ml->inner_dim / ml->num_heads;
}

static void check_ffn(Checker *c, const Item *sec, ModelSpec *m, bool used)
{
    FfnSpec *ff = &m->slstm.ffn;
    Scope s = {.def = &scope_ffn};
    ffn_defaults(ff, sec ? sec->loc : m->slstm.loc);
    if (sec)
        scope_collect(c, &s, sec->body);
    want_number(c, s.slot[FF_PROJ_FACTOR], SPEC_FACTOR_MAX, &ff->proj_factor);
    int act = ff->act_fn;
    if (want_enum(c, s.slot[FF_ACT_FN], act_names, N_OF(act_names), &act))
        ff->act_fn = (ActFn)act;
    want_bool(c, s.slot[FF_BIAS], &ff->bias);
    want_bool(c, s.slot[FF_ROUND_UP], &ff->round_proj_up_dim_up);
    want_int(c, s.slot[FF_ROUND_TO], 1, SPEC_DIM_MAX, &ff->round_proj_up_to_multiple_of);
    if (!used || m->d_model <= 0)
        return;
    int64_t inner = proj_up_dim(ff->proj_factor, m->d_model, ff->round_proj_up_to_multiple_of,
                                ff->round_proj_up_dim_up);
    Loc factor_loc = where(s.slot[FF_PROJ_FACTOR], ff->loc);
    if (inner < 0)
        error_at(c, factor_loc, "the feed-forward inner dimension proj_factor * %s is too "
                 "large (at most %d)", c->dim_key, SPEC_DIM_MAX);
    else if (inner == 0)
        error_at(c, factor_loc, "the feed-forward inner dimension floor(%g * %d / %d) * %d is 0",
                 ff->proj_factor, m->d_model, ff->round_proj_up_to_multiple_of,
                 ff->round_proj_up_to_multiple_of);
    else
        ff->inner_dim = (int)inner;
}

static void check_slstm(Checker *c, const Item *sec, ModelSpec *m, bool used)
{
    SlstmSpec *sl = &m->slstm;
    Scope s = {.def = &scope_slstm};
    slstm_defaults(sl, sec ? sec->loc : m->loc);
    if (sec)
        scope_collect(c, &s, sec->body);
    want_int(c, s.slot[SL_NUM_HEADS], 1, SPEC_DIM_MAX, &sl->num_heads);
    want_int(c, s.slot[SL_CONV], 0, SPEC_KERNEL_MAX, &sl->conv1d_kernel_size);
    int layout = sl->layout;
    if (want_enum(c, s.slot[SL_LAYOUT], layout_names, N_OF(layout_names), &layout))
        sl->layout = (SlstmLayout)layout;
    const Item *ff = s.slot[SL_FEEDFORWARD];
    if (ff && ff->kind == ITEM_SET)
        want_bool(c, ff, &sl->feedforward);
    check_ffn(c, ff && ff->kind == ITEM_SECTION ? ff : NULL, m, used && sl->feedforward);
    if (!sl->feedforward)
        ffn_defaults(&sl->ffn, sl->loc);

    if (!used) {
        warn_unused(c, sec, "sLSTM");
        slstm_defaults(sl, m->loc);
        return;
    }
    if (m->d_model <= 0)
        return;
    if (m->d_model % sl->num_heads != 0) {
        Loc at = where(s.slot[SL_NUM_HEADS], where(c->dim_item, sl->loc));
        error_at(c, at, "sLSTM num_heads (%d) does not divide %s %d", sl->num_heads, c->dim_key,
                 m->d_model);
        return;
    }
    sl->head_dim = m->d_model / sl->num_heads;
}

/* The mLSTM cell's chunk length: `auto` (stored as SPEC_CHUNK_AUTO: the compiler chooses by
 * cost), or 0 … 256 (0 and 1: the recurrent form). */
static void want_chunk(Checker *c, const Item *it, int *out)
{
    if (it && it->value->kind == VAL_IDENT) {
        if (strcmp(it->value->s, "auto") == 0)
            *out = SPEC_CHUNK_AUTO;
        else
            error_at(c, it->value->loc, "invalid value '%s' for '%s'; expected an integer "
                     "0 … %d or 'auto'", clip(it->value->s).s, it->key, SPEC_MLSTM_CHUNK_MAX);
        return;
    }
    want_int(c, it, 0, SPEC_MLSTM_CHUNK_MAX, out);
}

/* A soft cap: a positive number, or `none` (no cap; stored as 0). */
static void want_cap(Checker *c, const Item *it, double *out)
{
    if (it && it->value->kind == VAL_IDENT) {
        if (strcmp(it->value->s, "none") == 0)
            *out = 0;
        else
            error_at(c, it->value->loc, "invalid value '%s' for '%s'; expected a positive number "
                     "or 'none'", clip(it->value->s).s, it->key);
        return;
    }
    if (it && it->value->kind != VAL_INT && it->value->kind != VAL_FLOAT &&
        it->value->kind != VAL_BAD) {
        type_error(c, it, "a number or 'none'");
        return;
    }
    want_number(c, it, 1e6, out);
}

/* Python's float floor division a // b (b > 0), which upstream's FFN rounding uses:
 * floor((a - fmod(a, b)) / b), corrected the way CPython's float_floor_div does. */
static double py_floordiv(double a, double b)
{
    double mod = fmod(a, b);
    double div = (a - mod) / b;
    if (mod != 0 && (b < 0) != (mod < 0))
        div -= 1.0;
    double fl = floor(div);
    if (div - fl > 0.5)
        fl += 1.0;
    return fl;
}

static void mlstm_large_defaults(MlstmLargeSpec *xl, Loc loc)
{
    *xl = (MlstmLargeSpec){.qk_dim_factor = 0.5, .v_dim_factor = 1.0, .gate_soft_cap = 15.0,
                           .eps = 1e-6, .ffn_proj_factor = 2.6667,
                           .ffn_round_up_to_multiple_of = 64, .weight_mode = WEIGHT_MODE_SINGLE,
                           .chunk_size = SPEC_CHUNK_AUTO, .loc = loc};
}

/* The xLSTM-large block (SEMANTICS-xlstm-large D.1): qk_dim = int(E * qk_dim_factor),
 * v_dim = int(E * v_dim_factor), no rounding, both divided by num_heads; the FFN width is
 * int(((E * ffn_proj_factor + m - 1) // m) * m) in Python floats. */
static void check_mlstm_large(Checker *c, const Item *sec, ModelSpec *m, bool used)
{
    MlstmLargeSpec *xl = &m->mlstm_large;
    Scope s = {.def = &scope_mlstm_large};
    mlstm_large_defaults(xl, sec ? sec->loc : m->loc);
    if (sec)
        scope_collect(c, &s, sec->body);
    bool have_heads = want_int(c, s.slot[XL_NUM_HEADS], 1, SPEC_DIM_MAX, &xl->num_heads);
    want_number(c, s.slot[XL_QK_FACTOR], SPEC_FACTOR_MAX, &xl->qk_dim_factor);
    want_number(c, s.slot[XL_V_FACTOR], SPEC_FACTOR_MAX, &xl->v_dim_factor);
    want_cap(c, s.slot[XL_GATE_CAP], &xl->gate_soft_cap);
    want_number(c, s.slot[XL_EPS], 1.0, &xl->eps);
    want_number(c, s.slot[XL_FFN_FACTOR], SPEC_FACTOR_MAX, &xl->ffn_proj_factor);
    want_int(c, s.slot[XL_FFN_ROUND], 1, SPEC_DIM_MAX, &xl->ffn_round_up_to_multiple_of);
    int mode = xl->weight_mode;
    if (want_enum(c, s.slot[XL_WEIGHT_MODE], weight_mode_names, N_OF(weight_mode_names), &mode))
        xl->weight_mode = (WeightMode)mode;
    want_chunk(c, s.slot[XL_CHUNK], &xl->chunk_size);

    if (!used) {
        warn_unused(c, sec, "mlstm_large");
        mlstm_large_defaults(xl, m->loc);
        return;
    }
    if (!s.slot[XL_NUM_HEADS]) {
        error_at(c, sec ? sec->loc : m->loc, "missing required key 'num_heads' in section "
                 "'mlstm_large' (the model has mlstm_large blocks)");
        return;
    }
    if (!have_heads || m->d_model <= 0)
        return; /* already reported */
    double e = (double)m->d_model;
    double qk = floor(e * xl->qk_dim_factor), v = floor(e * xl->v_dim_factor);
    const char *names[2] = {"qk_dim_factor", "v_dim_factor"};
    double dims[2] = {qk, v};
    double factors[2] = {xl->qk_dim_factor, xl->v_dim_factor};
    const Item *keys[2] = {s.slot[XL_QK_FACTOR], s.slot[XL_V_FACTOR]};
    bool ok = true;
    for (int i = 0; i < 2; i++) {
        Loc at = where(keys[i], xl->loc);
        if (dims[i] < 1 || dims[i] > SPEC_DIM_MAX) {
            error_at(c, at, "int(%s %d * %s %g) = %.0f is out of range (1 to %d)", c->dim_key,
                     m->d_model, names[i], factors[i], dims[i], SPEC_DIM_MAX);
            ok = false;
        } else if ((int64_t)dims[i] % xl->num_heads != 0) {
            error_at(c, where(s.slot[XL_NUM_HEADS], at), "mlstm_large num_heads (%d) does not "
                     "divide %s = int(%s %d * %s %g) = %.0f", xl->num_heads,
                     i == 0 ? "qk_dim" : "v_dim", c->dim_key, m->d_model, names[i], factors[i],
                     dims[i]);
            ok = false;
        }
    }
    double mult = xl->ffn_round_up_to_multiple_of;
    double ffn = py_floordiv(e * xl->ffn_proj_factor + mult - 1, mult) * mult;
    if (ffn < 1 || ffn > SPEC_DIM_MAX) {
        error_at(c, where(s.slot[XL_FFN_FACTOR], xl->loc), "the feed-forward width (%s %d * "
                 "ffn_proj_factor %g, rounded up to a multiple of %d) is %.0f, out of range (1 "
                 "to %d)", c->dim_key, m->d_model, xl->ffn_proj_factor,
                 xl->ffn_round_up_to_multiple_of, ffn, SPEC_DIM_MAX);
        ok = false;
    }
    if (!ok)
        return;
    xl->qk_dim = (int)qk;
    xl->v_dim = (int)v;
    xl->qk_head_dim = xl->qk_dim / xl->num_heads;
    xl->v_head_dim = xl->v_dim / xl->num_heads;
    xl->ffn_dim = (int)ffn;
}

/* ---- the model ----------------------------------------------------------------------- */

/* d_model / embedding_dim are one key under two names; so are tie_weights / tie_embeddings.
 * Both may be given only with the same value. Returns the item to read (a wrongly typed one
 * first, so that its reader reports it); *clash tells whether the values differed. */
static const Item *pick_alias(Checker *c, const Item *a, const Item *b, ValueKind kind,
                              bool *clash)
{
    *clash = false;
    if (!a || !b)
        return a ? a : b;
    if (a->value->kind != kind)
        return a;
    if (b->value->kind != kind)
        return b;
    if (a->value->i != b->value->i) {
        const Item *early = loc_before(a->loc, b->loc) ? a : b, *late = early == a ? b : a;
        error_at(c, late->loc, "'%s' and '%s' are the same setting but are given different "
                 "values", late->key, early->key);
        note_at(c, early->loc, "'%s' is set here", early->key);
        *clash = true;
    }
    return a;
}

static void check_model(Checker *c, const AstModel *am, ModelSpec *m)
{
    Scope s = {.def = &scope_model};
    c->suggested = 0;
    scope_collect(c, &s, am->items);
    m->name = ast_strndup(am->name, strlen(am->name));
    m->loc = am->loc;
    size_t name_len = strlen(am->name);
    if (name_len > SPEC_NAME_MAX)
        error_at(c, am->name_loc, "model name '%s' is too long (%zu characters): it is the "
                 "default C prefix of the compiled API, at most %d characters", clip(am->name).s,
                 name_len, SPEC_NAME_MAX);

    /* The width, and from it the family when `family` is absent. */
    const Item *dm = s.slot[M_D_MODEL], *ed = s.slot[M_EMBEDDING_DIM];
    bool clash;
    c->dim_item = pick_alias(c, dm, ed, VAL_INT, &clash);
    c->dim_key = c->dim_item ? c->dim_item->key : "d_model";
    if (!c->dim_item && !(c->suggested & (1u << M_D_MODEL | 1u << M_EMBEDDING_DIM)))
        error_at(c, m->loc, "missing required key 'd_model' (or its alias 'embedding_dim')");
    want_int(c, c->dim_item, 1, SPEC_DIM_MAX, &m->d_model);

    int family = -1;
    if (s.slot[M_FAMILY]) {
        if (!want_enum(c, s.slot[M_FAMILY], family_names, N_OF(family_names), &family))
            family = FAMILY_MAMBA;
    } else if (dm && ed && !clash) {
        error_at(c, m->loc, "cannot infer 'family' when both 'd_model' and 'embedding_dim' are "
                 "given; add 'family = mamba;' or 'family = xlstm;'");
    } else if (ed) {
        family = FAMILY_XLSTM;
    }
    m->family = family < 0 ? FAMILY_MAMBA : (Family)family;
    bool mamba = m->family == FAMILY_MAMBA;
    bool large = m->family == FAMILY_XLSTM_LARGE;

    if (!s.slot[M_VOCAB_SIZE] && !(c->suggested & 1u << M_VOCAB_SIZE))
        error_at(c, m->loc, "missing required key 'vocab_size'");
    want_int(c, s.slot[M_VOCAB_SIZE], 1, SPEC_VOCAB_MAX, &m->vocab_size);
    m->pad_vocab_size_multiple = mamba ? 8 : 1;
    want_int(c, s.slot[M_PAD_VOCAB], 1, SPEC_DIM_MAX, &m->pad_vocab_size_multiple);
    int rem = m->vocab_size % m->pad_vocab_size_multiple;
    m->vocab_padded = m->vocab_size + (rem ? m->pad_vocab_size_multiple - rem : 0);

    int norm = mamba || large ? NORM_RMSNORM : NORM_LAYERNORM;
    want_enum(c, s.slot[M_NORM], norm_names, N_OF(norm_names), &norm);
    m->norm = (NormKind)norm;
    m->norm_eps = large ? 1e-6 : 1e-5;
    want_number(c, s.slot[M_NORM_EPS], 1.0, &m->norm_eps);
    m->tie_weights = mamba;
    want_bool(c, pick_alias(c, s.slot[M_TIE_WEIGHTS], s.slot[M_TIE_EMBEDDINGS], VAL_BOOL, &clash),
              &m->tie_weights);
    m->context_length = -1;
    const Item *cl = s.slot[M_CONTEXT_LENGTH];
    if (cl && cl->value->kind == VAL_INT && cl->value->i == 0)
        error_at(c, cl->value->loc, "'context_length' must be -1 (unset) or positive, got 0");
    else
        want_int(c, cl, -1, INT32_MAX, &m->context_length);
    m->add_post_blocks_norm = true;
    want_bool(c, pick_alias(c, s.slot[M_ADD_POST_NORM], s.slot[M_ADD_OUT_NORM], VAL_BOOL, &clash),
              &m->add_post_blocks_norm);
    m->bias = false;
    want_bool(c, pick_alias(c, s.slot[M_BIAS], s.slot[M_USE_BIAS], VAL_BOOL, &clash), &m->bias);
    m->logit_soft_cap = large ? 30.0 : 0.0;
    want_cap(c, s.slot[M_LOGIT_CAP], &m->logit_soft_cap);
    int wtype = WEIGHT_F32;
    want_enum(c, s.slot[M_WEIGHT_TYPE], weight_type_names, N_OF(weight_type_names), &wtype);
    m->weight_type = (WeightType)wtype;

    /* Sections count as used when a block of their kind is in the stack; if the stack itself
     * is broken, check the sections that are there as if used. */
    bool stack_ok = check_blocks(c, &s, m);
    bool used[BLOCK_KINDS] = {false};
    for (int i = 0; i < m->n_blocks; i++)
        used[m->blocks[i]] = true;
    if (!stack_ok) {
        used[BLOCK_MAMBA] = s.slot[M_MAMBA] != NULL;
        used[BLOCK_MAMBA2] = s.slot[M_MAMBA2] != NULL;
        used[BLOCK_MLSTM] = s.slot[M_MLSTM] != NULL;
        used[BLOCK_SLSTM] = s.slot[M_SLSTM] != NULL;
        used[BLOCK_MLSTM_LARGE] = s.slot[M_MLSTM_LARGE] != NULL;
    }
    check_mamba(c, s.slot[M_MAMBA], m, used[BLOCK_MAMBA]);
    check_mamba2(c, s.slot[M_MAMBA2], m, used[BLOCK_MAMBA2]);
    check_mlstm(c, s.slot[M_MLSTM], m, used[BLOCK_MLSTM]);
    check_slstm(c, s.slot[M_SLSTM], m, used[BLOCK_SLSTM]);
    check_mlstm_large(c, s.slot[M_MLSTM_LARGE], m, used[BLOCK_MLSTM_LARGE]);
}

/* Duplicate model names are found by sorting (name, position), so that a file of many
 * models stays n log n. */
typedef struct NamedModel {
    const AstModel *m;
    size_t index;
} NamedModel;

static int cmp_named(const void *pa, const void *pb)
{
    const NamedModel *a = pa, *b = pb;
    int r = strcmp(a->m->name, b->m->name);
    if (r)
        return r;
    return a->index < b->index ? -1 : a->index > b->index;
}

void check_models(const AstModel *models, SpecFile *f, DiagSink *diag)
{
    Checker c = {.diag = diag};
    size_t n = 0;
    for (const AstModel *am = models; am; am = am->next)
        n++;
    if (n == 0) {
        error_at(&c, (Loc){f->path, 1, 1}, "no model in this file; expected 'model NAME { ... }'");
        flush(&c);
        free(c.pending);
        return;
    }
    NamedModel *sorted = ast_alloc(n * sizeof *sorted);
    const AstModel **first = ast_alloc(n * sizeof *first); /* [i]: earlier model of that name */
    size_t i = 0;
    for (const AstModel *am = models; am; am = am->next, i++)
        sorted[i] = (NamedModel){am, i};
    qsort(sorted, n, sizeof *sorted, cmp_named);
    for (size_t start = 0, k = 1; k < n; k++) {
        if (strcmp(sorted[start].m->name, sorted[k].m->name) != 0)
            start = k;
        else
            first[sorted[k].index] = sorted[start].m;
    }
    free(sorted);

    f->models = ast_alloc(n * sizeof *f->models);
    i = 0;
    for (const AstModel *am = models; am; am = am->next, i++) {
        if (first[i]) {
            error_at(&c, am->name_loc, "duplicate model '%s'", clip(am->name).s);
            note_at(&c, first[i]->name_loc, "'%s' was first defined here", clip(am->name).s);
            flush(&c);
            continue;
        }
        int before = diag->n_errors;
        ModelSpec *m = &f->models[f->n_models];
        check_model(&c, am, m);
        flush(&c);
        if (diag->n_errors == before) {
            f->n_models++;
        } else {
            free(m->name);
            free(m->blocks);
            memset(m, 0, sizeof *m);
        }
    }
    free(first);
    free(c.pending);
}
