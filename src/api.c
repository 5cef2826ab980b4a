/*
 * api.c: the device API's settings and the gates every request passes
 * (request caps, device tokens, blocks), /firmware/report, /health,
 * /metrics and the route table. The update decision is in check.c, the
 * bytes on the wire in download.c.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "api_impl.h"
#include "auth.h"
#include "log.h"
#include "metrics.h"
#include "range.h"
#include "semver.h"
#include "telemetry.h"

/*
 * Seconds the writer may wait for a held database before reports are
 * refused at once (503): devices give up on an answer after about 5 s.
 */
#define REPORT_STALL_S 2
/*
 * The ceiling of continuing ranges a minute (charge_device): this many
 * device requests' worth, and at least RANGES_MIN, the largest app image
 * (16 MiB) in esp_https_ota's smallest sensible pieces (16 KiB), or a
 * 4 MiB image in 4 KiB ones.
 */
#define RANGES_PER_REQUEST 32
#define RANGES_MIN 1024

/*
 * A report between its submit and its answer. Two owners: the request
 * (released by http when the request ends) and the writer's record
 * (released in report_done); whichever finishes last frees it. done is set
 * once the writer has an answer; a request resumed without it (the daemon
 * stopping) must not claim the report was recorded.
 */
/* A request waiting for its record to be on disk (api_submit_durable). */
struct report_wait {
	atomic_int refs;
	atomic_int done;
	enum otad_err err; /* valid once done */
	struct http_ticket ticket;
	char note[256];    /* the submitter's words for its answer */
};

static void
report_wait_release(void *p)
{
	struct report_wait *w = p;

	if (atomic_fetch_sub(&w->refs, 1) == 1)
		free(w);
}

static void
thread_free(void *p)
{
	struct api_thread *t = p;
	int i;

	registry_reader_free(t->reader);
	snapshot_release(t->snap);
	for (i = 0; i < REASON_COUNT; i++)
		http_response_free(t->not_modified[i]);
	free(t);
}

/* A 304 that says why nothing is offered (reason), or NULL */
static struct http_response *
not_modified_new(enum decision_reason reason)
{
	const char *why = policy_reason_name(reason);
	struct http_response *resp = http_response_empty();

	if (resp == NULL || http_response_header(resp, "Cache-Control",
	    "no-store") < 0 || (why != NULL && http_response_header(resp,
	    "X-Update-Deferred", why) < 0)) {
		http_response_free(resp);
		return NULL;
	}
	return resp;
}

/*
 * The 304 for reason: this HTTP thread's own. libmicrohttpd counts a
 * response's users under the response's own lock, so one 304 queued by
 * every thread made the threads wait on each other at every check (a
 * tenth of their futex calls under load); the one built at the start
 * stands in when this thread's cannot be made.
 */
struct http_response *
api_not_modified(struct api *api, enum decision_reason reason)
{
	struct api_thread *t = api_thread_state(api);

	if (t == NULL)
		return api->not_modified[reason];
	if (t->not_modified[reason] == NULL &&
	    (t->not_modified[reason] = not_modified_new(reason)) == NULL)
		return api->not_modified[reason];
	return t->not_modified[reason];
}

struct api_thread *
api_thread_state(struct api *api)
{
	struct api_thread *t = pthread_getspecific(api->thread_key);

	if (t != NULL)
		return t;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	if (registry_reader_open(api->db_path, &t->reader) != OTAD_OK) {
		free(t);
		return NULL;
	}
	registry_reader_share_cache(t->reader, api->reg);
	pthread_setspecific(api->thread_key, t);
	return t;
}

/*
 * Queue a record that the answer does not wait for. When the writer's
 * queue is full (a database held for long) it is dropped and counted:
 * the device is answered all the same, and its next check records it.
 */
void
api_record(struct api *api, struct record *rec)
{
	enum otad_err rc = registry_submit(api->reg, rec);

	if (rc == OTAD_OK)
		return;
	if (rc == OTAD_ERR_BUSY)
		metrics_add(M_RECORDS_DROPPED, 1);
	free(rec);
}

/* A report not confirmed: the registry cannot take it now. */
static int
registry_busy(struct http_request *req)
{
	return http_error_header(req, 503, "registry busy; report not "
	    "confirmed, send it again", "Retry-After", "5");
}

/* Answer an error from a helper whose caller must stop: -1. */
int
api_refuse(struct http_request *req, unsigned status, const char *msg)
{
	http_error(req, status, msg);
	return -1;
}

/* Over a cap: 429 with Retry-After. */
static int
too_many(struct http_request *req, unsigned retry_after)
{
	char secs[16];

	snprintf(secs, sizeof(secs), "%u", retry_after);
	http_error_header(req, 429, "too many requests; retry later",
	    "Retry-After", secs);
	return -1;
}

/* The per-address cap, before anything else is looked at. */
int
api_gate_address(struct http_request *req, struct api *api)
{
	unsigned limit = atomic_load(&api->per_address), retry;
	char addr[OTAD_ADDR_MAX];

	if (limit == 0)
		return 0; /* off (the default): no address to format */
	http_peer(req, addr, sizeof(addr));
	if (!ratelimit_hit(api->rl_address, addr, strlen(addr), limit,
	    (int64_t)time(NULL), &retry))
		return too_many(req, retry);
	return 0;
}

int
api_unauthorized(struct http_request *req, const char *msg)
{
	/*
	 * esp_http_client joins every WWW-Authenticate value into one string
	 * and answers only when it starts with "Digest" or "Basic"
	 * (esp_http_client.c, esp_http_client_add_auth): Basic comes first.
	 * The device then sends the credentials of its URL, ID:TOKEN.
	 */
	http_error_header(req, 401, msg, "WWW-Authenticate",
	    "Basic realm=\"otad\", Bearer realm=\"otad\"");
	return -1;
}

/*
 * The device's own cap, charged only for a request that is its own. The
 * ranges that continue a download (esp_https_ota's partial download asks
 * for a 1.28 MB image in 313 pieces of 4 KiB) are one download: they
 * count against a ceiling of their own (RANGES_PER_REQUEST times the cap,
 * at least RANGES_MIN a minute), which only a device stuck in a loop
 * reaches.
 */
static int
charge_device(struct http_request *req, struct api *api, const char *id)
{
	unsigned limit = atomic_load(&api->per_device), retry;
	struct ratelimit *rl = api->rl_device;

	if (range_continues(http_header(req, "Range")) && limit > 0) {
		rl = api->rl_ranges;
		limit = limit > RANGES_MIN / RANGES_PER_REQUEST ?
		    limit * RANGES_PER_REQUEST : RANGES_MIN;
	}
	if (!ratelimit_hit(rl, id, strlen(id), limit, (int64_t)time(NULL),
	    &retry))
		return too_many(req, retry);
	return 0;
}

/*
 * An authentication failed: count it against the address it came from.
 * Answers 401 (with msg) or 403 (forbidden), then -1. A request with no
 * credentials at all is not a guess: esp_http_client sends its URL's
 * only after a challenge, on every new client, so it only gets one.
 */
static int
auth_failed(struct http_request *req, struct api *api, int forbidden,
    const char *msg)
{
	char addr[OTAD_ADDR_MAX];
	unsigned retry;

	http_peer(req, addr, sizeof(addr));
	ratelimit_hit(api->rl_auth, addr, strlen(addr),
	    atomic_load(&api->auth_failures), (int64_t)time(NULL), &retry);
	metrics_add(M_AUTH_FAILURES, 1);
	if (forbidden)
		return api_refuse(req, 403, msg);
	return api_unauthorized(req, msg);
}

/*
 * The token when device_auth = token (from X-Device-Token, ?token=,
 * Authorization: Bearer, or Basic auth whose user is the device), then
 * the device's own cap: only a request that proved it is the device
 * spends the device's requests, so nobody else can lock it out. Failed
 * authentications are capped per address instead. row is the device's row
 * (found or not). 0 to go on, -1 when refused (answered).
 */
static int
gate_device(struct http_request *req, struct api *api,
    struct registry_reader *reader, const char *id,
    const struct device_row *row, int found)
{
	char hash[65], owner[OTAD_ID_MAX + 1], *user = NULL, *pass = NULL;
	char addr[OTAD_ADDR_MAX];
	const char *token, *authz;
	unsigned retry;
	int rc = -1;

	if (!atomic_load(&api->tokens))
		return charge_device(req, api, id);
	http_peer(req, addr, sizeof(addr));
	if (ratelimit_spent(api->rl_auth, addr, strlen(addr),
	    atomic_load(&api->auth_failures), (int64_t)time(NULL), &retry))
		return too_many(req, retry); /* guessing: not even looked at */
	token = http_header(req, "X-Device-Token");
	if (token == NULL)
		token = http_arg(req, "token");
	authz = http_header(req, "Authorization");
	if (token == NULL && authz != NULL &&
	    strncasecmp(authz, "Bearer ", 7) == 0)
		token = authz + 7;
	if (token == NULL && http_basic_auth(req, &user, &pass) == 0) {
		size_t ulen = strlen(user), idlen = strlen(id);

		/*
		 * Basic splits at the first colon, and MAC addresses are full
		 * of them: "AA:BB:..:FF:token" arrives as "AA" and the rest.
		 */
		if (strcmp(user, id) == 0)
			token = pass;
		else if (ulen < idlen && strncmp(id, user, ulen) == 0 &&
		    id[ulen] == ':' && strncmp(pass, id + ulen + 1,
		    idlen - ulen - 1) == 0 && pass[idlen - ulen - 1] == ':')
			token = pass + (idlen - ulen);
		else {
			http_free_basic(user, pass);
			return auth_failed(req, api, 1,
			    "basic auth user is not this device");
		}
	}
	if (token == NULL) {
		api_unauthorized(req, "missing device token");
		goto done;
	}
	if (auth_token_hash(token, hash) != OTAD_OK) {
		auth_failed(req, api, 0, "invalid device token");
		goto done;
	}
	if (found && auth_hash_equal(hash, row->token_hash)) {
		rc = charge_device(req, api, id);
		goto done;
	}
	if (registry_token_owner(reader, hash, owner, sizeof(owner)) ==
	    OTAD_OK && strcmp(owner, id) != 0)
		auth_failed(req, api, 1, "token belongs to another device");
	else
		auth_failed(req, api, 0, "unknown device or wrong token");
done:
	http_free_basic(user, pass);
	return rc;
}

/*
 * The device's row (zeroed for one never seen) and everything that may
 * refuse it: its cap, its token, a block. 0 to go on, -1 when answered.
 */
int
api_lookup_device(struct http_request *req, struct api *api,
    struct api_thread *t, const char *id, struct device_row *row)
{
	enum otad_err rc = registry_device_get(t->reader, id, row);

	if (rc != OTAD_OK && rc != OTAD_ERR_NOT_FOUND)
		return api_refuse(req, 503, "registry unavailable");
	if (rc != OTAD_OK) {
		memset(row, 0, sizeof(*row)); /* a first check-in */
		row->secure_version = -1;
	}
	if (gate_device(req, api, t->reader, id, row, rc == OTAD_OK) < 0)
		return -1;
	if (row->blocked)
		return api_refuse(req, 403, "device is blocked");
	return 0;
}

/* Parse and check a report body into rec; NULL or the 400 reason. */
static const char *
parse_report(struct http_request *req, struct record *rec, char *msg,
    size_t msglen)
{
	char idbuf[OTAD_ID_MAX + 1];
	const char *body, *s;
	json_error_t jerr;
	json_t *o, *v;
	size_t len, i;
	int r;

	body = http_body(req, &len);
	if ((o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr)) ==
	    NULL) {
		snprintf(msg, msglen, "malformed JSON: %s", jerr.text);
		return msg;
	}
	if (!json_is_object(o)) {
		json_decref(o);
		return "report must be a JSON object";
	}
	v = json_object_get(o, "device");
	if (v == NULL)
		v = json_object_get(o, "device_id");
	s = v != NULL ? json_string_value(v) : api_device_id(req, idbuf);
	if (s == NULL || !otad_valid_id(s)) {
		json_decref(o);
		return "missing or invalid 'device': 1 to 64 of A-Z a-z 0-9 . "
		       "_ : -";
	}
	snprintf(rec->device, sizeof(rec->device), "%s", s);
	if ((v = json_object_get(o, "result")) == NULL ||
	    (s = json_string_value(v)) == NULL ||
	    (r = registry_result_parse(s)) < 0) {
		json_decref(o);
		return "'result' must be one of downloading, installed, "
		       "success, rollback, failed";
	}
	rec->result = (enum report_result)r;
	if ((v = json_object_get(o, "version")) != NULL) {
		if ((s = json_string_value(v)) == NULL || !semver_valid(s)) {
			json_decref(o);
			return "invalid 'version': 1 to 64 printable "
			       "characters, no spaces";
		}
		snprintf(rec->version, sizeof(rec->version), "%s", s);
	} else if (rec->result != REPORT_FAILED &&
	    rec->result != REPORT_ROLLBACK) {
		/*
		 * Only an outcome can stand without its version (recorded
		 * against the open attempt, or as one of its own): progress
		 * of an unknown update would be an attempt left open.
		 */
		json_decref(o);
		return "a success, downloading or installed report needs "
		       "'version'";
	}
	if ((v = json_object_get(o, "reason")) != NULL && !json_is_null(v)) {
		if ((s = json_string_value(v)) == NULL ||
		    strlen(s) > OTAD_REASON_MAX) {
			json_decref(o);
			return "'reason' must be a string of at most 256 bytes";
		}
		for (i = 0; s[i] != '\0'; i++)
			if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
				json_decref(o);
				return "'reason' must not contain control "
				       "characters";
			}
		snprintf(rec->text->reason, sizeof(rec->text->reason), "%s",
		    s);
	}
	if (telemetry_from_json(o, &rec->tel, rec->text->metrics, msg,
	    msglen) < 0) {
		json_decref(o);
		return msg;
	}
	json_decref(o);
	return NULL;
}

/* Writer thread: the report is on disk (or failed); wake its request. */
static void
report_done(void *arg, enum otad_err err)
{
	struct report_wait *w = arg;

	w->err = err;
	atomic_store(&w->done, 1);
	http_resume(w->ticket); /* a request that ended is not found */
	report_wait_release(w);
}

enum durable
api_durable_outcome(struct http_request *req, enum otad_err *err,
    const char **note)
{
	struct report_wait *w = http_userdata(req);

	if (w == NULL)
		return DURABLE_NOT_WAITING;
	/* resumed: by the writer, or by a stopping daemon */
	*note = w->note;
	*err = atomic_load(&w->done) ? w->err : OTAD_ERR_BUSY;
	return *err == OTAD_OK ? DURABLE_WRITTEN : DURABLE_NOT_WRITTEN;
}

int
api_submit_durable(struct http_request *req, struct api *api,
    struct record *rec, const char *note)
{
	struct report_wait *w;
	enum otad_err rc;

	if ((w = calloc(1, sizeof(*w))) == NULL ||
	    http_set_userdata(req, w, report_wait_release) < 0) {
		free(w);
		free(rec);
		return http_error(req, 503, "out of memory");
	}
	atomic_init(&w->refs, 2);
	atomic_init(&w->done, 0);
	snprintf(w->note, sizeof(w->note), "%s", note ? note : "");
	rec->durable = 1;
	rec->done = report_done;
	rec->done_arg = w;
	/* suspend first: the writer may finish before we return */
	w->ticket = http_suspend(req);
	if ((rc = registry_submit(api->reg, rec)) != OTAD_OK) {
		free(rec);
		report_done(w, rc);
	}
	return 0;
}

static int
api_report(struct http_request *req, void *arg)
{
	struct api *api = arg;
	struct api_thread *t;
	struct device_row row;
	struct record *rec;
	const char *bad, *note;
	char msg[256];
	enum otad_err err;

	switch (api_durable_outcome(req, &err, &note)) {
	case DURABLE_WRITTEN:
		metrics_add(M_REPORTS, 1);
		return http_send(req, 200, "application/json",
		    "{\"recorded\":true}", 17);
	case DURABLE_NOT_WRITTEN:
		/* not written in time (or stopping), or its queue was full */
		if (err == OTAD_ERR_BUSY)
			return registry_busy(req);
		metrics_add(M_RECORD_ERRORS, 1);
		return http_error(req, http_status_of(err),
		    "report not recorded; try again");
	case DURABLE_NOT_WAITING:
		break;
	}
	if (api_gate_address(req, api) < 0)
		return 0;
	if ((rec = registry_record_new(RECORD_REPORT)) == NULL)
		return http_error(req, 503, "out of memory");
	if ((bad = parse_report(req, rec, msg, sizeof(msg))) != NULL) {
		free(rec);
		return http_error(req, 400, bad);
	}
	if ((t = api_thread_state(api)) == NULL) {
		free(rec);
		return http_error(req, 503, "registry unavailable");
	}
	if (api_lookup_device(req, api, t, rec->device, &row) < 0) {
		free(rec);
		return 0;
	}
	/*
	 * The database is held: a report would wait past the device's
	 * timeout (5 s in esp_http_client and Arduino's HTTPClient).
	 */
	if (registry_stalled(api->reg) >= REPORT_STALL_S) {
		free(rec);
		return registry_busy(req);
	}
	rec->at = (int64_t)time(NULL);
	http_peer(req, rec->address, sizeof(rec->address));
	return api_submit_durable(req, api, rec, NULL);
}

/*
 * Liveness without a database write. A registry held by someone else
 * (an operator's open transaction) is said, not hidden: checks are still
 * answered then, reports are refused with 503 until it is free.
 */
static int
api_health(struct http_request *req, void *arg)
{
	struct api *api = arg;
	int64_t stalled = registry_stalled(api->reg);
	char body[160];
	int n;

	if (stalled < REPORT_STALL_S)
		return http_send(req, 200, "application/json",
		    "{\"status\":\"ok\"}", 15);
	n = snprintf(body, sizeof(body), "{\"status\":\"degraded\","
	    "\"registry\":\"stalled\",\"stalled_seconds\":%lld,"
	    "\"records_waiting\":%zu}", (long long)stalled,
	    registry_queue_depth(api->reg));
	return http_send(req, 200, "application/json", body, (size_t)n);
}

static int
api_metrics(struct http_request *req, void *arg)
{
	char *text = metrics_render();

	(void)arg;
	if (text == NULL)
		return http_error(req, 503, "out of memory");
	http_send(req, 200, "text/plain; version=0.0.4", text, strlen(text));
	free(text);
	return 0;
}

static const struct http_route routes[] = {
	{"/firmware/check", HTTP_GET | HTTP_HEAD, check_answer},
	{"/ota/firmware.bin", HTTP_GET | HTTP_HEAD, check_answer},
	{"/firmware/report", HTTP_POST, api_report},
	{ARTIFACTS, HTTP_GET | HTTP_HEAD, download_artifact},
	{PATCHES, HTTP_GET | HTTP_HEAD, download_artifact},
	{"/firmware/manifest", HTTP_GET, check_manifest},
	{LATEST, HTTP_GET | HTTP_HEAD, check_latest},
	{DELTA_URL, HTTP_GET | HTTP_HEAD, check_delta_url},
	{PULL_ESP32FOTA, HTTP_GET, pull_dialect},
	{PULL_OTAPULL, HTTP_GET, pull_dialect},
	{PULL_ESPHOME, HTTP_GET, pull_dialect},
	{PULL_GHOTA, HTTP_GET, pull_ghota},
	{PULL_IMAGE, HTTP_GET | HTTP_HEAD, pull_image},
	{PULL_MD5, HTTP_GET, pull_md5},
	{"/health", HTTP_GET | HTTP_HEAD, api_health},
	{"/metrics", HTTP_GET, api_metrics},
};

const struct http_route *
api_routes(size_t *n)
{
	*n = sizeof(routes) / sizeof(routes[0]);
	return routes;
}

enum otad_err
api_new(const char *db_path, struct registry *reg, struct store *store,
    struct api **out)
{
	struct api *api;
	int i;

	*out = NULL;
	if ((api = calloc(1, sizeof(*api))) == NULL ||
	    (api->db_path = strdup(db_path)) == NULL) {
		free(api);
		return OTAD_ERR_NOMEM;
	}
	api->reg = reg;
	api->store = store;
	pthread_mutex_init(&api->recent_mu, NULL);
	/* tables well above any fleet: collisions only make caps stricter */
	if (pthread_key_create(&api->thread_key, thread_free) != 0) {
		free(api->db_path);
		free(api);
		return OTAD_ERR_NOMEM;
	}
	if ((api->rl_device = ratelimit_new(1 << 20)) == NULL ||
	    (api->rl_address = ratelimit_new(1 << 16)) == NULL ||
	    (api->rl_auth = ratelimit_new(1 << 16)) == NULL ||
	    (api->rl_ranges = ratelimit_new(1 << 20)) == NULL ||
	    (api->recent = calloc(RECENT_SLOTS, sizeof(*api->recent))) ==
	    NULL) {
		api_free(api);
		return OTAD_ERR_NOMEM;
	}
	for (i = 0; i < REASON_COUNT; i++)
		if ((api->not_modified[i] =
		    not_modified_new((enum decision_reason)i)) == NULL) {
			api_free(api);
			return OTAD_ERR_NOMEM;
		}
	*out = api;
	return OTAD_OK;
}

void
api_set_access(struct api *api, int tokens, unsigned per_device,
    unsigned per_address, unsigned auth_failures)
{
	atomic_store(&api->auth_failures, auth_failures);
	atomic_store(&api->tokens, tokens);
	atomic_store(&api->per_device, per_device);
	atomic_store(&api->per_address, per_address);
}

void
api_set_latest(struct api *api, int on)
{
	atomic_store(&api->latest, on);
}

void
api_set_infer_after(struct api *api, unsigned seconds)
{
	atomic_store(&api->infer_after, seconds);
}

void
api_set_base_url(struct api *api, const char *base_url)
{
	if (atomic_load(&api->pull_ready))
		return; /* set once: handlers read it without a lock */
	snprintf(api->pull_base, sizeof(api->pull_base), "%s", base_url);
	atomic_store(&api->pull_ready, 1);
}

void
api_set_patcher(struct api *api, struct patcher *patcher)
{
	api->patcher = patcher;
}

void
api_set_require_signature(struct api *api, int on)
{
	atomic_store(&api->require_signature, on);
}

enum otad_err
api_start_rollout(struct api *api, struct rollout **out)
{
	struct rollout_payload_hooks hooks = {
		download_offer_payload, download_offer_payload_retire,
		download_offer_payload_free, api
	};
	enum otad_err rc;

	rc = rollout_start(api->db_path, api->reg, &hooks, out);
	if (rc == OTAD_OK)
		api->rollout = *out;
	return rc;
}

void
api_free(struct api *api)
{
	int i;

	if (api == NULL)
		return;
	pthread_key_delete(api->thread_key);
	for (i = 0; i < REASON_COUNT; i++)
		http_response_free(api->not_modified[i]);
	ratelimit_free(api->rl_device);
	ratelimit_free(api->rl_address);
	ratelimit_free(api->rl_auth);
	ratelimit_free(api->rl_ranges);
	free(api->recent);
	pthread_mutex_destroy(&api->recent_mu);
	free(api->db_path);
	free(api);
}
