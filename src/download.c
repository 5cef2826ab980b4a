/*
 * download.c: images and patches on the wire. Zero-copy files with the
 * headers each client checks, byte ranges for resumed and partial
 * downloads, the note that a device got a whole image, and the
 * /firmware/artifacts and /firmware/patches paths.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "api_impl.h"
#include "log.h"
#include "metrics.h"
#include "range.h"
#include "sign.h"
#include "store.h"

/* A delivery to note once the whole image went out. */
struct delivery {
	struct api *api;
	char device[OTAD_ID_MAX + 1];
	char artifact[65];
	int assume_installed;
};

#define RECENT_FOR_S 3600

static uint64_t
recent_key(const char *device)
{
	uint64_t h = otad_hash(device);

	return h ? h : 1;
}

/* Remember that device was sent (part of) the image sha256 now. */
static void
download_note(struct api *api, const char *device, const char *sha256)
{
	uint64_t key = recent_key(device);
	struct recent_download *r;

	if (api->recent == NULL)
		return;
	r = &api->recent[key % RECENT_SLOTS];
	pthread_mutex_lock(&api->recent_mu);
	r->key = key;
	r->at = (int64_t)time(NULL);
	memcpy(r->sha256, sha256, sizeof(r->sha256));
	pthread_mutex_unlock(&api->recent_mu);
}

int
download_recent(struct api *api, const char *device, char *sha256)
{
	uint64_t key = recent_key(device);
	struct recent_download *r;
	int found;

	if (api->recent == NULL)
		return 0;
	r = &api->recent[key % RECENT_SLOTS];
	pthread_mutex_lock(&api->recent_mu);
	found = r->key == key && r->at > (int64_t)time(NULL) - RECENT_FOR_S;
	if (found)
		memcpy(sha256, r->sha256, 65);
	pthread_mutex_unlock(&api->recent_mu);
	return found;
}

/* NULL (nothing to note) for HEAD or an unknown device. */
void *
download_delivery(struct api *api, const char *device, const struct offer *o,
    enum http_method method, int assume_installed)
{
	struct delivery *d;

	if (device == NULL || method != HTTP_GET)
		return NULL;
	download_note(api, device, o->sha256);
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	d->api = api;
	snprintf(d->device, sizeof(d->device), "%s", device);
	memcpy(d->artifact, o->sha256, sizeof(d->artifact));
	d->assume_installed = assume_installed;
	return d;
}

/*
 * http: the request ended. A complete image moves the offer on and
 * arms rollback detection: the device has the image now.
 */
void
download_delivered(void *arg, int complete)
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
		rec->assume_installed = d->assume_installed;
		api_record(d->api, rec);
	}
	free(d);
}

/*
 * The headers of an image response: what it is, how to check it, and its
 * signature. x-MD5 and x-SHA256 only with the whole file: Arduino's
 * HTTPUpdate checks what it received against them (3.x collects both,
 * HTTPUpdate.cpp handleUpdate: headerkeys[] = {"x-MD5", "x-SHA256"}).
 */
static int
image_headers(struct http_response *resp, const struct offer *o, int whole,
    const struct patch_info *pi, enum serve_range how)
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
	    http_response_header(resp, "Cache-Control", how ==
	    SERVE_IMMUTABLE ? "public, max-age=31536000, immutable" :
	    "no-store") < 0 ||
	    http_response_header(resp, "X-Firmware-Version", o->version) < 0 ||
	    http_response_header(resp, "X-Firmware-SHA256", o->sha256) < 0 ||
	    (whole && (http_response_header(resp, "x-MD5", o->md5) < 0 ||
	    http_response_header(resp, "x-SHA256", o->sha256) < 0)) ||
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

	/* a patch is from an app to an app */
	if (api->patcher == NULL || o->kind != KIND_APP ||
	    (t = api_thread_state(api)) == NULL ||
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
void *
download_offer_payload(const struct offer *o, void *arg)
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
	if (image_headers(resp, o, 1, NULL, SERVE_RANGE) < 0 ||
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
int
download_serve(struct http_request *req, struct api *api,
    const struct offer *o, const char *device, const struct patch_info *pi,
    enum serve_range how, int assume_installed)
{
	uint64_t size = pi ? pi->size : o->size;
	struct http_response *resp;
	struct range r;
	char etag[80], cr[96];
	int fd;

	snprintf(etag, sizeof(etag), "\"%s\"", pi ? pi->sha256 : o->sha256);
	range_parse(how == SERVE_WHOLE ? NULL : http_header(req, "Range"),
	    http_header(req, "If-Range"), etag, size, &r);
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
	    pi == NULL, pi, how) < 0 ||
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
	if (device != NULL && http_method(req) == HTTP_GET)
		download_note(api, device, o->sha256);
	/* the image is delivered when its last byte is */
	http_queue_notify(req, r.kind == RANGE_PARTIAL ? 206 : 200, resp,
	    r.len, download_delivered, r.start + r.len == size ?
	    download_delivery(api, device, o, http_method(req),
	    assume_installed) : NULL);
	http_response_free(resp); /* the connection holds its own reference */
	return 0;
}

int
download_artifact(struct http_request *req, void *arg)
{
	struct api *api = arg;
	int patch = strncmp(http_path(req), PATCHES, strlen(PATCHES)) == 0;
	const char *sha = http_path(req) + strlen(patch ? PATCHES : ARTIFACTS);
	const char *id;
	struct patch_info pi;
	char lower[65], idbuf[OTAD_ID_MAX + 1];

	if (api_gate_address(req, api) < 0)
		return 0;
	if (api_parse_sha256(sha, lower) < 0 ||
	    (patch && !patcher_by_sha(api->patcher, lower, &pi)))
		return http_error(req, 404, patch ? "no such patch" :
		    "no such artifact");
	if (patch)
		memcpy(lower, pi.target, sizeof(lower));
	if ((id = api_device_id(req, idbuf)) != NULL && !otad_valid_id(id))
		return http_error(req, 400, "invalid device id: 1 to 64 of "
		    "A-Z a-z 0-9 . _ : -");
	/* the URL names the bytes: caches and CDNs in front may keep them */
	return download_released(req, api, lower, id, patch ? &pi : NULL,
	    SERVE_IMMUTABLE);
}

int
download_released(struct http_request *req, struct api *api,
    const char *sha256, const char *id, const struct patch_info *pi,
    enum serve_range how)
{
	struct device_row row;
	struct api_thread *t;
	struct record *rec;
	struct offer o;
	enum otad_err rc;

	if (id == NULL && atomic_load(&api->tokens)) {
		api_unauthorized(req, "missing device id");
		return 0;
	}
	if ((t = api_thread_state(api)) == NULL)
		return http_error(req, 503, "registry unavailable");
	if (id != NULL && api_lookup_device(req, api, t, id, &row) < 0)
		return 0;
	rc = registry_released_artifact(t->reader, sha256, &o);
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
		memcpy(rec->artifact, sha256, sizeof(rec->artifact));
		http_peer(req, rec->address, sizeof(rec->address));
		api_record(api, rec);
	}
	return download_serve(req, api, &o, id, pi, how, 0);
}

/*
 * A response no longer in the current offers: when it was the last for its
 * release, the release's patches go (a thread still holding the old offers
 * finds no patch and serves the full image, or a 503 if it lost the race
 * between finding the patch and opening it). Once per response.
 */
void
download_offer_payload_retire(void *payload)
{
	size_t i;

	pthread_mutex_lock(&held_mu);
	for (i = 0; i < nheld && held[i].resp != payload; i++)
		continue;
	if (i < nheld) {
		patcher_release(held[i].patcher, held[i].target);
		held[i] = held[--nheld];
	}
	pthread_mutex_unlock(&held_mu);
}

void
download_offer_payload_free(void *payload)
{
	/* retired already unless the controller is stopping */
	download_offer_payload_retire(payload);
	http_response_free(payload);
}
