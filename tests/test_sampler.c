/* test_sampler.c - the sampling of `mxc run` (driver/sampler.c: repetition penalty,
 * temperature, top-k, top-p, the seeded generator) and its --stop filter (driver/stop.c). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "driver/sampler.h"
#include "driver/stop.h"
#include "testutil.h"

static SamplerOptions opts(double t, long k, double p, double r, long n)
{
    return (SamplerOptions){.temperature = t, .top_k = k, .top_p = p, .repeat_penalty = r,
                            .repeat_last_n = n};
}

/* How often each of the first `vocab` ids is drawn in `draws` picks. */
static void histogram(const SamplerOptions *o, const float *logits, int32_t vocab, int draws,
                      int *count)
{
    Sampler *s = sampler_new(o, vocab, 12345);
    CU_ASSERT_FATAL(s != NULL);
    memset(count, 0, sizeof *count * (size_t)vocab);
    for (int i = 0; i < draws; i++) {
        int32_t t = sampler_pick(s, logits);
        CU_ASSERT_FATAL(t >= 0 && t < vocab);
        count[t]++;
    }
    sampler_free(s);
}

static void test_greedy(void)
{
    float l[5] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
    SamplerOptions o = opts(0, 40, 1, 1, 64);
    Sampler *s = sampler_new(&o, 5, 1);
    CU_ASSERT_EQUAL(sampler_pick(s, l), 1); /* the smallest id of the tied best */
    l[2] = NAN;
    CU_ASSERT_EQUAL(sampler_pick(s, l), -1);
    sampler_free(s);
}

/* The CTRL rule: positive logits divided, negative multiplied, each distinct token once, only
 * the last repeat_last_n tokens. */
static void test_repeat_penalty(void)
{
    float l[4] = {2.0f, 1.5f, -1.0f, -1.5f};
    SamplerOptions o = opts(0, 0, 1, 2, 3);
    Sampler *s = sampler_new(&o, 4, 1);
    CU_ASSERT_EQUAL(sampler_pick(s, l), 0);
    sampler_accept(s, 0);
    sampler_accept(s, 0); /* twice: still divided once (2 / 2 = 1 < 1.5) */
    CU_ASSERT_EQUAL(sampler_pick(s, l), 1);
    sampler_accept(s, 1); /* 1.5 / 2 = 0.75 < 1 */
    CU_ASSERT_EQUAL(sampler_pick(s, l), 0);
    sampler_accept(s, 3); /* window 3: the first 0 leaves; 0 is still in it once */
    CU_ASSERT_EQUAL(sampler_pick(s, l), 0);
    sampler_free(s);
    /* a negative logit gets more negative: -1 * 2 = -2 < -1.5 */
    float m[2] = {-1.0f, -1.5f};
    o = opts(0, 0, 1, 2, 64);
    s = sampler_new(&o, 2, 1);
    sampler_accept(s, 0);
    CU_ASSERT_EQUAL(sampler_pick(s, m), 1);
    sampler_free(s);
    /* the window forgets: with N = 1 only the last token counts */
    o = opts(0, 0, 1, 4, 1);
    s = sampler_new(&o, 4, 1);
    sampler_accept(s, 0);
    sampler_accept(s, 2);
    CU_ASSERT_EQUAL(sampler_pick(s, l), 0);
    sampler_free(s);
    /* R = 1 is off; R < 1 favours seen tokens */
    o = opts(0, 0, 1, 0.5, 8);
    s = sampler_new(&o, 4, 1);
    sampler_accept(s, 1);
    CU_ASSERT_EQUAL(sampler_pick(s, l), 1); /* 1.5 / 0.5 = 3 */
    sampler_free(s);
}

/* Probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1. */
static void nucleus_logits(float *l)
{
    const double p[4] = {0.5, 0.3, 0.15, 0.05};
    for (int i = 0; i < 4; i++) l[i] = (float)log(p[i]);
}

static void test_top_p(void)
{
    float l[4];
    int c[4];
    nucleus_logits(l);
    /* 0.45: the first token alone reaches it */
    SamplerOptions o = opts(1, 0, 0.45, 1, 64);
    histogram(&o, l, 4, 2000, c);
    CU_ASSERT_EQUAL(c[0], 2000);
    /* 0.7: 0.5 + 0.3 reaches it; renormalised 0.625 / 0.375 */
    o = opts(1, 0, 0.7, 1, 64);
    histogram(&o, l, 4, 4000, c);
    CU_ASSERT(c[2] == 0 && c[3] == 0);
    CU_ASSERT(fabs(c[0] / 4000.0 - 0.625) < 0.03);
    /* 0.9: three tokens (0.95 > 0.9 needs the third); 1: all four */
    o = opts(1, 0, 0.9, 1, 64);
    histogram(&o, l, 4, 4000, c);
    CU_ASSERT(c[2] > 0 && c[3] == 0);
    o = opts(1, 0, 1, 1, 64);
    histogram(&o, l, 4, 4000, c);
    CU_ASSERT(c[3] > 0);
    /* 0: always at least one token */
    o = opts(1, 0, 0, 1, 64);
    histogram(&o, l, 4, 500, c);
    CU_ASSERT_EQUAL(c[0], 500);
    /* after top-k: top-k 2 leaves 0.625 / 0.375, and top-p 0.6 then keeps the first only */
    o = opts(1, 2, 0.6, 1, 64);
    histogram(&o, l, 4, 1000, c);
    CU_ASSERT_EQUAL(c[0], 1000);
    /* after the temperature: at T = 4 the first token has less than 0.45 of the mass */
    o = opts(4, 0, 0.45, 1, 64);
    histogram(&o, l, 4, 1000, c);
    CU_ASSERT(c[1] > 0 && c[3] == 0);
}

static void test_seeded(void)
{
    float l[16];
    for (int i = 0; i < 16; i++) l[i] = (float)(i % 5) * 0.3f;
    SamplerOptions o = opts(0.8, 0, 0.95, 1.3, 4);
    int32_t a[64], b[64], c[64];
    for (int run = 0; run < 3; run++) {
        Sampler *s = sampler_new(&o, 16, run < 2 ? 7 : 8);
        int32_t *out = run == 0 ? a : run == 1 ? b : c;
        for (int i = 0; i < 64; i++) {
            out[i] = sampler_pick(s, l);
            sampler_accept(s, out[i]);
        }
        sampler_free(s);
    }
    CU_ASSERT(memcmp(a, b, sizeof a) == 0);
    CU_ASSERT(memcmp(a, c, sizeof a) != 0);
}

/* Feed pieces; the concatenated output and whether it stopped. */
static bool filter(const char *const *stops, int n, const char *const *pieces, char *out)
{
    StopFilter *f = stop_new(stops, n);
    CU_ASSERT_FATAL(f != NULL);
    *out = 0;
    bool stopped = false;
    for (int i = 0; pieces[i] && !stopped; i++) {
        const char *p;
        size_t len;
        stopped = stop_put(f, pieces[i], strlen(pieces[i]), &p, &len);
        strncat(out, p, len);
    }
    if (!stopped) {
        const char *p;
        size_t len;
        stop_flush(f, &p, &len);
        strncat(out, p, len);
    }
    stop_free(f);
    return stopped;
}

static void test_stop(void)
{
    char out[256];
    const char *stop1[] = {"STOP"};
    const char *a[] = {"Hello ST", "O", "P and more", NULL};
    CU_ASSERT(filter(stop1, 1, a, out));
    CU_ASSERT_STRING_EQUAL(out, "Hello ");
    const char *b[] = {"a ST", "AR is", " bright", NULL}; /* a false start is printed */
    CU_ASSERT(!filter(stop1, 1, b, out));
    CU_ASSERT_STRING_EQUAL(out, "a STAR is bright");
    const char *c[] = {"ends with ST", NULL}; /* held, then flushed */
    CU_ASSERT(!filter(stop1, 1, c, out));
    CU_ASSERT_STRING_EQUAL(out, "ends with ST");
    const char *two[] = {"\n\n", "b c"}; /* the earliest in the text wins */
    const char *d[] = {"a b", " c\n\nd", NULL};
    CU_ASSERT(filter(two, 2, d, out));
    CU_ASSERT_STRING_EQUAL(out, "a ");
    const char *e[] = {"STOP at once", NULL};
    CU_ASSERT(filter(stop1, 1, e, out));
    CU_ASSERT_STRING_EQUAL(out, "");
    /* a held tail starts at a character: "caf" printed while "\xc3\xa9" might begin "é!" */
    const char *accent[] = {"\xc3\xa9!"};
    StopFilter *f = stop_new(accent, 1);
    const char *p;
    size_t len;
    CU_ASSERT(!stop_put(f, "caf\xc3\xa9", 5, &p, &len));
    CU_ASSERT(len == 3 && memcmp(p, "caf", 3) == 0);
    CU_ASSERT(!stop_put(f, "?", 1, &p, &len));
    CU_ASSERT(len == 3 && memcmp(p, "\xc3\xa9?", 3) == 0);
    CU_ASSERT(stop_put(f, "\xc3\xa9!", 3, &p, &len) && len == 0);
    stop_free(f);
    /* the stop string may span many pieces */
    const char *long_stop[] = {"<|end|>"};
    const char *g[] = {"x<", "|", "en", "d", "|>y", NULL};
    CU_ASSERT(filter(long_stop, 1, g, out));
    CU_ASSERT_STRING_EQUAL(out, "x");
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite("sampler", NULL, NULL);
    TEST_ADD(s, test_greedy);
    TEST_ADD(s, test_repeat_penalty);
    TEST_ADD(s, test_top_p);
    TEST_ADD(s, test_seeded);
    CU_pSuite st = CU_add_suite("stop", NULL, NULL);
    TEST_ADD(st, test_stop);
    return test_run_all();
}
