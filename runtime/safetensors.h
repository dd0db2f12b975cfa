/* safetensors.h - read (memory-mapped, fully validated) and write safetensors files.
 *
 * Format: an 8-byte little-endian u64 N, N bytes of JSON header, then the data region. The
 * header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} with offsets
 * relative to the data region; an optional "__metadata__" object maps strings to strings.
 *
 * st_open checks the whole header before anything is handed out: sizes, JSON, every entry,
 * byte counts against shapes (overflow-checked), ranges inside the data region, no overlaps,
 * no duplicate names. After that every StTensor's `data .. data + nbytes` lies inside the
 * mapping. Errors go to mxrt_set_error and name the file and the tensor. */
#ifndef MXC_RUNTIME_SAFETENSORS_H
#define MXC_RUNTIME_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_RANK 8
/* Largest header accepted (the reference implementation's limit is the same order). */
#define ST_MAX_HEADER_BYTES ((uint64_t)100 * 1000 * 1000)

/* Every byte-sized dtype of the format. Sub-byte ones (F4, F6_*) are refused as unknown. */
typedef enum {
    ST_BOOL,
    ST_U8,
    ST_I8,
    ST_F8_E5M2,
    ST_F8_E4M3,
    ST_F8_E8M0,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_I64,
    ST_U64,
    ST_F64,
} StDtype;

typedef struct StTensor {
    const char *name;      /* UTF-8, no NUL inside */
    StDtype dtype;
    int rank;              /* 0 .. ST_MAX_RANK; 0 is a scalar */
    int64_t shape[ST_MAX_RANK];
    const void *data;      /* inside the mapping; any alignment */
    size_t nbytes;         /* product(shape) * dtype size, == end - begin */
    uint64_t begin, end;   /* data_offsets as written, relative to the data region */
} StTensor;

typedef struct StFile StFile;

/* Map and validate `path`. Returns 0 and a new StFile, or non-zero (error set, *out NULL). The
 * mapping is MAP_PRIVATE and read-only; if another process truncates the file while it is
 * mapped, touching the lost pages raises SIGBUS - the one hazard mmap cannot rule out. */
int st_open(const char *path, StFile **out);

/* Same checks on `size` bytes at `buf`, which must outlive the StFile (it is not copied).
 * `label` names the data in messages (a path, "<memory>"). For tests and fuzzers. */
int st_open_memory(const void *buf, size_t size, const char *label, StFile **out);

void st_close(StFile *f); /* NULL is fine */

const char *st_label(const StFile *f);      /* the path or label given when opening */
int st_count(const StFile *f);              /* number of tensors */
const StTensor *st_at(const StFile *f, int i); /* header order; NULL if out of range */
const StTensor *st_find(const StFile *f, const char *name); /* NULL if absent */
const char *st_metadata(const StFile *f, const char *key);  /* "__metadata__" value or NULL */

/* One StFile over the tensors of several open files (the shards of a checkpoint): st_find
 * and st_at see them all, st_metadata the first file that has the key. Takes ownership of
 * the parts (closed with the result, or at once on failure). A name in two parts is refused,
 * naming both files. */
int st_join(StFile **parts, int n_parts, const char *label, StFile **out);

/* The label of the file that holds tensor t of f (f's own label unless f was joined). */
const char *st_tensor_file(const StFile *f, const StTensor *t);

/* Tell the kernel that tensor t of a mapped file will not be read again for a while: its
 * pages leave this process's memory (the page cache keeps them; a later read maps them
 * again, with the same bytes: the mapping is private and never written). For tools that
 * stream a checkpoint larger than memory once. No effect on st_open_memory data. */
void st_release(const StFile *f, const StTensor *t);

const char *st_dtype_name(StDtype dtype);   /* "F32", ... */
size_t st_dtype_size(StDtype dtype);        /* bytes per element */
int64_t st_numel(const StTensor *t);        /* product of the shape */

/* Non-zero when the tensor can be read in place as float[]: F32, 4-byte aligned, and a
 * little-endian host. */
int st_is_f32_in_place(const StTensor *t);

/* Non-zero for the dtypes st_to_f32 converts: F32, F16, BF16, F64. */
int st_dtype_is_float(StDtype dtype);

/* Convert the tensor's elements to float into dst[st_numel(t)] (any source alignment; F64 out of
 * float range becomes +-inf). Returns non-zero, with an error, for other dtypes. */
int st_convert_f32(const StTensor *t, float *dst);

/* Same into a fresh malloc'd array (at least one element long, so never NULL on success);
 * the caller frees it. */
int st_read_f32(const StTensor *t, float **out);

/* A tensor to write: `data` holds product(shape) elements of `dtype`, little-endian. */
typedef struct StWriteTensor {
    const char *name;
    StDtype dtype;
    int rank;
    const int64_t *shape; /* [rank]; may be NULL when rank is 0 */
    const void *data;     /* may be NULL when the tensor is empty */
} StWriteTensor;

/* Write a safetensors file: header (padded with spaces to 8 bytes), then the tensors packed in
 * the given order with no gaps - so put wider dtypes first if alignment matters. `metadata` is
 * NULL or a NULL-terminated list of key, value, key, value, ... strings. The file is written
 * beside `path` and renamed over it, so a reader mapping the old file is never disturbed. */
int st_write(const char *path, const StWriteTensor *tensors, int n, const char *const *metadata);

/* The temporary file st_write writes before renaming it to `path`: path + this suffix. */
#define ST_WRITE_TMP_SUFFIX ".tmp"

/* Returns the bytes of tensor i of a streamed write, valid until the next call, or NULL with
 * an error set (the write is then abandoned and the temporary file removed). */
typedef const void *(*StProduceFn)(void *ctx, int i);

/* st_write for outputs larger than memory: a tensor whose `data` is NULL is asked of
 * `produce` when its turn comes, in the order given, so only one tensor need be held at a
 * time. */
int st_write_streamed(const char *path, const StWriteTensor *tensors, int n,
                      const char *const *metadata, StProduceFn produce, void *ctx);

#endif
