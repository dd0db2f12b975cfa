/* cleanup.c - transformers' clean_up_tokenization: " ." -> ".", " ?" -> "?", " !" -> "!",
 * " ," -> ",", " ' " -> "'", " n't" -> "n't", " 'm" -> "'m", " 's" -> "'s", " 've" -> "'ve",
 * " 're" -> "'re", applied one after the other over the whole text, each left to right without
 * overlaps (Python's str.replace, the JS reference's /g regexes).
 *
 * It runs as a chain of stages, one per rule, each holding back a tail that could still
 * become its pattern; so text fed in pieces (a stream of tokens) comes out exactly as the
 * whole text would, and every held tail is ASCII (UTF-8 passes through whole). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok.h"

static const struct { const char *pat, *rep; } rules[CLEANUP_STAGES] = {
    {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
    {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
};

/* One rule over held + in[0..len) into out; the undecided tail stays held. */
static int stage_put(Buf *held, int rule, const char *in, size_t len, Buf *out, int final)
{
    const char *pat = rules[rule].pat, *rep = rules[rule].rep;
    size_t plen = strlen(pat), rlen = strlen(rep);
    if (buf_add(held, in, len) != 0) return -1;
    const char *p = held->p;
    size_t n = held->len, i = 0, from = 0; /* p[from .. i) is copied as it is */
    while (i < n) {
        if (n - i >= plen) {
            if (memcmp(p + i, pat, plen) == 0) {
                if (buf_add(out, p + from, i - from) != 0 || buf_add(out, rep, rlen) != 0) return -1;
                i += plen;
                from = i;
                continue;
            }
        } else if (!final && memcmp(p + i, pat, n - i) == 0) {
            break; /* may still become the pattern */
        }
        i++;
    }
    if (buf_add(out, p + from, i - from) != 0) return -1;
    memmove(held->p, p + i, n - i);
    held->len = n - i;
    return 0;
}

int cleanup_put(Cleanup *c, const char *in, size_t len, Buf *out, int final)
{
    Buf a = {0}, b = {0};
    const char *src = in;
    size_t src_len = len;
    int rc = 0;
    for (int k = 0; k < CLEANUP_STAGES && rc == 0; k++) {
        Buf *dst = k == CLEANUP_STAGES - 1 ? out : (k % 2 ? &b : &a);
        if (dst != out) dst->len = 0;
        rc = stage_put(&c->held[k], k, src, src_len, dst, final);
        src = dst->p ? dst->p : "";
        src_len = dst->len;
        if (dst == out) break;
    }
    free(a.p);
    free(b.p);
    return rc;
}

void cleanup_free(Cleanup *c)
{
    for (int k = 0; k < CLEANUP_STAGES; k++) {
        free(c->held[k].p);
        c->held[k] = (Buf){0};
    }
}
