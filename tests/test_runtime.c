/* test_runtime.c - CUnit tests of the runtime: JSON parser, safetensors reader and writer,
 * weight binding, states and the chunked forward/step driver.
 *
 * Files are written into a fresh temporary directory (removed at the end). The golden Mamba
 * checkpoint is found under $MXC_TEST_SRCDIR (default "tests"). Hostile files are built byte by
 * byte; each must be refused with a message that names the file and the offending tensor. The
 * model descriptors here are hand-made, with a fake kernel that records its calls. */
#include "runtime/bind.h"
#include "runtime/checkpoint.h"
#include "runtime/error.h"
#include "runtime/json.h"
#include "runtime/mxrt.h"
#include "runtime/safetensors.h"
#include "tests/testutil.h"

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- helpers ------------------------------------------------------------------------------- */

static char tmp_dir[256];

static const char *tmp_path(const char *name)
{
    static char buf[8][512];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, 512, "%s/%s", tmp_dir, name);
    return p;
}

static const char *src_path(const char *rel)
{
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/%s", test_srcdir(), rel);
    return buf;
}

/* Assert that rc is a failure whose message contains every given fragment (NULL-terminated). */
static void check_error_at(int rc, int line, const char *first, ...)
{
    char what[600];
    const char *msg = mxrt_last_error();
    snprintf(what, sizeof what, "call failed (rc=%d, message: %s)", rc, msg);
    CU_assertImplementation(rc != 0, (unsigned)line, what, __FILE__, "", CU_FALSE);
    va_list ap;
    va_start(ap, first);
    for (const char *frag = first; frag; frag = va_arg(ap, const char *)) {
        snprintf(what, sizeof what, "message \"%s\" contains \"%s\"", msg, frag);
        CU_assertImplementation(strstr(msg, frag) != NULL, (unsigned)line, what, __FILE__, "",
                                CU_FALSE);
    }
    va_end(ap);
}
#define CHECK_ERROR(rc, ...) check_error_at((rc), __LINE__, __VA_ARGS__, (const char *)NULL)

static void check_ok_at(int rc, int line)
{
    char what[600];
    snprintf(what, sizeof what, "call succeeded (message: %s)", mxrt_last_error());
    CU_assertImplementation(rc == 0, (unsigned)line, what, __FILE__, "", CU_FALSE);
}
#define CHECK_OK(rc) check_ok_at((rc), __LINE__)

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    if (len)
        CU_ASSERT(fwrite(data, 1, len, f) == len);
    fclose(f);
}

/* A safetensors file from a header text and `dlen` bytes of data (pattern bytes if NULL). */
static const char *write_st_raw(const char *name, const char *header, const void *data,
                                size_t dlen)
{
    size_t hlen = strlen(header);
    unsigned char *buf = malloc(8 + hlen + dlen + 1);
    CU_ASSERT_FATAL(buf != NULL);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, header, hlen);
    for (size_t i = 0; i < dlen; i++)
        buf[8 + hlen + i] = data ? ((const unsigned char *)data)[i] : (unsigned char)i;
    const char *path = tmp_path(name);
    write_bytes(path, buf, 8 + hlen + dlen);
    free(buf);
    return path;
}

/* Open a hostile file and check that it is refused with all the given fragments. */
#define CHECK_REFUSED(path, ...)                                                              \
    do {                                                                                      \
        StFile *f_ = (StFile *)1;                                                             \
        int rc_ = st_open((path), &f_);                                                       \
        CU_ASSERT(f_ == NULL);                                                                \
        check_error_at(rc_, __LINE__, (path), __VA_ARGS__, (const char *)NULL);              \
        if (rc_ == 0)                                                                         \
            st_close(f_);                                                                     \
    } while (0)

/* --- JSON ---------------------------------------------------------------------------------- */

static JsonDoc *parse_ok(const char *text)
{
    JsonDoc *doc = NULL;
    JsonError err;
    int rc = json_parse(text, strlen(text), NULL, &doc, &err);
    if (rc != 0)
        fprintf(stderr, "\nunexpected JSON error for %s: %s at %zu\n", text, err.msg,
                err.offset);
    CU_ASSERT(rc == 0);
    return doc;
}

static void test_json_valid(void)
{
    const char *text = " {\"a\": [1, -2, 3.5, true, false, null, \"x\"], \"b\": {}, "
                       "\"c\": [[], [0]], \"a\": 7 } ";
    JsonDoc *doc = parse_ok(text);
    CU_ASSERT_FATAL(doc != NULL);
    const JsonValue *r = json_root(doc);
    CU_ASSERT(r->kind == JSON_OBJECT);
    CU_ASSERT(r->offset == 1);
    CU_ASSERT(r->u.c.count == 4);
    const JsonValue *a = json_get(r, "a");
    CU_ASSERT_FATAL(a != NULL);
    CU_ASSERT(a->kind == JSON_ARRAY && a->u.c.count == 7);
    CU_ASSERT(a->offset == 7);
    CU_ASSERT(a->u.c.items[0].is_int && a->u.c.items[0].u.n.i == 1);
    CU_ASSERT(a->u.c.items[1].is_int && a->u.c.items[1].u.n.i == -2);
    CU_ASSERT(!a->u.c.items[2].is_int && a->u.c.items[2].u.n.num == 3.5);
    CU_ASSERT(a->u.c.items[3].kind == JSON_TRUE);
    CU_ASSERT(a->u.c.items[4].kind == JSON_FALSE);
    CU_ASSERT(a->u.c.items[5].kind == JSON_NULL);
    CU_ASSERT(a->u.c.items[6].kind == JSON_STRING && strcmp(a->u.c.items[6].u.s.str, "x") == 0);
    CU_ASSERT(a->u.c.items[6].offset == (size_t)(strstr(text, "\"x\"") - text));
    const JsonValue *b = json_get(r, "b");
    CU_ASSERT(b && b->kind == JSON_OBJECT && b->u.c.count == 0 && b->u.c.items == NULL);
    const JsonValue *c = json_get(r, "c");
    CU_ASSERT_FATAL(c && c->u.c.count == 2);
    CU_ASSERT(c->u.c.items[0].kind == JSON_ARRAY && c->u.c.items[0].u.c.count == 0);
    CU_ASSERT(c->u.c.items[1].u.c.count == 1 && c->u.c.items[1].u.c.items[0].u.n.i == 0);
    CU_ASSERT(r->u.c.items[3].key_len == 1 && r->u.c.items[3].u.n.i == 7); /* duplicate kept */
    CU_ASSERT(json_get(r, "zz") == NULL);
    CU_ASSERT(json_get(a, "a") == NULL);
    json_free(doc);

    /* Scalars at top level, and a buffer that is not NUL-terminated. */
    doc = parse_ok("\"top\"");
    CU_ASSERT(doc && json_root(doc)->kind == JSON_STRING);
    json_free(doc);
    const char slice[] = "[1,2]xyz";
    JsonError err;
    CU_ASSERT(json_parse(slice, 5, NULL, &doc, &err) == 0);
    CU_ASSERT(doc && json_root(doc)->u.c.count == 2);
    json_free(doc);
    CU_ASSERT(json_parse("123", 2, NULL, &doc, &err) == 0);
    CU_ASSERT(doc && json_root(doc)->u.n.i == 12);
    json_free(doc);
    json_free(NULL);
}

static void test_json_numbers(void)
{
    static const struct {
        const char *text;
        int is_int, overflow;
        int64_t i;
        double num;
    } cases[] = {
        {"0", 1, 0, 0, 0.0},
        {"-0", 1, 0, 0, -0.0},
        {"9223372036854775807", 1, 0, INT64_MAX, 9223372036854775807.0},
        {"-9223372036854775808", 1, 0, INT64_MIN, -9223372036854775808.0},
        {"9223372036854775808", 0, 1, 0, 9223372036854775808.0},
        {"-9223372036854775809", 0, 1, 0, -9223372036854775809.0},
        {"123456789012345678901234567890", 0, 1, 0, 1.2345678901234568e29},
        {"18446744073709551616", 0, 1, 0, 18446744073709551616.0},
        {"1e2", 0, 0, 0, 100.0},
        {"1E+2", 0, 0, 0, 100.0},
        {"2.5e-3", 0, 0, 0, 0.0025},
        {"0.1", 0, 0, 0, 0.1},
        {"-0.000001", 0, 0, 0, -1e-6},
        {"1.5e308", 0, 0, 0, 1.5e308},
        {"2.5e-310", 0, 0, 0, 2.5e-310},
        {"1e400", 0, 0, 0, INFINITY},
        {"1e-400", 0, 0, 0, 0.0},
        {"1e99999999999999999999", 0, 0, 0, INFINITY},
        {"0.0000000000000000000000000000001e31", 0, 0, 0, 1.0},
        {"4294967296", 1, 0, 4294967296LL, 4294967296.0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        JsonDoc *doc = parse_ok(cases[k].text);
        CU_ASSERT_FATAL(doc != NULL);
        const JsonValue *v = json_root(doc);
        CU_ASSERT(v->kind == JSON_NUMBER);
        CU_ASSERT(v->is_int == cases[k].is_int);
        CU_ASSERT(v->int_overflow == cases[k].overflow);
        if (cases[k].is_int)
            CU_ASSERT(v->u.n.i == cases[k].i);
        double want = cases[k].num, got = v->u.n.num;
        if (isinf(want)) {
            CU_ASSERT(isinf(got) && (got > 0) == (want > 0));
        } else {
            /* Exact within the fast path; a few ulp beyond it. */
            CU_ASSERT(fabs(got - want) <= 1e-13 * fabs(want));
        }
        json_free(doc);
    }
}

static void test_json_strings(void)
{
    JsonDoc *doc = parse_ok("\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t A\\u0041 e\\u00e9 \\u20ac "
                            "\\ud83d\\ude00 \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    CU_ASSERT_FATAL(doc != NULL);
    const JsonValue *v = json_root(doc);
    const char want[] = "q\" b\\ s/ \b\f\n\r\t AA e\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 "
                        "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    CU_ASSERT(v->u.s.len == sizeof want - 1);
    CU_ASSERT(memcmp(v->u.s.str, want, sizeof want) == 0);
    json_free(doc);

    doc = parse_ok("{\"a\\u0000b\": \"x\\u0000\"}");
    CU_ASSERT_FATAL(doc != NULL);
    v = &json_root(doc)->u.c.items[0];
    CU_ASSERT(v->key_len == 3 && memcmp(v->key, "a\0b", 3) == 0);
    CU_ASSERT(v->u.s.len == 2 && v->u.s.str[1] == '\0' && v->u.s.str[2] == '\0');
    CU_ASSERT(json_get(json_root(doc), "a") == NULL);
    json_free(doc);
}

static void test_json_malformed(void)
{
    static const struct {
        const char *text;
        size_t offset;
        const char *fragment;
    } cases[] = {
        {"", 0, "end of input"},
        {"   ", 3, "end of input"},
        {"{", 1, "end of input in the object"},
        {"[1,", 3, "end of input"},
        {"[1", 2, "end of input in the array"},
        {"[1,]", 2, "trailing comma"},
        {"{\"a\":1,}", 6, "trailing comma"},
        {"{\"a\" 1}", 5, "expected ':'"},
        {"{\"a\":1 \"b\":2}", 7, "expected ',' or '}'"},
        {"[1 2]", 3, "expected ',' or ']'"},
        {"{1:2}", 1, "expected a string key"},
        {"01", 0, "leading zeros"},
        {"-01", 1, "leading zeros"},
        {"1.", 2, "digit after '.'"},
        {"1.e5", 2, "digit after '.'"},
        {"-", 1, "expected a digit"},
        {"-a", 1, "expected a digit"},
        {"1e", 2, "exponent"},
        {"1e+", 3, "exponent"},
        {"+1", 0, "unexpected '+'"},
        {".5", 0, "unexpected '.'"},
        {"tru", 0, "invalid literal"},
        {"nul", 0, "invalid literal"},
        {"True", 0, "unexpected 'T'"},
        {"NaN", 0, "unexpected 'N'"},
        {"Infinity", 0, "unexpected 'I'"},
        {"\"abc", 0, "unterminated string"},
        {"\"abc\\", 0, "unterminated string"},
        {"\"a\x01\"", 2, "control character"},
        {"\"a\nb\"", 2, "control character"},
        {"\"\\x\"", 1, "invalid escape"},
        {"\"\\u12\"", 3, "hex"},
        {"\"\\u12g4\"", 5, "hex digit"},
        {"\"\\ud800\"", 1, "high surrogate"},
        {"\"\\ud800\\u0041\"", 1, "high surrogate"},
        {"\"\\udc00\"", 1, "low surrogate"},
        {"\"\xff\"", 1, "UTF-8"},
        {"\"\xc0\xaf\"", 1, "UTF-8"},
        {"\"\xe0\x80\xaf\"", 1, "UTF-8"},
        {"\"\xed\xa0\x80\"", 1, "UTF-8"},
        {"\"\xf4\x90\x80\x80\"", 1, "UTF-8"},
        {"\"\xe2\x82\"", 1, "UTF-8"},
        {"\"\x80\"", 1, "UTF-8"},
        {"[1] x", 4, "after the end"},
        {"{} {}", 3, "after the end"},
        {"/*c*/1", 0, "unexpected '/'"},
        {"\xef\xbb\xbf{}", 0, "byte 0xef"},
        {"[\x00]", 1, "byte 0x00"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        JsonDoc *doc = (JsonDoc *)1;
        JsonError err;
        size_t len = strlen(cases[k].text);
        if (strcmp(cases[k].text, "[") == 0 && cases[k].offset == 1)
            len = 3; /* the embedded-NUL case: "[\0]" */
        int rc = json_parse(cases[k].text, len, NULL, &doc, &err);
        CU_ASSERT(rc != 0);
        CU_ASSERT(doc == NULL);
        if (rc == 0) {
            fprintf(stderr, "\naccepted malformed JSON case %zu: %s\n", k, cases[k].text);
            json_free(doc);
            continue;
        }
        if (err.offset != cases[k].offset || !strstr(err.msg, cases[k].fragment))
            fprintf(stderr, "\ncase %zu (%s): got '%s' at %zu, want '%s' at %zu\n", k,
                    cases[k].text, err.msg, err.offset, cases[k].fragment, cases[k].offset);
        CU_ASSERT(err.offset == cases[k].offset);
        CU_ASSERT(strstr(err.msg, cases[k].fragment) != NULL);
    }
}

static void test_json_limits(void)
{
    enum { DEEP = 200000 };
    char *text = malloc(DEEP * 2);
    CU_ASSERT_FATAL(text != NULL);
    for (int i = 0; i < DEEP; i++) {
        text[i] = '[';
        text[DEEP * 2 - 1 - i] = ']';
    }
    JsonDoc *doc;
    JsonError err;
    CU_ASSERT(json_parse(text, DEEP * 2, NULL, &doc, &err) != 0);
    CU_ASSERT(strstr(err.msg, "nesting deeper than 64") != NULL);
    CU_ASSERT(err.offset == JSON_DEFAULT_MAX_DEPTH);

    /* Exactly the limit is fine; one more is not. */
    int depth = JSON_DEFAULT_MAX_DEPTH;
    CU_ASSERT(json_parse(text + DEEP - depth, 2 * (size_t)depth, NULL, &doc, &err) == 0);
    json_free(doc);
    depth++;
    CU_ASSERT(json_parse(text + DEEP - depth, 2 * (size_t)depth, NULL, &doc, &err) != 0);

    JsonLimits lim = {.max_depth = 2, .max_values = 0};
    CU_ASSERT(json_parse("[[]]", 4, &lim, &doc, &err) == 0);
    json_free(doc);
    CU_ASSERT(json_parse("[[[]]]", 6, &lim, &doc, &err) != 0);
    CU_ASSERT(err.offset == 2);

    JsonLimits few = {.max_depth = 0, .max_values = 4};
    CU_ASSERT(json_parse("[1,2,3]", 7, &few, &doc, &err) == 0);
    json_free(doc);
    CU_ASSERT(json_parse("[1,2,3,4]", 9, &few, &doc, &err) != 0);
    CU_ASSERT(strstr(err.msg, "more than 4 values") != NULL);
    CU_ASSERT(err.offset == 7);

    /* Many siblings: no recursion, one flat block. */
    size_t n = 100000;
    char *wide = malloc(n * 2 + 2);
    CU_ASSERT_FATAL(wide != NULL);
    wide[0] = '[';
    for (size_t i = 0; i < n; i++) {
        wide[1 + 2 * i] = '7';
        wide[2 + 2 * i] = i + 1 < n ? ',' : ']';
    }
    CU_ASSERT(json_parse(wide, n * 2 + 1, NULL, &doc, &err) == 0);
    CU_ASSERT(doc && json_root(doc)->u.c.count == n && json_root(doc)->u.c.items[n - 1].u.n.i == 7);
    json_free(doc);
    CU_ASSERT(json_parse(NULL, 0, NULL, &doc, &err) != 0);
    CU_ASSERT(json_parse("1", 1, NULL, NULL, &err) != 0);
    free(wide);
    free(text);
}

/* --- errors -------------------------------------------------------------------------------- */

static void *thread_last_error(void *arg)
{
    (void)arg;
    return (void *)(uintptr_t)(mxrt_last_error()[0] == '\0');
}

static void test_error_basics(void)
{
    mxrt_clear_error();
    CU_ASSERT(mxrt_last_error() != NULL && mxrt_last_error()[0] == '\0');
    CU_ASSERT(mxrt_set_error("x %d", 5) == -1);
    CU_ASSERT_STRING_EQUAL(mxrt_last_error(), "x 5");

    /* Per thread: a new thread starts with no message. */
    pthread_t th;
    void *clean = NULL;
    CU_ASSERT_FATAL(pthread_create(&th, NULL, thread_last_error, NULL) == 0);
    pthread_join(th, &clean);
    CU_ASSERT(clean == (void *)1);
    CU_ASSERT_STRING_EQUAL(mxrt_last_error(), "x 5");

    /* Long messages are cut to the buffer, never in the middle of a UTF-8 character. */
    char longs[2000];
    for (int i = 0; i < 1998; i += 2) {
        longs[i] = (char)0xC3;
        longs[i + 1] = (char)0xA9;
    }
    longs[1998] = '\0';
    mxrt_set_error("a%s", longs); /* cut after a whole character */
    CU_ASSERT(strlen(mxrt_last_error()) == MXRT_ERROR_CAP - 1);
    mxrt_set_error("ab%s", longs); /* cut inside one: the partial character goes */
    size_t n = strlen(mxrt_last_error());
    CU_ASSERT(n == MXRT_ERROR_CAP - 2);
    CU_ASSERT(((unsigned char)mxrt_last_error()[n - 1]) == 0xA9);

    char q[MXRT_QUOTE_CAP];
    CU_ASSERT_STRING_EQUAL(mxrt_quote(q, sizeof q, "a'b\\c\n"), "a\\'b\\\\c\\x0a");
    mxrt_quote(q, sizeof q, longs);
    CU_ASSERT(strlen(q) < MXRT_QUOTE_CAP);
    CU_ASSERT(strcmp(q + strlen(q) - 3, "...") == 0);
    CU_ASSERT((unsigned char)q[strlen(q) - 4] == 0xA9);
    CU_ASSERT_STRING_EQUAL(mxrt_quote(q, sizeof q, NULL), "(null)");

    char shp[MXRT_SHAPE_CAP];
    int64_t dims[8] = {256, 64, INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX,
                       INT64_MAX};
    CU_ASSERT_STRING_EQUAL(mxrt_format_shape(shp, sizeof shp, dims, 2), "[256, 64]");
    CU_ASSERT_STRING_EQUAL(mxrt_format_shape(shp, sizeof shp, dims, 0), "[]");
    mxrt_format_shape(shp, sizeof shp, dims, 8);
    CU_ASSERT(shp[strlen(shp) - 1] == ']');
    char small[10];
    CU_ASSERT_STRING_EQUAL(mxrt_format_shape(small, sizeof small, dims, 2), "[256, 64]");
    mxrt_format_shape(small, 8, dims, 2);
    CU_ASSERT(strlen(small) == 7 && small[6] == ']');
    mxrt_clear_error();
}

/* --- safetensors --------------------------------------------------------------------------- */

static void test_st_golden(void)
{
    StFile *f = NULL;
    const char *path = src_path("golden/mamba_tiny/model.safetensors");
    CHECK_OK(st_open(path, &f));
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT(st_count(f) == 23);
    CU_ASSERT_STRING_EQUAL(st_label(f), path);
    const StTensor *t = st_at(f, 0);
    CU_ASSERT_FATAL(t != NULL);
    CU_ASSERT_STRING_EQUAL(t->name, "backbone.embedding.weight");
    CU_ASSERT(t->rank == 2 && t->shape[0] == 128 && t->shape[1] == 64);
    CU_ASSERT(st_at(f, 23) == NULL && st_at(f, -1) == NULL);

    t = st_find(f, "backbone.layers.0.mixer.A_log");
    CU_ASSERT_FATAL(t != NULL);
    CU_ASSERT(t->dtype == ST_F32 && t->rank == 2 && t->shape[0] == 128 && t->shape[1] == 16);
    CU_ASSERT(t->nbytes == 128 * 16 * 4 && st_numel(t) == 128 * 16);
    CU_ASSERT(st_is_f32_in_place(t));
    t = st_find(f, "backbone.layers.1.mixer.conv1d.weight");
    CU_ASSERT(t && t->rank == 3 && t->shape[0] == 128 && t->shape[1] == 1 && t->shape[2] == 4);
    t = st_find(f, "lm_head.weight");
    CU_ASSERT(t && t->rank == 2 && t->shape[0] == 128 && t->shape[1] == 64);
    CU_ASSERT(st_find(f, "backbone.layers.2.norm.weight") == NULL);
    CU_ASSERT(st_find(f, "__metadata__") == NULL);
    CU_ASSERT(st_find(f, NULL) == NULL);
    CU_ASSERT_STRING_EQUAL(st_metadata(f, "format"), "pt");
    CU_ASSERT_STRING_EQUAL(st_metadata(f, "case"), "mamba_tiny");
    CU_ASSERT(st_metadata(f, "nope") == NULL);

    /* Every tensor is findable by its own name, and reads back the same as floats. */
    for (int i = 0; i < st_count(f); i++) {
        const StTensor *a = st_at(f, i);
        CU_ASSERT(st_find(f, a->name) == a);
        float *copy;
        CU_ASSERT_FATAL(st_read_f32(a, &copy) == 0);
        CU_ASSERT(memcmp(copy, a->data, a->nbytes) == 0);
        free(copy);
    }
    st_close(f);
    st_close(NULL);
    CU_ASSERT(st_count(NULL) == 0 && st_find(NULL, "x") == NULL && st_metadata(NULL, "x") == NULL);
}

static void test_st_write_read(void)
{
    float a[6] = {1, 2, 3, 4, 5, 6.5f};
    int32_t b[4] = {-1, 0, 7, INT32_MAX};
    float scalar = 42;
    int64_t sa[2] = {2, 3}, sb[1] = {4}, se[2] = {0, 5};
    StWriteTensor w[] = {
        {"a", ST_F32, 2, sa, a},
        {"b.ids", ST_I32, 1, sb, b},
        {"s", ST_F32, 0, NULL, &scalar},
        {"empty", ST_F32, 2, se, NULL},
        {"we\"ird\\name\n\xc3\xa9", ST_F32, 1, sb, a},
    };
    const char *meta[] = {"format", "pt", "note", "a \"quoted\" value", NULL};
    const char *path = tmp_path("rw.safetensors");
    CHECK_OK(st_write(path, w, 5, meta));

    StFile *f;
    CHECK_OK(st_open(path, &f));
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT(st_count(f) == 5);
    const StTensor *t = st_find(f, "a");
    CU_ASSERT_FATAL(t != NULL);
    CU_ASSERT(t->dtype == ST_F32 && t->rank == 2 && t->shape[1] == 3);
    CU_ASSERT(memcmp(t->data, a, sizeof a) == 0);
    CU_ASSERT(((uintptr_t)t->data & 7) == 0); /* the header is padded to 8 bytes */
    t = st_find(f, "b.ids");
    CU_ASSERT(t && t->dtype == ST_I32 && memcmp(t->data, b, sizeof b) == 0);
    t = st_find(f, "s");
    CU_ASSERT(t && t->rank == 0 && t->nbytes == 4 && st_numel(t) == 1);
    t = st_find(f, "empty");
    CU_ASSERT(t && t->nbytes == 0 && t->rank == 2 && t->shape[0] == 0 && t->shape[1] == 5);
    t = st_find(f, "we\"ird\\name\n\xc3\xa9");
    CU_ASSERT(t && memcmp(t->data, a, 16) == 0);
    CU_ASSERT_STRING_EQUAL(st_metadata(f, "note"), "a \"quoted\" value");
    st_close(f);

    /* An empty file list is a valid file too. */
    CHECK_OK(st_write(path, NULL, 0, NULL));
    CHECK_OK(st_open(path, &f));
    CU_ASSERT(st_count(f) == 0 && st_find(f, "a") == NULL);
    st_close(f);

    /* The writer refuses what it cannot represent. */
    StWriteTensor dup[] = {{"x", ST_F32, 1, sb, a}, {"x", ST_F32, 1, sb, a}};
    CHECK_ERROR(st_write(path, dup, 2, NULL), "'x' given twice");
    StWriteTensor reserved = {"__metadata__", ST_F32, 1, sb, a};
    CHECK_ERROR(st_write(path, &reserved, 1, NULL), "reserved");
    int64_t neg[1] = {-1};
    StWriteTensor negative = {"n", ST_F32, 1, neg, a};
    CHECK_ERROR(st_write(path, &negative, 1, NULL), "negative");
    StWriteTensor nodata = {"n", ST_F32, 1, sb, NULL};
    CHECK_ERROR(st_write(path, &nodata, 1, NULL), "NULL data");
    const char *badmeta[] = {"k", NULL, NULL};
    CHECK_ERROR(st_write(path, w, 1, badmeta), "metadata key without a value");
    CHECK_ERROR(st_write(NULL, w, 1, NULL), "NULL path");
    CHECK_ERROR(st_write(tmp_path("no/such/dir.safetensors"), w, 1, NULL), "cannot create");
}

/* Hostile headers: each file (a header text and `data` zero bytes after it) must be refused
 * with a message holding the file's path and every fragment in `want`. */
typedef struct HostileHeader {
    const char *file;
    size_t data;
    const char *header;
    const char *want[4];
} HostileHeader;

static const HostileHeader hostile_headers[] = {
    {"notjson.safetensors", 0,
     "{not json}",
     {"header is not valid JSON", "header byte 1"}},
    {"zerolen.safetensors", 0,
     "",
     {"not valid JSON", "end of input"}},
    {"array.safetensors", 0,
     "[1, 2]",
     {"header is a JSON array, expected an object"}},
    {"deep.safetensors", 0,
     "{\"a\": [[[[[[[[[[1]]]]]]]]]]}",
     {"nesting deeper"}},
    {"range.safetensors", 3000,
     "{\"backbone.layers.0.mixer.A_log\": {\"dtype\": \"F32\", \"shape\": [997],"
     " \"data_offsets\": [10, 4000]}}",
     {"tensor 'backbone.layers.0.mixer.A_log': data_offsets [10, 4000] run past "
      "the end of the file (3000 bytes of data)"}},
    /* Truncated: a valid header whose data got cut short. */
    {"trunc.safetensors", 10,
     "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}",
     {"tensor 'w'", "run past the end of the file (10 bytes of data)"}},
    {"reversed.safetensors", 16,
     "{\"w\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [8, 4]}}",
     {"tensor 'w'", "end before they begin"}},
    {"overlap.safetensors", 16,
     "{\"first\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
     " \"empty\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]},"
     " \"second\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
     {"tensors 'first'", "'second'", "overlap"}},
    {"overlap2.safetensors", 32,
     "{\"big\": {\"dtype\": \"U8\", \"shape\": [32], \"data_offsets\": [0, 32]}, \"a\":"
     " {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [4, 8]}, \"b\": {\"dtype\":"
     " \"U8\", \"shape\": [4], \"data_offsets\": [16, 20]}}",
     {"'big'", "'a'", "overlap"}},
    {"size.safetensors", 16,
     "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 12]}}",
     {"tensor 'w': shape [2, 2] of F32 needs 16 bytes but data_offsets [0, 12] hold 12"}},
    {"size16.safetensors", 8,
     "{\"h\": {\"dtype\": \"BF16\", \"shape\": [3], \"data_offsets\": [0, 8]}}",
     {"tensor 'h'", "needs 6 bytes"}},
    {"overflow.safetensors", 16,
     "{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 16],"
     " \"data_offsets\": [0, 16]}}",
     {"tensor 'w'", "too large"}},
    {"overflow2.safetensors", 16,
     "{\"w\": {\"dtype\": \"F64\", \"shape\": [2305843009213693952], \"data_offsets\":"
     " [0, 0]}}",
     {"tensor 'w'", "too large"}},
    {"bigint.safetensors", 16,
     "{\"w\": {\"dtype\": \"F32\", \"shape\": [99999999999999999999], \"data_offsets\":"
     " [0, 16]}}",
     {"tensor 'w'", "shape entry 0 is not a non-negative"}},
    {"dup.safetensors", 2,
     "{\"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}, \"w\":"
     " {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1, 2]}}",
     {"tensor 'w' appears twice"}},
    {"dtype.safetensors", 2,
     "{\"w\": {\"dtype\": \"Q4_K\", \"shape\": [1], \"data_offsets\": [0, 1]}}",
     {"tensor 'w': unknown dtype 'Q4_K'"}},
    {"dtype4.safetensors", 2,
     "{\"w\": {\"dtype\": \"F4\", \"shape\": [2], \"data_offsets\": [0, 1]}}",
     {"unknown dtype 'F4'"}},
    {"dtypenum.safetensors", 2,
     "{\"w\": {\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 1]}}",
     {"tensor 'w'", "\"dtype\" is a JSON number"}},
    {"missing.safetensors", 2,
     "{\"w\": {\"dtype\": \"U8\", \"shape\": [1]}}",
     {"tensor 'w': missing \"data_offsets\""}},
    {"twice.safetensors", 2,
     "{\"w\": {\"dtype\": \"U8\", \"dtype\": \"U8\", \"shape\": [1], \"data_offsets\":"
     " [0, 1]}}",
     {"tensor 'w': \"dtype\" appears twice"}},
    {"three.safetensors", 2,
     "{\"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1, 2]}}",
     {"tensor 'w'", "two integers"}},
    {"negoff.safetensors", 2,
     "{\"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [-1, 0]}}",
     {"tensor 'w'", "data_offsets entry 0"}},
    {"fracoff.safetensors", 2,
     "{\"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1.0]}}",
     {"tensor 'w'", "data_offsets entry 1"}},
    {"negdim.safetensors", 2,
     "{\"w\": {\"dtype\": \"U8\", \"shape\": [-1], \"data_offsets\": [0, 1]}}",
     {"tensor 'w'", "shape entry 0"}},
    {"fracdim.safetensors", 2,
     "{\"w\": {\"dtype\": \"U8\", \"shape\": [1, 2.5], \"data_offsets\": [0, 1]}}",
     {"tensor 'w'", "shape entry 1"}},
    {"shapeobj.safetensors", 2,
     "{\"w\": {\"dtype\": \"U8\", \"shape\": {}, \"data_offsets\": [0, 1]}}",
     {"tensor 'w'", "\"shape\" is a JSON object"}},
    {"rank.safetensors", 2,
     "{\"w\": {\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0,"
     " 1]}}",
     {"tensor 'w'", "rank 9"}},
    {"entry.safetensors", 2,
     "{\"w\": [1, 2]}",
     {"tensor 'w': entry is a JSON array"}},
    {"nul.safetensors", 2,
     "{\"a\\u0000b\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}}",
     {"NUL character"}},
    {"meta.safetensors", 0,
     "{\"__metadata__\": {\"k\": 1}}",
     {"metadata 'k' is a JSON number"}},
    {"meta2.safetensors", 0,
     "{\"__metadata__\": [], \"w\": 1}",
     {"\"__metadata__\" is a JSON array"}},
    {"meta3.safetensors", 0,
     "{\"__metadata__\": {}, \"__metadata__\": {}}",
     {"\"__metadata__\" appears twice"}},
    /* Hostile names stay readable and bounded in messages. */
    {"ctrl.safetensors", 2,
     "{\"bad\\nname'\": {\"dtype\": \"X\", \"shape\": [1], \"data_offsets\": [0, 1]}}",
     {"tensor 'bad\\x0aname\\'': unknown dtype 'X'"}},
};

static void test_st_hostile(void)
{
    unsigned char zeros[64] = {0};
    const char *p;

    p = tmp_path("empty.safetensors");
    write_bytes(p, "", 0);
    CHECK_REFUSED(p, "file is empty");

    p = tmp_path("short.safetensors");
    write_bytes(p, "\x05\0\0\0", 4);
    CHECK_REFUSED(p, "too short", "4 bytes");

    unsigned char beyond[20] = {0xE8, 0x03}; /* header length 1000 */
    p = tmp_path("beyond.safetensors");
    write_bytes(p, beyond, sizeof beyond);
    CHECK_REFUSED(p, "header length 1000 runs past the end of the file (20 bytes)");

    unsigned char huge[16] = {0, 0, 0, 0, 0, 0, 0, 0x80};
    p = tmp_path("huge.safetensors");
    write_bytes(p, huge, sizeof huge);
    CHECK_REFUSED(p, "runs past the end");

    /* Header length above the cap, inside a (sparse) file that is big enough. */
    p = tmp_path("cap.safetensors");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CU_ASSERT_FATAL(fd >= 0);
    uint64_t capped = ST_MAX_HEADER_BYTES + 1;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)(capped >> (8 * i));
    CU_ASSERT(write(fd, len8, 8) == 8);
    CU_ASSERT(ftruncate(fd, (off_t)(capped + 16)) == 0);
    close(fd);
    CHECK_REFUSED(p, "above the limit");
    unlink(p);

    for (size_t i = 0; i < sizeof hostile_headers / sizeof hostile_headers[0]; i++) {
        const HostileHeader *h = &hostile_headers[i];
        unsigned char *data = calloc(h->data + 1, 1);
        p = write_st_raw(h->file, h->header, data, h->data);
        free(data);
        StFile *f = (StFile *)1;
        int rc = st_open(p, &f);
        CU_ASSERT(f == NULL);
        check_error_at(rc, __LINE__, p, h->want[0], h->want[1], h->want[2], h->want[3],
                       (const char *)NULL);
        if (rc == 0)
            st_close(f);
    }
    /* An overflowing prefix times a zero dimension is just empty. */
    p = write_st_raw("zerodim.safetensors",
                     "{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 16, 0],"
                     " \"data_offsets\": [0, 0]}}", zeros, 16);
    {
        StFile *f;
        CHECK_OK(st_open(p, &f));
        st_close(f);
    }
    /* Things that are fine: gaps, trailing bytes, empty tensors at the very end, padding. */
    p = write_st_raw("gaps.safetensors",
                     "{\"a\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [4, 6]},"
                     " \"z\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [16, 16]},"
                     " \"b\": {\"dtype\": \"BOOL\", \"shape\": [], \"data_offsets\": [0, 1]},"
                     " \"extra\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [8, 9],"
                     " \"comment\": \"ignored\"}}          ", zeros, 16);
    {
        StFile *f;
        CHECK_OK(st_open(p, &f));
        CU_ASSERT(st_count(f) == 4);
        st_close(f);
    }

    /* Not files at all. */
    CHECK_REFUSED(tmp_dir, "not a regular file");
    p = tmp_path("fifo.safetensors");
    CU_ASSERT_FATAL(mkfifo(p, 0600) == 0);
    CHECK_REFUSED(p, "not a regular file"); /* and does not hang waiting for a writer */
    CHECK_REFUSED(tmp_path("does-not-exist"), "cannot open");
    StFile *f = (StFile *)1;
    CHECK_ERROR(st_open(NULL, &f), "NULL path");
    CU_ASSERT(f == NULL);
    CHECK_ERROR(st_open("x", NULL), "NULL output");
}

/* Random corruption of a valid file must never crash: each variant is refused or accepted with
 * every tensor inside the buffer. */
static void test_st_mutations(void)
{
    float a[6] = {1, 2, 3, 4, 5, 6};
    int64_t sa[2] = {2, 3}, sb[1] = {2};
    StWriteTensor w[] = {{"x.weight", ST_F32, 2, sa, a}, {"y", ST_F16, 1, sb, a},
                         {"z", ST_BF16, 1, sb, a}};
    const char *path = tmp_path("mut.safetensors");
    const char *meta[] = {"format", "pt", NULL};
    CHECK_OK(st_write(path, w, 3, meta));
    FILE *fp = fopen(path, "rb");
    CU_ASSERT_FATAL(fp != NULL);
    unsigned char orig[1024];
    size_t n = fread(orig, 1, sizeof orig, fp);
    fclose(fp);
    CU_ASSERT_FATAL(n > 8 && n < sizeof orig);

    static const char syntax[] = "{}[]\":,0123456789-e.\\u \x80";
    unsigned char buf[1024];
    uint32_t seed = 12345;
    int accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(buf, orig, n);
        size_t len = n;
        int edits = 1 + iter % 4;
        for (int e = 0; e < edits; e++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % len;
            seed = seed * 1103515245u + 12345u;
            unsigned char val = (unsigned char)(seed >> 16);
            switch ((seed >> 24) % 4) {
            case 0: buf[at] = val; break;
            case 1: buf[at] = (unsigned char)syntax[val % (sizeof syntax - 1)]; break;
            case 2: len = at + 1; break;              /* truncate */
            case 3: buf[at] ^= (unsigned char)(1u << (val % 8)); break;
            }
        }
        StFile *f;
        if (st_open_memory(buf, len, "<mut>", &f) == 0) {
            accepted++;
            for (int i = 0; i < st_count(f); i++) {
                const StTensor *t = st_at(f, i);
                const unsigned char *d = t->data;
                CU_ASSERT(d >= buf && d + t->nbytes <= buf + len);
                if (st_dtype_is_float(t->dtype)) {
                    float *copy;
                    CU_ASSERT(st_read_f32(t, &copy) == 0);
                    free(copy);
                }
            }
            st_close(f);
        } else {
            CU_ASSERT(strncmp(mxrt_last_error(), "<mut>: ", 7) == 0);
        }
    }
    CU_ASSERT(accepted > 0);
    CHECK_ERROR(st_open_memory(NULL, 5, NULL, &(StFile *){NULL}), "<memory>: NULL buffer");
}

static uint16_t half_bits[] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x0400,
                               0x7C00, 0xFC00, 0x8000, 0x3555, 0x7E00};

static void test_st_convert(void)
{
    const float half_want[] = {1.0f, -2.0f, 65504.0f, 5.9604644775390625e-08f,
                               6.0975551605224609e-05f, 6.103515625e-05f, INFINITY, -INFINITY,
                               -0.0f, 0.333251953125f, NAN};
    uint16_t bf16[] = {0x3F80, 0xC040, 0x7F80, 0x0001, 0x3EAB};
    const float bf16_want[] = {1.0f, -3.0f, INFINITY, 9.18354961579912e-41f, 0.333984375f};
    double f64[] = {0.1, -1e300, 1e300, 3.4028234663852886e38, 1e-50, -0.0};
    const float f64_want[] = {0.1f, -INFINITY, INFINITY, 3.4028234663852886e38f, 0.0f, -0.0f};
    int64_t nh = 11, nb = 5, nd = 6, ni = 2;
    int32_t ints[2] = {1, 2};
    StWriteTensor w[] = {{"f64", ST_F64, 1, &nd, f64}, {"h", ST_F16, 1, &nh, half_bits},
                         {"b", ST_BF16, 1, &nb, bf16}, {"i", ST_I32, 1, &ni, ints}};
    const char *path = tmp_path("conv.safetensors");
    CHECK_OK(st_write(path, w, 4, NULL));
    StFile *f;
    CHECK_OK(st_open(path, &f));
    CU_ASSERT_FATAL(f != NULL);
    float *out;

    CU_ASSERT_FATAL(st_read_f32(st_find(f, "h"), &out) == 0);
    for (int i = 0; i < 11; i++) {
        if (isnan(half_want[i])) {
            CU_ASSERT(isnan(out[i]));
        } else {
            CU_ASSERT(out[i] == half_want[i] && signbit(out[i]) == signbit(half_want[i]));
        }
    }
    free(out);
    CU_ASSERT_FATAL(st_read_f32(st_find(f, "b"), &out) == 0);
    for (int i = 0; i < 5; i++)
        CU_ASSERT(out[i] == bf16_want[i]);
    free(out);
    CU_ASSERT_FATAL(st_read_f32(st_find(f, "f64"), &out) == 0);
    for (int i = 0; i < 6; i++)
        CU_ASSERT(out[i] == f64_want[i] && signbit(out[i]) == signbit(f64_want[i]));
    free(out);

    /* Every half value converts exactly (checked through double arithmetic). */
    for (uint32_t h = 0; h < 0x10000; h++) {
        uint16_t bits = (uint16_t)h;
        StTensor t = {.name = "x", .dtype = ST_F16, .rank = 1, .shape = {1},
                      .data = &bits, .nbytes = 2};
        float v;
        CU_ASSERT_FATAL(st_convert_f32(&t, &v) == 0);
        int exp = (h >> 10) & 31, man = h & 1023;
        double want = exp == 0 ? ldexp(man, -24) : ldexp(1024 + man, exp - 25);
        if (h & 0x8000)
            want = -want;
        if (exp == 31) {
            CU_ASSERT(man ? isnan(v) : isinf(v) && (v < 0) == !!(h & 0x8000));
        } else if ((double)v != want) {
            CU_FAIL("half conversion");
            break;
        }
    }

    CHECK_ERROR(st_read_f32(st_find(f, "i"), &out), "tensor 'i': dtype I32 cannot be read");
    CU_ASSERT(out == NULL);
    CHECK_ERROR(st_convert_f32(st_find(f, "i"), (float[2]){0}), "dtype I32");
    CHECK_ERROR(st_read_f32(NULL, &out), "NULL tensor");
    st_close(f);
    CU_ASSERT_STRING_EQUAL(st_dtype_name(ST_BF16), "BF16");
    CU_ASSERT(st_dtype_size(ST_F64) == 8 && st_dtype_size((StDtype)99) == 0);
}

/* --- a fake model -------------------------------------------------------------------------- */

#define VP 6    /* vocab_padded */
#define VOCAB 5 /* vocab_size */
#define SF 3    /* state floats per sequence */

typedef struct KernelCall {
    const float *const *weights;
    float *state, *scratch;
    const int32_t *tokens;
    int64_t tokens_bstride, logits_bstride;
    float *logits;
    int32_t batch, len;
    int32_t ith, nth;     /* from the exec (which lives only during the call) */
    int was_step;
} KernelCall;

static KernelCall calls[64];
static int n_calls;

/* Logit v of (b, t) = weights[0][0] + 10 * token + v, plus in column VP-1 the count of tokens
 * this sequence has seen (kept in state[b][0]), so carried state is visible. */
static void fake_kernel(const float *const *weights, float *state, float *scratch,
                        const int32_t *tokens, int64_t tokens_bstride, float *logits,
                        int64_t logits_bstride, int32_t batch, int32_t len, MxrtExec *exec,
                        int was_step)
{
    if (n_calls < 64)
        calls[n_calls++] = (KernelCall){weights, state, scratch, tokens, tokens_bstride,
                                        logits_bstride, logits, batch, len,
                                        exec ? exec->ith : -1, exec ? exec->nth : -1, was_step};
    for (int b = 0; b < batch; b++)
        for (int t = 0; t < len; t++) {
            float *row = logits + b * logits_bstride + t * VP;
            int32_t tok = tokens[b * tokens_bstride + t];
            state[b * SF] += 1;
            scratch[(b * len + t)] = 1; /* scratch is writable */
            for (int v = 0; v < VP - 1; v++)
                row[v] = weights[0][0] + 10.0f * (float)tok + (float)v;
            row[VP - 1] = state[b * SF];
        }
}

static void fake_forward(const float *const *w, float *state, float *scratch,
                         const int32_t *tokens, int64_t tbs, float *logits, int64_t lbs,
                         int32_t batch, int32_t len, MxrtExec *exec)
{
    fake_kernel(w, state, scratch, tokens, tbs, logits, lbs, batch, len, exec, 0);
}

static void fake_step(const float *const *w, float *state, float *scratch,
                      const int32_t *tokens, int64_t tbs, float *logits, int64_t lbs,
                      int32_t batch, int32_t len, MxrtExec *exec)
{
    fake_kernel(w, state, scratch, tokens, tbs, logits, lbs, batch, len, exec, 1);
}

static const MxrtTensorSpec fake_specs[] = {
    {"model.a", NULL, 2, MXRT_XFORM_NONE, {3, 4, 0, 0}, {0}},
    {"model.b", NULL, 1, MXRT_XFORM_NONE, {5, 0, 0, 0}, {0}},
    {"lm_head.weight", "model.embed", 2, MXRT_XFORM_NONE, {VP, 2, 0, 0}, {0}},
    {"model.embed", NULL, 2, MXRT_XFORM_NONE, {VP, 2, 0, 0}, {0}},
};

static MxrtModelDesc fake_desc(void)
{
    return (MxrtModelDesc){
        .abi_version = MXRT_ABI_VERSION,
        .n_weights = 4,
        .name = "fake",
        .weights = fake_specs,
        .vocab_size = VOCAB,
        .vocab_padded = VP,
        .d_model = 2,
        .chunk_len = 4,
        .state_floats = SF,
        .scratch_floats_per_row = 2,
        .forward_chunk = fake_forward,
        .step = fake_step,
        .forward_trunk = fake_forward,
        .forward_last = fake_forward,
    };
}

static float vals[64];

/* The fake model's weights; `skip` leaves one out, `embed_only` drops lm_head.weight. */
static const char *write_fake_weights(const char *name, const char *skip, int embed_only)
{
    for (int i = 0; i < 64; i++)
        vals[i] = 0.5f + (float)i;
    int64_t sa[2] = {3, 4}, sb[1] = {5}, se[2] = {VP, 2}, sx[1] = {7};
    float head[VP * 2];
    for (int i = 0; i < VP * 2; i++)
        head[i] = 100 + (float)i;
    StWriteTensor all[] = {
        {"model.a", ST_F32, 2, sa, vals},        {"model.b", ST_F32, 1, sb, vals + 12},
        {"model.embed", ST_F32, 2, se, vals + 20}, {"lm_head.weight", ST_F32, 2, se, head},
        {"unused.extra", ST_F32, 1, sx, vals},
    };
    StWriteTensor keep[5];
    int n = 0;
    for (int i = 0; i < 5; i++) {
        if (skip && strcmp(all[i].name, skip) == 0)
            continue;
        if (embed_only && strcmp(all[i].name, "lm_head.weight") == 0)
            continue;
        keep[n++] = all[i];
    }
    const char *path = tmp_path(name);
    CU_ASSERT(st_write(path, keep, n, NULL) == 0);
    return path;
}

/* --- binding ------------------------------------------------------------------------------- */

static void test_bind_basic(void)
{
    MxrtModelDesc d = fake_desc();
    StFile *f;
    BoundWeights *b = (BoundWeights *)1;
    CHECK_OK(st_open(write_fake_weights("bind.safetensors", NULL, 0), &f));
    CHECK_OK(bind_weights(&d, f, &b));
    CU_ASSERT_FATAL(b != NULL);
    const float *const *s = bind_slots(b);
    CU_ASSERT(s[0] == st_find(f, "model.a")->data); /* zero-copy */
    CU_ASSERT(s[1] == st_find(f, "model.b")->data);
    CU_ASSERT(s[2] == st_find(f, "lm_head.weight")->data); /* both present: `name` wins */
    CU_ASSERT(s[3] == st_find(f, "model.embed")->data);
    CU_ASSERT(s[2][0] == 100 && s[3][0] == 20.5f && s[1][4] == 16.5f);
    CU_ASSERT(bind_copied_count(b) == 0);
    bind_free(b);
    st_close(f);

    /* Tied weights stored once, under the alternative name. */
    CHECK_OK(st_open(write_fake_weights("tied.safetensors", NULL, 1), &f));
    CHECK_OK(bind_weights(&d, f, &b));
    s = bind_slots(b);
    CU_ASSERT(s[2] == st_find(f, "model.embed")->data && s[3] == s[2]);
    bind_free(b);
    st_close(f);
    bind_free(NULL);
    CU_ASSERT(bind_slots(NULL) == NULL);
}

static void test_bind_problems(void)
{
    MxrtModelDesc d = fake_desc();
    StFile *f;
    BoundWeights *b = (BoundWeights *)1;
    const char *path = write_fake_weights("miss.safetensors", "model.b", 0);
    CHECK_OK(st_open(path, &f));
    CHECK_ERROR(bind_weights(&d, f, &b), path, "model 'fake'", "1 problem)",
                "missing tensor 'model.b'");
    CU_ASSERT(b == NULL);

    /* The alternative name is mentioned when neither is there. */
    MxrtTensorSpec specs[6];
    memcpy(specs, fake_specs, sizeof fake_specs);
    specs[2].name = "nope.head";
    specs[2].alt_name = "nope.embed";
    d.weights = specs;
    CHECK_ERROR(bind_weights(&d, f, &b), "2 problems",
                "missing tensor 'model.b'; missing tensor 'nope.head' (also looked for "
                "'nope.embed')");

    /* Several alternative names ('\n'-separated): all are named when none is there... */
    specs[2].alt_name = "nope.embed\nnope.other";
    CHECK_ERROR(bind_weights(&d, f, &b), "missing tensor 'nope.head' (also looked for "
                "'nope.embed' or 'nope.other')");
    st_close(f);
    /* ... and the first one present is bound (here the second, the tied embedding). */
    CHECK_OK(st_open(write_fake_weights("alts.safetensors", NULL, 0), &f));
    specs[2].alt_name = "nope.embed\nmodel.embed\nlm_head.weight";
    CHECK_OK(bind_weights(&d, f, &b));
    CU_ASSERT(bind_slots(b)[2] == st_find(f, "model.embed")->data);
    bind_free(b);
    st_close(f);
    CHECK_OK(st_open(path, &f));

    /* Wrong shape, wrong rank, all reported together with the missing one. */
    memcpy(specs, fake_specs, sizeof fake_specs);
    specs[0].dims[1] = 5;
    specs[3].rank = 1;
    specs[3].dims[0] = 12;
    CHECK_ERROR(bind_weights(&d, f, &b), "3 problems",
                "tensor 'model.a' has shape [3, 4] but the model expects [3, 5]",
                "missing tensor 'model.b'",
                "tensor 'model.embed' has shape [6, 2] but the model expects [12]");
    st_close(f);

    /* Many problems: as many as fit, then a count. */
    CHECK_OK(st_open(write_fake_weights("many.safetensors", NULL, 0), &f));
    MxrtTensorSpec lots[30];
    char names[30][64];
    for (int i = 0; i < 30; i++) {
        snprintf(names[i], sizeof names[i], "backbone.layers.%d.mixer.some_long_weight_name",
                 i);
        lots[i] = (MxrtTensorSpec){names[i], NULL, 1, MXRT_XFORM_NONE, {1, 0, 0, 0}, {0}};
    }
    d.weights = lots;
    d.n_weights = 30;
    CHECK_ERROR(bind_weights(&d, f, &b), "30 problems", "missing tensor 'backbone.layers.0.",
                "more");
    CU_ASSERT(strlen(mxrt_last_error()) < MXRT_ERROR_CAP);

    /* Descriptor bugs are refused before anything is looked up. */
    d = fake_desc();
    memcpy(specs, fake_specs, sizeof fake_specs);
    d.weights = specs;
    specs[1].transform = 7;
    CHECK_ERROR(bind_weights(&d, f, &b), "'model.b'", "transform 7");
    specs[1].transform = MXRT_XFORM_NONE;
    specs[1].rank = 5;
    CHECK_ERROR(bind_weights(&d, f, &b), "invalid rank 5");
    specs[1].rank = 0;
    CHECK_ERROR(bind_weights(&d, f, &b), "invalid rank 0");
    specs[1].rank = 1;
    specs[1].name = NULL;
    CHECK_ERROR(bind_weights(&d, f, &b), "slot 1 has no name");
    specs[1].name = "model.b";
    specs[1].dims[0] = -5;
    CHECK_ERROR(bind_weights(&d, f, &b), "negative dimension");
    d.n_weights = -1;
    CHECK_ERROR(bind_weights(&d, f, &b), "invalid weight table");
    CHECK_ERROR(bind_weights(NULL, f, &b), "NULL");
    st_close(f);

    /* No weights at all is fine. */
    d = fake_desc();
    d.n_weights = 0;
    d.weights = NULL;
    CHECK_OK(st_open(write_fake_weights("none.safetensors", NULL, 0), &f));
    CHECK_OK(bind_weights(&d, f, &b));
    bind_free(b);
    st_close(f);
}

/* A layout transform rearranges the stored data once, into a copy: model.a [3][4] seen as
 * [1][3][4][1] is read transposed, and a tied slot that reads its tensor without the
 * transform does not share the rearranged copy. A view that does not fit is refused. */
static void test_bind_transform(void)
{
    MxrtModelDesc d = fake_desc();
    MxrtTensorSpec specs[4];
    memcpy(specs, fake_specs, sizeof fake_specs);
    specs[0].transform = MXRT_XFORM_SWAP_MIDDLE;
    int64_t view[4] = {1, 3, 4, 1};
    memcpy(specs[0].xform_dims, view, sizeof view);
    d.weights = specs;
    StFile *f;
    BoundWeights *b = NULL;
    CHECK_OK(st_open(write_fake_weights("xform.safetensors", NULL, 0), &f));
    CHECK_OK(bind_weights(&d, f, &b));
    const float *const *s = bind_slots(b);
    const float *a = st_find(f, "model.a")->data;
    CU_ASSERT(s[0] != a);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            CU_ASSERT(s[0][c * 3 + r] == a[r * 4 + c]);
    CU_ASSERT(bind_copied_count(b) == 1);
    bind_free(b);

    specs[2].alt_name = NULL; /* slots 2 and 3: one tensor, with and without the transform */
    specs[2].name = "model.embed";
    specs[2].transform = MXRT_XFORM_SWAP_MIDDLE;
    int64_t view2[4] = {1, VP, 2, 1};
    memcpy(specs[2].xform_dims, view2, sizeof view2);
    CHECK_OK(bind_weights(&d, f, &b));
    s = bind_slots(b);
    CU_ASSERT(s[3] == st_find(f, "model.embed")->data && s[2] != s[3]);
    CU_ASSERT(s[2][1] == s[3][2]); /* [VP][2] transposed: element (0, 1) of [2][VP] is (1, 0) */
    bind_free(b);

    specs[0].xform_dims[2] = 5;
    CHECK_ERROR(bind_weights(&d, f, &b), "'model.a'", "layout transform that does not fit");
    specs[0].xform_dims[2] = 0;
    CHECK_ERROR(bind_weights(&d, f, &b), "'model.a'", "layout transform that does not fit");
    st_close(f);
}

/* --- sharded checkpoints -------------------------------------------------------------------- */

/* Shard files in folder `dir` under tmp_dir: a.safetensors holds model.a and model.b,
 * b.safetensors model.embed and lm_head.weight (the tensors of fake_specs); `extra` (if not
 * NULL) also goes into b.safetensors. Then the index: `entries` as the JSON members of its
 * weight_map. Returns the index path. */
static const char *write_shards(const char *dir, const char *extra, const char *entries)
{
    static char index[512];
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, dir);
    mkdir(path, 0755);
    for (int i = 0; i < 64; i++)
        vals[i] = 0.5f + (float)i;
    int64_t sa[2] = {3, 4}, sb[1] = {5}, se[2] = {VP, 2};
    StWriteTensor first[] = {{"model.a", ST_F32, 2, sa, vals}, {"model.b", ST_F32, 1, sb, vals + 12}};
    StWriteTensor second[] = {{"model.embed", ST_F32, 2, se, vals + 20},
                              {"lm_head.weight", ST_F32, 2, se, vals + 30},
                              {extra, ST_F32, 1, sb, vals}};
    snprintf(path, sizeof path, "%s/%s/a.safetensors", tmp_dir, dir);
    CU_ASSERT(st_write(path, first, 2, NULL) == 0);
    snprintf(path, sizeof path, "%s/%s/b.safetensors", tmp_dir, dir);
    CU_ASSERT(st_write(path, second, extra ? 3 : 2, NULL) == 0);
    snprintf(index, sizeof index, "%s/%s/model.safetensors.index.json", tmp_dir, dir);
    FILE *f = fopen(index, "w");
    CU_ASSERT_FATAL(f != NULL);
    fprintf(f, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {%s}}", entries);
    fclose(f);
    return index;
}

#define GOOD_MAP "\"model.a\": \"a.safetensors\", \"model.b\": \"a.safetensors\", " \
                 "\"model.embed\": \"b.safetensors\", \"lm_head.weight\": \"b.safetensors\""

/* An index and its shards open as one file, bind like one, and name the shard of a tensor;
 * a folder opens through its index, or its model.safetensors. */
static void test_checkpoint_shards(void)
{
    const char *index = write_shards("shards", NULL, GOOD_MAP);
    StFile *f;
    CHECK_OK(ckpt_open(index, &f));
    CU_ASSERT_EQUAL(st_count(f), 4);
    const StTensor *t = st_find(f, "model.embed");
    CU_ASSERT_FATAL(t != NULL);
    CU_ASSERT(strstr(st_tensor_file(f, t), "shards/b.safetensors") != NULL);
    CU_ASSERT(strstr(st_tensor_file(f, st_find(f, "model.b")), "shards/a.safetensors") != NULL);
    MxrtModelDesc d = fake_desc();
    BoundWeights *b = NULL;
    CHECK_OK(bind_weights(&d, f, &b));
    CU_ASSERT(bind_slots(b)[3][0] == 20.5f && bind_slots(b)[1][0] == 12.5f);
    bind_free(b);
    st_close(f);

    char dir[512];
    snprintf(dir, sizeof dir, "%s/shards", tmp_dir);
    CHECK_OK(ckpt_open(dir, &f)); /* the folder: through its index */
    CU_ASSERT_EQUAL(st_count(f), 4);
    st_close(f);
    snprintf(dir, sizeof dir, "%s/single", tmp_dir);
    mkdir(dir, 0755);
    CHECK_ERROR(ckpt_open(dir, &f), "single", "holds neither model.safetensors nor");
    write_fake_weights("single/model.safetensors", NULL, 0);
    CHECK_OK(ckpt_open(dir, &f));
    CU_ASSERT_EQUAL(st_count(f), 5);
    st_close(f);

    /* A shape error names the shard. */
    MxrtTensorSpec specs[4];
    memcpy(specs, fake_specs, sizeof fake_specs);
    specs[3].dims[0] = VP + 1;
    d.weights = specs;
    CHECK_OK(ckpt_open(index, &f));
    CHECK_ERROR(bind_weights(&d, f, &b), "'model.embed' in '", "shards/b.safetensors", "has shape");
    st_close(f);
}

/* Each way an index and its shards can disagree is refused, naming the file and tensor. */
static void test_checkpoint_bad_indexes(void)
{
    static const struct {
        const char *dir, *extra, *map;
        const char *want1, *want2;
    } cases[] = {
        {"s_missing", NULL, GOOD_MAP ", \"model.z\": \"c.safetensors\"", "c.safetensors", "cannot open"},
        {"s_lacks", NULL, GOOD_MAP ", \"model.z\": \"b.safetensors\"", "'model.z'", "does not hold it"},
        {"s_unlisted", "model.z", GOOD_MAP, "'model.z'", "does not list"},
        {"s_two", "model.a", GOOD_MAP, "'model.a'", "but the index places it in a.safetensors"},
        {"s_twice", NULL, GOOD_MAP ", \"model.a\": \"a.safetensors\"", "'model.a'", "listed twice"},
        {"s_escape", NULL, "\"model.a\": \"../a.safetensors\"", "'model.a'", "not a file name"},
        {"s_number", NULL, "\"model.a\": 3", "'model.a'", "not a shard file name"},
        {"s_empty", NULL, "", "lists no tensors", NULL},
        {"s_json", NULL, "\"model.a\": ", "invalid JSON", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *index = write_shards(cases[i].dir, cases[i].extra, cases[i].map);
        StFile *f = (StFile *)1;
        if (cases[i].want2)
            CHECK_ERROR(ckpt_open(index, &f), cases[i].want1, cases[i].want2);
        else
            CHECK_ERROR(ckpt_open(index, &f), cases[i].want1);
        CU_ASSERT(f == NULL);
    }
    StFile *f;
    char path[512];
    snprintf(path, sizeof path, "%s/no_weight_map.json", tmp_dir);
    write_bytes(path, "{\"metadata\": {}}", 16);
    CHECK_ERROR(ckpt_open(path, &f), "no \"weight_map\" object");
}

static void test_bind_convert(void)
{
    /* A U8 byte first pushes the F32 tensor off 4-byte alignment. */
    uint8_t pad = 0;
    float a[12];
    for (int i = 0; i < 12; i++)
        a[i] = (float)i * 0.25f;
    uint16_t b16[5] = {0x3F80, 0x4000, 0x4040, 0x4080, 0xBF80};       /* 1 2 3 4 -1 BF16 */
    uint16_t h16[12] = {0x3C00, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600,
                        0x4700, 0x4800, 0x4880, 0x4900, 0x4980, 0x4A00}; /* 1..12 F16 */
    double emb[12];
    for (int i = 0; i < 12; i++)
        emb[i] = -1.5 * i;
    int64_t one = 1, sa[2] = {3, 4}, sb[1] = {5}, se[2] = {VP, 2};
    StWriteTensor w[] = {{"pad", ST_U8, 1, &one, &pad},
                         {"model.a", ST_F32, 2, sa, a},
                         {"model.b", ST_BF16, 1, sb, b16},
                         {"model.embed", ST_F64, 2, se, emb},
                         {"lm_head.weight", ST_F16, 2, se, h16}};
    const char *path = tmp_path("convert.safetensors");
    CHECK_OK(st_write(path, w, 5, NULL));
    StFile *f;
    BoundWeights *b;
    MxrtModelDesc d = fake_desc();
    CHECK_OK(st_open(path, &f));
    CU_ASSERT(((uintptr_t)st_find(f, "model.a")->data & 3) != 0);
    CU_ASSERT(!st_is_f32_in_place(st_find(f, "model.a")));
    CHECK_OK(bind_weights(&d, f, &b));
    CU_ASSERT_FATAL(b != NULL);
    const float *const *s = bind_slots(b);
    CU_ASSERT(bind_copied_count(b) == 4);
    CU_ASSERT(s[0] != st_find(f, "model.a")->data);
    CU_ASSERT(((uintptr_t)s[0] & 3) == 0);
    for (int i = 0; i < 12; i++) {
        CU_ASSERT(s[0][i] == a[i]);
        CU_ASSERT(s[2][i] == (float)(i + 1));
        CU_ASSERT(s[3][i] == (float)emb[i]);
    }
    CU_ASSERT(s[1][0] == 1 && s[1][3] == 4 && s[1][4] == -1);
    bind_free(b);

    /* A tied tensor that needs converting is converted once and shared. */
    MxrtTensorSpec specs[4];
    memcpy(specs, fake_specs, sizeof fake_specs);
    specs[2].name = "not.there";
    d.weights = specs;
    CHECK_OK(bind_weights(&d, f, &b));
    s = bind_slots(b);
    CU_ASSERT(s[2] == s[3] && s[2][1] == -1.5f);
    CU_ASSERT(bind_copied_count(b) == 3);
    bind_free(b);

    /* Integer tensors cannot be weights. */
    specs[1].name = "pad";
    specs[1].dims[0] = 1;
    CHECK_ERROR(bind_weights(&d, f, &b), "tensor 'pad' has dtype U8",
                "F32, F16, BF16 or F64");
    st_close(f);
}

/* --- threads ------------------------------------------------------------------------------ */

static atomic_int spmd_arrived, spmd_seen_all, spmd_calls;
static atomic_int spmd_ith_mask;

/* An SPMD kernel like the generated ones: every thread calls it with its own exec, arrives,
 * waits at the barrier, and must then see every other thread's arrival. */
static void spmd_kernel(const float *const *w, float *state, float *scratch,
                        const int32_t *tokens, int64_t tbs, float *logits, int64_t lbs,
                        int32_t batch, int32_t len, MxrtExec *exec)
{
    atomic_fetch_add(&spmd_calls, 1);
    atomic_fetch_or(&spmd_ith_mask, 1 << exec->ith);
    for (int round = 1; round <= 3; round++) {
        atomic_fetch_add(&spmd_arrived, 1);
        mxrt_barrier(exec);
        if (atomic_load(&spmd_arrived) >= round * exec->nth) atomic_fetch_add(&spmd_seen_all, 1);
        mxrt_barrier(exec);
    }
    logits[exec->ith] = (float)exec->nth;
}

static void test_threads(void)
{
    MxrtModelDesc d = fake_desc();
    d.forward_chunk = spmd_kernel;
    d.step = spmd_kernel;
    MxrtModel *m;
    MxrtState *s;
    CHECK_OK(mxrt_open(&d, write_fake_weights("threads.safetensors", NULL, 0), &m));
    CHECK_OK(mxrt_state_new(m, 1, &s));
    CHECK_ERROR(mxrt_state_set_threads(s, 0), "thread count");
    CHECK_ERROR(mxrt_state_set_threads(NULL, 2), "state is NULL");
    for (int n = 1; n <= 4; n++) {
        CHECK_OK(mxrt_state_set_threads(s, n));
        for (int call = 0; call < 5; call++) {
            atomic_store(&spmd_arrived, 0);
            atomic_store(&spmd_seen_all, 0);
            atomic_store(&spmd_calls, 0);
            atomic_store(&spmd_ith_mask, 0);
            int32_t tok = 1;
            float logits[VP * 4] = {0};
            CHECK_OK(call % 2 ? mxrt_step(m, s, &tok, logits) : mxrt_forward(m, s, &tok, 1, logits));
            CU_ASSERT_EQUAL(atomic_load(&spmd_calls), n);
            CU_ASSERT_EQUAL(atomic_load(&spmd_ith_mask), (1 << n) - 1);
            CU_ASSERT_EQUAL(atomic_load(&spmd_seen_all), 3 * n);
            for (int i = 0; i < n; i++) CU_ASSERT_EQUAL(logits[i], (float)n);
        }
    }
    mxrt_state_free(s);
    mxrt_close(m);
}

/* --- the runtime proper -------------------------------------------------------------------- */

static void test_open_errors(void)
{
    MxrtModelDesc d = fake_desc();
    MxrtModel *m = (MxrtModel *)1;
    const char *path = write_fake_weights("open.safetensors", NULL, 0);
    CHECK_ERROR(mxrt_open(NULL, path, &m), "descriptor is NULL");
    CU_ASSERT(m == NULL);
    CHECK_ERROR(mxrt_open(&d, NULL, &m), "fake_open: weights path is NULL");
    CHECK_ERROR(mxrt_open(&d, path, NULL), "NULL output");
    char compiled[32], runtime[32];
    d.abi_version = MXRT_ABI_VERSION + 1;
    snprintf(compiled, sizeof compiled, "ABI %d", MXRT_ABI_VERSION + 1);
    snprintf(runtime, sizeof runtime, "ABI %d", MXRT_ABI_VERSION);
    CHECK_ERROR(mxrt_open(&d, path, &m), compiled, runtime);
    d = fake_desc();
    d.vocab_padded = VOCAB - 1;
    CHECK_ERROR(mxrt_open(&d, path, &m), "fake_open: invalid model descriptor");
    d = fake_desc();
    d.chunk_len = 0;
    CHECK_ERROR(mxrt_open(&d, path, &m), "chunk_len");
    d = fake_desc();
    d.step = NULL;
    CHECK_ERROR(mxrt_open(&d, path, &m), "missing kernel");
    d = fake_desc();
    d.name = NULL;
    CHECK_ERROR(mxrt_open(&d, path, &m), "no name");
    d = fake_desc();
    CHECK_ERROR(mxrt_open(&d, tmp_path("absent.safetensors"), &m), "absent.safetensors",
                "cannot open");
    CHECK_ERROR(mxrt_open(&d, write_fake_weights("part.safetensors", "model.a", 0), &m),
                "missing tensor 'model.a'");
    CU_ASSERT(m == NULL);
    mxrt_close(NULL);
    mxrt_state_free(NULL);
}

static void test_states(void)
{
    MxrtModelDesc d = fake_desc();
    MxrtModel *m, *m2;
    MxrtState *s = (MxrtState *)1, *s2, *s3, *other;
    const char *path = write_fake_weights("state.safetensors", NULL, 0);
    CHECK_OK(mxrt_open(&d, path, &m));
    CHECK_OK(mxrt_open(&d, path, &m2));

    CHECK_ERROR(mxrt_state_new(m, 0, &s), "fake_state_new: batch must be in [1, 65536], got 0");
    CU_ASSERT(s == NULL);
    CHECK_ERROR(mxrt_state_new(m, -3, &s), "got -3");
    CHECK_ERROR(mxrt_state_new(m, 65537, &s), "got 65537");
    CHECK_ERROR(mxrt_state_new(NULL, 1, &s), "model is NULL");
    CHECK_ERROR(mxrt_state_new(m, 1, NULL), "NULL output");

    CHECK_OK(mxrt_state_new(m, 2, &s));
    CHECK_OK(mxrt_state_set_threads(s, 1)); /* the fake kernel is not SPMD */
    CHECK_OK(mxrt_state_new(m, 2, &s2));
    CHECK_OK(mxrt_state_set_threads(s2, 1)); /* the fake kernel is not SPMD */
    CHECK_OK(mxrt_state_new(m, 3, &s3));
    CHECK_OK(mxrt_state_set_threads(s3, 1)); /* the fake kernel is not SPMD */
    CHECK_OK(mxrt_state_new(m2, 2, &other));
    CHECK_OK(mxrt_state_set_threads(other, 1)); /* the fake kernel is not SPMD */
    CU_ASSERT(mxrt_state_batch(s) == 2 && mxrt_state_batch(s3) == 3);
    CU_ASSERT(mxrt_state_batch(NULL) == 0);

    /* Advance s by 3 tokens per sequence, copy it, reset it. */
    int32_t tok[2 * 3] = {1, 2, 3, 4, 0, 1};
    float logits[2 * 3 * VP];
    n_calls = 0;
    CHECK_OK(mxrt_forward(m, s, tok, 3, logits));
    CU_ASSERT(n_calls == 1 && calls[0].state && ((uintptr_t)calls[0].state & 63) == 0);
    CU_ASSERT(((uintptr_t)calls[0].scratch & 63) == 0);
    CU_ASSERT(calls[0].state[0] == 3 && calls[0].state[SF] == 3 && calls[0].state[1] == 0);
    float *state_s = calls[0].state;
    CHECK_OK(mxrt_state_copy(s2, s));
    n_calls = 0;
    CHECK_OK(mxrt_step(m, s2, tok, logits));
    CU_ASSERT(n_calls == 1 && calls[0].state != state_s);
    CU_ASSERT(logits[VP - 1] == 4 && logits[VP + VP - 1] == 4); /* continued from the copy */
    CU_ASSERT(state_s[0] == 3);                                   /* the source is untouched */
    CHECK_OK(mxrt_state_copy(s, s));
    mxrt_state_reset(s);
    CU_ASSERT(state_s[0] == 0 && state_s[SF] == 0);
    mxrt_state_reset(NULL);
    CHECK_ERROR(mxrt_state_copy(s3, s), "batch sizes differ (destination 3, source 2)");
    CHECK_ERROR(mxrt_state_copy(other, s), "different models");
    CHECK_ERROR(mxrt_state_copy(NULL, s), "destination state is NULL");
    CHECK_ERROR(mxrt_state_copy(s, NULL), "source state is NULL");

    /* A state can be freed after its model is closed. */
    mxrt_close(m2);
    mxrt_state_free(other);
    mxrt_state_free(s);
    mxrt_state_free(s2);
    mxrt_state_free(s3);
    mxrt_close(m);
}

static void test_forward_chunks(void)
{
    MxrtModelDesc d = fake_desc();
    MxrtModel *m;
    MxrtState *s;
    CHECK_OK(mxrt_open(&d, write_fake_weights("fwd.safetensors", NULL, 0), &m));
    CHECK_OK(mxrt_state_new(m, 2, &s));
    CHECK_OK(mxrt_state_set_threads(s, 1)); /* the fake kernel is not SPMD */
    enum { B = 2, L = 10 };
    int32_t tok[B * L];
    float logits[B * L * VP];
    for (int i = 0; i < B * L; i++)
        tok[i] = (int32_t)(i % VOCAB);
    memset(logits, 0, sizeof logits);
    n_calls = 0;
    CHECK_OK(mxrt_forward(m, s, tok, L, logits));

    /* Chunks of 4, 4, 2, each at the right offset. The kernels read the state's copy of the
     * chunk's checked ids ([batch][len]), never the caller's buffer (issue 17). */
    CU_ASSERT_FATAL(n_calls == 3);
    const int lens[3] = {4, 4, 2}, starts[3] = {0, 4, 8};
    for (int c = 0; c < 3; c++) {
        CU_ASSERT(calls[c].len == lens[c]);
        CU_ASSERT(calls[c].batch == B);
        CU_ASSERT(calls[c].tokens != tok + starts[c]);
        CU_ASSERT(calls[c].logits == logits + starts[c] * VP);
        CU_ASSERT(calls[c].tokens_bstride == lens[c]);
        CU_ASSERT(calls[c].logits_bstride == (int64_t)L * VP);
        CU_ASSERT(calls[c].ith == 0 && calls[c].nth == 1);
        CU_ASSERT(!calls[c].was_step);
        CU_ASSERT(calls[c].state == calls[0].state && calls[c].scratch == calls[0].scratch);
        CU_ASSERT(calls[c].weights[0][0] == 0.5f); /* slot 0 is model.a */
    }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < L; t++) {
            const float *row = logits + ((size_t)b * L + (size_t)t) * VP;
            CU_ASSERT(row[0] == 0.5f + 10.0f * (float)tok[b * L + t]);
            CU_ASSERT(row[2] == row[0] + 2);
            CU_ASSERT(row[VP - 1] == (float)(t + 1)); /* state carried across chunks */
        }

    /* Step continues from the same state, with per-token strides. */
    int32_t st[B] = {4, 3};
    float sl[B * VP];
    n_calls = 0;
    CHECK_OK(mxrt_step(m, s, st, sl));
    CU_ASSERT_FATAL(n_calls == 1);
    CU_ASSERT(calls[0].was_step && calls[0].len == 1 && calls[0].batch == B);
    CU_ASSERT(calls[0].tokens != st && calls[0].tokens_bstride == 1);
    CU_ASSERT(calls[0].logits == sl && calls[0].logits_bstride == VP);
    CU_ASSERT(sl[0] == 40.5f && sl[VP] == 30.5f);
    CU_ASSERT(sl[VP - 1] == 11 && sl[2 * VP - 1] == 11);

    /* Exactly chunk_len, and a single token, are one call each. */
    n_calls = 0;
    CHECK_OK(mxrt_forward(m, s, tok, 4, logits));
    CHECK_OK(mxrt_forward(m, s, tok, 1, logits));
    CU_ASSERT(n_calls == 2 && calls[0].len == 4 && calls[1].len == 1);
    mxrt_state_free(s);
    mxrt_close(m);
}

static void test_argument_errors(void)
{
    MxrtModelDesc d = fake_desc();
    MxrtModel *m, *m2;
    MxrtState *s, *s2;
    const char *path = write_fake_weights("args.safetensors", NULL, 0);
    CHECK_OK(mxrt_open(&d, path, &m));
    CHECK_OK(mxrt_open(&d, path, &m2));
    CHECK_OK(mxrt_state_new(m, 2, &s));
    CHECK_OK(mxrt_state_set_threads(s, 1)); /* the fake kernel is not SPMD */
    CHECK_OK(mxrt_state_new(m2, 2, &s2));
    CHECK_OK(mxrt_state_set_threads(s2, 1)); /* the fake kernel is not SPMD */
    int32_t tok[2 * 5] = {0, 1, 2, 3, 4, 0, 1, 2, 3, 4};
    float logits[2 * 5 * VP];
    n_calls = 0;

    CHECK_ERROR(mxrt_forward(NULL, s, tok, 5, logits), "forward: model is NULL");
    CHECK_ERROR(mxrt_forward(m, NULL, tok, 5, logits), "fake_forward: state is NULL");
    CHECK_ERROR(mxrt_forward(m, s, NULL, 5, logits), "fake_forward: tokens is NULL");
    CHECK_ERROR(mxrt_forward(m, s, tok, 5, NULL), "fake_forward: logits is NULL");
    CHECK_ERROR(mxrt_forward(m, s, tok, 0, logits), "len must be >= 1, got 0");
    CHECK_ERROR(mxrt_forward(m, s, tok, -2, logits), "got -2");
    CHECK_ERROR(mxrt_forward(m, s2, tok, 5, logits), "fake_forward: state belongs to another "
                                                     "model");
    tok[8] = VOCAB;
    CHECK_ERROR(mxrt_forward(m, s, tok, 5, logits),
                "fake_forward: token 5 at batch 1, position 3 is out of range [0, 5)");
    tok[8] = -1;
    CHECK_ERROR(mxrt_forward(m, s, tok, 5, logits), "token -1 at batch 1, position 3");
    tok[8] = 3;
    CHECK_ERROR(mxrt_step(NULL, s, tok, logits), "step: model is NULL");
    CHECK_ERROR(mxrt_step(m, s2, tok, logits), "fake_step: state belongs to another model");
    CHECK_ERROR(mxrt_step(m, s, NULL, logits), "tokens is NULL");
    CHECK_ERROR(mxrt_step(m, s, tok, NULL), "logits is NULL");
    int32_t bad[2] = {0, 99};
    CHECK_ERROR(mxrt_step(m, s, bad, logits), "fake_step: token 99 at batch 1, position 0");
    CU_ASSERT(n_calls == 0); /* nothing ran, so no state changed */

    /* A failure does not disturb a later success; success leaves the old message. */
    CHECK_OK(mxrt_forward(m, s, tok, 5, logits));
    CU_ASSERT(strstr(mxrt_last_error(), "token 99") != NULL);

    mxrt_state_free(s);
    mxrt_state_free(s2);
    mxrt_close(m);
    mxrt_close(m2);
}

/* The real golden checkpoint, bound through a descriptor shaped like a Mamba model's. */
static void test_golden_bind(void)
{
    static MxrtTensorSpec specs[23];
    static char names[23][80];
    const char *per_layer[] = {"norm.weight", "mixer.A_log", "mixer.D", "mixer.in_proj.weight",
                               "mixer.conv1d.weight", "mixer.conv1d.bias",
                               "mixer.x_proj.weight", "mixer.dt_proj.weight",
                               "mixer.dt_proj.bias", "mixer.out_proj.weight"};
    const int64_t dims[10][3] = {{64}, {128, 16}, {128}, {256, 64}, {128, 1, 4}, {128},
                                 {36, 128}, {128, 4}, {128}, {64, 128}};
    const int ranks[10] = {1, 2, 1, 2, 3, 1, 2, 2, 1, 2};
    int n = 0;
    specs[n++] = (MxrtTensorSpec){"backbone.embedding.weight", "lm_head.weight", 2, 0,
                                  {128, 64}, {0}};
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 10; k++) {
            snprintf(names[n], sizeof names[n], "backbone.layers.%d.%s", l, per_layer[k]);
            specs[n] = (MxrtTensorSpec){names[n], NULL, ranks[k], 0,
                                        {dims[k][0], dims[k][1], dims[k][2], 0}, {0}};
            n++;
        }
    specs[n++] = (MxrtTensorSpec){"backbone.norm_f.weight", NULL, 1, 0, {64}, {0}};
    specs[n++] = (MxrtTensorSpec){"lm_head.weight", "backbone.embedding.weight", 2, 0,
                                  {128, 64}, {0}};
    MxrtModelDesc d = fake_desc();
    d.name = "mamba_tiny";
    d.weights = specs;
    d.n_weights = n;
    d.vocab_size = d.vocab_padded = 128;
    MxrtModel *m;
    CHECK_OK(mxrt_open(&d, src_path("golden/mamba_tiny/model.safetensors"), &m));
    mxrt_close(m);

    specs[2].dims[1] = 17;
    CHECK_ERROR(mxrt_open(&d, src_path("golden/mamba_tiny/model.safetensors"), &m),
                "tensor 'backbone.layers.0.mixer.A_log' has shape [128, 16] but the model "
                "expects [128, 17]");
}

/* --- main ---------------------------------------------------------------------------------- */

/* Files and folders (one level deep: the shard folders) under `path`, then path itself. */
static void remove_tree(const char *path, int depth)
{
    DIR *dir = opendir(path);
    if (!dir)
        return;
    struct dirent *e;
    char sub[1024];
    while ((e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        if (unlink(sub) != 0 && depth > 0)
            remove_tree(sub, depth - 1);
    }
    closedir(dir);
    rmdir(path);
}

static void remove_tmp_dir(void) { remove_tree(tmp_dir, 1); }

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/mxrt-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite err = CU_add_suite("error", NULL, NULL);
    TEST_ADD(err, test_error_basics);
    CU_pSuite json = CU_add_suite("json", NULL, NULL);
    TEST_ADD(json, test_json_valid);
    TEST_ADD(json, test_json_numbers);
    TEST_ADD(json, test_json_strings);
    TEST_ADD(json, test_json_malformed);
    TEST_ADD(json, test_json_limits);
    CU_pSuite st = CU_add_suite("safetensors", NULL, NULL);
    TEST_ADD(st, test_st_golden);
    TEST_ADD(st, test_st_write_read);
    TEST_ADD(st, test_st_hostile);
    TEST_ADD(st, test_st_mutations);
    TEST_ADD(st, test_st_convert);
    CU_pSuite bind = CU_add_suite("bind", NULL, NULL);
    TEST_ADD(bind, test_bind_basic);
    TEST_ADD(bind, test_bind_problems);
    TEST_ADD(bind, test_bind_convert);
    TEST_ADD(bind, test_bind_transform);
    TEST_ADD(bind, test_checkpoint_shards);
    TEST_ADD(bind, test_checkpoint_bad_indexes);
    TEST_ADD(bind, test_golden_bind);
    CU_pSuite rt = CU_add_suite("runtime", NULL, NULL);
    TEST_ADD(rt, test_open_errors);
    TEST_ADD(rt, test_threads);
    TEST_ADD(rt, test_states);
    TEST_ADD(rt, test_forward_chunks);
    TEST_ADD(rt, test_argument_errors);
    int rc = test_run_all();
    remove_tmp_dir();
    return rc;
}
