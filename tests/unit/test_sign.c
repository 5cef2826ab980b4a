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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ecdsa),
		cmocka_unit_test(test_ed25519),
		cmocka_unit_test(test_refused_keys),
		cmocka_unit_test(test_base64),
	};

	return cmocka_run_group_tests_name("sign", tests, NULL, NULL);
}
