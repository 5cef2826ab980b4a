/*
 * sbv2.h: Secure Boot v2 signature blocks, verified as the bootloader
 * verifies them.
 *
 * A block (ets_secure_boot_sig_block_t, 1216 bytes, integers
 * little-endian) carries the image digest, a public key and a signature:
 * RSA-3072-PSS (version 0x02), or ECDSA (version 0x03) on P-192 or P-256
 * with SHA-256, or on P-384 with SHA-384 (sha_version 1; its 48-byte digest
 * moves every later field by 16 bytes). The eFuse holds not the key but
 * its digest: SHA-256 of the key's fields as the block stores them (even
 * for P-384). So a block is trusted when its key's digest is a trusted
 * key's, and then its signature is checked with its own key over a digest
 * recomputed from the image, never the stored one.
 *
 * Pure functions over buffers (OpenSSL for the arithmetic); thread-safe.
 */
#ifndef SBV2_H
#define SBV2_H

#include <stddef.h>
#include <stdint.h>

#include "espimg.h"
#include "otad.h"

enum sbv2_scheme {
	SBV2_RSA3072,
	SBV2_ECDSA_P192,
	SBV2_ECDSA_P256,
	SBV2_ECDSA_P384,
};

/* One block, decoded. */
struct sbv2_block {
	enum sbv2_scheme scheme;
	char key_digest[65];  /* lower-case hex: what the eFuse holds */
	const uint8_t *raw;   /* ESPIMG_SIG_BLOCK bytes */
};

/* "RSA-3072", "ECDSA P-192", "ECDSA P-256", "ECDSA P-384" */
const char *sbv2_scheme_name(enum sbv2_scheme scheme);
/* The key algorithm names otad records: "rsa-3072", "ecdsa-p256", ... */
const char *sbv2_scheme_algo(enum sbv2_scheme scheme);

/*
 * Decode a block whose magic and CRC espimg checked. OTAD_ERR_NOT_IMAGE,
 * with the reason in why, for a version, hash or curve no bootloader
 * knows.
 */
enum otad_err sbv2_decode(const uint8_t *raw, struct sbv2_block *out,
    char *why, size_t whylen);

/*
 * Verify block b over signed[0..len) (the image and its 0xFF padding, up
 * to the signature sector): the digest recomputed (SHA-256, SHA-384 for
 * P-384) must be the block's, and the signature must verify with the
 * block's own key. OTAD_OK, or OTAD_ERR_INVALID with "image digest
 * mismatch" or "<scheme> signature does not verify" in why.
 */
enum otad_err sbv2_verify(const struct sbv2_block *b, const uint8_t *signed_data,
    size_t len, char *why, size_t whylen);

/*
 * A Secure Boot v2 public key (PEM, as espsecure extract-public-key writes
 * it): its scheme and its eFuse digest, the value espsecure
 * digest-sbv2-public-key writes and espefuse summary shows.
 * OTAD_ERR_INVALID with why for any other key.
 */
enum otad_err sbv2_key_digest(const char *pem, size_t len,
    enum sbv2_scheme *scheme, char digest[65], char *why, size_t whylen);

/* The schemes a chip's bootloader verifies (bits of 1 << scheme). */
unsigned sbv2_chip_schemes(unsigned chip_id);

/* A trusted secure-boot key, by its eFuse digest. */
struct sbv2_trusted {
	const char *name;
	const char *digest; /* 64 lower-case hex digits */
};

/* What one block of an image is, against the trusted keys. */
struct sbv2_verdict {
	struct sbv2_block block;
	const char *key;     /* the trusted key's name; NULL if none */
	int verified;        /* its signature verifies over the image */
	int chip_verifies;   /* the image's chip verifies this scheme */
	char why[96];        /* why not, when it does not count */
};

/*
 * Judge every block of a parsed image (info from espimg_parse over buf,
 * len) against the trusted keys: out[] gets info->nsig verdicts. OTAD_OK
 * when one block carries a trusted key, verifies, and is of a scheme the
 * image's chip verifies; otherwise OTAD_ERR_INVALID with the reason in why
 * ("block 0: ECDSA signature does not verify", "no block carries a
 * trusted secure-boot key", ...).
 */
enum otad_err sbv2_check_image(const struct espimg_info *info,
    const uint8_t *buf, size_t len, const struct sbv2_trusted *trusted,
    size_t ntrusted, struct sbv2_verdict out[ESPIMG_SIG_BLOCKS_MAX],
    char *why, size_t whylen);

#endif
