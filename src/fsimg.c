/* fsimg.c: artifact kinds and filesystem image checks */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "espimg.h"
#include "fsimg.h"

static const char *const kind_names[KIND_COUNT] = {
	[KIND_APP] = "app",
	[KIND_SPIFFS] = "spiffs",
	[KIND_LITTLEFS] = "littlefs",
	[KIND_FATFS] = "fatfs",
};

const char *
fsimg_kind_name(enum artifact_kind kind)
{
	return kind < KIND_COUNT ? kind_names[kind] : "filesystem";
}

int
fsimg_kind_parse(const char *name)
{
	int k;

	for (k = 0; name != NULL && k < KIND_COUNT; k++)
		if (strcmp(name, kind_names[k]) == 0)
			return k;
	return -1;
}

int
fsimg_kind_of_mode(const char *mode)
{
	int k;

	/* HTTPUpdate::handleUpdate sends these, lower case */
	if (strcasecmp(mode, "sketch") == 0)
		return KIND_APP;
	if (strcasecmp(mode, "flashfs") == 0)
		return KIND_ANY_FS;
	for (k = KIND_APP + 1; k < KIND_COUNT; k++)
		if (strcasecmp(mode, kind_names[k]) == 0)
			return k;
	return -1; /* "app" is a kind, but no client's mode */
}

/* littlefs keeps its superblock in blocks 0 and 1: "littlefs" at 8 */
static int
has_littlefs_superblock(const uint8_t *buf, size_t len)
{
	static const char magic[] = "littlefs";
	size_t block;

	for (block = 0; block < 2; block++) {
		size_t at = block * FSIMG_SECTOR + 8;

		if (at + 8 <= len && memcmp(buf + at, magic, 8) == 0)
			return 1;
	}
	return 0;
}

enum otad_err
fsimg_check(enum artifact_kind kind, const uint8_t *buf, size_t len,
    char *why, size_t whylen)
{
	struct espimg_info info;
	char ignored[64];

	if (len == 0) {
		snprintf(why, whylen, "the file is empty");
		return OTAD_ERR_NOT_IMAGE;
	}
	if (buf[0] == ESPIMG_MAGIC && espimg_check_header(buf, len, len,
	    &info, ignored, sizeof(ignored)) == OTAD_OK) {
		snprintf(why, whylen, "this is an ESP app image, not a %s "
		    "image: add it without --kind", fsimg_kind_name(kind));
		return OTAD_ERR_NOT_IMAGE;
	}
	if (len % FSIMG_SECTOR != 0) {
		snprintf(why, whylen, "a %s image is whole %d-byte flash "
		    "sectors, as the tools that build one write it; this one "
		    "is %zu bytes", fsimg_kind_name(kind), FSIMG_SECTOR, len);
		return OTAD_ERR_NOT_IMAGE;
	}
	if (kind == KIND_LITTLEFS && !has_littlefs_superblock(buf, len)) {
		snprintf(why, whylen, "no littlefs superblock (the 'littlefs' "
		    "magic at offset 8 of block 0 or 1)");
		return OTAD_ERR_NOT_IMAGE;
	}
	return OTAD_OK;
}
