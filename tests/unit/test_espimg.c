/* espimg: real ESP32 images validate; each kind of damage is named */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "espimg.h"
#include "firmware.h"
#include "imgbuild.h"

static void
test_real_images(void **state)
{
	static const struct {
		const char *file, *chip, *project, *idf;
	} images[] = {
		{"wled-esp32/0.12.0.bin", "esp32", "esp32-arduino-lib-builder",
		    "v3.3.5-1-g85c43024c"},
		{"wled-esp32/0.13.0.bin", "esp32", "esp32-arduino-lib-builder",
		    "v3.3.6-16-gcc5440f6a2"},
		{"wled-esp32/0.14.3.bin", "esp32", "esp32-arduino-lib-builder",
		    "v3.3.6-16-gcc5440f6a2"},
		{"wled-esp32/0.14.4.bin", "esp32", "esp32-arduino-lib-builder",
		    "v3.3.6-16-gcc5440f6a2"},
		{"wled-esp32c3/0.14.1.bin", "esp32c3", "arduino-lib-builder",
		    "v4.4.3"},
		{"esp-idf/hello_world_esp32.bin", "esp32", "hello_world",
		    "v6.0-dev-5018-gebc68a19107-dirt"},
	};
	struct espimg_info info;
	char why[256];
	size_t i, len;

	(void)state;
	for (i = 0; i < sizeof(images) / sizeof(images[0]); i++) {
		uint8_t *buf = firmware_load(images[i].file, &len);

		if (espimg_parse(buf, len, &info, why, sizeof(why)) != OTAD_OK)
			fail_msg("%s: %s", images[i].file, why);
		assert_string_equal(espimg_chip_name(info.chip_id),
		    images[i].chip);
		assert_string_equal(info.project_name, images[i].project);
		assert_string_equal(info.idf_ver, images[i].idf);
		assert_int_equal(info.image_len, len);
		assert_int_equal(info.hash_appended, 1);
		/* the appended digest is the file's last 32 bytes */
		assert_memory_equal(info.app_sha256, buf + len - 32, 32);
		assert_int_equal(info.nsig, 0);
		assert_int_equal(info.secure_version, 0);
		assert_int_equal(espimg_version_is_generic(&info),
		    strstr(images[i].project, "arduino") != NULL);
		free(buf);
	}
}

static void
expect(const uint8_t *buf, size_t len, const char *want)
{
	struct espimg_info info;
	char why[256] = "";

	assert_int_equal(espimg_parse(buf, len, &info, why, sizeof(why)),
	    OTAD_ERR_NOT_IMAGE);
	if (strstr(why, want) == NULL)
		fail_msg("'%s' lacks '%s'", why, want);
}

static void
test_synthetic_damage(void **state)
{
	static uint8_t buf[65536], copy[65536];
	struct imgspec s = img_default();
	struct espimg_info info;
	char why[256];
	size_t len;

	(void)state;
	len = img_build(buf, sizeof(buf), &s);
	assert_int_equal(espimg_parse(buf, len, &info, why, sizeof(why)),
	    OTAD_OK);
	assert_string_equal(info.version, "1.2.3");
	assert_string_equal(info.project_name, "sensor");
	assert_int_equal(info.segments, 3);

	/* truncated, at several depths */
	expect(buf, 20, "too short");
	expect(buf, 24 + 8 + 100, "segment 0 runs past the end");
	expect(buf, len - 40, "file ends before the checksum");
	expect(buf, len - 10, "file ends before the appended SHA-256");

	/* a flipped data byte: checksum; the checksum byte itself too */
	memcpy(copy, buf, len);
	copy[600] ^= 0x01;
	expect(copy, len, "checksum mismatch");
	memcpy(copy, buf, len);
	copy[len - 33] ^= 0xff;
	expect(copy, len, "checksum mismatch");

	/* a wrong appended digest */
	memcpy(copy, buf, len);
	copy[len - 1] ^= 0x80;
	expect(copy, len, "appended SHA-256 mismatch");

	/* 17 segments */
	s.segments = 17;
	s.seglen = 256;
	len = img_build(buf, sizeof(buf), &s);
	expect(buf, len, "segment count 17 is outside 1..16");

	/* segment 2's length past the end */
	s = img_default();
	len = img_build(buf, sizeof(buf), &s);
	memcpy(copy, buf, len);
	img_put32(copy + 24 + 2 * (8 + 1024) + 4, 0x00100000);
	expect(copy, len, "segment 2 runs past the end of the file");
	img_put32(copy + 24 + 2 * (8 + 1024) + 4, 1022);
	expect(copy, len, "segment 2 length 1022 is not a multiple of 4");

	/* descriptor with the wrong magic */
	memcpy(copy, buf, len);
	img_put32(copy + 32, 0xABCD5433);
	expect(copy, len, "app descriptor magic is 0xabcd5433");
	/* an unterminated descriptor string */
	memcpy(copy, buf, len);
	memset(copy + 32 + 48, 'x', 32);
	expect(copy, len, "'project_name'");

	/* an unknown chip, a bad SPI mode, junk after the image */
	memcpy(copy, buf, len);
	copy[12] = 0x42;
	expect(copy, len, "unknown chip id 0x0042");
	memcpy(copy, buf, len);
	copy[2] = 9;
	expect(copy, len, "unknown SPI flash mode 9");
	memcpy(copy, buf, len);
	memset(copy + len, 0, 100);
	expect(copy, len + 100, "100 unexpected bytes after the image");
}

/* Append a signature sector with one (structurally valid) block. */
static size_t
add_sig_sector(uint8_t *buf, size_t len, unsigned version)
{
	size_t end = (len + 4095) / 4096 * 4096;
	uint8_t *b = buf + end;

	memset(buf + len, 0xff, end - len + 4096);
	b[0] = 0xE7;
	b[1] = (uint8_t)version;
	b[2] = b[3] = 0;
	SHA256(buf, end, b + 4);
	memset(b + 36, 0x11, 1196 - 36);
	img_put32(b + 1196, espimg_crc32(b, 1196));
	return end + 4096;
}

static void
test_signature_sector(void **state)
{
	static uint8_t buf[65536];
	struct imgspec s = img_default();
	struct espimg_info info;
	char why[256];
	size_t len, signed_len, end;

	(void)state;
	len = img_build(buf, sizeof(buf), &s);
	signed_len = add_sig_sector(buf, len, 0x02);
	assert_int_equal(espimg_parse(buf, signed_len, &info, why,
	    sizeof(why)), OTAD_OK);
	assert_int_equal(info.nsig, 1);
	assert_int_equal(info.sig[0].version, ESPIMG_SIG_RSA);
	assert_int_equal(info.image_len, len);
	end = (len + 4095) / 4096 * 4096;
	assert_int_equal(info.signed_len, end);

	/* a bad CRC */
	buf[end + 500] ^= 1;
	expect(buf, signed_len, "signature block 0 CRC mismatch");
	/* a good CRC over a digest of another image */
	signed_len = add_sig_sector(buf, len, 0x03);
	buf[end + 4] ^= 1;
	img_put32(buf + end + 1196, espimg_crc32(buf + end, 1196));
	expect(buf, signed_len, "signature block 0 signs another image");
	/* an unknown block version */
	signed_len = add_sig_sector(buf, len, 0x07);
	expect(buf, signed_len, "unknown version 0x07");
	/* padding that is not 0xff */
	signed_len = add_sig_sector(buf, len, 0x02);
	buf[len] = 0;
	expect(buf, signed_len, "padding before the signature sector");
}

static void
test_crc32(void **state)
{
	(void)state;
	/* the IEEE check value */
	assert_int_equal(espimg_crc32((const uint8_t *)"123456789", 9),
	    0xcbf43926u);
	assert_int_equal(espimg_crc32(NULL, 0), 0);
}

static void
test_chip_names(void **state)
{
	(void)state;
	assert_int_equal(espimg_chip_id("esp32c3"), 5);
	assert_int_equal(espimg_chip_id("esp8266"), -1);
	assert_string_equal(espimg_chip_name(9), "esp32s3");
	assert_null(espimg_chip_name(1));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_images),
		cmocka_unit_test(test_synthetic_damage),
		cmocka_unit_test(test_signature_sector),
		cmocka_unit_test(test_crc32),
		cmocka_unit_test(test_chip_names),
	};

	return cmocka_run_group_tests_name("espimg", tests, NULL, NULL);
}
