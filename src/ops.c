/* ops.c: every operator action once, JSON in and out (see ops.h) */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "auth.h"
#include "catalog.h"
#include "espimg.h"
#include "log.h"
#include "metrics.h"
#include "ops.h"
#include "semver.h"
#include "sign.h"
#include "simulate.h"
#include "stages.h"

#define AUDIT_PAGE 100
#define AUDIT_PAGE_MAX 1000
#define NUDGE_WAIT_MS 5000

enum {
	READERS = ROLE_VIEWER | ROLE_OPERATOR | ROLE_ADMIN,
	STEERS = ROLE_OPERATOR | ROLE_ADMIN,
	PUBLISHES = ROLE_CI | ROLE_OPERATOR | ROLE_ADMIN,
};

/* ---- arguments ---- */

static enum otad_err
bad(char *why, size_t whylen, const char *name, const char *what)
{
	snprintf(why, whylen, "'%s' must be %s", name, what);
	return OTAD_ERR_INVALID;
}

/*
 * A string argument: absent (NULL) or a string of printable characters
 * (a PEM's newlines allowed), at most 4096 bytes. -1 with why otherwise.
 */
static int
arg_str(json_t *args, const char *name, const char **out, char *why,
    size_t whylen)
{
	json_t *v = json_object_get(args, name);
	size_t i;

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_string(v) && json_string_length(v) <= 4096 &&
	    strlen(json_string_value(v)) == json_string_length(v)) {
		*out = json_string_value(v);
		for (i = 0; (*out)[i] != '\0'; i++)
			if (((unsigned char)(*out)[i] < 0x20 && (*out)[i] !=
			    '\n') || (*out)[i] == 0x7f)
				break;
		if ((*out)[i] == '\0')
			return 0;
	}
	*out = NULL;
	bad(why, whylen, name, "a string of printable characters");
	return -1;
}

/* A boolean: true, false, or (from a query) "true", "1", "false", "0". */
static int
arg_bool(json_t *args, const char *name, int *out, char *why, size_t whylen)
{
	json_t *v = json_object_get(args, name);
	const char *s;

	*out = 0;
	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		return 0;
	}
	if ((s = json_string_value(v)) != NULL && (strcmp(s, "true") == 0 ||
	    strcmp(s, "1") == 0 || strcmp(s, "false") == 0 ||
	    strcmp(s, "0") == 0)) {
		*out = s[0] == 't' || s[0] == '1';
		return 0;
	}
	bad(why, whylen, name, "true or false");
	return -1;
}

/* An integer in [min, max]: a number, or digits (from a path or query). */
static int
arg_int(json_t *args, const char *name, long long min, long long max,
    long long *out, char *why, size_t whylen)
{
	json_t *v = json_object_get(args, name);
	const char *s;
	char *end, what[96];

	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
	} else if ((s = json_string_value(v)) != NULL && s[0] != '\0') {
		errno = 0;
		*out = strtoll(s, &end, 10);
		if (*end != '\0' || errno != 0)
			*out = min - 1;
	} else {
		*out = min - 1;
	}
	if (*out >= min && *out <= max)
		return 0;
	snprintf(what, sizeof(what), "a number from %lld to %lld", min, max);
	bad(why, whylen, name, what);
	return -1;
}

/* A break-glass reason is an admin's alone, and says why. */
static int
arg_break_glass(struct ops_ctx *ctx, json_t *args, const char **out,
    char *why, size_t whylen)
{
	if (arg_str(args, "break_glass", out, why, whylen) < 0)
		return -1;
	if (*out != NULL && (*out)[0] == '\0') {
		snprintf(why, whylen, "a break-glass needs a reason");
		return -1;
	}
	if (*out != NULL && !(ctx->role & ROLE_ADMIN)) {
		snprintf(why, whylen, "only an admin may break glass");
		return -2;
	}
	return 0;
}

/* After a change to what is offered: return once otad serves it. */
static void
served(struct ops_ctx *ctx)
{
	if (registry_wait_served(ctx->reg, 3000) == OTAD_ERR_BUSY)
		log_warnx("otad has not picked up the change within 3 s; it "
		    "will");
}

/* ---- reading ---- */

static enum otad_err
op_status(struct ops_ctx *ctx, json_t *args, json_t **result, char *why,
    size_t whylen)
{
	(void)args;
	(void)why;
	(void)whylen;
	return registry_status(ctx->reg, (int64_t)time(NULL), result);
}

static enum otad_err
op_audit(struct ops_ctx *ctx, json_t *args, json_t **result, char *why,
    size_t whylen)
{
	long long before = 0, limit = AUDIT_PAGE;
	const char *actor;

	if (arg_int(args, "before", 0, INT64_MAX, &before, why, whylen) < 0 ||
	    arg_int(args, "limit", 1, AUDIT_PAGE_MAX, &limit, why, whylen) <
	    0 || arg_str(args, "actor", &actor, why, whylen) < 0)
		return OTAD_ERR_INVALID;
	return registry_audit(ctx->reg, before, (int)limit, actor, result);
}

static enum otad_err
op_artifact_list(struct ops_ctx *ctx, json_t *args, json_t **result,
    char *why, size_t whylen)
{
	(void)args;
	(void)why;
	(void)whylen;
	return registry_artifact_list(ctx->reg, result);
}

static enum otad_err
op_artifact_show(struct ops_ctx *ctx, json_t *args, json_t **result,
    char *why, size_t whylen)
{
	const char *sha = json_string_value(json_object_get(args, "sha"));
	enum otad_err rc;
	json_t *sigs;

	if ((rc = registry_artifact_get(ctx->reg, sha ? sha : "", result, why,
	    whylen)) != OTAD_OK)
		return rc;
	sha = json_string_value(json_object_get(*result, "sha256"));
	if ((rc = registry_artifact_signatures(ctx->reg, sha, &sigs)) !=
	    OTAD_OK)
		return rc;
	json_object_set_new(*result, "signatures", sigs);
	json_object_set_new(*result, "secure_boot_blocks",
	    strcmp(json_string_value(json_object_get(*result, "kind")),
	    "app") == 0 ? catalog_secure_boot_blocks(ctx->reg, ctx->store,
	    sha) : json_array());
	return OTAD_OK;
}

static enum otad_err
op_key_list(struct ops_ctx *ctx, json_t *args, json_t **result, char *why,
    size_t whylen)
{
	(void)args;
	(void)why;
	(void)whylen;
	return catalog_key_list(ctx->reg, result);
}

static enum otad_err
op_release_list(struct ops_ctx *ctx, json_t *args, json_t **result,
    char *why, size_t whylen)
{
	(void)args;
	(void)why;
	(void)whylen;
	return registry_release_list(ctx->reg, result);
}

static enum otad_err
op_rollout_list(struct ops_ctx *ctx, json_t *args, json_t **result,
    char *why, size_t whylen)
{
	long long id = 0;

	if (arg_int(args, "id", 1, INT64_MAX, &id, why, whylen) < 0)
		return OTAD_ERR_INVALID;
	return registry_rollout_status(ctx->reg, id, (int64_t)time(NULL),
	    result, why, whylen);
}

static enum otad_err
op_device_list(struct ops_ctx *ctx, json_t *args, json_t **result,
    char *why, size_t whylen)
{
	struct device_filter f;
	long long limit = 0;
	int offline;

	memset(&f, 0, sizeof(f));
	if (arg_bool(args, "offline", &offline, why, whylen) < 0 ||
	    arg_str(args, "prefix", &f.id_prefix, why, whylen) < 0 ||
	    arg_str(args, "group", &f.group, why, whylen) < 0 ||
	    arg_str(args, "version", &f.version, why, whylen) < 0 ||
	    arg_int(args, "limit", 1, 100000, &limit, why, whylen) < 0)
		return OTAD_ERR_INVALID;
	f.offline_after = offline ? ctx->offline_after : 0;
	f.limit = (int)limit;
	return registry_device_list(ctx->reg, (int64_t)time(NULL), &f,
	    result);
}

static enum otad_err
op_fleet(struct ops_ctx *ctx, json_t *args, json_t **result, char *why,
    size_t whylen)
{
	(void)args;
	(void)why;
	(void)whylen;
	return registry_fleet(ctx->reg, (int64_t)time(NULL),
	    ctx->offline_after, result);
}

/* Who the caller is, and so what the console offers them. */
static enum otad_err
op_whoami(struct ops_ctx *ctx, json_t *args, json_t **result, char *why,
    size_t whylen)
{
	static const char *const names[] = {"viewer", "operator", "admin",
	    "ci"};
	const char *role = "admin";
	size_t i;

	(void)args;
	(void)why;
	(void)whylen;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (ctx->role == (1u << i))
			role = names[i];
	*result = json_pack("{s:s,s:s,s:i}", "operator", ctx->caller ?
	    ctx->caller : "", "role", role, "approvals",
	    (int)ctx->approvals);
	return OTAD_OK;
}

static enum otad_err
op_device_show(struct ops_ctx *ctx, json_t *args, json_t **result,
    char *why, size_t whylen)
{
	const char *id = json_string_value(json_object_get(args, "id"));

	return registry_device_show(ctx->reg, id ? id : "", result, why,
	    whylen);
}

static enum otad_err
op_operator_list(struct ops_ctx *ctx, json_t *args, json_t **result,
    char *why, size_t whylen)
{
	(void)args;
	(void)why;
	(void)whylen;
	return registry_operator_list(ctx->reg, result);
}

/* ---- artifacts and keys ---- */

/* The image in ctx->upload_fd, with version, product, kind, key and a
 * base64 signature. */
static enum otad_err
op_artifact_add(struct ops_ctx *ctx, json_t *args, json_t **result,
    char *why, size_t whylen)
{
	struct catalog_artifact a;
	const char *kind, *sig64;
	uint8_t sig[SIGN_MAX_SIG];
	enum otad_err rc;
	char sha[65];
	size_t n64;
	int k, n;

	memset(&a, 0, sizeof(a));
	if (arg_str(args, "version", &a.version, why, whylen) < 0 ||
	    arg_str(args, "product", &a.product, why, whylen) < 0 ||
	    arg_str(args, "kind", &kind, why, whylen) < 0 ||
	    arg_str(args, "key", &a.key, why, whylen) < 0 ||
	    arg_str(args, "signature", &sig64, why, whylen) < 0)
		return OTAD_ERR_INVALID;
	if ((k = kind ? fsimg_kind_parse(kind) : KIND_APP) < 0)
		return bad(why, whylen, "kind", "app, spiffs, littlefs or "
		    "fatfs");
	a.kind = (enum artifact_kind)k;
	if (a.kind != KIND_APP && a.version == NULL) {
		snprintf(why, whylen, "a %s image says nothing of its version: "
		    "give --version", kind);
		return OTAD_ERR_INVALID;
	}
	if (sig64 != NULL) {
		n64 = strlen(sig64);
		if (n64 == 0 || n64 > 4 * SIGN_MAX_SIG / 3 || n64 % 4 != 0 ||
		    (n = EVP_DecodeBlock(sig, (const unsigned char *)sig64,
		    (int)n64)) <= 0)
			return bad(why, whylen, "signature", "the signature in "
			    "base64");
		/* base64 pads to whole groups: drop the padding's zeros */
		a.siglen = (size_t)n - (sig64[n64 - 1] == '=') -
		    (sig64[n64 - 2] == '=');
		a.sig = sig;
	}
	if ((a.key == NULL) != (a.sig == NULL)) {
		snprintf(why, whylen, "a signature and its key go together");
		return OTAD_ERR_INVALID;
	}
	if (ctx->upload_fd < 0) {
		snprintf(why, whylen, "the body is the image, and there is none");
		return OTAD_ERR_INVALID;
	}
	if ((rc = catalog_artifact_add(ctx->reg, ctx->store, ctx->upload_fd,
	    &a, sha, why, whylen)) != OTAD_OK)
		return rc;
	return registry_artifact_get(ctx->reg, sha, result, why, whylen);
}

static enum otad_err
op_artifact_sign(struct ops_ctx *ctx, json_t *args, json_t **result,
    char *why, size_t whylen)
{
	const char *sha = json_string_value(json_object_get(args, "sha")), *key;
	enum otad_err rc;
	char digest[65];

	if (arg_str(args, "key", &key, why, whylen) < 0)
		return OTAD_ERR_INVALID;
	if (key == NULL) {
		snprintf(why, whylen, "sign with a key ('key')");
		return OTAD_ERR_INVALID;
	}
	if ((rc = catalog_artifact_sign(ctx->reg, ctx->store, ctx->state_dir,
	    sha ? sha : "", key, digest, why, whylen)) != OTAD_OK)
		return rc;
	served(ctx);
	*result = json_pack("{s:s,s:s}", "artifact", digest, "key", key);
	return OTAD_OK;
}

static enum otad_err
op_key_add(struct ops_ctx *ctx, json_t *args, json_t **result, char *why,
    size_t whylen)
{
	char digest[65], warning[256];
	const char *name, *pem;
	enum otad_err rc;
	int sb;

	if (arg_str(args, "name", &name, why, whylen) < 0 ||
	    arg_str(args, "public_key", &pem, why, whylen) < 0 ||
	    arg_bool(args, "secure_boot", &sb, why, whylen) < 0)
		return OTAD_ERR_INVALID;
	if (name == NULL || pem == NULL) {
		snprintf(why, whylen, "a key needs its name and its public key "
		    "(PEM)");
		return OTAD_ERR_INVALID;
	}
	if ((rc = catalog_key_add(ctx->reg, name, pem, strlen(pem), sb, digest,
	    warning, sizeof(warning), why, whylen)) != OTAD_OK)
		return rc;
	served(ctx);
	if ((rc = registry_key_get(ctx->reg, name, result, why, whylen)) !=
	    OTAD_OK)
		return rc;
	json_object_del(*result, "public_key");
	if (digest[0] != '\0')
		json_object_set_new(*result, "efuse_digest",
		    json_string(digest));
	if (warning[0] != '\0')
		json_object_set_new(*result, "warning", json_string(warning));
	return OTAD_OK;
}

static enum otad_err
op_key_generate(struct ops_ctx *ctx, json_t *args, json_t **result,
    char *why, size_t whylen)
{
	const char *name = json_string_value(json_object_get(args, "name"));
	const char *algo;
	char held[4096];
	enum otad_err rc;

	if (arg_str(args, "algo", &algo, why, whylen) < 0)
		return OTAD_ERR_INVALID;
	if ((rc = catalog_key_generate(ctx->reg, ctx->state_dir, name ? name :
	    "", algo ? algo : "ecdsa-p256", held, sizeof(held), why,
	    whylen)) != OTAD_OK)
		return rc;
	if ((rc = registry_key_get(ctx->reg, name, result, why, whylen)) !=
	    OTAD_OK)
		return rc;
	json_object_del(*result, "public_key");
	json_object_set_new(*result, "private_key_file", json_string(held));
	return OTAD_OK;
}

static enum otad_err
op_key_revoke(struct ops_ctx *ctx, json_t *args, json_t **result,
    char *why, size_t whylen)
{
	const char *name = json_string_value(json_object_get(args, "name"));
	enum otad_err rc;

	if ((rc = registry_key_revoke(ctx->reg, name ? name : "", why,
	    whylen)) != OTAD_OK)
		return rc;
	served(ctx);
	*result = json_pack("{s:s,s:s}", "name", name, "state", "revoked");
	return OTAD_OK;
}

/* ---- releases and rollouts ---- */

/*
 * ESP32-OTA-Pull compares versions as text ("0.14.10" < "0.14.9"): when
 * the new release and another of its product are ordered one way by
 * version and the other way as text, say so in the answer's "warning".
 */
static void
misordered_as_text(struct ops_ctx *ctx, const struct catalog_release *r,
    json_t *result)
{
	const char *v, *product;
	char warning[320];
	json_t *rows, *row;
	size_t i;
	int a, b;

	if (result == NULL || registry_release_list(ctx->reg, &rows) != OTAD_OK)
		return;
	json_array_foreach(rows, i, row) {
		v = json_string_value(json_object_get(row, "version"));
		product = json_string_value(json_object_get(row, "product"));
		if (v == NULL || strcmp(product ? product : "", r->product ?
		    r->product : "") != 0)
			continue;
		a = semver_compare(r->version, v);
		b = strcmp(r->version, v);
		if (a == 0 || (a > 0) == (b > 0))
			continue;
		snprintf(warning, sizeof(warning), "devices on ESP32-OTA-Pull "
		    "compare versions as text: they take %s as %s than %s",
		    r->version, b > 0 ? "newer" : "older", v);
		json_object_set_new(result, "warning", json_string(warning));
		break;
	}
	json_decref(rows);
}

static enum otad_err
op_release_create(struct ops_ctx *ctx, json_t *args, json_t **result,
    char *why, size_t whylen)
{
	struct catalog_release r;
	enum otad_err rc;
	char sha[65];
	int64_t id;

	memset(&r, 0, sizeof(r));
	if (arg_str(args, "version", &r.version, why, whylen) < 0 ||
	    arg_str(args, "artifact", &r.artifact, why, whylen) < 0 ||
	    arg_str(args, "product", &r.product, why, whylen) < 0 ||
	    arg_str(args, "hw_rev", &r.hw_rev, why, whylen) < 0 ||
	    arg_str(args, "min_from", &r.min_from, why, whylen) < 0 ||
	    arg_bool(args, "forced", &r.forced, why, whylen) < 0 ||
	    arg_bool(args, "confirm_secure_version",
	    &r.confirm_secure_version, why, whylen) < 0)
		return OTAD_ERR_INVALID;
	if ((rc = catalog_release_create(ctx->reg, &r, ctx->require_signature,
	    &id, sha, why, whylen)) != OTAD_OK)
		return rc;
	*result = json_pack("{s:I,s:s,s:s,s:s?}", "id", (json_int_t)id,
	    "version", r.version, "artifact", sha, "product", r.product);
	misordered_as_text(ctx, &r, *result);
	return OTAD_OK;
}

static enum otad_err
op_release_publish(struct ops_ctx *ctx, json_t *args, json_t **result,
    char *why, size_t whylen)
{
	const char *version = json_string_value(json_object_get(args,
	    "version")), *product, *chip, *glass;
	enum otad_err rc;
	int64_t rollout;
	int awaiting, n;

	if (arg_str(args, "product", &product, why, whylen) < 0 ||
	    arg_str(args, "chip", &chip, why, whylen) < 0)
		return OTAD_ERR_INVALID;
	if ((n = arg_break_glass(ctx, args, &glass, why, whylen)) < 0)
		return n == -2 ? OTAD_ERR_DENIED : OTAD_ERR_INVALID;
	if (version == NULL || !semver_valid(version))
		return bad(why, whylen, "version", "a version");
	registry_set_approvals(ctx->reg, ctx->approvals, glass);
	rc = registry_release_publish(ctx->reg, version, product, chip,
	    &rollout, &awaiting, why, whylen);
	registry_set_approvals(ctx->reg, ctx->approvals, NULL);
	if (rc != OTAD_OK)
		return rc;
	if (!awaiting)
		served(ctx);
	if (glass != NULL && ctx->approvals >= 2)
		metrics_add(M_BREAK_GLASS, 1);
	*result = json_pack("{s:s,s:I,s:b}", "version", version, "rollout",
	    (json_int_t)rollout, "awaiting_approval", awaiting);
	return OTAD_OK;
}

/* A rollout's plan as rollout.create and rollout.simulate take it. */
static int
rollout_plan_args(struct ops_ctx *ctx, json_t *args,
    struct catalog_rollout *r, char *why, size_t whylen)
{
	memset(r, 0, sizeof(*r));
	if (arg_str(args, "version", &r->version, why, whylen) < 0 ||
	    arg_str(args, "stages", &r->stages, why, whylen) < 0 ||
	    arg_str(args, "window", &r->window, why, whylen) < 0 ||
	    arg_str(args, "days", &r->days, why, whylen) < 0 ||
	    arg_str(args, "utc_offset", &r->utc_offset, why, whylen) < 0 ||
	    arg_str(args, "min_battery", &r->min_battery, why, whylen) < 0 ||
	    arg_str(args, "timeout", &r->timeout, why, whylen) < 0 ||
	    arg_str(args, "product", &r->product, why, whylen) < 0 ||
	    arg_str(args, "chip", &r->chip, why, whylen) < 0 ||
	    arg_str(args, "promote_window", &r->promote_window, why,
	    whylen) < 0 ||
	    arg_str(args, "on_halt", &r->on_halt, why, whylen) < 0 ||
	    arg_bool(args, "downgrade", &r->downgrade, why, whylen) < 0)
		return -1;
	if (r->on_halt == NULL && ctx->on_halt_revert)
		r->on_halt = "revert";
	if (r->promote_window == NULL && ctx->promote_window != NULL &&
	    ctx->promote_window[0] != '\0')
		r->promote_window = ctx->promote_window;
	return 0;
}

/* A rate argument ("0.08", "8%"), 0 when absent. */
static int
arg_rate(json_t *args, const char *name, double *out, char *why,
    size_t whylen)
{
	const char *s;

	*out = 0;
	if (arg_str(args, name, &s, why, whylen) < 0)
		return -1;
	if (s != NULL && (*out = stages_rate(s)) < 0) {
		bad(why, whylen, name, "a rate from 0 to 1 (0.08 or 8%)");
		return -1;
	}
	return 0;
}

/* A duration argument ("1h", "30d"), dflt when absent, within 1..max. */
static int
arg_duration(json_t *args, const char *name, int64_t dflt, int64_t max,
    int64_t *out, char *why, size_t whylen)
{
	const char *s;

	*out = dflt;
	if (arg_str(args, name, &s, why, whylen) < 0)
		return -1;
	if (s != NULL && ((*out = stages_duration(s)) < 1 || *out > max)) {
		bad(why, whylen, name, "a duration like 1h or 30d, within a "
		    "year");
		return -1;
	}
	return 0;
}

static enum otad_err
op_rollout_simulate(struct ops_ctx *ctx, json_t *args, json_t **result,
    char *why, size_t whylen)
{
	struct catalog_rollout plan;
	struct rehearsal r;
	long long seed = 1;

	memset(&r, 0, sizeof(r));
	if (rollout_plan_args(ctx, args, &plan, why, whylen) < 0 ||
	    arg_rate(args, "failure_rate", &r.failure_rate, why, whylen) < 0 ||
	    arg_rate(args, "crash_rate", &r.crash_rate, why, whylen) < 0 ||
	    arg_duration(args, "poll_interval", 3600, 86400 * 30, &r.poll_s,
	    why, whylen) < 0 || (r.poll_s < 60 && bad(why, whylen,
	    "poll_interval", "a minute or more") != OTAD_OK) ||
	    arg_duration(args, "horizon", 30 * 86400, 365 * 86400,
	    &r.horizon_s, why, whylen) < 0 ||
	    arg_int(args, "seed", 0, INT64_MAX, &seed, why, whylen) < 0)
		return OTAD_ERR_INVALID;
	r.plan = &plan;
	r.seed = (uint64_t)seed;
	r.offline_after = ctx->offline_after > 0 ? ctx->offline_after : 600;
	return simulate_rollout(ctx->reg, &r, result, why, whylen);
}

static enum otad_err
op_rollout_create(struct ops_ctx *ctx, json_t *args, json_t **result,
    char *why, size_t whylen)
{
	struct catalog_rollout r;
	enum otad_err rc;
	size_t nstages;
	int64_t id;

	if (rollout_plan_args(ctx, args, &r, why, whylen) < 0)
		return OTAD_ERR_INVALID;
	if ((rc = catalog_rollout_create(ctx->reg, &r, &id, &nstages, why,
	    whylen)) != OTAD_OK)
		return rc;
	*result = json_pack("{s:I,s:s,s:s,s:I}", "id", (json_int_t)id,
	    "version", r.version, "state", "draft", "stages",
	    (json_int_t)nstages);
	return OTAD_OK;
}

static enum otad_err
rollout_act(struct ops_ctx *ctx, json_t *args, json_t **result, char *why,
    size_t whylen, enum rollout_action action, const char *verb)
{
	const char *glass, *reverted;
	long long id = 0;
	enum otad_err rc;
	int force, n;

	if (arg_int(args, "id", 1, INT64_MAX, &id, why, whylen) < 0 ||
	    arg_bool(args, "force", &force, why, whylen) < 0 ||
	    arg_str(args, "reverted", &reverted, why, whylen) < 0)
		return OTAD_ERR_INVALID;
	if (reverted != NULL && !force)
		return bad(why, whylen, "reverted", "given with force (a "
		    "resume past a halt)");
	if (reverted != NULL && strcmp(reverted, "keep") == 0)
		force |= RESUME_KEEP_REVERTED;
	else if (reverted != NULL && strcmp(reverted, "offer") == 0)
		force |= RESUME_OFFER_REVERTED;
	else if (reverted != NULL)
		return bad(why, whylen, "reverted", "keep or offer");
	if ((n = arg_break_glass(ctx, args, &glass, why, whylen)) < 0)
		return n == -2 ? OTAD_ERR_DENIED : OTAD_ERR_INVALID;
	registry_set_approvals(ctx->reg, ctx->approvals, glass);
	rc = registry_rollout_action(ctx->reg, id, action, force, why,
	    whylen);
	registry_set_approvals(ctx->reg, ctx->approvals, NULL);
	if (rc != OTAD_OK)
		return rc;
	served(ctx);
	if (glass != NULL && action == ROLLOUT_START && ctx->approvals >= 2)
		metrics_add(M_BREAK_GLASS, 1);
	*result = json_pack("{s:I,s:s}", "id", (json_int_t)id, "done", verb);
	return OTAD_OK;
}

#define ROLLOUT_OP(fn, action, verb)                                           \
	static enum otad_err                                                   \
	fn(struct ops_ctx *ctx, json_t *args, json_t **result, char *why,      \
	    size_t whylen)                                                     \
	{                                                                      \
		return rollout_act(ctx, args, result, why, whylen, action,     \
		    verb);                                                     \
	}
ROLLOUT_OP(op_rollout_start, ROLLOUT_START, "started")
ROLLOUT_OP(op_rollout_pause, ROLLOUT_PAUSE, "paused")
ROLLOUT_OP(op_rollout_resume, ROLLOUT_RESUME, "resumed")
ROLLOUT_OP(op_rollout_abort, ROLLOUT_ABORT, "aborted")
ROLLOUT_OP(op_rollout_approve, ROLLOUT_APPROVE, "approved and started")

/* ---- devices ---- */

static enum otad_err
op_device_add(struct ops_ctx *ctx, json_t *args, json_t **result, char *why,
    size_t whylen)
{
	char token[AUTH_TOKEN_LEN + 1], hash[65];
	const char *id, *group;
	enum otad_err rc;

	if (arg_str(args, "id", &id, why, whylen) < 0 ||
	    arg_str(args, "group", &group, why, whylen) < 0)
		return OTAD_ERR_INVALID;
	if (id == NULL || !otad_valid_id(id))
		return bad(why, whylen, "id", "1 to 64 of A-Z a-z 0-9 . _ : -");
	if (group != NULL && (group[0] == '\0' || strlen(group) >
	    OTAD_PRODUCT_MAX || strpbrk(group, " \n") != NULL))
		return bad(why, whylen, "group", "1 to 64 characters, no "
		    "spaces");
	if (auth_token_new(token) != OTAD_OK ||
	    auth_token_hash(token, hash) != OTAD_OK) {
		snprintf(why, whylen, "cannot make a token");
		return OTAD_ERR_IO;
	}
	if ((rc = registry_device_add(ctx->reg, id, group, hash, why,
	    whylen)) == OTAD_OK) {
		served(ctx);
		/* shown once: only its hash is kept */
		*result = json_pack("{s:s,s:s}", "device", id, "token", token);
	}
	explicit_bzero(token, sizeof(token));
	return rc;
}

static enum otad_err
op_device_set(struct ops_ctx *ctx, json_t *args, json_t **result, char *why,
    size_t whylen)
{
	const char *id = json_string_value(json_object_get(args, "id"));
	const char *group, *hw_rev, *chip;
	enum otad_err rc;

	if (arg_str(args, "group", &group, why, whylen) < 0 ||
	    arg_str(args, "hw_rev", &hw_rev, why, whylen) < 0 ||
	    arg_str(args, "chip", &chip, why, whylen) < 0)
		return OTAD_ERR_INVALID;
	if (id == NULL || !otad_valid_id(id))
		return bad(why, whylen, "id", "a device id");
	if (group == NULL && hw_rev == NULL && chip == NULL) {
		snprintf(why, whylen, "device set needs --group, --hw-rev or "
		    "--chip");
		return OTAD_ERR_INVALID;
	}
	if (chip != NULL && espimg_chip_id(chip) < 0)
		return bad(why, whylen, "chip", "a chip otad knows (esp32, "
		    "esp32c3, ...)");
	if ((rc = registry_device_set(ctx->reg, id, group, hw_rev, chip, why,
	    whylen)) != OTAD_OK)
		return rc;
	served(ctx);
	*result = json_pack("{s:s,s:s?,s:s?,s:s?}", "device", id, "group",
	    group, "hw_rev", hw_rev, "chip", chip);
	return OTAD_OK;
}

static enum otad_err
device_act(struct ops_ctx *ctx, json_t *args, json_t **result, char *why,
    size_t whylen, const char *verb)
{
	const char *id = json_string_value(json_object_get(args, "id"));
	enum otad_err rc;

	if (id == NULL || !otad_valid_id(id))
		return bad(why, whylen, "id", "a device id");
	if ((rc = registry_device_act(ctx->reg, id, verb, why, whylen)) ==
	    OTAD_OK) {
		served(ctx);
		*result = json_pack("{s:s,s:s}", "device", id, "done", verb);
	}
	return rc;
}

#define DEVICE_OP(fn, verb)                                                    \
	static enum otad_err                                                   \
	fn(struct ops_ctx *ctx, json_t *args, json_t **result, char *why,      \
	    size_t whylen)                                                     \
	{                                                                      \
		return device_act(ctx, args, result, why, whylen, verb);       \
	}
DEVICE_OP(op_device_revoke_token, "revoke-token")
DEVICE_OP(op_device_block, "block")
DEVICE_OP(op_device_unblock, "unblock")
DEVICE_OP(op_device_clear, "clear")

/* A trigger now, and whether it went out within a few seconds. */
static enum otad_err
op_device_nudge(struct ops_ctx *ctx, json_t *args, json_t **result,
    char *why, size_t whylen)
{
	const char *id = json_string_value(json_object_get(args, "id"));
	char version[OTAD_VERSION_MAX + 1] = "";
	int waited, sent = 0;
	enum otad_err rc;
	int64_t nudge;

	if (id == NULL || !otad_valid_id(id))
		return bad(why, whylen, "id", "a device id");
	if (!ctx->mqtt_on) {
		snprintf(why, whylen, "MQTT is off: set mqtt_host in the "
		    "configuration to nudge devices");
		return OTAD_ERR_INVALID;
	}
	if ((rc = registry_nudge(ctx->reg, id, &nudge, why, whylen)) !=
	    OTAD_OK)
		return rc;
	for (waited = 0; waited < NUDGE_WAIT_MS && !sent; waited += 100)
		if ((sent = registry_nudge_sent(ctx->reg, nudge, version,
		    sizeof(version))) == 0)
			usleep(100 * 1000);
	*result = json_pack("{s:s,s:I,s:b,s:s?}", "device", id, "nudge",
	    (json_int_t)nudge, "sent", sent, "version", version[0] ? version :
	    NULL);
	return OTAD_OK;
}

/* ---- operators ---- */

static enum otad_err
op_operator_add(struct ops_ctx *ctx, json_t *args, json_t **result,
    char *why, size_t whylen)
{
	char token[AUTH_TOKEN_LEN + 1], hash[65];
	const char *name, *role;
	enum otad_err rc;

	if (arg_str(args, "name", &name, why, whylen) < 0 ||
	    arg_str(args, "role", &role, why, whylen) < 0)
		return OTAD_ERR_INVALID;
	if (name == NULL || !catalog_valid_name(name))
		return bad(why, whylen, "name", "1 to 64 of A-Z a-z 0-9 . _ -");
	if (role == NULL || ops_role(role) == 0)
		return bad(why, whylen, "role", "viewer, operator, admin or ci");
	if (auth_token_new(token) != OTAD_OK ||
	    auth_token_hash(token, hash) != OTAD_OK) {
		snprintf(why, whylen, "cannot make a token");
		return OTAD_ERR_IO;
	}
	if ((rc = registry_operator_add(ctx->reg, name, role, hash, why,
	    whylen)) == OTAD_OK)
		/* shown once: only its hash is kept */
		*result = json_pack("{s:s,s:s,s:s}", "operator", name, "role",
		    role, "token", token);
	explicit_bzero(token, sizeof(token));
	return rc;
}

static enum otad_err
op_operator_revoke(struct ops_ctx *ctx, json_t *args, json_t **result,
    char *why, size_t whylen)
{
	const char *name = json_string_value(json_object_get(args, "name"));
	enum otad_err rc;

	if ((rc = registry_operator_revoke(ctx->reg, name ? name : "", why,
	    whylen)) == OTAD_OK)
		*result = json_pack("{s:s,s:s}", "operator", name, "state",
		    "revoked");
	return rc;
}

/* ---- the table ---- */

static const struct op ops[] = {
	{"status", "GET", "status", READERS, 200, op_status},
	{"whoami", "GET", "whoami", READERS | ROLE_CI, 200, op_whoami},
	{"fleet", "GET", "fleet", READERS, 200, op_fleet},
	{"audit", "GET", "audit", READERS, 200, op_audit},
	{"artifact.list", "GET", "artifacts", READERS, 200, op_artifact_list},
	{"artifact.show", "GET", "artifacts/{sha}", READERS, 200,
	    op_artifact_show},
	{"artifact.add", "POST", "artifacts", PUBLISHES, 201, op_artifact_add},
	{"artifact.sign", "POST", "artifacts/{sha}/sign", ROLE_ADMIN, 200,
	    op_artifact_sign},
	{"key.list", "GET", "keys", READERS, 200, op_key_list},
	{"key.add", "POST", "keys", ROLE_ADMIN, 201, op_key_add},
	{"key.generate", "POST", "keys/{name}/generate", ROLE_ADMIN, 201,
	    op_key_generate},
	{"key.revoke", "POST", "keys/{name}/revoke", ROLE_ADMIN, 200,
	    op_key_revoke},
	{"release.list", "GET", "releases", READERS, 200, op_release_list},
	{"release.create", "POST", "releases", PUBLISHES, 201,
	    op_release_create},
	{"release.publish", "POST", "releases/{version}/publish", STEERS, 200,
	    op_release_publish},
	{"rollout.list", "GET", "rollouts", READERS, 200, op_rollout_list},
	{"rollout.show", "GET", "rollouts/{id}", READERS, 200,
	    op_rollout_list},
	{"rollout.simulate", "POST", "rollouts/simulate", STEERS, 200,
	    op_rollout_simulate},
	{"rollout.create", "POST", "rollouts", STEERS, 201,
	    op_rollout_create},
	{"rollout.start", "POST", "rollouts/{id}/start", STEERS, 200,
	    op_rollout_start},
	{"rollout.pause", "POST", "rollouts/{id}/pause", STEERS, 200,
	    op_rollout_pause},
	{"rollout.resume", "POST", "rollouts/{id}/resume", STEERS, 200,
	    op_rollout_resume},
	{"rollout.abort", "POST", "rollouts/{id}/abort", STEERS, 200,
	    op_rollout_abort},
	{"rollout.approve", "POST", "rollouts/{id}/approve", STEERS, 200,
	    op_rollout_approve},
	{"device.list", "GET", "devices", READERS, 200, op_device_list},
	{"device.show", "GET", "devices/{id}", READERS, 200, op_device_show},
	{"device.add", "POST", "devices", STEERS, 201, op_device_add},
	{"device.set", "POST", "devices/{id}", STEERS, 200, op_device_set},
	{"device.revoke-token", "POST", "devices/{id}/revoke-token", STEERS,
	    200, op_device_revoke_token},
	{"device.block", "POST", "devices/{id}/block", STEERS, 200,
	    op_device_block},
	{"device.unblock", "POST", "devices/{id}/unblock", STEERS, 200,
	    op_device_unblock},
	{"device.clear", "POST", "devices/{id}/clear", STEERS, 200,
	    op_device_clear},
	{"device.nudge", "POST", "devices/{id}/nudge", STEERS, 200,
	    op_device_nudge},
	{"operator.list", "GET", "operators", ROLE_ADMIN, 200,
	    op_operator_list},
	{"operator.add", "POST", "operators", ROLE_ADMIN, 201,
	    op_operator_add},
	{"operator.revoke", "POST", "operators/{name}/revoke", ROLE_ADMIN, 200,
	    op_operator_revoke},
};
#define NOPS (sizeof(ops) / sizeof(ops[0]))

const struct op *
ops_find(const char *name)
{
	size_t i;

	for (i = 0; i < NOPS; i++)
		if (strcmp(ops[i].name, name) == 0)
			return &ops[i];
	return NULL;
}

/* Does path (segments split by '/') match tmpl? Its {args} into args. */
static int
path_matches(const char *tmpl, const char *path, json_t *args)
{
	json_t *got = json_object();
	size_t tl, pl;
	int ok = 0;

	for (;;) {
		tl = strcspn(tmpl, "/");
		pl = strcspn(path, "/");
		if (pl == 0 || pl > 128)
			break;
		if (tmpl[0] == '{') {
			char name[32], value[129];

			snprintf(name, sizeof(name), "%.*s", (int)(tl - 2),
			    tmpl + 1);
			snprintf(value, sizeof(value), "%.*s", (int)pl, path);
			json_object_set_new(got, name, json_string(value));
		} else if (tl != pl || strncmp(tmpl, path, tl) != 0) {
			break;
		}
		tmpl += tl;
		path += pl;
		if (*tmpl == '\0' || *path == '\0') {
			ok = *tmpl == '\0' && *path == '\0';
			break;
		}
		tmpl++;
		path++;
	}
	if (ok)
		json_object_update(args, got);
	json_decref(got);
	return ok;
}

const struct op *
ops_route(const char *method, const char *path, json_t *args)
{
	size_t i;

	for (i = 0; i < NOPS; i++)
		if (strcmp(ops[i].method, method) == 0 &&
		    path_matches(ops[i].path, path, args))
			return &ops[i];
	return NULL;
}

char *
ops_path(const struct op *op, json_t *args)
{
	char out[1024], name[32];
	const char *p = op->path, *v;
	size_t n = 0, len;

	while (*p != '\0' && n < sizeof(out) - 1) {
		if (*p != '{') {
			out[n++] = *p++;
			continue;
		}
		len = strcspn(p, "}");
		snprintf(name, sizeof(name), "%.*s", (int)(len - 1), p + 1);
		v = json_string_value(json_object_get(args, name));
		n += (size_t)snprintf(out + n, sizeof(out) - n, "%s",
		    v ? v : "");
		if (n >= sizeof(out))
			return NULL;
		p += len + (p[len] == '}');
	}
	out[n] = '\0';
	return strdup(out);
}

enum otad_err
ops_run(const struct op *op, struct ops_ctx *ctx, json_t *args,
    json_t **result, char *why, size_t whylen)
{
	enum otad_err rc;

	*result = NULL;
	why[0] = '\0';
	registry_set_approvals(ctx->reg, ctx->approvals, NULL);
	rc = op->fn(ctx, args, result, why, whylen);
	if (rc == OTAD_OK && *result == NULL)
		rc = OTAD_ERR_NOMEM;
	if (rc != OTAD_OK) {
		json_decref(*result);
		*result = NULL;
		if (why[0] == '\0')
			snprintf(why, whylen, "%s", otad_strerror(rc));
	}
	return rc;
}

unsigned
ops_role(const char *name)
{
	if (strcmp(name, "viewer") == 0)
		return ROLE_VIEWER;
	if (strcmp(name, "operator") == 0)
		return ROLE_OPERATOR;
	if (strcmp(name, "admin") == 0)
		return ROLE_ADMIN;
	if (strcmp(name, "ci") == 0)
		return ROLE_CI;
	return 0;
}
