/*
 * registry/records.c: what each kind of record does to the registry (a
 * check-in, a download, a report, telemetry, a trigger): its statements
 * and how it is applied, on the writer thread, inside the writer's
 * transaction (writer.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "registry.h"
#include "registry_impl.h"

/*
 * What a report or telemetry message says of a device's health, kept
 * where it says nothing; and an eFuse only counts up.
 */
#define DEVICE_HEALTH_UPDATE \
	" uptime = coalesce(excluded.uptime, device.uptime)," \
	" free_heap = coalesce(excluded.free_heap, device.free_heap)," \
	" rssi = coalesce(excluded.rssi, device.rssi)," \
	" reset_reason = coalesce(excluded.reset_reason, device.reset_reason)," \
	" battery = coalesce(excluded.battery, device.battery)," \
	" secure_version = coalesce(max(device.secure_version," \
	" excluded.secure_version), device.secure_version," \
	" excluded.secure_version)"

/* how much earlier than the report a cluster's other node may date it */
#define ADOPT_SKEW_S "5"

const char *const registry_record_sql[W_COUNT] = {
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
	    DEVICE_HEALTH_UPDATE,
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
	    DEVICE_HEALTH_UPDATE,
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
	int texted = kind == RECORD_REPORT || kind == RECORD_TELEMETRY ||
	    kind == RECORD_TRIGGER || kind == RECORD_CLEARED;
	struct record *rec = calloc(1, sizeof(*rec) +
	    (texted ? sizeof(struct record_text) : 0));

	if (rec != NULL) {
		/* struct record_text is all chars: aligned anywhere */
		rec->text = texted ? (struct record_text *)(void *)(rec + 1) :
		    NULL;
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
	bind_text(st, 7, rec->text != NULL && rec->text->metrics[0] ?
	    rec->text->metrics : NULL);
	db_bind_int64(st, 8, atomic_load(&reg->tel_interval));
	return step_done(st);
}

/* DEVICE_HEALTH_UPDATE's six values, bound from index first on. */
static void
bind_health(struct db_stmt *st, int first, const struct telemetry *t)
{
	bind_tel(st, first, t, TEL_UPTIME, t->uptime);
	bind_tel(st, first + 1, t, TEL_FREE_HEAP, t->free_heap);
	bind_tel(st, first + 2, t, TEL_RSSI, t->rssi);
	bind_tel(st, first + 3, t, TEL_RESET_REASON, t->reset_reason);
	bind_tel(st, first + 4, t, TEL_BATTERY, t->battery);
	bind_tel(st, first + 5, t, TEL_SECURE_VERSION, t->secure_version);
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
	bind_health(st, 4, t);
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
	    dev, rec->text->group[0] ? rec->text->group : NULL,
	    rec->offer_release, rec->offer_rollout, (int64_t)rec->offer_stage,
	    rec->text->reason,
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
int
record_apply_report(struct registry *reg, const struct record *rec)
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
	bind_health(st, 5, t);
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
		bind_text(st, 3, rec->text->reason);
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
	bind_text(st, 5, rec->text->reason);
	db_bind_int64(st, 6, rec->at);
	return step_done(st);
}

/* Every kind but a report, whose statements each stand alone. */
int
record_apply(struct registry *reg, const struct record *rec)
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
