/*
 * registry/devices.c: devices as operators see and change them (list,
 * show, set, tokens, blocks), and the fleet at a glance.
 */

#include <limits.h>
#include <stdio.h>
#include <string.h>


#include "registry.h"
#include "registry_impl.h"

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
	snprintf(limit, sizeof(limit), "%d", f->limit > 0 ? f->limit : INT_MAX);
	return query_rows(reg->db, rows, "SELECT " DEVICE_COLUMNS ","
	    " (SELECT state FROM attempt WHERE device = d.id ORDER BY id DESC"
	    " LIMIT 1) AS last_attempt FROM device d"
	    " WHERE d.last_seen < CAST(?1 AS BIGINT) AND (?2 = '' OR"
	    " substr(d.id, 1, length(?2)) = ?2) AND (?3 = '' OR d.grp = ?3)"
	    " AND (?4 = '' OR d.version = ?4) ORDER BY d.id LIMIT"
	    " CAST(?5 AS BIGINT)", cutoff, f->id_prefix ? f->id_prefix : "",
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
	    "tttt", id, group, hw_rev, chip) != DB_DONE)
		return catalog_db_fail(reg, why, whylen);
	if (db_changes(reg->db) == 0) {
		snprintf(why, whylen, "no device '%s'", id);
		return catalog_fail(reg, OTAD_ERR_NOT_FOUND);
	}
	/*
	 * The schema's triggers move the generation (and the device edits)
	 * for a group, a block and a token; the hardware revision and chip
	 * are the device's to say too, so only this edit of them does.
	 */
	if (run(reg, "UPDATE catalog SET generation = generation + 1,"
	    " devices = devices + 1", "") != DB_DONE)
		return catalog_db_fail(reg, why, whylen);
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
	if (run(reg, sql, "tti", id, arg, now_s()) != DB_DONE)
		return catalog_db_fail(reg, why, whylen);
	if (db_changes(reg->db) == 0) {
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
	    " token_created = excluded.token_created WHERE device.token_hash IS"
	    " NULL",
	    id, token_hash, what, OTAD_ERR_EXISTS, none, why, whylen);
	if (rc == OTAD_OK && group != NULL)
		rc = registry_device_set(reg, id, group, NULL, NULL, why,
		    whylen);
	return rc;
}

/* what each word does: ?1 the device, ?3 now */
static const struct {
	const char *verb, *sql, *none_pre, *none_post, *audit;
} device_acts[] = {
	{"revoke-token", "UPDATE device SET token_hash = NULL, token_created ="
	    " NULL WHERE id = ?1 AND token_hash IS NOT NULL",
	    "no device", " with a token", ""},
	{"block", "UPDATE device SET blocked = 1 WHERE id = ?1",
	    "no device", "", ""},
	{"unblock", "UPDATE device SET blocked = 0 WHERE id = ?1",
	    "no device", "", ""},
	/* ?2 is unused, but PostgreSQL types every parameter up to ?3 */
	{"clear", "UPDATE device SET quarantined_until = NULL,"
	    " quarantine_cleared = ?3 WHERE id = ?1 AND quarantined_until > ?3"
	    " AND CAST(?2 AS TEXT) IS NULL",
	    "device", " is not in quarantine", " (out of quarantine)"},
};

enum otad_err
registry_device_act(struct registry *reg, const char *id, const char *verb,
    char *why, size_t whylen)
{
	char what[128], none[128];
	size_t i;

	for (i = 0; i < sizeof(device_acts) / sizeof(device_acts[0]); i++)
		if (strcmp(device_acts[i].verb, verb) == 0)
			break;
	if (i == sizeof(device_acts) / sizeof(device_acts[0])) {
		snprintf(why, whylen, "nothing is done to a device by '%s'",
		    verb);
		return OTAD_ERR_INVALID;
	}
	snprintf(what, sizeof(what), "device %s %s%s", verb, id,
	    device_acts[i].audit);
	snprintf(none, sizeof(none), "%s '%s'%s", device_acts[i].none_pre, id,
	    device_acts[i].none_post);
	return device_update(reg, device_acts[i].sql, id, NULL, what,
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
	    " d.token_created, d.blocked, d.quarantined_until,"
	    " d.quarantine_cleared, d.mqtt_seen, (SELECT sent_at FROM"
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
	    " CAST(?1 AS BIGINT)) AS seen_24h,"
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
		{"chips", "SELECT coalesce(chip, '') AS chip, count(*) AS"
			  " devices FROM device GROUP BY chip ORDER BY"
			  " count(*) DESC, chip LIMIT 50"},
		{"products", "SELECT coalesce(product, '') AS product, count(*)"
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
	    " count(*) FILTER (WHERE last_seen >= CAST(?1 AS BIGINT)) AS"
	    " online, count(*) FILTER (WHERE last_seen < CAST(?1 AS BIGINT))"
	    " AS offline FROM device", idtext(now - offline_after, cutoff),
	    parts, sizeof(parts) / sizeof(parts[0]));
}
