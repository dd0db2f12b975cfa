/* tokenize.c - `mxc tokenize TOKENIZER FILE`: the ids of FILE's text as decimal integers
 * separated by spaces; with --decode, FILE holds ids and the text is printed. TOKENIZER is a
 * tokenizer.json or a folder holding one (docs/tokenizer.md). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver/driver.h"
#include "tokenizer/mxc_tokenizer.h"

static const char tokenize_usage[] =
    "usage: mxc tokenize [options] TOKENIZER FILE\n"
    "  Print the token ids of FILE's text (UTF-8), separated by spaces. TOKENIZER is a\n"
    "  tokenizer.json or a folder holding one; FILE '-' reads standard input.\n"
    "  --decode        FILE holds ids (separated by white space): print their text\n"
    "  --no-special    encode without the post-processor's BOS/EOS\n"
    "  --skip-special  decode without the special tokens\n"
    "  --clean-up-spaces  decode with transformers' clean-up of spaces (\" .\" -> \".\",\n"
    "                  \" n't\" -> \"n't\", ...; tokenizer_config.json's\n"
    "                  clean_up_tokenization_spaces)\n"
    "  -h, --help      this text\n";

static char *read_all(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, k;
    char *buf = malloc(cap);
    while (buf && (k = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (cap - n - 1 == 0) {
            char *p = realloc(buf, cap *= 2);
            if (!p) { free(buf); buf = NULL; }
            else buf = p;
        }
    }
    int bad = ferror(f);
    if (f != stdin) fclose(f);
    if (!buf || bad) { free(buf); if (!errno) errno = EIO; return NULL; }
    buf[n] = 0;
    *len = n;
    return buf;
}

static int parse_ids(const char *path, const char *s, int32_t **ids, size_t *n)
{
    size_t cap = 256;
    *n = 0;
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) return -1;
    for (const char *p = s;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (!*p) return 0;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX ||
            (*end && *end != ' ' && *end != '\t' && *end != '\n' && *end != '\r')) {
            fprintf(stderr, "mxc tokenize: %s: '%.20s' is not a token id\n", path, p);
            return -1;
        }
        if (*n == cap) {
            int32_t *q = realloc(*ids, (cap *= 2) * sizeof *q);
            if (!q) return -1;
            *ids = q;
        }
        (*ids)[(*n)++] = (int32_t)v;
        p = end;
    }
}

int cmd_tokenize(int argc, char **argv)
{
    int decode = 0, special = 1, skip_special = 0, clean_up = 0;
    const char *pos[2] = { NULL, NULL };
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--decode") == 0) decode = 1;
        else if (strcmp(a, "--no-special") == 0) special = 0;
        else if (strcmp(a, "--skip-special") == 0) skip_special = 1;
        else if (strcmp(a, "--clean-up-spaces") == 0) clean_up = 1;
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) { fputs(tokenize_usage, stdout); return MXC_EXIT_OK; }
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "mxc tokenize: unknown option '%s'\n\n%s", a, tokenize_usage);
            return MXC_EXIT_USAGE;
        } else if (npos < 2) pos[npos++] = a;
        else {
            fprintf(stderr, "mxc tokenize: unexpected argument '%s'\n\n%s", a, tokenize_usage);
            return MXC_EXIT_USAGE;
        }
    }
    if (npos != 2) {
        fprintf(stderr, "mxc tokenize: needs a TOKENIZER and a FILE\n\n%s", tokenize_usage);
        return MXC_EXIT_USAGE;
    }
    MxcTokError err;
    MxcTokenizer *tok;
    if (mxc_tokenizer_open(pos[0], &tok, &err) != 0) {
        fprintf(stderr, "mxc tokenize: %s\n", err.msg);
        return MXC_EXIT_ERROR;
    }
    size_t len;
    char *text = read_all(pos[1], &len);
    int rc = MXC_EXIT_ERROR;
    if (!text) {
        fprintf(stderr, "mxc tokenize: %s: %s\n", pos[1], strerror(errno));
        goto out;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (decode) {
        char *out;
        size_t olen;
        if (parse_ids(pos[1], text, &ids, &n) != 0) goto out_ids;
        unsigned flags = (skip_special ? MXC_TOK_SKIP_SPECIAL : 0) | (clean_up ? MXC_TOK_CLEAN_UP_SPACES : 0);
        if (mxc_tokenizer_decode_flags(tok, ids, n, flags, &out, &olen, &err) != 0) {
            fprintf(stderr, "mxc tokenize: %s: %s\n", pos[1], err.msg);
            goto out_ids;
        }
        fwrite(out, 1, olen, stdout);
        free(out);
    } else {
        if (mxc_tokenizer_encode(tok, text, len, special, &ids, &n, &err) != 0) {
            fprintf(stderr, "mxc tokenize: %s: %s\n", pos[1], err.msg);
            goto out_ids;
        }
        for (size_t i = 0; i < n; i++) printf(i ? " %" PRId32 : "%" PRId32, ids[i]);
        putchar('\n');
    }
    rc = fflush(stdout) == 0 ? MXC_EXIT_OK : MXC_EXIT_ERROR;
out_ids:
    free(ids);
out:
    free(text);
    mxc_tokenizer_close(tok);
    return rc;
}
