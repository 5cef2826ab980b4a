/* fsimg: artifact kinds and filesystem image checks */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fsimg.h"
#include "imgbuild.h"

static void
test_names_and_modes(void **state)
{
	(void)state;
	assert_int_equal(fsimg_kind_parse("littlefs"), KIND_LITTLEFS);
	assert_int_equal(fsimg_kind_parse("app"), KIND_APP);
	assert_int_equal(fsimg_kind_parse("nvs"), -1);
	assert_string_equal(fsimg_kind_name(KIND_FATFS), "fatfs");
	/* what HTTPUpdate::handleUpdate sends in x-ESP32-mode */
	assert_int_equal(fsimg_kind_of_mode("sketch"), KIND_APP);
	assert_int_equal(fsimg_kind_of_mode("spiffs"), KIND_SPIFFS);
	assert_int_equal(fsimg_kind_of_mode("flashfs"), KIND_ANY_FS);
	assert_int_equal(fsimg_kind_of_mode("LittleFS"), KIND_LITTLEFS);
	assert_int_equal(fsimg_kind_of_mode("app"), -1);
	assert_int_equal(fsimg_kind_of_mode("bootloader"), -1);
}

static void
test_checks(void **state)
{
	uint8_t *buf = calloc(1, 3 * FSIMG_SECTOR);
	struct imgspec spec = img_default();
	char why[256];

	(void)state;
	assert_non_null(buf);
	/* spiffs and fatfs: whole sectors, not an app */
	assert_int_equal(fsimg_check(KIND_SPIFFS, buf, 2 * FSIMG_SECTOR, why,
	    sizeof(why)), OTAD_OK);
	assert_int_equal(fsimg_check(KIND_FATFS, buf, 100, why, sizeof(why)),
	    OTAD_ERR_NOT_IMAGE);
	assert_non_null(strstr(why, "sectors"));
	assert_int_equal(fsimg_check(KIND_SPIFFS, buf, 0, why, sizeof(why)),
	    OTAD_ERR_NOT_IMAGE);
	/* littlefs: a superblock in block 0 or 1 */
	assert_int_equal(fsimg_check(KIND_LITTLEFS, buf, 2 * FSIMG_SECTOR,
	    why, sizeof(why)), OTAD_ERR_NOT_IMAGE);
	assert_non_null(strstr(why, "superblock"));
	memcpy(buf + FSIMG_SECTOR + 8, "littlefs", 8);
	assert_int_equal(fsimg_check(KIND_LITTLEFS, buf, 2 * FSIMG_SECTOR,
	    why, sizeof(why)), OTAD_OK);
	/* an app image is never a file system, whatever its size */
	assert_true(img_build(buf, 3 * FSIMG_SECTOR, &spec) > 0);
	assert_int_equal(fsimg_check(KIND_SPIFFS, buf, 3 * FSIMG_SECTOR, why,
	    sizeof(why)), OTAD_ERR_NOT_IMAGE);
	assert_non_null(strstr(why, "app image"));
	free(buf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_and_modes),
		cmocka_unit_test(test_checks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
