/* state_blob.c - encode and validate saved states (format in state_blob.h). */
#include "runtime/state_blob.h"
#include "runtime/error.h"

#include <string.h>

static const unsigned char blob_magic[8] = {'M', 'X', 'C', 'S', 'T', 'A', 'T', 'E'};

enum { OFF_VERSION = 8, OFF_HEADER = 12, OFF_FINGERPRINT = 16, OFF_NAME = 24, NAME_BYTES = 48,
       OFF_MXC = 72, MXC_BYTES = 24, OFF_FLOATS = 96, OFF_BATCH = 104, OFF_DMODEL = 108,
       OFF_PAYLOAD = 112, OFF_CHECKSUM = 120 };

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* FNV-1a over little-endian 64-bit words (bytes for the tail): multiplying by an odd constant
 * is a bijection, so changing any one word always changes the result. */
uint64_t state_blob_hash(uint64_t h, const unsigned char *p, size_t n)
{
    const uint64_t prime = 0x100000001b3ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        h ^= get_u64(p + i);
        h *= prime;
    }
    for (; i < n; i++) {
        h ^= p[i];
        h *= prime;
    }
    return h ^ (h >> 29);
}

uint64_t state_blob_size(const MxrtModelDesc *d, int batch)
{
    if (batch < 1 || d->state_floats < 0)
        return 0;
    uint64_t b = (uint64_t)batch, f = (uint64_t)d->state_floats;
    if (f > UINT64_MAX / 8 / b) /* then b*f*4 + b*8 + 128 cannot overflow */
        return 0;
    return STATE_BLOB_HEADER + b * 8 + b * f * 4;
}

static void put_name(unsigned char *p, const char *s, size_t cap)
{
    memset(p, 0, cap);
    size_t n = s ? strlen(s) : 0;
    memcpy(p, s ? s : "", n < cap - 1 ? n : cap - 1);
}

void state_blob_write(const MxrtModelDesc *d, int batch, const int64_t *positions,
                      const float *state, unsigned char *buf)
{
    uint64_t size = state_blob_size(d, batch);
    memcpy(buf, blob_magic, 8);
    put_u32(buf + OFF_VERSION, STATE_BLOB_VERSION);
    put_u32(buf + OFF_HEADER, STATE_BLOB_HEADER);
    put_u64(buf + OFF_FINGERPRINT, d->fingerprint);
    put_name(buf + OFF_NAME, d->name, NAME_BYTES);
    put_name(buf + OFF_MXC, d->mxc_version, MXC_BYTES);
    put_u64(buf + OFF_FLOATS, (uint64_t)d->state_floats);
    put_u32(buf + OFF_BATCH, (uint32_t)batch);
    put_u32(buf + OFF_DMODEL, (uint32_t)d->d_model);
    put_u64(buf + OFF_PAYLOAD, size - STATE_BLOB_HEADER);
    unsigned char *pay = buf + STATE_BLOB_HEADER;
    for (int b = 0; b < batch; b++) put_u64(pay + 8 * (size_t)b, (uint64_t)positions[b]);
    unsigned char *fl = pay + 8 * (size_t)batch;
    size_t n = (size_t)batch * (size_t)d->state_floats;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(fl, state, n * 4);
#else
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &state[i], 4);
        put_u32(fl + 4 * i, u);
    }
#endif
    uint64_t h = state_blob_hash(STATE_BLOB_SEED, buf, OFF_CHECKSUM);
    h = state_blob_hash(h, pay, size - STATE_BLOB_HEADER);
    put_u64(buf + OFF_CHECKSUM, h);
}

/* A NUL-padded text field of the blob, safe to print. */
static const char *blob_text(char out[MXRT_QUOTE_CAP], const unsigned char *p, size_t cap)
{
    char raw[64];
    size_t n = 0;
    while (n < cap && n < sizeof raw - 1 && p[n]) {
        raw[n] = (char)p[n];
        n++;
    }
    raw[n] = 0;
    return mxrt_quote(out, MXRT_QUOTE_CAP, raw);
}

int state_blob_check_header(const MxrtModelDesc *d, int batch, const unsigned char *buf,
                            uint64_t size, const char *where)
{
    if (size < STATE_BLOB_HEADER)
        return mxrt_set_error("%s: not a saved state: %llu bytes, shorter than the %d-byte "
                              "header", where, (unsigned long long)size, STATE_BLOB_HEADER);
    if (memcmp(buf, blob_magic, 8) != 0)
        return mxrt_set_error("%s: not a saved state (no MXCSTATE magic)", where);
    uint32_t version = get_u32(buf + OFF_VERSION);
    if (version != STATE_BLOB_VERSION || get_u32(buf + OFF_HEADER) != STATE_BLOB_HEADER)
        return mxrt_set_error("%s: saved state has format version %u; this runtime reads "
                              "version %d", where, (unsigned)version, STATE_BLOB_VERSION);
    char name[MXRT_QUOTE_CAP], mxc[MXRT_QUOTE_CAP], own[MXRT_QUOTE_CAP];
    uint64_t fp = get_u64(buf + OFF_FINGERPRINT);
    if (fp != d->fingerprint)
        return mxrt_set_error("%s: the state was saved by another model or build: '%s' (mxc "
                              "%s, fingerprint %016llx), this is '%s' (mxc %s, fingerprint "
                              "%016llx)", where, blob_text(name, buf + OFF_NAME, NAME_BYTES),
                              blob_text(mxc, buf + OFF_MXC, MXC_BYTES), (unsigned long long)fp,
                              mxrt_quote(own, sizeof own, d->name),
                              d->mxc_version ? d->mxc_version : "?",
                              (unsigned long long)d->fingerprint);
    uint64_t floats = get_u64(buf + OFF_FLOATS);
    if (floats != (uint64_t)d->state_floats)
        return mxrt_set_error("%s: the state has %llu floats per sequence, the model %lld",
                              where, (unsigned long long)floats, (long long)d->state_floats);
    uint32_t nb = get_u32(buf + OFF_BATCH);
    if (nb != (uint32_t)batch)
        return mxrt_set_error("%s: the state was saved with batch %u, the target state has "
                              "batch %d", where, (unsigned)nb, batch);
    uint64_t want = state_blob_size(d, batch);
    uint64_t payload = get_u64(buf + OFF_PAYLOAD);
    if (payload != want - STATE_BLOB_HEADER)
        return mxrt_set_error("%s: the header gives %llu payload bytes, batch %d needs %llu",
                              where, (unsigned long long)payload, batch,
                              (unsigned long long)(want - STATE_BLOB_HEADER));
    if (size != want)
        return mxrt_set_error("%s: saved state is %s: %llu bytes, expected %llu", where,
                              size < want ? "truncated" : "followed by extra bytes",
                              (unsigned long long)size, (unsigned long long)want);
    return 0;
}

int state_blob_check(const MxrtModelDesc *d, int batch, const unsigned char *buf, size_t size,
                     const char *where, const unsigned char **positions,
                     const unsigned char **state)
{
    if (state_blob_check_header(d, batch, buf, (uint64_t)size, where))
        return -1;
    uint64_t payload = get_u64(buf + OFF_PAYLOAD);
    uint64_t h = state_blob_hash(STATE_BLOB_SEED, buf, OFF_CHECKSUM);
    h = state_blob_hash(h, buf + STATE_BLOB_HEADER, (size_t)payload);
    if (h != get_u64(buf + OFF_CHECKSUM))
        return mxrt_set_error("%s: saved state is corrupt (checksum mismatch)", where);
    const unsigned char *pos = buf + STATE_BLOB_HEADER;
    for (int b = 0; b < batch; b++)
        if ((int64_t)get_u64(pos + 8 * (size_t)b) < 0)
            return mxrt_set_error("%s: saved state gives sequence %d a negative position count",
                                  where, b);
    *positions = pos;
    *state = pos + 8 * (size_t)batch;
    return 0;
}

int64_t state_blob_position(const unsigned char *positions, int b)
{
    return (int64_t)get_u64(positions + 8 * (size_t)b);
}

void state_blob_read_floats(const unsigned char *src, float *dst, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(dst, src, n * 4);
#else
    for (size_t i = 0; i < n; i++) {
        uint32_t u = get_u32(src + 4 * i);
        memcpy(&dst[i], &u, 4);
    }
#endif
}
