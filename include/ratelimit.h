/*
 * ratelimit.h: request caps per device and per address, and the cap on
 * connections one address holds at once.
 *
 * Fixed one-minute windows counted in a fixed-size table (no allocation
 * per client, memory bounded whatever a flood sends). Keys that collide in
 * the table share a counter, which can only make a cap stricter for them,
 * never looser: size the table well above the number of clients.
 * Thread-safe: the table is split into stripes, each with its own lock,
 * so HTTP threads rarely wait on each other.
 */
#ifndef RATELIMIT_H
#define RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

struct ratelimit;

/* slots: table size (rounded up to a power of two). NULL on error. */
struct ratelimit *ratelimit_new(size_t slots);
void ratelimit_free(struct ratelimit *rl);

/*
 * Count one request for key (len bytes) at now (Unix seconds) against
 * limit per minute (0 = no cap). 1 if allowed; 0 if over the cap, with
 * *retry_after the seconds until the window ends.
 */
int ratelimit_hit(struct ratelimit *rl, const void *key, size_t len,
    unsigned limit, int64_t now, unsigned *retry_after);

/*
 * 1 if key has used its limit in the current window (limit 0: never),
 * with *retry_after as above; counts nothing.
 */
int ratelimit_spent(struct ratelimit *rl, const void *key, size_t len,
    unsigned limit, int64_t now, unsigned *retry_after);

/*
 * Connections held at once, per key (an address), in the same kind of
 * fixed table: keys that collide share a count. Thread-safe.
 */
struct conncap;

struct conncap *conncap_new(size_t slots);
void conncap_free(struct conncap *c);

/*
 * One more connection for key: 1 if it holds fewer than limit (0 = no
 * cap) and it is counted; 0 if not (nothing counted).
 */
int conncap_take(struct conncap *c, const void *key, size_t len,
    unsigned limit);
/* A connection that conncap_take counted has closed. */
void conncap_give(struct conncap *c, const void *key, size_t len);

#endif
