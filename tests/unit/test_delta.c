/* delta and heatshrink: sizes, round trips, the reference patches, and
 * corrupt patches refused cleanly */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "delta.h"
#include "firmware.h"
#include "heatshrink.h"

static void
test_sizes(void **state)
{
	static const int64_t values[] = {0, 1, -1, 63, -63, 64, -64, 8191,
	    8192, 615388, -615388, INT64_C(1) << 40, -(INT64_C(1) << 50)};
	static const uint8_t ref[] = {0x9c, 0x8f, 0x4b}; /* 615388 */
	uint8_t b[10];
	int64_t v;
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		n = delta_pack_size(values[i], b);
		assert_true(n >= 1 && n <= 10);
		assert_int_equal(delta_unpack_size(b, n, &v), n);
		assert_int_equal(v, values[i]);
		/* cut short: refused, not read past */
		if (n > 1)
			assert_int_equal(delta_unpack_size(b, n - 1, &v), 0);
	}
	/* as detools writes the MicroPython v1.10 size */
	assert_int_equal(delta_pack_size(615388, b), 3);
	assert_memory_equal(b, ref, 3);
	assert_int_equal(delta_pack_size(5, b), 1);
	assert_int_equal(b[0], 0x05);
	assert_int_equal(delta_pack_size(-5, b), 1);
	assert_int_equal(b[0], 0x45);
	/* eleven bytes that all say "more": too large, refused */
	memset(b, 0xff, sizeof(b));
	assert_int_equal(delta_unpack_size(b, sizeof(b), &v), 0);
	assert_int_equal(delta_unpack_size(b, 0, &v), 0);
}

static void
round_trip(const uint8_t *in, size_t n, size_t *packed_len)
{
	uint8_t *packed, *out;
	size_t np, nout;

	assert_int_equal(heatshrink_encode(in, n, &packed, &np), OTAD_OK);
	assert_int_equal(heatshrink_decode(packed, np, n, &out, &nout),
	    OTAD_OK);
	assert_int_equal(nout, n);
	if (n > 0)
		assert_memory_equal(out, in, n);
	/* one byte less room than it needs: refused */
	if (n > 0) {
		free(out);
		assert_int_equal(heatshrink_decode(packed, np, n - 1, &out,
		    &nout), OTAD_ERR_INVALID);
	}
	free(out);
	free(packed);
	*packed_len = np;
}

static void
test_heatshrink_round_trips(void **state)
{
	size_t n = 3u << 20, i, np;
	uint8_t *big = malloc(n), one = 0xa5;
	uint32_t x = 2463534242u;

	(void)state;
	assert_non_null(big);
	round_trip(big, 0, &np);
	assert_int_equal(np, 0);
	round_trip(&one, 1, &np);
	assert_int_equal(np, 2); /* 9 bits */
	/* incompressible: at most 9 bits a byte */
	for (i = 0; i < 65536; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		big[i] = (uint8_t)x;
	}
	round_trip(big, 65536, &np);
	assert_true(np <= 65536 * 9 / 8 + 1);
	/* highly repetitive: 16 bits per 128 bytes */
	memset(big, 0, n);
	round_trip(big, 1 << 20, &np);
	assert_true(np < (1 << 20) / 60);
	for (i = 0; i < n; i++)
		big[i] = (uint8_t)("otad!"[i % 5]);
	round_trip(big, 1 << 20, &np);
	assert_true(np < (1 << 20) / 60);
	/* 3 MB of an image and noise: both ways exact */
	{
		size_t nimg;
		uint8_t *img = firmware_load("wled-esp32/0.14.3.bin", &nimg);

		memcpy(big, img, nimg < n ? nimg : n);
		free(img);
		round_trip(big, n, &np);
		assert_true(np < n);
	}
	free(big);
}

static void
test_heatshrink_refuses(void **state)
{
	static const uint8_t lit[] = {0x80, 0x80}; /* 'A'? no: 0x01, pad */
	uint8_t bad[3], *out;
	size_t nout;

	(void)state;
	assert_int_equal(heatshrink_decode(lit, 2, 16, &out, &nout), OTAD_OK);
	assert_int_equal(nout, 1);
	assert_int_equal(out[0], 0x01);
	free(out);
	/* a whole byte after the last symbol: garbage, not padding */
	memcpy(bad, lit, 2);
	bad[2] = 0;
	assert_int_equal(heatshrink_decode(bad, 3, 16, &out, &nout),
	    OTAD_ERR_INVALID);
	/* padding must be zeros */
	bad[1] = 0x81;
	assert_int_equal(heatshrink_decode(bad, 2, 16, &out, &nout),
	    OTAD_ERR_INVALID);
}

static void
apply_ok(const char *base_rel, const char *patch_rel, const char *want_rel,
    size_t skip)
{
	size_t nb, np, nw, nout;
	uint8_t *base = firmware_load(base_rel, &nb), *patch = firmware_load(patch_rel, &np);
	uint8_t *want = firmware_load(want_rel, &nw), *out;
	char why[256] = "";

	assert_int_equal(delta_apply(base, nb, patch + skip, np - skip, &out,
	    &nout, why, sizeof(why)), OTAD_OK);
	assert_int_equal(nout, nw);
	assert_memory_equal(out, want, nw);
	free(out);
	free(base);
	free(patch);
	free(want);
}

#define MP "delta-vectors/detools/esp8266-20180511-v1.9.4"
#define MP_NEW "delta-vectors/detools/esp8266-20190125-v1.10.bin"
#define EDO "delta-vectors/esp_delta_ota/"

static void
test_reference_patches(void **state)
{
	size_t nb, np, nw, nout;
	uint8_t *base, *patch, *want, *out;
	char why[256];

	(void)state;
	apply_ok(MP ".bin", MP "--20190125-v1.10-heatshrink.patch", MP_NEW, 0);
	apply_ok(EDO "base.bin", EDO "patch.bin", EDO "new.bin", 0);
	/* bad_patch.bin applies, to something else: only a digest tells */
	base = firmware_load(EDO "base.bin", &nb);
	patch = firmware_load(EDO "bad_patch.bin", &np);
	want = firmware_load(EDO "new.bin", &nw);
	assert_int_equal(delta_apply(base, nb, patch, np, &out, &nout, why,
	    sizeof(why)), OTAD_OK);
	assert_true(nout != nw || memcmp(out, want, nw) != 0);
	free(out);
	free(base);
	free(patch);
	free(want);
}

/* Ours for the reference pairs: they apply, and are no larger. */
static void
ours_for(const char *base_rel, const char *to_rel, size_t ref_size)
{
	size_t nb, nt, np, nout;
	uint8_t *base = firmware_load(base_rel, &nb), *to = firmware_load(to_rel, &nt);
	uint8_t *patch, *out;
	char why[256];

	assert_int_equal(delta_create(base, nb, to, nt, &patch, &np), OTAD_OK);
	if (np > ref_size)
		fail_msg("%s: %zu bytes, the reference is %zu", to_rel, np,
		    ref_size);
	assert_int_equal(delta_apply(base, nb, patch, np, &out, &nout, why,
	    sizeof(why)), OTAD_OK);
	assert_int_equal(nout, nt);
	assert_memory_equal(out, to, nt);
	free(out);
	free(patch);
	free(base);
	free(to);
}

static void
test_our_patches(void **state)
{
	static const uint8_t a[] = "the same old bytes";
	uint8_t *patch, *out;
	size_t np, nout;
	char why[256];

	(void)state;
	ours_for(MP ".bin", MP_NEW, 96957);
	ours_for(EDO "base.bin", EDO "new.bin", 1349);
	/* an empty target, an empty base */
	assert_int_equal(delta_create(a, sizeof(a), a, 0, &patch, &np),
	    OTAD_OK);
	assert_int_equal(delta_apply(a, sizeof(a), patch, np, &out, &nout,
	    why, sizeof(why)), OTAD_OK);
	assert_int_equal(nout, 0);
	free(out);
	free(patch);
	assert_int_equal(delta_create(a, 0, a, sizeof(a), &patch, &np),
	    OTAD_OK);
	assert_int_equal(delta_apply(a, 0, patch, np, &out, &nout, why,
	    sizeof(why)), OTAD_OK);
	assert_memory_equal(out, a, sizeof(a));
	free(out);
	free(patch);
}

static void
expect_refused(const uint8_t *base, size_t nb, const uint8_t *patch,
    size_t np, const char *want)
{
	uint8_t *out = (uint8_t *)1;
	size_t nout;
	char why[256] = "";
	enum otad_err rc = delta_apply(base, nb, patch, np, &out, &nout, why,
	    sizeof(why));

	if (rc != OTAD_ERR_INVALID)
		fail_msg("'%s' expected, got %s", want, otad_strerror(rc));
	assert_null(out);
	if (strstr(why, want) == NULL)
		fail_msg("got '%s', want '%s'", why, want);
}

static void
test_corrupt_patches(void **state)
{
	size_t nb, np, nother, i;
	uint8_t *base = firmware_load(EDO "base.bin", &nb);
	uint8_t *patch = firmware_load(EDO "patch.bin", &np);
	uint8_t *other = firmware_load("esp-idf/hello_world_esp32.bin", &nother);
	uint8_t *longer = malloc(np + 1), *out;
	size_t nout;
	char why[256];
	int refused = 0;

	(void)state;
	/* truncated anywhere: refused, never a crash */
	for (i = 0; i < np; i++) {
		out = NULL;
		if (delta_apply(base, nb, patch, i, &out, &nout, why,
		    sizeof(why)) == OTAD_ERR_INVALID)
			refused++;
		free(out);
	}
	assert_true(refused > (int)np * 9 / 10);
	expect_refused(base, nb, patch, 0, "truncated");
	expect_refused(base, nb, patch, 3, "truncated");
	/* garbage after the end */
	memcpy(longer, patch, np);
	longer[np] = 0x5a;
	expect_refused(base, nb, longer, np + 1, "corrupt patch");
	/* another kind of patch, another compression */
	memcpy(longer, patch, np);
	longer[0] = 0x14; /* in-place */
	expect_refused(base, nb, longer, np, "not a detools sequential");
	longer[0] = 0x01; /* lzma */
	expect_refused(base, nb, longer, np, "not heatshrink");
	/* a base that is too short: reads outside it */
	{
		size_t nmb, nmp;
		uint8_t *mb = firmware_load(MP ".bin", &nmb);
		uint8_t *mp = firmware_load(MP "--20190125-v1.10-heatshrink.patch",
		    &nmp);

		expect_refused(mb, nmb / 2, mp, nmp, "outside the base");
		free(mb);
		free(mp);
	}
	/* the wrong base gives the wrong image, or is refused */
	out = NULL;
	if (delta_apply(other, nother, patch, np, &out, &nout, why,
	    sizeof(why)) == OTAD_OK) {
		size_t nw;
		uint8_t *want = firmware_load(EDO "new.bin", &nw);

		assert_true(nout != nw || memcmp(out, want, nw) != 0);
		free(want);
	}
	free(out);
	free(longer);
	free(base);
	free(patch);
	free(other);
}

static void
test_container(void **state)
{
	uint8_t digest[32], got[32], h[DELTA_HEADER_SIZE];
	static const uint8_t magic[] = {0x10, 0xde, 0xcd, 0xfc};
	size_t i;

	(void)state;
	for (i = 0; i < 32; i++)
		digest[i] = (uint8_t)(i * 3);
	delta_container_header(digest, h);
	assert_memory_equal(h, magic, 4);
	assert_memory_equal(h + 4, digest, 32);
	for (i = 36; i < DELTA_HEADER_SIZE; i++)
		assert_int_equal(h[i], 0);
	assert_int_equal(delta_container_parse(h, sizeof(h), got), 1);
	assert_memory_equal(got, digest, 32);
	/* too short, or a bare patch */
	assert_int_equal(delta_container_parse(h, 63, got), 0);
	h[0] = 0x04;
	assert_int_equal(delta_container_parse(h, sizeof(h), got), 0);
}

/* A build a stopping daemon gives up ends at once, with nothing made. */
static void
test_create_gives_up_when_stopped(void **state)
{
	uint8_t a[4096], b[4096], *patch = NULL;
	atomic_int stop = 1;
	size_t i, np = 0;

	(void)state;
	for (i = 0; i < sizeof(a); i++) {
		a[i] = (uint8_t)(i * 7);
		b[i] = (uint8_t)(i * 7 + (i % 97 == 0));
	}
	assert_int_equal(delta_create_until(a, sizeof(a), b, sizeof(b), &patch,
	    &np, &stop), OTAD_ERR_SHUTDOWN);
	assert_null(patch);
	assert_int_equal(np, 0);
	atomic_store(&stop, 0);
	assert_int_equal(delta_create_until(a, sizeof(a), b, sizeof(b), &patch,
	    &np, &stop), OTAD_OK);
	assert_non_null(patch);
	free(patch);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_heatshrink_round_trips),
		cmocka_unit_test(test_heatshrink_refuses),
		cmocka_unit_test(test_reference_patches),
		cmocka_unit_test(test_our_patches),
		cmocka_unit_test(test_corrupt_patches),
		cmocka_unit_test(test_container),
		cmocka_unit_test(test_create_gives_up_when_stopped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
