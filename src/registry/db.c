/*
 * registry/db.c: opening the registry's database (SQLite in WAL mode, or
 * PostgreSQL), each dialect's numbered migrations, and report result
 * names.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


#include "log.h"
#include "registry.h"
#include "registry_impl.h"

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

/* The version a PostgreSQL database's schema is at; -1 on error. */
static int
pg_schema_version(struct db *db)
{
	struct db_stmt *st;
	int v = -1;

	if (db_prepare(db, "SELECT coalesce(max(version), 0) FROM"
	    " schema_version", 0, &st) == DB_OK && db_step(st) == DB_ROW)
		v = db_column_int(st, 0);
	db_finalize(st);
	return v;
}

/*
 * Apply pg_migrations[version..], each in its own transaction (DDL is
 * transactional in PostgreSQL), holding a session lock so that nodes
 * starting at once migrate once.
 */
static enum otad_err
migrate_postgres(struct db *db)
{
	enum otad_err rc = OTAD_OK;
	char sql[80];
	int v;

	if ((rc = exec(db, "SELECT pg_advisory_lock(7340418)")) != OTAD_OK ||
	    (rc = exec(db, "CREATE TABLE IF NOT EXISTS schema_version"
	    " (version integer NOT NULL)")) != OTAD_OK)
		goto out;
	while ((v = pg_schema_version(db)) >= 0 &&
	    (unsigned)v < pg_migration_count) {
		snprintf(sql, sizeof(sql), "INSERT INTO schema_version VALUES"
		    " (%d)", v + 1);
		if ((rc = exec(db, "BEGIN")) != OTAD_OK ||
		    (rc = exec(db, pg_migrations[v])) != OTAD_OK ||
		    (rc = exec(db, sql)) != OTAD_OK ||
		    (rc = exec(db, "COMMIT")) != OTAD_OK) {
			exec(db, "ROLLBACK");
			log_warnx("migration %d failed", v + 1);
			goto out;
		}
		log_info("database migrated to schema %d", v + 1);
	}
	if (v < 0) {
		rc = db_error(db, "cannot read schema version");
	} else if ((unsigned)v > pg_migration_count) {
		log_warnx("database schema %d is newer than this build knows "
		    "(%u)", v, pg_migration_count);
		rc = OTAD_ERR_DB;
	}
out:
	exec(db, "SELECT pg_advisory_unlock(7340418)");
	return rc;
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
	/* the configuration's defaults, until it says otherwise */
	registry_set_telemetry(reg, TELEMETRY_INTERVAL_S, TELEMETRY_RETENTION_S,
	    COMPARE_MIN_DEVICES);
	pthread_mutex_init(&reg->producers_mu, NULL);
	if ((rc = connect_db(path, DB_CREATE, &reg->db)) != OTAD_OK)
		goto fail;
	/* opening may wait for a busy daemon; later waits are short */
	db_busy_timeout(reg->db, OPEN_WAIT_MS);
	if (db_backend(reg->db) == DB_POSTGRES) {
		if ((rc = migrate_postgres(reg->db)) != OTAD_OK)
			goto fail;
	/* WAL: readers never block the writer nor it them */
	} else if ((rc = exec(reg->db, "PRAGMA journal_mode = WAL")) !=
	    OTAD_OK ||
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
