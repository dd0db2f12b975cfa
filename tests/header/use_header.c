/* use_header.c - a program that uses the header `mxc build` writes for the golden model
 * mamba_tiny (P.h), compiled by tests/run-header.sh as C (-std=c11 -pedantic) and as C++.
 * Every function of the header is called through a pointer of the type the API documents
 * (docs/c-api.md), so a declaration that does not match, or a header that is not valid C or
 * C++, fails the build; the calls then run on the golden weights. Exit status 0 on success. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mamba_tiny.h"

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "use_header: %s failed: %s\n", #cond, last_error()); \
            return 1;                                                      \
        }                                                                  \
    } while (0)

#define MXC_VOCAB mamba_tiny_VOCAB_PADDED

typedef mamba_tiny_model Model;
typedef mamba_tiny_state State;

int main(int argc, char **argv)
{
    int (*open_model)(const char *, Model **) = mamba_tiny_open;
    void (*close_model)(Model *) = mamba_tiny_close;
    int (*state_new)(Model *, int, State **) = mamba_tiny_state_new;
    void (*state_free)(State *) = mamba_tiny_state_free;
    void (*state_reset)(State *) = mamba_tiny_state_reset;
    int (*state_copy)(State *, const State *) = mamba_tiny_state_copy;
    int (*state_batch)(const State *) = mamba_tiny_state_batch;
    int (*set_threads)(State *, int) = mamba_tiny_state_set_threads;
    int (*forward)(Model *, State *, const int32_t *, int, float *) = mamba_tiny_forward;
    int (*step)(Model *, State *, const int32_t *, float *) = mamba_tiny_step;
    const char *(*last_error)(void) = mamba_tiny_last_error;
    int32_t (*vocab_size)(void) = mamba_tiny_vocab_size;
    int32_t (*vocab_padded)(void) = mamba_tiny_vocab_padded;
    int32_t (*d_model)(void) = mamba_tiny_d_model;
    int32_t (*n_blocks)(void) = mamba_tiny_n_blocks;
    int64_t (*save_size)(const State *) = mamba_tiny_state_save_size;
    int (*save)(const State *, void *, int64_t) = mamba_tiny_state_save;
    int (*load)(State *, const void *, int64_t) = mamba_tiny_state_load;
    int (*save_file)(const State *, const char *) = mamba_tiny_state_save_file;
    int (*load_file)(State *, const char *) = mamba_tiny_state_load_file;
    int (*copy_slot)(State *, int, const State *, int) = mamba_tiny_state_copy_slot;
    int (*reset_slot)(State *, int) = mamba_tiny_state_reset_slot;
    int64_t (*positions)(const State *, int) = mamba_tiny_state_positions;
    int (*forward_last)(Model *, State *, const int32_t *, int, float *) = mamba_tiny_forward_last;
    int (*prefill)(Model *, State *, const int32_t *, int) = mamba_tiny_prefill;
    int (*forward_snapshots)(Model *, State *, const int32_t *, int, float *, const int32_t *, int,
                             int, State *const *) = mamba_tiny_forward_snapshots;

    CHECK(argc == 3); /* weights, a scratch file for a saved state */
    CHECK(vocab_size() == mamba_tiny_VOCAB_SIZE && vocab_padded() == mamba_tiny_VOCAB_PADDED);
    CHECK(d_model() == mamba_tiny_D_MODEL && n_blocks() == mamba_tiny_N_BLOCKS);
    CHECK(strcmp(mamba_tiny_NAME, "mamba_tiny") == 0);
    Model *m = NULL;
    State *s = NULL, *t = NULL;
    CHECK(open_model("/nonexistent.safetensors", &m) != 0 && m == NULL);
    CHECK(strstr(last_error(), "/nonexistent.safetensors") != NULL);
    CHECK(open_model(argv[1], &m) == 0);
    CHECK(state_new(m, 2, &s) == 0 && state_new(m, 2, &t) == 0);
    CHECK(state_batch(s) == 2);
    CHECK(set_threads(s, 1) == 0);
    static const int32_t tokens[2][3] = {{1, 2, 3}, {4, 5, 6}};
    static float logits[2 * 3 * MXC_VOCAB], stepped[2 * MXC_VOCAB];
    CHECK(forward(m, s, &tokens[0][0], 3, logits) == 0);
    CHECK(state_copy(t, s) == 0);
    state_reset(s);
    const int32_t first[2] = {1, 4};
    CHECK(step(m, s, first, stepped) == 0);
    /* the first step from a reset state is the first position of the forward (to 1e-5) */
    for (int v = 0; v < MXC_VOCAB; v++) {
        float d = stepped[v] - logits[v];
        CHECK(d < 1e-5f && d > -1e-5f);
    }

    /* saved states, slots and positions: s and t both after the 3 tokens */
    state_reset(s);
    CHECK(forward(m, s, &tokens[0][0], 3, logits) == 0);
    CHECK(positions(s, 0) == 3 && positions(s, 1) == 3);
    int64_t size = save_size(s);
    CHECK(size > 0);
    void *buf = malloc((size_t)size);
    CHECK(buf && save(s, buf, size) == 0);
    state_reset(s);
    CHECK(positions(s, 0) == 0);
    CHECK(load(s, buf, size) == 0 && positions(s, 0) == 3);
    free(buf);
    CHECK(save_file(s, argv[2]) == 0 && load_file(t, argv[2]) == 0 && positions(t, 1) == 3);
    CHECK(reset_slot(t, 1) == 0 && positions(t, 1) == 0 && positions(t, 0) == 3);
    CHECK(copy_slot(t, 1, s, 0) == 0 && positions(t, 1) == 3);

    /* the other entry points: the last row of the forward, no logits, snapshots */
    static float last[2 * MXC_VOCAB];
    state_reset(s);
    CHECK(forward_last(m, s, &tokens[0][0], 3, last) == 0);
    for (int b = 0; b < 2; b++)
        for (int v = 0; v < MXC_VOCAB; v++) {
            float d = last[b * MXC_VOCAB + v] - logits[(b * 3 + 2) * MXC_VOCAB + v];
            CHECK(d < 1e-5f && d > -1e-5f);
        }
    state_reset(s);
    CHECK(prefill(m, s, &tokens[0][0], 3) == 0 && positions(s, 0) == 3);
    State *snaps[2] = {NULL, NULL};
    CHECK(state_new(m, 2, &snaps[0]) == 0 && state_new(m, 2, &snaps[1]) == 0);
    state_reset(s);
    CHECK(forward_snapshots(m, s, &tokens[0][0], 3, NULL, NULL, 1, 2, snaps) == 0);
    CHECK(positions(snaps[0], 0) == 1 && positions(snaps[1], 1) == 2 && positions(s, 0) == 3);
    state_free(snaps[0]);
    state_free(snaps[1]);

    state_free(t);
    state_free(s);
    close_model(m);
    puts("use_header: ok");
    return 0;
}
