/* bench_tokenizer.c - encode speed of libmxc_tokenizer on one text, one thread: the first encode
 * (empty word cache) and the best of the following ones, in tokens per second. The JavaScript
 * reference is timed the same way by bench/tokenizer_ref.mjs; bench/tokenizer.sh runs both.
 *   bench_tokenizer TOKENIZER TEXT [REPEATS [CHUNK]]
 * With CHUNK > 0 the text is encoded in pieces that end at the first newline after CHUNK bytes
 * (as a program encoding documents or lines would), else as one string. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "tokenizer/mxc_tokenizer.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_tokenizer TOKENIZER TEXT [REPEATS]\n");
        return 2;
    }
    int repeats = argc > 3 ? atoi(argv[3]) : 3;
    long chunk = argc > 4 ? atol(argv[4]) : 0;
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror(argv[2]); return 1; }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)len + 1);
    if (!text || fread(text, 1, (size_t)len, f) != (size_t)len) { fprintf(stderr, "read error\n"); return 1; }
    fclose(f);
    MxcTokError err;
    MxcTokenizer *tok;
    double t0 = now();
    if (mxc_tokenizer_open(argv[1], &tok, &err) != 0) { fprintf(stderr, "%s\n", err.msg); return 1; }
    double t_open = now() - t0, first = 0, best = 1e30;
    size_t n = 0;
    for (int r = 0; r <= repeats; r++) {
        t0 = now();
        n = 0;
        for (long at = 0; at < len;) {
            long end = len;
            if (chunk > 0) {
                end = at + chunk < len ? at + chunk : len;
                while (end < len && text[end - 1] != '\n') end++;
            }
            int32_t *ids;
            size_t k;
            if (mxc_tokenizer_encode(tok, text + at, (size_t)(end - at), 1, &ids, &k, &err) != 0) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            free(ids);
            n += k;
            at = end;
        }
        double dt = now() - t0;
        if (r == 0) first = dt;
        else if (dt < best) best = dt;
    }
    printf("mxc: %ld bytes (chunks of %ld), %zu tokens; open %.3f s; first encode %.3f s (%.2f M tokens/s); "
           "best of %d more %.3f s (%.2f M tokens/s)\n",
           len, chunk, n, t_open, first, (double)n / first / 1e6, repeats, best, (double)n / best / 1e6);
    mxc_tokenizer_close(tok);
    free(text);
    return 0;
}
