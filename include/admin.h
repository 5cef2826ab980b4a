/*
 * admin.h: the management API, /api/v1/, on its own listener
 * (admin_listen): operators with a role and a token do over HTTPS what
 * otactl does on the host, through the same operations (catalog.h and
 * the registry), every change audited with the operator's name, role and
 * address.
 *
 * Roles: viewer reads; operator also steers releases, rollouts and
 * devices; admin also manages keys, operators and signing; ci only
 * uploads artifacts and creates releases.
 *
 * Threads: handlers run on the admin listener's threads; catalog changes
 * go through one registry connection, one at a time.
 */
#ifndef ADMIN_H
#define ADMIN_H

#include <stddef.h>

#include "conf.h"
#include "http.h"
#include "otad.h"
#include "store.h"

struct admin;

/* db_path for the catalog connection; store borrowed. */
enum otad_err admin_new(const char *db_path, const struct conf *conf,
    struct store *store, struct admin **out);
void admin_free(struct admin *a);

/* What a reload may change: caps, approvals, signatures. */
void admin_configure(struct admin *a, const struct conf *conf);

/* The route table for http_start, with a as the handlers' argument. */
const struct http_route *admin_routes(size_t *n);

#endif
