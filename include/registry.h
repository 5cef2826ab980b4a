/*
 * registry.h: the SQLite registry of devices, artifacts, releases,
 * rollouts and update attempts.
 *
 * Connections:
 *  - struct registry owns one read-write connection. In otad that
 *    connection belongs to the writer thread once registry_writer_start
 *    ran: every device record goes through registry_submit, is applied by
 *    that one thread and committed in groups (one transaction, and one
 *    fsync when a record asks for it, for many records). In otactl the
 *    same connection serves the catalog functions below, directly.
 *  - struct registry_reader is one read-only connection with its prepared
 *    statements, for one thread at a time (otad keeps one per HTTP thread
 *    and one for the rollout controller).
 * The database runs in WAL mode, so readers never wait for the writer; a
 * database held busy by an operator delays writes and never drops them.
 * Migrations (schema/NNN-*.sql, compiled in) are applied at open.
 */
#ifndef REGISTRY_H
#define REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "otad.h"
#include "policy.h"
#include "stages.h"
#include "store.h"

struct registry;
struct registry_reader;

enum record_kind {
	RECORD_CHECKIN,  /* a device asked for an update */
	RECORD_REPORT,   /* a device reported an outcome */
	RECORD_DOWNLOAD, /* a device fetched (part of) an artifact */
	RECORD_DELIVERED, /* the whole image went out to a device */
	RECORD_TELEMETRY, /* a device's telemetry came in over MQTT */
	RECORD_TRIGGER,   /* the broker took a trigger (QoS 1 PUBACK) */
	RECORD_CLEARED,   /* a retained trigger was removed */
};

enum report_result {
	REPORT_DOWNLOADING,
	REPORT_INSTALLED,
	REPORT_SUCCESS,
	REPORT_ROLLBACK,
	REPORT_FAILED,
};

/* Telemetry fields present in a record, as bits of telemetry.present. */
enum {
	TEL_UPTIME = 1 << 0,
	TEL_FREE_HEAP = 1 << 1,
	TEL_RSSI = 1 << 2,
	TEL_RESET_REASON = 1 << 3,
	TEL_BATTERY = 1 << 4,
	TEL_SECURE_VERSION = 1 << 5,
	TEL_METRICS = 1 << 6,
};

/* what a sample's health is told by, of the fields above */
#define TEL_SAMPLED (TEL_UPTIME | TEL_FREE_HEAP | TEL_RSSI | \
	TEL_RESET_REASON | TEL_METRICS)

#define TEL_METRICS_MAX 8 /* numbers a device may send under "metrics" */
#define TEL_METRICS_LEN 512 /* "metrics" as compact JSON, its NUL included */

/* The numbers of a device's telemetry; "metrics" travel apart (below). */
struct telemetry {
	unsigned present;
	int64_t uptime, free_heap, rssi, reset_reason, battery, secure_version;
};

/*
 * What only reports, telemetry and triggers carry: free text. It is kept
 * out of check-ins, which are most records: at 1.6 kB a record, the
 * check-ins queued under load were memory that every thread's caches
 * passed through (their calloc, the writer's passes over a batch), and
 * halving that recorded 10-15% more checks a second (see README).
 */
struct record_text {
	char reason[OTAD_REASON_MAX + 1]; /* "" = none */
	/* "metrics" as compact JSON, keys sorted; "" if none */
	char metrics[TEL_METRICS_LEN];
	char group[OTAD_PRODUCT_MAX + 1]; /* triggers: the group's, or "" */
};

/*
 * One thing a device did, queued for the writer. Allocate with
 * registry_record_new; registry_submit takes ownership on success.
 */
struct record {
	struct record *next; /* queue link, owned by the registry */
	uint64_t seq;        /* the order it was queued in, by the registry */
	enum record_kind kind;
	/*
	 * durable: commit with fsync before done runs (in the first cache
	 * line, with next and seq, which the writer's passes over a batch
	 * read anyway)
	 */
	int durable;
	int64_t at; /* Unix seconds */
	char device[OTAD_ID_MAX + 1];
	char version[OTAD_VERSION_MAX + 1]; /* running; "" in a report = none */
	char product[OTAD_PRODUCT_MAX + 1]; /* "" = not sent */
	char address[OTAD_ADDR_MAX];
	char hw_rev[OTAD_PRODUCT_MAX + 1];  /* "" = not sent */
	char running_sha256[65];            /* "" = not sent */
	char chip[16];      /* learned from the running image; "" = unknown */
	int64_t secure_version; /* sent by the device; -1 = not sent */
	char artifact[65];      /* downloads: which one */
	int64_t free_space;     /* check-ins: OTA slot size; -1 = not sent */
	const char *deferred;   /* check-ins: why not offered; NULL = none */
	/* check-ins: the release offered in this answer (0 = none) */
	int64_t offer_release;
	int64_t offer_rollout;
	int offer_stage;
	char offer_version[OTAD_VERSION_MAX + 1];
	/*
	 * check-ins: a request for a filesystem image (its version is the
	 * image's, not the app's, which stays as it was)
	 */
	int fs_mode;
	/*
	 * deliveries: the device cannot report (esp_delta_ota's example),
	 * so the image sent whole is what it runs from now on
	 */
	int assume_installed;
	/*
	 * check-ins: from a library that never reports (esp32FOTA, ESPHome,
	 * ...): it says nothing of its version, its attempts are silent and
	 * their outcomes inferred after settle seconds (infer_after); a
	 * refetch_release > 0 was fetched again after it was delivered
	 */
	int silent;
	int64_t settle;
	int64_t refetch_release;
	/* reports */
	enum report_result result;
	struct telemetry tel;
	/*
	 * reports, telemetry, triggers and cleared triggers: their text, in
	 * the same allocation; NULL for the other kinds
	 */
	struct record_text *text;
	/*
	 * triggers: trigger_id > 0 names an owed row (a nudge) that went
	 * out, else a new row is written for device or text->group, with
	 * offer_release (0 = nothing offered), offer_rollout, offer_stage
	 * and text->reason "rollout", "forced" or "nudge". Cleared:
	 * trigger_id.
	 */
	int64_t trigger_id;
	int retained;
	/*
	 * may_wait: a full queue makes registry_submit wait for room (for
	 * threads that serve no request: MQTT). Otherwise it answers
	 * OTAD_ERR_BUSY at once, so a request is never held by the queue.
	 */
	int may_wait;
	/*
	 * done, if set, runs on the writer thread once the record is
	 * committed (err OTAD_OK) or has failed; it must not block.
	 */
	void (*done)(void *arg, enum otad_err err);
	void *done_arg;
	enum otad_err err; /* set by the writer */
};

/* What the HTTP path needs of a device row. */
struct device_row {
	char version[OTAD_VERSION_MAX + 1];
	char product[OTAD_PRODUCT_MAX + 1];
	char chip[16];                     /* "" = unknown */
	char hw_rev[OTAD_PRODUCT_MAX + 1]; /* "" = unknown */
	int64_t secure_version;            /* -1 = unknown */
	char token_hash[65];               /* "" = no token issued */
	char group[OTAD_PRODUCT_MAX + 1];  /* "" = none */
	int battery;                       /* last reported; -1 = unknown */
	int blocked;
	char running_sha256[65];           /* its image's digest; "" unknown */
	char fs_version[OTAD_VERSION_MAX + 1]; /* last filesystem image sent
						  whole; "" = none */
	int64_t quarantined_until;         /* offered nothing before; 0 none */
};

/*
 * What a device's attempts say against offering it a release: the one
 * whose image reached it (and the version it left: seen on that version
 * again, it rolled back), and the last it rolled back from. Looked up only
 * when an offer is about to be made, so that a 304 costs no attempt
 * lookup.
 */
struct device_refusal {
	int64_t pending_release;           /* 0 = none */
	char pending_from[OTAD_VERSION_MAX + 1];
	int pending_installed;             /* it reported 'installed' */
	int64_t pending_delivered_at;      /* -1 = not delivered */
	int64_t rolled_back_release;       /* 0 = none */
};

/* What the store knows of an image a device says it runs. */
struct running_image {
	char chip[16];
	char version[OTAD_VERSION_MAX + 1];
	uint32_t secure_version;
	char sha256[65]; /* the artifact: a base for delta patches */
};

/* Open (creating and migrating as needed). Caller owns *out. */
enum otad_err registry_open(const char *path, struct registry **out);

/*
 * Start the writer thread; from here on only registry_submit and
 * registry_close may be called on reg. queue_max caps each producing
 * thread's queue: a record that finds its queue full is refused
 * (OTAD_ERR_BUSY) unless it may wait (see struct record).
 * cache_devices: how many devices' rows to keep in memory for checks
 * (0: none); used on SQLite only.
 */
enum otad_err registry_writer_start(struct registry *reg, unsigned queue_max,
    size_t cache_devices);

/* The device rows kept in memory, for /metrics. */
struct devcache_stats {
	size_t devices, cap;
	uint64_t hits, misses;
};
/* 0 and the figures, or -1 when no rows are kept */
int registry_device_cache_stats(struct registry *reg,
    struct devcache_stats *out);

/*
 * Let the reader answer registry_device_get from reg's device rows in
 * memory, and (for the reader that watches the catalog generation)
 * clear them when an operator edited a device: an edit outside the
 * writer, which moves catalog.devices with the generation.
 */
void registry_reader_share_cache(struct registry_reader *r,
    struct registry *reg);

/*
 * A zeroed record, with its text (rec->text) when kind carries one; NULL
 * when out of memory. One allocation: free() lets it go.
 */
struct record *registry_record_new(enum record_kind kind);

/*
 * Queue rec for the writer (thread-safe). On OTAD_OK the registry owns rec
 * and frees it after done ran; on error (OTAD_ERR_SHUTDOWN, or
 * OTAD_ERR_BUSY when its queue is full) the caller still owns it.
 */
enum otad_err registry_submit(struct registry *reg, struct record *rec);

/* Records waiting for the writer now (for /metrics). */
size_t registry_queue_depth(struct registry *reg);

/*
 * Seconds the writer has been waiting for the database (held by someone
 * else) with records to write; 0 when it is not. Thread-safe.
 */
int64_t registry_stalled(struct registry *reg);

/* Stop the writer after it applied everything queued; close; free. */
void registry_close(struct registry *reg);

/* Readers. */
enum otad_err registry_reader_open(const char *path,
    struct registry_reader **out);
void registry_reader_free(struct registry_reader *r);

/* OTAD_ERR_NOT_FOUND when the device never checked in. */
enum otad_err registry_device_get(struct registry_reader *r, const char *id,
    struct device_row *out);

/*
 * A released artifact as an offer (rollout_id 0), with its newest trusted
 * signature; NOT_FOUND when no release uses it.
 */
enum otad_err registry_released_artifact(struct registry_reader *r,
    const char *sha256, struct offer *out);

enum otad_err registry_device_refusal(struct registry_reader *r,
    const char *id, struct device_refusal *out);

/* The device holding the token with this hash; NOT_FOUND if none. */
enum otad_err registry_token_owner(struct registry_reader *r,
    const char *token_hash, char *id, size_t idlen);

/*
 * The artifact of the device's download under way (its newest offered or
 * downloading attempt) into sha256 (65 bytes); NOT_FOUND if none.
 */
enum otad_err registry_open_artifact(struct registry_reader *r,
    const char *device, char *sha256);

/* The artifact whose appended SHA-256 is app_sha256; NOT_FOUND if none. */
enum otad_err registry_running_image(struct registry_reader *r,
    const char *app_sha256, struct running_image *out);

/*
 * The catalog generation: it moves whenever what can be offered changed,
 * by otactl or by hand. Cheap when nothing was committed since last call.
 */
enum otad_err registry_catalog_generation(struct registry_reader *r,
    int64_t *generation);

/*
 * Every release being offered now, newest version first; caller frees
 * *offers. payload fields are NULL.
 */
enum otad_err registry_load_offers(struct registry_reader *r,
    struct offer **offers, size_t *n);
/* Every release, as offers with rollout_id 0 (stepping stones). */
enum otad_err registry_load_stones(struct registry_reader *r,
    struct offer **stones, size_t *n);

/*
 * Catalog functions (otactl). Each is one transaction; on error nothing is
 * written and why holds one line. Rows come back as jansson objects keyed
 * by column name; the caller owns them.
 */

/*
 * The daemon's side of the handshake: it (this process) serves generation
 * now. Cheap; a busy database makes it a no-op until the next call.
 */
int registry_daemon_mark(struct registry *reg, int64_t generation,
    int64_t now);

/*
 * otactl's side: after a change, wait up to timeout_ms for a live daemon
 * to serve it. OTAD_OK once served, OTAD_ERR_NOT_FOUND when no daemon is
 * running (nothing to wait for), OTAD_ERR_BUSY on timeout.
 */
enum otad_err registry_wait_served(struct registry *reg, int timeout_ms);

/*
 * How long a statement waits for a busy database (ms): an operator's tool
 * waits out a daemon's commit; the daemon's own threads wait briefly and
 * try again later.
 */
void registry_set_patience(struct registry *reg, int ms);

/*
 * Whether this otad leads: runs the rollout controller and publishes the
 * MQTT triggers, what must run once however many nodes share the
 * registry. Always on SQLite (one host). On PostgreSQL the node whose
 * connection holds the leadership lock; a node takes it when nobody
 * holds it, so when the leader dies (its session ends; within
 * timeout_s when its host or network does) another takes over.
 */
int registry_lead(struct registry *reg, unsigned timeout_s);
/* A node stopping: otactl no longer waits for it (PostgreSQL). */
void registry_daemon_forget(struct registry *reg);
/* Whether other nodes may share the registry (it is PostgreSQL). */
int registry_clustered(struct registry *reg);
/*
 * A store's source (store_fetch_fn) when the registry is PostgreSQL:
 * the artifact's bytes as any node stored them. db_target is the
 * database's connection string.
 */
int registry_fetch_artifact(void *db_target, const char *sha256, int fd,
    enum artifact_kind *kind);

/*
 * Delta patches shared through PostgreSQL (registry/patches.c), what a
 * clustered patcher's struct patch_share calls: one object per builder
 * thread, with its own connection. db_target is the connection string.
 */
struct registry_patches;
enum otad_err registry_patches_open(const char *db_target,
    struct registry_patches **out);
void registry_patches_free(struct registry_patches *rp);
/*
 * The container built for base -> target, to fd: 0. -1 with errno
 * ENOENT when none is built yet (the want is recorded for the leader),
 * EBADMSG when its build failed, EIO when the database cannot say.
 */
int registry_patch_fetch(void *rp, const char *base, const char *target,
    int fd);
/* Keep a built container (c NULL: the build failed): 0, or -1. */
int registry_patch_put(void *rp, const char *base, const char *target,
    const void *c, size_t n, const char *sha256);
/* each() for every pair a node asked for and nobody built yet: 0, -1. */
int registry_patch_wanted(void *rp, void (*each)(void *each_arg,
    const char *base, const char *target), void *each_arg);
/* No node offers target any longer: its patches go. */
void registry_patch_drop(void *rp, const char *target);

/*
 * Who is acting: for audit rows (actor, "otactl:alice", "op:bob (admin)
 * from 10.0.0.7") and, for the two-person rule, the person (who,
 * "otactl:alice", "op:bob"): a rollout's creator and its approver.
 */
void registry_set_actor(struct registry *reg, const char *actor);
void registry_set_who(struct registry *reg, const char *who);

/*
 * The two-person rule (rollout_approvals): with 2, a rollout or a publish
 * starts only when someone other than its creator approves it
 * (ROLLOUT_APPROVE), unless break_glass (a reason, audited) is set.
 */
void registry_set_approvals(struct registry *reg, unsigned approvals,
    const char *break_glass);

/*
 * Record an artifact and, when key is not NULL, its signature (already
 * verified) in the same transaction.
 */
enum otad_err registry_artifact_add(struct registry *reg,
    const struct store_artifact *art, const char *version,
    const char *product, const char *key, const uint8_t *sig, size_t siglen,
    char *why, size_t whylen);
/* Add a (verified) signature to an artifact. */
enum otad_err registry_signature_add(struct registry *reg, const char *sha256,
    const char *key, const uint8_t *sig, size_t siglen, char *why,
    size_t whylen);
/* Signatures of an artifact by keys that are not revoked. */
enum otad_err registry_artifact_signatures(struct registry *reg,
    const char *sha256, json_t **rows);

/* Key slots. purpose is "artifact" or "secure-boot". */
enum otad_err registry_key_add(struct registry *reg, const char *name,
    const char *algo, const char *purpose, const char *public_pem,
    const char *fingerprint, int server_held, char *why, size_t whylen);
enum otad_err registry_key_get(struct registry *reg, const char *name,
    json_t **row, char *why, size_t whylen);
enum otad_err registry_key_list(struct registry *reg, json_t **rows);
/* Active keys of a purpose, with their public_key PEM. */
enum otad_err registry_keys_active(struct registry *reg, const char *purpose,
    json_t **rows);
enum otad_err registry_key_revoke(struct registry *reg, const char *name,
    char *why, size_t whylen);

/* By full SHA-256 or a unique prefix of at least 6 hex characters. */
enum otad_err registry_artifact_get(struct registry *reg, const char *sha,
    json_t **row, char *why, size_t whylen);
enum otad_err registry_artifact_list(struct registry *reg, json_t **rows);

/*
 * The release is for its artifact's chip; hw_rev and min_from may be NULL
 * (min_from: devices older than it go through a stepping stone).
 */
enum otad_err registry_release_create(struct registry *reg,
    const char *version, const char *sha256, const char *product,
    const char *hw_rev, const char *min_from, int forced, int64_t *id,
    char *why, size_t whylen);
/*
 * The highest secure_version among the images already released for this
 * product scope and chip (-1 if none): what a new release would raise.
 */
enum otad_err registry_released_secure_version(struct registry *reg,
    const char *product, const char *chip, int64_t *out);
enum otad_err registry_release_list(struct registry *reg, json_t **rows);
/*
 * Offer a release to every matching device now: an active rollout with no
 * rings. product and chip may be NULL when only one release has that
 * version. It completes the publish it replaces (same product, chip and
 * hardware revision).
 */
enum otad_err registry_release_publish(struct registry *reg,
    const char *version, const char *product, const char *chip,
    int64_t *rollout_id, int *awaiting_approval, char *why, size_t whylen);

/* A staged rollout, as otactl rollout create is told it. */
struct rollout_plan {
	const char *version, *product, *chip; /* product, chip may be NULL */
	const struct stage *stages;
	size_t nstages;
	const char *window, *days, *utc_offset; /* NULL: none */
	const char *promote;                    /* stages open only in it */
	int on_halt_revert;                     /* a halt reverts its devices */
	int min_battery;                        /* -1: no floor */
	int64_t timeout_s;
	int downgrade;
};

/* A draft rollout of the release; refuses an older release without
 * downgrade while a newer one is being offered. */
enum otad_err registry_rollout_create(struct registry *reg,
    const struct rollout_plan *plan, int64_t *id, char *why, size_t whylen);

enum rollout_action {
	ROLLOUT_START,  /* draft -> active, stage 0 */
	ROLLOUT_PAUSE,  /* active -> paused */
	ROLLOUT_RESUME, /* paused -> active; halted -> active with force */
	ROLLOUT_ABORT,  /* anything not finished -> aborted */
	ROLLOUT_APPROVE, /* a draft approved by another, and started */
};

/* force, for a resume: bits */
#define RESUME_FORCE 1          /* past a halt */
#define RESUME_KEEP_REVERTED 2  /* a revert's devices stay where it took them */
#define RESUME_OFFER_REVERTED 4 /* they are offered the release again */

enum otad_err registry_rollout_action(struct registry *reg, int64_t id,
    enum rollout_action action, int force, char *why, size_t whylen);

/* Operators of the management API. */
enum otad_err registry_operator_add(struct registry *reg, const char *name,
    const char *role, const char *token_hash, char *why, size_t whylen);
enum otad_err registry_operator_list(struct registry *reg, json_t **rows);
enum otad_err registry_operator_revoke(struct registry *reg,
    const char *name, char *why, size_t whylen);
/*
 * The active operator whose token hashes to token_hash: name and role
 * (each 65 bytes). OTAD_ERR_NOT_FOUND when none.
 */
enum otad_err registry_operator_by_token(struct registry *reg,
    const char *token_hash, char *name, char *role);

/* Audit rows, newest first, older than before (0: from the newest). */
enum otad_err registry_audit(struct registry *reg, int64_t before,
    int limit, const char *actor, json_t **rows);

/* Rollouts (id 0: all) with per-stage counts, rates and soak left. */
enum otad_err registry_rollout_status(struct registry *reg, int64_t id,
    int64_t now, json_t **rows, char *why, size_t whylen);

/*
 * The controller's tick: time out attempts (an offered device unseen for
 * offline_after by then has failed, 'offline'), then for each active staged
 * rollout halt it on a crossed bound, open the next stage when the current
 * one has soaked, has its finished attempts and is healthy, or complete
 * it (its release becomes the baseline). Logs and audits what it does.
 */
void registry_rollout_tick(struct registry *reg, int64_t now,
    int64_t offline_after);

/*
 * MQTT (the push thread's reader). The fleet in pages of devices that are
 * not blocked and said what they run, ordered by id after after ("" for
 * the first page): objects with id, version, product, chip, hw_rev,
 * secure_version (the eFuse floor known), free_space, grp and battery.
 */
enum otad_err registry_fleet_page(struct registry_reader *r, const char *after,
    int limit, json_t **rows);
/* The same for one device: one row, or none. */
enum otad_err registry_fleet_device(struct registry_reader *r, const char *id,
    json_t **rows);
/* 1 if a trigger for that release went to the device, 0 if not, -1 error. */
int registry_triggered(struct registry_reader *r, const char *device,
    int64_t release);
/* The same for a group's trigger of a rollout (once, at the stage that
 * reached the group). */
int registry_group_triggered(struct registry_reader *r, const char *group,
    int64_t rollout);
/* 1 if the device reported failing to apply a patch of the release. */
int registry_delta_failed(struct registry_reader *r, const char *device,
    int64_t release);
/* Artifacts (sha256) of a chip that devices run: bases for patches. */
enum otad_err registry_fleet_bases(struct registry_reader *r, const char *chip,
    json_t **rows);

/* Nudges waiting for the broker, oldest first: id, device. */
enum otad_err registry_nudges_owed(struct registry_reader *r, json_t **rows);
/*
 * Retained triggers to remove: the device runs the version, or the
 * rollout was halted or aborted (a group's: or finished). id, device, grp.
 */
enum otad_err registry_retained_stale(struct registry_reader *r,
    json_t **rows);
/*
 * Every rollout past draft: id, version, product, state, staged, stage,
 * stages, reason (halts).
 */
enum otad_err registry_rollout_states(struct registry_reader *r,
    json_t **rows);
/*
 * Fleet gauges for /metrics: devices (online, offline), versions (the
 * most common, with counts), rollouts (per active or paused rollout and
 * stage: attempt counts and rates).
 */
enum otad_err registry_fleet_gauges(struct registry_reader *r, int64_t now,
    int64_t offline_after, json_t **obj);

/*
 * Ask for a trigger to a device now: a row the daemon sends when the
 * broker is connected. NOT_FOUND for a device never seen; *id is the row.
 */
enum otad_err registry_nudge(struct registry *reg, const char *device,
    int64_t *id, char *why, size_t whylen);
/* 1 once the nudge went out (release in *version, "" if none), 0 if not. */
int registry_nudge_sent(struct registry *reg, int64_t id, char *version,
    size_t len);

/* Which devices a list shows; NULL or 0 fields do not narrow it. */
struct device_filter {
	int64_t offline_after; /* only those unseen for that many seconds */
	const char *id_prefix; /* ids starting so */
	const char *group, *version;
	int limit;             /* at most that many, by id */
};

enum otad_err registry_device_list(struct registry *reg, int64_t now,
    const struct device_filter *f, json_t **rows);
/*
 * Register a device with a token (its hash), or give a token to a device
 * seen before without one; EXISTS when it has one already.
 */
enum otad_err registry_device_add(struct registry *reg, const char *id,
    const char *group, const char *token_hash, char *why, size_t whylen);
/*
 * One word done to a device, audited; NOT_FOUND when it does not apply:
 * "revoke-token" (refused until it gets a new one), "block" (refused,
 * 403), "unblock", "clear" (out of quarantine now; only failures after
 * this count towards the next). INVALID for another word.
 */
enum otad_err registry_device_act(struct registry *reg, const char *id,
    const char *verb, char *why, size_t whylen);

/*
 * quarantine_after for the writer: n failed or rolled-back attempts
 * within period_s quarantine a device for period_s; n 0: never.
 */
void registry_set_quarantine(struct registry *reg, unsigned n,
    unsigned period_s);

/*
 * Telemetry samples: at most one a device (and version) per interval_s
 * (0: every one) kept for retention_s; a stage's comparison needs
 * min_devices on each side before it may halt.
 */
void registry_set_telemetry(struct registry *reg, unsigned interval_s,
    unsigned retention_s, unsigned min_devices);
#define TELEMETRY_INTERVAL_S 300
#define TELEMETRY_RETENTION_S (7 * 86400)
#define COMPARE_MIN_DEVICES 10

/*
 * The telemetry comparisons of every rollout's current stage that makes
 * some, as gauges["compared"]: rows of compare_stage's results with
 * rollout, version and stage, as the controller last read them (again
 * when older than it reads them).
 */
enum otad_err registry_compare_gauges(struct registry *reg, int64_t now,
    json_t *gauges);

/*
 * Apply the records of batch (linked by next, in order) on the calling
 * thread, as the writer would, in one transaction, and free them: for a
 * registry whose writer never started (a rehearsal's copy). The first
 * error of a record, or OTAD_OK.
 */
enum otad_err registry_apply(struct registry *reg, struct record *batch);

/*
 * A rehearsal's copy of the fleet: a new SQLite registry at dst_path with
 * src's artifacts, releases, rollouts and stages, and its devices seen
 * since seen_since and not blocked (*devices of them); src is only read.
 */
enum otad_err registry_copy_fleet(struct registry *src, const char *dst_path,
    int64_t seen_since, size_t *devices, char *why, size_t whylen);

/* fn for each device not blocked, in id order; fn < 0 stops (NOMEM). */
enum otad_err registry_each_device(struct registry *reg,
    int (*fn)(void *arg, const struct device_facts *f), void *arg);

/* Rollout id's state, stage and reason ("" when none). */
enum otad_err registry_rollout_where(struct registry *reg, int64_t id,
    char *state, size_t len, int64_t *stage, char *reason,
    size_t reasonlen);

/* Set what is not NULL; NOT_FOUND for a device never seen. */
enum otad_err registry_device_set(struct registry *reg, const char *id,
    const char *group, const char *hw_rev, const char *chip, char *why,
    size_t whylen);
/* The device row plus "attempts": its last attempts, newest first. */
enum otad_err registry_device_show(struct registry *reg, const char *id,
    json_t **obj, char *why, size_t whylen);
/* Fleet counts: devices, per version, attempts per state, releases. */
enum otad_err registry_status(struct registry *reg, int64_t now,
    json_t **obj);
/*
 * The fleet at a glance: devices online and offline (offline_after),
 * per version, chip and product, active rollouts, and the attempts that
 * failed or rolled back in the last day (newest first, at most 50).
 */
enum otad_err registry_fleet(struct registry *reg, int64_t now,
    int64_t offline_after, json_t **obj);

/* "downloading" .. "failed"; -1 if s names no result. */
int registry_result_parse(const char *s);
const char *registry_result_name(enum report_result r);

#endif
