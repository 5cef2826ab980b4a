/*
 * ops.h: every operator action, named once, with JSON in and out: what
 * otactl runs on the host and what the management API (admin.c) runs for
 * a remote operator. An operation has a name ("rollout.start"), the
 * management API's method and path ("POST", "rollouts/{id}/start", under
 * /api/v1/), the roles that may run it, and its function. otactl runs it
 * in the process (the registry) or sends it to a server (cli_remote.c):
 * the same arguments, the same answer, the same messages.
 *
 * Arguments are a JSON object: strings, booleans and integers; the path's
 * {names} are arguments too. A query string's values are strings, so
 * operations accept "true" and "12" where they take booleans and numbers.
 */
#ifndef OPS_H
#define OPS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "otad.h"
#include "registry.h"
#include "store.h"

/* Roles as bits: who may run an operation. */
enum {
	ROLE_VIEWER = 1 << 0,
	ROLE_OPERATOR = 1 << 1,
	ROLE_ADMIN = 1 << 2,
	ROLE_CI = 1 << 3,
};

/* Where an operation runs, and as whom. */
struct ops_ctx {
	struct registry *reg;   /* its actor and who set by the caller */
	struct store *store;
	const char *state_dir;  /* server-held keys are in its keys/ */
	int require_signature;
	unsigned approvals;     /* rollout_approvals */
	const char *promote_window; /* for rollouts that name none; "" any */
	int on_halt_revert;     /* on_halt for rollouts that name none */
	int64_t offline_after;
	int mqtt_on;            /* nudges go out only with a broker */
	int upload_fd;          /* artifact.add: the image; -1 none */
	unsigned role;          /* ROLE_* of the caller (break-glass) */
	const char *caller;     /* the operator's name; NULL local */
};

struct op {
	const char *name;
	const char *method;     /* "GET" or "POST" */
	const char *path;       /* under /api/v1/, with {argument}s */
	unsigned roles;
	unsigned status;        /* the success status: 200 or 201 */
	enum otad_err (*fn)(struct ops_ctx *ctx, json_t *args,
	    json_t **result, char *why, size_t whylen);
};

/* By name; NULL for none. */
const struct op *ops_find(const char *name);

/*
 * The operation whose method and path (under /api/v1/) match; the
 * path's {arguments} are set in args. NULL for none.
 */
const struct op *ops_route(const char *method, const char *path,
    json_t *args);

/* The path of op with args' values in its {arguments}; caller frees. */
char *ops_path(const struct op *op, json_t *args);

/* Run op: *result (owned by the caller) or why. */
enum otad_err ops_run(const struct op *op, struct ops_ctx *ctx, json_t *args,
    json_t **result, char *why, size_t whylen);

/* "viewer", "operator", "admin", "ci" as a ROLE_ bit; 0 for none. */
unsigned ops_role(const char *name);

#endif
