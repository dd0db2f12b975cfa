/* stop.c - the stop-string filter of `mxc run`: one buffer of held-back text. */
#include "driver/stop.h"

#include <stdlib.h>
#include <string.h>

struct StopFilter {
    char **stops;
    size_t *lens;
    int n;
    char *buf; /* held text, then the returned text (the buffer is reused) */
    size_t len, cap;
    char *out;
    size_t out_cap;
    bool stopped;
};

StopFilter *stop_new(const char *const *stops, int n)
{
    StopFilter *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->stops = calloc((size_t)(n ? n : 1), sizeof *f->stops);
    f->lens = calloc((size_t)(n ? n : 1), sizeof *f->lens);
    if (!f->stops || !f->lens) {
        stop_free(f);
        return NULL;
    }
    f->n = n;
    for (int i = 0; i < n; i++) {
        f->lens[i] = strlen(stops[i]);
        if (!(f->stops[i] = strdup(stops[i]))) {
            stop_free(f);
            return NULL;
        }
    }
    return f;
}

void stop_free(StopFilter *f)
{
    if (!f) return;
    for (int i = 0; f->stops && i < f->n; i++) free(f->stops[i]);
    free(f->stops);
    free(f->lens);
    free(f->buf);
    free(f->out);
    free(f);
}

static bool grow(char **p, size_t *cap, size_t need)
{
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    char *q = realloc(*p, c);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

/* Move buf[0 .. n) to out and keep buf[n .. len). */
static void take(StopFilter *f, size_t n, const char **out, size_t *out_len)
{
    if (!grow(&f->out, &f->out_cap, n + 1)) n = 0; /* out of memory: print nothing yet */
    if (f->out) {
        memcpy(f->out, f->buf, n);
        f->out[n] = 0;
    }
    memmove(f->buf, f->buf + n, f->len - n);
    f->len -= n;
    *out = f->out ? f->out : "";
    *out_len = n;
}

/* Does buf[at .. len) begin a stop string (be a proper prefix of one)? */
static bool may_start_stop(const StopFilter *f, size_t at)
{
    size_t rest = f->len - at;
    for (int i = 0; i < f->n; i++)
        if (rest < f->lens[i] && memcmp(f->buf + at, f->stops[i], rest) == 0) return true;
    return false;
}

bool stop_put(StopFilter *f, const char *text, size_t len, const char **out, size_t *out_len)
{
    *out = "";
    *out_len = 0;
    if (f->stopped) return true;
    if (!grow(&f->buf, &f->cap, f->len + len + 1)) { /* out of memory: pass it through */
        *out = text;
        *out_len = len;
        return false;
    }
    memcpy(f->buf + f->len, text, len);
    f->len += len;
    /* the earliest stop string in the text (the held tail held none) */
    size_t first = f->len;
    for (int i = 0; i < f->n; i++) {
        if (!f->lens[i] || f->lens[i] > f->len) continue;
        for (size_t at = 0; at + f->lens[i] <= f->len && at < first; at++)
            if (memcmp(f->buf + at, f->stops[i], f->lens[i]) == 0) {
                first = at;
                break;
            }
    }
    if (first < f->len) {
        f->len = first;
        take(f, first, out, out_len);
        f->stopped = true;
        return true;
    }
    size_t keep = f->len;
    for (size_t at = 0; at < f->len; at++)
        if (may_start_stop(f, at)) {
            keep = at;
            break;
        }
    while (keep > 0 && keep < f->len && ((unsigned char)f->buf[keep] & 0xc0) == 0x80) keep--;
    take(f, keep, out, out_len);
    return false;
}

void stop_flush(StopFilter *f, const char **out, size_t *out_len)
{
    if (f->stopped) {
        *out = "";
        *out_len = 0;
        return;
    }
    take(f, f->len, out, out_len);
}
