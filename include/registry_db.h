/*
 * registry_db.h: the database the registry talks through, SQLite or
 * PostgreSQL, behind one small interface in the shape of SQLite's own
 * (prepare, bind, step, column), so that every query of src/registry/ is
 * written once and runs on both. Statements use SQLite's numbered
 * parameters (?1, ?2); the PostgreSQL driver rewrites them as $1, $2.
 *
 * Only src/registry/ includes this.
 */
#ifndef REGISTRY_DB_H
#define REGISTRY_DB_H

#include <stddef.h>
#include <stdint.h>

struct db;
struct db_stmt;

enum db_backend { DB_SQLITE, DB_POSTGRES };

/* what db_step and db_exec return */
enum db_code {
	DB_OK = 0,
	DB_ERROR,
	DB_BUSY,        /* locked by another writer: try again */
	DB_CONSTRAINT,  /* a CHECK, UNIQUE or trigger refused the change */
	DB_FOREIGN_KEY, /* a row it names does not exist */
	DB_ROW,         /* a row is ready to be read */
	DB_DONE,        /* the statement ran to its end */
};

enum db_type { DB_NULL, DB_INTEGER, DB_FLOAT, DB_TEXT, DB_BLOB };

/* how db_open opens a SQLite file */
enum db_mode { DB_READ_WRITE, DB_CREATE };

/*
 * A postgresql:// or postgres:// URL, or a "host=... dbname=..." string,
 * is PostgreSQL; anything else is the path of a SQLite file.
 */
int db_target_is_postgres(const char *target);

/* on failure, says why in the log; there is nothing to close */
enum db_code db_open(const char *target, enum db_mode mode, struct db **out);
void db_close(struct db *db);
enum db_backend db_backend(const struct db *db);
/* the last error's message, for logs and refusals */
const char *db_errmsg(struct db *db);
/* the last error's code (DB_BUSY, DB_CONSTRAINT, ...) */
enum db_code db_errcode(struct db *db);

/* One or more statements without parameters or rows. */
enum db_code db_exec(struct db *db, const char *sql);
/*
 * Begin a transaction that will write, taking the write lock now
 * (SQLite's BEGIN IMMEDIATE), so it cannot fail later for a lock that
 * another writer took after it began.
 */
enum db_code db_begin_write(struct db *db);
/* how long a statement waits for a lock before it answers DB_BUSY */
void db_busy_timeout(struct db *db, int ms);
/*
 * Whether commits from now on wait for the disk (the default). Off for
 * batches whose loss a crash may cost (heartbeats, counters).
 */
void db_durable(struct db *db, int durable);
/*
 * Counts the times the connection was made again after it was lost:
 * what a session held (a lock) is gone when it changes.
 */
unsigned db_session(struct db *db);
/* rows changed by the last INSERT, UPDATE or DELETE */
int64_t db_changes(struct db *db);

/* persistent: kept for the connection's life (reused many times) */
enum db_code db_prepare(struct db *db, const char *sql, int persistent,
    struct db_stmt **out);
/*
 * Bound text and blobs must stay valid until the statement is reset;
 * i counts from 1. Bindings survive db_reset until db_clear_bindings.
 */
void db_bind_text(struct db_stmt *st, int i, const char *s);
/*
 * Text that takes the type its place in the statement gives it, as a
 * literal does: an id compared with an integer column is that integer
 * (SQLite's type affinity; an untyped parameter in PostgreSQL).
 */
void db_bind_literal(struct db_stmt *st, int i, const char *s);
void db_bind_int64(struct db_stmt *st, int i, int64_t v);
void db_bind_double(struct db_stmt *st, int i, double v);
void db_bind_blob(struct db_stmt *st, int i, const void *p, size_t n);
void db_bind_null(struct db_stmt *st, int i);
enum db_code db_step(struct db_stmt *st);
int db_column_count(struct db_stmt *st);
const char *db_column_name(struct db_stmt *st, int i);
enum db_type db_column_type(struct db_stmt *st, int i);
int64_t db_column_int64(struct db_stmt *st, int i);
int db_column_int(struct db_stmt *st, int i);
double db_column_double(struct db_stmt *st, int i);
/* NULL for a NULL column */
const char *db_column_text(struct db_stmt *st, int i);
const void *db_column_blob(struct db_stmt *st, int i);
size_t db_column_bytes(struct db_stmt *st, int i);
void db_reset(struct db_stmt *st);
void db_clear_bindings(struct db_stmt *st);
void db_finalize(struct db_stmt *st);

#endif
