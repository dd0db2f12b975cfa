/* strmap.c - the small containers of the tokenizer: a byte-string -> id hash map (vocabulary,
 * added tokens, the word cache), growable byte and id buffers, and the error helper. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok.h"

int tok_fail(MxcTokError *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* FNV-1a over 8-byte words then bytes: cheap and good enough for short tokens. */
uint64_t strmap_hash(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < len; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    h ^= h >> 32;
    return h * 0x9e3779b97f4a7c15ull;
}

int32_t *strmap_find(const StrMap *m, const char *key, size_t len)
{
    if (!m->cap) return NULL;
    uint64_t h = strmap_hash(key, len);
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        uint32_t s = m->slots[i];
        if (!s) return NULL;
        if (m->ent[s - 1].hash == h && m->ent[s - 1].len == len &&
            memcmp(m->ent[s - 1].key, key, len) == 0)
            return &m->ent[s - 1].val;
    }
}

static int strmap_grow(StrMap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    uint32_t *slots = calloc(cap, sizeof *slots);
    if (!slots) return -1;
    for (size_t e = 0; e < m->count; e++) {
        size_t i = m->ent[e].hash & (cap - 1);
        while (slots[i]) i = (i + 1) & (cap - 1);
        slots[i] = (uint32_t)(e + 1);
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int strmap_put(StrMap *m, const char *key, size_t len, int32_t val, int *existed)
{
    int32_t *v = strmap_find(m, key, len);
    if (existed) *existed = v != NULL;
    if (v) { *v = val; return 0; }
    if ((m->count + 1) * 2 > m->cap && strmap_grow(m) != 0) return -1;
    if (m->count == m->ent_cap) {
        size_t nc = m->ent_cap ? m->ent_cap * 2 : 64;
        void *p = realloc(m->ent, nc * sizeof *m->ent);
        if (!p) return -1;
        m->ent = p;
        m->ent_cap = nc;
    }
    char *k = malloc(len + 1);
    if (!k) return -1;
    memcpy(k, key, len);
    k[len] = 0;
    uint64_t h = strmap_hash(key, len);
    m->ent[m->count].key = k;
    m->ent[m->count].len = len;
    m->ent[m->count].val = val;
    m->ent[m->count].hash = h;
    size_t i = h & (m->cap - 1);
    while (m->slots[i]) i = (i + 1) & (m->cap - 1);
    m->slots[i] = (uint32_t)(++m->count);
    return 0;
}

void strmap_free(StrMap *m)
{
    for (size_t e = 0; e < m->count; e++) free(m->ent[e].key);
    free(m->ent);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

int buf_reserve(Buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t nc = b->cap ? b->cap : 64;
    while (nc < b->len + extra + 1) nc *= 2;
    char *p = realloc(b->p, nc);
    if (!p) return -1;
    /* PCRE2's JIT reads ahead of the subject's end inside its buffer (harmless); zeroing the new
     * room keeps valgrind quiet about it */
    memset(p + b->cap, 0, nc - b->cap);
    b->p = p;
    b->cap = nc;
    return 0;
}

int buf_add(Buf *b, const void *p, size_t n)
{
    if (buf_reserve(b, n) != 0) return -1;
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int idvec_push(IdVec *v, int32_t id)
{
    if (v->len == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 64;
        int32_t *p = realloc(v->p, nc * sizeof *p);
        if (!p) return -1;
        v->p = p;
        v->cap = nc;
    }
    v->p[v->len++] = id;
    return 0;
}
