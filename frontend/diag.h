/* diag.h - source locations and user-facing diagnostics.
 *
 * User errors are printed as `file:line:col: error: message`, followed by the source line and
 * a caret under the column (when the source text is known). Internal invariant violations are
 * not diagnostics: they go through mxc_die(), which aborts. */
#ifndef MXC_DIAG_H
#define MXC_DIAG_H

#include <stdarg.h>
#include <stdio.h>

typedef struct Loc {
    const char *file; /* not owned; lives as long as the SpecFile / DiagSink source */
    int line;         /* 1-based; 0 = unknown */
    int col;          /* 1-based byte column; 0 = unknown */
} Loc;

typedef enum { DIAG_ERROR, DIAG_WARNING, DIAG_NOTE } DiagLevel;

typedef struct DiagSink {
    FILE *out;          /* where messages are printed; NULL = collect only */
    const char *source; /* text of the file being compiled (for the caret line), may be NULL */
    int n_errors;
    int n_warnings;
    char *collected;    /* every message, concatenated (malloc'd); for tests */
    size_t collected_len;
    /* Added by the frontend: */
    size_t source_len;       /* bytes of `source` (it may hold NUL bytes); see diag_set_source_file */
    char *source_name;       /* file the source text belongs to (owned), or NULL = any file */
    char *source_buf;        /* owned copy behind `source`, when set by diag_set_source_file */
    int max_errors;          /* errors (and, separately, warnings) printed before the rest
                                are suppressed; 0 = no limit */
    int n_suppressed;        /* errors and warnings not printed because of max_errors */
    int quiet;               /* the last error or warning was suppressed: so are its notes */
} DiagSink;

/* Errors (warnings) shown before the sink falls silent; the counts stay exact. */
#define DIAG_MAX_ERRORS 50

void diag_init(DiagSink *d, FILE *out);
void diag_set_source(DiagSink *d, const char *source);
/* Keep a private copy of `len` bytes of `text` for caret lines; only locations in file `name`
 * get a caret line (NULL name: every location). The copy lives until the next call or
 * diag_free, so the caller's buffer may go away. */
void diag_set_source_file(DiagSink *d, const char *name, const char *text, size_t len);
void diag_report(DiagSink *d, DiagLevel level, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void diag_vreport(DiagSink *d, DiagLevel level, Loc loc, const char *fmt, va_list ap);
void diag_free(DiagSink *d);

/* Internal error: print where and why, then abort. Never for user input. */
_Noreturn void mxc_die_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define mxc_die(...) mxc_die_at(__FILE__, __LINE__, __VA_ARGS__)

#endif
