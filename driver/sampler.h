/* sampler.h - choosing the next token from a model's logits, as `mxc run` does.
 *
 * The order is that of Hugging Face's generate(): the repetition penalty on the raw logits,
 * then temperature, top-k and top-p (nucleus). Temperature 0 picks the likeliest token after
 * the penalty. A sampler draws one number of its own generator (splitmix64, the same on every
 * machine) per sampled token, so a seed always gives the same tokens. */
#ifndef MXC_DRIVER_SAMPLER_H
#define MXC_DRIVER_SAMPLER_H

#include <stdint.h>

typedef struct SamplerOptions {
    double temperature;    /* 0: greedy */
    long top_k;            /* 0: all tokens */
    double top_p;          /* 1: off; keep the smallest set of likeliest tokens of mass >= top_p */
    double repeat_penalty; /* 1: off; a seen token's logit / R if positive, * R if negative */
    long repeat_last_n;    /* the tokens the penalty looks back on (0: none) */
} SamplerOptions;

typedef struct Sampler Sampler;

/* A sampler over ids [0, vocab); NULL when out of memory. */
Sampler *sampler_new(const SamplerOptions *o, int32_t vocab, uint64_t seed);
void sampler_free(Sampler *s); /* NULL is fine */

/* Record a token of the context (prompt or generated) for the repetition penalty. */
void sampler_accept(Sampler *s, int32_t tok);

/* The next token from logits[0 .. vocab) (not modified); -1 if a logit is NaN. */
int32_t sampler_pick(Sampler *s, const float *logits);

#endif
