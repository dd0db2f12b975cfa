/* kjv_generate.c - the smallest text generator on a compiled model, in C.
 *
 *   ./mxc build examples/kjv_mamba.mx -o build/libkjv_mamba.so     (also writes build/kjv_mamba.h)
 *   cc -Ibuild examples/kjv_generate.c -Lbuild -lkjv_mamba -o build/kjv_generate
 *   LD_LIBRARY_PATH=build build/kjv_generate examples/kjv_mamba.safetensors "And God said"
 *
 * Tokens are bytes. The prompt goes through kjv_mamba_forward in one call; then each next byte
 * is drawn from the softmax of the logits (temperature 0.8, a fixed seed) and fed back with
 * kjv_mamba_step. `mxc run` does the same with more options (docs/getting-started.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kjv_mamba.h"

#define GENERATE 300
#define TEMPERATURE 0.8

/* A byte drawn from softmax(logits / TEMPERATURE) over the real vocabulary. */
static int32_t sample(const float *logits, unsigned *seed)
{
    double p[kjv_mamba_VOCAB_SIZE], total = 0, top = logits[0];
    for (int i = 1; i < kjv_mamba_VOCAB_SIZE; i++)
        if (logits[i] > top) top = logits[i];
    for (int i = 0; i < kjv_mamba_VOCAB_SIZE; i++) total += p[i] = exp((logits[i] - top) / TEMPERATURE);
    double u = (double)rand_r(seed) / ((double)RAND_MAX + 1) * total;
    for (int i = 0; i < kjv_mamba_VOCAB_SIZE; i++)
        if ((u -= p[i]) < 0) return i;
    return kjv_mamba_VOCAB_SIZE - 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s WEIGHTS.safetensors [PROMPT]\n", argv[0]);
        return 2;
    }
    const char *prompt = argc > 2 && argv[2][0] ? argv[2] : "\n";
    int len = (int)strlen(prompt);

    kjv_mamba_model *model;
    kjv_mamba_state *state;
    if (kjv_mamba_open(argv[1], &model) != 0 || kjv_mamba_state_new(model, 1, &state) != 0) {
        fprintf(stderr, "error: %s\n", kjv_mamba_last_error());
        return 1;
    }
    int32_t *tokens = malloc(sizeof *tokens * (size_t)len);
    float *logits = malloc(sizeof *logits * (size_t)len * kjv_mamba_VOCAB_PADDED); /* [len][V] */
    if (!tokens || !logits) return 1;
    for (int i = 0; i < len; i++) tokens[i] = (unsigned char)prompt[i];

    if (kjv_mamba_forward(model, state, tokens, len, logits) != 0) { /* prefill */
        fprintf(stderr, "error: %s\n", kjv_mamba_last_error());
        return 1;
    }
    fputs(prompt, stdout);
    const float *row = logits + (size_t)(len - 1) * kjv_mamba_VOCAB_PADDED;
    unsigned seed = 1;
    for (int i = 0; i < GENERATE; i++) { /* decode, one byte per step */
        int32_t tok = sample(row, &seed);
        putchar(tok);
        if (kjv_mamba_step(model, state, &tok, logits) != 0) {
            fprintf(stderr, "\nerror: %s\n", kjv_mamba_last_error());
            return 1;
        }
        row = logits;
    }
    putchar('\n');
    free(logits);
    free(tokens);
    kjv_mamba_state_free(state);
    kjv_mamba_close(model);
    return 0;
}
