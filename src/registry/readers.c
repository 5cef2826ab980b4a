/*
 * registry/readers.c: the read connections each HTTP thread keeps, with
 * their prepared statements: a device's row, its refusals, its token,
 * the offers and stepping stones the snapshot is built from.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "log.h"
#include "registry.h"
#include "semver.h"
#include "registry_impl.h"

static const char *const rsql[R_COUNT] = {
	[R_DEVICE] = "SELECT" DEVICE_ROW_COLUMNS " FROM device WHERE id = ?1",
	/* only when an offer is about to be made (see registry.h) */
	[R_REFUSAL] = "SELECT coalesce(p.release, 0), coalesce(p.from_version,"
		      " ''), coalesce((SELECT release FROM attempt WHERE device ="
		      " ?1 AND state = 'rollback' ORDER BY id DESC LIMIT 1), 0),"
		      " coalesce(CAST(p.state = 'installed' AS INTEGER), 0),"
		      " coalesce(p.delivered_at,"
		      " -1) FROM (SELECT 1) one LEFT JOIN (SELECT release,"
		      " from_version, state, delivered_at FROM attempt WHERE"
		      " device = ?1 AND state IN ('downloading', 'installed') AND"
		      " (state = 'installed' OR delivered = 1) ORDER BY id DESC"
		      " LIMIT 1) p ON true",
	[R_TOKEN] = "SELECT id FROM device WHERE token_hash = ?1",
	[R_RUNNING] = "SELECT chip, version, secure_version, sha256 FROM artifact"
		      " WHERE app_sha256 = ?1 LIMIT 1",
	[R_DATA_VERSION] = "PRAGMA data_version",
	[R_GENERATION] = "SELECT generation, devices FROM catalog WHERE id = 1",
	/* after the offer columns: what the rollout's plan says now */
	[R_OFFERS] = "SELECT ro.id," OFFER_COLUMNS ", ro.staged, ro.stage,"
		     " coalesce(ro.window, ''), coalesce(ro.days, ''),"
		     " coalesce(ro.utc_offset, ''), coalesce(ro.min_battery, -1),"
		     " ro.downgrade, (ro.staged = 0 OR ro.state = 'completed'),"
		     " coalesce((SELECT hr.version FROM rollout h JOIN release hr"
		     " ON hr.id = h.release WHERE h.id = ro.revert_of), '')"
		     " FROM rollout ro"
		     " JOIN release rel ON rel.id = ro.release" OFFER_JOINS
		     " WHERE ro.state = 'active' OR (ro.state = 'completed'"
		     " AND ro.baseline = 1)",
	/* it could not apply a patch of this release: the full image next */
	[R_DELTA_FAILED] = "SELECT 1 FROM attempt WHERE device = ?1 AND"
			   " release = ?2 AND state = 'failed' AND reason ="
			   " 'delta' LIMIT 1",
	/* the image of the download a device has under way */
	[R_OPEN_ARTIFACT] = "SELECT r.artifact FROM attempt t JOIN release r"
			    " ON r.id = t.release WHERE t.device = ?1 AND"
			    " t.state IN ('offered', 'downloading') ORDER BY"
			    " t.id DESC LIMIT 1",
	[R_TRIGGERED] = "SELECT 1 FROM trigger WHERE device = ?1 AND"
			" release = ?2",
	[R_STAGES] = "SELECT coalesce(grp, ''), percent, CASE WHEN devices IS"
		     " NULL THEN -1 ELSE coalesce(cut_ring, -1) END,"
		     " coalesce(cut_device, '') FROM rollout_stage"
		     " WHERE rollout = ?1 AND no <= ?2 ORDER BY no",
	[R_STONES] = "SELECT 0," OFFER_COLUMNS " FROM release rel" OFFER_JOINS,
	[R_RELEASED] = "SELECT 0," OFFER_COLUMNS " FROM release rel"
		       OFFER_JOINS " WHERE a.sha256 = ?1 ORDER BY rel.id DESC"
		       " LIMIT 1",
};

enum otad_err
registry_reader_open(const char *path, struct registry_reader **out)
{
	struct registry_reader *r;
	enum otad_err rc;
	int i;

	*out = NULL;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return OTAD_ERR_NOMEM;
	r->data_version = -1;
	if ((rc = connect_db(path, DB_READ_WRITE, &r->db)) != OTAD_OK)
		goto fail;
	if ((rc = exec(r->db, db_backend(r->db) == DB_POSTGRES ?
	    "SET default_transaction_read_only = on" :
	    "PRAGMA query_only = ON")) != OTAD_OK)
		goto fail;
	for (i = 0; i < R_COUNT; i++) {
		/* PostgreSQL has no data_version: the generation is read */
		if (i == R_DATA_VERSION && db_backend(r->db) == DB_POSTGRES)
			continue;
		if (db_prepare(r->db, rsql[i], 1, &r->s[i]) != DB_OK) {
			rc = db_error(r->db, "cannot prepare statement");
			goto fail;
		}
	}
	*out = r;
	return OTAD_OK;
fail:
	registry_reader_free(r);
	return rc;
}

void
registry_reader_free(struct registry_reader *r)
{
	int i;

	if (r == NULL)
		return;
	for (i = 0; i < R_COUNT; i++)
		db_finalize(r->s[i]);
	db_close(r->db);
	free(r);
}

static void
copy_col(char *dst, size_t len, struct db_stmt *st, int col)
{
	const char *s = db_column_text(st, col);

	snprintf(dst, len, "%s", s ? s : "");
}

/*
 * One row by key through a prepared reader statement: fill copies its
 * columns. OTAD_ERR_NOT_FOUND when there is none.
 */
static enum otad_err
point_lookup(struct registry_reader *r, enum rstmt which, const char *key,
    void (*fill)(struct db_stmt *, void *), void *out, const char *what)
{
	struct db_stmt *st = r->s[which];
	enum otad_err rc = OTAD_ERR_NOT_FOUND;
	int step;

	db_bind_text(st, 1, key);
	step = db_step(st);
	if (step == DB_ROW) {
		fill(st, out);
		rc = OTAD_OK;
	} else if (step != DB_DONE) {
		rc = db_error(r->db, what);
	}
	db_reset(st);
	return rc;
}

void
device_row_from(struct db_stmt *st, struct device_row *out)
{
	copy_col(out->version, sizeof(out->version), st, 0);
	copy_col(out->product, sizeof(out->product), st, 1);
	out->blocked = db_column_int(st, 2);
	copy_col(out->chip, sizeof(out->chip), st, 3);
	copy_col(out->hw_rev, sizeof(out->hw_rev), st, 4);
	out->secure_version = db_column_int64(st, 5);
	copy_col(out->token_hash, sizeof(out->token_hash), st, 6);
	copy_col(out->group, sizeof(out->group), st, 7);
	out->battery = db_column_int(st, 8);
	copy_col(out->running_sha256, sizeof(out->running_sha256), st, 9);
	copy_col(out->fs_version, sizeof(out->fs_version), st, 10);
	out->quarantined_until = db_column_int64(st, 11);
}

static void
fill_refusal(struct db_stmt *st, void *p)
{
	struct device_refusal *out = p;

	out->pending_release = db_column_int64(st, 0);
	copy_col(out->pending_from, sizeof(out->pending_from), st, 1);
	out->rolled_back_release = db_column_int64(st, 2);
	out->pending_installed = db_column_int(st, 3);
	out->pending_delivered_at = db_column_int64(st, 4);
}

enum otad_err
registry_device_refusal(struct registry_reader *r, const char *id,
    struct device_refusal *out)
{
	return point_lookup(r, R_REFUSAL, id, fill_refusal, out,
	    "attempt lookup");
}

struct id_buf {
	char *id;
	size_t len;
};

static void
fill_id(struct db_stmt *st, void *p)
{
	struct id_buf *b = p;

	copy_col(b->id, b->len, st, 0);
}

enum otad_err
registry_token_owner(struct registry_reader *r, const char *token_hash,
    char *id, size_t idlen)
{
	struct id_buf b = {id, idlen};

	return point_lookup(r, R_TOKEN, token_hash, fill_id, &b,
	    "token lookup");
}

static void
fill_device(struct db_stmt *st, void *p)
{
	device_row_from(st, p);
}

void
registry_reader_share_cache(struct registry_reader *r, struct registry *reg)
{
	r->cache = reg->cache;
}

enum otad_err
registry_device_get(struct registry_reader *r, const char *id,
    struct device_row *out)
{
	/* the writer keeps every row it wrote or loaded; a miss reads */
	if (r->cache != NULL && devcache_get(r->cache, id, out))
		return OTAD_OK;
	return point_lookup(r, R_DEVICE, id, fill_device, out,
	    "device lookup");
}

static void
fill_running(struct db_stmt *st, void *p)
{
	struct running_image *out = p;

	copy_col(out->chip, sizeof(out->chip), st, 0);
	copy_col(out->version, sizeof(out->version), st, 1);
	out->secure_version = (uint32_t)db_column_int64(st, 2);
	copy_col(out->sha256, sizeof(out->sha256), st, 3);
}

static void
fill_sha(struct db_stmt *st, void *p)
{
	copy_col(p, 65, st, 0);
}

enum otad_err
registry_open_artifact(struct registry_reader *r, const char *device,
    char *sha256)
{
	return point_lookup(r, R_OPEN_ARTIFACT, device, fill_sha, sha256,
	    "download lookup");
}

enum otad_err
registry_running_image(struct registry_reader *r, const char *app_sha256,
    struct running_image *out)
{
	return point_lookup(r, R_RUNNING, app_sha256, fill_running, out,
	    "running image lookup");
}

enum otad_err
registry_catalog_generation(struct registry_reader *r, int64_t *generation)
{
	struct db_stmt *st = r->s[R_DATA_VERSION];
	int64_t dv = r->data_version + 1, edits;

	/*
	 * SQLite says whether anyone wrote since the last look, without a
	 * read; PostgreSQL's generation is read each time (once a tick).
	 */
	if (st != NULL) {
		if (db_step(st) != DB_ROW) {
			db_reset(st);
			return db_error(r->db, "data_version");
		}
		dv = db_column_int64(st, 0);
		db_reset(st);
	}
	if (dv != r->data_version) {
		st = r->s[R_GENERATION];
		if (db_step(st) != DB_ROW) {
			db_reset(st);
			return db_error(r->db, "catalog generation");
		}
		r->generation = db_column_int64(st, 0);
		edits = db_column_int64(st, 1);
		db_reset(st);
		r->data_version = dv;
		/*
		 * An edit outside the writer (a device blocked, grouped, given
		 * a token, by otactl or by hand): the device rows in memory go,
		 * before the daemon says it serves the change.
		 */
		if (edits != r->device_edits && r->cache != NULL)
			devcache_clear(r->cache);
		r->device_edits = edits;
	}
	*generation = r->generation;
	return OTAD_OK;
}

static int
offer_newest_first(const void *a, const void *b)
{
	const struct offer *x = a, *y = b;
	int c = semver_compare(y->version, x->version);

	if (c != 0)
		return c;
	/* a revert first: its devices must not stop at the baseline */
	if ((x->only_version[0] != '\0') != (y->only_version[0] != '\0'))
		return x->only_version[0] != '\0' ? -1 : 1;
	return y->rollout_id > x->rollout_id ? 1 : -1;
}

static void
offer_row(struct db_stmt *st, struct offer *o)
{
	memset(o, 0, sizeof(*o));
	o->rollout_id = db_column_int64(st, 0);
	o->release_id = db_column_int64(st, 1);
	copy_col(o->version, sizeof(o->version), st, 2);
	copy_col(o->product, sizeof(o->product), st, 3);
	copy_col(o->sha256, sizeof(o->sha256), st, 4);
	copy_col(o->md5, sizeof(o->md5), st, 5);
	o->size = (uint64_t)db_column_int64(st, 6);
	copy_col(o->chip, sizeof(o->chip), st, 7);
	copy_col(o->hw_rev, sizeof(o->hw_rev), st, 8);
	o->secure_version = (uint32_t)db_column_int64(st, 9);
	copy_col(o->key_id, sizeof(o->key_id), st, 10);
	if (db_column_type(st, 11) == DB_BLOB &&
	    (size_t)db_column_bytes(st, 11) <= sizeof(o->sig)) {
		o->siglen = (size_t)db_column_bytes(st, 11);
		memcpy(o->sig, db_column_blob(st, 11), o->siglen);
	} else {
		o->key_id[0] = '\0';
	}
	copy_col(o->min_from, sizeof(o->min_from), st, 12);
	o->forced = db_column_int(st, 13);
	o->kind = (enum artifact_kind)fsimg_kind_parse(
	    db_column_text(st, 14));
	if ((int)o->kind < 0)
		o->kind = KIND_APP; /* the CHECK constraint allows no other */
	/* a release on its own reaches everyone, any time */
	o->ring_max = 10000;
	o->cut_ring = -1;
	o->everyone = 1;
	o->window.start = o->window.end = -1;
	o->min_battery = -1;
}

/*
 * The plan columns of an R_OFFERS row, and the stages reached so far.
 * A plan edited by hand into nonsense closes the window rather than
 * open it wider than the operator meant.
 */
static void
offer_plan(struct registry_reader *r, struct db_stmt *row, struct offer *o)
{
	struct db_stmt *st = r->s[R_STAGES];
	const char *w, *d, *off;

	o->stage = db_column_int(row, 16);
	w = db_column_text(row, 17);
	d = db_column_text(row, 18);
	off = db_column_text(row, 19);
	o->min_battery = db_column_int(row, 20);
	o->downgrade = db_column_int(row, 21);
	o->everyone = db_column_int(row, 22);
	copy_col(o->only_version, sizeof(o->only_version), row, 23);
	/* a revert goes out whatever the windows: it is the way back */
	if (o->only_version[0] != '\0')
		o->forced = 1;
	if ((w[0] && stages_parse_window(w, &o->window) < 0) ||
	    (d[0] && stages_parse_days(d, &o->window.days) < 0) ||
	    (off[0] && stages_parse_offset(off, &o->window.offset_min) < 0)) {
		log_warnx("rollout %lld: unreadable window '%s' days '%s' "
		    "offset '%s'; offering nothing until it is fixed",
		    (long long)o->rollout_id, w, d, off);
		o->ring_max = 0; /* reaches no one */
		return;
	}
	if (db_column_int(row, 15) == 0)
		return; /* a publish: everyone */
	o->ring_max = 0;
	db_bind_int64(st, 1, o->rollout_id);
	db_bind_int64(st, 2, o->stage);
	while (db_step(st) == DB_ROW) {
		const char *g = db_column_text(st, 0);
		unsigned pct = (unsigned)(db_column_double(st, 1) * 100 +
		    0.5);

		if (g[0] != '\0' && o->ngroups < 4)
			snprintf(o->groups[o->ngroups++],
			    sizeof(o->groups[0]), "%s", g);
		int cut = db_column_int(st, 2);

		if (pct > o->ring_max)
			o->ring_max = pct;
		/* counts only widen: the last cut reached is the widest */
		if (cut >= 0) {
			o->cut_ring = cut;
			copy_col(o->cut_device, sizeof(o->cut_device), st, 3);
		}
	}
	db_reset(st);
}

/* Every row of an offer-shaped statement, newest version first. */
static enum otad_err
load_offer_rows(struct registry_reader *r, enum rstmt which,
    struct offer **offers, size_t *n)
{
	struct db_stmt *st = r->s[which];
	struct offer *v = NULL, *grown;
	size_t len = 0, cap = 0;
	enum otad_err rc = OTAD_OK;
	int step;

	while ((step = db_step(st)) == DB_ROW) {
		if (len == cap) {
			cap = cap ? cap * 2 : 8;
			if ((grown = realloc(v, cap * sizeof(*v))) == NULL) {
				rc = OTAD_ERR_NOMEM;
				break;
			}
			v = grown;
		}
		offer_row(st, &v[len]);
		if (which == R_OFFERS)
			offer_plan(r, st, &v[len]);
		len++;
	}
	if (rc == OTAD_OK && step != DB_DONE)
		rc = db_error(r->db, "loading offers");
	db_reset(st);
	if (rc != OTAD_OK) {
		free(v);
		return rc;
	}
	if (len > 1)
		qsort(v, len, sizeof(*v), offer_newest_first);
	*offers = v;
	*n = len;
	return OTAD_OK;
}

static void
fill_offer(struct db_stmt *st, void *p)
{
	offer_row(st, p);
}

enum otad_err
registry_released_artifact(struct registry_reader *r, const char *sha256,
    struct offer *out)
{
	return point_lookup(r, R_RELEASED, sha256, fill_offer, out,
	    "artifact lookup");
}

enum otad_err
registry_load_offers(struct registry_reader *r, struct offer **offers,
    size_t *n)
{
	return load_offer_rows(r, R_OFFERS, offers, n);
}

enum otad_err
registry_load_stones(struct registry_reader *r, struct offer **stones,
    size_t *n)
{
	return load_offer_rows(r, R_STONES, stones, n);
}
