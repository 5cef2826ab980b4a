/*
 * registry/devcache.c: every device's row in otad's memory, so that a
 * check does not read SQLite. SQLite discards a read connection's page
 * cache whenever another connection commits, and the writer commits every
 * few milliseconds, so a check in random order read three pages from the
 * kernel and took the WAL index's locks; here it copies one entry.
 *
 * Only the writer thread puts rows, the row its own statement returned
 * (RETURNING) or one it read itself; HTTP threads only read, and on a
 * miss read SQLite without putting what they read, so nothing older than
 * what the writer last wrote can replace it. Edits made outside the writer
 * (otactl, the management API, SQL by hand) move catalog.devices (schema
 * triggers), and a change of it clears the cache; a put
 * that began before the clear is refused by the epoch it carries.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry_impl.h"

#define SHARDS 256 /* HTTP threads and the writer rarely meet on one */
/* (by otad_hash: a device cannot choose its shard usefully) */

/*
 * One device: the strings packed after the numbers, NUL-separated, in
 * the order of enum field, so a row costs its strings and no more.
 */
enum field {
	F_ID,
	F_VERSION,
	F_PRODUCT,
	F_CHIP,
	F_HW_REV,
	F_TOKEN,
	F_GROUP,
	F_RUNNING,
	F_FS_VERSION,
	F_COUNT
};

struct entry {
	struct entry *next;
	uint64_t hash;
	int64_t secure_version;
	int64_t quarantined_until;
	int32_t battery;
	uint8_t blocked;
	char strs[]; /* F_COUNT strings */
};

struct shard {
	pthread_mutex_t mu;
	struct entry **buckets;
	size_t nbuckets, count;
};

struct devcache {
	struct shard shards[SHARDS];
	size_t cap;
	atomic_size_t count;
	atomic_uint_fast64_t epoch;
	atomic_uint_fast64_t hits, misses;
};

struct devcache *
devcache_new(size_t cap)
{
	struct devcache *c;
	int i;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->cap = cap;
	for (i = 0; i < SHARDS; i++)
		pthread_mutex_init(&c->shards[i].mu, NULL);
	return c;
}

static void
shard_empty(struct shard *s)
{
	size_t i;

	for (i = 0; i < s->nbuckets; i++) {
		struct entry *e = s->buckets[i], *next;

		for (; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(s->buckets);
	s->buckets = NULL;
	s->nbuckets = s->count = 0;
}

void
devcache_free(struct devcache *c)
{
	int i;

	if (c == NULL)
		return;
	for (i = 0; i < SHARDS; i++) {
		shard_empty(&c->shards[i]);
		pthread_mutex_destroy(&c->shards[i].mu);
	}
	free(c);
}

static struct shard *
shard_of(struct devcache *c, uint64_t h)
{
	return &c->shards[h % SHARDS];
}

/* The link pointing at id's entry (at NULL when absent); locked. */
static struct entry **
find(struct shard *s, uint64_t h, const char *id)
{
	struct entry **p;

	if (s->nbuckets == 0)
		return NULL;
	for (p = &s->buckets[(h / SHARDS) % s->nbuckets]; *p != NULL;
	    p = &(*p)->next)
		if ((*p)->hash == h && strcmp((*p)->strs, id) == 0)
			return p;
	return p;
}

/* Twice the buckets once the chains average one entry; locked. */
static int
grow(struct shard *s)
{
	size_t n = s->nbuckets ? s->nbuckets * 2 : 64, i;
	struct entry **b = calloc(n, sizeof(*b));

	if (b == NULL)
		return -1;
	for (i = 0; i < s->nbuckets; i++) {
		struct entry *e = s->buckets[i], *next;

		for (; e != NULL; e = next) {
			size_t at = (e->hash / SHARDS) % n;

			next = e->next;
			e->next = b[at];
			b[at] = e;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->nbuckets = n;
	return 0;
}

static struct entry *
entry_new(const char *id, const struct device_row *row, uint64_t h)
{
	const char *f[F_COUNT] = {id, row->version, row->product, row->chip,
	    row->hw_rev, row->token_hash, row->group, row->running_sha256,
	    row->fs_version};
	size_t len[F_COUNT], total = 0, i;
	struct entry *e;
	char *p;

	for (i = 0; i < F_COUNT; i++)
		total += (len[i] = strlen(f[i])) + 1;
	if ((e = malloc(sizeof(*e) + total)) == NULL)
		return NULL;
	e->next = NULL;
	e->hash = h;
	e->secure_version = row->secure_version;
	e->quarantined_until = row->quarantined_until;
	e->battery = row->battery;
	e->blocked = row->blocked != 0;
	for (p = e->strs, i = 0; i < F_COUNT; i++) {
		memcpy(p, f[i], len[i] + 1);
		p += len[i] + 1;
	}
	return e;
}

void
devcache_put(struct devcache *c, const char *id,
    const struct device_row *row, uint64_t epoch, int only_if_absent)
{
	uint64_t h = otad_hash(id);
	struct shard *s = shard_of(c, h);
	struct entry *e, **at;

	if ((e = entry_new(id, row, h)) == NULL)
		return; /* it stays a miss */
	pthread_mutex_lock(&s->mu);
	if (atomic_load(&c->epoch) != epoch)
		goto refuse; /* cleared since the row was read */
	at = find(s, h, id);
	if (at != NULL && *at != NULL) {
		struct entry *old = *at;

		if (only_if_absent)
			goto refuse;
		e->next = old->next;
		*at = e;
		free(old);
		pthread_mutex_unlock(&s->mu);
		return;
	}
	if (atomic_load(&c->count) >= c->cap)
		goto refuse;
	if (s->count >= s->nbuckets && grow(s) < 0)
		goto refuse;
	at = find(s, h, id);
	e->next = NULL;
	*at = e;
	s->count++;
	atomic_fetch_add(&c->count, 1);
	pthread_mutex_unlock(&s->mu);
	return;
refuse:
	pthread_mutex_unlock(&s->mu);
	free(e);
}

/* Copy one packed string into a field of the row, bounded. */
static const char *
unpack(const char *p, char *dst, size_t len)
{
	size_t n = strlen(p);

	if (n >= len)
		n = len - 1;
	memcpy(dst, p, n);
	dst[n] = '\0';
	return p + strlen(p) + 1;
}

/* A device's row, counted as a request's lookup when count is set. */
static int
lookup(struct devcache *c, const char *id, struct device_row *out, int count)
{
	uint64_t h = otad_hash(id);
	struct shard *s = shard_of(c, h);
	struct entry **at;
	const char *p;

	pthread_mutex_lock(&s->mu);
	at = find(s, h, id);
	if (at == NULL || *at == NULL) {
		pthread_mutex_unlock(&s->mu);
		if (count)
			atomic_fetch_add_explicit(&c->misses, 1,
			    memory_order_relaxed);
		return 0;
	}
	out->secure_version = (*at)->secure_version;
	out->quarantined_until = (*at)->quarantined_until;
	out->battery = (*at)->battery;
	out->blocked = (*at)->blocked;
	p = (*at)->strs;
	p += strlen(p) + 1; /* the id */
	p = unpack(p, out->version, sizeof(out->version));
	p = unpack(p, out->product, sizeof(out->product));
	p = unpack(p, out->chip, sizeof(out->chip));
	p = unpack(p, out->hw_rev, sizeof(out->hw_rev));
	p = unpack(p, out->token_hash, sizeof(out->token_hash));
	p = unpack(p, out->group, sizeof(out->group));
	p = unpack(p, out->running_sha256, sizeof(out->running_sha256));
	unpack(p, out->fs_version, sizeof(out->fs_version));
	pthread_mutex_unlock(&s->mu);
	if (count)
		atomic_fetch_add_explicit(&c->hits, 1, memory_order_relaxed);
	return 1;
}

int
devcache_get(struct devcache *c, const char *id, struct device_row *out)
{
	return lookup(c, id, out, 1);
}

/* The writer's own look: not a request's, so not in the counts. */
int
devcache_peek(struct devcache *c, const char *id, struct device_row *out)
{
	return lookup(c, id, out, 0);
}

void
devcache_drop(struct devcache *c, const char *id)
{
	uint64_t h = otad_hash(id);
	struct shard *s = shard_of(c, h);
	struct entry **at, *e;

	pthread_mutex_lock(&s->mu);
	at = find(s, h, id);
	if (at != NULL && (e = *at) != NULL) {
		*at = e->next;
		free(e);
		s->count--;
		atomic_fetch_sub(&c->count, 1);
	}
	pthread_mutex_unlock(&s->mu);
}

void
devcache_clear(struct devcache *c)
{
	struct shard old[SHARDS];
	int i;

	/*
	 * Every shard held: no put of the old epoch lands after this. The
	 * rows are only detached under the locks, and freed after them, so
	 * checks wait for pointer swaps, not for a million frees.
	 */
	for (i = 0; i < SHARDS; i++)
		pthread_mutex_lock(&c->shards[i].mu);
	atomic_fetch_add(&c->epoch, 1);
	for (i = 0; i < SHARDS; i++) {
		old[i].buckets = c->shards[i].buckets;
		old[i].nbuckets = c->shards[i].nbuckets;
		c->shards[i].buckets = NULL;
		c->shards[i].nbuckets = c->shards[i].count = 0;
	}
	atomic_store(&c->count, 0);
	for (i = SHARDS - 1; i >= 0; i--)
		pthread_mutex_unlock(&c->shards[i].mu);
	for (i = 0; i < SHARDS; i++)
		shard_empty(&old[i]);
}

uint64_t
devcache_epoch(struct devcache *c)
{
	return atomic_load(&c->epoch);
}

void
devcache_stats(struct devcache *c, struct devcache_stats *out)
{
	out->devices = atomic_load(&c->count);
	out->cap = c->cap;
	out->hits = atomic_load(&c->hits);
	out->misses = atomic_load(&c->misses);
}
