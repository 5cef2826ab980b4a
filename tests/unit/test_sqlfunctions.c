/*
 * The registry's SQL functions semver_compare and ring agree with the
 * daemon's own C, on the database under test: a temporary SQLite file,
 * or the PostgreSQL named by OTAD_TEST_DATABASE (where they are PL/pgSQL,
 * written apart from the C; the PostgreSQL integration run sets it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "registry.h"
#include "registry_db.h"
#include "semver.h"
#include "stages.h"

static const char *const versions[] = {
	"1.0.0", "1.0.0-rc1", "1.0.0-rc10", "1.0.0-rc9", "v1.0.0", "V2",
	"1.0", "1", "1.0.0+b1", "1.0.0.1", "1.0.0a", "dev", "0.0.1", "v",
	"1.0.0-a", "1.0.0-a.", "1.0.0-alpha.1", "1.0.0-alpha.beta",
	"1.0.0~b", "2.10.0", "2.9.99", "01.002.0003", "1.0.0-beta_2",
	"1.0.0-rc", "1..2", "1.0.0-1", "1.0.0-a1b2", "1.0.0-a10b",
	"0.14.3", "0.14.10", "2024.01.15", "2024.2.1", "build-7",
	"build-12", "1.0.0-rc.01", "1.0.0-rc.1", "1.2.3.4", "1.2.3.10",
	"99999999999999999999999.0.0", "18446744073709551615.0.0",
	"1.0.0-0.3.7", "1.0.0-x.7.z.92", "1.0.0+20130313144700", "abc",
	"1.0.0--", "1.0.0-a.b.", "1.0.0-.", "1.2.3-rc.1+build.5",
};

static const char *const devices[] = {
	"a", "esp32-0001", "AABBCCDDEEFF", "24:6f:28:aa:bb:cc",
	"device-with-a-long-name-0123456789abcdef0123456789abcdef012345",
	"\xc3\xbc", "canary-7", "0",
};

struct target {
	char path[256];
	struct db *db;
	int temp;
};

static int
setup(void **state)
{
	static struct target t;
	const char *url = getenv("OTAD_TEST_DATABASE");
	struct registry *reg;

	memset(&t, 0, sizeof(t));
	if (url != NULL && *url != '\0') {
		snprintf(t.path, sizeof(t.path), "%s", url);
	} else {
		snprintf(t.path, sizeof(t.path), "/tmp/otad-sqlfn-%ld.db",
		    (long)getpid());
		t.temp = 1;
	}
	/* opening the registry creates the schema, functions and all */
	if (registry_open(t.path, &reg) != OTAD_OK)
		return -1;
	registry_close(reg);
	if (db_open(t.path, DB_READ_WRITE, &t.db) != DB_OK)
		return -1;
	*state = &t;
	return 0;
}

static int
teardown(void **state)
{
	struct target *t = *state;
	char side[300];

	db_close(t->db);
	if (t->temp) {
		unlink(t->path);
		snprintf(side, sizeof(side), "%s-wal", t->path);
		unlink(side);
		snprintf(side, sizeof(side), "%s-shm", t->path);
		unlink(side);
	}
	return 0;
}

static int64_t
one_int(struct db *db, const char *sql, const char *a, const char *b,
    int64_t n)
{
	struct db_stmt *st;
	int64_t v;

	assert_int_equal(db_prepare(db, sql, 0, &st), DB_OK);
	if (a != NULL)
		db_bind_text(st, 1, a);
	else
		db_bind_int64(st, 1, n);
	db_bind_text(st, 2, b);
	assert_int_equal(db_step(st), DB_ROW);
	v = db_column_int64(st, 0);
	db_finalize(st);
	return v;
}

static int
sign(int64_t v)
{
	return (v > 0) - (v < 0);
}

static void
test_semver_compare_in_sql_is_the_daemons(void **state)
{
	struct target *t = *state;
	size_t i, j, n = sizeof(versions) / sizeof(versions[0]);

	for (i = 0; i < n; i++)
		for (j = 0; j < n; j++) {
			int want = sign(semver_compare(versions[i],
			    versions[j]));
			int got = sign(one_int(t->db, "SELECT semver_compare("
			    "?1, ?2)", versions[i], versions[j], 0));

			if (got != want)
				fail_msg("semver_compare('%s', '%s'): SQL %d, "
				    "C %d", versions[i], versions[j], got,
				    want);
		}
}

static void
test_ring_in_sql_is_the_daemons(void **state)
{
	struct target *t = *state;
	size_t i, n = sizeof(devices) / sizeof(devices[0]);
	int64_t rollout;

	for (rollout = 1; rollout < 2000; rollout += 97)
		for (i = 0; i < n; i++) {
			int64_t want = stages_ring(rollout, devices[i]);
			int64_t got = one_int(t->db, "SELECT ring(?1, ?2)",
			    NULL, devices[i], rollout);

			if (got != want)
				fail_msg("ring(%lld, '%s'): SQL %lld, C %lld",
				    (long long)rollout, devices[i],
				    (long long)got, (long long)want);
		}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_semver_compare_in_sql_is_the_daemons),
		cmocka_unit_test(test_ring_in_sql_is_the_daemons),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
