/* prompt_cache.c - see prompt_cache.h. */
#include "driver/prompt_cache.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char cache_magic[8] = {'M', 'X', 'C', 'P', 'R', 'M', 'T', '1'};
enum { CACHE_HEAD = 16 }; /* magic, n, V */

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void ignored(const char *path, const char *why, const char *detail)
{
    fprintf(stderr, "mxc run: prompt cache %s not used: %s%s\n", path, why, detail);
}

/* The whole file, or NULL (ENOENT left in errno for a missing file, EFBIG for one larger
 * than `max`, which no usable cache is). */
static unsigned char *read_file(const char *path, size_t max, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat st;
    unsigned char *buf = NULL;
    int err = EINVAL;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > max)
        err = EFBIG;
    else if (S_ISREG(st.st_mode) && st.st_size > 0) {
        buf = malloc((size_t)st.st_size);
        if (buf && fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
            free(buf);
            buf = NULL;
        }
        *size = (size_t)st.st_size;
    }
    if (!buf) errno = err;
    fclose(f);
    return buf;
}

int prompt_cache_load(const char *path, const PromptCacheApi *api, void *state,
                      const int32_t *tokens, int len, int32_t vocab_padded, float *last_logits)
{
    size_t size = 0;
    int64_t blob = api->save_size(state);
    size_t max = CACHE_HEAD + 4 * (size_t)len + 4 * (size_t)vocab_padded + (size_t)(blob > 0 ? blob : 0);
    unsigned char *buf = read_file(path, max, &size);
    if (!buf) {
        if (errno == EFBIG) ignored(path, "it is larger than a cache of this prompt can be (a longer prompt, or another model)", "");
        else if (errno != ENOENT) ignored(path, "cannot read it: ", strerror(errno));
        return 0;
    }
    int skip = 0;
    uint32_t n = size >= CACHE_HEAD ? get_u32(buf + 8) : 0, v = size >= CACHE_HEAD ? get_u32(buf + 12) : 0;
    size_t fixed = CACHE_HEAD + 4 * (size_t)n + 4 * (size_t)v;
    if (size < CACHE_HEAD || memcmp(buf, cache_magic, 8) != 0 || n < 1 || n > (1u << 28) ||
        v > (1u << 28) || fixed > size) {
        ignored(path, "not a prompt cache of mxc run", "");
    } else if (v != (uint32_t)vocab_padded) {
        ignored(path, "it was written for another model (other vocabulary size)", "");
    } else if (n > (uint32_t)len) {
        ignored(path, "the prompt is shorter than the cached one", "");
    } else {
        bool same = true;
        for (uint32_t i = 0; i < n && same; i++)
            same = (int32_t)get_u32(buf + CACHE_HEAD + 4 * (size_t)i) == tokens[i];
        if (!same)
            ignored(path, "the prompt does not start with the cached prompt", "");
        else if (api->load(state, buf + fixed, (int64_t)(size - fixed)) != 0)
            ignored(path, "", api->last_error());
        else {
            for (uint32_t i = 0; i < v; i++) {
                uint32_t u = get_u32(buf + CACHE_HEAD + 4 * (size_t)n + 4 * (size_t)i);
                memcpy(&last_logits[i], &u, 4);
            }
            skip = (int)n;
        }
    }
    free(buf);
    return skip;
}

int prompt_cache_save(const char *path, const PromptCacheApi *api, const void *state,
                      const int32_t *tokens, int len, int32_t vocab_padded,
                      const float *last_logits)
{
    int64_t blob = api->save_size(state);
    size_t fixed = CACHE_HEAD + 4 * (size_t)len + 4 * (size_t)vocab_padded;
    unsigned char *buf = blob > 0 ? malloc(fixed + (size_t)blob) : NULL;
    if (!buf) {
        fprintf(stderr, "mxc run: error: prompt cache %s: %s\n", path,
                blob > 0 ? "out of memory" : api->last_error());
        return -1;
    }
    memcpy(buf, cache_magic, 8);
    put_u32(buf + 8, (uint32_t)len);
    put_u32(buf + 12, (uint32_t)vocab_padded);
    for (int i = 0; i < len; i++) put_u32(buf + CACHE_HEAD + 4 * (size_t)i, (uint32_t)tokens[i]);
    for (int32_t i = 0; i < vocab_padded; i++) {
        uint32_t u;
        memcpy(&u, &last_logits[i], 4);
        put_u32(buf + CACHE_HEAD + 4 * (size_t)len + 4 * (size_t)i, u);
    }
    int rc = -1;
    if (api->save(state, buf + fixed, blob) != 0) {
        fprintf(stderr, "mxc run: error: prompt cache %s: %s\n", path, api->last_error());
    } else {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "wb");
        bool ok = f && fwrite(buf, 1, fixed + (size_t)blob, f) == fixed + (size_t)blob;
        if (f && fclose(f) != 0) ok = false;
        if (ok && rename(tmp, path) == 0) rc = 0;
        else {
            fprintf(stderr, "mxc run: error: cannot write the prompt cache %s: %s\n", path,
                    strerror(errno ? errno : EIO));
            unlink(tmp);
        }
    }
    free(buf);
    return rc;
}
