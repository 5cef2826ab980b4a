/* store.c: content-addressed artifacts; ingest = temp, hash, fsync, rename */
#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "log.h"
#include "store.h"

#define TEMP_PREFIX ".ingest-"

struct store {
	char *dir;
	int dirfd;
	store_fetch_fn fetch; /* where missing artifacts come from */
	void *fetch_arg;
	pthread_mutex_t mu;   /* guards the list of files checked */
	char (*checked)[65];  /* names whose content matched them */
	size_t nchecked, capchecked;
};

int
store_valid_sha256(const char *s)
{
	size_t i;

	for (i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[64] == '\0';
}

enum otad_err
store_open(const char *state_dir, struct store **out)
{
	struct store *store;
	size_t len = strlen(state_dir) + sizeof("/artifacts");

	*out = NULL;
	if ((store = calloc(1, sizeof(*store))) == NULL ||
	    (store->dir = malloc(len)) == NULL) {
		free(store);
		return OTAD_ERR_NOMEM;
	}
	snprintf(store->dir, len, "%s/artifacts", state_dir);
	pthread_mutex_init(&store->mu, NULL);
	if (mkdir(store->dir, 0750) < 0 && errno != EEXIST) {
		log_warn("cannot create '%s'", store->dir);
		goto fail;
	}
	if ((store->dirfd = open(store->dir, O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC)) < 0) {
		log_warn("cannot open '%s'", store->dir);
		goto fail;
	}
	*out = store;
	return OTAD_OK;
fail:
	free(store->dir);
	free(store);
	return OTAD_ERR_IO;
}

void
store_free(struct store *store)
{
	if (store == NULL)
		return;
	close(store->dirfd);
	pthread_mutex_destroy(&store->mu);
	free(store->checked);
	free(store->dir);
	free(store);
}

void
store_set_source(struct store *store, store_fetch_fn fetch, void *arg)
{
	store->fetch = fetch;
	store->fetch_arg = arg;
}

int
store_path(const struct store *store, const char *sha256, char *buf,
    size_t len)
{
	int n = snprintf(buf, len, "%s/%s", store->dir, sha256);

	return (n < 0 || (size_t)n >= len) ? -1 : 0;
}

static int
was_checked(struct store *store, const char *sha256)
{
	size_t i;
	int found = 0;

	pthread_mutex_lock(&store->mu);
	for (i = 0; i < store->nchecked && !found; i++)
		found = memcmp(store->checked[i], sha256, 64) == 0;
	pthread_mutex_unlock(&store->mu);
	return found;
}

static void
mark_checked(struct store *store, const char *sha256)
{
	pthread_mutex_lock(&store->mu);
	if (store->nchecked == store->capchecked) {
		size_t cap = store->capchecked ? store->capchecked * 2 : 16;
		char (*v)[65] = realloc(store->checked, cap * sizeof(*v));

		if (v != NULL) {
			store->checked = v;
			store->capchecked = cap;
		}
	}
	if (store->nchecked < store->capchecked)
		memcpy(store->checked[store->nchecked++], sha256, 65);
	pthread_mutex_unlock(&store->mu);
}

/* Whether fd's content hashes to sha256. */
static int
content_matches(int fd, const char *sha256)
{
	enum { CHUNK = 64 * 1024 };
	unsigned char md[EVP_MAX_MD_SIZE];
	EVP_MD_CTX *h = EVP_MD_CTX_new();
	uint8_t *buf = malloc(CHUNK);
	char hex[65];
	off_t off = 0;
	unsigned len;
	int ok = 0;

	if (h == NULL || buf == NULL ||
	    !EVP_DigestInit_ex(h, EVP_sha256(), NULL))
		goto done;
	for (;;) {
		ssize_t n = pread(fd, buf, CHUNK, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto done;
		if (n == 0)
			break;
		off += n;
		if (!EVP_DigestUpdate(h, buf, (size_t)n))
			goto done;
	}
	if (EVP_DigestFinal_ex(h, md, &len)) {
		otad_hex(md, 32, hex);
		ok = strcmp(hex, sha256) == 0;
	}
done:
	EVP_MD_CTX_free(h);
	free(buf);
	return ok;
}

/*
 * Fetch sha256 from the source into the store, the way an ingest goes
 * (a temp file, validated, linked under its name); 0 or -1.
 */
static int
fill(struct store *store, const char *sha256)
{
	struct store_artifact art = {.tmp = -1, .hold = -1};
	enum artifact_kind kind = KIND_APP;
	char why[256];
	int fd, existed, rc = -1;

	if (store->fetch == NULL) {
		errno = ENOENT;
		return -1;
	}
	if ((fd = memfd_create("otad-fetch", MFD_CLOEXEC)) < 0)
		return -1;
	if (store->fetch(store->fetch_arg, sha256, fd, &kind) < 0) {
		close(fd);
		return -1;
	}
	if (lseek(fd, 0, SEEK_SET) < 0 ||
	    store_ingest(store, fd, kind, &art, why, sizeof(why)) != OTAD_OK) {
		log_warnx("artifact %s from the registry: %s", sha256,
		    errno ? strerror(errno) : why);
	} else if (strcmp(art.sha256, sha256) != 0) {
		log_warnx("artifact %s from the registry hashes to %s: not "
		    "kept", sha256, art.sha256);
	} else if (store_publish(store, &art, &existed, why, sizeof(why)) !=
	    OTAD_OK) {
		log_warnx("artifact %s: %s", sha256, why);
	} else {
		log_info("artifact %s fetched from the registry", sha256);
		rc = 0;
	}
	store_artifact_release(&art);
	close(fd);
	if (rc < 0)
		errno = EIO;
	return rc;
}

int
store_open_artifact(struct store *store, const char *sha256)
{
	int fd, tries;

	if (!store_valid_sha256(sha256)) {
		errno = EINVAL;
		return -1;
	}
	for (tries = 0; tries < 2; tries++) {
		fd = openat(store->dirfd, sha256, O_RDONLY | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT && fill(store, sha256) == 0)
			fd = openat(store->dirfd, sha256, O_RDONLY |
			    O_CLOEXEC);
		if (fd < 0 || was_checked(store, sha256))
			return fd;
		if (content_matches(fd, sha256)) {
			mark_checked(store, sha256);
			return fd;
		}
		/* a corrupt copy: never served; fetched again if it can be */
		log_warnx("artifact %s on disk does not match its digest: "
		    "removed", sha256);
		close(fd);
		unlinkat(store->dirfd, sha256, 0);
	}
	errno = EIO;
	return -1;
}


/* Copy src to tmp while hashing; OTAD_OK or an error with why filled in. */
static enum otad_err
copy_and_hash(int src, int tmp, struct store_artifact *out, uint8_t *head,
    size_t *headlen, char *why, size_t whylen)
{
	enum { CHUNK = 64 * 1024 };
	unsigned char sha[EVP_MAX_MD_SIZE], md5[EVP_MAX_MD_SIZE];
	EVP_MD_CTX *hsha = EVP_MD_CTX_new(), *hmd5 = EVP_MD_CTX_new();
	enum otad_err rc = OTAD_ERR_IO;
	uint8_t *buf = malloc(CHUNK);
	uint64_t total = 0;
	unsigned len;

	*headlen = 0;
	if (hsha == NULL || hmd5 == NULL || buf == NULL ||
	    !EVP_DigestInit_ex(hsha, EVP_sha256(), NULL) ||
	    !EVP_DigestInit_ex(hmd5, EVP_md5(), NULL)) {
		rc = OTAD_ERR_NOMEM;
		snprintf(why, whylen, "cannot set up hashing");
		goto done;
	}
	for (;;) {
		ssize_t n = read(src, buf, CHUNK);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(why, whylen, "read error: %s",
			    strerror(errno));
			goto done;
		}
		if (n == 0)
			break;
		total += (uint64_t)n;
		if (total > ESPIMG_MAX_SIZE) {
			snprintf(why, whylen, "file is larger than %u MiB, the "
			    "largest app partition", ESPIMG_MAX_SIZE >> 20);
			rc = OTAD_ERR_TOO_LARGE;
			goto done;
		}
		if (*headlen < 64) {
			size_t take = 64 - *headlen;

			if (take > (size_t)n)
				take = (size_t)n;
			memcpy(head + *headlen, buf, take);
			*headlen += take;
		}
		if (!EVP_DigestUpdate(hsha, buf, (size_t)n) ||
		    !EVP_DigestUpdate(hmd5, buf, (size_t)n)) {
			snprintf(why, whylen, "hashing failed");
			goto done;
		}
		if (otad_write_all(tmp, buf, (size_t)n) < 0) {
			snprintf(why, whylen, "cannot write to the store: %s",
			    strerror(errno));
			goto done;
		}
	}
	if (!EVP_DigestFinal_ex(hsha, sha, &len) ||
	    !EVP_DigestFinal_ex(hmd5, md5, &len)) {
		snprintf(why, whylen, "hashing failed");
		goto done;
	}
	otad_hex(sha, 32, out->sha256);
	otad_hex(md5, 16, out->md5);
	out->size = total;
	rc = OTAD_OK;
done:
	EVP_MD_CTX_free(hsha);
	EVP_MD_CTX_free(hmd5);
	free(buf);
	return rc;
}

/* The whole image, checked from the temp file before it gets a name. */
static enum otad_err
validate(int fd, struct store_artifact *out, char *why, size_t whylen)
{
	enum otad_err rc;
	void *map;

	map = mmap(NULL, (size_t)out->size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		snprintf(why, whylen, "cannot read back the file: %s",
		    strerror(errno));
		return OTAD_ERR_IO;
	}
	if (out->kind != KIND_APP)
		rc = fsimg_check(out->kind, map, (size_t)out->size, why,
		    whylen);
	else
		rc = espimg_parse(map, (size_t)out->size, &out->image, why,
		    whylen);
	/* the block pointers would dangle once unmapped */
	memset(out->image.sig, 0, sizeof(out->image.sig));
	munmap(map, (size_t)out->size);
	return rc;
}

/*
 * Give the temp file its name: a link, which never replaces a file of that
 * name (one another process may have recorded), then a shared lock on the
 * inode the name holds, and a check that the sweep did not unlink it
 * between the two (then link again). 0 with out->hold open and locked.
 */
static enum otad_err
publish(struct store *store, const char *tmpname, int tmp,
    struct store_artifact *out, int *existed, char *why, size_t whylen)
{
	struct stat st;
	int fd, tries;

	for (tries = 0; tries < 100; tries++) {
		if (linkat(store->dirfd, tmpname, store->dirfd, out->sha256,
		    0) == 0) {
			/*
			 * Our own inode under its name: keep holding it, the
			 * exclusive lock of the write turned shared (a dup
			 * shares the lock, and outlives tmp).
			 */
			*existed = 0;
			if (flock(tmp, LOCK_SH) < 0 || (fd = dup(tmp)) < 0) {
				snprintf(why, whylen, "cannot hold '%s': %s",
				    out->sha256, strerror(errno));
				return OTAD_ERR_IO;
			}
		} else if (errno != EEXIST) {
			snprintf(why, whylen, "cannot link into the store: %s",
			    strerror(errno));
			return OTAD_ERR_IO;
		} else {
			/* same name: same content (SHA-256), someone's */
			*existed = 1;
			if ((fd = openat(store->dirfd, out->sha256, O_RDONLY |
			    O_CLOEXEC)) < 0) {
				if (errno == ENOENT)
					continue; /* swept now: link again */
				snprintf(why, whylen, "cannot open '%s': %s",
				    out->sha256, strerror(errno));
				return OTAD_ERR_IO;
			}
			if (flock(fd, LOCK_SH) < 0) {
				snprintf(why, whylen, "cannot lock '%s': %s",
				    out->sha256, strerror(errno));
				close(fd);
				return OTAD_ERR_IO;
			}
		}
		if (fstat(fd, &st) < 0 || st.st_nlink == 0 ||
		    (uint64_t)st.st_size != out->size) {
			close(fd); /* swept before our lock: try again */
			continue;
		}
		if (fsync(store->dirfd) < 0) {
			snprintf(why, whylen, "cannot fsync the store: %s",
			    strerror(errno));
			close(fd);
			return OTAD_ERR_IO;
		}
		out->hold = fd;
		return OTAD_OK;
	}
	snprintf(why, whylen, "cannot publish '%s': it keeps vanishing",
	    out->sha256);
	return OTAD_ERR_IO;
}

void
store_artifact_release(struct store_artifact *art)
{
	if (art == NULL)
		return;
	if (art->hold >= 0) {
		close(art->hold);
		art->hold = -1;
	}
	if (art->tmp >= 0) {
		/* never published: the temp file goes, nothing else */
		unlinkat(art->store->dirfd, art->tmpname, 0);
		close(art->tmp);
		art->tmp = -1;
		art->tmpname[0] = '\0';
	}
}

enum otad_err
store_ingest(struct store *store, int src_fd, enum artifact_kind kind,
    struct store_artifact *out, char *why, size_t whylen)
{
	char *tmpname = out->tmpname;
	uint8_t head[64];
	size_t headlen;
	enum otad_err rc;
	int tmp = -1, n;

	memset(out, 0, sizeof(*out));
	out->hold = out->tmp = -1;
	out->kind = kind;
	/* a name only we use: pid and a counter make it unique per process */
	for (n = 0;; n++) {
		snprintf(tmpname, sizeof(out->tmpname), TEMP_PREFIX "%d-%d",
		    (int)getpid(), n);
		tmp = openat(store->dirfd, tmpname,
		    O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
		if (tmp >= 0 || errno != EEXIST)
			break;
	}
	if (tmp < 0) {
		snprintf(why, whylen, "cannot create a file in '%s': %s",
		    store->dir, strerror(errno));
		return OTAD_ERR_IO;
	}
	/* the lock tells store_clean this file is still being written */
	if (flock(tmp, LOCK_EX) < 0) {
		snprintf(why, whylen, "cannot lock '%s': %s", tmpname,
		    strerror(errno));
		rc = OTAD_ERR_IO;
		goto fail;
	}
	rc = copy_and_hash(src_fd, tmp, out, head, &headlen, why, whylen);
	if (rc != OTAD_OK)
		goto fail;
	/* a cheap look at an app's header before reading the whole file */
	if (kind == KIND_APP)
		rc = espimg_check_header(head, headlen, out->size, &out->image,
		    why, whylen);
	if (rc != OTAD_OK || (rc = validate(tmp, out, why, whylen)) != OTAD_OK)
		goto fail;
	if (fsync(tmp) < 0) {
		snprintf(why, whylen, "cannot fsync: %s", strerror(errno));
		rc = OTAD_ERR_IO;
		goto fail;
	}
	out->tmp = tmp;
	out->store = store;
	return OTAD_OK;
fail:
	unlinkat(store->dirfd, tmpname, 0);
	close(tmp);
	tmpname[0] = '\0';
	return rc;
}

enum otad_err
store_publish(struct store *store, struct store_artifact *art, int *existed,
    char *why, size_t whylen)
{
	enum otad_err rc;

	*existed = 0;
	if (art->tmp < 0) {
		snprintf(why, whylen, "nothing ingested to publish");
		return OTAD_ERR_INVALID;
	}
	if ((rc = publish(store, art->tmpname, art->tmp, art, existed, why,
	    whylen)) != OTAD_OK)
		return rc;
	/* under its own name now (held): the temp name can go */
	unlinkat(store->dirfd, art->tmpname, 0);
	close(art->tmp);
	art->tmp = -1;
	art->tmpname[0] = '\0';
	return OTAD_OK;
}

/*
 * Remove the files of the store whose names pick() accepts and that no
 * process holds (their exclusive lock is free), unless keep() (NULL: never)
 * says a record names them; each removal logged with what it was. A
 * writer holds its temp file, and an add holds its published file until
 * its row is written, so neither is removed under it. Under our lock no
 * add can record the file unseen, and names are only made by link, so
 * the name still means the inode we hold when we unlink it.
 */
static int
remove_unheld(struct store *store, int (*pick)(const char *name),
    int (*keep)(void *arg, const char *sha256), void *arg, const char *what,
    const char *why)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	int fd, ffd, removed = 0;

	if ((fd = openat(store->dirfd, ".", O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC)) < 0 || (d = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		log_warn("cannot list '%s'", store->dir);
		return 0;
	}
	while ((de = readdir(d)) != NULL) {
		if (!pick(de->d_name))
			continue;
		if ((ffd = openat(store->dirfd, de->d_name, O_RDONLY |
		    O_CLOEXEC)) < 0)
			continue;
		if (flock(ffd, LOCK_EX | LOCK_NB) == 0 &&
		    fstat(ffd, &st) == 0 && st.st_nlink > 0 &&
		    (keep == NULL || !keep(arg, de->d_name)) &&
		    unlinkat(store->dirfd, de->d_name, 0) == 0) {
			log_info("removed %s '%s'%s", what, de->d_name, why);
			removed++;
		}
		close(ffd);
	}
	closedir(d);
	if (removed > 0)
		fsync(store->dirfd);
	return removed;
}

static int
is_temp(const char *name)
{
	return strncmp(name, TEMP_PREFIX, strlen(TEMP_PREFIX)) == 0;
}

static int
is_artifact(const char *name)
{
	return store_valid_sha256(name);
}

int
store_clean(struct store *store)
{
	return remove_unheld(store, is_temp, NULL, NULL, "unfinished ingest",
	    "");
}

int
store_sweep(struct store *store, int (*named)(void *arg, const char *sha256),
    void *arg)
{
	return remove_unheld(store, is_artifact, named, arg, "artifact file",
	    ": no record names it (an add that did not finish)");
}

/* ---- delta patches: artifacts/patches/<base>-<target> ---- */

static int
patch_name(const char *base, const char *target, char name[140])
{
	if (!store_valid_sha256(base) || !store_valid_sha256(target)) {
		errno = EINVAL;
		return -1;
	}
	snprintf(name, 140, "patches/%s-%s", base, target);
	return 0;
}

enum otad_err
store_put_patch(struct store *store, const char *base, const char *target,
    const void *data, size_t len)
{
	char name[140], tmp[160];
	int fd, dfd;

	if (patch_name(base, target, name) < 0)
		return OTAD_ERR_INVALID;
	if (mkdirat(store->dirfd, "patches", 0750) < 0 && errno != EEXIST)
		return OTAD_ERR_IO;
	/* temp, fsync, rename, fsync the directory: whole or absent */
	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	if ((fd = openat(store->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC |
	    O_CLOEXEC, 0640)) < 0)
		return OTAD_ERR_IO;
	if (otad_write_all(fd, data, len) < 0 || fsync(fd) < 0 ||
	    close(fd) < 0 || renameat(store->dirfd, tmp, store->dirfd, name) < 0) {
		unlinkat(store->dirfd, tmp, 0);
		return OTAD_ERR_IO;
	}
	if ((dfd = openat(store->dirfd, "patches", O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC)) >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return OTAD_OK;
}

int
store_open_patch(const struct store *store, const char *base,
    const char *target)
{
	char name[140];

	if (patch_name(base, target, name) < 0)
		return -1;
	return openat(store->dirfd, name, O_RDONLY | O_CLOEXEC);
}

void
store_remove_patch(struct store *store, const char *base, const char *target)
{
	char name[140];

	if (patch_name(base, target, name) == 0)
		unlinkat(store->dirfd, name, 0);
}
