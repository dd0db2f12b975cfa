/* pretok.c - pre-tokenizers: Split (a regex or a literal, its five behaviours, invert) and
 * ByteLevel (GPT-2's regex, add_prefix_space, use_regex), chained as a Sequence applies them:
 * each stage splits every piece of the one before. Regexes are PCRE2 with UTF and UCP; \s and \S
 * are rewritten to ECMAScript's white-space set, the set the reference implementation uses. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok.h"

int tok_is_js_space(uint32_t c)
{
    return (c >= 9 && c <= 13) || c == 0x20 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000 || c == 0xFEFF;
}

#define JS_SPACE_ITEMS "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}" \
                       "\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}"

/* GPT-2's pre-tokenizer regex, as the ByteLevel pre-tokenizer of tokenizer.json defines it. */
static const char bytelevel_re[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Rewrite \s (everywhere) and \S (outside classes) to the ECMAScript set; out is NUL-terminated. */
static int rewrite_space(const char *pat, size_t len, Buf *out)
{
    int in_class = 0;
    for (size_t i = 0; i < len; i++) {
        char c = pat[i];
        if (c == '\\' && i + 1 < len) {
            char d = pat[i + 1];
            const char *rep = NULL;
            if (d == 's') rep = in_class ? JS_SPACE_ITEMS : "[" JS_SPACE_ITEMS "]";
            else if (d == 'S' && !in_class) rep = "[^" JS_SPACE_ITEMS "]";
            if (rep) { if (buf_add(out, rep, strlen(rep)) != 0) return -1; }
            else if (buf_add(out, pat + i, 2) != 0) return -1;
            i++;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            if (buf_add(out, "[", 1) != 0) return -1;
            /* a ']' right after '[' or '[^' is a literal */
            if (i + 1 < len && pat[i + 1] == '^') { if (buf_add(out, "^", 1) != 0) return -1; i++; }
            if (i + 1 < len && pat[i + 1] == ']') { if (buf_add(out, "]", 1) != 0) return -1; i++; }
            continue;
        }
        if (c == ']' && in_class) in_class = 0;
        if (buf_add(out, &c, 1) != 0) return -1;
    }
    return buf_add(out, "", 0);
}

pcre2_code *pretok_compile(const char *pat, size_t len, int literal, const char *where,
                           MxcTokError *err)
{
    Buf b = {0};
    if (literal ? buf_add(&b, pat, len) : rewrite_space(pat, len, &b)) {
        free(b.p);
        tok_fail(err, "out of memory");
        return NULL;
    }
    int ec;
    PCRE2_SIZE eo;
    /* PCRE2_LITERAL admits UTF but not UCP */
    uint32_t opts = PCRE2_UTF | PCRE2_NO_UTF_CHECK | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(b.p ? b.p : ""), b.len, opts, &ec, &eo, NULL);
    free(b.p);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        tok_fail(err, "%s: the regex does not compile (%s, near offset %zu)", where, (char *)msg,
                 (size_t)eo);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if unavailable */
    return re;
}

pcre2_code *pretok_bytelevel_regex(MxcTokError *err)
{
    return pretok_compile(bytelevel_re, sizeof bytelevel_re - 1, 0, "ByteLevel", err);
}

/* Non-empty matches of re in p[0..len), in order, into (start, end) pairs. */
typedef struct Ranges { size_t *p; size_t n, cap; } Ranges;

static int find_matches(const pcre2_code *re, pcre2_match_data *md, const char *p, size_t len,
                        Ranges *r, MxcTokError *err)
{
    size_t at = 0;
    r->n = 0;
    while (at <= len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)p, len, at, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return tok_fail(err, "pre-tokenizer: regex match error %d", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t s = ov[0], e = ov[1];
        if (e > s) {
            if (r->n + 2 > r->cap) {
                size_t nc = r->cap ? r->cap * 2 : 64;
                size_t *q = realloc(r->p, nc * sizeof *q);
                if (!q) return tok_fail(err, "out of memory");
                r->p = q;
                r->cap = nc;
            }
            r->p[r->n++] = s;
            r->p[r->n++] = e;
            at = e;
        } else { /* empty match: step over one character */
            if (s >= len) break;
            at = s + 1;
            while (at < len && ((unsigned char)p[at] & 0xC0) == 0x80) at++;
        }
    }
    return 0;
}

static int run_from(const PreTok *chain, size_t n, size_t k, pcre2_match_data *md, const char *p,
                    size_t len, PieceFn fn, void *ctx, MxcTokError *err);

/* Emit the pieces of a Split: segments alternate between gaps and matches (flags flipped by
 * invert), then the behaviour decides what is kept and what is glued together. */
static int split_emit(const PreTok *t, const Ranges *m, const char *p, size_t len,
                      const PreTok *chain, size_t n, size_t k, pcre2_match_data *md, PieceFn fn,
                      void *ctx, MxcTokError *err)
{
    size_t cur_s = 0, cur_e = 0;
    int have = 0, prev_match = 0;
    size_t pos = 0, mi = 0;
    while (pos < len) {
        size_t s = pos, e;
        int is_match;
        if (mi < m->n && m->p[mi] == pos) { e = m->p[mi + 1]; is_match = 1; mi += 2; }
        else { e = mi < m->n ? m->p[mi] : len; is_match = 0; }
        pos = e;
        if (t->invert) is_match = !is_match;
        int merge = 0, keep = 1;
        switch (t->behavior) {
        case SPLIT_REMOVED: keep = !is_match; break;
        case SPLIT_ISOLATED: break;
        case SPLIT_MERGED_PREV: merge = is_match && !prev_match && have; break;
        case SPLIT_MERGED_NEXT: merge = prev_match && !is_match && have; break;
        case SPLIT_CONTIGUOUS: merge = is_match && prev_match && have; break;
        }
        prev_match = is_match;
        if (!keep) {
            if (have && run_from(chain, n, k + 1, md, p + cur_s, cur_e - cur_s, fn, ctx, err)) return -1;
            have = 0;
            continue;
        }
        if (merge) { cur_e = e; continue; }
        if (have && run_from(chain, n, k + 1, md, p + cur_s, cur_e - cur_s, fn, ctx, err)) return -1;
        cur_s = s, cur_e = e, have = 1;
    }
    if (have && run_from(chain, n, k + 1, md, p + cur_s, cur_e - cur_s, fn, ctx, err)) return -1;
    return 0;
}

static int run_from(const PreTok *chain, size_t n, size_t k, pcre2_match_data *md, const char *p,
                    size_t len, PieceFn fn, void *ctx, MxcTokError *err)
{
    if (k == n) return len ? fn(ctx, p, len) : 0;
    const PreTok *t = &chain[k];
    Ranges r = {0};
    int rc = 0;
    char *tmp = NULL;
    if (t->kind == PRE_BYTELEVEL) {
        if (t->add_prefix_space && (len == 0 || p[0] != ' ')) {
            tmp = malloc(len + 1);
            if (!tmp) return tok_fail(err, "out of memory");
            tmp[0] = ' ';
            memcpy(tmp + 1, p, len);
            p = tmp;
            len++;
        }
        if (!t->re) {
            rc = run_from(chain, n, k + 1, md, p, len, fn, ctx, err);
        } else if ((rc = find_matches(t->re, md, p, len, &r, err)) == 0) {
            for (size_t i = 0; i < r.n && rc == 0; i += 2)
                rc = run_from(chain, n, k + 1, md, p + r.p[i], r.p[i + 1] - r.p[i], fn, ctx, err);
        }
    } else {
        rc = find_matches(t->re, md, p, len, &r, err);
        if (rc == 0) rc = split_emit(t, &r, p, len, chain, n, k, md, fn, ctx, err);
    }
    free(r.p);
    free(tmp);
    return rc;
}

int pretok_run(const PreTok *chain, size_t n, pcre2_match_data *md, const char *p, size_t len,
               PieceFn fn, void *ctx, MxcTokError *err)
{
    return run_from(chain, n, 0, md, p, len, fn, ctx, err);
}

void pretok_free(PreTok *chain, size_t n)
{
    for (size_t k = 0; k < n; k++) pcre2_code_free(chain[k].re);
    free(chain);
}
