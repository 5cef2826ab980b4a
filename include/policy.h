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

#include "fsimg.h"
#include "otad.h"
#include "stages.h"

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
	char chip[16];                      /* the artifact's, "esp32";
					       "" = any (a filesystem image) */
	enum artifact_kind kind;            /* an app or a filesystem image */
	char hw_rev[OTAD_PRODUCT_MAX + 1];  /* "" = every hardware revision */
	uint32_t secure_version;            /* the artifact's */
	char sha256[65];                    /* the artifact */
	char md5[33];
	uint64_t size;
	char min_from[OTAD_VERSION_MAX + 1]; /* "" = from any version */
	/* who the rollout reaches now: its stages up to the current one */
	unsigned ring_max;                  /* 0..10000; 10000 = everyone */
	/* and its count stages: up to this device in (ring, id) order */
	int cut_ring;                       /* -1: no count stage reached */
	char cut_device[OTAD_ID_MAX + 1];
	int everyone;                       /* a publish or a completed
					       rollout: no ring, no group */
	char groups[4][OTAD_PRODUCT_MAX + 1]; /* explicit groups reached */
	unsigned ngroups;
	int stage;                          /* current stage, for attempts */
	struct window window;               /* start < 0: any time */
	int min_battery;                    /* -1: no floor */
	int forced;                         /* skips windows and battery */
	int downgrade;                      /* offered to newer devices too */
	/* a revert: only for devices on the halted release's version */
	char only_version[OTAD_VERSION_MAX + 1]; /* "" = any version */
	char key_id[OTAD_ID_MAX + 1];       /* signing key; "" = unsigned */
	uint8_t sig[512];                   /* its signature over the file */
	size_t siglen;
	void *payload; /* the prepared response; opaque to policy */
};

/* What a device told us, or what the registry knows of it. */
struct device_facts {
	const char *id;         /* NULL: a request without an identity */
	const char *version;    /* running version, never NULL; "" when
				   unknown (older than every release) */
	const char *product;    /* NULL or "" if unknown */
	const char *chip;       /* NULL or "" if unknown */
	const char *hw_rev;     /* NULL or "" if unknown */
	int64_t secure_version; /* eFuse anti-rollback value; -1 if unknown */
	int64_t free_space;     /* bytes the OTA slot holds; -1 if unknown */
	const char *group;      /* NULL or "" if in none */
	int battery;            /* percent; -1 if unknown */
	int64_t refused_release; /* rolled back from it: not again; 0 none */
	/* zero for an app request from a device known by its identity: */
	int kind;               /* what it asks for: an artifact_kind, or
				   KIND_ANY_FS; KIND_APP (0) by default */
	int everyone_only;      /* only offers with everyone set */
	int64_t flash_size;     /* bytes of flash; 0 if unknown */
	int64_t quarantined_until; /* offered nothing before; 0 if not */
};

enum decision_kind {
	DECISION_NONE,  /* up to date, or nothing matches: 304 */
	DECISION_OFFER, /* send offer */
};

/* Why nothing is offered although a release is newer (never a failure). */
enum decision_reason {
	REASON_NONE,
	REASON_CHIP,           /* chip unknown, releases for several chips */
	REASON_SECURE_VERSION, /* the image would be refused by the eFuse */
	REASON_UPGRADE_PATH,   /* too old for the release, no stepping stone */
	REASON_SPACE,          /* the image is larger than the OTA slot */
	REASON_WINDOW,         /* outside the rollout's update window */
	REASON_BATTERY,        /* battery under the rollout's floor */
	REASON_MODE,           /* no image of the kind the request asks for */
	REASON_QUARANTINE,     /* failed too often lately: nothing for now */
	REASON_COUNT
};

struct decision {
	enum decision_kind kind;
	enum decision_reason reason;
	const struct offer *offer;  /* what to send; borrowed from the snapshot */
	const struct offer *target; /* the release it leads to (== offer, or
				       the release a stepping stone leads on
				       to); its rollout owns the attempt */
};

/*
 * The releases a device may step through (every release of the catalog,
 * newest first), for targets with a min_from; may be empty.
 */
struct stones {
	const struct offer *v;
	size_t n;
};

/*
 * "chip", "secure-version", "upgrade-path", "space", "window", "battery",
 * "mode", "quarantine"; NULL for REASON_NONE.
 */
const char *policy_reason_name(enum decision_reason reason);

/*
 * Decide for one device. Only releases whose rollout reaches the device
 * now count: its group is one of the stages reached, its ring place is
 * within the widest percentage reached, or it is among the devices the
 * widest count stage reached (up to its cut in ring, then id, order). A release is for its artifact's
 * chip and never
 * offered to a device known to be of another; while the chip is unknown a
 * release is offered only if every candidate is for one chip. A release
 * limited to a hardware revision goes only to devices of that revision. A
 * release limited to a product is offered only to devices of that product,
 * and for such a device it takes precedence over unrestricted releases.
 * The newest matching release is offered when it is newer than what the
 * device runs (semver order) and its secure_version is not below the
 * device's. A device older than the release's min_from gets instead the
 * newest release it can take that leads on to it (directly or in further
 * steps), never the target itself. Outside the rollout's update window,
 * or with the battery under its floor, the device is deferred, unless the
 * release is forced (which never skips the chip or anti-rollback rules).
 * A downgrade rollout is offered to devices on any other version; a
 * revert (only_version) only to devices running that version, and before
 * any other offer of its release. Only
 * releases of the kind the device asks for count (an app, or one kind of
 * filesystem image; with none, REASON_MODE); a filesystem image is for
 * any chip and carries no anti-rollback level. A device whose version is
 * unknown ("") is older than every release. A device quarantined until
 * after now is offered nothing, forced releases included. now is Unix
 * seconds.
 */
void policy_decide(const struct device_facts *dev, const struct offer *offers,
    size_t n, const struct stones *stones, int64_t now, struct decision *out);

#endif
