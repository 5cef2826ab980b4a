/*
 * registry/rollouts.c: rollouts: creating and steering them, their stages'
 * counts and health against their bounds, and the controller's tick that
 * times attempts out, opens the next stage or halts.
 */
#include <stdio.h>
#include <string.h>


#include "log.h"
#include "registry.h"
#include "registry_impl.h"

/*
 * Where count stage no of rollout id ends, fixed as it opens (in the
 * caller's transaction): the last of the first N matching devices in
 * ring order, ties by id; -1 while none match. 0, or -1 on a database
 * error. A stage of another kind, or cut already, is left as it is.
 */
int
cut_stage(struct registry *reg, int64_t id, int64_t no)
{
	char idbuf[24], nobuf[24];
	json_t *rows, *last;
	int64_t devices;
	int rc;

	if (query_rows(reg->db, &rows, "SELECT devices FROM rollout_stage"
	    " WHERE rollout = CAST(?1 AS BIGINT) AND no = CAST(?2 AS BIGINT)"
	    " AND devices IS NOT NULL AND cut_ring IS NULL", idtext(id, idbuf),
	    idtext(no, nobuf), ARGS_END) != OTAD_OK)
		return -1;
	devices = json_integer_value(json_object_get(json_array_get(rows, 0),
	    "devices"));
	json_decref(rows);
	if (devices <= 0)
		return 0;
	if (query_rows(reg->db, &rows, "SELECT r, id FROM (SELECT ring(ro.id,"
	    " d.id) AS r, d.id FROM device d, rollout ro JOIN release rel ON"
	    " rel.id = ro.release WHERE ro.id = CAST(?1 AS BIGINT) AND"
	    " " STAGE_MATCHES " AND coalesce(d.quarantined_until, 0) <="
	    " unixepoch() ORDER BY r, d.id LIMIT CAST(?2 AS BIGINT)) x"
	    " ORDER BY r DESC, id DESC LIMIT 1", idtext(id, idbuf),
	    idtext(devices, nobuf), ARGS_END) != OTAD_OK)
		return -1;
	last = json_array_get(rows, 0);
	rc = run(reg, "UPDATE rollout_stage SET cut_ring = ?3, cut_device = ?4"
	    " WHERE rollout = ?1 AND no = ?2", "iiit", id, no, last != NULL ?
	    json_integer_value(json_object_get(last, "r")) : (int64_t)-1,
	    last != NULL ? json_string_value(json_object_get(last, "id")) :
	    "") == DB_DONE ? 0 : -1;
	json_decref(rows);
	return rc;
}

/*
 * Start a draft rollout (in a catalog transaction): a publish completes
 * the publish it replaces (same scope) and is offered to everyone at
 * once; a staged rollout opens its first stage.
 */
enum otad_err
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
		snprintf(why, whylen, "database: %s", db_errmsg(reg->db));
		return OTAD_ERR_DB;
	}
	if (db_changes(reg->db) == 0) {
		snprintf(why, whylen, "rollout %lld is not a draft",
		    (long long)id);
		return OTAD_ERR_INVALID;
	}
	if (cut_stage(reg, id, 0) < 0) {
		snprintf(why, whylen, "database: %s", db_errmsg(reg->db));
		return OTAD_ERR_DB;
	}
	return OTAD_OK;
}

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
	    " WHERE n.id = CAST(?1 AS BIGINT) AND (ro.state = 'active' OR"
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
	    " \"window\", days, utc_offset, min_battery, timeout_s, downgrade,"
	    " created_by, promote, on_halt) VALUES (?1, 'draft', ?2, 1, ?3, ?4,"
	    " ?5, nullif(?6, -1), ?7, ?8, ?9, ?10, CASE WHEN ?11 = 1 THEN"
	    " 'revert' ELSE 'hold' END) RETURNING id", "iitttiiitti",
	    release, now_s(), p->window, p->days, p->utc_offset,
	    (int64_t)p->min_battery, p->timeout_s, (int64_t)p->downgrade,
	    reg->who, p->promote, (int64_t)p->on_halt_revert) != DB_DONE)
		return catalog_db_fail(reg, why, whylen);
	*id = reg->returned;
	for (i = 0; i < p->nstages; i++) {
		const struct stage *st = &p->stages[i];
		char compare[1024];

		stages_compare_text(st->compare, st->ncompare, compare,
		    sizeof(compare));
		if (run(reg, "INSERT INTO rollout_stage (rollout, no, grp,"
		    " percent, soak_s, min_devices, min_success, max_rollback,"
		    " max_failure, max_crash, devices, compare) VALUES (?1, ?2,"
		    " ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, nullif(?11, 0), ?12)",
		    "iitdiiddddit",
		    *id, (int64_t)i, st->group[0] ? st->group : NULL,
		    st->percent_x100 / 100.0, st->soak_s,
		    (int64_t)st->min_devices, st->min_success,
		    st->max_rollback, st->max_failure, st->max_crash,
		    (int64_t)st->devices, compare) != DB_DONE)
			return catalog_db_fail(reg, why, whylen);
	}
	snprintf(what, sizeof(what), "rollout create %lld release %s, %zu "
	    "stages", (long long)*id, p->version, p->nstages);
	return catalog_close(reg, what, why, whylen);
}

/*
 * Resuming a halted rollout that reverted its devices (in the caller's
 * transaction): the operator says what they do now. RESUME_KEEP_REVERTED
 * keeps each device the revert took back where it is (a rollback of the
 * halted release on its record, which is never offered again to a device
 * that rolled back from it, and which quarantine does not count);
 * RESUME_OFFER_REVERTED offers them the release again as the rollout goes
 * on. Either way the revert ends.
 */
static enum otad_err
resume_reverted(struct registry *reg, int64_t id, int how, char *why,
    size_t whylen)
{
	char idbuf[24];
	json_t *rows, *rev;
	int64_t now = now_s();

	if (query_rows(reg->db, &rows, "SELECT r.id, rel.version FROM rollout r"
	    " JOIN release rel ON rel.id = r.release JOIN rollout h ON h.id ="
	    " r.revert_of WHERE h.id = CAST(?1 AS BIGINT) AND h.state ="
	    " 'halted' AND r.state = 'active'", idtext(id, idbuf), ARGS_END) !=
	    OTAD_OK) {
		snprintf(why, whylen, "database: %s", db_errmsg(reg->db));
		return OTAD_ERR_DB;
	}
	if ((rev = json_array_get(rows, 0)) == NULL) {
		json_decref(rows);
		return OTAD_OK;
	}
	if (!(how & (RESUME_KEEP_REVERTED | RESUME_OFFER_REVERTED))) {
		snprintf(why, whylen, "rollout %lld reverted its devices to %s "
		    "(rollout %lld): say what they do now: --reverted keep "
		    "(they stay on %s) or --reverted offer (offered this "
		    "release again as the rollout goes on)", (long long)id,
		    json_string_value(json_object_get(rev, "version")),
		    (long long)json_integer_value(json_object_get(rev, "id")),
		    json_string_value(json_object_get(rev, "version")));
		json_decref(rows);
		return OTAD_ERR_INVALID;
	}
	if (((how & RESUME_KEEP_REVERTED) && run(reg, "INSERT INTO attempt"
	    " (device, release, from_version, to_version, state, reason,"
	    " updated_at, finished_at) SELECT a.device, h.release,"
	    " a.to_version, n.version, 'rollback', 'reverted: kept on ' ||"
	    " a.to_version || ' by an operator', ?3, ?3 FROM attempt a, rollout"
	    " h JOIN release n ON n.id = h.release WHERE a.rollout = ?2 AND"
	    " a.state = 'success' AND h.id = ?1", "iii", id,
	    json_integer_value(json_object_get(rev, "id")), now) != DB_DONE) ||
	    run(reg, "UPDATE rollout SET state = 'completed', finished = ?2,"
	    " reason = 'the reverted rollout resumed' WHERE id = ?1", "ii",
	    json_integer_value(json_object_get(rev, "id")), now) != DB_DONE) {
		json_decref(rows);
		snprintf(why, whylen, "database: %s", db_errmsg(reg->db));
		return OTAD_ERR_DB;
	}
	json_decref(rows);
	return OTAD_OK;
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
		    " (state = 'paused' OR (state = 'halted' AND ?3 != 0))",
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
		    " id = CAST(?1 AS BIGINT) AND state = 'draft'",
		    idtext(id, idbuf), ARGS_END) != OTAD_OK)
			return catalog_db_fail(reg, why, whylen);
		changed = json_array_size(rows) > 0;
		json_decref(rows);
		if (changed && action == ROLLOUT_APPROVE) {
			/* the trigger refuses the creator's own approval */
			if (run(reg, "UPDATE rollout SET approved_by ="
			    " nullif(?2, '') WHERE id = ?1", "it", id,
			    reg->who[0] ? reg->who : reg->actor) !=
			    DB_DONE) {
				snprintf(why, whylen, "%s", strstr(
				    db_errmsg(reg->db), "creator") ?
				    "a rollout is approved by someone other "
				    "than its creator" : db_errmsg(
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
		if (action == ROLLOUT_RESUME && (force & RESUME_FORCE) &&
		    (rc = resume_reverted(reg, id, force, why, whylen)) !=
		    OTAD_OK)
			return catalog_fail(reg, rc);
		if (run(reg, sql[action], "iii", id, now_s(),
		    (int64_t)force) != DB_DONE)
			return catalog_db_fail(reg, why, whylen);
		changed = db_changes(reg->db) > 0;
	}
	if (changed) {
		/* the state trigger wrote the audit row, with our name */
		if ((rc = catalog_commit(reg)) != OTAD_OK)
			snprintf(why, whylen, "database: %s",
			    otad_strerror(rc));
		return rc;
	}
	catalog_fail(reg, OTAD_OK);
	if (query_rows(reg->db, &rows, "SELECT state, coalesce(reason, '') AS"
	    " reason FROM rollout WHERE id = CAST(?1 AS BIGINT)",
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
	"coalesce(c.offered, 0) AS offered, coalesce(c.in_progress, 0) AS"        \
	" in_progress, coalesce(c.succeeded, 0) AS succeeded,"                   \
	" coalesce(c.rolled_back, 0) AS rolled_back, coalesce(c.failed, 0) AS"     \
	" failed, coalesce(c.timed_out, 0) AS timed_out, coalesce(c.crashed, 0)"   \
	" AS crashed, coalesce(c.brownouts, 0) AS brownouts,"                    \
	" coalesce(c.inferred_succeeded, 0) AS inferred_succeeded,"              \
	" coalesce(c.inferred_rolled_back, 0) AS inferred_rolled_back"
#define STAGE_COUNTS_JOIN                                                      \
	" LEFT JOIN (SELECT stage, count(*) AS offered, " ATTEMPT_TALLIES("")      \
	", sum(brownout) AS brownouts FROM attempt WHERE rollout = ?1"         \
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

/*
 * A rollout row's promote window, in its own offset or the rollout's: 1
 * with *w, 0 when it has none (stages open at any time), -1 when it does
 * not parse (no stage opens until it is fixed).
 */
static int
promote_window(json_t *ro, struct window *w)
{
	const char *p = json_string_value(json_object_get(ro, "promote"));
	const char *off = json_string_value(json_object_get(ro,
	    "utc_offset"));
	int offset_said;

	if (p == NULL)
		return 0;
	if (stages_parse_promote(p, w, &offset_said) < 0)
		return -1;
	if (!offset_said && off != NULL && off[0] != '\0' &&
	    stages_parse_offset(off, &w->offset_min) < 0)
		return -1;
	return 1;
}

/* Every stage of rollout id with its counts (and, with rel, its reach). */
static enum otad_err
stage_rows(struct registry *reg, int64_t id, json_t *rel, json_t **rows)
{
	char idbuf[24];

	if (rel == NULL)
		return query_rows(reg->db, rows, "SELECT st.no, st.grp AS"
		    " \"group\", st.percent, st.devices, st.cut_ring,"
		    " st.soak_s, st.min_devices,"
		    " st.min_success, st.max_rollback, st.max_failure,"
		    " st.max_crash, st.compare, " STAGE_COUNTS " FROM"
		    " rollout_stage st"
		    STAGE_COUNTS_JOIN " WHERE st.rollout = ?1 ORDER BY st.no",
		    idtext(id, idbuf), ARGS_END);
	/* the devices each stage reaches: matching the release, and in a
	 * group reached or within the widest ring reached */
	return query_rows(reg->db, rows, "SELECT st.no, st.grp AS \"group\","
	    " st.percent, st.devices, st.soak_s, st.min_devices,"
	    " st.min_success, st.max_rollback, st.max_failure, st.max_crash,"
	    " st.compare, " STAGE_COUNTS ", r.targeted, r.deferred FROM"
	    " rollout_stage st"
	    STAGE_COUNTS_JOIN " JOIN (SELECT s2.no, count(d.id) AS targeted,"
	    " count(d.deferred) AS deferred"
	    " FROM rollout_stage s2 LEFT JOIN device d ON"
	    " (?2 = '' OR d.product = ?2) AND (d.chip IS NULL OR d.chip = ?3)"
	    " AND (d.grp IN (SELECT grp FROM rollout_stage WHERE rollout = ?1"
	    " AND no <= s2.no AND grp IS NOT NULL) OR ring(?1, d.id) < (SELECT"
	    " max(percent) * 100 FROM rollout_stage WHERE rollout = ?1 AND no"
	    " <= s2.no) OR EXISTS (SELECT 1 FROM rollout_stage c WHERE"
	    " c.rollout = ?1 AND c.no <= s2.no AND c.devices IS NOT NULL AND"
	    " (ring(?1, d.id) < c.cut_ring OR (ring(?1, d.id) = c.cut_ring AND"
	    " d.id <= c.cut_device)))) WHERE s2.rollout = ?1 GROUP BY s2.no) r"
	    " ON r.no = st.no WHERE st.rollout = ?1 ORDER BY st.no",
	    idtext(id, idbuf), json_string_value(json_object_get(rel,
	    "product_s")), json_string_value(json_object_get(rel, "chip")),
	    ARGS_END);
}

/*
 * When an active staged rollout's next stage may open, as "next_stage_at"
 * (Unix seconds): once the current one has soaked, and inside its
 * promote window; null when the window never opens or does not parse.
 * The gates' other conditions (finished attempts, health) come on top.
 */
static void
next_stage_at(json_t *ro, json_t *stages, int64_t now)
{
	json_t *st = json_array_get(stages, (size_t)json_integer_value(
	    json_object_get(ro, "stage")));
	struct window w;
	int64_t at;
	int pw;

	if (st == NULL || json_array_size(stages) <= (size_t)json_integer_value(
	    json_object_get(ro, "stage")) + 1 || strcmp(json_string_value(
	    json_object_get(ro, "state")), "active") != 0)
		return;
	at = json_integer_value(json_object_get(ro, "stage_started")) +
	    json_integer_value(json_object_get(st, "soak_s"));
	if (at < now)
		at = now;
	if ((pw = promote_window(ro, &w)) != 0)
		at = pw > 0 ? stages_window_next(&w, at) : -1;
	json_object_set_new(ro, "next_stage_at", at >= 0 ? json_integer(at) :
	    json_null());
}

/*
 * The devices a revert of rollout ?1 (halted) cannot take back to release
 * ?2: their bootloader would refuse it.
 */
#define STRANDED                                                               \
	"SELECT d.id FROM device d, rollout h JOIN release n ON n.id ="          \
	" h.release, release p WHERE h.id = CAST(?1 AS BIGINT) AND p.id ="       \
	" CAST(?2 AS BIGINT) AND " STRANDED_ON("d", "n", "p") " ORDER BY d.id"   \
	" LIMIT 1000"

/*
 * A reverted rollout's "revert": the newest rollout reverting it, with its
 * attempts' outcomes, and the devices stranded on its release ("stranded",
 * at most 1,000).
 */
static enum otad_err
revert_of(struct registry *reg, json_t *ro)
{
	char idbuf[24], relbuf[24];
	json_t *rows, *rev, *stranded;
	enum otad_err rc;

	if ((rc = query_rows(reg->db, &rows, "SELECT r.id AS rollout,"
	    " rel.version, r.release, r.state, count(a.id) AS offered, "
	    ATTEMPT_TALLIES("a.") " FROM rollout r JOIN release rel ON rel.id"
	    " = r.release LEFT JOIN attempt a ON a.rollout = r.id WHERE"
	    " r.revert_of = CAST(?1 AS BIGINT) GROUP BY r.id, rel.version,"
	    " r.release, r.state ORDER BY r.id DESC LIMIT 1",
	    idtext(json_integer_value(json_object_get(ro, "id")), idbuf),
	    ARGS_END)) != OTAD_OK)
		return rc;
	if ((rev = json_array_get(rows, 0)) == NULL) {
		json_decref(rows);
		return OTAD_OK;
	}
	if ((rc = query_rows(reg->db, &stranded, STRANDED, idbuf,
	    idtext(json_integer_value(json_object_get(rev, "release")),
	    relbuf), ARGS_END)) != OTAD_OK) {
		json_decref(rows);
		return rc;
	}
	json_object_set(ro, "revert", rev);
	json_object_set_new(ro, "stranded", stranded);
	json_decref(rows);
	return OTAD_OK;
}

/*
 * The telemetry comparisons of stage st (rollout ro's current one) over
 * the samples since it opened: st["compared"], when it makes some.
 */
static enum otad_err
stage_compared(struct registry *reg, json_t *ro, json_t *st)
{
	const char *compare = json_string_value(json_object_get(st,
	    "compare"));
	json_t *res;
	enum otad_err rc;

	if (compare == NULL || compare[0] == '\0')
		return OTAD_OK;
	if ((rc = compare_stage(reg->db, atomic_load(&reg->compare_min),
	    json_integer_value(json_object_get(ro, "id")), json_string_value(
	    json_object_get(ro, "version")), compare, json_integer_value(
	    json_object_get(ro, "stage_started")), &res, NULL, 0)) != OTAD_OK)
		return rc;
	json_object_set_new(st, "compared", res);
	return OTAD_OK;
}

enum otad_err
registry_rollout_status(struct registry *reg, int64_t id, int64_t now,
    json_t **rows, char *why, size_t whylen)
{
	char idbuf[24];
	enum otad_err rc;
	size_t i, j;

	rc = query_rows(reg->db, rows, "SELECT ro.id, rel.version,"
	    " rel.product, coalesce(rel.product, '') AS product_s, rel.chip,"
	    " ro.state, ro.staged, ro.stage, ro.stage_started, ro.started,"
	    " ro.finished, ro.reason, ro.window, ro.days, ro.utc_offset,"
	    " ro.min_battery, ro.timeout_s, ro.downgrade, ro.baseline,"
	    " ro.promote, ro.on_halt, ro.revert_of, rel.forced FROM rollout ro"
	    " JOIN release rel ON"
	    " rel.id ="
	    " ro.release WHERE CAST(?1 AS BIGINT) IN (0, ro.id)"
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
			if ((int64_t)j == cur && (rc = stage_compared(reg, ro,
			    st)) != OTAD_OK) {
				snprintf(why, whylen, "database: %s",
				    otad_strerror(rc));
				json_decref(stages);
				json_decref(*rows);
				return rc;
			}
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
		next_stage_at(ro, stages, now);
		if ((rc = revert_of(reg, ro)) != OTAD_OK) {
			snprintf(why, whylen, "database: %s",
			    otad_strerror(rc));
			json_decref(stages);
			json_decref(*rows);
			return rc;
		}
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
	if (rc != DB_DONE || db_changes(reg->db) == 0 ||
	    catalog_commit(reg) != OTAD_OK) {
		catalog_fail(reg, OTAD_OK);
		return -1;
	}
	return 0;
}


/*
 * Rollout id of version just halted, on_halt = revert: the release its
 * scope ran before (the newest baseline, or publish, of an older
 * version) is offered to every device on the halted release as a forced
 * downgrade, a rollout of its own (revert_of id) that the MQTT publisher
 * triggers like any other. The devices that cannot go back are logged
 * and audited as stranded. With no earlier release, the halt says so.
 */
static void
start_revert(struct registry *reg, int64_t id, const char *version,
    int64_t now)
{
	char idbuf[24], relbuf[24], what[512];
	json_t *prev, *stranded;
	const char *back;
	int64_t rel, revert;
	size_t i, n;
	int off;

	if (catalog_begin(reg) != OTAD_OK)
		return; /* the next tick finds it halted, not reverted: below */
	if (query_rows(reg->db, &prev, "SELECT ro.release, o.version FROM"
	    " rollout ro JOIN release o ON o.id = ro.release, rollout h JOIN"
	    " release n ON n.id = h.release WHERE h.id = CAST(?1 AS BIGINT)"
	    " AND ro.id != h.id AND ro.revert_of IS NULL AND ((ro.state ="
	    " 'completed' AND ro.baseline = 1) OR (ro.state = 'active' AND"
	    " ro.staged = 0)) AND " SAME_SCOPE("o", "n") " AND"
	    " semver_compare(o.version, n.version) < 0 ORDER BY ro.id DESC"
	    " LIMIT 1", idtext(id, idbuf), ARGS_END) != OTAD_OK) {
		catalog_fail(reg, OTAD_OK);
		return;
	}
	if (json_array_size(prev) == 0) {
		json_decref(prev);
		/* said once, even of a halt by hand (reason NULL) */
		run(reg, "UPDATE rollout SET reason = coalesce(reason || '; ',"
		    " '') || 'nothing to revert to: no earlier release of its"
		    " scope was offered' WHERE id = ?1", "i", id);
		catalog_commit(reg);
		log_warnx("rollout %lld of %s: nothing to revert to",
		    (long long)id, version);
		return;
	}
	rel = json_integer_value(json_object_get(json_array_get(prev, 0),
	    "release"));
	back = json_string_value(json_object_get(json_array_get(prev, 0),
	    "version"));
	if (run(reg, "INSERT INTO rollout (release, state, created, started,"
	    " staged, stage, downgrade, created_by, revert_of) VALUES (?1,"
	    " 'active', ?2, ?2, 0, 0, 1, 'otad', ?3) RETURNING id", "iii", rel,
	    now, id) != DB_DONE || query_rows(reg->db, &stranded, STRANDED,
	    idtext(id, idbuf), idtext(rel, relbuf), ARGS_END) != OTAD_OK) {
		json_decref(prev);
		catalog_fail(reg, OTAD_OK);
		return;
	}
	revert = reg->returned;
	n = json_array_size(stranded);
	off = snprintf(what, sizeof(what), "rollout %lld reverted to %s "
	    "(rollout %lld): %zu stranded (their eFuse refuses it)%s",
	    (long long)id, back, (long long)revert, n, n ? ":" : "");
	for (i = 0; i < n && off > 0 && (size_t)off < sizeof(what) - 80; i++)
		off += snprintf(what + off, sizeof(what) - (size_t)off, " %s",
		    json_string_value(json_object_get(json_array_get(stranded,
		    i), "id")));
	if (i < n && off > 0 && (size_t)off < sizeof(what) - 8)
		snprintf(what + off, sizeof(what) - (size_t)off, " ...");
	if (run(reg, "INSERT INTO audit (at, actor, what) VALUES (?1, 'otad',"
	    " ?2)", "it", now, what) != DB_DONE ||
	    catalog_commit(reg) != OTAD_OK)
		catalog_fail(reg, OTAD_OK);
	else
		log_warnx("%s", what);
	json_decref(stranded);
	json_decref(prev);
}

/* A count stage's cut, in a transaction of its own. */
static void
cut_now(struct registry *reg, int64_t id, int64_t no)
{
	if (catalog_begin(reg) != OTAD_OK)
		return; /* busy: the next tick cuts it */
	if (cut_stage(reg, id, no) < 0 || catalog_commit(reg) != OTAD_OK)
		catalog_fail(reg, OTAD_OK);
}

/* Halt rollout id of version for why; logged. */
static void
halt(struct registry *reg, int64_t id, const char *version, const char *why)
{
	if (act(reg, "UPDATE rollout SET state = 'halted', reason = ?2"
	    " WHERE id = ?1 AND state = 'active'", "it", id, 0, why) == 0)
		log_warnx("rollout %lld of %s halted: %s", (long long)id,
		    version, why);
}

/*
 * One active staged rollout: halt, open the next stage, or complete, its
 * telemetry comparisons (compare_gate) among its bounds.
 */
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
	struct window w;
	char reason[400] = "", full[440];
	const char *cmp;
	int pw, soaked;

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
		halt(reg, id, version, full);
		json_decref(stages);
		return;
	}
	/* a count stage whose cut was not made as it opened (a crash) */
	if (json_is_integer(json_object_get(st, "devices")) &&
	    !json_is_integer(json_object_get(st, "cut_ring")))
		cut_now(reg, id, cur);
	health_of(st, &h);
	soaked = now - started >= json_integer_value(json_object_get(st,
	    "soak_s")) && h.finished >= json_integer_value(json_object_get(st,
	    "min_devices"));
	cmp = json_string_value(json_object_get(st, "compare"));
	/* read afresh before a stage that soaked opens the next */
	if (!breach(st, &h, reason, sizeof(reason)) && cmp != NULL &&
	    cmp[0] != '\0' && compare_gate(reg, ro, cmp, now, soaked, reason,
	    sizeof(reason)) < 0) {
		/* unread: not healthy either; the next tick reads */
		json_decref(stages);
		return;
	}
	if (reason[0] != '\0') {
		snprintf(full, sizeof(full), "stage %lld: %s", (long long)cur,
		    reason);
		halt(reg, id, version, full);
	} else if (soaked) {
		if ((size_t)cur + 1 < json_array_size(stages)) {
			/* staffed hours: a healthy stage waits for them */
			if ((pw = promote_window(ro, &w)) < 0 || (pw > 0 &&
			    !stages_window_open(&w, now))) {
				json_decref(stages);
				return;
			}
			if (act(reg, "UPDATE rollout SET stage = stage + 1,"
			    " stage_started = ?2 WHERE id = ?1 AND state ="
			    " 'active' AND stage_started < ?2", "ii", id, now,
			    NULL) == 0) {
				cut_now(reg, id, cur + 1);
				log_info("rollout %lld of %s: stage %lld "
				    "healthy, stage %lld opened", (long long)id,
				    version, (long long)cur, (long long)cur + 1);
			}
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
	" CAST(?1 AS BIGINT) - CAST(?2 AS BIGINT))"

void
registry_rollout_tick(struct registry *reg, int64_t now, int64_t offline_after)
{
	json_t *rows;
	size_t i;

	/* read first: an idle fleet costs the database no write at all */
	if (query_rows(reg->db, &rows, "SELECT count(*) AS n FROM attempt"
	    " JOIN rollout r ON r.id = attempt.rollout JOIN device d ON d.id ="
	    " attempt.device WHERE attempt.state IN " OPEN_STATES " AND"
	    " attempt.offered_at <= CAST(?1 AS BIGINT) - r.timeout_s AND"
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
	    " ro.stage_started, ro.promote, ro.utc_offset, rel.version FROM"
	    " rollout ro JOIN release rel"
	    " ON rel.id = ro.release WHERE ro.state = 'active' AND"
	    " ro.staged = 1", ARGS_END) != OTAD_OK)
		return;
	for (i = 0; i < json_array_size(rows); i++)
		tick_one(reg, json_array_get(rows, i), now);
	json_decref(rows);
	compare_prune(reg, now);
	/*
	 * Halted, on_halt = revert, and not reverted since its stage began
	 * (a resume --force begins it again): halted by the gates above, by
	 * a leader that died before it reverted, or by hand.
	 */
	if (query_rows(reg->db, &rows, "SELECT ro.id, rel.version FROM"
	    " rollout ro JOIN release rel ON rel.id = ro.release WHERE"
	    " ro.state = 'halted' AND ro.on_halt = 'revert' AND"
	    " coalesce(ro.reason, '') NOT LIKE '%nothing to revert to%' AND NOT"
	    " EXISTS (SELECT 1 FROM rollout c WHERE c.revert_of = ro.id AND"
	    " c.created >= coalesce(ro.stage_started, 0))", ARGS_END) !=
	    OTAD_OK)
		return;
	for (i = 0; i < json_array_size(rows); i++)
		start_revert(reg, json_integer_value(json_object_get(
		    json_array_get(rows, i), "id")), json_string_value(
		    json_object_get(json_array_get(rows, i), "version")), now);
	json_decref(rows);
}
