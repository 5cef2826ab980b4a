/*
 * firmware.h: the real images in ../shared/firmware (or $SHARED/firmware),
 * read whole for unit tests. Include after cmocka.h.
 */
#ifndef FIRMWARE_H
#define FIRMWARE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * The file at firmware/rel, with 8 KiB of room after it for tests that
 * append; fails the test when it cannot be read. Caller frees.
 */
static inline uint8_t *
firmware_load(const char *rel, size_t *len)
{
	const char *shared = getenv("SHARED");
	char path[1024];
	uint8_t *buf;
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/firmware/%s",
	    shared ? shared : "../shared", rel);
	f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s (set SHARED)", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 8192);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

#endif
