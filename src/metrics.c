/* metrics.c: counters and the Prometheus text exposition */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics.h"
#include "otad.h"

static atomic_uint_fast64_t counters[M_COUNT];
static atomic_uint_fast64_t statuses[600];
static size_t (*gauge_queue)(void *);
static void *gauge_queue_arg;
static int (*gauge_rows)(void *, struct metrics_device_rows *);
static void *gauge_rows_arg;
static long (*gauge_in_flight)(void);
static time_t started = 0;
static atomic_int mqtt_state = -1;
static atomic_int leader = -1; /* -1 until the controller has looked */
static pthread_mutex_t fleet_mu = PTHREAD_MUTEX_INITIALIZER;
static char *fleet_text; /* guarded by fleet_mu */

static const struct {
	const char *name, *help;
} info[M_COUNT] = {
	[M_CHECKS] = {"otad_checks_total", "Update checks answered."},
	[M_OFFERS] = {"otad_offers_total", "Checks answered with an image."},
	[M_REPORTS] = {"otad_reports_total", "Outcome reports recorded."},
	[M_BYTES_SERVED] = {"otad_bytes_served_total",
	    "Bytes of images sent in full."},
	[M_RECORD_ERRORS] = {"otad_record_errors_total",
	    "Device records the registry could not store."},
	[M_TRIGGERS] = {"otad_mqtt_triggers_sent_total",
	    "MQTT triggers the broker acknowledged."},
	[M_TELEMETRY] = {"otad_mqtt_telemetry_total",
	    "MQTT telemetry messages recorded."},
	[M_TELEMETRY_BAD] = {"otad_mqtt_telemetry_rejected_total",
	    "MQTT telemetry messages refused (malformed, unknown device)."},
	[M_MQTT_CONNECTS] = {"otad_mqtt_connects_total",
	    "Connections to the MQTT broker made."},
	[M_AUTH_FAILURES] = {"otad_auth_failures_total",
	    "Device requests refused for a missing or wrong token."},
	[M_RECORDS_DROPPED] = {"otad_records_dropped_total",
	    "Check-in records dropped because the registry's queue was full."},
	[M_CONNECTIONS_REFUSED] = {"otad_connections_refused_total",
	    "Connections refused: their address held its share already."},
	[M_CONNECTIONS_SLOW] = {"otad_connections_cut_total",
	    "Connections cut: a request took longer than request_timeout."},
	[M_LATEST] = {"otad_latest_requests_total",
	    "Requests to the fixed URL /firmware/latest/<product>."},
	[M_LATEST_OFFERS] = {"otad_latest_offers_total",
	    "Fixed-URL requests answered with an image."},
	[M_DELTA_URL] = {"otad_delta_url_requests_total",
	    "Requests to /firmware/delta/<device>."},
	[M_BREAK_GLASS] = {"otad_break_glass_total",
	    "Rollouts and publishes started through the management API "
	    "without a second operator's approval (break-glass)."},
	[M_PULL_CHECKS] = {"otad_pull_manifest_requests_total",
	    "Manifests asked for by pull-OTA libraries (esp32FOTA, "
	    "ESP32-OTA-Pull, ESPHome, esp_ghota)."},
	[M_PULL_OFFERS] = {"otad_pull_manifest_offers_total",
	    "Library manifests that listed an update for the device."},
	[M_PULL_INFERRED_ROLLBACKS] = {"otad_pull_refetches_total",
	    "Images a library fetched again after they were delivered "
	    "(inferred rollbacks)."},
};

void
metrics_add(enum metric m, uint64_t n)
{
	atomic_fetch_add_explicit(&counters[m], n, memory_order_relaxed);
}

uint64_t
metrics_get(enum metric m)
{
	return atomic_load_explicit(&counters[m], memory_order_relaxed);
}

void
metrics_status(unsigned status)
{
	if (status < 600)
		atomic_fetch_add_explicit(&statuses[status], 1,
		    memory_order_relaxed);
}

void
metrics_set_device_rows(int (*rows)(void *, struct metrics_device_rows *),
    void *arg)
{
	gauge_rows = rows;
	gauge_rows_arg = arg;
}

void
metrics_set_gauges(size_t (*queue_depth)(void *), void *arg,
    long (*in_flight)(void))
{
	gauge_queue = queue_depth;
	gauge_queue_arg = arg;
	gauge_in_flight = in_flight;
	started = time(NULL);
}

struct buf {
	char *p;
	size_t len, cap;
	int failed;
};

static void
put(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = 1;
			return;
		}
		if ((size_t)n < b->cap - b->len)
			break;
		char *grown = realloc(b->p, b->cap * 2 + (size_t)n);

		if (grown == NULL) {
			b->failed = 1;
			return;
		}
		b->p = grown;
		b->cap = b->cap * 2 + (size_t)n;
	}
	b->len += (size_t)n;
}

void
metrics_set_mqtt(int state)
{
	atomic_store(&mqtt_state, state);
}

/* A label value, escaped as the exposition format wants. */
static void
put_label(struct buf *b, const char *name, const char *v)
{
	put(b, "%s=\"", name);
	for (; v != NULL && *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			put(b, "\\%c", *v);
		else if (*v == '\n')
			put(b, "\\n");
		else
			put(b, "%c", *v);
	}
	put(b, "\"");
}

static json_int_t
field(const json_t *o, const char *name)
{
	return json_integer_value(json_object_get(o, name));
}

/* rollout="3",version="1.2.0" of a row */
static void
put_rollout(struct buf *b, const json_t *row)
{
	put(b, "rollout=\"%lld\",", (long long)field(row, "rollout"));
	put_label(b, "version", json_string_value(json_object_get(row,
	    "version")));
}

/* a stage's count of an outcome; "failed" takes in the timed out */
static json_int_t
outcome(const json_t *row, const char *name)
{
	return field(row, name) + (strcmp(name, "failed") == 0 ?
	    field(row, "timed_out") : 0);
}

/* a comparison's labels: rollout, version, stage, compare, and side */
static void
put_compared(struct buf *b, const json_t *row, const char *side)
{
	put(b, "{");
	put_rollout(b, row);
	put(b, ",stage=\"%lld\",", (long long)field(row, "stage"));
	put_label(b, "compare", json_string_value(json_object_get(row,
	    "name")));
	if (side != NULL)
		put(b, ",side=\"%s\"", side);
	put(b, "}");
}

/* The telemetry comparisons of rollouts' current stages. */
static void
compared_render(struct buf *b, const json_t *compared)
{
	static const char *const sides[] = {"updated", "control"};
	static const struct {
		const char *name, *help, *field[2];
	} gauges[] = {
		{"otad_rollout_compare", "A telemetry comparison of a rollout's "
		    "stage, each side's value: the median over its devices "
		    "(resets: a device-hour).", {"updated", "control"}},
		{"otad_rollout_compare_devices", "Devices behind each side of "
		    "a telemetry comparison.", {"updated_devices",
		    "control_devices"}},
	};
	const json_t *row;
	size_t g, i, k;

	for (g = 0; g < sizeof(gauges) / sizeof(gauges[0]); g++) {
		put(b, "# HELP %s %s\n# TYPE %s gauge\n", gauges[g].name,
		    gauges[g].help, gauges[g].name);
		json_array_foreach(compared, i, row) {
			for (k = 0; k < 2; k++) {
				put(b, "%s", gauges[g].name);
				put_compared(b, row, sides[k]);
				put(b, " %g\n", json_number_value(
				    json_object_get(row, gauges[g].field[k])));
			}
		}
	}
	put(b, "# HELP otad_rollout_compare_breached 1 when a telemetry "
	       "comparison crosses its bound with enough devices on each "
	       "side.\n# TYPE otad_rollout_compare_breached gauge\n");
	json_array_foreach(compared, i, row) {
		put(b, "otad_rollout_compare_breached");
		put_compared(b, row, NULL);
		put(b, " %d\n", strcmp(json_string_value(json_object_get(row,
		    "state")), "breach") == 0);
	}
}

static void
fleet_render(struct buf *b, const json_t *g)
{
	/* inferred_*: of succeeded and rolled_back, those otad inferred */
	static const char *const outcomes[] = {"offered", "in_progress",
	    "succeeded", "rolled_back", "failed", "crashed",
	    "inferred_succeeded", "inferred_rolled_back"};
	const json_t *row;
	size_t i, k;

	put(b, "# HELP otad_devices Devices known, online if seen within "
	       "offline_after.\n# TYPE otad_devices gauge\n"
	       "otad_devices{state=\"online\"} %lld\n"
	       "otad_devices{state=\"offline\"} %lld\n",
	    (long long)field(g, "online"), (long long)field(g, "offline"));
	put(b, "# HELP otad_devices_quarantined Devices offered nothing for "
	       "now: they failed quarantine_after times lately.\n"
	       "# TYPE otad_devices_quarantined gauge\n"
	       "otad_devices_quarantined %lld\n",
	    (long long)field(json_array_get(json_object_get(g,
	    "quarantined"), 0), "devices"));
	put(b, "# HELP otad_devices_by_version Devices by the version they "
	       "run (the 50 most common).\n"
	       "# TYPE otad_devices_by_version gauge\n");
	json_array_foreach(json_object_get(g, "versions"), i, row) {
		put(b, "otad_devices_by_version{");
		put_label(b, "version", json_string_value(json_object_get(row,
		    "version")));
		put(b, "} %lld\n", (long long)field(row, "devices"));
	}
	put(b, "# HELP otad_rollout_stage The stage a rollout is in, by "
	       "state.\n# TYPE otad_rollout_stage gauge\n");
	json_array_foreach(json_object_get(g, "rollouts"), i, row) {
		put(b, "otad_rollout_stage{");
		put_rollout(b, row);
		put(b, ",");
		put_label(b, "state", json_string_value(json_object_get(row,
		    "state")));
		put(b, "} %lld\n", (long long)field(row, "stage"));
	}
	put(b, "# HELP otad_rollout_stranded Devices a halted rollout's revert "
	       "cannot take back: their eFuse refuses the release before.\n"
	       "# TYPE otad_rollout_stranded gauge\n");
	json_array_foreach(json_object_get(g, "stranded"), i, row) {
		put(b, "otad_rollout_stranded{");
		put_rollout(b, row);
		put(b, "} %lld\n", (long long)field(row, "devices"));
	}
	put(b, "# HELP otad_rollout_attempts Update attempts of a rollout "
	       "stage, by outcome.\n# TYPE otad_rollout_attempts gauge\n");
	json_array_foreach(json_object_get(g, "stages"), i, row) {
		for (k = 0; k < sizeof(outcomes) / sizeof(outcomes[0]); k++) {
			put(b, "otad_rollout_attempts{");
			put_rollout(b, row);
			put(b, ",stage=\"%lld\",outcome=\"%s\"} %lld\n",
			    (long long)field(row, "stage"), outcomes[k],
			    (long long)outcome(row, outcomes[k]));
		}
	}
	put(b, "# HELP otad_rollout_rate Success, rollback and failure rates "
	       "of a rollout stage's finished attempts; crash rate of its "
	       "successes.\n# TYPE otad_rollout_rate gauge\n");
	json_array_foreach(json_object_get(g, "stages"), i, row) {
		double ok = (double)field(row, "succeeded");
		double back = (double)field(row, "rolled_back");
		double bad = (double)outcome(row, "failed");
		double done = ok + back + bad;
		const struct {
			const char *name;
			double num, den;
		} rates[] = {{"success", ok, done}, {"rollback", back, done},
		    {"failure", bad, done},
		    {"crash", (double)field(row, "crashed"), ok}};

		for (k = 0; k < sizeof(rates) / sizeof(rates[0]); k++) {
			if (rates[k].den <= 0)
				continue; /* no rate yet, not a rate of 0 */
			put(b, "otad_rollout_rate{");
			put_rollout(b, row);
			put(b, ",stage=\"%lld\",rate=\"%s\"} %.4f\n",
			    (long long)field(row, "stage"), rates[k].name,
			    rates[k].num / rates[k].den);
		}
	}
	compared_render(b, json_object_get(g, "compared"));
	put(b, "# HELP otad_fleet_count_seconds How long the last count of "
	       "these fleet gauges took (the next waits 5 s, or 100 times "
	       "this, up to 60 s).\n# TYPE otad_fleet_count_seconds gauge\n"
	       "otad_fleet_count_seconds %.3f\n",
	    (double)field(g, "count_ms") / 1000.0);
}

void
metrics_set_leader(int leading)
{
	atomic_store(&leader, leading ? 1 : 0);
}

void
metrics_set_fleet(const json_t *gauges)
{
	struct buf b = {.cap = 4096};
	char *old;

	if (gauges != NULL && (b.p = malloc(b.cap)) != NULL) {
		b.p[0] = '\0';
		fleet_render(&b, gauges);
		if (b.failed) {
			free(b.p);
			b.p = NULL;
		}
	}
	pthread_mutex_lock(&fleet_mu);
	old = fleet_text;
	fleet_text = b.p;
	pthread_mutex_unlock(&fleet_mu);
	free(old);
}

char *
metrics_render(void)
{
	struct buf b = {.cap = 4096};
	unsigned s;
	int i;

	if ((b.p = malloc(b.cap)) == NULL)
		return NULL;
	b.p[0] = '\0';
	put(&b, "# HELP otad_info Build information.\n"
		"# TYPE otad_info gauge\notad_info{version=\"%s\"} 1\n",
	    OTAD_VERSION);
	put(&b, "# HELP otad_start_time_seconds Start time, Unix seconds.\n"
		"# TYPE otad_start_time_seconds gauge\n"
		"otad_start_time_seconds %lld\n", (long long)started);
	for (i = 0; i < M_COUNT; i++)
		put(&b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n",
		    info[i].name, info[i].help, info[i].name, info[i].name,
		    (unsigned long long)metrics_get((enum metric)i));
	put(&b, "# HELP otad_http_responses_total HTTP responses by status."
		"\n# TYPE otad_http_responses_total counter\n");
	for (s = 100; s < 600; s++) {
		uint64_t n = atomic_load_explicit(&statuses[s],
		    memory_order_relaxed);

		if (n > 0)
			put(&b, "otad_http_responses_total{code=\"%u\"} %llu\n",
			    s, (unsigned long long)n);
	}
	if (gauge_queue != NULL)
		put(&b, "# HELP otad_registry_queue Device records waiting for "
			"the writer.\n# TYPE otad_registry_queue gauge\n"
			"otad_registry_queue %zu\n",
		    gauge_queue(gauge_queue_arg));
	if (gauge_rows != NULL) {
		struct metrics_device_rows r;

		if (gauge_rows(gauge_rows_arg, &r) == 0)
			put(&b, "# HELP otad_device_rows_cached Device rows "
				"kept in memory for checks (of device_cache).\n"
				"# TYPE otad_device_rows_cached gauge\n"
				"otad_device_rows_cached %zu\n"
				"# HELP otad_device_lookups_total Device rows "
				"looked up, by where they were found.\n"
				"# TYPE otad_device_lookups_total counter\n"
				"otad_device_lookups_total{from=\"memory\"} %llu\n"
				"otad_device_lookups_total{from=\"database\"} "
				"%llu\n", r.devices, (unsigned long long)r.hits,
			    (unsigned long long)r.misses);
	}
	if (gauge_in_flight != NULL)
		put(&b, "# HELP otad_http_in_flight Requests being answered."
			"\n# TYPE otad_http_in_flight gauge\n"
			"otad_http_in_flight %ld\n", gauge_in_flight());
	if ((i = atomic_load(&mqtt_state)) >= 0)
		put(&b, "# HELP otad_mqtt_connected 1 while connected to the "
			"MQTT broker.\n# TYPE otad_mqtt_connected gauge\n"
			"otad_mqtt_connected %d\n", i);
	if ((i = atomic_load(&leader)) >= 0)
		put(&b, "# HELP otad_leader 1 while this node leads: runs the "
			"rollout controller and sends MQTT triggers.\n"
			"# TYPE otad_leader gauge\notad_leader %d\n", i);
	pthread_mutex_lock(&fleet_mu);
	if (fleet_text != NULL)
		put(&b, "%s", fleet_text);
	pthread_mutex_unlock(&fleet_mu);
	if (b.failed) {
		free(b.p);
		return NULL;
	}
	return b.p;
}
