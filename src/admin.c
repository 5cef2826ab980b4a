/*
 * admin.c: the management API (/api/v1/): an operator's token and role,
 * the request's arguments (path, query, JSON body, or a streamed upload),
 * then the operation (ops.c) otactl runs the same way.
 */
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

#include "admin.h"
#include "auth.h"
#include "console.h"
#include "log.h"
#include "metrics.h"
#include "ops.h"
#include "ratelimit.h"
#include "registry.h"

#define API "/api/v1/"
#define UPLOAD API "artifacts"

struct admin {
	char *state_dir;
	struct store *store;
	pthread_mutex_t mu;   /* the catalog connection, one user at a time */
	struct registry *reg;
	struct ratelimit *rl_auth;
	atomic_uint auth_failures;
	atomic_uint approvals;
	atomic_uint offline_after;
	atomic_int require_signature;
	atomic_int mqtt_on;
	atomic_ullong max_artifact;
	char promote_window[64]; /* under mu */
	atomic_int on_halt_revert;
};

/* Who is calling, once their token checked out. */
struct caller {
	char name[65];
	char role[65];
	unsigned bit;
	char addr[OTAD_ADDR_MAX];
};

/* Answer with JSON (consumed). */
static int
reply(struct http_request *req, unsigned status, json_t *j)
{
	char *body;

	if (j == NULL || (body = json_dumps(j, JSON_COMPACT |
	    JSON_ENCODE_ANY)) == NULL) {
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
authenticate(struct http_request *req, struct admin *a, struct caller *c)
{
	const char *authz = http_header(req, "Authorization");
	unsigned limit = atomic_load(&a->auth_failures), retry;
	char hash[65], secs[16];
	enum otad_err rc;

	memset(c, 0, sizeof(*c));
	http_peer(req, c->addr, sizeof(c->addr));
	if (ratelimit_spent(a->rl_auth, c->addr, strlen(c->addr), limit,
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
		rc = registry_operator_by_token(a->reg, hash, c->name,
		    c->role);
		pthread_mutex_unlock(&a->mu);
		if (rc == OTAD_OK && (c->bit = ops_role(c->role)) != 0)
			return 0;
		if (rc != OTAD_OK && rc != OTAD_ERR_NOT_FOUND) {
			http_error(req, 503, "registry unavailable");
			return -1;
		}
	}
	ratelimit_hit(a->rl_auth, c->addr, strlen(c->addr), limit,
	    (int64_t)time(NULL), &retry);
	metrics_add(M_AUTH_FAILURES, 1);
	log_warnx("management API: a wrong or revoked operator token from %s",
	    c->addr);
	http_error_header(req, 401, "wrong or revoked operator token",
	    "WWW-Authenticate", "Bearer realm=\"otad-admin\"");
	return -1;
}

/* 0 when the caller's role may run op; else 403, -1. */
static int
allowed(struct http_request *req, const struct caller *c, const struct op *op)
{
	char msg[160];

	if (c->bit & op->roles)
		return 0;
	snprintf(msg, sizeof(msg), "role %s may not run %s", c->role,
	    op->name);
	http_error(req, 403, msg);
	return -1;
}

/*
 * Run op as the caller on the catalog connection: their name, role and
 * address go on every audit row, and their name is the person the
 * two-person rule compares.
 */
static int
run(struct http_request *req, struct admin *a, const struct caller *c,
    const struct op *op, json_t *args, int upload_fd)
{
	struct ops_ctx ctx;
	char actor[256], who[80], why[512];
	enum otad_err rc;
	json_t *result;

	snprintf(actor, sizeof(actor), "op:%s (%s) from %s", c->name, c->role,
	    c->addr);
	snprintf(who, sizeof(who), "op:%s", c->name);
	memset(&ctx, 0, sizeof(ctx));
	ctx.reg = a->reg;
	ctx.store = a->store;
	ctx.state_dir = a->state_dir;
	ctx.require_signature = atomic_load(&a->require_signature);
	ctx.approvals = atomic_load(&a->approvals);
	ctx.offline_after = atomic_load(&a->offline_after);
	ctx.mqtt_on = atomic_load(&a->mqtt_on);
	ctx.on_halt_revert = atomic_load(&a->on_halt_revert);
	ctx.upload_fd = upload_fd;
	ctx.role = c->bit;
	ctx.caller = c->name;
	pthread_mutex_lock(&a->mu);
	ctx.promote_window = a->promote_window;
	registry_set_actor(a->reg, actor);
	registry_set_who(a->reg, who);
	rc = ops_run(op, &ctx, args, &result, why, sizeof(why));
	registry_set_actor(a->reg, "otad");
	registry_set_who(a->reg, "");
	pthread_mutex_unlock(&a->mu);
	if (rc != OTAD_OK)
		return http_error(req, http_status_of(rc), why);
	return reply(req, op->status, result);
}

/* Each query value as a string argument. */

static int
query_args(struct http_request *req, json_t *args)
{
	static const char *const names[] = {"before", "limit", "actor",
	    "offline", "version", "product", "kind", "key", "prefix", "group",
	    NULL};
	const char *v;
	size_t i;

	for (i = 0; names[i] != NULL; i++)
		if ((v = http_arg(req, names[i])) != NULL)
			json_object_set_new(args, names[i], json_string(v));
	return 0;
}

/*
 * The request's JSON object body as arguments, or an answer (400, -1). An
 * empty body is no arguments.
 */
static int
body_args(struct http_request *req, json_t *args)
{
	json_error_t jerr;
	const char *body;
	char msg[200];
	json_t *o;
	size_t len;

	body = http_body(req, &len);
	if (len == 0)
		return 0;
	o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (o == NULL || !json_is_object(o)) {
		json_decref(o);
		snprintf(msg, sizeof(msg), "the body must be a JSON object%s%s",
		    o == NULL ? ": " : "", o == NULL ? jerr.text : "");
		http_error(req, 400, msg);
		return -1;
	}
	json_object_update(args, o);
	json_decref(o);
	return 0;
}

/* ---- uploads: streamed to an unnamed file, then added as otactl adds */

struct upload {
	struct admin *a;
	struct caller caller;
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

/* The headers: who, may they, how large; then the file. */
static int
upload_begin(struct http_request *req, struct admin *a)
{
	const char *cl = http_header(req, "Content-Length");
	uint64_t max = atomic_load(&a->max_artifact);
	struct upload *u;
	char msg[120];

	if ((u = calloc(1, sizeof(*u))) == NULL) {
		http_error(req, 503, "out of memory");
		return -1;
	}
	u->a = a;
	u->fd = -1;
	http_set_userdata(req, u, upload_free);
	u->refused = 1;
	if (authenticate(req, a, &u->caller) < 0 ||
	    allowed(req, &u->caller, ops_find("artifact.add")) < 0)
		return -1;
	if (cl != NULL && strtoull(cl, NULL, 10) > max) {
		snprintf(msg, sizeof(msg), "the artifact is larger than "
		    "max_artifact_bytes (%llu)", (unsigned long long)max);
		http_error(req, 413, msg);
		return -1;
	}
	if ((u->fd = open(a->state_dir, O_TMPFILE | O_RDWR | O_CLOEXEC,
	    0600)) < 0) {
		log_warn("management API: cannot make an upload file in '%s'",
		    a->state_dir);
		http_error(req, 503, "cannot take the upload now");
		return -1;
	}
	u->refused = 0;
	return 0;
}

/*
 * The headers (data NULL), then each piece: into the file. A piece
 * refused is answered once the body is over.
 */
static int
upload_chunk(struct http_request *req, const char *data, size_t len,
    void *arg)
{
	struct upload *u = http_userdata(req);
	ssize_t n;

	if (data == NULL)
		return upload_begin(req, arg);
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
	const char *sig = http_header(req, "X-Signature");
	json_t *args;
	int r;

	if (u == NULL)
		return http_error(req, 503, "out of memory");
	if (u->refused)
		return u->status ? http_error(req, u->status, u->why) : 0;
	if (u->len == 0)
		return http_error(req, 400, "the body is the image, and it is "
		    "empty");
	if (lseek(u->fd, 0, SEEK_SET) != 0)
		return http_error(req, 503, "cannot read the upload back");
	if ((args = json_object()) == NULL)
		return http_error(req, 503, "out of memory");
	query_args(req, args);
	if (sig != NULL)
		json_object_set_new(args, "signature", json_string(sig));
	r = run(req, a, &u->caller, ops_find("artifact.add"), args, u->fd);
	json_decref(args);
	return r;
}

static int
admin_request(struct http_request *req, void *arg)
{
	struct admin *a = arg;
	const char *path = http_path(req) + strlen(API);
	const struct op *op;
	struct caller c;
	json_t *args;
	int r;

	if (strcmp(http_path(req), UPLOAD) == 0 &&
	    http_method(req) == HTTP_POST)
		return upload_done(req, a);
	if ((args = json_object()) == NULL)
		return http_error(req, 503, "out of memory");
	op = ops_route(http_method(req) == HTTP_POST ? "POST" : "GET", path,
	    args);
	if (op == NULL) {
		json_decref(args);
		return http_error(req, 404, "no such path");
	}
	if (authenticate(req, a, &c) < 0 || allowed(req, &c, op) < 0 ||
	    (http_method(req) == HTTP_POST ? body_args(req, args) :
	    query_args(req, args)) < 0) {
		json_decref(args);
		return 0;
	}
	r = run(req, a, &c, op, args, -1);
	json_decref(args);
	return r;
}

static const struct http_route routes[] = {
	{UPLOAD, HTTP_GET | HTTP_POST, admin_request, upload_chunk},
	{API, HTTP_GET | HTTP_POST, admin_request, NULL},
	{"/console/", HTTP_GET | HTTP_HEAD, console_serve, NULL},
	{"/console", HTTP_GET | HTTP_HEAD, console_redirect, NULL},
	{"/", HTTP_GET | HTTP_HEAD, console_redirect, NULL},
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
	atomic_store(&a->mqtt_on, conf->mqtt_host[0] != '\0');
	atomic_store(&a->max_artifact, conf->max_artifact_bytes);
	atomic_store(&a->on_halt_revert, conf->on_halt_revert);
	pthread_mutex_lock(&a->mu);
	snprintf(a->promote_window, sizeof(a->promote_window), "%s",
	    conf->promote_window);
	pthread_mutex_unlock(&a->mu);
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
	if ((a->state_dir = strdup(conf->state_dir)) == NULL ||
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
	free(a->state_dir);
	pthread_mutex_destroy(&a->mu);
	free(a);
}
