/* cfg.c - the configuration tree's arena, messages, key lookup and typed access, and the
 * helpers that write spec text (see cfg.h). Lookups go through a hash of each map's keys, so
 * that checking and reading a map costs time linear in its members whatever their number. */
#include "import/cfg.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void cfg_out_of_memory(void)
{
    fprintf(stderr, "mxc: error: out of memory\n");
    exit(1);
}

void *cfg_alloc(Importer *im, size_t size)
{
    CfgArena *a = &im->arena;
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 64;
        void **nb = realloc(a->blocks, a->cap * sizeof *nb);
        if (!nb) cfg_out_of_memory();
        a->blocks = nb;
    }
    void *mem = calloc(1, size ? size : 1);
    if (!mem) cfg_out_of_memory();
    return a->blocks[a->n++] = mem;
}

char *cfg_strndup(Importer *im, const char *s, size_t n)
{
    char *d = cfg_alloc(im, n + 1);
    memcpy(d, s, n);
    return d;
}

void cfg_arena_free(CfgArena *a)
{
    for (size_t i = 0; i < a->n; i++) free(a->blocks[i]);
    free(a->blocks);
    *a = (CfgArena){0};
}

void cfg_error(Importer *im, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (line > 0) fprintf(stderr, "%s:%d: error: ", im->path, line);
    else fprintf(stderr, "%s: error: ", im->path);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    im->errors++;
}

const char *cfg_clip(char *buf, size_t len, const char *s)
{
    size_t n = strlen(s), keep = len > 40 ? len - 40 : 0;
    if (n < len) {
        memcpy(buf, s, n + 1);
        return buf;
    }
    while (keep > 0 && ((unsigned char)s[keep] & 0xC0) == 0x80) keep--;  /* whole UTF-8 */
    snprintf(buf, len, "%.*s... (%zu bytes)", (int)keep, s, n);
    return buf;
}

/* ---------------------------------------------------------------------------------------
 * Keys: an open-addressing hash per map, built once by the reader. */

static uint32_t cfg_hash(const char *s)
{
    uint32_t h = 2166136261u;  /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static size_t cfg_index_slots(size_t count)
{
    size_t slots = 8;
    while (slots < 2 * count) slots *= 2;
    return slots;
}

bool cfg_map_index(Importer *im, CfgValue *map)
{
    if (map->count == 0) return true;
    size_t slots = cfg_index_slots(map->count);
    map->index = cfg_alloc(im, slots * sizeof *map->index);
    for (size_t i = 0; i < map->count; i++) {
        const char *key = map->items[i].key;
        size_t h = cfg_hash(key) & (slots - 1);
        for (; map->index[h]; h = (h + 1) & (slots - 1))
            if (strcmp(map->items[map->index[h] - 1].key, key) == 0) {
                char q[CFG_CLIP];
                cfg_error(im, map->items[i].line, "duplicate key '%s'", cfg_clip(q, sizeof q, key));
                return false;
            }
        map->index[h] = (int)i + 1;
    }
    return true;
}

const CfgValue *cfg_get(const CfgValue *map, const char *key)
{
    if (!map || map->kind != CV_MAP || map->count == 0) return NULL;
    if (!map->index) {  /* not indexed (built by hand): look through */
        for (size_t i = 0; i < map->count; i++)
            if (strcmp(map->items[i].key, key) == 0) return &map->items[i];
        return NULL;
    }
    size_t slots = cfg_index_slots(map->count);
    for (size_t h = cfg_hash(key) & (slots - 1); map->index[h]; h = (h + 1) & (slots - 1))
        if (strcmp(map->items[map->index[h] - 1].key, key) == 0) return &map->items[map->index[h] - 1];
    return NULL;
}

const char *cfg_kind_name(CfgKind k)
{
    switch (k) {
    case CV_NULL: return "null";
    case CV_BOOL: return "a boolean";
    case CV_INT: return "an integer";
    case CV_FLOAT: return "a number";
    case CV_STRING: return "a string";
    case CV_LIST: return "a list";
    case CV_MAP: return "a mapping";
    }
    return "?";
}

bool cfg_present(const CfgValue *v) { return v && v->kind != CV_NULL; }

int cfg_line_of(const CfgValue *map, const char *key)
{
    const CfgValue *v = cfg_get(map, key);
    return v ? v->line : map ? map->line : 0;
}

bool cfg_check_keys(Importer *im, const CfgValue *map, const char *where, const CfgKey *keys)
{
    int unknown = 0;
    for (size_t i = 0; i < map->count; i++) {
        bool found = false;
        for (const CfgKey *k = keys; k->name && !found; k++)
            found = strcmp(k->name, map->items[i].key) == 0;
        char q[CFG_CLIP];
        if (!found && ++unknown <= 5)
            cfg_error(im, map->items[i].line, "unknown key '%s' in %s",
                      cfg_clip(q, sizeof q, map->items[i].key), where);
    }
    if (unknown > 5) fprintf(stderr, "%s: ... and %d more unknown keys\n", im->path, unknown - 5);
    return unknown == 0;
}

/* ---------------------------------------------------------------------------------------
 * Typed access. */

/* The value as written (numbers), clipped, for messages. */
static const char *cfg_value_text(char *buf, size_t len, const CfgValue *v)
{
    if (v->text) {  /* ASCII digits and signs: cut anywhere */
        size_t n = strspn(v->text, "+-.eE0123456789");
        if (n < len) snprintf(buf, len, "%.*s", (int)n, v->text);
        else snprintf(buf, len, "%.*s... (%zu bytes)", (int)(len > 40 ? len - 40 : 0), v->text, n);
        return buf;
    }
    if (v->kind == CV_INT) snprintf(buf, len, "%" PRId64, v->i);
    else snprintf(buf, len, "%g", v->f);
    return buf;
}

static void cfg_range_error(Importer *im, const CfgValue *v, const char *key, const char *what,
                            const char *lo, const char *hi)
{
    char q[CFG_CLIP];
    if (hi) cfg_error(im, v->line, "invalid '%s': %s (%s from %s to %s)", key,
                      cfg_value_text(q, sizeof q, v), what, lo, hi);
    else cfg_error(im, v->line, "invalid '%s': %s (%s, at least %s)", key,
                   cfg_value_text(q, sizeof q, v), what, lo);
}

static bool cfg_int_value(Importer *im, const CfgValue *v, const char *key, int64_t min,
                          int64_t max, int64_t *out)
{
    char lo[32], hi[32];
    snprintf(lo, sizeof lo, "%" PRId64, min);
    snprintf(hi, sizeof hi, "%" PRId64, max);
    const char *range_hi = max == INT64_MAX ? NULL : hi;
    if (v->kind == CV_FLOAT && (v->int_overflow || !isfinite(v->f) ||
                                (v->f == floor(v->f) && fabs(v->f) >= 1e15))) {
        cfg_range_error(im, v, key, "expected an integer", lo, range_hi);
        return false;
    }
    int64_t x;
    if (v->kind == CV_FLOAT && v->f == floor(v->f)) {
        x = (int64_t)v->f;  /* 4.0 written by a YAML dumper */
    } else if (v->kind == CV_INT) {
        x = v->i;
    } else {
        cfg_error(im, v->line, "'%s' must be an integer, got %s", key, cfg_kind_name(v->kind));
        return false;
    }
    if (x < min || x > max) {
        cfg_range_error(im, v, key, "expected an integer", lo, range_hi);
        return false;
    }
    *out = x;
    return true;
}

bool cfg_int(Importer *im, const CfgValue *map, const char *key, int64_t def, int64_t min,
             int64_t max, int64_t *out)
{
    const CfgValue *v = cfg_get(map, key);
    *out = def;
    if (!cfg_present(v)) return true;
    return cfg_int_value(im, v, key, min, max, out);
}

bool cfg_require_int(Importer *im, const CfgValue *map, const char *key, const char *what,
                     int64_t min, int64_t max, int64_t *out)
{
    const CfgValue *v = cfg_get(map, key);
    *out = min;
    if (!cfg_present(v)) {
        cfg_error(im, v ? v->line : 0, "%s %s '%s' (it is required)", what,
                  v ? "has a null" : "lacks", key);
        return false;
    }
    return cfg_int_value(im, v, key, min, max, out);
}

bool cfg_number(Importer *im, const CfgValue *map, const char *key, double def, double min,
                double max, double *out)
{
    const CfgValue *v = cfg_get(map, key);
    *out = def;
    if (!cfg_present(v)) return true;
    if (v->kind != CV_INT && v->kind != CV_FLOAT) {
        cfg_error(im, v->line, "'%s' must be a number, got %s", key, cfg_kind_name(v->kind));
        return false;
    }
    char lo[32], hi[32];
    snprintf(lo, sizeof lo, "%g", min);
    snprintf(hi, sizeof hi, "%g", max);
    if (!isfinite(v->f) || v->f < min || v->f > max) {
        cfg_range_error(im, v, key, isfinite(v->f) ? "expected a number" :
                        "not a finite number; expected one", lo, hi);
        return false;
    }
    *out = v->f;
    return true;
}

bool cfg_bool(Importer *im, const CfgValue *map, const char *key, bool def, bool *out)
{
    const CfgValue *v = cfg_get(map, key);
    *out = def;
    if (!cfg_present(v)) return true;
    if (v->kind != CV_BOOL) {
        cfg_error(im, v->line, "'%s' must be true or false, got %s", key, cfg_kind_name(v->kind));
        return false;
    }
    *out = v->b;
    return true;
}

bool cfg_string(Importer *im, const CfgValue *map, const char *key, const char *def,
                const char **out)
{
    const CfgValue *v = cfg_get(map, key);
    *out = def;
    if (!cfg_present(v)) return true;
    if (v->kind != CV_STRING) {
        cfg_error(im, v->line, "'%s' must be a string, got %s", key, cfg_kind_name(v->kind));
        return false;
    }
    *out = v->s;
    return true;
}

bool cfg_map(Importer *im, const CfgValue *map, const char *key, const CfgValue **out)
{
    const CfgValue *v = cfg_get(map, key);
    *out = NULL;
    if (!cfg_present(v)) return true;
    if (v->kind != CV_MAP) {
        cfg_error(im, v->line, "'%s' must be a mapping, got %s", key, cfg_kind_name(v->kind));
        return false;
    }
    *out = v;
    return true;
}

/* ---------------------------------------------------------------------------------------
 * Spec text. */

const char *cfg_bool_text(bool b) { return b ? "true" : "false"; }

void cfg_format_number(char *buf, size_t len, double v)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eEn")) strncat(buf, ".0", len - strlen(buf) - 1);
}

void cfg_put(FILE *out, const char *comment, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (comment) fprintf(out, "%-35s %s\n", line, comment);
    else fprintf(out, "%s\n", line);
}
