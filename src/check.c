/*
 * check.c: what a device says of itself, and what it should be offered.
 * /firmware/check (the image, or 304), /firmware/manifest (the same as
 * JSON), and two fixed URLs for clients that send nothing of themselves:
 * /firmware/delta/<device> (esp_delta_ota's example) and
 * /firmware/latest/<product> (a URL baked into firmware).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "api_impl.h"
#include "espimg.h"
#include "fsimg.h"
#include "metrics.h"
#include "range.h"
#include "rollout.h"
#include "semver.h"
#include "sign.h"

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

/*
 * Basic credentials, "ID:TOKEN" (esp_http_client's and HTTPClient's URL
 * credentials): the id is all before the last colon, since tokens have
 * none and MAC addresses have five. NULL when there are none; "" (an
 * invalid id) when the id would not fit.
 */
static const char *
basic_user(const struct http_request *req, char buf[OTAD_ID_MAX + 1])
{
	char *user, *pass;
	const char *last;
	int n;

	if (http_basic_auth(req, &user, &pass) < 0)
		return NULL;
	if ((last = strrchr(pass, ':')) == NULL)
		n = snprintf(buf, OTAD_ID_MAX + 1, "%s", user);
	else
		n = snprintf(buf, OTAD_ID_MAX + 1, "%s:%.*s", user,
		    (int)(last - pass), pass);
	if (n < 0 || n > OTAD_ID_MAX)
		buf[0] = '\0';
	http_free_basic(user, pass);
	return buf;
}

const char *
api_device_id(const struct http_request *req, char buf[OTAD_ID_MAX + 1])
{
	/*
	 * Arduino's HTTPUpdate 3.x sends x-ESP32-BASE-MAC always and the
	 * STA MAC only on chips with Wi-Fi (HTTPUpdate.cpp, handleUpdate).
	 */
	static const char *const names[] = {"X-Device-ID", "x-ESP32-STA-MAC",
	    "x-ESP32-BASE-MAC", "x-ESP8266-STA-MAC", NULL};
	const char *id = first_named(req, names, "device");

	return id != NULL ? id : basic_user(req, buf);
}

/*
 * Arduino's HTTPUpdate (ESP32 2.x and 3.x, ESP8266): any of the headers
 * it always sends, or its User-Agent. Its updater writes the bytes it gets
 * as they are: it can apply no patch.
 */
static int
is_httpupdate(const struct http_request *req)
{
	static const char *const names[] = {"x-ESP32-STA-MAC",
	    "x-ESP32-BASE-MAC", "x-ESP32-AP-MAC", "x-ESP32-free-space",
	    "x-ESP32-sketch-size", "x-ESP32-sketch-md5",
	    "x-ESP32-sketch-sha256", "x-ESP32-chip-size",
	    "x-ESP32-sdk-version", "x-ESP32-mode", "x-ESP32-version",
	    "x-ESP8266-STA-MAC", "x-ESP8266-mode", NULL};
	const char *ua = http_header(req, "User-Agent");
	size_t i;

	if (ua != NULL && (strcmp(ua, "ESP32-http-Update") == 0 ||
	    strcmp(ua, "ESP8266-http-Update") == 0))
		return 1;
	for (i = 0; names[i] != NULL; i++)
		if (http_header(req, names[i]) != NULL)
			return 1;
	return 0;
}

/* 64 hex digits, either case, into lower-case out; 0 or -1. */
int
api_parse_sha256(const char *s, char *out)
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
			return api_refuse(req, 400, msg);
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
	const char *id;      /* NULL: none */
	char idbuf[OTAD_ID_MAX + 1];
	char base[65];       /* the artifact it runs, if stored; "" = unknown */
	int kind;            /* what it asks for (struct device_facts) */
	enum serve_range how;
	int from_registry;   /* /firmware/delta/<id>: it sent nothing */
	struct record *rec;  /* its check-in, for check_submit */
};

/* What a request says of the device, checked. */
struct said {
	const char *version, *product, *hw_rev, *chip;
	char running[65];
	int64_t secure_version, free_space, flash_size;
	struct telemetry tel;
};

/* Read and check what a device sent; 0, or -1 when answered (400). */
static int
read_said(struct http_request *req, struct said *s)
{
	static const char *const version_names[] = {"X-Current-Version",
	    "x-ESP32-version", "x-ESP8266-version", NULL};
	static const char *const space_names[] = {"x-ESP32-free-space",
	    "x-ESP8266-free-space", NULL};
	static const char *const flash_names[] = {"x-ESP32-chip-size",
	    "x-ESP8266-chip-size", NULL};
	const char *v;

	memset(s, 0, sizeof(*s));
	s->secure_version = s->free_space = -1;
	s->version = first_named(req, version_names, "version");
	if (s->version != NULL && !semver_valid(s->version))
		return api_refuse(req, 400, "invalid version: 1 to 64 "
		    "printable characters, no spaces");
	s->product = first_of(req, "X-Product", "product", NULL, NULL);
	if (s->product != NULL && !valid_token(s->product, OTAD_PRODUCT_MAX))
		return api_refuse(req, 400, "invalid product");
	s->hw_rev = first_of(req, "X-Hardware-Rev", "hw_rev", NULL, NULL);
	if (s->hw_rev != NULL && !valid_token(s->hw_rev, OTAD_PRODUCT_MAX))
		return api_refuse(req, 400, "invalid hardware revision");
	s->chip = first_of(req, "X-Chip", "chip", NULL, NULL);
	if (s->chip != NULL && espimg_chip_id(s->chip) < 0)
		return api_refuse(req, 400, "unknown chip: esp32, esp32s2, "
		    "esp32s3, esp32c2, esp32c3, esp32c5, esp32c6, esp32c61, "
		    "esp32h2 or esp32p4");
	if ((v = first_of(req, "X-Running-SHA256", NULL,
	    "x-ESP32-sketch-sha256", NULL)) != NULL &&
	    api_parse_sha256(v, s->running) < 0)
		return api_refuse(req, 400, "invalid running SHA-256: 64 hex "
		    "digits");
	if ((v = http_header(req, "X-Secure-Version")) != NULL &&
	    (s->secure_version = parse_u32(v)) < 0)
		return api_refuse(req, 400, "invalid secure version");
	if ((v = first_named(req, space_names, NULL)) != NULL &&
	    (s->free_space = parse_u32(v)) < 0)
		return api_refuse(req, 400, "invalid free space");
	if ((v = first_named(req, flash_names, NULL)) != NULL &&
	    (s->flash_size = parse_u32(v)) < 0)
		return api_refuse(req, 400, "invalid chip size");
	return header_telemetry(req, &s->tel);
}

/*
 * The kind of image a request asks for: Arduino's x-ESP32-mode, an app
 * otherwise. A mode otad does not know asks for a kind nothing has.
 */
static int
asked_kind(const struct http_request *req)
{
	const char *mode = first_of(req, "x-ESP32-mode", NULL,
	    "x-ESP8266-mode", NULL);
	int kind;

	if (mode == NULL)
		return KIND_APP;
	kind = fsimg_kind_of_mode(mode);
	return kind < 0 ? KIND_ANY_FS + 1 : kind;
}

/*
 * The offer of the download the device has under way, when its image may
 * still be offered: a resumed or partial download goes on with the image
 * it began, never the middle of another one. NULL if none.
 */
static const struct offer *
download_under_way(struct api *api, struct api_thread *t,
    const struct snapshot *snap, const char *id, int kind)
{
	char sha[65];
	size_t i;

	if (!download_recent(api, id, sha) &&
	    registry_open_artifact(t->reader, id, sha) != OTAD_OK)
		return NULL;
	for (i = 0; i < snap->n; i++)
		if (strcmp(snap->offers[i].sha256, sha) == 0 &&
		    (int)snap->offers[i].kind == kind)
			return &snap->offers[i];
	return NULL;
}

/* The check-in of a decision, ready for check_submit; NULL if no memory. */
static struct record *
checkin_record(struct http_request *req, const struct check *c,
    const struct said *s, const char *version, const char *chip,
    int64_t secure_version, int64_t now)
{
	struct record *rec = registry_record_new(RECORD_CHECKIN);

	if (rec == NULL)
		return NULL;
	rec->at = now;
	snprintf(rec->device, sizeof(rec->device), "%s", c->id);
	snprintf(rec->version, sizeof(rec->version), "%s", version);
	rec->fs_mode = c->kind != KIND_APP;
	if (s->product != NULL)
		snprintf(rec->product, sizeof(rec->product), "%s", s->product);
	http_peer(req, rec->address, sizeof(rec->address));
	if (s->hw_rev != NULL)
		snprintf(rec->hw_rev, sizeof(rec->hw_rev), "%s", s->hw_rev);
	memcpy(rec->running_sha256, s->running, sizeof(s->running));
	snprintf(rec->chip, sizeof(rec->chip), "%s", chip);
	rec->secure_version = secure_version;
	rec->free_space = s->free_space;
	rec->tel = s->tel;
	rec->deferred = policy_reason_name(c->d.reason); /* static */
	/* a HEAD looks without taking: the record opens no attempt */
	if (c->d.kind == DECISION_OFFER && http_method(req) == HTTP_GET) {
		rec->offer_release = c->d.offer->release_id;
		/* a stepping stone is part of its target's rollout */
		rec->offer_rollout = c->d.target->rollout_id;
		rec->offer_stage = c->d.target->stage;
		snprintf(rec->offer_version, sizeof(rec->offer_version), "%s",
		    c->d.offer->version);
	}
	return rec;
}

/* Queue the check-in; without offered, as an answer that sent nothing. */
static void
check_submit(struct api *api, struct check *c)
{
	if (c->rec == NULL)
		return;
	api_record(api, c->rec);
	c->rec = NULL;
}

/* The check-in, as an answer that sent no image after all. */
static void
check_submit_unoffered(struct api *api, struct check *c)
{
	if (c->rec != NULL)
		c->rec->offer_release = 0;
	check_submit(api, c);
}

/*
 * Which version the device runs, when it did not say: the version of the
 * image it runs, when the store has it (its digest names it); for a
 * filesystem request, the filesystem image it was last sent; and for an
 * image otad does not store, "" (unknown: older than every release, so
 * offered whatever differs from it, as Arduino's own update servers
 * decide by digest). NULL when nothing tells.
 */
static const char *
running_version(const struct check *c, const struct said *s,
    const struct running_image *img, int img_known,
    const struct device_row *row)
{
	if (s->version != NULL && !c->from_registry)
		return s->version;
	if (c->kind != KIND_APP)
		return row->fs_version;
	if (img_known)
		return img->version;
	if (s->running[0] != '\0')
		return "";
	return NULL;
}

/*
 * Everything the answers share: read what the device says, add what the
 * registry knows of it, decide; c->rec holds its check-in for
 * check_submit. 0 with c->d filled, or -1 when an error was answered.
 */
static int
check_decide(struct http_request *req, struct api *api, struct check *c)
{
	struct api_thread *t;
	const char *version, *chip;
	struct running_image img;
	struct device_row row;
	struct device_facts facts;
	struct snapshot *snap;
	struct said s;
	int64_t now = (int64_t)time(NULL), secure_version;
	int img_known;

	if (api_gate_address(req, api) < 0)
		return -1;
	if (c->from_registry) {
		memset(&s, 0, sizeof(s));
		s.secure_version = s.free_space = -1;
	} else {
		if ((c->id = api_device_id(req, c->idbuf)) == NULL)
			return atomic_load(&api->tokens) ?
			    api_unauthorized(req, "missing device id and "
			    "token: send X-Device-ID and X-Device-Token, or "
			    "put them in the URL (http://ID:TOKEN@host/...)") :
			    api_refuse(req, 400, "missing device id "
			    "(X-Device-ID, ?device= or x-ESP32-STA-MAC)");
		if (read_said(req, &s) < 0)
			return -1;
		c->kind = asked_kind(req);
	}
	if (!otad_valid_id(c->id))
		return api_refuse(req, 400, "invalid device id: 1 to 64 of "
		    "A-Z a-z 0-9 . _ : -");
	if ((t = api_thread_state(api)) == NULL)
		return api_refuse(req, 503, "registry unavailable");
	if (api_lookup_device(req, api, t, c->id, &row) < 0)
		return -1;
	if (c->from_registry)
		memcpy(s.running, row.running_sha256, sizeof(s.running));
	/* the image it runs, if we know it, tells its chip for certain */
	img_known = s.running[0] != '\0' &&
	    registry_running_image(t->reader, s.running, &img) == OTAD_OK;
	if (!img_known)
		memset(&img, 0, sizeof(img));
	if (c->from_registry && !img_known)
		return api_refuse(req, 409, "no image in the store is recorded "
		    "as what this device runs: a patch needs its base (a check "
		    "with X-Running-SHA256 records it)");
	if ((version = running_version(c, &s, &img, img_known, &row)) ==
	    NULL)
		return api_refuse(req, 400, "missing current version "
		    "(X-Current-Version, ?version= or x-ESP32-version), and "
		    "no running image digest (X-Running-SHA256 or "
		    "x-ESP32-sketch-sha256) to tell it by");
	snprintf(c->base, sizeof(c->base), "%s", img_known ? img.sha256 : "");
	/* it booted that image: its eFuse is at least that high */
	secure_version = s.secure_version;
	if (img_known && (int64_t)img.secure_version > secure_version)
		secure_version = img.secure_version;
	if (row.secure_version > secure_version)
		secure_version = row.secure_version;
	chip = img_known ? img.chip : s.chip != NULL ? s.chip : "";

	memset(&facts, 0, sizeof(facts));
	facts.id = c->id;
	facts.version = version;
	facts.product = s.product ? s.product : row.product;
	facts.chip = chip[0] != '\0' ? chip : row.chip;
	facts.hw_rev = s.hw_rev ? s.hw_rev : row.hw_rev;
	facts.secure_version = secure_version;
	facts.free_space = s.free_space;
	facts.flash_size = s.flash_size;
	facts.group = row.group;
	facts.quarantined_until = row.quarantined_until;
	facts.battery = (s.tel.present & TEL_BATTERY) ? (int)s.tel.battery :
	    row.battery;
	facts.kind = c->kind;
	snap = rollout_snapshot(api->rollout, &t->snap);
	policy_decide(&facts, snap->offers, snap->n, &snap->stones, now,
	    &c->d);
	/* about to offer: what do its attempts say? (a 304 never asks) */
	if (c->d.kind == DECISION_OFFER && c->kind == KIND_APP &&
	    (facts.refused_release = refused(t, c->id, version, &s.tel,
	    now)) == c->d.offer->release_id)
		policy_decide(&facts, snap->offers, snap->n, &snap->stones,
		    now, &c->d);
	/* the rest of a download goes on with the image it began */
	c->how = SERVE_RANGE;
	if (http_method(req) == HTTP_GET &&
	    range_continues(http_header(req, "Range"))) {
		const struct offer *o = download_under_way(api, t, snap,
		    c->id, c->kind);

		if (o != NULL) {
			c->d.kind = DECISION_OFFER;
			c->d.reason = REASON_NONE;
			c->d.offer = c->d.target = o;
		} else if (c->d.kind == DECISION_OFFER) {
			c->how = SERVE_WHOLE; /* another image: from 0 */
		}
	}
	c->rec = checkin_record(req, c, &s, version, chip, secure_version,
	    now);
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
static int patch_ready(struct api *api, const struct check *c,
    struct patch_info *pi);

static int
delta_for(struct http_request *req, struct api *api, const struct check *c,
    struct patch_info *pi)
{
	if (!accepts_delta(req) || is_httpupdate(req))
		return 0;
	return patch_ready(api, c, pi);
}

/* A verified patch from the device's image to the offer, ready: 1. */
static int
patch_ready(struct api *api, const struct check *c, struct patch_info *pi)
{
	struct api_thread *t;

	if (api->patcher == NULL || c->d.kind != DECISION_OFFER ||
	    c->d.offer->kind != KIND_APP || c->base[0] == '\0')
		return 0;
	if ((t = api_thread_state(api)) == NULL ||
	    registry_delta_failed(t->reader, c->id, c->d.offer->release_id) !=
	    0)
		return 0;
	return patcher_ready(api->patcher, c->base, c->d.offer->sha256, pi);
}

int
check_answer(struct http_request *req, void *arg)
{
	struct api *api = arg;
	struct patch_info pi;
	struct check c;
	int delta;

	memset(&c, 0, sizeof(c));
	if (check_decide(req, api, &c) < 0)
		return 0;
	check_submit(api, &c);
	if (c.d.kind != DECISION_OFFER)
		return http_queue(req, 304,
		    api_not_modified(api, c.d.reason), 0);
	delta = delta_for(req, api, &c, &pi);
	/* esp_https_ota's partial download may ask the check path */
	if (delta || http_header(req, "Range") != NULL)
		return download_serve(req, api, c.d.offer, c.id,
		    delta ? &pi : NULL, c.how, 0);
	return http_queue_notify(req, 200, c.d.offer->payload,
	    c.d.offer->size, download_delivered, download_delivery(api, c.id,
	    c.d.offer, http_method(req), 0));
}

/*
 * /firmware/delta/<device>: Espressif's https_delta_ota example sends a
 * plain GET with no headers and feeds whatever comes to the patch applier
 * (main.c: esp_http_client_read of PATCH_HEADER_SIZE, never a status
 * check). So this URL answers 2xx only with a patch from the image otad
 * recorded for the device to what it should run, never a full image.
 */
int
check_delta_url(struct http_request *req, void *arg)
{
	struct api *api = arg;
	struct patch_info pi;
	struct check c;

	memset(&c, 0, sizeof(c));
	c.from_registry = 1;
	snprintf(c.idbuf, sizeof(c.idbuf), "%.64s", http_path(req) +
	    strlen(DELTA_URL));
	if (strlen(http_path(req) + strlen(DELTA_URL)) > OTAD_ID_MAX)
		c.idbuf[0] = '\0';
	c.id = c.idbuf;
	metrics_add(M_DELTA_URL, 1);
	if (check_decide(req, api, &c) < 0)
		return 0;
	if (c.d.kind != DECISION_OFFER) {
		check_submit(api, &c);
		return http_queue(req, 304,
		    api_not_modified(api, c.d.reason), 0);
	}
	if (api->patcher == NULL) {
		check_submit_unoffered(api, &c);
		return http_error(req, 409, "delta patches are off "
		    "(delta_max_share = 0)");
	}
	if (!patch_ready(api, &c, &pi)) {
		check_submit_unoffered(api, &c);
		return http_error_header(req, 503, "no patch ready from the "
		    "image this device runs: it is being built, or it would be "
		    "larger than delta_max_share of the image, or the device "
		    "failed to apply one of this release", "Retry-After",
		    "60");
	}
	check_submit(api, &c);
	/* the example cannot report: a patch sent whole counts installed */
	return download_serve(req, api, c.d.offer, c.id, &pi, SERVE_RANGE, 1);
}

/*
 * /firmware/latest/<product> (latest_url = yes): one URL baked into
 * firmware that says nothing of itself (esp_https_ota's simple and
 * advanced examples). Without an identity there is no ring and no
 * record: only what every device of the product may have, a publish or
 * a completed rollout.
 */
int
check_latest(struct http_request *req, void *arg)
{
	struct api *api = arg;
	const char *product = http_path(req) + strlen(LATEST), *chip;
	struct device_facts facts;
	struct api_thread *t;
	struct snapshot *snap;
	struct decision d;

	if (!atomic_load(&api->latest))
		return http_error(req, 404, "no such path (the fixed URL "
		    "/firmware/latest/ is off: latest_url = no)");
	if (api_gate_address(req, api) < 0)
		return 0;
	if (!valid_token(product, OTAD_PRODUCT_MAX) ||
	    strchr(product, '/') != NULL)
		return http_error(req, 400, "invalid product");
	chip = first_of(req, "X-Chip", "chip", NULL, NULL);
	if (chip != NULL && espimg_chip_id(chip) < 0)
		return http_error(req, 400, "unknown chip");
	if ((t = api_thread_state(api)) == NULL)
		return http_error(req, 503, "registry unavailable");
	memset(&facts, 0, sizeof(facts));
	facts.version = "";
	facts.product = product;
	facts.chip = chip;
	facts.secure_version = facts.free_space = -1;
	facts.battery = -1;
	facts.everyone_only = 1;
	snap = rollout_snapshot(api->rollout, &t->snap);
	policy_decide(&facts, snap->offers, snap->n, &snap->stones,
	    (int64_t)time(NULL), &d);
	metrics_add(M_LATEST, 1);
	if (d.kind != DECISION_OFFER)
		return http_queue(req, 304, api_not_modified(api, d.reason), 0);
	metrics_add(M_LATEST_OFFERS, 1);
	if (http_header(req, "Range") != NULL)
		return download_serve(req, api, d.offer, NULL, NULL,
		    SERVE_RANGE, 0);
	return http_queue(req, 200, d.offer->payload, d.offer->size);
}

/* The same decision as JSON, for firmware that fetches the image itself. */
int
check_manifest(struct http_request *req, void *arg)
{
	struct api *api = arg;
	const struct offer *o;
	struct patch_info pi;
	struct check c;
	char url[96], *body, *sig = NULL;
	json_t *j;

	memset(&c, 0, sizeof(c));
	if (check_decide(req, api, &c) < 0)
		return 0;
	check_submit(api, &c);
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