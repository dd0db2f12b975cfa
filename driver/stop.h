/* stop.h - ending generation at a stop string (`mxc run --stop`).
 *
 * The generated text is fed piece by piece; what is returned may be printed. A tail that could
 * still grow into a stop string is held back, and when a stop string appears the text before
 * it is returned and the rest (the stop string and anything after it) is dropped. The held
 * tail is cut at a UTF-8 character boundary, so complete characters in give complete
 * characters out. */
#ifndef MXC_DRIVER_STOP_H
#define MXC_DRIVER_STOP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct StopFilter StopFilter;

/* A filter for n non-empty stop strings (copied); NULL when out of memory. */
StopFilter *stop_new(const char *const *stops, int n);
void stop_free(StopFilter *f); /* NULL is fine */

/* Feed len bytes; *out and *out_len get the text to print now (valid until the next call).
 * Returns true when a stop string has appeared: generation should end. */
bool stop_put(StopFilter *f, const char *text, size_t len, const char **out, size_t *out_len);

/* The held-back tail, when generation ends without a stop string. */
void stop_flush(StopFilter *f, const char **out, size_t *out_len);

#endif
