/* espimg.c: ESP-IDF app image parsing and validation */
#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>

#include "espimg.h"

#define SEG_HEADER_LEN 8
#define DESC_OFFSET (ESPIMG_HEADER_LEN + SEG_HEADER_LEN)
#define DESC_LEN 256
#define CHECKSUM_SEED 0xEF
#define SIG_CRC_OFFSET 1196

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

int
espimg_chip_id(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(chips) / sizeof(chips[0]); i++)
		if (strcmp(chips[i].name, name) == 0)
			return (int)chips[i].id;
	return -1;
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

uint32_t
espimg_crc32(const uint8_t *buf, size_t len)
{
	uint32_t crc = 0xffffffffu;
	size_t i;
	int k;

	for (i = 0; i < len; i++) {
		crc ^= buf[i];
		for (k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
	}
	return ~crc;
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
	if (len < DESC_OFFSET || file_size < DESC_OFFSET) {
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
	    file_size - DESC_OFFSET) {
		snprintf(why, whylen, "segment 0 runs past the end of the file");
		return OTAD_ERR_NOT_IMAGE;
	}
	return OTAD_OK;
}

/* A fixed-size descriptor string: NUL-terminated inside, printable. */
static int
desc_string(const uint8_t *p, size_t field, char *out)
{
	size_t i;

	for (i = 0; i < field && p[i] != '\0'; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return -1;
	if (i == field)
		return -1;
	memcpy(out, p, i);
	out[i] = '\0';
	return 0;
}

static enum otad_err
parse_desc(const uint8_t *d, struct espimg_info *info, char *why,
    size_t whylen)
{
	static const struct {
		size_t off, len, dst;
		const char *name;
	} fields[] = {
		{16, 32, offsetof(struct espimg_info, version), "version"},
		{48, 32, offsetof(struct espimg_info, project_name),
		    "project_name"},
		{80, 16, offsetof(struct espimg_info, build_time), "time"},
		{96, 16, offsetof(struct espimg_info, build_date), "date"},
		{112, 32, offsetof(struct espimg_info, idf_ver), "idf_ver"},
	};
	size_t i;

	if (le32(d) != ESPIMG_DESC_MAGIC) {
		snprintf(why, whylen, "app descriptor magic is 0x%08x, not "
		    "0xabcd5432", le32(d));
		return OTAD_ERR_NOT_IMAGE;
	}
	info->secure_version = le32(d + 4);
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (desc_string(d + fields[i].off, fields[i].len,
		    (char *)info + fields[i].dst) < 0) {
			snprintf(why, whylen, "app descriptor field '%s' is "
			    "not a terminated printable string",
			    fields[i].name);
			return OTAD_ERR_NOT_IMAGE;
		}
	memcpy(info->elf_sha256, d + 144, 32);
	return OTAD_OK;
}

/* Blocks of a signature sector at buf[at], signing buf[0..at). */
static enum otad_err
parse_sig_sector(const uint8_t *buf, size_t at, struct espimg_info *info,
    char *why, size_t whylen)
{
	uint8_t digest[SHA256_DIGEST_LENGTH], digest384[SHA384_DIGEST_LENGTH];
	int have384 = 0;
	unsigned i;

	SHA256(buf, at, digest);
	info->signed_len = at;
	for (i = 0; i < ESPIMG_SIG_BLOCKS_MAX; i++) {
		const uint8_t *b = buf + at + (size_t)i * ESPIMG_SIG_BLOCK;

		if (b[0] != 0xE7)
			break;
		if (b[1] != ESPIMG_SIG_RSA && b[1] != ESPIMG_SIG_ECDSA) {
			snprintf(why, whylen, "signature block %u has unknown "
			    "version 0x%02x", i, b[1]);
			return OTAD_ERR_NOT_IMAGE;
		}
		if (le32(b + SIG_CRC_OFFSET) !=
		    espimg_crc32(b, SIG_CRC_OFFSET)) {
			snprintf(why, whylen, "signature block %u CRC mismatch",
			    i);
			return OTAD_ERR_NOT_IMAGE;
		}
		/* ECDSA P-384 blocks (sha_version 1) carry a SHA-384 */
		if (b[1] == ESPIMG_SIG_ECDSA && b[2] > 1) {
			snprintf(why, whylen, "signature block %u has unknown "
			    "hash %u", i, b[2]);
			return OTAD_ERR_NOT_IMAGE;
		}
		if (b[1] == ESPIMG_SIG_ECDSA && b[2] == 1 && !have384) {
			SHA384(buf, at, digest384);
			have384 = 1;
		}
		if (b[1] == ESPIMG_SIG_ECDSA && b[2] == 1 ?
		    memcmp(b + 4, digest384, sizeof(digest384)) != 0 :
		    memcmp(b + 4, digest, sizeof(digest)) != 0) {
			snprintf(why, whylen, "signature block %u signs another "
			    "image (digest mismatch)", i);
			return OTAD_ERR_NOT_IMAGE;
		}
		info->sig[i].version = b[1];
		info->sig[i].block = b;
	}
	info->nsig = i;
	if (i == 0) {
		snprintf(why, whylen, "%zu unexpected bytes after the image",
		    (size_t)ESPIMG_SIG_SECTOR);
		return OTAD_ERR_NOT_IMAGE;
	}
	return OTAD_OK;
}

enum otad_err
espimg_parse(const uint8_t *buf, size_t len, struct espimg_info *info,
    char *why, size_t whylen)
{
	uint8_t digest[SHA256_DIGEST_LENGTH];
	enum otad_err rc;
	uint8_t sum = CHECKSUM_SEED;
	size_t pos = ESPIMG_HEADER_LEN, i, end, pad;
	unsigned seg;

	if ((rc = espimg_check_header(buf, len, len, info, why, whylen)) !=
	    OTAD_OK)
		return rc;
	for (seg = 0; seg < info->segments; seg++) {
		uint32_t seglen;

		if (len - pos < SEG_HEADER_LEN) {
			snprintf(why, whylen, "segment %u header runs past the "
			    "end of the file", seg);
			return OTAD_ERR_NOT_IMAGE;
		}
		seglen = le32(buf + pos + 4);
		if (seglen > len - pos - SEG_HEADER_LEN) {
			snprintf(why, whylen, "segment %u runs past the end of "
			    "the file", seg);
			return OTAD_ERR_NOT_IMAGE;
		}
		if (seglen % 4 != 0) {
			snprintf(why, whylen, "segment %u length %u is not a "
			    "multiple of 4", seg, seglen);
			return OTAD_ERR_NOT_IMAGE;
		}
		if (seg == 0) {
			if (seglen < DESC_LEN) {
				snprintf(why, whylen, "segment 0 is too short "
				    "for an app descriptor");
				return OTAD_ERR_NOT_IMAGE;
			}
			if ((rc = parse_desc(buf + DESC_OFFSET, info, why,
			    whylen)) != OTAD_OK)
				return rc;
		}
		pos += SEG_HEADER_LEN;
		for (i = 0; i < seglen; i++)
			sum ^= buf[pos + i];
		pos += seglen;
	}
	/* zero padding up to the last byte of a 16-byte block */
	pad = 15 - pos % 16;
	if (len - pos < pad + 1) {
		snprintf(why, whylen, "file ends before the checksum");
		return OTAD_ERR_NOT_IMAGE;
	}
	pos += pad;
	if (buf[pos] != sum) {
		snprintf(why, whylen, "checksum mismatch (image says 0x%02x, "
		    "segments give 0x%02x)", buf[pos], sum);
		return OTAD_ERR_NOT_IMAGE;
	}
	pos++;
	if (info->hash_appended) {
		if (len - pos < SHA256_DIGEST_LENGTH) {
			snprintf(why, whylen, "file ends before the appended "
			    "SHA-256");
			return OTAD_ERR_NOT_IMAGE;
		}
		SHA256(buf, pos, digest);
		if (memcmp(digest, buf + pos, sizeof(digest)) != 0) {
			snprintf(why, whylen, "appended SHA-256 mismatch");
			return OTAD_ERR_NOT_IMAGE;
		}
		memcpy(info->app_sha256, digest, sizeof(digest));
		pos += SHA256_DIGEST_LENGTH;
	}
	info->image_len = pos;
	if (pos == len)
		return OTAD_OK;
	/* only a Secure Boot v2 sector may follow, after 0xFF padding */
	end = (pos + ESPIMG_SIG_SECTOR - 1) / ESPIMG_SIG_SECTOR *
	    ESPIMG_SIG_SECTOR;
	if (len != end + ESPIMG_SIG_SECTOR) {
		snprintf(why, whylen, "%zu unexpected bytes after the image",
		    len - pos);
		return OTAD_ERR_NOT_IMAGE;
	}
	for (i = pos; i < end; i++)
		if (buf[i] != 0xff) {
			snprintf(why, whylen, "padding before the signature "
			    "sector is not 0xff");
			return OTAD_ERR_NOT_IMAGE;
		}
	return parse_sig_sector(buf, end, info, why, whylen);
}

int
espimg_version_is_generic(const struct espimg_info *info)
{
	return strstr(info->project_name, "arduino-lib-builder") != NULL ||
	    info->version[0] == '\0';
}
