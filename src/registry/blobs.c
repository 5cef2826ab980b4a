/*
 * registry/blobs.c: artifact bytes kept in PostgreSQL, in chunks, so that
 * every node of a cluster can serve what any node stored. Each node
 * keeps its own copy in its store, fetched on first use (store.h's
 * source) and checked against the digest before it is served. On SQLite
 * the store's files are the only copy, and none of this applies.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsimg.h"
#include "log.h"
#include "registry.h"
#include "registry_impl.h"
#include "store.h"

#define CHUNK (1024 * 1024)

/* The artifact file fd's bytes as chunks, inside the open transaction. */
enum otad_err
blobs_put(struct registry *reg, const char *sha256, int fd, uint64_t size,
    char *why, size_t whylen)
{
	uint8_t *buf;
	uint64_t off;
	int64_t no = 0;

	if (!registry_clustered(reg))
		return OTAD_OK;
	if ((buf = malloc(CHUNK)) == NULL)
		return catalog_fail(reg, OTAD_ERR_NOMEM);
	for (off = 0; off < size; off += CHUNK, no++) {
		size_t want = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
		ssize_t n = pread(fd, buf, want, (off_t)off);

		if (n != (ssize_t)want) {
			snprintf(why, whylen, "cannot read the artifact back: "
			    "%s", n < 0 ? strerror(errno) : "short read");
			free(buf);
			return catalog_fail(reg, OTAD_ERR_IO);
		}
		if (run(reg, "INSERT INTO artifact_chunk (sha256, no, data)"
		    " VALUES (?1, ?2, ?3)", "tib", sha256, no, buf,
		    (size_t)n) != DB_DONE) {
			free(buf);
			return catalog_db_fail(reg, why, whylen);
		}
	}
	free(buf);
	return OTAD_OK;
}


int
registry_fetch_artifact(void *db_target, const char *sha256, int fd,
    enum artifact_kind *kind)
{
	struct db_stmt *st = NULL;
	struct db *db;
	int rc = -1, step, saved = ENOENT;

	if (db_open(db_target, DB_READ_WRITE, &db) != DB_OK) {
		errno = EIO;
		return -1;
	}
	if (db_prepare(db, "SELECT kind FROM artifact WHERE sha256 = ?1", 0,
	    &st) != DB_OK)
		goto done;
	db_bind_text(st, 1, sha256);
	if (db_step(st) != DB_ROW)
		goto done; /* no such artifact: ENOENT */
	*kind = (enum artifact_kind)fsimg_kind_parse(db_column_text(st, 0));
	db_finalize(st);
	st = NULL;
	saved = EIO;
	if (db_prepare(db, "SELECT data FROM artifact_chunk WHERE sha256 = ?1"
	    " ORDER BY no", 0, &st) != DB_OK)
		goto done;
	db_bind_text(st, 1, sha256);
	while ((step = db_step(st)) == DB_ROW)
		if (otad_write_all(fd, db_column_blob(st, 0),
		    db_column_bytes(st, 0)) < 0)
			goto done;
	rc = step == DB_DONE ? 0 : -1;
done:
	if (rc < 0 && saved == EIO)
		log_warnx("cannot fetch artifact %s: %s", sha256,
		    db_errmsg(db));
	db_finalize(st);
	db_close(db);
	if (rc < 0)
		errno = saved;
	return rc;
}
