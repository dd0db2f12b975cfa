/* bind.h - turn an open safetensors file into the kernels' weight-slot array.
 *
 * For every MxrtTensorSpec of a model, in slot order: find the tensor by `name`, else by
 * the names of `alt_name` in order ('\n'-separated: a tied head, other checkpoint namings;
 * with several present the first wins), check its
 * shape exactly, and point the slot at the data - in place for aligned little-endian F32, else
 * at a converted copy (F16, BF16, F64, misaligned F32) that the binding owns; a slot whose spec
 * asks for a layout transform (MxrtTransform) gets a rearranged copy. Tensors in the
 * file that no slot asks for are ignored. All problems found (missing, misshapen, wrong dtype)
 * are reported together in one message. */
#ifndef MXC_RUNTIME_BIND_H
#define MXC_RUNTIME_BIND_H

#include "runtime/mxrt.h"
#include "runtime/safetensors.h"

typedef struct BoundWeights BoundWeights;

/* Bind `desc`'s weights to tensors of `f`. The slots point into f's mapping, so `f` must stay
 * open while the result is used. Returns 0 and a new binding, or non-zero with an error. */
int bind_weights(const MxrtModelDesc *desc, const StFile *f, BoundWeights **out);

/* The slot array: [desc->n_weights] pointers to F32 data. */
const float *const *bind_slots(const BoundWeights *b);

/* Number of slots whose data had to be copied (converted or realigned). */
int bind_copied_count(const BoundWeights *b);

void bind_free(BoundWeights *b); /* NULL is fine */

#endif
