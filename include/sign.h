/*
 * sign.h: signatures over firmware images (OpenSSL).
 *
 * Artifact signatures are what `openssl dgst -sha256 -sign key.pem` makes:
 * ECDSA P-256 with SHA-256 (DER), or Ed25519 over the raw bytes (64
 * bytes). Secure Boot v2 keys are loaded here too (for their fingerprint
 * and PEM); their blocks are sbv2.h's.
 *
 * A struct sign_key holds one public (or private) key; it is immutable
 * after loading and may be shared by threads.
 */
#ifndef SIGN_H
#define SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "otad.h"

struct sign_key;

#define SIGN_MAX_SIG 512 /* bytes; a DER ECDSA signature is ~72 */

/*
 * A key from PEM text (public, or private when private_ok). Accepts
 * ecdsa-p256, ed25519 and, for secure boot, rsa-3072, ecdsa-p192 and
 * ecdsa-p384; anything else is refused with the reason in why. Caller
 * owns *out.
 */
enum otad_err sign_key_from_pem(const char *pem, size_t len, int private_ok,
    struct sign_key **out, char *why, size_t whylen);
void sign_key_free(struct sign_key *key);

/* "ecdsa-p256", "ed25519", "rsa-3072", "ecdsa-p192" or "ecdsa-p384". */
const char *sign_key_algo(const struct sign_key *key);
/* Lower-case hex SHA-256 of the public key's DER (SubjectPublicKeyInfo). */
enum otad_err sign_key_fingerprint(const struct sign_key *key, char out[65]);
/* The public half as PEM; caller frees. */
char *sign_key_public_pem(const struct sign_key *key);
/* The private key as PEM (PKCS#8); caller frees and should wipe. */
char *sign_key_private_pem(const struct sign_key *key);

/* A new private key: algo "ecdsa-p256" or "ed25519". */
enum otad_err sign_generate(const char *algo, struct sign_key **out);

/* OTAD_OK when sig is key's signature over data; OTAD_ERR_INVALID if not. */
enum otad_err sign_verify(const struct sign_key *key, const uint8_t *data,
    size_t len, const uint8_t *sig, size_t siglen);
/* Sign data with a private key; *sig is malloc'd. */
enum otad_err sign_sign(const struct sign_key *key, const uint8_t *data,
    size_t len, uint8_t **sig, size_t *siglen);

/* Standard base64 without newlines; caller frees. NULL on error. */
char *sign_base64(const uint8_t *data, size_t len);

#endif
