/* range: the byte ranges ESP32 clients ask for, and hostile ones */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "range.h"

#define ETAG "\"abc\""
#define TOTAL 1286096u

static struct range
parse(const char *h, const char *if_range)
{
	struct range r;

	range_parse(h, if_range, ETAG, TOTAL, &r);
	return r;
}

#define PARTIAL(h, s, l)                                                       \
	do {                                                                   \
		struct range r_ = parse(h, NULL);                              \
		assert_int_equal(r_.kind, RANGE_PARTIAL);                      \
		assert_int_equal(r_.start, s);                                 \
		assert_int_equal(r_.len, l);                                   \
	} while (0)
#define WHOLE(h) assert_int_equal(parse(h, NULL).kind, RANGE_NONE)
#define REFUSED(h) assert_int_equal(parse(h, NULL).kind, RANGE_UNSATISFIABLE)

static void
test_esp_https_ota(void **state)
{
	(void)state;
	/* 64 KiB chunks, then the open-ended last one */
	PARTIAL("bytes=0-65535", 0, 65536);
	PARTIAL("bytes=65536-131071", 65536, 65536);
	PARTIAL("bytes=1245184-", 1245184, TOTAL - 1245184);
	/* a resume asks for one byte past the end: clamped */
	PARTIAL("bytes=600000-1286096", 600000, TOTAL - 600000);
	PARTIAL("bytes=600000-99999999999", 600000, TOTAL - 600000);
	/* the last byte, the first byte */
	PARTIAL("bytes=1286095-", 1286095, 1);
	PARTIAL("bytes=0-0", 0, 1);
	/* suffix ranges */
	PARTIAL("bytes=-100", TOTAL - 100, 100);
	PARTIAL("bytes=-99999999", 0, TOTAL);
	/* spelling that is still one range */
	PARTIAL("Bytes = 10 - 19", 10, 10);
}

static void
test_unsatisfiable(void **state)
{
	(void)state;
	REFUSED("bytes=1286096-");
	REFUSED("bytes=1286096-1286100");
	REFUSED("bytes=99999999999999999999999-");
	REFUSED("bytes=-0");
}

static void
test_whole_file(void **state)
{
	(void)state;
	WHOLE(NULL);
	WHOLE("");
	WHOLE("bytes=0-1,5-6");        /* several ranges */
	WHOLE("bytes=5-2");            /* last before first */
	WHOLE("bytes=a-b");
	WHOLE("bytes=-");
	WHOLE("bytes=--5");
	WHOLE("bytes=1-2x");
	WHOLE("items=0-5");
	WHOLE("bytes 0-5");
	WHOLE("bytes=-5-6");
}

static void
test_if_range(void **state)
{
	(void)state;
	assert_int_equal(parse("bytes=10-", ETAG).kind, RANGE_PARTIAL);
	/* a stale validator: the whole file */
	assert_int_equal(parse("bytes=10-", "\"old\"").kind, RANGE_NONE);
	assert_int_equal(parse("bytes=10-", "W/\"abc\"").kind, RANGE_NONE);
	assert_int_equal(parse("bytes=10-",
	    "Fri, 20 Nov 2026 10:00:00 GMT").kind, RANGE_NONE);
}

/* Where a download goes on: one range that starts past byte 0. */
static void
test_continues(void **state)
{
	(void)state;
	assert_true(range_continues("bytes=4096-8191"));
	assert_true(range_continues("bytes=500000-"));
	assert_true(range_continues("bytes=-100"));
	assert_false(range_continues("bytes=0-4095"));
	assert_false(range_continues("bytes=0-"));
	assert_false(range_continues(NULL));
	assert_false(range_continues("bytes=5-1"));
	assert_false(range_continues("bytes=1-2,5-6"));
	assert_false(range_continues("pages=3-4"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_esp_https_ota),
		cmocka_unit_test(test_unsatisfiable),
		cmocka_unit_test(test_whole_file),
		cmocka_unit_test(test_if_range),
		cmocka_unit_test(test_continues),
	};

	return cmocka_run_group_tests_name("range", tests, NULL, NULL);
}
