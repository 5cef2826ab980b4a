/* policy: the offer decision, a pure function */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"

static struct offer
mk(int64_t release, const char *version, const char *product)
{
	struct offer o;

	memset(&o, 0, sizeof(o));
	o.release_id = release;
	o.rollout_id = release;
	snprintf(o.version, sizeof(o.version), "%s", version);
	snprintf(o.product, sizeof(o.product), "%s", product);
	return o;
}

static const struct offer *
decide(const char *version, const char *product, const struct offer *offers,
    size_t n)
{
	struct device_facts dev = {"dev-1", version, product};
	struct decision d;

	policy_decide(&dev, offers, n, 1700000000, &d);
	if (d.kind == DECISION_NONE) {
		assert_null(d.offer);
		return NULL;
	}
	assert_non_null(d.offer);
	return d.offer;
}

static void
test_nothing_published(void **state)
{
	(void)state;
	assert_null(decide("1.0.0", NULL, NULL, 0));
}

static void
test_older_gets_offer_newer_and_equal_do_not(void **state)
{
	struct offer offers[] = {mk(1, "0.14.3", "")};

	(void)state;
	assert_ptr_equal(decide("0.14.2", NULL, offers, 1), &offers[0]);
	assert_ptr_equal(decide("0.9.0", NULL, offers, 1), &offers[0]);
	assert_null(decide("0.14.3", NULL, offers, 1));
	assert_null(decide("v0.14.3", NULL, offers, 1));
	assert_null(decide("0.14.10", NULL, offers, 1));
	assert_ptr_equal(decide("0.14.3-rc.1", NULL, offers, 1), &offers[0]);
}

static void
test_newest_first(void **state)
{
	/* snapshots sort newest first; the first match wins */
	struct offer offers[] = {mk(2, "2.0.0", ""), mk(1, "1.0.0", "")};

	(void)state;
	assert_ptr_equal(decide("0.5.0", NULL, offers, 2), &offers[0]);
	assert_ptr_equal(decide("1.5.0", NULL, offers, 2), &offers[0]);
	assert_null(decide("2.0.0", NULL, offers, 2));
}

static void
test_product_rules(void **state)
{
	struct offer offers[] = {mk(3, "3.0.0", ""), mk(2, "2.0.0", "wled"),
	    mk(1, "1.0.0", "sensor")};

	(void)state;
	/* a product's own release wins over an unrestricted one */
	assert_ptr_equal(decide("1.0.0", "wled", offers, 3), &offers[1]);
	assert_ptr_equal(decide("0.1.0", "sensor", offers, 3), &offers[2]);
	/* on its product's newest: left alone even if a generic is newer */
	assert_null(decide("2.0.0", "wled", offers, 3));
	/* no product, or one without a release: the unrestricted one */
	assert_ptr_equal(decide("1.0.0", NULL, offers, 3), &offers[0]);
	assert_ptr_equal(decide("1.0.0", "", offers, 3), &offers[0]);
	assert_ptr_equal(decide("1.0.0", "other", offers, 3), &offers[0]);
}

static void
test_product_only_releases(void **state)
{
	struct offer offers[] = {mk(1, "1.0.0", "wled")};

	(void)state;
	/* never offered to a device that is not of that product */
	assert_null(decide("0.1.0", NULL, offers, 1));
	assert_null(decide("0.1.0", "sensor", offers, 1));
	assert_non_null(decide("0.1.0", "wled", offers, 1));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nothing_published),
		cmocka_unit_test(test_older_gets_offer_newer_and_equal_do_not),
		cmocka_unit_test(test_newest_first),
		cmocka_unit_test(test_product_rules),
		cmocka_unit_test(test_product_only_releases),
	};

	return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
