/*
 * api_impl.h: what the modules of the device API share, and nobody else.
 *
 *  - api.c: struct api and its settings, the gates every request passes
 *    (caps, tokens, blocks), reports, /health, /metrics and the routes;
 *  - check.c: what a device says of itself, the update decision and its
 *    answers (/firmware/check, /firmware/manifest, the fixed URLs);
 *  - download.c: images and patches on the wire (ranges, the headers each
 *    client checks, deliveries) and /firmware/artifacts, /firmware/patches;
 *  - pull.c: the manifests of pull-OTA libraries that never report
 *    (esp32FOTA, ESP32-OTA-Pull, ESPHome, esp_ghota) and their images.
 */
#ifndef API_IMPL_H
#define API_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "api.h"
#include "http.h"
#include "patcher.h"
#include "policy.h"
#include "ratelimit.h"
#include "registry.h"

#define ARTIFACTS "/firmware/artifacts/"
#define PATCHES "/firmware/patches/"
#define LATEST "/firmware/latest/"
#define DELTA_URL "/firmware/delta/"
#define PULL_ESP32FOTA "/pull/esp32fota/"
#define PULL_OTAPULL "/pull/otapull/"
#define PULL_ESPHOME "/pull/esphome/"
#define PULL_GHOTA "/repos/"
#define PULL_IMAGE "/pull/image/"
#define PULL_MD5 "/pull/md5/"

/* One device's last image from the check path (download_recent). */
struct recent_download {
	uint64_t key; /* FNV-1a of the device id; 0 = free */
	int64_t at;
	char sha256[65];
};

struct api {
	char *db_path;
	struct registry *reg;
	struct store *store;
	struct rollout *rollout;
	struct patcher *patcher; /* NULL: no delta patches */
	/* 304s, one per reason, for a thread that cannot build its own */
	struct http_response *not_modified[REASON_COUNT];
	pthread_key_t thread_key;
	atomic_int require_signature; /* read by the rollout controller */
	atomic_int tokens;            /* device_auth = token */
	atomic_int latest;            /* latest_url = yes */
	/* pull-OTA libraries (pull.c): where they download, set once */
	char pull_base[512];
	atomic_int pull_ready;
	atomic_uint infer_after;      /* seconds before a silent success */
	atomic_uint per_device, per_address, auth_failures;
	/*
	 * failed authentications are counted per address; the ranges that
	 * continue a download per device, apart from its requests
	 */
	struct ratelimit *rl_device, *rl_address, *rl_auth, *rl_ranges;
	/* the image each device was last sent on the check path */
	pthread_mutex_t recent_mu;
	struct recent_download *recent; /* RECENT_SLOTS */
};

/* Devices whose last image is remembered (download_recent). */
#define RECENT_SLOTS 65536

/* What one HTTP thread keeps between requests. */
struct api_thread {
	struct registry_reader *reader;
	struct snapshot *snap;
	/* 304s, one per reason, built as this thread first answers one */
	struct http_response *not_modified[REASON_COUNT];
};

/* api.c */

/* This thread's reader and snapshot; NULL when the registry cannot open. */
struct api_thread *api_thread_state(struct api *api);

/* The 304 that says reason, this thread's own when it can build one. */
struct http_response *api_not_modified(struct api *api,
    enum decision_reason reason);

/*
 * An answer that must not go before its record is on disk (a report's
 * 200; a refusal later requests must see): rec is queued durable and the
 * request suspended until the writer committed it (or failed, or the
 * wait ran out); note is kept for the answer. Answers only on failure
 * to queue. The handler is then called again: api_durable_outcome says
 * how it went (and gives the note back).
 */
int api_submit_durable(struct http_request *req, struct api *api,
    struct record *rec, const char *note);
enum durable {
	DURABLE_NOT_WAITING, /* a first call: not submitted */
	DURABLE_WRITTEN,
	DURABLE_NOT_WRITTEN, /* err: OTAD_ERR_BUSY when not in time */
};
enum durable api_durable_outcome(struct http_request *req,
    enum otad_err *err, const char **note);
/* Answer an error from a helper whose caller must stop: -1. */
int api_refuse(struct http_request *req, unsigned status, const char *msg);
/* 401 with the challenges ESP32 clients answer (Basic first). -1. */
int api_unauthorized(struct http_request *req, const char *msg);
/* The per-address cap, before anything else: 0, or -1 when answered. */
int api_gate_address(struct http_request *req, struct api *api);
/*
 * The device's row (zeroed, secure_version -1, for one never seen) and
 * everything that may refuse it: its cap, its token, a block. 0 to go on,
 * -1 when answered.
 */
int api_lookup_device(struct http_request *req, struct api *api,
    struct api_thread *t, const char *id, struct device_row *row);
/*
 * Queue a record that the answer does not wait for; with the writer's
 * queue full it is dropped and counted (the next check records it).
 */
void api_record(struct api *api, struct record *rec);

/* check.c */

/* 64 hex digits, either case, into lower-case out; 0 or -1. */
int api_parse_sha256(const char *s, char *out);
/*
 * The identity a request carries: X-Device-ID, ?device=, Arduino's MACs,
 * else the user of Basic credentials (buf holds it). NULL if none.
 */
const char *api_device_id(const struct http_request *req,
    char buf[OTAD_ID_MAX + 1]);
int check_answer(struct http_request *req, void *arg);
int check_manifest(struct http_request *req, void *arg);
int check_latest(struct http_request *req, void *arg);
int check_delta_url(struct http_request *req, void *arg);

/* pull.c: the pull-OTA libraries' manifests and image links */
int pull_dialect(struct http_request *req, void *arg);
int pull_ghota(struct http_request *req, void *arg);
int pull_image(struct http_request *req, void *arg);
int pull_md5(struct http_request *req, void *arg);

/* download.c */

/* How download_serve reads the request's Range. */
enum serve_range {
	SERVE_RANGE,        /* honour Range and If-Range */
	SERVE_WHOLE,        /* the whole file whatever was asked: a range
			       of some other image must not be continued */
	SERVE_IMMUTABLE,    /* as SERVE_RANGE, from a URL that names its
			       bytes for ever: any HTTP cache may keep them */
};

/*
 * Answer with (part of) the image of o, or of the patch pi to it: 200
 * whole, 206 one range, 416 a start past the end. device (NULL: none)
 * gets a delivery recorded once the last byte went out; assume_installed
 * marks that delivery (see struct record). Zero-copy.
 */
int download_serve(struct http_request *req, struct api *api,
    const struct offer *o, const char *device, const struct patch_info *pi,
    enum serve_range how, int assume_installed);
/* The prepared whole-image response of an offer (a rollout hook). */
void *download_offer_payload(const struct offer *o, void *arg);
void download_offer_payload_retire(void *payload);
void download_offer_payload_free(void *payload);
/* http: a prepared image response ended; note a whole delivery. */
void download_delivered(void *arg, int complete);
/* What to note when the image of o reaches device (NULL: nothing). */
void *download_delivery(struct api *api, const char *device,
    const struct offer *o, enum http_method method, int assume_installed);
int download_artifact(struct http_request *req, void *arg);
/*
 * A released artifact (sha256, or the patch pi to it) to device id (NULL:
 * none): its download recorded, served per the request's Range (how).
 */
int download_released(struct http_request *req, struct api *api,
    const char *sha256, const char *id, const struct patch_info *pi,
    enum serve_range how);
/*
 * The image last sent to device on the check path, within the hour, into
 * sha256 (65 bytes): 1, or 0 when not remembered. The next range of a
 * download may come before the writer recorded its attempt; this knows
 * at once. A collision of two devices forgets one (the registry's
 * attempt stands behind it).
 */
int download_recent(struct api *api, const char *device, char *sha256);

#endif
