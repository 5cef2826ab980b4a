/*
 * registry/rehearsal.c: what a rollout's rehearsal needs of the registry:
 * a copy of the live fleet (its releases, rollouts and devices) in a
 * SQLite file of its own, read with plain SELECTs so that the registry is
 * never written, and the copy's devices and rollout state as the
 * simulation reads them.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "registry.h"
#include "registry_impl.h"

/*
 * What a rehearsal copies, in an order the foreign keys accept: what can
 * be offered, and the devices seen since ?1. Attempts are not copied:
 * every device starts with none under way.
 */
static const struct {
	const char *table, *select;
} copied[] = {
	{"artifact", "SELECT * FROM artifact ORDER BY sha256"},
	{"release", "SELECT * FROM release ORDER BY id"},
	{"rollout", "SELECT * FROM rollout ORDER BY id"},
	{"rollout_stage", "SELECT * FROM rollout_stage ORDER BY rollout, no"},
	{"device", "SELECT * FROM device WHERE last_seen >= CAST(?1 AS BIGINT)"
	    " AND blocked = 0 ORDER BY id"},
};

/* "INSERT INTO table (columns of st) VALUES (?1, ...)" into buf */
static int
insert_sql(const char *table, struct db_stmt *st, char *buf, size_t len)
{
	int i, n = db_column_count(st), off;

	off = snprintf(buf, len, "INSERT INTO %s (", table);
	for (i = 0; i < n && off > 0 && (size_t)off < len; i++)
		off += snprintf(buf + off, len - (size_t)off, "%s\"%s\"",
		    i ? ", " : "", db_column_name(st, i));
	for (i = 0; i < n && off > 0 && (size_t)off < len; i++)
		off += snprintf(buf + off, len - (size_t)off, "%s?%d",
		    i ? ", " : ") VALUES (", i + 1);
	if (off <= 0 || (size_t)off + 2 >= len)
		return -1;
	snprintf(buf + off, len - (size_t)off, ")");
	return 0;
}

/* Row st (of the source) bound into ins, column for column. */
static void
bind_row(struct db_stmt *ins, struct db_stmt *st)
{
	int i, n = db_column_count(st);

	for (i = 0; i < n; i++)
		switch (db_column_type(st, i)) {
		case DB_INTEGER:
			db_bind_int64(ins, i + 1, db_column_int64(st, i));
			break;
		case DB_FLOAT:
			db_bind_double(ins, i + 1, db_column_double(st, i));
			break;
		case DB_NULL:
			db_bind_null(ins, i + 1);
			break;
		case DB_BLOB:
			db_bind_blob(ins, i + 1, db_column_blob(st, i),
			    db_column_bytes(st, i));
			break;
		default:
			db_bind_text(ins, i + 1, db_column_text(st, i));
		}
}

/* Table t of src into dst; rows copied, or -1 with why. */
static int64_t
copy_table(struct db *src, struct db *dst, size_t t, int64_t seen_since,
    char *why, size_t whylen)
{
	struct db_stmt *st, *ins = NULL;
	char sql[4096], since[24];
	int64_t rows = 0;
	int rc;

	if (db_prepare(src, copied[t].select, 0, &st) != DB_OK) {
		snprintf(why, whylen, "cannot read %s: %s", copied[t].table,
		    db_errmsg(src));
		return -1;
	}
	if (t == sizeof(copied) / sizeof(copied[0]) - 1)
		db_bind_literal(st, 1, idtext(seen_since, since));
	while ((rc = db_step(st)) == DB_ROW) {
		if (ins == NULL && (insert_sql(copied[t].table, st, sql,
		    sizeof(sql)) < 0 || db_prepare(dst, sql, 0, &ins) !=
		    DB_OK)) {
			snprintf(why, whylen, "cannot copy %s: %s",
			    copied[t].table, db_errmsg(dst));
			rows = -1;
			break;
		}
		bind_row(ins, st);
		if (db_step(ins) != DB_DONE) {
			snprintf(why, whylen, "cannot copy %s: %s",
			    copied[t].table, db_errmsg(dst));
			rows = -1;
			break;
		}
		db_reset(ins);
		db_clear_bindings(ins);
		rows++;
	}
	if (rows >= 0 && rc != DB_DONE) {
		snprintf(why, whylen, "cannot read %s: %s", copied[t].table,
		    db_errmsg(src));
		rows = -1;
	}
	if (ins != NULL)
		db_finalize(ins);
	db_finalize(st);
	return rows;
}

enum otad_err
registry_copy_fleet(struct registry *src, const char *dst_path,
    int64_t seen_since, size_t *devices, char *why, size_t whylen)
{
	struct registry *dst;
	enum otad_err rc = OTAD_OK;
	int64_t n = 0;
	size_t t;

	*devices = 0;
	if ((rc = registry_open(dst_path, &dst)) != OTAD_OK) {
		snprintf(why, whylen, "cannot create the copy '%s'", dst_path);
		return rc;
	}
	/* a scratch file: nothing in it need survive a crash */
	db_exec(dst->db, "PRAGMA synchronous = OFF");
	if (db_exec(dst->db, "BEGIN") != DB_OK) {
		snprintf(why, whylen, "copy: %s", db_errmsg(dst->db));
		registry_close(dst);
		return OTAD_ERR_DB;
	}
	for (t = 0; t < sizeof(copied) / sizeof(copied[0]) && n >= 0; t++)
		n = copy_table(src->db, dst->db, t, seen_since, why, whylen);
	if (n < 0 || db_exec(dst->db, "COMMIT") != DB_OK) {
		if (n >= 0)
			snprintf(why, whylen, "copy: %s", db_errmsg(dst->db));
		db_exec(dst->db, "ROLLBACK");
		rc = OTAD_ERR_DB;
	} else {
		*devices = (size_t)n;
	}
	registry_close(dst);
	return rc;
}

enum otad_err
registry_each_device(struct registry *reg,
    int (*fn)(void *arg, const struct device_facts *f), void *arg)
{
	struct db_stmt *st;
	int rc;

	if (db_prepare(reg->db, "SELECT id, coalesce(version, ''),"
	    " coalesce(product, ''), coalesce(chip, ''), coalesce(hw_rev, ''),"
	    " coalesce(grp, ''), coalesce(secure_version, -1),"
	    " coalesce(battery, -1), coalesce(quarantined_until, 0) FROM device"
	    " WHERE blocked = 0 ORDER BY id", 0, &st) != DB_OK)
		return db_error(reg->db, "devices");
	while ((rc = db_step(st)) == DB_ROW) {
		struct device_facts f;

		memset(&f, 0, sizeof(f));
		f.id = db_column_text(st, 0);
		f.version = db_column_text(st, 1);
		f.product = db_column_text(st, 2);
		f.chip = db_column_text(st, 3);
		f.hw_rev = db_column_text(st, 4);
		f.group = db_column_text(st, 5);
		f.secure_version = db_column_int64(st, 6);
		f.battery = db_column_int(st, 7);
		f.quarantined_until = db_column_int64(st, 8);
		f.free_space = -1;
		if (fn(arg, &f) < 0) {
			db_finalize(st);
			return OTAD_ERR_NOMEM;
		}
	}
	db_finalize(st);
	return rc == DB_DONE ? OTAD_OK : db_error(reg->db, "devices");
}

enum otad_err
registry_rollout_where(struct registry *reg, int64_t id, char *state,
    size_t len, int64_t *stage, char *reason, size_t reasonlen)
{
	char idbuf[24];
	json_t *rows, *row;
	enum otad_err rc;

	if ((rc = query_rows(reg->db, &rows, "SELECT state, stage,"
	    " coalesce(reason, '') AS reason FROM rollout WHERE id ="
	    " CAST(?1 AS BIGINT)", idtext(id, idbuf), ARGS_END)) != OTAD_OK)
		return rc;
	if ((row = json_array_get(rows, 0)) == NULL) {
		json_decref(rows);
		return OTAD_ERR_NOT_FOUND;
	}
	snprintf(state, len, "%s", json_string_value(json_object_get(row,
	    "state")));
	*stage = json_integer_value(json_object_get(row, "stage"));
	snprintf(reason, reasonlen, "%s", json_string_value(json_object_get(
	    row, "reason")));
	json_decref(rows);
	return OTAD_OK;
}
