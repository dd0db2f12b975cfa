/* sampler.c - repetition penalty, temperature, top-k and top-p over one row of logits. */
#include "driver/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct Candidate {
    float logit;
    int32_t id;
} Candidate;

struct Sampler {
    SamplerOptions o;
    int32_t vocab;
    uint64_t rng;
    Candidate *cand;
    double *w;
    float *penalized;
    int32_t *recent;     /* ring of the last repeat_last_n tokens */
    long n_recent, head;
    unsigned char *seen; /* per id: marked while the penalty is applied */
};

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

Sampler *sampler_new(const SamplerOptions *o, int32_t vocab, uint64_t seed)
{
    Sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->o = *o;
    s->vocab = vocab;
    s->rng = seed;
    long n = o->repeat_penalty != 1 && o->repeat_last_n > 0 ? o->repeat_last_n : 0;
    s->o.repeat_last_n = n;
    s->cand = malloc(sizeof *s->cand * (size_t)vocab);
    s->w = malloc(sizeof *s->w * (size_t)vocab);
    s->penalized = malloc(sizeof *s->penalized * (size_t)vocab);
    s->seen = calloc((size_t)vocab, 1);
    s->recent = malloc(sizeof *s->recent * (size_t)(n ? n : 1));
    if (!s->cand || !s->w || !s->penalized || !s->seen || !s->recent) {
        sampler_free(s);
        return NULL;
    }
    return s;
}

void sampler_free(Sampler *s)
{
    if (!s) return;
    free(s->cand);
    free(s->w);
    free(s->penalized);
    free(s->seen);
    free(s->recent);
    free(s);
}

void sampler_accept(Sampler *s, int32_t tok)
{
    if (!s->o.repeat_last_n || tok < 0 || tok >= s->vocab) return;
    s->recent[s->head] = tok;
    s->head = (s->head + 1) % s->o.repeat_last_n;
    if (s->n_recent < s->o.repeat_last_n) s->n_recent++;
}

/* The CTRL rule (HF RepetitionPenaltyLogitsProcessor): each distinct recent token once. */
static const float *penalize(Sampler *s, const float *logits)
{
    if (!s->n_recent) return logits;
    float r = (float)s->o.repeat_penalty;
    memcpy(s->penalized, logits, sizeof *logits * (size_t)s->vocab);
    for (long i = 0; i < s->n_recent; i++) {
        int32_t t = s->recent[i];
        if (s->seen[t]) continue;
        s->seen[t] = 1;
        float l = s->penalized[t];
        s->penalized[t] = l > 0 ? l / r : l * r;
    }
    for (long i = 0; i < s->n_recent; i++) s->seen[s->recent[i]] = 0;
    return s->penalized;
}

/* Larger logit first; equal logits by id, so the order never depends on qsort. */
static int by_logit(const void *a, const void *b)
{
    const Candidate *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

int32_t sampler_pick(Sampler *s, const float *raw)
{
    int32_t vocab = s->vocab;
    for (int32_t i = 0; i < vocab; i++)
        if (isnan(raw[i])) return -1;
    const float *logits = penalize(s, raw);
    if (s->o.temperature <= 0) { /* greedy: the likeliest token, the smallest id on ties */
        int32_t best = 0;
        for (int32_t i = 1; i < vocab; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    Candidate *cand = s->cand;
    for (int32_t i = 0; i < vocab; i++) cand[i] = (Candidate){logits[i], i};
    qsort(cand, (size_t)vocab, sizeof *cand, by_logit);
    int32_t k = s->o.top_k > 0 && s->o.top_k < vocab ? (int32_t)s->o.top_k : vocab;
    double total = 0, top = cand[0].logit, *w = s->w;
    for (int32_t i = 0; i < k; i++) total += w[i] = exp(((double)cand[i].logit - top) / s->o.temperature);
    if (s->o.top_p < 1) { /* keep token i while the mass before it is below top_p */
        double before = 0, need = s->o.top_p * total;
        int32_t m = 0;
        while (m < k && (m == 0 || before < need)) before += w[m++];
        k = m;
        total = before;
    }
    double u = (double)(rng_next(&s->rng) >> 11) * 0x1.0p-53 * total;
    int32_t pick = k - 1;
    for (int32_t i = 0; i < k; i++) {
        if (u < w[i]) {
            pick = i;
            break;
        }
        u -= w[i];
    }
    return cand[pick].id;
}
