/*
 * auth.h: device tokens.
 *
 * A token is AUTH_TOKEN_LEN lower-case hex characters (160 random bits),
 * shown to the operator once; the registry keeps only its SHA-256. Tokens
 * are compared through their digests in constant time and never logged.
 * Pure functions except auth_token_new (OpenSSL's RNG); thread-safe.
 */
#ifndef AUTH_H
#define AUTH_H

#include "otad.h"

#define AUTH_TOKEN_LEN 40

/* A fresh token into out (AUTH_TOKEN_LEN + 1 bytes). */
enum otad_err auth_token_new(char *out);

/*
 * The stored form of token: lower-case hex SHA-256 into out (65 bytes).
 * OTAD_ERR_INVALID when token is not shaped like one of ours.
 */
enum otad_err auth_token_hash(const char *token, char *out);

/* 1 if the two stored forms are equal; constant time. */
int auth_hash_equal(const char *a, const char *b);

#endif
