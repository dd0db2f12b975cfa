/* gen_config.h - what a model folder's configs say about generating text: the end-of-sequence
 * ids, whether the prompt starts with BOS (or ends with EOS), and the clean-up of spaces.
 *
 * EOS: generation_config.json's eos_token_id (an id or a list of ids), else config.json's, else
 * tokenizer_config.json's eos_token looked up in the tokenizer. BOS/EOS around the prompt:
 * tokenizer_config.json's add_bos_token / add_eos_token, when present, replace the
 * post-processor of tokenizer.json (as transformers' GPT-NeoX and Llama tokenizers rebuild it
 * from them); the tokens are its bos_token / eos_token. clean_up_tokenization_spaces: true asks
 * for the clean-up when decoding. A value of the wrong kind is refused, naming file and key. */
#ifndef MXC_DRIVER_GEN_CONFIG_H
#define MXC_DRIVER_GEN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "tokenizer/mxc_tokenizer.h"

#define GEN_MAX_EOS 64

typedef struct GenConfig {
    int32_t eos[GEN_MAX_EOS]; /* generation stops at any of these */
    int n_eos;
    char eos_from[48];        /* the file that gave them, for messages */
    bool template_from_config; /* add_bos_token or add_eos_token present: they decide */
    int32_t prompt_bos, prompt_eos; /* ids to put around the prompt, -1 for none */
    bool clean_up;
} GenConfig;

/* Read the configs of model_dir (the model folder, or NULL) and tok_dir (the tokenizer's
 * folder, or NULL; tok its tokenizer, NULL when there is none). 0 on success; -1 after
 * printing "mxc run: error: FILE: KEY: reason" to stderr. */
int gen_config_read(GenConfig *g, const char *model_dir, const char *tok_dir,
                    const MxcTokenizer *tok);

#endif
