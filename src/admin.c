/* admin.c: the management API (/api/v1/): operators, roles, uploads */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "admin.h"
#include "auth.h"
#include "catalog.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "registry.h"
#include "semver.h"
#include "sign.h"

#define API "/api/v1/"
#define UPLOAD API "artifacts"
#define AUDIT_PAGE 100
#define AUDIT_PAGE_MAX 1000

/* Roles as bits, so that an endpoint names who may call it. */
enum {
	R_VIEWER = 1 << 0,
	R_OPERATOR = 1 << 1,
	R_ADMIN = 1 << 2,
	R_CI = 1 << 3,
	READERS = R_VIEWER | R_OPERATOR | R_ADMIN,
	STEERS = R_OPERATOR | R_ADMIN,
	PUBLISHES = R_CI | R_OPERATOR | R_ADMIN,
};

struct admin {
	char *db_path;
	char *state_dir;
	struct store *store;
	pthread_mutex_t mu;   /* the catalog connection, one user at a time */
	struct registry *reg;
	struct ratelimit *rl_auth;
	atomic_uint auth_failures;
	atomic_uint approvals;
	atomic_uint offline_after;
	atomic_int require_signature;
	atomic_ullong max_artifact;
};

/* Who is calling, once their token checked out. */
struct op {
	char name[65];
	char role[65];
	unsigned bit;
	char addr[OTAD_ADDR_MAX];
};

static unsigned
role_bit(const char *role)
{
	if (strcmp(role, "viewer") == 0)
		return R_VIEWER;
	if (strcmp(role, "operator") == 0)
		return R_OPERATOR;
	if (strcmp(role, "admin") == 0)
		return R_ADMIN;
	if (strcmp(role, "ci") == 0)
		return R_CI;
	return 0;
}

/* Answer a failed operation with its reason: 0. */
static int
failed(struct http_request *req, enum otad_err rc, const char *why)
{
	return http_error(req, http_status_of(rc), why[0] ? why :
	    otad_strerror(rc));
}

/* Answer with JSON (consumed); 201 for a creation. */
static int
reply(struct http_request *req, unsigned status, json_t *j)
{
	char *body;

	if (j == NULL || (body = json_dumps(j, JSON_COMPACT)) == NULL) {
		json_decref(j);
		return http_error(req, 503, "out of memory");
	}
	json_decref(j);
	http_send(req, status, "application/json", body, strlen(body));
	free(body);
	return 0;
}

/*
 * The operator behind the request's token (Authorization: Bearer), or an
 * answer: 401 for none, a malformed or unknown one (counted against the
 * address, logged without the token), 429 past the address's failures.
 */
static int
authenticate(struct http_request *req, struct admin *a, struct op *op)
{
	const char *authz = http_header(req, "Authorization");
	unsigned limit = atomic_load(&a->auth_failures), retry;
	char hash[65], secs[16];
	enum otad_err rc;

	memset(op, 0, sizeof(*op));
	http_peer(req, op->addr, sizeof(op->addr));
	if (ratelimit_spent(a->rl_auth, op->addr, strlen(op->addr), limit,
	    (int64_t)time(NULL), &retry)) {
		snprintf(secs, sizeof(secs), "%u", retry);
		http_error_header(req, 429, "too many failed authentications "
		    "from this address; retry later", "Retry-After", secs);
		return -1;
	}
	if (authz == NULL || strncasecmp(authz, "Bearer ", 7) != 0) {
		http_error_header(req, 401, "an operator token is needed "
		    "(Authorization: Bearer TOKEN)", "WWW-Authenticate",
		    "Bearer realm=\"otad-admin\"");
		return -1;
	}
	if (auth_token_hash(authz + 7, hash) == OTAD_OK) {
		pthread_mutex_lock(&a->mu);
		rc = registry_operator_by_token(a->reg, hash, op->name,
		    op->role);
		pthread_mutex_unlock(&a->mu);
		if (rc == OTAD_OK && (op->bit = role_bit(op->role)) != 0)
			return 0;
		if (rc != OTAD_OK && rc != OTAD_ERR_NOT_FOUND) {
			http_error(req, 503, "registry unavailable");
			return -1;
		}
	}
	ratelimit_hit(a->rl_auth, op->addr, strlen(op->addr), limit,
	    (int64_t)time(NULL), &retry);
	metrics_add(M_AUTH_FAILURES, 1);
	log_warnx("management API: a wrong or revoked operator token from %s",
	    op->addr);
	http_error_header(req, 401, "wrong or revoked operator token",
	    "WWW-Authenticate", "Bearer realm=\"otad-admin\"");
	return -1;
}

/* 0 when op's role is one of roles; else 403, -1. */
static int
allowed(struct http_request *req, const struct op *op, unsigned roles,
    const char *what)
{
	char msg[160];

	if (op->bit & roles)
		return 0;
	snprintf(msg, sizeof(msg), "role %s may not %s", op->role, what);
	http_error(req, 403, msg);
	return -1;
}

/*
 * Take the catalog connection for a change by op: its name, role and
 * address go on every audit row, and its name is the person the
 * two-person rule compares. Released by done().
 */
static struct registry *
acting(struct admin *a, const struct op *op, const char *break_glass)
{
	char actor[256], who[80];

	pthread_mutex_lock(&a->mu);
	snprintf(actor, sizeof(actor), "op:%s (%s) from %s", op->name,
	    op->role, op->addr);
	snprintf(who, sizeof(who), "op:%s", op->name);
	registry_set_actor(a->reg, actor);
	registry_set_who(a->reg, who);
	registry_set_approvals(a->reg, atomic_load(&a->approvals),
	    break_glass);
	return a->reg;
}

static void
done(struct admin *a)
{
	registry_set_approvals(a->reg, atomic_load(&a->approvals), NULL);
	registry_set_actor(a->reg, "otad");
	registry_set_who(a->reg, "");
	pthread_mutex_unlock(&a->mu);
}

/* A reader's view: the connection, no actor needed. */
static struct registry *
reading(struct admin *a)
{
	pthread_mutex_lock(&a->mu);
	return a->reg;
}

/*
 * The request's JSON object body, or an answer (400, -1). An empty body
 * is an empty object.
 */
static int
body_object(struct http_request *req, json_t **out)
{
	json_error_t jerr;
	const char *body;
	char msg[200];
	size_t len;

	body = http_body(req, &len);
	if (len == 0) {
		*out = json_object();
		return 0;
	}
	*out = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (*out == NULL || !json_is_object(*out)) {
		json_decref(*out);
		snprintf(msg, sizeof(msg), "the body must be a JSON object%s%s",
		    *out == NULL ? ": " : "", *out == NULL ? jerr.text : "");
		http_error(req, 400, msg);
		return -1;
	}
	return 0;
}

/*
 * A field of a JSON body: absent (NULL, 0) or of the right type, else
 * 400 and -1. Strings are at most 4096 bytes and without control bytes.
 */
static int
str_field(struct http_request *req, json_t *o, const char *name,
    const char **out)
{
	json_t *v = json_object_get(o, name);
	char msg[120];
	size_t i;

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_string(v) && json_string_length(v) <= 4096 &&
	    strlen(json_string_value(v)) == json_string_length(v)) {
		*out = json_string_value(v);
		for (i = 0; (*out)[i] != '\0'; i++)
			if ((unsigned char)(*out)[i] < 0x20 && (*out)[i] !=
			    '\n')
				break;
		if ((*out)[i] == '\0')
			return 0;
	}
	snprintf(msg, sizeof(msg), "'%s' must be a string of printable "
	    "characters", name);
	http_error(req, 400, msg);
	return -1;
}

static int
bool_field(struct http_request *req, json_t *o, const char *name, int *out)
{
	json_t *v = json_object_get(o, name);
	char msg[80];

	*out = 0;
	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		return 0;
	}
	snprintf(msg, sizeof(msg), "'%s' must be true or false", name);
	http_error(req, 400, msg);
	return -1;
}

/* A break-glass reason is an admin's alone. */
static int
break_glass_of(struct http_request *req, json_t *o, const struct op *op,
    const char **out)
{
	if (str_field(req, o, "break_glass", out) < 0)
		return -1;
	if (*out != NULL && !(op->bit & R_ADMIN)) {
		http_error(req, 403, "only an admin may break glass");
		return -1;
	}
	if (*out != NULL && (*out)[0] == '\0') {
		http_error(req, 400, "'break_glass' needs a reason");
		return -1;
	}
	return 0;
}

/* After a change to what is offered: answer once otad serves it. */
static void
served(struct registry *reg)
{
	if (registry_wait_served(reg, 3000) == OTAD_ERR_BUSY)
		log_warnx("management API: the change is not served within 3 s");
}

/* ---- uploads: streamed to an unnamed file, then added as otactl adds */

struct upload {
	struct admin *a;
	struct op op;
	int fd;           /* O_TMPFILE: gone with the request, whatever */
	uint64_t len;
	int refused;      /* answered already, or status and why below */
	unsigned status;
	char why[160];
};

static void
upload_free(void *p)
{
	struct upload *u = p;

	if (u->fd >= 0)
		close(u->fd);
	free(u);
}

/* The first piece: who, may they, how large; then the file. */
static struct upload *
upload_begin(struct http_request *req, struct admin *a)
{
	const char *cl = http_header(req, "Content-Length");
	uint64_t max = atomic_load(&a->max_artifact);
	struct upload *u;
	char msg[120];

	if ((u = calloc(1, sizeof(*u))) == NULL) {
		http_error(req, 503, "out of memory");
		return NULL;
	}
	u->a = a;
	u->fd = -1;
	http_set_userdata(req, u, upload_free);
	if (authenticate(req, a, &u->op) < 0 ||
	    allowed(req, &u->op, PUBLISHES, "upload artifacts") < 0) {
		u->refused = 1;
		return u;
	}
	if (cl != NULL && strtoull(cl, NULL, 10) > max) {
		snprintf(msg, sizeof(msg), "the artifact is larger than "
		    "max_artifact_bytes (%llu)", (unsigned long long)max);
		http_error(req, 413, msg);
		u->refused = 1;
		return u;
	}
	if ((u->fd = open(a->state_dir, O_TMPFILE | O_RDWR | O_CLOEXEC,
	    0600)) < 0) {
		log_warn("management API: cannot make an upload file in '%s'",
		    a->state_dir);
		http_error(req, 503, "cannot take the upload now");
		u->refused = 1;
	}
	return u;
}

/*
 * The headers (data NULL): who, may they, how large, then the file; each
 * piece after: into the file. A piece refused is answered at the end.
 */
static int
upload_chunk(struct http_request *req, const char *data, size_t len,
    void *arg)
{
	struct upload *u = http_userdata(req);
	ssize_t n;

	if (data == NULL)
		return upload_begin(req, arg) == NULL ? -1 : 0;
	if (u == NULL || u->refused)
		return -1;
	if (u->len + len > atomic_load(&u->a->max_artifact)) {
		u->status = 413;
		snprintf(u->why, sizeof(u->why), "the artifact is larger than "
		    "max_artifact_bytes (%llu)",
		    (unsigned long long)atomic_load(&u->a->max_artifact));
		u->refused = 1;
		return -1;
	}
	for (; len > 0; data += n, len -= (size_t)n) {
		if ((n = write(u->fd, data, len)) < 0) {
			if (errno == EINTR) {
				n = 0;
				continue;
			}
			u->status = 503;
			snprintf(u->why, sizeof(u->why), "cannot store the "
			    "upload (disk full?)");
			u->refused = 1;
			return -1;
		}
		u->len += (uint64_t)n;
	}
	return 0;
}

/* POST /api/v1/artifacts?version=V&product=P&kind=K&key=NAME */
static int
upload_done(struct http_request *req, struct admin *a)
{
	struct upload *u = http_userdata(req);
	const char *kind = http_arg(req, "kind"), *sig64;
	struct catalog_artifact art;
	struct registry *reg;
	uint8_t sig[SIGN_MAX_SIG];
	char why[512], sha[65];
	enum otad_err rc;
	json_t *row;
	int k, n;

	if (u == NULL)
		return http_error(req, 503, "out of memory");
	if (u->refused)
		return u->status ? http_error(req, u->status, u->why) : 0;
	if (u->len == 0)
		return http_error(req, 400, "the body is the image, and it is "
		    "empty");
	memset(&art, 0, sizeof(art));
	art.version = http_arg(req, "version");
	art.product = http_arg(req, "product");
	art.key = http_arg(req, "key");
	if ((k = kind ? fsimg_kind_parse(kind) : KIND_APP) < 0)
		return http_error(req, 400, "'kind' is app, spiffs, littlefs "
		    "or fatfs");
	art.kind = (enum artifact_kind)k;
	if ((sig64 = http_header(req, "X-Signature")) != NULL) {
		n = EVP_DecodeBlock(sig, (const unsigned char *)sig64,
		    (int)strnlen(sig64, 4 * SIGN_MAX_SIG / 3));
		if (n <= 0 || strlen(sig64) > 4 * SIGN_MAX_SIG / 3)
			return http_error(req, 400, "X-Signature is the "
			    "signature in base64");
		/* base64 pads to whole groups: drop the padding's zeros */
		art.siglen = (size_t)n - (sig64[strlen(sig64) - 1] == '=') -
		    (strlen(sig64) > 1 && sig64[strlen(sig64) - 2] == '=');
		art.sig = sig;
	}
	if ((art.key == NULL) != (art.sig == NULL))
		return http_error(req, 400, "a signature (X-Signature) and its "
		    "key (?key=) go together");
	if (lseek(u->fd, 0, SEEK_SET) != 0)
		return http_error(req, 503, "cannot read the upload back");
	reg = acting(a, &u->op, NULL);
	rc = catalog_artifact_add(reg, a->store, u->fd, &art, sha, why,
	    sizeof(why));
	if (rc == OTAD_OK)
		rc = registry_artifact_get(reg, sha, &row, why, sizeof(why));
	done(a);
	if (rc != OTAD_OK)
		return failed(req, rc, why);
	return reply(req, 201, row);
}

/* ---- the endpoints ---- */

/* The path under /api/v1/ in at most four parts; their count. */
static int
split(const char *path, char parts[4][128])
{
	const char *p = path + strlen(API);
	int n = 0;
	size_t len;

	while (*p != '\0' && n < 4) {
		len = strcspn(p, "/");
		if (len == 0 || len >= sizeof(parts[0]))
			return -1;
		memcpy(parts[n], p, len);
		parts[n++][len] = '\0';
		p += len;
		if (*p == '/')
			p++;
	}
	return *p == '\0' ? n : -1;
}

static int
get_status(struct http_request *req, struct admin *a)
{
	struct registry *reg = reading(a);
	enum otad_err rc;
	json_t *j;

	rc = registry_status(reg, (int64_t)time(NULL), &j);
	done(a);
	return rc == OTAD_OK ? reply(req, 200, j) : failed(req, rc, "");
}

/* GET /api/v1/audit?before=ID&limit=N&actor=PREFIX, newest first */
static int
get_audit(struct http_request *req, struct admin *a)
{
	const char *b = http_arg(req, "before"), *l = http_arg(req, "limit");
	long long before = 0, limit = AUDIT_PAGE;
	enum otad_err rc;
	json_t *rows;
	char *end;

	if (b != NULL && ((before = strtoll(b, &end, 10)), *end != '\0'))
		before = -1;
	if (l != NULL && ((limit = strtoll(l, &end, 10)), *end != '\0'))
		limit = -1;
	if (before < 0 || limit < 1 || limit > AUDIT_PAGE_MAX)
		return http_error(req, 400, "'before' is an audit row id and "
		    "'limit' 1 to 1000");
	rc = registry_audit(reading(a), before, (int)limit,
	    http_arg(req, "actor"), &rows);
	done(a);
	return rc == OTAD_OK ? reply(req, 200, rows) : failed(req, rc, "");
}

static int
get_list(struct http_request *req, struct admin *a, const char *what)
{
	struct registry *reg = reading(a);
	char why[256] = "";
	enum otad_err rc;
	json_t *rows = NULL;

	if (strcmp(what, "artifacts") == 0)
		rc = registry_artifact_list(reg, &rows);
	else if (strcmp(what, "keys") == 0)
		rc = catalog_key_list(reg, &rows);
	else if (strcmp(what, "releases") == 0)
		rc = registry_release_list(reg, &rows);
	else if (strcmp(what, "rollouts") == 0)
		rc = registry_rollout_status(reg, 0, (int64_t)time(NULL), &rows,
		    why, sizeof(why));
	else if (strcmp(what, "operators") == 0)
		rc = registry_operator_list(reg, &rows);
	else
		rc = registry_device_list(reg, (int64_t)time(NULL),
		    http_arg(req, "offline") ? atomic_load(&a->offline_after) :
		    0, &rows);
	done(a);
	return rc == OTAD_OK ? reply(req, 200, rows) : failed(req, rc, why);
}

static int
get_one(struct http_request *req, struct admin *a, const char *what,
    const char *key)
{
	struct registry *reg = reading(a);
	char why[256] = "", *end;
	enum otad_err rc;
	json_t *obj = NULL, *sigs;
	long long id;

	if (strcmp(what, "artifacts") == 0) {
		if ((rc = registry_artifact_get(reg, key, &obj, why,
		    sizeof(why))) == OTAD_OK &&
		    registry_artifact_signatures(reg, json_string_value(
		    json_object_get(obj, "sha256")), &sigs) == OTAD_OK) {
			json_object_set_new(obj, "signatures", sigs);
			json_object_set_new(obj, "secure_boot_blocks",
			    catalog_secure_boot_blocks(reg, a->store,
			    json_string_value(json_object_get(obj,
			    "sha256"))));
		}
	} else if (strcmp(what, "rollouts") == 0) {
		id = strtoll(key, &end, 10);
		if (*end != '\0' || id <= 0) {
			done(a);
			return http_error(req, 400, "not a rollout id");
		}
		rc = registry_rollout_status(reg, id, (int64_t)time(NULL), &obj,
		    why, sizeof(why));
	} else if (strcmp(what, "devices") == 0) {
		rc = registry_device_show(reg, key, &obj, why, sizeof(why));
	} else {
		done(a);
		return http_error(req, 404, "no such path");
	}
	done(a);
	return rc == OTAD_OK ? reply(req, 200, obj) : failed(req, rc, why);
}

/* POST /api/v1/keys {"name", "public_key", "secure_boot"} */
static int
post_key(struct http_request *req, struct admin *a, const struct op *op,
    json_t *o)
{
	const char *name, *pem;
	char why[256], digest[65], warning[256];
	struct registry *reg;
	enum otad_err rc;
	json_t *j;
	int sb;

	if (str_field(req, o, "name", &name) < 0 ||
	    str_field(req, o, "public_key", &pem) < 0 ||
	    bool_field(req, o, "secure_boot", &sb) < 0)
		return 0;
	if (name == NULL || pem == NULL)
		return http_error(req, 400, "a key needs 'name' and "
		    "'public_key' (PEM)");
	reg = acting(a, op, NULL);
	rc = catalog_key_add(reg, name, pem, strlen(pem), sb, digest, warning,
	    sizeof(warning), why, sizeof(why));
	if (rc == OTAD_OK)
		served(reg);
	done(a);
	if (rc != OTAD_OK)
		return failed(req, rc, why);
	j = json_pack("{s:s,s:s}", "name", name, "purpose", sb ?
	    "secure-boot" : "artifact");
	if (j != NULL && digest[0] != '\0')
		json_object_set_new(j, "efuse_digest", json_string(digest));
	if (j != NULL && warning[0] != '\0')
		json_object_set_new(j, "warning", json_string(warning));
	return reply(req, 201, j);
}

/* POST /api/v1/releases {"version", "artifact", ...} */
static int
post_release(struct http_request *req, struct admin *a, const struct op *op,
    json_t *o)
{
	struct catalog_release r;
	struct registry *reg;
	char why[512], sha[65];
	enum otad_err rc;
	int64_t id;

	memset(&r, 0, sizeof(r));
	if (str_field(req, o, "version", &r.version) < 0 ||
	    str_field(req, o, "artifact", &r.artifact) < 0 ||
	    str_field(req, o, "product", &r.product) < 0 ||
	    str_field(req, o, "hw_rev", &r.hw_rev) < 0 ||
	    str_field(req, o, "min_from", &r.min_from) < 0 ||
	    bool_field(req, o, "forced", &r.forced) < 0 ||
	    bool_field(req, o, "confirm_secure_version",
	    &r.confirm_secure_version) < 0)
		return 0;
	reg = acting(a, op, NULL);
	rc = catalog_release_create(reg, &r,
	    atomic_load(&a->require_signature), &id, sha, why, sizeof(why));
	done(a);
	if (rc != OTAD_OK)
		return failed(req, rc, why);
	return reply(req, 201, json_pack("{s:I,s:s,s:s}", "id",
	    (json_int_t)id, "version", r.version, "artifact", sha));
}

/* POST /api/v1/releases/<version>/publish {"product", "chip"} */
static int
post_publish(struct http_request *req, struct admin *a, const struct op *op,
    const char *version, json_t *o)
{
	const char *product, *chip, *glass;
	struct registry *reg;
	enum otad_err rc;
	char why[512];
	int64_t rollout;
	int awaiting;

	if (str_field(req, o, "product", &product) < 0 ||
	    str_field(req, o, "chip", &chip) < 0 ||
	    break_glass_of(req, o, op, &glass) < 0)
		return 0;
	if (!semver_valid(version))
		return http_error(req, 400, "not a version");
	reg = acting(a, op, glass);
	rc = registry_release_publish(reg, version, product, chip, &rollout,
	    &awaiting, why, sizeof(why));
	if (rc == OTAD_OK && !awaiting)
		served(reg);
	done(a);
	if (rc != OTAD_OK)
		return failed(req, rc, why);
	if (glass != NULL)
		metrics_add(M_BREAK_GLASS, 1);
	return reply(req, 200, json_pack("{s:s,s:I,s:b}", "version", version,
	    "rollout", (json_int_t)rollout, "awaiting_approval", awaiting));
}

/* POST /api/v1/rollouts {"version", "stages", ...} */
static int
post_rollout(struct http_request *req, struct admin *a, const struct op *op,
    json_t *o)
{
	struct catalog_rollout r;
	struct registry *reg;
	size_t nstages;
	enum otad_err rc;
	char why[256];
	int64_t id;

	memset(&r, 0, sizeof(r));
	if (str_field(req, o, "version", &r.version) < 0 ||
	    str_field(req, o, "stages", &r.stages) < 0 ||
	    str_field(req, o, "window", &r.window) < 0 ||
	    str_field(req, o, "days", &r.days) < 0 ||
	    str_field(req, o, "utc_offset", &r.utc_offset) < 0 ||
	    str_field(req, o, "min_battery", &r.min_battery) < 0 ||
	    str_field(req, o, "timeout", &r.timeout) < 0 ||
	    str_field(req, o, "product", &r.product) < 0 ||
	    str_field(req, o, "chip", &r.chip) < 0 ||
	    bool_field(req, o, "downgrade", &r.downgrade) < 0)
		return 0;
	reg = acting(a, op, NULL);
	rc = catalog_rollout_create(reg, &r, &id, &nstages, why, sizeof(why));
	done(a);
	if (rc != OTAD_OK)
		return failed(req, rc, why);
	return reply(req, 201, json_pack("{s:I,s:s,s:s,s:I}", "id",
	    (json_int_t)id, "version", r.version, "state", "draft", "stages",
	    (json_int_t)nstages));
}

/* POST /api/v1/rollouts/<id>/<start|pause|resume|abort|approve> */
static int
post_rollout_action(struct http_request *req, struct admin *a,
    const struct op *op, const char *idtext, const char *verb, json_t *o)
{
	static const char *const verbs[] = {"start", "pause", "resume",
	    "abort", "approve"};
	const char *glass;
	struct registry *reg;
	enum otad_err rc;
	char why[256], *end;
	long long id = strtoll(idtext, &end, 10);
	int force;
	size_t v;

	for (v = 0; v < sizeof(verbs) / sizeof(verbs[0]) &&
	    strcmp(verbs[v], verb) != 0; v++)
		continue;
	if (v == sizeof(verbs) / sizeof(verbs[0]))
		return http_error(req, 404, "a rollout is started, paused, "
		    "resumed, aborted or approved");
	if (*end != '\0' || id <= 0)
		return http_error(req, 400, "not a rollout id");
	if (bool_field(req, o, "force", &force) < 0 ||
	    break_glass_of(req, o, op, &glass) < 0)
		return 0;
	reg = acting(a, op, glass);
	rc = registry_rollout_action(reg, id, (enum rollout_action)v, force,
	    why, sizeof(why));
	if (rc == OTAD_OK)
		served(reg);
	done(a);
	if (rc != OTAD_OK)
		return failed(req, rc, why);
	if (glass != NULL && v == ROLLOUT_START)
		metrics_add(M_BREAK_GLASS, 1);
	return reply(req, 200, json_pack("{s:I,s:s}", "id", (json_int_t)id,
	    "done", verb));
}

/* POST /api/v1/devices {"id", "group"}: the token, shown once */
static int
post_device(struct http_request *req, struct admin *a, const struct op *op,
    json_t *o)
{
	char token[AUTH_TOKEN_LEN + 1], hash[65], why[256];
	const char *id, *group;
	struct registry *reg;
	enum otad_err rc;
	json_t *j;

	if (str_field(req, o, "id", &id) < 0 ||
	    str_field(req, o, "group", &group) < 0)
		return 0;
	if (id == NULL || !otad_valid_id(id))
		return http_error(req, 400, "'id' is 1 to 64 of A-Z a-z 0-9 . "
		    "_ : -");
	if (auth_token_new(token) != OTAD_OK ||
	    auth_token_hash(token, hash) != OTAD_OK)
		return http_error(req, 503, "cannot make a token");
	reg = acting(a, op, NULL);
	rc = registry_device_add(reg, id, group, hash, why, sizeof(why));
	done(a);
	if (rc != OTAD_OK)
		return failed(req, rc, why);
	j = json_pack("{s:s,s:s}", "device", id, "token", token);
	explicit_bzero(token, sizeof(token));
	return reply(req, 201, j);
}

/* POST /api/v1/devices/<id> {"group", "hw_rev", "chip"} and actions */
static int
post_device_action(struct http_request *req, struct admin *a,
    const struct op *op, const char *id, const char *verb, json_t *o)
{
	const char *group = NULL, *hw_rev = NULL, *chip = NULL;
	char why[256] = "";
	struct registry *reg;
	enum otad_err rc;
	int64_t nudge = 0;

	if (!otad_valid_id(id))
		return http_error(req, 400, "not a device id");
	if (verb == NULL && (str_field(req, o, "group", &group) < 0 ||
	    str_field(req, o, "hw_rev", &hw_rev) < 0 ||
	    str_field(req, o, "chip", &chip) < 0))
		return 0;
	if (verb == NULL && group == NULL && hw_rev == NULL && chip == NULL)
		return http_error(req, 400, "set 'group', 'hw_rev' or 'chip'");
	reg = acting(a, op, NULL);
	if (verb == NULL)
		rc = registry_device_set(reg, id, group, hw_rev, chip, why,
		    sizeof(why));
	else if (strcmp(verb, "revoke-token") == 0)
		rc = registry_device_revoke_token(reg, id, why, sizeof(why));
	else if (strcmp(verb, "block") == 0 || strcmp(verb, "unblock") == 0)
		rc = registry_device_block(reg, id, strcmp(verb, "block") == 0,
		    why, sizeof(why));
	else if (strcmp(verb, "nudge") == 0)
		rc = registry_nudge(reg, id, &nudge, why, sizeof(why));
	else
		rc = OTAD_ERR_NOT_FOUND, snprintf(why, sizeof(why), "a device "
		    "is set, or its token revoked, blocked, unblocked or "
		    "nudged");
	done(a);
	if (rc != OTAD_OK)
		return failed(req, rc, why);
	return reply(req, 200, json_pack("{s:s,s:s}", "device", id, "done",
	    verb ? verb : "set"));
}

/* POST /api/v1/operators {"name", "role"}: the token, shown once */
static int
post_operator(struct http_request *req, struct admin *a, const struct op *op,
    json_t *o)
{
	char token[AUTH_TOKEN_LEN + 1], hash[65], why[256];
	const char *name, *role;
	struct registry *reg;
	enum otad_err rc;
	json_t *j;

	if (str_field(req, o, "name", &name) < 0 ||
	    str_field(req, o, "role", &role) < 0)
		return 0;
	if (name == NULL || !catalog_valid_name(name) || role == NULL ||
	    role_bit(role) == 0)
		return http_error(req, 400, "an operator needs 'name' (1 to 64 "
		    "of A-Z a-z 0-9 . _ -) and 'role' (viewer, operator, admin "
		    "or ci)");
	if (auth_token_new(token) != OTAD_OK ||
	    auth_token_hash(token, hash) != OTAD_OK)
		return http_error(req, 503, "cannot make a token");
	reg = acting(a, op, NULL);
	rc = registry_operator_add(reg, name, role, hash, why, sizeof(why));
	done(a);
	if (rc != OTAD_OK)
		return failed(req, rc, why);
	j = json_pack("{s:s,s:s,s:s}", "operator", name, "role", role, "token",
	    token);
	explicit_bzero(token, sizeof(token));
	return reply(req, 201, j);
}

/* The POSTs that change something, after the body was read. */
static int
post(struct http_request *req, struct admin *a, const struct op *op,
    char parts[4][128], int n)
{
	const char *key;
	struct registry *reg;
	char why[256], sha[65];
	enum otad_err rc;
	json_t *o;
	int r = 0;

	if (body_object(req, &o) < 0)
		return 0;
	if (n == 1 && strcmp(parts[0], "keys") == 0) {
		if (allowed(req, op, R_ADMIN, "add keys") == 0)
			r = post_key(req, a, op, o);
	} else if (n == 3 && strcmp(parts[0], "keys") == 0 &&
	    strcmp(parts[2], "revoke") == 0) {
		if (allowed(req, op, R_ADMIN, "revoke keys") == 0) {
			reg = acting(a, op, NULL);
			rc = registry_key_revoke(reg, parts[1], why,
			    sizeof(why));
			if (rc == OTAD_OK)
				served(reg);
			done(a);
			r = rc == OTAD_OK ? reply(req, 200, json_pack("{s:s,"
			    "s:s}", "name", parts[1], "state", "revoked")) :
			    failed(req, rc, why);
		}
	} else if (n == 3 && strcmp(parts[0], "artifacts") == 0 &&
	    strcmp(parts[2], "sign") == 0) {
		if (allowed(req, op, R_ADMIN, "sign artifacts") == 0 &&
		    str_field(req, o, "key", &key) == 0) {
			reg = acting(a, op, NULL);
			rc = key ? catalog_artifact_sign(reg, a->store,
			    a->state_dir, parts[1], key, sha, why,
			    sizeof(why)) : OTAD_ERR_INVALID;
			if (key == NULL)
				snprintf(why, sizeof(why), "sign with 'key'");
			if (rc == OTAD_OK)
				served(reg);
			done(a);
			r = rc == OTAD_OK ? reply(req, 200, json_pack("{s:s,"
			    "s:s}", "artifact", sha, "key", key)) :
			    failed(req, rc, why);
		}
	} else if (n == 1 && strcmp(parts[0], "releases") == 0) {
		if (allowed(req, op, PUBLISHES, "create releases") == 0)
			r = post_release(req, a, op, o);
	} else if (n == 3 && strcmp(parts[0], "releases") == 0 &&
	    strcmp(parts[2], "publish") == 0) {
		if (allowed(req, op, STEERS, "publish releases") == 0)
			r = post_publish(req, a, op, parts[1], o);
	} else if (n == 1 && strcmp(parts[0], "rollouts") == 0) {
		if (allowed(req, op, STEERS, "create rollouts") == 0)
			r = post_rollout(req, a, op, o);
	} else if (n == 3 && strcmp(parts[0], "rollouts") == 0) {
		if (allowed(req, op, STEERS, "steer rollouts") == 0)
			r = post_rollout_action(req, a, op, parts[1], parts[2],
			    o);
	} else if (n == 1 && strcmp(parts[0], "devices") == 0) {
		if (allowed(req, op, STEERS, "add devices") == 0)
			r = post_device(req, a, op, o);
	} else if ((n == 2 || n == 3) && strcmp(parts[0], "devices") == 0) {
		if (allowed(req, op, STEERS, "change devices") == 0)
			r = post_device_action(req, a, op, parts[1], n == 3 ?
			    parts[2] : NULL, o);
	} else if (n == 1 && strcmp(parts[0], "operators") == 0) {
		if (allowed(req, op, R_ADMIN, "add operators") == 0)
			r = post_operator(req, a, op, o);
	} else if (n == 3 && strcmp(parts[0], "operators") == 0 &&
	    strcmp(parts[2], "revoke") == 0) {
		if (allowed(req, op, R_ADMIN, "revoke operators") == 0) {
			reg = acting(a, op, NULL);
			rc = registry_operator_revoke(reg, parts[1], why,
			    sizeof(why));
			done(a);
			r = rc == OTAD_OK ? reply(req, 200, json_pack("{s:s,"
			    "s:s}", "operator", parts[1], "state",
			    "revoked")) : failed(req, rc, why);
		}
	} else {
		r = http_error(req, 404, "no such path");
	}
	json_decref(o);
	return r;
}

static int
admin_request(struct http_request *req, void *arg)
{
	struct admin *a = arg;
	char parts[4][128];
	struct op op;
	int n;

	if (strcmp(http_path(req), UPLOAD) == 0 &&
	    http_method(req) == HTTP_POST)
		return upload_done(req, a);
	if ((n = split(http_path(req), parts)) <= 0)
		return http_error(req, 404, "no such path");
	if (authenticate(req, a, &op) < 0)
		return 0;
	if (http_method(req) == HTTP_POST)
		return post(req, a, &op, parts, n);
	if (strcmp(parts[0], "operators") == 0 && n == 1)
		return allowed(req, &op, R_ADMIN, "list operators") < 0 ? 0 :
		    get_list(req, a, parts[0]);
	if (allowed(req, &op, READERS, "read") < 0)
		return 0;
	if (n == 1 && strcmp(parts[0], "status") == 0)
		return get_status(req, a);
	if (n == 1 && strcmp(parts[0], "audit") == 0)
		return get_audit(req, a);
	if (n == 1 && (strcmp(parts[0], "artifacts") == 0 ||
	    strcmp(parts[0], "keys") == 0 || strcmp(parts[0], "releases") ==
	    0 || strcmp(parts[0], "rollouts") == 0 || strcmp(parts[0],
	    "devices") == 0))
		return get_list(req, a, parts[0]);
	if (n == 2)
		return get_one(req, a, parts[0], parts[1]);
	return http_error(req, 404, "no such path");
}

static const struct http_route routes[] = {
	{UPLOAD, HTTP_GET | HTTP_POST, admin_request, upload_chunk},
	{API, HTTP_GET | HTTP_POST, admin_request, NULL},
};

const struct http_route *
admin_routes(size_t *n)
{
	*n = sizeof(routes) / sizeof(routes[0]);
	return routes;
}

void
admin_configure(struct admin *a, const struct conf *conf)
{
	atomic_store(&a->auth_failures, conf->auth_failures_per_address);
	atomic_store(&a->approvals, conf->rollout_approvals);
	atomic_store(&a->offline_after, conf->offline_after);
	atomic_store(&a->require_signature, conf->require_signature);
	atomic_store(&a->max_artifact, conf->max_artifact_bytes);
}

enum otad_err
admin_new(const char *db_path, const struct conf *conf, struct store *store,
    struct admin **out)
{
	struct admin *a;
	enum otad_err rc;

	*out = NULL;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return OTAD_ERR_NOMEM;
	pthread_mutex_init(&a->mu, NULL);
	if ((a->db_path = strdup(db_path)) == NULL ||
	    (a->state_dir = strdup(conf->state_dir)) == NULL ||
	    (a->rl_auth = ratelimit_new(1 << 12)) == NULL) {
		admin_free(a);
		return OTAD_ERR_NOMEM;
	}
	a->store = store;
	if ((rc = registry_open(db_path, &a->reg)) != OTAD_OK) {
		admin_free(a);
		return rc;
	}
	registry_set_patience(a->reg, 5000);
	registry_set_actor(a->reg, "otad");
	admin_configure(a, conf);
	*out = a;
	return OTAD_OK;
}

void
admin_free(struct admin *a)
{
	if (a == NULL)
		return;
	registry_close(a->reg);
	ratelimit_free(a->rl_auth);
	free(a->db_path);
	free(a->state_dir);
	pthread_mutex_destroy(&a->mu);
	free(a);
}
