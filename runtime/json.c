/* json.c - strict JSON parser producing a compact read-only tree (see json.h).
 *
 * Two passes over the text with the same recursive-descent code. The first pass validates
 * everything, reports any error, and measures: the number of values, the bytes of decoded
 * strings and the child count of every container (in pre-order). The second pass then fills
 * exactly-sized arrays, handing each container a contiguous block of children from a bump
 * allocator. Nothing moves after it is written, so the tree can hold plain pointers, and no
 * memory is spent on input that turns out to be invalid. Recursion depth is bounded by
 * max_depth. */
#include "runtime/json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct JsonDoc {
    JsonValue root;
    JsonValue *nodes; /* every non-root value, in blocks of siblings */
    char *strs;       /* every decoded string and key, each NUL-terminated */
};

typedef struct Parser {
    const unsigned char *p;
    size_t len;
    size_t pos;
    int max_depth;
    size_t max_values;
    JsonError *err;
    int fill;             /* 0: checking and measuring; 1: building the tree */
    size_t n_values;      /* values met so far */
    size_t n_containers;  /* containers met so far (their pre-order index) */
    size_t *counts;       /* child count of each container, from the first pass */
    size_t counts_cap;
    size_t str_bytes;     /* first pass: decoded string bytes, NULs included */
    JsonValue *nodes;     /* second pass: the node array and its bump pointer */
    size_t nodes_used;
    size_t nodes_cap;
    char *strs;           /* second pass: the string area and its bump pointer */
    size_t strs_used;
} Parser;

static int json_fail(Parser *P, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int json_fail(Parser *P, size_t at, const char *fmt, ...)
{
    if (P->err) {
        va_list ap;
        va_start(ap, fmt);
        P->err->offset = at;
        vsnprintf(P->err->msg, sizeof P->err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Describe the byte at `at` for a message: 'x' when printable, else its hex value. */
static const char *json_describe_byte(const Parser *P, size_t at, char buf[16])
{
    unsigned char c = P->p[at];
    if (c > 0x20 && c < 0x7F && c != '\'')
        snprintf(buf, 16, "'%c'", c);
    else
        snprintf(buf, 16, "byte 0x%02x", c);
    return buf;
}

static void json_skip_ws(Parser *P)
{
    while (P->pos < P->len) {
        unsigned char c = P->p[P->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        P->pos++;
    }
}

static int json_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int json_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Read the 4 hex digits of a \u escape starting at P->pos. */
static int json_read_hex4(Parser *P, uint32_t *out)
{
    if (P->len - P->pos < 4)
        return json_fail(P, P->pos, "truncated \\u escape (need 4 hex digits)");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = json_hex_value(P->p[P->pos + i]);
        if (h < 0)
            return json_fail(P, P->pos + i, "invalid hex digit in a \\u escape");
        v = v << 4 | (uint32_t)h;
    }
    P->pos += 4;
    *out = v;
    return 0;
}

/* Length of the well-formed UTF-8 sequence at `at` (Unicode table 3-7: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0 if it is malformed or truncated. */
static size_t json_utf8_length(const Parser *P, size_t at)
{
    const unsigned char *s = P->p + at;
    size_t avail = P->len - at;
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (avail < n)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

/* Append one byte of decoded string (second pass) or just count it (first pass). */
static void json_put(char *dst, size_t *n, unsigned char c)
{
    if (dst)
        dst[*n] = (char)c;
    (*n)++;
}

static void json_put_codepoint(char *dst, size_t *n, uint32_t cp)
{
    if (cp < 0x80) {
        json_put(dst, n, (unsigned char)cp);
    } else if (cp < 0x800) {
        json_put(dst, n, (unsigned char)(0xC0 | cp >> 6));
        json_put(dst, n, (unsigned char)(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        json_put(dst, n, (unsigned char)(0xE0 | cp >> 12));
        json_put(dst, n, (unsigned char)(0x80 | (cp >> 6 & 0x3F)));
        json_put(dst, n, (unsigned char)(0x80 | (cp & 0x3F)));
    } else {
        json_put(dst, n, (unsigned char)(0xF0 | cp >> 18));
        json_put(dst, n, (unsigned char)(0x80 | (cp >> 12 & 0x3F)));
        json_put(dst, n, (unsigned char)(0x80 | (cp >> 6 & 0x3F)));
        json_put(dst, n, (unsigned char)(0x80 | (cp & 0x3F)));
    }
}

/* A \uXXXX escape (P->pos just after the 'u'), combining a surrogate pair. */
static int json_parse_unicode_escape(Parser *P, char *dst, size_t *n)
{
    size_t at = P->pos - 2;
    uint32_t cp;
    if (json_read_hex4(P, &cp))
        return -1;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return json_fail(P, at, "unpaired low surrogate \\u%04x", (unsigned)cp);
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (P->len - P->pos < 2 || P->p[P->pos] != '\\' || P->p[P->pos + 1] != 'u')
            return json_fail(P, at, "high surrogate \\u%04x not followed by a low surrogate",
                             (unsigned)cp);
        P->pos += 2;
        uint32_t lo;
        if (json_read_hex4(P, &lo))
            return -1;
        if (lo < 0xDC00 || lo > 0xDFFF)
            return json_fail(P, at, "high surrogate \\u%04x not followed by a low surrogate",
                             (unsigned)cp);
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    json_put_codepoint(dst, n, cp);
    return 0;
}

/* A string starting at the opening quote at P->pos. First pass: validate and count its bytes.
 * Second pass: decode it into the string area and return it through *out, *out_len. */
static int json_parse_string(Parser *P, const char **out, size_t *out_len)
{
    size_t start = P->pos;
    char *dst = P->fill ? P->strs + P->strs_used : NULL;
    size_t n = 0;
    char cbuf[16];
    P->pos++;
    for (;;) {
        if (P->pos >= P->len)
            return json_fail(P, start, "unterminated string");
        unsigned char c = P->p[P->pos];
        if (c == '"') {
            P->pos++;
            break;
        }
        if (c < 0x20)
            return json_fail(P, P->pos, "control character 0x%02x in a string must be escaped",
                             c);
        if (c == '\\') {
            P->pos++;
            if (P->pos >= P->len)
                return json_fail(P, start, "unterminated string");
            unsigned char e = P->p[P->pos++];
            switch (e) {
            case '"': case '\\': case '/': json_put(dst, &n, e); break;
            case 'b': json_put(dst, &n, '\b'); break;
            case 'f': json_put(dst, &n, '\f'); break;
            case 'n': json_put(dst, &n, '\n'); break;
            case 'r': json_put(dst, &n, '\r'); break;
            case 't': json_put(dst, &n, '\t'); break;
            case 'u':
                if (json_parse_unicode_escape(P, dst, &n))
                    return -1;
                break;
            default:
                return json_fail(P, P->pos - 2, "invalid escape: backslash followed by %s",
                                 json_describe_byte(P, P->pos - 1, cbuf));
            }
        } else if (c < 0x80) {
            json_put(dst, &n, c);
            P->pos++;
        } else {
            size_t k = json_utf8_length(P, P->pos);
            if (k == 0)
                return json_fail(P, P->pos, "invalid UTF-8 in a string");
            for (size_t i = 0; i < k; i++)
                json_put(dst, &n, P->p[P->pos + i]);
            P->pos += k;
        }
    }
    if (P->fill) {
        dst[n] = '\0';
        P->strs_used += n + 1;
        *out = dst;
    } else {
        P->str_bytes += n + 1;
        *out = NULL;
    }
    *out_len = n;
    return 0;
}

/* mant * 10^exp10 as a double. Correctly rounded when mant <= 2^53 and |exp10| <= 22, which
 * covers every number a safetensors header holds; otherwise computed in long double: within an
 * ulp where long double is wider than double, a few ulp (and values within a few ulp of DBL_MAX
 * may overflow) where it is not. Written out rather than strtod
 * because strtod obeys the caller's locale (a ',' decimal point would break it). */
static double json_scale10(uint64_t mant, long exp10)
{
    static const double pow10[] = {
        1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    };
    if (mant == 0)
        return 0.0;
    if (mant <= (uint64_t)1 << 53 && exp10 >= -22 && exp10 <= 22)
        return exp10 >= 0 ? (double)mant * pow10[exp10] : (double)mant / pow10[-exp10];
    /* mant < 10^19, so beyond these bounds the result is certainly infinite or zero. */
    if (exp10 > 330)
        return HUGE_VAL;
    if (exp10 < -350)
        return 0.0;
    long double r = (long double)mant;
    if (exp10 < -300) {
        /* Two steps, so that 10^|exp10| never overflows where long double is double. */
        r /= 1e300L;
        exp10 += 300;
    }
    long double p = 1.0L, base = 10.0L;
    for (unsigned long e = (unsigned long)(exp10 < 0 ? -exp10 : exp10); e; e >>= 1) {
        if (e & 1)
            p *= base;
        base *= base;
    }
    r = exp10 < 0 ? r / p : r * p;
    if (r > (long double)1.7976931348623157e308)
        return HUGE_VAL; /* overflow, without an out-of-range cast */
    return (double)r;
}

static int json_parse_number(Parser *P, JsonValue *v)
{
    size_t start = P->pos;
    int neg = 0, frac = 0, overflow = 0;
    uint64_t mag = 0;      /* exact integer magnitude, while it fits */
    uint64_t mant = 0;     /* first 19 significant digits */
    int sig = 0;
    long exp10 = 0;

    if (P->p[P->pos] == '-') {
        neg = 1;
        P->pos++;
    }
    if (P->pos >= P->len || !json_is_digit(P->p[P->pos]))
        return json_fail(P, P->pos, "expected a digit in a number");
    if (P->p[P->pos] == '0' && P->pos + 1 < P->len && json_is_digit(P->p[P->pos + 1]))
        return json_fail(P, P->pos, "leading zeros are not allowed in a number");
    for (int part = 0; part < 2; part++) {
        if (part == 1) {
            if (P->pos >= P->len || P->p[P->pos] != '.')
                break;
            frac = 1;
            P->pos++;
            if (P->pos >= P->len || !json_is_digit(P->p[P->pos]))
                return json_fail(P, P->pos, "expected a digit after '.' in a number");
        }
        while (P->pos < P->len && json_is_digit(P->p[P->pos])) {
            unsigned d = P->p[P->pos++] - '0';
            if (!frac) {
                if (mag > (UINT64_MAX - d) / 10)
                    overflow = 1;
                else
                    mag = mag * 10 + d;
            }
            if (sig < 19) {
                mant = mant * 10 + d;
                if (mant != 0)
                    sig++;
                if (frac)
                    exp10--;
            } else if (!frac) {
                exp10++;
            }
        }
    }
    int has_exp = 0;
    if (P->pos < P->len && (P->p[P->pos] == 'e' || P->p[P->pos] == 'E')) {
        int eneg = 0;
        long e = 0;
        has_exp = 1;
        P->pos++;
        if (P->pos < P->len && (P->p[P->pos] == '+' || P->p[P->pos] == '-'))
            eneg = P->p[P->pos++] == '-';
        if (P->pos >= P->len || !json_is_digit(P->p[P->pos]))
            return json_fail(P, P->pos, "expected a digit in the exponent of a number");
        while (P->pos < P->len && json_is_digit(P->p[P->pos])) {
            if (e < 100000) /* saturate: 1e100000 is infinity anyway */
                e = e * 10 + (P->p[P->pos] - '0');
            P->pos++;
        }
        exp10 += eneg ? -e : e;
    }

    double num = json_scale10(mant, exp10);
    v->kind = JSON_NUMBER;
    v->offset = start;
    v->u.n.num = neg ? -num : num;
    if (!frac && !has_exp) {
        uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        if (overflow || mag > limit) {
            v->int_overflow = 1;
        } else {
            v->is_int = 1;
            if (neg)
                v->u.n.i = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
            else
                v->u.n.i = (int64_t)mag;
        }
    }
    return 0;
}

static int json_parse_literal(Parser *P, JsonValue *v, const char *word, JsonKind kind)
{
    size_t n = strlen(word);
    if (P->len - P->pos < n || memcmp(P->p + P->pos, word, n) != 0)
        return json_fail(P, P->pos, "invalid literal (expected '%s')", word);
    v->kind = kind;
    v->offset = P->pos;
    P->pos += n;
    return 0;
}

static int json_parse_value(Parser *P, JsonValue *v, int depth);

/* Open a container: check the depth, take its pre-order index and, in the second pass, its
 * block of children. */
static int json_open_container(Parser *P, JsonValue *v, int depth, JsonKind kind, size_t *idx,
                               JsonValue **block)
{
    if (depth >= P->max_depth)
        return json_fail(P, P->pos, "nesting deeper than %d levels", P->max_depth);
    v->kind = kind;
    v->offset = P->pos;
    *idx = P->n_containers++;
    *block = NULL;
    if (!P->fill) {
        if (*idx >= P->counts_cap) {
            size_t cap = P->counts_cap ? P->counts_cap * 2 : 64;
            size_t *c = realloc(P->counts, cap * sizeof *c);
            if (!c)
                return json_fail(P, P->pos, "out of memory");
            P->counts = c;
            P->counts_cap = cap;
        }
        P->counts[*idx] = 0;
        return 0;
    }
    size_t count = P->counts[*idx];
    if (count > P->nodes_cap - P->nodes_used)
        return json_fail(P, P->pos, "internal error: second pass disagrees with the first");
    *block = count ? P->nodes + P->nodes_used : NULL; /* nodes is NULL when all are empty */
    P->nodes_used += count;
    v->u.c.items = *block;
    v->u.c.count = count;
    return 0;
}

/* The slot for child number `n` of a container: the block in the second pass, a throwaway in
 * the first. */
static JsonValue *json_child_slot(Parser *P, size_t idx, JsonValue *block, size_t n,
                                  JsonValue *tmp)
{
    JsonValue *c = tmp;
    if (P->fill) {
        if (n >= P->counts[idx])
            return NULL;
        c = &block[n];
    }
    memset(c, 0, sizeof *c);
    return c;
}

static int json_parse_array(Parser *P, JsonValue *v, int depth)
{
    size_t idx, n = 0;
    JsonValue *block, tmp;
    if (json_open_container(P, v, depth, JSON_ARRAY, &idx, &block))
        return -1;
    P->pos++;
    json_skip_ws(P);
    if (P->pos < P->len && P->p[P->pos] == ']') {
        P->pos++;
        return 0;
    }
    for (;;) {
        JsonValue *c = json_child_slot(P, idx, block, n, &tmp);
        if (!c)
            return json_fail(P, P->pos, "internal error: second pass disagrees with the first");
        if (json_parse_value(P, c, depth + 1))
            return -1;
        n++;
        json_skip_ws(P);
        if (P->pos >= P->len)
            return json_fail(P, P->pos, "unexpected end of input in the array opened at byte %zu",
                             v->offset);
        unsigned char ch = P->p[P->pos];
        if (ch == ']') {
            P->pos++;
            break;
        }
        if (ch != ',') {
            char cbuf[16];
            return json_fail(P, P->pos, "expected ',' or ']' in an array, found %s",
                             json_describe_byte(P, P->pos, cbuf));
        }
        P->pos++;
        json_skip_ws(P);
        if (P->pos < P->len && P->p[P->pos] == ']')
            return json_fail(P, P->pos - 1, "trailing comma in an array");
    }
    if (!P->fill)
        P->counts[idx] = n;
    return 0;
}

static int json_parse_object(Parser *P, JsonValue *v, int depth)
{
    size_t idx, n = 0;
    JsonValue *block, tmp;
    char cbuf[16];
    if (json_open_container(P, v, depth, JSON_OBJECT, &idx, &block))
        return -1;
    P->pos++;
    json_skip_ws(P);
    if (P->pos < P->len && P->p[P->pos] == '}') {
        P->pos++;
        return 0;
    }
    for (;;) {
        if (P->pos >= P->len)
            return json_fail(P, P->pos, "unexpected end of input in the object opened at byte %zu",
                             v->offset);
        if (P->p[P->pos] != '"')
            return json_fail(P, P->pos, "expected a string key in an object, found %s",
                             json_describe_byte(P, P->pos, cbuf));
        const char *key;
        size_t key_len;
        if (json_parse_string(P, &key, &key_len))
            return -1;
        json_skip_ws(P);
        if (P->pos >= P->len)
            return json_fail(P, P->pos, "unexpected end of input in the object opened at byte %zu",
                             v->offset);
        if (P->p[P->pos] != ':')
            return json_fail(P, P->pos, "expected ':' after an object key, found %s",
                             json_describe_byte(P, P->pos, cbuf));
        P->pos++;
        JsonValue *c = json_child_slot(P, idx, block, n, &tmp);
        if (!c)
            return json_fail(P, P->pos, "internal error: second pass disagrees with the first");
        if (json_parse_value(P, c, depth + 1))
            return -1;
        c->key = key;
        c->key_len = key_len;
        n++;
        json_skip_ws(P);
        if (P->pos >= P->len)
            return json_fail(P, P->pos, "unexpected end of input in the object opened at byte %zu",
                             v->offset);
        unsigned char ch = P->p[P->pos];
        if (ch == '}') {
            P->pos++;
            break;
        }
        if (ch != ',')
            return json_fail(P, P->pos, "expected ',' or '}' in an object, found %s",
                             json_describe_byte(P, P->pos, cbuf));
        P->pos++;
        json_skip_ws(P);
        if (P->pos < P->len && P->p[P->pos] == '}')
            return json_fail(P, P->pos - 1, "trailing comma in an object");
    }
    if (!P->fill)
        P->counts[idx] = n;
    return 0;
}

static int json_parse_value(Parser *P, JsonValue *v, int depth)
{
    char cbuf[16];
    json_skip_ws(P);
    if (P->pos >= P->len)
        return json_fail(P, P->pos, "unexpected end of input (expected a value)");
    if (P->n_values >= P->max_values)
        return json_fail(P, P->pos, "more than %zu values", P->max_values);
    P->n_values++;
    unsigned char c = P->p[P->pos];
    switch (c) {
    case '{':
        return json_parse_object(P, v, depth);
    case '[':
        return json_parse_array(P, v, depth);
    case '"':
        v->kind = JSON_STRING;
        v->offset = P->pos;
        return json_parse_string(P, &v->u.s.str, &v->u.s.len);
    case 't':
        return json_parse_literal(P, v, "true", JSON_TRUE);
    case 'f':
        return json_parse_literal(P, v, "false", JSON_FALSE);
    case 'n':
        return json_parse_literal(P, v, "null", JSON_NULL);
    default:
        if (c == '-' || json_is_digit(c))
            return json_parse_number(P, v);
        return json_fail(P, P->pos, "unexpected %s (expected a value)",
                         json_describe_byte(P, P->pos, cbuf));
    }
}

/* One complete pass over the text into *root. */
static int json_run_pass(Parser *P, JsonValue *root)
{
    P->pos = 0;
    P->n_values = 0;
    P->n_containers = 0;
    memset(root, 0, sizeof *root);
    if (json_parse_value(P, root, 0))
        return -1;
    json_skip_ws(P);
    if (P->pos != P->len) {
        char cbuf[16];
        return json_fail(P, P->pos, "unexpected %s after the end of the JSON value",
                         json_describe_byte(P, P->pos, cbuf));
    }
    return 0;
}

int json_parse(const char *text, size_t len, const JsonLimits *limits, JsonDoc **out,
               JsonError *err)
{
    Parser P;
    JsonDoc *doc = NULL;
    memset(&P, 0, sizeof P);
    if (err) {
        err->offset = 0;
        err->msg[0] = '\0';
    }
    if (!out)
        return -1;
    *out = NULL;
    P.err = err;
    P.p = (const unsigned char *)text;
    P.len = text ? len : 0;
    P.max_depth = limits && limits->max_depth > 0 ? limits->max_depth : JSON_DEFAULT_MAX_DEPTH;
    P.max_values = limits && limits->max_values > 0 ? limits->max_values
                                                    : JSON_DEFAULT_MAX_VALUES;

    JsonValue root;
    if (json_run_pass(&P, &root))
        goto fail;

    doc = calloc(1, sizeof *doc);
    if (!doc)
        goto oom;
    /* n_values - 1 nodes: the root lives in the document itself. */
    P.nodes_cap = P.n_values - 1;
    if (P.nodes_cap) {
        if (P.nodes_cap > SIZE_MAX / sizeof(JsonValue))
            goto oom;
        doc->nodes = malloc(P.nodes_cap * sizeof(JsonValue));
        if (!doc->nodes)
            goto oom;
    }
    doc->strs = malloc(P.str_bytes ? P.str_bytes : 1);
    if (!doc->strs)
        goto oom;
    P.fill = 1;
    P.nodes = doc->nodes;
    P.strs = doc->strs;
    if (json_run_pass(&P, &doc->root))
        goto fail;
    free(P.counts);
    *out = doc;
    return 0;

oom:
    json_fail(&P, 0, "out of memory");
fail:
    free(P.counts);
    json_free(doc);
    return -1;
}

const JsonValue *json_root(const JsonDoc *doc)
{
    return doc ? &doc->root : NULL;
}

const JsonValue *json_get(const JsonValue *obj, const char *key)
{
    if (!obj || obj->kind != JSON_OBJECT || !key)
        return NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < obj->u.c.count; i++) {
        const JsonValue *m = &obj->u.c.items[i];
        if (m->key_len == n && memcmp(m->key, key, n) == 0)
            return m;
    }
    return NULL;
}

const char *json_kind_name(JsonKind kind)
{
    switch (kind) {
    case JSON_NULL: return "null";
    case JSON_FALSE: return "false";
    case JSON_TRUE: return "true";
    case JSON_NUMBER: return "number";
    case JSON_STRING: return "string";
    case JSON_ARRAY: return "array";
    case JSON_OBJECT: return "object";
    }
    return "?";
}

void json_free(JsonDoc *doc)
{
    if (!doc)
        return;
    free(doc->nodes);
    free(doc->strs);
    free(doc);
}
