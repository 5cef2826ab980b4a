/*
 * pull.c: the manifests of the pull-OTA libraries fleets already run,
 * answered from the same decision as /firmware/check, and the image links
 * in them:
 *
 *   /pull/esp32fota/<product>[/<device>]  chrisjoyce911/esp32FOTA
 *   /pull/otapull/<product>[/<device>]    mikalhart/ESP32-OTA-Pull
 *   /pull/esphome/<product>[/<device>]    ESPHome update.http_request
 *   /repos/<product>/<device>/releases/latest   Fishwaldo/esp_ghota
 *   /pull/image/<sha256>?device=<id>      the image a manifest names
 *   /pull/md5/<sha256>                    its MD5 as 32 hex digits
 *
 * These libraries say nothing of themselves and never report. The device
 * is who the URL says (esp32FOTA's ?id= too); what it runs is what otad
 * last knew it to run; a manifest lists the release it should run (its
 * ring's, else its product's baseline, else what it runs), and the
 * library's own comparison decides whether it fetches. Its attempt opens
 * when it fetches the image, and its outcome is inferred from what it
 * does next (registry: apply_silent). Without a device id only what every
 * device may have is listed, as on /firmware/latest/ (latest_url).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "api_impl.h"
#include "espimg.h"
#include "log.h"
#include "metrics.h"
#include "rollout.h"

/*
 * A second fetch this soon after a delivery (or sooner than infer_after)
 * is the same try going on, not a sign the image did not stay.
 */
#define REFETCH_GRACE 30

enum dialect { ESP32FOTA, OTAPULL, ESPHOME, GHOTA };

static const char *const dialect_paths[] = {
	[ESP32FOTA] = PULL_ESP32FOTA,
	[OTAPULL] = PULL_OTAPULL,
	[ESPHOME] = PULL_ESPHOME,
};

/* What a manifest request asked, and what the device should run. */
struct pull {
	char product[OTAD_PRODUCT_MAX + 1];
	char idbuf[OTAD_ID_MAX + 1];
	const char *id;             /* NULL: no identity */
	const char *chip;           /* ?chip=, else what the registry knows */
	struct device_row row;
	const struct offer *listed; /* NULL: nothing for it */
	const struct offer *offer;  /* what the decision offers it now */
	int64_t refused_release;    /* rolled back from it; 0 none */
};

/* A path segment of at most max bytes into out; -1 if longer or bad. */
static int
segment(const char *s, size_t n, char *out, size_t max)
{
	if (n == 0 || n > max)
		return -1;
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

/*
 * <product>[/<device>] after a dialect's prefix; the device may come as
 * ?device= or esp32FOTA's ?id= (its decimal eFuse MAC). 0, or -1 answered.
 */
static int
read_target(struct http_request *req, const char *rest, struct pull *p)
{
	const char *slash = strchr(rest, '/');
	size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
	const char *q;

	if (segment(rest, n, p->product, OTAD_PRODUCT_MAX) < 0 ||
	    !otad_valid_id(p->product))
		return api_refuse(req, 400, "invalid product: 1 to 64 of A-Z "
		    "a-z 0-9 . _ : -");
	if (slash != NULL && slash[1] != '\0' && segment(slash + 1,
	    strlen(slash + 1), p->idbuf, OTAD_ID_MAX) < 0)
		return api_refuse(req, 400, "invalid device id: 1 to 64 of "
		    "A-Z a-z 0-9 . _ : -");
	if (slash != NULL && slash[1] != '\0')
		p->id = p->idbuf;
	else if ((q = http_arg(req, "device")) != NULL ||
	    (q = http_arg(req, "id")) != NULL)
		p->id = snprintf(p->idbuf, sizeof(p->idbuf), "%s", q) <
		    (int)sizeof(p->idbuf) ? p->idbuf : "";
	if (p->id != NULL && !otad_valid_id(p->id))
		return api_refuse(req, 400, "invalid device id: 1 to 64 of "
		    "A-Z a-z 0-9 . _ : -");
	p->chip = http_arg(req, "chip");
	if (p->chip != NULL && espimg_chip_id(p->chip) < 0)
		return api_refuse(req, 400, "unknown chip");
	return 0;
}

/* The offer of version for the device's product and chip; NULL none. */
static const struct offer *
offer_of_version(const struct snapshot *snap, const struct pull *p,
    const char *chip, const char *version)
{
	size_t i;

	for (i = 0; i < snap->n; i++) {
		const struct offer *o = &snap->offers[i];

		if (o->kind == KIND_APP && strcmp(o->version, version) == 0 &&
		    (o->product[0] == '\0' || strcmp(o->product,
		    p->product) == 0) && (chip[0] == '\0' ||
		    strcmp(o->chip, chip) == 0))
			return o;
	}
	return NULL;
}

/*
 * Decide for the request: p->offer (what a check would offer it now) and
 * p->listed (what its manifest names). 0, or -1 when answered.
 */
static int
pull_decide(struct http_request *req, struct api *api, struct pull *p,
    struct api_thread **tp)
{
	struct device_refusal refusal;
	struct device_facts facts;
	struct snapshot *snap;
	struct decision d;
	struct api_thread *t;
	const char *chip;

	if (p->id == NULL && !atomic_load(&api->latest))
		return api_refuse(req, 400, "missing device id: put it in the "
		    "URL (/<product>/<device> or ?device=), or let devices "
		    "without one have the baseline (latest_url = yes)");
	if (p->id == NULL && atomic_load(&api->tokens))
		return api_unauthorized(req, "missing device id and token");
	if ((t = *tp = api_thread_state(api)) == NULL)
		return api_refuse(req, 503, "registry unavailable");
	memset(&p->row, 0, sizeof(p->row));
	p->row.secure_version = -1;
	p->row.battery = -1;
	if (p->id != NULL && api_lookup_device(req, api, t, p->id, &p->row) <
	    0)
		return -1;
	chip = p->chip != NULL ? p->chip : p->row.chip;
	memset(&facts, 0, sizeof(facts));
	facts.id = p->id;
	facts.version = p->row.version;
	facts.product = p->product;
	facts.chip = chip;
	facts.hw_rev = p->row.hw_rev;
	facts.group = p->row.group;
	facts.quarantined_until = p->row.quarantined_until;
	facts.secure_version = p->row.secure_version;
	facts.free_space = -1;
	facts.battery = p->id != NULL ? p->row.battery : -1;
	facts.everyone_only = p->id == NULL;
	if (p->id != NULL && registry_device_refusal(t->reader, p->id,
	    &refusal) == OTAD_OK)
		facts.refused_release = refusal.rolled_back_release;
	p->refused_release = facts.refused_release;
	snap = rollout_snapshot(api->rollout, &t->snap);
	policy_decide(&facts, snap->offers, snap->n, &snap->stones,
	    (int64_t)time(NULL), &d);
	p->offer = d.kind == DECISION_OFFER ? d.offer : NULL;
	/* nothing newer for it: the release it runs, so that it stays */
	p->listed = p->offer != NULL ? p->offer : p->row.version[0] ?
	    offer_of_version(snap, p, chip, p->row.version) : NULL;
	metrics_add(M_PULL_CHECKS, 1);
	if (p->offer != NULL)
		metrics_add(M_PULL_OFFERS, 1);
	return 0;
}

/*
 * The record of a known device's poll: seen, and what its silence since
 * its last image says (an inferred success, see apply_silent). refetch:
 * the release it fetched again after it was delivered. offer: the release
 * whose image it is fetching now (its attempt opens). NULL for a poll
 * without identity (or out of memory).
 */
static struct record *
pull_checkin(struct http_request *req, struct api *api, const struct pull *p,
    int64_t refetch, const struct offer *offer)
{
	struct record *rec;

	if (p->id == NULL ||
	    (rec = registry_record_new(RECORD_CHECKIN)) == NULL)
		return NULL;
	rec->at = (int64_t)time(NULL);
	snprintf(rec->device, sizeof(rec->device), "%s", p->id);
	snprintf(rec->product, sizeof(rec->product), "%s", p->product);
	if (p->chip != NULL)
		snprintf(rec->chip, sizeof(rec->chip), "%s", p->chip);
	http_peer(req, rec->address, sizeof(rec->address));
	rec->secure_version = rec->free_space = -1;
	rec->silent = 1;
	rec->settle = (int64_t)atomic_load(&api->infer_after);
	rec->refetch_release = refetch;
	if (offer != NULL) {
		rec->offer_release = offer->release_id;
		rec->offer_rollout = offer->rollout_id;
		rec->offer_stage = offer->stage;
		snprintf(rec->offer_version, sizeof(rec->offer_version), "%s",
		    offer->version);
	}
	return rec;
}

/* The same, queued. */
static void
pull_record(struct http_request *req, struct api *api, const struct pull *p,
    int64_t refetch, const struct offer *offer)
{
	struct record *rec = pull_checkin(req, api, p, refetch, offer);

	if (rec != NULL)
		api_record(api, rec);
}

/*
 * base + path + sha256, and for a device ?device=ID&product=P: where it
 * fetches, and whose update that is.
 */
static void
link_to(struct api *api, const char *path, const char *sha256,
    const struct pull *p, char *out, size_t len)
{
	if (p == NULL || p->id == NULL)
		snprintf(out, len, "%s%s%s", api->pull_base, path, sha256);
	else
		snprintf(out, len, "%s%s%s?device=%s&product=%s",
		    api->pull_base, path, sha256, p->id, p->product);
}

/* ESPHome's chipFamily for a chip: "esp32s3" is "ESP32-S3". */
static void
chip_family(const char *chip, char *out, size_t len)
{
	size_t i, n = 0;

	for (i = 0; chip[i] != '\0' && n + 2 < len; i++) {
		if (i == 5)
			out[n++] = '-';
		out[n++] = (char)(chip[i] >= 'a' && chip[i] <= 'z' ?
		    chip[i] - 32 : chip[i]);
	}
	out[n] = '\0';
}

/* The manifest of a dialect for what p lists; NULL out of memory. */
static json_t *
manifest(struct api *api, enum dialect dialect, const struct pull *p)
{
	const struct offer *o = p->listed;
	char url[768], md5url[768], family[24], asset[160];
	json_t *entries;

	if (o != NULL) {
		link_to(api, PULL_IMAGE, o->sha256, p, url, sizeof(url));
		link_to(api, PULL_MD5, o->sha256, NULL, md5url,
		    sizeof(md5url));
	}
	switch (dialect) {
	case ESP32FOTA:
		/* every entry has "type": the library strcmp()s it */
		entries = json_array();
		if (o != NULL && entries != NULL)
			json_array_append_new(entries, json_pack("{s:s,s:s,s:s}",
			    "type", p->product, "version", o->version, "url",
			    url));
		return entries;
	case OTAPULL:
		/* no "Version" would mean "always update": never left out */
		entries = json_array();
		if (o != NULL && entries != NULL)
			json_array_append_new(entries, json_pack("{s:s,s:s}",
			    "Version", o->version, "URL", url));
		return json_pack("{s:o}", "Configurations", entries);
	case ESPHOME:
		if (o == NULL)
			return json_pack("{s:s,s:s,s:[]}", "name", p->product,
			    "version", "", "builds");
		chip_family(o->chip[0] ? o->chip : "esp32", family,
		    sizeof(family));
		return json_pack("{s:s,s:s,s:[{s:s,s:{s:s,s:s,s:s,s:s}}]}",
		    "name", p->product, "version", o->version, "builds",
		    "chipFamily", family, "ota", "path", url, "md5", o->md5,
		    "md5_url", md5url, "summary", o->version);
	case GHOTA:
		if (o == NULL)
			return NULL;
		snprintf(asset, sizeof(asset), "%s-%s.bin", p->product,
		    o->version);
		return json_pack("{s:s,s:s,s:[{s:s,s:s,s:s,s:I,s:s}]}",
		    "tag_name", o->version, "name", o->version, "assets",
		    "name", asset, "url", url, "browser_download_url", url,
		    "size", (json_int_t)o->size, "content_type",
		    "application/octet-stream");
	}
	return NULL;
}

/* Answer a manifest: JSON with a Content-Length, never chunked. */
static int
answer(struct http_request *req, json_t *j)
{
	char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	if (body == NULL)
		return http_error(req, 503, "out of memory");
	http_send(req, 200, "application/json", body, strlen(body));
	free(body);
	return 0;
}

static int
pull_manifest(struct http_request *req, struct api *api, enum dialect dialect,
    const char *rest)
{
	struct api_thread *t;
	struct pull p;

	memset(&p, 0, sizeof(p));
	if (api_gate_address(req, api) < 0 || read_target(req, rest, &p) < 0 ||
	    pull_decide(req, api, &p, &t) < 0)
		return 0;
	pull_record(req, api, &p, 0, NULL);
	/* esp_ghota: nothing to list is GitHub's "no release" */
	if (dialect == GHOTA && p.listed == NULL)
		return http_error(req, 404, "Not Found");
	return answer(req, manifest(api, dialect, &p));
}

int
pull_dialect(struct http_request *req, void *arg)
{
	const char *path = http_path(req);
	size_t i;

	if (!atomic_load(&((struct api *)arg)->pull_ready))
		return http_error(req, 503, "starting");
	for (i = 0; i < sizeof(dialect_paths) / sizeof(dialect_paths[0]); i++)
		if (strncmp(path, dialect_paths[i], strlen(dialect_paths[i])) ==
		    0)
			return pull_manifest(req, arg, (enum dialect)i, path +
			    strlen(dialect_paths[i]));
	return http_error(req, 404, "no such path");
}

/*
 * esp_ghota asks https://<hostname>/repos/<org>/<repo>/releases/latest:
 * the org is the product, the repo the device id (empty: none).
 */
int
pull_ghota(struct http_request *req, void *arg)
{
	const char *rest = http_path(req) + strlen(PULL_GHOTA);
	const char *slash = strchr(rest, '/');
	char target[OTAD_PRODUCT_MAX + OTAD_ID_MAX + 2];
	size_t n;

	if (!atomic_load(&((struct api *)arg)->pull_ready))
		return http_error(req, 503, "starting");
	if (slash == NULL || (n = strlen(slash)) < strlen("/releases/latest") ||
	    strcmp(slash + n - strlen("/releases/latest"), "/releases/latest")
	    != 0 || (size_t)(slash - rest) + n - strlen("/releases/latest") >=
	    sizeof(target))
		return http_error(req, 404, "Not Found");
	snprintf(target, sizeof(target), "%.*s", (int)((size_t)(slash - rest) +
	    n - strlen("/releases/latest")), rest);
	return pull_manifest(req, arg, GHOTA, target);
}

/* Is sha the image of the release p's device rolled back from? */
static int
refused_image(const struct snapshot *snap, const struct pull *p,
    const char *sha)
{
	size_t i;

	if (p->refused_release == 0 || snap == NULL)
		return 0;
	for (i = 0; i < snap->n; i++)
		if (snap->offers[i].release_id == p->refused_release &&
		    strcmp(snap->offers[i].sha256, sha) == 0)
			return 1;
	return 0;
}

/*
 * The image a manifest named. For the device it was listed to, fetching
 * it is taking the update: its attempt opens; fetching it again after it
 * was delivered is an inferred rollback, and it is not offered again.
 */
int
pull_image(struct http_request *req, void *arg)
{
	struct api *api = arg;
	const char *rest = http_path(req) + strlen(PULL_IMAGE);
	struct device_refusal r;
	struct api_thread *t;
	char sha[65], msg[256];
	const char *product, *note;
	struct pull p;
	int64_t now = (int64_t)time(NULL);
	struct record *rec;
	enum otad_err err;

	switch (api_durable_outcome(req, &err, &note)) {
	case DURABLE_WRITTEN:
		return http_error(req, 409, note);
	case DURABLE_NOT_WRITTEN:
		return http_error_header(req, 503, "registry busy; try again",
		    "Retry-After", "5");
	case DURABLE_NOT_WAITING:
		break;
	}
	memset(&p, 0, sizeof(p));
	if (api_gate_address(req, api) < 0)
		return 0;
	if (api_parse_sha256(rest, sha) < 0)
		return http_error(req, 404, "no such artifact");
	if ((p.id = api_device_id(req, p.idbuf)) != NULL &&
	    !otad_valid_id(p.id))
		return http_error(req, 400, "invalid device id: 1 to 64 of "
		    "A-Z a-z 0-9 . _ : -");
	product = http_arg(req, "product");
	/* a look (HEAD), or a link that names nobody: served, no attempt */
	if (p.id == NULL || product == NULL || http_method(req) != HTTP_GET)
		return download_released(req, api, sha, p.id, NULL,
		    SERVE_RANGE);
	if (!otad_valid_id(product) || snprintf(p.product, sizeof(p.product),
	    "%s", product) >= (int)sizeof(p.product))
		return http_error(req, 400, "invalid product");
	if (pull_decide(req, api, &p, &t) < 0)
		return 0;
	if (p.offer == NULL || strcmp(p.offer->sha256, sha) != 0) {
		/* the release it rolled back from, by an old link: not again */
		if (refused_image(t->snap, &p, sha))
			return http_error(req, 409, "this device rolled back "
			    "from this image's release: it is not offered to "
			    "it again");
		/* not its update (an old link): served, nothing opened */
		pull_record(req, api, &p, 0, NULL);
		return download_released(req, api, sha, p.id, NULL,
		    SERVE_RANGE);
	}
	if (registry_device_refusal(t->reader, p.id, &r) == OTAD_OK &&
	    r.pending_release == p.offer->release_id &&
	    r.pending_delivered_at >= 0 && now - r.pending_delivered_at >=
	    (int64_t)(atomic_load(&api->infer_after) < REFETCH_GRACE ?
	    atomic_load(&api->infer_after) : REFETCH_GRACE)) {
		metrics_add(M_PULL_INFERRED_ROLLBACKS, 1);
		snprintf(msg, sizeof(msg), "this device fetched %s again after "
		    "it was delivered: the update did not stay, and %s is not "
		    "offered to it again", p.offer->version, p.offer->version);
		/*
		 * answered once on disk: the device's next poll must not
		 * list it again (nor serve it as an old link)
		 */
		if ((rec = pull_checkin(req, api, &p, p.offer->release_id,
		    NULL)) == NULL)
			return http_error(req, 503, "out of memory");
		return api_submit_durable(req, api, rec, msg);
	}
	pull_record(req, api, &p, 0, p.offer);
	return download_released(req, api, sha, p.id, NULL, SERVE_RANGE);
}

/* ESPHome's md5_url: the image's MD5, 32 hex digits and nothing else. */
int
pull_md5(struct http_request *req, void *arg)
{
	struct api *api = arg;
	struct api_thread *t;
	struct offer o;
	char sha[65];
	enum otad_err rc;

	if (api_gate_address(req, api) < 0)
		return 0;
	if (api_parse_sha256(http_path(req) + strlen(PULL_MD5), sha) < 0)
		return http_error(req, 404, "no such artifact");
	if ((t = api_thread_state(api)) == NULL)
		return http_error(req, 503, "registry unavailable");
	if ((rc = registry_released_artifact(t->reader, sha, &o)) != OTAD_OK)
		return http_error(req, rc == OTAD_ERR_NOT_FOUND ? 404 : 503,
		    rc == OTAD_ERR_NOT_FOUND ? "no such artifact" :
		    "registry unavailable");
	http_send(req, 200, "text/plain", o.md5, strlen(o.md5));
	return 0;
}
