/* mamba_app.c - a small program using a model compiled by mxc.
 *
 *   mxc build examples/mamba_tiny.mx -o build/libmamba_tiny.so   (also writes build/mamba_tiny.h)
 *   cc -Ibuild examples/mamba_app.c -Lbuild -lmamba_tiny -o build/mamba_app
 *   LD_LIBRARY_PATH=build build/mamba_app WEIGHTS [EXPECTED]
 *
 * It runs the prompt through mamba_tiny_forward, compares a few logits with the official
 * numbers in EXPECTED (examples/mamba_tiny.expected), then continues greedily with
 * mamba_tiny_step and prints the tokens it picks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mamba_tiny.h"

#define MAX_PROMPT 256
#define GENERATE 16

static int argmax(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* Compare our logits with the official rows listed in the expected file; returns the
 * largest difference seen, or -1 if the file has no rows. */
static double compare_expected(FILE *f, const float *logits)
{
    char kind[16];
    double worst = -1;
    int pos, n;
    while (fscanf(f, "%15s", kind) == 1) {
        if (strcmp(kind, "logits") != 0 || fscanf(f, "%d %d", &pos, &n) != 2) {
            int c;
            while ((c = fgetc(f)) != '\n' && c != EOF) {}
            continue;
        }
        printf("position %2d  ours:    ", pos);
        const float *row = logits + (size_t)pos * mamba_tiny_VOCAB_PADDED;
        for (int i = 0; i < n; i++) printf(" %9.5f", row[i]);
        printf("\n             official:");
        for (int i = 0; i < n; i++) {
            double v;
            if (fscanf(f, "%lf", &v) != 1) return worst;
            printf(" %9.5f", v);
            if (fabs(v - row[i]) > worst) worst = fabs(v - row[i]);
        }
        printf("\n");
    }
    return worst;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s WEIGHTS.safetensors [EXPECTED]\n", argv[0]);
        return 2;
    }
    int32_t prompt[MAX_PROMPT] = {1, 2, 3, 4, 5, 6, 7, 8};
    int len = 8;
    FILE *expected = argc > 2 ? fopen(argv[2], "r") : NULL;
    if (argc > 2 && !expected) {
        perror(argv[2]);
        return 1;
    }
    if (expected) { /* the first "tokens N ..." line is the prompt */
        char kind[16];
        while (fscanf(expected, "%15s", kind) == 1 && strcmp(kind, "tokens") != 0) {
            int c;
            while ((c = fgetc(expected)) != '\n' && c != EOF) {}
        }
        if (fscanf(expected, "%d", &len) != 1 || len < 1 || len > MAX_PROMPT) return 1;
        for (int i = 0; i < len; i++)
            if (fscanf(expected, "%d", &prompt[i]) != 1) return 1;
    }

    mamba_tiny_model *model;
    mamba_tiny_state *state;
    if (mamba_tiny_open(argv[1], &model) != 0 || mamba_tiny_state_new(model, 1, &state) != 0) {
        fprintf(stderr, "error: %s\n", mamba_tiny_last_error());
        return 1;
    }
    float *logits = malloc(sizeof *logits * (size_t)len * mamba_tiny_VOCAB_PADDED);
    if (!logits || mamba_tiny_forward(model, state, prompt, len, logits) != 0) {
        fprintf(stderr, "error: %s\n", mamba_tiny_last_error());
        return 1;
    }
    printf("model %s: %d blocks, d_model %d, vocabulary %d\n", mamba_tiny_NAME,
           mamba_tiny_n_blocks(), mamba_tiny_d_model(), mamba_tiny_vocab_size());
    printf("prompt: %d tokens\n", len);
    int status = 0;
    if (expected) {
        double worst = compare_expected(expected, logits);
        printf("largest difference from the official implementation: %.2e (%s)\n", worst,
               worst >= 0 && worst <= 1e-4 ? "match" : "MISMATCH");
        if (!(worst >= 0 && worst <= 1e-4)) status = 1;
        fclose(expected);
    }

    /* Greedy continuation, one token at a time from the state the prompt left. */
    int32_t tok = argmax(logits + (size_t)(len - 1) * mamba_tiny_VOCAB_PADDED, mamba_tiny_VOCAB_SIZE);
    float step_logits[mamba_tiny_VOCAB_PADDED];
    printf("greedy continuation:");
    for (int i = 0; i < GENERATE; i++) {
        printf(" %d", tok);
        if (mamba_tiny_step(model, state, &tok, step_logits) != 0) {
            fprintf(stderr, "\nerror: %s\n", mamba_tiny_last_error());
            return 1;
        }
        tok = argmax(step_logits, mamba_tiny_VOCAB_SIZE);
    }
    printf("\n");
    free(logits);
    mamba_tiny_state_free(state);
    mamba_tiny_close(model);
    return status;
}
