/* encode.c - text to ids, in the reference's order: split out the added tokens that are matched
 * on the raw text, normalize each remaining section, split out the added tokens matched on
 * normalized text, pre-tokenize what is left and run BPE on every piece; then the
 * post-processor's BOS/EOS. lstrip/rstrip of an added token trim the white space beside it. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok.h"

typedef struct Sec { const char *p; size_t len; } Sec;
typedef struct SecVec { Sec *p; size_t len, cap; } SecVec;

static int sec_push(SecVec *v, const char *p, size_t len)
{
    if (v->len == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 16;
        Sec *q = realloc(v->p, nc * sizeof *q);
        if (!q) return -1;
        v->p = q;
        v->cap = nc;
    }
    v->p[v->len++] = (Sec){ p, len };
    return 0;
}

/* Longest added token starting at each position, leftmost first. */
static int split_added(const Splitter *sp, const char *p, size_t len, SecVec *out)
{
    size_t i = 0, start = 0;
    out->len = 0;
    while (i < len) {
        unsigned char b = (unsigned char)p[i];
        size_t klen = 0;
        if (sp->start[b] == sp->start[b + 1]) { i++; continue; }
        if (!sp->single[b]) { /* cheap rejection on the second byte */
            unsigned char c = i + 1 < len ? (unsigned char)p[i + 1] : 0;
            if (i + 1 >= len || !(sp->second[b][c >> 3] & (1u << (c & 7)))) { i++; continue; }
        }
        for (size_t k = sp->start[b]; k < sp->start[b + 1]; k++) {
            int32_t a = sp->order[k];
            if (sp->key_len[a] <= len - i && memcmp(sp->keys[a], p + i, sp->key_len[a]) == 0) {
                klen = sp->key_len[a];
                break;
            }
        }
        if (!klen) { i++; continue; }
        if (i > start && sec_push(out, p + start, i - start) != 0) return -1;
        if (sec_push(out, p + i, klen) != 0) return -1;
        i += klen;
        start = i;
    }
    if (start < len && sec_push(out, p + start, len - start) != 0) return -1;
    return 0;
}

static void trim_end(Sec *s)
{
    const unsigned char *p = (const unsigned char *)s->p;
    while (s->len) {
        size_t j = s->len - 1;
        while (j > 0 && (p[j] & 0xC0) == 0x80) j--;
        uint32_t cp;
        if (!utf8_decode(p + j, s->len - j, &cp) || !tok_is_js_space(cp)) break;
        s->len = j;
    }
}

static void trim_start(Sec *s)
{
    uint32_t cp;
    size_t n;
    while (s->len && (n = utf8_decode((const unsigned char *)s->p, s->len, &cp)) && tok_is_js_space(cp))
        s->p += n, s->len -= n;
}

static const Added *added_of(const MxcTokenizer *t, const Sec *s)
{
    if (!t->n_added) return NULL;
    int32_t *v = strmap_find(&t->added_map, s->p, s->len);
    return v ? &t->added[*v] : NULL;
}

static void strip_beside(const MxcTokenizer *t, SecVec *v)
{
    for (size_t i = 0; i < v->len; i++) {
        const Added *a = added_of(t, &v->p[i]);
        if (!a) continue;
        if (a->lstrip && i > 0) trim_end(&v->p[i - 1]);
        if (a->rstrip && i + 1 < v->len) trim_start(&v->p[i + 1]);
    }
}

typedef struct EncCtx {
    MxcTokenizer *t;
    IdVec *out;
    MxcTokError *err;
} EncCtx;

static int on_piece(void *ctx, const char *p, size_t len)
{
    EncCtx *e = ctx;
    size_t first = e->out->len;
    if (bpe_word(&e->t->bpe, &e->t->vocab_bytes, p, len, e->out) != 0)
        return tok_fail(e->err, "out of memory");
    if (e->t->n_added)
        for (size_t i = first; i < e->out->len; i++) e->out->p[i] = e->t->remap[e->out->p[i]];
    return 0;
}

static int encode_text(MxcTokenizer *t, const char *text, size_t len, IdVec *out, MxcTokError *err)
{
    SecVec raw = {0}, sub = {0};
    Buf norm = {0};
    EncCtx ctx = { t, out, err };
    int rc = -1;
    if (split_added(&t->split_raw, text, len, &raw) != 0) goto oom;
    strip_beside(t, &raw);
    for (size_t i = 0; i < raw.len; i++) {
        Sec s = raw.p[i];
        if (!s.len) continue;
        const Added *a = added_of(t, &s);
        if (a) {
            if (idvec_push(out, a->id) != 0) goto oom;
            continue;
        }
        if (t->has_norm) {
            if (norm_apply(t->norm, t->n_norm, s.p, s.len, &norm, err) != 0) goto out;
            s.p = norm.p ? norm.p : "";
            s.len = norm.len;
            if (!s.len) continue;
        }
        if (split_added(&t->split_norm, s.p, s.len, &sub) != 0) goto oom;
        strip_beside(t, &sub);
        for (size_t j = 0; j < sub.len; j++) {
            Sec u = sub.p[j];
            if (!u.len) continue;
            if ((a = added_of(t, &u))) {
                if (idvec_push(out, a->id) != 0) goto oom;
                continue;
            }
            if (pretok_run(t->pre, t->n_pre, t->md, u.p, u.len, on_piece, &ctx, err) != 0) goto out;
        }
    }
    rc = 0;
    goto out;
oom:
    tok_fail(err, "out of memory");
out:
    free(raw.p);
    free(sub.p);
    free(norm.p);
    return rc;
}

int mxc_tokenizer_encode(MxcTokenizer *t, const char *text, size_t len, int add_special,
                         int32_t **ids, size_t *n, MxcTokError *err)
{
    *ids = NULL;
    *n = 0;
    if (err) err->msg[0] = 0;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_valid_len((const unsigned char *)text + i, len - i);
        if (!k) return tok_fail(err, "the text is not valid UTF-8 (byte %zu)", i);
        i += k;
    }
    IdVec out = {0};
    if (add_special)
        for (size_t i = 0; i < t->prefix.len; i++)
            if (idvec_push(&out, t->prefix.p[i]) != 0) goto oom;
    if (encode_text(t, text, len, &out, err) != 0) { free(out.p); return -1; }
    if (add_special)
        for (size_t i = 0; i < t->suffix.len; i++)
            if (idvec_push(&out, t->suffix.p[i]) != 0) goto oom;
    if (!out.len) { free(out.p); return 0; }
    *ids = out.p;
    *n = out.len;
    return 0;
oom:
    free(out.p);
    return tok_fail(err, "out of memory");
}
