/* test_tokenizer.c - the tokenizer (tokenizer/): every corpus text under every test tokenizer
 * gives the ids and the decoded text of the reference implementation (tests/tokenizer/expected,
 * made by tools/tokenizer-ref/expected.mjs), with and without the clean-up of spaces, streaming
 * decode equals decode (both ways), the pieces of the
 * Split behaviours, byte fallback / unk, the special ids, and hostile tokenizer.json files that
 * must be refused with a message naming the problem. */
#include <dirent.h>
#include <stdint.h>
#include <string.h>

#include "testutil.h"
#include "tokenizer/mxc_tokenizer.h"
#include "tokenizer/tok.h"

static MxcTokenizer *open_test(const char *name)
{
    char path[1024];
    MxcTokError err;
    MxcTokenizer *t = NULL;
    snprintf(path, sizeof path, "%s/tokenizer/%s", test_srcdir(), name);
    if (mxc_tokenizer_open(path, &t, &err) != 0) fprintf(stderr, "%s\n", err.msg);
    return t;
}

/* Parse a line of decimal ids. */
static int32_t *parse_ids(const char *s, size_t *n)
{
    size_t cap = 64;
    int32_t *v = malloc(cap * sizeof *v);
    *n = 0;
    for (char *end; *s && *s != '\n'; s = end) {
        long x = strtol(s, &end, 10);
        if (end == s) break;
        if (*n == cap) v = realloc(v, (cap *= 2) * sizeof *v);
        v[(*n)++] = (int32_t)x;
    }
    return v;
}

static int all_utf8(const char *p, size_t len)
{
    for (size_t i = 0, k; i < len; i += k)
        if (!(k = utf8_valid_len((const unsigned char *)p + i, len - i))) return 0;
    return 1;
}

static const char *tokenizers[] = { "gpt2", "gpt-neox-20b", "split", "normalized", "decomposed", "bytes" };

static void check_corpus(const char *tname)
{
    MxcTokenizer *t = open_test(tname);
    CU_ASSERT_FATAL(t != NULL);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tokenizer/corpus", test_srcdir());
    DIR *d = opendir(dir);
    CU_ASSERT_FATAL(d != NULL);
    struct dirent *e;
    int texts = 0;
    while ((e = readdir(d))) {
        size_t nl = strlen(e->d_name);
        if (nl < 5 || strcmp(e->d_name + nl - 4, ".txt") != 0) continue;
        char path[2048], base[256];
        snprintf(base, sizeof base, "%.*s", (int)(nl - 4), e->d_name);
        size_t tl, il, dl;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        char *text = test_read_file(path, &tl);
        snprintf(path, sizeof path, "%s/tokenizer/expected/%s/%s.ids", test_srcdir(), tname, base);
        char *idtext = test_read_file(path, &il);
        snprintf(path, sizeof path, "%s/tokenizer/expected/%s/%s.decoded", test_srcdir(), tname, base);
        char *dec = test_read_file(path, &dl);
        CU_ASSERT_FATAL(text && idtext && dec);
        size_t ne;
        int32_t *exp = parse_ids(idtext, &ne);
        int32_t *ids;
        size_t n;
        MxcTokError err;
        CU_ASSERT_FATAL(mxc_tokenizer_encode(t, text, tl, 1, &ids, &n, &err) == 0);
        int same = n == ne && (n == 0 || memcmp(ids, exp, n * sizeof *ids) == 0);
        if (!same) {
            size_t k = 0;
            while (k < n && k < ne && ids[k] == exp[k]) k++;
            fprintf(stderr, "%s/%s: %zu ids, expected %zu; first difference at %zu\n", tname, base, n, ne, k);
        }
        CU_ASSERT(same);
        /* decode, and the streaming decoder one id at a time */
        char *out;
        size_t ol;
        CU_ASSERT_FATAL(mxc_tokenizer_decode(t, ids, n, 0, &out, &ol, &err) == 0);
        CU_ASSERT(ol == dl && memcmp(out, dec, dl) == 0);
        MxcTokStream *s = mxc_tokenizer_stream_new(t, 0);
        Buf acc = {0};
        for (size_t i = 0; i < n; i++) {
            const char *p;
            size_t pl;
            CU_ASSERT_FATAL(mxc_tokenizer_stream_put(s, ids[i], &p, &pl, &err) == 0);
            CU_ASSERT(all_utf8(p, pl)); /* never a partial character */
            buf_add(&acc, p, pl);
        }
        const char *p;
        size_t pl;
        CU_ASSERT(mxc_tokenizer_stream_flush(s, &p, &pl) == 0);
        buf_add(&acc, p, pl);
        CU_ASSERT(acc.len == ol && (ol == 0 || memcmp(acc.p, out, ol) == 0));
        /* the clean-up of spaces, whole and streamed, vs the reference's */
        snprintf(path, sizeof path, "%s/tokenizer/expected/%s/%s.cleaned", test_srcdir(), tname, base);
        size_t cl;
        char *cleaned = test_read_file(path, &cl), *cout;
        size_t col;
        CU_ASSERT_FATAL(cleaned != NULL);
        CU_ASSERT_FATAL(mxc_tokenizer_decode_flags(t, ids, n, MXC_TOK_CLEAN_UP_SPACES, &cout, &col, &err) == 0);
        CU_ASSERT(col == cl && memcmp(cout, cleaned, cl) == 0);
        if (col != cl || memcmp(cout, cleaned, cl) != 0)
            fprintf(stderr, "%s/%s: the clean-up differs from the reference's\n", tname, base);
        MxcTokStream *cs = mxc_tokenizer_stream_new_flags(t, MXC_TOK_CLEAN_UP_SPACES);
        Buf cacc = {0};
        for (size_t i = 0; i < n; i++) {
            const char *p;
            size_t pl;
            CU_ASSERT_FATAL(mxc_tokenizer_stream_put(cs, ids[i], &p, &pl, &err) == 0);
            CU_ASSERT(all_utf8(p, pl));
            buf_add(&cacc, p, pl);
        }
        {
            const char *p;
            size_t pl;
            CU_ASSERT(mxc_tokenizer_stream_flush(cs, &p, &pl) == 0);
            buf_add(&cacc, p, pl);
        }
        CU_ASSERT(cacc.len == cl && (cl == 0 || memcmp(cacc.p, cleaned, cl) == 0));
        free(cacc.p);
        mxc_tokenizer_stream_free(cs);
        free(cout);
        free(cleaned);
        /* GPT-2 has no normalizer and no post-processor tokens: the text comes back exactly */
        if (strcmp(tname, "gpt2") == 0) CU_ASSERT(ol == tl && memcmp(out, text, tl) == 0);
        free(acc.p);
        mxc_tokenizer_stream_free(s);
        free(out);
        free(ids);
        free(exp);
        free(text);
        free(idtext);
        free(dec);
        texts++;
    }
    closedir(d);
    CU_ASSERT(texts >= 11);
    mxc_tokenizer_close(t);
}

static void test_corpus_gpt2(void) { check_corpus(tokenizers[0]); }
static void test_corpus_neox(void) { check_corpus(tokenizers[1]); }
static void test_corpus_split(void) { check_corpus(tokenizers[2]); }
static void test_corpus_normalized(void) { check_corpus(tokenizers[3]); }
static void test_corpus_decomposed(void) { check_corpus(tokenizers[4]); }
static void test_corpus_bytes(void) { check_corpus(tokenizers[5]); }

static void test_neox_basics(void)
{
    MxcTokenizer *t = open_test("gpt-neox-20b");
    CU_ASSERT_FATAL(t != NULL);
    int32_t *ids;
    size_t n;
    MxcTokError err;
    CU_ASSERT_FATAL(mxc_tokenizer_encode(t, "Hello world", 11, 1, &ids, &n, &err) == 0);
    CU_ASSERT(n == 2 && ids[0] == 12092 && ids[1] == 1533);
    free(ids);
    CU_ASSERT(mxc_tokenizer_vocab_size(t) == 50277);
    CU_ASSERT(mxc_tokenizer_special_id(t, "bos") == 0);
    CU_ASSERT(mxc_tokenizer_special_id(t, "eos") == 0);
    CU_ASSERT(mxc_tokenizer_special_id(t, "unk") == -1);
    CU_ASSERT(mxc_tokenizer_special_id(t, "nonsense") == -1);
    CU_ASSERT(mxc_tokenizer_is_special(t, 0) && mxc_tokenizer_is_special(t, 1));
    CU_ASSERT(!mxc_tokenizer_is_special(t, 50254) && !mxc_tokenizer_is_special(t, 12092));
    size_t l;
    const char *s = mxc_tokenizer_id_to_token(t, 1533, &l);
    CU_ASSERT(s && l == 7 && memcmp(s, "\xC4\xA0world", 7) == 0);
    s = mxc_tokenizer_token_bytes(t, 1533, &l);
    CU_ASSERT(s && l == 6 && memcmp(s, " world", 6) == 0);
    CU_ASSERT(mxc_tokenizer_token_to_id(t, "\xC4\xA0world", 7) == 1533);
    CU_ASSERT(mxc_tokenizer_token_to_id(t, "<|endoftext|>", 13) == 0);
    CU_ASSERT(mxc_tokenizer_token_to_id(t, "no such token", 13) == -1);
    CU_ASSERT(mxc_tokenizer_id_to_token(t, -1, NULL) == NULL);
    CU_ASSERT(mxc_tokenizer_id_to_token(t, 50277, NULL) == NULL);
    /* skip_special */
    int32_t two[3] = { 0, 12092, 0 };
    char *out;
    CU_ASSERT(mxc_tokenizer_decode(t, two, 3, 1, &out, &l, &err) == 0);
    CU_ASSERT(l == 5 && strcmp(out, "Hello") == 0);
    free(out);
    CU_ASSERT(mxc_tokenizer_decode(t, two, 3, 0, &out, &l, &err) == 0);
    CU_ASSERT(strcmp(out, "<|endoftext|>Hello<|endoftext|>") == 0);
    free(out);
    /* errors at encode and decode */
    CU_ASSERT(mxc_tokenizer_encode(t, "a\xC0\x80", 3, 1, &ids, &n, &err) == -1);
    CU_ASSERT(strstr(err.msg, "not valid UTF-8 (byte 1)") != NULL);
    int32_t bad[2] = { 5, 50277 };
    CU_ASSERT(mxc_tokenizer_decode(t, bad, 2, 0, &out, &l, &err) == -1);
    CU_ASSERT(strstr(err.msg, "token id 50277 is not in the vocabulary") != NULL);
    mxc_tokenizer_close(t);
}

static void test_specials_by_template(void)
{
    MxcTokenizer *t = open_test("split");
    CU_ASSERT_FATAL(t != NULL);
    CU_ASSERT(mxc_tokenizer_special_id(t, "bos") == 50256);
    int32_t *ids;
    size_t n;
    MxcTokError err;
    CU_ASSERT(mxc_tokenizer_encode(t, "", 0, 1, &ids, &n, &err) == 0);
    CU_ASSERT(n == 1 && ids[0] == 50256);
    free(ids);
    CU_ASSERT(mxc_tokenizer_encode(t, "", 0, 0, &ids, &n, &err) == 0);
    CU_ASSERT(n == 0 && ids == NULL);
    mxc_tokenizer_close(t);
    t = open_test("normalized");
    CU_ASSERT_FATAL(t != NULL);
    CU_ASSERT(mxc_tokenizer_special_id(t, "eos") == 50256);
    mxc_tokenizer_close(t);
}

/* A folder with tokenizer_config.json: its names win. */
static void test_config_names(void)
{
    char dir[1024], path[3200];
    snprintf(dir, sizeof dir, "%s/tok-config-test", test_builddir());
    snprintf(path, sizeof path, "mkdir -p %s && cp %s/tokenizer/gpt2/tokenizer.json %s/", dir, test_srcdir(), dir);
    CU_ASSERT_FATAL(system(path) == 0);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"bos_token\": {\"content\": \"<|endoftext|>\"}, \"eos_token\": \"<|endoftext|>\", \"pad_token\": \"!\"}", f);
    fclose(f);
    MxcTokenizer *t;
    MxcTokError err;
    CU_ASSERT_FATAL(mxc_tokenizer_open(dir, &t, &err) == 0);
    CU_ASSERT(mxc_tokenizer_special_id(t, "bos") == 50256);
    CU_ASSERT(mxc_tokenizer_special_id(t, "pad") == 0);
    mxc_tokenizer_close(t);
    f = fopen(path, "w");
    fputs("{\"eos_token\": \"</s>\"}", f);
    fclose(f);
    CU_ASSERT(mxc_tokenizer_open(dir, &t, &err) == -1);
    CU_ASSERT(strstr(err.msg, "tokenizer_config.json: eos_token '</s>' is not a token") != NULL);
    remove(path);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    remove(path);
    CU_ASSERT(mxc_tokenizer_open(dir, &t, &err) == -1);
    CU_ASSERT(strstr(err.msg, "holds no tokenizer.json") != NULL);
    remove(dir);
}

/* Invalid byte sequences decode as the WHATWG decoder does; the stream holds partial characters. */
static void test_decode_bytes(void)
{
    MxcTokenizer *t = open_test("gpt2");
    CU_ASSERT_FATAL(t != NULL);
    /* single-byte tokens by their byte-level character */
    int32_t e2 = mxc_tokenizer_token_to_id(t, "\xC3\xA2", 2), x82 = mxc_tokenizer_token_to_id(t, "\xC4\xA4", 2);
    int32_t A = mxc_tokenizer_token_to_id(t, "A", 1), ff = mxc_tokenizer_token_to_id(t, "\xC3\xBF", 2);
    int32_t xac = mxc_tokenizer_token_to_id(t, "\xC4\xA6", 2) ;
    size_t l;
    CU_ASSERT(mxc_tokenizer_token_bytes(t, e2, &l)[0] == (char)0xE2 && l == 1);
    CU_ASSERT(mxc_tokenizer_token_bytes(t, x82, &l)[0] == (char)0x82);
    CU_ASSERT(mxc_tokenizer_token_bytes(t, xac, &l)[0] == (char)0x84);
    int32_t seq[] = { e2, x82, A, ff, e2 };
    char *out;
    MxcTokError err;
    CU_ASSERT(mxc_tokenizer_decode(t, seq, 5, 0, &out, &l, &err) == 0);
    CU_ASSERT(l == 10 && memcmp(out, "\xEF\xBF\xBD" "A" "\xEF\xBF\xBD" "\xEF\xBF\xBD", 10) == 0);
    free(out);
    /* "€" is E2 82 AC: nothing printed until the last byte */
    int32_t xac2 = mxc_tokenizer_token_to_id(t, "\xC2\xAC", 2);
    MxcTokStream *s = mxc_tokenizer_stream_new(t, 0);
    const char *p;
    CU_ASSERT(mxc_tokenizer_stream_put(s, e2, &p, &l, &err) == 0 && l == 0);
    CU_ASSERT(mxc_tokenizer_stream_put(s, x82, &p, &l, &err) == 0 && l == 0);
    CU_ASSERT(mxc_tokenizer_stream_put(s, xac2, &p, &l, &err) == 0 && l == 3 && memcmp(p, "\xE2\x82\xAC", 3) == 0);
    CU_ASSERT(mxc_tokenizer_stream_put(s, e2, &p, &l, &err) == 0 && l == 0);
    CU_ASSERT(mxc_tokenizer_stream_put(s, 50256, &p, &l, &err) == 0); /* a special token ends the run */
    CU_ASSERT(l == 16 && memcmp(p, "\xEF\xBF\xBD<|endoftext|>", 16) == 0);
    CU_ASSERT(mxc_tokenizer_stream_put(s, e2, &p, &l, &err) == 0 && l == 0);
    CU_ASSERT(mxc_tokenizer_stream_put(s, 99999, &p, &l, &err) == -1);
    CU_ASSERT(mxc_tokenizer_stream_flush(s, &p, &l) == 0 && l == 3);
    mxc_tokenizer_stream_free(s);
    mxc_tokenizer_close(t);
}

/* --- pre-tokenizer pieces --------------------------------------------------------------------- */
typedef struct Pieces { char buf[512]; size_t len; } Pieces;
static int collect(void *ctx, const char *p, size_t len)
{
    Pieces *c = ctx;
    c->len += (size_t)snprintf(c->buf + c->len, sizeof c->buf - c->len, "[%.*s]", (int)len, p);
    return 0;
}

static void split_case(const char *pat, int literal, SplitBehavior b, int invert, const char *text,
                       const char *want)
{
    MxcTokError err;
    PreTok pt = { .kind = PRE_SPLIT, .behavior = b, .invert = invert };
    pt.re = pretok_compile(pat, strlen(pat), literal, "test", &err);
    CU_ASSERT_FATAL(pt.re != NULL);
    pcre2_match_data *md = pcre2_match_data_create(8, NULL);
    Pieces c = { .len = 0 };
    c.buf[0] = 0;
    CU_ASSERT(pretok_run(&pt, 1, md, text, strlen(text), collect, &c, &err) == 0);
    if (strcmp(c.buf, want) != 0) fprintf(stderr, "split '%s' %d: got %s, want %s\n", text, b, c.buf, want);
    CU_ASSERT(strcmp(c.buf, want) == 0);
    pcre2_match_data_free(md);
    pcre2_code_free(pt.re);
}

static void test_split_behaviors(void)
{
    const char *s = "the-final--countdown";
    split_case("-", 1, SPLIT_REMOVED, 0, s, "[the][final][countdown]");
    split_case("-", 1, SPLIT_ISOLATED, 0, s, "[the][-][final][-][-][countdown]");
    split_case("-", 1, SPLIT_MERGED_PREV, 0, s, "[the-][final-][-][countdown]");
    split_case("-", 1, SPLIT_MERGED_NEXT, 0, s, "[the][-final][-][-countdown]");
    split_case("-", 1, SPLIT_CONTIGUOUS, 0, s, "[the][-][final][--][countdown]");
    split_case("-", 1, SPLIT_REMOVED, 1, s, "[-][-][-]");
    split_case("-", 1, SPLIT_ISOLATED, 0, "--a-", "[-][-][a][-]");
    split_case("\\s+", 0, SPLIT_REMOVED, 0, " a\u00a0b\xe3\x80\x80" "c ", "[a][b][c]");
    split_case("\\p{N}{1,3}", 0, SPLIT_ISOLATED, 0, "x12345y", "[x][123][45][y]");
    split_case("a*", 0, SPLIT_ISOLATED, 0, "baab", "[b][aa][b]"); /* empty matches are skipped */
    split_case(".", 1, SPLIT_REMOVED, 0, "a.b", "[a][b]");        /* a String is a literal */
}

/* --- small tokenizers built in memory ------------------------------------------------------- */
static void add_str(Buf *b, const char *s) { buf_add(b, s, strlen(s)); }

/* A byte-level vocabulary of the printable ASCII letters a-z plus extra entries. */
static char *tiny_json(const char *model_extra, const char *vocab_extra, const char *merges,
                       const char *rest)
{
    Buf b = {0};
    char tmp[64];
    add_str(&b, "{\"model\": {\"type\": \"BPE\", \"vocab\": {");
    for (int c = 'a'; c <= 'y'; c++) { /* no 'z' */
        snprintf(tmp, sizeof tmp, "%s\"%c\": %d", c == 'a' ? "" : ", ", c, c - 'a');
        buf_add(&b, tmp, strlen(tmp));
    }
    buf_add(&b, vocab_extra, strlen(vocab_extra));
    add_str(&b, "}, \"merges\": [");
    buf_add(&b, merges, strlen(merges));
    buf_add(&b, "]", 1);
    buf_add(&b, model_extra, strlen(model_extra));
    add_str(&b, "}, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false}, "
                "\"decoder\": {\"type\": \"ByteLevel\"}");
    buf_add(&b, rest, strlen(rest));
    buf_add(&b, "}", 1);
    return b.p;
}

static MxcTokenizer *tiny(const char *model_extra, const char *vocab_extra, const char *merges,
                          const char *rest, MxcTokError *err)
{
    char *j = tiny_json(model_extra, vocab_extra, merges, rest);
    MxcTokenizer *t = NULL;
    if (mxc_tokenizer_open_json(j, strlen(j), "tiny.json", &t, err) != 0) t = NULL;
    free(j);
    return t;
}

static int enc(MxcTokenizer *t, const char *s, char *out, size_t cap)
{
    int32_t *ids;
    size_t n, k = 0;
    MxcTokError err;
    out[0] = 0;
    if (mxc_tokenizer_encode(t, s, strlen(s), 1, &ids, &n, &err) != 0) return -1;
    for (size_t i = 0; i < n; i++) k += (size_t)snprintf(out + k, cap - k, i ? " %d" : "%d", ids[i]);
    free(ids);
    return 0;
}

static void test_bpe_features(void)
{
    MxcTokError err;
    char out[256];
    /* merges by rank: "ab" (rank 0) before "bc" (rank 1); ties go left */
    MxcTokenizer *t = tiny("", ", \"ab\": 30, \"bc\": 31, \"abc\": 32", "\"b c\", \"a b\", \"ab c\"", "", &err);
    CU_ASSERT_FATAL(t != NULL);
    CU_ASSERT(enc(t, "abc", out, sizeof out) == 0 && strcmp(out, "0 31") == 0);
    CU_ASSERT(enc(t, "abab", out, sizeof out) == 0 && strcmp(out, "30 30") == 0);
    CU_ASSERT(enc(t, "bcbc", out, sizeof out) == 0 && strcmp(out, "31 31") == 0);
    /* no token for 'z' and no unk: dropped, as the reference does */
    CU_ASSERT(enc(t, "azb", out, sizeof out) == 0 && strcmp(out, "0 1") == 0);
    mxc_tokenizer_close(t);
    /* pairs format, and the merged-token chain */
    t = tiny("", ", \"ab\": 30, \"abc\": 32", "[\"a\", \"b\"], [\"ab\", \"c\"]", "", &err);
    CU_ASSERT_FATAL(t != NULL);
    CU_ASSERT(enc(t, "abcab", out, sizeof out) == 0 && strcmp(out, "32 30") == 0);
    mxc_tokenizer_close(t);
    /* unk, fuse_unk */
    t = tiny(", \"unk_token\": \"<unk>\", \"fuse_unk\": true", ", \"<unk>\": 40", "", "", &err);
    CU_ASSERT_FATAL(t != NULL);
    CU_ASSERT(enc(t, "azzzb", out, sizeof out) == 0 && strcmp(out, "0 40 1") == 0);
    CU_ASSERT(mxc_tokenizer_special_id(t, "unk") == 40);
    mxc_tokenizer_close(t);
    t = tiny(", \"unk_token\": \"<unk>\"", ", \"<unk>\": 40", "", "", &err);
    CU_ASSERT_FATAL(t != NULL);
    CU_ASSERT(enc(t, "azzb", out, sizeof out) == 0 && strcmp(out, "0 40 40 1") == 0);
    mxc_tokenizer_close(t);
    /* byte fallback: <0x7A> for 'z' */
    t = tiny(", \"byte_fallback\": true", ", \"<0x7A>\": 41", "", "", &err);
    CU_ASSERT_FATAL(t != NULL);
    CU_ASSERT(enc(t, "azb", out, sizeof out) == 0 && strcmp(out, "0 41 1") == 0);
    mxc_tokenizer_close(t);
    /* ignore_merges: a word in the vocabulary is taken whole */
    t = tiny(", \"ignore_merges\": true", ", \"ab\": 30, \"abc\": 32, \"bc\": 31", "\"b c\"", "", &err);
    CU_ASSERT_FATAL(t != NULL);
    CU_ASSERT(enc(t, "abc", out, sizeof out) == 0 && strcmp(out, "32") == 0);
    CU_ASSERT(enc(t, "bcb", out, sizeof out) == 0 && strcmp(out, "31 1") == 0);
    mxc_tokenizer_close(t);
    /* an added token with rstrip and lstrip, matched before the model */
    t = tiny("", ", \"Ġ\": 50", "",
             ", \"added_tokens\": [{\"id\": 60, \"content\": \"<x>\", \"special\": true, \"lstrip\": true, \"rstrip\": true}]",
             &err);
    CU_ASSERT_FATAL(t != NULL);
    CU_ASSERT(enc(t, "a  <x>  b <x>", out, sizeof out) == 0 && strcmp(out, "0 60 1 60") == 0);
    /* '<' and '>' have no token (and there is no unk): dropped */
    CU_ASSERT(enc(t, "a <y> b", out, sizeof out) == 0 && strcmp(out, "0 50 24 50 1") == 0);
    mxc_tokenizer_close(t);
}

/* --- hostile files ------------------------------------------------------------------------------- */
static void refused(const char *json, const char *want)
{
    MxcTokenizer *t = (MxcTokenizer *)1;
    MxcTokError err;
    int rc = mxc_tokenizer_open_json(json, strlen(json), "bad.json", &t, &err);
    CU_ASSERT(rc == -1 && t == NULL);
    if (rc == 0) { mxc_tokenizer_close(t); fprintf(stderr, "accepted: %s\n", json); return; }
    if (!strstr(err.msg, want)) fprintf(stderr, "message '%s' lacks '%s'\n", err.msg, want);
    CU_ASSERT(strstr(err.msg, want) != NULL);
    CU_ASSERT(strncmp(err.msg, "bad.json", 8) == 0);
}

static void refused_tiny(const char *model_extra, const char *vocab_extra, const char *merges,
                         const char *rest, const char *want)
{
    char *j = tiny_json(model_extra, vocab_extra, merges, rest);
    refused(j, want);
    free(j);
}

static void test_hostile(void)
{
    refused("", "invalid JSON at line 1, column 1");
    refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,", "invalid JSON at line 1");
    refused("[1, 2]", "the top level must be an object");
    refused("{}", "there is no \"model\"");
    refused("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "model type 'WordPiece' is not supported");
    refused("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "model type 'Unigram' is not supported");
    refused("{\"model\": {\"type\": \"BPE\", \"vocab\": []}}", "model.vocab must be an object");
    refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}", "model.merges must be an array");
    refused("{\"truncation\": {\"max_length\": 5}, \"model\": {}}", "truncation is not supported");
    refused_tiny("", "", "\"ab\"", "", "model.merges[0] must be a string of two tokens separated by one space, not 'ab'");
    refused_tiny("", "", "\"a b c\"", "", "model.merges[0] must be a string of two tokens");
    refused_tiny("", "", "\"a z\"", "", "model.merges[0] ('a' 'z'): 'z' is not in the vocabulary");
    refused_tiny("", "", "\"a b\"", "", "model.merges[0] ('a' 'b'): the merged token 'ab' is not in the vocabulary");
    refused_tiny("", ", \"ab\": 30", "\"a b\", \"a b\"", "", "model.merges[1] ('a' 'b') repeats an earlier merge");
    refused_tiny("", ", \"ab\": 30", "\"a b\", [\"a\", \"b\"]", "", "model.merges[1] must be a string");
    refused_tiny("", ", \"ab\": 30", "[\"a\", \"b\"], \"a b\"", "", "model.merges[1] must be a pair of strings");
    refused_tiny("", ", \"zz\": 3", "", "", "id 3 is given to both 'd' and 'zz'");
    refused_tiny("", ", \"a\": 30", "", "", "token 'a' appears twice");
    refused_tiny("", ", \"q2\": -4", "", "", "must be an integer id");
    refused_tiny("", ", \"q2\": 1.5", "", "", "must be an integer id");
    refused_tiny(", \"dropout\": 0.1", "", "", "", "model.dropout is not supported");
    refused_tiny(", \"unk_token\": \"<unk>\"", "", "", "", "model.unk_token '<unk>' is not in the vocabulary");
    refused_tiny(", \"continuing_subword_prefix\": \"##\"", "", "", "", "continuing_subword_prefix (\"##\") is not supported");
    refused_tiny(", \"byte_fallback\": 1", "", "", "", "model.byte_fallback must be true or false");
    refused_tiny("", "", "", ", \"normalizer\": {\"type\": \"BertNormalizer\"}", "normalizer type 'BertNormalizer' is not supported");
    refused_tiny("", "", "", ", \"normalizer\": {\"type\": \"Precompiled\", \"precompiled_charsmap\": \"\"}", "normalizer type 'Precompiled' is not supported");
    refused_tiny("", "", "", ", \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, {\"type\": \"Nope\"}]}",
                 "normalizer.normalizers[1]: normalizer type 'Nope' is not supported");
    refused_tiny("", "", "", ", \"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"Regex\": \"(\"}, \"content\": \"\"}",
                 "normalizer.pattern.Regex: the regex does not compile");
    refused_tiny("", "", "", ", \"normalizer\": \"NFC\"", "normalizer must be an object");
    refused_tiny("", "", "", ", \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"special_tokens\": {}}",
                 "names special token '<s>', which special_tokens does not define");
    refused_tiny("", "", "", ", \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [999], \"tokens\": [\"<s>\"]}}}",
                 "special token '<s>' has id 999, which is not in the vocabulary");
    refused_tiny("", "", "", ", \"post_processor\": {\"type\": \"BertProcessing2\"}", "post-processor type 'BertProcessing2' is not supported");
    refused_tiny("", "", "", ", \"added_tokens\": [{\"id\": 3, \"content\": \"<x>\"}]", "added_tokens[0] ('<x>') has id 3, already the id of 'd'");
    refused_tiny("", "", "", ", \"added_tokens\": [{\"id\": 30, \"content\": \"<x>\", \"single_word\": true}]", "added_tokens[0] ('<x>'): single_word is not supported");
    refused_tiny("", "", "", ", \"added_tokens\": [{\"id\": 30, \"content\": \"\"}]", "added_tokens[0] has an empty content");
    /* the pre-tokenizer and decoder: only byte-level */
    const char *m = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"decoder\": {\"type\": \"ByteLevel\"}, ";
    char j[1024];
    snprintf(j, sizeof j, "%s\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"_\"}}", m);
    refused(j, "pre_tokenizer: pre-tokenizer type 'Metaspace' is not supported");
    snprintf(j, sizeof j, "%s\"pre_tokenizer\": null}", m);
    refused(j, "pre_tokenizer is null");
    snprintf(j, sizeof j, "%s\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": \"Isolated\"}}", m);
    refused(j, "there is no ByteLevel step last");
    snprintf(j, sizeof j, "%s\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"ByteLevel\"}, {\"type\": \"ByteLevel\"}]}}", m);
    refused(j, "a ByteLevel step before the last is not supported");
    snprintf(j, sizeof j, "%s\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"[\"}, \"behavior\": \"Isolated\"}, {\"type\": \"ByteLevel\"}]}}", m);
    refused(j, "pre_tokenizer.pretokenizers[0].pattern.Regex: the regex does not compile");
    snprintf(j, sizeof j, "%s\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": \"Sideways\"}, {\"type\": \"ByteLevel\"}]}}", m);
    refused(j, "Split behavior 'Sideways' is unknown");
    snprintf(j, sizeof j, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": \"Metaspace\"}}");
    refused(j, "decoder type 'Metaspace' is not supported");
    snprintf(j, sizeof j, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}");
    refused(j, "decoder is null");
    /* a truncated real file */
    char path[1024];
    size_t len;
    snprintf(path, sizeof path, "%s/tokenizer/gpt2/tokenizer.json", test_srcdir());
    char *full = test_read_file(path, &len);
    CU_ASSERT_FATAL(full != NULL);
    MxcTokenizer *t;
    MxcTokError err;
    CU_ASSERT(mxc_tokenizer_open_json(full, len / 2, "half.json", &t, &err) == -1);
    CU_ASSERT(strstr(err.msg, "half.json: invalid JSON at line 1, column") != NULL);
    free(full);
    CU_ASSERT(mxc_tokenizer_open("/nonexistent/tok.json", &t, &err) == -1);
    CU_ASSERT(strstr(err.msg, "/nonexistent/tok.json: No such file") != NULL);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite corpus = CU_add_suite("corpus", NULL, NULL);
    TEST_ADD(corpus, test_corpus_gpt2);
    TEST_ADD(corpus, test_corpus_neox);
    TEST_ADD(corpus, test_corpus_split);
    TEST_ADD(corpus, test_corpus_normalized);
    TEST_ADD(corpus, test_corpus_decomposed);
    TEST_ADD(corpus, test_corpus_bytes);
    CU_pSuite api = CU_add_suite("api", NULL, NULL);
    TEST_ADD(api, test_neox_basics);
    TEST_ADD(api, test_specials_by_template);
    TEST_ADD(api, test_config_names);
    TEST_ADD(api, test_decode_bytes);
    CU_pSuite parts = CU_add_suite("parts", NULL, NULL);
    TEST_ADD(parts, test_split_behaviors);
    TEST_ADD(parts, test_bpe_features);
    CU_pSuite hostile = CU_add_suite("hostile", NULL, NULL);
    TEST_ADD(hostile, test_hostile);
    return test_run_all();
}
