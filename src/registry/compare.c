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

#include "log.h"
#include "registry.h"
#include "registry_impl.h"

/*
 * A reset between two samples of a device: its uptime is less than the
 * last one's plus the time between them, by more than this (the samples'
 * times are when otad heard them, not when the device took them).
 */
#define RESET_SLACK_S "30"

/*
 * Per device and side (1: updated by rollout ?1 to version ?3 and sampled
 * since; 0: the control, untouched by the rollout, on another version),
 * over the samples since ?2: mean free heap, RSSI and metric ?4, resets
 * seen and the seconds its samples span. Both sides only of the products
 * and chips the rollout updated (a chip not known matches, as the
 * rollout's own stages have it).
 */
#define SIDES_SQL                                                              \
	"SELECT device, side, avg(free_heap) AS heap, avg(rssi) AS rssi,"      \
	" avg(m) AS m, sum(CASE WHEN pat IS NOT NULL AND uptime IS NOT NULL"   \
	" AND pup IS NOT NULL AND uptime + " RESET_SLACK_S " < pup + (at -"    \
	" pat) THEN 1 ELSE 0 END) AS resets, sum(CASE WHEN pat IS NOT NULL"    \
	" THEN at - pat ELSE 0 END) AS secs FROM (SELECT x.device, x.side,"    \
	" x.at, x.uptime, x.free_heap, x.rssi, x.m, lag(x.at) OVER (PARTITION" \
	" BY x.device, x.side ORDER BY x.at) AS pat, lag(x.uptime) OVER"       \
	" (PARTITION BY x.device, x.side ORDER BY x.at) AS pup FROM (SELECT"   \
	" t.device, t.at, t.uptime, t.free_heap, t.rssi, metric(t.metrics,"    \
	" ?4) AS m, CASE WHEN t.version = ?3 AND t.at >= (SELECT"              \
	" max(a.finished_at) FROM attempt a WHERE a.device = t.device AND"     \
	" a.rollout = CAST(?1 AS BIGINT) AND a.state = 'success') THEN 1"      \
	" WHEN coalesce(t.version, '') != ?3 AND NOT EXISTS (SELECT 1 FROM"    \
	" attempt a WHERE a.device = t.device AND a.rollout = CAST(?1 AS"      \
	" BIGINT)) THEN 0 END AS side FROM telemetry t JOIN device d ON d.id"  \
	" = t.device WHERE t.at >= CAST(?2 AS BIGINT) AND EXISTS (SELECT 1"    \
	" FROM attempt ua JOIN device u ON u.id = ua.device WHERE ua.rollout"  \
	" = CAST(?1 AS BIGINT) AND ua.state = 'success' AND u.product IS NOT"  \
	" DISTINCT FROM d.product AND (d.chip IS NULL OR u.chip IS NULL OR"    \
	" d.chip = u.chip))) x WHERE x.side IS NOT NULL) s GROUP BY device,"   \
	" side"

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

enum otad_err
registry_compare_gauges(struct registry *reg, json_t *gauges)
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
		if (compare_stage(reg->db, atomic_load(&reg->compare_min),
		    json_integer_value(json_object_get(ro, "id")),
		    json_string_value(json_object_get(ro, "version")),
		    json_string_value(json_object_get(ro, "compare")),
		    json_integer_value(json_object_get(ro, "stage_started")),
		    &res, NULL, 0) != OTAD_OK)
			continue;
		json_array_foreach(res, k, r) {
			json_object_set(r, "rollout", json_object_get(ro, "id"));
			json_object_set(r, "version", json_object_get(ro,
			    "version"));
			json_object_set(r, "stage", json_object_get(ro,
			    "stage"));
			json_array_append(all, r);
		}
		json_decref(res);
	}
	json_decref(ros);
	json_object_set_new(gauges, "compared", all);
	return OTAD_OK;
}
