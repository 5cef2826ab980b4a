/*
 * catalog.h: operator actions that more than a registry call, written
 * once for both callers: otactl on the host, and the management API
 * (admin.c) for remote operators. Each checks what it is given, does the
 * work, and says why not in one line.
 */
#ifndef CATALOG_H
#define CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "fsimg.h"
#include "otad.h"
#include "registry.h"
#include "sign.h"
#include "store.h"

/* What an artifact add is told. */
struct catalog_artifact {
	const char *version;   /* NULL: the descriptor's, if it means it */
	const char *product;   /* NULL: every product */
	enum artifact_kind kind;
	const char *key;       /* the artifact key that signed it, or NULL */
	const uint8_t *sig;    /* its signature over the file */
	size_t siglen;
};

/*
 * Add the image read from fd (to its end): ingest and validate it, check
 * its signature and, with secure boot keys, its Secure Boot v2 blocks,
 * all before it gets its name; then record it. The same file with the
 * same version again is fine (a new signature is added). sha256 gets its
 * SHA-256. On failure nothing is left behind; why says why.
 */
enum otad_err catalog_artifact_add(struct registry *reg, struct store *store,
    int fd, const struct catalog_artifact *a, char sha256[65], char *why,
    size_t whylen);

/* An active key of purpose ("artifact", "secure-boot"), for verifying. */
enum otad_err catalog_trusted_key(struct registry *reg, const char *name,
    const char *purpose, struct sign_key **out, char *why, size_t whylen);

/*
 * Every Secure Boot v2 block of the stored app image sha256, judged
 * against the active secure-boot keys (see sbv2.h): block, scheme,
 * key_digest, trusted_key, verified, why_not. [] for none.
 */
json_t *catalog_secure_boot_blocks(struct registry *reg, struct store *store,
    const char *sha256);

/* The keys, with each secure-boot key's eFuse digest (efuse_digest). */
enum otad_err catalog_key_list(struct registry *reg, json_t **rows);

/* A release, as release create is told it (NULL: not given). */
struct catalog_release {
	const char *version, *artifact; /* artifact: its SHA-256 or prefix */
	const char *product, *hw_rev, *min_from;
	int forced, confirm_secure_version;
};

/*
 * Create a release of an artifact: the versions must agree, with
 * require_signature the artifact must carry a trusted signature, and a
 * release that raises the anti-rollback level (an eFuse burnt for good)
 * needs confirm_secure_version. *id and sha256 (65 bytes) on success.
 */
enum otad_err catalog_release_create(struct registry *reg,
    const struct catalog_release *r, int require_signature, int64_t *id,
    char *sha256, char *why, size_t whylen);

/* A staged rollout, as rollout create is told it (NULL: not given). */
struct catalog_rollout {
	const char *version, *stages, *window, *days, *utc_offset;
	const char *min_battery, *timeout, *product, *chip;
	const char *promote_window; /* "any": none; NULL: none */
	const char *on_halt;        /* "hold" (NULL) or "revert" */
	int downgrade;
};

/* Check and create a draft rollout: *id and its stage count. */
enum otad_err catalog_rollout_create(struct registry *reg,
    const struct catalog_rollout *r, int64_t *id, size_t *nstages,
    char *why, size_t whylen);

/*
 * Trust a public key (PEM): for artifacts (ecdsa-p256, ed25519) or, with
 * secure_boot, as a Secure Boot v2 key (RSA-3072, ECDSA P-192/256/384),
 * whose eFuse digest goes to digest (65 bytes; "" otherwise). *warning
 * gets a line to show, or "" (P-192 is accepted with one).
 */
enum otad_err catalog_key_add(struct registry *reg, const char *name,
    const char *pem, size_t len, int secure_boot, char *digest,
    char *warning, size_t warnlen, char *why, size_t whylen);

/* 1 when name is a key or operator name: 1 to 64 of A-Z a-z 0-9 . _ - */
int catalog_valid_name(const char *name);

/*
 * Sign a stored artifact (sha256 or a unique prefix) with a server-held
 * key: its private half in <state_dir>/keys/<key>.pem, its public half
 * trusted. sha256_out (65 bytes) gets the artifact's digest.
 */
enum otad_err catalog_artifact_sign(struct registry *reg, struct store *store,
    const char *state_dir, const char *sha, const char *key,
    char *sha256_out, char *why, size_t whylen);

/*
 * Make a server-held artifact key: its private half written to
 * <state_dir>/keys/<name>.pem (held gets the path), its public half
 * recorded. One generate at a time (a lock on keys/).
 */
enum otad_err catalog_key_generate(struct registry *reg, const char *state_dir,
    const char *name, const char *algo, char *held, size_t heldlen,
    char *why, size_t whylen);

#endif
