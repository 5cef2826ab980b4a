/*
 * http.h: the HTTP server (libmicrohttpd), routing, limits, JSON errors.
 *
 * The only module that includes microhttpd.h. Handlers see a struct
 * http_request, borrowed for the duration of the call, and answer with
 * exactly one http_queue/http_error/http_json, or suspend (http_suspend)
 * and are called again after http_resume, with the same request.
 *
 * Threads: a pool of HTTP threads, each with its own connections; handlers
 * run on them and may be called concurrently. Prepared responses (struct
 * http_response) are immutable and may be queued from any thread at once.
 */
#ifndef HTTP_H
#define HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "otad.h"

struct http;
struct http_request;
struct http_response;

enum http_method {
	HTTP_GET = 1 << 0,
	HTTP_HEAD = 1 << 1,
	HTTP_POST = 1 << 2,
};

struct http_route {
	const char *path;  /* exact match */
	unsigned methods;  /* enum http_method bits allowed */
	int (*handler)(struct http_request *req, void *arg); /* result unused */
};

struct http_options {
	const char *listen; /* host:port; port 0 picks a free one */
	unsigned threads;   /* >= 1 */
	unsigned max_connections;
	unsigned connection_timeout; /* seconds */
	size_t max_header_bytes;     /* all request headers together */
	size_t max_body_bytes;
	const char *tls_cert; /* PEM file, or NULL/"" for plain HTTP */
	const char *tls_key;
};

/*
 * Bind, listen and start the threads. bound receives the actual
 * "host:port". routes must outlive the server.
 */
enum otad_err http_start(const struct http_options *opt,
    const struct http_route *routes, size_t nroutes, void *arg,
    struct http **out, char *bound, size_t boundlen);

/*
 * Stop accepting, let requests in flight finish for up to grace seconds,
 * then close everything and free h. NULL-safe.
 */
void http_stop(struct http *h, unsigned grace);

/* Body limit, changeable on reload. */
void http_set_max_body(struct http *h, size_t max_body_bytes);

/* Requests being answered now, process-wide. */
long http_in_flight(void);

/* Request accessors; the strings are borrowed for the call. */
enum http_method http_method(const struct http_request *req);
/* A request header, case-insensitive; NULL if absent. */
const char *http_header(const struct http_request *req, const char *name);
/* A query parameter (URL-decoded); NULL if absent. */
const char *http_arg(const struct http_request *req, const char *name);
/* The whole body (POST routes only); NUL-terminated, len excludes it. */
const char *http_body(const struct http_request *req, size_t *len);
/* The peer's address as text. */
void http_peer(const struct http_request *req, char *buf, size_t len);
/* Per-request slot for the handler, kept across suspend/resume. */
void **http_userdata(struct http_request *req);

/*
 * Answer with a prepared response (not consumed). count_bytes > 0 adds
 * that many bytes to otad_bytes_served_total once the body was sent in
 * full.
 */
int http_queue(struct http_request *req, unsigned status,
    struct http_response *resp, uint64_t count_bytes);
/* {"error": msg} with status (4xx/5xx). */
int http_error(struct http_request *req, unsigned status, const char *msg);
/* A JSON (or other) body given as text; copied. These return 0. */
int http_send(struct http_request *req, unsigned status,
    const char *content_type, const char *body, size_t len);

/* Suspend until http_resume (any thread); only on POST routes. */
void http_suspend(struct http_request *req);
void http_resume(struct http_request *req);

/*
 * Prepared responses. http_response_file takes ownership of fd and serves
 * it with sendfile. Headers are added before the first queue.
 */
struct http_response *http_response_file(int fd, uint64_t size);
struct http_response *http_response_empty(void);
int http_response_header(struct http_response *resp, const char *name,
    const char *value);
void http_response_free(struct http_response *resp);

#endif
