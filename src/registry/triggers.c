/*
 * registry/triggers.c: what the MQTT push thread reads (the fleet page by
 * page, triggers owed and sent, rollout states, fleet gauges) and nudges.
 */

#include <stdio.h>


#include "registry.h"
#include "registry_impl.h"

/* the eFuse is at least what the image it runs carries */
#define FLEET_SELECT                                                           \
	"SELECT d.id, d.version, coalesce(d.product, '') AS product,"           \
	" coalesce(d.chip, '') AS chip, coalesce(d.hw_rev, '') AS hw_rev,"        \
	" " DEVICE_EFUSE("d") " AS secure_version, coalesce(d.free_space,"        \
	" -1) AS free_space, coalesce(d.grp, '') AS grp, coalesce(d.battery, -1)" \
	" AS battery, coalesce(d.quarantined_until, 0) AS quarantined_until"  \
	" FROM device d WHERE d.blocked = 0 AND d.version IS NOT NULL"

enum otad_err
registry_fleet_page(struct registry_reader *r, const char *after, int limit,
    json_t **rows)
{
	char lim[24];

	snprintf(lim, sizeof(lim), "%d", limit);
	return query_rows(r->db, rows, FLEET_SELECT " AND d.id > ?1 ORDER BY"
	    " d.id LIMIT CAST(?2 AS BIGINT)", after, lim, ARGS_END);
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
	struct db_stmt *st;
	const char *p;
	va_list ap;
	int i = 1, step;

	if (db_prepare(r->db, sql, 0, &st) != DB_OK)
		return db_error(r->db, "query"), -1;
	va_start(ap, sql);
	while ((p = va_arg(ap, const char *)) != NULL)
		db_bind_text(st, i++, p);
	va_end(ap);
	step = db_step(st);
	if (step != DB_ROW && step != DB_DONE)
		db_error(r->db, "query");
	db_finalize(st);
	return step == DB_ROW ? 1 : step == DB_DONE ? 0 : -1;
}

/* 1 when statement which finds a row for (device, release), 0 if not */
static int
device_release_exists(struct registry_reader *r, enum rstmt which,
    const char *device, int64_t release)
{
	struct db_stmt *st = r->s[which];
	int step;

	db_bind_text(st, 1, device);
	db_bind_int64(st, 2, release);
	step = db_step(st);
	if (step != DB_ROW && step != DB_DONE)
		db_error(r->db, "attempt lookup");
	db_reset(st);
	return step == DB_ROW ? 1 : step == DB_DONE ? 0 : -1;
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
	    " rollout = CAST(?2 AS BIGINT)", group, idtext(rollout, ro),
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
	return query_rows(r->db, rows, "SELECT t.id, coalesce(t.device, '') AS"
	    " device, coalesce(t.grp, '') AS grp FROM trigger t"
	    " JOIN release rel ON rel.id = t.release"
	    " LEFT JOIN rollout ro ON ro.id = t.rollout"
	    " LEFT JOIN device d ON d.id = t.device"
	    " WHERE t.retained = 1 AND t.sent_at IS NOT NULL AND"
	    " t.cleared_at IS NULL AND (ro.state IN ('halted', 'aborted')"
	    " OR (t.grp IS NOT NULL AND ro.state != 'active' AND ro.state !="
	    " 'paused') OR semver_compare(d.version, rel.version) = 0 OR"
	    " (coalesce(ro.downgrade, 0) = 0 AND"
	    " semver_compare(d.version, rel.version) > 0)) LIMIT 256",
	    ARGS_END);
}

enum otad_err
registry_rollout_states(struct registry_reader *r, json_t **rows)
{
	return query_rows(r->db, rows, "SELECT ro.id, rel.version,"
	    " coalesce(rel.product, '') AS product, ro.state, ro.staged,"
	    " ro.stage, (SELECT count(*) FROM rollout_stage WHERE rollout ="
	    " ro.id) AS stages, coalesce(ro.reason, '') AS reason FROM rollout"
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
			   " count(*) AS offered, " ATTEMPT_TALLIES("a.")
			   " FROM rollout ro JOIN release rel ON rel.id ="
			   " ro.release JOIN attempt a ON a.rollout = ro.id"
			   " WHERE ro.state IN ('active', 'paused', 'halted')"
			   " GROUP BY ro.id, rel.version, a.stage"
			   " ORDER BY ro.id, a.stage"},
		{"quarantined", "SELECT count(*) AS devices FROM device WHERE"
				" quarantined_until > unixepoch()"},
		/* as rollouts.c's STRANDED, for every revert under way */
		{"stranded", "SELECT h.id AS rollout, n.version, count(d.id) AS"
			     " devices FROM rollout r JOIN rollout h ON h.id ="
			     " r.revert_of JOIN release n ON n.id = h.release"
			     " JOIN release p ON p.id = r.release JOIN device d"
			     " ON " STRANDED_ON("d", "n", "p") " WHERE r.state ="
			     " 'active' GROUP BY h.id, n.version ORDER BY h.id"},
		{"rollouts", "SELECT ro.id AS rollout, rel.version, ro.state,"
			     " ro.stage FROM rollout ro JOIN release rel ON"
			     " rel.id = ro.release WHERE ro.state IN"
			     " ('active', 'paused', 'halted') ORDER BY ro.id"},
	};
	char cutoff[24];

	return query_summary(r->db, obj, "SELECT count(*) FILTER (WHERE"
	    " last_seen >= CAST(?1 AS BIGINT)) AS online, count(*) FILTER"
	    " (WHERE last_seen < CAST(?1 AS BIGINT)) AS offline FROM device",
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
	    " SELECT id, 'nudge', ?2 FROM device WHERE id = ?1 RETURNING id", "ti", device,
	    now_s()) != DB_DONE)
		return catalog_db_fail(reg, why, whylen);
	if (db_changes(reg->db) == 0) {
		snprintf(why, whylen, "no device '%s'", device);
		return catalog_fail(reg, OTAD_ERR_NOT_FOUND);
	}
	*id = reg->returned;
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
	    " coalesce(rel.version, '') AS version FROM trigger t LEFT JOIN"
	    " release rel ON rel.id = t.release WHERE t.id = CAST(?1 AS"
	    " BIGINT)", idtext(id, idbuf), ARGS_END) != OTAD_OK)
		return 0;
	if ((row = json_array_get(rows, 0)) != NULL) {
		sent = json_integer_value(json_object_get(row, "sent")) != 0;
		snprintf(version, len, "%s", json_string_value(
		    json_object_get(row, "version")));
	}
	json_decref(rows);
	return sent;
}
