/* error.h - the runtime's thread-local "last error" message.
 *
 * Every failing runtime function stores one human-readable sentence here and returns non-zero;
 * mxrt_last_error() (declared in mxrt.h) reads it back. The message lives in a per-thread buffer,
 * so threads that drive different states never see each other's errors. */
#ifndef MXC_RUNTIME_ERROR_H
#define MXC_RUNTIME_ERROR_H

#include <stddef.h>
#include <stdint.h>

/* Size of the message buffer, terminating NUL included; longer messages are cut short. */
#define MXRT_ERROR_CAP 512

/* Replace this thread's message (printf-style). Always returns -1, so that failing paths can
 * write `return mxrt_set_error(...);`. */
int mxrt_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Forget this thread's message; mxrt_last_error() then returns "". */
void mxrt_clear_error(void);

/* Copy `s` into `buf` (capacity `cap` >= 8) in a form safe to print inside quotes: control
 * bytes, quotes and backslashes escaped, and at most about 100 characters kept ("..." marks a
 * cut). Names read from a file are hostile input; they must not flood or corrupt a message.
 * Returns buf. */
const char *mxrt_quote(char *buf, size_t cap, const char *s);

/* Buffer size that mxrt_quote() never needs more than. */
#define MXRT_QUOTE_CAP 128

/* Write a shape as "[256, 64]" ("[]" for rank 0) into `buf`; returns buf. */
const char *mxrt_format_shape(char *buf, size_t cap, const int64_t *dims, int rank);

/* Buffer size enough for any shape of up to 8 dimensions. */
#define MXRT_SHAPE_CAP 192

#endif
