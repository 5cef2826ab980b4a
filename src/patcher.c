/* patcher.c: the background builder of delta patches and their index */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "delta.h"
#include "espimg.h"
#include "log.h"
#include "patcher.h"

enum entry_state {
	E_QUEUED,
	E_READY,
	E_SKIP, /* failed, or no smaller than max_share: never served */
};

struct entry {
	enum entry_state state;
	struct patch_info info;
};

/* How many prepared offers of a target image are alive. */
struct hold {
	char target[65];
	unsigned count;
};

struct patcher {
	struct store *store;
	struct hold *holds;
	size_t nholds;
	int closing; /* stopping: offers going away keep their patches */
	pthread_mutex_t mu; /* guards everything below */
	pthread_cond_t wake;
	struct entry *v;
	size_t n, cap;
	unsigned max_share;
	int stopping;
	atomic_int cancel; /* stopping: a build under way gives up */
	pthread_t thread;
	int running;
};

/* The entry for a pair, or NULL; with mu held. */
static struct entry *
find(struct patcher *p, const char *base, const char *target)
{
	size_t i;

	for (i = 0; i < p->n; i++)
		if (strcmp(p->v[i].info.base, base) == 0 &&
		    strcmp(p->v[i].info.target, target) == 0)
			return &p->v[i];
	return NULL;
}

void
patcher_want(struct patcher *p, const char *base, const char *target)
{
	struct entry *e, *grown;

	if (p == NULL || !store_valid_sha256(base) ||
	    !store_valid_sha256(target) || strcmp(base, target) == 0)
		return;
	pthread_mutex_lock(&p->mu);
	if (p->max_share == 0 || find(p, base, target) != NULL)
		goto done;
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;

		if ((grown = realloc(p->v, cap * sizeof(*grown))) == NULL)
			goto done;
		p->v = grown;
		p->cap = cap;
	}
	e = &p->v[p->n++];
	memset(e, 0, sizeof(*e));
	e->state = E_QUEUED;
	memcpy(e->info.base, base, 65);
	memcpy(e->info.target, target, 65);
	pthread_cond_signal(&p->wake);
done:
	pthread_mutex_unlock(&p->mu);
}

int
patcher_ready(struct patcher *p, const char *base, const char *target,
    struct patch_info *out)
{
	struct entry *e;
	int ready = 0;

	if (p == NULL)
		return 0;
	pthread_mutex_lock(&p->mu);
	e = find(p, base, target);
	if (e != NULL && e->state == E_READY && p->max_share > 0) {
		*out = e->info;
		ready = 1;
	}
	pthread_mutex_unlock(&p->mu);
	if (e == NULL)
		patcher_want(p, base, target);
	return ready;
}

int
patcher_by_sha(struct patcher *p, const char *sha256, struct patch_info *out)
{
	size_t i;
	int found = 0;

	if (p == NULL)
		return 0;
	pthread_mutex_lock(&p->mu);
	for (i = 0; i < p->n && !found; i++)
		if (p->v[i].state == E_READY &&
		    strcmp(p->v[i].info.sha256, sha256) == 0) {
			*out = p->v[i].info;
			found = 1;
		}
	pthread_mutex_unlock(&p->mu);
	return found;
}

int
patcher_open(struct patcher *p, const struct patch_info *info)
{
	return store_open_patch(p->store, info->base, info->target);
}

struct mapped {
	uint8_t *p;
	size_t n;
};

static int
map(int fd, struct mapped *m)
{
	struct stat st;

	m->p = NULL;
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0 || st.st_size == 0) {
		close(fd);
		return -1;
	}
	m->n = (size_t)st.st_size;
	m->p = mmap(NULL, m->n, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (m->p == MAP_FAILED) {
		m->p = NULL;
		return -1;
	}
	return 0;
}

static void
unmap(struct mapped *m)
{
	if (m->p != NULL)
		munmap(m->p, m->n);
}

/* container (header + patch) gives target from base: 1 if so */
static int
verified(const struct mapped *base, const uint8_t app[32],
    const struct mapped *target, const uint8_t *c, size_t nc)
{
	uint8_t digest[32], *out;
	size_t nout;
	char why[128];
	int ok;

	if (!delta_container_parse(c, nc, digest) ||
	    memcmp(digest, app, 32) != 0)
		return 0;
	if (delta_apply(base->p, base->n, c + DELTA_HEADER_SIZE,
	    nc - DELTA_HEADER_SIZE, &out, &nout, why, sizeof(why)) != OTAD_OK)
		return 0;
	ok = nout == target->n && memcmp(out, target->p, nout) == 0;
	free(out);
	return ok;
}

/*
 * Build (or pick up a stored) patch for info's pair: OTAD_OK with the
 * container's size and digest filled in; an error (logged) otherwise.
 */
static enum otad_err
build(struct patcher *p, struct patch_info *info, unsigned share)
{
	struct mapped base, target, stored = {NULL, 0};
	struct espimg_info img;
	uint8_t *patch = NULL, *c = NULL, digest[32];
	size_t npatch, nc;
	unsigned len = 0;
	int fresh = 0;
	char why[256];
	enum otad_err rc = OTAD_ERR_INVALID;

	if (map(store_open_artifact(p->store, info->base), &base) < 0 ||
	    map(store_open_artifact(p->store, info->target), &target) < 0) {
		unmap(&base);
		log_warnx("delta %.12s -> %.12s: an image is missing from the "
		    "store", info->base, info->target);
		return OTAD_ERR_NOT_FOUND;
	}
	if (espimg_parse(base.p, base.n, &img, why, sizeof(why)) != OTAD_OK ||
	    !img.hash_appended) {
		log_warnx("delta %.12s -> %.12s: the base has no appended "
		    "SHA-256 for devices to name it by", info->base,
		    info->target);
		goto done;
	}
	otad_hex(img.app_sha256, 32, info->base_app);
	/* one from an earlier run is trusted only once it is verified again */
	if (map(store_open_patch(p->store, info->base, info->target),
	    &stored) == 0 && verified(&base, img.app_sha256, &target,
	    stored.p, stored.n)) {
		c = malloc(stored.n);
		if (c != NULL)
			memcpy(c, stored.p, stored.n);
		nc = stored.n;
	} else {
		fresh = 1;
		if ((rc = delta_create_until(base.p, base.n, target.p,
		    target.n, &patch, &npatch, &p->cancel)) != OTAD_OK)
			goto done;
		nc = DELTA_HEADER_SIZE + npatch;
		if ((c = malloc(nc)) != NULL) {
			delta_container_header(img.app_sha256, c);
			memcpy(c + DELTA_HEADER_SIZE, patch, npatch);
		}
		if (c != NULL && !verified(&base, img.app_sha256, &target, c,
		    nc)) {
			log_warnx("delta %.12s -> %.12s failed verification; "
			    "it is never served", info->base, info->target);
			goto done;
		}
	}
	if (c == NULL) {
		rc = OTAD_ERR_NOMEM;
		goto done;
	}
	if ((uint64_t)nc * 100 > (uint64_t)target.n * share) {
		log_info("delta %.12s -> %.12s is %zu bytes, %zu%% of the image "
		    "(over delta_max_share): devices get the full image",
		    info->base, info->target, nc, nc * 100 / target.n);
		rc = OTAD_ERR_TOO_LARGE;
		goto done;
	}
	if (fresh && store_put_patch(p->store, info->base,
	    info->target, c, nc) != OTAD_OK) {
		log_warn("delta %.12s -> %.12s: cannot store it", info->base,
		    info->target);
		rc = OTAD_ERR_IO;
		goto done;
	}
	EVP_Digest(c, nc, digest, &len, EVP_sha256(), NULL);
	otad_hex(digest, 32, info->sha256);
	info->size = nc;
	log_info("delta %.12s -> %.12s ready: %zu bytes, %zu%% of the image",
	    info->base, info->target, nc, nc * 100 / target.n);
	rc = OTAD_OK;
done:
	free(c);
	free(patch);
	unmap(&stored);
	unmap(&base);
	unmap(&target);
	return rc;
}

static void *
builder_main(void *arg)
{
	struct patcher *p = arg;

	pthread_mutex_lock(&p->mu);
	while (!p->stopping) {
		struct patch_info info;
		unsigned share = p->max_share;
		size_t i;
		enum otad_err rc;

		for (i = 0; i < p->n && p->v[i].state != E_QUEUED; i++)
			continue;
		if (i == p->n) {
			pthread_cond_wait(&p->wake, &p->mu);
			continue;
		}
		info = p->v[i].info;
		pthread_mutex_unlock(&p->mu);
		rc = build(p, &info, share);
		pthread_mutex_lock(&p->mu);
		/* the array may have moved while we built: look it up */
		{
			struct entry *e = find(p, info.base, info.target);

			if (e != NULL) {
				e->info = info;
				e->state = rc == OTAD_OK ? E_READY : E_SKIP;
			} else if (rc == OTAD_OK) {
				/* its release went while it was built */
				store_remove_patch(p->store, info.base,
				    info.target);
			}
		}
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

enum otad_err
patcher_start(struct store *store, unsigned max_share, struct patcher **out)
{
	struct patcher *p;

	*out = NULL;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return OTAD_ERR_NOMEM;
	p->store = store;
	p->max_share = max_share;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->wake, NULL);
	if (pthread_create(&p->thread, NULL, builder_main, p) != 0) {
		patcher_stop(p);
		return OTAD_ERR_NOMEM;
	}
	p->running = 1;
	*out = p;
	return OTAD_OK;
}

/* The index of target's hold, or nholds; with mu held. */
static size_t
hold_of(const struct patcher *p, const char *target)
{
	size_t i;

	for (i = 0; i < p->nholds; i++)
		if (strcmp(p->holds[i].target, target) == 0)
			break;
	return i;
}

void
patcher_hold(struct patcher *p, const char *target)
{
	struct hold *grown;
	size_t i;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	if ((i = hold_of(p, target)) == p->nholds) {
		if ((grown = realloc(p->holds, (i + 1) * sizeof(*grown))) ==
		    NULL)
			goto done;
		p->holds = grown;
		p->nholds++;
		snprintf(grown[i].target, sizeof(grown[i].target), "%s",
		    target);
		grown[i].count = 0;
	}
	p->holds[i].count++;
done:
	pthread_mutex_unlock(&p->mu);
}

void
patcher_release(struct patcher *p, const char *target)
{
	size_t i, k;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	if ((i = hold_of(p, target)) == p->nholds ||
	    --p->holds[i].count > 0 || p->closing)
		goto done;
	p->holds[i] = p->holds[--p->nholds];
	/* no longer offered: its patches go, from memory and the store */
	for (k = 0; k < p->n;) {
		if (strcmp(p->v[k].info.target, target) != 0) {
			k++;
			continue;
		}
		if (p->v[k].state == E_READY)
			store_remove_patch(p->store, p->v[k].info.base, target);
		p->v[k] = p->v[--p->n];
	}
	log_info("release of %.12s no longer offered: its patches removed",
	    target);
done:
	pthread_mutex_unlock(&p->mu);
}

void
patcher_closing(struct patcher *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->closing = 1;
	pthread_mutex_unlock(&p->mu);
}

void
patcher_set_share(struct patcher *p, unsigned max_share)
{
	size_t i;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	if (max_share != p->max_share) {
		/* sizes are judged again against the new share */
		for (i = 0; i < p->n; i++)
			p->v[i].state = E_QUEUED;
		pthread_cond_signal(&p->wake);
	}
	p->max_share = max_share;
	pthread_mutex_unlock(&p->mu);
}

void
patcher_stop(struct patcher *p)
{
	if (p == NULL)
		return;
	if (p->running) {
		atomic_store(&p->cancel, 1);
		pthread_mutex_lock(&p->mu);
		p->stopping = 1;
		pthread_cond_signal(&p->wake);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->thread, NULL);
	}
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->wake);
	free(p->v);
	free(p->holds);
	free(p);
}
