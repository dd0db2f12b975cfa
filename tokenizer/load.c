/* load.c - read tokenizer.json into a tokenizer: every component is checked against what the
 * library implements and anything else is refused by name (a tokenizer that silently differs
 * from its reference would be worse than none). Also the special-token names of a folder's
 * tokenizer_config.json, the lookups and close. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/json.h"
#include "tokenizer/tok.h"

typedef struct Ctx {
    MxcTokenizer *t;
    const char *name;
    MxcTokError *err;
    int32_t byte_of_cp[324]; /* byte-level alphabet: code point -> byte, -1 */
    uint32_t cp_of_byte[256];
} Ctx;

#define FAIL(C, ...) tok_fail((C)->err, __VA_ARGS__)

/* GPT-2's byte-to-unicode table: printable Latin-1 bytes stand for themselves, the others are
 * shifted to U+0100 and up, so every byte is a visible character. */
static void alphabet_init(Ctx *c)
{
    for (int i = 0; i < 324; i++) c->byte_of_cp[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        uint32_t cp = printable ? (uint32_t)b : (uint32_t)(256 + n++);
        c->cp_of_byte[b] = cp;
        c->byte_of_cp[cp] = b;
    }
}

/* Decode a vocabulary string from the byte-level alphabet; 0 if it has other characters. */
static int alphabet_decode(const Ctx *c, const char *s, size_t len, Buf *out)
{
    out->len = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_decode((const unsigned char *)s + i, len - i, &cp);
        if (!n || cp >= 324 || c->byte_of_cp[cp] < 0) return 0;
        unsigned char b = (unsigned char)c->byte_of_cp[cp];
        if (buf_add(out, &b, 1) != 0) return -1;
        i += n;
    }
    return 1;
}

static int get_bool(Ctx *c, const JsonValue *o, const char *key, int dflt, const char *where,
                    int *out)
{
    const JsonValue *v = json_get(o, key);
    if (!v || v->kind == JSON_NULL) { *out = dflt; return 0; }
    if (v->kind != JSON_TRUE && v->kind != JSON_FALSE)
        return FAIL(c, "%s: %s.%s must be true or false, not %s", c->name, where, key,
                    json_kind_name(v->kind));
    *out = v->kind == JSON_TRUE;
    return 0;
}

/* A string member; NULL (and no error) when absent or null and !required. */
static int get_str(Ctx *c, const JsonValue *o, const char *key, int required, const char *where,
                   const JsonValue **out)
{
    const JsonValue *v = json_get(o, key);
    *out = NULL;
    if (!v || v->kind == JSON_NULL) {
        if (required) return FAIL(c, "%s: %s has no \"%s\"", c->name, where, key);
        return 0;
    }
    if (v->kind != JSON_STRING)
        return FAIL(c, "%s: %s.%s must be a string, not %s", c->name, where, key,
                    json_kind_name(v->kind));
    *out = v;
    return 0;
}

static const char *type_of(Ctx *c, const JsonValue *o, const char *where)
{
    const JsonValue *ty;
    if (o->kind != JSON_OBJECT) {
        FAIL(c, "%s: %s must be an object, not %s", c->name, where, json_kind_name(o->kind));
        return NULL;
    }
    if (get_str(c, o, "type", 1, where, &ty) != 0) return NULL;
    return ty->u.s.str;
}

/* --- normalizer ----------------------------------------------------------------------------- */
static int add_norm(Ctx *c, Norm n)
{
    MxcTokenizer *t = c->t;
    Norm *p = realloc(t->norm, (t->n_norm + 1) * sizeof *p);
    if (!p) { free(n.str); free(n.content); pcre2_code_free(n.re); return FAIL(c, "out of memory"); }
    t->norm = p;
    t->norm[t->n_norm++] = n;
    return 0;
}

static char *dup_mem(const char *s, size_t len)
{
    char *p = malloc(len + 1);
    if (p) { memcpy(p, s, len); p[len] = 0; }
    return p;
}

/* pattern: {"String": s} or {"Regex": r}; sets *re (Regex) or *lit (String). */
static int get_pattern(Ctx *c, const JsonValue *o, const char *where, pcre2_code **re,
                       char **lit, size_t *lit_len, int compile_literal)
{
    const JsonValue *pat = json_get(o, "pattern"), *s;
    *re = NULL;
    if (lit) *lit = NULL;
    if (!pat || pat->kind != JSON_OBJECT)
        return FAIL(c, "%s: %s has no \"pattern\" object", c->name, where);
    char w[160];
    if ((s = json_get(pat, "Regex")) && s->kind == JSON_STRING) {
        snprintf(w, sizeof w, "%s: %s.pattern.Regex", c->name, where);
        *re = pretok_compile(s->u.s.str, s->u.s.len, 0, w, c->err);
        return *re ? 0 : -1;
    }
    if ((s = json_get(pat, "String")) && s->kind == JSON_STRING) {
        if (compile_literal) {
            snprintf(w, sizeof w, "%s: %s.pattern.String", c->name, where);
            *re = pretok_compile(s->u.s.str, s->u.s.len, 1, w, c->err);
            return *re ? 0 : -1;
        }
        *lit = dup_mem(s->u.s.str, s->u.s.len);
        *lit_len = s->u.s.len;
        return *lit ? 0 : FAIL(c, "out of memory");
    }
    return FAIL(c, "%s: %s.pattern must hold a \"String\" or a \"Regex\"", c->name, where);
}

static int parse_normalizer(Ctx *c, const JsonValue *o, const char *where, int depth)
{
    const char *ty = type_of(c, o, where);
    if (!ty) return -1;
    if (depth > 8) return FAIL(c, "%s: %s: Sequence nested too deeply", c->name, where);
    static const struct { const char *name; NormKind kind; } simple[] = {
        {"NFC", NORM_NFC}, {"NFD", NORM_NFD}, {"NFKC", NORM_NFKC}, {"NFKD", NORM_NFKD},
        {"Lowercase", NORM_LOWERCASE}, {"StripAccents", NORM_STRIP_ACCENTS},
    };
    for (size_t i = 0; i < sizeof simple / sizeof *simple; i++)
        if (strcmp(ty, simple[i].name) == 0) return add_norm(c, (Norm){ .kind = simple[i].kind });
    if (strcmp(ty, "Sequence") == 0) {
        const JsonValue *a = json_get(o, "normalizers");
        if (!a || a->kind != JSON_ARRAY)
            return FAIL(c, "%s: %s (Sequence) has no \"normalizers\" array", c->name, where);
        for (size_t i = 0; i < a->u.c.count; i++) {
            char w[128];
            snprintf(w, sizeof w, "%s.normalizers[%zu]", where, i);
            if (parse_normalizer(c, &a->u.c.items[i], w, depth + 1) != 0) return -1;
        }
        return 0;
    }
    if (strcmp(ty, "Strip") == 0) {
        Norm n = { .kind = NORM_STRIP };
        if (get_bool(c, o, "strip_left", 1, where, &n.strip_left) ||
            get_bool(c, o, "strip_right", 1, where, &n.strip_right))
            return -1;
        return add_norm(c, n);
    }
    if (strcmp(ty, "Prepend") == 0) {
        const JsonValue *s;
        if (get_str(c, o, "prepend", 1, where, &s) != 0) return -1;
        Norm n = { .kind = NORM_PREPEND, .str = dup_mem(s->u.s.str, s->u.s.len), .str_len = s->u.s.len };
        return n.str ? add_norm(c, n) : FAIL(c, "out of memory");
    }
    if (strcmp(ty, "Replace") == 0) {
        Norm n = { .kind = NORM_REPLACE };
        const JsonValue *s;
        if (get_str(c, o, "content", 1, where, &s) != 0) return -1;
        if (get_pattern(c, o, where, &n.re, &n.str, &n.str_len, 0) != 0) return -1;
        n.content = dup_mem(s->u.s.str, s->u.s.len);
        n.content_len = s->u.s.len;
        return n.content ? add_norm(c, n) : FAIL(c, "out of memory");
    }
    return FAIL(c, "%s: %s: normalizer type '%s' is not supported (supported: NFC, NFD, NFKC, "
                "NFKD, Lowercase, Strip, StripAccents, Replace, Prepend, Sequence)", c->name, where, ty);
}

/* --- pre-tokenizer ---------------------------------------------------------------------------- */
static int add_pre(Ctx *c, PreTok p)
{
    MxcTokenizer *t = c->t;
    PreTok *q = realloc(t->pre, (t->n_pre + 1) * sizeof *q);
    if (!q) { pcre2_code_free(p.re); return FAIL(c, "out of memory"); }
    t->pre = q;
    t->pre[t->n_pre++] = p;
    return 0;
}

static int parse_pretok(Ctx *c, const JsonValue *o, const char *where, int depth)
{
    const char *ty = type_of(c, o, where);
    if (!ty) return -1;
    if (depth > 8) return FAIL(c, "%s: %s: Sequence nested too deeply", c->name, where);
    if (strcmp(ty, "Sequence") == 0) {
        const JsonValue *a = json_get(o, "pretokenizers");
        if (!a || a->kind != JSON_ARRAY)
            return FAIL(c, "%s: %s (Sequence) has no \"pretokenizers\" array", c->name, where);
        for (size_t i = 0; i < a->u.c.count; i++) {
            char w[128];
            snprintf(w, sizeof w, "%s.pretokenizers[%zu]", where, i);
            if (parse_pretok(c, &a->u.c.items[i], w, depth + 1) != 0) return -1;
        }
        return 0;
    }
    if (strcmp(ty, "ByteLevel") == 0) {
        PreTok p = { .kind = PRE_BYTELEVEL };
        int use_regex;
        if (get_bool(c, o, "add_prefix_space", 1, where, &p.add_prefix_space) ||
            get_bool(c, o, "use_regex", 1, where, &use_regex))
            return -1;
        if (use_regex && !(p.re = pretok_bytelevel_regex(c->err))) return -1;
        return add_pre(c, p);
    }
    if (strcmp(ty, "Split") == 0) {
        PreTok p = { .kind = PRE_SPLIT };
        const JsonValue *b;
        if (get_bool(c, o, "invert", 0, where, &p.invert) ||
            get_str(c, o, "behavior", 1, where, &b))
            return -1;
        static const struct { const char *name; SplitBehavior b; } beh[] = {
            {"Removed", SPLIT_REMOVED}, {"Isolated", SPLIT_ISOLATED},
            {"MergedWithPrevious", SPLIT_MERGED_PREV}, {"MergedWithNext", SPLIT_MERGED_NEXT},
            {"Contiguous", SPLIT_CONTIGUOUS},
        };
        size_t i = 0;
        while (i < 5 && strcmp(b->u.s.str, beh[i].name) != 0) i++;
        if (i == 5)
            return FAIL(c, "%s: %s: Split behavior '%s' is unknown (Removed, Isolated, "
                        "MergedWithPrevious, MergedWithNext, Contiguous)", c->name, where, b->u.s.str);
        p.behavior = beh[i].b;
        if (get_pattern(c, o, where, &p.re, NULL, NULL, 1) != 0) return -1;
        return add_pre(c, p);
    }
    return FAIL(c, "%s: %s: pre-tokenizer type '%s' is not supported (supported: ByteLevel, "
                "Split, Sequence)", c->name, where, ty);
}

/* --- model ------------------------------------------------------------------------------------ */
/* 4 M ids: past every real vocabulary, and a bound on what a hostile file allocates */
enum { MAX_IDS = 1 << 22 };

static int set_id(Ctx *c, int32_t id, const char *s, size_t len, const char *where)
{
    MxcTokenizer *t = c->t;
    if (id >= t->n_ids) {
        int32_t n = id + 1;
        char **st = realloc(t->str, (size_t)n * sizeof *st);
        if (!st) return FAIL(c, "out of memory");
        t->str = st;
        size_t *sl = realloc(t->str_len, (size_t)n * sizeof *sl);
        if (!sl) return FAIL(c, "out of memory");
        t->str_len = sl;
        for (int32_t i = t->n_ids; i < n; i++) t->str[i] = NULL, t->str_len[i] = 0;
        if (t->bytes) { /* added tokens past the vocabulary */
            char **by = realloc(t->bytes, (size_t)n * sizeof *by);
            if (!by) return FAIL(c, "out of memory");
            t->bytes = by;
            size_t *bl = realloc(t->bytes_len, (size_t)n * sizeof *bl);
            if (!bl) return FAIL(c, "out of memory");
            t->bytes_len = bl;
            for (int32_t i = t->n_ids; i < n; i++) t->bytes[i] = NULL, t->bytes_len[i] = 0;
        }
        t->n_ids = n;
    }
    if (t->str[id])
        return FAIL(c, "%s: %s: id %d is given to both '%s' and '%.*s'", c->name, where, id,
                    t->str[id], (int)len, s);
    if (!(t->str[id] = dup_mem(s, len))) return FAIL(c, "out of memory");
    t->str_len[id] = len;
    return 0;
}

static int get_id(Ctx *c, const JsonValue *v, const char *where, int32_t *out)
{
    if (v->kind != JSON_NUMBER || !v->is_int || v->u.n.i < 0 || v->u.n.i >= MAX_IDS)
        return FAIL(c, "%s: %s must be an integer id from 0 to %d", c->name, where, MAX_IDS - 1);
    *out = (int32_t)v->u.n.i;
    return 0;
}

static int parse_model(Ctx *c, const JsonValue *m)
{
    MxcTokenizer *t = c->t;
    if (!m || m->kind == JSON_NULL) return FAIL(c, "%s: there is no \"model\"", c->name);
    if (m->kind != JSON_OBJECT) return FAIL(c, "%s: model must be an object", c->name);
    const JsonValue *ty, *s;
    if (get_str(c, m, "type", 0, "model", &ty) != 0) return -1;
    if (ty && strcmp(ty->u.s.str, "BPE") != 0)
        return FAIL(c, "%s: model type '%s' is not supported (only BPE)", c->name, ty->u.s.str);
    const JsonValue *vocab = json_get(m, "vocab"), *merges = json_get(m, "merges");
    if (!vocab || vocab->kind != JSON_OBJECT)
        return FAIL(c, "%s: model.vocab must be an object of token -> id", c->name);
    if (!merges || merges->kind != JSON_ARRAY)
        return FAIL(c, "%s: model.merges must be an array", c->name);
    const JsonValue *dropout = json_get(m, "dropout");
    if (dropout && dropout->kind != JSON_NULL && !(dropout->kind == JSON_NUMBER && dropout->u.n.num == 0))
        return FAIL(c, "%s: model.dropout is not supported (BPE dropout is random)", c->name);
    const char *affix[] = { "continuing_subword_prefix", "end_of_word_suffix" };
    for (int i = 0; i < 2; i++) {
        if (get_str(c, m, affix[i], 0, "model", &s) != 0) return -1;
        if (s && s->u.s.len)
            return FAIL(c, "%s: model.%s (\"%s\") is not supported", c->name, affix[i], s->u.s.str);
    }
    if (get_bool(c, m, "byte_fallback", 0, "model", &t->bpe.byte_fallback) ||
        get_bool(c, m, "ignore_merges", 0, "model", &t->bpe.ignore_merges) ||
        get_bool(c, m, "fuse_unk", 0, "model", &t->bpe.fuse_unk))
        return -1;

    Buf b = {0};
    for (size_t i = 0; i < vocab->u.c.count; i++) {
        const JsonValue *e = &vocab->u.c.items[i];
        int32_t id = -1;
        char w[64];
        snprintf(w, sizeof w, "model.vocab entry %zu", i);
        int existed;
        if (get_id(c, e, w, &id) != 0 || set_id(c, id, e->key, e->key_len, "model.vocab") != 0) goto fail;
        if (strmap_put(&t->vocab_str, e->key, e->key_len, id, &existed) != 0) { FAIL(c, "out of memory"); goto fail; }
        if (existed) { FAIL(c, "%s: model.vocab: token '%s' appears twice", c->name, e->key); goto fail; }
    }
    /* what each id decodes to, and the byte string -> id map the merges work on */
    t->bytes = calloc((size_t)t->n_ids, sizeof *t->bytes);
    t->bytes_len = calloc((size_t)t->n_ids, sizeof *t->bytes_len);
    if (!t->bytes || !t->bytes_len) { FAIL(c, "out of memory"); goto fail; }
    for (int32_t id = 0; id < t->n_ids; id++) {
        if (!t->str[id]) continue;
        int r = alphabet_decode(c, t->str[id], t->str_len[id], &b);
        if (r < 0) { FAIL(c, "out of memory"); goto fail; }
        const char *src = r ? b.p : t->str[id];
        size_t n = r ? b.len : t->str_len[id];
        if (!(t->bytes[id] = dup_mem(src ? src : "", n))) { FAIL(c, "out of memory"); goto fail; }
        t->bytes_len[id] = n;
        if (r && strmap_put(&t->vocab_bytes, t->bytes[id], n, id, NULL) != 0) { FAIL(c, "out of memory"); goto fail; }
    }
    for (int i = 0; i < 256; i++) {
        unsigned char byte = (unsigned char)i;
        int32_t *v = strmap_find(&t->vocab_bytes, (const char *)&byte, 1);
        t->bpe.byte_id[i] = v ? *v : -1;
        char fb[8];
        snprintf(fb, sizeof fb, "<0x%02X>", i);
        v = strmap_find(&t->vocab_str, fb, 6);
        t->bpe.fallback_id[i] = v ? *v : -1;
    }
    t->bpe.unk_id = -1;
    if (get_str(c, m, "unk_token", 0, "model", &s) != 0) goto fail;
    if (s) {
        int32_t *v = strmap_find(&t->vocab_str, s->u.s.str, s->u.s.len);
        if (!v) { FAIL(c, "%s: model.unk_token '%s' is not in the vocabulary", c->name, s->u.s.str); goto fail; }
        t->bpe.unk_id = *v;
    }

    /* merges, by rank: "a b" strings or [a, b] pairs; the merged token must exist */
    int pairs = merges->u.c.count && merges->u.c.items[0].kind == JSON_ARRAY;
    for (size_t i = 0; i < merges->u.c.count; i++) {
        const JsonValue *e = &merges->u.c.items[i];
        const char *l, *r;
        size_t ll, rl;
        if (pairs) {
            if (e->kind != JSON_ARRAY || e->u.c.count != 2 || e->u.c.items[0].kind != JSON_STRING ||
                e->u.c.items[1].kind != JSON_STRING) {
                FAIL(c, "%s: model.merges[%zu] must be a pair of strings like the merges before it", c->name, i);
                goto fail;
            }
            l = e->u.c.items[0].u.s.str, ll = e->u.c.items[0].u.s.len;
            r = e->u.c.items[1].u.s.str, rl = e->u.c.items[1].u.s.len;
        } else {
            const char *sp = e->kind == JSON_STRING ? memchr(e->u.s.str, ' ', e->u.s.len) : NULL;
            if (!sp || sp == e->u.s.str || sp + 1 == e->u.s.str + e->u.s.len ||
                memchr(sp + 1, ' ', (size_t)(e->u.s.str + e->u.s.len - sp - 1))) {
                FAIL(c, "%s: model.merges[%zu] must be a string of two tokens separated by one space%s%s%s",
                     c->name, i, e->kind == JSON_STRING ? ", not '" : "",
                     e->kind == JSON_STRING ? e->u.s.str : "", e->kind == JSON_STRING ? "'" : "");
                goto fail;
            }
            l = e->u.s.str, ll = (size_t)(sp - l);
            r = sp + 1, rl = e->u.s.len - ll - 1;
        }
        int32_t *lv = strmap_find(&t->vocab_str, l, ll), *rv = strmap_find(&t->vocab_str, r, rl);
        if (!lv || !rv) {
            FAIL(c, "%s: model.merges[%zu] ('%.*s' '%.*s'): '%.*s' is not in the vocabulary", c->name,
                 i, (int)ll, l, (int)rl, r, (int)(lv ? rl : ll), lv ? r : l);
            goto fail;
        }
        b.len = 0;
        if (buf_add(&b, l, ll) || buf_add(&b, r, rl)) { FAIL(c, "out of memory"); goto fail; }
        int32_t *mv = strmap_find(&t->vocab_str, b.p, b.len);
        if (!mv) {
            FAIL(c, "%s: model.merges[%zu] ('%.*s' '%.*s'): the merged token '%s' is not in the vocabulary",
                 c->name, i, (int)ll, l, (int)rl, r, b.p);
            goto fail;
        }
        int dup;
        if (bpe_add_merge(&t->bpe, *lv, *rv, *mv, &dup) != 0) { FAIL(c, "out of memory"); goto fail; }
        if (dup) {
            FAIL(c, "%s: model.merges[%zu] ('%.*s' '%.*s') repeats an earlier merge", c->name, i,
                 (int)ll, l, (int)rl, r);
            goto fail;
        }
    }
    free(b.p);
    return 0;
fail:
    free(b.p);
    return -1;
}

/* --- added tokens ------------------------------------------------------------------------------ */
static int parse_added(Ctx *c, const JsonValue *a)
{
    MxcTokenizer *t = c->t;
    if (!a || a->kind == JSON_NULL) return 0;
    if (a->kind != JSON_ARRAY) return FAIL(c, "%s: added_tokens must be an array", c->name);
    t->added = calloc(a->u.c.count + 1, sizeof *t->added);
    if (!t->added) return FAIL(c, "out of memory");
    for (size_t i = 0; i < a->u.c.count; i++) {
        const JsonValue *e = &a->u.c.items[i], *s, *idv;
        char w[64];
        snprintf(w, sizeof w, "added_tokens[%zu]", i);
        if (e->kind != JSON_OBJECT) return FAIL(c, "%s: %s must be an object", c->name, w);
        if (get_str(c, e, "content", 1, w, &s) != 0) return -1;
        if (!s->u.s.len) return FAIL(c, "%s: %s has an empty content", c->name, w);
        if (!(idv = json_get(e, "id"))) return FAIL(c, "%s: %s has no \"id\"", c->name, w);
        Added *ad = &t->added[t->n_added];
        int single;
        char wid[80];
        snprintf(wid, sizeof wid, "%s.id", w);
        if (get_id(c, idv, wid, &ad->id) || get_bool(c, e, "special", 0, w, &ad->special) ||
            get_bool(c, e, "lstrip", 0, w, &ad->lstrip) || get_bool(c, e, "rstrip", 0, w, &ad->rstrip) ||
            get_bool(c, e, "single_word", 0, w, &single) ||
            get_bool(c, e, "normalized", !ad->special, w, &ad->normalized))
            return -1;
        if (single)
            return FAIL(c, "%s: %s ('%s'): single_word is not supported", c->name, w, s->u.s.str);
        if (!(ad->content = dup_mem(s->u.s.str, s->u.s.len))) return FAIL(c, "out of memory");
        ad->len = s->u.s.len;
        t->n_added++;
        /* the same token in the vocabulary keeps its id; another token's id is a conflict */
        if (ad->id < t->n_ids && t->str[ad->id]) {
            if (t->str_len[ad->id] != ad->len || memcmp(t->str[ad->id], ad->content, ad->len) != 0)
                return FAIL(c, "%s: %s ('%s') has id %d, already the id of '%s'", c->name,
                            w, ad->content, ad->id, t->str[ad->id]);
        } else {
            if (set_id(c, ad->id, ad->content, ad->len, w) != 0) return -1;
        }
    }
    return 0;
}

/* --- post-processor ------------------------------------------------------------------------------ */
static int push_special(Ctx *c, IdVec *v, const JsonValue *spec, const char *name, const char *where)
{
    const JsonValue *st = json_get(spec, name), *ids;
    if (!st || st->kind != JSON_OBJECT || !(ids = json_get(st, "ids")) || ids->kind != JSON_ARRAY)
        return FAIL(c, "%s: %s names special token '%s', which special_tokens does not define",
                    c->name, where, name);
    for (size_t i = 0; i < ids->u.c.count; i++) {
        int32_t id = -1;
        if (get_id(c, &ids->u.c.items[i], where, &id) != 0) return -1;
        if (id >= c->t->n_ids || !c->t->str[id])
            return FAIL(c, "%s: %s: special token '%s' has id %d, which is not in the vocabulary",
                        c->name, where, name, id);
        if (idvec_push(v, id) != 0) return FAIL(c, "out of memory");
    }
    return 0;
}

static int pair_token(Ctx *c, const JsonValue *o, const char *key, const char *where, IdVec *v)
{
    const JsonValue *p = json_get(o, key);
    int32_t id = -1;
    if (!p || p->kind != JSON_ARRAY || p->u.c.count != 2 || get_id(c, &p->u.c.items[1], where, &id))
        return FAIL(c, "%s: %s.%s must be [token, id]", c->name, where, key);
    if (id >= c->t->n_ids || !c->t->str[id])
        return FAIL(c, "%s: %s.%s: id %d is not in the vocabulary", c->name, where, key, id);
    return idvec_push(v, id) ? FAIL(c, "out of memory") : 0;
}

static int parse_post(Ctx *c, const JsonValue *o, const char *where, int *templates, int depth)
{
    MxcTokenizer *t = c->t;
    const char *ty = type_of(c, o, where);
    if (!ty) return -1;
    if (strcmp(ty, "ByteLevel") == 0) return 0; /* offsets only */
    if (strcmp(ty, "Sequence") == 0 && depth == 0) {
        const JsonValue *a = json_get(o, "processors");
        if (!a || a->kind != JSON_ARRAY)
            return FAIL(c, "%s: %s (Sequence) has no \"processors\" array", c->name, where);
        for (size_t i = 0; i < a->u.c.count; i++) {
            char w[96];
            snprintf(w, sizeof w, "%s.processors[%zu]", where, i);
            if (parse_post(c, &a->u.c.items[i], w, templates, 1) != 0) return -1;
        }
        return 0;
    }
    if (++*templates > 1)
        return FAIL(c, "%s: %s: a second post-processor adding tokens is not supported", c->name, where);
    if (strcmp(ty, "TemplateProcessing") == 0) {
        const JsonValue *single = json_get(o, "single"), *spec = json_get(o, "special_tokens");
        if (!single || single->kind != JSON_ARRAY)
            return FAIL(c, "%s: %s (TemplateProcessing) has no \"single\" array", c->name, where);
        int seen_a = 0;
        for (size_t i = 0; i < single->u.c.count; i++) {
            const JsonValue *it = &single->u.c.items[i], *x;
            if (it->kind == JSON_OBJECT && (x = json_get(it, "SpecialToken")) && x->kind == JSON_OBJECT) {
                const JsonValue *nm;
                if (get_str(c, x, "id", 1, where, &nm) != 0) return -1;
                if (push_special(c, seen_a ? &t->suffix : &t->prefix, spec, nm->u.s.str, where) != 0)
                    return -1;
            } else if (it->kind == JSON_OBJECT && (x = json_get(it, "Sequence")) && x->kind == JSON_OBJECT) {
                const JsonValue *nm;
                if (get_str(c, x, "id", 1, where, &nm) != 0) return -1;
                if (strcmp(nm->u.s.str, "A") != 0 || seen_a)
                    return FAIL(c, "%s: %s.single: sequence '%s' is not supported (one $A)", c->name,
                                where, nm->u.s.str);
                seen_a = 1;
            } else {
                return FAIL(c, "%s: %s.single[%zu] is neither a SpecialToken nor a Sequence", c->name, where, i);
            }
        }
        if (!seen_a) return FAIL(c, "%s: %s.single has no $A", c->name, where);
        return 0;
    }
    if (strcmp(ty, "RobertaProcessing") == 0 || strcmp(ty, "BertProcessing") == 0)
        return pair_token(c, o, "cls", where, &t->prefix) || pair_token(c, o, "sep", where, &t->suffix) ? -1 : 0;
    return FAIL(c, "%s: %s: post-processor type '%s' is not supported (supported: ByteLevel, "
                "TemplateProcessing, RobertaProcessing, BertProcessing, Sequence)", c->name, where, ty);
}

/* --- splitters of added tokens ------------------------------------------------------------------ */
static int build_splitter(Ctx *c, Splitter *sp, int normalized)
{
    MxcTokenizer *t = c->t;
    size_t n = 0, count[256] = {0};
    sp->order = malloc((t->n_added + 1) * sizeof *sp->order);
    sp->keys = calloc(t->n_added + 1, sizeof *sp->keys);
    sp->key_len = calloc(t->n_added + 1, sizeof *sp->key_len);
    if (!sp->order || !sp->keys || !sp->key_len) return FAIL(c, "out of memory");
    for (size_t i = 0; i < t->n_added; i++) {
        int in_norm = t->added[i].normalized && t->has_norm;
        if (in_norm != normalized) continue;
        sp->keys[i] = in_norm ? t->added_norm[i] : t->added[i].content;
        sp->key_len[i] = in_norm ? t->added_norm_len[i] : t->added[i].len;
        if (!sp->key_len[i]) continue;
        unsigned char b0 = (unsigned char)sp->keys[i][0];
        count[b0]++;
        if (sp->key_len[i] == 1) sp->single[b0] = 1;
        else sp->second[b0][(unsigned char)sp->keys[i][1] >> 3] |= (unsigned char)(1u << ((unsigned char)sp->keys[i][1] & 7));
        n++;
    }
    sp->start[0] = 0;
    for (int b = 0; b < 256; b++) sp->start[b + 1] = sp->start[b] + count[b];
    size_t fill[256];
    memcpy(fill, sp->start, sizeof fill);
    for (size_t i = 0; i < t->n_added; i++)
        if (sp->key_len[i]) sp->order[fill[(unsigned char)sp->keys[i][0]]++] = (int32_t)i;
    /* longest first within a bucket (insertion sort; buckets are small) */
    for (int b = 0; b < 256; b++)
        for (size_t i = sp->start[b] + 1; i < sp->start[b + 1]; i++)
            for (size_t j = i; j > sp->start[b] && sp->key_len[sp->order[j]] > sp->key_len[sp->order[j - 1]]; j--) {
                int32_t x = sp->order[j];
                sp->order[j] = sp->order[j - 1];
                sp->order[j - 1] = x;
            }
    return 0;
}

static int build_added(Ctx *c)
{
    MxcTokenizer *t = c->t;
    t->added_norm = calloc(t->n_added + 1, sizeof *t->added_norm);
    t->added_norm_len = calloc(t->n_added + 1, sizeof *t->added_norm_len);
    t->added_kind = calloc((size_t)t->n_ids, 1);
    t->remap = malloc((size_t)t->n_ids * sizeof *t->remap);
    if (!t->added_norm || !t->added_norm_len || !t->added_kind || !t->remap) return FAIL(c, "out of memory");
    for (int32_t i = 0; i < t->n_ids; i++) t->remap[i] = i;
    Buf nb = {0};
    for (size_t i = 0; i < t->n_added; i++) {
        Added *a = &t->added[i];
        t->added_kind[a->id] = a->special ? 2 : 1;
        /* what an added token decodes to is its content, as written */
        if (!t->bytes[a->id]) {
            if (!(t->bytes[a->id] = dup_mem(a->content, a->len))) return FAIL(c, "out of memory");
            t->bytes_len[a->id] = a->len;
        }
        if (strmap_put(&t->added_map, a->content, a->len, (int32_t)i, NULL) != 0) return FAIL(c, "out of memory");
        if (a->normalized && t->has_norm) {
            MxcTokError e2 = {{0}};
            if (norm_apply(t->norm, t->n_norm, a->content, a->len, &nb, &e2) != 0) {
                free(nb.p);
                return FAIL(c, "%s: added token '%s': %s", c->name, a->content, e2.msg);
            }
            if (!(t->added_norm[i] = dup_mem(nb.p ? nb.p : "", nb.len))) { free(nb.p); return FAIL(c, "out of memory"); }
            t->added_norm_len[i] = nb.len;
            if (strmap_put(&t->added_map, nb.p ? nb.p : "", nb.len, (int32_t)i, NULL) != 0) { free(nb.p); return FAIL(c, "out of memory"); }
        }
    }
    free(nb.p);
    /* the reference maps a model token equal to an added token's text to the added id */
    for (size_t e = 0; e < t->added_map.count; e++) {
        int32_t *v = strmap_find(&t->vocab_str, t->added_map.ent[e].key, t->added_map.ent[e].len);
        if (v) t->remap[*v] = t->added[t->added_map.ent[e].val].id;
    }
    for (size_t i = 0; i < t->n_added; i++) /* token_to_id finds added tokens too */
        if (strmap_put(&t->vocab_str, t->added[i].content, t->added[i].len, t->added[i].id, NULL) != 0)
            return FAIL(c, "out of memory");
    return build_splitter(c, &t->split_raw, 0) || build_splitter(c, &t->split_norm, 1) ? -1 : 0;
}

/* --- special ids ------------------------------------------------------------------------------- */
static int32_t lookup_name(const MxcTokenizer *t, const char *s, size_t len)
{
    int32_t *v = strmap_find(&t->added_map, s, len);
    if (v) return t->added[*v].id;
    v = strmap_find(&t->vocab_str, s, len);
    return v ? *v : -1;
}

static int read_config(Ctx *c, const char *dir)
{
    MxcTokenizer *t = c->t;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    Buf b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (buf_add(&b, chunk, n) != 0) { fclose(f); free(b.p); return FAIL(c, "out of memory"); }
    fclose(f);
    JsonDoc *doc;
    JsonError je;
    if (json_parse(b.p ? b.p : "", b.len, NULL, &doc, &je) != 0) {
        free(b.p);
        return FAIL(c, "%s: invalid JSON at byte %zu: %s", path, je.offset, je.msg);
    }
    free(b.p);
    const JsonValue *root = json_root(doc);
    static const char *keys[4] = { "bos_token", "eos_token", "pad_token", "unk_token" };
    for (int k = 0; k < 4; k++) {
        const JsonValue *v = json_get(root, keys[k]);
        if (v && v->kind == JSON_OBJECT) v = json_get(v, "content");
        if (!v || v->kind != JSON_STRING) continue;
        int32_t id = lookup_name(t, v->u.s.str, v->u.s.len);
        if (id < 0) {
            FAIL(c, "%s: %s '%s' is not a token of the tokenizer", path, keys[k], v->u.s.str);
            json_free(doc);
            return -1;
        }
        t->special[k] = id;
    }
    json_free(doc);
    return 0;
}

static void default_specials(MxcTokenizer *t)
{
    if (t->special[0] < 0 && t->prefix.len) t->special[0] = t->prefix.p[t->prefix.len - 1];
    if (t->special[1] < 0 && t->suffix.len) t->special[1] = t->suffix.p[0];
    if (t->special[3] < 0) t->special[3] = t->bpe.unk_id;
    int32_t eot = lookup_name(t, "<|endoftext|>", 13);
    if (eot >= 0 && t->added_kind[eot] == 2) {
        if (t->special[0] < 0) t->special[0] = eot;
        if (t->special[1] < 0) t->special[1] = eot;
    }
    if (t->special[2] < 0) {
        int32_t pad = lookup_name(t, "<|padding|>", 11);
        if (pad < 0) pad = lookup_name(t, "<pad>", 5);
        if (pad >= 0 && t->added_kind[pad] == 2) t->special[2] = pad;
    }
}

/* --- open / close -------------------------------------------------------------------------------- */
static void line_col(const char *s, size_t len, size_t off, size_t *line, size_t *col)
{
    *line = 1, *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (s[i] == '\n') (*line)++, *col = 1;
        else (*col)++;
    }
}

static int open_doc(Ctx *c, const char *json, size_t len)
{
    MxcTokenizer *t = c->t;
    JsonDoc *doc;
    JsonError je;
    JsonLimits lim = { 0, (size_t)1 << 25 };
    if (json_parse(json, len, &lim, &doc, &je) != 0) {
        size_t l, col;
        line_col(json, len, je.offset, &l, &col);
        return FAIL(c, "%s: invalid JSON at line %zu, column %zu: %s", c->name, l, col, je.msg);
    }
    const JsonValue *root = json_root(doc), *v;
    int rc = -1;
    if (root->kind != JSON_OBJECT) { FAIL(c, "%s: the top level must be an object", c->name); goto out; }
    static const char *unsupported[] = { "truncation", "padding" };
    for (int i = 0; i < 2; i++)
        if ((v = json_get(root, unsupported[i])) && v->kind != JSON_NULL) {
            FAIL(c, "%s: %s is not supported (it must be null)", c->name, unsupported[i]);
            goto out;
        }
    if (parse_model(c, json_get(root, "model")) != 0) goto out;
    if (parse_added(c, json_get(root, "added_tokens")) != 0) goto out;
    if ((v = json_get(root, "normalizer")) && v->kind != JSON_NULL) {
        if (parse_normalizer(c, v, "normalizer", 0) != 0) goto out;
        t->has_norm = 1;
    }
    if (!(v = json_get(root, "pre_tokenizer")) || v->kind == JSON_NULL) {
        FAIL(c, "%s: pre_tokenizer is null: only byte-level BPE (a ByteLevel pre-tokenizer) is supported", c->name);
        goto out;
    }
    if (parse_pretok(c, v, "pre_tokenizer", 0) != 0) goto out;
    for (size_t i = 0; i < t->n_pre; i++)
        if ((t->pre[i].kind == PRE_BYTELEVEL) != (i + 1 == t->n_pre)) {
            FAIL(c, "%s: pre_tokenizer: %s", c->name, t->pre[t->n_pre - 1].kind != PRE_BYTELEVEL
                 ? "there is no ByteLevel step last: only byte-level BPE is supported"
                 : "a ByteLevel step before the last is not supported");
            goto out;
        }
    if ((v = json_get(root, "post_processor")) && v->kind != JSON_NULL) {
        int templates = 0;
        if (parse_post(c, v, "post_processor", &templates, 0) != 0) goto out;
    }
    if (!(v = json_get(root, "decoder")) || v->kind == JSON_NULL) {
        FAIL(c, "%s: decoder is null: only the ByteLevel decoder is supported", c->name);
        goto out;
    }
    const char *ty = type_of(c, v, "decoder");
    if (!ty) goto out;
    if (strcmp(ty, "ByteLevel") != 0) {
        FAIL(c, "%s: decoder type '%s' is not supported (only ByteLevel)", c->name, ty);
        goto out;
    }
    if (build_added(c) != 0) goto out;
    rc = 0;
out:
    json_free(doc);
    return rc;
}

static MxcTokenizer *tok_new(const char *name)
{
    MxcTokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->name = dup_mem(name, strlen(name));
    t->md = pcre2_match_data_create(32, NULL);
    for (int i = 0; i < 4; i++) t->special[i] = -1;
    if (!t->name || !t->md) { mxc_tokenizer_close(t); return NULL; }
    return t;
}

int mxc_tokenizer_open_json(const char *json, size_t len, const char *name, MxcTokenizer **out,
                            MxcTokError *err)
{
    *out = NULL;
    if (err) err->msg[0] = 0;
    Ctx c = { .name = name ? name : "tokenizer.json", .err = err };
    alphabet_init(&c);
    if (!(c.t = tok_new(c.name))) return tok_fail(err, "out of memory");
    if (open_doc(&c, json, len) != 0) { mxc_tokenizer_close(c.t); return -1; }
    default_specials(c.t);
    *out = c.t;
    return 0;
}

int mxc_tokenizer_open(const char *path, MxcTokenizer **out, MxcTokError *err)
{
    *out = NULL;
    if (err) err->msg[0] = 0;
    struct stat st;
    char file[4096];
    if (stat(path, &st) != 0) return tok_fail(err, "%s: %s", path, strerror(errno));
    int is_dir = S_ISDIR(st.st_mode);
    snprintf(file, sizeof file, is_dir ? "%s/tokenizer.json" : "%s", path);
    FILE *f = fopen(file, "rb");
    if (!f) {
        return tok_fail(err, is_dir ? "%s: the folder holds no tokenizer.json (%s)" : "%s: %s", is_dir ? path : file,
                        strerror(errno));
    }
    Buf b = {0};
    char chunk[1 << 16];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (buf_add(&b, chunk, n) != 0) { fclose(f); free(b.p); return tok_fail(err, "out of memory"); }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(b.p); return tok_fail(err, "%s: read error", file); }
    Ctx c = { .name = file, .err = err };
    alphabet_init(&c);
    if (!(c.t = tok_new(file))) { free(b.p); return tok_fail(err, "out of memory"); }
    int rc = open_doc(&c, b.p ? b.p : "", b.len);
    free(b.p);
    if (rc == 0 && is_dir) rc = read_config(&c, path);
    if (rc != 0) { mxc_tokenizer_close(c.t); return -1; }
    default_specials(c.t);
    *out = c.t;
    return 0;
}

static void splitter_free(Splitter *s)
{
    free(s->order);
    free(s->keys);
    free(s->key_len);
}

void mxc_tokenizer_close(MxcTokenizer *t)
{
    if (!t) return;
    for (int32_t i = 0; i < t->n_ids; i++) {
        free(t->str[i]);
        if (t->bytes) free(t->bytes[i]);
    }
    free(t->str);
    free(t->str_len);
    free(t->bytes);
    free(t->bytes_len);
    free(t->added_kind);
    strmap_free(&t->vocab_bytes);
    strmap_free(&t->vocab_str);
    bpe_free(&t->bpe);
    norm_free(t->norm, t->n_norm);
    pretok_free(t->pre, t->n_pre);
    for (size_t i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        if (t->added_norm) free(t->added_norm[i]);
    }
    free(t->added);
    free(t->added_norm);
    free(t->added_norm_len);
    strmap_free(&t->added_map);
    splitter_free(&t->split_raw);
    splitter_free(&t->split_norm);
    free(t->remap);
    free(t->prefix.p);
    free(t->suffix.p);
    pcre2_match_data_free(t->md);
    free(t->name);
    free(t);
}

int32_t mxc_tokenizer_vocab_size(const MxcTokenizer *t) { return t->n_ids; }

const char *mxc_tokenizer_id_to_token(const MxcTokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_ids || !t->str[id]) return NULL;
    if (len) *len = t->str_len[id];
    return t->str[id];
}

const char *mxc_tokenizer_token_bytes(const MxcTokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_ids || !t->bytes[id]) return NULL;
    if (len) *len = t->bytes_len[id];
    return t->bytes[id];
}

int32_t mxc_tokenizer_token_to_id(const MxcTokenizer *t, const char *s, size_t len)
{
    int32_t *v = strmap_find(&t->vocab_str, s, len);
    return v ? *v : -1;
}

int32_t mxc_tokenizer_special_id(const MxcTokenizer *t, const char *name)
{
    static const char *names[4] = { "bos", "eos", "pad", "unk" };
    for (int k = 0; k < 4; k++)
        if (strcmp(name, names[k]) == 0) return t->special[k];
    return -1;
}

int mxc_tokenizer_is_special(const MxcTokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_ids && t->added_kind[id] == 2;
}
