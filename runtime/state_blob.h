/* state_blob.h - the byte format of a saved state (mxrt_state_save / mxrt_state_load).
 *
 *   offset  size  field
 *        0     8  magic "MXCSTATE"
 *        8     4  format version (u32, STATE_BLOB_VERSION)
 *       12     4  header bytes (u32, STATE_BLOB_HEADER)
 *       16     8  model fingerprint (u64, MxrtModelDesc.fingerprint)
 *       24    48  model name, NUL-padded (cut to 47 bytes)
 *       72    24  mxc version, NUL-padded (cut to 23 bytes)
 *       96     8  floats of state per sequence (i64)
 *      104     4  batch (i32)
 *      108     4  d_model (i32)
 *      112     8  payload bytes (u64): batch * 8 + batch * state_floats * 4
 *      120     8  checksum (u64) of bytes [0, 120) and of the payload
 *      128        payload: positions processed, i64 [batch]; then the state, f32
 *                 [batch][state_floats]
 *
 * Integers and floats are little-endian. The checksum detects corruption (any change of one
 * 8-byte word is always detected), not deliberate tampering. The blob is hostile input:
 * state_blob_check validates all of it before anything is used. */
#ifndef MXC_RUNTIME_STATE_BLOB_H
#define MXC_RUNTIME_STATE_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/mxrt.h"

#define STATE_BLOB_VERSION 1
#define STATE_BLOB_HEADER 128

/* Bytes of the blob of `batch` sequences of this model; 0 if that overflows. */
uint64_t state_blob_size(const MxrtModelDesc *d, int batch);
/* Write the blob into buf (state_blob_size bytes). */
void state_blob_write(const MxrtModelDesc *d, int batch, const int64_t *positions,
                      const float *state, unsigned char *buf);
/* The header checks alone, on the first STATE_BLOB_HEADER bytes of a blob of `size` bytes
 * (fewer when size is smaller): identity, batch and size, not the checksum. */
int state_blob_check_header(const MxrtModelDesc *d, int batch, const unsigned char *buf,
                            uint64_t size, const char *where);
/* Validate a blob for a state of this model and batch. On success, *positions and *state
 * point into buf (unaligned in general: copy with memcpy). On failure returns -1 with a
 * message that begins with `where`. */
int state_blob_check(const MxrtModelDesc *d, int batch, const unsigned char *buf, size_t size,
                     const char *where, const unsigned char **positions,
                     const unsigned char **state);
/* Decoders of a checked blob's payload: position count of sequence b; n state floats. */
int64_t state_blob_position(const unsigned char *positions, int b);
void state_blob_read_floats(const unsigned char *src, float *dst, size_t n);
/* The checksum of the format, over `n` bytes, continuing from h (start: STATE_BLOB_SEED). */
#define STATE_BLOB_SEED 0xcbf29ce484222325ull
uint64_t state_blob_hash(uint64_t h, const unsigned char *p, size_t n);

#endif
