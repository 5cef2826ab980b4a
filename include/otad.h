/*
 * otad.h: the error enum shared across module boundaries.
 *
 * Small helpers return 0 / -1; functions that cross a module boundary return
 * one enum otad_err so that the caller (api alone, for HTTP) can map it to a
 * status without parsing strings.
 */
#ifndef OTAD_H
#define OTAD_H

#include <stddef.h>
#include <stdint.h>

#define OTAD_VERSION "0.1.0"

/* Bounds on strings devices send us; also enforced by the schema. */
#define OTAD_ID_MAX 64      /* device id, bytes */
#define OTAD_VERSION_MAX 64 /* version string, bytes */
#define OTAD_PRODUCT_MAX 64 /* product / project name, bytes */
#define OTAD_REASON_MAX 256 /* free-text reason in a report, bytes */
#define OTAD_ADDR_MAX 64    /* textual peer address */

enum otad_err {
	OTAD_OK = 0,
	OTAD_ERR_NOMEM,     /* allocation failed */
	OTAD_ERR_IO,        /* file system error; errno is meaningful */
	OTAD_ERR_DB,        /* SQLite error other than busy */
	OTAD_ERR_BUSY,      /* database held by someone else for too long */
	OTAD_ERR_INVALID,   /* input fails validation */
	OTAD_ERR_NOT_FOUND, /* no such row / file */
	OTAD_ERR_EXISTS,    /* unique thing already there */
	OTAD_ERR_TOO_LARGE, /* input over a configured cap */
	OTAD_ERR_NOT_IMAGE, /* not an ESP32 application image */
	OTAD_ERR_SHUTDOWN,  /* the daemon is stopping */
	OTAD_ERR_DENIED,    /* not the caller's to do (its role) */
};

/* Static, never NULL. */
const char *otad_strerror(enum otad_err err);

/* n bytes as 2n lower-case hex digits and a NUL into out. */
void otad_hex(const unsigned char *in, size_t n, char *out);

/*
 * A device id: 1 to OTAD_ID_MAX of A-Z a-z 0-9 . _ : - (ids end up in
 * SQL, logs and MQTT topics, so they stay plain). 1 if valid.
 */
int otad_valid_id(const char *s);

/* FNV-1a of a string: short keys (device ids, SQL) into hash tables */
uint64_t otad_hash(const char *s);

/* All n bytes to fd, through short writes and EINTR: 0, or -1 (errno). */
int otad_write_all(int fd, const void *p, size_t n);

/*
 * How many of the first n bytes of a and b agree: eight bytes a compare,
 * for the delta encoders' match searches, where most time goes.
 */
size_t otad_common_prefix(const unsigned char *a, const unsigned char *b,
    size_t n);

#endif
