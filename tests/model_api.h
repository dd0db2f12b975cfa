/* model_api.h - what the test programs that build real models share: the C API of a compiled
 * model (loaded with dlopen and resolved by prefix), running the mxc binary, and the helpers
 * on logits and random numbers. One copy of each, here. */
#ifndef MXC_TEST_MODEL_API_H
#define MXC_TEST_MODEL_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/safetensors.h"

typedef struct Api {
    void *so;
    int (*open)(const char *, void **);
    void (*close)(void *);
    int (*state_new)(void *, int, void **);
    void (*state_free)(void *);
    void (*state_reset)(void *);
    int (*state_copy)(void *, const void *);
    int (*state_batch)(const void *);
    int (*set_threads)(void *, int);
    int (*forward)(void *, void *, const int32_t *, int, float *);
    int (*step)(void *, void *, const int32_t *, float *);
    const char *(*last_error)(void);
    int32_t (*vocab_size)(void);
    int32_t (*vocab_padded)(void);
    int32_t (*d_model)(void);
    int32_t (*n_blocks)(void);
} Api;

/* dlopen `so_path` and resolve PREFIX_open, PREFIX_forward, ...; false (with the reason on
 * stderr) if anything is missing. */
bool api_load(Api *a, const char *so_path, const char *prefix);
void api_unload(Api *a);

/* The mxc binary under test: $MXC, else ./mxc. */
const char *mxc_path(void);

/* Run a shell command; its exit status, -1 if it did not exit normally. */
int run_command(const char *cmd);

/* Directory for the files the tests write: $MXC_TEST_BUILDDIR/out (created). */
const char *test_out_dir(void);

/* `mxc build SPEC -o DIR/libPREFIX.so --prefix PREFIX EXTRA` (EXTRA: more options, or NULL),
 * with mxc's stderr in DIR/PREFIX.err. The shared object's path goes to `so` (removed first,
 * so that a refused build leaves none). Returns mxc's exit status. */
int model_build(const char *spec, const char *prefix, const char *extra, const char *dir,
                char *so, size_t len);

/* The compiled-model loader: model_build into test_out_dir(), then api_load. False if either
 * fails, with mxc's messages copied to stderr. */
bool model_load(Api *a, const char *spec, const char *prefix, const char *extra);

/* max |a - b| and max |a - b| / (1 + |b|) over n floats; a NaN anywhere gives INFINITY, so
 * that it fails every tolerance. */
double max_abs_diff(const float *a, const float *b, size_t n);
double max_rel_diff(const float *a, const float *b, size_t n);

/* Deterministic pseudo-random numbers (the same on every machine): the next splitmix64 value
 * of `state`, and one uniform in [-1, 1). */
uint64_t splitmix64(uint64_t *state);
float uniform_pm1(uint64_t *state);

/* `len` steps of `batch` sequences (tokens [batch][len]) from the state as it is, logits
 * packed [batch][len][vocab_padded] like a forward's. Stops at the first failing call and
 * returns its status. */
int step_all(const Api *a, void *m, void *s, const int32_t *tokens, int batch, int len,
             float *out);
/* forward over tokens [batch][len] in calls of the lengths in `pieces` (cycled until len
 * positions are done), logits packed as one forward's. Returns the first failing status. */
int forward_pieces(const Api *a, void *m, void *s, const int32_t *tokens, int batch, int len,
                   const int *pieces, int n_pieces, float *out);

/* Writes to `out` the golden weights of directory `dir` (model.safetensors) with the sLSTM
 * cell tensors replaced by their CUDA-layout versions (dir/slstm_cuda_layout.safetensors
 * holds only those), as a checkpoint trained with the CUDA backend stores them. */
bool write_cuda_layout_weights(const char *dir, const char *out);

/* Makes `out_dir` a Hugging Face model folder of golden Mamba case `name`, as
 * MambaForCausalLM.save_pretrained lays it out: config.json from tests/hf/NAME (a transformers
 * MambaConfig), model.safetensors with the golden weights under transformers names
 * (backbone.embeddings.weight; a tied lm_head.weight, equal to the embedding, left out as
 * save_pretrained leaves it out). */
bool write_hf_mamba_folder(const char *name, const char *out_dir);
/* A Hugging Face folder of golden case NAME in out_dir: config.json of tests/hf/NAME; with
 * `tokenizer`, its other .json files too (tokenizer_config.json, generation_config.json, ...)
 * and its tokenizer.json, else that of tests/tokenizer-128; the golden weights under transformers names, in one
 * model.safetensors or, for shards >= 2, that many model-0000i-of-0000n.safetensors with the
 * model.safetensors.index.json that lists them. */
bool write_hf_folder(const char *name, const char *out_dir, int shards, bool tokenizer);

/* A golden case's inputs and the official outputs, from CASE_DIR/io.safetensors: input_ids
 * [batch][len], logits and step_logits [batch][len][vocab]. Close `io` when done. */
typedef struct Golden {
    StFile *io;
    const int32_t *ids;
    const float *logits, *step_logits;
    int batch, len, vocab;
} Golden;
bool golden_load(Golden *g, const char *case_dir);
/* The same for tests/golden/NAME. */
bool golden_load_case(Golden *g, const char *name);

#endif
