/* sbv2.c: Secure Boot v2 signature blocks: decode, key digests, verify */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "sbv2.h"

/* ets_secure_boot_sig_block_t, version 0x02 (RSA-3072-PSS) */
#define RSA_N 36
#define RSA_E 420
#define RSA_RINV 424
#define RSA_MDASH 808
#define RSA_SIG 812
#define RSA_BYTES 384
#define RSA_SALT 32
/* version 0x03: the digest ends at 36 (SHA-256) or 52 (SHA-384) */
#define DIGEST_AT 4
#define SHA_VERSION 2

static const struct scheme_info {
	const char *name, *algo, *group;
	unsigned curve_id;  /* in the block; 0 for RSA */
	size_t coord;       /* bytes of one coordinate (L) */
	size_t key_at;      /* where the key fields start */
	size_t key_len;     /* what the key digest covers */
	size_t digest_len;  /* of the image */
} schemes[] = {
	[SBV2_RSA3072] = {"RSA-3072", "rsa-3072", NULL, 0, 0, RSA_N,
	    RSA_SIG - RSA_N, 32},
	[SBV2_ECDSA_P192] = {"ECDSA P-192", "ecdsa-p192", "prime192v1", 1, 24,
	    36, 65, 32},
	[SBV2_ECDSA_P256] = {"ECDSA P-256", "ecdsa-p256", "prime256v1", 2, 32,
	    36, 65, 32},
	[SBV2_ECDSA_P384] = {"ECDSA P-384", "ecdsa-p384", "secp384r1", 3, 48,
	    52, 97, 48},
};

const char *
sbv2_scheme_name(enum sbv2_scheme scheme)
{
	return schemes[scheme].name;
}

const char *
sbv2_scheme_algo(enum sbv2_scheme scheme)
{
	return schemes[scheme].algo;
}

static uint32_t
le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static void
put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void
sha256_hex(const uint8_t *data, size_t len, char out[65])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned dlen = 0;

	EVP_Digest(data, len, d, &dlen, EVP_sha256(), NULL);
	otad_hex(d, 32, out);
}

enum otad_err
sbv2_decode(const uint8_t *raw, struct sbv2_block *out, char *why,
    size_t whylen)
{
	const struct scheme_info *s;

	memset(out, 0, sizeof(*out));
	out->raw = raw;
	if (raw[1] == ESPIMG_SIG_RSA) {
		out->scheme = SBV2_RSA3072;
	} else if (raw[1] == ESPIMG_SIG_ECDSA && raw[SHA_VERSION] == 0 &&
	    raw[36] == 1) {
		out->scheme = SBV2_ECDSA_P192;
	} else if (raw[1] == ESPIMG_SIG_ECDSA && raw[SHA_VERSION] == 0 &&
	    raw[36] == 2) {
		out->scheme = SBV2_ECDSA_P256;
	} else if (raw[1] == ESPIMG_SIG_ECDSA && raw[SHA_VERSION] == 1 &&
	    raw[52] == 3) {
		out->scheme = SBV2_ECDSA_P384;
	} else {
		snprintf(why, whylen, "version 0x%02x, hash %u, curve %u: no "
		    "bootloader knows it", (unsigned)raw[1],
		    (unsigned)raw[SHA_VERSION], (unsigned)(raw[SHA_VERSION] ==
		    1 ? raw[52] : raw[36]));
		return OTAD_ERR_NOT_IMAGE;
	}
	s = &schemes[out->scheme];
	sha256_hex(raw + s->key_at, s->key_len, out->key_digest);
	return OTAD_OK;
}

/* n little-endian bytes into big-endian out */
static void
reverse(const uint8_t *in, size_t n, uint8_t *out)
{
	size_t i;

	for (i = 0; i < n; i++)
		out[i] = in[n - 1 - i];
}

/* The block's RSA public key. */
static EVP_PKEY *
rsa_key(const uint8_t *raw)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	BIGNUM *n = BN_lebin2bn(raw + RSA_N, RSA_BYTES, NULL);
	BIGNUM *e = BN_new();

	if (bld == NULL || n == NULL || e == NULL ||
	    !BN_set_word(e, le32(raw + RSA_E)) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	return pkey;
}

/* The block's ECDSA public key: the point, X then Y, little-endian. */
static EVP_PKEY *
ec_key(const struct scheme_info *s, const uint8_t *raw)
{
	uint8_t point[1 + 2 * 48];
	OSSL_PARAM params[3];
	EVP_PKEY_CTX *ctx;
	EVP_PKEY *pkey = NULL;
	const uint8_t *p = raw + s->key_at + 1;

	point[0] = 0x04; /* uncompressed: SEC1 04 || X || Y */
	reverse(p, s->coord, point + 1);
	reverse(p + s->coord, s->coord, point + 1 + s->coord);
	params[0] = OSSL_PARAM_construct_utf8_string(
	    OSSL_PKEY_PARAM_GROUP_NAME, (char *)(uintptr_t)s->group, 0);
	params[1] = OSSL_PARAM_construct_octet_string(
	    OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * s->coord);
	params[2] = OSSL_PARAM_construct_end();
	if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	return pkey;
}

/* The block's r and s (little-endian) as a DER ECDSA-Sig-Value. */
static int
ec_signature(const struct scheme_info *s, const uint8_t *raw, uint8_t **der)
{
	/* after the point's whole field: 64 bytes even for P-192's 48 */
	const uint8_t *p = raw + s->key_at + s->key_len;
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r = BN_lebin2bn(p, (int)s->coord, NULL);
	BIGNUM *sv = BN_lebin2bn(p + s->coord, (int)s->coord, NULL);
	int n = -1;

	*der = NULL;
	if (sig != NULL && r != NULL && sv != NULL &&
	    ECDSA_SIG_set0(sig, r, sv) == 1) {
		r = sv = NULL; /* owned by sig */
		n = i2d_ECDSA_SIG(sig, der);
	}
	BN_free(r);
	BN_free(sv);
	ECDSA_SIG_free(sig);
	return n;
}

enum otad_err
sbv2_verify(const struct sbv2_block *b, const uint8_t *signed_data,
    size_t len, char *why, size_t whylen)
{
	const struct scheme_info *s = &schemes[b->scheme];
	unsigned char digest[EVP_MAX_MD_SIZE];
	uint8_t sig_be[RSA_BYTES], *der = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	unsigned dlen = 0;
	int ok = 0, derlen;

	/* the bootloader hashes the image itself: never trust the block's */
	if (!EVP_Digest(signed_data, len, digest, &dlen, s->digest_len == 48 ?
	    EVP_sha384() : EVP_sha256(), NULL) || dlen != s->digest_len ||
	    memcmp(digest, b->raw + DIGEST_AT, dlen) != 0) {
		snprintf(why, whylen, "image digest mismatch");
		return OTAD_ERR_INVALID;
	}
	if (b->scheme == SBV2_RSA3072) {
		reverse(b->raw + RSA_SIG, RSA_BYTES, sig_be);
		ok = (pkey = rsa_key(b->raw)) != NULL &&
		    (ctx = EVP_PKEY_CTX_new(pkey, NULL)) != NULL &&
		    EVP_PKEY_verify_init(ctx) == 1 &&
		    EVP_PKEY_CTX_set_rsa_padding(ctx,
		    RSA_PKCS1_PSS_PADDING) == 1 &&
		    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
		    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) == 1 &&
		    EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_SALT) == 1 &&
		    EVP_PKEY_verify(ctx, sig_be, sizeof(sig_be), digest,
		    dlen) == 1;
	} else {
		/*
		 * The digest as the message hash; OpenSSL truncates it to
		 * the order's bits (P-192 takes the leftmost 192), as
		 * FIPS 186-4 and the ROM do.
		 */
		ok = (pkey = ec_key(s, b->raw)) != NULL &&
		    (derlen = ec_signature(s, b->raw, &der)) > 0 &&
		    (ctx = EVP_PKEY_CTX_new(pkey, NULL)) != NULL &&
		    EVP_PKEY_verify_init(ctx) == 1 &&
		    EVP_PKEY_verify(ctx, der, (size_t)derlen, digest, dlen) == 1;
	}
	OPENSSL_free(der);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	if (!ok) {
		snprintf(why, whylen, "%s signature does not verify",
		    b->scheme == SBV2_RSA3072 ? "RSA" : "ECDSA");
		return OTAD_ERR_INVALID;
	}
	return OTAD_OK;
}

/* -n^-1 mod 2^32, the Montgomery constant the ROM's RSA uses */
static uint32_t
mdash(uint32_t n0)
{
	uint32_t inv = n0; /* right to 3 bits for odd n0; each step doubles */
	int i;

	for (i = 0; i < 5; i++)
		inv *= 2 - n0 * inv;
	return (uint32_t)0 - inv;
}

/* The RSA key fields as a block holds them: n, e, rinv, mdash. */
static int
rsa_fields(EVP_PKEY *pkey, uint8_t out[RSA_SIG - RSA_N])
{
	BIGNUM *n = NULL, *e = NULL, *rr = BN_new(), *rinv = BN_new();
	BN_CTX *bctx = BN_CTX_new();
	int ok;

	ok = rr != NULL && rinv != NULL && bctx != NULL &&
	    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n) &&
	    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) &&
	    BN_num_bytes(e) <= 4 && BN_is_odd(n) &&
	    /* rinv = R^2 mod n, R = 2^3072 */
	    BN_set_bit(rr, 2 * 8 * RSA_BYTES) && BN_mod(rinv, rr, n, bctx) &&
	    BN_bn2lebinpad(n, out, RSA_BYTES) == RSA_BYTES &&
	    BN_bn2lebinpad(rinv, out + (RSA_RINV - RSA_N), RSA_BYTES) ==
	    RSA_BYTES;
	if (ok) {
		put_le32(out + (RSA_E - RSA_N), (uint32_t)BN_get_word(e));
		/* n mod 2^32: its first four bytes, little-endian */
		put_le32(out + (RSA_MDASH - RSA_N), mdash(le32(out)));
	}
	BN_free(n);
	BN_free(e);
	BN_free(rr);
	BN_free(rinv);
	BN_CTX_free(bctx);
	return ok;
}

/* The ECDSA key fields as a block holds them: curve id, X, Y, zeros. */
static int
ec_fields(EVP_PKEY *pkey, const struct scheme_info *s, uint8_t *out)
{
	BIGNUM *x = NULL, *y = NULL;
	int ok;

	memset(out, 0, s->key_len);
	out[0] = (uint8_t)s->curve_id;
	ok = EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &x) &&
	    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &y) &&
	    BN_bn2lebinpad(x, out + 1, (int)s->coord) == (int)s->coord &&
	    BN_bn2lebinpad(y, out + 1 + s->coord, (int)s->coord) ==
	    (int)s->coord;
	BN_free(x);
	BN_free(y);
	return ok;
}

/* The scheme of a public key; -1 for a key no bootloader verifies. */
static int
key_scheme(EVP_PKEY *pkey)
{
	char group[32];
	size_t glen = 0;
	int i;

	if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA)
		return EVP_PKEY_get_bits(pkey) == 8 * RSA_BYTES ?
		    SBV2_RSA3072 : -1;
	if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC ||
	    !EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME,
	    group, sizeof(group), &glen))
		return -1;
	for (i = SBV2_ECDSA_P192; i <= SBV2_ECDSA_P384; i++)
		if (strcmp(group, schemes[i].group) == 0)
			return i;
	return -1;
}

enum otad_err
sbv2_key_digest(const char *pem, size_t len, enum sbv2_scheme *scheme,
    char digest[65], char *why, size_t whylen)
{
	uint8_t fields[RSA_SIG - RSA_N];
	EVP_PKEY *pkey = NULL;
	BIO *bio;
	int s, ok;

	if (len < 64 * 1024 && (bio = BIO_new_mem_buf(pem, (int)len)) !=
	    NULL) {
		pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
		BIO_free(bio);
	}
	if (pkey == NULL) {
		snprintf(why, whylen, "not a PEM public key");
		return OTAD_ERR_INVALID;
	}
	if ((s = key_scheme(pkey)) < 0) {
		snprintf(why, whylen, "a Secure Boot v2 key is RSA-3072 or "
		    "ECDSA P-192, P-256 or P-384, not %s (%d bits)",
		    EVP_PKEY_get0_type_name(pkey), EVP_PKEY_get_bits(pkey));
		EVP_PKEY_free(pkey);
		return OTAD_ERR_INVALID;
	}
	ok = s == SBV2_RSA3072 ? rsa_fields(pkey, fields) :
	    ec_fields(pkey, &schemes[s], fields);
	EVP_PKEY_free(pkey);
	if (!ok) {
		snprintf(why, whylen, "cannot read the key's fields");
		return OTAD_ERR_INVALID;
	}
	*scheme = (enum sbv2_scheme)s;
	sha256_hex(fields, schemes[s].key_len, digest);
	return OTAD_OK;
}

unsigned
sbv2_chip_schemes(unsigned chip_id)
{
	enum { RSA = 1u << SBV2_RSA3072, ECDSA = 1u << SBV2_ECDSA_P192 |
	    1u << SBV2_ECDSA_P256 | 1u << SBV2_ECDSA_P384 };

	switch (chip_id) {
	case 0x0000: /* esp32 (ECO3): RSA only */
	case 0x0002: /* esp32s2 */
	case 0x0005: /* esp32c3 */
	case 0x0009: /* esp32s3 */
		return RSA;
	case 0x000c: /* esp32c2: ECDSA only */
		return ECDSA;
	default: /* c5, c6, c61, h2, p4 and later: either */
		return RSA | ECDSA;
	}
}

static const struct sbv2_trusted *
trusted_by(const struct sbv2_trusted *t, size_t n, const char *digest)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(t[i].digest, digest) == 0)
			return &t[i];
	return NULL;
}

enum otad_err
sbv2_check_image(const struct espimg_info *info, const uint8_t *buf,
    size_t len, const struct sbv2_trusted *trusted, size_t ntrusted,
    struct sbv2_verdict out[ESPIMG_SIG_BLOCKS_MAX], char *why,
    size_t whylen)
{
	unsigned schemes_ok = sbv2_chip_schemes(info->chip_id), i;
	const struct sbv2_trusted *t;
	int failed = -1, wrong_chip = -1, good = -1;

	memset(out, 0, ESPIMG_SIG_BLOCKS_MAX * sizeof(*out));
	if (info->signed_len > len) {
		snprintf(why, whylen, "the signed region runs past the file");
		return OTAD_ERR_INVALID;
	}
	/* every block judged, for artifact show; the first good one counts */
	for (i = 0; i < info->nsig && i < ESPIMG_SIG_BLOCKS_MAX; i++) {
		struct sbv2_verdict *v = &out[i];

		if (sbv2_decode(info->sig[i].block, &v->block, v->why,
		    sizeof(v->why)) != OTAD_OK)
			continue;
		v->chip_verifies = (schemes_ok >> v->block.scheme) & 1;
		if ((t = trusted_by(trusted, ntrusted, v->block.key_digest)) ==
		    NULL) {
			snprintf(v->why, sizeof(v->why), "its key is not a "
			    "trusted secure-boot key");
			continue;
		}
		v->key = t->name;
		if (sbv2_verify(&v->block, buf, info->signed_len, v->why,
		    sizeof(v->why)) != OTAD_OK) {
			if (failed < 0)
				failed = (int)i;
			continue;
		}
		v->verified = 1;
		if (v->chip_verifies) {
			if (good < 0)
				good = (int)i;
			continue;
		}
		snprintf(v->why, sizeof(v->why), "the chip's bootloader does "
		    "not verify %s", sbv2_scheme_name(v->block.scheme));
		if (wrong_chip < 0)
			wrong_chip = (int)i;
	}
	if (good >= 0)
		return OTAD_OK;
	if (wrong_chip >= 0) {
		const char *chip = espimg_chip_name(info->chip_id);

		snprintf(why, whylen, "block %d (%s, key '%s') verifies, but "
		    "an %s bootloader does not verify %s blocks: devices would "
		    "refuse the image", wrong_chip,
		    sbv2_scheme_name(out[wrong_chip].block.scheme),
		    out[wrong_chip].key, chip ? chip : "unknown chip's",
		    sbv2_scheme_name(out[wrong_chip].block.scheme));
	} else if (failed >= 0) {
		snprintf(why, whylen, "block %d: %s", failed, out[failed].why);
	} else {
		snprintf(why, whylen, "no block carries a trusted secure-boot "
		    "key");
		for (i = 0; i < info->nsig; i++)
			if (out[i].block.raw != NULL) {
				snprintf(why + strlen(why), whylen -
				    strlen(why), " (block %u: %s key %.16s...)",
				    i, sbv2_scheme_name(out[i].block.scheme),
				    out[i].block.key_digest);
				break;
			}
	}
	return OTAD_ERR_INVALID;
}
