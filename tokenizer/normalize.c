/* normalize.c - the normalizers of tokenizer.json: Unicode forms through utf8proc, Lowercase
 * (full lowercase mapping: U+0130 and the final sigma included, as ECMAScript's toLowerCase),
 * Strip, StripAccents, Replace and Prepend, applied in sequence. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tok.h"

static int norm_map(const unsigned char *s, size_t n, Buf *out, utf8proc_option_t opts,
                    MxcTokError *err)
{
    utf8proc_uint8_t *res = NULL;
    utf8proc_ssize_t r = utf8proc_map(s, (utf8proc_ssize_t)n, &res, opts | UTF8PROC_STABLE);
    if (r < 0) return tok_fail(err, "normalizer: %s", utf8proc_errmsg(r));
    int rc = buf_add(out, res, (size_t)r);
    free(res);
    return rc;
}

/* The Unicode forms leave ASCII alone, and no character composes with or reorders across an
 * ASCII character that follows it: so only the stretches of non-ASCII text, each with the ASCII
 * character before it (it may compose with a following mark), go through utf8proc. */
static int norm_form(const Buf *in, Buf *out, utf8proc_option_t opts, MxcTokError *err)
{
    const unsigned char *s = (const unsigned char *)in->p;
    size_t n = in->len, i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] < 0x80) j++;
        if (j == n) return buf_add(out, s + i, n - i);
        size_t a = j > i ? j - 1 : j, k = j;
        while (k < n && s[k] >= 0x80) k++;
        if (buf_add(out, s + i, a - i) != 0 || norm_map(s + a, k - a, out, opts, err) != 0) return -1;
        i = k;
    }
    return 0;
}

/* Cased and Case_Ignorable (Unicode 3.13), from the general category and case mappings. */
static int is_cased(uint32_t cp)
{
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT ||
           utf8proc_tolower((utf8proc_int32_t)cp) != (utf8proc_int32_t)cp ||
           utf8proc_toupper((utf8proc_int32_t)cp) != (utf8proc_int32_t)cp;
}
static int is_case_ignorable(uint32_t cp)
{
    switch (cp) {
    case '\'': case '.': case ':': case '^': case '`': case 0xB7: case 0x2018: case 0x2019:
    case 0x2024: case 0x2027: case 0xFE13: case 0xFE52: case 0xFE55: case 0xFF07: case 0xFF0E:
    case 0xFF1A: case 0xAD:
        return 1;
    }
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_MN || c == UTF8PROC_CATEGORY_ME || c == UTF8PROC_CATEGORY_CF ||
           c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_SK;
}

/* Σ is ς when a cased letter precedes it and none follows (case-ignorables skipped). */
static int final_sigma(const unsigned char *s, size_t len, size_t at)
{
    int before = 0;
    for (size_t i = at; i > 0;) {
        size_t j = i - 1;
        while (j > 0 && (s[j] & 0xC0) == 0x80) j--;
        uint32_t cp;
        if (!utf8_decode(s + j, len - j, &cp)) break;
        i = j;
        if (is_case_ignorable(cp)) continue;
        before = is_cased(cp);
        break;
    }
    if (!before) return 0;
    for (size_t i = at + 2; i < len;) {
        uint32_t cp;
        size_t n = utf8_decode(s + i, len - i, &cp);
        if (!n) break;
        i += n;
        if (is_case_ignorable(cp)) continue;
        return !is_cased(cp);
    }
    return 1;
}

static int norm_lower(const Buf *in, Buf *out)
{
    const unsigned char *s = (const unsigned char *)in->p;
    for (size_t i = 0; i < in->len;) {
        uint32_t cp;
        size_t n = utf8_decode(s + i, in->len - i, &cp);
        if (!n) return -1;
        char o[8];
        size_t k;
        if (cp == 0x130) { /* İ -> i + combining dot above */
            memcpy(o, "i\xCC\x87", 3);
            k = 3;
        } else if (cp == 0x3A3) {
            k = utf8_encode(final_sigma(s, in->len, i) ? 0x3C2 : 0x3C3, o);
        } else {
            k = utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), o);
        }
        if (buf_add(out, o, k) != 0) return -1;
        i += n;
    }
    return 0;
}

static int norm_strip(const Buf *in, Buf *out, int left, int right)
{
    const unsigned char *s = (const unsigned char *)in->p;
    size_t a = 0, b = in->len;
    uint32_t cp;
    size_t n;
    while (left && a < b && (n = utf8_decode(s + a, b - a, &cp)) && tok_is_js_space(cp)) a += n;
    while (right && b > a) {
        size_t j = b - 1;
        while (j > a && (s[j] & 0xC0) == 0x80) j--;
        if (!utf8_decode(s + j, b - j, &cp) || !tok_is_js_space(cp)) break;
        b = j;
    }
    return buf_add(out, s + a, b - a);
}

static int norm_strip_accents(const Buf *in, Buf *out)
{
    const unsigned char *s = (const unsigned char *)in->p;
    for (size_t i = 0; i < in->len;) {
        uint32_t cp;
        size_t n = utf8_decode(s + i, in->len - i, &cp);
        if (!n) return -1;
        utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
        if (c != UTF8PROC_CATEGORY_MN && c != UTF8PROC_CATEGORY_MC && c != UTF8PROC_CATEGORY_ME &&
            buf_add(out, s + i, n) != 0)
            return -1;
        i += n;
    }
    return 0;
}

static int norm_replace(const Norm *nm, const Buf *in, Buf *out, MxcTokError *err)
{
    if (!nm->re) { /* literal, non-overlapping, left to right */
        if (!nm->str_len) return buf_add(out, in->p, in->len);
        size_t i = 0;
        while (i < in->len) {
            if (i + nm->str_len <= in->len && memcmp(in->p + i, nm->str, nm->str_len) == 0) {
                if (buf_add(out, nm->content, nm->content_len) != 0) return -1;
                i += nm->str_len;
            } else {
                if (buf_add(out, in->p + i, 1) != 0) return -1;
                i++;
            }
        }
        return 0;
    }
    PCRE2_SIZE outlen = in->len * 2 + nm->content_len * 8 + 64;
    for (;;) {
        if (buf_reserve(out, outlen) != 0) return -1;
        outlen = out->cap - out->len;
        int rc = pcre2_substitute(nm->re, (PCRE2_SPTR)(in->p ? in->p : ""), in->len, 0,
                                  PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_LITERAL |
                                      PCRE2_SUBSTITUTE_OVERFLOW_LENGTH,
                                  NULL, NULL, (PCRE2_SPTR)nm->content, nm->content_len,
                                  (PCRE2_UCHAR *)out->p + out->len, &outlen);
        if (rc >= 0) { out->len += outlen; out->p[out->len] = 0; return 0; }
        if (rc != PCRE2_ERROR_NOMEMORY) return tok_fail(err, "normalizer Replace: regex error %d", rc);
    }
}

int norm_apply(const Norm *chain, size_t n, const char *text, size_t len, Buf *out,
               MxcTokError *err)
{
    Buf a = {0}, b = {0};
    out->len = 0;
    if (buf_add(&a, text, len) != 0) return tok_fail(err, "out of memory");
    for (size_t k = 0; k < n; k++) {
        const Norm *nm = &chain[k];
        int rc = 0;
        b.len = 0;
        if (buf_reserve(&b, 0) != 0) { rc = -1; goto done; }
        b.p[0] = 0;
        switch (nm->kind) {
        case NORM_NFC: rc = norm_form(&a, &b, UTF8PROC_COMPOSE, err); break;
        case NORM_NFD: rc = norm_form(&a, &b, UTF8PROC_DECOMPOSE, err); break;
        case NORM_NFKC: rc = norm_form(&a, &b, UTF8PROC_COMPOSE | UTF8PROC_COMPAT, err); break;
        case NORM_NFKD: rc = norm_form(&a, &b, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, err); break;
        case NORM_LOWERCASE: rc = norm_lower(&a, &b); break;
        case NORM_STRIP: rc = norm_strip(&a, &b, nm->strip_left, nm->strip_right); break;
        case NORM_STRIP_ACCENTS: rc = norm_strip_accents(&a, &b); break;
        case NORM_REPLACE: rc = norm_replace(nm, &a, &b, err); break;
        case NORM_PREPEND:
            rc = buf_add(&b, nm->str, nm->str_len) || buf_add(&b, a.p, a.len) ? -1 : 0;
            break;
        }
    done:
        if (rc != 0) {
            free(a.p);
            free(b.p);
            if (err && !err->msg[0]) tok_fail(err, "out of memory in the normalizer");
            return -1;
        }
        Buf t = a; a = b; b = t;
    }
    if (buf_add(out, a.p, a.len) != 0) { free(a.p); free(b.p); return tok_fail(err, "out of memory"); }
    free(a.p);
    free(b.p);
    return 0;
}

void norm_free(Norm *chain, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        free(chain[k].str);
        free(chain[k].content);
        pcre2_code_free(chain[k].re);
    }
    free(chain);
}
