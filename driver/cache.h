/* cache.h - compiled models kept between runs of `mxc run`.
 *
 * The cache is the folder $XDG_CACHE_HOME/mxc (else ~/.cache/mxc), one entry per key. The key
 * covers everything that shapes the compiled object: the text of the spec (or of a model
 * folder's config.json), the build options, the mxc executable itself (size and time, so a
 * rebuilt compiler never loads objects of the old one), the runtime archive, and the host CPU
 * with its features. An entry is a folder named by the key's hash holding the shared object
 * and a manifest: the key's full text and a checksum of the object. A lookup checks both, so a
 * corrupted or truncated object is rebuilt, never loaded.
 *
 * Builds go into a private temporary folder that is renamed into place when complete, so two
 * processes building the same key at once both end with a whole entry (the second rename loses
 * and that process uses the winner's). */
#ifndef MXC_DRIVER_CACHE_H
#define MXC_DRIVER_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct CacheKey {
    char text[4096]; /* what the key covers, one fact a line */
    uint64_t hash;   /* of text; names the entry */
} CacheKey;

/* The key of compiling `input` (a spec file or a model folder) with the extra option words
 * `options` (NULL-terminated; NULL for none). False, with a message, if input is unreadable. */
bool cache_key_make(CacheKey *k, const char *input, const char *const *options);

/* The object of key k's entry, if one exists and its manifest and checksum hold. */
bool cache_find(const CacheKey *k, char *so, size_t so_len);

/* Builds a new entry for key k: `build` writes the object into folder `dir` and returns its
 * path in `so`; 0 on success. Returns 0 and the path of the entry's object in `so`. */
typedef int (*CacheBuildFn)(void *ctx, const char *dir, char *so, size_t so_len);
int cache_build(const CacheKey *k, CacheBuildFn build, void *ctx, char *so, size_t so_len);

/* `mxc cache list|clear`; argv[0] is "cache". */
int cmd_cache(int argc, char **argv);

#endif
