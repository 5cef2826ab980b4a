/*
 * devcache: the device rows otad keeps in memory. The writer's puts, the
 * readers' copies, clears and the epochs that keep a put read before a
 * clear from landing after it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "registry_impl.h"

static struct device_row
row_of(const char *version, const char *group, int blocked)
{
	struct device_row r;

	memset(&r, 0, sizeof(r));
	snprintf(r.version, sizeof(r.version), "%s", version);
	snprintf(r.group, sizeof(r.group), "%s", group);
	snprintf(r.chip, sizeof(r.chip), "esp32c3");
	snprintf(r.token_hash, sizeof(r.token_hash), "%064d", 7);
	snprintf(r.running_sha256, sizeof(r.running_sha256), "%064d", 9);
	snprintf(r.fs_version, sizeof(r.fs_version), "fs-1");
	snprintf(r.product, sizeof(r.product), "lamp");
	snprintf(r.hw_rev, sizeof(r.hw_rev), "rev3");
	r.secure_version = 4;
	r.battery = 55;
	r.blocked = blocked;
	return r;
}

static void
test_a_put_row_reads_back_whole(void **state)
{
	struct devcache *c = devcache_new(10);
	struct device_row in = row_of("1.2.3", "canary", 1), out;
	struct devcache_stats st;

	(void)state;
	assert_int_equal(devcache_get(c, "dev-1", &out), 0);
	devcache_put(c, "dev-1", &in, devcache_epoch(c), 0);
	memset(&out, 'x', sizeof(out));
	assert_int_equal(devcache_get(c, "dev-1", &out), 1);
	assert_string_equal(out.version, "1.2.3");
	assert_string_equal(out.group, "canary");
	assert_string_equal(out.chip, "esp32c3");
	assert_string_equal(out.product, "lamp");
	assert_string_equal(out.hw_rev, "rev3");
	assert_string_equal(out.token_hash, in.token_hash);
	assert_string_equal(out.running_sha256, in.running_sha256);
	assert_string_equal(out.fs_version, "fs-1");
	assert_int_equal(out.secure_version, 4);
	assert_int_equal(out.battery, 55);
	assert_int_equal(out.blocked, 1);
	/* a prefix or a longer id is another device */
	assert_int_equal(devcache_get(c, "dev-", &out), 0);
	assert_int_equal(devcache_get(c, "dev-10", &out), 0);
	devcache_stats(c, &st);
	assert_int_equal(st.devices, 1);
	assert_int_equal(st.hits, 1);
	assert_int_equal(st.misses, 3);
	devcache_free(c);
}

static void
test_puts_replace_and_loads_do_not(void **state)
{
	struct devcache *c = devcache_new(10);
	struct device_row a = row_of("1.0.0", "", 0), b = row_of("2.0.0", "",
	    0), out;

	(void)state;
	devcache_put(c, "d", &a, devcache_epoch(c), 0);
	/* the loader's row is older than the writer's own: it yields */
	devcache_put(c, "d", &b, devcache_epoch(c), 1);
	assert_int_equal(devcache_get(c, "d", &out), 1);
	assert_string_equal(out.version, "1.0.0");
	/* the writer's next row replaces it */
	devcache_put(c, "d", &b, devcache_epoch(c), 0);
	assert_int_equal(devcache_get(c, "d", &out), 1);
	assert_string_equal(out.version, "2.0.0");
	devcache_drop(c, "d");
	assert_int_equal(devcache_get(c, "d", &out), 0);
	devcache_drop(c, "never-there");
	devcache_free(c);
}

static void
test_a_clear_refuses_rows_read_before_it(void **state)
{
	struct devcache *c = devcache_new(10);
	struct device_row r = row_of("1.0.0", "", 0), out;
	uint64_t before = devcache_epoch(c);
	struct devcache_stats st;

	(void)state;
	devcache_put(c, "d", &r, before, 0);
	devcache_clear(c);
	assert_int_equal(devcache_get(c, "d", &out), 0);
	/* read before the clear (an edit may have come between): refused */
	devcache_put(c, "e", &r, before, 0);
	assert_int_equal(devcache_get(c, "e", &out), 0);
	devcache_put(c, "e", &r, devcache_epoch(c), 0);
	assert_int_equal(devcache_get(c, "e", &out), 1);
	devcache_stats(c, &st);
	assert_int_equal(st.devices, 1);
	devcache_free(c);
}

static void
test_the_cap_holds(void **state)
{
	struct devcache *c = devcache_new(100);
	struct device_row r = row_of("1.0.0", "", 0), out;
	struct devcache_stats st;
	char id[32];
	int i, found = 0;

	(void)state;
	for (i = 0; i < 1000; i++) {
		snprintf(id, sizeof(id), "dev-%d", i);
		devcache_put(c, id, &r, devcache_epoch(c), i % 2);
	}
	devcache_stats(c, &st);
	assert_int_equal(st.devices, 100);
	for (i = 0; i < 1000; i++) {
		snprintf(id, sizeof(id), "dev-%d", i);
		found += devcache_get(c, id, &out);
	}
	assert_int_equal(found, 100);
	/* a device already in is still replaced at the cap */
	r.battery = 9;
	devcache_put(c, "dev-0", &r, devcache_epoch(c), 0);
	assert_int_equal(devcache_get(c, "dev-0", &out), 1);
	assert_int_equal(out.battery, 9);
	devcache_free(c);
}

/* Readers copy while the writer replaces and a clear comes: never torn. */
struct race {
	struct devcache *c;
	int stop;
	int torn;
};

static void *
reader_run(void *arg)
{
	struct race *r = arg;
	struct device_row out;
	char id[16];
	int i = 0;

	while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
		snprintf(id, sizeof(id), "d%d", i++ % 500);
		/* each row is written whole: version and group agree */
		if (devcache_get(r->c, id, &out) &&
		    strcmp(out.version, out.group) != 0)
			__atomic_store_n(&r->torn, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void
test_readers_never_see_half_a_row(void **state)
{
	struct race r = {.c = devcache_new(1000)};
	pthread_t t[2];
	char id[16], v[16];
	int i;

	(void)state;
	assert_int_equal(pthread_create(&t[0], NULL, reader_run, &r), 0);
	assert_int_equal(pthread_create(&t[1], NULL, reader_run, &r), 0);
	for (i = 0; i < 200000; i++) {
		struct device_row row;

		snprintf(id, sizeof(id), "d%d", i % 500);
		snprintf(v, sizeof(v), "%d.0.0", i);
		row = row_of(v, v, 0);
		devcache_put(r.c, id, &row, devcache_epoch(r.c), 0);
		if (i % 50000 == 0)
			devcache_clear(r.c);
	}
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELAXED);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	assert_int_equal(r.torn, 0);
	devcache_free(r.c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_put_row_reads_back_whole),
		cmocka_unit_test(test_puts_replace_and_loads_do_not),
		cmocka_unit_test(test_a_clear_refuses_rows_read_before_it),
		cmocka_unit_test(test_the_cap_holds),
		cmocka_unit_test(test_readers_never_see_half_a_row),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
