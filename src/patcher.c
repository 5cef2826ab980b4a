/* patcher.c: the background builder of delta patches and their index */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
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
	E_WAITING, /* for the cluster's leader to build it: looked up again */
};

/* How often a node of a cluster looks for what the leader built. */
#define CLUSTER_ROUND_S 1

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
	struct patch_cluster cluster;
	int clustered; /* a node of a cluster: cluster is set */
	char (*drops)[65]; /* targets no longer offered, for the leader */
	size_t ndrops;
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

/* Remember that target's patches go from the cluster; with mu held. */
static void
queue_drop(struct patcher *p, const char *target)
{
	char (*grown)[65];

	if (!p->clustered ||
	    (grown = realloc(p->drops, (p->ndrops + 1) * 65)) == NULL)
		return;
	p->drops = grown;
	memcpy(p->drops[p->ndrops++], target, 65);
}

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

/* A container, and where it came from: what is left to do with it. */
struct container {
	uint8_t *c;
	size_t n;
	enum { FROM_STORE, FROM_SHARE, FROM_BUILD } from;
};

/* Take a copy of a mapped file as the container; 0, or -1 out of memory. */
static int
adopt(struct container *out, const struct mapped *m, int from)
{
	if ((out->c = malloc(m->n)) == NULL)
		return -1;
	memcpy(out->c, m->p, m->n);
	out->n = m->n;
	out->from = from;
	return 0;
}

/*
 * The cluster's container for info's pair, verified: 0 with *out; or -1
 * with errno EBADMSG when its build failed (no node builds it again),
 * ENOENT when there is none or it does not verify.
 */
static int
cluster_container(struct patcher *p, const struct patch_info *info,
    const struct mapped *base, const uint8_t app[32],
    const struct mapped *target, struct container *out)
{
	struct mapped got = {NULL, 0};
	int fd, rc = -1;

	if ((fd = memfd_create("otad-patch", MFD_CLOEXEC)) < 0)
		return -1;
	if (p->cluster.fetch(p->cluster.arg, info->base, info->target,
	    fd) < 0) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	if (map(fd, &got) == 0 && verified(base, app, target, got.p, got.n))
		rc = adopt(out, &got, FROM_SHARE);
	else
		log_warnx("delta %.12s -> %.12s as the cluster keeps it failed "
		    "verification; it is never served", info->base,
		    info->target);
	unmap(&got);
	errno = ENOENT;
	return rc;
}

/* Tell the cluster a build failed, so that no node waits for it. */
static void
tell_failure(struct patcher *p, const struct patch_info *info)
{
	if (p->clustered && p->cluster.leads(p->cluster.leads_arg))
		p->cluster.put(p->cluster.arg, info->base, info->target, NULL,
		    0, NULL);
}

/*
 * Build (or pick up a stored or shared) patch for info's pair: OTAD_OK
 * with the container's size and digest filled in; OTAD_ERR_BUSY when it
 * is for the leader to build (or keep) and it has not yet; another
 * error (logged) when it is never to be served.
 */
static enum otad_err
build(struct patcher *p, struct patch_info *info, unsigned share)
{
	struct mapped base, target, stored = {NULL, 0};
	struct container got = {NULL, 0, FROM_STORE};
	struct espimg_info img;
	uint8_t *patch = NULL, digest[32];
	size_t npatch;
	unsigned len = 0;
	int leads = !p->clustered || p->cluster.leads(p->cluster.leads_arg);
	int too_large;
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
		tell_failure(p, info);
		goto done;
	}
	otad_hex(img.app_sha256, 32, info->base_app);
	/* a cluster's own copy first: it is what every node serves */
	if (p->clustered && cluster_container(p, info, &base, img.app_sha256,
	    &target, &got) < 0 && errno == EBADMSG) {
		log_info("delta %.12s -> %.12s: its build failed on the "
		    "leader; devices get the full image", info->base,
		    info->target);
		goto done;
	}
	/* one from an earlier run is trusted only once it is verified again */
	if (got.c == NULL && map(store_open_patch(p->store, info->base,
	    info->target), &stored) == 0 && verified(&base, img.app_sha256,
	    &target, stored.p, stored.n) && adopt(&got, &stored,
	    FROM_STORE) < 0) {
		rc = OTAD_ERR_NOMEM;
		goto done;
	}
	if (got.c == NULL && !leads) {
		rc = OTAD_ERR_BUSY; /* the leader builds it */
		goto done;
	}
	if (got.c == NULL) {
		if ((rc = delta_create_until(base.p, base.n, target.p,
		    target.n, &patch, &npatch, &p->cancel)) != OTAD_OK)
			goto done;
		got.n = DELTA_HEADER_SIZE + npatch;
		got.from = FROM_BUILD;
		if ((got.c = malloc(got.n)) == NULL) {
			rc = OTAD_ERR_NOMEM;
			goto done;
		}
		delta_container_header(img.app_sha256, got.c);
		memcpy(got.c + DELTA_HEADER_SIZE, patch, npatch);
		if (!verified(&base, img.app_sha256, &target, got.c, got.n)) {
			log_warnx("delta %.12s -> %.12s failed verification; "
			    "it is never served", info->base, info->target);
			tell_failure(p, info);
			rc = OTAD_ERR_INVALID;
			goto done;
		}
	}
	EVP_Digest(got.c, got.n, digest, &len, EVP_sha256(), NULL);
	otad_hex(digest, 32, info->sha256);
	too_large = (uint64_t)got.n * 100 > (uint64_t)target.n * share;
	/*
	 * Kept on this node's disk first: when the cluster cannot take it
	 * yet, the next try finds it there instead of building it again.
	 */
	if (!too_large && got.from != FROM_STORE && store_put_patch(p->store,
	    info->base, info->target, got.c, got.n) != OTAD_OK) {
		log_warn("delta %.12s -> %.12s: cannot store it", info->base,
		    info->target);
		rc = OTAD_ERR_IO;
		goto done;
	}
	/* every node judges the size against its own delta_max_share */
	if (p->clustered && leads && got.from != FROM_SHARE &&
	    p->cluster.put(p->cluster.arg, info->base, info->target, got.c,
	    got.n, info->sha256) < 0) {
		rc = OTAD_ERR_BUSY; /* tried again: the others wait for it */
		goto done;
	}
	if (too_large) {
		log_info("delta %.12s -> %.12s is %zu bytes, %zu%% of the image "
		    "(over delta_max_share): devices get the full image",
		    info->base, info->target, got.n, got.n * 100 / target.n);
		rc = OTAD_ERR_TOO_LARGE;
		goto done;
	}
	info->size = got.n;
	log_info("delta %.12s -> %.12s ready%s: %zu bytes, %zu%% of the image",
	    info->base, info->target, got.from == FROM_SHARE ?
	    " (built by the leader)" : "", got.n, got.n * 100 / target.n);
	rc = OTAD_OK;
done:
	free(got.c);
	free(patch);
	unmap(&stored);
	unmap(&base);
	unmap(&target);
	return rc;
}

/* A pair some node asked for: the leader builds it if it offers target. */
static void
want_for_cluster(void *arg, const char *base, const char *target)
{
	struct patcher *p = arg;
	int offered;

	pthread_mutex_lock(&p->mu);
	offered = hold_of(p, target) < p->nholds;
	pthread_mutex_unlock(&p->mu);
	if (offered)
		patcher_want(p, base, target);
}

/*
 * A cluster's round, every CLUSTER_ROUND_S, without mu: pairs waiting for
 * the leader are looked up again; the leader drops what it no longer
 * offers and takes up what other nodes asked for.
 */
static void
cluster_round(struct patcher *p)
{
	char (*drops)[65];
	size_t i, ndrops;
	int leads = p->cluster.leads(p->cluster.leads_arg);

	pthread_mutex_lock(&p->mu);
	drops = p->drops;
	ndrops = p->ndrops;
	p->drops = NULL;
	p->ndrops = 0;
	for (i = 0; i < p->n; i++)
		if (p->v[i].state == E_WAITING)
			p->v[i].state = E_QUEUED;
	pthread_mutex_unlock(&p->mu);
	for (i = 0; leads && i < ndrops; i++)
		p->cluster.drop(p->cluster.arg, drops[i]);
	free(drops);
	if (leads)
		p->cluster.wanted(p->cluster.arg, want_for_cluster, p);
}

static void *
builder_main(void *arg)
{
	struct patcher *p = arg;
	time_t next_round = 0;

	pthread_mutex_lock(&p->mu);
	while (!p->stopping) {
		struct patch_info info;
		unsigned share = p->max_share;
		size_t i;
		enum otad_err rc;

		if (p->clustered && time(NULL) >= next_round) {
			pthread_mutex_unlock(&p->mu);
			cluster_round(p);
			pthread_mutex_lock(&p->mu);
			next_round = time(NULL) + CLUSTER_ROUND_S;
			continue;
		}
		for (i = 0; i < p->n && p->v[i].state != E_QUEUED; i++)
			continue;
		if (i == p->n) {
			struct timespec until = {next_round, 0};

			if (p->clustered)
				pthread_cond_timedwait(&p->wake, &p->mu,
				    &until);
			else
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
				e->state = rc == OTAD_OK ? E_READY :
				    rc == OTAD_ERR_BUSY ? E_WAITING : E_SKIP;
			} else if (rc == OTAD_OK) {
				/* its release went while it was built */
				store_remove_patch(p->store, info.base,
				    info.target);
				queue_drop(p, info.target);
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
	pthread_setname_np(p->thread, "otad-patcher");
	*out = p;
	return OTAD_OK;
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
	queue_drop(p, target);
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
	/* nothing is built from here on (a build under way gives up) */
	if (p->running) {
		atomic_store(&p->cancel, 1);
		pthread_mutex_lock(&p->mu);
		p->stopping = 1;
		pthread_cond_signal(&p->wake);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->thread, NULL);
		p->running = 0;
	}
}

void
patcher_join_cluster(struct patcher *p, const struct patch_cluster *cluster)
{
	pthread_mutex_lock(&p->mu);
	p->cluster = *cluster;
	p->clustered = 1;
	pthread_cond_signal(&p->wake);
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
	patcher_closing(p);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->wake);
	free(p->v);
	free(p->holds);
	free(p->drops);
	free(p);
}
