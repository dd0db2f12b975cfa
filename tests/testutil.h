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

#define TEST_ADD(suite, fn) CU_add_test(suite, #fn, fn)

#endif
