/* prompt_cache.h - `mxc run --prompt-cache FILE`: the model's state after a prompt, kept in a
 * file so that a later run whose prompt starts with that prompt skips re-reading it.
 *
 * FILE holds: the magic "MXCPRMT1", the prompt's token count n (u32) and the padded vocabulary
 * size V (u32), the n tokens (i32), the logits of the prompt's last position (V f32), then
 * the saved state (P_state_save; its header names the model build, see docs/c-api.md).
 * Little-endian. A cache of another model build, or of a prompt the new one does not start
 * with, is not used (a message says why) and is replaced after the run's prefill. */
#ifndef MXC_PROMPT_CACHE_H
#define MXC_PROMPT_CACHE_H

#include <stdint.h>

/* The parts of a compiled model's API the cache uses. */
typedef struct PromptCacheApi {
    int64_t (*save_size)(const void *state);
    int (*save)(const void *state, void *buf, int64_t size);
    int (*load)(void *state, const void *buf, int64_t size);
    const char *(*last_error)(void);
} PromptCacheApi;

/* Use FILE for the prompt tokens[0 .. len): when the cached prompt is a prefix of it and its
 * state loads into `state` (a batch-1 state of the model), returns the cached prompt's length
 * and leaves that prompt's last logits in last_logits[vocab_padded]; otherwise returns 0
 * with `state` unchanged (and a message on stderr unless FILE does not exist). */
int prompt_cache_load(const char *path, const PromptCacheApi *api, void *state,
                      const int32_t *tokens, int len, int32_t vocab_padded, float *last_logits);

/* Write FILE (beside it, then renamed over it) for the state after tokens[0 .. len) with the
 * logits of the last position. Returns 0, or -1 with a message on stderr. */
int prompt_cache_save(const char *path, const PromptCacheApi *api, const void *state,
                      const int32_t *tokens, int len, int32_t vocab_padded,
                      const float *last_logits);

#endif
