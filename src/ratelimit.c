/* ratelimit.c: fixed-window request counters in a striped table */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"

#define WINDOW 60  /* seconds */
#define STRIPES 64 /* locks */

/*
 * No key is kept: clients whose keys land in one slot share its count,
 * which makes their cap stricter and never looser.
 */
struct slot {
	int64_t window; /* start of the window counted */
	uint32_t count;
};

struct ratelimit {
	size_t mask;
	struct slot *slots;
	pthread_mutex_t locks[STRIPES];
};

/* FNV-1a, 64 bit: fast, and good enough to spread client keys */
static uint64_t
hash(const void *key, size_t len)
{
	const unsigned char *p = key;
	uint64_t h = 0xcbf29ce484222325ull;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

struct ratelimit *
ratelimit_new(size_t slots)
{
	struct ratelimit *rl;
	size_t n = STRIPES;
	int i;

	while (n < slots)
		n <<= 1;
	if ((rl = calloc(1, sizeof(*rl))) == NULL ||
	    (rl->slots = calloc(n, sizeof(*rl->slots))) == NULL) {
		free(rl);
		return NULL;
	}
	rl->mask = n - 1;
	for (i = 0; i < STRIPES; i++)
		pthread_mutex_init(&rl->locks[i], NULL);
	return rl;
}

void
ratelimit_free(struct ratelimit *rl)
{
	int i;

	if (rl == NULL)
		return;
	for (i = 0; i < STRIPES; i++)
		pthread_mutex_destroy(&rl->locks[i]);
	free(rl->slots);
	free(rl);
}

/* Count one (charge) or only look; 1 while under the cap. */
static int
window_check(struct ratelimit *rl, const void *key, size_t len,
    unsigned limit, int64_t now, unsigned *retry_after, int charge)
{
	uint64_t h = hash(key, len);
	size_t i = (size_t)h & rl->mask;
	pthread_mutex_t *lock = &rl->locks[i % STRIPES];
	struct slot *s = &rl->slots[i];
	int64_t window = now - now % WINDOW;
	int ok;

	if (limit == 0)
		return 1;
	pthread_mutex_lock(lock);
	if (s->window != window) {
		s->window = window;
		s->count = 0;
	}
	ok = s->count < limit;
	if (ok && charge)
		s->count++;
	pthread_mutex_unlock(lock);
	if (!ok)
		*retry_after = (unsigned)(window + WINDOW - now);
	return ok;
}

int
ratelimit_hit(struct ratelimit *rl, const void *key, size_t len,
    unsigned limit, int64_t now, unsigned *retry_after)
{
	return window_check(rl, key, len, limit, now, retry_after, 1);
}

int
ratelimit_spent(struct ratelimit *rl, const void *key, size_t len,
    unsigned limit, int64_t now, unsigned *retry_after)
{
	return !window_check(rl, key, len, limit, now, retry_after, 0);
}

/* ---- connections held at once ---- */

struct conncap {
	size_t mask;
	uint32_t *counts;
	pthread_mutex_t locks[STRIPES];
};

struct conncap *
conncap_new(size_t slots)
{
	struct conncap *c;
	size_t n = STRIPES;
	int i;

	while (n < slots)
		n <<= 1;
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->counts = calloc(n, sizeof(*c->counts))) == NULL) {
		free(c);
		return NULL;
	}
	c->mask = n - 1;
	for (i = 0; i < STRIPES; i++)
		pthread_mutex_init(&c->locks[i], NULL);
	return c;
}

void
conncap_free(struct conncap *c)
{
	int i;

	if (c == NULL)
		return;
	for (i = 0; i < STRIPES; i++)
		pthread_mutex_destroy(&c->locks[i]);
	free(c->counts);
	free(c);
}

int
conncap_take(struct conncap *c, const void *key, size_t len, unsigned limit)
{
	size_t i = (size_t)hash(key, len) & c->mask;
	pthread_mutex_t *lock = &c->locks[i % STRIPES];
	int ok;

	pthread_mutex_lock(lock);
	ok = limit == 0 || c->counts[i] < limit;
	if (ok)
		c->counts[i]++;
	pthread_mutex_unlock(lock);
	return ok;
}

void
conncap_give(struct conncap *c, const void *key, size_t len)
{
	size_t i = (size_t)hash(key, len) & c->mask;
	pthread_mutex_t *lock = &c->locks[i % STRIPES];

	pthread_mutex_lock(lock);
	if (c->counts[i] > 0)
		c->counts[i]--;
	pthread_mutex_unlock(lock);
}
