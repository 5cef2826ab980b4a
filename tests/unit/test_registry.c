/*
 * registry: migrations, catalog operations, the writer, readers; on a
 * temporary SQLite file, or on the PostgreSQL OTAD_TEST_DATABASE names
 */
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "registry.h"
#include "registry_db.h"
#include "registry_impl.h"

static const char *fresh_db(void);
static void cleanup_db(const char *path);

static struct store_artifact
fake_artifact(char fill)
{
	struct store_artifact a;

	char bytes[1000];

	memset(&a, 0, sizeof(a));
	memset(a.sha256, fill, 64);
	memset(a.md5, 'a', 32);
	a.size = sizeof(bytes);
	a.image.chip_id = 0;
	/* the published file, as the store holds it: PostgreSQL keeps a copy */
	memset(bytes, fill, sizeof(bytes));
	a.tmp = -1;
	a.hold = memfd_create("artifact", 0);
	assert_true(a.hold >= 0);
	assert_int_equal(write(a.hold, bytes, sizeof(bytes)), sizeof(bytes));
	return a;
}

static void
test_catalog(void **state)
{
	struct store_artifact a = fake_artifact('1'), b = fake_artifact('2');
	const char *path = fresh_db();
	struct registry *reg;
	char why[256];
	json_t *rows, *row;
	int64_t id, rollout;
	int awaiting;

	(void)state;
	assert_int_equal(registry_open(path, &reg), OTAD_OK);
	registry_set_actor(reg, "test:unit");
	assert_int_equal(registry_artifact_add(reg, &a, "1.0.0", NULL, NULL, NULL, 0, why,
	    sizeof(why)), OTAD_OK);
	assert_int_equal(registry_artifact_add(reg, &a, "1.0.0", NULL, NULL, NULL, 0, why,
	    sizeof(why)), OTAD_ERR_EXISTS);
	assert_int_equal(registry_artifact_add(reg, &b, "2.0.0", "wled", NULL, NULL, 0, why,
	    sizeof(why)), OTAD_OK);
	/* prefixes: unique, ambiguous, too short, unknown */
	assert_int_equal(registry_artifact_get(reg, "111111", &row, why,
	    sizeof(why)), OTAD_OK);
	assert_string_equal(json_string_value(json_object_get(row, "version")),
	    "1.0.0");
	assert_string_equal(json_string_value(json_object_get(row, "chip")),
	    "esp32");
	json_decref(row);
	assert_int_equal(registry_artifact_get(reg, "11111", &row, why,
	    sizeof(why)), OTAD_ERR_INVALID);
	assert_int_equal(registry_artifact_get(reg, "333333", &row, why,
	    sizeof(why)), OTAD_ERR_NOT_FOUND);
	assert_int_equal(registry_artifact_list(reg, &rows), OTAD_OK);
	assert_int_equal(json_array_size(rows), 2);
	json_decref(rows);

	assert_int_equal(registry_release_create(reg, "1.0.0", a.sha256, NULL, NULL,
	    NULL, 0, &id, why, sizeof(why)), OTAD_OK);
	assert_int_equal(registry_release_create(reg, "1.0.0", a.sha256, NULL, NULL,
	    NULL, 0, &id, why, sizeof(why)), OTAD_ERR_EXISTS);
	assert_non_null(strstr(why, "already exists"));
	/* the same version for a product is another release */
	assert_int_equal(registry_release_create(reg, "1.0.0", b.sha256,
	    "wled", NULL, NULL, 0, &id, why, sizeof(why)), OTAD_OK);
	/* an artifact that does not exist cannot be released */
	assert_int_equal(registry_release_create(reg, "3.0.0",
	    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
	    NULL, NULL, NULL, 0, &id, why, sizeof(why)), OTAD_ERR_NOT_FOUND);
	assert_non_null(strstr(why, "no artifact"));

	assert_int_equal(registry_release_publish(reg, "1.0.0", NULL, NULL, &rollout,
	    &awaiting, why, sizeof(why)), OTAD_ERR_INVALID);
	assert_non_null(strstr(why, "--product"));
	assert_int_equal(registry_release_publish(reg, "1.0.0", "wled", NULL,
	    &rollout, &awaiting, why, sizeof(why)), OTAD_OK);
	assert_int_equal(registry_release_publish(reg, "1.0.0", "wled", NULL,
	    &rollout, &awaiting, why, sizeof(why)), OTAD_ERR_EXISTS);
	assert_int_equal(registry_release_publish(reg, "9.9.9", NULL, NULL, &rollout,
	    &awaiting, why, sizeof(why)), OTAD_ERR_NOT_FOUND);

	assert_int_equal(registry_status(reg, 1700000000, &row), OTAD_OK);
	assert_int_equal(json_integer_value(json_object_get(row, "releases")),
	    2);
	assert_int_equal(json_array_size(json_object_get(row, "offered")), 1);
	json_decref(row);
	registry_close(reg);
	cleanup_db(path);
}

static char *
temp_db(void)
{
	static char dir[64];
	static char path[96];

	snprintf(dir, sizeof(dir), "/tmp/otad-reg-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/otad.db", dir);
	return path;
}

/*
 * The database a test starts from, empty: a new SQLite file, or the
 * PostgreSQL named by OTAD_TEST_DATABASE with everything in it dropped
 * (the PostgreSQL integration run sets it, as for test_sqlfunctions).
 */
static const char *
fresh_db(void)
{
	const char *url = getenv("OTAD_TEST_DATABASE");
	struct db *db;

	if (url == NULL || *url == '\0')
		return temp_db();
	assert_int_equal(db_open(url, DB_READ_WRITE, &db), DB_OK);
	assert_int_equal(db_exec(db, "DROP SCHEMA public CASCADE;"
	    " CREATE SCHEMA public"), DB_OK);
	db_close(db);
	return url;
}

static void
cleanup_db(const char *path)
{
	char p[128];

	if (db_target_is_postgres(path))
		return;
	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s", path);
	*strrchr(p, '/') = '\0';
	rmdir(p);
}

static int done_calls;
static enum otad_err done_err = OTAD_ERR_IO;

static void
on_done(void *arg, enum otad_err err)
{
	(void)arg;
	done_calls++;
	done_err = err;
}

static struct record *
checkin(const char *dev, const char *version, int64_t release,
    const char *offer_version)
{
	struct record *r = registry_record_new(RECORD_CHECKIN);

	snprintf(r->device, sizeof(r->device), "%s", dev);
	snprintf(r->version, sizeof(r->version), "%s", version);
	snprintf(r->address, sizeof(r->address), "10.0.0.7");
	r->at = 1700000000;
	r->offer_release = release;
	r->offer_rollout = release ? 1 : 0;
	if (offer_version)
		snprintf(r->offer_version, sizeof(r->offer_version), "%s",
		    offer_version);
	return r;
}

static void
test_writer_and_readers(void **state)
{
	struct store_artifact a = fake_artifact('a'), b = fake_artifact('b');
	const char *path = fresh_db();
	struct registry *reg, *cat;
	struct registry_reader *rd;
	struct device_row row;
	struct offer *offers;
	struct record *r;
	char why[256];
	int64_t id, rel1, rollout, gen0, gen1;
	int awaiting;
	json_t *obj, *att;
	size_t n;
	int i;

	(void)state;
	assert_int_equal(registry_open(path, &cat), OTAD_OK);
	assert_int_equal(registry_artifact_add(cat, &a, "1.0.0", NULL, NULL, NULL, 0, why,
	    sizeof(why)), OTAD_OK);
	assert_int_equal(registry_artifact_add(cat, &b, "1.0.10", NULL, NULL, NULL, 0, why,
	    sizeof(why)), OTAD_OK);
	assert_int_equal(registry_release_create(cat, "1.0.0", a.sha256, NULL, NULL, NULL, 0,
	    &rel1, why, sizeof(why)), OTAD_OK);

	assert_int_equal(registry_reader_open(path, &rd), OTAD_OK);
	assert_int_equal(registry_catalog_generation(rd, &gen0), OTAD_OK);
	assert_int_equal(registry_load_offers(rd, &offers, &n), OTAD_OK);
	assert_int_equal(n, 0);
	free(offers);
	assert_int_equal(registry_release_publish(cat, "1.0.0", NULL, NULL, &rollout,
	    &awaiting, why, sizeof(why)), OTAD_OK);
	assert_int_equal(registry_release_create(cat, "1.0.10", b.sha256, NULL, NULL, NULL, 0,
	    &id, why, sizeof(why)), OTAD_OK);
	assert_int_equal(registry_release_publish(cat, "1.0.10", NULL, NULL,
	    &rollout, &awaiting, why, sizeof(why)), OTAD_OK);
	assert_int_equal(registry_catalog_generation(rd, &gen1), OTAD_OK);
	assert_true(gen1 > gen0);
	/* the newer publish superseded the older one */
	assert_int_equal(registry_load_offers(rd, &offers, &n), OTAD_OK);
	assert_int_equal(n, 1);
	assert_string_equal(offers[0].version, "1.0.10");
	assert_string_equal(offers[0].sha256, b.sha256);
	free(offers);

	/* the daemon's side: a writer with a queue of two */
	assert_int_equal(registry_open(path, &reg), OTAD_OK);
	assert_int_equal(registry_writer_start(reg, 2, 1000), OTAD_OK);
	assert_int_equal(registry_submit(reg, checkin("d1", "0.9.0", rel1,
	    "1.0.0")), OTAD_OK);
	/* the same offer again is the same attempt */
	assert_int_equal(registry_submit(reg, checkin("d1", "0.9.0", rel1,
	    "1.0.0")), OTAD_OK);
	/*
	 * More than the queue holds: producers that may wait do, and
	 * nothing is dropped (HTTP threads do not wait: they are refused).
	 */
	for (i = 0; i < 50; i++) {
		char dev[16];

		snprintf(dev, sizeof(dev), "bulk-%d", i);
		r = checkin(dev, "1.0.0", 0, NULL);
		r->may_wait = 1;
		assert_int_equal(registry_submit(reg, r), OTAD_OK);
	}
	r = registry_record_new(RECORD_REPORT);
	snprintf(r->device, sizeof(r->device), "d2");
	snprintf(r->version, sizeof(r->version), "1.0.0");
	r->result = REPORT_FAILED;
	snprintf(r->text->reason, sizeof(r->text->reason), "flash");
	r->tel.present = TEL_RSSI | TEL_BATTERY;
	r->tel.rssi = -70;
	r->tel.battery = 55;
	r->at = 1700000001;
	r->durable = 1;
	r->done = on_done;
	r->may_wait = 1;
	assert_int_equal(registry_submit(reg, r), OTAD_OK);
	/* d1 comes back running what it was offered */
	r = checkin("d1", "1.0.0", 0, NULL);
	r->may_wait = 1;
	assert_int_equal(registry_submit(reg, r), OTAD_OK);
	registry_close(reg); /* flushes everything queued */
	assert_int_equal(done_calls, 1);
	assert_int_equal(done_err, OTAD_OK);
	/* no writer: refused, and the caller still owns the record */
	r = checkin("x", "1", 0, NULL);
	assert_int_equal(registry_submit(cat, r), OTAD_ERR_SHUTDOWN);
	free(r);

	assert_int_equal(registry_device_get(rd, "d1", &row), OTAD_OK);
	assert_string_equal(row.version, "1.0.0");
	assert_int_equal(row.blocked, 0);
	assert_int_equal(registry_device_get(rd, "nobody", &row),
	    OTAD_ERR_NOT_FOUND);
	assert_int_equal(registry_device_show(cat, "d1", &obj, why,
	    sizeof(why)), OTAD_OK);
	assert_int_equal(json_integer_value(json_object_get(obj, "checks")), 3);
	assert_string_equal(json_string_value(json_object_get(obj, "address")),
	    "10.0.0.7");
	att = json_object_get(obj, "attempts");
	assert_int_equal(json_array_size(att), 1);
	assert_string_equal(json_string_value(json_object_get(
	    json_array_get(att, 0), "state")), "success");
	json_decref(obj);
	assert_int_equal(registry_device_show(cat, "d2", &obj, why,
	    sizeof(why)), OTAD_OK);
	assert_int_equal(json_integer_value(json_object_get(obj, "rssi")), -70);
	assert_int_equal(json_integer_value(json_object_get(obj, "battery")),
	    55);
	att = json_array_get(json_object_get(obj, "attempts"), 0);
	assert_string_equal(json_string_value(json_object_get(att, "state")),
	    "failed");
	assert_string_equal(json_string_value(json_object_get(att, "reason")),
	    "flash");
	json_decref(obj);
	assert_int_equal(registry_device_list(cat, 1700000000,
	    &(struct device_filter){0}, &obj), OTAD_OK);
	assert_int_equal(json_array_size(obj), 52);
	json_decref(obj);
	/* the console's search narrows it: a prefix, a version, a page */
	assert_int_equal(registry_device_list(cat, 1700000000,
	    &(struct device_filter){.limit = 2}, &obj), OTAD_OK);
	assert_int_equal(json_array_size(obj), 2);
	json_decref(obj);
	assert_int_equal(registry_device_list(cat, 1700000000,
	    &(struct device_filter){.id_prefix = "d2"}, &obj), OTAD_OK);
	assert_string_equal(json_string_value(json_object_get(json_array_get(
	    obj, 0), "id")), "d2");
	json_decref(obj);
	assert_int_equal(registry_device_list(cat, 1700000000,
	    &(struct device_filter){.version = "9.9.9"}, &obj), OTAD_OK);
	assert_int_equal(json_array_size(obj), 0);
	json_decref(obj);
	registry_reader_free(rd);
	registry_close(cat);
	cleanup_db(path);
}

/*
 * Two threads take turns: each queues a check-in only after the other's
 * was queued, as a device's next request follows the answer to its last.
 * Whatever producer queue each lands in, the writer applies them in that
 * order: the version recorded is the last one queued.
 */
struct relay {
	struct registry *reg;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int turn, rounds, started;
};

static void *
relay_run(void *arg)
{
	struct relay *r = arg;
	int me, i;

	pthread_mutex_lock(&r->mu);
	me = r->started++;
	pthread_mutex_unlock(&r->mu);
	/* the first thread to queue has the first producer queue, and the
	 * last word: a writer taking queue after queue would end with the
	 * other thread's record */
	for (i = 0; i < r->rounds + (me == 0); i++) {
		char version[16];

		pthread_mutex_lock(&r->mu);
		while (r->turn % 2 != me)
			pthread_cond_wait(&r->cv, &r->mu);
		snprintf(version, sizeof(version), "%d.0.0", r->turn);
		assert_int_equal(registry_submit(r->reg, checkin("relay",
		    version, 0, NULL)), OTAD_OK);
		r->turn++;
		pthread_cond_broadcast(&r->cv);
		pthread_mutex_unlock(&r->mu);
	}
	return NULL;
}

static void
test_records_apply_in_the_order_queued(void **state)
{
	const char *path = fresh_db();
	struct relay r = {.rounds = 300};
	struct registry_reader *rd;
	struct device_row row;
	pthread_t a, b;
	char want[16];
	int waited;

	(void)state;
	assert_int_equal(registry_open(path, &r.reg), OTAD_OK);
	assert_int_equal(registry_writer_start(r.reg, 1000, 1000), OTAD_OK);
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.cv, NULL);
	r.turn = 0;
	/* both threads are running before the first record */
	pthread_mutex_lock(&r.mu);
	assert_int_equal(pthread_create(&a, NULL, relay_run, &r), 0);
	assert_int_equal(pthread_create(&b, NULL, relay_run, &r), 0);
	pthread_mutex_unlock(&r.mu);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	snprintf(want, sizeof(want), "%d.0.0", r.turn - 1);
	assert_int_equal(registry_reader_open(path, &rd), OTAD_OK);
	for (waited = 0; waited < 5000; waited += 10) {
		if (registry_device_get(rd, "relay", &row) == OTAD_OK &&
		    strcmp(row.version, want) == 0)
			break;
		usleep(10 * 1000);
	}
	assert_string_equal(row.version, want);
	registry_reader_free(rd);
	registry_close(r.reg);
	pthread_cond_destroy(&r.cv);
	pthread_mutex_destroy(&r.mu);
	cleanup_db(path);
}

static void
same_row(const struct device_row *a, const struct device_row *b)
{
	assert_string_equal(a->version, b->version);
	assert_string_equal(a->product, b->product);
	assert_string_equal(a->chip, b->chip);
	assert_string_equal(a->hw_rev, b->hw_rev);
	assert_int_equal(a->secure_version, b->secure_version);
	assert_string_equal(a->token_hash, b->token_hash);
	assert_string_equal(a->group, b->group);
	assert_int_equal(a->battery, b->battery);
	assert_int_equal(a->blocked, b->blocked);
	assert_string_equal(a->running_sha256, b->running_sha256);
	assert_string_equal(a->fs_version, b->fs_version);
	assert_int_equal(a->quarantined_until, b->quarantined_until);
}

/* Until the reader gets id's row with this version; the row. */
static struct device_row
row_with(struct registry_reader *rd, const char *id, const char *version)
{
	struct device_row row;
	int waited;

	memset(&row, 0, sizeof(row));
	for (waited = 0; waited < 5000; waited += 5) {
		if (registry_device_get(rd, id, &row) == OTAD_OK &&
		    strcmp(row.version, version) == 0)
			break;
		usleep(5 * 1000);
	}
	assert_string_equal(row.version, version);
	return row;
}

/* What a test of the rows in memory opened, closed. */
static void
close_cached(struct db *hand, struct registry_reader *rd,
    struct registry_reader *plain, struct registry *reg, const char *path)
{
	db_close(hand);
	registry_reader_free(rd);
	registry_reader_free(plain);
	registry_close(reg);
	cleanup_db(path);
}

/* Wait until the database counts n check-ins of device id. */
static void
wait_checks(struct db *hand, const char *id, int64_t n)
{
	struct db_stmt *st;
	int64_t checks = -1;
	int waited;

	assert_int_equal(db_prepare(hand, "SELECT checks FROM device WHERE"
	    " id = ?1", 0, &st), DB_OK);
	for (waited = 0; waited < 5000 && checks != n; waited += 5) {
		db_bind_text(st, 1, id);
		checks = db_step(st) == DB_ROW ? db_column_int64(st, 0) : -1;
		db_reset(st);
		if (checks != n)
			usleep(5 * 1000);
	}
	db_finalize(st);
	assert_int_equal(checks, n);
}

/*
 * A device that polls again with nothing new takes the writer's narrow
 * update: counted and seen, its battery in memory, and a column edited by
 * hand in between (which moves no generation) still reaches memory with
 * its next check-in, as with the whole upsert.
 */
static void
test_a_repeated_check_in_keeps_the_row_true(void **state)
{
	const char *path = fresh_db();
	struct registry *reg;
	struct registry_reader *rd, *plain;
	struct device_row row, truth;
	struct devcache_stats st;
	struct record *r;
	struct db *hand;

	(void)state;
	assert_int_equal(registry_open(path, &reg), OTAD_OK);
	assert_int_equal(registry_writer_start(reg, 1000, 1000), OTAD_OK);
	assert_int_equal(registry_reader_open(path, &rd), OTAD_OK);
	assert_int_equal(registry_reader_open(path, &plain), OTAD_OK);
	assert_int_equal(db_open(path, DB_READ_WRITE, &hand), DB_OK);
	registry_reader_share_cache(rd, reg);
	if (registry_device_cache_stats(reg, &st) < 0) {
		assert_int_equal(db_backend(hand), DB_POSTGRES);
		goto done;
	}
	r = checkin("d2", "1.0.0", 0, NULL);
	snprintf(r->chip, sizeof(r->chip), "esp32s3");
	r->tel.present |= TEL_BATTERY;
	r->tel.battery = 50;
	assert_int_equal(registry_submit(reg, r), OTAD_OK);
	wait_checks(hand, "d2", 1);

	/* again, from elsewhere, with less charge and no chip said */
	r = checkin("d2", "1.0.0", 0, NULL);
	snprintf(r->address, sizeof(r->address), "10.0.0.9");
	r->at += 60;
	r->tel.present |= TEL_BATTERY;
	r->tel.battery = 40;
	assert_int_equal(registry_submit(reg, r), OTAD_OK);
	wait_checks(hand, "d2", 2);
	assert_int_equal(registry_device_get(rd, "d2", &row), OTAD_OK);
	assert_int_equal(registry_device_get(plain, "d2", &truth), OTAD_OK);
	same_row(&row, &truth);
	assert_int_equal(row.battery, 40);
	assert_string_equal(row.chip, "esp32s3");
	{
		struct db_stmt *q;

		assert_int_equal(db_prepare(hand, "SELECT count(*) FROM device"
		    " WHERE id = 'd2' AND address = '10.0.0.9' AND last_seen ="
		    " 1700000060", 0, &q), DB_OK);
		assert_int_equal(db_step(q), DB_ROW);
		assert_int_equal(db_column_int64(q, 0), 1);
		db_finalize(q);
	}

	/* the chip set by hand: memory has the old one until d2 polls */
	assert_int_equal(db_exec(hand, "UPDATE device SET chip = 'esp32c3'"
	    " WHERE id = 'd2'"), DB_OK);
	assert_int_equal(registry_submit(reg, checkin("d2", "1.0.0", 0,
	    NULL)), OTAD_OK);
	wait_checks(hand, "d2", 3);
	assert_int_equal(registry_device_get(rd, "d2", &row), OTAD_OK);
	assert_string_equal(row.chip, "esp32c3");
	assert_int_equal(registry_device_get(plain, "d2", &truth), OTAD_OK);
	same_row(&row, &truth);
done:
	close_cached(hand, rd, plain, reg, path);
}

/*
 * The device rows in memory say what the database says: what the writer
 * recorded at once, the loader's rows for devices not seen since the
 * start, and an edit made elsewhere once the generation moved (and not
 * before: the rows are really read from memory).
 */
static void
test_device_rows_in_memory_follow_the_database(void **state)
{
	const char *path = fresh_db();
	struct registry *reg;
	struct registry_reader *rd, *plain;
	struct devcache_stats st;
	struct device_row row, truth;
	struct record *r;
	struct db *hand;
	int64_t gen;
	int waited;

	(void)state;
	assert_int_equal(registry_open(path, &reg), OTAD_OK);
	/* a device registered before otad starts: the loader's */
	assert_int_equal(db_open(path, DB_READ_WRITE, &hand), DB_OK);
	assert_int_equal(db_exec(hand, "INSERT INTO device (id, version,"
	    " first_seen, last_seen, grp) VALUES ('early', '0.5.0', 1, 1,"
	    " 'canary')"), DB_OK);
	assert_int_equal(registry_writer_start(reg, 1000, 1000), OTAD_OK);
	assert_int_equal(registry_reader_open(path, &rd), OTAD_OK);
	assert_int_equal(registry_reader_open(path, &plain), OTAD_OK);
	registry_reader_share_cache(rd, reg);
	if (registry_device_cache_stats(reg, &st) < 0) {
		/* PostgreSQL: other nodes write rows; none are kept */
		assert_int_equal(db_backend(hand), DB_POSTGRES);
		goto done;
	}
	for (waited = 0; waited < 5000 && st.devices < 1; waited += 5) {
		usleep(5 * 1000);
		registry_device_cache_stats(reg, &st);
	}
	assert_int_equal(st.devices, 1);
	assert_int_equal(registry_device_get(rd, "early", &row), OTAD_OK);
	assert_string_equal(row.group, "canary");

	/* a check-in: the row the upsert returned, with what it kept */
	r = checkin("d1", "1.0.0", 0, NULL);
	snprintf(r->chip, sizeof(r->chip), "esp32s3");
	snprintf(r->hw_rev, sizeof(r->hw_rev), "rev2");
	r->secure_version = 3;
	assert_int_equal(registry_submit(reg, r), OTAD_OK);
	r = checkin("d1", "1.1.0", 0, NULL);
	r->secure_version = 1; /* an eFuse only counts up */
	assert_int_equal(registry_submit(reg, r), OTAD_OK);
	row = row_with(rd, "d1", "1.1.0");
	assert_int_equal(registry_device_get(plain, "d1", &truth), OTAD_OK);
	same_row(&row, &truth);
	assert_string_equal(row.chip, "esp32s3");
	assert_string_equal(row.hw_rev, "rev2");
	assert_int_equal(row.secure_version, 3);
	registry_device_cache_stats(reg, &st);
	assert_true(st.hits >= 1);
	assert_int_equal(st.devices, 2);

	/* blocked by hand: memory says otherwise until the generation... */
	assert_int_equal(db_exec(hand, "UPDATE device SET blocked = 1 WHERE"
	    " id = 'd1'"), DB_OK);
	assert_int_equal(registry_device_get(plain, "d1", &truth), OTAD_OK);
	assert_int_equal(truth.blocked, 1);
	assert_int_equal(registry_device_get(rd, "d1", &row), OTAD_OK);
	assert_int_equal(row.blocked, 0);
	/* ... which the schema moved, and whose change clears the rows */
	assert_int_equal(registry_catalog_generation(rd, &gen), OTAD_OK);
	assert_int_equal(registry_device_get(rd, "d1", &row), OTAD_OK);
	assert_int_equal(row.blocked, 1);
	/* the writer's next check-in returns the block with the row */
	assert_int_equal(registry_submit(reg, checkin("d1", "1.2.0", 0,
	    NULL)), OTAD_OK);
	row = row_with(rd, "d1", "1.2.0");
	assert_int_equal(row.blocked, 1);
	/* a check-in changes no generation; a group set by hand does */
	assert_int_equal(registry_catalog_generation(rd, &gen), OTAD_OK);
	{
		int64_t again;

		assert_int_equal(registry_catalog_generation(rd, &again),
		    OTAD_OK);
		assert_int_equal(again, gen);
		assert_int_equal(db_exec(hand, "UPDATE device SET grp = 'b'"
		    " WHERE id = 'early'"), DB_OK);
		assert_int_equal(registry_catalog_generation(rd, &again),
		    OTAD_OK);
		assert_true(again > gen);
	}
	assert_int_equal(registry_device_get(rd, "early", &row), OTAD_OK);
	assert_string_equal(row.group, "b");
done:
	close_cached(hand, rd, plain, reg, path);
}

/* device d of 240: 0..79 short, 80..159 alike in their first 16 bytes */
static void
batch_device(int d, char *id, size_t len)
{
	if (d < 80)
		snprintf(id, len, "d%d", 239 - d);
	else if (d < 160)
		snprintf(id, len, "esp32-c3-node-of-the-lab-%d", d);
	else
		snprintf(id, len, "sixteen-bytes%03d", d);
}

/*
 * Many devices' check-ins queued as fast as they come: the writer sorts
 * each batch by device, and each device's records must still apply in
 * the order queued. Ids short and long, some alike in their first 16
 * bytes (where the sort's key ends) and told apart after.
 */
static void
test_a_batch_sorted_by_device_keeps_each_devices_order(void **state)
{
	const char *path = fresh_db();
	struct registry *reg;
	struct registry_reader *rd;
	struct device_row row;
	char id[OTAD_ID_MAX + 1], version[16];
	int d, v;

	(void)state;
	assert_int_equal(registry_open(path, &reg), OTAD_OK);
	assert_int_equal(registry_writer_start(reg, 100000, 1000), OTAD_OK);
	for (v = 1; v <= 12; v++)
		for (d = 0; d < 240; d++) {
			batch_device(d, id, sizeof(id));
			snprintf(version, sizeof(version), "%d.0.0", v);
			assert_int_equal(registry_submit(reg, checkin(id, version,
			    0, NULL)), OTAD_OK);
		}
	registry_close(reg); /* the writer applies what is queued first */
	assert_int_equal(registry_reader_open(path, &rd), OTAD_OK);
	for (d = 0; d < 240; d++) {
		batch_device(d, id, sizeof(id));
		assert_int_equal(registry_device_get(rd, id, &row), OTAD_OK);
		assert_string_equal(row.version, "12.0.0");
	}
	registry_reader_free(rd);
	cleanup_db(path);
}

static void
test_newer_schema_is_refused(void **state)
{
	const char *path = fresh_db();
	struct registry *reg;
	struct db *db;

	(void)state;
	/* each dialect keeps its schema's version its own way */
	assert_int_equal(db_open(path, DB_CREATE, &db), DB_OK);
	assert_int_equal(db_exec(db, db_backend(db) == DB_SQLITE ?
	    "PRAGMA user_version = 999" : "CREATE TABLE schema_version"
	    " (version integer NOT NULL); INSERT INTO schema_version"
	    " VALUES (999)"), DB_OK);
	db_close(db);
	assert_int_equal(registry_open(path, &reg), OTAD_ERR_DB);
	cleanup_db(path);
}

static void
test_wait_served(void **state)
{
	const char *path = fresh_db();
	struct registry *reg;
	int64_t now = (int64_t)time(NULL);

	(void)state;
	assert_int_equal(registry_open(path, &reg), OTAD_OK);
	/* no daemon has ever run: nothing to wait for */
	assert_int_equal(registry_wait_served(reg, 100), OTAD_ERR_NOT_FOUND);
	/* a live daemon (this process) serving an older generation */
	registry_daemon_mark(reg, 0, now);
	assert_int_equal(registry_wait_served(reg, 60), OTAD_ERR_BUSY);
	/* serving the current one */
	registry_daemon_mark(reg, 1, now);
	assert_int_equal(registry_wait_served(reg, 60), OTAD_OK);
	registry_close(reg);
	cleanup_db(path);
}

/* A check-in record offering release rel in stage st of rollout ro. */
static struct record *
offer_rec(const char *dev, int64_t rel, int64_t ro, int st, int64_t at)
{
	struct record *r = checkin(dev, "1.0.0", rel, "2.0.0");

	r->offer_rollout = ro;
	r->offer_stage = st;
	r->at = at;
	return r;
}

static struct record *
report_rec(const char *dev, enum report_result res, int64_t at)
{
	struct record *r = registry_record_new(RECORD_REPORT);

	snprintf(r->device, sizeof(r->device), "%s", dev);
	snprintf(r->version, sizeof(r->version), "2.0.0");
	r->result = res;
	r->at = at;
	return r;
}

static atomic_int applied;
static int report_after = -1;

static void
count_applied(void *arg, enum otad_err err)
{
	(void)arg;
	(void)err;
	atomic_fetch_add(&applied, 1);
}

static void
report_applied(void *arg, enum otad_err err)
{
	(void)arg;
	if (err == OTAD_OK)
		report_after = atomic_load(&applied);
}

/*
 * A report that comes while the writer commits a long batch of check-ins
 * (a second's worth under load) is committed, and answered, before the
 * check-ins still to go, though its device sorts after all of theirs. The
 * check-ins queue while an operator holds the database, so that they make
 * one batch; the report comes once the first of its chunks is committed.
 */
static void
test_a_report_does_not_wait_for_a_long_batch(void **state)
{
	const char *url = getenv("OTAD_TEST_DATABASE");
	const int checkins = 60000;
	const char *path;
	struct registry *reg;
	struct record *r;
	struct db *hand;
	char id[32];
	int i, waited;

	(void)state;
	if (url != NULL && *url != '\0')
		skip(); /* an operator's hold is SQLite's; the rest is shared */
	path = fresh_db();
	atomic_store(&applied, 0);
	assert_int_equal(registry_open(path, &reg), OTAD_OK);
	assert_int_equal(registry_writer_start(reg, 200000, 0), OTAD_OK);
	assert_int_equal(db_open(path, DB_READ_WRITE, &hand), DB_OK);
	assert_int_equal(db_exec(hand, "BEGIN IMMEDIATE"), DB_OK);
	for (i = 0; i < checkins; i++) {
		snprintf(id, sizeof(id), "d%06d", i);
		r = checkin(id, "1.0.0", 0, NULL);
		r->done = count_applied;
		assert_int_equal(registry_submit(reg, r), OTAD_OK);
	}
	assert_int_equal(db_exec(hand, "COMMIT"), DB_OK);
	for (waited = 0; waited < 60000 && atomic_load(&applied) < 5000;
	    waited++)
		usleep(1000);
	assert_true(atomic_load(&applied) < checkins / 2);
	r = report_rec("zz-last", REPORT_SUCCESS, 1700000001);
	r->durable = 1;
	r->may_wait = 1;
	r->done = report_applied;
	assert_int_equal(registry_submit(reg, r), OTAD_OK);
	for (waited = 0; waited < 120000 && atomic_load(&applied) < checkins;
	    waited += 10)
		usleep(10 * 1000);
	assert_int_equal(atomic_load(&applied), checkins);
	assert_true(report_after >= 0);
	assert_true(report_after < checkins);
	db_close(hand);
	registry_close(reg);
	cleanup_db(path);
}

/*
 * Under load the writer lets check-ins gather, so that a batch carries
 * many: after a batch of 1,000, 100 ms. Half a producer's queue ends the
 * wait, so a small writer_queue_max drops nothing at a pace the writer
 * keeps up with: here a 1,000-record queue, a burst of 900, then a
 * check-in every 40 us, which would overflow it within a wait.
 * Without that wake-up, thousands are dropped. (Under the sanitizers the
 * writer is slower than that pace: the test is for the plain build.)
 */
static long long
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
test_a_small_queue_drops_nothing_while_the_writer_gathers(void **state)
{
	const char *url = getenv("OTAD_TEST_DATABASE");
	const int queue = 1000, burst = 900, checkins = 10000;
	long long next_us = 0;
	const char *path;
	struct registry *reg;
	struct record *r;
	char id[32];
	int i, dropped = 0, waited;

	(void)state;
#ifdef __SANITIZE_ADDRESS__ /* GCC's mark of the sanitized build */
	skip();
#endif
	if (url != NULL && *url != '\0')
		skip(); /* the writer's pace on PostgreSQL is its round trips */
	path = fresh_db();
	atomic_store(&applied, 0);
	assert_int_equal(registry_open(path, &reg), OTAD_OK);
	assert_int_equal(registry_writer_start(reg, queue, 10000), OTAD_OK);
	for (i = 0; i < checkins; i++) {
		/* a fleet of 1,000 polling again, as under load */
		snprintf(id, sizeof(id), "g%03d", i % 1000);
		r = checkin(id, "1.0.0", 0, NULL);
		r->done = count_applied;
		if (registry_submit(reg, r) != OTAD_OK) {
			free(r);
			dropped++;
		}
		while (i >= burst && now_us() < next_us)
			continue; /* usleep's least sleep is longer than this */
		next_us = now_us() + 40;
	}
	for (waited = 0; waited < 30000 &&
	    atomic_load(&applied) < checkins - dropped; waited += 10)
		usleep(10 * 1000);
	assert_int_equal(dropped, 0);
	assert_int_equal(atomic_load(&applied), checkins);
	registry_close(reg);
	cleanup_db(path);
}

/* Until the database has n attempts of device id; its newest then. */
static void
newest_attempt(struct db *hand, const char *id, int64_t n, char *state,
    int64_t *rollout, int64_t *stage, int64_t *offered_at)
{
	struct db_stmt *st;
	int64_t count = -1;
	int waited;

	assert_int_equal(db_prepare(hand, "SELECT (SELECT count(*) FROM"
	    " attempt WHERE device = ?1), state, coalesce(rollout, 0),"
	    " coalesce(stage, -1), coalesce(offered_at, 0) FROM attempt"
	    " WHERE device = ?1 ORDER BY id DESC LIMIT 1", 0, &st), DB_OK);
	for (waited = 0; waited < 5000; waited += 5) {
		db_bind_text(st, 1, id);
		if (db_step(st) == DB_ROW &&
		    (count = db_column_int64(st, 0)) == n) {
			snprintf(state, 16, "%s", db_column_text(st, 1));
			*rollout = db_column_int64(st, 2);
			*stage = db_column_int64(st, 3);
			*offered_at = db_column_int64(st, 4);
		}
		db_reset(st);
		if (count == n)
			break;
		usleep(5 * 1000);
	}
	db_finalize(st);
	assert_int_equal(count, n);
}

/*
 * Two nodes of a cluster: a device sent the image by node A reports its
 * outcome to node B, whose writer commits the report before A's commits
 * the offer. The outcome is the rollout's all the same, in its stage (a
 * rollout counts only its own attempts); an outcome long before an offer
 * is another attempt, and the offer opens its own. (PostgreSQL only: one
 * SQLite writer orders every record.)
 */
static void
test_an_outcome_before_its_offer_is_the_offers(void **state)
{
	const char *url = getenv("OTAD_TEST_DATABASE");
	struct store_artifact art;
	const char *path;
	struct registry *a, *b;
	struct record *r;
	struct db *hand;
	char why[256], st[16];
	int64_t rel, ro, rollout, stage, offered_at;
	int awaiting;

	(void)state;
	if (url == NULL || *url == '\0')
		skip(); /* clusters are PostgreSQL's: one SQLite writer orders */
	art = fake_artifact('c');
	path = fresh_db();
	assert_int_equal(registry_open(path, &a), OTAD_OK);
	assert_int_equal(registry_open(path, &b), OTAD_OK);
	assert_int_equal(registry_artifact_add(a, &art, "2.0.0", NULL, NULL,
	    NULL, 0, why, sizeof(why)), OTAD_OK);
	assert_int_equal(registry_release_create(a, "2.0.0", art.sha256, NULL,
	    NULL, NULL, 0, &rel, why, sizeof(why)), OTAD_OK);
	assert_int_equal(registry_release_publish(a, "2.0.0", NULL, NULL, &ro,
	    &awaiting, why, sizeof(why)), OTAD_OK);
	assert_int_equal(registry_writer_start(a, 1000, 1000), OTAD_OK);
	assert_int_equal(registry_writer_start(b, 1000, 1000), OTAD_OK);
	assert_int_equal(db_open(path, DB_READ_WRITE, &hand), DB_OK);

	/* B: the report, with no attempt to go with it yet */
	r = report_rec("x1", REPORT_ROLLBACK, 1700000005);
	r->may_wait = 1;
	assert_int_equal(registry_submit(b, r), OTAD_OK);
	newest_attempt(hand, "x1", 1, st, &rollout, &stage, &offered_at);
	assert_string_equal(st, "rollback");
	assert_int_equal(rollout, 0);
	/* A: the offer of a moment before, committed after */
	assert_int_equal(registry_submit(a, offer_rec("x1", rel, ro, 0,
	    1700000003)), OTAD_OK);
	assert_int_equal(registry_submit(a, checkin("x1-done", "1.0.0", 0,
	    NULL)), OTAD_OK);
	wait_checks(hand, "x1-done", 1);
	newest_attempt(hand, "x1", 1, st, &rollout, &stage, &offered_at);
	assert_string_equal(st, "rollback");
	assert_int_equal(rollout, ro);
	assert_int_equal(stage, 0);
	assert_int_equal(offered_at, 1700000003);

	/* an outcome a day before an offer is not the offer's */
	r = report_rec("x2", REPORT_ROLLBACK, 1700000000 - 86400);
	r->may_wait = 1;
	assert_int_equal(registry_submit(b, r), OTAD_OK);
	newest_attempt(hand, "x2", 1, st, &rollout, &stage, &offered_at);
	assert_int_equal(registry_submit(a, offer_rec("x2", rel, ro, 0,
	    1700000003)), OTAD_OK);
	newest_attempt(hand, "x2", 2, st, &rollout, &stage, &offered_at);
	assert_string_equal(st, "offered");
	assert_int_equal(rollout, ro);
	db_close(hand);
	registry_close(a);
	registry_close(b);
	cleanup_db(path);
}

static json_t *
rollout_row(struct registry *reg, int64_t id, int64_t now)
{
	char why[256];
	json_t *rows, *row;

	assert_int_equal(registry_rollout_status(reg, id, now, &rows, why,
	    sizeof(why)), OTAD_OK);
	row = json_incref(json_array_get(rows, 0));
	json_decref(rows);
	return row;
}

/*
 * A catalog on path with release 2.0.0 and a started rollout of it, its
 * stages spec, its promote window (NULL: none); *rel and *ro.
 */
static struct registry *
started_rollout(const char *path, const char *spec, const char *promote,
    int64_t timeout_s, int64_t *rel, int64_t *ro)
{
	struct store_artifact a = fake_artifact('c');
	struct stage st[STAGES_MAX];
	struct rollout_plan plan;
	struct registry *cat;
	char why[256];

	assert_int_equal(registry_open(path, &cat), OTAD_OK);
	assert_int_equal(registry_artifact_add(cat, &a, "2.0.0", NULL, NULL,
	    NULL, 0, why, sizeof(why)), OTAD_OK);
	assert_int_equal(registry_release_create(cat, "2.0.0", a.sha256, NULL,
	    NULL, NULL, 0, rel, why, sizeof(why)), OTAD_OK);
	memset(&plan, 0, sizeof(plan));
	assert_int_equal(stages_parse(spec, st, &plan.nstages, why,
	    sizeof(why)), 0);
	plan.version = "2.0.0";
	plan.stages = st;
	plan.min_battery = -1;
	plan.timeout_s = timeout_s;
	plan.promote = promote;
	assert_int_equal(registry_rollout_create(cat, &plan, ro, why,
	    sizeof(why)), OTAD_OK);
	assert_int_equal(registry_rollout_action(cat, *ro, ROLLOUT_START, 0,
	    why, sizeof(why)), OTAD_OK);
	return cat;
}

/*
 * n devices named prefix-i offered release rel in stage no of rollout ro
 * at at, each reporting: the first rolled_back a rollback, the rest a
 * success; all recorded when this returns.
 */
static void
stage_outcomes(const char *path, int64_t rel, int64_t ro, int no,
    const char *prefix, int n, int rolled_back, int64_t at)
{
	struct registry *w;
	char dev[32];
	int i;

	assert_int_equal(registry_open(path, &w), OTAD_OK);
	assert_int_equal(registry_writer_start(w, 64, 1000), OTAD_OK);
	for (i = 0; i < n; i++) {
		snprintf(dev, sizeof(dev), "%s-%d", prefix, i);
		registry_submit(w, offer_rec(dev, rel, ro, no, at));
		registry_submit(w, report_rec(dev, i < rolled_back ?
		    REPORT_ROLLBACK : REPORT_SUCCESS, at));
	}
	registry_close(w);
}

/* The stage rollout ro stands on after the controller's tick at now. */
static int64_t
ticked_stage(struct registry *cat, int64_t ro, int64_t now)
{
	json_t *row;
	int64_t stage;

	registry_rollout_tick(cat, now, 600);
	row = rollout_row(cat, ro, now);
	stage = json_integer_value(json_object_get(row, "stage"));
	json_decref(row);
	return stage;
}

static void
test_stage_transitions(void **state)
{
	const char *path = fresh_db();
	struct registry *cat, *w;
	int64_t rel, ro, t0 = (int64_t)time(NULL);
	char why[256];
	json_t *row;

	(void)state;
	cat = started_rollout(path, "10%,soak=60s,min=3,rollback<=0.2; "
	    "100%,soak=60s,min=3", NULL, 600, &rel, &ro);
	/* three offers in stage 0, all succeed */
	stage_outcomes(path, rel, ro, 0, "s0", 3, 0, t0);
	/* healthy but not soaked: stays */
	assert_int_equal(ticked_stage(cat, ro, t0 + 10), 0);
	/* soaked: the next stage opens */
	assert_int_equal(ticked_stage(cat, ro, t0 + 61), 1);

	/* stage 1: two of three roll back, over the stage's 0.05 default */
	stage_outcomes(path, rel, ro, 1, "s1", 3, 2, t0 + 62);
	registry_rollout_tick(cat, t0 + 63, 600);
	row = rollout_row(cat, ro, t0 + 63);
	assert_string_equal(json_string_value(json_object_get(row, "state")),
	    "halted");
	assert_non_null(strstr(json_string_value(json_object_get(row,
	    "reason")), "stage 1: rollback rate 0.67 > 0.05 (2 of 3)"));
	json_decref(row);
	/* a halt needs --force to go on */
	assert_int_equal(registry_rollout_action(cat, ro, ROLLOUT_RESUME, 0,
	    why, sizeof(why)), OTAD_ERR_INVALID);
	assert_non_null(strstr(why, "halted"));
	assert_int_equal(registry_rollout_action(cat, ro, ROLLOUT_RESUME, 1,
	    why, sizeof(why)), OTAD_OK);

	/* an offer with no outcome times out */
	assert_int_equal(registry_open(path, &w), OTAD_OK);
	assert_int_equal(registry_writer_start(w, 64, 1000), OTAD_OK);
	registry_submit(w, offer_rec("slow", rel, ro, 1, t0));
	registry_submit(w, offer_rec("slow", rel, ro, 1, t0 + 590));
	/* and one that went offline counts as failed */
	registry_submit(w, offer_rec("gone", rel, ro, 1, t0));
	registry_close(w);
	registry_rollout_tick(cat, t0 + 601, 300);
	row = rollout_row(cat, ro, t0 + 601);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(
	    json_object_get(row, "stages"), 1), "timed_out")), 1);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(
	    json_object_get(row, "stages"), 1), "failed")), 1);
	json_decref(row);
	registry_close(cat);
	cleanup_db(path);
}

/*
 * Staffed hours: a healthy stage that has soaked waits for its rollout's
 * promote window (status says when it opens), opens in it, and a failing
 * stage halts outside it. Simulated time: the controller is told now.
 */
static void
test_a_promote_window_holds_widening_not_halts(void **state)
{
	const char *path = fresh_db();
	struct registry *cat;
	int64_t rel, ro, t0 = (int64_t)time(NULL), opens;
	char promote[32];
	time_t start = (time_t)(t0 + 2 * 3600), end = start + 3600;
	struct tm a_tm, b_tm;
	json_t *row;

	(void)state;
	/* every day, an hour from two hours from now (UTC) */
	gmtime_r(&start, &a_tm);
	gmtime_r(&end, &b_tm);
	snprintf(promote, sizeof(promote), "%02d:%02d-%02d:%02d +00:00",
	    a_tm.tm_hour, a_tm.tm_min, b_tm.tm_hour, b_tm.tm_min);
	cat = started_rollout(path, "10%,soak=60s,min=3; 50%,soak=60s,min=3;"
	    " 100%", promote, 86400, &rel, &ro);
	stage_outcomes(path, rel, ro, 0, "p0", 3, 0, t0);
	/* soaked and healthy, outside the window: waits, and says till when */
	registry_rollout_tick(cat, t0 + 120, 600);
	row = rollout_row(cat, ro, t0 + 120);
	assert_int_equal(json_integer_value(json_object_get(row, "stage")), 0);
	opens = json_integer_value(json_object_get(row, "next_stage_at"));
	assert_true(opens >= t0 + 2 * 3600 - 60 && opens <= t0 + 2 * 3600);
	assert_string_equal(json_string_value(json_object_get(row, "promote")),
	    promote);
	json_decref(row);
	assert_int_equal(ticked_stage(cat, ro, opens - 60), 0);
	/* inside it: the next stage opens */
	assert_int_equal(ticked_stage(cat, ro, opens), 1);
	/* a failing stage halts outside the window all the same */
	stage_outcomes(path, rel, ro, 1, "p1", 3, 3, opens);
	registry_rollout_tick(cat, opens + 2 * 3600, 600);
	row = rollout_row(cat, ro, opens + 2 * 3600);
	assert_string_equal(json_string_value(json_object_get(row, "state")),
	    "halted");
	json_decref(row);
	registry_close(cat);
	cleanup_db(path);
}

/* A failure report of device id for version v at at, recorded. */
static void
failed_report(struct registry *w, const char *id, const char *v, int64_t at)
{
	struct record *r = report_rec(id, REPORT_FAILED, at);

	snprintf(r->version, sizeof(r->version), "%s", v);
	r->durable = 1;
	r->may_wait = 1;
	assert_int_equal(registry_submit(w, r), OTAD_OK);
}

/* device id's quarantine as readers see it, once set (2 s at most) */
static int64_t
quarantined_until(const char *path, const char *id)
{
	struct registry_reader *rd;
	struct device_row row;
	int waited;

	memset(&row, 0, sizeof(row));
	assert_int_equal(registry_reader_open(path, &rd), OTAD_OK);
	for (waited = 0; waited < 2000; waited += 5) {
		if (registry_device_get(rd, id, &row) == OTAD_OK &&
		    row.quarantined_until != 0)
			break;
		usleep(5 * 1000);
	}
	registry_reader_free(rd);
	return row.quarantined_until;
}

/*
 * quarantine_after = 3 in 1h: two failures within the hour, or three
 * spread over more, quarantine nothing; the third within the hour does,
 * for an hour after it; a clear lets the device go on, and only failures
 * after the clear count towards the next quarantine.
 */
static void
test_a_device_that_keeps_failing_is_quarantined(void **state)
{
	const char *path = fresh_db();
	struct registry *w;
	char why[256];

	(void)state;
	assert_int_equal(registry_open(path, &w), OTAD_OK);
	registry_set_quarantine(w, 3, 3600);
	assert_int_equal(registry_writer_start(w, 64, 1000), OTAD_OK);
	failed_report(w, "q1", "2.0.0", 1700000000);
	failed_report(w, "q1", "2.0.1", 1700003000);
	failed_report(w, "q1", "2.0.2", 1700003700); /* the first is older */
	assert_int_equal(quarantined_until(path, "q1"), 0);
	failed_report(w, "q1", "2.0.3", 1700003800);
	assert_int_equal(quarantined_until(path, "q1"), 1700003800 + 3600);
	/* cleared: back to work, its old failures forgiven */
	assert_int_equal(registry_device_act(w, "q1", "clear", why,
	    sizeof(why)),
	    OTAD_ERR_NOT_FOUND); /* long past, in real time: not quarantined */
	registry_close(w);
	assert_int_equal(registry_open(path, &w), OTAD_OK);
	registry_set_quarantine(w, 3, 86400 * 365);
	assert_int_equal(registry_writer_start(w, 64, 1000), OTAD_OK);
	failed_report(w, "q2", "2.0.0", (int64_t)time(NULL) - 30);
	failed_report(w, "q2", "2.0.1", (int64_t)time(NULL) - 20);
	failed_report(w, "q2", "2.0.2", (int64_t)time(NULL) - 10);
	assert_true(quarantined_until(path, "q2") > (int64_t)time(NULL));
	assert_int_equal(registry_device_act(w, "q2", "clear", why,
	    sizeof(why)),
	    OTAD_OK);
	assert_int_equal(quarantined_until(path, "q2"), 0);
	failed_report(w, "q2", "2.0.3", (int64_t)time(NULL) + 1);
	failed_report(w, "q2", "2.0.4", (int64_t)time(NULL) + 2);
	assert_int_equal(quarantined_until(path, "q2"), 0);
	failed_report(w, "q2", "2.0.5", (int64_t)time(NULL) + 3);
	assert_true(quarantined_until(path, "q2") > (int64_t)time(NULL));
	registry_close(w);
	cleanup_db(path);
}

static void
test_result_names(void **state)
{
	(void)state;
	assert_int_equal(registry_result_parse("rollback"), REPORT_ROLLBACK);
	assert_int_equal(registry_result_parse("Rollback"), -1);
	assert_int_equal(registry_result_parse(""), -1);
	assert_string_equal(registry_result_name(REPORT_SUCCESS), "success");
}

/* A telemetry sample of dev, running version, as MQTT brings it. */
static struct record *
sample_rec(const char *dev, const char *version, int64_t at, int64_t heap,
    int64_t rssi, int64_t uptime, const char *metrics)
{
	struct record *r = registry_record_new(RECORD_TELEMETRY);

	snprintf(r->device, sizeof(r->device), "%s", dev);
	snprintf(r->version, sizeof(r->version), "%s", version);
	r->at = at;
	r->tel.present = TEL_FREE_HEAP | TEL_RSSI | TEL_UPTIME | TEL_METRICS;
	r->tel.free_heap = heap;
	r->tel.rssi = rssi;
	r->tel.uptime = uptime;
	snprintf(r->text->metrics, sizeof(r->text->metrics), "%s", metrics);
	return r;
}

/*
 * Two samples each of devices prefix-0..n-1 on version at t and t + 600:
 * heap, rssi and a metric, and a reset between them when reset.
 */
static void
samples(const char *path, const char *prefix, int n, const char *version,
    int64_t t, int64_t heap, int64_t rssi, int reconnects, int reset)
{
	struct registry *w;
	char dev[32], m[64];
	int i;

	assert_int_equal(registry_open(path, &w), OTAD_OK);
	registry_set_telemetry(w, 0, 7 * 86400, 3);
	assert_int_equal(registry_writer_start(w, 64, 1000), OTAD_OK);
	snprintf(m, sizeof(m), "{\"reconnects\":%d}", reconnects);
	for (i = 0; i < n; i++) {
		snprintf(dev, sizeof(dev), "%s-%d", prefix, i);
		registry_submit(w, sample_rec(dev, version, t, heap + i, rssi,
		    1000, m));
		registry_submit(w, sample_rec(dev, version, t + 600, heap - i,
		    rssi, reset ? 20 : 1600, m));
	}
	registry_close(w);
}

/* the comparison named name of a status row's stage no */
static json_t *
compared(json_t *row, int no, const char *name)
{
	json_t *c;
	size_t i;

	json_array_foreach(json_object_get(json_array_get(json_object_get(row,
	    "stages"), (size_t)no), "compared"), i, c)
		if (strcmp(json_string_value(json_object_get(c, "name")),
		    name) == 0)
			return c;
	fail_msg("no comparison %s", name);
	return NULL;
}

/*
 * Telemetry comparisons: the devices a stage updated against those of
 * the fleet it has not, each kind; too few devices on a side do not
 * halt, enough do, naming the comparison, both values and both samples.
 */
static void
test_telemetry_comparisons_halt_a_worse_build(void **state)
{
	const char *path = fresh_db();
	struct registry *cat;
	int64_t rel, ro, t0 = (int64_t)time(NULL);
	json_t *row, *c, *g;
	const char *reason;

	(void)state;
	cat = started_rollout(path, "10%,soak=1h,min=1,heap_drop<=20%,"
	    "rssi_drop<=6,resets<=2x,metrics.reconnects<=1.5x; 100%", NULL,
	    600, &rel, &ro);
	registry_set_telemetry(cat, 0, 7 * 86400, 3);
	/* the control: four devices on 1.0.0, never offered it */
	samples(path, "ctl", 4, "1.0.0", t0 + 10, 200000, -60, 1, 0);
	/* two updated so far, and worse in every way: too few to judge */
	stage_outcomes(path, rel, ro, 0, "upd", 2, 0, t0);
	samples(path, "upd", 2, "2.0.0", t0 + 20, 130000, -70, 3, 1);
	registry_rollout_tick(cat, t0 + 700, 600);
	row = rollout_row(cat, ro, t0 + 700);
	assert_string_equal(json_string_value(json_object_get(row, "state")),
	    "active");
	c = compared(row, 0, "heap_drop");
	assert_string_equal(json_string_value(json_object_get(c, "state")),
	    "sample");
	assert_int_equal(json_integer_value(json_object_get(c,
	    "updated_devices")), 2);
	assert_int_equal(json_integer_value(json_object_get(c,
	    "control_devices")), 4);
	json_decref(row);
	/* a third: the rollout halts, naming the first bound crossed */
	stage_outcomes(path, rel, ro, 0, "upd3", 1, 0, t0);
	samples(path, "upd3", 1, "2.0.0", t0 + 30, 130000, -70, 3, 1);
	/* /metrics reads them first; the gate then takes what it read */
	g = json_object();
	assert_int_equal(registry_compare_gauges(cat, t0 + 711, g), OTAD_OK);
	json_decref(g);
	registry_rollout_tick(cat, t0 + 711, 600);
	row = rollout_row(cat, ro, t0 + 711);
	assert_string_equal(json_string_value(json_object_get(row, "state")),
	    "halted");
	reason = json_string_value(json_object_get(row, "reason"));
	if (strstr(reason, "stage 0: heap_drop<=20%: median free heap 35% "
	    "lower on the updated devices (130000 B over 3 updated, 200000 B "
	    "over 4 not)") == NULL)
		fail_msg("reason: %s", reason);
	c = compared(row, 0, "heap_drop");
	assert_string_equal(json_string_value(json_object_get(c, "state")),
	    "breach");
	assert_true(json_real_value(json_object_get(c, "updated")) == 130000);
	assert_true(json_real_value(json_object_get(c, "control")) == 200000);
	c = compared(row, 0, "rssi_drop");
	assert_string_equal(json_string_value(json_object_get(c, "state")),
	    "breach");
	assert_true(json_real_value(json_object_get(c, "value")) == 10);
	/* a reset each in 600 s against none over 2,400 device-seconds */
	c = compared(row, 0, "resets");
	assert_string_equal(json_string_value(json_object_get(c, "state")),
	    "breach");
	assert_true(json_real_value(json_object_get(c, "updated")) == 6);
	assert_true(fabs(json_real_value(json_object_get(c, "control")) -
	    1.5) < 1e-9);
	c = compared(row, 0, "metrics.reconnects");
	assert_string_equal(json_string_value(json_object_get(c, "state")),
	    "breach");
	assert_true(json_real_value(json_object_get(c, "value")) == 3);
	json_decref(row);
	/* /metrics reads the same */
	g = json_object();
	assert_int_equal(registry_compare_gauges(cat, t0 + 711, g), OTAD_OK);
	assert_int_equal(json_array_size(json_object_get(g, "compared")), 4);
	json_decref(g);
	/* past the retention, the samples are gone */
	registry_set_telemetry(cat, 0, 3600, 3);
	registry_rollout_tick(cat, t0 + 10000, 600);
	row = rollout_row(cat, ro, t0 + 10000);
	c = compared(row, 0, "heap_drop");
	assert_int_equal(json_integer_value(json_object_get(c,
	    "control_devices")), 0);
	json_decref(row);
	registry_close(cat);
	cleanup_db(path);
}

/*
 * The same build with the same telemetry as the fleet passes its
 * comparisons, and the next stage opens.
 */
static void
test_telemetry_comparisons_pass_a_build_as_good(void **state)
{
	const char *path = fresh_db();
	struct registry *cat;
	int64_t rel, ro, t0 = (int64_t)time(NULL);
	json_t *row;

	(void)state;
	cat = started_rollout(path, "10%,soak=60s,min=1,heap_drop<=20%,"
	    "resets<=2x,metrics.reconnects<=1.5x; 100%", NULL, 600, &rel, &ro);
	registry_set_telemetry(cat, 0, 7 * 86400, 3);
	samples(path, "ctl", 4, "1.0.0", t0 + 10, 200000, -60, 2, 1);
	stage_outcomes(path, rel, ro, 0, "upd", 3, 0, t0);
	samples(path, "upd", 3, "2.0.0", t0 + 20, 195000, -61, 2, 1);
	row = rollout_row(cat, ro, t0 + 700);
	assert_string_equal(json_string_value(json_object_get(compared(row, 0,
	    "heap_drop"), "state")), "ok");
	assert_string_equal(json_string_value(json_object_get(compared(row, 0,
	    "resets"), "state")), "ok");
	json_decref(row);
	assert_int_equal(ticked_stage(cat, ro, t0 + 700), 1);
	registry_close(cat);
	cleanup_db(path);
}


/* Two resets among the updated devices are chance: no halt on them. */
static void
test_two_resets_are_not_a_rate(void **state)
{
	const char *path = fresh_db();
	struct registry *cat;
	int64_t rel, ro, t0 = (int64_t)time(NULL);
	json_t *row, *c;

	(void)state;
	cat = started_rollout(path, "10%,soak=1h,min=1,resets<=2x; 100%", NULL,
	    600, &rel, &ro);
	registry_set_telemetry(cat, 0, 7 * 86400, 3);
	samples(path, "ctl", 4, "1.0.0", t0 + 10, 200000, -60, 1, 0);
	stage_outcomes(path, rel, ro, 0, "upd", 2, 0, t0);
	stage_outcomes(path, rel, ro, 0, "calm", 1, 0, t0);
	samples(path, "upd", 2, "2.0.0", t0 + 20, 200000, -60, 1, 1);
	samples(path, "calm", 1, "2.0.0", t0 + 20, 200000, -60, 1, 0);
	registry_rollout_tick(cat, t0 + 700, 600);
	row = rollout_row(cat, ro, t0 + 700);
	assert_string_equal(json_string_value(json_object_get(row, "state")),
	    "active");
	c = compared(row, 0, "resets");
	/* far above twice the control's rate, and still within bounds */
	assert_true(json_real_value(json_object_get(c, "value")) > 2);
	assert_string_equal(json_string_value(json_object_get(c, "state")),
	    "ok");
	json_decref(row);
	registry_close(cat);
	cleanup_db(path);
}


/*
 * run() keeps its statements prepared: run again, a statement binds
 * afresh (a parameter left out is NULL, not the last run's value), one
 * that failed says why and runs again, and more texts than it keeps
 * slots for, run in turn and again, each gives its own answer.
 */
static void
test_run_keeps_statements_as_written(void **state)
{
	const char *path = fresh_db();
	const char *insert = "INSERT INTO run_kept (k, v, w) VALUES (?1, ?2,"
	    " ?3) RETURNING k";
	struct registry *reg;
	char sql[64];
	int i, round;

	(void)state;
	assert_int_equal(registry_open(path, &reg), OTAD_OK);
	assert_int_equal(run(reg, "CREATE TABLE run_kept (k INTEGER PRIMARY"
	    " KEY, v TEXT NOT NULL, w TEXT)", ""), DB_DONE);
	assert_int_equal(run(reg, insert, "itt", (int64_t)1, "one", "first"),
	    DB_DONE);
	assert_int_equal(reg->returned, 1);
	assert_int_equal(run(reg, insert, "it", (int64_t)2, "two"), DB_DONE);
	assert_int_equal(reg->returned, 2);
	assert_int_equal(run(reg, "SELECT count(*) FROM run_kept WHERE k = 2"
	    " AND w IS NULL", ""), DB_DONE);
	assert_int_equal(reg->returned, 1);
	/* v is NOT NULL, and "" binds NULL */
	assert_int_not_equal(run(reg, insert, "itt", (int64_t)3, "", "x"),
	    DB_DONE);
	assert_non_null(strstr(db_errmsg(reg->db), "run_kept"));
	assert_int_equal(run(reg, insert, "itt", (int64_t)3, "three", "x"),
	    DB_DONE);
	assert_int_equal(reg->returned, 3);
	for (round = 0; round < 2; round++) {
		for (i = 0; i < 3 * RUN_SLOTS; i++) {
			snprintf(sql, sizeof(sql), "SELECT ?1 + %d", i);
			assert_int_equal(run(reg, sql, "i", (int64_t)round),
			    DB_DONE);
			assert_int_equal(reg->returned, round + i);
		}
	}
	assert_int_equal(run(reg, "SELECT count(*) FROM run_kept", ""),
	    DB_DONE);
	assert_int_equal(reg->returned, 3);
	assert_int_equal(run(reg, "DROP TABLE run_kept", ""), DB_DONE);
	registry_close(reg);
	cleanup_db(path);
}


int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_catalog),
		cmocka_unit_test(test_writer_and_readers),
		cmocka_unit_test(test_records_apply_in_the_order_queued),
		cmocka_unit_test(
		    test_a_batch_sorted_by_device_keeps_each_devices_order),
		cmocka_unit_test(test_newer_schema_is_refused),
		cmocka_unit_test(test_device_rows_in_memory_follow_the_database),
		cmocka_unit_test(test_a_repeated_check_in_keeps_the_row_true),
		cmocka_unit_test(test_a_report_does_not_wait_for_a_long_batch),
		cmocka_unit_test(
		    test_a_small_queue_drops_nothing_while_the_writer_gathers),
		cmocka_unit_test(test_an_outcome_before_its_offer_is_the_offers),
		cmocka_unit_test(test_wait_served),
		cmocka_unit_test(test_stage_transitions),
		cmocka_unit_test(test_a_promote_window_holds_widening_not_halts),
		cmocka_unit_test(test_a_device_that_keeps_failing_is_quarantined),
		cmocka_unit_test(test_telemetry_comparisons_halt_a_worse_build),
		cmocka_unit_test(test_telemetry_comparisons_pass_a_build_as_good),
		cmocka_unit_test(test_two_resets_are_not_a_rate),
		cmocka_unit_test(test_result_names),
		cmocka_unit_test(test_run_keeps_statements_as_written),
	};

	return cmocka_run_group_tests_name("registry", tests, NULL, NULL);
}
