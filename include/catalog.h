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

#endif
