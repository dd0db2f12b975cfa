/* fuzz_tokenizer.c - libFuzzer target: the tokenizer (tokenizer/) on hostile input.
 *
 * The first byte says what the rest is. Even: a tokenizer.json, opened; when it is accepted, a
 * fixed text with added-token strings, Unicode and white space is encoded, and the ids decoded
 * and streamed back. Odd: a text, encoded with two of the test tokenizers (tests/tokenizer/split
 * and normalized, opened once), its ids decoded and streamed; the same bytes also read as ids
 * (little-endian 16-bit) and decoded. Refusals are fine; crashes, sanitizer reports, leaks and
 * a stream that disagrees with decode are not. MXC_TOK_DIR is set by run.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/mxc_tokenizer.h"

#ifndef MXC_TOK_DIR
#define MXC_TOK_DIR "tests/tokenizer"
#endif

static MxcTokenizer *toks[2];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *names[2] = { MXC_TOK_DIR "/split", MXC_TOK_DIR "/normalized" };
    for (int i = 0; i < 2; i++) {
        MxcTokError err;
        if (mxc_tokenizer_open(names[i], &toks[i], &err) != 0) {
            fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
            abort();
        }
    }
    return 0;
}

/* Decode, stream the same ids, and insist that both agree. */
static void roundtrip(MxcTokenizer *t, const int32_t *ids, size_t n)
{
    char *text;
    size_t len;
    MxcTokError err;
    int ok = mxc_tokenizer_decode(t, ids, n, 0, &text, &len, &err) == 0;
    MxcTokStream *s = mxc_tokenizer_stream_new(t, 0);
    if (!s) abort();
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p;
        size_t pl;
        if (mxc_tokenizer_stream_put(s, ids[i], &p, &pl, &err) != 0) {
            if (ok) abort(); /* decode accepted an id the stream refuses */
            break;
        }
        if (ok && (at + pl > len || memcmp(text + at, p, pl) != 0)) abort();
        at += pl;
    }
    const char *p;
    size_t pl;
    if (ok) {
        if (mxc_tokenizer_stream_flush(s, &p, &pl) != 0 || at + pl != len || memcmp(text + at, p, pl) != 0)
            abort();
        free(text);
    }
    mxc_tokenizer_stream_free(s);
}

static const char probe[] = "Hello <|endoftext|> world<mask> [SEP]  x\r\n\tdéjà vu ΟΔΟΣ 😀 12345 don't";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    int32_t *ids;
    size_t k;
    MxcTokError err;
    if (!(data[0] & 1)) {
        MxcTokenizer *t;
        if (mxc_tokenizer_open_json(rest, n, "fuzz.json", &t, &err) != 0) {
            if (!err.msg[0]) abort(); /* a refusal always says why */
            return 0;
        }
        if (mxc_tokenizer_encode(t, probe, sizeof probe - 1, 1, &ids, &k, &err) == 0) {
            roundtrip(t, ids, k);
            free(ids);
        }
        mxc_tokenizer_close(t);
        return 0;
    }
    for (int i = 0; i < 2; i++) {
        if (mxc_tokenizer_encode(toks[i], rest, n, data[0] & 2, &ids, &k, &err) == 0) {
            roundtrip(toks[i], ids, k);
            free(ids);
        }
        size_t m = n / 2;
        int32_t *raw = malloc((m + 1) * sizeof *raw);
        if (!raw) return 0;
        for (size_t j = 0; j < m; j++) raw[j] = (int32_t)((unsigned char)rest[2 * j] | (unsigned char)rest[2 * j + 1] << 8);
        roundtrip(toks[i], raw, m);
        free(raw);
    }
    return 0;
}
