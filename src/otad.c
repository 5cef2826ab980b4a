/* otad.c: the error strings of enum otad_err and the small helpers */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "otad.h"

const char *
otad_strerror(enum otad_err err)
{
	switch (err) {
	case OTAD_OK:
		return "success";
	case OTAD_ERR_NOMEM:
		return "out of memory";
	case OTAD_ERR_IO:
		return "input/output error";
	case OTAD_ERR_DB:
		return "database error";
	case OTAD_ERR_BUSY:
		return "database busy";
	case OTAD_ERR_INVALID:
		return "invalid input";
	case OTAD_ERR_NOT_FOUND:
		return "not found";
	case OTAD_ERR_EXISTS:
		return "already exists";
	case OTAD_ERR_TOO_LARGE:
		return "too large";
	case OTAD_ERR_NOT_IMAGE:
		return "not an ESP32 application image";
	case OTAD_ERR_DENIED:
		return "not allowed";
	case OTAD_ERR_SHUTDOWN:
		return "shutting down";
	}
	return "unknown error";
}

void
otad_hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

uint64_t
otad_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

int
otad_valid_id(const char *s)
{
	size_t n;

	for (n = 0; s[n] != '\0'; n++) {
		char c = s[n];

		if (n >= OTAD_ID_MAX)
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		    c == '.' || c == ':'))
			return 0;
	}
	return n > 0;
}

int
otad_write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = write(fd, c, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

size_t
otad_common_prefix(const unsigned char *a, const unsigned char *b, size_t n)
{
	size_t i = 0;

	while (i + 8 <= n) {
		uint64_t x, y;

		memcpy(&x, a + i, 8);
		memcpy(&y, b + i, 8);
		if (x != y) {
			x ^= y;
			/* the first differing byte: the lowest in memory */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			return i + (size_t)(__builtin_ctzll(x) >> 3);
#else
			return i + (size_t)(__builtin_clzll(x) >> 3);
#endif
		}
		i += 8;
	}
	while (i < n && a[i] == b[i])
		i++;
	return i;
}
