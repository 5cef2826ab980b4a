/* semver: SemVer 2.0 precedence, extended to one total order */
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
	/* no numeric core: before every version that has one */
	ORDER("b1c75d1-dirty", "0.0.1", -1);
	ORDER("dev", "dev2", -1);
	/* natural order inside identifiers */
	ORDER("1.0.0-rc9", "1.0.0-rc10", -1);
	ORDER("1.2.3a", "1.2.3b", -1);
	ORDER("1.2.3", "1.2.3a", -1);
}

/*
 * Once not transitive: SemVer said 1.0.0-rc.1 < 1.0.0, the dpkg fallback
 * 1.0.0 < 1.0.0-beta_2, and 1.0.0-beta_2 < 1.0.0-rc.1. Now any version
 * with a '-' after its core is a prerelease of that core.
 */
static void
test_one_order_for_mixed_versions(void **state)
{
	static const char *const chain[] = {"b1c75d1", "0.9", "1.0.0-beta_2",
	    "1.0.0-rc.1", "1.0.0~rc2", "1.0.0", "1.0.0.1", "1.0.0a", "1.0.1",
	    "v2"};
	size_t i, j, n = sizeof(chain) / sizeof(chain[0]);

	(void)state;
	for (i = 0; i < n; i++)
		for (j = 0; j < n; j++)
			ORDER(chain[i], chain[j], i < j ? -1 : i > j);
	ORDER("1.0.0+a", "1.0.0", 0);
	ORDER("1.0.0-x+a", "1.0.0-x+b", 0);
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
		cmocka_unit_test(test_one_order_for_mixed_versions),
		cmocka_unit_test(test_is_semver),
		cmocka_unit_test(test_valid),
	};

	return cmocka_run_group_tests_name("semver", tests, NULL, NULL);
}
