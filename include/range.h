/*
 * range.h: HTTP byte ranges (RFC 9110 section 14) for image downloads.
 *
 * One range is answered (206); several, a malformed header or a stale
 * If-Range mean the whole file (200), which the RFC allows and every
 * ESP32 client accepts. An end past the last byte is clamped: esp_https_ota
 * asks for one byte more than the image when it resumes. Pure functions.
 */
#ifndef RANGE_H
#define RANGE_H

#include <stdint.h>

enum range_kind {
	RANGE_NONE,          /* serve the whole file */
	RANGE_PARTIAL,       /* serve start .. start + len - 1 */
	RANGE_UNSATISFIABLE, /* 416, Content-Range: bytes * / total */
};

struct range {
	enum range_kind kind;
	uint64_t start, len;
};

/*
 * header: the Range value or NULL; if_range: the If-Range value or NULL;
 * etag: this file's (quoted) ETag; total: its size, > 0.
 */
void range_parse(const char *header, const char *if_range, const char *etag,
    uint64_t total, struct range *out);

/*
 * 1 when header (NULL: none) asks for one range that starts past byte 0:
 * the rest of a download begun earlier (a resume, or the next piece of
 * esp_https_ota's partial download).
 */
int range_continues(const char *header);

#endif
