/* sign.c: ECDSA P-256 / Ed25519 artifact signatures, and keys */
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "sign.h"

struct sign_key {
	EVP_PKEY *pkey;
	const char *algo;
	int is_private;
};

static const char *
algo_of(EVP_PKEY *pkey)
{
	char group[32];
	size_t glen = 0;

	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_ED25519:
		return "ed25519";
	case EVP_PKEY_EC:
		if (!EVP_PKEY_get_utf8_string_param(pkey,
		    OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &glen))
			return NULL;
		/* P-192 and P-384: Secure Boot v2 keys only (sbv2.h) */
		if (strcmp(group, "prime256v1") == 0)
			return "ecdsa-p256";
		if (strcmp(group, "prime192v1") == 0)
			return "ecdsa-p192";
		if (strcmp(group, "secp384r1") == 0)
			return "ecdsa-p384";
		return NULL;
	case EVP_PKEY_RSA:
		return EVP_PKEY_get_bits(pkey) == 3072 ? "rsa-3072" : NULL;
	default:
		return NULL;
	}
}

enum otad_err
sign_key_from_pem(const char *pem, size_t len, int private_ok,
    struct sign_key **out, char *why, size_t whylen)
{
	struct sign_key *key;
	EVP_PKEY *pkey = NULL;
	int is_private = 0;
	BIO *bio;

	*out = NULL;
	if (len > 64 * 1024 || (bio = BIO_new_mem_buf(pem, (int)len)) ==
	    NULL) {
		snprintf(why, whylen, "not a PEM key");
		return OTAD_ERR_INVALID;
	}
	pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	if (pkey == NULL && private_ok) {
		(void)BIO_reset(bio);
		pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
		is_private = pkey != NULL;
	}
	BIO_free(bio);
	if (pkey == NULL) {
		snprintf(why, whylen, "not a PEM %skey", private_ok ? "" :
		    "public ");
		return OTAD_ERR_INVALID;
	}
	if (algo_of(pkey) == NULL) {
		snprintf(why, whylen, "unsupported key type (%s, %d bits): "
		    "use ecdsa-p256, ed25519 or, for secure boot, rsa-3072 or "
		    "ecdsa-p192/p256/p384",
		    EVP_PKEY_get0_type_name(pkey), EVP_PKEY_get_bits(pkey));
		EVP_PKEY_free(pkey);
		return OTAD_ERR_INVALID;
	}
	if ((key = calloc(1, sizeof(*key))) == NULL) {
		EVP_PKEY_free(pkey);
		return OTAD_ERR_NOMEM;
	}
	key->pkey = pkey;
	key->algo = algo_of(pkey);
	key->is_private = is_private;
	*out = key;
	return OTAD_OK;
}

void
sign_key_free(struct sign_key *key)
{
	if (key == NULL)
		return;
	EVP_PKEY_free(key->pkey);
	free(key);
}

const char *
sign_key_algo(const struct sign_key *key)
{
	return key->algo;
}

enum otad_err
sign_key_fingerprint(const struct sign_key *key, char out[65])
{
	unsigned char *der = NULL, digest[EVP_MAX_MD_SIZE];
	unsigned dlen;
	int n;

	if ((n = i2d_PUBKEY(key->pkey, &der)) <= 0)
		return OTAD_ERR_INVALID;
	EVP_Digest(der, (size_t)n, digest, &dlen, EVP_sha256(), NULL);
	OPENSSL_free(der);
	otad_hex(digest, 32, out);
	return OTAD_OK;
}

/* The contents of a memory BIO as a NUL-terminated string. */
static char *
bio_string(BIO *bio)
{
	char *data, *s;
	long n = BIO_get_mem_data(bio, &data);

	if (n < 0 || (s = malloc((size_t)n + 1)) == NULL)
		return NULL;
	memcpy(s, data, (size_t)n);
	s[n] = '\0';
	return s;
}

char *
sign_key_public_pem(const struct sign_key *key)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *s = NULL;

	if (bio != NULL && PEM_write_bio_PUBKEY(bio, key->pkey))
		s = bio_string(bio);
	BIO_free(bio);
	return s;
}

char *
sign_key_private_pem(const struct sign_key *key)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *s = NULL;

	if (bio != NULL && key->is_private &&
	    PEM_write_bio_PrivateKey(bio, key->pkey, NULL, NULL, 0, NULL,
	    NULL))
		s = bio_string(bio);
	BIO_free_all(bio); /* a mem BIO clears its buffer on free */
	return s;
}

enum otad_err
sign_generate(const char *algo, struct sign_key **out)
{
	struct sign_key *key;
	EVP_PKEY *pkey;

	*out = NULL;
	if (strcmp(algo, "ecdsa-p256") == 0)
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	else if (strcmp(algo, "ed25519") == 0)
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	else
		return OTAD_ERR_INVALID;
	if (pkey == NULL)
		return OTAD_ERR_NOMEM;
	if ((key = calloc(1, sizeof(*key))) == NULL) {
		EVP_PKEY_free(pkey);
		return OTAD_ERR_NOMEM;
	}
	key->pkey = pkey;
	key->algo = algo_of(pkey);
	key->is_private = 1;
	*out = key;
	return OTAD_OK;
}

/* SHA-256 for ECDSA; Ed25519 signs the message itself (no digest). */
static const EVP_MD *
md_for(const struct sign_key *key)
{
	return strcmp(key->algo, "ed25519") == 0 ? NULL : EVP_sha256();
}

enum otad_err
sign_verify(const struct sign_key *key, const uint8_t *data, size_t len,
    const uint8_t *sig, size_t siglen)
{
	EVP_MD_CTX *ctx;
	int ok = 0;

	if (strcmp(key->algo, "rsa-3072") == 0 || siglen == 0 ||
	    siglen > SIGN_MAX_SIG || (ctx = EVP_MD_CTX_new()) == NULL)
		return OTAD_ERR_INVALID;
	if (EVP_DigestVerifyInit(ctx, NULL, md_for(key), NULL, key->pkey) == 1)
		ok = EVP_DigestVerify(ctx, sig, siglen, data, len) == 1;
	EVP_MD_CTX_free(ctx);
	return ok ? OTAD_OK : OTAD_ERR_INVALID;
}

enum otad_err
sign_sign(const struct sign_key *key, const uint8_t *data, size_t len,
    uint8_t **sig, size_t *siglen)
{
	EVP_MD_CTX *ctx = NULL;
	enum otad_err rc = OTAD_ERR_INVALID;
	size_t n = 0;

	*sig = NULL;
	if (!key->is_private || strcmp(key->algo, "rsa-3072") == 0 ||
	    (ctx = EVP_MD_CTX_new()) == NULL)
		goto done;
	if (EVP_DigestSignInit(ctx, NULL, md_for(key), NULL, key->pkey) != 1 ||
	    EVP_DigestSign(ctx, NULL, &n, data, len) != 1 ||
	    (*sig = malloc(n)) == NULL ||
	    EVP_DigestSign(ctx, *sig, &n, data, len) != 1) {
		free(*sig);
		*sig = NULL;
		goto done;
	}
	*siglen = n;
	rc = OTAD_OK;
done:
	EVP_MD_CTX_free(ctx);
	return rc;
}

char *
sign_base64(const uint8_t *data, size_t len)
{
	size_t cap = 4 * ((len + 2) / 3) + 1;
	char *out;

	if (len > 1024 * 1024 || (out = malloc(cap)) == NULL)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}
