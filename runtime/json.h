/* json.h - a small, strict JSON parser for safetensors headers.
 *
 * Parses RFC 8259 JSON from a (pointer, length) buffer that need not be NUL-terminated into a
 * read-only tree owned by one JsonDoc. Strict: UTF-8 is validated, control characters must be
 * escaped, lone surrogates are refused, no trailing commas, comments or NaN, and nothing but
 * whitespace may follow the top-level value. Hostile input is bounded by a nesting-depth limit
 * (the parser recurses once per level) and a limit on the number of values. Every error carries
 * the byte offset where it was found.
 *
 * The tree: a container's children are one contiguous array (`items[0 .. count)`); members of an
 * object carry their key. Duplicate keys are kept in document order; json_get finds the first.
 * Strings are decoded to UTF-8 and NUL-terminated, but may themselves contain NUL bytes
 * ("\u0000"), so `len` is authoritative. */
#ifndef MXC_RUNTIME_JSON_H
#define MXC_RUNTIME_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    JSON_NULL,
    JSON_FALSE,
    JSON_TRUE,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
} JsonKind;

typedef struct JsonValue JsonValue;
struct JsonValue {
    JsonKind kind;
    /* NUMBER only: non-zero when written as an integer (no fraction, no exponent) that fits in
     * int64; then `i` holds it exactly. An integer literal outside int64 has is_int == 0 and
     * int_overflow != 0 (its approximate value is still in `num`). */
    unsigned char is_int;
    unsigned char int_overflow;
    size_t offset;        /* byte offset of the value's first character in the input */
    const char *key;      /* member of an OBJECT: its decoded key, else NULL */
    size_t key_len;
    union {
        struct {
            int64_t i;    /* NUMBER, when is_int */
            double num;   /* NUMBER: value (integers too; approximate beyond 2^53) */
        } n;
        struct {
            const char *str; /* STRING: decoded UTF-8, NUL-terminated */
            size_t len;
        } s;
        struct {
            const JsonValue *items; /* ARRAY/OBJECT: children, in document order */
            size_t count;
        } c;
    } u;
};

typedef struct JsonDoc JsonDoc;

/* Limits for hostile input; zero fields take the defaults below. */
typedef struct JsonLimits {
    int max_depth;     /* containers nested deeper than this are refused */
    size_t max_values; /* documents with more values than this are refused */
} JsonLimits;

#define JSON_DEFAULT_MAX_DEPTH 64
#define JSON_DEFAULT_MAX_VALUES ((size_t)1 << 22)

typedef struct JsonError {
    size_t offset;  /* byte offset of the problem in the input */
    char msg[128];  /* e.g. "expected ':' after an object key" */
} JsonError;

/* Parse `len` bytes at `text`. On success returns 0 and stores a new document in *out; on failure
 * returns -1, fills *err (if non-NULL) and stores NULL. `limits` may be NULL. */
int json_parse(const char *text, size_t len, const JsonLimits *limits, JsonDoc **out,
               JsonError *err);

/* The top-level value of a parsed document. */
const JsonValue *json_root(const JsonDoc *doc);

/* First member of `obj` whose key equals the NUL-terminated `key`; NULL if none or if `obj` is
 * not an object. */
const JsonValue *json_get(const JsonValue *obj, const char *key);

/* Name of a kind for messages ("object", "string", ...). */
const char *json_kind_name(JsonKind kind);

/* Release a document and everything in it; NULL is fine. */
void json_free(JsonDoc *doc);

#endif
