/*
 * test_version.c — the version macros of ctrio.h, ctrio_version() and
 * ctrio_version_hex(): the header's numbers are CMake's project(VERSION)
 * (passed in as CTRIO_TEST_PROJECT_VERSION), so that a release cannot ship a
 * header, a library and a SONAME that disagree; the library reports the
 * header's version; the hex form orders versions as the numbers do.
 */
#include "support.h"

#include <stdio.h>
#include <string.h>

#ifndef CTRIO_TEST_PROJECT_VERSION
#error "tests/CMakeLists.txt passes CMake's PROJECT_VERSION as CTRIO_TEST_PROJECT_VERSION"
#endif

/* The header's three numbers are CMake's project(VERSION), and the string
 * macro spells them. */
static void test_header_is_project_version(void **state)
{
    (void)state;
    char mine[32];
    snprintf(mine, sizeof mine, "%d.%d.%d", CTRIO_VERSION_MAJOR, CTRIO_VERSION_MINOR,
             CTRIO_VERSION_PATCH);
    assert_string_equal(mine, CTRIO_TEST_PROJECT_VERSION);
    assert_string_equal(CTRIO_VERSION_STRING, CTRIO_TEST_PROJECT_VERSION);
}

/* One byte per part, so that comparing hex values compares versions. */
static void test_hex(void **state)
{
    (void)state;
    assert_true(CTRIO_VERSION_MINOR < 256 && CTRIO_VERSION_PATCH < 256);
    assert_int_equal(CTRIO_VERSION_HEX, (CTRIO_VERSION_MAJOR << 16) |
                                            (CTRIO_VERSION_MINOR << 8) | CTRIO_VERSION_PATCH);
#if CTRIO_VERSION_HEX < 0x000100
#error "CTRIO_VERSION_HEX must be usable in #if"
#endif
}

/* The library is the one this header describes (the test links it
 * statically, so they cannot differ unless version.c is wrong); both calls
 * need no run. */
static void test_library_version(void **state)
{
    (void)state;
    assert_non_null(ctrio_version());
    assert_string_equal(ctrio_version(), CTRIO_VERSION_STRING);
    assert_int_equal(ctrio_version_hex(), CTRIO_VERSION_HEX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_header_is_project_version),
        TEST(test_hex),
        TEST(test_library_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
