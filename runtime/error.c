/* error.c - thread-local last-error message (see error.h).
 *
 * Policy: a failing call overwrites the message; a successful call leaves it alone (like errno),
 * so callers look at mxrt_last_error() only after a non-zero return. Before any failure the
 * message is "" (never NULL). */
#include "runtime/error.h"
#include "runtime/mxrt.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char error_msg[MXRT_ERROR_CAP];

/* If vsnprintf cut the message inside a multi-byte UTF-8 sequence, drop the partial sequence so
 * the message stays valid UTF-8. */
static void error_trim_utf8(char *s, size_t len)
{
    size_t i = len;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0)
        return;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (len - (i - 1) < need)
        s[i - 1] = '\0';
}

int mxrt_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(error_msg, sizeof error_msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        snprintf(error_msg, sizeof error_msg, "(unprintable error message)");
    else if ((size_t)n >= sizeof error_msg)
        error_trim_utf8(error_msg, sizeof error_msg - 1);
    return -1;
}

void mxrt_clear_error(void)
{
    error_msg[0] = '\0';
}

const char *mxrt_last_error(void)
{
    return error_msg;
}

const char *mxrt_quote(char *buf, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t keep = cap < MXRT_QUOTE_CAP ? cap : MXRT_QUOTE_CAP;
    size_t o = 0;
    if (!s)
        s = "(null)";
    for (size_t i = 0; s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        /* Room for the longest escape (4), "..." and the NUL. */
        if (o + 4 + 3 + 1 > keep) {
            /* Do not leave half of a UTF-8 sequence before the "...". */
            while (o > 0 && ((unsigned char)buf[o - 1] & 0xC0) == 0x80)
                o--;
            if (o > 0 && ((unsigned char)buf[o - 1] & 0xC0) == 0xC0)
                o--;
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (c < 0x20 || c == 0x7F) {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        } else if (c == '\'' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o] = '\0';
    return buf;
}

const char *mxrt_format_shape(char *buf, size_t cap, const int64_t *dims, int rank)
{
    size_t o = 0;
    if (cap < 3)
        return cap ? (buf[0] = '\0', buf) : buf;
    buf[o++] = '[';
    for (int i = 0; i < rank; i++) {
        int n = snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)dims[i]);
        if (n < 0 || (size_t)n >= cap - o - 1) {
            o = cap - 2; /* cut short: keep room for the bracket */
            break;
        }
        o += (size_t)n;
    }
    buf[o++] = ']';
    buf[o] = '\0';
    return buf;
}
