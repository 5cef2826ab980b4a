/* ratelimit: caps per key and window; collisions never loosen a cap */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "auth.h"
#include "ratelimit.h"

static void
test_cap_and_window(void **state)
{
	struct ratelimit *rl = ratelimit_new(1024);
	unsigned retry = 0;
	int i;

	(void)state;
	for (i = 0; i < 5; i++)
		assert_true(ratelimit_hit(rl, "dev-1", 5, 5, 6000, &retry));
	assert_false(ratelimit_hit(rl, "dev-1", 5, 5, 6010, &retry));
	assert_int_equal(retry, 50);
	/* another key is not held back */
	assert_true(ratelimit_hit(rl, "dev-2", 5, 5, 6010, &retry));
	/* the next minute starts afresh */
	assert_true(ratelimit_hit(rl, "dev-1", 5, 5, 6060, &retry));
	/* no cap */
	for (i = 0; i < 100; i++)
		assert_true(ratelimit_hit(rl, "dev-3", 5, 0, 6060, &retry));
	ratelimit_free(rl);
}

static void
test_collisions_stay_strict(void **state)
{
	/* the smallest table: every key lands among 64 slots */
	struct ratelimit *rl = ratelimit_new(1);
	unsigned retry, limited = 0;
	char key[32];
	int i;

	(void)state;
	for (i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		ratelimit_hit(rl, key, strlen(key), 3, 120, &retry);
	}
	/* a flood of keys: each still gets at most 3 in a minute */
	for (i = 0; i < 4; i++)
		limited += !ratelimit_hit(rl, "victim", 6, 3, 121, &retry);
	assert_true(limited >= 1);
	ratelimit_free(rl);
}

static void
test_tokens(void **state)
{
	char a[AUTH_TOKEN_LEN + 1], b[AUTH_TOKEN_LEN + 1], ha[65], hb[65];

	(void)state;
	assert_int_equal(auth_token_new(a), OTAD_OK);
	assert_int_equal(auth_token_new(b), OTAD_OK);
	assert_int_equal(strlen(a), AUTH_TOKEN_LEN);
	assert_string_not_equal(a, b);
	assert_int_equal(auth_token_hash(a, ha), OTAD_OK);
	assert_int_equal(auth_token_hash(b, hb), OTAD_OK);
	assert_true(auth_hash_equal(ha, ha));
	assert_false(auth_hash_equal(ha, hb));
	assert_false(auth_hash_equal(ha, ""));
	/* not ours: wrong length, case, characters */
	assert_int_equal(auth_token_hash("abc", ha), OTAD_ERR_INVALID);
	a[3] = 'G';
	assert_int_equal(auth_token_hash(a, ha), OTAD_ERR_INVALID);
	b[AUTH_TOKEN_LEN - 1] = '\0';
	assert_int_equal(auth_token_hash(b, hb), OTAD_ERR_INVALID);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cap_and_window),
		cmocka_unit_test(test_collisions_stay_strict),
		cmocka_unit_test(test_tokens),
	};

	return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
