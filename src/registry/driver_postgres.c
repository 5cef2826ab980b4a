/*
 * registry/driver_postgres.c: the registry in PostgreSQL, through libpq.
 *
 * Statements keep SQLite's ?N parameters in the source and are rewritten
 * to $N here. A persistent statement is prepared on the server at its
 * first run; the others go as one PQexecParams each. Results are read
 * whole (the registry's queries are small or paged), in text form.
 * Errors map onto the codes SQLite gives for the same refusal, so the
 * registry answers alike on both: a trigger's RAISE EXCEPTION and a
 * CHECK are DB_CONSTRAINT, a missing referenced row DB_FOREIGN_KEY, a
 * lock not granted in time DB_BUSY.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "log.h"
#include "registry_driver.h"

/* type OIDs (pg_type.dat), for what a column holds */
#define BOOLOID 16
#define BYTEAOID 17
#define INT8OID 20
#define TEXTOID 25
#define INT2OID 21
#define INT4OID 23
#define FLOAT4OID 700
#define FLOAT8OID 701
#define NUMERICOID 1700

#define MAX_PARAMS 32

struct pg_db {
	struct db base;
	PGconn *c;
	char err[512];
	enum db_code errcode;
	int64_t changes;
	unsigned next_name; /* server-side statement names: s1, s2, ... */
	int durable;        /* synchronous_commit as last set */
	int lock_ms;        /* lock_timeout as last set (0: none) */
	unsigned session;   /* counts reconnections: prepared names die */
};

struct param {
	char *value; /* owned; NULL for SQL NULL */
	int len;
	int binary;
	unsigned type;
};

struct pg_stmt {
	struct db_stmt base;
	char *sql;   /* with $N */
	int nparams; /* the highest N */
	int persistent;
	char name[16]; /* "" until prepared */
	unsigned session; /* the connection's session it was prepared in */
	struct param p[MAX_PARAMS];
	PGresult *res;
	int row;  /* the row db_column_* read; -1 before the first step */
	int done; /* the result's rows are all read */
	unsigned char **blobs; /* decoded bytea of the current row */
	size_t *blob_len;
};

#define DB(db) ((struct pg_db *)(db))
#define ST(st) ((struct pg_stmt *)(st))
#define PDB(st) DB((st)->db)

static void
set_error(struct pg_db *db, enum db_code code, const char *msg)
{
	size_t n;

	db->errcode = code;
	snprintf(db->err, sizeof(db->err), "%s", msg ? msg : "unknown error");
	/* libpq's messages end in a newline; SQLite's do not */
	n = strlen(db->err);
	while (n > 0 && isspace((unsigned char)db->err[n - 1]))
		db->err[--n] = '\0';
}

/* An error result: its code as SQLite would name it, and its message. */
static enum db_code
result_error(struct pg_db *db, const PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
				: NULL;
	const char *msg = res ? PQresultErrorField(res,
	    PG_DIAG_MESSAGE_PRIMARY) : NULL;
	enum db_code code = DB_ERROR;

	if (PQstatus(db->c) != CONNECTION_OK) {
		code = DB_BUSY; /* made again before the next statement */
	} else if (state != NULL) {
		if (strcmp(state, "23503") == 0)
			code = DB_FOREIGN_KEY;
		else if (strncmp(state, "23", 2) == 0 ||
		    strcmp(state, "P0001") == 0) /* RAISE EXCEPTION */
			code = DB_CONSTRAINT;
		else if (strcmp(state, "55P03") == 0 || /* lock_timeout */
		    strcmp(state, "40001") == 0 ||      /* serialization */
		    strcmp(state, "40P01") == 0 ||      /* deadlock */
		    strcmp(state, "57014") == 0)        /* canceled */
			code = DB_BUSY;
	}
	set_error(db, code, msg ? msg : PQerrorMessage(db->c));
	return code;
}

static enum db_code p_exec(struct db *db, const char *sql);

/* What every session is set to, on connecting and reconnecting. */
static enum db_code
session_setup(struct pg_db *db)
{
	char sql[160];

	snprintf(sql, sizeof(sql), "SET client_encoding = 'UTF8'; SET TIME "
	    "ZONE 'UTC'; SET synchronous_commit = %s; SET lock_timeout = %d",
	    db->durable ? "on" : "off", db->lock_ms);
	return p_exec(&db->base, sql);
}

/*
 * A connection lost (the server restarted, a failover moved the primary,
 * the network broke) is made again before the next statement; what was
 * under way on it failed, and said so. Statements prepared on the old
 * session are prepared again.
 */
static int
connected(struct pg_db *db)
{
	if (PQstatus(db->c) == CONNECTION_OK)
		return 1;
	PQreset(db->c);
	if (PQstatus(db->c) != CONNECTION_OK) {
		set_error(db, DB_BUSY, PQerrorMessage(db->c));
		return 0;
	}
	db->session++;
	if (session_setup(db) != DB_OK)
		return 0;
	log_info("reconnected to PostgreSQL");
	return 1;
}

static void
p_close(struct db *db)
{
	PQfinish(DB(db)->c);
	free(db);
}

static const char *
p_errmsg(struct db *db)
{
	return DB(db)->err;
}

static enum db_code
p_errcode(struct db *db)
{
	return DB(db)->errcode;
}

static enum db_code
p_exec(struct db *db, const char *sql)
{
	PGresult *res;
	ExecStatusType s;
	enum db_code rc = DB_OK;

	if (!connected(DB(db)))
		return DB_BUSY;
	res = PQexec(DB(db)->c, sql);
	s = PQresultStatus(res);
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
		rc = result_error(DB(db), res);
	else
		DB(db)->changes = strtoll(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return rc;
}

/*
 * One writer at a time, as SQLite has it: the registry's transactions
 * (a batch of device records, an operator's action, a rollout tick)
 * read what they change and must not interleave, on one node or many.
 * The lock is the transaction's and goes with its end.
 */
static enum db_code
p_begin_write(struct db *db)
{
	enum db_code rc;

	if ((rc = p_exec(db, "BEGIN")) != DB_OK)
		return rc;
	if ((rc = p_exec(db, "SELECT pg_advisory_xact_lock(7340417)")) !=
	    DB_OK) {
		char keep[sizeof(DB(db)->err)];

		memcpy(keep, DB(db)->err, sizeof(keep));
		p_exec(db, "ROLLBACK");
		set_error(DB(db), rc, keep);
	}
	return rc;
}

static void
p_busy_timeout(struct db *db, int ms)
{
	char sql[64];

	snprintf(sql, sizeof(sql), "SET lock_timeout = %d", ms);
	if (p_exec(db, sql) == DB_OK)
		DB(db)->lock_ms = ms;
}

/* a commit that need not wait for the disk (nor a standby) */
static void
p_durable(struct db *db, int durable)
{
	if (DB(db)->durable == durable)
		return;
	if (p_exec(db, durable ? "SET synchronous_commit = on" :
	    "SET synchronous_commit = off") == DB_OK)
		DB(db)->durable = durable;
}

static unsigned
p_session(struct db *db)
{
	return DB(db)->session;
}

static int64_t
p_changes(struct db *db)
{
	return DB(db)->changes;
}

/*
 * ?N and ? as $N, outside quotes; returns the highest parameter number,
 * or -1 when there are too many.
 */
static int
rewrite_params(const char *sql, char *out, size_t outlen)
{
	int max = 0, next = 1;
	char quote = 0;
	size_t o = 0;
	const char *p;

	for (p = sql; *p != '\0' && o + 8 < outlen; p++) {
		if (quote) {
			if (*p == quote)
				quote = 0;
			out[o++] = *p;
			continue;
		}
		if (*p == '\'' || *p == '"') {
			quote = *p;
			out[o++] = *p;
			continue;
		}
		if (*p != '?') {
			out[o++] = *p;
			continue;
		}
		if (isdigit((unsigned char)p[1])) {
			int n = (int)strtol(p + 1, (char **)&p, 10);

			p--;
			if (n > max)
				max = n;
			next = n + 1;
			o += (size_t)snprintf(out + o, outlen - o, "$%d", n);
		} else {
			if (next > max)
				max = next;
			o += (size_t)snprintf(out + o, outlen - o, "$%d",
			    next++);
		}
	}
	out[o] = '\0';
	return max <= MAX_PARAMS && *p == '\0' ? max : -1;
}

static enum db_code
p_prepare(struct db *db, const char *sql, int persistent,
    struct db_stmt **out)
{
	struct pg_stmt *st;
	size_t len = strlen(sql) * 2 + 64;

	*out = NULL;
	if ((st = calloc(1, sizeof(*st))) == NULL ||
	    (st->sql = malloc(len)) == NULL) {
		free(st);
		set_error(DB(db), DB_ERROR, "out of memory");
		return DB_ERROR;
	}
	st->base.db = db;
	st->persistent = persistent;
	st->row = -1;
	if ((st->nparams = rewrite_params(sql, st->sql, len)) < 0) {
		free(st->sql);
		free(st);
		set_error(DB(db), DB_ERROR, "statement has too many "
		    "parameters");
		return DB_ERROR;
	}
	*out = &st->base;
	return DB_OK;
}

static struct param *
slot(struct db_stmt *st, int i)
{
	struct param *p;

	if (i < 1 || i > MAX_PARAMS)
		return NULL;
	p = &ST(st)->p[i - 1];
	free(p->value);
	memset(p, 0, sizeof(*p));
	return p;
}

static void
p_bind_literal(struct db_stmt *st, int i, const char *s)
{
	struct param *p = slot(st, i);

	if (p != NULL && s != NULL)
		p->value = strdup(s);
}

static void
p_bind_text(struct db_stmt *st, int i, const char *s)
{
	p_bind_literal(st, i, s);
	if (s != NULL && i >= 1 && i <= MAX_PARAMS)
		ST(st)->p[i - 1].type = TEXTOID;
}

static void
p_bind_int64(struct db_stmt *st, int i, int64_t v)
{
	struct param *p = slot(st, i);
	char buf[24];

	if (p == NULL)
		return;
	snprintf(buf, sizeof(buf), "%lld", (long long)v);
	p->value = strdup(buf);
	p->type = INT8OID;
}

static void
p_bind_double(struct db_stmt *st, int i, double v)
{
	struct param *p = slot(st, i);
	char buf[40];

	if (p == NULL)
		return;
	snprintf(buf, sizeof(buf), "%.17g", v);
	p->value = strdup(buf);
	p->type = FLOAT8OID;
}

static void
p_bind_blob(struct db_stmt *st, int i, const void *b, size_t n)
{
	struct param *p = slot(st, i);

	if (p == NULL || b == NULL)
		return;
	if ((p->value = malloc(n ? n : 1)) == NULL)
		return;
	memcpy(p->value, b, n);
	p->len = (int)n;
	p->binary = 1;
	p->type = BYTEAOID;
}

static void
p_bind_null(struct db_stmt *st, int i)
{
	slot(st, i);
}

static void
forget_row(struct pg_stmt *st)
{
	int i, n = st->res ? PQnfields(st->res) : 0;

	if (st->blobs != NULL) {
		for (i = 0; i < n; i++)
			PQfreemem(st->blobs[i]);
		free(st->blobs);
		free(st->blob_len);
		st->blobs = NULL;
		st->blob_len = NULL;
	}
}

static PGresult *
execute(struct pg_stmt *st)
{
	struct pg_db *db = PDB(&st->base);
	const char *values[MAX_PARAMS];
	int lengths[MAX_PARAMS], formats[MAX_PARAMS];
	unsigned types[MAX_PARAMS];
	int i;

	for (i = 0; i < st->nparams; i++) {
		values[i] = st->p[i].value;
		lengths[i] = st->p[i].len;
		formats[i] = st->p[i].binary;
		types[i] = st->p[i].type;
	}
	if (!connected(db))
		return NULL;
	if (st->session != db->session)
		st->name[0] = '\0';
	if (!st->persistent)
		return PQexecParams(db->c, st->sql, st->nparams, types, values,
		    lengths, formats, 0);
	if (st->name[0] == '\0') {
		char name[16];
		PGresult *res;

		snprintf(name, sizeof(name), "s%u", ++db->next_name);
		res = PQprepare(db->c, name, st->sql, st->nparams, types);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			return res;
		PQclear(res);
		memcpy(st->name, name, sizeof(name));
		st->session = db->session;
	}
	return PQexecPrepared(db->c, st->name, st->nparams, values, lengths,
	    formats, 0);
}

static enum db_code
p_step(struct db_stmt *base)
{
	struct pg_stmt *st = ST(base);
	struct pg_db *db = PDB(base);

	if (st->done)
		return DB_DONE;
	forget_row(st);
	if (st->res == NULL) {
		ExecStatusType s;

		st->res = execute(st);
		s = PQresultStatus(st->res);
		if (s == PGRES_COMMAND_OK) {
			db->changes = strtoll(PQcmdTuples(st->res), NULL, 10);
			st->done = 1;
			return DB_DONE;
		}
		if (s != PGRES_TUPLES_OK) {
			enum db_code rc = result_error(db, st->res);

			PQclear(st->res);
			st->res = NULL;
			return rc;
		}
		/* INSERT ... RETURNING: changed rows, as SQLite counts */
		db->changes = strtoll(PQcmdTuples(st->res), NULL, 10);
	}
	if (++st->row >= PQntuples(st->res)) {
		st->done = 1;
		return DB_DONE;
	}
	return DB_ROW;
}

static int
p_column_count(struct db_stmt *st)
{
	return ST(st)->res ? PQnfields(ST(st)->res) : 0;
}

static const char *
p_column_name(struct db_stmt *st, int i)
{
	return ST(st)->res ? PQfname(ST(st)->res, i) : NULL;
}

static int
readable(struct pg_stmt *st, int i)
{
	return st->res != NULL && st->row >= 0 &&
	    st->row < PQntuples(st->res) && i >= 0 && i < PQnfields(st->res);
}

static enum db_type
p_column_type(struct db_stmt *base, int i)
{
	struct pg_stmt *st = ST(base);

	if (!readable(st, i) || PQgetisnull(st->res, st->row, i))
		return DB_NULL;
	switch (PQftype(st->res, i)) {
	case BOOLOID:
	case INT2OID:
	case INT4OID:
	case INT8OID:
		return DB_INTEGER;
	case FLOAT4OID:
	case FLOAT8OID:
		return DB_FLOAT;
	case NUMERICOID:
		/* sum() of integers is numeric: whole numbers stay integers */
		return strchr(PQgetvalue(st->res, st->row, i), '.') ?
		    DB_FLOAT : DB_INTEGER;
	case BYTEAOID:
		return DB_BLOB;
	default:
		return DB_TEXT;
	}
}

static const char *
p_column_text(struct db_stmt *base, int i)
{
	struct pg_stmt *st = ST(base);

	if (!readable(st, i) || PQgetisnull(st->res, st->row, i))
		return NULL;
	return PQgetvalue(st->res, st->row, i);
}

static int64_t
p_column_int64(struct db_stmt *base, int i)
{
	const char *v = p_column_text(base, i);

	if (v == NULL)
		return 0;
	if (PQftype(ST(base)->res, i) == BOOLOID)
		return v[0] == 't';
	if (strpbrk(v, ".eE") != NULL)
		return (int64_t)strtod(v, NULL);
	return strtoll(v, NULL, 10);
}

static double
p_column_double(struct db_stmt *base, int i)
{
	const char *v = p_column_text(base, i);

	return v ? strtod(v, NULL) : 0.0;
}

static const void *
p_column_blob(struct db_stmt *base, int i)
{
	struct pg_stmt *st = ST(base);
	int n;

	if (!readable(st, i) || PQgetisnull(st->res, st->row, i))
		return NULL;
	if (PQftype(st->res, i) != BYTEAOID)
		return PQgetvalue(st->res, st->row, i);
	n = PQnfields(st->res);
	if (st->blobs == NULL) {
		st->blobs = calloc((size_t)n, sizeof(*st->blobs));
		st->blob_len = calloc((size_t)n, sizeof(*st->blob_len));
		if (st->blobs == NULL || st->blob_len == NULL) {
			free(st->blobs);
			free(st->blob_len);
			st->blobs = NULL;
			st->blob_len = NULL;
			return NULL;
		}
	}
	if (st->blobs[i] == NULL)
		st->blobs[i] = PQunescapeBytea((const unsigned char *)
		    PQgetvalue(st->res, st->row, i), &st->blob_len[i]);
	return st->blobs[i];
}

static size_t
p_column_bytes(struct db_stmt *base, int i)
{
	struct pg_stmt *st = ST(base);

	if (!readable(st, i) || PQgetisnull(st->res, st->row, i))
		return 0;
	if (PQftype(st->res, i) != BYTEAOID)
		return (size_t)PQgetlength(st->res, st->row, i);
	return p_column_blob(base, i) ? st->blob_len[i] : 0;
}

static void
p_reset(struct db_stmt *base)
{
	struct pg_stmt *st = ST(base);

	forget_row(st);
	PQclear(st->res);
	st->res = NULL;
	st->row = -1;
	st->done = 0;
}

static void
p_clear_bindings(struct db_stmt *st)
{
	int i;

	for (i = 1; i <= MAX_PARAMS; i++)
		slot(st, i);
}

static void
p_finalize(struct db_stmt *base)
{
	struct pg_stmt *st = ST(base);

	p_reset(base);
	p_clear_bindings(base);
	if (st->name[0] != '\0' && st->session == PDB(base)->session &&
	    PQstatus(PDB(base)->c) == CONNECTION_OK) {
		char sql[32];

		snprintf(sql, sizeof(sql), "DEALLOCATE %s", st->name);
		PQclear(PQexec(PDB(base)->c, sql));
	}
	free(st->sql);
	free(st);
}

static const struct db_driver postgres_driver = {
	.backend = DB_POSTGRES,
	.close = p_close,
	.errmsg = p_errmsg,
	.errcode = p_errcode,
	.exec = p_exec,
	.begin_write = p_begin_write,
	.busy_timeout = p_busy_timeout,
	.durable = p_durable,
	.changes = p_changes,
	.session = p_session,
	.prepare = p_prepare,
	.bind_text = p_bind_text,
	.bind_literal = p_bind_literal,
	.bind_int64 = p_bind_int64,
	.bind_double = p_bind_double,
	.bind_blob = p_bind_blob,
	.bind_null = p_bind_null,
	.step = p_step,
	.column_count = p_column_count,
	.column_name = p_column_name,
	.column_type = p_column_type,
	.column_int64 = p_column_int64,
	.column_double = p_column_double,
	.column_text = p_column_text,
	.column_blob = p_column_blob,
	.column_bytes = p_column_bytes,
	.reset = p_reset,
	.clear_bindings = p_clear_bindings,
	.finalize = p_finalize,
};

/* notices (a NOTICE from a migration) go to our log, not stderr */
static void
notice(void *arg, const char *msg)
{
	(void)arg;
	log_debug("postgresql: %.*s", (int)strcspn(msg, "\n"), msg);
}

enum db_code
postgres_open(const char *conninfo, struct db **out)
{
	struct pg_db *db;

	*out = NULL;
	if ((db = calloc(1, sizeof(*db))) == NULL)
		return DB_ERROR;
	db->base.drv = &postgres_driver;
	db->durable = 1;
	db->c = PQconnectdb(conninfo);
	if (PQstatus(db->c) != CONNECTION_OK) {
		/* the message names host and user, never the password */
		log_warnx("cannot connect to PostgreSQL: %.*s",
		    (int)strcspn(PQerrorMessage(db->c), "\n"),
		    PQerrorMessage(db->c));
		PQfinish(db->c);
		free(db);
		return DB_ERROR;
	}
	PQsetNoticeProcessor(db->c, notice, NULL);
	if (session_setup(db) != DB_OK) {
		log_warnx("cannot set up the PostgreSQL session: %s", db->err);
		p_close(&db->base);
		return DB_ERROR;
	}
	*out = &db->base;
	return DB_OK;
}
