/*
 * registry/patches.c: delta patches shared by the nodes of a cluster
 * (schema/postgresql/002-patches.sql). The leading node's patcher builds
 * a patch once and keeps it here in chunks; the other nodes fetch it into
 * their stores, and record the pairs they were asked for so that the
 * leader builds those too. Each function is called by one thread (a
 * patcher's builder), which owns the connection; it is made on first use
 * and again after a failure.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "registry.h"
#include "registry_db.h"

#define CHUNK (1024 * 1024)

struct registry_patches {
	char target[1024]; /* the connection string */
	struct db *db;
};

enum otad_err
registry_patches_open(const char *db_target, struct registry_patches **out)
{
	struct registry_patches *rp;

	if ((rp = calloc(1, sizeof(*rp))) == NULL)
		return OTAD_ERR_NOMEM;
	if ((size_t)snprintf(rp->target, sizeof(rp->target), "%s",
	    db_target) >= sizeof(rp->target)) {
		free(rp);
		return OTAD_ERR_INVALID;
	}
	*out = rp;
	return OTAD_OK;
}

void
registry_patches_free(struct registry_patches *rp)
{
	if (rp == NULL)
		return;
	db_close(rp->db);
	free(rp);
}

/* The connection, made when there is none; NULL (logged) if it cannot be. */
static struct db *
conn(struct registry_patches *rp)
{
	if (rp->db == NULL && db_open(rp->target, DB_READ_WRITE, &rp->db) !=
	    DB_OK)
		rp->db = NULL;
	return rp->db;
}

/* A statement with base and target bound as ?1 and ?2, or NULL. */
static struct db_stmt *
pair_stmt(struct registry_patches *rp, const char *sql, const char *base,
    const char *target)
{
	struct db_stmt *st;

	if (conn(rp) == NULL || db_prepare(rp->db, sql, 0, &st) != DB_OK)
		return NULL;
	db_bind_text(st, 1, base);
	db_bind_text(st, 2, target);
	return st;
}

/* Log what the database said; errno EIO. */
static int
failed(struct registry_patches *rp, const char *what)
{
	log_warnx("shared patches: cannot %s: %s", what,
	    rp->db ? db_errmsg(rp->db) : "no connection");
	errno = EIO;
	return -1;
}


/* Record that a node wants base -> target built; 0 or -1. */
static int
want(struct registry_patches *rp, const char *base, const char *target)
{
	struct db_stmt *st = pair_stmt(rp, "INSERT INTO patch (base, target,"
	    " state, changed) VALUES (?1, ?2, 'wanted', unixepoch())"
	    " ON CONFLICT DO NOTHING", base, target);
	int rc = st != NULL && db_step(st) == DB_DONE ? 0 : -1;

	if (st != NULL)
		db_finalize(st);
	return rc;
}

int
registry_patch_fetch(void *arg, const char *base, const char *target,
    int fd)
{
	struct registry_patches *rp = arg;
	struct db_stmt *st;
	int step, rc;
	char state[8] = "";

	if ((st = pair_stmt(rp, "SELECT state FROM patch WHERE base = ?1 AND"
	    " target = ?2", base, target)) == NULL)
		return failed(rp, "look a patch up");
	if ((step = db_step(st)) == DB_ROW)
		snprintf(state, sizeof(state), "%s", db_column_text(st, 0));
	db_finalize(st);
	if (step != DB_ROW && step != DB_DONE)
		return failed(rp, "look a patch up");
	if (strcmp(state, "failed") == 0) {
		errno = EBADMSG;
		return -1;
	}
	if (strcmp(state, "built") != 0) {
		if (step == DB_DONE && want(rp, base, target) < 0)
			return failed(rp, "ask for a patch");
		errno = ENOENT;
		return -1;
	}
	/* one statement: one snapshot, whole even while it is replaced */
	if ((st = pair_stmt(rp, "SELECT data FROM patch_chunk WHERE base = ?1"
	    " AND target = ?2 ORDER BY no", base, target)) == NULL)
		return failed(rp, "fetch a patch");
	rc = 0;
	while ((step = db_step(st)) == DB_ROW)
		if (otad_write_all(fd, db_column_blob(st, 0),
		    db_column_bytes(st, 0)) < 0) {
			rc = -1;
			break;
		}
	db_finalize(st);
	if (rc < 0) {
		log_warn("shared patches: cannot keep a fetched patch");
		errno = EIO;
		return -1;
	}
	return step == DB_DONE ? 0 : failed(rp, "fetch a patch");
}

int
registry_patch_put(void *arg, const char *base, const char *target,
    const void *c, size_t n, const char *sha256)
{
	struct registry_patches *rp = arg;
	struct db_stmt *st;
	size_t off;
	int64_t no = 0;
	int ok;

	if (conn(rp) == NULL || db_exec(rp->db, "BEGIN") != DB_OK)
		return failed(rp, "keep a patch");
	/* the chunks of an earlier build go with it */
	st = pair_stmt(rp, "DELETE FROM patch WHERE base = ?1 AND"
	    " target = ?2", base, target);
	ok = st != NULL && db_step(st) == DB_DONE;
	if (st != NULL)
		db_finalize(st);
	if (ok && (st = pair_stmt(rp, "INSERT INTO patch (base, target,"
	    " state, sha256, size, changed) VALUES (?1, ?2, ?3, ?4, ?5,"
	    " unixepoch())", base, target)) != NULL) {
		db_bind_text(st, 3, c != NULL ? "built" : "failed");
		if (c != NULL) {
			db_bind_text(st, 4, sha256);
			db_bind_int64(st, 5, (int64_t)n);
		} else {
			db_bind_null(st, 4);
			db_bind_null(st, 5);
		}
		ok = db_step(st) == DB_DONE;
		db_finalize(st);
	} else
		ok = 0;
	for (off = 0; ok && c != NULL && off < n; off += CHUNK, no++) {
		if ((st = pair_stmt(rp, "INSERT INTO patch_chunk (base, target,"
		    " no, data) VALUES (?1, ?2, ?3, ?4)", base, target)) ==
		    NULL) {
			ok = 0;
			break;
		}
		db_bind_int64(st, 3, no);
		db_bind_blob(st, 4, (const char *)c + off,
		    n - off < CHUNK ? n - off : CHUNK);
		ok = db_step(st) == DB_DONE;
		db_finalize(st);
	}
	if (ok && db_exec(rp->db, "COMMIT") == DB_OK)
		return 0;
	failed(rp, "keep a patch");
	if (rp->db != NULL)
		db_exec(rp->db, "ROLLBACK");
	return -1;
}

int
registry_patch_wanted(void *arg, void (*each)(void *each_arg,
    const char *base, const char *target), void *each_arg)
{
	struct registry_patches *rp = arg;
	struct db_stmt *st;
	int step;

	if (conn(rp) == NULL || db_prepare(rp->db, "SELECT base, target FROM"
	    " patch WHERE state = 'wanted'", 0, &st) != DB_OK)
		return failed(rp, "list the patches asked for");
	while ((step = db_step(st)) == DB_ROW)
		each(each_arg, db_column_text(st, 0), db_column_text(st, 1));
	db_finalize(st);
	return step == DB_DONE ? 0 : failed(rp, "list the patches asked for");
}

void
registry_patch_drop(void *arg, const char *target)
{
	struct registry_patches *rp = arg;
	struct db_stmt *st;

	if (conn(rp) == NULL || db_prepare(rp->db, "DELETE FROM patch WHERE"
	    " target = ?1", 0, &st) != DB_OK) {
		failed(rp, "drop patches");
		return;
	}
	db_bind_text(st, 1, target);
	if (db_step(st) != DB_DONE)
		failed(rp, "drop patches");
	db_finalize(st);
}
