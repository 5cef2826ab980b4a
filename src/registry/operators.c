/*
 * registry/operators.c: operators of the management API (their roles and
 * token hashes) and the audit log they read.
 */

#include <stdio.h>


#include "registry.h"
#include "registry_impl.h"

enum otad_err
registry_operator_add(struct registry *reg, const char *name,
    const char *role, const char *token_hash, char *why, size_t whylen)
{
	char what[128];
	enum otad_err rc;
	int step;

	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK)
		return rc;
	step = run(reg, "INSERT INTO operator (name, role, token_hash, created)"
	    " VALUES (?1, ?2, ?3, ?4)", "ttti", name, role, token_hash,
	    now_s());
	if (step == DB_CONSTRAINT) {
		snprintf(why, whylen, "operator '%s' is already there", name);
		return catalog_fail(reg, OTAD_ERR_EXISTS);
	}
	if (step != DB_DONE)
		return catalog_db_fail(reg, why, whylen);
	snprintf(what, sizeof(what), "operator add %s role %s", name, role);
	return catalog_close(reg, what, why, whylen);
}

enum otad_err
registry_operator_list(struct registry *reg, json_t **rows)
{
	return query_rows(reg->db, rows, "SELECT name, role, state, created,"
	    " revoked_at FROM operator ORDER BY created, name", ARGS_END);
}

enum otad_err
registry_operator_revoke(struct registry *reg, const char *name, char *why,
    size_t whylen)
{
	char what[96];
	enum otad_err rc;

	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK)
		return rc;
	if (run(reg, "UPDATE operator SET state = 'revoked', revoked_at = ?2"
	    " WHERE name = ?1 AND state = 'active'", "ti", name, now_s()) !=
	    DB_DONE)
		return catalog_db_fail(reg, why, whylen);
	if (db_changes(reg->db) == 0) {
		snprintf(why, whylen, "no active operator '%s'", name);
		return catalog_fail(reg, OTAD_ERR_NOT_FOUND);
	}
	snprintf(what, sizeof(what), "operator revoke %s", name);
	return catalog_close(reg, what, why, whylen);
}

enum otad_err
registry_operator_by_token(struct registry *reg, const char *token_hash,
    char *name, char *role)
{
	json_t *rows, *row;
	enum otad_err rc;

	rc = query_rows(reg->db, &rows, "SELECT name, role FROM operator"
	    " WHERE token_hash = ?1 AND state = 'active'", token_hash,
	    ARGS_END);
	if (rc != OTAD_OK)
		return rc;
	if ((row = json_array_get(rows, 0)) == NULL) {
		json_decref(rows);
		return OTAD_ERR_NOT_FOUND;
	}
	snprintf(name, 65, "%s", json_string_value(json_object_get(row,
	    "name")));
	snprintf(role, 65, "%s", json_string_value(json_object_get(row,
	    "role")));
	json_decref(rows);
	return OTAD_OK;
}

enum otad_err
registry_audit(struct registry *reg, int64_t before, int limit,
    const char *actor, json_t **rows)
{
	char b[24], l[24];

	snprintf(b, sizeof(b), "%lld", (long long)(before > 0 ? before :
	    INT64_MAX));
	snprintf(l, sizeof(l), "%d", limit);
	return query_rows(reg->db, rows, "SELECT id, at, actor, what FROM"
	    " audit WHERE id < CAST(?1 AS BIGINT) AND (?3 = '' OR"
	    " substr(actor, 1, length(?3)) = ?3) ORDER BY id DESC"
	    " LIMIT CAST(?2 AS BIGINT)", b,
	    l, actor ? actor : "", ARGS_END);
}
