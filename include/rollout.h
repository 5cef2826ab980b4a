/*
 * rollout.h: the rollout controller and the snapshot of what is offered.
 *
 * One controller thread watches the database (PRAGMA data_version, then
 * the catalog generation) a few times a second and, when what can be
 * offered changed (otactl, or an operator's own SQL), builds a new
 * immutable snapshot and swaps it in. HTTP threads read snapshots without
 * taking a lock on the hot path: each thread keeps a reference and only
 * takes the swap lock when the generation moved.
 */
#ifndef ROLLOUT_H
#define ROLLOUT_H

#include <stdatomic.h>
#include <stdint.h>

#include "otad.h"
#include "policy.h"

struct rollout;

/* Immutable once published; refcounted. */
struct snapshot {
	atomic_long refs;
	long long epoch;    /* moves with every swap, forced ones too */
	int64_t generation; /* the catalog generation it was built from */
	size_t n;
	struct offer *offers; /* newest first, each with its payload */
	/* every release, when some offer has a min_from; else empty */
	struct stones stones;
	struct offer *stone_v; /* owns stones.v */
};

/*
 * Builds the payload (the prepared response) of one offer; NULL leaves the
 * offer out of the snapshot (an artifact file that cannot be opened, say),
 * which the hook logs. Runs on the controller thread.
 */
typedef void *(*rollout_payload_new)(const struct offer *offer, void *arg);
typedef void (*rollout_payload_free)(void *payload);

/*
 * What the controller does with payloads: make one for each offer of a new
 * snapshot; retire those of the snapshot it replaces (at once, on the
 * controller thread: an HTTP thread may go on holding the old snapshot
 * until its next request, which may be long on an idle thread); free them
 * when the last holder lets go. retire may be NULL.
 */
struct rollout_payload_hooks {
	rollout_payload_new make;
	rollout_payload_free retire;
	rollout_payload_free free;
	void *arg;
};

/*
 * Open a reader on db_path, load the first snapshot and start the
 * controller. Fails if the first load fails. A change of the catalog
 * generation clears the device rows daemon (the daemon's registry) keeps
 * in memory: the generation is how edits outside its writer show.
 */
enum otad_err rollout_start(const char *db_path, struct registry *daemon,
    const struct rollout_payload_hooks *hooks, struct rollout **out);
/* Stop the thread, drop the current snapshot; NULL-safe. */
void rollout_stop(struct rollout *r);

/*
 * How long unseen makes a device offline: an offered device offline at
 * its attempt's timeout has failed; the fleet gauges count offline ones.
 */
void rollout_set_offline_after(struct rollout *r, unsigned seconds);

/* How long telemetry is kept, and what a comparison needs to halt. */
void rollout_set_telemetry(struct rollout *r, unsigned interval_s,
    unsigned retention_s, unsigned min_devices);

/* How soon another node takes over from a leader gone silent. */
void rollout_set_leader_timeout(struct rollout *r, unsigned seconds);
/*
 * Whether this node leads (runs the rollout gates, sends the MQTT
 * triggers): always with SQLite; one node of several on PostgreSQL.
 */
int rollout_leads(struct rollout *r);

/*
 * Seconds from one count of the fleet's gauges to the next, given what
 * the last count took: 5, or 100 times as long when counting took over
 * 50 ms, up to 60 (counting keeps to a percent of one core).
 */
unsigned rollout_gauge_wait(int64_t took_ms);

/* Rebuild now even if nothing seems to have changed (SIGHUP). */
void rollout_reload(struct rollout *r);

/*
 * Bring *cached (a thread's own reference, NULL at first) up to date and
 * return it. The caller owns the reference in *cached and drops it with
 * snapshot_release when the thread ends.
 */
struct snapshot *rollout_snapshot(struct rollout *r, struct snapshot **cached);
void snapshot_release(struct snapshot *s);

#endif
