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

/* Looking at a key's window spends nothing; a spent key stays spent. */
static void
test_spent_only_looks(void **state)
{
	struct ratelimit *rl = ratelimit_new(1024);
	unsigned retry = 0;
	int i;

	(void)state;
	for (i = 0; i < 10; i++)
		assert_false(ratelimit_spent(rl, "1.2.3.4", 7, 2, 600, &retry));
	assert_true(ratelimit_hit(rl, "1.2.3.4", 7, 2, 600, &retry));
	assert_false(ratelimit_spent(rl, "1.2.3.4", 7, 2, 601, &retry));
	assert_true(ratelimit_hit(rl, "1.2.3.4", 7, 2, 601, &retry));
	assert_true(ratelimit_spent(rl, "1.2.3.4", 7, 2, 602, &retry));
	assert_int_equal(retry, 58);
	assert_false(ratelimit_spent(rl, "1.2.3.4", 7, 0, 602, &retry));
	assert_false(ratelimit_spent(rl, "1.2.3.4", 7, 2, 660, &retry));
	ratelimit_free(rl);
}

/* Connections held at once: taken up to the cap, given back on close. */
static void
test_connection_cap(void **state)
{
	struct conncap *c = conncap_new(1024);
	static const unsigned char a[4] = {192, 0, 2, 1}, b[4] = {192, 0, 2, 2};
	int i;

	(void)state;
	for (i = 0; i < 3; i++)
		assert_true(conncap_take(c, a, 4, 3));
	assert_false(conncap_take(c, a, 4, 3)); /* the fourth at once */
	assert_true(conncap_take(c, b, 4, 3));  /* another address */
	conncap_give(c, a, 4);
	assert_true(conncap_take(c, a, 4, 3));  /* one closed, one more */
	assert_false(conncap_take(c, a, 4, 3));
	/* no cap; a give with nothing taken never goes below zero */
	for (i = 0; i < 100; i++)
		assert_true(conncap_take(c, b, 4, 0));
	for (i = 0; i < 200; i++)
		conncap_give(c, b, 4);
	assert_true(conncap_take(c, b, 4, 1));
	assert_false(conncap_take(c, b, 4, 1));
	conncap_free(c);
	conncap_free(NULL);
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
		cmocka_unit_test(test_spent_only_looks),
		cmocka_unit_test(test_connection_cap),
		cmocka_unit_test(test_tokens),
	};

	return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
