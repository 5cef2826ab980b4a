/*
 * registry/artifacts.c: the catalog of artifacts, their signatures and
 * the keys that sign them, releases, and publishing a release.
 */
#include <stdio.h>
#include <string.h>


#include "registry.h"
#include "registry_impl.h"

/* INSERT INTO signature inside an open catalog transaction. */
static enum otad_err
insert_signature(struct registry *reg, const char *sha256, const char *key,
    const uint8_t *sig, size_t siglen, char *why, size_t whylen)
{
	if (run(reg, "INSERT INTO signature (artifact, key, sig, created)"
	    " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (artifact, key) DO UPDATE"
	    " SET sig = excluded.sig, created = excluded.created", "ttbi",
	    sha256, key,
	    sig, siglen, now_s()) != DB_DONE)
		return catalog_db_fail(reg, why, whylen);
	return OTAD_OK;
}

enum otad_err
registry_signature_add(struct registry *reg, const char *sha256,
    const char *key, const uint8_t *sig, size_t siglen, char *why,
    size_t whylen)
{
	char what[256];
	enum otad_err rc;

	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK ||
	    (rc = insert_signature(reg, sha256, key, sig, siglen, why,
	    whylen)) != OTAD_OK)
		return rc;
	snprintf(what, sizeof(what), "artifact sign %s key %s", sha256, key);
	return catalog_close(reg, what, why, whylen);
}

enum otad_err
registry_artifact_signatures(struct registry *reg, const char *sha256,
    json_t **rows)
{
	return query_rows(reg->db, rows, "SELECT s.key, k.algo, k.state,"
	    " s.created FROM signature s JOIN signing_key k ON k.name = s.key"
	    " WHERE s.artifact = ?1 AND k.state != 'revoked' ORDER BY"
	    " s.created", sha256, ARGS_END);
}

enum otad_err
registry_artifact_add(struct registry *reg, const struct store_artifact *art,
    const char *version, const char *product, const char *key,
    const uint8_t *sig, size_t siglen, char *why, size_t whylen)
{
	/* a filesystem image is for any chip */
	const char *chip = art->kind != KIND_APP ? "" :
	    espimg_chip_name(art->image.chip_id);
	const struct espimg_info *img = &art->image;
	char what[256], date[40], app[65] = "";
	enum otad_err rc;
	int step;

	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK)
		return rc;
	if (art->kind == KIND_APP)
		snprintf(date, sizeof(date), "%s %s", img->build_date,
		    img->build_time);
	else
		date[0] = '\0';
	if (img->hash_appended)
		otad_hex(img->app_sha256, 32, app);
	step = run(reg, "INSERT INTO artifact (sha256, md5, size, version,"
	    " product, chip, created, project, idf_ver, desc_version,"
	    " build_date, secure_version, image_len, app_sha256, sig_blocks,"
	    " kind) VALUES (?1, ?2, ?3, ?4, ?5, coalesce(?6, ''), ?7,"
	    " nullif(?8, ''),"
	    " nullif(?9, ''), nullif(?10, ''), nullif(?11, ''), ?12,"
	    " nullif(?13, 0), ?14, ?15, ?16)", "ttitttittttiitit", art->sha256,
	    art->md5, (int64_t)art->size, version, product, chip ? chip :
	    "unknown", now_s(), img->project_name, img->idf_ver, img->version,
	    date, (int64_t)img->secure_version, (int64_t)img->image_len, app,
	    (int64_t)img->nsig, fsimg_kind_name(art->kind));
	if (step == DB_CONSTRAINT) {
		snprintf(why, whylen, "artifact %s is already in the store",
		    art->sha256);
		return catalog_fail(reg, OTAD_ERR_EXISTS);
	}
	if (step != DB_DONE)
		return catalog_db_fail(reg, why, whylen);
	if (key != NULL && (rc = insert_signature(reg, art->sha256, key, sig,
	    siglen, why, whylen)) != OTAD_OK)
		return rc;
	/* every node of a cluster can serve it: its bytes go in too */
	if ((rc = blobs_put(reg, art->sha256, art->hold, art->size, why,
	    whylen)) != OTAD_OK)
		return rc;
	snprintf(what, sizeof(what), "artifact add %s version %s%s%s%s",
	    art->sha256, version, art->kind != KIND_APP ? " kind " : "",
	    art->kind != KIND_APP ? fsimg_kind_name(art->kind) : "",
	    key ? " signed by " : "");
	if (key != NULL)
		snprintf(what + strlen(what), sizeof(what) - strlen(what),
		    "%s", key);
	return catalog_close(reg, what, why, whylen);
}

static int
hex_prefix(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return i >= 6 && i <= 64;
}

enum otad_err
registry_artifact_get(struct registry *reg, const char *sha, json_t **row,
    char *why, size_t whylen)
{
	json_t *rows;
	enum otad_err rc;

	*row = NULL;
	if (!hex_prefix(sha)) {
		snprintf(why, whylen, "'%s' is not a SHA-256 (or a prefix of "
		    "6 or more lower-case hex digits)", sha);
		return OTAD_ERR_INVALID;
	}
	rc = query_rows(reg->db, &rows, "SELECT sha256, size, md5, version,"
	    " product, kind, chip, project, idf_ver, desc_version, build_date,"
	    " secure_version, image_len, app_sha256, sig_blocks,"
	    " created, (SELECT count(*) FROM release"
	    " WHERE artifact = sha256) AS releases FROM artifact"
	    /* the digests that start so: hex sorts before 'g' */
	    " WHERE sha256 >= ?1 AND sha256 < ?1 || 'g' LIMIT 2", sha,
	    ARGS_END);
	if (rc != OTAD_OK) {
		snprintf(why, whylen, "database: %s", otad_strerror(rc));
		return rc;
	}
	if (json_array_size(rows) != 1) {
		rc = json_array_size(rows) == 0 ? OTAD_ERR_NOT_FOUND
						: OTAD_ERR_INVALID;
		snprintf(why, whylen, rc == OTAD_ERR_NOT_FOUND
		    ? "no artifact %s" : "'%s' matches several artifacts; "
		    "give more digits", sha);
		json_decref(rows);
		return rc;
	}
	*row = json_incref(json_array_get(rows, 0));
	json_decref(rows);
	return OTAD_OK;
}

enum otad_err
registry_artifact_list(struct registry *reg, json_t **rows)
{
	return query_rows(reg->db, rows, "SELECT sha256, size, version,"
	    " product, kind, chip, created FROM artifact ORDER BY created,"
	    " sha256",
	    ARGS_END);
}

enum otad_err
registry_released_secure_version(struct registry *reg, const char *product,
    const char *chip, int64_t *out)
{
	json_t *rows;
	enum otad_err rc;

	rc = query_rows(reg->db, &rows, "SELECT coalesce(max(a.secure_version),"
	    " -1) AS sv FROM release r JOIN artifact a ON a.sha256 ="
	    " r.artifact WHERE coalesce(r.product, '') = ?1 AND r.chip = ?2",
	    product ? product : "", chip, ARGS_END);
	if (rc != OTAD_OK)
		return rc;
	*out = json_integer_value(json_object_get(json_array_get(rows, 0),
	    "sv"));
	json_decref(rows);
	return OTAD_OK;
}

enum otad_err
registry_release_create(struct registry *reg, const char *version,
    const char *sha256, const char *product, const char *hw_rev,
    const char *min_from, int forced, int64_t *id, char *why, size_t whylen)
{
	char what[256];
	enum otad_err rc;
	int step;

	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK)
		return rc;
	step = run(reg, "INSERT INTO release (version, artifact, product,"
	    " created, hw_rev, min_from, forced, chip, kind) VALUES (?1, ?2,"
	    " ?3, ?4, ?5, ?6, ?7, (SELECT chip FROM artifact WHERE sha256 ="
	    " ?2), coalesce((SELECT kind FROM artifact WHERE sha256 = ?2),"
	    " 'app')) RETURNING id",
	    "tttitti", version, sha256, product, now_s(), hw_rev, min_from,
	    (int64_t)forced);
	if (step == DB_FOREIGN_KEY) {
		snprintf(why, whylen, "no artifact %s", sha256);
		return catalog_fail(reg, OTAD_ERR_NOT_FOUND);
	}
	if (step == DB_CONSTRAINT) {
		snprintf(why, whylen, "release %s%s%s already exists", version,
		    product ? " for product " : "", product ? product : "");
		return catalog_fail(reg, OTAD_ERR_EXISTS);
	}
	if (step != DB_DONE)
		return catalog_db_fail(reg, why, whylen);
	*id = reg->returned;
	snprintf(what, sizeof(what), "release create %s artifact %s%s%s",
	    version, sha256, product ? " product " : "",
	    product ? product : "");
	return catalog_close(reg, what, why, whylen);
}

enum otad_err
registry_release_list(struct registry *reg, json_t **rows)
{
	return query_rows(reg->db, rows, "SELECT rel.id, rel.version,"
	    " rel.product, rel.kind, rel.chip, rel.hw_rev, rel.min_from, rel.artifact,"
	    " a.size, a.secure_version, rel.created,"
	    " (SELECT ro.state FROM rollout ro WHERE ro.release = rel.id"
	    " ORDER BY ro.id DESC LIMIT 1) AS rollout_state,"
	    " (SELECT count(*) FROM attempt WHERE release = rel.id AND"
	    " state = 'success') AS succeeded"
	    " FROM release rel JOIN artifact a ON a.sha256 = rel.artifact"
	    " ORDER BY rel.created, rel.id", ARGS_END);
}

/*
 * The one release of version (narrowed by product and chip, NULL for
 * any) as a one-row array: id, product, chip, hw_rev, and how many active
 * rollouts it has. Inside an open catalog transaction; on error why says
 * what to do.
 */
enum otad_err
find_release(struct registry *reg, const char *version, const char *product,
    const char *chip, json_t **rows, char *why, size_t whylen)
{
	enum otad_err rc;

	/* "" matches anything: product and chip narrow the choice */
	rc = query_rows(reg->db, rows, "SELECT id, product, chip, hw_rev,"
	    " (SELECT count(*) FROM rollout WHERE release = release.id"
	    " AND state = 'active') AS active FROM release"
	    " WHERE version = ?1 AND (?2 = '' OR product = ?2)"
	    " AND (?3 = '' OR chip = ?3)", version, product ? product : "",
	    chip ? chip : "", ARGS_END);
	if (rc != OTAD_OK) {
		snprintf(why, whylen, "database: %s", otad_strerror(rc));
		return rc;
	}
	if (json_array_size(*rows) == 1)
		return OTAD_OK;
	rc = json_array_size(*rows) == 0 ? OTAD_ERR_NOT_FOUND
					  : OTAD_ERR_INVALID;
	snprintf(why, whylen, rc == OTAD_ERR_NOT_FOUND
	    ? "no release %s%s%s (create it with 'otactl release create')"
	    : "several releases are version %s; name one with --product or "
	    "--chip", version,
	    product && rc == OTAD_ERR_NOT_FOUND ? " for product " : "",
	    product && rc == OTAD_ERR_NOT_FOUND ? product : "");
	json_decref(*rows);
	*rows = NULL;
	return rc;
}

enum otad_err
registry_release_publish(struct registry *reg, const char *version,
    const char *product, const char *chip, int64_t *rollout_id,
    int *awaiting_approval, char *why, size_t whylen)
{
	char what[160];
	json_t *rows, *rel;
	int64_t release_id;
	enum otad_err rc;

	*awaiting_approval = 0;
	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK)
		return rc;
	if ((rc = find_release(reg, version, product, chip, &rows, why,
	    whylen)) != OTAD_OK)
		return catalog_fail(reg, rc);
	rel = json_array_get(rows, 0);
	release_id = json_integer_value(json_object_get(rel, "id"));
	if (json_integer_value(json_object_get(rel, "active")) > 0) {
		snprintf(why, whylen, "release %s is already being offered",
		    version);
		json_decref(rows);
		return catalog_fail(reg, OTAD_ERR_EXISTS);
	}
	json_decref(rows);
	/* a publish is a rollout with no rings; it may wait for approval */
	if (run(reg, "INSERT INTO rollout (release, state, created,"
	    " created_by) VALUES (?1, 'draft', ?2, nullif(?3, '')) RETURNING id", "iit",
	    release_id, now_s(), reg->who) != DB_DONE)
		return catalog_db_fail(reg, why, whylen);
	*rollout_id = reg->returned;
	snprintf(what, sizeof(what), "release publish %s (rollout %lld)",
	    version, (long long)*rollout_id);
	if (reg->approvals >= 2 && reg->break_glass[0] == '\0') {
		*awaiting_approval = 1;
		snprintf(what + strlen(what), sizeof(what) - strlen(what),
		    ", awaiting approval");
		return catalog_close(reg, what, why, whylen);
	}
	if (!may_start_alone(reg, what, why, whylen) ||
	    (rc = start_rollout(reg, *rollout_id, why, whylen)) != OTAD_OK)
		return catalog_fail(reg, OTAD_ERR_DB);
	return catalog_close(reg, what, why, whylen);
}

enum otad_err
registry_key_add(struct registry *reg, const char *name, const char *algo,
    const char *purpose, const char *public_pem, const char *fingerprint,
    int server_held, char *why, size_t whylen)
{
	char what[256];
	enum otad_err rc;
	int step;

	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK)
		return rc;
	step = run(reg, "INSERT INTO signing_key (name, algo, purpose,"
	    " public_key, fingerprint, server_held, created) VALUES (?1, ?2,"
	    " ?3, ?4, ?5, ?6, ?7)", "tttttii", name, algo, purpose, public_pem,
	    fingerprint, (int64_t)server_held, now_s());
	if (step == DB_CONSTRAINT) {
		snprintf(why, whylen, "a key named '%s', or this same key, is "
		    "already there", name);
		return catalog_fail(reg, OTAD_ERR_EXISTS);
	}
	if (step != DB_DONE)
		return catalog_db_fail(reg, why, whylen);
	snprintf(what, sizeof(what), "key add %s %s %s%s fingerprint %.16s",
	    name, purpose, algo, server_held ? " server-held" : "",
	    fingerprint);
	return catalog_close(reg, what, why, whylen);
}

enum otad_err
registry_key_get(struct registry *reg, const char *name, json_t **row,
    char *why, size_t whylen)
{
	json_t *rows;
	enum otad_err rc;

	*row = NULL;
	if ((rc = query_rows(reg->db, &rows, "SELECT name, algo, purpose,"
	    " public_key, fingerprint, server_held, state, created, revoked_at"
	    " FROM signing_key WHERE name = ?1", name, ARGS_END)) != OTAD_OK) {
		snprintf(why, whylen, "database: %s", otad_strerror(rc));
		return rc;
	}
	if (json_array_size(rows) == 0) {
		json_decref(rows);
		snprintf(why, whylen, "no key '%s'", name);
		return OTAD_ERR_NOT_FOUND;
	}
	*row = json_incref(json_array_get(rows, 0));
	json_decref(rows);
	return OTAD_OK;
}

enum otad_err
registry_key_list(struct registry *reg, json_t **rows)
{
	return query_rows(reg->db, rows, "SELECT name, algo, purpose, state,"
	    " server_held, fingerprint, public_key, created, revoked_at,"
	    " (SELECT count(*) FROM signature WHERE key = name) AS signatures"
	    " FROM signing_key ORDER BY created, name", ARGS_END);
}

enum otad_err
registry_keys_active(struct registry *reg, const char *purpose,
    json_t **rows)
{
	return query_rows(reg->db, rows, "SELECT name, algo, public_key FROM"
	    " signing_key WHERE purpose = ?1 AND state = 'active'"
	    " ORDER BY name", purpose, ARGS_END);
}

enum otad_err
registry_key_revoke(struct registry *reg, const char *name, char *why,
    size_t whylen)
{
	enum otad_err rc;
	json_t *row;

	if ((rc = catalog_open(reg, why, whylen)) != OTAD_OK)
		return rc;
	if (run(reg, "UPDATE signing_key SET state = 'revoked', revoked_at ="
	    " ?2 WHERE name = ?1 AND state != 'revoked'", "ti", name,
	    now_s()) != DB_DONE)
		return catalog_db_fail(reg, why, whylen);
	if (db_changes(reg->db) == 0) {
		catalog_fail(reg, OTAD_OK);
		if (registry_key_get(reg, name, &row, why, whylen) != OTAD_OK)
			return OTAD_ERR_NOT_FOUND;
		json_decref(row);
		snprintf(why, whylen, "key '%s' is already revoked", name);
		return OTAD_ERR_EXISTS;
	}
	/* the trigger wrote the audit row, with our name on it */
	if ((rc = catalog_commit(reg)) != OTAD_OK) {
		snprintf(why, whylen, "database: %s", otad_strerror(rc));
		return catalog_fail(reg, rc);
	}
	return OTAD_OK;
}
