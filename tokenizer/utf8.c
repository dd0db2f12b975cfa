/* utf8.c - UTF-8 validation, decoding and the replacement of ill-formed bytes by U+FFFD the way
 * the WHATWG TextDecoder does it (each maximal subpart of an ill-formed sequence becomes one
 * U+FFFD), which is what the reference decoders produce for byte tokens that do not add up to
 * characters. */
#include "tokenizer/tok.h"

/* Bounds of the second byte for a lead byte (Unicode Table 3-7); 0 = not a lead byte. */
static int utf8_second(unsigned char c, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80, *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c == 0xE0) { *lo = 0xA0; return 3; }
    if (c == 0xED) { *hi = 0x9F; return 3; }
    if (c >= 0xE1 && c <= 0xEF) return 3;
    if (c == 0xF0) { *lo = 0x90; return 4; }
    if (c == 0xF4) { *hi = 0x8F; return 4; }
    if (c >= 0xF1 && c <= 0xF3) return 4;
    return 0;
}

/* Length of the valid prefix of the sequence at p: returns the full length n when valid, else
 * -k where k is the length of the maximal subpart (>= 1), or 0 when the bytes are a valid but
 * incomplete start (truncated by avail). */
static int utf8_scan(const unsigned char *p, size_t avail, int *need)
{
    unsigned char lo, hi;
    if (p[0] < 0x80) { *need = 1; return 1; }
    int n = utf8_second(p[0], &lo, &hi);
    *need = n;
    if (!n) return -1;
    for (int i = 1; i < n; i++) {
        if ((size_t)i >= avail) return 0;
        unsigned char c = p[i];
        if (i == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) return -i;
    }
    return n;
}

size_t utf8_valid_len(const unsigned char *p, size_t avail)
{
    int need, r = avail ? utf8_scan(p, avail, &need) : 0;
    return r > 0 ? (size_t)r : 0;
}

size_t utf8_decode(const unsigned char *p, size_t avail, uint32_t *cp)
{
    size_t n = utf8_valid_len(p, avail);
    if (n == 1) *cp = p[0];
    else if (n == 2) *cp = (uint32_t)(p[0] & 0x1F) << 6 | (p[1] & 0x3F);
    else if (n == 3) *cp = (uint32_t)(p[0] & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3F);
    else if (n == 4)
        *cp = (uint32_t)(p[0] & 0x07) << 18 | (uint32_t)(p[1] & 0x3F) << 12 |
              (uint32_t)(p[2] & 0x3F) << 6 | (p[3] & 0x3F);
    return n;
}

size_t utf8_encode(uint32_t cp, char *o)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int utf8_sanitize(const unsigned char *p, size_t len, Buf *out, size_t *hold)
{
    static const char fffd[3] = { (char)0xEF, (char)0xBF, (char)0xBD };
    if (hold) *hold = 0;
    if (buf_reserve(out, len) != 0) return -1;
    size_t i = 0;
    while (i < len) {
        size_t run = i; /* copy runs of ASCII and valid sequences at once */
        int need, r = 1;
        while (run < len && (r = utf8_scan(p + run, len - run, &need)) > 0) run += (size_t)r;
        if (buf_add(out, p + i, run - i) != 0) return -1;
        i = run;
        if (i >= len) break;
        if (r == 0) { /* incomplete at the very end */
            if (hold) { *hold = len - i; return 0; }
            if (buf_add(out, fffd, 3) != 0) return -1;
            break;
        }
        if (buf_add(out, fffd, 3) != 0) return -1;
        i += (size_t)-r;
    }
    return 0;
}
