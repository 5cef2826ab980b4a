/*
 * espimg.h: ESP-IDF application images (the file written to an OTA slot).
 *
 * Layout: a 24-byte image header (magic 0xE9, segment count, SPI flash
 * settings, entry point, chip id and revision range, hash_appended), then
 * segments, each behind an 8-byte header. Pure functions over a buffer;
 * thread-safe.
 */
#ifndef ESPIMG_H
#define ESPIMG_H

#include <stddef.h>
#include <stdint.h>

#include "otad.h"

#define ESPIMG_MAGIC 0xE9
#define ESPIMG_HEADER_LEN 24
#define ESPIMG_MAX_SEGMENTS 16
/* The largest app partition ESP-IDF can map is 16 MiB. */
#define ESPIMG_MAX_SIZE (16u * 1024 * 1024)

struct espimg_info {
	unsigned chip_id;       /* ESP_CHIP_ID_*: 0 esp32, 5 esp32c3, ... */
	unsigned segments;      /* segment count from the header */
	unsigned spi_mode;      /* 0 QIO .. 5 FAST_READ */
	unsigned min_chip_rev;  /* full revision, major*100+minor */
	unsigned max_chip_rev;  /* full revision; 0xffff = any */
	int hash_appended;      /* a SHA-256 follows the checksum */
	uint32_t entry;         /* entry point address */
};

/*
 * Check that buf (the first len bytes of a file of file_size bytes) starts
 * with a sane ESP32 app image header. On failure returns
 * OTAD_ERR_NOT_IMAGE (or OTAD_ERR_TOO_LARGE) and writes one lower-case line
 * naming the reason into why.
 */
enum otad_err espimg_check_header(const uint8_t *buf, size_t len,
    uint64_t file_size, struct espimg_info *info, char *why, size_t whylen);

/* "esp32", "esp32c3", ...; NULL for an id this build does not know. */
const char *espimg_chip_name(unsigned chip_id);

#endif
