/*
 * registry/compare.c: telemetry comparisons. The devices a rollout updated
 * against the devices of the same product and chip it has not touched
 * (the control group), over the telemetry samples since its stage opened:
 * what a stage's heap_drop, rssi_drop, resets and metrics.NAME bounds
 * read, for the controller's gates, status and /metrics. Samples are kept
 * (and pruned) here too.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "registry.h"
#include "registry_impl.h"

/*
 * A reset between two samples of a device: its uptime is less than the
 * last one's plus the time between them, by more than this (the samples'
 * times are when otad heard them, not when the device took them).
 */
#define RESET_SLACK_S "30"
/* resets among the updated devices before their rate may halt */
#define RESETS_MIN 3

/* devices each side of a comparison reads at most: plenty for a median */
#define SIDE_DEVICES_MAX "5000"

/*
 * Per device and side over the samples since ?2: mean free heap, RSSI and
 * metric ?4, resets seen and the seconds its samples span. Side 1 (up):
 * devices rollout ?1 updated to version ?3, their samples since. Side 0
 * (ctl): devices the rollout never offered anything, on another version,
 * of the products and chips it updated (k; a chip not known matches, as
 * the rollout's own stages have it). Each side is its first
 * SIDE_DEVICES_MAX devices in ring order, the same ones every time, so
 * that a comparison reads their samples by index whatever the fleet's
 * size. Each part is found once (MATERIALIZED): correlated, SQLite would
 * walk the rollout's attempts for every sample.
 */
#define SIDES_SQL                                                              \
	"WITH k AS MATERIALIZED (SELECT DISTINCT u.product, u.chip FROM"       \
	" attempt ua JOIN device u ON u.id = ua.device WHERE ua.rollout ="     \
	" CAST(?1 AS BIGINT) AND ua.state = 'success'),"                       \
	" up AS MATERIALIZED (SELECT device, max(finished_at) AS since FROM"   \
	" attempt WHERE rollout = CAST(?1 AS BIGINT) AND state = 'success'"    \
	" GROUP BY device ORDER BY ring(CAST(?1 AS BIGINT), device) LIMIT "    \
	SIDE_DEVICES_MAX "),"                                                  \
	" touched AS MATERIALIZED (SELECT DISTINCT device FROM attempt WHERE"  \
	" rollout = CAST(?1 AS BIGINT)),"                                      \
	" ctl AS MATERIALIZED (SELECT d.id AS device FROM device d WHERE"      \
	" coalesce(d.version, '') != ?3 AND NOT EXISTS (SELECT 1 FROM touched" \
	" WHERE touched.device = d.id) AND EXISTS (SELECT 1 FROM k WHERE"      \
	" k.product IS NOT DISTINCT FROM d.product AND (d.chip IS NULL OR"     \
	" k.chip IS NULL OR d.chip = k.chip)) ORDER BY ring(CAST(?1 AS"       \
	" BIGINT), d.id) LIMIT "                                               \
	SIDE_DEVICES_MAX "),"                                                  \
	" x AS MATERIALIZED (SELECT t.device, 1 AS side, t.at, t.uptime,"      \
	" t.free_heap, t.rssi, metric(t.metrics, ?4) AS m FROM up JOIN"        \
	" telemetry t ON t.device = up.device AND t.at >= CAST(?2 AS BIGINT)"  \
	" AND t.at >= up.since WHERE t.version = ?3 UNION ALL SELECT"          \
	" t.device, 0, t.at, t.uptime, t.free_heap, t.rssi, metric(t.metrics," \
	" ?4) FROM ctl JOIN telemetry t ON t.device = ctl.device AND t.at >="  \
	" CAST(?2 AS BIGINT) WHERE coalesce(t.version, '') != ?3)"             \
	" SELECT device, side, avg(free_heap) AS heap, avg(rssi) AS rssi,"     \
	" avg(m) AS m, sum(CASE WHEN pat IS NOT NULL AND uptime IS NOT NULL"   \
	" AND pup IS NOT NULL AND uptime + " RESET_SLACK_S " < pup + (at -"    \
	" pat) THEN 1 ELSE 0 END) AS resets, sum(CASE WHEN pat IS NOT NULL"    \
	" THEN at - pat ELSE 0 END) AS secs FROM (SELECT device, side, at,"    \
	" uptime, free_heap, rssi, m, lag(at) OVER w AS pat, lag(uptime) OVER" \
	" w AS pup FROM x WINDOW w AS (PARTITION BY device, side ORDER BY"     \
	" at)) s GROUP BY device, side"

/* One side's numbers for one comparison. */
struct side {
	double *v;      /* each device's value */
	size_t n;
	int64_t resets; /* summed, for resets */
	double hours;
};

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double
median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The column a comparison reads from SIDES_SQL's rows. */
static const char *
column(const struct comparison *c)
{
	switch (c->kind) {
	case COMPARE_HEAP_DROP:
		return "heap";
	case COMPARE_RSSI_DROP:
		return "rssi";
	case COMPARE_RESETS:
		return "secs";
	default:
		return "m";
	}
}

/* rows split into the two sides of comparison c (s[1] updated) */
static int
split(json_t *rows, const struct comparison *c, struct side s[2])
{
	const char *col = column(c);
	json_t *row;
	size_t i;

	memset(s, 0, 2 * sizeof(*s));
	if ((s[0].v = calloc(json_array_size(rows) + 1, sizeof(double))) ==
	    NULL || (s[1].v = calloc(json_array_size(rows) + 1,
	    sizeof(double))) == NULL) {
		free(s[0].v);
		return -1;
	}
	json_array_foreach(rows, i, row) {
		struct side *to = &s[json_integer_value(json_object_get(row,
		    "side")) ? 1 : 0];
		json_t *v = json_object_get(row, col);

		if (!json_is_number(v))
			continue;
		if (c->kind == COMPARE_RESETS) {
			if (json_number_value(v) <= 0)
				continue; /* one sample: spans nothing */
			to->hours += json_number_value(v) / 3600;
			to->resets += json_integer_value(json_object_get(row,
			    "resets"));
		}
		to->v[to->n++] = json_number_value(v);
	}
	return 0;
}

/*
 * Comparison c of the two sides: its result as JSON, and in reason (when
 * it breaches) why, naming both values and the devices behind them.
 */
static json_t *
judge(const struct comparison *c, struct side s[2], unsigned min,
    char *reason, size_t len)
{
	char name[COMPARE_METRIC_MAX + 16], text[80];
	double upd = 0, ctl = 0, value = NAN;
	const char *state = "ok";
	int broke = 0;
	json_t *o;

	stages_compare_name(c, name, sizeof(name));
	stages_compare_text(c, 1, text, sizeof(text));
	if (c->kind == COMPARE_RESETS) {
		if (s[1].hours > 0)
			upd = (double)s[1].resets / s[1].hours;
		/* none seen: the control's rate is below one in its hours */
		if (s[0].hours > 0)
			ctl = s[0].resets > 0 ? (double)s[0].resets /
			    s[0].hours : 1 / s[0].hours;
	} else {
		if (s[1].n > 0)
			upd = median(s[1].v, s[1].n);
		if (s[0].n > 0)
			ctl = median(s[0].v, s[0].n);
	}
	switch (c->kind) {
	case COMPARE_HEAP_DROP:
		if (ctl > 0)
			value = (ctl - upd) / ctl;
		broke = ctl > 0 && value > c->bound;
		break;
	case COMPARE_RSSI_DROP:
		value = ctl - upd;
		broke = value > c->bound;
		break;
	case COMPARE_METRIC_GE:
		if (ctl != 0)
			value = upd / ctl;
		broke = upd < c->bound * ctl;
		break;
	default: /* resets, metrics <= */
		if (ctl != 0)
			value = upd / ctl;
		broke = upd > c->bound * ctl;
		/* a reset or two is chance, whatever the rates say */
		if (c->kind == COMPARE_RESETS && s[1].resets < RESETS_MIN)
			broke = 0;
	}
	if (s[0].n < min || s[1].n < min) {
		state = "sample";
		broke = 0;
	} else if (broke) {
		state = "breach";
	}
	if (broke) {
		const char *unit = c->kind == COMPARE_HEAP_DROP ? " B" :
		    c->kind == COMPARE_RSSI_DROP ? " dBm" : "";

		if (c->kind == COMPARE_HEAP_DROP)
			snprintf(reason, len, "%s: median free heap %.0f%% "
			    "lower on the updated devices", text, value * 100);
		else if (c->kind == COMPARE_RSSI_DROP)
			snprintf(reason, len, "%s: median RSSI %.1f dB lower "
			    "on the updated devices", text, value);
		else if (c->kind == COMPARE_RESETS)
			snprintf(reason, len, "%s: %.2fx the resets a "
			    "device-hour of the devices not updated", text,
			    value);
		else
			snprintf(reason, len, "%s: median %s %.2fx that of the "
			    "devices not updated", text, c->metric, value);
		snprintf(reason + strlen(reason), len - strlen(reason),
		    " (%g%s%s over %zu updated, %g%s over %zu not)", upd, unit,
		    c->kind == COMPARE_RESETS ? " a device-hour" : "", s[1].n,
		    ctl, unit, s[0].n);
	}
	o = json_pack("{s:s, s:s, s:f, s:f, s:I, s:I, s:s}", "compare", text,
	    "name", name, "updated", upd, "control", ctl, "updated_devices",
	    (json_int_t)s[1].n, "control_devices", (json_int_t)s[0].n,
	    "state", state);
	if (o != NULL)
		json_object_set_new(o, "value", isfinite(value) ?
		    json_real(value) : json_null());
	return o;
}

enum otad_err
compare_stage(struct db *db, unsigned min, int64_t rollout,
    const char *version, const char *compare, int64_t since, json_t **out,
    char *breach, size_t len)
{
	struct comparison c[STAGE_COMPARE_MAX];
	char buf[1024], *p, *save = NULL, idbuf[24], sincebuf[24];
	size_t n = 0, i, j;
	json_t *rows[STAGE_COMPARE_MAX] = {NULL};
	enum otad_err rc = OTAD_OK;

	*out = json_array();
	if (breach != NULL && len > 0)
		breach[0] = '\0';
	snprintf(buf, sizeof(buf), "%s", compare != NULL ? compare : "");
	for (p = strtok_r(buf, ",", &save); p != NULL && n < STAGE_COMPARE_MAX;
	    p = strtok_r(NULL, ",", &save))
		if (stages_parse_compare(p, &c[n]) == 0)
			n++;
	for (i = 0; i < n && rc == OTAD_OK; i++) {
		struct side s[2];
		char reason[400] = "";
		const char *metric = c[i].kind == COMPARE_METRIC_LE ||
		    c[i].kind == COMPARE_METRIC_GE ? c[i].metric : "";

		/* comparisons reading the same metric share its rows */
		for (j = 0; j < i; j++)
			if (strcmp(metric, c[j].kind == COMPARE_METRIC_LE ||
			    c[j].kind == COMPARE_METRIC_GE ? c[j].metric : "") ==
			    0)
				break;
		if (j == i && (rc = query_rows(db, &rows[i], SIDES_SQL,
		    idtext(rollout, idbuf), idtext(since, sincebuf), version,
		    metric, ARGS_END)) != OTAD_OK)
			break;
		if (split(rows[j], &c[i], s) < 0) {
			rc = OTAD_ERR_NOMEM;
			break;
		}
		json_array_append_new(*out, judge(&c[i], s, min, reason,
		    sizeof(reason)));
		if (reason[0] != '\0' && breach != NULL && breach[0] == '\0')
			snprintf(breach, len, "%s", reason);
		free(s[0].v);
		free(s[1].v);
	}
	for (i = 0; i < n; i++)
		json_decref(rows[i]);
	if (rc != OTAD_OK) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

void
compare_prune(struct registry *reg, int64_t now)
{
	unsigned keep = atomic_load(&reg->tel_retention);

	if (keep == 0 || now - reg->pruned_at < 60)
		return;
	reg->pruned_at = now;
	/* one statement, a transaction of its own */
	if (run(reg, "DELETE FROM telemetry WHERE at < ?1", "i",
	    now - (int64_t)keep) != DB_DONE)
		log_warnx("cannot prune telemetry (next minute again): %s",
		    db_errmsg(reg->db));
}

/* seconds between two readings, at least */
#define COMPARE_EVERY_S 10

static double
seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
compare_gate(struct registry *reg, json_t *ro, const char *compare,
    int64_t now, int fresh, char *breach, size_t len)
{
	char key[24], found[400];
	json_t *had, *res;
	int64_t since = json_integer_value(json_object_get(ro,
	    "stage_started"));
	double t0;

	breach[0] = '\0';
	if (reg->compared == NULL && (reg->compared = json_object()) == NULL)
		return -1;
	idtext(json_integer_value(json_object_get(ro, "id")), key);
	had = json_object_get(reg->compared, key);
	/* the same stage, read lately: what it found then */
	if (!fresh && had != NULL && json_integer_value(json_object_get(had,
	    "since")) == since && now - json_integer_value(json_object_get(
	    had, "at")) < (reg->compare_every > 0 ? reg->compare_every :
	    COMPARE_EVERY_S)) {
		snprintf(breach, len, "%s", json_string_value(json_object_get(
		    had, "breach")));
		return 0;
	}
	t0 = seconds();
	if (compare_stage(reg->db, atomic_load(&reg->compare_min),
	    json_integer_value(json_object_get(ro, "id")), json_string_value(
	    json_object_get(ro, "version")), compare, since, &res, found,
	    sizeof(found)) != OTAD_OK)
		return -1;
	/* kept whole whatever the caller's room: the gate reads it later */
	snprintf(breach, len, "%s", found);
	/* a fleet whose samples take long to read is read less often */
	reg->compare_every = (int64_t)(20 * (seconds() - t0));
	if (reg->compare_every < COMPARE_EVERY_S)
		reg->compare_every = COMPARE_EVERY_S;
	json_object_set_new(reg->compared, key, json_pack("{s:I, s:I, s:I,"
	    " s:s, s:s, s:o}", "since", (json_int_t)since, "at",
	    (json_int_t)now, "stage", json_integer_value(json_object_get(ro,
	    "stage")), "version", json_string_value(json_object_get(ro,
	    "version")), "breach", found, "results", res));
	return 0;
}

enum otad_err
registry_compare_gauges(struct registry *reg, int64_t now, json_t *gauges)
{
	json_t *ros, *ro, *all = json_array(), *res, *r;
	enum otad_err rc;
	size_t i, k;

	if ((rc = query_rows(reg->db, &ros, "SELECT ro.id, ro.stage,"
	    " ro.stage_started, rel.version, st.compare FROM rollout ro JOIN"
	    " release rel ON rel.id = ro.release JOIN rollout_stage st ON"
	    " st.rollout = ro.id AND st.no = ro.stage WHERE ro.state IN"
	    " ('active', 'paused', 'halted') AND coalesce(st.compare, '') !="
	    " '' ORDER BY ro.id", ARGS_END)) != OTAD_OK) {
		json_decref(all);
		return rc;
	}
	json_array_foreach(ros, i, ro) {
		char breach[8], key[24];

		if (compare_gate(reg, ro, json_string_value(json_object_get(ro,
		    "compare")), now, 0, breach, sizeof(breach)) < 0)
			continue;
		res = json_object_get(json_object_get(reg->compared, idtext(
		    json_integer_value(json_object_get(ro, "id")), key)),
		    "results");
		json_array_foreach(res, k, r) {
			json_t *row = json_copy(r);

			json_object_set(row, "rollout", json_object_get(ro,
			    "id"));
			json_object_set(row, "version", json_object_get(ro,
			    "version"));
			json_object_set(row, "stage", json_object_get(ro,
			    "stage"));
			json_array_append_new(all, row);
		}
	}
	/* rollouts that ended or moved on keep nothing in the cache */
	if (reg->compared != NULL) {
		const char *key;
		json_t *v, *keep = json_object();

		json_object_foreach(reg->compared, key, v) {
			json_array_foreach(ros, i, ro) {
				if (json_integer_value(json_object_get(ro,
				    "id")) == strtoll(key, NULL, 10)) {
					json_object_set(keep, key, v);
					break;
				}
			}
		}
		json_decref(reg->compared);
		reg->compared = keep;
	}
	json_decref(ros);
	json_object_set_new(gauges, "compared", all);
	return OTAD_OK;
}
