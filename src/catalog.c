/* catalog.c: the operator actions otactl and the management API share */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "espimg.h"
#include "log.h"
#include "sbv2.h"
#include "semver.h"
#include "stages.h"

enum otad_err
catalog_trusted_key(struct registry *reg, const char *name,
    const char *purpose, struct sign_key **out, char *why, size_t whylen)
{
	const char *pem;
	enum otad_err rc;
	json_t *row;

	*out = NULL;
	if ((rc = registry_key_get(reg, name, &row, why, whylen)) != OTAD_OK)
		return rc;
	if (strcmp(json_string_value(json_object_get(row, "purpose")),
	    purpose) != 0 || strcmp(json_string_value(json_object_get(row,
	    "state")), "active") != 0) {
		json_decref(row);
		snprintf(why, whylen, "key '%s' is not an active %s key", name,
		    purpose);
		return OTAD_ERR_INVALID;
	}
	pem = json_string_value(json_object_get(row, "public_key"));
	rc = sign_key_from_pem(pem, strlen(pem), 0, out, why, whylen);
	json_decref(row);
	return rc;
}

/* The active secure-boot keys as sbv2 judges blocks: name and digest. */
struct sb_keys {
	json_t *rows;
	struct sbv2_trusted *t;
	char (*digest)[65];
	size_t n;
};

static void
sb_keys_free(struct sb_keys *k)
{
	free(k->t);
	free(k->digest);
	json_decref(k->rows);
	memset(k, 0, sizeof(*k));
}

static enum otad_err
sb_keys_load(struct registry *reg, struct sb_keys *k, char *why,
    size_t whylen)
{
	enum sbv2_scheme scheme;
	size_t i;

	memset(k, 0, sizeof(*k));
	if (registry_keys_active(reg, "secure-boot", &k->rows) != OTAD_OK) {
		snprintf(why, whylen, "cannot read the secure boot keys");
		return OTAD_ERR_DB;
	}
	k->n = json_array_size(k->rows);
	if ((k->t = calloc(k->n + 1, sizeof(*k->t))) == NULL ||
	    (k->digest = calloc(k->n + 1, sizeof(*k->digest))) == NULL) {
		sb_keys_free(k);
		return OTAD_ERR_NOMEM;
	}
	for (i = 0; i < k->n; i++) {
		json_t *row = json_array_get(k->rows, i);
		const char *pem = json_string_value(json_object_get(row,
		    "public_key"));

		k->t[i].name = json_string_value(json_object_get(row, "name"));
		k->t[i].digest = k->digest[i];
		if (sbv2_key_digest(pem, strlen(pem), &scheme, k->digest[i],
		    why, whylen) != OTAD_OK) {
			sb_keys_free(k);
			return OTAD_ERR_INVALID;
		}
	}
	return OTAD_OK;
}

/*
 * With secure boot keys configured, one of the image's Secure Boot v2
 * blocks must carry one of them, verify over the image as the bootloader
 * computes it, and be of a scheme the image's chip verifies: the
 * bootloader would refuse it otherwise.
 */
static enum otad_err
check_secure_boot(struct registry *reg, const uint8_t *img, size_t len,
    char *why, size_t whylen)
{
	struct sbv2_verdict verdicts[ESPIMG_SIG_BLOCKS_MAX];
	struct espimg_info info;
	struct sb_keys keys;
	char reason[256];
	enum otad_err rc;

	if ((rc = sb_keys_load(reg, &keys, why, whylen)) != OTAD_OK)
		return rc;
	if (keys.n == 0) {
		sb_keys_free(&keys);
		return OTAD_OK;
	}
	if ((rc = espimg_parse(img, len, &info, why, whylen)) != OTAD_OK) {
		sb_keys_free(&keys);
		return rc;
	}
	if (info.nsig == 0) {
		sb_keys_free(&keys);
		snprintf(why, whylen, "secure boot keys are configured and the "
		    "image carries no Secure Boot v2 signature: the bootloader "
		    "would refuse it");
		return OTAD_ERR_INVALID;
	}
	rc = sbv2_check_image(&info, img, len, keys.t, keys.n, verdicts,
	    reason, sizeof(reason));
	sb_keys_free(&keys);
	if (rc != OTAD_OK)
		snprintf(why, whylen, "secure boot: %s: the bootloader would "
		    "refuse the image", reason);
	return rc;
}

/*
 * The product version: the one given, else the descriptor's when it
 * means something. NULL with the reason in why.
 */
static const char *
artifact_version(const struct catalog_artifact *a,
    const struct espimg_info *img, char *why, size_t whylen)
{
	if (a->version != NULL)
		return a->version;
	if (a->kind != KIND_APP) {
		snprintf(why, whylen, "a %s image says nothing of its version: "
		    "give one", fsimg_kind_name(a->kind));
		return NULL;
	}
	if (espimg_version_is_generic(img)) {
		snprintf(why, whylen, "the image's own version '%s' is the "
		    "same for every build of '%s', not the product's; give "
		    "--version", img->version, img->project_name);
		return NULL;
	}
	if (!semver_valid(img->version)) {
		snprintf(why, whylen, "the image's own version '%s' is not "
		    "usable; give --version", img->version);
		return NULL;
	}
	return img->version;
}

/* Checks on the ingested temp file, before it may get its name. */
static enum otad_err
check_ingested(struct registry *reg, const struct store_artifact *art,
    const struct catalog_artifact *a, char *why, size_t whylen)
{
	struct sign_key *key = NULL;
	enum otad_err rc = OTAD_OK;
	void *img;

	if (a->key != NULL && (rc = catalog_trusted_key(reg, a->key,
	    "artifact", &key, why, whylen)) != OTAD_OK)
		return rc;
	img = mmap(NULL, (size_t)art->size, PROT_READ, MAP_PRIVATE, art->tmp,
	    0);
	if (img == MAP_FAILED) {
		sign_key_free(key);
		snprintf(why, whylen, "cannot read the file back");
		return OTAD_ERR_IO;
	}
	if (key != NULL && sign_verify(key, img, (size_t)art->size, a->sig,
	    a->siglen) != OTAD_OK) {
		snprintf(why, whylen, "the signature does not verify with key "
		    "'%s'", a->key);
		rc = OTAD_ERR_INVALID;
	} else if (a->kind == KIND_APP) {
		/* a bootloader checks apps, not file systems */
		rc = check_secure_boot(reg, img, (size_t)art->size, why,
		    whylen);
	}
	munmap(img, (size_t)art->size);
	sign_key_free(key);
	return rc;
}

/* Record the published artifact, or accept it as the same one again. */
static enum otad_err
record(struct registry *reg, const struct store_artifact *art,
    const char *version, const struct catalog_artifact *a, char *why,
    size_t whylen)
{
	char recorded[OTAD_VERSION_MAX + 1];
	enum otad_err rc;
	json_t *row;

	rc = registry_artifact_add(reg, art, version, a->product, a->key,
	    a->sig, a->siglen, why, whylen);
	if (rc != OTAD_ERR_EXISTS)
		return rc;
	/* the same file again: fine if it says the same thing */
	if ((rc = registry_artifact_get(reg, art->sha256, &row, why,
	    whylen)) != OTAD_OK)
		return rc;
	snprintf(recorded, sizeof(recorded), "%s",
	    json_string_value(json_object_get(row, "version")));
	json_decref(row);
	if (strcmp(recorded, version) != 0) {
		snprintf(why, whylen, "artifact %s is already in the store as "
		    "version %s", art->sha256, recorded);
		return OTAD_ERR_EXISTS;
	}
	if (a->key != NULL)
		return registry_signature_add(reg, art->sha256, a->key, a->sig,
		    a->siglen, why, whylen);
	return OTAD_OK;
}

enum otad_err
catalog_artifact_add(struct registry *reg, struct store *store, int fd,
    const struct catalog_artifact *a, char sha256[65], char *why,
    size_t whylen)
{
	struct store_artifact art;
	const char *version;
	enum otad_err rc;
	int existed;

	if ((a->key == NULL) != (a->sig == NULL)) {
		snprintf(why, whylen, "a signature and its key go together");
		return OTAD_ERR_INVALID;
	}
	if (a->version != NULL && !semver_valid(a->version)) {
		snprintf(why, whylen, "invalid version '%s': 1 to 64 printable "
		    "characters, no spaces", a->version);
		return OTAD_ERR_INVALID;
	}
	if ((rc = store_ingest(store, fd, a->kind, &art, why, whylen)) !=
	    OTAD_OK)
		return rc;
	/* every check before the file gets its name: a refusal leaves none */
	if ((version = artifact_version(a, &art.image, why, whylen)) == NULL)
		rc = OTAD_ERR_INVALID;
	else if ((rc = check_ingested(reg, &art, a, why, whylen)) == OTAD_OK &&
	    (rc = store_publish(store, &art, &existed, why, whylen)) ==
	    OTAD_OK)
		rc = record(reg, &art, version, a, why, whylen);
	if (rc == OTAD_OK)
		memcpy(sha256, art.sha256, 65);
	/*
	 * Recorded, the sweep may judge it; refused after publishing, the
	 * file stays for the sweep too (another add may have recorded it).
	 */
	store_artifact_release(&art);
	return rc;
}

json_t *
catalog_secure_boot_blocks(struct registry *reg, struct store *store,
    const char *sha256)
{
	struct sbv2_verdict v[ESPIMG_SIG_BLOCKS_MAX];
	struct espimg_info info;
	struct sb_keys keys;
	json_t *out = json_array();
	char why[256];
	size_t len;
	uint8_t *img;
	unsigned i;
	int fd;
	off_t end;

	if ((fd = store_open_artifact(store, sha256)) < 0)
		return out;
	end = lseek(fd, 0, SEEK_END);
	len = end > 0 ? (size_t)end : 0;
	img = len > 0 ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) :
	    MAP_FAILED;
	close(fd);
	if (img == MAP_FAILED)
		return out;
	if (espimg_parse(img, len, &info, why, sizeof(why)) != OTAD_OK ||
	    info.nsig == 0 || sb_keys_load(reg, &keys, why, sizeof(why)) !=
	    OTAD_OK) {
		munmap(img, len);
		return out;
	}
	(void)sbv2_check_image(&info, img, len, keys.t, keys.n, v, why,
	    sizeof(why));
	for (i = 0; i < info.nsig; i++) {
		int known = v[i].block.raw != NULL;
		int good = v[i].verified && v[i].chip_verifies;

		json_array_append_new(out, json_pack("{s:I,s:s?,s:s?,s:s?,"
		    "s:b,s:s?}", "block", (json_int_t)i, "scheme", known ?
		    sbv2_scheme_name(v[i].block.scheme) : NULL, "key_digest",
		    known ? v[i].block.key_digest : NULL, "trusted_key",
		    v[i].key, "verified", good, "why_not", good ? NULL :
		    v[i].why));
	}
	sb_keys_free(&keys);
	munmap(img, len);
	return out;
}

enum otad_err
catalog_key_list(struct registry *reg, json_t **rows)
{
	enum sbv2_scheme scheme;
	char digest[65], why[256];
	enum otad_err rc;
	json_t *row;
	size_t i;

	if ((rc = registry_key_list(reg, rows)) != OTAD_OK)
		return rc;
	/* a secure boot key as the eFuse holds it, to compare on a device */
	json_array_foreach(*rows, i, row) {
		const char *pem = json_string_value(json_object_get(row,
		    "public_key"));

		if (strcmp(json_string_value(json_object_get(row, "purpose")),
		    "secure-boot") == 0 && pem != NULL &&
		    sbv2_key_digest(pem, strlen(pem), &scheme, digest, why,
		    sizeof(why)) == OTAD_OK)
			json_object_set_new(row, "efuse_digest",
			    json_string(digest));
		json_object_del(row, "public_key");
	}
	return OTAD_OK;
}

int
catalog_valid_name(const char *name)
{
	size_t n;

	for (n = 0; name[n] != '\0'; n++) {
		char c = name[n];

		if (n >= OTAD_ID_MAX || !((c >= 'a' && c <= 'z') ||
		    (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.'))
			return 0;
	}
	return n > 0 && name[0] != '.';
}

/* Printable ASCII, no spaces, 1 to 64: products, hardware revisions. */
static int
valid_word(const char *s)
{
	size_t n;

	for (n = 0; s[n] != '\0'; n++)
		if (n >= OTAD_PRODUCT_MAX || s[n] <= 0x20 || s[n] >= 0x7f)
			return 0;
	return n > 0;
}

static enum otad_err
invalid(char *why, size_t whylen, const char *what, const char *value)
{
	snprintf(why, whylen, "invalid %s '%s'", what, value);
	return OTAD_ERR_INVALID;
}

enum otad_err
catalog_release_create(struct registry *reg, const struct catalog_release *r,
    int require_signature, int64_t *id, char *sha256, char *why,
    size_t whylen)
{
	char aver[OTAD_VERSION_MAX + 1], chip[16];
	int64_t sv, released_sv;
	enum otad_err rc;
	json_t *art, *sigs;
	size_t nsigs;

	if (r->version == NULL || !semver_valid(r->version))
		return invalid(why, whylen, "version", r->version ?
		    r->version : "");
	if (r->artifact == NULL) {
		snprintf(why, whylen, "a release needs its artifact");
		return OTAD_ERR_INVALID;
	}
	if (r->product != NULL && !valid_word(r->product))
		return invalid(why, whylen, "product", r->product);
	if (r->hw_rev != NULL && !valid_word(r->hw_rev))
		return invalid(why, whylen, "hardware revision", r->hw_rev);
	if (r->min_from != NULL && (!semver_valid(r->min_from) ||
	    semver_compare(r->min_from, r->version) >= 0)) {
		snprintf(why, whylen, "--min-from %s must be older than the "
		    "release %s", r->min_from, r->version);
		return OTAD_ERR_INVALID;
	}
	if ((rc = registry_artifact_get(reg, r->artifact, &art, why,
	    whylen)) != OTAD_OK)
		return rc;
	snprintf(sha256, 65, "%s", json_string_value(json_object_get(art,
	    "sha256")));
	snprintf(aver, sizeof(aver), "%s", json_string_value(json_object_get(
	    art, "version")));
	snprintf(chip, sizeof(chip), "%s", json_string_value(json_object_get(
	    art, "chip")));
	sv = json_integer_value(json_object_get(art, "secure_version"));
	json_decref(art);
	/* a release that says one version and ships another breaks "304" */
	if (strcmp(aver, r->version) != 0) {
		snprintf(why, whylen, "artifact %.12s is version %s, not %s",
		    sha256, aver, r->version);
		return OTAD_ERR_INVALID;
	}
	if (require_signature) {
		if (registry_artifact_signatures(reg, sha256, &sigs) !=
		    OTAD_OK) {
			snprintf(why, whylen, "cannot read signatures");
			return OTAD_ERR_DB;
		}
		nsigs = json_array_size(sigs);
		json_decref(sigs);
		if (nsigs == 0) {
			snprintf(why, whylen, "artifact %.12s is not signed by a "
			    "trusted key (otactl artifact sign, or artifact add "
			    "--signature); require_signature is on", sha256);
			return OTAD_ERR_INVALID;
		}
	}
	/* burning the anti-rollback eFuse cannot be undone: ask first */
	if (registry_released_secure_version(reg, r->product, chip,
	    &released_sv) != OTAD_OK) {
		snprintf(why, whylen, "cannot read released secure versions");
		return OTAD_ERR_DB;
	}
	if (released_sv < 0)
		released_sv = 0;
	if (sv > released_sv && !r->confirm_secure_version) {
		snprintf(why, whylen, "release %s raises secure_version from "
		    "%lld to %lld: a device that installs it burns its "
		    "anti-rollback eFuse and can never run an older image; add "
		    "--confirm-secure-version", r->version,
		    (long long)released_sv, (long long)sv);
		return OTAD_ERR_INVALID;
	}
	return registry_release_create(reg, r->version, sha256, r->product,
	    r->hw_rev, r->min_from, r->forced, id, why, whylen);
}

enum otad_err
catalog_rollout_create(struct registry *reg, const struct catalog_rollout *r,
    int64_t *id, size_t *nstages, char *why, size_t whylen)
{
	struct stage stages[STAGES_MAX];
	struct rollout_plan plan;
	char msg[200];
	struct window w;
	unsigned days;
	int off;

	if (r->version == NULL || !semver_valid(r->version))
		return invalid(why, whylen, "version", r->version ?
		    r->version : "");
	if (r->stages == NULL) {
		snprintf(why, whylen, "a rollout needs its stages, e.g. "
		    "\"group=canary,soak=24h,min=5; 10%%,soak=48h; 100%%\"");
		return OTAD_ERR_INVALID;
	}
	if (r->product != NULL && !valid_word(r->product))
		return invalid(why, whylen, "product", r->product);
	memset(&plan, 0, sizeof(plan));
	if (stages_parse(r->stages, stages, &plan.nstages, msg,
	    sizeof(msg)) < 0) {
		snprintf(why, whylen, "--stages: %s", msg);
		return OTAD_ERR_INVALID;
	}
	if (r->window != NULL && stages_parse_window(r->window, &w) < 0) {
		snprintf(why, whylen, "--window is HH:MM-HH:MM, not '%s'",
		    r->window);
		return OTAD_ERR_INVALID;
	}
	if (r->days != NULL && stages_parse_days(r->days, &days) < 0) {
		snprintf(why, whylen, "--days is like mon-thu or sat,sun, not "
		    "'%s'", r->days);
		return OTAD_ERR_INVALID;
	}
	if (r->utc_offset != NULL && stages_parse_offset(r->utc_offset,
	    &off) < 0) {
		snprintf(why, whylen, "--utc-offset is like +02:00 or -05:30, "
		    "not '%s'", r->utc_offset);
		return OTAD_ERR_INVALID;
	}
	plan.min_battery = -1;
	if (r->min_battery != NULL) {
		char *end;
		long v = strtol(r->min_battery, &end, 10);

		if (*r->min_battery == '\0' || *end != '\0' || v < 0 ||
		    v > 100) {
			snprintf(why, whylen, "--min-battery is a percentage, "
			    "not '%s'", r->min_battery);
			return OTAD_ERR_INVALID;
		}
		plan.min_battery = (int)v;
	}
	if (r->promote_window != NULL && strcmp(r->promote_window, "any") !=
	    0) {
		int offset_said;

		if (stages_parse_promote(r->promote_window, &w,
		    &offset_said) < 0) {
			snprintf(why, whylen, "--promote-window is like "
			    "'tue-thu 09:00-16:00' or '09:00-16:00 +01:00', "
			    "not '%s'", r->promote_window);
			return OTAD_ERR_INVALID;
		}
		plan.promote = r->promote_window;
	}
	if (r->on_halt != NULL && strcmp(r->on_halt, "hold") != 0 &&
	    strcmp(r->on_halt, "revert") != 0) {
		snprintf(why, whylen, "--on-halt is hold or revert, not '%s'",
		    r->on_halt);
		return OTAD_ERR_INVALID;
	}
	plan.on_halt_revert = r->on_halt != NULL && strcmp(r->on_halt,
	    "revert") == 0;
	plan.timeout_s = 600;
	if (r->timeout != NULL &&
	    (plan.timeout_s = stages_duration(r->timeout)) <= 0) {
		snprintf(why, whylen, "--timeout is a duration like 10m, not "
		    "'%s'", r->timeout);
		return OTAD_ERR_INVALID;
	}
	plan.version = r->version;
	plan.product = r->product;
	plan.chip = r->chip;
	plan.stages = stages;
	plan.window = r->window;
	plan.days = r->days;
	plan.utc_offset = r->utc_offset;
	plan.downgrade = r->downgrade;
	*nstages = plan.nstages;
	return registry_rollout_create(reg, &plan, id, why, whylen);
}

enum otad_err
catalog_key_add(struct registry *reg, const char *name, const char *pem,
    size_t len, int secure_boot, char *digest, char *warning, size_t warnlen,
    char *why, size_t whylen)
{
	enum sbv2_scheme scheme = SBV2_RSA3072;
	struct sign_key *key;
	char fp[65], *pub;
	enum otad_err rc;

	digest[0] = warning[0] = '\0';
	if (!catalog_valid_name(name))
		return invalid(why, whylen, "key name (1 to 64 of A-Z a-z 0-9 . "
		    "_ -)", name);
	if (secure_boot && (rc = sbv2_key_digest(pem, len, &scheme, digest,
	    why, whylen)) != OTAD_OK)
		return rc;
	if ((rc = sign_key_from_pem(pem, len, 0, &key, why, whylen)) !=
	    OTAD_OK)
		return rc;
	if (!secure_boot && strcmp(sign_key_algo(key), "ecdsa-p256") != 0 &&
	    strcmp(sign_key_algo(key), "ed25519") != 0) {
		snprintf(why, whylen, "artifact keys are ecdsa-p256 or ed25519, "
		    "not %s (%s keys are for --secure-boot)",
		    sign_key_algo(key), sign_key_algo(key));
		sign_key_free(key);
		return OTAD_ERR_INVALID;
	}
	rc = OTAD_ERR_NOMEM;
	if (sign_key_fingerprint(key, fp) == OTAD_OK &&
	    (pub = sign_key_public_pem(key)) != NULL) {
		rc = registry_key_add(reg, name, sign_key_algo(key),
		    secure_boot ? "secure-boot" : "artifact", pub, fp, 0, why,
		    whylen);
		free(pub);
	}
	sign_key_free(key);
	/* espsecure makes P-192 keys; the bootloaders refuse them */
	if (rc == OTAD_OK && scheme == SBV2_ECDSA_P192 && secure_boot)
		snprintf(warning, warnlen, "current ESP-IDF bootloaders refuse "
		    "ECDSA P-192 signatures (only the ESP32-C2 ROM verifies "
		    "them): images signed with '%s' are verified here but may "
		    "not boot", name);
	return rc;
}

/* A whole small file into memory; NULL with errno. */
static char *
read_file(const char *path, size_t max, size_t *len)
{
	char *buf;
	FILE *f;

	if ((f = fopen(path, "re")) == NULL)
		return NULL;
	if ((buf = malloc(max + 1)) == NULL) {
		fclose(f);
		return NULL;
	}
	*len = fread(buf, 1, max + 1, f);
	fclose(f);
	if (*len > max) {
		free(buf);
		return NULL;
	}
	buf[*len] = '\0';
	return buf;
}

enum otad_err
catalog_artifact_sign(struct registry *reg, struct store *store,
    const char *state_dir, const char *sha, const char *key,
    char *sha256_out, char *why, size_t whylen)
{
	struct sign_key *priv = NULL, *pub = NULL;
	char path[4096], fp1[65], fp2[65], *pem;
	uint8_t *sig = NULL;
	size_t pemlen, siglen, len;
	enum otad_err rc;
	json_t *row;
	void *img;
	int fd;
	off_t end;

	if (!catalog_valid_name(key))
		return invalid(why, whylen, "key name", key);
	if ((rc = registry_artifact_get(reg, sha, &row, why, whylen)) !=
	    OTAD_OK)
		return rc;
	snprintf(sha256_out, 65, "%s", json_string_value(json_object_get(row,
	    "sha256")));
	json_decref(row);
	if ((rc = catalog_trusted_key(reg, key, "artifact", &pub, why,
	    whylen)) != OTAD_OK)
		return rc;
	snprintf(path, sizeof(path), "%s/keys/%s.pem", state_dir, key);
	if ((pem = read_file(path, 64 * 1024, &pemlen)) == NULL) {
		sign_key_free(pub);
		snprintf(why, whylen, "key '%s' is not held by this server: "
		    "sign in CI and add the artifact with its signature", key);
		return OTAD_ERR_NOT_FOUND;
	}
	rc = sign_key_from_pem(pem, pemlen, 1, &priv, why, whylen);
	explicit_bzero(pem, pemlen);
	free(pem);
	if (rc == OTAD_OK && (sign_key_fingerprint(priv, fp1) != OTAD_OK ||
	    sign_key_fingerprint(pub, fp2) != OTAD_OK ||
	    strcmp(fp1, fp2) != 0)) {
		snprintf(why, whylen, "the key file is not the private half of "
		    "key '%s'", key);
		rc = OTAD_ERR_INVALID;
	}
	if (rc == OTAD_OK) {
		rc = OTAD_ERR_IO;
		snprintf(why, whylen, "cannot sign artifact %s", sha256_out);
		if ((fd = store_open_artifact(store, sha256_out)) >= 0) {
			end = lseek(fd, 0, SEEK_END);
			len = end > 0 ? (size_t)end : 0;
			img = len > 0 ? mmap(NULL, len, PROT_READ, MAP_PRIVATE,
			    fd, 0) : MAP_FAILED;
			close(fd);
			if (img != MAP_FAILED) {
				if (sign_sign(priv, img, len, &sig, &siglen) ==
				    OTAD_OK && sign_verify(pub, img, len, sig,
				    siglen) == OTAD_OK)
					rc = registry_signature_add(reg,
					    sha256_out, key, sig, siglen, why,
					    whylen);
				munmap(img, len);
			}
		}
	}
	free(sig);
	sign_key_free(priv);
	sign_key_free(pub);
	return rc;
}

/*
 * Write a whole file: temp, fsync, rename, so that a crash leaves the old
 * file or the new one, never half of one. 0, or -1 with errno.
 */
static int
write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	char tmp[4096 + 8];
	const uint8_t *p = data;
	ssize_t n;
	int fd, e;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)) < 0)
		return -1;
	for (; len > 0; p += n, len -= (size_t)n)
		if ((n = write(fd, p, len)) <= 0)
			break;
	if (len > 0 || fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) <
	    0) {
		e = errno;
		unlink(tmp);
		errno = e;
		return -1;
	}
	return 0;
}

enum otad_err
catalog_key_generate(struct registry *reg, const char *state_dir,
    const char *name, const char *algo, char *held, size_t heldlen,
    char *why, size_t whylen)
{
	struct sign_key *key = NULL;
	char dir[4096], fp[65], *pem = NULL, *pub = NULL;
	enum otad_err rc;
	json_t *row;
	size_t len;
	int lock;

	if (!catalog_valid_name(name))
		return invalid(why, whylen, "key name (1 to 64 of A-Z a-z 0-9 . "
		    "_ -)", name);
	if (strcmp(algo, "ecdsa-p256") != 0 && strcmp(algo, "ed25519") != 0) {
		snprintf(why, whylen, "--algo is ecdsa-p256 or ed25519, not "
		    "'%s'", algo);
		return OTAD_ERR_INVALID;
	}
	if ((size_t)snprintf(dir, sizeof(dir), "%s/keys", state_dir) >=
	    sizeof(dir) || (size_t)snprintf(held, heldlen, "%s/%s.pem", dir,
	    name) >= heldlen) {
		snprintf(why, whylen, "state_dir is too long");
		return OTAD_ERR_INVALID;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(why, whylen, "cannot create '%s': %s", dir,
		    strerror(errno));
		return OTAD_ERR_IO;
	}
	/*
	 * One generate at a time (an flock on the keys directory): then a
	 * key file without a key row is what a killed generate left, not a
	 * key another generate is about to record, and it is replaced.
	 */
	if ((lock = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    flock(lock, LOCK_EX) < 0) {
		snprintf(why, whylen, "cannot lock '%s': %s", dir,
		    strerror(errno));
		if (lock >= 0)
			close(lock);
		return OTAD_ERR_IO;
	}
	if (registry_key_get(reg, name, &row, why, whylen) == OTAD_OK) {
		json_decref(row);
		snprintf(why, whylen, "key '%s' exists already", name);
		close(lock);
		return OTAD_ERR_EXISTS;
	}
	if (access(held, F_OK) == 0)
		log_warnx("replacing '%s': a generate that did not finish left "
		    "it, and no key is recorded under that name", held);
	rc = OTAD_ERR_IO;
	snprintf(why, whylen, "cannot generate a key");
	if (sign_generate(algo, &key) == OTAD_OK &&
	    (pem = sign_key_private_pem(key)) != NULL &&
	    sign_key_fingerprint(key, fp) == OTAD_OK &&
	    (pub = sign_key_public_pem(key)) != NULL) {
		len = strlen(pem);
		if (write_atomic(held, pem, len, 0600) < 0) {
			snprintf(why, whylen, "cannot write '%s': %s", held,
			    strerror(errno));
		} else if ((rc = registry_key_add(reg, name, sign_key_algo(key),
		    "artifact", pub, fp, 1, why, whylen)) != OTAD_OK) {
			unlink(held);
		}
		explicit_bzero(pem, len);
	}
	free(pem);
	free(pub);
	sign_key_free(key);
	close(lock); /* recorded: the next generate may look */
	return rc;
}
