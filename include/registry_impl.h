/*
 * registry_impl.h: what the files of src/registry/ share, and nobody
 * else: the registry and reader structures, the statement helpers, the
 * catalog transactions, and the few functions one part calls in another.
 */
#ifndef REGISTRY_IMPL_H
#define REGISTRY_IMPL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>

#include <jansson.h>

#include "registry_db.h"

#include "registry.h"

/* schema/NNN-*.sql, in order; generated into the build by the Makefile */
extern const char *const schema_migrations[];
extern const unsigned schema_migration_count;
/* schema/postgresql/NNN-*.sql */
extern const char *const pg_migrations[];
extern const unsigned pg_migration_count;

/* ends the text parameters of query_rows: a typed NULL, not a bare 0 */
#define ARGS_END ((const char *)NULL)
#define OPEN_STATES "('offered', 'downloading', 'installed')"
#define MAX_PRODUCERS 256 /* threads that may submit; more share slots */
#define BATCH_MAX 65536   /* records taken at once, as one batch ... */
#define CHUNK_MAX 4096    /* ... committed this many at a time */
#define BUSY_WAIT_MS 200  /* one busy_timeout wait */
#define OPEN_WAIT_MS 10000 /* opening: wait out a daemon's long commit */
#define WRITER_CACHE_KIB "262144" /* the writer's page cache, at most */
#define GATHER_FROM 64    /* batches from this size (load) ... */
#define GATHER_BELOW 32768 /* ... to this let check-ins gather ... */
#define GATHER_PER_MS 10  /* ... a millisecond for every 10 records of the
			     last batch, */
#define GATHER_MS 500     /* ... 500 ms at most (less once enough wait), */
#define TRICKLE_MS 5      /* ... smaller ones up to 5 ms, */
#define NAP_NS 1000000L   /* ... and after a report 1 ms */

/* One submitting thread's queue; its lock is shared only with the writer. */
struct producer {
	pthread_mutex_t mu;
	pthread_cond_t not_full;
	struct record *head, *tail;
	unsigned len;
};

enum wstmt {
	W_CHECKIN,
	W_CHECKIN_SEEN,
	W_ANY_OPEN,
	W_ADOPT,
	W_OFFER,
	W_SUCCESS,
	W_REPORT_DEVICE,
	W_DEVICE_VERSION,
	W_OPEN_ATTEMPT,
	W_UPDATE_ATTEMPT,
	W_LAST_ATTEMPT,
	W_INSERT_ATTEMPT,
	W_LEARN_CHIP,
	W_DOWNLOAD,
	W_SEEN,
	W_DELIVERED,
	W_ROLLBACK,
	W_CRASHED,
	W_TELEMETRY,
	W_SAMPLE,
	W_SAVEPOINT,
	W_RELEASE,
	W_ROLLBACK_TO,
	W_LOAD_DEVICES,
	W_COUNT
};

/*
 * What a check needs of a device's row, in the order device_row_from
 * reads them: the reader's point lookup, the check-in's RETURNING and the
 * device cache's loader select the same columns.
 */
#define DEVICE_ROW_COLUMNS                                                     \
	" coalesce(version, ''), coalesce(product, ''), blocked,"             \
	" coalesce(chip, ''), coalesce(hw_rev, ''),"                          \
	" coalesce(secure_version, -1), coalesce(token_hash, ''),"            \
	" coalesce(grp, ''), coalesce(battery, -1),"                          \
	" coalesce(running_sha256, ''), coalesce(fs_version, ''),"            \
	" coalesce(quarantined_until, 0)"
#define DEVICE_ROW_NCOLUMNS 12
void device_row_from(struct db_stmt *st, struct device_row *out);

/* registry/devcache.c: device rows in memory (see there) */
struct devcache;
struct devcache *devcache_new(size_t cap);
void devcache_free(struct devcache *c);
/* a put carries the epoch of when its row was read: older is refused */
void devcache_put(struct devcache *c, const char *id,
    const struct device_row *row, uint64_t epoch, int only_if_absent);
/* 1 and the row, or 0 when it is not cached */
int devcache_get(struct devcache *c, const char *id, struct device_row *out);
int devcache_peek(struct devcache *c, const char *id, struct device_row *out);
void devcache_drop(struct devcache *c, const char *id);
void devcache_clear(struct devcache *c);
uint64_t devcache_epoch(struct devcache *c);
void devcache_stats(struct devcache *c, struct devcache_stats *out);

#define RUN_SLOTS 256 /* statements run() keeps prepared */

struct registry {
	struct db *db;
	char actor[192];
	char who[80];          /* the person, for the two-person rule */
	unsigned approvals;    /* rollout_approvals */
	char break_glass[200]; /* a reason to start without approval */
	int64_t returned;      /* what run's last RETURNING gave */
	int leading;           /* holds the leadership lock (PostgreSQL) */
	unsigned lead_session; /* ... in this session of the connection */
	/* writer */
	struct db_stmt *w[W_COUNT];
	pthread_t thread;
	int running;
	int efd; /* producers wake the writer through it */
	atomic_int idle; /* the writer waits on efd: only then wake it */
	atomic_int gathering; /* ... or lets check-ins gather: wake it for
				 a durable record or enough queued */
	atomic_int stopping;
	atomic_llong busy_since; /* writer waits for the database since */
	unsigned queue_max;
	pthread_key_t key; /* thread -> its struct producer */
	int key_made;
	pthread_mutex_t producers_mu; /* only to add a producer */
	/* run's statements, kept prepared (statements.c) */
	struct run_slot {
		char *sql;
		struct db_stmt *st;
	} run_slots[RUN_SLOTS];
	struct producer *producers[MAX_PRODUCERS];
	atomic_uint nproducers;
	atomic_size_t depth;
	atomic_int durable_queued; /* a report queued since the last collect */
	atomic_uint quarantine_n, quarantine_s; /* quarantine_after; n 0 off */
	/* telemetry_interval, telemetry_retention, compare_min_devices */
	atomic_uint tel_interval, tel_retention, compare_min;
	int64_t pruned_at;  /* the controller's last telemetry pruning */
	/*
	 * The controller's telemetry comparisons, by rollout id: what each
	 * found, for the gates and /metrics, read again every compare_every
	 * seconds (20 times what reading them took, 10 at least).
	 */
	json_t *compared;
	int64_t compare_every;
	/*
	 * Records are applied in the order they were queued, across all
	 * producers: each gets the next seq as it is queued, and the writer
	 * applies them in seq order with no gap, holding back those after a
	 * record it has not collected yet (queued by a producer it had
	 * already looked at). A device's answer goes out after its record
	 * is queued, so what it does next is always applied after it.
	 */
	atomic_uint_fast64_t seq;
	uint64_t next_seq;     /* writer: the seq to apply next */
	struct record *held;   /* writer: collected, waiting for a gap */
	size_t nheld;
	struct placed *placed; /* writer: a batch's sort keys (writer.c) */
	size_t placed_cap;
	/*
	 * Device rows in memory (SQLite only: on PostgreSQL other nodes
	 * write rows too), and the writer's loading of them: every device
	 * after load_after, for the epoch load_epoch, until loaded.
	 */
	struct devcache *cache;
	uint64_t batch_epoch; /* the cache's epoch when the batch began */
	char load_after[OTAD_ID_MAX + 1];
	uint64_t load_epoch;
	int loaded;
};

/*
 * A release as an offer: what registry_load_offers and _stones return,
 * after the rollout id, read by offer_row.
 */
#define OFFER_COLUMNS                                                          \
	" rel.id, rel.version, coalesce(rel.product, ''), a.sha256, a.md5,"     \
	" a.size, a.chip, coalesce(rel.hw_rev, ''), a.secure_version, s.key,"   \
	" s.sig, coalesce(rel.min_from, ''), rel.forced, a.kind"
#define OFFER_JOINS                                                            \
	" JOIN artifact a ON a.sha256 = rel.artifact"                          \
	/* its newest signature by a key still trusted, if any */              \
	" LEFT JOIN signature s ON s.artifact = a.sha256 AND s.key ="          \
	" (SELECT s2.key FROM signature s2 JOIN signing_key k"                 \
	" ON k.name = s2.key WHERE s2.artifact = a.sha256"                     \
	" AND k.purpose = 'artifact' AND k.state != 'revoked'"                 \
	" ORDER BY k.state = 'active' DESC, s2.created DESC, k.created DESC,"  \
	" s2.key LIMIT 1)"

enum rstmt {
	R_DEVICE,
	R_REFUSAL,
	R_TOKEN,
	R_STAGES,
	R_RUNNING,
	R_STONES,
	R_RELEASED,
	R_DATA_VERSION,
	R_GENERATION,
	R_OFFERS,
	R_TRIGGERED,
	R_DELTA_FAILED,
	R_OPEN_ARTIFACT,
	R_COUNT
};

struct registry_reader {
	struct db *db;
	struct devcache *cache; /* the daemon's device rows; may be NULL */
	struct db_stmt *s[R_COUNT];
	int64_t data_version; /* -1 before the first look */
	int64_t generation;
	int64_t device_edits; /* catalog.devices: operators' device edits */
};

/*
 * What a release's rollouts compete with: same product, chip, hardware
 * revision and kind.
 */
#define SAME_SCOPE(o, n)                                                       \
	"coalesce(" o ".product, '') = coalesce(" n ".product, '') AND"            \
	" coalesce(" o ".chip, '') = coalesce(" n ".chip, '') AND"                 \
	" coalesce(" o ".hw_rev, '') = coalesce(" n ".hw_rev, '') AND"             \
	" " o ".kind = " n ".kind"

/*
 * The devices d a rollout's release rel is for, as count stages choose
 * them: its product, and its chip unless the device's is unknown.
 */
#define STAGE_MATCHES                                                          \
	"(rel.product IS NULL OR d.product = rel.product) AND (rel.chip IS"     \
	" NULL OR d.chip IS NULL OR d.chip = rel.chip)"

/*
 * What device d's eFuse is known to hold at least: what it said, or what
 * the image it runs carries (as a check reckons it).
 */
#define DEVICE_EFUSE(d)                                                        \
	"max(coalesce(" d ".secure_version, -1), coalesce((SELECT"              \
	" max(secure_version) FROM artifact WHERE app_sha256 = " d               \
	".running_sha256), -1))"

/*
 * Device d runs release n (its version, its product and chip) and cannot
 * go back to release p: its eFuse is above p's image's secure version.
 */
#define STRANDED_ON(d, n, p)                                                   \
	d ".version = " n ".version AND (" n ".product IS NULL OR " d          \
	".product = " n ".product) AND (" n ".chip IS NULL OR " d ".chip IS"   \
	" NULL OR " d ".chip = " n ".chip) AND " DEVICE_EFUSE(d) " > (SELECT" \
	" coalesce(secure_version, 0) FROM artifact WHERE sha256 = " p         \
	".artifact)"

#define VERSION_COUNTS                                                         \
	"SELECT coalesce(version, '') AS version, count(*) AS devices FROM"     \
	" device GROUP BY version ORDER BY count(*) DESC, version"

/*
 * A group of attempts counted by outcome (the in_progress .. timed_out
 * columns of status and the gauges of /metrics), their columns named
 * with the prefix a ("" or "a.").
 */
#define ATTEMPT_TALLIES(a)                                                     \
	"count(*) FILTER (WHERE " a "state IN ('offered', 'downloading',"     \
	" 'installed')) AS in_progress,"                                       \
	" count(*) FILTER (WHERE " a "state = 'success') AS succeeded,"        \
	" count(*) FILTER (WHERE " a "state = 'rollback') AS rolled_back,"     \
	" count(*) FILTER (WHERE " a "state = 'failed') AS failed,"            \
	" count(*) FILTER (WHERE " a "state = 'timeout') AS timed_out,"        \
	" count(*) FILTER (WHERE " a "state = 'success' AND " a "crashed = 1)" \
	" AS crashed, count(*) FILTER (WHERE " a "state = 'success' AND " a    \
	"inferred = 1) AS inferred_succeeded, count(*) FILTER (WHERE " a       \
	"state = 'rollback' AND " a "inferred = 1) AS inferred_rolled_back"

struct part {
	const char *key, *sql;
};

/* "downloading" .. "failed", by enum report_result */
extern const char *const result_names[];

/* statements.c: SQL helpers */
void bind_text(struct db_stmt *st, int i, const char *s); /* "" as NULL */
void bind_tel(struct db_stmt *st, int i, const struct telemetry *t,
    unsigned bit, int64_t v);
int step_done(struct db_stmt *st);
/*
 * The comparisons compare (a stage's, as stored: "heap_drop<=20%,...") of
 * rollout (to version) over the telemetry since since, each side needing
 * min devices to halt: an array of results (compare, name, updated,
 * control, updated_devices, control_devices, value, state: ok, breach or
 * sample). With breach, the first breach's reason ("" when none).
 */
enum otad_err compare_stage(struct db *db, unsigned min, int64_t rollout,
    const char *version, const char *compare, int64_t since, json_t **out,
    char *breach, size_t len);
/* The leader, once a minute: drop samples older than the retention. */
void compare_prune(struct registry *reg, int64_t now);
/*
 * The controller's comparisons of a rollout's stage (ro: id, version,
 * stage, stage_started; compare as stored) at now, read again only when
 * fresh is set or the last reading is older than compare_every: into
 * breach the first breach's reason ("" when none); its results stay in
 * reg->compared. 0, or -1 when they cannot be read.
 */
int compare_gate(struct registry *reg, json_t *ro, const char *compare,
    int64_t now, int fresh, char *breach, size_t len);

/* sql with text parameters up to ARGS_END: its rows as JSON objects */
enum otad_err query_rows(struct db *db, json_t **rows, const char *sql, ...);
/* the one row of sql (with arg) as an object, and each part's rows */
enum otad_err query_summary(struct db *db, json_t **obj, const char *sql,
    const char *arg, const struct part *parts, size_t n);
/* one statement; types: 't' text, 'i' int64, 'd' double, 'b' blob */
int run(struct registry *reg, const char *sql, const char *types, ...);
void run_slots_free(struct registry *reg);
int exec_ints(struct db *db, const char *sql, ...);
const char *idtext(int64_t id, char buf[24]);
int64_t now_s(void);

/* statements.c: a catalog action is one audited transaction */
enum otad_err catalog_begin(struct registry *reg);
enum otad_err catalog_commit(struct registry *reg);
enum otad_err catalog_open(struct registry *reg, char *why, size_t whylen);
enum otad_err catalog_close(struct registry *reg, const char *what,
    char *why, size_t whylen);
enum otad_err catalog_fail(struct registry *reg, enum otad_err rc);
enum otad_err catalog_db_fail(struct registry *reg, char *why,
    size_t whylen);
int may_start_alone(struct registry *reg, const char *what, char *why,
    size_t whylen);

/*
 * records.c: what each record kind does, on the writer thread inside its
 * transaction. The writer's statements (prepared by writer.c); a record
 * applied (0, or -1 with rec's error logged); a report the same.
 */
extern const char *const registry_record_sql[W_COUNT];
int record_apply(struct registry *reg, const struct record *rec);
int record_apply_report(struct registry *reg, const struct record *rec);

/* db.c */
enum otad_err db_error(struct db *db, const char *what);
enum otad_err connect_db(const char *target, enum db_mode mode,
    struct db **out);
enum otad_err exec(struct db *db, const char *sql);

/* blobs.c: fd's size bytes as sha256's chunks (PostgreSQL only) */
enum otad_err blobs_put(struct registry *reg, const char *sha256, int fd,
    uint64_t size, char *why, size_t whylen);

/* artifacts.c and rollouts.c */
enum otad_err find_release(struct registry *reg, const char *version,
    const char *product, const char *chip, json_t **rows, char *why,
    size_t whylen);
int cut_stage(struct registry *reg, int64_t id, int64_t no);
enum otad_err start_rollout(struct registry *reg, int64_t id, char *why,
    size_t whylen);

#endif
