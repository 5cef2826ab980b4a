/*
 * sbv2: Secure Boot v2 blocks against Espressif's own espsecure output in
 * ../shared/firmware/secure-boot (see its README for every value checked
 * here: the key digests, the broken files and why each is broken).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "espimg.h"
#include "firmware.h"
#include "sbv2.h"

#define DIR "secure-boot/"

static const struct {
	const char *pem;
	enum sbv2_scheme scheme;
	const char *digest; /* espsecure digest-sbv2-public-key */
} keys[] = {
	{"rsa3072.pub.pem", SBV2_RSA3072,
	    "239a5ea81c41f0e208b8c51b1b37be9c16c0f24ec33f59037eb2aea338a19f51"},
	{"rsa3072-b.pub.pem", SBV2_RSA3072,
	    "109dd1487ff46a3b5acebc02104fb166779cbff979caee7625777aa25945c6ca"},
	{"ecdsa192.pub.pem", SBV2_ECDSA_P192,
	    "d40945d8889eff9c4a6d3f809a43428e6c007d8423bae2f5350c42c1271de08c"},
	{"ecdsa256.pub.pem", SBV2_ECDSA_P256,
	    "f00d8b973d0f812f3be5db73e3889f9aed29bee0eda4a97b6a0adc04f693f2d4"},
	{"ecdsa256-b.pub.pem", SBV2_ECDSA_P256,
	    "f13ddf25fc376394c5ce0187c39fa532e1fe8a2aec1ebb66dd2caa293c8bd6ae"},
	{"ecdsa384.pub.pem", SBV2_ECDSA_P384,
	    "ed89aee059064f202bac43492173dab064f022e4099b452f78df7047545a0091"},
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* The valid files and, per block, the key (index into keys) that signed it */
static const struct {
	const char *file;
	int signer[2]; /* -1: no block */
} good[] = {
	{"hello_world.rsa3072.bin", {0, -1}},
	{"hello_world.ecdsa192.bin", {2, -1}},
	{"hello_world.ecdsa256.bin", {3, -1}},
	{"hello_world.ecdsa384.bin", {5, -1}},
	{"hello_world.rsa3072x2.bin", {0, 1}},
	{"hello_world.ecdsa256x2.bin", {3, 4}},
};

static uint8_t *
load(const char *name, size_t *len)
{
	char rel[128];

	snprintf(rel, sizeof(rel), DIR "%s", name);
	return firmware_load(rel, len);
}

/* An image parsed as ingest parses it. */
static uint8_t *
parsed(const char *file, struct espimg_info *info, size_t *len)
{
	char why[256];
	uint8_t *buf = load(file, len);

	if (espimg_parse(buf, *len, info, why, sizeof(why)) != OTAD_OK)
		fail_msg("%s: %s", file, why);
	return buf;
}

static void
test_key_digests_are_espsecure_s(void **state)
{
	enum sbv2_scheme scheme;
	char digest[65], why[256];
	size_t i, len;

	(void)state;
	for (i = 0; i < NKEYS; i++) {
		char *pem = (char *)load(keys[i].pem, &len);

		assert_int_equal(sbv2_key_digest(pem, len, &scheme, digest,
		    why, sizeof(why)), OTAD_OK);
		assert_int_equal(scheme, keys[i].scheme);
		assert_string_equal(digest, keys[i].digest);
		free(pem);
	}
	/* an artifact key of another kind is no secure-boot key */
	assert_int_equal(sbv2_key_digest("junk", 4, &scheme, digest, why,
	    sizeof(why)), OTAD_ERR_INVALID);
}

/* Each valid file verifies with its key(s), and with no other key. */
static void
test_every_good_file_with_its_keys_only(void **state)
{
	struct sbv2_verdict v[ESPIMG_SIG_BLOCKS_MAX];
	struct espimg_info info;
	struct sbv2_trusted one;
	char why[256];
	size_t f, k, len;
	uint8_t *buf;

	(void)state;
	for (f = 0; f < sizeof(good) / sizeof(good[0]); f++) {
		buf = parsed(good[f].file, &info, &len);
		assert_int_equal(info.nsig, good[f].signer[1] < 0 ? 1 : 2);
		for (k = 0; k < NKEYS; k++) {
			int signs = (int)k == good[f].signer[0] ||
			    (int)k == good[f].signer[1];
			enum otad_err rc;

			one.name = keys[k].pem;
			one.digest = keys[k].digest;
			/* the image's chip (esp32) aside: the crypto */
			info.chip_id = 0x0d; /* esp32c6 verifies both */
			rc = sbv2_check_image(&info, buf, len, &one, 1, v, why,
			    sizeof(why));
			if (signs && rc != OTAD_OK)
				fail_msg("%s with %s: %s", good[f].file,
				    keys[k].pem, why);
			else if (!signs) {
				assert_int_equal(rc, OTAD_ERR_INVALID);
				assert_non_null(strstr(why, "no block carries"));
			}
		}
		free(buf);
	}
}

static void
test_broken_files_say_why(void **state)
{
	struct sbv2_verdict v[ESPIMG_SIG_BLOCKS_MAX];
	struct sbv2_trusted all[NKEYS];
	struct espimg_info info;
	struct sbv2_block b;
	char why[256];
	size_t k, len;
	uint8_t *buf;

	(void)state;
	for (k = 0; k < NKEYS; k++) {
		all[k].name = keys[k].pem;
		all[k].digest = keys[k].digest;
	}
	/* badsig: well-formed, trusted key, r tampered */
	buf = parsed("hello_world.ecdsa256.badsig.bin", &info, &len);
	info.chip_id = 0x0d;
	assert_int_equal(sbv2_check_image(&info, buf, len, all, NKEYS, v, why,
	    sizeof(why)), OTAD_ERR_INVALID);
	assert_string_equal(why, "block 0: ECDSA signature does not verify");
	assert_string_equal(v[0].key, "ecdsa256.pub.pem");
	free(buf);
	/* untrusted: verifies with the key it carries, which nobody trusts */
	buf = parsed("hello_world.untrusted-ecdsa256.bin", &info, &len);
	info.chip_id = 0x0d;
	assert_int_equal(sbv2_check_image(&info, buf, len, all, NKEYS, v, why,
	    sizeof(why)), OTAD_ERR_INVALID);
	assert_non_null(strstr(why, "no block carries a trusted secure-boot "
	    "key (block 0: ECDSA P-256 key 51c611f5ab0ea6b7"));
	assert_null(v[0].key);
	assert_int_equal(sbv2_verify(&v[0].block, buf, info.signed_len, why,
	    sizeof(why)), OTAD_OK);
	free(buf);
	/*
	 * badbody: an image byte flipped after signing; the block (and its
	 * stored digest) untouched. espimg refuses the image already (its
	 * appended SHA-256); the block alone must not be trusted either.
	 */
	buf = load("hello_world.rsa3072.badbody.bin", &len);
	assert_int_equal(espimg_parse(buf, len, &info, why, sizeof(why)),
	    OTAD_ERR_NOT_IMAGE);
	assert_int_equal(sbv2_decode(buf + len - ESPIMG_SIG_SECTOR, &b, why,
	    sizeof(why)), OTAD_OK);
	assert_string_equal(b.key_digest, keys[0].digest);
	assert_int_equal(sbv2_verify(&b, buf, len - ESPIMG_SIG_SECTOR, why,
	    sizeof(why)), OTAD_ERR_INVALID);
	assert_string_equal(why, "image digest mismatch");
	free(buf);
}

/* An ESP32 verifies only RSA; an ESP32-C2 only ECDSA. */
static void
test_a_chip_gets_only_its_scheme(void **state)
{
	struct sbv2_verdict v[ESPIMG_SIG_BLOCKS_MAX];
	struct sbv2_trusted t = {"ecdsa256", keys[3].digest};
	struct espimg_info info;
	char why[256];
	size_t len;
	uint8_t *buf;

	(void)state;
	buf = parsed("hello_world.ecdsa256.bin", &info, &len);
	assert_int_equal(info.chip_id, 0); /* esp32, as the file is */
	assert_int_equal(sbv2_check_image(&info, buf, len, &t, 1, v, why,
	    sizeof(why)), OTAD_ERR_INVALID);
	assert_non_null(strstr(why, "esp32 bootloader does not verify ECDSA "
	    "P-256"));
	assert_true(v[0].verified);
	assert_false(v[0].chip_verifies);
	info.chip_id = 0x0c; /* esp32c2 */
	assert_int_equal(sbv2_check_image(&info, buf, len, &t, 1, v, why,
	    sizeof(why)), OTAD_OK);
	free(buf);
	buf = parsed("hello_world.rsa3072.bin", &info, &len);
	t.digest = keys[0].digest;
	assert_int_equal(sbv2_check_image(&info, buf, len, &t, 1, v, why,
	    sizeof(why)), OTAD_OK);
	info.chip_id = 0x0c;
	assert_int_equal(sbv2_check_image(&info, buf, len, &t, 1, v, why,
	    sizeof(why)), OTAD_ERR_INVALID);
	free(buf);
}

/* P-384's digest is SHA-384 and 48 bytes: every later field moves. */
static void
test_p384_layout(void **state)
{
	struct espimg_info info;
	struct sbv2_block b;
	char why[256];
	size_t len;
	uint8_t *buf;

	(void)state;
	buf = parsed("hello_world.ecdsa384.bin", &info, &len);
	assert_int_equal(sbv2_decode(info.sig[0].block, &b, why, sizeof(why)),
	    OTAD_OK);
	assert_int_equal(b.scheme, SBV2_ECDSA_P384);
	assert_string_equal(b.key_digest, keys[5].digest);
	assert_int_equal(sbv2_verify(&b, buf, info.signed_len, why,
	    sizeof(why)), OTAD_OK);
	/* the signed region includes the 0xFF padding to the sector */
	assert_int_equal(info.signed_len, 0x1E000);
	assert_int_equal(sbv2_verify(&b, buf, 120432, why, sizeof(why)),
	    OTAD_ERR_INVALID);
	free(buf);
}

/*
 * A trusted key with a signature it did not make: block 0's key and
 * digest, block 1's signature (both blocks sign the same image).
 */
static void
test_a_forged_signature(void **state)
{
	static const struct {
		const char *file;
		size_t sig_at, sig_len;
		const char *why;
	} cases[] = {
		{"hello_world.rsa3072x2.bin", 812, 384,
		    "RSA signature does not verify"},
		{"hello_world.ecdsa256x2.bin", 101, 64,
		    "ECDSA signature does not verify"},
	};
	struct espimg_info info;
	struct sbv2_block b;
	uint8_t forged[ESPIMG_SIG_BLOCK];
	char why[256];
	size_t i, len;
	uint8_t *buf;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf = parsed(cases[i].file, &info, &len);
		memcpy(forged, info.sig[0].block, sizeof(forged));
		memcpy(forged + cases[i].sig_at, info.sig[1].block +
		    cases[i].sig_at, cases[i].sig_len);
		assert_int_equal(sbv2_decode(forged, &b, why, sizeof(why)),
		    OTAD_OK);
		assert_int_equal(sbv2_verify(&b, buf, info.signed_len, why,
		    sizeof(why)), OTAD_ERR_INVALID);
		assert_string_equal(why, cases[i].why);
		/* and a block no bootloader knows is refused by its name */
		forged[1] = 0x04;
		assert_int_equal(sbv2_decode(forged, &b, why, sizeof(why)),
		    OTAD_ERR_NOT_IMAGE);
		free(buf);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_digests_are_espsecure_s),
		cmocka_unit_test(test_every_good_file_with_its_keys_only),
		cmocka_unit_test(test_broken_files_say_why),
		cmocka_unit_test(test_a_chip_gets_only_its_scheme),
		cmocka_unit_test(test_p384_layout),
		cmocka_unit_test(test_a_forged_signature),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
