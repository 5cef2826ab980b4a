/*
 * registry/db.c: opening the SQLite database (WAL, busy waits, the SQL
 * functions semver_compare and ring), its numbered migrations, report
 * result names, and the daemon's mark of the catalog generation it
 * serves (what otactl waits for).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


#include "log.h"
#include "registry.h"
#include "registry_impl.h"

/* schema/NNN-*.sql, in order; generated into the build by the Makefile */
extern const char *const schema_migrations[];
extern const unsigned schema_migration_count;

const char *const result_names[] = {
	[REPORT_DOWNLOADING] = "downloading",
	[REPORT_INSTALLED] = "installed",
	[REPORT_SUCCESS] = "success",
	[REPORT_ROLLBACK] = "rollback",
	[REPORT_FAILED] = "failed",
};

int
registry_result_parse(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(result_names) / sizeof(result_names[0]); i++)
		if (strcmp(s, result_names[i]) == 0)
			return (int)i;
	return -1;
}

const char *
registry_result_name(enum report_result r)
{
	return result_names[r];
}

enum otad_err
db_error(struct db *db, const char *what)
{
	log_warnx("%s: %s", what, db_errmsg(db));
	return db_errcode(db) == DB_BUSY ? OTAD_ERR_BUSY : OTAD_ERR_DB;
}

/* A connection waiting BUSY_WAIT_MS for locks. */
enum otad_err
connect_db(const char *target, enum db_mode mode, struct db **out)
{
	if (db_open(target, mode, out) != DB_OK)
		return OTAD_ERR_DB;
	db_busy_timeout(*out, BUSY_WAIT_MS);
	return OTAD_OK;
}

enum otad_err
exec(struct db *db, const char *sql)
{
	if (db_exec(db, sql) != DB_OK)
		return db_error(db, "database");
	return OTAD_OK;
}

static int
user_version(struct db *db)
{
	struct db_stmt *st;
	int v = -1;

	if (db_prepare(db, "PRAGMA user_version", 0, &st) ==
	    DB_OK && db_step(st) == DB_ROW)
		v = db_column_int(st, 0);
	db_finalize(st);
	return v;
}

static enum otad_err migrate_all(struct db *db);

/* No row breaks a foreign key: 0, or -1 (logged). */
static int
foreign_keys_hold(struct db *db)
{
	struct db_stmt *st;
	int step;

	if (db_prepare(db, "PRAGMA foreign_key_check", 0, &st) != DB_OK)
		return -1;
	step = db_step(st);
	if (step == DB_ROW)
		log_warnx("a migration left a row of %s without its %s",
		    db_column_text(st, 0),
		    db_column_text(st, 2));
	db_finalize(st);
	return step == DB_DONE ? 0 : -1;
}

/*
 * Apply schema_migrations[user_version..], each in its own transaction.
 * Foreign keys are off meanwhile, as SQLite's way of changing a table
 * (build the new one, copy, drop, rename) needs, and each migration must
 * leave them whole before it commits.
 */
static enum otad_err
migrate(struct db *db)
{
	enum otad_err rc = migrate_all(db);

	if (exec(db, "PRAGMA foreign_keys = ON") != OTAD_OK && rc == OTAD_OK)
		rc = OTAD_ERR_DB;
	return rc;
}

static enum otad_err
migrate_all(struct db *db)
{
	enum otad_err rc;
	char sql[64];
	int v;

	/* up to date (the common case): no write lock taken at all */
	if ((v = user_version(db)) >= 0 &&
	    (unsigned)v == schema_migration_count)
		return OTAD_OK;
	if ((rc = exec(db, "PRAGMA foreign_keys = OFF")) != OTAD_OK)
		return rc;
	for (;;) {
		/* IMMEDIATE: two processes starting at once migrate once */
		if ((rc = exec(db, "BEGIN IMMEDIATE")) != OTAD_OK)
			return rc;
		if ((v = user_version(db)) < 0) {
			exec(db, "ROLLBACK");
			return db_error(db, "cannot read schema version");
		}
		if ((unsigned)v == schema_migration_count)
			return exec(db, "COMMIT");
		if ((unsigned)v > schema_migration_count) {
			exec(db, "ROLLBACK");
			log_warnx("database schema %d is newer than this build "
			    "knows (%u)", v, schema_migration_count);
			return OTAD_ERR_DB;
		}
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
		if ((rc = exec(db, schema_migrations[v])) != OTAD_OK ||
		    (rc = foreign_keys_hold(db) < 0 ? OTAD_ERR_DB : OTAD_OK) !=
		    OTAD_OK || (rc = exec(db, sql)) != OTAD_OK ||
		    (rc = exec(db, "COMMIT")) != OTAD_OK) {
			exec(db, "ROLLBACK");
			log_warnx("migration %d failed", v + 1);
			return rc;
		}
		log_info("database migrated to schema %d", v + 1);
	}
}

enum otad_err
registry_open(const char *path, struct registry **out)
{
	struct registry *reg;
	enum otad_err rc;

	*out = NULL;
	if ((reg = calloc(1, sizeof(*reg))) == NULL)
		return OTAD_ERR_NOMEM;
	reg->efd = -1;
	snprintf(reg->actor, sizeof(reg->actor), "otad");
	pthread_mutex_init(&reg->producers_mu, NULL);
	if ((rc = connect_db(path, DB_CREATE, &reg->db)) != OTAD_OK)
		goto fail;
	/* opening may wait for a busy daemon; later waits are short */
	db_busy_timeout(reg->db, OPEN_WAIT_MS);
	/* WAL: readers never block the writer nor it them */
	if ((rc = exec(reg->db, "PRAGMA journal_mode = WAL")) != OTAD_OK ||
	    (rc = exec(reg->db, "PRAGMA synchronous = FULL")) != OTAD_OK ||
	    (rc = migrate(reg->db)) != OTAD_OK)
		goto fail;
	db_busy_timeout(reg->db, BUSY_WAIT_MS);
	*out = reg;
	return OTAD_OK;
fail:
	registry_close(reg);
	return rc;
}

int
registry_daemon_mark(struct registry *reg, int64_t generation, int64_t now)
{
	if (exec_ints(reg->db, "INSERT INTO daemon (id, pid, generation, seen)"
	    " VALUES (1, ?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET"
	    " pid = excluded.pid, generation = excluded.generation,"
	    " seen = excluded.seen", (int64_t)getpid(), generation, now,
	    (int64_t)-1) < 0) {
		log_debug("cannot mark the served generation: %s",
		    db_errmsg(reg->db));
		return -1;
	}
	return 0;
}

/*
 * Is the daemon that wrote the row running? Same host by design (they
 * share the database file); EPERM means alive under another user.
 */
static int
daemon_alive(int64_t pid)
{
	return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

enum otad_err
registry_wait_served(struct registry *reg, int timeout_ms)
{
	const struct timespec pause = {0, 20 * 1000000L};
	json_t *rows;
	int64_t want, served, pid;
	int waited = 0;

	for (;;) {
		if (query_rows(reg->db, &rows, "SELECT (SELECT generation FROM"
		    " catalog) AS want, ifnull((SELECT generation FROM daemon),"
		    " -1) AS served, ifnull((SELECT pid FROM daemon), 0) AS pid",
		    ARGS_END) != OTAD_OK)
			return OTAD_ERR_DB;
		want = json_integer_value(json_object_get(json_array_get(rows,
		    0), "want"));
		served = json_integer_value(json_object_get(json_array_get(
		    rows, 0), "served"));
		pid = json_integer_value(json_object_get(json_array_get(rows,
		    0), "pid"));
		json_decref(rows);
		if (!daemon_alive(pid))
			return OTAD_ERR_NOT_FOUND;
		if (served >= want)
			return OTAD_OK;
		if (waited >= timeout_ms)
			return OTAD_ERR_BUSY;
		nanosleep(&pause, NULL);
		waited += 20;
	}
}
