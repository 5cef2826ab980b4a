/* rollout: how often the controller counts the fleet for /metrics */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "registry.h"
#include "rollout.h"

/* A small fleet is counted every 5 s, as README promises. */
static void
test_small_fleets_every_five_seconds(void **state)
{
	(void)state;
	assert_int_equal(rollout_gauge_wait(0), 5);
	assert_int_equal(rollout_gauge_wait(3), 5);
	assert_int_equal(rollout_gauge_wait(50), 5);
}

/*
 * A count that takes long (a million devices: about 0.4 s) waits a
 * hundred times as long for the next, so counting keeps to a percent of
 * one core; never more than a minute.
 */
static void
test_slow_counts_keep_to_a_percent(void **state)
{
	(void)state;
	assert_int_equal(rollout_gauge_wait(80), 8);
	assert_int_equal(rollout_gauge_wait(379), 37);
	assert_int_equal(rollout_gauge_wait(600), 60);
	assert_int_equal(rollout_gauge_wait(5000), 60);
	assert_int_equal(rollout_gauge_wait(INT64_MAX / 1000), 60);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small_fleets_every_five_seconds),
		cmocka_unit_test(test_slow_counts_keep_to_a_percent),
	};

	return cmocka_run_group_tests_name("rollout", tests, NULL, NULL);
}
