/* tok.h - the tokenizer's private structures, shared by its files (load, normalize, pretok,
 * bpe, encode, decode). Nothing here is installed. */
#ifndef MXC_TOKENIZER_TOK_H
#define MXC_TOKENIZER_TOK_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/mxc_tokenizer.h"

/* --- strmap.c: byte string -> int32 hash map (open addressing; keys copied) ------------ */
typedef struct StrMap {
    uint32_t *slots; /* index + 1 into the entries, 0 = empty */
    size_t cap;      /* power of two */
    struct { char *key; size_t len; int32_t val; uint64_t hash; } *ent;
    size_t count, ent_cap;
} StrMap;

uint64_t strmap_hash(const char *s, size_t len);
/* Pointer to the value of key, or NULL. */
int32_t *strmap_find(const StrMap *m, const char *key, size_t len);
/* Insert or overwrite; returns -1 on allocation failure. `*existed` (if not NULL) tells which. */
int strmap_put(StrMap *m, const char *key, size_t len, int32_t val, int *existed);
void strmap_free(StrMap *m);

/* --- growable buffers ---------------------------------------------------------------------- */
typedef struct Buf { char *p; size_t len, cap; } Buf;
int buf_reserve(Buf *b, size_t extra);
int buf_add(Buf *b, const void *p, size_t n);

typedef struct IdVec { int32_t *p; size_t len, cap; } IdVec;
int idvec_push(IdVec *v, int32_t id);

/* --- normalize.c ---------------------------------------------------------------------------- */
typedef enum { NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_LOWERCASE, NORM_STRIP,
               NORM_STRIP_ACCENTS, NORM_REPLACE, NORM_PREPEND } NormKind;
typedef struct Norm {
    NormKind kind;
    int strip_left, strip_right;  /* STRIP */
    char *str; size_t str_len;    /* REPLACE: literal pattern (when re is NULL); PREPEND: text */
    pcre2_code *re;               /* REPLACE with a Regex pattern */
    char *content; size_t content_len; /* REPLACE: replacement */
} Norm;

/* Apply the chain to in[0..len) into out (reset first). */
int norm_apply(const Norm *chain, size_t n, const char *in, size_t len, Buf *out, MxcTokError *err);
void norm_free(Norm *chain, size_t n);

/* --- pretok.c -------------------------------------------------------------------------------- */
typedef enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT,
               SPLIT_CONTIGUOUS } SplitBehavior;
typedef enum { PRE_SPLIT, PRE_BYTELEVEL } PreKind;
typedef struct PreTok {
    PreKind kind;
    pcre2_code *re;          /* SPLIT (regex or escaped literal); BYTELEVEL: its regex or NULL */
    SplitBehavior behavior;  /* SPLIT */
    int invert;              /* SPLIT */
    int add_prefix_space;    /* BYTELEVEL */
} PreTok;

/* Called with every final pre-token (a byte range). Returns -1 to stop with an error. */
typedef int (*PieceFn)(void *ctx, const char *p, size_t len);
int pretok_run(const PreTok *chain, size_t n, pcre2_match_data *md, const char *p, size_t len,
               PieceFn fn, void *ctx, MxcTokError *err);
/* Compile a tokenizer.json regex (Oniguruma syntax, which PCRE2 reads) with UTF and UCP. */
pcre2_code *pretok_compile(const char *pat, size_t len, int literal, const char *where,
                           MxcTokError *err);
/* GPT-2's pre-tokenizer regex (the ByteLevel pre-tokenizer's), compiled. */
pcre2_code *pretok_bytelevel_regex(MxcTokError *err);
void pretok_free(PreTok *chain, size_t n);
/* ECMAScript's \s set (WhiteSpace + LineTerminator), used by trim and the regexes. */
int tok_is_js_space(uint32_t cp);

/* --- bpe.c ----------------------------------------------------------------------------------- */
typedef struct Merge { int32_t left, right, result, rank; } Merge;
typedef struct Bpe {
    /* pair (left id, right id) -> index into merges; open addressing on a 64-bit key */
    uint64_t *pair_keys; int32_t *pair_vals; size_t pair_cap;
    Merge *merges; size_t n_merges;
    int32_t byte_id[256];  /* id of each single byte's token, -1 if missing */
    int32_t fallback_id[256]; /* byte_fallback: id of <0xXX>, -1 if missing */
    int byte_fallback, ignore_merges, fuse_unk;
    int32_t unk_id;        /* -1 if none */
    /* cache of words: bytes -> offset + 1 into cache_ids (count first) */
    StrMap cache; IdVec cache_ids;
    /* scratch for one word */
    int32_t *sym, *prev, *next; size_t sym_cap;
    struct HeapEnt { int32_t rank, pos, left, right; } *heap; size_t heap_cap;
} Bpe;

int bpe_add_merge(Bpe *b, int32_t left, int32_t right, int32_t result, int *dup);
/* Append the ids of one pre-token to out. `vocab` maps a token's bytes to its id. */
int bpe_word(Bpe *b, const StrMap *vocab, const char *p, size_t len, IdVec *out);
void bpe_free(Bpe *b);

/* --- cleanup.c: clean_up_tokenization_spaces, streamable ---------------------------------- */
#define CLEANUP_STAGES 10
typedef struct Cleanup { Buf held[CLEANUP_STAGES]; } Cleanup;
/* Append the cleaned text of in[0..len) to out; `final` also releases every held tail. */
int cleanup_put(Cleanup *c, const char *in, size_t len, Buf *out, int final);
void cleanup_free(Cleanup *c);

/* --- the tokenizer --------------------------------------------------------------------------- */
typedef struct Added {
    char *content; size_t len;
    int32_t id;
    int special, normalized, lstrip, rstrip;
} Added;

/* Longest-match splitter over a set of added tokens (bucketed by first byte). */
typedef struct Splitter {
    int32_t *order;          /* indices into tok->added, by first byte then longest first */
    size_t start[257];       /* order[start[c] .. start[c+1]) begin with byte c */
    char **keys; size_t *key_len; /* key of each added token in this splitter */
    unsigned char second[256][32]; /* bitmap of the second bytes of the keys of a bucket */
    unsigned char single[256];     /* the bucket has a one-byte key */
} Splitter;

struct MxcTokenizer {
    char *name;
    int32_t n_ids;
    char **str; size_t *str_len;      /* per id: token as written in the file (NULL = unused) */
    char **bytes; size_t *bytes_len;  /* per id: what it decodes to */
    unsigned char *added_kind;        /* per id: 0, 1 added, 2 added + special */
    StrMap vocab_bytes;               /* decoded bytes -> id (BPE lookups) */
    StrMap vocab_str;                 /* file string -> id (token_to_id) */
    Bpe bpe;
    Norm *norm; size_t n_norm; int has_norm;
    PreTok *pre; size_t n_pre;
    Added *added; size_t n_added;
    StrMap added_map;                 /* content and normalized content -> index into added */
    char **added_norm; size_t *added_norm_len; /* normalized content of each (or NULL) */
    Splitter split_raw, split_norm;
    int32_t *remap;                   /* model output id -> id (an added token's, as the reference) */
    IdVec prefix, suffix;             /* post-processor: ids around the text */
    int32_t special[4];               /* bos, eos, pad, unk */
    pcre2_match_data *md;
};

/* Error helper: printf into err->msg (if err). Always returns -1. */
int tok_fail(MxcTokError *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* utf8: length of the valid UTF-8 sequence at p (1..4), 0 if invalid or truncated. */
size_t utf8_valid_len(const unsigned char *p, size_t avail);
size_t utf8_decode(const unsigned char *p, size_t avail, uint32_t *cp); /* 0 if invalid */
size_t utf8_encode(uint32_t cp, char *out);
/* Append bytes to out, replacing ill-formed subsequences by U+FFFD (WHATWG decoder). When
 * `hold` is non-NULL, an incomplete sequence at the end is not replaced but its length stored. */
int utf8_sanitize(const unsigned char *p, size_t len, Buf *out, size_t *hold);

#endif
