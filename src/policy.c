/* policy.c: which release, if any, a device should be offered */
#include <stddef.h>
#include <string.h>

#include "policy.h"
#include "semver.h"

static int
known(const char *s)
{
	return s != NULL && s[0] != '\0';
}

/* Does o's rollout reach dev now? */
static int
reaches(const struct offer *o, const struct device_facts *dev)
{
	unsigned i, ring;

	if (o->ring_max >= 10000)
		return 1;
	if (dev->id == NULL)
		return 0; /* no identity, no ring place */
	if (known(dev->group))
		for (i = 0; i < o->ngroups; i++)
			if (strcmp(o->groups[i], dev->group) == 0)
				return 1;
	if (o->ring_max == 0 && o->cut_ring < 0)
		return 0;
	ring = stages_ring(o->rollout_id, dev->id);
	return ring < o->ring_max || (int)ring < o->cut_ring ||
	    ((int)ring == o->cut_ring && strcmp(dev->id, o->cut_device) <= 0);
}

/* product NULL: unrestricted releases; otherwise releases for product */
static int
matches(const struct offer *o, const struct device_facts *dev,
    const char *product)
{
	if (dev->kind == KIND_ANY_FS ? o->kind == KIND_APP :
	    (int)o->kind != dev->kind)
		return 0; /* never an app into a file system, or the reverse */
	if (dev->everyone_only && !o->everyone)
		return 0;
	if (!reaches(o, dev) || o->release_id == dev->refused_release)
		return 0;
	if (o->only_version[0] != '\0' && strcmp(dev->version,
	    o->only_version) != 0)
		return 0;
	if (product == NULL ? o->product[0] != '\0'
			    : strcmp(o->product, product) != 0)
		return 0;
	if (o->hw_rev[0] != '\0' &&
	    (!known(dev->hw_rev) || strcmp(o->hw_rev, dev->hw_rev) != 0))
		return 0;
	if (o->chip[0] != '\0' && known(dev->chip) &&
	    strcmp(o->chip, dev->chip) != 0)
		return 0;
	return 1;
}

/* Why the newest match cannot be picked for certain: bits of *ambiguous. */
enum {
	AMBIGUOUS_CHIP = 1, /* chip unknown, candidates for several chips */
	AMBIGUOUS_KIND = 2, /* any file system asked, several kinds released */
};

/*
 * Newest offer for product (NULL: unrestricted), and in *ambiguous
 * (AMBIGUOUS_*) what makes it uncertain.
 */
static const struct offer *
newest_for(const struct device_facts *dev, const char *product,
    const struct offer *offers, size_t n, int *ambiguous)
{
	const struct offer *first = NULL;
	size_t i;

	/* offers are sorted newest first, so the first match is the one */
	for (i = 0; i < n; i++) {
		if (!matches(&offers[i], dev, product))
			continue;
		if (first == NULL)
			first = &offers[i];
		else if (strcmp(first->chip, offers[i].chip) != 0)
			*ambiguous |= AMBIGUOUS_CHIP;
		if (first->kind != offers[i].kind)
			*ambiguous |= AMBIGUOUS_KIND;
		/* every match is for its chip; of one kind unless any fs */
		if (known(dev->chip) && dev->kind != KIND_ANY_FS)
			break;
	}
	return first;
}

/* A device on version v may take o (o's min_from does not exclude it). */
static int
takes(const char *v, const struct offer *o)
{
	return o->min_from[0] == '\0' || semver_compare(v, o->min_from) >= 0;
}

#define PATH_DEPTH 8 /* steps looked ahead; release chains are short */

/* From version v, can a chain of stones reach target? */
static int
leads_on(const char *v, const struct offer *target, const struct stones *st,
    int depth)
{
	size_t i;

	if (takes(v, target))
		return 1;
	if (depth >= PATH_DEPTH)
		return 0;
	for (i = 0; i < st->n; i++) {
		const struct offer *y = &st->v[i];

		if (strcmp(y->product, target->product) == 0 &&
		    strcmp(y->chip, target->chip) == 0 &&
		    semver_compare(y->version, v) > 0 &&
		    semver_compare(y->version, target->version) < 0 &&
		    takes(v, y) && leads_on(y->version, target, st, depth + 1))
			return 1;
	}
	return 0;
}

/* The newest release dev can take now that leads on to target. */
static const struct offer *
stepping_stone(const struct device_facts *dev, const struct offer *target,
    const struct stones *st)
{
	size_t i;

	for (i = 0; st != NULL && i < st->n; i++) {
		const struct offer *x = &st->v[i];

		if (strcmp(x->product, target->product) == 0 &&
		    strcmp(x->chip, target->chip) == 0 &&
		    matches(x, dev, x->product[0] ? x->product : NULL) &&
		    semver_compare(x->version, dev->version) > 0 &&
		    semver_compare(x->version, target->version) < 0 &&
		    takes(dev->version, x) &&
		    leads_on(x->version, target, st, 0))
			return x;
	}
	return NULL;
}

void
policy_decide(const struct device_facts *dev, const struct offer *offers,
    size_t n, const struct stones *stones, int64_t now, struct decision *out)
{
	const struct offer *o = NULL, *target;
	int ambiguous = 0;

	out->kind = DECISION_NONE;
	out->reason = REASON_NONE;
	out->offer = NULL;
	out->target = NULL;
	if (known(dev->product))
		o = newest_for(dev, dev->product, offers, n, &ambiguous);
	if (o == NULL)
		o = newest_for(dev, NULL, offers, n, &ambiguous);
	if (o == NULL) {
		/* asked for a file system, and none of that kind is out */
		if (dev->kind != KIND_APP)
			out->reason = REASON_MODE;
		return;
	}
	/* up to date; a downgrade is wanted by all but those already on it */
	if (dev->version[0] != '\0' && (o->downgrade ?
	    semver_compare(dev->version, o->version) == 0 :
	    semver_compare(dev->version, o->version) >= 0))
		return;
	if (dev->quarantined_until > now) {
		out->reason = REASON_QUARANTINE;
		return;
	}
	if (ambiguous) {
		/*
		 * An image for the wrong chip would be refused, or worse; a
		 * file system of the wrong kind would be unreadable.
		 */
		out->reason = (ambiguous & AMBIGUOUS_KIND) ? REASON_MODE :
		    REASON_CHIP;
		return;
	}
	target = o;
	/* deferrals: not failures, and a forced release skips them */
	if (!target->forced && !stages_window_open(&target->window, now)) {
		out->reason = REASON_WINDOW;
		return;
	}
	if (!target->forced && target->min_battery >= 0 && dev->battery >= 0 &&
	    dev->battery < target->min_battery) {
		out->reason = REASON_BATTERY;
		return;
	}
	if (!takes(dev->version, o) &&
	    (o = stepping_stone(dev, target, stones)) == NULL) {
		out->reason = REASON_UPGRADE_PATH;
		return;
	}
	if (o->kind == KIND_APP && dev->secure_version >= 0 &&
	    (int64_t)o->secure_version < dev->secure_version) {
		/* the bootloader would refuse it: not an attempt at all */
		out->reason = REASON_SECURE_VERSION;
		return;
	}
	/*
	 * x-ESP32-free-space is the app slot, not the file system partition
	 * (in Arduino's default table the spiffs partition is the larger):
	 * a filesystem image must only fit the flash.
	 */
	if ((o->kind == KIND_APP && dev->free_space >= 0 &&
	    o->size > (uint64_t)dev->free_space) || (o->kind != KIND_APP &&
	    dev->flash_size > 0 && o->size > (uint64_t)dev->flash_size)) {
		/* the device would fail writing it: say so instead */
		out->reason = REASON_SPACE;
		return;
	}
	out->kind = DECISION_OFFER;
	out->offer = o;
	out->target = target;
}

const char *
policy_reason_name(enum decision_reason reason)
{
	switch (reason) {
	case REASON_CHIP:
		return "chip";
	case REASON_SECURE_VERSION:
		return "secure-version";
	case REASON_UPGRADE_PATH:
		return "upgrade-path";
	case REASON_SPACE:
		return "space";
	case REASON_WINDOW:
		return "window";
	case REASON_BATTERY:
		return "battery";
	case REASON_MODE:
		return "mode";
	case REASON_QUARANTINE:
		return "quarantine";
	default:
		return NULL;
	}
}
