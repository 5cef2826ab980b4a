/*
 * espimg.h: ESP-IDF application images (the file written to an OTA slot).
 *
 * Layout: a 24-byte image header (magic 0xE9, segment count, SPI flash
 * settings, entry point, chip id and revision range, hash_appended); the
 * segments, each behind an 8-byte header (load address, length); zero
 * padding to the last byte of a 16-byte block, which holds the checksum
 * (0xEF XOR every segment data byte); with hash_appended, the SHA-256 of
 * all of that. The app descriptor (esp_app_desc_t) opens the first
 * segment's data, at offset 0x20. A Secure Boot v2 signed image is then
 * padded with 0xFF to 4 KiB and followed by a 4 KiB sector of up to three
 * 1216-byte signature blocks.
 *
 * Pure functions over a buffer; thread-safe.
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
#define ESPIMG_DESC_MAGIC 0xABCD5432u
#define ESPIMG_SIG_SECTOR 4096
#define ESPIMG_SIG_BLOCK 1216
#define ESPIMG_SIG_BLOCKS_MAX 3
#define ESPIMG_SIG_RSA 0x02   /* RSA-3072-PSS */
#define ESPIMG_SIG_ECDSA 0x03 /* ECDSA */

/* One Secure Boot v2 signature block, as found (CRC and digest checked). */
struct espimg_sig {
	unsigned version;     /* ESPIMG_SIG_RSA or ESPIMG_SIG_ECDSA */
	const uint8_t *block; /* ESPIMG_SIG_BLOCK bytes inside the buffer */
};

struct espimg_info {
	/* header */
	unsigned chip_id;      /* ESP_CHIP_ID_*: 0 esp32, 5 esp32c3, ... */
	unsigned segments;     /* segment count */
	unsigned spi_mode;     /* 0 QIO .. 5 FAST_READ */
	unsigned min_chip_rev; /* full revision, major*100+minor */
	unsigned max_chip_rev; /* full revision; 0xffff = any */
	int hash_appended;     /* a SHA-256 follows the checksum */
	uint32_t entry;        /* entry point address */
	/* layout */
	uint64_t image_len;          /* through the checksum and digest */
	uint8_t app_sha256[32];      /* the appended digest (hash_appended) */
	/* app descriptor */
	uint32_t secure_version;     /* eFuse anti-rollback version */
	char version[33];            /* as built; often not the product's */
	char project_name[33];
	char build_time[17];
	char build_date[17];
	char idf_ver[33];
	uint8_t elf_sha256[32];
	/* Secure Boot v2 */
	unsigned nsig;               /* signature blocks found, 0 if none */
	uint64_t signed_len;         /* bytes the blocks sign (image + pad) */
	struct espimg_sig sig[ESPIMG_SIG_BLOCKS_MAX];
};

/*
 * Check the first len bytes of a file of file_size bytes for a sane image
 * header (a cheap look before reading the rest). On failure returns
 * OTAD_ERR_NOT_IMAGE or OTAD_ERR_TOO_LARGE with one lower-case line in why.
 */
enum otad_err espimg_check_header(const uint8_t *buf, size_t len,
    uint64_t file_size, struct espimg_info *info, char *why, size_t whylen);

/*
 * Validate a whole image: header, every segment's bounds, the checksum,
 * the appended SHA-256, the app descriptor, and a trailing signature
 * sector (each block's magic, version, CRC and image digest). Anything
 * after the image other than that sector is refused. On failure returns
 * OTAD_ERR_NOT_IMAGE (or OTAD_ERR_TOO_LARGE) and the exact reason in why
 * ("segment 3 runs past the end of the file", "checksum mismatch", ...).
 * info's sig[].block point into buf.
 */
enum otad_err espimg_parse(const uint8_t *buf, size_t len,
    struct espimg_info *info, char *why, size_t whylen);

/* "esp32", "esp32c3", ...; NULL for an id this build does not know. */
const char *espimg_chip_name(unsigned chip_id);
/* The id for a name; -1 if unknown. */
int espimg_chip_id(const char *name);

/*
 * 1 when the descriptor's version says nothing about the product: Arduino
 * builds carry the library builder's version ("esp32-arduino-lib-builder")
 * whatever the sketch is.
 */
int espimg_version_is_generic(const struct espimg_info *info);

/* CRC-32 (IEEE, as the ROM's crc32_le with seed 0). */
uint32_t espimg_crc32(const uint8_t *buf, size_t len);

#endif
