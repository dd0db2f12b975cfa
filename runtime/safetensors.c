/* safetensors.c - map, validate, look up, convert and write safetensors files.
 *
 * Reading is zero-copy: the file is mapped read-only and StTensor.data points into the mapping.
 * Because the header is hostile input, st_parse checks it completely before an StFile is
 * returned; the rest of the runtime then trusts every StTensor. The parsed JSON document is
 * kept alive: tensor names and metadata strings point into it. */
#include "runtime/safetensors.h"
#include "runtime/error.h"
#include "runtime/json.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct StFile {
    char *label;
    void *map;              /* NULL for st_open_memory */
    size_t map_size;
    JsonDoc *doc;
    StTensor *tensors;      /* [n], header order */
    const StTensor **by_name; /* [n], sorted by name for st_find */
    int n;
    const JsonValue *meta;  /* the "__metadata__" object, or NULL */
    StFile **parts;         /* st_join: the files whose tensors these are, owned */
    int n_parts;
};

static const struct {
    const char *name;
    size_t size;
} st_dtypes[] = {
    [ST_BOOL] = {"BOOL", 1},         [ST_U8] = {"U8", 1},     [ST_I8] = {"I8", 1},
    [ST_F8_E5M2] = {"F8_E5M2", 1},   [ST_F8_E4M3] = {"F8_E4M3", 1},
    [ST_F8_E8M0] = {"F8_E8M0", 1},   [ST_I16] = {"I16", 2},   [ST_U16] = {"U16", 2},
    [ST_F16] = {"F16", 2},           [ST_BF16] = {"BF16", 2}, [ST_I32] = {"I32", 4},
    [ST_U32] = {"U32", 4},           [ST_F32] = {"F32", 4},   [ST_I64] = {"I64", 8},
    [ST_U64] = {"U64", 8},           [ST_F64] = {"F64", 8},
};
#define ST_N_DTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))

static const char st_metadata_key[] = "__metadata__";

const char *st_dtype_name(StDtype dtype)
{
    if ((int)dtype < 0 || (int)dtype >= ST_N_DTYPES)
        return "?";
    return st_dtypes[dtype].name;
}

size_t st_dtype_size(StDtype dtype)
{
    if ((int)dtype < 0 || (int)dtype >= ST_N_DTYPES)
        return 0;
    return st_dtypes[dtype].size;
}

int st_dtype_is_float(StDtype dtype)
{
    return dtype == ST_F32 || dtype == ST_F16 || dtype == ST_BF16 || dtype == ST_F64;
}

int64_t st_numel(const StTensor *t)
{
    size_t size = t ? st_dtype_size(t->dtype) : 0;
    return size ? (int64_t)(t->nbytes / size) : 0;
}

static uint64_t st_load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int st_host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    return first == 1;
}

/* --- header validation --------------------------------------------------------------------- */

static int st_has_nul(const char *s, size_t len)
{
    return memchr(s, '\0', len) != NULL;
}

static int st_is_metadata_key(const JsonValue *m)
{
    return m->key_len == sizeof st_metadata_key - 1 &&
           memcmp(m->key, st_metadata_key, m->key_len) == 0;
}

/* The one member `key` of a tensor entry; missing or repeated is an error. */
static int st_entry_member(const StFile *f, const JsonValue *entry, const char *qname,
                           const char *key, const JsonValue **out)
{
    const JsonValue *found = NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < entry->u.c.count; i++) {
        const JsonValue *m = &entry->u.c.items[i];
        if (m->key_len != n || memcmp(m->key, key, n) != 0)
            continue;
        if (found)
            return mxrt_set_error("%s: tensor '%s': \"%s\" appears twice", f->label, qname, key);
        found = m;
    }
    if (!found)
        return mxrt_set_error("%s: tensor '%s': missing \"%s\"", f->label, qname, key);
    *out = found;
    return 0;
}

static int st_parse_dtype(const StFile *f, const char *qname, const JsonValue *v, StDtype *out)
{
    char q[MXRT_QUOTE_CAP];
    if (v->kind != JSON_STRING)
        return mxrt_set_error("%s: tensor '%s': \"dtype\" is a JSON %s, expected a string",
                              f->label, qname, json_kind_name(v->kind));
    for (int d = 0; d < ST_N_DTYPES; d++) {
        if (strlen(st_dtypes[d].name) == v->u.s.len &&
            memcmp(st_dtypes[d].name, v->u.s.str, v->u.s.len) == 0) {
            *out = (StDtype)d;
            return 0;
        }
    }
    return mxrt_set_error("%s: tensor '%s': unknown dtype '%s'", f->label, qname,
                          mxrt_quote(q, sizeof q, v->u.s.str));
}

/* A non-negative integer that fits int64, e.g. a dimension or an offset. */
static int st_is_count(const JsonValue *v)
{
    return v->kind == JSON_NUMBER && v->is_int && v->u.n.i >= 0;
}

static int st_parse_shape(const StFile *f, const char *qname, const JsonValue *v, StTensor *t)
{
    if (v->kind != JSON_ARRAY)
        return mxrt_set_error("%s: tensor '%s': \"shape\" is a JSON %s, expected an array",
                              f->label, qname, json_kind_name(v->kind));
    if (v->u.c.count > ST_MAX_RANK)
        return mxrt_set_error("%s: tensor '%s': rank %zu is above the limit of %d", f->label,
                              qname, v->u.c.count, ST_MAX_RANK);
    t->rank = (int)v->u.c.count;
    for (int i = 0; i < t->rank; i++) {
        const JsonValue *d = &v->u.c.items[i];
        if (!st_is_count(d))
            return mxrt_set_error("%s: tensor '%s': shape entry %d is not a non-negative "
                                  "64-bit integer", f->label, qname, i);
        t->shape[i] = d->u.n.i;
    }
    return 0;
}

static int st_parse_offsets(const StFile *f, const char *qname, const JsonValue *v,
                            StTensor *t)
{
    if (v->kind != JSON_ARRAY || v->u.c.count != 2)
        return mxrt_set_error("%s: tensor '%s': \"data_offsets\" must be an array of two "
                              "integers [begin, end]", f->label, qname);
    for (int i = 0; i < 2; i++)
        if (!st_is_count(&v->u.c.items[i]))
            return mxrt_set_error("%s: tensor '%s': data_offsets entry %d is not a "
                                  "non-negative 64-bit integer", f->label, qname, i);
    t->begin = (uint64_t)v->u.c.items[0].u.n.i;
    t->end = (uint64_t)v->u.c.items[1].u.n.i;
    return 0;
}

/* Check one tensor entry and fill *t; `data`/`dlen` is the data region. */
static int st_parse_entry(const StFile *f, const JsonValue *m, const unsigned char *data,
                          size_t dlen, StTensor *t)
{
    char qname[MXRT_QUOTE_CAP], shp[MXRT_SHAPE_CAP];
    const JsonValue *dtype, *shape, *offsets;

    mxrt_quote(qname, sizeof qname, m->key);
    memset(t, 0, sizeof *t);
    t->name = m->key;
    if (m->kind != JSON_OBJECT)
        return mxrt_set_error("%s: tensor '%s': entry is a JSON %s, expected an object",
                              f->label, qname, json_kind_name(m->kind));
    if (st_entry_member(f, m, qname, "dtype", &dtype) ||
        st_entry_member(f, m, qname, "shape", &shape) ||
        st_entry_member(f, m, qname, "data_offsets", &offsets))
        return -1;
    if (st_parse_dtype(f, qname, dtype, &t->dtype) || st_parse_shape(f, qname, shape, t) ||
        st_parse_offsets(f, qname, offsets, t))
        return -1;

    if (t->begin > t->end)
        return mxrt_set_error("%s: tensor '%s': data_offsets [%llu, %llu] end before they "
                              "begin", f->label, qname, (unsigned long long)t->begin,
                              (unsigned long long)t->end);
    if (t->end > dlen)
        return mxrt_set_error("%s: tensor '%s': data_offsets [%llu, %llu] run past the end "
                              "of the file (%zu bytes of data)", f->label, qname,
                              (unsigned long long)t->begin, (unsigned long long)t->end, dlen);

    /* Element count times element size, refusing anything that overflows 64 bits. */
    uint64_t bytes = st_dtype_size(t->dtype);
    int overflow = 0;
    for (int i = 0; i < t->rank; i++) {
        uint64_t d = (uint64_t)t->shape[i];
        if (d != 0 && bytes > UINT64_MAX / d)
            overflow = 1;
        else
            bytes *= d;
    }
    /* A zero dimension makes the true size 0 even after an overflowing prefix. */
    for (int i = 0; i < t->rank; i++)
        if (t->shape[i] == 0) {
            overflow = 0;
            bytes = 0;
        }
    mxrt_format_shape(shp, sizeof shp, t->shape, t->rank);
    if (overflow)
        return mxrt_set_error("%s: tensor '%s': shape %s is too large (its byte count "
                              "overflows)", f->label, qname, shp);
    if (bytes != t->end - t->begin)
        return mxrt_set_error("%s: tensor '%s': shape %s of %s needs %llu bytes but "
                              "data_offsets [%llu, %llu] hold %llu", f->label, qname, shp,
                              st_dtype_name(t->dtype), (unsigned long long)bytes,
                              (unsigned long long)t->begin, (unsigned long long)t->end,
                              (unsigned long long)(t->end - t->begin));
    t->data = data + t->begin;
    t->nbytes = (size_t)bytes;
    return 0;
}

static int st_parse_metadata(StFile *f, const JsonValue *m)
{
    char q[MXRT_QUOTE_CAP];
    if (f->meta)
        return mxrt_set_error("%s: \"__metadata__\" appears twice in the header", f->label);
    if (m->kind != JSON_OBJECT)
        return mxrt_set_error("%s: \"__metadata__\" is a JSON %s, expected an object",
                              f->label, json_kind_name(m->kind));
    for (size_t i = 0; i < m->u.c.count; i++) {
        const JsonValue *e = &m->u.c.items[i];
        mxrt_quote(q, sizeof q, e->key);
        if (e->kind != JSON_STRING)
            return mxrt_set_error("%s: metadata '%s' is a JSON %s, expected a string",
                                  f->label, q, json_kind_name(e->kind));
        if (st_has_nul(e->key, e->key_len) || st_has_nul(e->u.s.str, e->u.s.len))
            return mxrt_set_error("%s: metadata '%s' contains a NUL character", f->label, q);
    }
    f->meta = m;
    return 0;
}

static int st_compare_names(const void *a, const void *b)
{
    const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
    return strcmp(x->name, y->name);
}

static int st_compare_offsets(const void *a, const void *b)
{
    const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

/* Build the name index and refuse duplicate names. */
static int st_index_names(StFile *f)
{
    char q[MXRT_QUOTE_CAP];
    f->by_name = malloc((size_t)(f->n ? f->n : 1) * sizeof *f->by_name);
    if (!f->by_name)
        return mxrt_set_error("%s: out of memory indexing %d tensors", f->label, f->n);
    for (int i = 0; i < f->n; i++)
        f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, st_compare_names);
    for (int i = 1; i < f->n; i++)
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0)
            return mxrt_set_error("%s: tensor '%s' appears twice in the header", f->label,
                                  mxrt_quote(q, sizeof q, f->by_name[i]->name));
    return 0;
}

/* Refuse overlapping byte ranges (empty tensors overlap nothing). Gaps are allowed. */
static int st_check_overlaps(const StFile *f)
{
    char qa[MXRT_QUOTE_CAP], qb[MXRT_QUOTE_CAP];
    const StTensor **order = malloc((size_t)(f->n ? f->n : 1) * sizeof *order);
    if (!order)
        return mxrt_set_error("%s: out of memory checking %d tensors", f->label, f->n);
    for (int i = 0; i < f->n; i++)
        order[i] = &f->tensors[i];
    qsort(order, (size_t)f->n, sizeof *order, st_compare_offsets);
    const StTensor *last = NULL; /* the non-empty tensor reaching furthest so far */
    int rc = 0;
    for (int i = 0; i < f->n && rc == 0; i++) {
        const StTensor *t = order[i];
        if (t->begin == t->end)
            continue;
        if (last && t->begin < last->end)
            rc = mxrt_set_error("%s: tensors '%s' (data_offsets [%llu, %llu]) and '%s' "
                                "(data_offsets [%llu, %llu]) overlap", f->label,
                                mxrt_quote(qa, sizeof qa, last->name),
                                (unsigned long long)last->begin, (unsigned long long)last->end,
                                mxrt_quote(qb, sizeof qb, t->name),
                                (unsigned long long)t->begin, (unsigned long long)t->end);
        if (!last || t->end > last->end)
            last = t;
    }
    free(order);
    return rc;
}

/* Validate `size` bytes at `base` and fill f's tables. */
static int st_parse(StFile *f, const unsigned char *base, size_t size)
{
    if (size == 0)
        return mxrt_set_error("%s: file is empty, not a safetensors file", f->label);
    if (size < 8)
        return mxrt_set_error("%s: file is too short to be safetensors (%zu bytes)", f->label,
                              size);
    uint64_t hlen = st_load_le64(base);
    if (hlen > size - 8)
        return mxrt_set_error("%s: header length %llu runs past the end of the file (%zu "
                              "bytes) - not a safetensors file, or truncated", f->label,
                              (unsigned long long)hlen, size);
    if (hlen > ST_MAX_HEADER_BYTES)
        return mxrt_set_error("%s: header length %llu is above the limit of %llu bytes",
                              f->label, (unsigned long long)hlen,
                              (unsigned long long)ST_MAX_HEADER_BYTES);

    /* Three levels suffice (header, entry, shape); a little slack costs nothing. */
    JsonLimits limits = {.max_depth = 8, .max_values = JSON_DEFAULT_MAX_VALUES};
    JsonError jerr;
    if (json_parse((const char *)base + 8, (size_t)hlen, &limits, &f->doc, &jerr))
        return mxrt_set_error("%s: header is not valid JSON: %s (header byte %zu)", f->label,
                              jerr.msg, jerr.offset);
    const JsonValue *root = json_root(f->doc);
    if (root->kind != JSON_OBJECT)
        return mxrt_set_error("%s: header is a JSON %s, expected an object", f->label,
                              json_kind_name(root->kind));

    const unsigned char *data = base + 8 + hlen;
    size_t dlen = size - 8 - (size_t)hlen;
    size_t n = 0;
    for (size_t i = 0; i < root->u.c.count; i++) {
        const JsonValue *m = &root->u.c.items[i];
        if (st_has_nul(m->key, m->key_len))
            return mxrt_set_error("%s: a tensor name contains a NUL character (header byte "
                                  "%zu)", f->label, m->offset);
        if (st_is_metadata_key(m)) {
            if (st_parse_metadata(f, m))
                return -1;
        } else {
            n++;
        }
    }
    if (n > INT32_MAX)
        return mxrt_set_error("%s: too many tensors (%zu)", f->label, n);
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->tensors)
        return mxrt_set_error("%s: out of memory for %zu tensors", f->label, n);
    for (size_t i = 0; i < root->u.c.count; i++) {
        const JsonValue *m = &root->u.c.items[i];
        if (st_is_metadata_key(m))
            continue;
        if (st_parse_entry(f, m, data, dlen, &f->tensors[f->n]))
            return -1;
        f->n++;
    }
    return st_index_names(f) || st_check_overlaps(f) ? -1 : 0;
}

static StFile *st_new_file(const char *label)
{
    StFile *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->label = strdup(label);
    if (!f->label) {
        free(f);
        return NULL;
    }
    return f;
}

int st_open_memory(const void *buf, size_t size, const char *label, StFile **out)
{
    if (!out)
        return mxrt_set_error("st_open_memory: NULL output pointer");
    *out = NULL;
    if (!label)
        label = "<memory>";
    if (!buf && size)
        return mxrt_set_error("%s: NULL buffer", label);
    StFile *f = st_new_file(label);
    if (!f)
        return mxrt_set_error("%s: out of memory", label);
    if (st_parse(f, buf, size)) {
        st_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

/* Maps the file read-only at an address aligned to 2 MiB, with a hint for transparent huge
 * pages. Decode streams every weight once per token; where the kernel and file system can
 * back the page cache with 2 MiB folios (ext4 on recent kernels does, for pages read after
 * the hint), they are then mapped with one TLB entry each instead of 512, and the hardware
 * prefetchers stop less often at page boundaries. Elsewhere the hint is ignored. */
static void *st_map_aligned(int fd, size_t size)
{
    const size_t huge = (size_t)2 << 20;
    if (size < huge || size > SIZE_MAX - huge)
        return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    /* reserve size + 2 MiB of address space, put the file at its first aligned address */
    char *area = mmap(NULL, size + huge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    char *start = (char *)(((uintptr_t)area + huge - 1) & ~(uintptr_t)(huge - 1));
    void *map = mmap(start, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
    if (map == MAP_FAILED) {
        munmap(area, size + huge);
        return MAP_FAILED;
    }
    if (start > area)
        munmap(area, (size_t)(start - area));
    size_t tail = (size_t)(area + size + huge - (start + size));
    if (tail > 0)
        munmap(start + size, tail);
#ifdef MADV_HUGEPAGE
    (void)madvise(map, size, MADV_HUGEPAGE);
#endif
    return map;
}

int st_open(const char *path, StFile **out)
{
    if (!out)
        return mxrt_set_error("st_open: NULL output pointer");
    *out = NULL;
    if (!path)
        return mxrt_set_error("st_open: NULL path");
    /* O_NONBLOCK: a FIFO must not hang the open; it is refused just below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return mxrt_set_error("%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return mxrt_set_error("%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return mxrt_set_error("%s: not a regular file", path);
    }
    if (sb.st_size < 0 || (uintmax_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return mxrt_set_error("%s: file too large to map", path);
    }
    size_t size = (size_t)sb.st_size;
    void *map = NULL;
    if (size > 0) {
        map = st_map_aligned(fd, size);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return mxrt_set_error("%s: cannot map %zu bytes: %s", path, size, strerror(e));
        }
    }
    close(fd); /* the mapping keeps the file alive */

    StFile *f = st_new_file(path);
    if (!f) {
        if (map)
            munmap(map, size);
        return mxrt_set_error("%s: out of memory", path);
    }
    f->map = map;
    f->map_size = size;
    if (st_parse(f, map, size)) {
        st_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

void st_close(StFile *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n_parts; i++)
        st_close(f->parts[i]);
    free(f->parts);
    if (f->map)
        munmap(f->map, f->map_size);
    json_free(f->doc);
    free(f->tensors);
    free(f->by_name);
    free(f->label);
    free(f);
}

const char *st_label(const StFile *f)
{
    return f ? f->label : "(null)";
}

int st_count(const StFile *f)
{
    return f ? f->n : 0;
}

const StTensor *st_at(const StFile *f, int i)
{
    if (!f || i < 0 || i >= f->n)
        return NULL;
    return &f->tensors[i];
}

static int st_compare_key(const void *key, const void *elem)
{
    return strcmp((const char *)key, (*(const StTensor *const *)elem)->name);
}

const StTensor *st_find(const StFile *f, const char *name)
{
    if (!f || !name || f->n == 0)
        return NULL;
    const StTensor *const *hit =
        bsearch(name, f->by_name, (size_t)f->n, sizeof *f->by_name, st_compare_key);
    return hit ? *hit : NULL;
}

const char *st_metadata(const StFile *f, const char *key)
{
    const JsonValue *v = f ? json_get(f->meta, key) : NULL;
    for (int i = 0; !v && f && i < f->n_parts; i++)
        v = json_get(f->parts[i]->meta, key);
    return v ? v->u.s.str : NULL;
}

/* The part of a joined file that tensor t (one of f's) came from. */
static const StFile *st_part_of(const StFile *f, const StTensor *t)
{
    int at = (int)(t - f->tensors);
    for (int i = 0; i < f->n_parts; i++) {
        if (at < f->parts[i]->n)
            return f->parts[i];
        at -= f->parts[i]->n;
    }
    return f;
}

int st_join(StFile **parts, int n_parts, const char *label, StFile **out)
{
    char q[MXRT_QUOTE_CAP];
    *out = NULL;
    StFile *f = st_new_file(label);
    size_t total = 0;
    for (int i = 0; i < n_parts; i++)
        total += (size_t)parts[i]->n;
    if (f && n_parts > 0 && total <= INT32_MAX) {
        f->parts = malloc((size_t)n_parts * sizeof *f->parts);
        f->tensors = malloc((total ? total : 1) * sizeof *f->tensors);
    }
    if (!f || !f->parts || !f->tensors) {
        for (int i = 0; i < n_parts; i++)
            st_close(parts[i]);
        st_close(f);
        return mxrt_set_error("%s: out of memory joining %d files", label, n_parts);
    }
    /* From here on f owns the parts: closing f closes them. */
    for (int i = 0; i < n_parts; i++) {
        memcpy(f->tensors + f->n, parts[i]->tensors, (size_t)parts[i]->n * sizeof *f->tensors);
        f->n += parts[i]->n;
        f->parts[f->n_parts++] = parts[i];
    }
    f->by_name = malloc((size_t)(f->n ? f->n : 1) * sizeof *f->by_name);
    if (!f->by_name) {
        st_close(f);
        return mxrt_set_error("%s: out of memory indexing tensors", label);
    }
    for (int i = 0; i < f->n; i++)
        f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, st_compare_names);
    for (int i = 1; i < f->n; i++)
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0) {
            int rc = mxrt_set_error("%s: tensor '%s' is in two files, %s and %s", label,
                                    mxrt_quote(q, sizeof q, f->by_name[i]->name),
                                    st_label(st_part_of(f, f->by_name[i - 1])),
                                    st_label(st_part_of(f, f->by_name[i])));
            st_close(f);
            return rc;
        }
    *out = f;
    return 0;
}

const char *st_tensor_file(const StFile *f, const StTensor *t)
{
    return st_label(f && t ? st_part_of(f, t) : f);
}

void st_release(const StFile *f, const StTensor *t)
{
    if (!f || !t || !st_part_of(f, t)->map || t->nbytes == 0)
        return; /* st_open_memory's buffer is the caller's: never dropped */
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        return;
    uintptr_t lo = (uintptr_t)t->data, hi = lo + t->nbytes, p = (uintptr_t)page;
    lo = (lo + p - 1) / p * p; /* only pages wholly inside the tensor */
    hi = hi / p * p;
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* --- conversion to float ------------------------------------------------------------------- */

int st_is_f32_in_place(const StTensor *t)
{
    return t && t->dtype == ST_F32 && ((uintptr_t)t->data & 3) == 0 &&
           st_host_is_little_endian();
}

static float st_bits_to_float(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* IEEE half -> float, exact for every input (subnormals, infinities, NaN payloads). */
static float st_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = h >> 10 & 0x1F, man = h & 0x3FF;
    if (exp == 0x1F)
        return st_bits_to_float(sign | 0x7F800000u | man << 13);
    if (exp != 0)
        return st_bits_to_float(sign | (exp + 112) << 23 | man << 13);
    if (man == 0)
        return st_bits_to_float(sign);
    /* Subnormal half: shift the leading 1 into the implicit position. */
    uint32_t e = 113; /* float exponent field of 2^-14, the smallest normal half */
    while (!(man & 0x400)) {
        man <<= 1;
        e--;
    }
    return st_bits_to_float(sign | e << 23 | (man & 0x3FF) << 13);
}

/* double -> float without relying on out-of-range conversions being defined. */
static float st_double_to_float(double d)
{
    if (d > 3.4028234663852886e38)
        return st_bits_to_float(0x7F800000u);
    if (d < -3.4028234663852886e38)
        return st_bits_to_float(0xFF800000u);
    return (float)d; /* in range, or NaN */
}

static int st_refuse_dtype(const StTensor *t)
{
    char q[MXRT_QUOTE_CAP];
    return mxrt_set_error("tensor '%s': dtype %s cannot be read as floats (F32, F16, BF16 or "
                          "F64 expected)", mxrt_quote(q, sizeof q, t->name),
                          st_dtype_name(t->dtype));
}

int st_convert_f32(const StTensor *t, float *dst)
{
    if (!t || !dst)
        return mxrt_set_error("st_convert_f32: NULL argument");
    const unsigned char *p = t->data;
    size_t n = (size_t)st_numel(t);
    switch (t->dtype) {
    case ST_F32:
        for (size_t i = 0; i < n; i++, p += 4)
            dst[i] = st_bits_to_float((uint32_t)p[0] | (uint32_t)p[1] << 8 |
                                      (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        return 0;
    case ST_F16:
        for (size_t i = 0; i < n; i++, p += 2)
            dst[i] = st_half_to_float((uint16_t)(p[0] | p[1] << 8));
        return 0;
    case ST_BF16:
        for (size_t i = 0; i < n; i++, p += 2)
            dst[i] = st_bits_to_float(((uint32_t)p[0] | (uint32_t)p[1] << 8) << 16);
        return 0;
    case ST_F64:
        for (size_t i = 0; i < n; i++, p += 8) {
            uint64_t bits = st_load_le64(p);
            double d;
            memcpy(&d, &bits, sizeof d);
            dst[i] = st_double_to_float(d);
        }
        return 0;
    case ST_BOOL: case ST_U8: case ST_I8: case ST_F8_E5M2: case ST_F8_E4M3: case ST_F8_E8M0:
    case ST_I16: case ST_U16: case ST_I32: case ST_U32: case ST_I64: case ST_U64:
        break;
    }
    return st_refuse_dtype(t);
}

int st_read_f32(const StTensor *t, float **out)
{
    char q[MXRT_QUOTE_CAP];
    if (!out)
        return mxrt_set_error("st_read_f32: NULL output pointer");
    *out = NULL;
    if (!t)
        return mxrt_set_error("st_read_f32: NULL tensor");
    if (!st_dtype_is_float(t->dtype))
        return st_refuse_dtype(t);
    size_t n = (size_t)st_numel(t);
    float *buf = malloc((n ? n : 1) * sizeof(float)); /* n <= nbytes / 2: no overflow */
    if (!buf)
        return mxrt_set_error("out of memory converting tensor '%s' (%zu floats)",
                              mxrt_quote(q, sizeof q, t->name), n);
    st_convert_f32(t, buf);
    *out = buf;
    return 0;
}

/* --- writing ------------------------------------------------------------------------------- */

/* A growable byte buffer for the header; `oom` sticks once an allocation fails. */
typedef struct StBuf {
    char *p;
    size_t n, cap;
    int oom;
} StBuf;

static void st_buf_put(StBuf *b, const char *s, size_t len)
{
    if (b->oom)
        return;
    if (len > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < len) {
            if (cap > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
}

static void st_buf_str(StBuf *b, const char *s)
{
    st_buf_put(b, s, strlen(s));
}

static void st_buf_u64(StBuf *b, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    st_buf_put(b, tmp, (size_t)n);
}

/* A JSON string literal; control characters, quotes and backslashes escaped. */
static void st_buf_json_string(StBuf *b, const char *s)
{
    st_buf_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            st_buf_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            st_buf_put(b, esc, 6);
        } else {
            st_buf_put(b, (const char *)&c, 1);
        }
    }
    st_buf_put(b, "\"", 1);
}

/* Check one tensor to write and return its byte count in *nbytes. */
static int st_check_write_tensor(const char *path, const StWriteTensor *w, bool streamed,
                                 size_t *nbytes)
{
    char q[MXRT_QUOTE_CAP];
    if (!w->name)
        return mxrt_set_error("%s: a tensor to write has no name", path);
    mxrt_quote(q, sizeof q, w->name);
    if (strcmp(w->name, st_metadata_key) == 0)
        return mxrt_set_error("%s: '%s' is reserved and cannot name a tensor", path, q);
    if (st_dtype_size(w->dtype) == 0)
        return mxrt_set_error("%s: tensor '%s': invalid dtype %d", path, q, (int)w->dtype);
    if (w->rank < 0 || w->rank > ST_MAX_RANK || (w->rank > 0 && !w->shape))
        return mxrt_set_error("%s: tensor '%s': invalid rank %d or shape", path, q, w->rank);
    uint64_t bytes = st_dtype_size(w->dtype);
    for (int i = 0; i < w->rank; i++) {
        if (w->shape[i] < 0)
            return mxrt_set_error("%s: tensor '%s': negative dimension", path, q);
        uint64_t d = (uint64_t)w->shape[i];
        if (d != 0 && bytes > UINT64_MAX / d)
            return mxrt_set_error("%s: tensor '%s': shape too large", path, q);
        bytes *= d;
    }
    if (bytes > SIZE_MAX || bytes > (uint64_t)INT64_MAX)
        return mxrt_set_error("%s: tensor '%s': shape too large", path, q);
    if (bytes > 0 && !w->data && !streamed)
        return mxrt_set_error("%s: tensor '%s': NULL data", path, q);
    *nbytes = (size_t)bytes;
    return 0;
}

/* The JSON header for `tensors`, padded with spaces so that the data starts 8-aligned. */
static int st_build_header(const char *path, const StWriteTensor *tensors, int n,
                           const char *const *metadata, bool streamed, StBuf *b)
{
    const char *sep = "";
    uint64_t offset = 0;
    st_buf_str(b, "{");
    if (metadata && metadata[0]) {
        st_buf_json_string(b, st_metadata_key);
        st_buf_str(b, ":{");
        for (int i = 0; metadata[i]; i += 2) {
            if (!metadata[i + 1])
                return mxrt_set_error("%s: metadata key without a value", path);
            st_buf_str(b, i ? "," : "");
            st_buf_json_string(b, metadata[i]);
            st_buf_str(b, ":");
            st_buf_json_string(b, metadata[i + 1]);
        }
        st_buf_str(b, "}");
        sep = ",";
    }
    for (int i = 0; i < n; i++) {
        const StWriteTensor *w = &tensors[i];
        size_t nbytes;
        if (st_check_write_tensor(path, w, streamed, &nbytes))
            return -1;
        for (int j = 0; j < i; j++)
            if (strcmp(tensors[j].name, w->name) == 0) {
                char q[MXRT_QUOTE_CAP];
                return mxrt_set_error("%s: tensor '%s' given twice", path,
                                      mxrt_quote(q, sizeof q, w->name));
            }
        st_buf_str(b, sep);
        sep = ",";
        st_buf_json_string(b, w->name);
        st_buf_str(b, ":{\"dtype\":\"");
        st_buf_str(b, st_dtype_name(w->dtype));
        st_buf_str(b, "\",\"shape\":[");
        for (int d = 0; d < w->rank; d++) {
            st_buf_str(b, d ? "," : "");
            st_buf_u64(b, (uint64_t)w->shape[d]);
        }
        st_buf_str(b, "],\"data_offsets\":[");
        st_buf_u64(b, offset);
        st_buf_str(b, ",");
        if (nbytes > UINT64_MAX - offset)
            return mxrt_set_error("%s: tensors too large", path);
        offset += nbytes;
        st_buf_u64(b, offset);
        st_buf_str(b, "]}");
    }
    st_buf_str(b, "}");
    while (!b->oom && (8 + b->n) % 8 != 0)
        st_buf_str(b, " ");
    if (b->oom)
        return mxrt_set_error("%s: out of memory building the header", path);
    return 0;
}

static int st_write_file(const char *tmp, const StBuf *header, const StWriteTensor *tensors,
                         int n, StProduceFn produce, void *ctx)
{
    FILE *fp = fopen(tmp, "wb");
    if (!fp)
        return mxrt_set_error("%s: cannot create: %s", tmp, strerror(errno));
    unsigned char len8[8];
    uint64_t hlen = header->n;
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)(hlen >> (8 * i));
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(header->p, 1, header->n, fp) == header->n;
    int produce_failed = 0;
    for (int i = 0; ok && i < n; i++) {
        /* Checked while the header was built; this call only recomputes the size. */
        size_t nbytes = 0;
        st_check_write_tensor(tmp, &tensors[i], produce != NULL, &nbytes);
        if (nbytes == 0)
            continue;
        const void *data = tensors[i].data;
        if (!data && !(data = produce(ctx, i))) {
            produce_failed = 1;
            break;
        }
        ok = fwrite(data, 1, nbytes, fp) == nbytes;
    }
    int e = errno;
    if (fclose(fp) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (produce_failed)
        return -1; /* the producer set the error */
    if (!ok)
        return mxrt_set_error("%s: write failed: %s", tmp, strerror(e));
    return 0;
}

int st_write_streamed(const char *path, const StWriteTensor *tensors, int n,
                      const char *const *metadata, StProduceFn produce, void *ctx)
{
    if (!path)
        return mxrt_set_error("st_write: NULL path");
    if (n < 0 || (n > 0 && !tensors))
        return mxrt_set_error("%s: invalid tensor list", path);
    StBuf header = {0};
    char *tmp = NULL;
    int rc = st_build_header(path, tensors, n, metadata, produce != NULL, &header);
    if (rc == 0) {
        size_t plen = strlen(path);
        tmp = malloc(plen + sizeof ST_WRITE_TMP_SUFFIX);
        if (tmp) {
            memcpy(tmp, path, plen);
            memcpy(tmp + plen, ST_WRITE_TMP_SUFFIX, sizeof ST_WRITE_TMP_SUFFIX);
        } else {
            rc = mxrt_set_error("%s: out of memory", path);
        }
    }
    if (rc == 0)
        rc = st_write_file(tmp, &header, tensors, n, produce, ctx);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = mxrt_set_error("%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
    if (rc != 0 && tmp)
        remove(tmp);
    free(tmp);
    free(header.p);
    return rc;
}

int st_write(const char *path, const StWriteTensor *tensors, int n, const char *const *metadata)
{
    return st_write_streamed(path, tensors, n, metadata, NULL, NULL);
}
