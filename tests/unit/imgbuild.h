/*
 * imgbuild.h: synthetic ESP32 app images for unit tests, built the way
 * esptool lays them out (header, segments, descriptor, checksum, appended
 * SHA-256), so that tests can break exactly one thing at a time.
 */
#ifndef IMGBUILD_H
#define IMGBUILD_H

#include <stdint.h>
#include <string.h>

#include <openssl/sha.h>

struct imgspec {
	uint16_t chip;          /* 0 esp32, 5 esp32c3 */
	unsigned segments;      /* 1..16 (or more, to test refusal) */
	uint32_t seglen;        /* bytes of data per segment, multiple of 4 */
	uint32_t secure_version;
	const char *version;
	const char *project;
	int hash_appended;
};

static inline void
img_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* Build into buf (cap bytes); returns the length, 0 if it does not fit. */
static inline size_t
img_build(uint8_t *buf, size_t cap, const struct imgspec *s)
{
	size_t pos = 24, need, i;
	uint8_t sum = 0xEF;
	unsigned seg;

	need = 24 + (size_t)s->segments * (8 + s->seglen) + 16 + 32;
	if (need > cap || s->seglen < 256)
		return 0;
	memset(buf, 0, need);
	buf[0] = 0xE9;
	buf[1] = (uint8_t)s->segments;
	buf[2] = 2; /* DIO */
	buf[3] = 0x20;
	img_put32(buf + 4, 0x40080000);
	buf[12] = (uint8_t)s->chip;
	buf[13] = (uint8_t)(s->chip >> 8);
	buf[17] = 0xff; /* max_chip_rev_full: any */
	buf[18] = 0xff;
	buf[23] = (uint8_t)s->hash_appended;
	for (seg = 0; seg < s->segments; seg++) {
		img_put32(buf + pos, 0x3f400000 + seg * 0x10000);
		img_put32(buf + pos + 4, s->seglen);
		pos += 8;
		for (i = 0; i < s->seglen; i++)
			buf[pos + i] = (uint8_t)(i * 7 + seg);
		if (seg == 0) {
			uint8_t *d = buf + pos;

			memset(d, 0, 256);
			img_put32(d, 0xABCD5432);
			img_put32(d + 4, s->secure_version);
			strncpy((char *)d + 16, s->version, 31);
			strncpy((char *)d + 48, s->project, 31);
			strncpy((char *)d + 80, "12:00:00", 15);
			strncpy((char *)d + 96, "Nov 20 2026", 15);
			strncpy((char *)d + 112, "v5.3", 31);
		}
		for (i = 0; i < s->seglen; i++)
			sum ^= buf[pos + i];
		pos += s->seglen;
	}
	pos += 15 - pos % 16;
	buf[pos++] = sum;
	if (s->hash_appended) {
		SHA256(buf, pos, buf + pos);
		pos += 32;
	}
	return pos;
}

static inline struct imgspec
img_default(void)
{
	struct imgspec s = {0, 3, 1024, 0, "1.2.3", "sensor", 1};

	return s;
}

#endif
