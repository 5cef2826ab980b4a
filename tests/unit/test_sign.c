/* sign: artifact signatures and Secure Boot v2 blocks */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "sign.h"

static const uint8_t data[] = "an ESP32 image, or something like one";

static void
roundtrip(const char *algo)
{
	struct sign_key *priv, *pub, *other;
	char *pem, fp1[65], fp2[65], why[256];
	uint8_t *sig, bad[SIGN_MAX_SIG];
	size_t siglen;

	assert_int_equal(sign_generate(algo, &priv), OTAD_OK);
	assert_string_equal(sign_key_algo(priv), algo);
	assert_int_equal(sign_sign(priv, data, sizeof(data), &sig, &siglen),
	    OTAD_OK);
	assert_int_equal(sign_verify(priv, data, sizeof(data), sig, siglen),
	    OTAD_OK);
	/* the public half, through PEM, verifies the same */
	assert_non_null(pem = sign_key_public_pem(priv));
	assert_int_equal(sign_key_from_pem(pem, strlen(pem), 0, &pub, why,
	    sizeof(why)), OTAD_OK);
	free(pem);
	assert_int_equal(sign_verify(pub, data, sizeof(data), sig, siglen),
	    OTAD_OK);
	assert_null(sign_key_private_pem(pub));
	assert_int_equal(sign_key_fingerprint(priv, fp1), OTAD_OK);
	assert_int_equal(sign_key_fingerprint(pub, fp2), OTAD_OK);
	assert_string_equal(fp1, fp2);
	/* another image, another signature, another key: no */
	assert_int_equal(sign_verify(pub, data, sizeof(data) - 1, sig, siglen),
	    OTAD_ERR_INVALID);
	memcpy(bad, sig, siglen);
	bad[siglen / 2] ^= 0x40;
	assert_int_equal(sign_verify(pub, data, sizeof(data), bad, siglen),
	    OTAD_ERR_INVALID);
	assert_int_equal(sign_verify(pub, data, sizeof(data), sig, 0),
	    OTAD_ERR_INVALID);
	assert_int_equal(sign_generate(algo, &other), OTAD_OK);
	assert_int_equal(sign_verify(other, data, sizeof(data), sig, siglen),
	    OTAD_ERR_INVALID);
	/* a public key cannot sign */
	{
		uint8_t *none;
		size_t nlen;

		assert_int_equal(sign_sign(pub, data, sizeof(data), &none,
		    &nlen), OTAD_ERR_INVALID);
		assert_null(none);
	}
	/* the private key survives PEM too */
	assert_non_null(pem = sign_key_private_pem(priv));
	sign_key_free(other);
	assert_int_equal(sign_key_from_pem(pem, strlen(pem), 1, &other, why,
	    sizeof(why)), OTAD_OK);
	free(pem);
	assert_int_equal(sign_key_fingerprint(other, fp2), OTAD_OK);
	assert_string_equal(fp1, fp2);
	free(sig);
	sign_key_free(priv);
	sign_key_free(pub);
	sign_key_free(other);
}

static void
test_ecdsa(void **state)
{
	(void)state;
	roundtrip("ecdsa-p256");
}

static void
test_ed25519(void **state)
{
	(void)state;
	roundtrip("ed25519");
}

static void
test_refused_keys(void **state)
{
	struct sign_key *key;
	EVP_PKEY *rsa;
	char why[256], *pem;
	BIO *bio;
	long n;

	(void)state;
	assert_int_equal(sign_key_from_pem("garbage", 7, 1, &key, why,
	    sizeof(why)), OTAD_ERR_INVALID);
	assert_string_equal(why, "not a PEM key");
	assert_int_equal(sign_generate("dsa", &key), OTAD_ERR_INVALID);
	rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	bio = BIO_new(BIO_s_mem());
	PEM_write_bio_PUBKEY(bio, rsa);
	n = BIO_get_mem_data(bio, &pem);
	assert_int_equal(sign_key_from_pem(pem, (size_t)n, 0, &key, why,
	    sizeof(why)), OTAD_ERR_INVALID);
	assert_non_null(strstr(why, "unsupported key type"));
	BIO_free(bio);
	EVP_PKEY_free(rsa);
}

static void
test_base64(void **state)
{
	char *s;

	(void)state;
	s = sign_base64((const uint8_t *)"foobar", 6);
	assert_string_equal(s, "Zm9vYmFy");
	free(s);
	s = sign_base64((const uint8_t *)"f", 1);
	assert_string_equal(s, "Zg==");
	free(s);
}

static void
put_le(uint8_t *dst, const BIGNUM *bn, int len)
{
	assert_int_equal(BN_bn2lebinpad(bn, dst, len), len);
}

/* A Secure Boot v2 block as espsecure writes it, signed with rsa. */
static void
make_block(uint8_t *b, EVP_PKEY *rsa, const uint8_t digest[32])
{
	BIGNUM *n = NULL, *e = NULL;
	uint8_t sig[384];
	size_t siglen = sizeof(sig);
	EVP_PKEY_CTX *ctx;
	int i;

	memset(b, 0, 1216);
	b[0] = 0xE7;
	b[1] = 0x02;
	memcpy(b + 4, digest, 32);
	EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_N, &n);
	EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_E, &e);
	put_le(b + 36, n, 384);
	put_le(b + 420, e, 4);
	ctx = EVP_PKEY_CTX_new(rsa, NULL);
	assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
	EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING);
	EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256());
	EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256());
	EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, 32);
	assert_int_equal(EVP_PKEY_sign(ctx, sig, &siglen, digest, 32), 1);
	for (i = 0; i < 384; i++)
		b[812 + i] = sig[383 - i];
	EVP_PKEY_CTX_free(ctx);
	BN_free(n);
	BN_free(e);
}

static struct sign_key *
public_of(EVP_PKEY *pkey)
{
	struct sign_key *key;
	char why[256], *pem;
	BIO *bio = BIO_new(BIO_s_mem());
	long n;

	PEM_write_bio_PUBKEY(bio, pkey);
	n = BIO_get_mem_data(bio, &pem);
	assert_int_equal(sign_key_from_pem(pem, (size_t)n, 0, &key, why,
	    sizeof(why)), OTAD_OK);
	BIO_free(bio);
	return key;
}

static void
test_sbv2(void **state)
{
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
	EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
	struct sign_key *trusted = public_of(rsa), *stranger = public_of(other);
	uint8_t digest[32], block[1216], forged[1216];

	(void)state;
	assert_string_equal(sign_key_algo(trusted), "rsa-3072");
	memset(digest, 0x5a, sizeof(digest));
	make_block(block, rsa, digest);
	assert_int_equal(sign_sbv2_verify(block, trusted), OTAD_OK);
	/* signed by a key the fleet does not trust */
	assert_int_equal(sign_sbv2_verify(block, stranger), OTAD_ERR_INVALID);
	/* the trusted key's modulus, another key's signature */
	make_block(block, other, digest);
	make_block(forged, rsa, digest);
	memcpy(forged + 812, block + 812, 384);
	assert_int_equal(sign_sbv2_verify(forged, trusted), OTAD_ERR_INVALID);
	/* a digest that the signature does not cover */
	make_block(block, rsa, digest);
	block[4] ^= 1;
	assert_int_equal(sign_sbv2_verify(block, trusted), OTAD_ERR_INVALID);
	/* an ECDSA block is not for an RSA key */
	make_block(block, rsa, digest);
	block[1] = 0x03;
	assert_int_equal(sign_sbv2_verify(block, trusted), OTAD_ERR_INVALID);
	sign_key_free(trusted);
	sign_key_free(stranger);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(other);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ecdsa),
		cmocka_unit_test(test_ed25519),
		cmocka_unit_test(test_refused_keys),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_sbv2),
	};

	return cmocka_run_group_tests_name("sign", tests, NULL, NULL);
}
