/* bpe.c - the BPE model: a word starts as one symbol per byte and the adjacent pair of lowest
 * merge rank is merged until no pair has a rank (ties: leftmost first, as the reference does).
 * Pairs are found in a hash of (left id, right id) -> merge, candidates kept in a binary heap
 * over a linked list of symbols, and finished words are cached. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok.h"

static uint64_t pair_key(int32_t l, int32_t r) { return (uint64_t)(uint32_t)l << 32 | (uint32_t)r; }
static size_t pair_slot(uint64_t k, size_t cap)
{
    k ^= k >> 31;
    k *= 0x9e3779b97f4a7c15ull;
    return (size_t)(k >> 17) & (cap - 1);
}

static int32_t pair_find(const Bpe *b, int32_t l, int32_t r)
{
    if (!b->pair_cap) return -1;
    uint64_t k = pair_key(l, r) + 1; /* 0 marks an empty slot */
    for (size_t i = pair_slot(k, b->pair_cap);; i = (i + 1) & (b->pair_cap - 1)) {
        if (b->pair_keys[i] == k) return b->pair_vals[i];
        if (!b->pair_keys[i]) return -1;
    }
}

static int pair_insert(uint64_t *keys, int32_t *vals, size_t cap, uint64_t k, int32_t v)
{
    size_t i = pair_slot(k, cap);
    while (keys[i] && keys[i] != k) i = (i + 1) & (cap - 1);
    int dup = keys[i] == k;
    keys[i] = k;
    vals[i] = v;
    return dup;
}

int bpe_add_merge(Bpe *b, int32_t left, int32_t right, int32_t result, int *dup)
{
    *dup = 0;
    if (pair_find(b, left, right) >= 0) { *dup = 1; return 0; }
    if ((b->n_merges + 1) * 2 > b->pair_cap) {
        size_t cap = b->pair_cap ? b->pair_cap * 2 : 1024;
        uint64_t *keys = calloc(cap, sizeof *keys);
        int32_t *vals = malloc(cap * sizeof *vals);
        if (!keys || !vals) { free(keys); free(vals); return -1; }
        for (size_t i = 0; i < b->pair_cap; i++)
            if (b->pair_keys[i]) pair_insert(keys, vals, cap, b->pair_keys[i], b->pair_vals[i]);
        free(b->pair_keys);
        free(b->pair_vals);
        b->pair_keys = keys;
        b->pair_vals = vals;
        b->pair_cap = cap;
    }
    if ((b->n_merges & (b->n_merges - 1)) == 0) { /* grow at powers of two */
        Merge *m = realloc(b->merges, (b->n_merges ? b->n_merges * 2 : 1) * sizeof *m);
        if (!m) return -1;
        b->merges = m;
    }
    int32_t idx = (int32_t)b->n_merges;
    b->merges[idx] = (Merge){ left, right, result, idx };
    b->n_merges++;
    pair_insert(b->pair_keys, b->pair_vals, b->pair_cap, pair_key(left, right) + 1, idx);
    return 0;
}

/* Min-heap on (rank, position). */
static int heap_less(const struct HeapEnt *a, const struct HeapEnt *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static int heap_push(Bpe *b, size_t *n, struct HeapEnt e)
{
    if (*n == b->heap_cap) {
        size_t nc = b->heap_cap ? b->heap_cap * 2 : 256;
        struct HeapEnt *h = realloc(b->heap, nc * sizeof *h);
        if (!h) return -1;
        b->heap = h;
        b->heap_cap = nc;
    }
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &b->heap[p])) break;
        b->heap[i] = b->heap[p];
        i = p;
    }
    b->heap[i] = e;
    return 0;
}

static struct HeapEnt heap_pop(Bpe *b, size_t *n)
{
    struct HeapEnt top = b->heap[0], last = b->heap[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&b->heap[c + 1], &b->heap[c])) c++;
        if (!heap_less(&b->heap[c], &last)) break;
        b->heap[i] = b->heap[c];
        i = c;
    }
    if (*n) b->heap[i] = last;
    return top;
}

static int push_pair(Bpe *b, size_t *hn, int32_t pos)
{
    int32_t nx = b->next[pos];
    if (nx < 0 || b->sym[pos] < 0 || b->sym[nx] < 0) return 0;
    int32_t m = pair_find(b, b->sym[pos], b->sym[nx]);
    if (m < 0) return 0;
    return heap_push(b, hn, (struct HeapEnt){ b->merges[m].rank, pos, b->sym[pos], b->sym[nx] });
}

/* Emit one final symbol: its id, or byte fallback / unk for a byte with no token. */
static int emit(Bpe *b, IdVec *out, int32_t id, unsigned char byte)
{
    if (id >= 0) return idvec_push(out, id);
    if (b->byte_fallback && b->fallback_id[byte] >= 0) return idvec_push(out, b->fallback_id[byte]);
    if (b->unk_id < 0) return 0; /* dropped, as the reference drops an unknown symbol */
    if (b->fuse_unk && out->len && out->p[out->len - 1] == b->unk_id) return 0;
    return idvec_push(out, b->unk_id);
}

static int bpe_merge_word(Bpe *b, const StrMap *vocab, const unsigned char *p, size_t len,
                          IdVec *out)
{
    if (b->ignore_merges) {
        int32_t *v = strmap_find(vocab, (const char *)p, len);
        if (v) return idvec_push(out, *v);
    }
    if (len > b->sym_cap) {
        size_t nc = len * 2;
        int32_t *s = realloc(b->sym, nc * sizeof *s), *pr, *nx;
        if (!s) return -1;
        b->sym = s;
        if (!(pr = realloc(b->prev, nc * sizeof *pr))) return -1;
        b->prev = pr;
        if (!(nx = realloc(b->next, nc * sizeof *nx))) return -1;
        b->next = nx;
        b->sym_cap = nc;
    }
    for (size_t i = 0; i < len; i++) {
        b->sym[i] = b->byte_id[p[i]];
        b->prev[i] = (int32_t)i - 1;
        b->next[i] = i + 1 < len ? (int32_t)i + 1 : -1;
    }
    size_t hn = 0;
    for (size_t i = 0; i + 1 < len; i++)
        if (push_pair(b, &hn, (int32_t)i) != 0) return -1;
    while (hn) {
        struct HeapEnt e = heap_pop(b, &hn);
        int32_t nx = b->next[e.pos];
        /* stale: the left symbol was merged away or changed, or its right neighbour did */
        if (b->sym[e.pos] != e.left || nx < 0 || b->sym[nx] != e.right) continue;
        int32_t m = pair_find(b, e.left, e.right);
        b->sym[e.pos] = b->merges[m].result;
        b->sym[nx] = -2; /* dead */
        b->next[e.pos] = b->next[nx];
        if (b->next[nx] >= 0) b->prev[b->next[nx]] = e.pos;
        if (b->prev[e.pos] >= 0 && push_pair(b, &hn, b->prev[e.pos]) != 0) return -1;
        if (push_pair(b, &hn, e.pos) != 0) return -1;
    }
    for (int32_t i = 0; i >= 0; i = b->next[i])
        if (emit(b, out, b->sym[i], p[i]) != 0) return -1;
    return 0;
}

/* Words this long or longer are not cached (the reference caches below 256 characters). */
enum { CACHE_MAX_WORD = 256, CACHE_MAX_WORDS = 1 << 20 };

int bpe_word(Bpe *b, const StrMap *vocab, const char *p, size_t len, IdVec *out)
{
    if (!len) return 0;
    int cacheable = len < CACHE_MAX_WORD;
    if (cacheable) {
        int32_t *at = strmap_find(&b->cache, p, len);
        if (at) {
            const int32_t *ids = b->cache_ids.p + *at;
            for (int32_t i = 1; i <= ids[0]; i++)
                if (idvec_push(out, ids[i]) != 0) return -1;
            return 0;
        }
    }
    size_t first = out->len;
    if (bpe_merge_word(b, vocab, (const unsigned char *)p, len, out) != 0) return -1;
    if (!cacheable) return 0;
    if (b->cache.count >= CACHE_MAX_WORDS) { /* bound the memory: start over */
        strmap_free(&b->cache);
        b->cache_ids.len = 0;
    }
    int32_t at = (int32_t)b->cache_ids.len;
    if (idvec_push(&b->cache_ids, (int32_t)(out->len - first)) != 0) return -1;
    for (size_t i = first; i < out->len; i++)
        if (idvec_push(&b->cache_ids, out->p[i]) != 0) return -1;
    return strmap_put(&b->cache, p, len, at, NULL);
}

void bpe_free(Bpe *b)
{
    free(b->pair_keys);
    free(b->pair_vals);
    free(b->merges);
    strmap_free(&b->cache);
    free(b->cache_ids.p);
    free(b->sym);
    free(b->prev);
    free(b->next);
    free(b->heap);
}
