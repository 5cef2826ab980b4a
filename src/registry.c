/*
 * registry.c: SQLite open and migrations, the writer thread with group
 * commit, read connections, and the catalog operations of otactl.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "fsimg.h"
#include "log.h"
#include "registry.h"
#include "semver.h"
#include "stages.h"

/* schema/NNN-*.sql, in order; generated into the build by the Makefile */
extern const char *const schema_migrations[];
extern const unsigned schema_migration_count;

/* ends the text parameters of query_rows: a typed NULL, not a bare 0 */
#define ARGS_END ((const char *)NULL)
#define OPEN_STATES "('offered', 'downloading', 'installed')"
#define MAX_PRODUCERS 256 /* threads that may submit; more share slots */
#define BATCH_MAX 4096    /* records in one transaction */
#define BUSY_WAIT_MS 200  /* one busy_timeout wait */
#define OPEN_WAIT_MS 10000 /* opening: wait out a daemon's long commit */
#define NAP_BELOW 256     /* batches smaller than this ... */
#define NAP_NS 1000000L   /* ... are followed by a 1 ms nap */

/* One submitting thread's queue; its lock is shared only with the writer. */
struct producer {
	pthread_mutex_t mu;
	pthread_cond_t not_full;
	struct record *head, *tail;
	unsigned len;
};

enum wstmt {
	W_CHECKIN,
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
	W_SAVEPOINT,
	W_RELEASE,
	W_ROLLBACK_TO,
	W_COUNT
};

static const char *const wsql[W_COUNT] = {
	[W_CHECKIN] =
	    "INSERT INTO device (id, product, version, address, first_seen,"
	    " last_seen, checks, hw_rev, running_sha256, chip,"
	    " secure_version, free_space, deferred, deferred_at, battery,"
	    " reset_reason, uptime) VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1, ?6, ?7,"
	    " ?8, ?9, ?10, ?11, CASE WHEN ?11 IS NOT NULL THEN ?5 END, ?12,"
	    " ?13, ?14) ON CONFLICT (id) DO UPDATE SET"
	    " battery = coalesce(excluded.battery, battery),"
	    " reset_reason = coalesce(excluded.reset_reason, reset_reason),"
	    " uptime = coalesce(excluded.uptime, uptime),"
	    " free_space = coalesce(excluded.free_space, free_space),"
	    /* the last answer's reason stands until an answer without one */
	    " deferred = excluded.deferred,"
	    " deferred_at = CASE WHEN excluded.deferred IS NULL THEN NULL"
	    " WHEN deferred IS excluded.deferred THEN deferred_at"
	    " ELSE excluded.deferred_at END,"
	    " product = coalesce(excluded.product, product),"
	    /* a filesystem request says nothing of the app it runs */
	    " version = CASE WHEN ?15 THEN version ELSE excluded.version END,"
	    " address = excluded.address,"
	    " last_seen = max(last_seen, excluded.last_seen),"
	    " checks = checks + 1,"
	    " hw_rev = coalesce(excluded.hw_rev, hw_rev),"
	    " running_sha256 = coalesce(excluded.running_sha256,"
	    " running_sha256),"
	    " chip = coalesce(excluded.chip, chip),"
	    /* an eFuse only counts up */
	    " secure_version = coalesce(max(secure_version,"
	    " excluded.secure_version), secure_version,"
	    " excluded.secure_version)",
	/* a silent device said nothing: it runs what it was last known to */
	[W_OFFER] =
	    "INSERT INTO attempt (device, release, rollout, from_version,"
	    " to_version, state, offered_at, updated_at, stage, silent)"
	    " SELECT ?1, ?2, ?3, CASE WHEN ?8 THEN (SELECT version FROM device"
	    " WHERE id = ?1) ELSE ?4 END, ?5, 'offered', ?6, ?6, ?7, ?8 WHERE"
	    " NOT EXISTS (SELECT 1 FROM attempt WHERE device = ?1 AND release ="
	    " ?2 AND state IN " OPEN_STATES ")",
	[W_SUCCESS] =
	    "UPDATE attempt SET state = 'success', updated_at = ?3,"
	    " finished_at = ?3 WHERE device = ?1 AND state IN " OPEN_STATES
	    " AND semver_compare(to_version, ?2) = 0",
	[W_REPORT_DEVICE] =
	    "INSERT INTO device (id, version, address, first_seen, last_seen,"
	    " uptime, free_heap, rssi, reset_reason, battery, secure_version)"
	    " VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
	    " ON CONFLICT (id) DO UPDATE SET"
	    " version = coalesce(excluded.version, version),"
	    " address = excluded.address,"
	    " last_seen = max(last_seen, excluded.last_seen),"
	    " uptime = coalesce(excluded.uptime, uptime),"
	    " free_heap = coalesce(excluded.free_heap, free_heap),"
	    " rssi = coalesce(excluded.rssi, rssi),"
	    " reset_reason = coalesce(excluded.reset_reason, reset_reason),"
	    " battery = coalesce(excluded.battery, battery),"
	    /* an eFuse only counts up */
	    " secure_version = coalesce(max(secure_version,"
	    " excluded.secure_version), secure_version,"
	    " excluded.secure_version)",
	[W_DEVICE_VERSION] = "SELECT version FROM device WHERE id = ?1",
	[W_OPEN_ATTEMPT] =
	    "SELECT id FROM attempt WHERE device = ?1 AND state IN "
	    OPEN_STATES " ORDER BY (to_version = ?2) DESC, id DESC LIMIT 1",
	[W_UPDATE_ATTEMPT] =
	    "UPDATE attempt SET state = ?2, reason = coalesce(?3, reason),"
	    " updated_at = ?4, finished_at = CASE WHEN ?2 IN ('success',"
	    " 'rollback', 'failed') THEN ?4 END WHERE id = ?1",
	[W_LAST_ATTEMPT] =
	    "SELECT to_version, state FROM attempt WHERE device = ?1"
	    " ORDER BY id DESC LIMIT 1",
	[W_INSERT_ATTEMPT] =
	    "INSERT INTO attempt (device, release, from_version, to_version,"
	    " state, reason, updated_at, finished_at) VALUES (?1,"
	    " (SELECT id FROM release WHERE version = ?2 ORDER BY id DESC"
	    " LIMIT 1), ?3, ?2, ?4, ?5, ?6, CASE WHEN ?4 IN ('success',"
	    " 'rollback', 'failed') THEN ?6 END)",
	[W_LEARN_CHIP] =
	    "UPDATE device SET chip = (SELECT a.chip FROM attempt t"
	    " JOIN release r ON r.id = t.release"
	    " JOIN artifact a ON a.sha256 = r.artifact"
	    " WHERE t.device = ?1 AND t.state = 'success'"
	    " ORDER BY t.id DESC LIMIT 1) WHERE id = ?1 AND EXISTS"
	    " (SELECT 1 FROM attempt t WHERE t.device = ?1 AND"
	    " t.state = 'success' AND t.release IS NOT NULL)",
	[W_DOWNLOAD] =
	    "UPDATE attempt SET state = 'downloading', updated_at = ?3"
	    " WHERE device = ?1 AND state = 'offered' AND release IN"
	    " (SELECT id FROM release WHERE artifact = ?2)",
	[W_SEEN] =
	    "UPDATE device SET last_seen = max(last_seen, ?2),"
	    " address = coalesce(?3, address) WHERE id = ?1",
	[W_DELIVERED] =
	    "UPDATE attempt SET delivered = 1, delivered_at = ?3, state ="
	    " CASE state WHEN 'offered' THEN 'downloading' ELSE state END,"
	    " updated_at = ?3"
	    " WHERE device = ?1 AND state IN " OPEN_STATES " AND release IN"
	    " (SELECT id FROM release WHERE artifact = ?2)",
	/*
	 * Back on the version it left, after it installed the image (it said
	 * so) or after it got the image and rebooted (its uptime says so):
	 * the image did not stay. A device that only re-polls may not have
	 * received it; that attempt stays open until its timeout.
	 */
	[W_ROLLBACK] =
	    "UPDATE attempt SET state = 'rollback', reason = 'back on ' ||"
	    " from_version, updated_at = ?3, finished_at = ?3 WHERE device ="
	    " ?1 AND state IN ('downloading', 'installed') AND (state ="
	    " 'installed' OR (delivered = 1 AND ?4 IS NOT NULL AND ?4 < ?3 -"
	    " delivered_at)) AND semver_compare(from_version, ?2) = 0",
	/* a panic or watchdog reset after an update counts against it */
	[W_CRASHED] =
	    "UPDATE attempt SET crashed = crashed OR ?3 IN (4, 5, 6, 7),"
	    " brownout = brownout OR ?3 = 9 WHERE id = (SELECT id FROM"
	    " attempt WHERE device = ?1 AND state = 'success' ORDER BY id DESC"
	    " LIMIT 1) AND finished_at <= ?2 AND ?3 IN (4, 5, 6, 7, 9)",
	/* telemetry over MQTT: seen, and what it runs if it said */
	[W_TELEMETRY] =
	    "INSERT INTO device (id, version, first_seen, last_seen, mqtt_seen,"
	    " uptime, free_heap, rssi, reset_reason, battery, secure_version)"
	    " VALUES (?1, ?2, ?3, ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
	    " ON CONFLICT (id) DO UPDATE SET"
	    " version = coalesce(excluded.version, version),"
	    " last_seen = max(last_seen, excluded.last_seen),"
	    " mqtt_seen = max(ifnull(mqtt_seen, 0), excluded.mqtt_seen),"
	    " uptime = coalesce(excluded.uptime, uptime),"
	    " free_heap = coalesce(excluded.free_heap, free_heap),"
	    " rssi = coalesce(excluded.rssi, rssi),"
	    " reset_reason = coalesce(excluded.reset_reason, reset_reason),"
	    " battery = coalesce(excluded.battery, battery),"
	    /* an eFuse only counts up */
	    " secure_version = coalesce(max(secure_version,"
	    " excluded.secure_version), secure_version,"
	    " excluded.secure_version)",
	[W_SAVEPOINT] = "SAVEPOINT rec",
	[W_RELEASE] = "RELEASE rec",
	[W_ROLLBACK_TO] = "ROLLBACK TO rec",
};

struct registry {
	sqlite3 *db;
	char actor[192];
	char who[80];          /* the person, for the two-person rule */
	unsigned approvals;    /* rollout_approvals */
	char break_glass[200]; /* a reason to start without approval */
	/* writer */
	sqlite3_stmt *w[W_COUNT];
	pthread_t thread;
	int running;
	int efd; /* producers wake the writer through it */
	atomic_int idle; /* the writer waits on efd: only then wake it */
	atomic_int stopping;
	atomic_llong busy_since; /* writer waits for the database since */
	unsigned queue_max;
	pthread_key_t key; /* thread -> its struct producer */
	int key_made;
	pthread_mutex_t producers_mu; /* only to add a producer */
	struct producer *producers[MAX_PRODUCERS];
	atomic_uint nproducers;
	atomic_size_t depth;
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
};

/*
 * A release as an offer: what registry_load_offers and _stones return,
 * after the rollout id, read by offer_row.
 */
#define OFFER_COLUMNS                                                          \
	" rel.id, rel.version, ifnull(rel.product, ''), a.sha256, a.md5,"     \
	" a.size, a.chip, ifnull(rel.hw_rev, ''), a.secure_version, s.key,"   \
	" s.sig, ifnull(rel.min_from, ''), rel.forced, a.kind"
#define OFFER_JOINS                                                            \
	" JOIN artifact a ON a.sha256 = rel.artifact"                          \
	/* its newest signature by a key still trusted, if any */              \
	" LEFT JOIN signature s ON s.artifact = a.sha256 AND s.key ="          \
	" (SELECT s2.key FROM signature s2 JOIN signing_key k"                 \
	" ON k.name = s2.key WHERE s2.artifact = a.sha256"                     \
	" AND k.purpose = 'artifact' AND k.state != 'revoked'"                 \
	" ORDER BY k.state = 'active' DESC, s2.created DESC LIMIT 1)"

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

static const char *const rsql[R_COUNT] = {
	[R_DEVICE] = "SELECT ifnull(version, ''), ifnull(product, ''), blocked,"
		     " ifnull(chip, ''), ifnull(hw_rev, ''),"
		     " ifnull(secure_version, -1), ifnull(token_hash, ''),"
		     " ifnull(grp, ''), ifnull(battery, -1),"
		     " ifnull(running_sha256, ''), ifnull(fs_version, '')"
		     " FROM device WHERE id = ?1",
	/* only when an offer is about to be made (see registry.h) */
	[R_REFUSAL] = "SELECT ifnull(p.release, 0), ifnull(p.from_version,"
		      " ''), ifnull((SELECT release FROM attempt WHERE device ="
		      " ?1 AND state = 'rollback' ORDER BY id DESC LIMIT 1), 0),"
		      " ifnull(p.state = 'installed', 0), ifnull(p.delivered_at,"
		      " -1) FROM (SELECT 1) LEFT JOIN (SELECT release,"
		      " from_version, state, delivered_at FROM attempt WHERE"
		      " device = ?1 AND state IN ('downloading', 'installed') AND"
		      " (state = 'installed' OR delivered = 1) ORDER BY id DESC"
		      " LIMIT 1) p",
	[R_TOKEN] = "SELECT id FROM device WHERE token_hash = ?1",
	[R_RUNNING] = "SELECT chip, version, secure_version, sha256 FROM artifact"
		      " WHERE app_sha256 = ?1 LIMIT 1",
	[R_DATA_VERSION] = "PRAGMA data_version",
	[R_GENERATION] = "SELECT generation FROM catalog WHERE id = 1",
	/* after the offer columns: what the rollout's plan says now */
	[R_OFFERS] = "SELECT ro.id," OFFER_COLUMNS ", ro.staged, ro.stage,"
		     " ifnull(ro.window, ''), ifnull(ro.days, ''),"
		     " ifnull(ro.utc_offset, ''), ifnull(ro.min_battery, -1),"
		     " ro.downgrade, (ro.staged = 0 OR ro.state = 'completed')"
		     " FROM rollout ro"
		     " JOIN release rel ON rel.id = ro.release" OFFER_JOINS
		     " WHERE ro.state = 'active' OR (ro.state = 'completed'"
		     " AND ro.baseline = 1)",
	/* it could not apply a patch of this release: the full image next */
	[R_DELTA_FAILED] = "SELECT 1 FROM attempt WHERE device = ?1 AND"
			   " release = ?2 AND state = 'failed' AND reason ="
			   " 'delta' LIMIT 1",
	/* the image of the download a device has under way */
	[R_OPEN_ARTIFACT] = "SELECT r.artifact FROM attempt t JOIN release r"
			    " ON r.id = t.release WHERE t.device = ?1 AND"
			    " t.state IN ('offered', 'downloading') ORDER BY"
			    " t.id DESC LIMIT 1",
	[R_TRIGGERED] = "SELECT 1 FROM trigger WHERE device = ?1 AND"
			" release = ?2",
	[R_STAGES] = "SELECT ifnull(grp, ''), percent FROM rollout_stage"
		     " WHERE rollout = ?1 AND no <= ?2 ORDER BY no",
	[R_STONES] = "SELECT 0," OFFER_COLUMNS " FROM release rel" OFFER_JOINS,
	[R_RELEASED] = "SELECT 0," OFFER_COLUMNS " FROM release rel"
		       OFFER_JOINS " WHERE a.sha256 = ?1 ORDER BY rel.id DESC"
		       " LIMIT 1",
};

struct registry_reader {
	sqlite3 *db;
	sqlite3_stmt *s[R_COUNT];
	int64_t data_version; /* -1 before the first look */
	int64_t generation;
};

static const char *const result_names[] = {
	[REPORT_DOWNLOADING] = "downloading",
	[REPORT_INSTALLED] = "installed",
	[REPORT_SUCCESS] = "success",
	[REPORT_ROLLBACK] = "rollback",
	[REPORT_FAILED] = "failed",
};

int
registry_result_parse(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(result_names) / sizeof(result_names[0]); i++)
		if (strcmp(s, result_names[i]) == 0)
			return (int)i;
	return -1;
}

const char *
registry_result_name(enum report_result r)
{
	return result_names[r];
}

/* semver_compare(a, b) in SQL, so queries order versions as otad does */
static void
sql_semver_compare(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	const unsigned char *a = sqlite3_value_text(argv[0]);
	const unsigned char *b = sqlite3_value_text(argv[1]);

	(void)argc;
	if (a == NULL || b == NULL) {
		sqlite3_result_null(ctx);
		return;
	}
	sqlite3_result_int(ctx, semver_compare((const char *)a,
	    (const char *)b));
}

/* ring(rollout, device): a device's place, as the daemon computes it */
static void
sql_ring(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	const unsigned char *id = sqlite3_value_text(argv[1]);

	(void)argc;
	if (id == NULL) {
		sqlite3_result_null(ctx);
		return;
	}
	sqlite3_result_int(ctx, (int)stages_ring(sqlite3_value_int64(argv[0]),
	    (const char *)id));
}

static enum otad_err
db_error(sqlite3 *db, const char *what)
{
	int code = sqlite3_errcode(db);

	log_warnx("%s: %s", what, sqlite3_errmsg(db));
	return (code == SQLITE_BUSY || code == SQLITE_LOCKED) ? OTAD_ERR_BUSY
							      : OTAD_ERR_DB;
}

static enum otad_err
db_open(const char *path, int flags, sqlite3 **out)
{
	sqlite3 *db = NULL;

	*out = NULL;
	if (sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		log_warnx("cannot open database '%s': %s", path,
		    db ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		return OTAD_ERR_DB;
	}
	sqlite3_extended_result_codes(db, 0);
	sqlite3_busy_timeout(db, BUSY_WAIT_MS);
	if (sqlite3_create_function(db, "semver_compare", 2,
	    SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, sql_semver_compare, NULL,
	    NULL) != SQLITE_OK ||
	    sqlite3_create_function(db, "ring", 2, SQLITE_UTF8 |
	    SQLITE_DETERMINISTIC, NULL, sql_ring, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL) !=
	    SQLITE_OK) {
		enum otad_err rc = db_error(db, "cannot set up database");

		sqlite3_close(db);
		return rc;
	}
	*out = db;
	return OTAD_OK;
}

static enum otad_err
exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		int code = sqlite3_errcode(db);

		log_warnx("database: %s", msg ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		return (code == SQLITE_BUSY || code == SQLITE_LOCKED)
		    ? OTAD_ERR_BUSY : OTAD_ERR_DB;
	}
	return OTAD_OK;
}

static int
user_version(sqlite3 *db)
{
	sqlite3_stmt *st;
	int v = -1;

	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) ==
	    SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return v;
}

static enum otad_err migrate_all(sqlite3 *db);

/* No row breaks a foreign key: 0, or -1 (logged). */
static int
foreign_keys_hold(sqlite3 *db)
{
	sqlite3_stmt *st;
	int step;

	if (sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &st,
	    NULL) != SQLITE_OK)
		return -1;
	step = sqlite3_step(st);
	if (step == SQLITE_ROW)
		log_warnx("a migration left a row of %s without its %s",
		    (const char *)sqlite3_column_text(st, 0),
		    (const char *)sqlite3_column_text(st, 2));
	sqlite3_finalize(st);
	return step == SQLITE_DONE ? 0 : -1;
}

/*
 * Apply schema_migrations[user_version..], each in its own transaction.
 * Foreign keys are off meanwhile, as SQLite's way of changing a table
 * (build the new one, copy, drop, rename) needs, and each migration must
 * leave them whole before it commits.
 */
static enum otad_err
migrate(sqlite3 *db)
{
	enum otad_err rc = migrate_all(db);

	if (exec(db, "PRAGMA foreign_keys = ON") != OTAD_OK && rc == OTAD_OK)
		rc = OTAD_ERR_DB;
	return rc;
}

static enum otad_err
migrate_all(sqlite3 *db)
{
	enum otad_err rc;
	char sql[64];
	int v;

	/* up to date (the common case): no write lock taken at all */
	if ((v = user_version(db)) >= 0 &&
	    (unsigned)v == schema_migration_count)
		return OTAD_OK;
	if ((rc = exec(db, "PRAGMA foreign_keys = OFF")) != OTAD_OK)
		return rc;
	for (;;) {
		/* IMMEDIATE: two processes starting at once migrate once */
		if ((rc = exec(db, "BEGIN IMMEDIATE")) != OTAD_OK)
			return rc;
		if ((v = user_version(db)) < 0) {
			exec(db, "ROLLBACK");
			return db_error(db, "cannot read schema version");
		}
		if ((unsigned)v == schema_migration_count)
			return exec(db, "COMMIT");
		if ((unsigned)v > schema_migration_count) {
			exec(db, "ROLLBACK");
			log_warnx("database schema %d is newer than this build "
			    "knows (%u)", v, schema_migration_count);
			return OTAD_ERR_DB;
		}
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
		if ((rc = exec(db, schema_migrations[v])) != OTAD_OK ||
		    (rc = foreign_keys_hold(db) < 0 ? OTAD_ERR_DB : OTAD_OK) !=
		    OTAD_OK || (rc = exec(db, sql)) != OTAD_OK ||
		    (rc = exec(db, "COMMIT")) != OTAD_OK) {
			exec(db, "ROLLBACK");
			log_warnx("migration %d failed", v + 1);
			return rc;
		}
		log_info("database migrated to schema %d", v + 1);
	}
}

enum otad_err
registry_open(const char *path, struct registry **out)
{
	struct registry *reg;
	enum otad_err rc;

	*out = NULL;
	if ((reg = calloc(1, sizeof(*reg))) == NULL)
		return OTAD_ERR_NOMEM;
	reg->efd = -1;
	snprintf(reg->actor, sizeof(reg->actor), "otad");
	pthread_mutex_init(&reg->producers_mu, NULL);
	if ((rc = db_open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
	    &reg->db)) != OTAD_OK)
		goto fail;
	/* opening may wait for a busy daemon; later waits are short */
	sqlite3_busy_timeout(reg->db, OPEN_WAIT_MS);
	/* WAL: readers never block the writer nor it them */
	if ((rc = exec(reg->db, "PRAGMA journal_mode = WAL")) != OTAD_OK ||
	    (rc = exec(reg->db, "PRAGMA synchronous = FULL")) != OTAD_OK ||
	    (rc = migrate(reg->db)) != OTAD_OK)
		goto fail;
	sqlite3_busy_timeout(reg->db, BUSY_WAIT_MS);
	*out = reg;
	return OTAD_OK;
fail:
	registry_close(reg);
	return rc;
}

struct record *
registry_record_new(enum record_kind kind)
{
	struct record *rec = calloc(1, sizeof(*rec));

	if (rec != NULL) {
		rec->kind = kind;
		rec->secure_version = -1;
		rec->free_space = -1;
	}
	return rec;
}

/* bind helpers: "" and absent values become NULL */
static void
bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s == NULL || *s == '\0')
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

static void
bind_tel(sqlite3_stmt *st, int i, const struct telemetry *t, unsigned bit,
    int64_t v)
{
	if (t->present & bit)
		sqlite3_bind_int64(st, i, v);
	else
		sqlite3_bind_null(st, i);
}

/* Run a prepared statement that returns no rows; 0 or -1. */
static int
step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Telemetry with a reset reason may mark the last update as crashed. */
static int
crash_flags(struct registry *reg, const struct record *rec)
{
	sqlite3_stmt *st = reg->w[W_CRASHED];

	if (!(rec->tel.present & TEL_RESET_REASON))
		return 0;
	sqlite3_bind_text(st, 1, rec->device, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, rec->at);
	sqlite3_bind_int64(st, 3, rec->tel.reset_reason);
	return step_done(st);
}

/*
 * What the version a device runs now says of its attempts: back on the
 * one it left (rolled back), crashed since, or on the one offered
 * (succeeded).
 */
static int
apply_running(struct registry *reg, const struct record *rec)
{
	sqlite3_stmt *st;

	if (rec->version[0] == '\0')
		return crash_flags(reg, rec);
	st = reg->w[W_ROLLBACK];
	sqlite3_bind_text(st, 1, rec->device, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, rec->version, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, rec->at);
	bind_tel(st, 4, &rec->tel, TEL_UPTIME, rec->tel.uptime);
	if (step_done(st) < 0 || crash_flags(reg, rec) < 0)
		return -1;
	/* running what it was offered: that attempt succeeded */
	st = reg->w[W_SUCCESS];
	sqlite3_bind_text(st, 1, rec->device, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, rec->version, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, rec->at);
	if (step_done(st) < 0)
		return -1;
	if (sqlite3_changes(reg->db) > 0 && rec->chip[0] == '\0') {
		/* it runs the image it was offered: its chip is that one's */
		st = reg->w[W_LEARN_CHIP];
		sqlite3_bind_text(st, 1, rec->device, -1, SQLITE_STATIC);
		if (step_done(st) < 0)
			return -1;
	}
	return 0;
}

/* Telemetry over MQTT is a check-in without an answer. */
static int
apply_telemetry(struct registry *reg, const struct record *rec)
{
	const struct telemetry *t = &rec->tel;
	sqlite3_stmt *st = reg->w[W_TELEMETRY];

	sqlite3_bind_text(st, 1, rec->device, -1, SQLITE_STATIC);
	bind_text(st, 2, rec->version);
	sqlite3_bind_int64(st, 3, rec->at);
	bind_tel(st, 4, t, TEL_UPTIME, t->uptime);
	bind_tel(st, 5, t, TEL_FREE_HEAP, t->free_heap);
	bind_tel(st, 6, t, TEL_RSSI, t->rssi);
	bind_tel(st, 7, t, TEL_RESET_REASON, t->reset_reason);
	bind_tel(st, 8, t, TEL_BATTERY, t->battery);
	bind_tel(st, 9, t, TEL_SECURE_VERSION, t->secure_version);
	if (step_done(st) < 0)
		return -1;
	return apply_running(reg, rec);
}

static int run(struct registry *reg, const char *sql, const char *types,
    ...);

/*
 * A trigger the broker took: the owed row it answers, or a new one. A
 * retained trigger replaces the device's earlier retained one on the
 * broker, so that one counts as cleared.
 */
static int
apply_trigger(struct registry *reg, const struct record *rec)
{
	int64_t id = rec->trigger_id;
	const char *dev = rec->device[0] ? rec->device : NULL;

	if (rec->kind == RECORD_CLEARED)
		return run(reg, "UPDATE trigger SET cleared_at = ?2 WHERE id ="
		    " ?1 AND cleared_at IS NULL", "ii", id, rec->at) ==
		    SQLITE_DONE ? 0 : -1;
	if (dev != NULL && rec->retained &&
	    run(reg, "UPDATE trigger SET cleared_at = ?2 WHERE device = ?1"
	    " AND retained = 1 AND sent_at IS NOT NULL AND cleared_at IS"
	    " NULL", "ti", dev, rec->at) != SQLITE_DONE)
		return -1;
	if (id > 0)
		return run(reg, "UPDATE trigger SET sent_at = ?2, release ="
		    " nullif(?3, 0), rollout = nullif(?4, 0), stage = ?5,"
		    " retained = ?6 WHERE id = ?1",
		    "iiiiii", id, rec->at, rec->offer_release, rec->offer_rollout,
		    (int64_t)rec->offer_stage, (int64_t)rec->retained) ==
		    SQLITE_DONE ? 0 : -1;
	return run(reg, "INSERT INTO trigger (device, grp, release, rollout,"
	    " stage, reason, retained, requested_at, sent_at) VALUES (?1, ?2,"
	    " nullif(?3, 0), nullif(?4, 0), ?5, ?6, ?7, ?8, ?8)", "ttiiitii",
	    dev, rec->group[0] ? rec->group : NULL, rec->offer_release,
	    rec->offer_rollout, (int64_t)rec->offer_stage, rec->reason,
	    (int64_t)rec->retained, rec->at) == SQLITE_DONE ? 0 : -1;
}

/*
 * A silent device's attempt whose image went out at least the stage's
 * soak ago, and at least infer_after (?3, rec->settle).
 */
#define SILENT_SETTLED                                                         \
	" device = ?1 AND silent = 1 AND delivered = 1 AND state IN"           \
	" ('downloading', 'installed') AND ?2 - delivered_at >= max(?3,"       \
	" ifnull((SELECT soak_s FROM rollout_stage s WHERE s.rollout ="        \
	" attempt.rollout AND s.no = attempt.stage), 0))"
/*
 * ... and polled on since its first poll after that (quiet_at), long
 * enough for a fetch to have followed that poll (30 s, or infer_after
 * when shorter): the image stayed.
 */
#define SILENT_STAYED                                                          \
	SILENT_SETTLED " AND quiet_at IS NOT NULL AND ?2 - quiet_at >="        \
	" min(?3, 30)"

/*
 * A silent library's poll: what it tells of outcomes by what it does.
 * Fetching an image again after it was delivered means it did not stay
 * (rec->refetch_release); polling on without it means it did.
 */
static int
apply_silent(struct registry *reg, const struct record *rec)
{
	if (rec->refetch_release > 0 && run(reg, "UPDATE attempt SET state ="
	    " 'rollback', inferred = 1, reason = 'inferred: fetched the image"
	    " again after it was delivered', updated_at = ?3, finished_at ="
	    " ?3 WHERE device = ?1 AND release = ?2 AND delivered = 1 AND"
	    " state IN " OPEN_STATES, "tii", rec->device, rec->refetch_release,
	    rec->at) != SQLITE_DONE)
		return -1;
	/* what it runs now: what it was sent (before the attempt closes) */
	if (run(reg, "UPDATE device SET version = a.to_version,"
	    " running_sha256 = art.app_sha256 FROM attempt a JOIN release r ON"
	    " r.id = a.release JOIN artifact art ON art.sha256 = r.artifact"
	    " WHERE device.id = ?1 AND a.id = (SELECT id FROM attempt WHERE"
	    SILENT_STAYED " ORDER BY id DESC LIMIT 1)", "tii", rec->device,
	    rec->at, rec->settle) != SQLITE_DONE ||
	    run(reg, "UPDATE attempt SET state = 'success', inferred = 1,"
	    " reason = 'inferred: polled on without fetching it again',"
	    " updated_at = ?2, finished_at = ?2 WHERE" SILENT_STAYED, "tii",
	    rec->device, rec->at, rec->settle) != SQLITE_DONE)
		return -1;
	return run(reg, "UPDATE attempt SET quiet_at = ?2 WHERE"
	    SILENT_SETTLED " AND quiet_at IS NULL", "tii", rec->device,
	    rec->at, rec->settle) == SQLITE_DONE ? 0 : -1;
}

static int
apply_checkin(struct registry *reg, const struct record *rec)
{
	sqlite3_stmt *st = reg->w[W_CHECKIN];

	sqlite3_bind_text(st, 1, rec->device, -1, SQLITE_STATIC);
	bind_text(st, 2, rec->product);
	/* "": unknown, as for a device whose image is not in the store */
	bind_text(st, 3, rec->fs_mode ? NULL : rec->version);
	bind_text(st, 4, rec->address);
	sqlite3_bind_int64(st, 5, rec->at);
	bind_text(st, 6, rec->hw_rev);
	bind_text(st, 7, rec->running_sha256);
	bind_text(st, 8, rec->chip);
	if (rec->secure_version >= 0)
		sqlite3_bind_int64(st, 9, rec->secure_version);
	if (rec->free_space >= 0)
		sqlite3_bind_int64(st, 10, rec->free_space);
	bind_text(st, 11, rec->deferred);
	bind_tel(st, 12, &rec->tel, TEL_BATTERY, rec->tel.battery);
	bind_tel(st, 13, &rec->tel, TEL_RESET_REASON, rec->tel.reset_reason);
	bind_tel(st, 14, &rec->tel, TEL_UPTIME, rec->tel.uptime);
	/* neither a filesystem request nor a silent library tells the app */
	sqlite3_bind_int(st, 15, rec->fs_mode || rec->silent);
	if (step_done(st) < 0 || (!rec->fs_mode && apply_running(reg, rec) <
	    0) || (rec->silent && apply_silent(reg, rec) < 0))
		return -1;
	/* and maybe, in the same answer, the next step is offered */
	if (rec->offer_release <= 0)
		return 0;
	st = reg->w[W_OFFER];
	sqlite3_bind_text(st, 1, rec->device, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, rec->offer_release);
	sqlite3_bind_int64(st, 3, rec->offer_rollout);
	sqlite3_bind_text(st, 4, rec->version, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, rec->offer_version, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, rec->at);
	sqlite3_bind_int(st, 7, rec->offer_stage);
	sqlite3_bind_int(st, 8, rec->silent);
	return step_done(st);
}

/*
 * A filesystem image sent whole is installed: HTTPUpdate writes it in
 * place (it checks x-MD5 itself) and no boot has to accept it. Its
 * attempt succeeds and the device has that image now.
 */
static int
delivered_fs(struct registry *reg, const struct record *rec)
{
	if (run(reg, "UPDATE attempt SET state = 'success', updated_at = ?3,"
	    " finished_at = ?3 WHERE device = ?1 AND state IN " OPEN_STATES
	    " AND release IN (SELECT id FROM release WHERE artifact = ?2 AND"
	    " kind != 'app')", "tti", rec->device, rec->artifact, rec->at) !=
	    SQLITE_DONE)
		return -1;
	return run(reg, "UPDATE device SET fs_sha256 = ?2, fs_version ="
	    " (SELECT version FROM artifact WHERE sha256 = ?2) WHERE id = ?1"
	    " AND (SELECT kind FROM artifact WHERE sha256 = ?2) != 'app'",
	    "tt", rec->device, rec->artifact) == SQLITE_DONE ? 0 : -1;
}

/* A device fetched (part of) an artifact: seen, and its offer is on. */
static int
apply_download(struct registry *reg, const struct record *rec)
{
	sqlite3_stmt *st = reg->w[W_SEEN];

	if (rec->kind == RECORD_DELIVERED) {
		st = reg->w[W_DELIVERED];
		sqlite3_bind_text(st, 1, rec->device, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, rec->artifact, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, rec->at);
		if (step_done(st) < 0 || delivered_fs(reg, rec) < 0)
			return -1;
		/* it cannot say otherwise: take it as running the image */
		if (rec->assume_installed && run(reg, "UPDATE device SET"
		    " running_sha256 = (SELECT app_sha256 FROM artifact WHERE"
		    " sha256 = ?2), version = (SELECT version FROM artifact"
		    " WHERE sha256 = ?2) WHERE id = ?1", "tt", rec->device,
		    rec->artifact) != SQLITE_DONE)
			return -1;
		return 0;
	}

	sqlite3_bind_text(st, 1, rec->device, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, rec->at);
	bind_text(st, 3, rec->address);
	if (step_done(st) < 0)
		return -1;
	st = reg->w[W_DOWNLOAD];
	sqlite3_bind_text(st, 1, rec->device, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, rec->artifact, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, rec->at);
	return step_done(st);
}

static int
apply_report(struct registry *reg, const struct record *rec)
{
	const struct telemetry *t = &rec->tel;
	const char *state = result_names[rec->result];
	char from[OTAD_VERSION_MAX + 1] = "";
	sqlite3_stmt *st;
	int64_t attempt = 0;
	int rc;

	/* the version it ran before this report, for a new attempt row */
	st = reg->w[W_DEVICE_VERSION];
	sqlite3_bind_text(st, 1, rec->device, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW &&
	    sqlite3_column_text(st, 0) != NULL)
		snprintf(from, sizeof(from), "%s",
		    (const char *)sqlite3_column_text(st, 0));
	sqlite3_reset(st);

	st = reg->w[W_REPORT_DEVICE];
	sqlite3_bind_text(st, 1, rec->device, -1, SQLITE_STATIC);
	/* only a success says what the device runs now */
	bind_text(st, 2, rec->result == REPORT_SUCCESS ? rec->version : NULL);
	bind_text(st, 3, rec->address);
	sqlite3_bind_int64(st, 4, rec->at);
	bind_tel(st, 5, t, TEL_UPTIME, t->uptime);
	bind_tel(st, 6, t, TEL_FREE_HEAP, t->free_heap);
	bind_tel(st, 7, t, TEL_RSSI, t->rssi);
	bind_tel(st, 8, t, TEL_RESET_REASON, t->reset_reason);
	bind_tel(st, 9, t, TEL_BATTERY, t->battery);
	bind_tel(st, 10, t, TEL_SECURE_VERSION, t->secure_version);
	if (step_done(st) < 0 || crash_flags(reg, rec) < 0)
		return -1;

	st = reg->w[W_OPEN_ATTEMPT];
	sqlite3_bind_text(st, 1, rec->device, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, rec->version, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		attempt = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (attempt > 0) {
		st = reg->w[W_UPDATE_ATTEMPT];
		sqlite3_bind_int64(st, 1, attempt);
		sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
		bind_text(st, 3, rec->reason);
		sqlite3_bind_int64(st, 4, rec->at);
		return step_done(st);
	}
	/*
	 * No attempt waiting: a repeated report changes nothing; any other
	 * is an attempt of its own, its version unknown ('') when the
	 * report named none (the API lets only outcomes through so).
	 */
	st = reg->w[W_LAST_ATTEMPT];
	sqlite3_bind_text(st, 1, rec->device, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL &&
	    strcmp((const char *)sqlite3_column_text(st, 0), rec->version) ==
	    0 && strcmp((const char *)sqlite3_column_text(st, 1), state) == 0) {
		sqlite3_reset(st);
		return 0;
	}
	sqlite3_reset(st);
	st = reg->w[W_INSERT_ATTEMPT];
	sqlite3_bind_text(st, 1, rec->device, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, rec->version, -1, SQLITE_STATIC);
	bind_text(st, 3, from);
	sqlite3_bind_text(st, 4, state, -1, SQLITE_STATIC);
	bind_text(st, 5, rec->reason);
	sqlite3_bind_int64(st, 6, rec->at);
	return step_done(st);
}

static const char *const record_names[] = {
	[RECORD_CHECKIN] = "check-in",
	[RECORD_REPORT] = "report",
	[RECORD_DOWNLOAD] = "a download",
	[RECORD_DELIVERED] = "a delivery",
	[RECORD_TELEMETRY] = "telemetry",
	[RECORD_TRIGGER] = "a trigger",
	[RECORD_CLEARED] = "a cleared trigger",
};

/* Every kind but a report, whose statements each stand alone. */
static int
apply_one(struct registry *reg, const struct record *rec)
{
	switch (rec->kind) {
	case RECORD_CHECKIN:
		return apply_checkin(reg, rec);
	case RECORD_TELEMETRY:
		return apply_telemetry(reg, rec);
	case RECORD_TRIGGER:
	case RECORD_CLEARED:
		return apply_trigger(reg, rec);
	default:
		return apply_download(reg, rec);
	}
}

/* The writer waits for the database: say since when, once. */
static void
writer_blocked(struct registry *reg)
{
	long long none = 0;

	atomic_compare_exchange_strong(&reg->busy_since, &none,
	    (long long)time(NULL));
}

/* BEGIN IMMEDIATE, waiting as long as an operator holds the database. */
static void
writer_begin(struct registry *reg)
{
	time_t last_log = 0;

	while (sqlite3_exec(reg->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	    SQLITE_OK) {
		time_t now = time(NULL);

		writer_blocked(reg);
		if (now - last_log >= 10) {
			/* every record queued, not only this batch */
			log_warnx("database is busy (%s); %zu records wait",
			    sqlite3_errmsg(reg->db),
			    (size_t)atomic_load(&reg->depth));
			last_log = now;
		}
	}
}

int64_t
registry_stalled(struct registry *reg)
{
	long long since = atomic_load(&reg->busy_since);
	int64_t secs;

	if (since == 0)
		return 0;
	secs = (int64_t)time(NULL) - since;
	return secs > 0 ? secs : 1;
}

static void
writer_apply(struct registry *reg, struct record *batch, size_t count)
{
	struct record *rec;
	int durable = 0, rc;
	time_t last_log = 0;

	for (rec = batch; rec != NULL; rec = rec->next)
		durable |= rec->durable;
	/*
	 * WAL with synchronous=NORMAL does not fsync at commit; FULL does,
	 * and its fsync also covers every earlier commit. So check-ins alone
	 * cost no fsync and a batch with a report pays one for all.
	 */
	sqlite3_exec(reg->db, durable ? "PRAGMA synchronous = FULL"
				      : "PRAGMA synchronous = NORMAL",
	    NULL, NULL, NULL);
	writer_begin(reg);
	for (rec = batch; rec != NULL; rec = rec->next) {
		/*
		 * A report is all or nothing (savepoint). A check-in's
		 * statements each stand alone, and check-ins are most of the
		 * traffic, so they go without.
		 */
		if (rec->kind != RECORD_REPORT) {
			if (apply_one(reg, rec) < 0) {
				log_warnx("cannot record %s of '%s': %s",
				    record_names[rec->kind], rec->device,
				    sqlite3_errmsg(reg->db));
				rec->err = OTAD_ERR_DB;
			}
			continue;
		}
		step_done(reg->w[W_SAVEPOINT]);
		if (apply_report(reg, rec) < 0) {
			log_warnx("cannot record report of '%s': %s",
			    rec->device, sqlite3_errmsg(reg->db));
			rec->err = OTAD_ERR_DB;
			step_done(reg->w[W_ROLLBACK_TO]);
		}
		step_done(reg->w[W_RELEASE]);
	}
	while ((rc = sqlite3_exec(reg->db, "COMMIT", NULL, NULL, NULL)) !=
	    SQLITE_OK) {
		time_t now = time(NULL);

		if (rc != SQLITE_BUSY) {
			log_warnx("cannot commit %zu records: %s", count,
			    sqlite3_errmsg(reg->db));
			sqlite3_exec(reg->db, "ROLLBACK", NULL, NULL, NULL);
			for (rec = batch; rec != NULL; rec = rec->next)
				rec->err = OTAD_ERR_DB;
			atomic_store(&reg->busy_since, 0);
			return;
		}
		writer_blocked(reg);
		if (now - last_log >= 10) {
			log_warnx("commit waits: database is busy; %zu records "
			    "wait", (size_t)atomic_load(&reg->depth));
			last_log = now;
		}
	}
	atomic_store(&reg->busy_since, 0);
}

/* Two lists in seq order merged into one. */
static struct record *
merge_by_seq(struct record *a, struct record *b)
{
	struct record head, *tail = &head;

	while (a != NULL && b != NULL) {
		if (a->seq < b->seq) {
			tail->next = a;
			a = a->next;
		} else {
			tail->next = b;
			b = b->next;
		}
		tail = tail->next;
	}
	tail->next = a != NULL ? a : b;
	return head.next;
}

/*
 * The records in seq order that may be applied now: the held ones and
 * those collected, up to the first seq missing; the rest stay held.
 */
static struct record *
in_order(struct registry *reg, struct record *collected, size_t *count)
{
	struct record *all = merge_by_seq(reg->held, collected), *rec;
	struct record *last = NULL;
	size_t n = 0, total = *count + reg->nheld;

	for (rec = all; rec != NULL && rec->seq == reg->next_seq + n;
	    rec = rec->next) {
		last = rec;
		n++;
	}
	reg->held = rec;
	reg->nheld = total - n;
	if (last == NULL)
		return NULL;
	last->next = NULL;
	reg->next_seq += n;
	*count = n;
	return all;
}

/* Take up to BATCH_MAX records from the producers' queues, in order. */
static struct record *
writer_collect(struct registry *reg, size_t *count)
{
	struct record *head = NULL;
	unsigned i, n = atomic_load(&reg->nproducers);

	*count = 0;
	for (i = 0; i < n && *count < BATCH_MAX; i++) {
		struct producer *p = reg->producers[i];

		pthread_mutex_lock(&p->mu);
		if (p->head != NULL) {
			/* each producer's queue is in seq order already */
			head = merge_by_seq(head, p->head);
			*count += p->len;
			p->head = p->tail = NULL;
			p->len = 0;
			pthread_cond_broadcast(&p->not_full);
		}
		pthread_mutex_unlock(&p->mu);
	}
	return in_order(reg, head, count);
}

static void *
writer_main(void *arg)
{
	struct registry *reg = arg;
	struct pollfd pfd = {.fd = reg->efd, .events = POLLIN};
	const struct timespec nap = {0, NAP_NS};

	for (;;) {
		struct record *batch, *rec, *next;
		uint64_t ticks;
		size_t count;

		/*
		 * Say we are idle before the last look: a producer that
		 * queues after the look sees idle and wakes us; one that
		 * queued before it is found by the look.
		 */
		atomic_store(&reg->idle, 1);
		batch = writer_collect(reg, &count);
		if (batch == NULL && reg->held != NULL) {
			/* the record before them is being queued: a moment */
			atomic_store(&reg->idle, 0);
			nanosleep(&nap, NULL);
			continue;
		}
		if (batch == NULL) {
			if (atomic_load(&reg->stopping))
				break;
			if (poll(&pfd, 1, 1000) > 0 &&
			    read(reg->efd, &ticks, sizeof(ticks)) < 0 &&
			    errno != EAGAIN)
				log_warn("writer wake-up");
			atomic_store(&reg->idle, 0);
			continue;
		}
		atomic_store(&reg->idle, 0);
		writer_apply(reg, batch, count);
		atomic_fetch_sub(&reg->depth, count);
		for (rec = batch; rec != NULL; rec = next) {
			next = rec->next;
			if (rec->done != NULL)
				rec->done(rec->done_arg, rec->err);
			free(rec);
		}
		/*
		 * Under a steady trickle, a short nap turns many tiny
		 * transactions (and as many wake-ups) into a few larger ones;
		 * a report waits at most this much longer for its fsync.
		 */
		if (count < NAP_BELOW)
			nanosleep(&nap, NULL);
	}
	return NULL;
}

enum otad_err
registry_writer_start(struct registry *reg, unsigned queue_max)
{
	int i;

	for (i = 0; i < W_COUNT; i++)
		if (sqlite3_prepare_v3(reg->db, wsql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &reg->w[i], NULL) != SQLITE_OK)
			return db_error(reg->db, "cannot prepare statement");
	if ((reg->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		log_warn("eventfd");
		return OTAD_ERR_IO;
	}
	if (pthread_key_create(&reg->key, NULL) != 0)
		return OTAD_ERR_NOMEM;
	reg->key_made = 1;
	reg->queue_max = queue_max;
	if (pthread_create(&reg->thread, NULL, writer_main, reg) != 0) {
		log_warnx("cannot start the writer thread");
		return OTAD_ERR_NOMEM;
	}
	reg->running = 1;
	return OTAD_OK;
}

static struct producer *
producer_get(struct registry *reg)
{
	struct producer *p = pthread_getspecific(reg->key);
	unsigned n;

	if (p != NULL)
		return p;
	pthread_mutex_lock(&reg->producers_mu);
	n = atomic_load(&reg->nproducers);
	if (n == MAX_PRODUCERS) {
		/* more threads than slots: share one, still correct */
		p = reg->producers[(uintptr_t)pthread_self() % MAX_PRODUCERS];
	} else if ((p = calloc(1, sizeof(*p))) != NULL) {
		pthread_mutex_init(&p->mu, NULL);
		pthread_cond_init(&p->not_full, NULL);
		reg->producers[n] = p;
		atomic_store(&reg->nproducers, n + 1);
	}
	pthread_mutex_unlock(&reg->producers_mu);
	if (p != NULL)
		pthread_setspecific(reg->key, p);
	return p;
}

enum otad_err
registry_submit(struct registry *reg, struct record *rec)
{
	struct producer *p;
	uint64_t one = 1;
	int wake;

	if (!reg->running || atomic_load(&reg->stopping))
		return OTAD_ERR_SHUTDOWN;
	if ((p = producer_get(reg)) == NULL)
		return OTAD_ERR_NOMEM;
	rec->next = NULL;
	rec->err = OTAD_OK;
	pthread_mutex_lock(&p->mu);
	/*
	 * Full: a request is answered now (its caller decides what a
	 * dropped record costs); only a thread that serves none waits.
	 */
	if (p->len >= reg->queue_max && !rec->may_wait) {
		pthread_mutex_unlock(&p->mu);
		return OTAD_ERR_BUSY;
	}
	while (p->len >= reg->queue_max)
		pthread_cond_wait(&p->not_full, &p->mu);
	/* numbered as it is queued, under the lock the writer takes */
	rec->seq = atomic_fetch_add(&reg->seq, 1);
	wake = p->head == NULL;
	if (p->tail != NULL)
		p->tail->next = rec;
	else
		p->head = rec;
	p->tail = rec;
	p->len++;
	atomic_fetch_add(&reg->depth, 1);
	pthread_mutex_unlock(&p->mu);
	/*
	 * Only the first record into an empty queue, and only while the
	 * writer waits, costs a wake-up.
	 */
	if (wake && atomic_load(&reg->idle) &&
	    write(reg->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("cannot wake the writer");
	return OTAD_OK;
}

size_t
registry_queue_depth(struct registry *reg)
{
	return atomic_load(&reg->depth);
}

void
registry_close(struct registry *reg)
{
	unsigned i;
	int k;

	if (reg == NULL)
		return;
	if (reg->running) {
		uint64_t one = 1;

		atomic_store(&reg->stopping, 1);
		if (write(reg->efd, &one, sizeof(one)) < 0)
			log_warn("cannot wake the writer");
		pthread_join(reg->thread, NULL);
	}
	for (i = 0; i < atomic_load(&reg->nproducers); i++) {
		pthread_mutex_destroy(&reg->producers[i]->mu);
		pthread_cond_destroy(&reg->producers[i]->not_full);
		free(reg->producers[i]);
	}
	if (reg->key_made)
		pthread_key_delete(reg->key);
	for (k = 0; k < W_COUNT; k++)
		sqlite3_finalize(reg->w[k]);
	if (reg->efd >= 0)
		close(reg->efd);
	pthread_mutex_destroy(&reg->producers_mu);
	if (reg->db != NULL && sqlite3_close(reg->db) != SQLITE_OK)
		log_warnx("database close: %s", sqlite3_errmsg(reg->db));
	free(reg);
}

/* ---- readers ---- */

enum otad_err
registry_reader_open(const char *path, struct registry_reader **out)
{
	struct registry_reader *r;
	enum otad_err rc;
	int i;

	*out = NULL;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return OTAD_ERR_NOMEM;
	r->data_version = -1;
	if ((rc = db_open(path, SQLITE_OPEN_READWRITE, &r->db)) != OTAD_OK)
		goto fail;
	if ((rc = exec(r->db, "PRAGMA query_only = ON")) != OTAD_OK)
		goto fail;
	for (i = 0; i < R_COUNT; i++)
		if (sqlite3_prepare_v3(r->db, rsql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &r->s[i], NULL) != SQLITE_OK) {
			rc = db_error(r->db, "cannot prepare statement");
			goto fail;
		}
	*out = r;
	return OTAD_OK;
fail:
	registry_reader_free(r);
	return rc;
}

void
registry_reader_free(struct registry_reader *r)
{
	int i;

	if (r == NULL)
		return;
	for (i = 0; i < R_COUNT; i++)
		sqlite3_finalize(r->s[i]);
	sqlite3_close(r->db);
	free(r);
}

static void
copy_col(char *dst, size_t len, sqlite3_stmt *st, int col)
{
	const unsigned char *s = sqlite3_column_text(st, col);

	snprintf(dst, len, "%s", s ? (const char *)s : "");
}

/*
 * One row by key through a prepared reader statement: fill copies its
 * columns. OTAD_ERR_NOT_FOUND when there is none.
 */
static enum otad_err
point_lookup(struct registry_reader *r, enum rstmt which, const char *key,
    void (*fill)(sqlite3_stmt *, void *), void *out, const char *what)
{
	sqlite3_stmt *st = r->s[which];
	enum otad_err rc = OTAD_ERR_NOT_FOUND;
	int step;

	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	step = sqlite3_step(st);
	if (step == SQLITE_ROW) {
		fill(st, out);
		rc = OTAD_OK;
	} else if (step != SQLITE_DONE) {
		rc = db_error(r->db, what);
	}
	sqlite3_reset(st);
	return rc;
}

static void
fill_device(sqlite3_stmt *st, void *p)
{
	struct device_row *out = p;

	copy_col(out->version, sizeof(out->version), st, 0);
	copy_col(out->product, sizeof(out->product), st, 1);
	out->blocked = sqlite3_column_int(st, 2);
	copy_col(out->chip, sizeof(out->chip), st, 3);
	copy_col(out->hw_rev, sizeof(out->hw_rev), st, 4);
	out->secure_version = sqlite3_column_int64(st, 5);
	copy_col(out->token_hash, sizeof(out->token_hash), st, 6);
	copy_col(out->group, sizeof(out->group), st, 7);
	out->battery = sqlite3_column_int(st, 8);
	copy_col(out->running_sha256, sizeof(out->running_sha256), st, 9);
	copy_col(out->fs_version, sizeof(out->fs_version), st, 10);
}

static void
fill_refusal(sqlite3_stmt *st, void *p)
{
	struct device_refusal *out = p;

	out->pending_release = sqlite3_column_int64(st, 0);
	copy_col(out->pending_from, sizeof(out->pending_from), st, 1);
	out->rolled_back_release = sqlite3_column_int64(st, 2);
	out->pending_installed = sqlite3_column_int(st, 3);
	out->pending_delivered_at = sqlite3_column_int64(st, 4);
}

enum otad_err
registry_device_refusal(struct registry_reader *r, const char *id,
    struct device_refusal *out)
{
	return point_lookup(r, R_REFUSAL, id, fill_refusal, out,
	    "attempt lookup");
}

struct id_buf {
	char *id;
	size_t len;
};

static void
fill_id(sqlite3_stmt *st, void *p)
{
	struct id_buf *b = p;

	copy_col(b->id, b->len, st, 0);
}

enum otad_err
registry_token_owner(struct registry_reader *r, const char *token_hash,
    char *id, size_t idlen)
{
	struct id_buf b = {id, idlen};

	return point_lookup(r, R_TOKEN, token_hash, fill_id, &b,
	    "token lookup");
}

enum otad_err
registry_device_get(struct registry_reader *r, const char *id,
    struct device_row *out)
{
	return point_lookup(r, R_DEVICE, id, fill_device, out,
	    "device lookup");
}

static void
fill_running(sqlite3_stmt *st, void *p)
{
	struct running_image *out = p;

	copy_col(out->chip, sizeof(out->chip), st, 0);
	copy_col(out->version, sizeof(out->version), st, 1);
	out->secure_version = (uint32_t)sqlite3_column_int64(st, 2);
	copy_col(out->sha256, sizeof(out->sha256), st, 3);
}

static void
fill_sha(sqlite3_stmt *st, void *p)
{
	copy_col(p, 65, st, 0);
}

enum otad_err
registry_open_artifact(struct registry_reader *r, const char *device,
    char *sha256)
{
	return point_lookup(r, R_OPEN_ARTIFACT, device, fill_sha, sha256,
	    "download lookup");
}

enum otad_err
registry_running_image(struct registry_reader *r, const char *app_sha256,
    struct running_image *out)
{
	return point_lookup(r, R_RUNNING, app_sha256, fill_running, out,
	    "running image lookup");
}

enum otad_err
registry_catalog_generation(struct registry_reader *r, int64_t *generation)
{
	sqlite3_stmt *st = r->s[R_DATA_VERSION];
	int64_t dv;

	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		return db_error(r->db, "data_version");
	}
	dv = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (dv != r->data_version) {
		st = r->s[R_GENERATION];
		if (sqlite3_step(st) != SQLITE_ROW) {
			sqlite3_reset(st);
			return db_error(r->db, "catalog generation");
		}
		r->generation = sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
		r->data_version = dv;
	}
	*generation = r->generation;
	return OTAD_OK;
}

static int
offer_newest_first(const void *a, const void *b)
{
	const struct offer *x = a, *y = b;
	int c = semver_compare(y->version, x->version);

	if (c != 0)
		return c;
	return y->rollout_id > x->rollout_id ? 1 : -1;
}

static void
offer_row(sqlite3_stmt *st, struct offer *o)
{
	memset(o, 0, sizeof(*o));
	o->rollout_id = sqlite3_column_int64(st, 0);
	o->release_id = sqlite3_column_int64(st, 1);
	copy_col(o->version, sizeof(o->version), st, 2);
	copy_col(o->product, sizeof(o->product), st, 3);
	copy_col(o->sha256, sizeof(o->sha256), st, 4);
	copy_col(o->md5, sizeof(o->md5), st, 5);
	o->size = (uint64_t)sqlite3_column_int64(st, 6);
	copy_col(o->chip, sizeof(o->chip), st, 7);
	copy_col(o->hw_rev, sizeof(o->hw_rev), st, 8);
	o->secure_version = (uint32_t)sqlite3_column_int64(st, 9);
	copy_col(o->key_id, sizeof(o->key_id), st, 10);
	if (sqlite3_column_type(st, 11) == SQLITE_BLOB &&
	    (size_t)sqlite3_column_bytes(st, 11) <= sizeof(o->sig)) {
		o->siglen = (size_t)sqlite3_column_bytes(st, 11);
		memcpy(o->sig, sqlite3_column_blob(st, 11), o->siglen);
	} else {
		o->key_id[0] = '\0';
	}
	copy_col(o->min_from, sizeof(o->min_from), st, 12);
	o->forced = sqlite3_column_int(st, 13);
	o->kind = (enum artifact_kind)fsimg_kind_parse(
	    (const char *)sqlite3_column_text(st, 14));
	if ((int)o->kind < 0)
		o->kind = KIND_APP; /* the CHECK constraint allows no other */
	/* a release on its own reaches everyone, any time */
	o->ring_max = 10000;
	o->everyone = 1;
	o->window.start = o->window.end = -1;
	o->min_battery = -1;
}

/*
 * The plan columns of an R_OFFERS row, and the stages reached so far.
 * A plan edited by hand into nonsense closes the window rather than
 * open it wider than the operator meant.
 */
static void
offer_plan(struct registry_reader *r, sqlite3_stmt *row, struct offer *o)
{
	sqlite3_stmt *st = r->s[R_STAGES];
	const char *w, *d, *off;

	o->stage = sqlite3_column_int(row, 16);
	w = (const char *)sqlite3_column_text(row, 17);
	d = (const char *)sqlite3_column_text(row, 18);
	off = (const char *)sqlite3_column_text(row, 19);
	o->min_battery = sqlite3_column_int(row, 20);
	o->downgrade = sqlite3_column_int(row, 21);
	o->everyone = sqlite3_column_int(row, 22);
	if ((w[0] && stages_parse_window(w, &o->window) < 0) ||
	    (d[0] && stages_parse_days(d, &o->window.days) < 0) ||
	    (off[0] && stages_parse_offset(off, &o->window.offset_min) < 0)) {
		log_warnx("rollout %lld: unreadable window '%s' days '%s' "
		    "offset '%s'; offering nothing until it is fixed",
		    (long long)o->rollout_id, w, d, off);
		o->ring_max = 0; /* reaches no one */
		return;
	}
	if (sqlite3_column_int(row, 15) == 0)
		return; /* a publish: everyone */
	o->ring_max = 0;
	sqlite3_bind_int64(st, 1, o->rollout_id);
	sqlite3_bind_int(st, 2, o->stage);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *g = (const char *)sqlite3_column_text(st, 0);
		unsigned pct = (unsigned)(sqlite3_column_double(st, 1) * 100 +
		    0.5);

		if (g[0] != '\0' && o->ngroups < 4)
			snprintf(o->groups[o->ngroups++],
			    sizeof(o->groups[0]), "%s", g);
		if (pct > o->ring_max)
			o->ring_max = pct;
	}
	sqlite3_reset(st);
}

/* Every row of an offer-shaped statement, newest version first. */
static enum otad_err
load_offer_rows(struct registry_reader *r, enum rstmt which,
    struct offer **offers, size_t *n)
{
	sqlite3_stmt *st = r->s[which];
	struct offer *v = NULL, *grown;
	size_t len = 0, cap = 0;
	enum otad_err rc = OTAD_OK;
	int step;

	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		if (len == cap) {
			cap = cap ? cap * 2 : 8;
			if ((grown = realloc(v, cap * sizeof(*v))) == NULL) {
				rc = OTAD_ERR_NOMEM;
				break;
			}
			v = grown;
		}
		offer_row(st, &v[len]);
		if (which == R_OFFERS)
			offer_plan(r, st, &v[len]);
		len++;
	}
	if (rc == OTAD_OK && step != SQLITE_DONE)
		rc = db_error(r->db, "loading offers");
	sqlite3_reset(st);
	if (rc != OTAD_OK) {
		free(v);
		return rc;
	}
	if (len > 1)
		qsort(v, len, sizeof(*v), offer_newest_first);
	*offers = v;
	*n = len;
	return OTAD_OK;
}

static void
fill_offer(sqlite3_stmt *st, void *p)
{
	offer_row(st, p);
}

enum otad_err
registry_released_artifact(struct registry_reader *r, const char *sha256,
    struct offer *out)
{
	return point_lookup(r, R_RELEASED, sha256, fill_offer, out,
	    "artifact lookup");
}

enum otad_err
registry_load_offers(struct registry_reader *r, struct offer **offers,
    size_t *n)
{
	return load_offer_rows(r, R_OFFERS, offers, n);
}

enum otad_err
registry_load_stones(struct registry_reader *r, struct offer **stones,
    size_t *n)
{
	return load_offer_rows(r, R_STONES, stones, n);
}

/* ---- catalog (otactl) ---- */

void
registry_set_patience(struct registry *reg, int ms)
{
	sqlite3_busy_timeout(reg->db, ms);
}

void
registry_set_actor(struct registry *reg, const char *actor)
{
	snprintf(reg->actor, sizeof(reg->actor), "%s", actor);
}

void
registry_set_who(struct registry *reg, const char *who)
{
	snprintf(reg->who, sizeof(reg->who), "%s", who);
}

void
registry_set_approvals(struct registry *reg, unsigned approvals,
    const char *break_glass)
{
	reg->approvals = approvals;
	snprintf(reg->break_glass, sizeof(reg->break_glass), "%s",
	    break_glass ? break_glass : "");
}

static enum otad_err audit(struct registry *reg, const char *what);

/*
 * A start without a second operator's approval: refused (0, with why)
 * under the two-person rule, unless broken open (audited, 1). 1 when the
 * rule is off.
 */
static int
may_start_alone(struct registry *reg, const char *what, char *why,
    size_t whylen)
{
	char line[512];

	if (reg->approvals < 2)
		return 1;
	if (reg->break_glass[0] == '\0') {
		snprintf(why, whylen, "%s needs a second operator's approval "
		    "(rollout_approvals = %u)", what, reg->approvals);
		return 0;
	}
	log_warnx("%s started without approval by %s: break-glass: %s", what,
	    reg->actor, reg->break_glass);
	snprintf(line, sizeof(line), "break-glass: %s started without "
	    "approval: %s", what, reg->break_glass);
	return audit(reg, line) == OTAD_OK;
}

static int64_t
now_s(void)
{
	return (int64_t)time(NULL);
}

/* One row as a JSON object keyed by column name. */
static json_t *
row_json(sqlite3_stmt *st)
{
	json_t *o = json_object();
	int i, n = sqlite3_column_count(st);

	for (i = 0; o != NULL && i < n; i++) {
		const char *name = sqlite3_column_name(st, i);
		json_t *v;

		switch (sqlite3_column_type(st, i)) {
		case SQLITE_INTEGER:
			v = json_integer(sqlite3_column_int64(st, i));
			break;
		case SQLITE_FLOAT:
			v = json_real(sqlite3_column_double(st, i));
			break;
		case SQLITE_NULL:
			v = json_null();
			break;
		default:
			v = json_string(
			    (const char *)sqlite3_column_text(st, i));
			if (v == NULL) /* not UTF-8: never from our inputs */
				v = json_null();
		}
		json_object_set_new(o, name, v);
	}
	return o;
}

/*
 * Run sql with text parameters (NULL-terminated list) and return every row.
 */
static enum otad_err
query_rows(sqlite3 *db, json_t **rows, const char *sql, ...)
{
	sqlite3_stmt *st;
	const char *p;
	va_list ap;
	int i = 1, step;

	*rows = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_error(db, "query");
	va_start(ap, sql);
	while ((p = va_arg(ap, const char *)) != NULL)
		sqlite3_bind_text(st, i++, p, -1, SQLITE_TRANSIENT);
	va_end(ap);
	*rows = json_array();
	while ((step = sqlite3_step(st)) == SQLITE_ROW)
		json_array_append_new(*rows, row_json(st));
	if (step != SQLITE_DONE) {
		enum otad_err rc = db_error(db, "query");

		sqlite3_finalize(st);
		json_decref(*rows);
		*rows = NULL;
		return rc;
	}
	sqlite3_finalize(st);
	return OTAD_OK;
}

static enum otad_err
audit(struct registry *reg, const char *what)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(reg->db, "INSERT INTO audit (at, actor, what)"
	    " VALUES (?1, ?2, ?3)", -1, &st, NULL) != SQLITE_OK)
		return db_error(reg->db, "audit");
	sqlite3_bind_int64(st, 1, now_s());
	sqlite3_bind_text(st, 2, reg->actor, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, what, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? OTAD_OK : db_error(reg->db, "audit");
}

/* BEGIN IMMEDIATE and name ourselves for the audit triggers. */
static enum otad_err
catalog_begin(struct registry *reg)
{
	sqlite3_stmt *st;
	enum otad_err rc;

	if ((rc = exec(reg->db, "BEGIN IMMEDIATE")) != OTAD_OK)
		return rc;
	if (sqlite3_prepare_v2(reg->db, "INSERT INTO audit_actor VALUES (?1)",
	    -1, &st, NULL) != SQLITE_OK) {
		exec(reg->db, "ROLLBACK");
		return db_error(reg->db, "audit actor");
	}
	sqlite3_bind_text(st, 1, reg->actor, -1, SQLITE_STATIC);
	sqlite3_step(st);
	sqlite3_finalize(st);
	return OTAD_OK;
}

static enum otad_err
catalog_commit(struct registry *reg)
{
	enum otad_err rc;

	if ((rc = exec(reg->db, "DELETE FROM audit_actor")) != OTAD_OK ||
	    (rc = exec(reg->db, "COMMIT")) != OTAD_OK)
		exec(reg->db, "ROLLBACK");
	return rc;
}

static enum otad_err
catalog_fail(struct registry *reg, enum otad_err rc)
{
	exec(reg->db, "ROLLBACK");
	return rc;
}

/* catalog_begin, saying why in why when it fails */
static enum otad_err
catalog_open(struct registry *reg, char *why, size_t whylen)
{
	enum otad_err rc = catalog_begin(reg);

	if (rc != OTAD_OK)
		snprintf(why, whylen, "database: %s", otad_strerror(rc));
	return rc;
}

/* The audit row for what, then commit; on error roll it all back. */
static enum otad_err
catalog_close(struct registry *reg, const char *what, char *why,
    size_t whylen)
{
	enum otad_err rc;

	if ((rc = audit(reg, what)) != OTAD_OK ||
	    (rc = catalog_commit(reg)) != OTAD_OK) {
		snprintf(why, whylen, "database: %s", otad_strerror(rc));
		return catalog_fail(reg, rc);
	}
	return OTAD_OK;
}

/*
 * Prepare and run sql with bound values, one letter each in types: "t"
 * text (NULL or "" for NULL), "i" int64, "d" double, "b" blob (pointer
 * and size_t). Returns the step's result code: SQLITE_DONE when it went
 * through. Parameters a statement does not have are left unbound.
 */
static int
run(struct registry *reg, const char *sql, const char *types, ...)
{
	sqlite3_stmt *st;
	va_list ap;
	int i, step;

	if (sqlite3_prepare_v2(reg->db, sql, -1, &st, NULL) != SQLITE_OK)
		return sqlite3_errcode(reg->db);
	va_start(ap, types);
	for (i = 0; types[i] != '\0'; i++) {
		if (types[i] == 't') {
			bind_text(st, i + 1, va_arg(ap, const char *));
		} else if (types[i] == 'i') {
			sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
		} else if (types[i] == 'd') {
			sqlite3_bind_double(st, i + 1, va_arg(ap, double));
		} else {
			const void *b = va_arg(ap, const void *);

			sqlite3_bind_blob(st, i + 1, b, (int)va_arg(ap, size_t),
			    SQLITE_STATIC);
		}
	}
	va_end(ap);
	step = sqlite3_step(st);
	sqlite3_finalize(st);
	return step;
}

/* A statement that failed: why says so; the transaction is rolled back. */
static enum otad_err
catalog_db_fail(struct registry *reg, char *why, size_t whylen)
{
	snprintf(why, whylen, "database: %s", sqlite3_errmsg(reg->db));
	return catalog_fail(reg, OTAD_ERR_DB);
}

/* INSERT INTO signature inside an open catalog transaction. */
static enum otad_err
insert_signature(struct registry *reg, const char *sha256, const char *key,
    const uint8_t *sig, size_t siglen, char *why, size_t whylen)
{
	if (run(reg, "INSERT INTO signature (artifact, key, sig, created)"
	    " VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO UPDATE SET sig ="
	    " excluded.sig, created = excluded.created", "ttbi", sha256, key,
	    sig, siglen, now_s()) != SQLITE_DONE)
		return catalog_db_fail(reg, why, whylen);
	return OTAD_OK;
}

enum otad_err
registry_signature_add(struct registry *reg, const char *sha256,
    const char *key, const uint8_t *sig, size_t siglen, char *why,
    size_t whylen)
{
	char what[256];
	enum otad_err rc;

	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK ||
	    (rc = insert_signature(reg, sha256, key, sig, siglen, why,
	    whylen)) != OTAD_OK)
		return rc;
	snprintf(what, sizeof(what), "artifact sign %s key %s", sha256, key);
	return catalog_close(reg, what, why, whylen);
}

enum otad_err
registry_artifact_signatures(struct registry *reg, const char *sha256,
    json_t **rows)
{
	return query_rows(reg->db, rows, "SELECT s.key, k.algo, k.state,"
	    " s.created FROM signature s JOIN signing_key k ON k.name = s.key"
	    " WHERE s.artifact = ?1 AND k.state != 'revoked' ORDER BY"
	    " s.created", sha256, ARGS_END);
}

enum otad_err
registry_artifact_add(struct registry *reg, const struct store_artifact *art,
    const char *version, const char *product, const char *key,
    const uint8_t *sig, size_t siglen, char *why, size_t whylen)
{
	/* a filesystem image is for any chip */
	const char *chip = art->kind != KIND_APP ? "" :
	    espimg_chip_name(art->image.chip_id);
	const struct espimg_info *img = &art->image;
	char what[256], date[40], app[65] = "";
	enum otad_err rc;
	int step;

	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK)
		return rc;
	if (art->kind == KIND_APP)
		snprintf(date, sizeof(date), "%s %s", img->build_date,
		    img->build_time);
	else
		date[0] = '\0';
	if (img->hash_appended)
		otad_hex(img->app_sha256, 32, app);
	step = run(reg, "INSERT INTO artifact (sha256, md5, size, version,"
	    " product, chip, created, project, idf_ver, desc_version,"
	    " build_date, secure_version, image_len, app_sha256, sig_blocks,"
	    " kind) VALUES (?1, ?2, ?3, ?4, ?5, ifnull(?6, ''), ?7,"
	    " nullif(?8, ''),"
	    " nullif(?9, ''), nullif(?10, ''), nullif(?11, ''), ?12,"
	    " nullif(?13, 0), ?14, ?15, ?16)", "ttitttittttiitit", art->sha256,
	    art->md5, (int64_t)art->size, version, product, chip ? chip :
	    "unknown", now_s(), img->project_name, img->idf_ver, img->version,
	    date, (int64_t)img->secure_version, (int64_t)img->image_len, app,
	    (int64_t)img->nsig, fsimg_kind_name(art->kind));
	if (step == SQLITE_CONSTRAINT) {
		snprintf(why, whylen, "artifact %s is already in the store",
		    art->sha256);
		return catalog_fail(reg, OTAD_ERR_EXISTS);
	}
	if (step != SQLITE_DONE)
		return catalog_db_fail(reg, why, whylen);
	if (key != NULL && (rc = insert_signature(reg, art->sha256, key, sig,
	    siglen, why, whylen)) != OTAD_OK)
		return rc;
	snprintf(what, sizeof(what), "artifact add %s version %s%s%s%s",
	    art->sha256, version, art->kind != KIND_APP ? " kind " : "",
	    art->kind != KIND_APP ? fsimg_kind_name(art->kind) : "",
	    key ? " signed by " : "");
	if (key != NULL)
		snprintf(what + strlen(what), sizeof(what) - strlen(what),
		    "%s", key);
	return catalog_close(reg, what, why, whylen);
}

static int
hex_prefix(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return i >= 6 && i <= 64;
}

enum otad_err
registry_artifact_get(struct registry *reg, const char *sha, json_t **row,
    char *why, size_t whylen)
{
	char pattern[80];
	json_t *rows;
	enum otad_err rc;

	*row = NULL;
	if (!hex_prefix(sha)) {
		snprintf(why, whylen, "'%s' is not a SHA-256 (or a prefix of "
		    "6 or more lower-case hex digits)", sha);
		return OTAD_ERR_INVALID;
	}
	snprintf(pattern, sizeof(pattern), "%s*", sha);
	rc = query_rows(reg->db, &rows, "SELECT sha256, size, md5, version,"
	    " product, kind, chip, project, idf_ver, desc_version, build_date,"
	    " secure_version, image_len, app_sha256, sig_blocks,"
	    " created, (SELECT count(*) FROM release"
	    " WHERE artifact = sha256) AS releases FROM artifact"
	    " WHERE sha256 GLOB ?1 LIMIT 2", pattern, ARGS_END);
	if (rc != OTAD_OK) {
		snprintf(why, whylen, "database: %s", otad_strerror(rc));
		return rc;
	}
	if (json_array_size(rows) != 1) {
		rc = json_array_size(rows) == 0 ? OTAD_ERR_NOT_FOUND
						: OTAD_ERR_INVALID;
		snprintf(why, whylen, rc == OTAD_ERR_NOT_FOUND
		    ? "no artifact %s" : "'%s' matches several artifacts; "
		    "give more digits", sha);
		json_decref(rows);
		return rc;
	}
	*row = json_incref(json_array_get(rows, 0));
	json_decref(rows);
	return OTAD_OK;
}

enum otad_err
registry_artifact_list(struct registry *reg, json_t **rows)
{
	return query_rows(reg->db, rows, "SELECT sha256, size, version,"
	    " product, kind, chip, created FROM artifact ORDER BY created,"
	    " sha256",
	    ARGS_END);
}

enum otad_err
registry_released_secure_version(struct registry *reg, const char *product,
    const char *chip, int64_t *out)
{
	json_t *rows;
	enum otad_err rc;

	rc = query_rows(reg->db, &rows, "SELECT ifnull(max(a.secure_version),"
	    " -1) AS sv FROM release r JOIN artifact a ON a.sha256 ="
	    " r.artifact WHERE ifnull(r.product, '') = ?1 AND r.chip = ?2",
	    product ? product : "", chip, ARGS_END);
	if (rc != OTAD_OK)
		return rc;
	*out = json_integer_value(json_object_get(json_array_get(rows, 0),
	    "sv"));
	json_decref(rows);
	return OTAD_OK;
}

enum otad_err
registry_release_create(struct registry *reg, const char *version,
    const char *sha256, const char *product, const char *hw_rev,
    const char *min_from, int forced, int64_t *id, char *why, size_t whylen)
{
	char what[256];
	enum otad_err rc;
	int step;

	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK)
		return rc;
	step = run(reg, "INSERT INTO release (version, artifact, product,"
	    " created, hw_rev, min_from, forced, chip, kind) VALUES (?1, ?2,"
	    " ?3, ?4, ?5, ?6, ?7, (SELECT chip FROM artifact WHERE sha256 ="
	    " ?2), ifnull((SELECT kind FROM artifact WHERE sha256 = ?2),"
	    " 'app'))",
	    "tttitti", version, sha256, product, now_s(), hw_rev, min_from,
	    (int64_t)forced);
	if (step == SQLITE_CONSTRAINT && sqlite3_extended_errcode(reg->db) ==
	    SQLITE_CONSTRAINT_FOREIGNKEY) {
		snprintf(why, whylen, "no artifact %s", sha256);
		return catalog_fail(reg, OTAD_ERR_NOT_FOUND);
	}
	if (step == SQLITE_CONSTRAINT) {
		snprintf(why, whylen, "release %s%s%s already exists", version,
		    product ? " for product " : "", product ? product : "");
		return catalog_fail(reg, OTAD_ERR_EXISTS);
	}
	if (step != SQLITE_DONE)
		return catalog_db_fail(reg, why, whylen);
	*id = sqlite3_last_insert_rowid(reg->db);
	snprintf(what, sizeof(what), "release create %s artifact %s%s%s",
	    version, sha256, product ? " product " : "",
	    product ? product : "");
	return catalog_close(reg, what, why, whylen);
}

enum otad_err
registry_release_list(struct registry *reg, json_t **rows)
{
	return query_rows(reg->db, rows, "SELECT rel.id, rel.version,"
	    " rel.product, rel.kind, rel.chip, rel.hw_rev, rel.min_from, rel.artifact,"
	    " a.size, a.secure_version, rel.created,"
	    " (SELECT ro.state FROM rollout ro WHERE ro.release = rel.id"
	    " ORDER BY ro.id DESC LIMIT 1) AS rollout_state,"
	    " (SELECT count(*) FROM attempt WHERE release = rel.id AND"
	    " state = 'success') AS succeeded"
	    " FROM release rel JOIN artifact a ON a.sha256 = rel.artifact"
	    " ORDER BY rel.created, rel.id", ARGS_END);
}

/*
 * What a release's rollouts compete with: same product, chip, hardware
 * revision and kind.
 */
#define SAME_SCOPE(o, n)                                                       \
	"ifnull(" o ".product, '') = ifnull(" n ".product, '') AND"            \
	" ifnull(" o ".chip, '') = ifnull(" n ".chip, '') AND"                 \
	" ifnull(" o ".hw_rev, '') = ifnull(" n ".hw_rev, '') AND"             \
	" " o ".kind = " n ".kind"

/* Run a statement with int64 parameters (-1 ends the list). */
static int
exec_ints(sqlite3 *db, const char *sql, ...)
{
	sqlite3_stmt *st;
	va_list ap;
	int64_t v;
	int i = 1, step;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	va_start(ap, sql);
	while ((v = va_arg(ap, int64_t)) != -1)
		sqlite3_bind_int64(st, i++, v);
	va_end(ap);
	step = sqlite3_step(st);
	sqlite3_finalize(st);
	return step == SQLITE_DONE ? 0 : -1;
}

/*
 * The one release of version (narrowed by product and chip, NULL for
 * any) as a one-row array: id, product, chip, hw_rev, and how many active
 * rollouts it has. Inside an open catalog transaction; on error why says
 * what to do.
 */
static enum otad_err
find_release(struct registry *reg, const char *version, const char *product,
    const char *chip, json_t **rows, char *why, size_t whylen)
{
	enum otad_err rc;

	/* "" matches anything: product and chip narrow the choice */
	rc = query_rows(reg->db, rows, "SELECT id, product, chip, hw_rev,"
	    " (SELECT count(*) FROM rollout WHERE release = release.id"
	    " AND state = 'active') AS active FROM release"
	    " WHERE version = ?1 AND (?2 = '' OR product = ?2)"
	    " AND (?3 = '' OR chip = ?3)", version, product ? product : "",
	    chip ? chip : "", ARGS_END);
	if (rc != OTAD_OK) {
		snprintf(why, whylen, "database: %s", otad_strerror(rc));
		return rc;
	}
	if (json_array_size(*rows) == 1)
		return OTAD_OK;
	rc = json_array_size(*rows) == 0 ? OTAD_ERR_NOT_FOUND
					  : OTAD_ERR_INVALID;
	snprintf(why, whylen, rc == OTAD_ERR_NOT_FOUND
	    ? "no release %s%s%s (create it with 'otactl release create')"
	    : "several releases are version %s; name one with --product or "
	    "--chip", version,
	    product && rc == OTAD_ERR_NOT_FOUND ? " for product " : "",
	    product && rc == OTAD_ERR_NOT_FOUND ? product : "");
	json_decref(*rows);
	*rows = NULL;
	return rc;
}

/*
 * Start a draft rollout (in a catalog transaction): a publish completes
 * the publish it replaces (same scope) and is offered to everyone at
 * once; a staged rollout opens its first stage.
 */
static enum otad_err
start_rollout(struct registry *reg, int64_t id, char *why, size_t whylen)
{
	int64_t now = now_s();

	/*
	 * The newest published release of a product scope is the one offered;
	 * the publish it replaces is complete, so status shows one.
	 */
	if (exec_ints(reg->db, "UPDATE rollout SET state = 'completed',"
	    " finished = ?1, reason = 'superseded' WHERE state = 'active'"
	    " AND id != ?2 AND (SELECT staged FROM rollout"
	    " WHERE id = ?2) = 0 AND release IN (SELECT o.id FROM release o,"
	    " release n, rollout r WHERE r.id = ?2 AND n.id = r.release AND "
	    SAME_SCOPE("o", "n") ")", now, id, (int64_t)-1) < 0 ||
	    exec_ints(reg->db, "UPDATE rollout SET state = 'active', started ="
	    " ?1, stage = 0, stage_started = ?1 WHERE id = ?2 AND state ="
	    " 'draft'", now, id, (int64_t)-1) < 0) {
		snprintf(why, whylen, "database: %s", sqlite3_errmsg(reg->db));
		return OTAD_ERR_DB;
	}
	if (sqlite3_changes(reg->db) == 0) {
		snprintf(why, whylen, "rollout %lld is not a draft",
		    (long long)id);
		return OTAD_ERR_INVALID;
	}
	return OTAD_OK;
}

enum otad_err
registry_release_publish(struct registry *reg, const char *version,
    const char *product, const char *chip, int64_t *rollout_id,
    int *awaiting_approval, char *why, size_t whylen)
{
	char what[160];
	json_t *rows, *rel;
	int64_t release_id;
	enum otad_err rc;

	*awaiting_approval = 0;
	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK)
		return rc;
	if ((rc = find_release(reg, version, product, chip, &rows, why,
	    whylen)) != OTAD_OK)
		return catalog_fail(reg, rc);
	rel = json_array_get(rows, 0);
	release_id = json_integer_value(json_object_get(rel, "id"));
	if (json_integer_value(json_object_get(rel, "active")) > 0) {
		snprintf(why, whylen, "release %s is already being offered",
		    version);
		json_decref(rows);
		return catalog_fail(reg, OTAD_ERR_EXISTS);
	}
	json_decref(rows);
	/* a publish is a rollout with no rings; it may wait for approval */
	if (run(reg, "INSERT INTO rollout (release, state, created,"
	    " created_by) VALUES (?1, 'draft', ?2, nullif(?3, ''))", "iit",
	    release_id, now_s(), reg->who) != SQLITE_DONE)
		return catalog_db_fail(reg, why, whylen);
	*rollout_id = sqlite3_last_insert_rowid(reg->db);
	snprintf(what, sizeof(what), "release publish %s (rollout %lld)",
	    version, (long long)*rollout_id);
	if (reg->approvals >= 2 && reg->break_glass[0] == '\0') {
		*awaiting_approval = 1;
		snprintf(what + strlen(what), sizeof(what) - strlen(what),
		    ", awaiting approval");
		return catalog_close(reg, what, why, whylen);
	}
	if (!may_start_alone(reg, what, why, whylen) ||
	    (rc = start_rollout(reg, *rollout_id, why, whylen)) != OTAD_OK)
		return catalog_fail(reg, OTAD_ERR_DB);
	return catalog_close(reg, what, why, whylen);
}

#define DEVICE_COLUMNS                                                         \
	"d.id, d.version, d.product, d.chip, d.grp AS \"group\", d.hw_rev,"    \
	" d.address, d.first_seen, d.last_seen, d.checks"

enum otad_err
registry_device_list(struct registry *reg, int64_t now,
    const struct device_filter *f, json_t **rows)
{
	char cutoff[32], limit[24];

	snprintf(cutoff, sizeof(cutoff), "%lld", (long long)(f->offline_after >
	    0 ? now - f->offline_after : INT64_MAX));
	snprintf(limit, sizeof(limit), "%d", f->limit > 0 ? f->limit : -1);
	return query_rows(reg->db, rows, "SELECT " DEVICE_COLUMNS ","
	    " (SELECT state FROM attempt WHERE device = d.id ORDER BY id DESC"
	    " LIMIT 1) AS last_attempt FROM device d"
	    " WHERE d.last_seen < CAST(?1 AS INTEGER) AND (?2 = '' OR"
	    " substr(d.id, 1, length(?2)) = ?2) AND (?3 = '' OR d.grp = ?3)"
	    " AND (?4 = '' OR d.version = ?4) ORDER BY d.id LIMIT"
	    " CAST(?5 AS INTEGER)", cutoff, f->id_prefix ? f->id_prefix : "",
	    f->group ? f->group : "", f->version ? f->version : "", limit,
	    ARGS_END);
}

enum otad_err
registry_device_set(struct registry *reg, const char *id, const char *group,
    const char *hw_rev, const char *chip, char *why, size_t whylen)
{
	char what[256];
	enum otad_err rc;

	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK)
		return rc;
	if (run(reg, "UPDATE device SET grp = coalesce(?2, grp), hw_rev ="
	    " coalesce(?3, hw_rev), chip = coalesce(?4, chip) WHERE id = ?1",
	    "tttt", id, group, hw_rev, chip) != SQLITE_DONE)
		return catalog_db_fail(reg, why, whylen);
	if (sqlite3_changes(reg->db) == 0) {
		snprintf(why, whylen, "no device '%s'", id);
		return catalog_fail(reg, OTAD_ERR_NOT_FOUND);
	}
	snprintf(what, sizeof(what), "device set %s%s%s%s%s%s%s", id,
	    group ? " group " : "", group ? group : "",
	    hw_rev ? " hw_rev " : "", hw_rev ? hw_rev : "",
	    chip ? " chip " : "", chip ? chip : "");
	return catalog_close(reg, what, why, whylen);
}

/*
 * One catalog statement about device id (?1; ?2 text or NULL; ?3 now):
 * when it changes nothing, none_rc with the message none, else audited as
 * what.
 */
static enum otad_err
device_update(struct registry *reg, const char *sql, const char *id,
    const char *arg, const char *what, enum otad_err none_rc,
    const char *none, char *why, size_t whylen)
{
	enum otad_err rc;

	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK)
		return rc;
	if (run(reg, sql, "tti", id, arg, now_s()) != SQLITE_DONE)
		return catalog_db_fail(reg, why, whylen);
	if (sqlite3_changes(reg->db) == 0) {
		snprintf(why, whylen, "%s", none);
		return catalog_fail(reg, none_rc);
	}
	return catalog_close(reg, what, why, whylen);
}

enum otad_err
registry_device_add(struct registry *reg, const char *id, const char *group,
    const char *token_hash, char *why, size_t whylen)
{
	char what[128], none[160];
	enum otad_err rc;

	snprintf(what, sizeof(what), "device add %s (token issued)", id);
	snprintf(none, sizeof(none), "device '%s' has a token already; "
	    "revoke it first (otactl device revoke-token)", id);
	rc = device_update(reg, "INSERT INTO device (id, first_seen, last_seen,"
	    " token_hash, token_created) VALUES (?1, ?3, 0, ?2, ?3)"
	    " ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash,"
	    " token_created = excluded.token_created WHERE token_hash IS NULL",
	    id, token_hash, what, OTAD_ERR_EXISTS, none, why, whylen);
	if (rc == OTAD_OK && group != NULL)
		rc = registry_device_set(reg, id, group, NULL, NULL, why,
		    whylen);
	return rc;
}

enum otad_err
registry_device_revoke_token(struct registry *reg, const char *id, char *why,
    size_t whylen)
{
	char what[128], none[128];

	snprintf(what, sizeof(what), "device revoke-token %s", id);
	snprintf(none, sizeof(none), "no device '%s' with a token", id);
	return device_update(reg, "UPDATE device SET token_hash = NULL,"
	    " token_created = NULL WHERE id = ?1 AND token_hash IS NOT NULL",
	    id, NULL, what,
	    OTAD_ERR_NOT_FOUND, none, why, whylen);
}

enum otad_err
registry_device_block(struct registry *reg, const char *id, int blocked,
    char *why, size_t whylen)
{
	char what[128], none[128];

	snprintf(what, sizeof(what), "device %s %s", blocked ? "block" :
	    "unblock", id);
	snprintf(none, sizeof(none), "no device '%s'", id);
	return device_update(reg, blocked ?
	    "UPDATE device SET blocked = 1 WHERE id = ?1" :
	    "UPDATE device SET blocked = 0 WHERE id = ?1", id, NULL, what,
	    OTAD_ERR_NOT_FOUND, none, why, whylen);
}

enum otad_err
registry_device_show(struct registry *reg, const char *id, json_t **obj,
    char *why, size_t whylen)
{
	json_t *rows, *attempts;
	enum otad_err rc;

	*obj = NULL;
	rc = query_rows(reg->db, &rows, "SELECT " DEVICE_COLUMNS ","
	    " d.uptime, d.free_heap, d.rssi, d.reset_reason, d.battery,"
	    " d.secure_version, d.running_sha256, d.fs_version, d.fs_sha256,"
	    " d.free_space, d.deferred,"
	    " d.deferred_at, d.token_hash IS NOT NULL AS has_token,"
	    " d.token_created, d.blocked, d.mqtt_seen, (SELECT sent_at FROM"
	    " trigger WHERE device = d.id AND sent_at IS NOT NULL ORDER BY"
	    " sent_at DESC LIMIT 1) AS last_trigger FROM device d"
	    " WHERE d.id = ?1", id,
	    ARGS_END);
	if (rc != OTAD_OK) {
		snprintf(why, whylen, "database: %s", otad_strerror(rc));
		return rc;
	}
	if (json_array_size(rows) == 0) {
		json_decref(rows);
		snprintf(why, whylen, "no device '%s'", id);
		return OTAD_ERR_NOT_FOUND;
	}
	rc = query_rows(reg->db, &attempts, "SELECT id, from_version,"
	    " to_version, state, reason, offered_at, updated_at, finished_at"
	    " FROM attempt WHERE device = ?1 ORDER BY id DESC LIMIT 20", id,
	    ARGS_END);
	if (rc != OTAD_OK) {
		json_decref(rows);
		snprintf(why, whylen, "database: %s", otad_strerror(rc));
		return rc;
	}
	*obj = json_incref(json_array_get(rows, 0));
	json_decref(rows);
	json_object_set_new(*obj, "attempts", attempts);
	return OTAD_OK;
}

/* An id (or any integer) as text, for query_rows' text arguments. */
static const char *
idtext(int64_t id, char buf[24])
{
	snprintf(buf, 24, "%lld", (long long)id);
	return buf;
}

/* One query's rows under a key of a summary object. */
struct part {
	const char *key, *sql;
};

/*
 * The one row of sql (with its text argument) as an object, and under
 * each part's key the rows of its query (no arguments).
 */
static enum otad_err
query_summary(sqlite3 *db, json_t **obj, const char *sql, const char *arg,
    const struct part *parts, size_t n)
{
	json_t *rows;
	enum otad_err rc;
	size_t i;

	*obj = NULL;
	if ((rc = query_rows(db, &rows, sql, arg, ARGS_END)) != OTAD_OK)
		return rc;
	*obj = json_incref(json_array_get(rows, 0));
	json_decref(rows);
	for (i = 0; i < n; i++) {
		if ((rc = query_rows(db, &rows, parts[i].sql, ARGS_END)) !=
		    OTAD_OK) {
			json_decref(*obj);
			*obj = NULL;
			return rc;
		}
		json_object_set_new(*obj, parts[i].key, rows);
	}
	return OTAD_OK;
}

#define VERSION_COUNTS                                                         \
	"SELECT ifnull(version, '') AS version, count(*) AS devices FROM"     \
	" device GROUP BY version ORDER BY count(*) DESC, version"

enum otad_err
registry_status(struct registry *reg, int64_t now, json_t **obj)
{
	static const struct part parts[] = {
		{"versions", VERSION_COUNTS},
		{"attempts", "SELECT state, count(*) AS attempts FROM attempt"
			     " GROUP BY state ORDER BY state"},
		{"offered", "SELECT ro.id AS rollout, rel.version,"
			    " rel.product, ro.started FROM rollout ro JOIN"
			    " release rel ON rel.id = ro.release WHERE"
			    " ro.state = 'active' ORDER BY ro.id"},
	};
	char day[24];

	return query_summary(reg->db, obj, "SELECT"
	    " (SELECT count(*) FROM device) AS devices,"
	    " (SELECT count(*) FROM device WHERE last_seen >="
	    " CAST(?1 AS INTEGER)) AS seen_24h,"
	    " (SELECT count(*) FROM artifact) AS artifacts,"
	    " (SELECT count(*) FROM release) AS releases",
	    idtext(now - 86400, day), parts, sizeof(parts) / sizeof(parts[0]));
}

enum otad_err
registry_fleet(struct registry *reg, int64_t now, int64_t offline_after,
    json_t **obj)
{
	static const struct part parts[] = {
		{"versions", VERSION_COUNTS " LIMIT 50"},
		{"chips", "SELECT ifnull(chip, '') AS chip, count(*) AS"
			  " devices FROM device GROUP BY chip ORDER BY"
			  " count(*) DESC, chip LIMIT 50"},
		{"products", "SELECT ifnull(product, '') AS product, count(*)"
			     " AS devices FROM device GROUP BY product ORDER BY"
			     " count(*) DESC, product LIMIT 50"},
		{"rollouts", "SELECT ro.id AS rollout, rel.version,"
			     " rel.product, ro.state, ro.stage FROM rollout ro"
			     " JOIN release rel ON rel.id = ro.release WHERE"
			     " ro.state IN ('active', 'paused', 'halted')"
			     " ORDER BY ro.id"},
		{"failures", "SELECT device, from_version, to_version, state,"
			     " reason, inferred, finished_at FROM attempt WHERE"
			     " state IN ('rollback', 'failed', 'timeout') AND"
			     " finished_at >= unixepoch() - 86400 ORDER BY"
			     " finished_at DESC, id DESC LIMIT 50"},
	};
	char cutoff[24];

	return query_summary(reg->db, obj, "SELECT count(*) AS devices,"
	    " count(*) FILTER (WHERE last_seen >= CAST(?1 AS INTEGER)) AS"
	    " online, count(*) FILTER (WHERE last_seen < CAST(?1 AS INTEGER))"
	    " AS offline FROM device", idtext(now - offline_after, cutoff),
	    parts, sizeof(parts) / sizeof(parts[0]));
}

enum otad_err
registry_key_add(struct registry *reg, const char *name, const char *algo,
    const char *purpose, const char *public_pem, const char *fingerprint,
    int server_held, char *why, size_t whylen)
{
	char what[256];
	enum otad_err rc;
	int step;

	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK)
		return rc;
	step = run(reg, "INSERT INTO signing_key (name, algo, purpose,"
	    " public_key, fingerprint, server_held, created) VALUES (?1, ?2,"
	    " ?3, ?4, ?5, ?6, ?7)", "tttttii", name, algo, purpose, public_pem,
	    fingerprint, (int64_t)server_held, now_s());
	if (step == SQLITE_CONSTRAINT) {
		snprintf(why, whylen, "a key named '%s', or this same key, is "
		    "already there", name);
		return catalog_fail(reg, OTAD_ERR_EXISTS);
	}
	if (step != SQLITE_DONE)
		return catalog_db_fail(reg, why, whylen);
	snprintf(what, sizeof(what), "key add %s %s %s%s fingerprint %.16s",
	    name, purpose, algo, server_held ? " server-held" : "",
	    fingerprint);
	return catalog_close(reg, what, why, whylen);
}

enum otad_err
registry_key_get(struct registry *reg, const char *name, json_t **row,
    char *why, size_t whylen)
{
	json_t *rows;
	enum otad_err rc;

	*row = NULL;
	if ((rc = query_rows(reg->db, &rows, "SELECT name, algo, purpose,"
	    " public_key, fingerprint, server_held, state, created, revoked_at"
	    " FROM signing_key WHERE name = ?1", name, ARGS_END)) != OTAD_OK) {
		snprintf(why, whylen, "database: %s", otad_strerror(rc));
		return rc;
	}
	if (json_array_size(rows) == 0) {
		json_decref(rows);
		snprintf(why, whylen, "no key '%s'", name);
		return OTAD_ERR_NOT_FOUND;
	}
	*row = json_incref(json_array_get(rows, 0));
	json_decref(rows);
	return OTAD_OK;
}

enum otad_err
registry_key_list(struct registry *reg, json_t **rows)
{
	return query_rows(reg->db, rows, "SELECT name, algo, purpose, state,"
	    " server_held, fingerprint, public_key, created, revoked_at,"
	    " (SELECT count(*) FROM signature WHERE key = name) AS signatures"
	    " FROM signing_key ORDER BY created, name", ARGS_END);
}

enum otad_err
registry_keys_active(struct registry *reg, const char *purpose,
    json_t **rows)
{
	return query_rows(reg->db, rows, "SELECT name, algo, public_key FROM"
	    " signing_key WHERE purpose = ?1 AND state = 'active'"
	    " ORDER BY name", purpose, ARGS_END);
}

enum otad_err
registry_key_revoke(struct registry *reg, const char *name, char *why,
    size_t whylen)
{
	enum otad_err rc;
	json_t *row;

	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK)
		return rc;
	if (run(reg, "UPDATE signing_key SET state = 'revoked', revoked_at ="
	    " ?2 WHERE name = ?1 AND state != 'revoked'", "ti", name,
	    now_s()) != SQLITE_DONE)
		return catalog_db_fail(reg, why, whylen);
	if (sqlite3_changes(reg->db) == 0) {
		catalog_fail(reg, OTAD_OK);
		if (registry_key_get(reg, name, &row, why, whylen) != OTAD_OK)
			return OTAD_ERR_NOT_FOUND;
		json_decref(row);
		snprintf(why, whylen, "key '%s' is already revoked", name);
		return OTAD_ERR_EXISTS;
	}
	/* the trigger wrote the audit row, with our name on it */
	if ((rc = catalog_commit(reg)) != OTAD_OK) {
		snprintf(why, whylen, "database: %s", otad_strerror(rc));
		return catalog_fail(reg, rc);
	}
	return OTAD_OK;
}

/* ---- operators ---- */

enum otad_err
registry_operator_add(struct registry *reg, const char *name,
    const char *role, const char *token_hash, char *why, size_t whylen)
{
	char what[128];
	enum otad_err rc;
	int step;

	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK)
		return rc;
	step = run(reg, "INSERT INTO operator (name, role, token_hash, created)"
	    " VALUES (?1, ?2, ?3, ?4)", "ttti", name, role, token_hash,
	    now_s());
	if (step == SQLITE_CONSTRAINT) {
		snprintf(why, whylen, "operator '%s' is already there", name);
		return catalog_fail(reg, OTAD_ERR_EXISTS);
	}
	if (step != SQLITE_DONE)
		return catalog_db_fail(reg, why, whylen);
	snprintf(what, sizeof(what), "operator add %s role %s", name, role);
	return catalog_close(reg, what, why, whylen);
}

enum otad_err
registry_operator_list(struct registry *reg, json_t **rows)
{
	return query_rows(reg->db, rows, "SELECT name, role, state, created,"
	    " revoked_at FROM operator ORDER BY created, name", ARGS_END);
}

enum otad_err
registry_operator_revoke(struct registry *reg, const char *name, char *why,
    size_t whylen)
{
	char what[96];
	enum otad_err rc;

	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK)
		return rc;
	if (run(reg, "UPDATE operator SET state = 'revoked', revoked_at = ?2"
	    " WHERE name = ?1 AND state = 'active'", "ti", name, now_s()) !=
	    SQLITE_DONE)
		return catalog_db_fail(reg, why, whylen);
	if (sqlite3_changes(reg->db) == 0) {
		snprintf(why, whylen, "no active operator '%s'", name);
		return catalog_fail(reg, OTAD_ERR_NOT_FOUND);
	}
	snprintf(what, sizeof(what), "operator revoke %s", name);
	return catalog_close(reg, what, why, whylen);
}

enum otad_err
registry_operator_by_token(struct registry *reg, const char *token_hash,
    char *name, char *role)
{
	json_t *rows, *row;
	enum otad_err rc;

	rc = query_rows(reg->db, &rows, "SELECT name, role FROM operator"
	    " WHERE token_hash = ?1 AND state = 'active'", token_hash,
	    ARGS_END);
	if (rc != OTAD_OK)
		return rc;
	if ((row = json_array_get(rows, 0)) == NULL) {
		json_decref(rows);
		return OTAD_ERR_NOT_FOUND;
	}
	snprintf(name, 65, "%s", json_string_value(json_object_get(row,
	    "name")));
	snprintf(role, 65, "%s", json_string_value(json_object_get(row,
	    "role")));
	json_decref(rows);
	return OTAD_OK;
}

enum otad_err
registry_audit(struct registry *reg, int64_t before, int limit,
    const char *actor, json_t **rows)
{
	char b[24], l[24];

	snprintf(b, sizeof(b), "%lld", (long long)(before > 0 ? before :
	    INT64_MAX));
	snprintf(l, sizeof(l), "%d", limit);
	return query_rows(reg->db, rows, "SELECT id, at, actor, what FROM"
	    " audit WHERE id < CAST(?1 AS INTEGER) AND (?3 = '' OR actor"
	    " LIKE ?3 || '%') ORDER BY id DESC LIMIT CAST(?2 AS INTEGER)", b,
	    l, actor ? actor : "", ARGS_END);
}

int
registry_daemon_mark(struct registry *reg, int64_t generation, int64_t now)
{
	if (exec_ints(reg->db, "INSERT INTO daemon (id, pid, generation, seen)"
	    " VALUES (1, ?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET"
	    " pid = excluded.pid, generation = excluded.generation,"
	    " seen = excluded.seen", (int64_t)getpid(), generation, now,
	    (int64_t)-1) < 0) {
		log_debug("cannot mark the served generation: %s",
		    sqlite3_errmsg(reg->db));
		return -1;
	}
	return 0;
}

/*
 * Is the daemon that wrote the row running? Same host by design (they
 * share the database file); EPERM means alive under another user.
 */
static int
daemon_alive(int64_t pid)
{
	return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

enum otad_err
registry_wait_served(struct registry *reg, int timeout_ms)
{
	const struct timespec pause = {0, 20 * 1000000L};
	json_t *rows;
	int64_t want, served, pid;
	int waited = 0;

	for (;;) {
		if (query_rows(reg->db, &rows, "SELECT (SELECT generation FROM"
		    " catalog) AS want, ifnull((SELECT generation FROM daemon),"
		    " -1) AS served, ifnull((SELECT pid FROM daemon), 0) AS pid",
		    ARGS_END) != OTAD_OK)
			return OTAD_ERR_DB;
		want = json_integer_value(json_object_get(json_array_get(rows,
		    0), "want"));
		served = json_integer_value(json_object_get(json_array_get(
		    rows, 0), "served"));
		pid = json_integer_value(json_object_get(json_array_get(rows,
		    0), "pid"));
		json_decref(rows);
		if (!daemon_alive(pid))
			return OTAD_ERR_NOT_FOUND;
		if (served >= want)
			return OTAD_OK;
		if (waited >= timeout_ms)
			return OTAD_ERR_BUSY;
		nanosleep(&pause, NULL);
		waited += 20;
	}
}

/* ---- rollouts ---- */

enum otad_err
registry_rollout_create(struct registry *reg, const struct rollout_plan *p,
    int64_t *id, char *why, size_t whylen)
{
	json_t *rows = NULL, *newer;
	int64_t release;
	char what[160], idbuf[24];
	enum otad_err rc;
	size_t i;

	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK)
		return rc;
	if ((rc = find_release(reg, p->version, p->product, p->chip, &rows,
	    why, whylen)) != OTAD_OK)
		return catalog_fail(reg, rc);
	release = json_integer_value(json_object_get(json_array_get(rows, 0),
	    "id"));
	json_decref(rows);
	/* going back to an older release must be meant */
	if ((rc = query_rows(reg->db, &newer, "SELECT o.version FROM rollout"
	    " ro JOIN release o ON o.id = ro.release, release n"
	    " WHERE n.id = CAST(?1 AS INTEGER) AND (ro.state = 'active' OR"
	    " (ro.state = 'completed' AND ro.baseline = 1)) AND "
	    SAME_SCOPE("o", "n") " AND semver_compare(o.version, n.version)"
	    " > 0 LIMIT 1", idtext(release, idbuf), ARGS_END)) != OTAD_OK) {
		snprintf(why, whylen, "database: %s", otad_strerror(rc));
		return catalog_fail(reg, rc);
	}
	if (json_array_size(newer) > 0 && !p->downgrade) {
		snprintf(why, whylen, "release %s is older than %s, which is "
		    "being offered: add --downgrade to roll the fleet back",
		    p->version, json_string_value(json_object_get(
		    json_array_get(newer, 0), "version")));
		json_decref(newer);
		return catalog_fail(reg, OTAD_ERR_INVALID);
	}
	json_decref(newer);
	if (run(reg, "INSERT INTO rollout (release, state, created, staged,"
	    " window, days, utc_offset, min_battery, timeout_s, downgrade,"
	    " created_by) VALUES (?1, 'draft', ?2, 1, ?3, ?4, ?5,"
	    " nullif(?6, -1), ?7, ?8, ?9)", "iitttiiit", release, now_s(),
	    p->window, p->days, p->utc_offset, (int64_t)p->min_battery,
	    p->timeout_s, (int64_t)p->downgrade, reg->who) != SQLITE_DONE)
		return catalog_db_fail(reg, why, whylen);
	*id = sqlite3_last_insert_rowid(reg->db);
	for (i = 0; i < p->nstages; i++) {
		const struct stage *st = &p->stages[i];

		if (run(reg, "INSERT INTO rollout_stage (rollout, no, grp,"
		    " percent, soak_s, min_devices, min_success, max_rollback,"
		    " max_failure, max_crash) VALUES (?1, ?2, ?3, ?4, ?5, ?6,"
		    " ?7, ?8, ?9, ?10)", "iitdiidddd", *id, (int64_t)i,
		    st->group[0] ? st->group : NULL, st->percent_x100 / 100.0,
		    st->soak_s, (int64_t)st->min_devices, st->min_success,
		    st->max_rollback, st->max_failure, st->max_crash) !=
		    SQLITE_DONE)
			return catalog_db_fail(reg, why, whylen);
	}
	snprintf(what, sizeof(what), "rollout create %lld release %s, %zu "
	    "stages", (long long)*id, p->version, p->nstages);
	return catalog_close(reg, what, why, whylen);
}

enum otad_err
registry_rollout_action(struct registry *reg, int64_t id,
    enum rollout_action action, int force, char *why, size_t whylen)
{
	static const char *const sql[] = {
		[ROLLOUT_PAUSE] = "UPDATE rollout SET state = 'paused'"
		    " WHERE id = ?1 AND state = 'active'",
		[ROLLOUT_RESUME] = "UPDATE rollout SET state = 'active',"
		    " reason = NULL, stage_started = CASE state WHEN 'halted'"
		    " THEN ?2 ELSE stage_started END WHERE id = ?1 AND"
		    " (state = 'paused' OR (state = 'halted' AND ?3))",
		[ROLLOUT_ABORT] = "UPDATE rollout SET state = 'aborted',"
		    " finished = ?2, baseline = 0 WHERE id = ?1 AND state IN"
		    " ('draft', 'active', 'paused', 'halted')",
	};
	static const char *const verbs[] = {"start", "pause", "resume",
	    "abort", "approve"};
	json_t *rows;
	const char *state, *reason;
	char idbuf[24], what[64];
	enum otad_err rc;
	int changed;

	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK)
		return rc;
	snprintf(what, sizeof(what), "rollout %lld", (long long)id);
	if (action == ROLLOUT_START || action == ROLLOUT_APPROVE) {
		if (query_rows(reg->db, &rows, "SELECT state FROM rollout WHERE"
		    " id = CAST(?1 AS INTEGER) AND state = 'draft'",
		    idtext(id, idbuf), ARGS_END) != OTAD_OK)
			return catalog_db_fail(reg, why, whylen);
		changed = json_array_size(rows) > 0;
		json_decref(rows);
		if (changed && action == ROLLOUT_APPROVE) {
			/* the trigger refuses the creator's own approval */
			if (run(reg, "UPDATE rollout SET approved_by ="
			    " nullif(?2, '') WHERE id = ?1", "it", id,
			    reg->who[0] ? reg->who : reg->actor) !=
			    SQLITE_DONE) {
				snprintf(why, whylen, "%s", strstr(
				    sqlite3_errmsg(reg->db), "creator") ?
				    "a rollout is approved by someone other "
				    "than its creator" : sqlite3_errmsg(
				    reg->db));
				return catalog_fail(reg, OTAD_ERR_INVALID);
			}
		} else if (changed && !may_start_alone(reg, what, why,
		    whylen)) {
			return catalog_fail(reg, OTAD_ERR_INVALID);
		}
		if (changed && (rc = start_rollout(reg, id, why, whylen)) !=
		    OTAD_OK)
			return catalog_fail(reg, rc);
	} else {
		if (run(reg, sql[action], "iii", id, now_s(),
		    (int64_t)force) != SQLITE_DONE)
			return catalog_db_fail(reg, why, whylen);
		changed = sqlite3_changes(reg->db) > 0;
	}
	if (changed) {
		/* the state trigger wrote the audit row, with our name */
		if ((rc = catalog_commit(reg)) != OTAD_OK)
			snprintf(why, whylen, "database: %s",
			    otad_strerror(rc));
		return rc;
	}
	catalog_fail(reg, OTAD_OK);
	if (query_rows(reg->db, &rows, "SELECT state, ifnull(reason, '') AS"
	    " reason FROM rollout WHERE id = CAST(?1 AS INTEGER)",
	    idtext(id, idbuf), ARGS_END) != OTAD_OK ||
	    json_array_size(rows) == 0) {
		json_decref(rows);
		snprintf(why, whylen, "no rollout %lld", (long long)id);
		return OTAD_ERR_NOT_FOUND;
	}
	state = json_string_value(json_object_get(json_array_get(rows, 0),
	    "state"));
	reason = json_string_value(json_object_get(json_array_get(rows, 0),
	    "reason"));
	if (action == ROLLOUT_RESUME && strcmp(state, "halted") == 0)
		snprintf(why, whylen, "rollout %lld was halted (%s); look into "
		    "it, then resume --force", (long long)id, reason);
	else
		snprintf(why, whylen, "rollout %lld is %s: cannot %s it",
		    (long long)id, state, verbs[action]);
	json_decref(rows);
	return OTAD_ERR_INVALID;
}

/* A stage's attempt counts, as status shows them and the gates read. */
#define STAGE_COUNTS                                                           \
	"ifnull(c.offered, 0) AS offered, ifnull(c.in_progress, 0) AS"        \
	" in_progress, ifnull(c.succeeded, 0) AS succeeded,"                   \
	" ifnull(c.rolled_back, 0) AS rolled_back, ifnull(c.failed, 0) AS"     \
	" failed, ifnull(c.timed_out, 0) AS timed_out, ifnull(c.crashed, 0)"   \
	" AS crashed, ifnull(c.brownouts, 0) AS brownouts,"                    \
	" ifnull(c.inferred_succeeded, 0) AS inferred_succeeded,"              \
	" ifnull(c.inferred_rolled_back, 0) AS inferred_rolled_back"
#define STAGE_COUNTS_JOIN                                                      \
	" LEFT JOIN (SELECT stage, count(*) AS offered, sum(state IN"          \
	" ('offered', 'downloading', 'installed')) AS in_progress,"            \
	" sum(state = 'success') AS succeeded, sum(state = 'rollback') AS"     \
	" rolled_back, sum(state = 'failed') AS failed, sum(state ="           \
	" 'timeout') AS timed_out, sum(state = 'success' AND crashed) AS"      \
	" crashed, sum(brownout) AS brownouts, sum(state = 'success' AND"      \
	" inferred) AS inferred_succeeded, sum(state = 'rollback' AND"         \
	" inferred) AS inferred_rolled_back FROM attempt WHERE rollout = ?1"   \
	" GROUP BY stage) c"                                                   \
	" ON c.stage = st.no"

struct health {
	int64_t finished, succeeded, rolled_back, failed, crashed;
	double success, rollback, failure, crash;
};

/* Rates of a stage row (with STAGE_COUNTS); failed includes timeouts. */
static void
health_of(json_t *row, struct health *h)
{
	h->succeeded = json_integer_value(json_object_get(row, "succeeded"));
	h->rolled_back = json_integer_value(json_object_get(row,
	    "rolled_back"));
	h->failed = json_integer_value(json_object_get(row, "failed")) +
	    json_integer_value(json_object_get(row, "timed_out"));
	h->crashed = json_integer_value(json_object_get(row, "crashed"));
	h->finished = h->succeeded + h->rolled_back + h->failed;
	h->success = h->finished ? (double)h->succeeded / h->finished : 0;
	h->rollback = h->finished ? (double)h->rolled_back / h->finished : 0;
	h->failure = h->finished ? (double)h->failed / h->finished : 0;
	h->crash = h->succeeded ? (double)h->crashed / h->succeeded : 0;
}

static double
num(json_t *row, const char *key)
{
	return json_number_value(json_object_get(row, key));
}

/*
 * The first bound a stage's health crosses, as one line into buf; 0 if
 * none (or not enough finished attempts to judge yet).
 */
static int
breach(json_t *stage, const struct health *h, char *buf, size_t len)
{
	int64_t min = json_integer_value(json_object_get(stage,
	    "min_devices"));

	if (h->finished < (min > 0 ? min : 1))
		return 0;
	if (h->rollback > num(stage, "max_rollback"))
		snprintf(buf, len, "rollback rate %.2f > %.2f (%lld of %lld)",
		    h->rollback, num(stage, "max_rollback"),
		    (long long)h->rolled_back, (long long)h->finished);
	else if (h->failure > num(stage, "max_failure"))
		snprintf(buf, len, "failure rate %.2f > %.2f (%lld of %lld)",
		    h->failure, num(stage, "max_failure"),
		    (long long)h->failed, (long long)h->finished);
	else if (h->succeeded > 0 && h->crash > num(stage, "max_crash"))
		snprintf(buf, len, "crash rate %.2f > %.2f (%lld of %lld "
		    "updated)", h->crash, num(stage, "max_crash"),
		    (long long)h->crashed, (long long)h->succeeded);
	else if (h->success < num(stage, "min_success"))
		snprintf(buf, len, "success rate %.2f < %.2f (%lld of %lld)",
		    h->success, num(stage, "min_success"),
		    (long long)h->succeeded, (long long)h->finished);
	else
		return 0;
	return 1;
}

/* Every stage of rollout id with its counts (and, with rel, its reach). */
static enum otad_err
stage_rows(struct registry *reg, int64_t id, json_t *rel, json_t **rows)
{
	char idbuf[24];

	if (rel == NULL)
		return query_rows(reg->db, rows, "SELECT st.no, st.grp AS"
		    " \"group\", st.percent, st.soak_s, st.min_devices,"
		    " st.min_success, st.max_rollback, st.max_failure,"
		    " st.max_crash, " STAGE_COUNTS " FROM rollout_stage st"
		    STAGE_COUNTS_JOIN " WHERE st.rollout = ?1 ORDER BY st.no",
		    idtext(id, idbuf), ARGS_END);
	/* the devices each stage reaches: matching the release, and in a
	 * group reached or within the widest ring reached */
	return query_rows(reg->db, rows, "SELECT st.no, st.grp AS \"group\","
	    " st.percent, st.soak_s, st.min_devices, st.min_success,"
	    " st.max_rollback, st.max_failure, st.max_crash, " STAGE_COUNTS ","
	    " r.targeted, r.deferred FROM rollout_stage st" STAGE_COUNTS_JOIN
	    " JOIN (SELECT s2.no, count(d.id) AS targeted,"
	    " ifnull(sum(d.deferred IS NOT NULL), 0) AS deferred"
	    " FROM rollout_stage s2 LEFT JOIN device d ON"
	    " (?2 = '' OR d.product = ?2) AND (d.chip IS NULL OR d.chip = ?3)"
	    " AND (d.grp IN (SELECT grp FROM rollout_stage WHERE rollout = ?1"
	    " AND no <= s2.no AND grp IS NOT NULL) OR ring(?1, d.id) < (SELECT"
	    " max(percent) * 100 FROM rollout_stage WHERE rollout = ?1 AND no"
	    " <= s2.no)) WHERE s2.rollout = ?1 GROUP BY s2.no) r"
	    " ON r.no = st.no WHERE st.rollout = ?1 ORDER BY st.no",
	    idtext(id, idbuf), json_string_value(json_object_get(rel,
	    "product_s")), json_string_value(json_object_get(rel, "chip")),
	    ARGS_END);
}

enum otad_err
registry_rollout_status(struct registry *reg, int64_t id, int64_t now,
    json_t **rows, char *why, size_t whylen)
{
	char idbuf[24];
	enum otad_err rc;
	size_t i, j;

	rc = query_rows(reg->db, rows, "SELECT ro.id, rel.version,"
	    " rel.product, ifnull(rel.product, '') AS product_s, rel.chip,"
	    " ro.state, ro.staged, ro.stage, ro.stage_started, ro.started,"
	    " ro.finished, ro.reason, ro.window, ro.days, ro.utc_offset,"
	    " ro.min_battery, ro.timeout_s, ro.downgrade, ro.baseline,"
	    " rel.forced FROM rollout ro JOIN release rel ON rel.id ="
	    " ro.release WHERE CAST(?1 AS INTEGER) IN (0, ro.id)"
	    " ORDER BY ro.id", idtext(id, idbuf), ARGS_END);
	if (rc != OTAD_OK) {
		snprintf(why, whylen, "database: %s", otad_strerror(rc));
		return rc;
	}
	if (id != 0 && json_array_size(*rows) == 0) {
		json_decref(*rows);
		*rows = NULL;
		snprintf(why, whylen, "no rollout %lld", (long long)id);
		return OTAD_ERR_NOT_FOUND;
	}
	for (i = 0; i < json_array_size(*rows); i++) {
		json_t *ro = json_array_get(*rows, i), *stages;
		int64_t cur = json_integer_value(json_object_get(ro, "stage"));

		if ((rc = stage_rows(reg, json_integer_value(json_object_get(ro,
		    "id")), ro, &stages)) != OTAD_OK) {
			snprintf(why, whylen, "database: %s",
			    otad_strerror(rc));
			json_decref(*rows);
			return rc;
		}
		for (j = 0; j < json_array_size(stages); j++) {
			json_t *st = json_array_get(stages, j);
			struct health h;
			char reason[160] = "";

			health_of(st, &h);
			json_object_set_new(st, "finished",
			    json_integer(h.finished));
			json_object_set_new(st, "success_rate",
			    json_real(h.success));
			json_object_set_new(st, "rollback_rate",
			    json_real(h.rollback));
			json_object_set_new(st, "failure_rate",
			    json_real(h.failure));
			json_object_set_new(st, "crash_rate",
			    json_real(h.crash));
			if (breach(st, &h, reason, sizeof(reason)))
				json_object_set_new(st, "breach",
				    json_string(reason));
			if ((int64_t)j == cur && json_is_integer(
			    json_object_get(ro, "stage_started"))) {
				int64_t left = json_integer_value(
				    json_object_get(ro, "stage_started")) +
				    json_integer_value(json_object_get(st,
				    "soak_s")) - now;

				json_object_set_new(st, "soak_left",
				    json_integer(left > 0 ? left : 0));
			}
		}
		json_object_del(ro, "product_s");
		json_object_set_new(ro, "stages", stages);
	}
	return OTAD_OK;
}

/*
 * One change the controller decided on, in its own short write
 * transaction (the WHERE of sql re-checks that it still applies).
 */
static int
act(struct registry *reg, const char *sql, const char *types, int64_t a,
    int64_t b, const char *text)
{
	int rc;

	if (catalog_begin(reg) != OTAD_OK)
		return -1; /* busy: the next tick decides again */
	if (types[1] == 't')
		rc = run(reg, sql, types, a, text);
	else
		rc = run(reg, sql, types, a, b);
	if (rc != SQLITE_DONE || sqlite3_changes(reg->db) == 0 ||
	    catalog_commit(reg) != OTAD_OK) {
		catalog_fail(reg, OTAD_OK);
		return -1;
	}
	return 0;
}

/* One active staged rollout: halt, open the next stage, or complete. */
static void
tick_one(struct registry *reg, json_t *ro, int64_t now)
{
	int64_t id = json_integer_value(json_object_get(ro, "id"));
	int64_t cur = json_integer_value(json_object_get(ro, "stage"));
	int64_t started = json_integer_value(json_object_get(ro,
	    "stage_started"));
	const char *version = json_string_value(json_object_get(ro, "version"));
	json_t *stages, *st;
	struct health h;
	char reason[200], full[240];

	if (stage_rows(reg, id, NULL, &stages) != OTAD_OK)
		return;
	st = json_array_get(stages, (size_t)cur);
	if (st == NULL || json_integer_value(json_object_get(st, "no")) !=
	    cur) {
		/*
		 * Its stage is not in its plan (a database from before the
		 * schema forbade it): halt, never skip a gate.
		 */
		snprintf(full, sizeof(full), "stage %lld does not exist (the "
		    "plan has %zu stages)", (long long)cur,
		    json_array_size(stages));
		if (act(reg, "UPDATE rollout SET state = 'halted', reason = ?2"
		    " WHERE id = ?1 AND state = 'active'", "it", id, 0,
		    full) == 0)
			log_warnx("rollout %lld of %s halted: %s",
			    (long long)id, version, full);
		json_decref(stages);
		return;
	}
	health_of(st, &h);
	if (breach(st, &h, reason, sizeof(reason))) {
		snprintf(full, sizeof(full), "stage %lld: %s", (long long)cur,
		    reason);
		if (act(reg, "UPDATE rollout SET state = 'halted', reason = ?2"
		    " WHERE id = ?1 AND state = 'active'", "it", id, 0,
		    full) == 0)
			log_warnx("rollout %lld of %s halted: %s",
			    (long long)id, version, full);
	} else if (now - started >= json_integer_value(json_object_get(st,
	    "soak_s")) && h.finished >= json_integer_value(json_object_get(st,
	    "min_devices"))) {
		if ((size_t)cur + 1 < json_array_size(stages)) {
			if (act(reg, "UPDATE rollout SET stage = stage + 1,"
			    " stage_started = ?2 WHERE id = ?1 AND state ="
			    " 'active' AND stage_started < ?2", "ii", id, now,
			    NULL) == 0)
				log_info("rollout %lld of %s: stage %lld "
				    "healthy, stage %lld opened", (long long)id,
				    version, (long long)cur, (long long)cur + 1);
		} else if (act(reg, "UPDATE rollout SET state = 'completed',"
		    " finished = ?2, baseline = 1 WHERE id = ?1 AND state ="
		    " 'active'", "ii", id, now, NULL) == 0) {
			/* the older baselines of its scope step aside */
			catalog_begin(reg);
			run(reg, "UPDATE rollout SET baseline = 0 WHERE id != ?1"
			    " AND baseline = 1 AND release IN (SELECT o.id FROM"
			    " release o, release n, rollout r WHERE r.id = ?1 AND"
			    " n.id = r.release AND " SAME_SCOPE("o", "n") ")",
			    "i", id);
			catalog_commit(reg);
			log_info("rollout %lld of %s completed: it is the "
			    "baseline now", (long long)id, version);
		}
	}
	json_decref(stages);
}

/*
 * Which open attempts a timeout ends: all but a silent device's whose
 * image went out, whose outcome is inferred from its polls after the
 * soak; that one fails only when the device stops polling (offline).
 */
#define TIMES_OUT                                                              \
	" (attempt.silent = 0 OR attempt.delivered = 0 OR d.last_seen <"        \
	" CAST(?1 AS INTEGER) - CAST(?2 AS INTEGER))"

void
registry_rollout_tick(struct registry *reg, int64_t now, int64_t offline_after)
{
	json_t *rows;
	size_t i;

	/* read first: an idle fleet costs the database no write at all */
	if (query_rows(reg->db, &rows, "SELECT count(*) AS n FROM attempt"
	    " JOIN rollout r ON r.id = attempt.rollout JOIN device d ON d.id ="
	    " attempt.device WHERE attempt.state IN " OPEN_STATES " AND"
	    " attempt.offered_at <= CAST(?1 AS INTEGER) - r.timeout_s AND"
	    TIMES_OUT, idtext(now, (char[24]){0}), idtext(offline_after,
	    (char[24]){0}), ARGS_END) == OTAD_OK) {
		int64_t due = json_integer_value(json_object_get(
		    json_array_get(rows, 0), "n"));

		json_decref(rows);
		/* an offer with no outcome in time has failed */
		/* one that went offline meanwhile failed outright */
		if (due > 0 && act(reg, "UPDATE attempt SET state = CASE WHEN"
		    " d.last_seen < ?1 - ?2 THEN 'failed' ELSE 'timeout' END,"
		    " reason = CASE WHEN d.last_seen < ?1 - ?2 THEN 'offline'"
		    " ELSE 'no outcome in time' END, updated_at = ?1,"
		    " finished_at = ?1 FROM rollout r, device d WHERE r.id ="
		    " attempt.rollout AND d.id = attempt.device AND"
		    " attempt.state IN " OPEN_STATES
		    " AND attempt.offered_at <= ?1 - r.timeout_s AND"
		    TIMES_OUT, "ii", now, offline_after, NULL) == 0)
			log_info("%lld attempts timed out", (long long)due);
	}
	if (query_rows(reg->db, &rows, "SELECT ro.id, ro.stage,"
	    " ro.stage_started, rel.version FROM rollout ro JOIN release rel"
	    " ON rel.id = ro.release WHERE ro.state = 'active' AND"
	    " ro.staged = 1", ARGS_END) != OTAD_OK)
		return;
	for (i = 0; i < json_array_size(rows); i++)
		tick_one(reg, json_array_get(rows, i), now);
	json_decref(rows);
}

/* ---- MQTT: what the push thread reads, and nudges ---- */

/* the eFuse is at least what the image it runs carries */
#define FLEET_SELECT                                                           \
	"SELECT d.id, d.version, ifnull(d.product, '') AS product,"           \
	" ifnull(d.chip, '') AS chip, ifnull(d.hw_rev, '') AS hw_rev,"        \
	" max(ifnull(d.secure_version, -1), ifnull((SELECT"                   \
	" max(secure_version) FROM artifact WHERE app_sha256 ="               \
	" d.running_sha256), -1)) AS secure_version, ifnull(d.free_space,"    \
	" -1) AS free_space, ifnull(d.grp, '') AS grp, ifnull(d.battery, -1)" \
	" AS battery FROM device d WHERE d.blocked = 0 AND d.version IS NOT"  \
	" NULL"

enum otad_err
registry_fleet_page(struct registry_reader *r, const char *after, int limit,
    json_t **rows)
{
	char lim[24];

	snprintf(lim, sizeof(lim), "%d", limit);
	return query_rows(r->db, rows, FLEET_SELECT " AND d.id > ?1 ORDER BY"
	    " d.id LIMIT CAST(?2 AS INTEGER)", after, lim, ARGS_END);
}

enum otad_err
registry_fleet_device(struct registry_reader *r, const char *id,
    json_t **rows)
{
	return query_rows(r->db, rows, FLEET_SELECT " AND d.id = ?1", id,
	    ARGS_END);
}

/* 1 when sql (with its text parameters) finds a row, 0 if not, -1 error. */
static int
reader_exists(struct registry_reader *r, const char *sql, ...)
{
	sqlite3_stmt *st;
	const char *p;
	va_list ap;
	int i = 1, step;

	if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_error(r->db, "query"), -1;
	va_start(ap, sql);
	while ((p = va_arg(ap, const char *)) != NULL)
		sqlite3_bind_text(st, i++, p, -1, SQLITE_TRANSIENT);
	va_end(ap);
	step = sqlite3_step(st);
	if (step != SQLITE_ROW && step != SQLITE_DONE)
		db_error(r->db, "query");
	sqlite3_finalize(st);
	return step == SQLITE_ROW ? 1 : step == SQLITE_DONE ? 0 : -1;
}

/* 1 when statement which finds a row for (device, release), 0 if not */
static int
device_release_exists(struct registry_reader *r, enum rstmt which,
    const char *device, int64_t release)
{
	sqlite3_stmt *st = r->s[which];
	int step;

	sqlite3_bind_text(st, 1, device, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, release);
	step = sqlite3_step(st);
	if (step != SQLITE_ROW && step != SQLITE_DONE)
		db_error(r->db, "attempt lookup");
	sqlite3_reset(st);
	return step == SQLITE_ROW ? 1 : step == SQLITE_DONE ? 0 : -1;
}

int
registry_triggered(struct registry_reader *r, const char *device,
    int64_t release)
{
	return device_release_exists(r, R_TRIGGERED, device, release);
}

int
registry_delta_failed(struct registry_reader *r, const char *device,
    int64_t release)
{
	return device_release_exists(r, R_DELTA_FAILED, device, release);
}

enum otad_err
registry_fleet_bases(struct registry_reader *r, const char *chip,
    json_t **rows)
{
	return query_rows(r->db, rows, "SELECT DISTINCT a.sha256 FROM device d"
	    " JOIN artifact a ON a.app_sha256 = d.running_sha256 WHERE a.chip ="
	    " ?1", chip, ARGS_END);
}

int
registry_group_triggered(struct registry_reader *r, const char *group,
    int64_t rollout)
{
	char ro[24];

	return reader_exists(r, "SELECT 1 FROM trigger WHERE grp = ?1 AND"
	    " rollout = CAST(?2 AS INTEGER)", group, idtext(rollout, ro),
	    ARGS_END);
}

enum otad_err
registry_nudges_owed(struct registry_reader *r, json_t **rows)
{
	return query_rows(r->db, rows, "SELECT id, device FROM trigger"
	    " WHERE sent_at IS NULL AND device IS NOT NULL ORDER BY id"
	    " LIMIT 256", ARGS_END);
}

enum otad_err
registry_retained_stale(struct registry_reader *r, json_t **rows)
{
	return query_rows(r->db, rows, "SELECT t.id, ifnull(t.device, '') AS"
	    " device, ifnull(t.grp, '') AS grp FROM trigger t"
	    " JOIN release rel ON rel.id = t.release"
	    " LEFT JOIN rollout ro ON ro.id = t.rollout"
	    " LEFT JOIN device d ON d.id = t.device"
	    " WHERE t.retained = 1 AND t.sent_at IS NOT NULL AND"
	    " t.cleared_at IS NULL AND (ro.state IN ('halted', 'aborted')"
	    " OR (t.grp IS NOT NULL AND ro.state != 'active' AND ro.state !="
	    " 'paused') OR semver_compare(d.version, rel.version) = 0 OR"
	    " (ifnull(ro.downgrade, 0) = 0 AND"
	    " semver_compare(d.version, rel.version) > 0)) LIMIT 256",
	    ARGS_END);
}

enum otad_err
registry_rollout_states(struct registry_reader *r, json_t **rows)
{
	return query_rows(r->db, rows, "SELECT ro.id, rel.version,"
	    " ifnull(rel.product, '') AS product, ro.state, ro.staged,"
	    " ro.stage, (SELECT count(*) FROM rollout_stage WHERE rollout ="
	    " ro.id) AS stages, ifnull(ro.reason, '') AS reason FROM rollout"
	    " ro JOIN release rel ON rel.id = ro.release WHERE ro.state !="
	    " 'draft' ORDER BY ro.id", ARGS_END);
}

enum otad_err
registry_fleet_gauges(struct registry_reader *r, int64_t now,
    int64_t offline_after, json_t **obj)
{
	static const struct part parts[] = {
		{"versions", VERSION_COUNTS " LIMIT 50"},
		{"stages", "SELECT ro.id AS rollout, rel.version, a.stage,"
			   " count(*) AS offered, sum(a.state IN ('offered',"
			   " 'downloading', 'installed')) AS in_progress,"
			   " sum(a.state = 'success') AS succeeded,"
			   " sum(a.state = 'rollback') AS rolled_back,"
			   " sum(a.state IN ('failed', 'timeout')) AS failed,"
			   " sum(a.state = 'success' AND a.crashed) AS crashed,"
			   " sum(a.state = 'success' AND a.inferred) AS"
			   " inferred_succeeded, sum(a.state = 'rollback' AND"
			   " a.inferred) AS inferred_rolled_back"
			   " FROM rollout ro JOIN release rel ON rel.id ="
			   " ro.release JOIN attempt a ON a.rollout = ro.id"
			   " WHERE ro.state IN ('active', 'paused', 'halted')"
			   " GROUP BY ro.id, a.stage ORDER BY ro.id, a.stage"},
		{"rollouts", "SELECT ro.id AS rollout, rel.version, ro.state,"
			     " ro.stage FROM rollout ro JOIN release rel ON"
			     " rel.id = ro.release WHERE ro.state IN"
			     " ('active', 'paused', 'halted') ORDER BY ro.id"},
	};
	char cutoff[24];

	return query_summary(r->db, obj, "SELECT count(*) FILTER (WHERE"
	    " last_seen >= CAST(?1 AS INTEGER)) AS online, count(*) FILTER"
	    " (WHERE last_seen < CAST(?1 AS INTEGER)) AS offline FROM device",
	    idtext(now - offline_after, cutoff), parts,
	    sizeof(parts) / sizeof(parts[0]));
}

enum otad_err
registry_nudge(struct registry *reg, const char *device, int64_t *id,
    char *why, size_t whylen)
{
	char what[128];
	enum otad_err rc;

	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK)
		return rc;
	if (run(reg, "INSERT INTO trigger (device, reason, requested_at)"
	    " SELECT id, 'nudge', ?2 FROM device WHERE id = ?1", "ti", device,
	    now_s()) != SQLITE_DONE)
		return catalog_db_fail(reg, why, whylen);
	if (sqlite3_changes(reg->db) == 0) {
		snprintf(why, whylen, "no device '%s'", device);
		return catalog_fail(reg, OTAD_ERR_NOT_FOUND);
	}
	*id = sqlite3_last_insert_rowid(reg->db);
	snprintf(what, sizeof(what), "device nudge %s", device);
	return catalog_close(reg, what, why, whylen);
}

int
registry_nudge_sent(struct registry *reg, int64_t id, char *version,
    size_t len)
{
	char idbuf[24];
	json_t *rows, *row;
	int sent = 0;

	*version = '\0';
	if (query_rows(reg->db, &rows, "SELECT t.sent_at IS NOT NULL AS sent,"
	    " ifnull(rel.version, '') AS version FROM trigger t LEFT JOIN"
	    " release rel ON rel.id = t.release WHERE t.id = CAST(?1 AS"
	    " INTEGER)", idtext(id, idbuf), ARGS_END) != OTAD_OK)
		return 0;
	if ((row = json_array_get(rows, 0)) != NULL) {
		sent = json_integer_value(json_object_get(row, "sent")) != 0;
		snprintf(version, len, "%s", json_string_value(
		    json_object_get(row, "version")));
	}
	json_decref(rows);
	return sent;
}
