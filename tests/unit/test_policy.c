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
	snprintf(o.chip, sizeof(o.chip), "esp32");
	o.ring_max = 10000;
	o.window.start = o.window.end = -1;
	o.min_battery = -1;
	return o;
}

static struct offer
mk_chip(int64_t release, const char *version, const char *chip)
{
	struct offer o = mk(release, version, "");

	snprintf(o.chip, sizeof(o.chip), "%s", chip);
	return o;
}

static struct decision
decide_full(const struct device_facts *dev, const struct offer *offers,
    size_t n)
{
	struct decision d;

	policy_decide(dev, offers, n, NULL, 1700000000, &d);
	assert_true((d.kind == DECISION_OFFER) == (d.offer != NULL));
	if (d.kind == DECISION_OFFER)
		assert_int_equal(d.reason, REASON_NONE);
	return d;
}

/* Why nothing is offered to dev (and that nothing is). */
static enum decision_reason
refusal(const struct device_facts *dev, const struct offer *offers, size_t n)
{
	struct decision d = decide_full(dev, offers, n);

	assert_null(d.offer);
	return d.reason;
}

static const struct offer *
decide(const char *version, const char *product, const struct offer *offers,
    size_t n)
{
	struct device_facts dev = {"dev-1", version, product, NULL, NULL, -1, -1, NULL, -1, 0};
	struct decision d;

	policy_decide(&dev, offers, n, NULL, 1700000000, &d);
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

static void
test_chip(void **state)
{
	struct offer offers[] = {mk_chip(2, "2.0.0", "esp32c3"),
	    mk_chip(1, "1.5.0", "esp32")};
	struct device_facts dev = {"d", "1.0.0", NULL, "esp32", NULL, -1, -1, NULL, -1, 0};
	struct decision d;

	(void)state;
	/* a known ESP32 skips the newer C3 release for its own chip's */
	d = decide_full(&dev, offers, 2);
	assert_ptr_equal(d.offer, &offers[1]);
	dev.chip = "esp32c3";
	assert_ptr_equal(decide_full(&dev, offers, 2).offer, &offers[0]);
	dev.chip = "esp32s3";
	d = decide_full(&dev, offers, 2);
	assert_null(d.offer);
	assert_int_equal(d.reason, REASON_NONE);
	/* unknown chip, two chips on offer: no guess */
	dev.chip = NULL;
	d = decide_full(&dev, offers, 2);
	assert_null(d.offer);
	assert_int_equal(d.reason, REASON_CHIP);
	assert_string_equal(policy_reason_name(d.reason), "chip");
	/* unknown chip, one chip on offer: offered */
	assert_ptr_equal(decide_full(&dev, offers + 1, 1).offer, &offers[1]);
}

static void
test_hw_rev(void **state)
{
	struct offer offers[] = {mk(1, "2.0.0", "")};
	struct device_facts dev = {"d", "1.0.0", NULL, NULL, NULL, -1, -1, NULL, -1, 0};

	(void)state;
	snprintf(offers[0].hw_rev, sizeof(offers[0].hw_rev), "B");
	assert_null(decide_full(&dev, offers, 1).offer);
	dev.hw_rev = "A";
	assert_null(decide_full(&dev, offers, 1).offer);
	dev.hw_rev = "B";
	assert_non_null(decide_full(&dev, offers, 1).offer);
}

static void
test_secure_version(void **state)
{
	struct offer offers[] = {mk(1, "2.0.0", "")};
	struct device_facts dev = {"d", "1.0.0", NULL, NULL, NULL, -1, -1, NULL, -1, 0};
	struct decision d;

	(void)state;
	offers[0].secure_version = 1;
	assert_non_null(decide_full(&dev, offers, 1).offer);
	dev.secure_version = 1;
	assert_non_null(decide_full(&dev, offers, 1).offer);
	dev.secure_version = 2;
	d = decide_full(&dev, offers, 1);
	assert_null(d.offer);
	assert_int_equal(d.reason, REASON_SECURE_VERSION);
	assert_string_equal(policy_reason_name(d.reason), "secure-version");
	/* up to date beats the reason: nothing to say */
	dev.version = "2.0.0";
	d = decide_full(&dev, offers, 1);
	assert_int_equal(d.reason, REASON_NONE);
}

static struct offer
mk_from(int64_t release, const char *version, const char *min_from)
{
	struct offer o = mk(release, version, "");

	snprintf(o.min_from, sizeof(o.min_from), "%s", min_from);
	return o;
}

static const struct offer *
via(const char *version, const struct offer *target, const struct offer *st,
    size_t nst, enum decision_reason *reason)
{
	struct device_facts dev = {"d", version, NULL, NULL, NULL, -1, -1, NULL, -1, 0};
	struct stones stones = {st, nst};
	struct decision d;

	policy_decide(&dev, target, 1, &stones, 1700000000, &d);
	*reason = d.reason;
	if (d.offer != NULL)
		assert_ptr_equal(d.target, target);
	return d.offer;
}

static void
test_space(void **state)
{
	struct offer offers[] = {mk(1, "2.0.0", "")};
	struct device_facts dev = {"d", "1.0.0", NULL, NULL, NULL, -1, -1, NULL, -1, 0};
	struct decision d;

	(void)state;
	offers[0].size = 1286096;
	assert_non_null(decide_full(&dev, offers, 1).offer);
	dev.free_space = 1286096;
	assert_non_null(decide_full(&dev, offers, 1).offer);
	dev.free_space = 1286095;
	d = decide_full(&dev, offers, 1);
	assert_null(d.offer);
	assert_int_equal(d.reason, REASON_SPACE);
	assert_string_equal(policy_reason_name(d.reason), "space");
}

static void
test_stepping_stones(void **state)
{
	struct offer target = mk_from(9, "3.0.0", "2.0.0");
	struct offer st[] = {mk_from(9, "3.0.0", "2.0.0"), mk(8, "2.5.0", ""),
	    mk(7, "2.0.0", ""), mk(6, "1.5.0", "")};
	enum decision_reason why;

	(void)state;
	/* old enough to need a step: the newest one that leads on */
	assert_ptr_equal(via("1.0.0", &target, st, 4, &why), &st[1]);
	/* past min_from: straight to the target */
	assert_ptr_equal(via("2.0.0", &target, st, 4, &why), &target);
	assert_ptr_equal(via("2.7.0", &target, st, 4, &why), &target);
	/* no stones: nothing, and why */
	assert_null(via("1.0.0", &target, st, 0, &why));
	assert_int_equal(why, REASON_UPGRADE_PATH);
	assert_string_equal(policy_reason_name(why), "upgrade-path");
	/* a stone the device cannot take itself is skipped */
	snprintf(st[1].min_from, sizeof(st[1].min_from), "2.0.0");
	assert_ptr_equal(via("1.0.0", &target, st, 4, &why), &st[2]);
	/* a chain: 1.0 -> 1.5 -> 2.0 (which needs 1.5) -> 3.0 */
	snprintf(st[2].min_from, sizeof(st[2].min_from), "1.5.0");
	assert_ptr_equal(via("1.0.0", &target, st, 4, &why), &st[3]);
	/* a stone of another chip leads nowhere for this one */
	snprintf(st[3].chip, sizeof(st[3].chip), "esp32c3");
	assert_null(via("1.0.0", &target, st, 4, &why));
	assert_int_equal(why, REASON_UPGRADE_PATH);
}

static void
test_rings_and_groups(void **state)
{
	struct offer offers[] = {mk(1, "2.0.0", "")};
	struct device_facts dev = {"dev-x", "1.0.0", NULL, NULL, NULL, -1, -1,
	    NULL, -1, 0};
	unsigned place;
	char id[16];
	int in = 0, i;

	(void)state;
	offers[0].rollout_id = 7;
	offers[0].ring_max = 0; /* only a canary group so far */
	snprintf(offers[0].groups[0], sizeof(offers[0].groups[0]), "canary");
	offers[0].ngroups = 1;
	assert_null(decide_full(&dev, offers, 1).offer);
	dev.group = "canary";
	assert_non_null(decide_full(&dev, offers, 1).offer);
	dev.group = "field";
	assert_null(decide_full(&dev, offers, 1).offer);
	/* a ring: exactly the devices whose place is below it */
	place = stages_ring(7, "dev-x");
	offers[0].ring_max = place;
	assert_null(decide_full(&dev, offers, 1).offer);
	offers[0].ring_max = place + 1;
	assert_non_null(decide_full(&dev, offers, 1).offer);
	/* 10% of 2000 devices, give or take */
	offers[0].ring_max = 1000;
	for (i = 0; i < 2000; i++) {
		snprintf(id, sizeof(id), "d%d", i);
		dev.id = id;
		in += decide_full(&dev, offers, 1).offer != NULL;
	}
	assert_true(in > 150 && in < 250);
	/*
	 * A count stage: up to its cut in (ring, id) order, the tie on
	 * the cut's own ring broken by id, and not past it.
	 */
	offers[0].ring_max = 0;
	dev.id = "dev-x";
	offers[0].cut_ring = (int)place;
	snprintf(offers[0].cut_device, sizeof(offers[0].cut_device),
	    "dev-x");
	assert_non_null(decide_full(&dev, offers, 1).offer);
	snprintf(offers[0].cut_device, sizeof(offers[0].cut_device),
	    "dev-w");
	assert_null(decide_full(&dev, offers, 1).offer);
	offers[0].cut_ring = (int)place - 1;
	snprintf(offers[0].cut_device, sizeof(offers[0].cut_device), "zzz");
	assert_null(decide_full(&dev, offers, 1).offer);
	offers[0].cut_ring = (int)place + 1;
	offers[0].cut_device[0] = '\0';
	assert_non_null(decide_full(&dev, offers, 1).offer);
	offers[0].cut_ring = -1; /* no count stage reached */
	assert_null(decide_full(&dev, offers, 1).offer);
	/* a rolled-back release is not offered again */
	offers[0].ring_max = 10000;
	dev.refused_release = 1;
	assert_null(decide_full(&dev, offers, 1).offer);
}

static void
test_deferrals_and_forced(void **state)
{
	struct offer offers[] = {mk(1, "2.0.0", "")};
	struct device_facts dev = {"d", "1.0.0", NULL, NULL, NULL, -1, -1,
	    NULL, -1, 0};
	struct decision d;

	(void)state;
	/* a window that never includes now: 1700000000 is 22:13 UTC */
	stages_parse_window("01:00-05:00", &offers[0].window);
	d = decide_full(&dev, offers, 1);
	assert_null(d.offer);
	assert_int_equal(d.reason, REASON_WINDOW);
	offers[0].window.start = -1;
	offers[0].min_battery = 40;
	dev.battery = 39;
	d = decide_full(&dev, offers, 1);
	assert_int_equal(d.reason, REASON_BATTERY);
	assert_string_equal(policy_reason_name(d.reason), "battery");
	dev.battery = -1; /* unknown: not held back */
	assert_non_null(decide_full(&dev, offers, 1).offer);
	dev.battery = 40;
	assert_non_null(decide_full(&dev, offers, 1).offer);
	/* quarantined (decide_full's now is 1700000000): nothing, until then */
	dev.quarantined_until = 1700000001;
	d = decide_full(&dev, offers, 1);
	assert_null(d.offer);
	assert_string_equal(policy_reason_name(d.reason), "quarantine");
	dev.quarantined_until = 1700000000;
	assert_non_null(decide_full(&dev, offers, 1).offer);
	dev.quarantined_until = 0;
	/* forced: skips window and battery, never anti-rollback or chip */
	dev.battery = 5;
	stages_parse_window("01:00-05:00", &offers[0].window);
	offers[0].forced = 1;
	assert_non_null(decide_full(&dev, offers, 1).offer);
	offers[0].secure_version = 1;
	dev.secure_version = 2;
	assert_int_equal(decide_full(&dev, offers, 1).reason,
	    REASON_SECURE_VERSION);
	dev.secure_version = -1;
	/* nor quarantine */
	dev.quarantined_until = 1700000001;
	assert_int_equal(decide_full(&dev, offers, 1).reason,
	    REASON_QUARANTINE);
	dev.quarantined_until = 0;
	dev.chip = "esp32c3";
	assert_null(decide_full(&dev, offers, 1).offer);
}

static void
test_downgrade(void **state)
{
	struct offer offers[] = {mk(1, "1.5.0", "")};
	struct device_facts dev = {"d", "2.0.0", NULL, NULL, NULL, -1, -1,
	    NULL, -1, 0};

	(void)state;
	assert_null(decide_full(&dev, offers, 1).offer);
	offers[0].downgrade = 1;
	assert_non_null(decide_full(&dev, offers, 1).offer);
	dev.version = "1.5.0";
	assert_null(decide_full(&dev, offers, 1).offer);
}

/*
 * A revert of a halted 2.0.0 to 1.5.0: offered (first, forced) to devices
 * on 2.0.0 alone, beside the 1.5.0 baseline every device may take; a
 * device whose eFuse 2.0.0 raised is refused it.
 */
static void
test_revert(void **state)
{
	struct offer offers[] = {mk(2, "1.5.0", ""), mk(3, "1.5.0", "")};
	struct device_facts dev = {"d", "2.0.0", NULL, NULL, NULL, -1, -1,
	    NULL, -1, 0};
	struct decision d;

	(void)state;
	/* the snapshot puts the revert before the baseline of its release */
	offers[0].downgrade = offers[0].forced = 1;
	snprintf(offers[0].only_version, sizeof(offers[0].only_version),
	    "2.0.0");
	stages_parse_window("01:00-05:00", &offers[0].window); /* closed */
	d = decide_full(&dev, offers, 2);
	assert_non_null(d.offer);
	assert_int_equal(d.offer->rollout_id, 2);
	/* on another version: the revert is not for it */
	dev.version = "1.0.0";
	assert_int_equal(decide_full(&dev, offers, 2).offer->rollout_id, 3);
	dev.version = "2.0.1";
	assert_null(decide_full(&dev, offers, 2).offer);
	/* raised by 2.0.0: it cannot go back */
	dev.version = "2.0.0";
	dev.secure_version = 1;
	assert_int_equal(refusal(&dev, offers, 2), REASON_SECURE_VERSION);
}

/* A request gets only its kind: never an app into a file system. */
static void
test_kinds(void **state)
{
	struct offer offers[3] = {mk(1, "2.0.0", ""), mk(2, "2024.1.0", ""),
	    mk(3, "2024.2.0", "")};
	struct device_facts dev = {"d", "1.0.0", NULL, "esp32", NULL, 5, 100,
	    NULL, -1, 0};
	struct decision d;

	(void)state;
	offers[0].secure_version = 5;
	offers[1].kind = KIND_LITTLEFS;
	offers[1].chip[0] = '\0'; /* a file system is for any chip */
	offers[1].size = 4096;
	/* an app request: the app, never the newer file system */
	assert_ptr_equal(decide_full(&dev, offers, 2).offer, &offers[0]);
	/* littlefs: the file system, though its size exceeds free_space
	   (the app slot) and it has no anti-rollback level */
	dev.kind = KIND_LITTLEFS;
	dev.version = "";
	assert_ptr_equal(decide_full(&dev, offers, 2).offer, &offers[1]);
	dev.version = "2024.1.0";
	assert_null(decide_full(&dev, offers, 2).offer);
	/* but not larger than the flash */
	dev.version = "";
	dev.flash_size = 2048;
	assert_int_equal(refusal(&dev, offers, 2), REASON_SPACE);
	dev.flash_size = 0;
	/* nothing of the kind asked for: mode */
	dev.kind = KIND_SPIFFS;
	d = decide_full(&dev, offers, 2);
	assert_null(d.offer);
	assert_int_equal(d.reason, REASON_MODE);
	assert_string_equal(policy_reason_name(d.reason), "mode");
	/* any file system: one kind is fine, two are a guess */
	dev.kind = KIND_ANY_FS;
	assert_ptr_equal(decide_full(&dev, offers, 2).offer, &offers[1]);
	offers[2].kind = KIND_SPIFFS;
	offers[2].chip[0] = '\0';
	/* offers are newest first */
	{
		struct offer sorted[2] = {offers[2], offers[1]};

		d = decide_full(&dev, sorted, 2);
		assert_null(d.offer);
		assert_int_equal(d.reason, REASON_MODE);
	}
}

/* An unknown version ("") is older than every release. */
static void
test_unknown_version(void **state)
{
	struct offer offers[1] = {mk(1, "b1c75d1-dirty", "")};
	struct device_facts dev = {"d", "", NULL, NULL, NULL, -1, -1, NULL,
	    -1, 0};

	(void)state;
	assert_ptr_equal(decide_full(&dev, offers, 1).offer, &offers[0]);
	dev.version = "b1c75d1-dirty";
	assert_null(decide_full(&dev, offers, 1).offer);
}

/* Without an identity: only what everyone may have, and no ring. */
static void
test_everyone_only(void **state)
{
	struct offer offers[2] = {mk(1, "2.0.0", ""), mk(2, "1.0.0", "")};
	struct device_facts dev = {NULL, "", "lamp", NULL, NULL, -1, -1, NULL,
	    -1, 0};

	(void)state;
	dev.everyone_only = 1;
	offers[0].ring_max = 5000; /* a staged ring */
	offers[1].everyone = 1;    /* a publish */
	assert_ptr_equal(decide_full(&dev, offers, 2).offer, &offers[1]);
	offers[0].everyone = 1; /* completed */
	offers[0].ring_max = 10000;
	assert_ptr_equal(decide_full(&dev, offers, 2).offer, &offers[0]);
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
		cmocka_unit_test(test_chip),
		cmocka_unit_test(test_hw_rev),
		cmocka_unit_test(test_secure_version),
		cmocka_unit_test(test_stepping_stones),
		cmocka_unit_test(test_space),
		cmocka_unit_test(test_rings_and_groups),
		cmocka_unit_test(test_deferrals_and_forced),
		cmocka_unit_test(test_downgrade),
		cmocka_unit_test(test_revert),
		cmocka_unit_test(test_kinds),
		cmocka_unit_test(test_unknown_version),
		cmocka_unit_test(test_everyone_only),
	};

	return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
