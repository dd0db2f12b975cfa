/* model_api.h - the C API of a compiled model, loaded with dlopen and resolved by prefix,
 * and running the mxc binary: shared by the test programs that build real models. */
#ifndef MXC_TEST_MODEL_API_H
#define MXC_TEST_MODEL_API_H

#include <stdbool.h>
#include <stdint.h>

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

#endif
