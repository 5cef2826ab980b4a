/*
 * registry_driver.h: what a database driver of the registry provides
 * (src/registry/driver_sqlite.c, driver_postgres.c), dispatched by
 * src/registry/driver.c. Every connection and statement starts with its
 * driver, so one binary serves either database.
 */
#ifndef REGISTRY_DRIVER_H
#define REGISTRY_DRIVER_H

#include "registry_db.h"

struct db_driver {
	enum db_backend backend;
	void (*close)(struct db *);
	const char *(*errmsg)(struct db *);
	enum db_code (*errcode)(struct db *);
	enum db_code (*exec)(struct db *, const char *);
	enum db_code (*begin_write)(struct db *);
	void (*busy_timeout)(struct db *, int);
	void (*durable)(struct db *, int);
	int64_t (*changes)(struct db *);
	unsigned (*session)(struct db *);
	enum db_code (*prepare)(struct db *, const char *, int,
	    struct db_stmt **);
	void (*bind_text)(struct db_stmt *, int, const char *);
	void (*bind_literal)(struct db_stmt *, int, const char *);
	void (*bind_int64)(struct db_stmt *, int, int64_t);
	void (*bind_double)(struct db_stmt *, int, double);
	void (*bind_blob)(struct db_stmt *, int, const void *, size_t);
	void (*bind_null)(struct db_stmt *, int);
	enum db_code (*step)(struct db_stmt *);
	int (*column_count)(struct db_stmt *);
	const char *(*column_name)(struct db_stmt *, int);
	enum db_type (*column_type)(struct db_stmt *, int);
	int64_t (*column_int64)(struct db_stmt *, int);
	double (*column_double)(struct db_stmt *, int);
	const char *(*column_text)(struct db_stmt *, int);
	const void *(*column_blob)(struct db_stmt *, int);
	size_t (*column_bytes)(struct db_stmt *, int);
	void (*reset)(struct db_stmt *);
	void (*clear_bindings)(struct db_stmt *);
	void (*finalize)(struct db_stmt *);
};

struct db {
	const struct db_driver *drv;
};

struct db_stmt {
	struct db *db;
};

enum db_code sqlite_open(const char *path, enum db_mode mode,
    struct db **out);
enum db_code postgres_open(const char *conninfo, struct db **out);

#endif
