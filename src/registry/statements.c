/*
 * registry/statements.c: what every part of the registry uses to talk
 * SQL (binding, stepping, rows as JSON, summaries), and the catalog's
 * transactions: one operator action each, audited under its actor.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


#include "log.h"
#include "registry.h"
#include "registry_impl.h"

static enum otad_err audit(struct registry *reg, const char *what);

/* bind helpers: "" and absent values become NULL */
void
bind_text(struct db_stmt *st, int i, const char *s)
{
	if (s == NULL || *s == '\0')
		db_bind_null(st, i);
	else
		db_bind_text(st, i, s);
}

void
bind_tel(struct db_stmt *st, int i, const struct telemetry *t, unsigned bit,
    int64_t v)
{
	if (t->present & bit)
		db_bind_int64(st, i, v);
	else
		db_bind_null(st, i);
}

/* Run a prepared statement that returns no rows; 0 or -1. */
int
step_done(struct db_stmt *st)
{
	int rc = db_step(st);

	db_reset(st);
	db_clear_bindings(st);
	return rc == DB_DONE ? 0 : -1;
}

void
registry_set_patience(struct registry *reg, int ms)
{
	db_busy_timeout(reg->db, ms);
}

void
registry_set_actor(struct registry *reg, const char *actor)
{
	snprintf(reg->actor, sizeof(reg->actor), "%s", actor);
}

void
registry_set_who(struct registry *reg, const char *who)
{
	snprintf(reg->who, sizeof(reg->who), "%s", who);
}

void
registry_set_approvals(struct registry *reg, unsigned approvals,
    const char *break_glass)
{
	reg->approvals = approvals;
	snprintf(reg->break_glass, sizeof(reg->break_glass), "%s",
	    break_glass ? break_glass : "");
}

/*
 * A start without a second operator's approval: refused (0, with why)
 * under the two-person rule, unless broken open (audited, 1). 1 when the
 * rule is off.
 */
int
may_start_alone(struct registry *reg, const char *what, char *why,
    size_t whylen)
{
	char line[512];

	if (reg->approvals < 2)
		return 1;
	if (reg->break_glass[0] == '\0') {
		snprintf(why, whylen, "%s needs a second operator's approval "
		    "(rollout_approvals = %u)", what, reg->approvals);
		return 0;
	}
	log_warnx("%s started without approval by %s: break-glass: %s", what,
	    reg->actor, reg->break_glass);
	snprintf(line, sizeof(line), "break-glass: %s started without "
	    "approval: %s", what, reg->break_glass);
	return audit(reg, line) == OTAD_OK;
}

int64_t
now_s(void)
{
	return (int64_t)time(NULL);
}

/* One row as a JSON object keyed by column name. */
static json_t *
row_json(struct db_stmt *st)
{
	json_t *o = json_object();
	int i, n = db_column_count(st);

	for (i = 0; o != NULL && i < n; i++) {
		const char *name = db_column_name(st, i);
		json_t *v;

		switch (db_column_type(st, i)) {
		case DB_INTEGER:
			v = json_integer(db_column_int64(st, i));
			break;
		case DB_FLOAT:
			v = json_real(db_column_double(st, i));
			break;
		case DB_NULL:
			v = json_null();
			break;
		default:
			v = json_string(
			    db_column_text(st, i));
			if (v == NULL) /* not UTF-8: never from our inputs */
				v = json_null();
		}
		json_object_set_new(o, name, v);
	}
	return o;
}

/*
 * Run sql with text parameters (NULL-terminated list) and return every row.
 */
enum otad_err
query_rows(struct db *db, json_t **rows, const char *sql, ...)
{
	struct db_stmt *st;
	const char *p;
	va_list ap;
	int i = 1, step;

	*rows = NULL;
	if (db_prepare(db, sql, 0, &st) != DB_OK)
		return db_error(db, "query");
	va_start(ap, sql);
	while ((p = va_arg(ap, const char *)) != NULL)
		db_bind_literal(st, i++, p);
	va_end(ap);
	*rows = json_array();
	while ((step = db_step(st)) == DB_ROW)
		json_array_append_new(*rows, row_json(st));
	if (step != DB_DONE) {
		enum otad_err rc = db_error(db, "query");

		db_finalize(st);
		json_decref(*rows);
		*rows = NULL;
		return rc;
	}
	db_finalize(st);
	return OTAD_OK;
}

static enum otad_err
audit(struct registry *reg, const char *what)
{
	struct db_stmt *st;
	int rc;

	if (db_prepare(reg->db, "INSERT INTO audit (at, actor, what)"
	    " VALUES (?1, ?2, ?3)", 0, &st) != DB_OK)
		return db_error(reg->db, "audit");
	db_bind_int64(st, 1, now_s());
	db_bind_text(st, 2, reg->actor);
	db_bind_text(st, 3, what);
	rc = db_step(st);
	db_finalize(st);
	return rc == DB_DONE ? OTAD_OK : db_error(reg->db, "audit");
}

/* Begin to write and name ourselves for the audit triggers. */
enum otad_err
catalog_begin(struct registry *reg)
{
	struct db_stmt *st;

	if (db_begin_write(reg->db) != DB_OK)
		return db_error(reg->db, "database");
	if (db_prepare(reg->db, "INSERT INTO audit_actor VALUES (?1)", 0, &st) != DB_OK) {
		exec(reg->db, "ROLLBACK");
		return db_error(reg->db, "audit actor");
	}
	db_bind_text(st, 1, reg->actor);
	db_step(st);
	db_finalize(st);
	return OTAD_OK;
}

enum otad_err
catalog_commit(struct registry *reg)
{
	enum otad_err rc;

	if ((rc = exec(reg->db, "DELETE FROM audit_actor")) != OTAD_OK ||
	    (rc = exec(reg->db, "COMMIT")) != OTAD_OK)
		exec(reg->db, "ROLLBACK");
	return rc;
}

enum otad_err
catalog_fail(struct registry *reg, enum otad_err rc)
{
	exec(reg->db, "ROLLBACK");
	return rc;
}

/* catalog_begin, saying why in why when it fails */
enum otad_err
catalog_open(struct registry *reg, char *why, size_t whylen)
{
	enum otad_err rc = catalog_begin(reg);

	if (rc != OTAD_OK)
		snprintf(why, whylen, "database: %s", otad_strerror(rc));
	return rc;
}

/* The audit row for what, then commit; on error roll it all back. */
enum otad_err
catalog_close(struct registry *reg, const char *what, char *why,
    size_t whylen)
{
	enum otad_err rc;

	if ((rc = audit(reg, what)) != OTAD_OK ||
	    (rc = catalog_commit(reg)) != OTAD_OK) {
		snprintf(why, whylen, "database: %s", otad_strerror(rc));
		return catalog_fail(reg, rc);
	}
	return OTAD_OK;
}

void
run_slots_free(struct registry *reg)
{
	size_t i;

	for (i = 0; i < RUN_SLOTS; i++) {
		db_finalize(reg->run_slots[i].st);
		free(reg->run_slots[i].sql);
	}
}

/*
 * Run sql with bound values, one letter each in types: "t" text (NULL or
 * "" for NULL), "i" int64, "d" double, "b" blob (pointer and size_t).
 * Returns the step's result code: DB_DONE when it went through.
 * Parameters a statement does not have are left unbound. The first
 * column of the first row it returns is left in reg->returned.
 *
 * The statement stays prepared, in a slot by a hash of its text (a text
 * meeting another's there takes it): the writer runs some for every
 * record of a kind (a delivery, a check-in of a library that never
 * reports, a trigger), and preparing one costs SQLite a parse and a plan
 * each time, PostgreSQL a round trip. A registry's connection has one
 * user at a time (registry.h), and a statement runs to its end here, so
 * a slot's statement is never in two runs at once.
 */
int
run(struct registry *reg, const char *sql, const char *types, ...)
{
	struct run_slot *slot = &reg->run_slots[otad_hash(sql) % RUN_SLOTS];
	struct db_stmt *st = slot->st;
	char *copy;
	va_list ap;
	int i, step;

	if (st == NULL || strcmp(slot->sql, sql) != 0) {
		if (db_prepare(reg->db, sql, 1, &st) != DB_OK)
			return db_errcode(reg->db);
		/* it takes the slot (out of memory: it runs once, as before) */
		if ((copy = strdup(sql)) != NULL) {
			db_finalize(slot->st);
			free(slot->sql);
			slot->sql = copy;
			slot->st = st;
		}
	}
	va_start(ap, types);
	for (i = 0; types[i] != '\0'; i++) {
		if (types[i] == 't') {
			bind_text(st, i + 1, va_arg(ap, const char *));
		} else if (types[i] == 'i') {
			db_bind_int64(st, i + 1, va_arg(ap, int64_t));
		} else if (types[i] == 'd') {
			db_bind_double(st, i + 1, va_arg(ap, double));
		} else {
			const void *b = va_arg(ap, const void *);

			db_bind_blob(st, i + 1, b, va_arg(ap, size_t));
		}
	}
	va_end(ap);
	/* INSERT ... RETURNING id: the id, kept in reg->returned */
	if ((step = db_step(st)) == DB_ROW) {
		reg->returned = db_column_int64(st, 0);
		while ((step = db_step(st)) == DB_ROW)
			;
	}
	if (st == slot->st) {
		db_reset(st); /* the error, if any, stays the connection's */
		db_clear_bindings(st);
	} else {
		db_finalize(st);
	}
	return step;
}

/* A statement that failed: why says so; the transaction is rolled back. */
enum otad_err
catalog_db_fail(struct registry *reg, char *why, size_t whylen)
{
	snprintf(why, whylen, "database: %s", db_errmsg(reg->db));
	return catalog_fail(reg, OTAD_ERR_DB);
}

/* Run a statement with int64 parameters (-1 ends the list). */
int
exec_ints(struct db *db, const char *sql, ...)
{
	struct db_stmt *st;
	va_list ap;
	int64_t v;
	int i = 1, step;

	if (db_prepare(db, sql, 0, &st) != DB_OK)
		return -1;
	va_start(ap, sql);
	while ((v = va_arg(ap, int64_t)) != -1)
		db_bind_int64(st, i++, v);
	va_end(ap);
	step = db_step(st);
	db_finalize(st);
	return step == DB_DONE ? 0 : -1;
}

/* An id (or any integer) as text, for query_rows' text arguments. */
const char *
idtext(int64_t id, char buf[24])
{
	snprintf(buf, 24, "%lld", (long long)id);
	return buf;
}

/* One query's rows under a key of a summary object. */

/*
 * The one row of sql (with its text argument) as an object, and under
 * each part's key the rows of its query (no arguments).
 */
enum otad_err
query_summary(struct db *db, json_t **obj, const char *sql, const char *arg,
    const struct part *parts, size_t n)
{
	json_t *rows;
	enum otad_err rc;
	size_t i;

	*obj = NULL;
	if ((rc = query_rows(db, &rows, sql, arg, ARGS_END)) != OTAD_OK)
		return rc;
	*obj = json_incref(json_array_get(rows, 0));
	json_decref(rows);
	for (i = 0; i < n; i++) {
		if ((rc = query_rows(db, &rows, parts[i].sql, ARGS_END)) !=
		    OTAD_OK) {
			json_decref(*obj);
			*obj = NULL;
			return rc;
		}
		json_object_set_new(*obj, parts[i].key, rows);
	}
	return OTAD_OK;
}
