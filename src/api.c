/* api.c: /firmware/check, /firmware/report, /health, /metrics */
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

#include "api.h"
#include "log.h"
#include "metrics.h"
#include "patcher.h"
#include "auth.h"
#include "range.h"
#include "ratelimit.h"
#include "semver.h"
#include "sign.h"
#include "telemetry.h"

#define ARTIFACTS "/firmware/artifacts/"
#define PATCHES "/firmware/patches/"
/*
 * Seconds the writer may wait for a held database before reports are
 * refused at once (503): devices give up on an answer after about 5 s.
 */
#define REPORT_STALL_S 2

struct api {
	char *db_path;
	struct registry *reg;
	struct store *store;
	struct rollout *rollout;
	struct patcher *patcher; /* NULL: no delta patches */
	/* 304s, one per reason, built once and queued everywhere */
	struct http_response *not_modified[REASON_COUNT];
	pthread_key_t thread_key;
	atomic_int require_signature; /* read by the rollout controller */
	atomic_int tokens;            /* device_auth = token */
	atomic_uint per_device, per_address, auth_failures;
	/* failed authentications are counted per address */
	struct ratelimit *rl_device, *rl_address, *rl_auth;
};

/* What one HTTP thread keeps between requests. */
struct api_thread {
	struct registry_reader *reader;
	struct snapshot *snap;
};

/*
 * A report between its submit and its answer. Two owners: the request
 * (released by http when the request ends) and the writer's record
 * (released in report_done); whichever finishes last frees it. done is set
 * once the writer has an answer; a request resumed without it (the daemon
 * stopping) must not claim the report was recorded.
 */
struct report_wait {
	atomic_int refs;
	atomic_int done;
	enum otad_err err; /* valid once done */
	struct http_ticket ticket;
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

	registry_reader_free(t->reader);
	snapshot_release(t->snap);
	free(t);
}

static struct api_thread *
thread_state(struct api *api)
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
	pthread_setspecific(api->thread_key, t);
	return t;
}

/* Printable ASCII without spaces, like versions. */
static int
valid_token(const char *s, size_t max)
{
	size_t n;

	for (n = 0; s[n] != '\0'; n++)
		if (n >= max || s[n] <= 0x20 || s[n] >= 0x7f)
			return 0;
	return n > 0;
}

static const char *
first_of(const struct http_request *req, const char *header, const char *arg,
    const char *alt1, const char *alt2)
{
	const char *v;

	if (header && (v = http_header(req, header)) != NULL)
		return v;
	if (arg && (v = http_arg(req, arg)) != NULL)
		return v;
	if (alt1 && (v = http_header(req, alt1)) != NULL)
		return v;
	if (alt2 && (v = http_header(req, alt2)) != NULL)
		return v;
	return NULL;
}

/*
 * The first of the named headers, or else the query parameter arg (which
 * may be NULL). Headers first: they are what devices are built to send.
 */
static const char *
first_named(const struct http_request *req, const char *const *names,
    const char *arg)
{
	const char *v;

	if ((v = http_header(req, names[0])) != NULL)
		return v;
	if (arg != NULL && (v = http_arg(req, arg)) != NULL)
		return v;
	for (names++; *names != NULL; names++)
		if ((v = http_header(req, *names)) != NULL)
			return v;
	return NULL;
}

/* Identity: X-Device-ID, ?device=, Arduino's STA then BASE MAC. */
static const char *
device_id(const struct http_request *req)
{
	static const char *const names[] = {"X-Device-ID", "x-ESP32-STA-MAC",
	    "x-ESP32-BASE-MAC", "x-ESP8266-STA-MAC", NULL};

	return first_named(req, names, "device");
}

/* 64 hex digits, either case, into lower-case out; 0 or -1. */
static int
parse_sha256(const char *s, char *out)
{
	size_t i;

	for (i = 0; i < 64; i++) {
		char c = s[i];

		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return -1;
		out[i] = c;
	}
	out[64] = '\0';
	return s[64] == '\0' ? 0 : -1;
}

/* A decimal 0..UINT32_MAX; -1 if s is not one. */
static int64_t
parse_u32(const char *s)
{
	int64_t v = 0;
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9' || i >= 10)
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return (i == 0 || v > UINT32_MAX) ? -1 : v;
}

static int
status_for(enum otad_err err)
{
	switch (err) {
	case OTAD_ERR_INVALID:
		return 400;
	case OTAD_ERR_NOT_FOUND:
		return 404;
	case OTAD_ERR_EXISTS:
		return 409;
	case OTAD_ERR_TOO_LARGE:
		return 413;
	default:
		return 503;
	}
}

/*
 * Queue a record that the answer does not wait for. When the writer's
 * queue is full (a database held for long) it is dropped and counted:
 * the device is answered all the same, and its next check records it.
 */
static void
record_or_drop(struct api *api, struct record *rec)
{
	enum otad_err rc = registry_submit(api->reg, rec);

	if (rc == OTAD_OK)
		return;
	if (rc == OTAD_ERR_BUSY)
		metrics_add(M_RECORDS_DROPPED, 1);
	free(rec);
}

static int serve_file(struct http_request *req, struct api *api,
    const struct offer *o, const char *device, const struct patch_info *pi);

/* A delivery to note once the whole image went out. */
struct delivery {
	struct api *api;
	char device[OTAD_ID_MAX + 1];
	char artifact[65];
};

/* NULL (nothing to note) for HEAD or an unknown device. */
static struct delivery *
delivery(struct api *api, const char *device, const struct offer *o,
    enum http_method method)
{
	struct delivery *d;

	if (device == NULL || method != HTTP_GET ||
	    (d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	d->api = api;
	snprintf(d->device, sizeof(d->device), "%s", device);
	memcpy(d->artifact, o->sha256, sizeof(d->artifact));
	return d;
}

/*
 * http: the request ended. A complete image moves the offer on and
 * arms rollback detection: the device has the image now.
 */
static void
delivered(void *arg, int complete)
{
	struct delivery *d = arg;
	struct record *rec;

	if (d == NULL)
		return;
	if (complete && (rec = registry_record_new(RECORD_DELIVERED)) !=
	    NULL) {
		rec->at = (int64_t)time(NULL);
		memcpy(rec->device, d->device, sizeof(rec->device));
		memcpy(rec->artifact, d->artifact, sizeof(rec->artifact));
		record_or_drop(d->api, rec);
	}
	free(d);
}

/* A report not confirmed: the registry cannot take it now. */
static int
registry_busy(struct http_request *req)
{
	return http_error_header(req, 503, "registry busy; report not "
	    "confirmed, send it again", "Retry-After", "5");
}

/* Answer an error from a helper whose caller must stop: -1. */
static int
refuse(struct http_request *req, unsigned status, const char *msg)
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
static int
gate_address(struct http_request *req, struct api *api)
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

static int
unauthorized(struct http_request *req, const char *msg)
{
	http_error_header(req, 401, msg, "WWW-Authenticate",
	    "Bearer realm=\"otad\"");
	return -1;
}

/* The device's own cap, charged only for a request that is its own. */
static int
charge_device(struct http_request *req, struct api *api, const char *id)
{
	unsigned retry;

	if (!ratelimit_hit(api->rl_device, id, strlen(id),
	    atomic_load(&api->per_device), (int64_t)time(NULL), &retry))
		return too_many(req, retry);
	return 0;
}

/*
 * An authentication failed: count it against the address it came from.
 * Answers 401 (with msg) or 403 (forbidden), then -1.
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
		return refuse(req, 403, msg);
	return unauthorized(req, msg);
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
		auth_failed(req, api, 0, "missing device token");
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
static int
lookup_device(struct http_request *req, struct api *api,
    struct api_thread *t, const char *id, struct device_row *row)
{
	enum otad_err rc = registry_device_get(t->reader, id, row);

	if (rc != OTAD_OK && rc != OTAD_ERR_NOT_FOUND)
		return refuse(req, 503, "registry unavailable");
	if (rc != OTAD_OK) {
		memset(row, 0, sizeof(*row)); /* a first check-in */
		row->secure_version = -1;
	}
	if (gate_device(req, api, t->reader, id, row, rc == OTAD_OK) < 0)
		return -1;
	if (row->blocked)
		return refuse(req, 403, "device is blocked");
	return 0;
}

/*
 * Telemetry a device may send with a check: X-Battery (percent),
 * X-Reset-Reason (ESP-IDF esp_reset_reason_t), X-Uptime (seconds). 0, or
 * -1 when a value is bad (answered).
 */
static int
header_telemetry(struct http_request *req, struct telemetry *tel)
{
	static const struct {
		const char *name;
		unsigned bit;
		int64_t max;
		size_t offset;
	} fields[] = {
		{"X-Battery", TEL_BATTERY, 100,
		    offsetof(struct telemetry, battery)},
		{"X-Reset-Reason", TEL_RESET_REASON, 255,
		    offsetof(struct telemetry, reset_reason)},
		{"X-Uptime", TEL_UPTIME, UINT32_MAX,
		    offsetof(struct telemetry, uptime)},
	};
	char msg[64];
	size_t i;

	memset(tel, 0, sizeof(*tel));
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const char *v = http_header(req, fields[i].name);
		int64_t n;

		if (v == NULL)
			continue;
		if ((n = parse_u32(v)) < 0 || n > fields[i].max) {
			snprintf(msg, sizeof(msg), "invalid %s",
			    fields[i].name);
			return refuse(req, 400, msg);
		}
		*(int64_t *)(void *)((char *)tel + fields[i].offset) = n;
		tel->present |= fields[i].bit;
	}
	return 0;
}

/*
 * The release this device must not be offered again: the one it came back
 * from, on the version it left, after it installed the image or got it and
 * rebooted since (the writer records that rollback by the same rule), or
 * the last one it rolled back from. 0 for none.
 */
static int64_t
refused(struct api_thread *t, const char *id, const char *version,
    const struct telemetry *tel, int64_t now)
{
	struct device_refusal r;

	if (registry_device_refusal(t->reader, id, &r) != OTAD_OK)
		return 0;
	if (r.pending_release != 0 &&
	    semver_compare(version, r.pending_from) == 0 &&
	    (r.pending_installed || ((tel->present & TEL_UPTIME) &&
	    r.pending_delivered_at >= 0 && tel->uptime < now -
	    r.pending_delivered_at)))
		return r.pending_release;
	return r.rolled_back_release;
}

/* What one check found out, for the answer. */
struct check {
	struct decision d;
	const char *id;
	char base[65]; /* the artifact it runs, if stored; "" = unknown */
};

/*
 * Everything a check and a manifest share: read what the device says,
 * add what the registry knows of it, decide, queue the record. 0 with
 * c->d filled, or -1 when an error was answered.
 */
static int
check_decide(struct http_request *req, struct api *api, struct check *c)
{
	static const char *const version_names[] = {"X-Current-Version",
	    "x-ESP32-version", "x-ESP8266-version", NULL};
	static const char *const space_names[] = {"x-ESP32-free-space",
	    "x-ESP8266-free-space", NULL};
	struct api_thread *t;
	const char *id, *version, *product, *hw_rev, *s;
	char running[65] = "";
	int64_t secure_version = -1, free_space = -1;
	struct running_image img;
	struct device_row row;
	struct device_facts facts;
	struct telemetry tel;
	struct snapshot *snap;
	struct record *rec;
	int64_t now = (int64_t)time(NULL);

	if (gate_address(req, api) < 0)
		return -1;
	if ((id = device_id(req)) == NULL)
		return refuse(req, 400, "missing device id (X-Device-ID, "
		    "?device= or x-ESP32-STA-MAC)");
	if (!otad_valid_id(id))
		return refuse(req, 400, "invalid device id: 1 to 64 of "
		    "A-Z a-z 0-9 . _ : -");
	if ((version = first_named(req, version_names, "version")) == NULL)
		return refuse(req, 400, "missing current version "
		    "(X-Current-Version, ?version= or x-ESP32-version)");
	if (!semver_valid(version))
		return refuse(req, 400, "invalid version: 1 to 64 "
		    "printable characters, no spaces");
	product = first_of(req, "X-Product", "product", NULL, NULL);
	if (product != NULL && !valid_token(product, OTAD_PRODUCT_MAX))
		return refuse(req, 400, "invalid product");
	hw_rev = first_of(req, "X-Hardware-Rev", "hw_rev", NULL, NULL);
	if (hw_rev != NULL && !valid_token(hw_rev, OTAD_PRODUCT_MAX))
		return refuse(req, 400, "invalid hardware revision");
	if ((s = first_of(req, "X-Running-SHA256", NULL,
	    "x-ESP32-sketch-sha256", NULL)) != NULL &&
	    parse_sha256(s, running) < 0)
		return refuse(req, 400, "invalid running SHA-256: 64 hex "
		    "digits");
	if ((s = http_header(req, "X-Secure-Version")) != NULL &&
	    (secure_version = parse_u32(s)) < 0)
		return refuse(req, 400, "invalid secure version");
	if ((s = first_named(req, space_names, NULL)) != NULL &&
	    (free_space = parse_u32(s)) < 0)
		return refuse(req, 400, "invalid free space");
	if (header_telemetry(req, &tel) < 0)
		return -1;
	if ((t = thread_state(api)) == NULL)
		return refuse(req, 503, "registry unavailable");
	if (lookup_device(req, api, t, id, &row) < 0)
		return -1;
	/* the image it runs, if we know it, tells its chip for certain */
	c->base[0] = '\0';
	if (running[0] != '\0' &&
	    registry_running_image(t->reader, running, &img) == OTAD_OK) {
		memcpy(c->base, img.sha256, sizeof(c->base));
		/* it booted that image: its eFuse is at least that high */
		if ((int64_t)img.secure_version > secure_version)
			secure_version = img.secure_version;
	} else {
		img.chip[0] = '\0';
	}
	if (row.secure_version > secure_version)
		secure_version = row.secure_version;

	facts.id = id;
	facts.version = version;
	facts.product = product ? product : row.product;
	facts.chip = img.chip[0] ? img.chip : row.chip;
	facts.hw_rev = hw_rev ? hw_rev : row.hw_rev;
	facts.secure_version = secure_version;
	facts.free_space = free_space;
	facts.group = row.group;
	facts.refused_release = 0;
	facts.battery = (tel.present & TEL_BATTERY) ? (int)tel.battery :
	    row.battery;
	snap = rollout_snapshot(api->rollout, &t->snap);
	policy_decide(&facts, snap->offers, snap->n, &snap->stones, now,
	    &c->d);
	/* about to offer: what do its attempts say? (a 304 never asks) */
	if (c->d.kind == DECISION_OFFER &&
	    (facts.refused_release = refused(t, id, version, &tel, now)) ==
	    c->d.offer->release_id)
		policy_decide(&facts, snap->offers, snap->n, &snap->stones,
		    now, &c->d);
	c->id = id;

	/* a HEAD looks without taking: the record opens no attempt */
	if ((rec = registry_record_new(RECORD_CHECKIN)) != NULL) {
		rec->at = now;
		snprintf(rec->device, sizeof(rec->device), "%s", id);
		snprintf(rec->version, sizeof(rec->version), "%s", version);
		if (product != NULL)
			snprintf(rec->product, sizeof(rec->product), "%s",
			    product);
		http_peer(req, rec->address, sizeof(rec->address));
		if (hw_rev != NULL)
			snprintf(rec->hw_rev, sizeof(rec->hw_rev), "%s",
			    hw_rev);
		memcpy(rec->running_sha256, running, sizeof(running));
		memcpy(rec->chip, img.chip, sizeof(img.chip));
		rec->secure_version = secure_version;
		rec->free_space = free_space;
		rec->tel = tel;
		rec->deferred = policy_reason_name(c->d.reason); /* static */
		if (c->d.kind == DECISION_OFFER &&
		    http_method(req) == HTTP_GET) {
			rec->offer_release = c->d.offer->release_id;
			/* a stepping stone is part of its target's rollout */
			rec->offer_rollout = c->d.target->rollout_id;
			rec->offer_stage = c->d.target->stage;
			snprintf(rec->offer_version, sizeof(rec->offer_version),
			    "%s", c->d.offer->version);
		}
		record_or_drop(api, rec);
	}
	metrics_add(M_CHECKS, 1);
	if (c->d.kind == DECISION_OFFER)
		metrics_add(M_OFFERS, 1);
	return 0;
}

/* The device's X-Accept-Delta names esp_delta_ota among its formats. */
static int
accepts_delta(struct http_request *req)
{
	const char *v = http_header(req, "X-Accept-Delta"), *p;
	size_t n = strlen("esp_delta_ota");

	for (p = v; p != NULL && (p = strstr(p, "esp_delta_ota")) != NULL;
	    p += n)
		if ((p == v || p[-1] == ',' || p[-1] == ' ') &&
		    (p[n] == '\0' || p[n] == ',' || p[n] == ' ' || p[n] == ';'))
			return 1;
	return 0;
}

/*
 * The patch to send instead of the whole image: the device asked for
 * esp_delta_ota patches, the image it runs is one we store, it has not
 * failed to apply a patch of this release, and a verified patch is ready
 * and small enough. 1 with *pi; 0 otherwise (the patch is built for the
 * next time).
 */
static int
delta_for(struct http_request *req, struct api *api, const struct check *c,
    struct patch_info *pi)
{
	struct api_thread *t;

	if (api->patcher == NULL || c->d.kind != DECISION_OFFER ||
	    c->base[0] == '\0' || !accepts_delta(req) ||
	    /* Arduino's updater cannot apply one, whatever it says */
	    http_header(req, "x-ESP32-STA-MAC") != NULL)
		return 0;
	if ((t = thread_state(api)) == NULL ||
	    registry_delta_failed(t->reader, c->id, c->d.offer->release_id) !=
	    0)
		return 0;
	return patcher_ready(api->patcher, c->base, c->d.offer->sha256, pi);
}

static int
api_check(struct http_request *req, void *arg)
{
	struct api *api = arg;
	struct check c;

	if (check_decide(req, api, &c) < 0)
		return 0;
	if (c.d.kind == DECISION_OFFER) {
		struct patch_info pi;
		int delta = delta_for(req, api, &c, &pi);

		/* esp_https_ota's partial download may ask the check path */
		if (delta || http_header(req, "Range") != NULL)
			return serve_file(req, api, c.d.offer, c.id, delta ? &pi : NULL);
		return http_queue_notify(req, 200, c.d.offer->payload,
		    c.d.offer->size, delivered, delivery(api, c.id,
		    c.d.offer, http_method(req)));
	}
	return http_queue(req, 304, api->not_modified[c.d.reason], 0);
}

/* The same decision as JSON, for firmware that fetches the image itself. */
static int
api_manifest(struct http_request *req, void *arg)
{
	struct api *api = arg;
	const struct offer *o;
	struct patch_info pi;
	struct check c;
	char url[96], *body, *sig = NULL;
	json_t *j;

	if (check_decide(req, api, &c) < 0)
		return 0;
	if (c.d.kind != DECISION_OFFER) {
		j = json_pack("{s:b}", "update", 0);
		if (j != NULL && c.d.reason != REASON_NONE)
			json_object_set_new(j, "deferred", json_string(
			    policy_reason_name(c.d.reason)));
	} else {
		o = c.d.offer;
		snprintf(url, sizeof(url), ARTIFACTS "%s", o->sha256);
		j = json_pack("{s:b,s:s,s:I,s:s,s:s,s:s,s:b}", "update", 1,
		    "version", o->version, "size", (json_int_t)o->size,
		    "sha256", o->sha256, "md5", o->md5, "url", url, "forced",
		    o->forced);
		if (j != NULL && o->key_id[0] != '\0' &&
		    (sig = sign_base64(o->sig, o->siglen)) != NULL) {
			json_object_set_new(j, "signature", json_string(sig));
			json_object_set_new(j, "key_id",
			    json_string(o->key_id));
		}
		free(sig);
		if (j != NULL && delta_for(req, api, &c, &pi)) {
			snprintf(url, sizeof(url), PATCHES "%s", pi.sha256);
			json_object_set_new(j, "delta", json_pack(
			    "{s:s,s:s,s:I,s:s,s:s}", "format", "esp_delta_ota",
			    "url", url, "size", (json_int_t)pi.size, "sha256",
			    pi.sha256, "base_sha256", pi.base_app));
		}
	}
	if (j == NULL || (body = json_dumps(j, JSON_COMPACT)) == NULL) {
		json_decref(j);
		return http_error(req, 503, "out of memory");
	}
	json_decref(j);
	http_send(req, 200, "application/json", body, strlen(body));
	free(body);
	return 0;
}

/* Parse and check a report body into rec; NULL or the 400 reason. */
static const char *
parse_report(struct http_request *req, struct record *rec, char *msg,
    size_t msglen)
{
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
	s = v != NULL ? json_string_value(v) : device_id(req);
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
		snprintf(rec->reason, sizeof(rec->reason), "%s", s);
	}
	if (telemetry_from_json(o, &rec->tel, msg, msglen) < 0) {
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

static int
api_report(struct http_request *req, void *arg)
{
	struct api *api = arg;
	struct report_wait *w = http_userdata(req);
	struct api_thread *t;
	struct device_row row;
	struct record *rec;
	const char *bad;
	char msg[256];
	enum otad_err rc;

	if (w != NULL) {
		/* resumed: by the writer, or by a stopping daemon */
		/* not written in time (or stopping), or its queue was full */
		if (!atomic_load(&w->done) || w->err == OTAD_ERR_BUSY)
			return registry_busy(req);
		if (w->err != OTAD_OK) {
			metrics_add(M_RECORD_ERRORS, 1);
			return http_error(req, status_for(w->err),
			    "report not recorded; try again");
		}
		metrics_add(M_REPORTS, 1);
		return http_send(req, 200, "application/json",
		    "{\"recorded\":true}", 17);
	}
	if (gate_address(req, api) < 0)
		return 0;
	if ((rec = registry_record_new(RECORD_REPORT)) == NULL)
		return http_error(req, 503, "out of memory");
	if ((bad = parse_report(req, rec, msg, sizeof(msg))) != NULL) {
		free(rec);
		return http_error(req, 400, bad);
	}
	if ((t = thread_state(api)) == NULL) {
		free(rec);
		return http_error(req, 503, "registry unavailable");
	}
	if (lookup_device(req, api, t, rec->device, &row) < 0) {
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
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		free(rec);
		return http_error(req, 503, "out of memory");
	}
	atomic_init(&w->refs, 2);
	atomic_init(&w->done, 0);
	http_set_userdata(req, w, report_wait_release);
	rec->at = (int64_t)time(NULL);
	http_peer(req, rec->address, sizeof(rec->address));
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


/*
 * The headers of an image response: what it is, how to check it, and its
 * signature. x-MD5 only with the whole file (Arduino checks it against
 * what it received).
 */
static int
image_headers(struct http_response *resp, const struct offer *o, int whole,
    const struct patch_info *pi)
{
	char etag[80], *sig = NULL;
	int rc = -1;

	snprintf(etag, sizeof(etag), "\"%s\"", pi ? pi->sha256 : o->sha256);
	/* a patch says what it is, what it applies to and how to check it */
	if (pi != NULL && (http_response_header(resp, "X-Firmware-Delta",
	    "esp_delta_ota") < 0 || http_response_header(resp,
	    "X-Delta-Base-SHA256", pi->base_app) < 0 ||
	    http_response_header(resp, "X-Patch-SHA256", pi->sha256) < 0))
		return -1;
	if (o->key_id[0] != '\0' &&
	    (sig = sign_base64(o->sig, o->siglen)) == NULL)
		return -1;
	if (http_response_header(resp, "Content-Type",
	    "application/octet-stream") < 0 ||
	    http_response_header(resp, "ETag", etag) < 0 ||
	    http_response_header(resp, "Cache-Control", "no-store") < 0 ||
	    http_response_header(resp, "X-Firmware-Version", o->version) < 0 ||
	    http_response_header(resp, "X-Firmware-SHA256", o->sha256) < 0 ||
	    (whole && http_response_header(resp, "x-MD5", o->md5) < 0) ||
	    (sig != NULL && (http_response_header(resp,
	    "X-Firmware-Signature", sig) < 0 || http_response_header(resp,
	    "X-Firmware-Key-ID", o->key_id) < 0)))
		goto done;
	rc = 0;
done:
	free(sig);
	return rc;
}

/*
 * The target of each prepared image response, so that a release's patches
 * go when its last response does (the payload destructor has only the
 * response). One api per process.
 */
static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static struct held {
	void *resp;
	struct patcher *patcher;
	char target[65];
} *held;
static size_t nheld;

static void
hold_patches(struct patcher *patcher, void *resp, const char *target)
{
	struct held *grown;

	if (patcher == NULL)
		return;
	pthread_mutex_lock(&held_mu);
	if ((grown = realloc(held, (nheld + 1) * sizeof(*grown))) != NULL) {
		held = grown;
		held[nheld].resp = resp;
		held[nheld].patcher = patcher;
		memcpy(held[nheld].target, target, sizeof(held[0].target));
		nheld++;
		patcher_hold(patcher, target);
	}
	pthread_mutex_unlock(&held_mu);
}

/* A release being offered: patches to it from what the fleet runs. */
static void
want_patches(struct api *api, const struct offer *o)
{
	struct api_thread *t;
	json_t *rows, *row;
	size_t i;

	if (api->patcher == NULL || (t = thread_state(api)) == NULL ||
	    registry_fleet_bases(t->reader, o->chip, &rows) != OTAD_OK)
		return;
	for (i = 0; i < json_array_size(rows); i++) {
		row = json_array_get(rows, i);
		patcher_want(api->patcher, json_string_value(json_object_get(row,
		    "sha256")), o->sha256);
	}
	json_decref(rows);
}

/* Rollout hook: the image response for one offer, built once. */
static void *
offer_payload(const struct offer *o, void *arg)
{
	struct api *api = arg;
	struct http_response *resp;
	int fd;

	if (o->key_id[0] == '\0' && atomic_load(&api->require_signature)) {
		log_warnx("release %s: artifact %.12s has no signature by a "
		    "trusted key; not offered", o->version, o->sha256);
		return NULL;
	}
	if ((fd = store_open_artifact(api->store, o->sha256)) < 0) {
		log_warn("release %s: cannot open artifact %s", o->version,
		    o->sha256);
		return NULL;
	}
	if ((resp = http_response_file(fd, o->size)) == NULL)
		return NULL;
	hold_patches(api->patcher, resp, o->sha256);
	want_patches(api, o);
	if (image_headers(resp, o, 1, NULL) < 0 ||
	    http_response_header(resp, "Accept-Ranges", "bytes") < 0) {
		http_response_free(resp);
		return NULL;
	}
	return resp;
}

/*
 * Answer with (part of) an image, or of the patch pi to it, per the
 * request's Range and If-Range: 200 whole, 206 one range, 416 a start
 * past the end. Zero-copy.
 */
static int
serve_file(struct http_request *req, struct api *api, const struct offer *o,
    const char *device, const struct patch_info *pi)
{
	uint64_t size = pi ? pi->size : o->size;
	struct http_response *resp;
	struct range r;
	char etag[80], cr[96];
	int fd;

	snprintf(etag, sizeof(etag), "\"%s\"", pi ? pi->sha256 : o->sha256);
	range_parse(http_header(req, "Range"), http_header(req, "If-Range"),
	    etag, size, &r);
	if (r.kind == RANGE_UNSATISFIABLE) {
		snprintf(cr, sizeof(cr), "bytes */%llu",
		    (unsigned long long)size);
		return http_error_header(req, 416, "range starts past the end",
		    "Content-Range", cr);
	}
	if ((fd = pi ? patcher_open(api->patcher, pi) :
	    store_open_artifact(api->store, o->sha256)) < 0) {
		log_warn("cannot open %s %s", pi ? "patch" : "artifact",
		    pi ? pi->sha256 : o->sha256);
		return http_error(req, 503, "artifact unavailable");
	}
	resp = http_response_file_range(fd, r.start, r.len);
	if (resp == NULL || image_headers(resp, o, r.kind == RANGE_NONE &&
	    pi == NULL, pi) < 0 ||
	    http_response_header(resp, "Accept-Ranges", "bytes") < 0) {
		http_response_free(resp);
		return http_error(req, 503, "out of memory");
	}
	if (r.kind == RANGE_PARTIAL) {
		snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu",
		    (unsigned long long)r.start,
		    (unsigned long long)(r.start + r.len - 1),
		    (unsigned long long)size);
		if (http_response_header(resp, "Content-Range", cr) < 0) {
			http_response_free(resp);
			return http_error(req, 503, "out of memory");
		}
	}
	/* the image is delivered when its last byte is */
	http_queue_notify(req, r.kind == RANGE_PARTIAL ? 206 : 200, resp,
	    r.len, delivered, r.start + r.len == size ? delivery(api,
	    device, o, http_method(req)) : NULL);
	http_response_free(resp); /* the connection holds its own reference */
	return 0;
}

static int
api_artifact(struct http_request *req, void *arg)
{
	struct api *api = arg;
	int patch = strncmp(http_path(req), PATCHES, strlen(PATCHES)) == 0;
	const char *sha = http_path(req) + strlen(patch ? PATCHES : ARTIFACTS);
	const char *id;
	struct patch_info pi;
	struct device_row row;
	struct api_thread *t;
	struct record *rec;
	struct offer o;
	enum otad_err rc;
	char lower[65];

	if (gate_address(req, api) < 0)
		return 0;
	if (parse_sha256(sha, lower) < 0 ||
	    (patch && !patcher_by_sha(api->patcher, lower, &pi)))
		return http_error(req, 404, patch ? "no such patch" :
		    "no such artifact");
	if (patch)
		memcpy(lower, pi.target, sizeof(lower));
	if ((id = device_id(req)) != NULL && !otad_valid_id(id))
		return http_error(req, 400, "invalid device id: 1 to 64 of "
		    "A-Z a-z 0-9 . _ : -");
	if (id == NULL && atomic_load(&api->tokens)) {
		unauthorized(req, "missing device id");
		return 0;
	}
	if ((t = thread_state(api)) == NULL)
		return http_error(req, 503, "registry unavailable");
	if (id != NULL && lookup_device(req, api, t, id, &row) < 0)
		return 0;
	rc = registry_released_artifact(t->reader, lower, &o);
	if (rc == OTAD_ERR_NOT_FOUND)
		return http_error(req, 404, "no such artifact");
	if (rc != OTAD_OK)
		return http_error(req, 503, "registry unavailable");
	if (o.key_id[0] == '\0' && atomic_load(&api->require_signature))
		return http_error(req, 403, "artifact is not signed by a "
		    "trusted key");
	if (id != NULL && http_method(req) == HTTP_GET &&
	    (rec = registry_record_new(RECORD_DOWNLOAD)) != NULL) {
		rec->at = (int64_t)time(NULL);
		snprintf(rec->device, sizeof(rec->device), "%s", id);
		memcpy(rec->artifact, lower, sizeof(lower));
		http_peer(req, rec->address, sizeof(rec->address));
		record_or_drop(api, rec);
	}
	return serve_file(req, api, &o, id, patch ? &pi : NULL);
}

static const struct http_route routes[] = {
	{"/firmware/check", HTTP_GET | HTTP_HEAD, api_check},
	{"/ota/firmware.bin", HTTP_GET | HTTP_HEAD, api_check},
	{"/firmware/report", HTTP_POST, api_report},
	{ARTIFACTS, HTTP_GET | HTTP_HEAD, api_artifact},
	{PATCHES, HTTP_GET | HTTP_HEAD, api_artifact},
	{"/firmware/manifest", HTTP_GET, api_manifest},
	{"/health", HTTP_GET | HTTP_HEAD, api_health},
	{"/metrics", HTTP_GET, api_metrics},
};

const struct http_route *
api_routes(size_t *n)
{
	*n = sizeof(routes) / sizeof(routes[0]);
	return routes;
}

static void
offer_payload_free(void *payload)
{
	size_t i;

	/* the last response for a release: its patches can go */
	pthread_mutex_lock(&held_mu);
	for (i = 0; i < nheld && held[i].resp != payload; i++)
		continue;
	if (i < nheld) {
		patcher_release(held[i].patcher, held[i].target);
		held[i] = held[--nheld];
	}
	pthread_mutex_unlock(&held_mu);
	http_response_free(payload);
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
	/* tables well above any fleet: collisions only make caps stricter */
	if (pthread_key_create(&api->thread_key, thread_free) != 0) {
		free(api->db_path);
		free(api);
		return OTAD_ERR_NOMEM;
	}
	if ((api->rl_device = ratelimit_new(1 << 20)) == NULL ||
	    (api->rl_address = ratelimit_new(1 << 16)) == NULL ||
	    (api->rl_auth = ratelimit_new(1 << 16)) == NULL) {
		api_free(api);
		return OTAD_ERR_NOMEM;
	}
	for (i = 0; i < REASON_COUNT; i++) {
		const char *why = policy_reason_name((enum decision_reason)i);

		if ((api->not_modified[i] = http_response_empty()) == NULL ||
		    http_response_header(api->not_modified[i], "Cache-Control",
		    "no-store") < 0 || (why != NULL &&
		    http_response_header(api->not_modified[i],
		    "X-Update-Deferred", why) < 0)) {
			api_free(api);
			return OTAD_ERR_NOMEM;
		}
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
	enum otad_err rc;

	rc = rollout_start(api->db_path, offer_payload, offer_payload_free, api,
	    out);
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
	free(api->db_path);
	free(api);
}
