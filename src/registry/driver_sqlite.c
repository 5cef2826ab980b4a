/*
 * registry/driver_sqlite.c: the embedded database. One file in WAL mode;
 * the SQL functions semver_compare, ring and metric are the daemon's own
 * C, so queries order versions and place devices exactly as it does.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sqlite3.h>

#include "log.h"
#include "registry_driver.h"
#include "semver.h"
#include "stages.h"

struct sqlite_db {
	struct db base;
	sqlite3 *h;
};

struct sqlite_stmt {
	struct db_stmt base;
	sqlite3_stmt *s;
};

#define H(db) (((struct sqlite_db *)(db))->h)
#define S(st) (((struct sqlite_stmt *)(st))->s)

static enum db_code
code_of(int rc, sqlite3 *h)
{
	switch (rc) {
	case SQLITE_OK:
		return DB_OK;
	case SQLITE_ROW:
		return DB_ROW;
	case SQLITE_DONE:
		return DB_DONE;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return DB_BUSY;
	case SQLITE_CONSTRAINT:
		return sqlite3_extended_errcode(h) ==
		    SQLITE_CONSTRAINT_FOREIGNKEY ? DB_FOREIGN_KEY :
		    DB_CONSTRAINT;
	default:
		return DB_ERROR;
	}
}

/* semver_compare(a, b) in SQL, so queries order versions as otad does */
static void
sql_semver_compare(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	const unsigned char *a = sqlite3_value_text(argv[0]);
	const unsigned char *b = sqlite3_value_text(argv[1]);

	(void)argc;
	if (a == NULL || b == NULL) {
		sqlite3_result_null(ctx);
		return;
	}
	sqlite3_result_int(ctx, semver_compare((const char *)a,
	    (const char *)b));
}

/* ring(rollout, device): a device's place, as the daemon computes it */
static void
sql_ring(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	const unsigned char *id = sqlite3_value_text(argv[1]);

	(void)argc;
	if (id == NULL) {
		sqlite3_result_null(ctx);
		return;
	}
	sqlite3_result_int(ctx, (int)stages_ring(sqlite3_value_int64(argv[0]),
	    (const char *)id));
}

/*
 * metric(metrics, name): the number a telemetry sample's metrics (a JSON
 * object) hold under name, or NULL
 */
static void
sql_metric(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	const char *m = (const char *)sqlite3_value_text(argv[0]);
	const char *name = (const char *)sqlite3_value_text(argv[1]);
	json_t *o, *v;

	(void)argc;
	sqlite3_result_null(ctx);
	/* most samples hold no such name: spare them the parse */
	if (m == NULL || name == NULL || name[0] == '\0' ||
	    strstr(m, name) == NULL || (o = json_loads(m, 0, NULL)) == NULL)
		return;
	if ((v = json_object_get(o, name)) != NULL && json_is_number(v))
		sqlite3_result_double(ctx, json_number_value(v));
	json_decref(o);
}

static void
s_close(struct db *db)
{
	sqlite3_close(H(db));
	free(db);
}

static const char *
s_errmsg(struct db *db)
{
	return sqlite3_errmsg(H(db));
}

static enum db_code
s_errcode(struct db *db)
{
	return code_of(sqlite3_errcode(H(db)), H(db));
}

static enum db_code
s_exec(struct db *db, const char *sql)
{
	return code_of(sqlite3_exec(H(db), sql, NULL, NULL, NULL), H(db));
}

static enum db_code
s_begin_write(struct db *db)
{
	return s_exec(db, "BEGIN IMMEDIATE");
}

static void
s_busy_timeout(struct db *db, int ms)
{
	sqlite3_busy_timeout(H(db), ms);
}

/*
 * WAL with synchronous=NORMAL does not fsync at commit; FULL does, and
 * its fsync also covers every earlier commit.
 */
static void
s_durable(struct db *db, int durable)
{
	sqlite3_exec(H(db), durable ? "PRAGMA synchronous = FULL" :
	    "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
}

static int64_t
s_changes(struct db *db)
{
	return sqlite3_changes(H(db));
}

/* a file is never lost and made again */
static unsigned
s_session(struct db *db)
{
	(void)db;
	return 0;
}


static enum db_code
s_prepare(struct db *db, const char *sql, int persistent,
    struct db_stmt **out)
{
	struct sqlite_stmt *st;
	int rc;

	*out = NULL;
	if ((st = calloc(1, sizeof(*st))) == NULL)
		return DB_ERROR;
	st->base.db = db;
	rc = sqlite3_prepare_v3(H(db), sql, -1, persistent ?
	    SQLITE_PREPARE_PERSISTENT : 0, &st->s, NULL);
	if (rc != SQLITE_OK) {
		free(st);
		return code_of(rc, H(db));
	}
	*out = &st->base;
	return DB_OK;
}

static void
s_bind_text(struct db_stmt *st, int i, const char *s)
{
	sqlite3_bind_text(S(st), i, s, -1, SQLITE_STATIC);
}

static void
s_bind_int64(struct db_stmt *st, int i, int64_t v)
{
	sqlite3_bind_int64(S(st), i, v);
}

static void
s_bind_double(struct db_stmt *st, int i, double v)
{
	sqlite3_bind_double(S(st), i, v);
}

static void
s_bind_blob(struct db_stmt *st, int i, const void *p, size_t n)
{
	sqlite3_bind_blob(S(st), i, p, (int)n, SQLITE_STATIC);
}

static void
s_bind_null(struct db_stmt *st, int i)
{
	sqlite3_bind_null(S(st), i);
}

static enum db_code
s_step(struct db_stmt *st)
{
	return code_of(sqlite3_step(S(st)), H(st->db));
}

static int
s_column_count(struct db_stmt *st)
{
	return sqlite3_column_count(S(st));
}

static const char *
s_column_name(struct db_stmt *st, int i)
{
	return sqlite3_column_name(S(st), i);
}

static enum db_type
s_column_type(struct db_stmt *st, int i)
{
	switch (sqlite3_column_type(S(st), i)) {
	case SQLITE_INTEGER:
		return DB_INTEGER;
	case SQLITE_FLOAT:
		return DB_FLOAT;
	case SQLITE_BLOB:
		return DB_BLOB;
	case SQLITE_NULL:
		return DB_NULL;
	default:
		return DB_TEXT;
	}
}

static int64_t
s_column_int64(struct db_stmt *st, int i)
{
	return sqlite3_column_int64(S(st), i);
}

static double
s_column_double(struct db_stmt *st, int i)
{
	return sqlite3_column_double(S(st), i);
}

static const char *
s_column_text(struct db_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(S(st), i);
}

static const void *
s_column_blob(struct db_stmt *st, int i)
{
	return sqlite3_column_blob(S(st), i);
}

static size_t
s_column_bytes(struct db_stmt *st, int i)
{
	return (size_t)sqlite3_column_bytes(S(st), i);
}

static void
s_reset(struct db_stmt *st)
{
	sqlite3_reset(S(st));
}

static void
s_clear_bindings(struct db_stmt *st)
{
	sqlite3_clear_bindings(S(st));
}

static void
s_finalize(struct db_stmt *st)
{
	sqlite3_finalize(S(st));
	free(st);
}

static const struct db_driver sqlite_driver = {
	.backend = DB_SQLITE,
	.close = s_close,
	.errmsg = s_errmsg,
	.errcode = s_errcode,
	.exec = s_exec,
	.begin_write = s_begin_write,
	.busy_timeout = s_busy_timeout,
	.durable = s_durable,
	.changes = s_changes,
	.session = s_session,
	.prepare = s_prepare,
	.bind_text = s_bind_text,
	.bind_literal = s_bind_text,
	.bind_int64 = s_bind_int64,
	.bind_double = s_bind_double,
	.bind_blob = s_bind_blob,
	.bind_null = s_bind_null,
	.step = s_step,
	.column_count = s_column_count,
	.column_name = s_column_name,
	.column_type = s_column_type,
	.column_int64 = s_column_int64,
	.column_double = s_column_double,
	.column_text = s_column_text,
	.column_blob = s_column_blob,
	.column_bytes = s_column_bytes,
	.reset = s_reset,
	.clear_bindings = s_clear_bindings,
	.finalize = s_finalize,
};

/*
 * SQLite counts the memory it holds under one lock for the process, taken
 * at every allocation it makes (several a statement): the writer, the
 * HTTP threads' readers and the rollout controller met on it. otad never
 * asks for the count. It can only be turned off before SQLite starts.
 */
static void
sqlite_setup(void)
{
	if (sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) != SQLITE_OK)
		log_debug("SQLite had started: its memory count stays on");
}

enum db_code
sqlite_open(const char *path, enum db_mode mode, struct db **out)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct sqlite_db *db;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
	    (mode == DB_CREATE ? SQLITE_OPEN_CREATE : 0);
	int rc;

	*out = NULL;
	pthread_once(&once, sqlite_setup);
	if ((db = calloc(1, sizeof(*db))) == NULL)
		return DB_ERROR;
	db->base.drv = &sqlite_driver;
	if ((rc = sqlite3_open_v2(path, &db->h, flags, NULL)) != SQLITE_OK)
		goto fail;
	sqlite3_extended_result_codes(db->h, 0);
	if ((rc = sqlite3_create_function(db->h, "semver_compare", 2,
	    SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, sql_semver_compare, NULL,
	    NULL)) != SQLITE_OK ||
	    (rc = sqlite3_create_function(db->h, "ring", 2, SQLITE_UTF8 |
	    SQLITE_DETERMINISTIC, NULL, sql_ring, NULL, NULL)) != SQLITE_OK ||
	    (rc = sqlite3_create_function(db->h, "metric", 2, SQLITE_UTF8 |
	    SQLITE_DETERMINISTIC, NULL, sql_metric, NULL, NULL)) != SQLITE_OK ||
	    (rc = sqlite3_exec(db->h, "PRAGMA foreign_keys = ON", NULL, NULL,
	    NULL)) != SQLITE_OK)
		goto fail;
	*out = &db->base;
	return DB_OK;
fail:
	log_warnx("cannot open database '%s': %s", path,
	    db->h ? sqlite3_errmsg(db->h) : "out of memory");
	sqlite3_close(db->h);
	free(db);
	return DB_ERROR;
}
