/* narrow.c - narrow weight formats (see narrow.h). */
#include "runtime/narrow.h"

#include <string.h>

/* Round to an integer, ties to even, for |v| < 2^23 (the runtime does not use libm): adding
 * and removing 2^23 leaves no fraction bits, and the FPU rounds to nearest-even by default. */
static float round_even(float v)
{
    const float big = 0x1p23f; /* not folded: without -ffast-math the round trip is kept */
    return v >= 0 ? (v + big) - big : -((-v + big) - big);
}

static int is_finite(float f) { return f - f == 0; }

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t narrow_f32_to_bf16(float f)
{
    uint32_t u = bits_of(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) /* NaN: keep sign and top payload, force quiet */
        return (uint16_t)(u >> 16 | 0x40);
    u += 0x7FFFu + (u >> 16 & 1); /* ties to even; carries into the exponent (up to inf) */
    return (uint16_t)(u >> 16);
}

float narrow_bf16_to_f32(uint16_t h) { return float_of((uint32_t)h << 16); }

uint16_t narrow_f32_to_f16(float f)
{
    uint32_t u = bits_of(f);
    uint16_t sign = (uint16_t)(u >> 16 & 0x8000);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) /* NaN */
        return (uint16_t)(sign | 0x7E00 | (a >> 13 & 0x3FF));
    if (a >= 0x477FF000u) /* >= 65520 rounds to inf (65504 is the largest half) */
        return (uint16_t)(sign | 0x7C00);
    if (a < 0x38800000u) { /* below 2^-14: a subnormal half or zero */
        /* value / 2^-24, rounded to an integer, ties to even */
        float scaled = float_of(a) * 0x1p24f; /* exact: a power-of-two scale of a float */
        float r = round_even(scaled);
        return (uint16_t)(sign | (uint16_t)r);
    }
    /* normal: rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits */
    uint32_t h = a - 0x38000000u; /* (127 - 15) << 23 */
    h += 0xFFFu + (h >> 13 & 1);
    return (uint16_t)(sign | (uint16_t)(h >> 13));
}

float narrow_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, em = h & 0x7FFFu;
    if (em >= 0x7C00u)
        return float_of(sign | 0x7F800000u | (em & 0x3FF) << 13);
    float v = float_of(em << 13) * 0x1p112f; /* exact, subnormals included */
    return float_of(bits_of(v) | sign);
}

int64_t narrow_q8_quantise(const float *x, size_t n, int8_t *q, float *scales)
{
    for (size_t b = 0; b < n / NARROW_Q8_BLOCK; b++) {
        const float *xb = x + b * NARROW_Q8_BLOCK;
        float amax = 0;
        for (int i = 0; i < NARROW_Q8_BLOCK; i++) {
            if (!is_finite(xb[i]))
                return (int64_t)(b * NARROW_Q8_BLOCK + (size_t)i);
            float v = xb[i] < 0 ? -xb[i] : xb[i];
            if (v > amax)
                amax = v;
        }
        float scale = amax / 127.0f;
        scales[b] = scale;
        for (int i = 0; i < NARROW_Q8_BLOCK; i++) {
            float r = scale > 0 ? round_even(xb[i] / scale) : 0.0f;
            if (r > 127) r = 127; /* |x| / scale can exceed 127 by an ulp */
            if (r < -127) r = -127;
            q[b * NARROW_Q8_BLOCK + (size_t)i] = (int8_t)r;
        }
    }
    return -1;
}

void narrow_q8_dequantise(const int8_t *q, const float *scales, size_t n, float *x)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)q[i] * scales[i / NARROW_Q8_BLOCK];
}
