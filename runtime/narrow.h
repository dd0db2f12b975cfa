/* narrow.h - narrow weight formats: f32 <-> bf16 / f16 rounding and the q8 block format.
 *
 * q8 (version 1): a matrix [..., K] with K a multiple of NARROW_Q8_BLOCK is stored as signed
 * 8-bit values q [..., K] (safetensors I8, under the weight's own name) and one F32 scale per
 * block of NARROW_Q8_BLOCK consecutive values along K ([..., K / 32], under NAME + ".q8_scales");
 * the weight is q * scale. The file's __metadata__ says "mxc.weight_format": "q8",
 * "mxc.q8_version": "1", "mxc.q8_block": "32". Quantisation: scale = max |x| / 127 over the
 * block, q = round-half-even(x / scale) (0 where the block is all zero). Scales must be finite
 * and >= 0. Used by the runtime when it converts at open and by `mxc convert`. */
#ifndef MXC_RUNTIME_NARROW_H
#define MXC_RUNTIME_NARROW_H

#include <stddef.h>
#include <stdint.h>

#define NARROW_Q8_BLOCK 32
#define NARROW_Q8_SCALES_SUFFIX ".q8_scales"
#define NARROW_META_FORMAT "mxc.weight_format"
#define NARROW_META_Q8_VERSION "mxc.q8_version"
#define NARROW_META_Q8_BLOCK "mxc.q8_block"

/* Round to nearest, ties to even; NaN stays NaN (quiet), overflow becomes inf. */
uint16_t narrow_f32_to_bf16(float f);
uint16_t narrow_f32_to_f16(float f);
float narrow_bf16_to_f32(uint16_t h);
float narrow_f16_to_f32(uint16_t h);

/* Quantise n values (n a multiple of NARROW_Q8_BLOCK) into q[n] and scales[n / 32]. Returns
 * the index of the first non-finite input, or -1 when all were finite (then q and scales
 * are complete). */
int64_t narrow_q8_quantise(const float *x, size_t n, int8_t *q, float *scales);

/* x[i] = q[i] * scales[i / 32] for n values. */
void narrow_q8_dequantise(const int8_t *q, const float *scales, size_t n, float *x);

#endif
