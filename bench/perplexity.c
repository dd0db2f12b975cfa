/* perplexity.c - mean negative log-likelihood of a byte-level model on a text file.
 *
 *   perplexity LIB PREFIX WEIGHTS TEXT
 *
 * Runs the text through P_forward as one sequence (in pieces of 4096 bytes, the state carried
 * over) and averages -log p(byte t+1 | bytes ..t) over the vocabulary's first P_vocab_size
 * logits. Prints one JSON line: nats per byte and the perplexity exp(nats). For the demo
 * models (tokens are bytes), to compare weight types (docs/performance.md). */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static void *sym(void *lib, const char *prefix, const char *name)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s_%s", prefix, name);
    void *p = dlsym(lib, buf);
    if (!p) {
        fprintf(stderr, "perplexity: no symbol %s\n", buf);
        exit(1);
    }
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: perplexity LIB PREFIX WEIGHTS TEXT\n");
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "perplexity: %s\n", dlerror());
        return 1;
    }
    int (*open_)(const char *, void **) = sym(lib, argv[2], "open");
    int (*state_new)(void *, int, void **) = sym(lib, argv[2], "state_new");
    int (*forward)(void *, void *, const int32_t *, int, float *) = sym(lib, argv[2], "forward");
    const char *(*last_error)(void) = sym(lib, argv[2], "last_error");
    int32_t (*vocab_size)(void) = sym(lib, argv[2], "vocab_size");
    int32_t (*vocab_padded)(void) = sym(lib, argv[2], "vocab_padded");
    FILE *f = fopen(argv[4], "rb");
    if (!f) {
        perror(argv[4]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *text = malloc((size_t)n + 1);
    if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) return 1;
    fclose(f);
    void *m, *s;
    if (open_(argv[3], &m) || state_new(m, 1, &s)) {
        fprintf(stderr, "perplexity: %s\n", last_error());
        return 1;
    }
    enum { PIECE = 4096 };
    int vs = vocab_size(), vp = vocab_padded();
    int32_t *tok = malloc(sizeof *tok * PIECE);
    float *lg = malloc(sizeof *lg * (size_t)PIECE * (size_t)vp);
    double nll = 0;
    long count = 0;
    for (long at = 0; at + 1 < n; at += PIECE) {
        int len = (int)(n - 1 - at < PIECE ? n - 1 - at : PIECE);
        for (int i = 0; i < len; i++) tok[i] = text[at + i];
        if (forward(m, s, tok, len, lg)) {
            fprintf(stderr, "perplexity: %s\n", last_error());
            return 1;
        }
        for (int i = 0; i < len; i++) {
            const float *l = lg + (size_t)i * vp;
            double mx = l[0], sum = 0;
            for (int v = 1; v < vs; v++) mx = l[v] > mx ? l[v] : mx;
            for (int v = 0; v < vs; v++) sum += exp(l[v] - mx);
            nll += log(sum) + mx - l[text[at + i + 1]];
            count++;
        }
    }
    printf("{\"bytes\": %ld, \"nats_per_byte\": %.6f, \"perplexity\": %.6f}\n", count, nll / count,
           exp(nll / count));
    return 0;
}
