/* semver: SemVer 2.0 precedence and the dpkg-order fallback */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "semver.h"

static int
sign(int v)
{
	return (v > 0) - (v < 0);
}

#define ORDER(a, b, want)                                                      \
	do {                                                                   \
		assert_int_equal(sign(semver_compare(a, b)), want);            \
		assert_int_equal(sign(semver_compare(b, a)), -(want));         \
	} while (0)

static void
test_semver_precedence(void **state)
{
	(void)state;
	ORDER("1.0.0", "1.0.0", 0);
	ORDER("0.14.3", "0.14.10", -1);
	ORDER("1.9.0", "1.10.0", -1);
	ORDER("2.0.0", "10.0.0", -1);
	ORDER("v1.2.3", "1.2.3", 0);
	ORDER("1.2", "1.2.0", 0);
	ORDER("1", "1.0.0", 0);
	ORDER("1.0.0+build.1", "1.0.0+build.2", 0);
	/* the example chain of SemVer 2.0, section 11 */
	ORDER("1.0.0-alpha", "1.0.0-alpha.1", -1);
	ORDER("1.0.0-alpha.1", "1.0.0-alpha.beta", -1);
	ORDER("1.0.0-alpha.beta", "1.0.0-beta", -1);
	ORDER("1.0.0-beta", "1.0.0-beta.2", -1);
	ORDER("1.0.0-beta.2", "1.0.0-beta.11", -1);
	ORDER("1.0.0-beta.11", "1.0.0-rc.1", -1);
	ORDER("1.0.0-rc.1", "1.0.0", -1);
	ORDER("1.0.0-rc.01", "1.0.0-rc.1", 0);
	ORDER("18446744073709551615.0.0", "1.0.0", 1);
}

static void
test_fallback_order(void **state)
{
	(void)state;
	/* not semver: four parts, words, dates */
	ORDER("1.2.3.4", "1.2.3.10", -1);
	ORDER("1.2.3.4", "1.2.4", -1);
	ORDER("2024.01.15", "2024.2.1", -1);
	ORDER("build-7", "build-12", -1);
	ORDER("1.0~rc1", "1.0", -1);
	ORDER("abc", "abc", 0);
	/* overflowing numbers fall back without breaking */
	ORDER("99999999999999999999999.0.0", "1.0.0", 1);
}

static void
test_is_semver(void **state)
{
	(void)state;
	assert_true(semver_is_semver("0.14.3"));
	assert_true(semver_is_semver("v1.0.0-rc.1+sha.5114f85"));
	assert_false(semver_is_semver("1.2.3.4"));
	assert_false(semver_is_semver("1.0.0-"));
	assert_false(semver_is_semver("1.0.0-a..b"));
	assert_false(semver_is_semver("1.0.0+"));
	assert_false(semver_is_semver("b1c75d1-dirty"));
	assert_false(semver_is_semver(""));
}

static void
test_valid(void **state)
{
	char long_version[80];

	(void)state;
	assert_true(semver_valid("0.14.3"));
	assert_true(semver_valid("b1c75d1-dirty"));
	assert_false(semver_valid(""));
	assert_false(semver_valid("1.0 beta"));
	assert_false(semver_valid("1.0\n"));
	assert_false(semver_valid("1.0\x7f"));
	assert_false(semver_valid("1.0\xc3\xa9"));
	memset(long_version, '1', 64);
	long_version[64] = '\0';
	assert_true(semver_valid(long_version));
	long_version[64] = '1';
	long_version[65] = '\0';
	assert_false(semver_valid(long_version));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_semver_precedence),
		cmocka_unit_test(test_fallback_order),
		cmocka_unit_test(test_is_semver),
		cmocka_unit_test(test_valid),
	};

	return cmocka_run_group_tests_name("semver", tests, NULL, NULL);
}
