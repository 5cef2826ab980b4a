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
#include "proxy.h"

struct http;
struct http_request;
struct http_response;

enum http_method {
	HTTP_GET = 1 << 0,
	HTTP_HEAD = 1 << 1,
	HTTP_POST = 1 << 2,
};

struct http_route {
	const char *path;  /* exact match, or a prefix when it ends in '/' */
	unsigned methods;  /* enum http_method bits allowed */
	int (*handler)(struct http_request *req, void *arg); /* result unused */
	/*
	 * A POST body streamed instead of held (an upload): chunk is called
	 * once with the headers alone (data NULL, len 0), when it may answer
	 * (a refusal, sent before the body is read), then with each piece as
	 * it arrives, whatever its size (max_body_bytes does not apply). A
	 * piece it refuses (-1) ends the reading: the rest is dropped and
	 * handler, called once the body is over, answers why. NULL: the body
	 * is held whole (http_body).
	 */
	int (*chunk)(struct http_request *req, const char *data, size_t len,
	    void *arg);
};

struct tls;

struct http_options {
	const char *listen; /* host:port; port 0 picks a free one */
	unsigned threads;   /* >= 1 */
	unsigned max_connections;
	unsigned connection_timeout; /* seconds idle before a close */
	/*
	 * Connections one address may hold at once (0 = no cap); loopback
	 * and trusted proxies are exempt (a proxy speaks for many devices).
	 */
	unsigned max_connections_per_address;
	/*
	 * Proxies whose X-Forwarded-For names the device (http_peer); NULL
	 * or empty: none, the TCP peer is the device.
	 */
	const struct proxies *proxies;
	/*
	 * Seconds a request may take to arrive, from its first byte to the
	 * end of its body (0 = no limit): a client that trickles is cut.
	 */
	unsigned request_timeout;
	size_t max_header_bytes;     /* all request headers together */
	size_t max_body_bytes;
	struct tls *tls; /* the certificate and tickets; NULL: plain HTTP */
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
 * then close everything. h stays valid (tickets resume nothing) until
 * http_free, which comes after every thread that may hold a ticket has
 * stopped. Both NULL-safe.
 */
void http_stop(struct http *h, unsigned grace);
void http_free(struct http *h);

/* Body limit, changeable on reload. */
void http_set_max_body(struct http *h, size_t max_body_bytes);

/* Requests being answered now, process-wide. */
long http_in_flight(void);

/* Request accessors; the strings are borrowed for the call. */
enum http_method http_method(const struct http_request *req);
/* A request header, case-insensitive; NULL if absent. */
const char *http_header(const struct http_request *req, const char *name);
/* The request path (without the query). */
const char *http_path(const struct http_request *req);
/* A query parameter (URL-decoded); NULL if absent. */
const char *http_arg(const struct http_request *req, const char *name);
/* The whole body (POST routes only); NUL-terminated, len excludes it. */
const char *http_body(const struct http_request *req, size_t *len);
/*
 * Basic auth credentials, if the request carries them: *user and *pass
 * are the caller's to release with http_free_basic. 0, or -1 if absent.
 */
int http_basic_auth(const struct http_request *req, char **user, char **pass);
void http_free_basic(char *user, char *pass);
/* The peer's address as text. */
void http_peer(const struct http_request *req, char *buf, size_t len);
/*
 * The handler's own pointer for this request, kept across suspend and
 * resume. release, if set, runs when the request ends, however it ends
 * (answered, client gone, daemon stopping). Set it before suspending a
 * request without a body. -1: out of memory (nothing kept).
 */
void *http_userdata(const struct http_request *req);
int http_set_userdata(struct http_request *req, void *data,
    void (*release)(void *));

/*
 * Answer with a prepared response (not consumed). count_bytes > 0 adds
 * that many bytes to otad_bytes_served_total once the body was sent in
 * full.
 */
int http_queue(struct http_request *req, unsigned status,
    struct http_response *resp, uint64_t count_bytes);
/*
 * The same, and done(arg, complete) once the request ends: complete is 1
 * when the whole body went out. done always runs (it owns arg), on an
 * HTTP thread, and must not block.
 */
int http_queue_notify(struct http_request *req, unsigned status,
    struct http_response *resp, uint64_t count_bytes,
    void (*done)(void *arg, int complete), void *arg);
/*
 * The status a refusal for err gets: 400 invalid (or not an image), 404
 * not found, 409 exists, 413 too large, else 503 (try again).
 */
unsigned http_status_of(enum otad_err err);
/* {"error": msg} with status (4xx/5xx). */
int http_error(struct http_request *req, unsigned status, const char *msg);
/* The same with one more header (name NULL: none). */
int http_error_header(struct http_request *req, unsigned status,
    const char *msg, const char *name, const char *value);
/* A JSON (or other) body given as text; copied. These return 0. */
int http_send(struct http_request *req, unsigned status,
    const char *content_type, const char *body, size_t len);

/*
 * Suspend a POST request until http_resume is called with its ticket, from
 * any thread; the handler is then called again with the same request.
 * Resuming a ticket whose request has ended (client gone, daemon stopped)
 * does nothing, so the resumer never needs to know. When the daemon stops,
 * requests still suspended after the grace period are resumed by http
 * itself: their handler must answer without the result it waited for.
 */
struct http_ticket {
	struct http *h;
	uint64_t id;
};

struct http_ticket http_suspend(struct http_request *req);
void http_resume(struct http_ticket ticket);

/*
 * Prepared responses. http_response_file takes ownership of fd and serves
 * it with sendfile. Headers are added before the first queue.
 */
struct http_response *http_response_file(int fd, uint64_t size);
/* len bytes of fd from offset (takes fd), for one Range answer. */
struct http_response *http_response_file_range(int fd, uint64_t offset,
    uint64_t len);
struct http_response *http_response_empty(void);
/* len bytes at data, which outlive every response (compiled-in files). */
struct http_response *http_response_static(const void *data, size_t len);
int http_response_header(struct http_response *resp, const char *name,
    const char *value);
void http_response_free(struct http_response *resp);

/*
 * Resume every request suspended for seconds or more: its handler is
 * called again and answers without what it waited for. Thread-safe.
 */
void http_resume_older(struct http *h, unsigned seconds);

#endif
