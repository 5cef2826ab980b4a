/* espimg.c: ESP-IDF app image header checks */
#include <stdio.h>
#include <string.h>

#include "espimg.h"

static const struct {
	unsigned id;
	const char *name;
} chips[] = {
	{0x0000, "esp32"},   {0x0002, "esp32s2"}, {0x0005, "esp32c3"},
	{0x0009, "esp32s3"}, {0x000c, "esp32c2"}, {0x000d, "esp32c6"},
	{0x0010, "esp32h2"}, {0x0012, "esp32p4"}, {0x0014, "esp32c61"},
	{0x0017, "esp32c5"},
};

const char *
espimg_chip_name(unsigned chip_id)
{
	size_t i;

	for (i = 0; i < sizeof(chips) / sizeof(chips[0]); i++)
		if (chips[i].id == chip_id)
			return chips[i].name;
	return NULL;
}

static uint16_t
le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t
le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

enum otad_err
espimg_check_header(const uint8_t *buf, size_t len, uint64_t file_size,
    struct espimg_info *info, char *why, size_t whylen)
{
	memset(info, 0, sizeof(*info));
	if (file_size > ESPIMG_MAX_SIZE) {
		snprintf(why, whylen, "file is larger than %u MiB, the largest "
		    "app partition", ESPIMG_MAX_SIZE >> 20);
		return OTAD_ERR_TOO_LARGE;
	}
	/* the header plus the first segment header at the least */
	if (len < ESPIMG_HEADER_LEN + 8 || file_size < ESPIMG_HEADER_LEN + 8) {
		snprintf(why, whylen, "file is too short for an image header");
		return OTAD_ERR_NOT_IMAGE;
	}
	if (buf[0] != ESPIMG_MAGIC) {
		snprintf(why, whylen, "first byte is 0x%02x, not 0xe9: not an "
		    "ESP32 app image", buf[0]);
		return OTAD_ERR_NOT_IMAGE;
	}
	info->segments = buf[1];
	info->spi_mode = buf[2];
	info->entry = le32(buf + 4);
	info->chip_id = le16(buf + 12);
	info->min_chip_rev = le16(buf + 15);
	info->max_chip_rev = le16(buf + 17);
	info->hash_appended = buf[23];
	if (info->segments < 1 || info->segments > ESPIMG_MAX_SEGMENTS) {
		snprintf(why, whylen, "segment count %u is outside 1..%d",
		    info->segments, ESPIMG_MAX_SEGMENTS);
		return OTAD_ERR_NOT_IMAGE;
	}
	if (info->spi_mode > 5) {
		snprintf(why, whylen, "unknown SPI flash mode %u",
		    info->spi_mode);
		return OTAD_ERR_NOT_IMAGE;
	}
	if (espimg_chip_name(info->chip_id) == NULL) {
		snprintf(why, whylen, "unknown chip id 0x%04x", info->chip_id);
		return OTAD_ERR_NOT_IMAGE;
	}
	if (info->hash_appended > 1) {
		snprintf(why, whylen, "hash_appended flag is %d, not 0 or 1",
		    info->hash_appended);
		return OTAD_ERR_NOT_IMAGE;
	}
	if (info->max_chip_rev != 0xffff && info->max_chip_rev != 0 &&
	    info->max_chip_rev < info->min_chip_rev) {
		snprintf(why, whylen, "chip revision range %u..%u is empty",
		    info->min_chip_rev, info->max_chip_rev);
		return OTAD_ERR_NOT_IMAGE;
	}
	if ((uint64_t)le32(buf + ESPIMG_HEADER_LEN + 4) >
	    file_size - ESPIMG_HEADER_LEN - 8) {
		snprintf(why, whylen, "segment 0 runs past the end of the file");
		return OTAD_ERR_NOT_IMAGE;
	}
	return OTAD_OK;
}
