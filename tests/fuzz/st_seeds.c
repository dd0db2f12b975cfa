/* st_seeds.c - write the seed corpus of fuzz_st into a directory.
 *
 * Usage: st_seeds DIR. Each seed is a small file that reaches a different part of the
 * reader and the binder: a file that binds (in every float dtype, aligned and not, with the
 * tied head under either name, with metadata and unused tensors), and files that fail one
 * bind rule each (missing, misshapen, integer dtype). The fuzzer mutates from there. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "runtime/safetensors.h"
#include "tests/fuzz/fuzz_desc.h"

#define MAX_T 24
#define MAX_ELEMS 64

typedef struct Seed {
    StWriteTensor t[MAX_T];
    int64_t shapes[MAX_T][MXRT_MAX_RANK];
    unsigned char data[MAX_T][MAX_ELEMS * 8];
    int n;
} Seed;

static int64_t spec_numel(const MxrtTensorSpec *w)
{
    int64_t n = 1;
    for (int d = 0; d < w->rank; d++)
        n *= w->dims[d];
    return n;
}

/* Element k of tensor i as `dtype` (values in [-1, 1), all finite). */
static void put_value(unsigned char *p, StDtype dtype, int i, int64_t k)
{
    float v = (float)((i * 7 + k * 3) % 16 - 8) / 8.0f;
    switch (dtype) {
    case ST_F64: {
        double d = v;
        memcpy(p, &d, 8);
        break;
    }
    case ST_F16: { /* v is a multiple of 1/8 in [-1, 1): exact in half precision */
        uint32_t bits;
        memcpy(&bits, &v, 4);
        uint16_t h = (uint16_t)((bits >> 16) & 0x8000);
        if (v != 0)
            h |= (uint16_t)((((bits >> 23) & 0xff) - 127 + 15) << 10 | ((bits >> 13) & 0x3ff));
        memcpy(p, &h, 2);
        break;
    }
    case ST_BF16: {
        uint32_t bits;
        memcpy(&bits, &v, 4);
        uint16_t h = (uint16_t)(bits >> 16);
        memcpy(p, &h, 2);
        break;
    }
    case ST_I32: {
        int32_t x = (int32_t)(v * 8);
        memcpy(p, &x, 4);
        break;
    }
    default:
        memcpy(p, &v, 4);
        break;
    }
}

/* Add a tensor with the shape of weight slot `slot` (or `shape_override`). */
static void seed_add(Seed *s, const char *name, int slot, StDtype dtype)
{
    const MxrtTensorSpec *w = &fuzz_desc.weights[slot];
    int i = s->n++;
    memcpy(s->shapes[i], w->dims, sizeof s->shapes[i]);
    int64_t n = spec_numel(w);
    size_t es = st_dtype_size(dtype);
    for (int64_t k = 0; k < n; k++)
        put_value(s->data[i] + k * es, dtype, i, k);
    s->t[i] = (StWriteTensor){name, dtype, w->rank, s->shapes[i], s->data[i]};
}

/* Every slot once (the tied head under `head_name`, or both names when NULL). */
static void seed_model(Seed *s, StDtype dtype, const char *head_name)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < fuzz_desc.n_weights; i++) {
        const char *name = fuzz_desc.weights[i].name;
        int tied = fuzz_desc.weights[i].alt_name != NULL;
        if (tied && head_name && strcmp(name, head_name) != 0)
            continue;
        seed_add(s, name, i, dtype);
    }
}

static int seed_write(const char *dir, const char *file, Seed *s, const char *const *meta)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (st_write(path, s->t, s->n, meta) != 0) {
        fprintf(stderr, "st_seeds: %s\n", mxrt_last_error());
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: st_seeds DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    static Seed s;
    static const char *const meta[] = {"format", "pt", "note", "seed", NULL};
    int rc = 0;

    seed_model(&s, ST_F32, NULL);
    rc |= seed_write(dir, "f32_both_heads.safetensors", &s, meta);
    seed_model(&s, ST_F32, "lm_head.weight");
    rc |= seed_write(dir, "f32_head_only.safetensors", &s, NULL);
    seed_model(&s, ST_F16, "backbone.embedding.weight");
    rc |= seed_write(dir, "f16.safetensors", &s, NULL);
    seed_model(&s, ST_BF16, "backbone.embedding.weight");
    rc |= seed_write(dir, "bf16.safetensors", &s, meta);
    seed_model(&s, ST_F64, "backbone.embedding.weight");
    rc |= seed_write(dir, "f64.safetensors", &s, NULL);

    /* a leading 2-byte tensor leaves every F32 after it misaligned: converted copies */
    memset(&s, 0, sizeof s);
    seed_add(&s, "unused.scalar_pair", 1, ST_F16);
    s.shapes[0][0] = 1;
    s.t[0].rank = 1;
    for (int i = 0; i < fuzz_desc.n_weights; i++)
        if (i != 0)
            seed_add(&s, fuzz_desc.weights[i].name, i, ST_F32);
    rc |= seed_write(dir, "misaligned.safetensors", &s, NULL);

    /* one problem each */
    seed_model(&s, ST_F32, "lm_head.weight");
    s.n--; /* drops norm_f */
    rc |= seed_write(dir, "missing.safetensors", &s, NULL);
    seed_model(&s, ST_F32, "lm_head.weight");
    s.shapes[2][0] = 4, s.shapes[2][1] = 16;
    rc |= seed_write(dir, "misshapen.safetensors", &s, NULL);
    seed_model(&s, ST_F32, "lm_head.weight");
    seed_add(&s, "backbone.layers.0.mixer.D.int", 9, ST_I32);
    s.t[8].dtype = ST_I32; /* A_log stored as integers */
    rc |= seed_write(dir, "int_dtype.safetensors", &s, NULL);

    /* empty, scalar and high-rank entries */
    memset(&s, 0, sizeof s);
    int64_t rank8[8] = {1, 1, 1, 1, 1, 1, 1, 2};
    int64_t empty[2] = {0, 5};
    float two[2] = {1, 2};
    s.t[s.n++] = (StWriteTensor){"scalar", ST_F32, 0, NULL, two};
    s.t[s.n++] = (StWriteTensor){"rank8", ST_F32, 8, rank8, two};
    s.t[s.n++] = (StWriteTensor){"empty", ST_F32, 2, empty, NULL};
    rc |= seed_write(dir, "odd_shapes.safetensors", &s, meta);
    return rc;
}
