/*
 * registry/driver.c: the registry's database interface (registry_db.h),
 * handed to the driver each connection and statement carries.
 */
#include <string.h>
#include <strings.h>

#include "registry_driver.h"

int
db_target_is_postgres(const char *target)
{
	/* a path, however named, is a SQLite file */
	if (target == NULL || target[0] == '/' || target[0] == '.')
		return 0;
	return strncasecmp(target, "postgresql://", 13) == 0 ||
	    strncasecmp(target, "postgres://", 11) == 0 ||
	    strstr(target, "dbname=") != NULL ||
	    strncmp(target, "host=", 5) == 0;
}

enum db_code
db_open(const char *target, enum db_mode mode, struct db **out)
{
	if (db_target_is_postgres(target))
		return postgres_open(target, out);
	return sqlite_open(target, mode, out);
}

void
db_close(struct db *db)
{
	if (db != NULL)
		db->drv->close(db);
}

enum db_backend
db_backend(const struct db *db)
{
	return db->drv->backend;
}

const char *
db_errmsg(struct db *db)
{
	return db->drv->errmsg(db);
}

enum db_code
db_errcode(struct db *db)
{
	return db->drv->errcode(db);
}

enum db_code
db_exec(struct db *db, const char *sql)
{
	return db->drv->exec(db, sql);
}

enum db_code
db_begin_write(struct db *db)
{
	return db->drv->begin_write(db);
}

void
db_busy_timeout(struct db *db, int ms)
{
	db->drv->busy_timeout(db, ms);
}

void
db_durable(struct db *db, int durable)
{
	db->drv->durable(db, durable);
}

unsigned
db_session(struct db *db)
{
	return db->drv->session(db);
}

int64_t
db_changes(struct db *db)
{
	return db->drv->changes(db);
}

enum db_code
db_prepare(struct db *db, const char *sql, int persistent,
    struct db_stmt **out)
{
	return db->drv->prepare(db, sql, persistent, out);
}

void
db_bind_text(struct db_stmt *st, int i, const char *s)
{
	st->db->drv->bind_text(st, i, s);
}

void
db_bind_literal(struct db_stmt *st, int i, const char *s)
{
	st->db->drv->bind_literal(st, i, s);
}

void
db_bind_int64(struct db_stmt *st, int i, int64_t v)
{
	st->db->drv->bind_int64(st, i, v);
}

void
db_bind_double(struct db_stmt *st, int i, double v)
{
	st->db->drv->bind_double(st, i, v);
}

void
db_bind_blob(struct db_stmt *st, int i, const void *p, size_t n)
{
	st->db->drv->bind_blob(st, i, p, n);
}

void
db_bind_null(struct db_stmt *st, int i)
{
	st->db->drv->bind_null(st, i);
}

enum db_code
db_step(struct db_stmt *st)
{
	return st->db->drv->step(st);
}

int
db_column_count(struct db_stmt *st)
{
	return st->db->drv->column_count(st);
}

const char *
db_column_name(struct db_stmt *st, int i)
{
	return st->db->drv->column_name(st, i);
}

enum db_type
db_column_type(struct db_stmt *st, int i)
{
	return st->db->drv->column_type(st, i);
}

int64_t
db_column_int64(struct db_stmt *st, int i)
{
	return st->db->drv->column_int64(st, i);
}

int
db_column_int(struct db_stmt *st, int i)
{
	return (int)st->db->drv->column_int64(st, i);
}

double
db_column_double(struct db_stmt *st, int i)
{
	return st->db->drv->column_double(st, i);
}

const char *
db_column_text(struct db_stmt *st, int i)
{
	return st->db->drv->column_text(st, i);
}

const void *
db_column_blob(struct db_stmt *st, int i)
{
	return st->db->drv->column_blob(st, i);
}

size_t
db_column_bytes(struct db_stmt *st, int i)
{
	return st->db->drv->column_bytes(st, i);
}

void
db_reset(struct db_stmt *st)
{
	st->db->drv->reset(st);
}

void
db_clear_bindings(struct db_stmt *st)
{
	st->db->drv->clear_bindings(st);
}

void
db_finalize(struct db_stmt *st)
{
	if (st != NULL)
		st->db->drv->finalize(st);
}
