/*
 * store.h: the artifact store, files named by their SHA-256.
 *
 * <state_dir>/artifacts/<sha256> is immutable once there. An ingest writes a
 * temp file (".ingest-*", held under flock while it is written), hashes it,
 * checks it, fsyncs it and renames it into place, then fsyncs the directory:
 * a crash at any point leaves either no artifact or a whole one, never a
 * partial file under a real name. A struct store is read-only after
 * store_open and may be shared by threads.
 */
#ifndef STORE_H
#define STORE_H

#include <stddef.h>
#include <stdint.h>

#include "espimg.h"
#include "fsimg.h"
#include "otad.h"

struct store;

struct store_artifact {
	char sha256[65]; /* lower-case hex of the whole file */
	char md5[33];    /* lower-case hex, what Arduino's x-MD5 wants */
	uint64_t size;   /* bytes */
	enum artifact_kind kind;
	struct espimg_info image; /* an app's; zeroed for a filesystem image */
	/*
	 * Until store_publish: the validated temp file (read it here to
	 * check a signature before the file gets a name). -1 when none.
	 */
	int tmp;
	char tmpname[40];
	struct store *store; /* where tmpname is */
	/*
	 * After store_publish: the published file, open with a shared lock
	 * until store_artifact_release. While it is held store_sweep leaves
	 * the file alone, so the caller can record it first. -1 when none.
	 */
	int hold;
};

/* Opens (creating if needed) <state_dir>/artifacts. Caller owns *out. */
enum otad_err store_open(const char *state_dir, struct store **out);
void store_free(struct store *store);

/*
 * Stream src_fd to its end into a temp file of the store and validate it
 * as an image of kind (an app: espimg_parse; a filesystem: fsimg_check). On success *out describes the artifact, and its temp file
 * (out->tmp) waits for store_publish or store_artifact_release. On
 * failure nothing is left behind and why holds one line. Files over
 * ESPIMG_MAX_SIZE are refused without reading further.
 */
enum otad_err store_ingest(struct store *store, int src_fd,
    enum artifact_kind kind, struct store_artifact *out, char *why,
    size_t whylen);

/*
 * Give the ingested file its name (its SHA-256) and hold it (art->hold)
 * until store_artifact_release; *existed says whether identical content
 * was there already. Publishing never replaces or removes a name another
 * process may have recorded: a caller that fails or is killed after this
 * leaves the file to store_sweep.
 */
enum otad_err store_publish(struct store *store, struct store_artifact *art,
    int *existed, char *why, size_t whylen);

/*
 * Let go of what store_ingest and store_publish hold: a temp file never
 * published is removed. NULL-safe; idempotent.
 */
void store_artifact_release(struct store_artifact *art);

/*
 * Remove artifact files that no record names: named(arg, sha256) says
 * whether one does. A file an ingest still holds is skipped, and the
 * check and the removal happen under an exclusive lock on the file, so
 * an ingest racing the sweep keeps (or re-publishes) its file. Returns
 * how many were removed.
 */
int store_sweep(struct store *store, int (*named)(void *arg,
    const char *sha256), void *arg);

/*
 * Where artifacts this store lacks come from: fetch writes the artifact's
 * bytes to fd and says its kind; 0, or -1 when it cannot (errno set,
 * ENOENT when nobody has it). A node of a cluster fetches from the shared
 * registry. Without a source, only what was ingested here is there.
 */
typedef int (*store_fetch_fn)(void *arg, const char *sha256, int fd,
    enum artifact_kind *kind);
void store_set_source(struct store *store, store_fetch_fn fetch, void *arg);
/*
 * Open an artifact read-only; returns an fd the caller closes, or -1.
 * A file is checked against its name (its SHA-256) the first time this
 * process opens it: one that does not match is removed and, with a
 * source, fetched again; it is never handed out. An artifact the store
 * lacks is fetched from the source, validated like an ingest, and kept.
 */
int store_open_artifact(struct store *store, const char *sha256);

/* Path of an artifact, in buf; -1 if it does not fit. */
int store_path(const struct store *store, const char *sha256, char *buf,
    size_t len);

/*
 * Delete temp files whose writer died (their flock is free). Returns how
 * many were removed.
 */
int store_clean(struct store *store);

/* 1 if s is 64 lower-case hex characters. */
int store_valid_sha256(const char *s);

/*
 * Delta patches from artifact base to artifact target, kept as
 * artifacts/patches/<base>-<target> and written the same safe way.
 */
enum otad_err store_put_patch(struct store *store, const char *base,
    const char *target, const void *data, size_t len);
/* A read-only fd, or -1 (ENOENT when there is none). */
int store_open_patch(const struct store *store, const char *base,
    const char *target);
void store_remove_patch(struct store *store, const char *base,
    const char *target);

#endif
