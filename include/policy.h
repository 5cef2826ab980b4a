/*
 * policy.h: the offer decision, as a pure function.
 *
 * No I/O, no clock reads, no locks: everything the decision depends on is
 * a parameter, so it is unit-tested on its own and safe on every HTTP
 * thread at once. Rollout rings, windows and deferrals slot in here.
 */
#ifndef POLICY_H
#define POLICY_H

#include <stdint.h>

#include "otad.h"

/*
 * One release that is being offered (an active rollout), as the rollout
 * controller loads it into an immutable snapshot. Snapshots sort offers
 * newest version first.
 */
struct offer {
	int64_t rollout_id;
	int64_t release_id;
	char version[OTAD_VERSION_MAX + 1];
	char product[OTAD_PRODUCT_MAX + 1]; /* "" = every product */
	char sha256[65];                    /* the artifact */
	char md5[33];
	uint64_t size;
	void *payload; /* the prepared response; opaque to policy */
};

/* What a device told us, or what the registry knows of it. */
struct device_facts {
	const char *id;
	const char *version; /* running version, never NULL */
	const char *product; /* NULL or "" if unknown */
};

enum decision_kind {
	DECISION_NONE,  /* up to date, or nothing matches: 304 */
	DECISION_OFFER, /* send offer */
};

struct decision {
	enum decision_kind kind;
	const struct offer *offer; /* borrowed from the snapshot */
};

/*
 * Decide for one device. A release limited to a product is offered only to
 * devices of that product, and for such a device it takes precedence over
 * unrestricted releases. The newest matching release is offered when it is
 * newer than what the device runs (semver order); a device on it, or on
 * anything newer, is left alone. now is Unix seconds.
 */
void policy_decide(const struct device_facts *dev, const struct offer *offers,
    size_t n, int64_t now, struct decision *out);

#endif
