/* testutil.h - small helpers shared by the CUnit suites. */
#ifndef MXC_TESTUTIL_H
#define MXC_TESTUTIL_H

#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>

/* Directory of the test sources (golden files, specs): $MXC_TEST_SRCDIR or "tests". */
static inline const char *test_srcdir(void)
{
    const char *d = getenv("MXC_TEST_SRCDIR");
    return d && *d ? d : "tests";
}

/* Directory for files the tests write: $MXC_TEST_BUILDDIR or "tests". */
static inline const char *test_builddir(void)
{
    const char *d = getenv("MXC_TEST_BUILDDIR");
    return d && *d ? d : "tests";
}

/* Run every registered suite; exit status 1 if any assertion failed. */
static inline int test_run_all(void)
{
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_tests_failed() + CU_get_number_of_failures();
    unsigned ran = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    return failed || ran == 0 ? 1 : 0;
}

/* A whole file, NUL-terminated (malloc'd; *len, when given, its size, 0 on failure); NULL if
 * it cannot be read. */
static inline char *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (len) *len = 0;
        return NULL;
    }
    char *p = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (p = malloc((size_t)n + 1)) &&
        fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) p[n] = 0;
    if (len) *len = p ? (size_t)n : 0;
    return p;
}

#define TEST_ADD(suite, fn) CU_add_test(suite, #fn, fn)

#endif
