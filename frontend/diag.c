/* diag.c - user-facing diagnostics: `file:line:col: error: message`, the source line, a caret.
 *
 * Every message is formatted into one buffer first, then written to the sink's stream (if any)
 * and appended to `collected`, so that tests see exactly what a user would see. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/diag.h"

/* Longest stretch of a source line shown under a message; longer lines are cut around the
 * column so that a one-line megabyte file cannot flood the terminal. */
enum { SHOW_MAX = 240, SHOW_BEFORE = 120 };

typedef struct Buf {
    char *p;
    size_t len, cap;
} Buf;

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q)
        mxc_die("out of memory (%zu bytes)", n);
    return q;
}

static void buf_put(Buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_vprintf(Buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        mxc_die("bad diagnostic format '%s'", fmt);
    char *tmp = xrealloc(NULL, (size_t)n + 1);
    vsnprintf(tmp, (size_t)n + 1, fmt, ap);
    buf_put(b, tmp, (size_t)n);
    free(tmp);
}

static void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(Buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void diag_init(DiagSink *d, FILE *out)
{
    memset(d, 0, sizeof *d);
    d->out = out;
    d->max_errors = DIAG_MAX_ERRORS;
}

static void diag_drop_source(DiagSink *d)
{
    free(d->source_buf);
    free(d->source_name);
    d->source_buf = NULL;
    d->source_name = NULL;
    d->source = NULL;
    d->source_len = 0;
}

void diag_set_source(DiagSink *d, const char *source)
{
    diag_drop_source(d);
    d->source = source;
    d->source_len = source ? strlen(source) : 0;
}

void diag_set_source_file(DiagSink *d, const char *name, const char *text, size_t len)
{
    diag_drop_source(d);
    if (!text)
        return;
    d->source_buf = xrealloc(NULL, len + 1);
    memcpy(d->source_buf, text, len);
    d->source_buf[len] = '\0';
    d->source = d->source_buf;
    d->source_len = len;
    if (name) {
        size_t n = strlen(name);
        d->source_name = xrealloc(NULL, n + 1);
        memcpy(d->source_name, name, n + 1);
    }
}

/* Append the source line of `loc` and a caret under its column. Tabs in the line are kept
 * in the caret line so that the caret lands under the right byte; control bytes (NUL too)
 * are shown as '?'. */
static void put_caret_line(Buf *b, const DiagSink *d, Loc loc)
{
    if (!d->source || loc.line <= 0 || loc.col <= 0)
        return;
    if (d->source_name && (!loc.file || strcmp(loc.file, d->source_name) != 0))
        return;
    /* d->source_len is stale if a caller assigned d->source by hand. */
    size_t len = d->source == d->source_buf ? d->source_len : strlen(d->source);
    const char *s = d->source, *end = s + len;
    for (int line = 1; line < loc.line; line++) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        if (!nl)
            return;
        s = nl + 1;
    }
    const char *eol = memchr(s, '\n', (size_t)(end - s));
    size_t n = eol ? (size_t)(eol - s) : (size_t)(end - s);
    size_t col = (size_t)loc.col - 1; /* 0-based byte offset of the caret */

    size_t from = 0, to = n;
    if (n > SHOW_MAX) {
        from = col > SHOW_BEFORE ? col - SHOW_BEFORE : 0;
        if (from > n)
            from = n;
        to = from + SHOW_MAX < n ? from + SHOW_MAX : n;
    }
    const char *dots = from > 0 ? "..." : "";
    buf_put(b, dots, strlen(dots));
    for (size_t i = from; i < to; i++) {
        unsigned char c = (unsigned char)s[i];
        char shown = (c < 0x20 && c != '\t') || c == 0x7f ? '?' : (char)c;
        buf_put(b, &shown, 1);
    }
    if (to < n)
        buf_put(b, "...", 3);
    buf_put(b, "\n", 1);

    buf_put(b, dots, strlen(dots));
    for (size_t i = from; i < col; i++) {
        char pad = i < n && s[i] == '\t' ? '\t' : ' ';
        buf_put(b, &pad, 1);
    }
    buf_put(b, "^\n", 2);
}

static void diag_emit(DiagSink *d, const char *text, size_t n)
{
    if (d->out) {
        fwrite(text, 1, n, d->out);
        fflush(d->out);
    }
    size_t cap = d->collected_len + n + 1;
    d->collected = xrealloc(d->collected, cap);
    memcpy(d->collected + d->collected_len, text, n);
    d->collected_len += n;
    d->collected[d->collected_len] = '\0';
}

void diag_vreport(DiagSink *d, DiagLevel level, Loc loc, const char *fmt, va_list ap)
{
    static const char *const level_name[] = {
        [DIAG_ERROR] = "error", [DIAG_WARNING] = "warning", [DIAG_NOTE] = "note",
    };
    if (level == DIAG_ERROR)
        d->n_errors++;
    else if (level == DIAG_WARNING)
        d->n_warnings++;

    /* Past the limit, stay silent; a note goes with the message before it. */
    if (level != DIAG_NOTE) {
        bool errors_over = d->max_errors > 0 && d->n_errors > d->max_errors;
        bool warnings_over = d->max_errors > 0 && d->n_warnings > d->max_errors;
        d->quiet = errors_over || (level == DIAG_WARNING && warnings_over);
        if (d->quiet) {
            bool first = level == DIAG_ERROR ? d->n_errors == d->max_errors + 1
                                             : !errors_over && d->n_warnings == d->max_errors + 1;
            if (first) {
                char msg[96];
                int n = snprintf(msg, sizeof msg, "mxc: too many %s (%d), the rest are not shown\n",
                                 level == DIAG_ERROR ? "errors" : "warnings", d->max_errors);
                diag_emit(d, msg, (size_t)n);
            }
            d->n_suppressed++;
        }
    }
    if (d->quiet)
        return;

    Buf b = {0};
    if (loc.file && loc.line > 0 && loc.col > 0)
        buf_printf(&b, "%s:%d:%d: ", loc.file, loc.line, loc.col);
    else if (loc.file && loc.line > 0)
        buf_printf(&b, "%s:%d: ", loc.file, loc.line);
    else if (loc.file)
        buf_printf(&b, "%s: ", loc.file);
    else
        buf_printf(&b, "mxc: ");
    buf_printf(&b, "%s: ", level_name[level]);
    buf_vprintf(&b, fmt, ap);
    buf_put(&b, "\n", 1);
    put_caret_line(&b, d, loc);
    diag_emit(d, b.p, b.len);
    free(b.p);
}

void diag_report(DiagSink *d, DiagLevel level, Loc loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_vreport(d, level, loc, fmt, ap);
    va_end(ap);
}

void diag_free(DiagSink *d)
{
    diag_drop_source(d);
    free(d->collected);
    d->collected = NULL;
    d->collected_len = 0;
}

_Noreturn void mxc_die_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "mxc: internal error at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}
