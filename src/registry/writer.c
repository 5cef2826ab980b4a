/*
 * registry/writer.c: the writer thread. Producers (HTTP, MQTT threads)
 * queue records; the writer applies them in the order they were queued,
 * many to a transaction (group commit), and says when a durable one is
 * on disk. What each record kind does to the registry is here too.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>


#include "log.h"
#include "registry.h"
#include "registry_impl.h"

/* how much earlier than the report a cluster's other node may date it */
#define ADOPT_SKEW_S "5"

static const char *const wsql[W_COUNT] = {
	[W_CHECKIN] =
	    "INSERT INTO device (id, product, version, address, first_seen,"
	    " last_seen, checks, hw_rev, running_sha256, chip,"
	    " secure_version, free_space, deferred, deferred_at, battery,"
	    " reset_reason, uptime) VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1, ?6, ?7,"
	    " ?8, ?9, ?10, ?11, CASE WHEN CAST(?11 AS TEXT) IS NOT NULL THEN ?5 END,"
	    " ?12,"
	    " ?13, ?14) ON CONFLICT (id) DO UPDATE SET"
	    " battery = coalesce(excluded.battery, device.battery),"
	    " reset_reason = coalesce(excluded.reset_reason, device.reset_reason),"
	    " uptime = coalesce(excluded.uptime, device.uptime),"
	    " free_space = coalesce(excluded.free_space, device.free_space),"
	    /* the last answer's reason stands until an answer without one */
	    " deferred = excluded.deferred,"
	    " deferred_at = CASE WHEN excluded.deferred IS NULL THEN NULL"
	    " WHEN device.deferred IS NOT DISTINCT FROM excluded.deferred"
	    " THEN device.deferred_at"
	    " ELSE excluded.deferred_at END,"
	    " product = coalesce(excluded.product, device.product),"
	    /* a filesystem request says nothing of the app it runs */
	    " version = CASE WHEN ?15 = 1 THEN device.version ELSE excluded.version END,"
	    " address = excluded.address,"
	    " last_seen = max(device.last_seen, excluded.last_seen),"
	    " checks = device.checks + 1,"
	    " hw_rev = coalesce(excluded.hw_rev, device.hw_rev),"
	    " running_sha256 = coalesce(excluded.running_sha256,"
	    " device.running_sha256),"
	    " chip = coalesce(excluded.chip, device.chip),"
	    /* an eFuse only counts up */
	    " secure_version = coalesce(max(device.secure_version,"
	    " excluded.secure_version), device.secure_version,"
	    " excluded.secure_version)"
	    /* the row as it is now, for the device rows in memory */
	    " RETURNING" DEVICE_ROW_COLUMNS,
	/*
	 * A check-in that changes nothing a check reads (the row in memory,
	 * ?9..?19, which the row in the database must still match): the
	 * upsert without its RETURNING, which costs SQLite a table of its
	 * own per statement.
	 */
	[W_CHECKIN_SEEN] =
	    "UPDATE device SET last_seen = max(last_seen, ?2), checks = checks"
	    " + 1, address = ?3, uptime = coalesce(?4, uptime), battery ="
	    " coalesce(?5, battery), reset_reason = coalesce(?6, reset_reason),"
	    " free_space = coalesce(?7, free_space), deferred = ?8,"
	    " deferred_at = CASE WHEN ?8 IS NULL THEN NULL WHEN deferred IS"
	    " NOT DISTINCT FROM ?8 THEN deferred_at ELSE ?2 END"
	    " WHERE id = ?1 AND coalesce(version, '') = ?9 AND"
	    " coalesce(product, '') = ?10 AND blocked = ?11 AND"
	    " coalesce(chip, '') = ?12 AND coalesce(hw_rev, '') = ?13 AND"
	    " coalesce(secure_version, -1) = ?14 AND coalesce(token_hash, '')"
	    " = ?15 AND coalesce(grp, '') = ?16 AND coalesce(battery, -1) ="
	    " ?17 AND coalesce(running_sha256, '') = ?18 AND"
	    " coalesce(fs_version, '') = ?19 AND"
	    " coalesce(quarantined_until, 0) = ?20",
	[W_ANY_OPEN] = "SELECT 1 FROM attempt WHERE device = ?1 AND state IN "
	    OPEN_STATES " LIMIT 1",
	/*
	 * In a cluster a device may report to one node before the node that
	 * sent it the image has committed the offer: the report stood as an
	 * attempt of its own, which the offer, when it comes, makes its own.
	 */
	[W_ADOPT] =
	    "UPDATE attempt SET release = ?2, rollout = ?3, from_version ="
	    " coalesce(from_version, ?4), offered_at = ?6, stage = ?7, silent ="
	    " ?8 WHERE id = (SELECT id FROM attempt WHERE device = ?1 ORDER BY"
	    " id DESC LIMIT 1) AND rollout IS NULL AND offered_at IS NULL AND"
	    " to_version = ?5 AND updated_at >= ?6 - " ADOPT_SKEW_S,
	/* a silent device said nothing: it runs what it was last known to */
	[W_OFFER] =
	    "INSERT INTO attempt (device, release, rollout, from_version,"
	    " to_version, state, offered_at, updated_at, stage, silent)"
	    " SELECT ?1, ?2, ?3, CASE WHEN ?8 = 1 THEN (SELECT version FROM device"
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
	    " version = coalesce(excluded.version, device.version),"
	    " address = excluded.address,"
	    " last_seen = max(device.last_seen, excluded.last_seen),"
	    " uptime = coalesce(excluded.uptime, device.uptime),"
	    " free_heap = coalesce(excluded.free_heap, device.free_heap),"
	    " rssi = coalesce(excluded.rssi, device.rssi),"
	    " reset_reason = coalesce(excluded.reset_reason, device.reset_reason),"
	    " battery = coalesce(excluded.battery, device.battery),"
	    /* an eFuse only counts up */
	    " secure_version = coalesce(max(device.secure_version,"
	    " excluded.secure_version), device.secure_version,"
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
	    " 'installed' OR (delivered = 1 AND CAST(?4 AS BIGINT) IS NOT NULL"
	    " AND ?4 < ?3 - delivered_at)) AND semver_compare(from_version,"
	    " ?2) = 0",
	/* a panic or watchdog reset after an update counts against it */
	[W_CRASHED] =
	    "UPDATE attempt SET crashed = CASE WHEN ?3 IN (4, 5, 6, 7) THEN 1"
	    " ELSE crashed END, brownout = CASE WHEN ?3 = 9 THEN 1 ELSE"
	    " brownout END WHERE id = (SELECT id FROM"
	    " attempt WHERE device = ?1 AND state = 'success' ORDER BY id DESC"
	    " LIMIT 1) AND finished_at <= ?2 AND ?3 IN (4, 5, 6, 7, 9)",
	/* telemetry over MQTT: seen, and what it runs if it said */
	[W_TELEMETRY] =
	    "INSERT INTO device (id, version, first_seen, last_seen, mqtt_seen,"
	    " uptime, free_heap, rssi, reset_reason, battery, secure_version)"
	    " VALUES (?1, ?2, ?3, ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
	    " ON CONFLICT (id) DO UPDATE SET"
	    " version = coalesce(excluded.version, device.version),"
	    " last_seen = max(device.last_seen, excluded.last_seen),"
	    " mqtt_seen = max(coalesce(device.mqtt_seen, 0), excluded.mqtt_seen),"
	    " uptime = coalesce(excluded.uptime, device.uptime),"
	    " free_heap = coalesce(excluded.free_heap, device.free_heap),"
	    " rssi = coalesce(excluded.rssi, device.rssi),"
	    " reset_reason = coalesce(excluded.reset_reason, device.reset_reason),"
	    " battery = coalesce(excluded.battery, device.battery),"
	    /* an eFuse only counts up */
	    " secure_version = coalesce(max(device.secure_version,"
	    " excluded.secure_version), device.secure_version,"
	    " excluded.secure_version)",
	/*
	 * A sample of the device's telemetry series, with the version it runs
	 * (as its row says once the record is applied): at most one per
	 * interval ?8 and version, so a device updated gives its first
	 * sample at once.
	 */
	[W_SAMPLE] =
	    "INSERT INTO telemetry (device, at, version, uptime, free_heap, rssi,"
	    " reset_reason, metrics) SELECT ?1, ?2, v.version, ?3, ?4, ?5, ?6,"
	    " ?7 FROM (SELECT (SELECT version FROM device WHERE id = ?1) AS"
	    " version) v WHERE NOT EXISTS (SELECT 1 FROM telemetry t WHERE"
	    " t.device = ?1 AND t.at > ?2 - ?8 AND t.version IS NOT DISTINCT"
	    " FROM v.version)",
	[W_SAVEPOINT] = "SAVEPOINT rec",
	[W_RELEASE] = "RELEASE rec",
	[W_ROLLBACK_TO] = "ROLLBACK TO rec",
	/* the device cache's loading, a page of rows at a time */
	[W_LOAD_DEVICES] =
	    "SELECT" DEVICE_ROW_COLUMNS ", id FROM device WHERE id > ?1"
	    " ORDER BY id LIMIT 8192",
};

/* A device's row changed in a way only the database knows: read it again. */
static void
forget_device(struct registry *reg, const char *id)
{
	if (reg->cache != NULL)
		devcache_drop(reg->cache, id);
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

/* Telemetry with a reset reason may mark the last update as crashed. */
static int
crash_flags(struct registry *reg, const struct record *rec)
{
	struct db_stmt *st = reg->w[W_CRASHED];

	if (!(rec->tel.present & TEL_RESET_REASON))
		return 0;
	db_bind_text(st, 1, rec->device);
	db_bind_int64(st, 2, rec->at);
	db_bind_int64(st, 3, rec->tel.reset_reason);
	return step_done(st);
}

/*
 * Whether the device has an attempt under way: most check-ins come from
 * devices with none, and one look spares them the two updates below (or
 * -1 on an error, which they then meet).
 */
static int
any_open(struct registry *reg, const char *device)
{
	struct db_stmt *st = reg->w[W_ANY_OPEN];
	int rc;

	db_bind_text(st, 1, device);
	rc = db_step(st);
	db_reset(st);
	db_clear_bindings(st);
	return rc == DB_DONE ? 0 : 1;
}

/*
 * After a failed or rolled-back attempt of device's, recorded at at: the
 * quarantine when it makes quarantine_after of them within the period
 * (since an operator last cleared it), logged and audited.
 */
static int
quarantine_check(struct registry *reg, const char *device, int64_t at)
{
	int64_t n = atomic_load(&reg->quarantine_n);
	int64_t period = atomic_load(&reg->quarantine_s);
	char what[200];

	if (n == 0)
		return 0;
	if (run(reg, "UPDATE device SET quarantined_until = ?2 + ?3 WHERE id ="
	    " ?1 AND coalesce(quarantined_until, 0) < ?2 + ?3 AND (SELECT"
	    " count(*) FROM attempt a WHERE a.device = ?1 AND a.state IN"
	    " ('failed', 'rollback') AND a.finished_at > ?2 - ?3 AND"
	    " coalesce(a.reason, '') NOT LIKE 'reverted:%' AND"
	    " a.finished_at > coalesce(device.quarantine_cleared, 0)) >= ?4",
	    "tiii", device, at, period, n) != DB_DONE)
		return -1;
	if (db_changes(reg->db) == 0)
		return 0;
	forget_device(reg, device);
	snprintf(what, sizeof(what), "device %s quarantined for %llds: %lld "
	    "failed or rolled-back attempts within %llds", device,
	    (long long)period, (long long)n, (long long)period);
	log_warnx("%s", what);
	return run(reg, "INSERT INTO audit (at, actor, what) VALUES (?1,"
	    " 'otad', ?2)", "it", at, what) == DB_DONE ? 0 : -1;
}

/*
 * What the version a device runs now says of its attempts: back on the
 * one it left (rolled back), crashed since, or on the one offered
 * (succeeded).
 */
static int
apply_running(struct registry *reg, const struct record *rec)
{
	struct db_stmt *st;

	if (rec->version[0] == '\0' || !any_open(reg, rec->device))
		return crash_flags(reg, rec);
	st = reg->w[W_ROLLBACK];
	db_bind_text(st, 1, rec->device);
	db_bind_text(st, 2, rec->version);
	db_bind_int64(st, 3, rec->at);
	bind_tel(st, 4, &rec->tel, TEL_UPTIME, rec->tel.uptime);
	if (step_done(st) < 0 || (db_changes(reg->db) > 0 &&
	    quarantine_check(reg, rec->device, rec->at) < 0) ||
	    crash_flags(reg, rec) < 0)
		return -1;
	/* running what it was offered: that attempt succeeded */
	st = reg->w[W_SUCCESS];
	db_bind_text(st, 1, rec->device);
	db_bind_text(st, 2, rec->version);
	db_bind_int64(st, 3, rec->at);
	if (step_done(st) < 0)
		return -1;
	if (db_changes(reg->db) > 0 && rec->chip[0] == '\0') {
		/* it runs the image it was offered: its chip is that one's */
		forget_device(reg, rec->device);
		st = reg->w[W_LEARN_CHIP];
		db_bind_text(st, 1, rec->device);
		if (step_done(st) < 0)
			return -1;
	}
	return 0;
}

/* What a report or telemetry says of the device's health, kept. */
static int
sample(struct registry *reg, const struct record *rec)
{
	const struct telemetry *t = &rec->tel;
	struct db_stmt *st = reg->w[W_SAMPLE];

	if (!(t->present & TEL_SAMPLED))
		return 0;
	db_bind_text(st, 1, rec->device);
	db_bind_int64(st, 2, rec->at);
	bind_tel(st, 3, t, TEL_UPTIME, t->uptime);
	bind_tel(st, 4, t, TEL_FREE_HEAP, t->free_heap);
	bind_tel(st, 5, t, TEL_RSSI, t->rssi);
	bind_tel(st, 6, t, TEL_RESET_REASON, t->reset_reason);
	bind_text(st, 7, t->metrics[0] ? t->metrics : NULL);
	db_bind_int64(st, 8, atomic_load(&reg->tel_interval));
	return step_done(st);
}

/* Telemetry over MQTT is a check-in without an answer. */
static int
apply_telemetry(struct registry *reg, const struct record *rec)
{
	const struct telemetry *t = &rec->tel;
	struct db_stmt *st = reg->w[W_TELEMETRY];

	db_bind_text(st, 1, rec->device);
	bind_text(st, 2, rec->version);
	db_bind_int64(st, 3, rec->at);
	bind_tel(st, 4, t, TEL_UPTIME, t->uptime);
	bind_tel(st, 5, t, TEL_FREE_HEAP, t->free_heap);
	bind_tel(st, 6, t, TEL_RSSI, t->rssi);
	bind_tel(st, 7, t, TEL_RESET_REASON, t->reset_reason);
	bind_tel(st, 8, t, TEL_BATTERY, t->battery);
	bind_tel(st, 9, t, TEL_SECURE_VERSION, t->secure_version);
	if (step_done(st) < 0 || sample(reg, rec) < 0)
		return -1;
	return apply_running(reg, rec);
}

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
		    DB_DONE ? 0 : -1;
	if (dev != NULL && rec->retained &&
	    run(reg, "UPDATE trigger SET cleared_at = ?2 WHERE device = ?1"
	    " AND retained = 1 AND sent_at IS NOT NULL AND cleared_at IS"
	    " NULL", "ti", dev, rec->at) != DB_DONE)
		return -1;
	if (id > 0)
		return run(reg, "UPDATE trigger SET sent_at = ?2, release ="
		    " nullif(?3, 0), rollout = nullif(?4, 0), stage = ?5,"
		    " retained = ?6 WHERE id = ?1",
		    "iiiiii", id, rec->at, rec->offer_release, rec->offer_rollout,
		    (int64_t)rec->offer_stage, (int64_t)rec->retained) ==
		    DB_DONE ? 0 : -1;
	return run(reg, "INSERT INTO trigger (device, grp, release, rollout,"
	    " stage, reason, retained, requested_at, sent_at) VALUES (?1, ?2,"
	    " nullif(?3, 0), nullif(?4, 0), ?5, ?6, ?7, ?8, ?8)", "ttiiitii",
	    dev, rec->group[0] ? rec->group : NULL, rec->offer_release,
	    rec->offer_rollout, (int64_t)rec->offer_stage, rec->reason,
	    (int64_t)rec->retained, rec->at) == DB_DONE ? 0 : -1;
}

/*
 * A silent device's attempt whose image went out at least the stage's
 * soak ago, and at least infer_after (?3, rec->settle).
 */
#define SILENT_SETTLED                                                         \
	" device = ?1 AND silent = 1 AND delivered = 1 AND state IN"           \
	" ('downloading', 'installed') AND ?2 - delivered_at >= max(?3,"       \
	" coalesce((SELECT soak_s FROM rollout_stage s WHERE s.rollout ="        \
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
	/* its version may be inferred below: read again next time */
	forget_device(reg, rec->device);
	if (rec->refetch_release > 0 && run(reg, "UPDATE attempt SET state ="
	    " 'rollback', inferred = 1, reason = 'inferred: fetched the image"
	    " again after it was delivered', updated_at = ?3, finished_at ="
	    " ?3 WHERE device = ?1 AND release = ?2 AND delivered = 1 AND"
	    " state IN " OPEN_STATES, "tii", rec->device, rec->refetch_release,
	    rec->at) != DB_DONE)
		return -1;
	if (db_changes(reg->db) > 0 && quarantine_check(reg, rec->device,
	    rec->at) < 0)
		return -1;
	/* what it runs now: what it was sent (before the attempt closes) */
	if (run(reg, "UPDATE device SET version = a.to_version,"
	    " running_sha256 = art.app_sha256 FROM attempt a JOIN release r ON"
	    " r.id = a.release JOIN artifact art ON art.sha256 = r.artifact"
	    " WHERE device.id = ?1 AND a.id = (SELECT id FROM attempt WHERE"
	    SILENT_STAYED " ORDER BY id DESC LIMIT 1)", "tii", rec->device,
	    rec->at, rec->settle) != DB_DONE ||
	    run(reg, "UPDATE attempt SET state = 'success', inferred = 1,"
	    " reason = 'inferred: polled on without fetching it again',"
	    " updated_at = ?2, finished_at = ?2 WHERE" SILENT_STAYED, "tii",
	    rec->device, rec->at, rec->settle) != DB_DONE)
		return -1;
	return run(reg, "UPDATE attempt SET quiet_at = ?2 WHERE"
	    SILENT_SETTLED " AND quiet_at IS NULL", "tii", rec->device,
	    rec->at, rec->settle) == DB_DONE ? 0 : -1;
}

/*
 * The check-in's upsert, whose RETURNING row goes to the device rows in
 * memory: the row exactly as the database has it now. If the batch fails
 * to commit, the writer clears them.
 */
static int
step_returning(struct registry *reg, struct db_stmt *st, const char *id)
{
	int rc = db_step(st);

	if (rc == DB_ROW) {
		if (reg->cache != NULL) {
			struct device_row row;

			device_row_from(st, &row);
			devcache_put(reg->cache, id, &row, reg->batch_epoch, 0);
		}
		rc = db_step(st);
	}
	db_reset(st);
	db_clear_bindings(st);
	return rc == DB_DONE ? 0 : -1;
}

/* whether s leaves the row's value as it is (empty: the row's stands) */
static int
keeps(const char *s, const char *had)
{
	return s[0] == '\0' || strcmp(s, had) == 0;
}

/*
 * A device polling again with nothing new to say (most check-ins): its row
 * in memory stays as it is but for the battery, and the database takes
 * the narrow update, on the condition that its row still says what the
 * row in memory says (an operator may have edited it by hand). 1 when
 * recorded so, 0 when the check-in needs the whole upsert.
 */
static int
checkin_seen(struct registry *reg, const struct record *rec)
{
	struct db_stmt *st = reg->w[W_CHECKIN_SEEN];
	struct device_row row;
	int battery;

	if (reg->cache == NULL || st == NULL || rec->fs_mode || rec->silent ||
	    !devcache_peek(reg->cache, rec->device, &row) ||
	    strcmp(rec->version, row.version) != 0 ||
	    !keeps(rec->product, row.product) ||
	    !keeps(rec->hw_rev, row.hw_rev) ||
	    !keeps(rec->running_sha256, row.running_sha256) ||
	    !keeps(rec->chip, row.chip) ||
	    (rec->secure_version >= 0 &&
	    rec->secure_version > row.secure_version))
		return 0;
	db_bind_text(st, 1, rec->device);
	db_bind_int64(st, 2, rec->at);
	bind_text(st, 3, rec->address);
	bind_tel(st, 4, &rec->tel, TEL_UPTIME, rec->tel.uptime);
	bind_tel(st, 5, &rec->tel, TEL_BATTERY, rec->tel.battery);
	bind_tel(st, 6, &rec->tel, TEL_RESET_REASON, rec->tel.reset_reason);
	if (rec->free_space >= 0)
		db_bind_int64(st, 7, rec->free_space);
	bind_text(st, 8, rec->deferred);
	db_bind_text(st, 9, row.version);
	db_bind_text(st, 10, row.product);
	db_bind_int64(st, 11, row.blocked);
	db_bind_text(st, 12, row.chip);
	db_bind_text(st, 13, row.hw_rev);
	db_bind_int64(st, 14, row.secure_version);
	db_bind_text(st, 15, row.token_hash);
	db_bind_text(st, 16, row.group);
	db_bind_int64(st, 17, row.battery);
	db_bind_text(st, 18, row.running_sha256);
	db_bind_text(st, 19, row.fs_version);
	db_bind_int64(st, 20, row.quarantined_until);
	if (step_done(st) < 0)
		return -1;
	if (db_changes(reg->db) == 0)
		return 0; /* edited, or deleted: the upsert says what it is */
	battery = (rec->tel.present & TEL_BATTERY) ? (int)rec->tel.battery :
	    row.battery;
	if (battery != row.battery) {
		row.battery = battery;
		devcache_put(reg->cache, rec->device, &row, reg->batch_epoch, 0);
	}
	return 1;
}

/* The whole check-in: the device's row as the database makes it. */
static int
checkin_upsert(struct registry *reg, const struct record *rec)
{
	struct db_stmt *st = reg->w[W_CHECKIN];

	db_bind_text(st, 1, rec->device);
	bind_text(st, 2, rec->product);
	/* "": unknown, as for a device whose image is not in the store */
	bind_text(st, 3, rec->fs_mode ? NULL : rec->version);
	bind_text(st, 4, rec->address);
	db_bind_int64(st, 5, rec->at);
	bind_text(st, 6, rec->hw_rev);
	bind_text(st, 7, rec->running_sha256);
	bind_text(st, 8, rec->chip);
	if (rec->secure_version >= 0)
		db_bind_int64(st, 9, rec->secure_version);
	if (rec->free_space >= 0)
		db_bind_int64(st, 10, rec->free_space);
	bind_text(st, 11, rec->deferred);
	bind_tel(st, 12, &rec->tel, TEL_BATTERY, rec->tel.battery);
	bind_tel(st, 13, &rec->tel, TEL_RESET_REASON, rec->tel.reset_reason);
	bind_tel(st, 14, &rec->tel, TEL_UPTIME, rec->tel.uptime);
	/* neither a filesystem request nor a silent library tells the app */
	db_bind_int64(st, 15, rec->fs_mode || rec->silent);
	return step_returning(reg, st, rec->device);
}

/* W_ADOPT or W_OFFER, which take the same parameters, for rec's offer */
static int
step_offer(struct db_stmt *st, const struct record *rec)
{
	db_bind_text(st, 1, rec->device);
	db_bind_int64(st, 2, rec->offer_release);
	db_bind_int64(st, 3, rec->offer_rollout);
	db_bind_text(st, 4, rec->version);
	db_bind_text(st, 5, rec->offer_version);
	db_bind_int64(st, 6, rec->at);
	db_bind_int64(st, 7, rec->offer_stage);
	db_bind_int64(st, 8, rec->silent);
	return step_done(st);
}

static int
apply_checkin(struct registry *reg, const struct record *rec)
{
	int seen;

	if ((seen = checkin_seen(reg, rec)) < 0 ||
	    (seen == 0 && checkin_upsert(reg, rec) < 0))
		return -1;
	if ((!rec->fs_mode && apply_running(reg, rec) < 0) || (rec->silent &&
	    apply_silent(reg, rec) < 0))
		return -1;
	/* and maybe, in the same answer, the next step is offered */
	if (rec->offer_release <= 0)
		return 0;
	/*
	 * Nodes of a cluster: an outcome another node heard first takes the
	 * offer, else the offer opens one. One SQLite writer orders all.
	 */
	if (db_backend(reg->db) == DB_POSTGRES) {
		if (step_offer(reg->w[W_ADOPT], rec) < 0)
			return -1;
		if (db_changes(reg->db) > 0)
			return 0;
	}
	return step_offer(reg->w[W_OFFER], rec);
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
	    DB_DONE)
		return -1;
	if (run(reg, "UPDATE device SET fs_sha256 = ?2, fs_version ="
	    " (SELECT version FROM artifact WHERE sha256 = ?2) WHERE id = ?1"
	    " AND (SELECT kind FROM artifact WHERE sha256 = ?2) != 'app'",
	    "tt", rec->device, rec->artifact) != DB_DONE)
		return -1;
	if (db_changes(reg->db) > 0)
		forget_device(reg, rec->device); /* its fs_version */
	return 0;
}

/* A device fetched (part of) an artifact: seen, and its offer is on. */
static int
apply_download(struct registry *reg, const struct record *rec)
{
	struct db_stmt *st = reg->w[W_SEEN];

	if (rec->kind == RECORD_DELIVERED) {
		st = reg->w[W_DELIVERED];
		db_bind_text(st, 1, rec->device);
		db_bind_text(st, 2, rec->artifact);
		db_bind_int64(st, 3, rec->at);
		if (step_done(st) < 0 || delivered_fs(reg, rec) < 0)
			return -1;
		/* it cannot say otherwise: take it as running the image */
		if (!rec->assume_installed)
			return 0;
		forget_device(reg, rec->device);
		if (run(reg, "UPDATE device SET"
		    " running_sha256 = (SELECT app_sha256 FROM artifact WHERE"
		    " sha256 = ?2), version = (SELECT version FROM artifact"
		    " WHERE sha256 = ?2) WHERE id = ?1", "tt", rec->device,
		    rec->artifact) != DB_DONE)
			return -1;
		return 0;
	}

	db_bind_text(st, 1, rec->device);
	db_bind_int64(st, 2, rec->at);
	bind_text(st, 3, rec->address);
	if (step_done(st) < 0)
		return -1;
	st = reg->w[W_DOWNLOAD];
	db_bind_text(st, 1, rec->device);
	db_bind_text(st, 2, rec->artifact);
	db_bind_int64(st, 3, rec->at);
	return step_done(st);
}

static int record_report(struct registry *reg, const struct record *rec);

/* A report, and the quarantine its failure may bring. */
static int
apply_report(struct registry *reg, const struct record *rec)
{
	if (record_report(reg, rec) < 0)
		return -1;
	return rec->result == REPORT_ROLLBACK || rec->result == REPORT_FAILED ?
	    quarantine_check(reg, rec->device, rec->at) : 0;
}

static int
record_report(struct registry *reg, const struct record *rec)
{
	const struct telemetry *t = &rec->tel;
	const char *state = result_names[rec->result];
	char from[OTAD_VERSION_MAX + 1] = "";
	struct db_stmt *st;
	int64_t attempt = 0;
	int rc;

	forget_device(reg, rec->device);

	/* the version it ran before this report, for a new attempt row */
	st = reg->w[W_DEVICE_VERSION];
	db_bind_text(st, 1, rec->device);
	if (db_step(st) == DB_ROW &&
	    db_column_text(st, 0) != NULL)
		snprintf(from, sizeof(from), "%s",
		    db_column_text(st, 0));
	db_reset(st);

	st = reg->w[W_REPORT_DEVICE];
	db_bind_text(st, 1, rec->device);
	/* only a success says what the device runs now */
	bind_text(st, 2, rec->result == REPORT_SUCCESS ? rec->version : NULL);
	bind_text(st, 3, rec->address);
	db_bind_int64(st, 4, rec->at);
	bind_tel(st, 5, t, TEL_UPTIME, t->uptime);
	bind_tel(st, 6, t, TEL_FREE_HEAP, t->free_heap);
	bind_tel(st, 7, t, TEL_RSSI, t->rssi);
	bind_tel(st, 8, t, TEL_RESET_REASON, t->reset_reason);
	bind_tel(st, 9, t, TEL_BATTERY, t->battery);
	bind_tel(st, 10, t, TEL_SECURE_VERSION, t->secure_version);
	if (step_done(st) < 0 || sample(reg, rec) < 0 ||
	    crash_flags(reg, rec) < 0)
		return -1;

	st = reg->w[W_OPEN_ATTEMPT];
	db_bind_text(st, 1, rec->device);
	db_bind_text(st, 2, rec->version);
	if (db_step(st) == DB_ROW)
		attempt = db_column_int64(st, 0);
	db_reset(st);
	db_clear_bindings(st);
	if (attempt > 0) {
		st = reg->w[W_UPDATE_ATTEMPT];
		db_bind_int64(st, 1, attempt);
		db_bind_text(st, 2, state);
		bind_text(st, 3, rec->reason);
		db_bind_int64(st, 4, rec->at);
		return step_done(st);
	}
	/*
	 * No attempt waiting: a repeated report changes nothing; any other
	 * is an attempt of its own, its version unknown ('') when the
	 * report named none (the API lets only outcomes through so).
	 */
	st = reg->w[W_LAST_ATTEMPT];
	db_bind_text(st, 1, rec->device);
	rc = db_step(st);
	if (rc == DB_ROW && db_column_text(st, 0) != NULL &&
	    strcmp(db_column_text(st, 0), rec->version) ==
	    0 && strcmp(db_column_text(st, 1), state) == 0) {
		db_reset(st);
		return 0;
	}
	db_reset(st);
	st = reg->w[W_INSERT_ATTEMPT];
	db_bind_text(st, 1, rec->device);
	db_bind_text(st, 2, rec->version);
	bind_text(st, 3, from);
	db_bind_text(st, 4, state);
	bind_text(st, 5, rec->reason);
	db_bind_int64(st, 6, rec->at);
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
	/* what changes a device's row otherwise than a check-in does */
	if (rec->kind == RECORD_TELEMETRY)
		forget_device(reg, rec->device);
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

/* Begin to write, waiting as long as an operator holds the database. */
static void
writer_begin(struct registry *reg)
{
	time_t last_log = 0;

	while (db_begin_write(reg->db) != DB_OK) {
		time_t now = time(NULL);

		writer_blocked(reg);
		if (now - last_log >= 10) {
			/* every record queued, not only this batch */
			log_warnx("database is busy (%s); %zu records wait",
			    db_errmsg(reg->db),
			    (size_t)atomic_load(&reg->depth));
			last_log = now;
		}
	}
}

int
registry_device_cache_stats(struct registry *reg, struct devcache_stats *out)
{
	if (reg->cache == NULL)
		return -1;
	devcache_stats(reg->cache, out);
	return 0;
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

/*
 * Every record of batch not failed already, in order; the first that
 * fails, or NULL when all went in.
 */
static struct record *
apply_all(struct registry *reg, struct record *batch)
{
	struct record *rec;

	for (rec = batch; rec != NULL; rec = rec->next)
		if (rec->err == OTAD_OK && (rec->kind == RECORD_REPORT ?
		    apply_report(reg, rec) : apply_one(reg, rec)) < 0)
			return rec;
	return NULL;
}

/* Apply and commit a batch; whether it held a durable record. */
static int
writer_apply(struct registry *reg, struct record *batch, size_t count)
{
	struct record *rec;
	int durable = 0, rc;
	int whole = db_backend(reg->db) == DB_POSTGRES;
	time_t last_log = 0;

	for (rec = batch; rec != NULL; rec = rec->next)
		durable |= rec->durable;
	/*
	 * Check-ins alone need not wait for the disk; a batch with a
	 * report does, and its wait covers every earlier commit.
	 */
	db_durable(reg->db, durable);
	if (reg->cache != NULL)
		reg->batch_epoch = devcache_epoch(reg->cache);
	writer_begin(reg);
	if (whole) {
		/*
		 * PostgreSQL abandons the whole transaction at a failed
		 * statement: the batch is applied without savepoints (each
		 * would cost two more round trips), and when a record fails it
		 * is left out and the rest applied again from the start.
		 */
		while ((rec = apply_all(reg, batch)) != NULL) {
			enum db_code why = db_errcode(reg->db);

			log_warnx("cannot record %s of '%s': %s",
			    record_names[rec->kind], rec->device,
			    db_errmsg(reg->db));
			rec->err = OTAD_ERR_DB;
			db_exec(reg->db, "ROLLBACK");
			if (why == DB_BUSY) {
				/* the connection, not the record: all fail */
				for (rec = batch; rec != NULL; rec = rec->next)
					rec->err = OTAD_ERR_DB;
				atomic_store(&reg->busy_since, 0);
				return durable;
			}
			writer_begin(reg);
		}
	}
	for (rec = whole ? NULL : batch; rec != NULL; rec = rec->next) {
		/*
		 * A report is all or nothing (savepoint). A check-in's
		 * statements each stand alone, and check-ins are most of the
		 * traffic, so they go without.
		 */
		if (rec->kind != RECORD_REPORT) {
			if (apply_one(reg, rec) < 0) {
				log_warnx("cannot record %s of '%s': %s",
				    record_names[rec->kind], rec->device,
				    db_errmsg(reg->db));
				rec->err = OTAD_ERR_DB;
			}
			continue;
		}
		step_done(reg->w[W_SAVEPOINT]);
		if (apply_report(reg, rec) < 0) {
			log_warnx("cannot record report of '%s': %s",
			    rec->device, db_errmsg(reg->db));
			rec->err = OTAD_ERR_DB;
			step_done(reg->w[W_ROLLBACK_TO]);
		}
		step_done(reg->w[W_RELEASE]);
	}
	while ((rc = db_exec(reg->db, "COMMIT")) !=
	    DB_OK) {
		time_t now = time(NULL);

		if (rc != DB_BUSY) {
			log_warnx("cannot commit %zu records: %s", count,
			    db_errmsg(reg->db));
			db_exec(reg->db, "ROLLBACK");
			/* rows put from this batch were never written */
			if (reg->cache != NULL)
				devcache_clear(reg->cache);
			for (rec = batch; rec != NULL; rec = rec->next)
				rec->err = OTAD_ERR_DB;
			atomic_store(&reg->busy_since, 0);
			return durable;
		}
		writer_blocked(reg);
		if (now - last_log >= 10) {
			log_warnx("commit waits: database is busy; %zu records "
			    "wait", (size_t)atomic_load(&reg->depth));
			last_log = now;
		}
	}
	atomic_store(&reg->busy_since, 0);
	return durable;
}

/* Two sorted lists merged into one; b's head goes first when b_first. */
static struct record *
merge(struct record *a, struct record *b,
    int (*b_first)(const struct record *, const struct record *))
{
	struct record head, *tail = &head;

	while (a != NULL && b != NULL) {
		if (b_first(a, b)) {
			tail->next = b;
			b = b->next;
		} else {
			tail->next = a;
			a = a->next;
		}
		tail = tail->next;
	}
	tail->next = a != NULL ? a : b;
	return head.next;
}

static int
seq_before(const struct record *a, const struct record *b)
{
	return b->seq < a->seq;
}

/* a goes first on a tie: each device's records keep their order */
static int
device_before(const struct record *a, const struct record *b)
{
	return strcmp(b->device, a->device) < 0;
}

/*
 * A batch in device order, each device's records in the order they came
 * (a stable merge sort). Records of different devices do not depend on
 * each other's order; device rows in key order share B-tree pages and
 * descents, which at a million devices in random order is a quarter of
 * the writer's time.
 */
static struct record *
sort_by_device(struct record *list, size_t n)
{
	struct record *b, *rec;
	size_t i;

	if (n < 2)
		return list;
	for (i = 1, rec = list; i < n / 2; i++)
		rec = rec->next;
	b = rec->next;
	rec->next = NULL;
	return merge(sort_by_device(list, n / 2),
	    sort_by_device(b, n - n / 2), device_before);
}

/*
 * The records in seq order that may be applied now: the held ones and
 * those collected, up to the first seq missing; the rest stay held.
 */
static struct record *
in_order(struct registry *reg, struct record *collected, size_t *count)
{
	struct record *all = merge(reg->held, collected, seq_before), *rec;
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

	/* a report queued after this is found now or by the next look */
	atomic_store(&reg->durable_queued, 0);
	*count = 0;
	for (i = 0; i < n && *count < BATCH_MAX; i++) {
		struct producer *p = reg->producers[i];

		pthread_mutex_lock(&p->mu);
		if (p->head != NULL) {
			/* each producer's queue is in seq order already */
			head = merge(head, p->head, seq_before);
			*count += p->len;
			p->head = p->tail = NULL;
			p->len = 0;
			pthread_cond_broadcast(&p->not_full);
		}
		pthread_mutex_unlock(&p->mu);
	}
	return in_order(reg, head, count);
}

/*
 * The next records of a batch (in device order) to commit: every record
 * of each device that has a durable one (a report: it is answered only
 * once committed, and must not wait for the rest of a large batch), else
 * the first CHUNK_MAX. Each device's records stay in their order.
 */
static struct record *
take_chunk(struct record **batch, int look, size_t *count)
{
	struct record urgent, rest, *ut = &urgent, *rt = &rest, *first, *rec;
	size_t n = 0, i;
	int durable;

	urgent.next = rest.next = NULL;
	for (first = look ? *batch : NULL; first != NULL; first = rec) {
		/* one device's records: first .. up to rec */
		durable = 0;
		for (rec = first; rec != NULL &&
		    strcmp(rec->device, first->device) == 0; rec = rec->next)
			durable |= rec->durable;
		for (; first != rec; first = first->next) {
			if (durable) {
				ut->next = first;
				ut = first;
				n++;
			} else {
				rt->next = first;
				rt = first;
			}
		}
	}
	ut->next = rt->next = NULL;
	if (n > 0) {
		*batch = rest.next;
		*count = n;
		return urgent.next;
	}
	first = *batch;
	for (i = 1, rec = first; rec->next != NULL && i < CHUNK_MAX; i++)
		rec = rec->next;
	*batch = rec->next;
	rec->next = NULL;
	*count = i;
	return first;
}

/* How many of a list's records are durable. */
static size_t
durable_in(const struct record *rec)
{
	size_t n = 0;

	for (; rec != NULL; rec = rec->next)
		n += rec->durable != 0;
	return n;
}

/* Records applied: say so to whoever waits, and let them go. */
static void
writer_finish(struct registry *reg, struct record *list, size_t count)
{
	struct record *rec, *next;

	atomic_fetch_sub(&reg->depth, count);
	for (rec = list; rec != NULL; rec = next) {
		next = rec->next;
		if (rec->done != NULL)
			rec->done(rec->done_arg, rec->err);
		free(rec);
	}
}

/*
 * Load a page of device rows into memory, those not there already; 1 while
 * there are more to load. A clear (a new epoch) starts again from the
 * first device. The writer's own reads see all it has written.
 */
static int
load_devices(struct registry *reg)
{
	struct db_stmt *st = reg->w[W_LOAD_DEVICES];
	uint64_t epoch;
	int n = 0, rc;

	if (reg->cache == NULL)
		return 0;
	epoch = devcache_epoch(reg->cache);
	if (epoch != reg->load_epoch) {
		reg->load_epoch = epoch;
		reg->load_after[0] = '\0';
		reg->loaded = 0;
	}
	if (reg->loaded)
		return 0;
	db_bind_text(st, 1, reg->load_after);
	while ((rc = db_step(st)) == DB_ROW) {
		struct device_row row;
		const char *id = db_column_text(st, DEVICE_ROW_NCOLUMNS);

		if (id == NULL)
			continue;
		device_row_from(st, &row);
		devcache_put(reg->cache, id, &row, epoch, 1);
		snprintf(reg->load_after, sizeof(reg->load_after), "%s", id);
		n++;
	}
	db_reset(st);
	db_clear_bindings(st);
	if (rc != DB_DONE)
		return 0; /* busy or failing: the next round tries again */
	if (n == 0) {
		struct devcache_stats cs;

		reg->loaded = 1;
		devcache_stats(reg->cache, &cs);
		log_debug("%zu device rows in memory", cs.devices);
	}
	return !reg->loaded;
}

/*
 * Between batches under load: let records gather, so that one transaction
 * carries many. In random order every check-in dirties a page of its own,
 * and a transaction writes each dirty page once however many rows changed
 * in it, so larger transactions write fewer pages per check-in. Check-ins
 * wait up to GATHER_MS (nobody waits for them); a durable record (a
 * report) wakes the writer at once. Under a trickle, or after a batch
 * with a report, a 1 ms nap turns many tiny transactions (and fsyncs)
 * into fewer, and what a device did shows in the database at once.
 */
static void
gather(struct registry *reg, size_t count, int durable)
{
	const struct timespec nap = {0, NAP_NS};
	struct pollfd pfd = {.fd = reg->efd, .events = POLLIN};
	uint64_t ticks;

	if (count >= GATHER_BELOW)
		return;
	if (durable || count < GATHER_FROM) {
		nanosleep(&nap, NULL);
		return;
	}
	atomic_store(&reg->gathering, 1);
	if (poll(&pfd, 1, GATHER_MS) > 0 && read(reg->efd, &ticks,
	    sizeof(ticks)) < 0 && errno != EAGAIN)
		log_warn("writer wake-up");
	atomic_store(&reg->gathering, 0);
}

static void *
writer_main(void *arg)
{
	struct registry *reg = arg;
	struct pollfd pfd = {.fd = reg->efd, .events = POLLIN};
	const struct timespec nap = {0, NAP_NS};

	for (;;) {
		struct record *batch, *more;
		uint64_t ticks;
		size_t count, total, urgent;
		int durable;

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
			/* idle: rows to load first, then wait for records */
			if (poll(&pfd, 1, load_devices(reg) ? 0 : 1000) > 0 &&
			    read(reg->efd, &ticks, sizeof(ticks)) < 0 &&
			    errno != EAGAIN)
				log_warn("writer wake-up");
			atomic_store(&reg->idle, 0);
			continue;
		}
		atomic_store(&reg->idle, 0);
		batch = sort_by_device(batch, count);
		urgent = durable_in(batch);
		total = count;
		durable = 0;
		/*
		 * Under load a batch is all that queued meanwhile (a second's
		 * worth at a million devices): it is committed in chunks, and
		 * a report queued in the meantime is taken in and committed
		 * next, with its device's records, instead of after the rest.
		 * In device order, chunks rewrite disjoint ranges of pages.
		 */
		while (batch != NULL) {
			struct record *chunk;
			size_t n, d;

			chunk = take_chunk(&batch, urgent > 0, &n);
			d = durable_in(chunk);
			urgent -= d;
			durable |= writer_apply(reg, chunk, n);
			writer_finish(reg, chunk, n);
			if (batch == NULL || (!atomic_load(&reg->durable_queued)
			    && reg->held == NULL))
				continue;
			if ((more = writer_collect(reg, &n)) == NULL)
				continue;
			more = sort_by_device(more, n);
			urgent += durable_in(more);
			total += n;
			/* on a tie the batch's own, older records go first */
			batch = merge(batch, more, device_before);
		}
		load_devices(reg); /* busy: a page between batches */
		gather(reg, total, durable);
	}
	return NULL;
}

enum otad_err
registry_writer_start(struct registry *reg, unsigned queue_max,
    size_t cache_devices)
{
	int i;

	/* on PostgreSQL other nodes write device rows: always read them */
	if (cache_devices > 0 && db_backend(reg->db) == DB_SQLITE &&
	    (reg->cache = devcache_new(cache_devices)) == NULL)
		return OTAD_ERR_NOMEM;
	/*
	 * The writer's pages stay valid across its own commits (SQLite
	 * discards a connection's cache only for another's), so a cache that
	 * holds the device table's pages spares a read per random check-in.
	 * Pages are allocated as they are touched: the limit, not a cost.
	 */
	if (db_backend(reg->db) == DB_SQLITE && db_exec(reg->db,
	    "PRAGMA cache_size = -" WRITER_CACHE_KIB) != DB_OK)
		log_warnx("cannot size the writer's page cache: %s",
		    db_errmsg(reg->db));
	for (i = 0; i < W_COUNT; i++)
		if ((i != W_CHECKIN_SEEN || reg->cache != NULL) &&
		    db_prepare(reg->db, wsql[i], 1, &reg->w[i]) != DB_OK)
			return db_error(reg->db, "cannot prepare statement");
	/*
	 * Every device's row before the first check: about a second a
	 * million devices. Loaded later (after an operator's edit cleared
	 * them), a page goes in between the writer's batches.
	 */
	if (reg->cache != NULL) {
		struct timespec t0, t1;
		struct devcache_stats cs;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		while (load_devices(reg))
			continue;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		devcache_stats(reg->cache, &cs);
		log_info("%zu device rows in memory (%.1f s)", cs.devices,
		    (double)(t1.tv_sec - t0.tv_sec) +
		    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	}

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
	/* named, for top -H and perf: its share of the CPU is the figure */
	pthread_setname_np(reg->thread, "otad-writer");
	return OTAD_OK;
}

enum otad_err
registry_apply(struct registry *reg, struct record *batch)
{
	struct record *rec, *next;
	enum otad_err rc = OTAD_OK;
	size_t count = 0;
	int i;

	if (reg->running)
		return OTAD_ERR_INVALID; /* its writer orders every record */
	for (i = 0; i < W_COUNT; i++)
		if (reg->w[i] == NULL && i != W_CHECKIN_SEEN &&
		    db_prepare(reg->db, wsql[i], 1, &reg->w[i]) != DB_OK)
			return db_error(reg->db, "cannot prepare statement");
	for (rec = batch; rec != NULL; rec = rec->next)
		count++;
	if (batch != NULL)
		writer_apply(reg, batch, count);
	for (rec = batch; rec != NULL; rec = next) {
		next = rec->next;
		if (rec->err != OTAD_OK)
			rc = rec->err;
		free(rec);
	}
	return rc;
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
	int wake, durable;

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
	/* rec is the writer's once the lock is let go: it may be freed */
	if ((durable = rec->durable) != 0)
		atomic_store(&reg->durable_queued, 1);
	pthread_mutex_unlock(&p->mu);
	/*
	 * Only the first record into an empty queue, and only while the
	 * writer waits, costs a wake-up; a durable record ends a gathering.
	 */
	if (((wake && atomic_load(&reg->idle)) || (durable &&
	    atomic_load(&reg->gathering))) &&
	    write(reg->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("cannot wake the writer");
	return OTAD_OK;
}

void
registry_set_quarantine(struct registry *reg, unsigned n, unsigned period_s)
{
	atomic_store(&reg->quarantine_n, n);
	atomic_store(&reg->quarantine_s, period_s);
}

void
registry_set_telemetry(struct registry *reg, unsigned interval_s,
    unsigned retention_s, unsigned min_devices)
{
	atomic_store(&reg->tel_interval, interval_s);
	atomic_store(&reg->tel_retention, retention_s);
	atomic_store(&reg->compare_min, min_devices);
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
		db_finalize(reg->w[k]);
	if (reg->efd >= 0)
		close(reg->efd);
	pthread_mutex_destroy(&reg->producers_mu);
	db_close(reg->db);
	devcache_free(reg->cache);
	json_decref(reg->compared);
	free(reg);
}
