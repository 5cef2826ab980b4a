/* auth.c: device tokens, stored hashed, compared in constant time */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "auth.h"

enum otad_err
auth_token_new(char *out)
{
	unsigned char raw[AUTH_TOKEN_LEN / 2];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return OTAD_ERR_IO;
	otad_hex(raw, sizeof(raw), out);
	OPENSSL_cleanse(raw, sizeof(raw));
	return OTAD_OK;
}

enum otad_err
auth_token_hash(const char *token, char *out)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned len;
	size_t i;

	for (i = 0; i < AUTH_TOKEN_LEN; i++)
		if (!((token[i] >= '0' && token[i] <= '9') ||
		    (token[i] >= 'a' && token[i] <= 'f')))
			return OTAD_ERR_INVALID;
	if (token[AUTH_TOKEN_LEN] != '\0')
		return OTAD_ERR_INVALID;
	if (!EVP_Digest(token, AUTH_TOKEN_LEN, digest, &len, EVP_sha256(),
	    NULL))
		return OTAD_ERR_IO;
	otad_hex(digest, 32, out);
	return OTAD_OK;
}

int
auth_hash_equal(const char *a, const char *b)
{
	if (strlen(a) != 64 || strlen(b) != 64)
		return 0;
	return CRYPTO_memcmp(a, b, 64) == 0;
}
