/*
 * conf.h: the configuration file.
 *
 * Format: "key = value" lines, '#' starts a comment, blank lines ignored.
 * Every key is declared once in conf.c's table with its type, bounds and
 * default; an unknown key, a value out of bounds or a duplicate stops the
 * load with "FILE:LINE: reason". A struct conf is a plain value: a reload
 * builds a new one, validates it, and the caller swaps it in.
 */
#ifndef CONF_H
#define CONF_H

#include <limits.h>
#include <stddef.h>

#define CONF_ERR_MAX 512

struct conf {
	char listen[128];          /* "host:port", "[v6]:port" or "*:port" */
	char state_dir[PATH_MAX];  /* database + artifact store live here */
	unsigned http_threads;     /* 0 = one per CPU */
	unsigned max_connections;  /* open HTTP connections at once */
	unsigned connection_timeout; /* idle seconds before a close */
	size_t max_header_bytes;   /* all request headers together */
	size_t max_body_bytes;     /* a request body (reports) */
	unsigned writer_queue_max; /* queued records per HTTP thread */
	unsigned shutdown_timeout; /* seconds to finish in-flight requests */
	unsigned offline_after;    /* seconds unseen before "offline" */
	int debug;                 /* log_level = debug */
	int require_signature;     /* offer only artifacts signed by a key */
	int device_auth;           /* 1 = token: devices must present one */
	unsigned rate_per_device;  /* requests a minute; 0 = no cap */
	unsigned rate_per_address; /* requests a minute; 0 = no cap */
	char tls_cert[PATH_MAX];   /* PEM; empty = plain HTTP */
	char tls_key[PATH_MAX];    /* PEM; required with tls_cert */
};

/* Fill every field with its documented default. */
void conf_defaults(struct conf *conf);

/*
 * Parse the file at path into *conf (defaults first). Returns 0, or -1 with
 * a one-line "path:line: reason" in err.
 */
int conf_load(const char *path, struct conf *conf, char *err, size_t errlen);

/* The same for text already in memory; name is used in messages. */
int conf_parse(const char *name, const char *text, struct conf *conf,
    char *err, size_t errlen);

/* The path of the SQLite database and of the artifact store, in buf. */
int conf_db_path(const struct conf *conf, char *buf, size_t len);

/*
 * Keys whose new value only takes effect after a restart; writes the first
 * one that differs into *key and returns 1, or returns 0.
 */
int conf_needs_restart(const struct conf *old, const struct conf *new,
    const char **key);

#endif
