/* checkpoint.c - a checkpoint as a file, an index of shards, or a folder (see checkpoint.h). */
#include "runtime/checkpoint.h"
#include "runtime/error.h"
#include "runtime/json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* An index lists names, not data: a few kB for a 7B model. */
#define CKPT_MAX_INDEX_BYTES ((long)64 << 20)

#define CKPT_INDEX_NAME "model.safetensors.index.json"
#define CKPT_SINGLE_NAME "model.safetensors"

/* The whole of a small file, NUL-terminated; NULL with an error set. */
static char *read_small_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        mxrt_set_error("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        mxrt_set_error("%s: not a regular file", path);
        return NULL;
    }
    if (sb.st_size > CKPT_MAX_INDEX_BYTES) {
        fclose(f);
        mxrt_set_error("%s: %lld bytes is too large for a shard index (at most %ld)", path,
                       (long long)sb.st_size, CKPT_MAX_INDEX_BYTES);
        return NULL;
    }
    char *text = malloc((size_t)sb.st_size + 1);
    size_t got = text ? fread(text, 1, (size_t)sb.st_size, f) : 0;
    int bad = !text || ferror(f) || got != (size_t)sb.st_size;
    fclose(f);
    if (bad) {
        free(text);
        mxrt_set_error("%s: cannot read the shard index", path);
        return NULL;
    }
    text[got] = 0;
    *len = got;
    return text;
}

/* A shard name must name a file beside the index: no directories, no "." or "..". */
static int shard_name_ok(const char *name, size_t len)
{
    return len > 0 && strlen(name) == len && !strchr(name, '/') && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

/* The folder part of `path` ("." for a bare name), into buf. */
static void folder_of(const char *path, char *buf, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(buf, cap, ".");
    else if (slash == path)
        snprintf(buf, cap, "/");
    else
        snprintf(buf, cap, "%.*s", (int)(slash - path), path);
}

/* The shards the index names, each once, in order of first mention, and the weight map's
 * entries sorted by tensor name (lookups and the duplicate check stay n log n on hostile
 * indexes). */
typedef struct ShardList {
    const char **names;
    StFile **files;
    int n;
    const JsonValue **by_key;
    size_t n_keys;
} ShardList;

static int compare_entries(const void *a, const void *b)
{
    return strcmp((*(const JsonValue *const *)a)->key, (*(const JsonValue *const *)b)->key);
}

static int compare_key(const void *key, const void *elem)
{
    return strcmp((const char *)key, (*(const JsonValue *const *)elem)->key);
}

static const JsonValue *find_entry(const ShardList *l, const char *name)
{
    const JsonValue *const *hit = bsearch(name, l->by_key, l->n_keys, sizeof *l->by_key, compare_key);
    return hit ? *hit : NULL;
}

static int shard_slot(const ShardList *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->names[i], name) == 0)
            return i;
    return -1;
}

/* Every entry of the weight map against the opened shards, and every tensor of each shard
 * against the weight map. */
static int check_against_index(const char *index_path, const JsonValue *map, const ShardList *l)
{
    char q[MXRT_QUOTE_CAP];
    for (size_t i = 0; i < map->u.c.count; i++) {
        const JsonValue *e = &map->u.c.items[i];
        int s = shard_slot(l, e->u.s.str);
        if (!st_find(l->files[s], e->key))
            return mxrt_set_error("%s: the index places tensor '%s' in %s, which does not hold it",
                                  index_path, mxrt_quote(q, sizeof q, e->key),
                                  st_label(l->files[s]));
    }
    for (int s = 0; s < l->n; s++)
        for (int t = 0; t < st_count(l->files[s]); t++) {
            const char *name = st_at(l->files[s], t)->name;
            const JsonValue *e = find_entry(l, name);
            if (!e)
                return mxrt_set_error("%s: shard %s holds tensor '%s', which the index does not list",
                                      index_path, st_label(l->files[s]),
                                      mxrt_quote(q, sizeof q, name));
            if (strcmp(e->u.s.str, l->names[s]) != 0)
                return mxrt_set_error("%s: tensor '%s' is in %s, but the index places it in %s",
                                      index_path, mxrt_quote(q, sizeof q, name),
                                      st_label(l->files[s]), e->u.s.str);
        }
    return 0;
}

/* The weight map of a parsed index, checked for shape: an object of shard file names. */
static const JsonValue *weight_map(const char *index_path, const JsonDoc *doc)
{
    char q[MXRT_QUOTE_CAP], qs[MXRT_QUOTE_CAP];
    const JsonValue *root = json_root(doc);
    const JsonValue *map = root->kind == JSON_OBJECT ? json_get(root, "weight_map") : NULL;
    if (!map || map->kind != JSON_OBJECT) {
        mxrt_set_error("%s: not a shard index (no \"weight_map\" object)", index_path);
        return NULL;
    }
    if (map->u.c.count == 0) {
        mxrt_set_error("%s: the shard index lists no tensors", index_path);
        return NULL;
    }
    for (size_t i = 0; i < map->u.c.count; i++) {
        const JsonValue *e = &map->u.c.items[i];
        if (e->kind != JSON_STRING) {
            mxrt_set_error("%s: tensor '%s' maps to a %s, not a shard file name", index_path,
                           mxrt_quote(q, sizeof q, e->key), json_kind_name(e->kind));
            return NULL;
        }
        if (!shard_name_ok(e->u.s.str, e->u.s.len)) {
            mxrt_set_error("%s: tensor '%s' maps to '%s', which is not a file name in the index's folder",
                           index_path, mxrt_quote(q, sizeof q, e->key),
                           mxrt_quote(qs, sizeof qs, e->u.s.str));
            return NULL;
        }
        if (strlen(e->key) != e->key_len) {
            mxrt_set_error("%s: a tensor name holds a NUL byte", index_path);
            return NULL;
        }
    }
    return map;
}

int ckpt_open_index(const char *index_path, StFile **out)
{
    if (!out)
        return mxrt_set_error("ckpt_open_index: NULL output pointer");
    *out = NULL;
    size_t len;
    char *text = read_small_file(index_path, &len);
    if (!text)
        return -1;
    JsonDoc *doc = NULL;
    JsonError jerr;
    if (json_parse(text, len, NULL, &doc, &jerr) != 0) {
        free(text);
        return mxrt_set_error("%s: invalid JSON at byte %zu: %s", index_path, jerr.offset, jerr.msg);
    }
    free(text);
    const JsonValue *map = weight_map(index_path, doc);
    if (!map) {
        json_free(doc);
        return -1;
    }

    size_t cap = map->u.c.count;
    ShardList l = {calloc(cap, sizeof *l.names), calloc(cap, sizeof *l.files), 0,
                   calloc(cap, sizeof *l.by_key), cap};
    int rc = l.names && l.files && l.by_key ? 0 : mxrt_set_error("%s: out of memory", index_path);
    if (rc == 0) {
        char q[MXRT_QUOTE_CAP];
        for (size_t i = 0; i < cap; i++)
            l.by_key[i] = &map->u.c.items[i];
        qsort(l.by_key, cap, sizeof *l.by_key, compare_entries);
        for (size_t i = 1; rc == 0 && i < cap; i++)
            if (strcmp(l.by_key[i - 1]->key, l.by_key[i]->key) == 0)
                rc = mxrt_set_error("%s: tensor '%s' is listed twice", index_path,
                                    mxrt_quote(q, sizeof q, l.by_key[i]->key));
    }
    char folder[4096], path[8192];
    folder_of(index_path, folder, sizeof folder);
    for (size_t i = 0; rc == 0 && i < cap; i++) {
        const char *name = map->u.c.items[i].u.s.str;
        if (shard_slot(&l, name) >= 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", folder, name);
        l.names[l.n] = name;
        rc = st_open(path, &l.files[l.n]);
        if (rc == 0)
            l.n++;
    }
    if (rc == 0)
        rc = check_against_index(index_path, map, &l);
    if (rc == 0) {
        rc = st_join(l.files, l.n, index_path, out); /* owns the shards from here */
        l.n = 0;
    }
    for (int i = 0; i < l.n; i++)
        st_close(l.files[i]);
    free(l.names);
    free(l.files);
    free(l.by_key);
    json_free(doc);
    return rc;
}

static int is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

int ckpt_open(const char *path, StFile **out)
{
    if (!out)
        return mxrt_set_error("ckpt_open: NULL output pointer");
    *out = NULL;
    if (!path)
        return mxrt_set_error("ckpt_open: NULL path");
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        char file[8192];
        snprintf(file, sizeof file, "%s/%s", path, CKPT_INDEX_NAME);
        if (is_file(file))
            return ckpt_open_index(file, out);
        snprintf(file, sizeof file, "%s/%s", path, CKPT_SINGLE_NAME);
        if (is_file(file))
            return st_open(file, out);
        return mxrt_set_error("%s: the folder holds neither %s nor %s", path, CKPT_SINGLE_NAME,
                              CKPT_INDEX_NAME);
    }
    size_t n = strlen(path);
    if (n >= 5 && strcmp(path + n - 5, ".json") == 0)
        return ckpt_open_index(path, out);
    return st_open(path, out);
}
